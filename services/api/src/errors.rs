//! The one control-plane error type, with Kubernetes reasons and field causes.
//!
//! Every component returns [`ApiError`]; each edge converts it exactly once: the gateway into
//! a `tonic::Status` carrying a `meta.v1.Status` in its details, the facade into an HTTP
//! `kind: Status` body with the matching code.

use std::fmt;

use crate::meta::v1::{Status, StatusCause, StatusDetails};

/// Kubernetes' `StatusReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Expired,
    Invalid,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    NotAcceptable,
    MethodNotAllowed,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    Timeout,
}

impl Reason {
    /// The HTTP status code Kubernetes uses for this reason.
    pub fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::NotAcceptable => 406,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Gone | Reason::Expired => 410,
            Reason::RequestEntityTooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::TooManyRequests => 429,
            Reason::InternalError => 500,
            Reason::ServiceUnavailable => 503,
            Reason::Timeout => 504,
        }
    }

    /// The wire string (`NotFound`, `AlreadyExists`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Gone => "Gone",
            Reason::Expired => "Expired",
            Reason::Invalid => "Invalid",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Timeout => "Timeout",
        }
    }

    /// Parses the wire string.
    pub fn parse(s: &str) -> Option<Reason> {
        ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

const ALL: [Reason; 17] = [
    Reason::BadRequest,
    Reason::Unauthorized,
    Reason::Forbidden,
    Reason::NotFound,
    Reason::AlreadyExists,
    Reason::Conflict,
    Reason::Gone,
    Reason::Expired,
    Reason::Invalid,
    Reason::RequestEntityTooLarge,
    Reason::UnsupportedMediaType,
    Reason::NotAcceptable,
    Reason::MethodNotAllowed,
    Reason::TooManyRequests,
    Reason::InternalError,
    Reason::ServiceUnavailable,
    Reason::Timeout,
];

/// What is wrong with one field (Kubernetes' `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
    /// An unknown field (fieldValidation=Strict) or a value of the wrong JSON type.
    Unknown,
}

impl FieldErrorType {
    /// The `StatusCause.reason` string.
    pub fn cause(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::NotFound => "FieldValueNotFound",
            FieldErrorType::Unknown => "FieldValueUnknown",
        }
    }
}

