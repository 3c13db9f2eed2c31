//! The Kubernetes JSON (and YAML) form of our protobuf objects.
//!
//! The mapping reflects on the descriptors compiled from `proto/`: a field's proto name is its
//! Kubernetes JSON name; int64 are JSON numbers; `bytes` are base64 strings; and four messages
//! have custom forms: `Quantity` (a string; numbers accepted on input and canonicalised),
//! `IntOrString` (a number or a string), `RawJson` (free JSON) and `StringList` (an array).
//!
//! Decoding walks the JSON and reports every unknown field by its path, so the caller can apply
//! Kubernetes' `fieldValidation` (Strict rejects, Warn warns, Ignore drops). Type errors name the
//! field path and what was expected.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};
use serde_json::{Map, Number, Value as Json};

use crate::quantity::Quantity;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/navarch_descriptor.bin")).as_ref(),
    )
    .expect("descriptor set compiled by build.rs is valid")
});

/// The descriptors of every message in `proto/`.
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// The raw `FileDescriptorSet` bytes (for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/navarch_descriptor.bin"));

const QUANTITY: &str = "navarch.api.meta.v1.Quantity";
const INT_OR_STRING: &str = "navarch.api.meta.v1.IntOrString";
const RAW_JSON: &str = "navarch.api.meta.v1.RawJson";
const STRING_LIST: &str = "navarch.api.meta.v1.StringList";

/// What to do with fields the schema does not know (Kubernetes' `fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request, naming every unknown field.
    Strict,
    /// Accept, dropping the fields, and return a warning for each.
    #[default]
    Warn,
    /// Drop unknown fields silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query/option value; empty means the default (Warn).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "Warn" => Some(Self::Warn),
            "Strict" => Some(Self::Strict),
            "Ignore" => Some(Self::Ignore),
            _ => None,
        }
    }
}

/// A decoding failure: the field path at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct DecodeError {
    pub problems: Vec<FieldProblem>,
}

/// One field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("unknown field \"{0}\"")]
    Unknown(String),
    #[error("{field}: {message}")]
    BadValue { field: String, message: String },
}

impl FieldProblem {
    /// The field path (`spec.containers[0].image`).
    pub fn field(&self) -> &str {
        match self {
            FieldProblem::Unknown(f) => f,
            FieldProblem::BadValue { field, .. } => field,
        }
    }
}

/// The result of a successful decode.
#[derive(Debug)]
pub struct Decoded {
    pub message: DynamicMessage,
    /// Paths of unknown fields that were dropped (warnings under `Warn`).
    pub unknown_fields: Vec<String>,
}

/// Decodes Kubernetes JSON into a message of `desc`.
pub fn from_json(
    desc: &MessageDescriptor,
    json: &Json,
    validation: FieldValidation,
) -> Result<Decoded, DecodeError> {
    let mut ctx = Ctx {
        unknown: Vec::new(),
        errors: Vec::new(),
    };
    let message = ctx.message(desc, json, "");
    if validation == FieldValidation::Strict && !ctx.unknown.is_empty() {
        ctx.errors
            .extend(ctx.unknown.drain(..).map(FieldProblem::Unknown));
    }
    if !ctx.errors.is_empty() {
        return Err(DecodeError {
            problems: ctx.errors,
        });
    }
    let unknown_fields = if validation == FieldValidation::Ignore {
        Vec::new()
    } else {
        ctx.unknown
    };
    Ok(Decoded {
        message,
        unknown_fields,
    })
}

/// Decodes Kubernetes JSON straight into a generated type.
pub fn decode_json<T: prost::Message + Default + prost::Name>(
    json: &Json,
    validation: FieldValidation,
) -> Result<(T, Vec<String>), DecodeError> {
    let desc = descriptor_of::<T>();
    let decoded = from_json(&desc, json, validation)?;
    let typed = decoded
        .message
        .transcode_to::<T>()
        .map_err(|e| DecodeError {
            problems: vec![FieldProblem::BadValue {
                field: String::new(),
                message: e.to_string(),
            }],
        })?;
    Ok((typed, decoded.unknown_fields))
}

