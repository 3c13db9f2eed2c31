//! Admission: changes and checks that need cluster state. Mutating first, before validation:
//! the ServiceAccount plugin (a pod runs as `default` unless it names an account, and gets
//! the account's API token mounted). Then, after validation and before persisting, in
//! order: namespace lifecycle (content may only be created in a namespace that exists and is
//! not terminating), then RBAC escalation prevention (a Role, ClusterRole or binding may
//! grant only what its author holds).

use navarch_api::core::v1::{
    ConfigMapProjection, DownwardApiProjection, DownwardApiVolumeFile, KeyToPath,
    ObjectFieldSelector, Pod, ProjectedVolumeSource, ServiceAccount, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use navarch_api::kinds::KindInfo;
use navarch_api::{ApiError, Object, Reason};

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

/// Where pods find their API credentials (`token`, `ca.crt`, `namespace`).
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap in every namespace holding the cluster CA (`ca.crt`).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The lifetime of mounted tokens (Kubernetes': an hour and a bit, refreshed at 80%).
pub const MOUNTED_TOKEN_SECONDS: i64 = 3607;

/// Mutating admission for creates: the ServiceAccount plugin for pods.
pub async fn mutate_create(
    registry: &Registry,
    kind: &KindInfo,
    obj: &mut Object,
) -> Result<(), ApiError> {
    if kind.kind != "Pod" || !kind.group.is_empty() || !registry.mounts_service_account_tokens() {
        return Ok(());
    }
    let mut pod: Pod = obj.to_typed()?;
    let spec = pod.spec.get_or_insert_with(Default::default);
    let account = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    spec.service_account_name = Some(account.clone());
    let mirror = pod
        .metadata
        .as_ref()
        .is_some_and(|m| m.annotations.contains_key("kubernetes.io/config.mirror"));
    let mut automount = spec.automount_service_account_token;
    if automount.is_none() {
        // The account may opt out; an account not created yet (a namespace made a moment
        // ago) is not an error: the agent waits for it when it asks for the token.
        let sa_kind = <ServiceAccount as crate::client::Resource>::kind();
        match registry.get(sa_kind, &obj.namespace(), &account).await {
            Ok(sa) => {
                automount = sa
                    .to_typed::<ServiceAccount>()?
                    .automount_service_account_token
            }
            Err(e) if e.reason == Reason::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if mirror || automount == Some(false) {
        *obj = Object::from_typed(&pod)?;
        return Ok(());
    }
    let volume_name = format!("kube-api-access-{}", crate::registry::random_suffix());
    let mut mounted = false;
    for c in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        if c.volume_mounts
            .iter()
            .any(|m| m.mount_path.as_deref() == Some(SERVICE_ACCOUNT_MOUNT))
        {
            continue;
        }
        c.volume_mounts.push(VolumeMount {
            name: Some(volume_name.clone()),
            read_only: Some(true),
            mount_path: Some(SERVICE_ACCOUNT_MOUNT.into()),
            ..Default::default()
        });
        mounted = true;
    }
    if mounted {
        spec.volumes.push(api_access_volume(volume_name));
    }
    *obj = Object::from_typed(&pod)?;
    Ok(())
}

/// The projected volume Kubernetes mounts for API access: a bound token, the cluster CA and
/// the namespace.
fn api_access_volume(name: String) -> Volume {
    Volume {
        name: Some(name),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        expiration_seconds: Some(MOUNTED_TOKEN_SECONDS),
                        path: Some("token".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: Some(ROOT_CA_CONFIG_MAP.into()),
                        items: vec![KeyToPath {
                            key: Some("ca.crt".into()),
                            path: Some("ca.crt".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardApiProjection {
                        items: vec![DownwardApiVolumeFile {
                            path: Some("namespace".into()),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: Some("metadata.namespace".into()),
                            }),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}