/// One field at fault, formatted as Kubernetes does (`spec.replicas: Invalid value: -1: …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// Path like `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The offending value, rendered; `None` when there is none to show.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: FieldErrorType::Invalid,
            field: field.into(),
            value: Some(value.to_string()),
            detail: detail.into(),
        }
    }
    pub fn not_supported(
        field: impl Into<String>,
        value: impl fmt::Display,
        supported: &[&str],
    ) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            kind: FieldErrorType::NotSupported,
            field: field.into(),
            value: Some(format!("\"{value}\"")),
            detail: format!("supported values: {list}"),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            kind: FieldErrorType::Duplicate,
            field: field.into(),
            value: Some(value.to_string()),
            detail: String::new(),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            kind: FieldErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FieldErrorType::Required => "Required value",
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::Unknown => "Unknown field",
        };
        write!(f, "{}: {what}", self.field)?;
        if let Some(v) = &self.value {
            write!(f, ": {v}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A control-plane error: a Kubernetes reason, a message, and what it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub reason: Reason,
    pub message: String,
    /// Group of the object concerned (for `details.group`).
    pub group: String,
    /// Kind, or plural resource name, concerned (for `details.kind`).
    pub kind: String,
    pub name: String,
    pub causes: Vec<FieldError>,
    /// Seconds the client should wait before retrying (429/503).
    pub retry_after_seconds: Option<i32>,
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            group: String::new(),
            kind: String::new(),
            name: String::new(),
            causes: Vec::new(),
            retry_after_seconds: None,
        }
    }

    /// Attaches the object concerned.
    pub fn on(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.group = group.to_string();
        self.kind = kind.to_string();
        self.name = name.to_string();
        self
    }

    /// `pods "x" not found` (resource is the group-qualified plural, like `deployments.apps`).
    pub fn not_found(group_resource: &str, name: &str) -> Self {
        let (kind, group) = group_resource
            .split_once('.')
            .unwrap_or((group_resource, ""));
        Self::new(
            Reason::NotFound,
            format!("{group_resource} \"{name}\" not found"),
        )
        .on(group, kind, name)
    }

    pub fn already_exists(group_resource: &str, name: &str) -> Self {
        let (kind, group) = group_resource
            .split_once('.')
            .unwrap_or((group_resource, ""));
        Self::new(
            Reason::AlreadyExists,
            format!("{group_resource} \"{name}\" already exists"),
        )
        .on(group, kind, name)
    }

    /// The optimistic-concurrency failure kubectl and controllers retry on.
    pub fn conflict(group_resource: &str, name: &str, why: &str) -> Self {
        let (kind, group) = group_resource
            .split_once('.')
            .unwrap_or((group_resource, ""));
        Self::new(
            Reason::Conflict,
            format!("Operation cannot be fulfilled on {group_resource} \"{name}\": {why}"),
        )
        .on(group, kind, name)
    }

    /// `Deployment.apps "x" is invalid: [...]` with every field at fault.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let list = causes.iter().map(ToString::to_string).collect::<Vec<_>>();
        let body = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = Self::new(
            Reason::Invalid,
            format!("{qualified} \"{name}\" is invalid: {body}"),
        )
        .on(group, kind, name);
        e.causes = causes;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Reason::Forbidden, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(Reason::Unauthorized, "Unauthorized")
    }

    /// A watch or list asked for a revision that has been compacted away.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(Reason::Expired, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            Reason::InternalError,
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(Reason::ServiceUnavailable, message);
        e.retry_after_seconds = Some(1);
        e
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(Reason::MethodNotAllowed, message)
    }

    /// Whether retrying the same request may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self.reason,
            Reason::Conflict
                | Reason::TooManyRequests
                | Reason::ServiceUnavailable
                | Reason::Timeout
        )
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        self.reason.code()
    }

    /// The `meta.v1.Status` object for this error.
    pub fn to_status(&self) -> Status {
        let has_details = !self.name.is_empty()
            || !self.kind.is_empty()
            || !self.causes.is_empty()
            || self.retry_after_seconds.is_some();
        Status {
            api_version: Some("v1".into()),
            kind: Some("Status".into()),
            metadata: Some(Default::default()),
            status: Some("Failure".into()),
            message: Some(self.message.clone()),
            reason: Some(self.reason.as_str().into()),
            code: Some(i32::from(self.code())),
            details: has_details.then(|| StatusDetails {
                name: (!self.name.is_empty()).then(|| self.name.clone()),
                group: (!self.group.is_empty()).then(|| self.group.clone()),
                kind: (!self.kind.is_empty()).then(|| self.kind.clone()),
                causes: self
                    .causes
                    .iter()
                    .map(|c| StatusCause {
                        reason: Some(c.kind.cause().into()),
                        message: Some(c.to_string()),
                        field: Some(c.field.clone()),
                    })
                    .collect(),
                retry_after_seconds: self.retry_after_seconds,
                uid: None,
            }),
        }
    }

    /// Rebuilds the error from a `meta.v1.Status` (the client side of each edge).
    pub fn from_status(status: &Status) -> Self {
        let reason = status
            .reason
            .as_deref()
            .and_then(Reason::parse)
            .unwrap_or(Reason::InternalError);
        let mut e = Self::new(reason, status.message.clone().unwrap_or_default());
        if let Some(d) = &status.details {
            e.name = d.name.clone().unwrap_or_default();
            e.group = d.group.clone().unwrap_or_default();
            e.kind = d.kind.clone().unwrap_or_default();
            e.retry_after_seconds = d.retry_after_seconds;
            e.causes = d
                .causes
                .iter()
                .map(|c| FieldError {
                    kind: match c.reason.as_deref() {
                        Some("FieldValueRequired") => FieldErrorType::Required,
                        Some("FieldValueNotSupported") => FieldErrorType::NotSupported,
                        Some("FieldValueDuplicate") => FieldErrorType::Duplicate,
                        Some("FieldValueForbidden") => FieldErrorType::Forbidden,
                        Some("FieldValueTooLong") => FieldErrorType::TooLong,
                        Some("FieldValueUnknown") => FieldErrorType::Unknown,
                        _ => FieldErrorType::Invalid,
                    },
                    field: c.field.clone().unwrap_or_default(),
                    value: None,
                    detail: c.message.clone().unwrap_or_default(),
                })
                .collect();
        }
        e
    }
}

