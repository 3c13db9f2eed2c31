//! The key layout of the distributed engine in the shared key space, and the byte encoding
//! of its values. Everything lives under `nv/<prefix>/`, so several Navarch clusters can
//! share one TiKV cluster:
//!
//! | key | value |
//! | --- | --- |
//! | `m/rev` | the current revision (i64, big-endian): the one counter every write moves |
//! | `m/compacted` | the compacted revision |
//! | `m/cleaned` | how far compaction has deleted superseded history |
//! | `m/logcleaned` | how far compaction has deleted log entries (a grace behind the head) |
//! | `m/lease` | the compaction lease: expiry (unix ms) and holder |
//! | `k/<key>` | the key's latest version: create revision, mod revision, value |
//! | `h/<key>\0<rev>` | the version written at `rev`: put (create revision, value) or tombstone |
//! | `l/<rev>` | the watch log: every event of revision `rev`, with previous values |
//!
//! Revisions are big-endian so keys sort in revision order; keys may not contain NUL, so
//! `h/` sorts by key, then revision.

use bytes::Bytes;

use crate::watch::RevisionEvents;
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent};

/// The key builder of one namespace.
#[derive(Clone, Debug)]
pub struct Layout {
    root: Vec<u8>,
}

impl Layout {
    /// The layout under `nv/<prefix>/`. The prefix is a name: non-empty, no `/`, no NUL.
    pub fn new(prefix: &str) -> Result<Self, StoreError> {
        if prefix.is_empty() || prefix.contains(['/', '\0']) {
            return Err(StoreError::InvalidArgument(format!(
                "store prefix {prefix:?} must be a non-empty name without '/'"
            )));
        }
        Ok(Self {
            root: format!("nv/{prefix}/").into_bytes(),
        })
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = self.root.clone();
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    }

    pub fn current(&self) -> Vec<u8> {
        self.key(&[b"m/rev"])
    }

    pub fn compacted(&self) -> Vec<u8> {
        self.key(&[b"m/compacted"])
    }

    pub fn cleaned(&self) -> Vec<u8> {
        self.key(&[b"m/cleaned"])
    }

    pub fn log_cleaned(&self) -> Vec<u8> {
        self.key(&[b"m/logcleaned"])
    }

    pub fn lease(&self) -> Vec<u8> {
        self.key(&[b"m/lease"])
    }

    pub fn latest(&self, key: &str) -> Vec<u8> {
        self.key(&[b"k/", key.as_bytes()])
    }

    pub fn history(&self, key: &str, revision: Revision) -> Vec<u8> {
        self.key(&[b"h/", key.as_bytes(), b"\0", &revision.to_be_bytes()])
    }

    /// The range of every version of every key starting with `prefix`, from the first key
    /// after `start_after` when given.
    pub fn history_range(&self, prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
        let start = match start_after {
            // Every version of `after` is `after\0...`, below `after\x01`; every later key
            // sorts at or above it since keys hold no NUL.
            Some(after) if after >= prefix => self.key(&[b"h/", after.as_bytes(), b"\x01"]),
            _ => self.key(&[b"h/", prefix.as_bytes()]),
        };
        (start, prefix_end(self.key(&[b"h/", prefix.as_bytes()])))
    }

    /// The range of every version of one key, up to and including `revision`.
    pub fn key_history_range(&self, key: &str, revision: Revision) -> (Vec<u8>, Vec<u8>) {
        (
            self.key(&[b"h/", key.as_bytes(), b"\0"]),
            self.history(key, revision.saturating_add(1)),
        )
    }

    /// Splits a history key into the user key and the revision.
    pub fn parse_history(&self, raw: &[u8]) -> Result<(String, Revision), StoreError> {
        let rest = raw
            .strip_prefix(self.root.as_slice())
            .and_then(|rest| rest.strip_prefix(b"h/".as_slice()))
            .filter(|rest| rest.len() >= 9 && rest[rest.len() - 9] == 0)
            .ok_or_else(|| corrupt("history key", raw))?;
        let (key, revision) = rest.split_at(rest.len() - 9);
        let key = String::from_utf8(key.to_vec()).map_err(|_| corrupt("history key", raw))?;
        Ok((key, read_i64(&revision[1..])?))
    }

    pub fn log(&self, revision: Revision) -> Vec<u8> {
        self.key(&[b"l/", &revision.to_be_bytes()])
    }