/// The descriptor of a generated type.
pub fn descriptor_of<T: prost::Name>() -> MessageDescriptor {
    pool()
        .get_message_by_name(&T::full_name())
        .unwrap_or_else(|| panic!("{} is compiled into the descriptor pool", T::full_name()))
}

/// Encodes a message in its Kubernetes JSON form.
pub fn to_json(message: &DynamicMessage) -> Json {
    let mut map = Map::new();
    let mut fields: Vec<(FieldDescriptor, &Value)> = message.fields().collect();
    fields.sort_by_key(|(f, _)| f.number());
    for (field, value) in fields {
        if let Some(json) = value_to_json(&field, value) {
            map.insert(field.name().to_string(), json);
        }
    }
    Json::Object(map)
}

/// Encodes a generated type in its Kubernetes JSON form.
pub fn encode_json<T: prost::Message + prost::Name>(value: &T) -> Json {
    let desc = descriptor_of::<T>();
    let message = DynamicMessage::decode(desc, value.encode_to_vec().as_slice())
        .expect("a generated message decodes with its own descriptor");
    to_json(&message)
}

fn value_to_json(field: &FieldDescriptor, value: &Value) -> Option<Json> {
    if field.is_map() {
        let Value::Map(entries) = value else {
            return None;
        };
        if entries.is_empty() {
            return None;
        }
        let Kind::Message(entry) = field.kind() else {
            return None;
        };
        let value_field = entry.map_entry_value_field();
        let mut keys: Vec<&MapKey> = entries.keys().collect();
        keys.sort();
        let mut map = Map::new();
        for key in keys {
            let MapKey::String(k) = key else { continue };
            if let Some(v) = single_to_json(&value_field.kind(), &entries[key]) {
                map.insert(k.clone(), v);
            }
        }
        return Some(Json::Object(map));
    }
    if field.is_list() {
        let Value::List(items) = value else {
            return None;
        };
        if items.is_empty() {
            return None;
        }
        let kind = field.kind();
        return Some(Json::Array(
            items
                .iter()
                .filter_map(|v| single_to_json(&kind, v))
                .collect(),
        ));
    }
    single_to_json(&field.kind(), value)
}

fn single_to_json(kind: &Kind, value: &Value) -> Option<Json> {
    Some(match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(i) => Json::Number((*i).into()),
        Value::I64(i) => Json::Number((*i).into()),
        Value::U32(i) => Json::Number((*i).into()),
        Value::U64(i) => Json::Number((*i).into()),
        Value::F32(f) => Number::from_f64(f64::from(*f)).map(Json::Number)?,
        Value::F64(f) => Number::from_f64(*f).map(Json::Number)?,
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(BASE64.encode(b)),
        Value::EnumNumber(n) => Json::Number((*n).into()),
        Value::Message(m) => {
            let Kind::Message(desc) = kind else {
                return None;
            };
            match desc.full_name() {
                QUANTITY => Json::String(string_field(m, "value")),
                INT_OR_STRING => {
                    if let Some(v) = m
                        .get_field_by_name("int_val")
                        .filter(|_| m.has_field_by_name("int_val"))
                    {
                        Json::Number(v.as_i32().unwrap_or(0).into())
                    } else {
                        Json::String(string_field(m, "str_val"))
                    }
                }
                RAW_JSON => serde_json::from_str(&string_field(m, "json")).unwrap_or(Json::Null),
                STRING_LIST => match m.get_field_by_name("items").as_deref() {
                    Some(Value::List(items)) => Json::Array(
                        items
                            .iter()
                            .filter_map(|v| v.as_str().map(|s| Json::String(s.into())))
                            .collect(),
                    ),
                    _ => Json::Array(Vec::new()),
                },
                _ => to_json(m),
            }
        }
        Value::List(_) | Value::Map(_) => return None,
    })
}