impl ApiError {
    /// The gRPC status code for this error's reason.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.reason {
            Reason::BadRequest
            | Reason::Invalid
            | Reason::UnsupportedMediaType
            | Reason::NotAcceptable => tonic::Code::InvalidArgument,
            Reason::Unauthorized => tonic::Code::Unauthenticated,
            Reason::Forbidden => tonic::Code::PermissionDenied,
            Reason::NotFound => tonic::Code::NotFound,
            Reason::AlreadyExists => tonic::Code::AlreadyExists,
            Reason::Conflict => tonic::Code::Aborted,
            Reason::Gone | Reason::Expired => tonic::Code::OutOfRange,
            Reason::RequestEntityTooLarge | Reason::TooManyRequests => {
                tonic::Code::ResourceExhausted
            }
            Reason::MethodNotAllowed => tonic::Code::Unimplemented,
            Reason::InternalError => tonic::Code::Internal,
            Reason::ServiceUnavailable => tonic::Code::Unavailable,
            Reason::Timeout => tonic::Code::DeadlineExceeded,
        }
    }

    /// Rebuilds the error from a gRPC status: from the `meta.v1.Status` in its details when
    /// present (always, from our gateway), else from the code.
    pub fn from_grpc(status: &tonic::Status) -> Self {
        use prost::Message as _;
        if !status.details().is_empty()
            && let Ok(s) = Status::decode(status.details())
            && s.reason.is_some()
        {
            return Self::from_status(&s);
        }
        let reason = match status.code() {
            tonic::Code::InvalidArgument => Reason::BadRequest,
            tonic::Code::Unauthenticated => Reason::Unauthorized,
            tonic::Code::PermissionDenied => Reason::Forbidden,
            tonic::Code::NotFound => Reason::NotFound,
            tonic::Code::AlreadyExists => Reason::AlreadyExists,
            tonic::Code::Aborted => Reason::Conflict,
            tonic::Code::OutOfRange => Reason::Expired,
            tonic::Code::ResourceExhausted => Reason::TooManyRequests,
            tonic::Code::Unimplemented => Reason::MethodNotAllowed,
            tonic::Code::DeadlineExceeded => Reason::Timeout,
            tonic::Code::Unavailable | tonic::Code::Cancelled => Reason::ServiceUnavailable,
            _ => Reason::InternalError,
        };
        Self::new(reason, status.message().to_string())
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use prost::Message as _;
        tonic::Status::with_details(
            e.grpc_code(),
            e.message.clone(),
            e.to_status().encode_to_vec().into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_matches_kubernetes_shape() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![
                FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                FieldError::required("spec.template.spec.containers[0].image", ""),
            ],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.template.spec.containers[0].image: Required value]"
        );
        assert_eq!(e.code(), 422);
        let status = e.to_status();
        assert_eq!(status.details.as_ref().unwrap().causes.len(), 2);
        let back = ApiError::from_grpc(&tonic::Status::from(e.clone()));
        assert_eq!(back.reason, Reason::Invalid);
        assert_eq!(
            back.causes[1].field,
            "spec.template.spec.containers[0].image"
        );
    }

    #[test]
    fn reasons_round_trip() {
        for r in ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(
            ApiError::not_found("deployments.apps", "x").message,
            "deployments.apps \"x\" not found"
        );
    }
}
