//! [`Object`]: an object of any served kind, with typed access to its metadata.
//!
//! The gateway handles every kind through this one type: the message itself is a
//! `DynamicMessage` over the kind's descriptor, so spec/status separation, generation and
//! metadata rules are written once, not per kind.

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Value};
use serde_json::Value as Json;

use crate::codec::{self, FieldValidation};
use crate::errors::{ApiError, FieldError, FieldErrorType};
use crate::kinds::{self, KindInfo};
use crate::meta::v1::ObjectMeta;

/// Content types an object can be encoded in.
pub mod content_type {
    /// The protobuf encoding of the kind's message (the default).
    pub const PROTOBUF: &str = "application/vnd.navarch.protobuf";
    pub const JSON: &str = "application/json";
    pub const YAML: &str = "application/yaml";
}

/// One object of a served kind.
#[derive(Clone, Debug)]
pub struct Object {
    pub kind: &'static KindInfo,
    pub message: DynamicMessage,
}

impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.kind, other.kind) && self.message == other.message
    }
}

impl Object {
    /// An empty object of `kind`.
    pub fn new(kind: &'static KindInfo) -> Self {
        Self {
            kind,
            message: DynamicMessage::new(kind.descriptor()),
        }
    }

    /// Decodes the protobuf encoding (as stored).
    pub fn decode(kind: &'static KindInfo, bytes: &[u8]) -> Result<Self, ApiError> {
        DynamicMessage::decode(kind.descriptor(), bytes)
            .map(|message| Self { kind, message })
            .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kind.kind)))
    }

    /// Decodes Kubernetes JSON. Returns the unknown fields dropped (warnings), or an error
    /// naming each field at fault.
    pub fn from_json(
        kind: &'static KindInfo,
        json: &Json,
        validation: FieldValidation,
    ) -> Result<(Self, Vec<String>), ApiError> {
        check_type_meta(kind, json)?;
        let decoded = codec::from_json(&kind.descriptor(), json, validation).map_err(|e| {
            let causes = e
                .problems
                .iter()
                .map(|p| match p {
                    codec::FieldProblem::Unknown(f) => FieldError {
                        kind: FieldErrorType::Unknown,
                        field: f.clone(),
                        value: None,
                        detail: format!("unknown field \"{f}\""),
                    },
                    codec::FieldProblem::BadValue { field, message } => FieldError {
                        kind: FieldErrorType::Invalid,
                        field: field.clone(),
                        value: None,
                        detail: message.clone(),
                    },
                })
                .collect::<Vec<_>>();
            let name = json
                .pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or_default();
            let mut err = ApiError::bad_request(format!("strict decoding error: {e}"))
                .on(kind.group, kind.kind, name);
            err.causes = causes;
            err
        })?;
        let mut obj = Self {
            kind,
            message: decoded.message,
        };
        obj.set_type_meta();
        Ok((obj, decoded.unknown_fields))
    }

    /// Decodes an object sent in `content_type` (protobuf, JSON or YAML).
    pub fn from_raw(
        kind: &'static KindInfo,
        raw: &[u8],
        content_type: &str,
        validation: FieldValidation,
    ) -> Result<(Self, Vec<String>), ApiError> {
        match content_type {
            "" | content_type::PROTOBUF => {
                let message = DynamicMessage::decode(kind.descriptor(), raw).map_err(|e| {
                    ApiError::bad_request(format!("invalid protobuf for {}: {e}", kind.kind))
                })?;
                let mut obj = Self { kind, message };
                obj.set_type_meta();
                Ok((obj, Vec::new()))
            }
            ct if ct.starts_with(content_type::JSON) || ct.starts_with(content_type::YAML) => {
                let text = std::str::from_utf8(raw)
                    .map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
                let json: Json = if ct.starts_with(content_type::JSON) {
                    serde_json::from_str(text)
                        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
                } else {
                    codec::yaml_to_json(text)
                        .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?
                };
                Self::from_json(kind, &json, validation)
            }
            other => Err(ApiError::new(
                crate::Reason::UnsupportedMediaType,
                format!("the content type {other:?} is not supported"),
            )),
        }
    }

    /// Encodes in `content_type` (protobuf when empty).
    pub fn to_raw(&self, content_type: &str) -> Result<Bytes, ApiError> {
        Ok(match content_type {
            "" | content_type::PROTOBUF => self.message.encode_to_vec().into(),
            ct if ct.starts_with(content_type::JSON) => serde_json::to_vec(&self.to_json())
                .map_err(|e| ApiError::internal(e.to_string()))?
                .into(),
            ct if ct.starts_with(content_type::YAML) => serde_yaml::to_string(&self.to_json())
                .map_err(|e| ApiError::internal(e.to_string()))?
                .into_bytes()
                .into(),
            other => {
                return Err(ApiError::new(
                    crate::Reason::NotAcceptable,
                    format!("cannot encode objects as {other:?}"),
                ));
            }
        })
    }

    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.message.encode_to_vec()
    }

    /// The protobuf encoding of the object stored as `stored` (its encoding without
    /// resourceVersion) at `revision`, without decoding it: the stored bytes followed by
    /// apiVersion, kind and `metadata.resourceVersion`, which protobuf decoders merge into
    /// the message (a scalar's last occurrence wins, an embedded message's occurrences
    /// merge). The same object as [`Object::decode`], [`Object::set_type_meta`],
    /// [`Object::set_resource_version`] and [`Object::encode`] give.
    ///
    /// The tail is written field by field (numbers from the kind's descriptor, in number order
    /// as an encoder writes them) rather than built as a message and encoded: it is sent once
    /// per object in every list and watch.
    pub fn stored_encoding(kind: &'static KindInfo, stored: &[u8], revision: i64) -> Vec<u8> {
        use prost::encoding::{WireType, encode_key, encode_varint, string};
        let desc = kind.descriptor();
        let mut fields: Vec<(u32, Vec<u8>)> = Vec::with_capacity(3);
        for (name, value) in [
            ("apiVersion", kind.api_version()),
            ("kind", kind.kind.to_string()),
        ] {
            if let Some(f) = desc.get_field_by_name(name) {
                let mut field = Vec::with_capacity(value.len() + 2);
                string::encode(f.number(), &value, &mut field);
                fields.push((f.number(), field));
            }
        }
        if let Some(f) = desc.get_field_by_name("metadata")
            && let Some(rv) = f
                .kind()
                .as_message()
                .and_then(|m| m.get_field_by_name("resourceVersion"))
        {
            let mut meta = Vec::new();
            string::encode(rv.number(), &revision.to_string(), &mut meta);
            let mut field = Vec::with_capacity(meta.len() + 4);
            encode_key(f.number(), WireType::LengthDelimited, &mut field);
            encode_varint(meta.len() as u64, &mut field);
            field.extend_from_slice(&meta);
            fields.push((f.number(), field));
        }
        fields.sort_unstable_by_key(|(n, _)| *n);
        let mut out =
            Vec::with_capacity(stored.len() + fields.iter().map(|(_, f)| f.len()).sum::<usize>());
        out.extend_from_slice(stored);
        for (_, field) in fields {
            out.extend_from_slice(&field);
        }
        out
    }

    /// The Kubernetes JSON form.
    pub fn to_json(&self) -> Json {
        codec::to_json(&self.message)
    }

    /// Sets `apiVersion` and `kind` to the served ones.
    pub fn set_type_meta(&mut self) {
        self.message
            .set_field_by_name("apiVersion", Value::String(self.kind.api_version()));
        self.message
            .set_field_by_name("kind", Value::String(self.kind.kind.to_string()));
    }

    /// The object's metadata (empty when absent).
    pub fn meta(&self) -> ObjectMeta {
        match self.message.get_field_by_name("metadata").as_deref() {
            Some(Value::Message(m)) if self.message.has_field_by_name("metadata") => {
                m.transcode_to::<ObjectMeta>().unwrap_or_default()
            }
            _ => ObjectMeta::default(),
        }
    }

    /// Replaces the object's metadata.
    pub fn set_meta(&mut self, meta: &ObjectMeta) {
        let desc = codec::descriptor_of::<ObjectMeta>();
        let m = DynamicMessage::decode(desc, meta.encode_to_vec().as_slice())
            .expect("ObjectMeta round-trips");
        self.message
            .set_field_by_name("metadata", Value::Message(m));
    }

    /// Edits the metadata in place.
    pub fn update_meta(&mut self, f: impl FnOnce(&mut ObjectMeta)) {
        let mut meta = self.meta();
        f(&mut meta);
        self.set_meta(&meta);
    }

    /// A string field of the metadata, read without converting the whole metadata.
    fn meta_str(&self, field: &str) -> Option<String> {
        if !self.message.has_field_by_name("metadata") {
            return None;
        }
        match self.message.get_field_by_name("metadata").as_deref() {
            Some(Value::Message(m)) if m.has_field_by_name(field) => m
                .get_field_by_name(field)
                .and_then(|v| v.as_str().map(str::to_string)),
            _ => None,
        }
    }

    /// Sets (or clears) a string field of the metadata in place.
    fn set_meta_str(&mut self, field: &str, value: Option<String>) {
        if !self.message.has_field_by_name("metadata") {
            self.set_meta(&ObjectMeta::default());
        }
        if let Some(Value::Message(m)) = self.message.get_field_by_name_mut("metadata") {
            match value {
                Some(v) => m.set_field_by_name(field, Value::String(v)),
                None => m.clear_field_by_name(field),
            }
        }
    }

    /// `metadata.labels`, read without converting the whole metadata.
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        if !self.message.has_field_by_name("metadata") {
            return Default::default();
        }
        match self.message.get_field_by_name("metadata").as_deref() {
            Some(Value::Message(m)) => match m.get_field_by_name("labels").as_deref() {
                Some(Value::Map(map)) => map
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect(),
                _ => Default::default(),
            },
            _ => Default::default(),
        }
    }

    pub fn name(&self) -> String {
        self.meta_str("name").unwrap_or_default()
    }

    pub fn namespace(&self) -> String {
        self.meta_str("namespace").unwrap_or_default()
    }

    /// Sets `metadata.resourceVersion` (`None` clears it).
    pub fn set_resource_version(&mut self, revision: Option<i64>) {
        self.set_meta_str("resourceVersion", revision.map(|r| r.to_string()));
    }

    /// Whether `metadata.resourceVersion` is set (even to "").
    pub fn has_resource_version(&self) -> bool {
        self.meta_str("resourceVersion").is_some()
    }

    /// `metadata.resourceVersion` parsed as a store revision (0 when absent).
    pub fn resource_version(&self) -> Result<i64, ApiError> {
        match self.meta_str("resourceVersion").as_deref() {
            None | Some("") => Ok(0),
            Some(rv) => rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))),
        }
    }

    /// Whether the kind has a field named `name` set (`spec`, `status`).
    pub fn has(&self, field: &str) -> bool {
        self.message.has_field_by_name(field)
    }

    /// A top-level field's value.
    pub fn field(&self, name: &str) -> Option<Value> {
        if !self.message.has_field_by_name(name) {
            return None;
        }
        self.message.get_field_by_name(name).map(|v| v.into_owned())
    }

    /// Sets or clears a top-level field.
    pub fn set_field(&mut self, name: &str, value: Option<Value>) {
        match value {
            Some(v) => self.message.set_field_by_name(name, v),
            None => self.message.clear_field_by_name(name),
        }
    }

    /// Whether everything but `metadata`, `status`, `apiVersion` and `kind` (what a spec
    /// change is, for `metadata.generation`) is the same in both. Compared as values, not as
    /// encodings: map fields (labels, selectors) encode in no fixed order.
    pub fn same_spec(&self, other: &Self) -> bool {
        let strip = |o: &Self| {
            let mut m = o.message.clone();
            for f in ["metadata", "status", "apiVersion", "kind"] {
                m.clear_field_by_name(f);
            }
            m
        };
        strip(self) == strip(other)
    }

    /// Converts to a generated type.
    pub fn to_typed<T: prost::Message + Default>(&self) -> Result<T, ApiError> {
        self.message
            .transcode_to::<T>()
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Builds from a generated type of a served kind.
    pub fn from_typed<T: prost::Message + prost::Name>(value: &T) -> Result<Self, ApiError> {
        let kind = kinds::by_message(&T::full_name()).ok_or_else(|| {
            ApiError::bad_request(format!("{} is not a served kind", T::full_name()))
        })?;
        let mut obj = Self::decode(kind, &value.encode_to_vec())?;
        obj.set_type_meta();
        Ok(obj)
    }
}

