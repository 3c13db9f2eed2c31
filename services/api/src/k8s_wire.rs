//! Kubernetes' own protobuf wire format (`application/vnd.kubernetes.protobuf`), which kubectl's
//! typed clients send, translated to and from Kubernetes JSON.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope carrying `apiVersion`,
//! `kind` and the object's bytes. Kubernetes' field numbers differ from ours, so the object is
//! walked with our descriptors plus the table navarch-protogen derives from k8s-pb
//! (`proto/navarch/api/v1/k8s_wire_numbers.json`): each of our fields → its tag path (two tags
//! when Go embeds a struct, like `Probe.handler.httpGet`) and, for times, the Kubernetes type.
//!
//! Kubernetes' messages are proto2 and Go writes every non-pointer field, so bodies carry empty
//! strings, empty timestamps and zeros that mean "unset" (`metadata.generateName`,
//! `creationTimestamp`, `metadata.generation: 0`, a container's `tty: false`). Decoding drops
//! them as Go's `omitempty` would when the object is written back as JSON: every empty string
//! and time (except `storageClassName`), and zeros of the known non-pointer fields
//! (`GO_VALUE_FIELDS`) and of status messages. Other zeros are kept: pointer fields like
//! `replicas: 0` or `automountServiceAccountToken: false` mean them.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use serde_json::{Map, Value as Json};

use crate::codec::{self, FieldValidation};
use crate::errors::ApiError;
use crate::kinds;

/// The content type of Kubernetes' protobuf encoding.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

const QUANTITY: &str = "navarch.api.meta.v1.Quantity";
const INT_OR_STRING: &str = "navarch.api.meta.v1.IntOrString";
const RAW_JSON: &str = "navarch.api.meta.v1.RawJson";
const STRING_LIST: &str = "navarch.api.meta.v1.StringList";

/// Kubernetes types whose wire form is not our field's (we hold strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    None,
    /// `meta.v1.Time {seconds, nanos}` → RFC 3339 at second precision.
    Time,
    /// `meta.v1.MicroTime` → RFC 3339 with six fraction digits.
    MicroTime,
    /// `meta.v1.Duration {duration: nanoseconds}` → Go duration string.
    Duration,
}

/// What a Kubernetes tag of one message holds.
#[derive(Debug)]
enum Slot {
    Field(String, Special),
    /// A Go embedded struct whose fields are flattened into ours.
    Embedded(Node),
}

#[derive(Debug, Default)]
struct Node {
    slots: HashMap<u32, Slot>,
}

/// One message's table entry: decoding tree and our field → (tag path, special).
#[derive(Debug, Default)]
struct MessageWire {
    node: Node,
    paths: HashMap<String, (Vec<u32>, Special)>,
}

static TABLE: LazyLock<HashMap<String, MessageWire>> = LazyLock::new(|| {
    let text = include_str!("../../../proto/navarch/api/v1/k8s_wire_numbers.json");
    let json: Json = serde_json::from_str(text).expect("the committed wire table is JSON");
    let mut out = HashMap::new();
    for (message, entry) in json.as_object().into_iter().flatten() {
        let Some(fields) = entry.get("fields").and_then(Json::as_object) else {
            continue;
        };
        let mut wire = MessageWire::default();
        for (field, spec) in fields {
            let spec = spec.as_str().unwrap_or_default();
            let (path, special) = spec.split_once(':').unwrap_or((spec, ""));
            let special = match special {
                "Time" => Special::Time,
                "MicroTime" => Special::MicroTime,
                "Duration" => Special::Duration,
                _ => Special::None,
            };
            let path: Vec<u32> = path.split('.').filter_map(|t| t.parse().ok()).collect();
            let Some((last, outer)) = path.split_last() else {
                continue;
            };
            let mut node = &mut wire.node;
            for tag in outer {
                let slot = node
                    .slots
                    .entry(*tag)
                    .or_insert_with(|| Slot::Embedded(Node::default()));
                let Slot::Embedded(inner) = slot else {
                    panic!("{message}.{field}: tag {tag} is both a field and embedded");
                };
                node = inner;
            }
            node.slots
                .insert(*last, Slot::Field(field.clone(), special));
            wire.paths.insert(field.clone(), (path, special));
        }
        out.insert(message.clone(), wire);
    }
    out
});

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Our descriptor for a Kubernetes `apiVersion` and `kind`: a served kind, or a message of the
/// group's package (`TokenRequest`, `Eviction`, `Binding`, `Scale`, lists), or a `meta.k8s.io`
/// message sent under any group version (`DeleteOptions`).
pub fn descriptor_for(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    if let Some(info) = kinds::by_kind(api_version, kind) {
        return Some(info.descriptor());
    }
    let (group, version) = kinds::split_api_version(api_version);
    let package = match group {
        "" => "core",
        "meta.k8s.io" => "meta",
        other => other
            .strip_suffix(".authorization.k8s.io")
            .or_else(|| other.strip_suffix(".k8s.io"))
            .unwrap_or(other),
    };
    let pool = codec::pool();
    pool.get_message_by_name(&format!("navarch.api.{package}.{version}.{kind}"))
        .or_else(|| pool.get_message_by_name(&format!("navarch.api.meta.v1.{kind}")))
}

