//! The embedded engine's tables, their encodings, and the reads both the committer and the
//! readers do on them.
//!
//! - `history`: `(key, revision) -> version`, every version of every key (MVCC), where a
//!   version is `[1][create_revision u64 LE][value]` or `[0]` for a delete.
//! - `log`: `revision -> [kind u8][key len u32 LE][key]...`, the changes of each revision in
//!   op order; values come from `history`.
//! - `meta`: `current_revision`, `compacted_revision`, `format`.

use std::ops::Bound;

use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};

use crate::apply::tombstone;
use crate::watch::RevisionEvents;
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent};

pub(crate) const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_CURRENT: &str = "current_revision";
pub(crate) const META_COMPACTED: &str = "compacted_revision";
pub(crate) const FORMAT: u64 = 1;

const LIVE: u8 = 1;
const DELETED: u8 = 0;
const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;

/// Maps any redb error to a store error: corruption, I/O (retryable) or internal.
pub(crate) fn db_error(error: impl Into<redb::Error>) -> StoreError {
    let error: redb::Error = error.into();
    match error {
        redb::Error::Corrupted(message) => StoreError::Corrupt(message),
        redb::Error::Io(_)
        | redb::Error::PreviousIo
        | redb::Error::DatabaseAlreadyOpen
        | redb::Error::DatabaseClosed => StoreError::Unavailable(error.to_string()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// Revisions are positive in the API and stored as `u64`.
pub(crate) fn stored(revision: Revision) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn api(revision: u64) -> Result<Revision, StoreError> {
    Revision::try_from(revision)
        .map_err(|_| StoreError::Corrupt(format!("revision {revision} out of range")))
}

pub(crate) fn encode_version(kv: Option<&KeyValue>) -> Vec<u8> {
    match kv {
        None => vec![DELETED],
        Some(kv) => {
            let mut out = Vec::with_capacity(9 + kv.value.len());
            out.push(LIVE);
            out.extend_from_slice(&stored(kv.create_revision).to_le_bytes());
            out.extend_from_slice(&kv.value);
            out
        }
    }
}

fn decode_version(key: &str, revision: u64, bytes: &[u8]) -> Result<Option<KeyValue>, StoreError> {
    match bytes.split_first() {
        Some((&DELETED, [])) => Ok(None),
        Some((&LIVE, rest)) if rest.len() >= 8 => {
            let (create, value) = rest.split_at(8);
            let create = u64::from_le_bytes(create.try_into().expect("8 bytes"));
            Ok(Some(KeyValue {
                key: key.to_owned(),
                value: Bytes::copy_from_slice(value),
                create_revision: api(create)?,
                mod_revision: api(revision)?,
            }))
        }
        _ => Err(StoreError::Corrupt(format!(
            "bad version record for key {key:?} at revision {revision}"
        ))),
    }
}

pub(crate) fn encode_log(changes: &RevisionEvents) -> Vec<u8> {
    let size = changes.events.iter().map(|e| 5 + e.kv.key.len()).sum();
    let mut out = Vec::with_capacity(size);
    for event in &changes.events {
        out.push(match event.kind {
            EventKind::Put => KIND_PUT,
            EventKind::Delete => KIND_DELETE,
        });
        let len = u32::try_from(event.kv.key.len()).expect("keys are shorter than 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(event.kv.key.as_bytes());
    }
    out
}

/// The `(kind, key)` pairs of one log entry.
pub(crate) fn decode_log(
    revision: u64,
    mut bytes: &[u8],
) -> Result<Vec<(EventKind, &str)>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("bad log entry at revision {revision}"));
    let mut ops = Vec::new();
    while let Some((&kind, rest)) = bytes.split_first() {
        let kind = match kind {
            KIND_PUT => EventKind::Put,
            KIND_DELETE => EventKind::Delete,
            _ => return Err(corrupt()),
        };
        let (len, rest) = rest.split_at_checked(4).ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (key, rest) = rest.split_at_checked(len).ok_or_else(corrupt)?;
        let key = std::str::from_utf8(key).map_err(|_| corrupt())?;
        ops.push((kind, key));
        bytes = rest;
    }
    Ok(ops)
}

/// `key` as of `revision` (`u64::MAX` = latest): its newest version at or below it.
pub(crate) fn version_at<T>(
    history: &T,
    key: &str,
    revision: u64,
) -> Result<Option<KeyValue>, StoreError>
where
    T: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    let mut range = history
        .range((key, 0u64)..=(key, revision))
        .map_err(db_error)?;
    match range.next_back() {
        None => Ok(None),
        Some(entry) => {
            let (stored_key, version) = entry.map_err(db_error)?;
            decode_version(key, stored_key.value().1, version.value())
        }
    }
}

/// Every version of `key` at or below `revision`, oldest first, as `(revision, live)`.
pub(crate) fn versions_up_to<T>(
    history: &T,
    key: &str,
    revision: u64,
) -> Result<Vec<(u64, bool)>, StoreError>
where
    T: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    let mut versions = Vec::new();
    for entry in history
        .range((key, 0u64)..=(key, revision))
        .map_err(db_error)?
    {
        let (stored_key, version) = entry.map_err(db_error)?;
        versions.push((stored_key.value().1, version.value().first() == Some(&LIVE)));
    }
    Ok(versions)
}