fn string_field(m: &DynamicMessage, name: &str) -> String {
    m.get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

struct Ctx {
    unknown: Vec<String>,
    errors: Vec<FieldProblem>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("bool {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => format!("string {:?}", truncate(s)),
        Json::Array(_) => "array".into(),
        Json::Object(_) => "object".into(),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        s.chars().take(40).collect::<String>() + "…"
    } else {
        s.into()
    }
}

impl Ctx {
    fn bad(&mut self, path: &str, message: String) {
        self.errors.push(FieldProblem::BadValue {
            field: path.to_string(),
            message,
        });
    }

    fn message(&mut self, desc: &MessageDescriptor, json: &Json, path: &str) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        let Json::Object(map) = json else {
            self.bad(path, format!("expected object, got {}", describe(json)));
            return msg;
        };
        for (key, value) in map {
            let field_path = join(path, key);
            let Some(field) = desc.get_field_by_name(key) else {
                self.unknown.push(field_path);
                continue;
            };
            if value.is_null() {
                continue;
            }
            if let Some(v) = self.field(&field, value, &field_path) {
                msg.set_field(&field, v);
            }
        }
        msg
    }

    fn field(&mut self, field: &FieldDescriptor, json: &Json, path: &str) -> Option<Value> {
        if field.is_map() {
            let Json::Object(map) = json else {
                self.bad(path, format!("expected object, got {}", describe(json)));
                return None;
            };
            let Kind::Message(entry) = field.kind() else {
                return None;
            };
            let value_kind = entry.map_entry_value_field().kind();
            let mut out = HashMap::with_capacity(map.len());
            for (k, v) in map {
                let item_path = format!("{path}[{k}]");
                if v.is_null() {
                    // Go decodes null map values as the zero value.
                    out.insert(MapKey::String(k.clone()), Value::default_value(&value_kind));
                    continue;
                }
                if let Some(v) = self.single(&value_kind, v, &item_path) {
                    out.insert(MapKey::String(k.clone()), v);
                }
            }
            return Some(Value::Map(out));
        }
        if field.is_list() {
            let Json::Array(items) = json else {
                self.bad(path, format!("expected array, got {}", describe(json)));
                return None;
            };
            let kind = field.kind();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_null() {
                    out.push(Value::default_value(&kind));
                    continue;
                }
                if let Some(v) = self.single(&kind, item, &item_path) {
                    out.push(v);
                }
            }
            return Some(Value::List(out));
        }
        self.single(&field.kind(), json, path)
    }

    fn single(&mut self, kind: &Kind, json: &Json, path: &str) -> Option<Value> {
        let wrong = |expected: &str| format!("expected {expected}, got {}", describe(json));
        match kind {
            Kind::String => match json {
                Json::String(s) => Some(Value::String(s.clone())),
                _ => {
                    self.bad(path, wrong("string"));
                    None
                }
            },
            Kind::Bool => match json {
                Json::Bool(b) => Some(Value::Bool(*b)),
                _ => {
                    self.bad(path, wrong("boolean"));
                    None
                }
            },
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                match json
                    .as_i64()
                    .or_else(|| whole_f64(json))
                    .and_then(|i| i32::try_from(i).ok())
                {
                    Some(i) => Some(Value::I32(i)),
                    None => {
                        self.bad(path, wrong("32-bit integer"));
                        None
                    }
                }
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                match json.as_i64().or_else(|| whole_f64(json)) {
                    Some(i) => Some(Value::I64(i)),
                    None => {
                        self.bad(path, wrong("64-bit integer"));
                        None
                    }
                }
            }
            Kind::Double => match json.as_f64() {
                Some(f) => Some(Value::F64(f)),
                None => {
                    self.bad(path, wrong("number"));
                    None
                }
            },
            Kind::Bytes => match json {
                Json::String(s) => match BASE64.decode(s.as_bytes()) {
                    Ok(b) => Some(Value::Bytes(b.into())),
                    Err(e) => {
                        self.bad(path, format!("illegal base64 data: {e}"));
                        None
                    }
                },
                _ => {
                    self.bad(path, wrong("base64 string"));
                    None
                }
            },
            Kind::Message(desc) => self.special(desc, json, path),
            other => {
                self.bad(path, format!("unsupported field kind {other:?}"));
                None
            }
        }
    }

    fn special(&mut self, desc: &MessageDescriptor, json: &Json, path: &str) -> Option<Value> {
        let mut msg = DynamicMessage::new(desc.clone());
        match desc.full_name() {
            QUANTITY => {
                let text = match json {
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    _ => {
                        self.bad(path, format!("expected quantity, got {}", describe(json)));
                        return None;
                    }
                };
                match text.parse::<Quantity>() {
                    Ok(q) => msg.set_field_by_name("value", Value::String(q.to_string())),
                    Err(e) => {
                        self.bad(path, format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {e}"));
                        return None;
                    }
                }
            }
            INT_OR_STRING => match json {
                Json::String(s) => msg.set_field_by_name("str_val", Value::String(s.clone())),
                Json::Number(_) => match json.as_i64().and_then(|i| i32::try_from(i).ok()) {
                    Some(i) => msg.set_field_by_name("int_val", Value::I32(i)),
                    None => {
                        self.bad(
                            path,
                            format!("expected 32-bit integer or string, got {}", describe(json)),
                        );
                        return None;
                    }
                },
                _ => {
                    self.bad(
                        path,
                        format!("expected integer or string, got {}", describe(json)),
                    );
                    return None;
                }
            },
            RAW_JSON => msg.set_field_by_name("json", Value::String(json.to_string())),
            STRING_LIST => {
                let Json::Array(items) = json else {
                    self.bad(
                        path,
                        format!("expected array of strings, got {}", describe(json)),
                    );
                    return None;
                };
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Json::String(s) => out.push(Value::String(s.clone())),
                        _ => self.bad(
                            &format!("{path}[{i}]"),
                            format!("expected string, got {}", describe(item)),
                        ),
                    }
                }
                msg.set_field_by_name("items", Value::List(out));
            }
            _ => return Some(Value::Message(self.message(desc, json, path))),
        }
        Some(Value::Message(msg))
    }
}