/// Decodes a Kubernetes protobuf body into `(apiVersion, kind, Kubernetes JSON)`; the JSON
/// carries `apiVersion` and `kind` too, ready for the JSON path.
pub fn decode(body: &[u8]) -> Result<(String, String, Json), ApiError> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
        bad("protobuf body does not start with the Kubernetes magic number \"k8s\\x00\"")
    })?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut reader = Reader::new(rest);
    while let Some((tag, wire)) = reader.key()? {
        match (tag, wire) {
            (1, Wire::Len(type_meta)) => {
                let mut inner = Reader::new(type_meta);
                while let Some((tag, wire)) = inner.key()? {
                    match (tag, wire) {
                        (1, Wire::Len(b)) => api_version = utf8(b, "apiVersion")?,
                        (2, Wire::Len(b)) => kind = utf8(b, "kind")?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(b)) => raw = b,
            (3, Wire::Len(b)) => content_encoding = utf8(b, "contentEncoding")?,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(bad(format!(
            "unsupported protobuf contentEncoding {content_encoding:?}"
        )));
    }
    if kind.is_empty() {
        return Err(bad("protobuf envelope has no kind"));
    }
    let desc = descriptor_for(&api_version, &kind).ok_or_else(|| {
        bad(format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\""
        ))
    })?;
    let mut map = Map::new();
    map.insert("apiVersion".into(), Json::String(api_version.clone()));
    map.insert("kind".into(), Json::String(kind.clone()));
    decode_message(&desc, raw, &mut map, "")?;
    Ok((api_version, kind, Json::Object(map)))
}

/// Encodes Kubernetes JSON as a Kubernetes protobuf body (magic and envelope included).
/// Fields Kubernetes has no number for (newer than k8s-pb) are left out.
pub fn encode(json: &Json, api_version: &str, kind: &str) -> Result<Vec<u8>, ApiError> {
    let desc = descriptor_for(api_version, kind).ok_or_else(|| {
        bad(format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\""
        ))
    })?;
    let decoded = codec::from_json(&desc, json, FieldValidation::Ignore)
        .map_err(|e| bad(format!("cannot encode {kind} as protobuf: {e}")))?;
    let raw = encode_message(&decoded.message)?;
    let mut type_meta = Vec::new();
    put_bytes(&mut type_meta, 1, api_version.as_bytes());
    put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, &raw);
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Ok(out)
}

// ---- decoding -------------------------------------------------------------------------------

/// One field's payload on the wire.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("truncated protobuf varint"))?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(bad("protobuf varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if self.buf.len() < n {
            return Err(bad("truncated protobuf field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field's tag and payload; `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, Wire<'a>)>, ApiError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| bad("protobuf tag out of range"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| bad("protobuf length out of range"))?;
                Wire::Len(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            other => return Err(bad(format!("unsupported protobuf wire type {other}"))),
        };
        Ok(Some((tag, wire)))
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("{what}: invalid UTF-8")))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Decodes the Kubernetes message `bytes` (of our type `desc`) into `out`.
fn decode_message(
    desc: &MessageDescriptor,
    bytes: &[u8],
    out: &mut Map<String, Json>,
    path: &str,
) -> Result<(), ApiError> {
    let Some(wire) = TABLE.get(desc.full_name()) else {
        return Err(bad(format!(
            "{}: {} has no Kubernetes protobuf form",
            path,
            desc.full_name()
        )));
    };
    decode_node(desc, &wire.node, bytes, out, path)
}