/// Up to `limit` (0 = all) keys under `prefix` after `start_after` as of `revision`, and
/// whether more follow.
pub(crate) fn list<T>(
    history: &T,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: u64,
) -> Result<(Vec<KeyValue>, bool), StoreError>
where
    T: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    // The last key looked at; the next one is the first entry after all its versions.
    let mut cursor: Option<String> = match start_after {
        Some(after) if after >= prefix => Some(after.to_owned()),
        _ => None,
    };
    let mut kvs = Vec::new();
    loop {
        let lower = match &cursor {
            Some(key) => Bound::Excluded((key.as_str(), u64::MAX)),
            None => Bound::Included((prefix, 0u64)),
        };
        let next = {
            let mut range = history
                .range::<(&str, u64)>((lower, Bound::Unbounded))
                .map_err(db_error)?;
            match range.next() {
                None => None,
                Some(entry) => Some(entry.map_err(db_error)?.0.value().0.to_owned()),
            }
        };
        let Some(key) = next.filter(|key| key.starts_with(prefix)) else {
            return Ok((kvs, false));
        };
        if let Some(kv) = version_at(history, &key, revision)? {
            if limit > 0 && kvs.len() == limit {
                return Ok((kvs, true));
            }
            kvs.push(kv);
        }
        cursor = Some(key);
    }
}

/// The events under `prefix` of the log entry at `revision`, with values and previous values
/// from `history`.
pub(crate) fn events_at<T>(
    history: &T,
    revision: u64,
    entry: &[u8],
    prefix: &str,
) -> Result<RevisionEvents, StoreError>
where
    T: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    let mut events = Vec::new();
    for (kind, key) in decode_log(revision, entry)? {
        if !key.starts_with(prefix) {
            continue;
        }
        let prev = version_at(history, key, revision - 1)?;
        let kv = match kind {
            EventKind::Put => version_at(history, key, revision)?
                .filter(|kv| kv.mod_revision == api(revision).unwrap_or(-1))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "log names key {key:?} at revision {revision} but history lacks it"
                    ))
                })?,
            EventKind::Delete => tombstone(key.to_owned(), api(revision)?),
        };
        events.push(WatchEvent { kind, kv, prev });
    }
    Ok(RevisionEvents {
        revision: api(revision)?,
        events,
    })
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
    fn versions_round_trip() {
        let live = kv("a/b", "value", 3, 7);
        let encoded = encode_version(Some(&live));
        assert_eq!(decode_version("a/b", 7, &encoded), Ok(Some(live)));
        let empty = kv("k", "", 1, 1);
        assert_eq!(
            decode_version("k", 1, &encode_version(Some(&empty))),
            Ok(Some(empty))
        );
        assert_eq!(decode_version("a/b", 8, &encode_version(None)), Ok(None));
    }

    #[test]
    fn damaged_records_are_corrupt_not_panics() {
        for bad in [&[][..], &[0, 1], &[1, 0, 0], &[9]] {
            let error = decode_version("k", 1, bad).unwrap_err();
            assert_eq!(error.code(), "store.corrupt", "{bad:?}");
        }
        for bad in [
            &[1][..],
            &[1, 5, 0, 0, 0, b'a'],
            &[3, 0, 0, 0, 0],
            &[1, 1, 0, 0, 0, 0xff],
        ] {
            let error = decode_log(1, bad).unwrap_err();
            assert_eq!(error.code(), "store.corrupt", "{bad:?}");
        }
    }

    #[test]
    fn log_entries_round_trip_in_op_order() {
        let changes = RevisionEvents {
            revision: 5,
            events: vec![
                WatchEvent {
                    kind: EventKind::Put,
                    kv: kv("z", "1", 5, 5),
                    prev: None,
                },
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: tombstone("a".into(), 5),
                    prev: Some(kv("a", "0", 1, 1)),
                },
            ],
        };
        let encoded = encode_log(&changes);
        assert_eq!(
            decode_log(5, &encoded),
            Ok(vec![(EventKind::Put, "z"), (EventKind::Delete, "a")])
        );
    }
}