/// YAML/JSON floats that are whole numbers (`1.0`, `1e3`) as integers; Go's decoder rejects
/// fractions but YAML parsers hand `1e3` over as a float.
fn whole_f64(json: &Json) -> Option<i64> {
    if let Some(i) = octal(json) {
        return Some(i);
    }
    let f = json.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// Parses one YAML or JSON document into JSON. (YAML 1.1 octal ints such as `defaultMode: 0644`
/// arrive as strings; integer fields accept them, see `octal`.)
pub fn yaml_to_json(text: &str) -> Result<Json, serde_yaml::Error> {
    let value: serde_yaml::Value = serde_yaml::from_str(text)?;
    Ok(yaml_value_to_json(value))
}

/// Splits a multi-document YAML stream into JSON documents (empty documents are skipped).
pub fn yaml_documents(text: &str) -> Result<Vec<Json>, serde_yaml::Error> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        out.push(yaml_value_to_json(value));
    }
    Ok(out)
}

fn yaml_value_to_json(value: serde_yaml::Value) -> Json {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Json::Null,
        Y::Bool(b) => Json::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Json::Number(u.into())
            } else {
                n.as_f64()
                    .and_then(Number::from_f64)
                    .map(Json::Number)
                    .unwrap_or(Json::Null)
            }
        }
        Y::String(s) => Json::String(s),
        Y::Sequence(items) => Json::Array(items.into_iter().map(yaml_value_to_json).collect()),
        Y::Mapping(map) => Json::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Bool(b) => b.to_string(),
                        Y::Number(n) => n.to_string(),
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, yaml_value_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_value_to_json(tagged.value),
    }
}

/// Kubernetes reads manifests with a YAML 1.1 parser, where an unquoted `0644` is octal 420
/// (common for `defaultMode`). Our YAML 1.2 parser hands it over as the string "0644", so integer
/// fields accept such strings as octal.
fn octal(json: &Json) -> Option<i64> {
    let s = json.as_str()?;
    let digits = s.strip_prefix('0')?;
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    i64::from_str_radix(digits, 8).ok()
}