fn decode_node(
    desc: &MessageDescriptor,
    node: &Node,
    bytes: &[u8],
    out: &mut Map<String, Json>,
    path: &str,
) -> Result<(), ApiError> {
    let mut reader = Reader::new(bytes);
    while let Some((tag, wire)) = reader.key()? {
        match node.slots.get(&tag) {
            // Unknown to us: ignored, as Kubernetes' own decoder does.
            None => {}
            Some(Slot::Embedded(inner)) => {
                let Wire::Len(b) = wire else {
                    return Err(bad(format!(
                        "{path}: embedded field {tag} is not a message"
                    )));
                };
                decode_node(desc, inner, b, out, path)?;
            }
            Some(Slot::Field(name, special)) => {
                let field_path = join(path, name);
                let field = desc
                    .get_field_by_name(name)
                    .ok_or_else(|| bad(format!("{field_path}: not in {}", desc.full_name())))?;
                decode_field(&field, *special, wire, out, &field_path)?;
            }
        }
    }
    Ok(())
}

fn decode_field(
    field: &FieldDescriptor,
    special: Special,
    wire: Wire<'_>,
    out: &mut Map<String, Json>,
    path: &str,
) -> Result<(), ApiError> {
    let name = field.name();
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Ok(());
        };
        let Wire::Len(b) = wire else {
            return Err(bad(format!("{path}: map entry is not length-delimited")));
        };
        let value_kind = entry.map_entry_value_field().kind();
        let mut key = String::new();
        let mut value = None;
        let mut reader = Reader::new(b);
        while let Some((tag, wire)) = reader.key()? {
            match (tag, wire) {
                (1, Wire::Len(k)) => key = utf8(k, path)?,
                (2, w) => value = decode_single(&value_kind, Special::None, w, path)?,
                _ => {}
            }
        }
        let value = value.unwrap_or_else(|| zero_json(&value_kind));
        let map = out.entry(name).or_insert_with(|| Json::Object(Map::new()));
        if let Json::Object(map) = map {
            map.insert(key, value);
        }
        return Ok(());
    }
    let kind = field.kind();
    if field.is_list() {
        let list = out.entry(name).or_insert_with(|| Json::Array(Vec::new()));
        let Json::Array(list) = list else {
            return Ok(());
        };
        match (wire, packable(&kind)) {
            (Wire::Len(b), true) => {
                let mut reader = Reader::new(b);
                while !reader.buf.is_empty() {
                    let w = match kind {
                        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => Wire::Fixed64(
                            u64::from_le_bytes(reader.take(8)?.try_into().expect("8 bytes")),
                        ),
                        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => Wire::Fixed32(
                            u32::from_le_bytes(reader.take(4)?.try_into().expect("4 bytes")),
                        ),
                        _ => Wire::Varint(reader.varint()?),
                    };
                    if let Some(v) = decode_single(&kind, special, w, path)? {
                        list.push(v);
                    }
                }
            }
            (w, _) => list
                .push(decode_single(&kind, special, w, path)?.unwrap_or_else(|| zero_json(&kind))),
        }
        return Ok(());
    }
    match decode_single(&kind, special, wire, path)?.filter(|v| !unset_go_value(field, v)) {
        Some(v) => {
            out.insert(name.to_string(), v);
        }
        // An empty string or time: unset (see the module docs).
        None => {
            out.remove(name);
        }
    }
    Ok(())
}

