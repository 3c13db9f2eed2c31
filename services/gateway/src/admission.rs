//! Admission: checks that need cluster state, after validation and before persisting.
//! Namespace lifecycle for now: content may only be created in a namespace that exists and
//! is not terminating.

use navarch_api::kinds::KindInfo;
use navarch_api::{ApiError, Object};

use crate::registry::Registry;

/// Admission for creates.
pub async fn admit_create(
    registry: &Registry,
    kind: &KindInfo,
    obj: &Object,
) -> Result<(), ApiError> {
    if !kind.namespaced {
        return Ok(());
    }
    let namespace = obj.namespace();
    match registry.namespace_phase(&namespace).await?.as_deref() {
        None => Err(ApiError::not_found("namespaces", &namespace)),
        Some("Terminating") => Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
            kind.plural,
            obj.name()
        ))
        .on(kind.group, kind.plural, &obj.name())),
        Some(_) => Ok(()),
    }
}