    /// The log range of revisions `after + 1 ..= upto`.
    pub fn log_range(&self, after: Revision, upto: Revision) -> (Vec<u8>, Vec<u8>) {
        (self.log(after + 1), self.log(upto.saturating_add(1)))
    }
}

/// The first key after every key starting with `prefix`.
fn prefix_end(mut prefix: Vec<u8>) -> Vec<u8> {
    while let Some(last) = prefix.pop() {
        if last < 0xff {
            prefix.push(last + 1);
            return prefix;
        }
    }
    vec![0xff; 32]
}

fn corrupt(what: &str, raw: &[u8]) -> StoreError {
    StoreError::Corrupt(format!(
        "bad {what} in distributed store: {:?}",
        String::from_utf8_lossy(raw)
    ))
}

pub fn encode_i64(value: i64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

pub fn read_i64(raw: &[u8]) -> Result<i64, StoreError> {
    let bytes: [u8; 8] = raw
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("revision", raw))?;
    Ok(i64::from_be_bytes(bytes))
}

/// A value of `k/<key>`.
pub fn encode_latest(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

pub fn decode_latest(key: &str, raw: &[u8]) -> Result<KeyValue, StoreError> {
    if raw.len() < 16 {
        return Err(corrupt("latest value", raw));
    }
    Ok(KeyValue {
        key: key.to_owned(),
        create_revision: read_i64(&raw[..8])?,
        mod_revision: read_i64(&raw[8..16])?,
        value: Bytes::copy_from_slice(&raw[16..]),
    })
}

/// A value of `h/<key>\0<rev>`: `None` is a tombstone.
pub fn encode_version(kv: Option<&KeyValue>) -> Vec<u8> {
    match kv {
        None => vec![0],
        Some(kv) => {
            let mut out = Vec::with_capacity(9 + kv.value.len());
            out.push(1);
            out.extend_from_slice(&kv.create_revision.to_be_bytes());
            out.extend_from_slice(&kv.value);
            out
        }
    }
}

pub fn decode_version(
    key: String,
    revision: Revision,
    raw: &[u8],
) -> Result<Option<KeyValue>, StoreError> {
    match raw.first() {
        Some(0) => Ok(None),
        Some(1) if raw.len() >= 9 => Ok(Some(KeyValue {
            key,
            create_revision: read_i64(&raw[1..9])?,
            mod_revision: revision,
            value: Bytes::copy_from_slice(&raw[9..]),
        })),
        _ => Err(corrupt("version", raw)),
    }
}

/// A value of `l/<rev>`.
pub fn encode_log(changes: &RevisionEvents) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(changes.events.len() as u32).to_be_bytes());
    for event in &changes.events {
        out.push(match event.kind {
            EventKind::Put => 1,
            EventKind::Delete => 0,
        });
        bytes(&mut out, event.kv.key.as_bytes());
        out.extend_from_slice(&event.kv.create_revision.to_be_bytes());
        bytes(&mut out, &event.kv.value);
        match &event.prev {
            None => out.push(0),
            Some(prev) => {
                out.push(1);
                out.extend_from_slice(&prev.create_revision.to_be_bytes());
                out.extend_from_slice(&prev.mod_revision.to_be_bytes());
                bytes(&mut out, &prev.value);
            }
        }
    }
    out
}

pub fn decode_log(revision: Revision, raw: &[u8]) -> Result<RevisionEvents, StoreError> {
    let mut reader = Reader { raw, pos: 0 };
    let count = reader.u32()?;
    let mut events = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let kind = match reader.u8()? {
            1 => EventKind::Put,
            0 => EventKind::Delete,
            _ => return Err(corrupt("log entry", raw)),
        };
        let key =
            String::from_utf8(reader.bytes()?.to_vec()).map_err(|_| corrupt("log entry", raw))?;
        let create_revision = reader.i64()?;
        let value = Bytes::copy_from_slice(reader.bytes()?);
        let prev = match reader.u8()? {
            0 => None,
            _ => Some(KeyValue {
                key: key.clone(),
                create_revision: reader.i64()?,
                mod_revision: reader.i64()?,
                value: Bytes::copy_from_slice(reader.bytes()?),
            }),
        };
        events.push(WatchEvent {
            kind,
            kv: KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
            },
            prev,
        });
    }
    Ok(RevisionEvents { revision, events })
}