/// Non-pointer Go fields whose zero Go always writes and JSON omits (`omitempty`): a zero
/// there means unset. Pointer fields (`replicas`, `automountServiceAccountToken`,
/// `backoffLimit`, `terminationGracePeriodSeconds`, …) keep their zeros.
const GO_VALUE_FIELDS: &[(&str, &[&str])] = &[
    ("meta.v1.ObjectMeta", &["generation"]),
    ("core.v1.Container", &["stdin", "stdinOnce", "tty"]),
    ("core.v1.EphemeralContainer", &["stdin", "stdinOnce", "tty"]),
    ("core.v1.ContainerPort", &["hostPort"]),
    ("core.v1.VolumeMount", &["readOnly"]),
    ("core.v1.PodSpec", &["hostNetwork", "hostPID", "hostIPC"]),
    (
        "core.v1.Probe",
        &[
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ],
    ),
    ("core.v1.ServicePort", &["nodePort"]),
    (
        "core.v1.ServiceSpec",
        &["healthCheckNodePort", "publishNotReadyAddresses"],
    ),
    ("core.v1.Event", &["count"]),
    ("apps.v1.DeploymentSpec", &["minReadySeconds", "paused"]),
    ("apps.v1.ReplicaSetSpec", &["minReadySeconds"]),
    ("apps.v1.DaemonSetSpec", &["minReadySeconds"]),
    ("apps.v1.StatefulSetSpec", &["minReadySeconds"]),
    ("scheduling.v1.PriorityClass", &["value", "globalDefault"]),
];

/// Whether `value` is a Go zero value that means "unset" for `field`: the non-pointer fields
/// above, and any zero in a `…Status` message (server-owned; clients send zero counts).
fn unset_go_value(field: &FieldDescriptor, value: &Json) -> bool {
    let zero = match value {
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if !zero {
        return false;
    }
    let message = field.parent_message();
    let name = message
        .full_name()
        .strip_prefix("navarch.api.")
        .unwrap_or_default();
    message.name().ends_with("Status")
        || GO_VALUE_FIELDS
            .iter()
            .any(|(m, fields)| *m == name && fields.contains(&field.name()))
}

fn packable(kind: &Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

fn zero_json(kind: &Kind) -> Json {
    match kind {
        Kind::String | Kind::Bytes => Json::String(String::new()),
        Kind::Bool => Json::Bool(false),
        Kind::Message(m) if m.full_name() == QUANTITY => Json::String("0".into()),
        Kind::Message(m) if m.full_name() == STRING_LIST => Json::Array(Vec::new()),
        Kind::Message(_) => Json::Object(Map::new()),
        _ => Json::from(0),
    }
}

fn expect_len<'a>(wire: Wire<'a>, path: &str) -> Result<&'a [u8], ApiError> {
    match wire {
        Wire::Len(b) => Ok(b),
        _ => Err(bad(format!("{path}: expected a length-delimited field"))),
    }
}

fn expect_varint(wire: Wire<'_>, path: &str) -> Result<u64, ApiError> {
    match wire {
        Wire::Varint(v) => Ok(v),
        _ => Err(bad(format!("{path}: expected a varint"))),
    }
}

