//! Admission: checks that need cluster state, after validation and before persisting, in
//! order: namespace lifecycle (content may only be created in a namespace that exists and is
//! not terminating), then RBAC escalation prevention (a Role, ClusterRole or binding may
//! grant only what its author holds).

use navarch_api::kinds::KindInfo;
use navarch_api::{ApiError, Object};

use crate::registry::{Registry, WriteOptions};

/// Admission for creates and updates of RBAC objects: the author may not grant permissions
/// it does not hold (see [`crate::rbac::Rbac::check_escalation`]).
pub fn admit_write(registry: &Registry, obj: &Object, opts: &WriteOptions) -> Result<(), ApiError> {
    match (registry.rbac(), &opts.user) {
        (Some(rbac), Some(user)) if obj.kind.group == "rbac.authorization.k8s.io" => {
            rbac.check_escalation(user, obj)
        }
        _ => Ok(()),
    }
}

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
