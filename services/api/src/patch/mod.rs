//! The patch engine: JSON merge patch, JSON patch, strategic merge patch and server-side
//! apply, plus `metadata.managedFields` bookkeeping for every write.
//!
//! Pure functions over the Kubernetes JSON form of objects (see [`crate::codec`]): the gateway
//! reads the object, calls [`apply_patch`], decodes, defaults and validates the result, calls
//! [`record_update`] for non-apply writes, and stores it with the read `resourceVersion`,
//! retrying the whole loop on a storage conflict. Errors carry Kubernetes' reasons and codes.

// `ApiError` (the crate's one error type, over 128 bytes) trips `result_large_err` on every
// fallible function; shrinking it is `errors.rs`'s call, not this module's.
#![allow(clippy::result_large_err)]

mod fieldset;
mod managed;
pub mod schema;
mod strategic;

use serde_json::{Map, Value as Json};

use crate::codec;
use crate::errors::{ApiError, FieldError, FieldErrorType, Reason};
use crate::kinds::KindInfo;

/// The most operations one JSON patch may have (as in Kubernetes).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The longest field manager name (as in Kubernetes).
pub const MAX_FIELD_MANAGER_LENGTH: usize = 128;

/// The four kinds of patch, told apart by the request's content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json` (kubectl's default).
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply (the body may be YAML or JSON).
    Apply,
}

impl PatchType {
    pub const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ];

    /// The patch type of a `Content-Type` header (parameters such as `charset` are ignored);
    /// `None` means 415, see [`PatchType::unsupported`]. Kubernetes has no `+json` apply type:
    /// JSON bodies are sent as `apply-patch+yaml`.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        PatchType::ALL
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media))
    }

    /// The content type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }

    /// The 415 error for a content type that is no patch type.
    pub fn unsupported() -> ApiError {
        let accepted = PatchType::ALL.map(PatchType::content_type).join(", ");
        ApiError::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }
}

/// The request's patch options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchOptions {
    /// `fieldManager`: required for apply.
    pub field_manager: String,
    /// `force`: take conflicting fields over (apply only).
    pub force: bool,
    /// The request time, RFC 3339 (`2024-05-01T12:00:00Z`), for managedFields entries.
    pub now: String,
    /// The subresource written, if any. An apply through the main resource ignores `status`
    /// (for kinds with a status subresource), one through `status` ignores `spec`, and the
    /// managedFields entry records it. (Non-apply writes: [`record_subresource_update`].)
    pub subresource: Option<String>,
}

/// Applies `patch` (the raw request body) to `current`, the object as stored, in its
/// Kubernetes JSON form, and returns the object to store.
///
/// For [`PatchType::Apply`], `current` is `Value::Null` (or `{}`) when the object does not
/// exist; the result is then the object to create. Apply maintains `metadata.managedFields`
/// itself; for the other types the caller records the write with [`record_update`].
pub fn apply_patch(
    kind: &KindInfo,
    current: &Json,
    patch_type: PatchType,
    patch: &[u8],
    opts: &PatchOptions,
) -> Result<Json, ApiError> {
    validate_options(patch_type, opts)?;
    let empty = Json::Object(Map::new());
    let current = if current.is_null() { &empty } else { current };
    if !current.is_object() {
        return Err(ApiError::internal("the stored object is not a JSON object"));
    }
    match patch_type {
        PatchType::Merge => {
            let patch: Json =
                serde_json::from_slice(patch).map_err(|_| bad_request("Invalid JSON Patch"))?;
            if !patch.is_object() {
                return Err(bad_request("Invalid JSON Patch"));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(patch).map_err(|e| bad_request(e.to_string()))?;
            if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(ApiError::new(
                    Reason::RequestEntityTooLarge,
                    format!(
                        "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                        ops.0.len()
                    ),
                ));
            }
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| unprocessable(e.to_string()))?;
            Ok(doc)
        }
        PatchType::StrategicMerge => {
            let patch: Json =
                serde_json::from_slice(patch).map_err(|e| bad_request(e.to_string()))?;
            let patch = match patch {
                Json::Object(map) => map,
                Json::Null => Map::new(),
                _ => return Err(bad_request("invalid JSON document")),
            };
            let original = current.as_object().cloned().unwrap_or_default();
            strategic::merge_map(original, patch, &schema::Schema::root(kind)).map(Json::Object)
        }
        PatchType::Apply => {
            let text = std::str::from_utf8(patch)
                .map_err(|_| bad_request("error decoding YAML: body is not UTF-8"))?;
            let config = codec::yaml_to_json(text)
                .map_err(|e| bad_request(format!("error decoding YAML: {e}")))?;
            managed::apply(
                kind,
                current,
                &config,
                &opts.field_manager,
                opts.force,
                opts.subresource.as_deref().unwrap_or_default(),
                &opts.now,
            )
        }
    }
}

/// Records a non-apply write (create: `old` is `Null`; update; patch) by `manager` in `new`'s
/// `metadata.managedFields` and returns the object to store: the manager takes ownership of
/// every field it added or changed, other managers lose those fields, and removed fields are
/// owned by nobody. Call it on the final object (after defaulting), like Kubernetes.
pub fn record_update(kind: &KindInfo, old: &Json, new: &Json, manager: &str, now: &str) -> Json {
    managed::record_update(kind, old, new, manager, "", now)
}

/// [`record_update`] for a write through a subresource (`status`, `scale`): the entry is
/// tagged with it, and managedFields sent in the body are ignored.
pub fn record_subresource_update(
    kind: &KindInfo,
    old: &Json,
    new: &Json,
    manager: &str,
    subresource: &str,
    now: &str,
) -> Json {
    managed::record_update(kind, old, new, manager, subresource, now)
}

/// Kubernetes' `ValidatePatchOptions`.
fn validate_options(patch_type: PatchType, opts: &PatchOptions) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if patch_type == PatchType::Apply {
        if opts.field_manager.is_empty() {
            causes.push(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            ));
        }
    } else if opts.force {
        causes.push(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if opts.field_manager.len() > MAX_FIELD_MANAGER_LENGTH {
        causes.push(FieldError::too_long(
            "fieldManager",
            MAX_FIELD_MANAGER_LENGTH,
        ));
    }
    if let Some((i, c)) = opts
        .field_manager
        .char_indices()
        .find(|(_, c)| c.is_control())
    {
        causes.push(FieldError::invalid(
            "fieldManager",
            &opts.field_manager,
            format!("invalid character U+{:04X} (at position {i})", u32::from(c)),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("meta.k8s.io", "PatchOptions", "", causes))
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Kubernetes' 422 for a patch that does not apply (`NewGenericServerResponse`): its message
/// is generic; the reason is kept as a cause.
pub(crate) fn unprocessable(detail: impl Into<String>) -> ApiError {
    let mut err = ApiError::new(
        Reason::Invalid,
        "the server rejected our request due to an error in our request",
    );
    err.causes.push(FieldError {
        kind: FieldErrorType::Invalid,
        field: "patch".into(),
        value: None,
        detail: detail.into(),
    });
    err
}