/// One value; `None` for what Kubernetes treats as unset (empty strings and times).
fn decode_single(
    kind: &Kind,
    special: Special,
    wire: Wire<'_>,
    path: &str,
) -> Result<Option<Json>, ApiError> {
    if special != Special::None {
        return decode_special(special, expect_len(wire, path)?, path);
    }
    Ok(Some(match kind {
        Kind::String => {
            let s = utf8(expect_len(wire, path)?, path)?;
            // `storageClassName: ""` (no dynamic provisioning) is Go's one `*string` whose
            // empty value differs from unset.
            if s.is_empty() && !path.ends_with("storageClassName") {
                return Ok(None);
            }
            Json::String(s)
        }
        Kind::Bytes => Json::String(BASE64.encode(expect_len(wire, path)?)),
        Kind::Bool => Json::Bool(expect_varint(wire, path)? != 0),
        // Go writes negative int32s sign-extended to 64 bits.
        Kind::Int32 => Json::from(expect_varint(wire, path)? as i64 as i32),
        Kind::Int64 => Json::from(expect_varint(wire, path)? as i64),
        Kind::Uint32 => Json::from(expect_varint(wire, path)? as u32),
        Kind::Uint64 => Json::from(expect_varint(wire, path)?),
        Kind::Double => match wire {
            Wire::Fixed64(bits) => serde_json::Number::from_f64(f64::from_bits(bits))
                .map(Json::Number)
                .unwrap_or(Json::Null),
            _ => return Err(bad(format!("{path}: expected a 64-bit float"))),
        },
        Kind::Float => match wire {
            Wire::Fixed32(bits) => serde_json::Number::from_f64(f64::from(f32::from_bits(bits)))
                .map(Json::Number)
                .unwrap_or(Json::Null),
            _ => return Err(bad(format!("{path}: expected a 32-bit float"))),
        },
        Kind::Message(m) => {
            let b = expect_len(wire, path)?;
            match m.full_name() {
                QUANTITY => {
                    let mut s = String::new();
                    let mut reader = Reader::new(b);
                    while let Some((tag, w)) = reader.key()? {
                        if let (1, Wire::Len(v)) = (tag, w) {
                            s = utf8(v, path)?;
                        }
                    }
                    // Go reads an empty Quantity as zero.
                    Json::String(if s.is_empty() { "0".into() } else { s })
                }
                INT_OR_STRING => {
                    let (mut ty, mut int_val, mut str_val) = (0, 0i32, String::new());
                    let mut reader = Reader::new(b);
                    while let Some((tag, w)) = reader.key()? {
                        match (tag, w) {
                            (1, Wire::Varint(v)) => ty = v,
                            (2, Wire::Varint(v)) => int_val = v as i64 as i32,
                            (3, Wire::Len(v)) => str_val = utf8(v, path)?,
                            _ => {}
                        }
                    }
                    if ty == 1 {
                        Json::String(str_val)
                    } else {
                        Json::from(int_val)
                    }
                }
                RAW_JSON => {
                    let mut raw: &[u8] = &[];
                    let mut reader = Reader::new(b);
                    while let Some((tag, w)) = reader.key()? {
                        if let (1, Wire::Len(v)) = (tag, w) {
                            raw = v;
                        }
                    }
                    if raw.is_empty() {
                        return Ok(None);
                    }
                    serde_json::from_slice(raw)
                        .map_err(|e| bad(format!("{path}: embedded JSON: {e}")))?
                }
                STRING_LIST => {
                    let mut items = Vec::new();
                    let mut reader = Reader::new(b);
                    while let Some((tag, w)) = reader.key()? {
                        if let (1, Wire::Len(v)) = (tag, w) {
                            items.push(Json::String(utf8(v, path)?));
                        }
                    }
                    Json::Array(items)
                }
                _ => {
                    let mut map = Map::new();
                    decode_message(m, b, &mut map, path)?;
                    Json::Object(map)
                }
            }
        }
        Kind::Enum(_) => Json::from(expect_varint(wire, path)? as i64 as i32),
        Kind::Sint32
        | Kind::Sint64
        | Kind::Fixed32
        | Kind::Fixed64
        | Kind::Sfixed32
        | Kind::Sfixed64 => {
            return Err(bad(format!("{path}: unexpected field type {kind:?}")));
        }
    }))
}

fn decode_special(special: Special, bytes: &[u8], path: &str) -> Result<Option<Json>, ApiError> {
    let (mut first, mut second) = (0i64, 0i64);
    let mut reader = Reader::new(bytes);
    while let Some((tag, w)) = reader.key()? {
        match (tag, w) {
            (1, Wire::Varint(v)) => first = v as i64,
            (2, Wire::Varint(v)) => second = i64::from(v as i64 as i32),
            _ => {}
        }
    }
    Ok(Some(Json::String(match special {
        Special::Time | Special::MicroTime => {
            // Go writes the zero time as an empty message: unset.
            if bytes.is_empty() {
                return Ok(None);
            }
            let nanos = i32::try_from(second).unwrap_or(0);
            let ts = jiff::Timestamp::new(first, 0)
                .map_err(|e| bad(format!("{path}: time out of range: {e}")))?;
            let seconds = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            if special == Special::Time {
                format!("{seconds}Z")
            } else {
                format!("{seconds}.{:06}Z", nanos / 1000)
            }
        }
        Special::Duration => go_duration(first),
        Special::None => unreachable!("decode_special is only called for special types"),
    })))
}

/// Go's `time.Duration.String()` (`1h0m0s`, `1.5s`, `300ms`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |value: u64, unit: u64| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let digits = unit.to_string().len() - 1;
            let f = format!("{rest:0digits$}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = (n / 60_000_000_000) % 60;
    let seconds = frac(n % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

/// Parses a Go duration string (`1h0m0s`, `1.5s`, `300ms`) into nanoseconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * scale;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

// ---- encoding -------------------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire_type: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_key(out, tag, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_uvarint_field(out: &mut Vec<u8>, tag: u32, v: u64) {
    put_key(out, tag, 0);
    put_varint(out, v);
}

/// One of our fields placed at its Kubernetes tag path.
struct Placed<'a> {
    path: Vec<u32>,
    special: Special,
    field: FieldDescriptor,
    value: &'a Value,
}

