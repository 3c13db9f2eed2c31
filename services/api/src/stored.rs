//! Reading an object's filter attributes (namespace, labels, selectable fields) straight from
//! its protobuf encoding, without decoding the whole message: lists and watches filter every
//! object they pass over, and most of an object is not looked at.
//!
//! The encoding is read the way protobuf decoders merge it: a scalar's last occurrence wins,
//! the occurrences of an embedded message merge, a repeated field's occurrences append, and
//! map entries are inserted in order. So a stored object followed by an appended tail (see
//! [`crate::Object::stored_encoding`]) reads as the merged object.

use std::collections::BTreeMap;

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};

use crate::codec;
use crate::kinds::KindInfo;
use crate::selectors::FieldSource;

/// One field occurrence on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The field occurrences of one message encoding, in order; stops at the first malformed
/// byte (a stored object was encoded by us, so that does not happen).
fn occurrences(mut buf: &[u8]) -> impl Iterator<Item = (u32, Wire<'_>)> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let key = varint(&mut buf)?;
        let number = u32::try_from(key >> 3).ok()?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            1 => {
                let (bytes, rest) = buf.split_first_chunk::<8>()?;
                buf = rest;
                Wire::Fixed64(u64::from_le_bytes(*bytes))
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                if len > buf.len() {
                    return None;
                }
                let (bytes, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(bytes)
            }
            5 => {
                let (bytes, rest) = buf.split_first_chunk::<4>()?;
                buf = rest;
                Wire::Fixed32(u32::from_le_bytes(*bytes))
            }
            // Groups are not used by any kind.
            _ => return None,
        };
        Some((number, wire))
    })
}

/// The occurrences of field `number` across the encodings of one (merged) message.
fn field_in<'a>(chunks: &[&'a [u8]], number: u32) -> Vec<Wire<'a>> {
    chunks
        .iter()
        .flat_map(|c| occurrences(c))
        .filter(|(n, _)| *n == number)
        .map(|(_, w)| w)
        .collect()
}

/// An object of `kind` as its protobuf encoding.
#[derive(Clone, Copy)]
pub struct StoredView<'a> {
    kind: &'static KindInfo,
    bytes: &'a [u8],
}

impl<'a> StoredView<'a> {
    pub fn new(kind: &'static KindInfo, bytes: &'a [u8]) -> Self {
        Self { kind, bytes }
    }

    /// The occurrences of `metadata`, and its descriptor.
    fn metadata(&self) -> Option<(MessageDescriptor, Vec<&'a [u8]>)> {
        let field = self.kind.descriptor().get_field_by_name("metadata")?;
        let Kind::Message(desc) = field.kind() else {
            return None;
        };
        let chunks = field_in(&[self.bytes], field.number())
            .into_iter()
            .filter_map(|w| match w {
                Wire::Bytes(b) => Some(b),
                _ => None,
            })
            .collect();
        Some((desc, chunks))
    }

    /// `metadata.namespace` ("" when unset).
    pub fn namespace(&self) -> String {
        self.lookup("metadata.namespace").unwrap_or_default()
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let Some((desc, chunks)) = self.metadata() else {
            return labels;
        };
        let Some(field) = desc.get_field_by_name("labels") else {
            return labels;
        };
        for entry in field_in(&chunks, field.number()) {
            let Wire::Bytes(entry) = entry else { continue };
            let (mut key, mut value) = (String::new(), String::new());
            for (n, w) in occurrences(entry) {
                if let Wire::Bytes(b) = w {
                    let s = String::from_utf8_lossy(b).into_owned();
                    match n {
                        1 => key = s,
                        2 => value = s,
                        _ => {}
                    }
                }
            }
            labels.insert(key, value);
        }
        labels
    }
}

/// A scalar's value as [`FieldSource`] renders it (`None` for kinds it does not render).
fn render(field: &FieldDescriptor, wire: Wire<'_>) -> Option<String> {
    let rendered = match (field.kind(), wire) {
        (Kind::String, Wire::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        (Kind::Bool, Wire::Varint(v)) => (v != 0).to_string(),
        (Kind::Int32, Wire::Varint(v)) => (v as i64 as i32).to_string(),
        (Kind::Int64, Wire::Varint(v)) => (v as i64).to_string(),
        (Kind::Uint32, Wire::Varint(v)) => (v as u32).to_string(),
        (Kind::Uint64, Wire::Varint(v)) => v.to_string(),
        _ => return None,
    };
    Some(rendered)
}

/// Whether a scalar occurrence holds its type's default (for fields without presence,
/// where a decoder would report such a field as unset).
fn is_default(wire: Wire<'_>) -> bool {
    match wire {
        Wire::Varint(v) | Wire::Fixed64(v) => v == 0,
        Wire::Fixed32(v) => v == 0,
        Wire::Bytes(b) => b.is_empty(),
    }
}

impl FieldSource for StoredView<'_> {
    /// The same values as the decoded [`crate::Object`]'s lookup gives.
    fn lookup(&self, path: &str) -> Option<String> {
        let mut parts = path.split('.');
        let mut desc = self.kind.descriptor();
        let mut chunks: Vec<&[u8]> = vec![self.bytes];
        let mut part = parts.next()?;
        loop {
            let field = desc.get_field_by_name(part)?;
            let mut found = field_in(&chunks, field.number());
            let mut next = parts.next();
            if field.is_list() {
                // A list is looked into by index; a list itself has no rendering.
                let index = next?.parse::<usize>().ok()?;
                let item = *found.get(index)?;
                found = vec![item];
                next = parts.next();
            } else if field.is_map() {
                return None;
            }
            match (field.kind(), next) {
                (Kind::Message(m), next) => {
                    let bytes: Vec<&[u8]> = found
                        .iter()
                        .filter_map(|w| match w {
                            Wire::Bytes(b) => Some(*b),
                            _ => None,
                        })
                        .collect();
                    if bytes.is_empty() {
                        return None;
                    }
                    let Some(p) = next else {
                        // A whole message renders as its JSON form.
                        let merged = bytes.concat();
                        let message = DynamicMessage::decode(m, merged.as_slice()).ok()?;
                        return Some(codec::to_json(&message).to_string());
                    };
                    desc = m;
                    chunks = bytes;
                    part = p;
                }
                (_, None) => {
                    let last = *found.last()?;
                    if !field.supports_presence() && !field.is_list() && is_default(last) {
                        return None;
                    }
                    return render(&field, last);
                }
                (_, Some(_)) => return None,
            }
        }
    }
}
