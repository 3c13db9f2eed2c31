//! Small helpers the loops share: times, owner references, int-or-percent values, hashes.

use jiff::Timestamp;
use navarch_api::meta::v1::int_or_string::Value as IntOrStringValue;
use navarch_api::meta::v1::{IntOrString, ObjectMeta, OwnerReference};
use navarch_api::selectors::LabelSelector;
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use navarch_runtime::{KubeObject, ObjectKey};

/// An RFC 3339 time with second precision, as Kubernetes writes `metav1.Time`.
pub fn fmt_time(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

pub fn parse_time(s: Option<&str>) -> Option<Timestamp> {
    s.filter(|s| !s.is_empty())?.parse().ok()
}

/// Seconds from `from` to `to` (negative when `to` is earlier).
pub fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()) as f64 / 1000.0
}

/// A duration from a number of seconds (0 when negative).
pub fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(s.max(0.0))
}

/// The owner reference that makes `owner` the managing controller of a dependent.
pub fn controller_ref<T: KubeObject>(owner: &T) -> OwnerReference {
    let kind = T::kind();
    OwnerReference {
        api_version: Some(kind.api_version()),
        kind: Some(kind.kind.to_string()),
        name: owner.meta().name.clone(),
        uid: owner.meta().uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller reference of `meta`, if it names a `kind`.
pub fn controller_of_kind<'a>(meta: &'a ObjectMeta, kind: &str) -> Option<&'a OwnerReference> {
    navarch_runtime::object::controller_of(meta).filter(|r| r.kind.as_deref() == Some(kind))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    navarch_runtime::object::controller_of(meta).is_some_and(|r| r.uid.as_deref() == Some(uid))
}

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// The parsed selector; `None` when absent or invalid (a controller then does nothing, as an
/// empty selector would select everything).
pub fn selector(sel: Option<&navarch_api::meta::v1::LabelSelector>) -> Option<LabelSelector> {
    let parsed = LabelSelector::from_meta(sel?).ok()?;
    (!parsed.is_empty()).then_some(parsed)
}

/// Resolves an int-or-percent against `total` (`round_up` for surge, down for unavailable).
pub fn int_or_percent(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value.and_then(|v| v.value.as_ref()) {
        None => 0,
        Some(IntOrStringValue::IntVal(i)) => *i,
        Some(IntOrStringValue::StrVal(s)) => {
            let Some(p) = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
            else {
                return s.parse().unwrap_or(0);
            };
            let v = p * total as f64 / 100.0;
            if round_up {
                v.ceil() as i32
            } else {
                v.floor() as i32
            }
        }
    }
}

/// FNV-1a, 32 bits (what Kubernetes hashes pod templates with).
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Kubernetes' `rand.SafeEncodeString` of a number: no vowels, no look-alike characters.
pub fn safe_encode(n: u32) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    n.to_string()
        .bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// The hash of a pod template (plus the collision count), as used in the names of
/// ReplicaSets and ControllerRevisions and the `pod-template-hash` label.
pub fn template_hash<M: prost::Message>(template: &M, collision_count: Option<i32>) -> String {
    let mut bytes = template.encode_to_vec();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(fnv32a(&bytes))
}

/// Updates the metadata of `obj` (from a cache) with `f`, guarded by its resourceVersion.
pub async fn update_meta<T: KubeObject>(
    client: &Client,
    obj: &T,
    f: impl FnOnce(&mut ObjectMeta),
) -> Result<T, ApiError> {
    let mut copy = obj.clone();
    f(copy.meta_mut());
    let key = ObjectKey::of(obj);
    client.update(&key.namespace, &key.name, &copy).await
}

/// Deletes `obj` if it still has the same uid; NotFound counts as done.
pub async fn delete_object<T: KubeObject>(
    client: &Client,
    obj: &T,
    propagation: &str,
) -> Result<(), ApiError> {
    let key = ObjectKey::of(obj);
    let params = navarch_gateway::client::DeleteParams {
        precondition_uid: obj.meta().uid.clone().unwrap_or_default(),
        propagation_policy: propagation.to_string(),
        ..Default::default()
    };
    match client
        .delete_with::<T>(&key.namespace, &key.name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.reason == Reason::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Compresses sorted indexes into Kubernetes' interval form (`0-2,4`).
pub fn format_indexes(indexes: &std::collections::BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parses Kubernetes' interval form (`0-2,4`).
pub fn parse_indexes(s: &str) -> std::collections::BTreeSet<i32> {
    let mut out = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_the_kubernetes_way() {
        let pct = |s: &str| IntOrString {
            value: Some(IntOrStringValue::StrVal(s.into())),
        };
        let int = |i| IntOrString {
            value: Some(IntOrStringValue::IntVal(i)),
        };
        assert_eq!(int_or_percent(Some(&pct("25%")), 3, true), 1);
        assert_eq!(int_or_percent(Some(&pct("25%")), 3, false), 0);
        assert_eq!(int_or_percent(Some(&pct("50%")), 5, true), 3);
        assert_eq!(int_or_percent(Some(&int(2)), 5, true), 2);
        assert_eq!(int_or_percent(None, 5, true), 0);
    }

    #[test]
    fn hashes_are_safe_encoded_fnv() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        let h = safe_encode(123);
        assert_eq!(h.len(), 3);
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn indexes_round_trip_as_intervals() {
        let set: std::collections::BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(format_indexes(&Default::default()), "");
    }

    #[test]
    fn times_have_second_precision() {
        let t: Timestamp = "2024-05-06T07:08:09.5Z".parse().unwrap();
        assert_eq!(fmt_time(t), "2024-05-06T07:08:09Z");
        assert_eq!(
            parse_time(Some("2024-05-06T07:08:09Z"))
                .map(fmt_time)
                .as_deref(),
            Some("2024-05-06T07:08:09Z")
        );
    }
}