fn encode_message(message: &DynamicMessage) -> Result<Vec<u8>, ApiError> {
    let desc = prost_reflect::ReflectMessage::descriptor(message);
    let Some(wire) = TABLE.get(desc.full_name()) else {
        return Err(bad(format!(
            "{} has no Kubernetes protobuf form",
            desc.full_name()
        )));
    };
    let mut placed = Vec::new();
    for (field, value) in message.fields() {
        // Fields Kubernetes (as of k8s-pb) has no number for cannot be sent.
        let Some((path, special)) = wire.paths.get(field.name()) else {
            continue;
        };
        placed.push(Placed {
            path: path.clone(),
            special: *special,
            field,
            value,
        });
    }
    encode_placed(placed)
}

/// Writes fields by tag, gathering those of embedded structs into their sub-message.
fn encode_placed(mut placed: Vec<Placed<'_>>) -> Result<Vec<u8>, ApiError> {
    placed.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = Vec::new();
    let mut iter = placed.into_iter().peekable();
    while let Some(first) = iter.next() {
        if first.path.len() == 1 {
            encode_field(
                &mut out,
                first.path[0],
                first.special,
                &first.field,
                first.value,
            )?;
            continue;
        }
        let tag = first.path[0];
        let mut group = vec![first];
        while let Some(next) = iter.next_if(|p| p.path.len() > 1 && p.path[0] == tag) {
            group.push(next);
        }
        for p in &mut group {
            p.path.remove(0);
        }
        let inner = encode_placed(group)?;
        put_bytes(&mut out, tag, &inner);
    }
    Ok(out)
}

fn encode_field(
    out: &mut Vec<u8>,
    tag: u32,
    special: Special,
    field: &FieldDescriptor,
    value: &Value,
) -> Result<(), ApiError> {
    if field.is_map() {
        let (Value::Map(entries), Kind::Message(entry)) = (value, field.kind()) else {
            return Ok(());
        };
        let value_kind = entry.map_entry_value_field().kind();
        let mut keys: Vec<&MapKey> = entries.keys().collect();
        keys.sort();
        for key in keys {
            let MapKey::String(k) = key else { continue };
            let mut item = Vec::new();
            put_bytes(&mut item, 1, k.as_bytes());
            encode_single(&mut item, 2, Special::None, &value_kind, &entries[key])?;
            put_bytes(out, tag, &item);
        }
        return Ok(());
    }
    if let Value::List(items) = value {
        // Unpacked, as Kubernetes' proto2 messages are written.
        for item in items {
            encode_single(out, tag, special, &field.kind(), item)?;
        }
        return Ok(());
    }
    encode_single(out, tag, special, &field.kind(), value)
}