/// `apiVersion`/`kind` in a body must name the kind of the path (or be absent).
fn check_type_meta(kind: &KindInfo, json: &Json) -> Result<(), ApiError> {
    if !json.is_object() {
        return Err(ApiError::bad_request(format!(
            "expected a {} object",
            kind.kind
        )));
    }
    let api_version = json
        .get("apiVersion")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let k = json.get("kind").and_then(Json::as_str).unwrap_or_default();
    if !k.is_empty() && k != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the kind {k:?} in the body does not match the kind {:?} of the request",
            kind.kind
        )));
    }
    if !api_version.is_empty() && api_version != kind.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version {api_version:?} in the body does not match the expected API version {:?}",
            kind.api_version()
        )));
    }
    Ok(())
}

impl crate::selectors::FieldSource for Object {
    /// Walks the message by field names (a field's proto name is its JSON name), without
    /// converting the object to JSON.
    fn lookup(&self, path: &str) -> Option<String> {
        fn render(value: &Value) -> Option<String> {
            match value {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::I32(n) => Some(n.to_string()),
                Value::I64(n) => Some(n.to_string()),
                Value::U32(n) => Some(n.to_string()),
                Value::U64(n) => Some(n.to_string()),
                Value::Message(m) => Some(codec::to_json(m).to_string()),
                _ => None,
            }
        }
        let mut parts = path.split('.');
        let mut message = &self.message;
        let mut part = parts.next()?;
        loop {
            if !message.has_field_by_name(part) {
                return None;
            }
            // A set field is borrowed from the message.
            let std::borrow::Cow::Borrowed(mut value) = message.get_field_by_name(part)? else {
                return None;
            };
            let next = parts.next();
            let next = match (value, next) {
                (Value::List(items), Some(index)) => {
                    value = items.get(index.parse::<usize>().ok()?)?;
                    parts.next()
                }
                (_, next) => next,
            };
            match (value, next) {
                (value, None) => return render(value),
                (Value::Message(m), Some(p)) => {
                    message = m;
                    part = p;
                }
                _ => return None,
            }
        }
    }
}