struct Reader<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let slice = self
            .raw
            .get(self.pos..self.pos + n)
            .ok_or_else(|| corrupt("log entry", self.raw))?;
        self.pos += n;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, StoreError> {
        read_i64(self.take(8)?)
    }
    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// A value of `m/lease`.
pub fn encode_lease(holder: &str, expires_unix_ms: i64) -> Vec<u8> {
    let mut out = expires_unix_ms.to_be_bytes().to_vec();
    out.extend_from_slice(holder.as_bytes());
    out
}

pub fn decode_lease(raw: &[u8]) -> Result<(String, i64), StoreError> {
    let expires = read_i64(raw)?;
    Ok((String::from_utf8_lossy(&raw[8..]).into_owned(), expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn keys_are_namespaced_and_sort_by_key_then_revision() {
        let layout = Layout::new("prod").unwrap();
        assert_eq!(layout.current(), b"nv/prod/m/rev");
        assert_eq!(
            layout.latest("/registry/pods/a"),
            b"nv/prod/k//registry/pods/a"
        );
        assert!(Layout::new("").is_err());
        assert!(Layout::new("a/b").is_err());
        let other = Layout::new("prod2").unwrap();
        assert!(!other.current().starts_with(b"nv/prod/"));

        let mut keys = [
            layout.history("a/b", 1),
            layout.history("a", 300),
            layout.history("a", 2),
            layout.history("a0", 1),
        ];
        keys.sort();
        let parsed: Vec<_> = keys
            .iter()
            .map(|k| layout.parse_history(k).unwrap())
            .collect();
        assert_eq!(
            parsed,
            vec![
                ("a".to_string(), 2),
                ("a".to_string(), 300),
                ("a/b".to_string(), 1),
                ("a0".to_string(), 1)
            ]
        );
        assert!(layout.log(255) < layout.log(256));
        assert!(layout.parse_history(b"nv/prod/k/a").is_err());
    }

    #[test]
    fn history_ranges_cover_exactly_the_prefix_and_pages() {
        let layout = Layout::new("p").unwrap();
        let (start, end) = layout.history_range("a/", None);
        let inside = layout.history("a/x", 7);
        assert!(start <= inside && inside < end);
        assert!(layout.history("a0", 1) >= end);
        assert!(layout.history("a", 1) < start);

        let (start, _) = layout.history_range("a/", Some("a/x"));
        assert!(layout.history("a/x", i64::MAX) < start);
        assert!(layout.history("a/x/y", 1) >= start);
        assert!(layout.history("a/y", 1) >= start);

        let (start, end) = layout.key_history_range("a", 5);
        assert!(start <= layout.history("a", 1) && layout.history("a", 5) < end);
        assert!(layout.history("a", 6) >= end);
        assert!(layout.history("a/b", 1) >= end);

        let (start, end) = layout.log_range(3, 5);
        assert!(layout.log(3) < start && start <= layout.log(4) && layout.log(5) < end);
        assert_eq!(prefix_end(vec![1, 0xff]), vec![2]);
    }

    #[test]
    fn values_round_trip() {
        let a = kv("a", "v", 3, 9);
        assert_eq!(decode_latest("a", &encode_latest(&a)).unwrap(), a);
        assert_eq!(
            decode_version("a".into(), 9, &encode_version(Some(&a))).unwrap(),
            Some(a.clone())
        );
        assert_eq!(
            decode_version("a".into(), 9, &encode_version(None)).unwrap(),
            None
        );
        let changes = RevisionEvents {
            revision: 10,
            events: vec![
                WatchEvent {
                    kind: EventKind::Put,
                    kv: kv("a", "w", 3, 10),
                    prev: Some(a.clone()),
                },
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: crate::apply::tombstone("b".into(), 10),
                    prev: Some(kv("b", "x", 1, 1)),
                },
                WatchEvent {
                    kind: EventKind::Put,
                    kv: kv("c", "", 10, 10),
                    prev: None,
                },
            ],
        };
        let decoded = decode_log(10, &encode_log(&changes)).unwrap();
        assert_eq!(decoded.events, changes.events);
        assert!(decode_log(10, &encode_log(&changes)[..20]).is_err());
        assert_eq!(
            decode_lease(&encode_lease("gw-1", 42)).unwrap(),
            ("gw-1".to_string(), 42)
        );
        assert!(matches!(read_i64(b"short"), Err(StoreError::Corrupt(_))));
    }
}