fn encode_single(
    out: &mut Vec<u8>,
    tag: u32,
    special: Special,
    kind: &Kind,
    value: &Value,
) -> Result<(), ApiError> {
    if special != Special::None {
        let s = value.as_str().unwrap_or_default();
        let mut inner = Vec::new();
        match special {
            Special::Time | Special::MicroTime => {
                let ts: jiff::Timestamp = s
                    .parse()
                    .map_err(|e| bad(format!("invalid time {s:?}: {e}")))?;
                put_uvarint_field(&mut inner, 1, ts.as_second() as u64);
                let nanos = ts.subsec_nanosecond();
                if nanos != 0 {
                    put_uvarint_field(&mut inner, 2, nanos as i64 as u64);
                }
            }
            Special::Duration => {
                let nanos =
                    parse_go_duration(s).ok_or_else(|| bad(format!("invalid duration {s:?}")))?;
                put_uvarint_field(&mut inner, 1, nanos as u64);
            }
            Special::None => {}
        }
        put_bytes(out, tag, &inner);
        return Ok(());
    }
    match value {
        Value::Bool(b) => put_uvarint_field(out, tag, u64::from(*b)),
        Value::I32(i) => put_uvarint_field(out, tag, i64::from(*i) as u64),
        Value::I64(i) => put_uvarint_field(out, tag, *i as u64),
        Value::U32(i) => put_uvarint_field(out, tag, u64::from(*i)),
        Value::U64(i) => put_uvarint_field(out, tag, *i),
        Value::EnumNumber(i) => put_uvarint_field(out, tag, i64::from(*i) as u64),
        Value::F64(f) => {
            put_key(out, tag, 1);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::F32(f) => {
            put_key(out, tag, 5);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => put_bytes(out, tag, s.as_bytes()),
        Value::Bytes(b) => put_bytes(out, tag, b),
        Value::Message(m) => {
            let mut inner = Vec::new();
            match prost_reflect::ReflectMessage::descriptor(m).full_name() {
                QUANTITY => {
                    let s = codec::to_json(m);
                    let s = s.get("value").and_then(Json::as_str).unwrap_or_default();
                    put_bytes(&mut inner, 1, s.as_bytes());
                }
                INT_OR_STRING => {
                    if let Some(Value::I32(i)) = m
                        .get_field_by_name("int_val")
                        .filter(|_| m.has_field_by_name("int_val"))
                        .as_deref()
                    {
                        put_uvarint_field(&mut inner, 1, 0);
                        put_uvarint_field(&mut inner, 2, i64::from(*i) as u64);
                    } else {
                        let s = m
                            .get_field_by_name("str_val")
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        put_uvarint_field(&mut inner, 1, 1);
                        put_bytes(&mut inner, 3, s.as_bytes());
                    }
                }
                RAW_JSON => {
                    let s = m
                        .get_field_by_name("json")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    put_bytes(&mut inner, 1, s.as_bytes());
                }
                STRING_LIST => {
                    if let Some(Value::List(items)) = m.get_field_by_name("items").as_deref() {
                        for item in items {
                            put_bytes(&mut inner, 1, item.as_str().unwrap_or_default().as_bytes());
                        }
                    }
                }
                _ => inner = encode_message(m)?,
            }
            put_bytes(out, tag, &inner);
        }
        Value::List(_) | Value::Map(_) => {
            return Err(bad(format!(
                "unexpected nested collection for {kind:?} at tag {tag}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Reason;

    #[test]
    fn go_durations() {
        for (nanos, text) in [
            (0, "0s"),
            (3_600_000_000_000, "1h0m0s"),
            (1_500_000_000, "1.5s"),
            (300_000_000, "300ms"),
            (90_000_000_000, "1m30s"),
        ] {
            assert_eq!(go_duration(nanos), text);
            assert_eq!(parse_go_duration(text), Some(nanos), "{text}");
        }
    }

    #[test]
    fn times_and_the_zero_time() {
        let mut body = Vec::new();
        put_uvarint_field(&mut body, 1, 1_704_164_645);
        put_uvarint_field(&mut body, 2, 123_456_789);
        assert_eq!(
            decode_special(Special::Time, &body, "t").unwrap(),
            Some(Json::String("2024-01-02T03:04:05Z".into()))
        );
        assert_eq!(
            decode_special(Special::MicroTime, &body, "t").unwrap(),
            Some(Json::String("2024-01-02T03:04:05.123456Z".into()))
        );
        assert_eq!(decode_special(Special::Time, &[], "t").unwrap(), None);
    }

    #[test]
    fn rejects_bodies_without_the_magic() {
        let err = decode(b"{\"kind\":\"Pod\"}").unwrap_err();
        assert_eq!(err.reason, Reason::BadRequest);
    }

    #[test]
    fn every_served_kind_has_a_table_entry() {
        // The metrics.k8s.io kinds are served as JSON only (what `kubectl top` and the HPA
        // ask for); every stored kind speaks Kubernetes' protobuf too.
        for kind in kinds::KINDS.iter().filter(|k| !k.virtual_kind) {
            assert!(TABLE.contains_key(kind.message), "{}", kind.message);
        }
        for (api_version, kind) in [
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("policy/v1", "Eviction"),
            ("v1", "Binding"),
            ("autoscaling/v1", "Scale"),
            ("meta.k8s.io/v1", "DeleteOptions"),
            ("v1", "DeleteOptions"),
            ("v1", "PodList"),
        ] {
            let desc = descriptor_for(api_version, kind).unwrap_or_else(|| panic!("{kind}"));
            assert!(TABLE.contains_key(desc.full_name()), "{kind}");
        }
    }
}
