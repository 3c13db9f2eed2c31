//! Pods and pod specs (`pkg/apis/core/validation`: `ValidatePodSpec`, `ValidatePodUpdate`, …).
//!
//! Pod specs are checked the same way in Pods and in the templates of workloads; only the
//! path prefix (`spec` or `spec.template.spec`) and a few Pod-only rules differ.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::meta::{
    NameRule, validate_annotations, validate_label_name, validate_label_selector, validate_labels,
};
use super::names::{
    INVALID_IP, inclusive_range_error, is_config_map_key, is_dns1123_label, is_dns1123_subdomain,
    is_env_var_name, is_http_header_name, is_qualified_name, is_valid_id, is_valid_ip,
    is_valid_label_value, is_valid_port_name, is_valid_port_num, name_is_dns_subdomain,
};
use super::{
    Errs, Path, duplicate, duplicate_str, each, forbidden, invalid, invalid_str, nonnegative,
    not_found, not_supported, or_default, q, required, s, validate_meta,
};
use crate::FieldError;
use crate::core::v1::{
    Affinity, Container, ContainerPort, EnvFromSource, EnvVar, EphemeralContainer, HttpGetAction,
    KeyToPath, Lifecycle, LifecycleHandler, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, PersistentVolumeClaimSpec, Pod, PodAffinityTerm,
    PodSecurityContext, PodSpec, PodTemplate, PodTemplateSpec, Probe, ResourceFieldSelector,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeDevice,
    VolumeMount,
};
use crate::meta::v1::{IntOrString, ObjectMeta, Quantity as QuantityMsg, int_or_string};
use crate::quantity::Quantity;

/// Where a pod spec lives, for the few rules that differ between Pods and templates.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpecContext<'a> {
    /// The spec is a Pod's own (not a template).
    pub is_pod: bool,
    /// Names volume mounts may use besides `volumes` (a StatefulSet's volumeClaimTemplates).
    pub claim_templates: &'a [String],
}

/// Validates a Pod on create, or on update against the stored `old` Pod.
pub fn validate_pod(pod: &Pod, old: Option<&Pod>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &pod.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&pod.spec);
    let spec_path = Path::new("spec");
    validate_pod_spec(
        &spec,
        SpecContext {
            is_pod: true,
            claim_templates: &[],
        },
        &spec_path,
        &mut errs,
    );
    for (name, containers) in [
        ("containers", &spec.containers),
        ("initContainers", &spec.init_containers),
    ] {
        for (i, c) in containers.iter().enumerate() {
            validate_image_whitespace(
                s(&c.image),
                &spec_path.child(name).index(i).child("image"),
                &mut errs,
            );
        }
    }
    match old {
        None => {
            if !spec.ephemeral_containers.is_empty() {
                errs.push(forbidden(
                    &spec_path.child("ephemeralContainers"),
                    "cannot be set on create",
                ));
            }
            if !s(&spec.node_name).is_empty() && !spec.scheduling_gates.is_empty() {
                errs.push(forbidden(
                    &spec_path.child("nodeName"),
                    "cannot be set until all schedulingGates have been cleared",
                ));
            }
        }
        Some(old) => validate_pod_update(&spec, &or_default(&old.spec), &mut errs),
    }
    errs
}

/// Validates a PodTemplate object.
pub fn validate_pod_template(template: &PodTemplate, old: Option<&PodTemplate>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &template.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    validate_pod_template_spec(
        &or_default(&template.template),
        SpecContext::default(),
        &Path::new("template"),
        &mut errs,
    );
    errs
}

fn validate_image_whitespace(image: &str, path: &Path, errs: &mut Errs) {
    if image.len() != image.trim().len() {
        errs.push(invalid_str(
            path,
            image,
            "must not have leading or trailing whitespace",
        ));
    }
}

/// `ValidatePodTemplateSpec`: labels and annotations (at `<path>.labels`, as Kubernetes
/// reports them) and the pod spec at `<path>.spec`.
pub(crate) fn validate_pod_template_spec(
    template: &PodTemplateSpec,
    ctx: SpecContext<'_>,
    path: &Path,
    errs: &mut Errs,
) {
    let meta = or_default(&template.metadata);
    validate_labels(&meta.labels, &path.child("labels"), errs);
    validate_annotations(&meta.annotations, &path.child("annotations"), errs);
    let spec = or_default(&template.spec);
    validate_pod_spec(&spec, ctx, &path.child("spec"), errs);
    if !spec.ephemeral_containers.is_empty() {
        errs.push(forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// What a volume name refers to, for mounts and devices.
#[derive(Clone, Copy)]
struct VolumeInfo {
    /// Backed by a claim (persistentVolumeClaim, ephemeral, claim template): usable as a block device.
    claim: bool,
}

/// `ValidatePodSpec`.
pub(crate) fn validate_pod_spec(
    spec: &PodSpec,
    ctx: SpecContext<'_>,
    path: &Path,
    errs: &mut Errs,
) {
    let grace = spec.termination_grace_period_seconds;
    match grace {
        None => errs.push(required(&path.child("terminationGracePeriodSeconds"), "")),
        Some(g) => nonnegative(errs, &path.child("terminationGracePeriodSeconds"), g),
    }
    let host_users = spec.host_users.unwrap_or(true);
    let restart_policy = s(&spec.restart_policy);
    let mut volumes = validate_volumes(&spec.volumes, &path.child("volumes"), errs);
    for name in ctx.claim_templates {
        volumes
            .entry(name.clone())
            .or_insert(VolumeInfo { claim: true });
    }
    let claim_names: BTreeSet<&str> = spec
        .resource_claims
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    validate_pod_resource_claims(spec, &path.child("resourceClaims"), errs);
    let containers = Containers {
        volumes: &volumes,
        claims: &claim_names,
        grace,
        restart_policy,
        host_users,
    };
    containers.regular(&spec.containers, &path.child("containers"), errs);
    containers.init(
        &spec.init_containers,
        &spec.containers,
        &path.child("initContainers"),
        errs,
    );
    containers.ephemeral(
        &spec.ephemeral_containers,
        spec,
        &path.child("ephemeralContainers"),
        errs,
    );
    validate_host_network_ports(spec, ctx, path, errs);
    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(required(&path.child("restartPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    match s(&spec.dns_policy) {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(required(&path.child("dnsPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    validate_labels(&spec.node_selector, &path.child("nodeSelector"), errs);
    validate_pod_security_context(spec, &path.child("securityContext"), errs);
    if let Some(affinity) = &spec.affinity {
        validate_affinity(affinity, &path.child("affinity"), errs);
    }
    validate_dns_config(spec, &path.child("dnsConfig"), errs);
    for (i, gate) in spec.readiness_gates.iter().enumerate() {
        let p = path.child("readinessGates").index(i).child("conditionType");
        each(
            errs,
            &p,
            s(&gate.condition_type),
            is_qualified_name(s(&gate.condition_type)),
        );
    }
    let mut gates = HashSet::new();
    for (i, gate) in spec.scheduling_gates.iter().enumerate() {
        let p = path.child("schedulingGates").index(i);
        each(errs, &p, s(&gate.name), is_qualified_name(s(&gate.name)));
        if !gates.insert(s(&gate.name)) {
            errs.push(duplicate_str(&p, s(&gate.name)));
        }
    }
    validate_topology_spread(spec, &path.child("topologySpreadConstraints"), errs);
    validate_host_users(spec, host_users, path, errs);
    let sa = s(&spec.service_account_name);
    if !sa.is_empty() {
        each(
            errs,
            &path.child("serviceAccountName"),
            sa,
            name_is_dns_subdomain(sa, false),
        );
    }
    let node = s(&spec.node_name);
    if !node.is_empty() {
        each(
            errs,
            &path.child("nodeName"),
            node,
            name_is_dns_subdomain(node, false),
        );
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errs.push(invalid(
            &path.child("activeDeadlineSeconds"),
            deadline,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        let value = s(value);
        if !value.is_empty() {
            each(errs, &path.child(field), value, is_dns1123_label(value));
        }
    }
    validate_tolerations(&spec.tolerations, &path.child("tolerations"), errs);
    for (i, alias) in spec.host_aliases.iter().enumerate() {
        let p = path.child("hostAliases").index(i);
        if !is_valid_ip(s(&alias.ip)) {
            errs.push(invalid_str(&p.child("ip"), s(&alias.ip), INVALID_IP));
        }
        for (j, host) in alias.hostnames.iter().enumerate() {
            each(
                errs,
                &p.child("hostnames").index(j),
                host,
                is_dns1123_subdomain(host),
            );
        }
    }
    let priority_class = s(&spec.priority_class_name);
    if !priority_class.is_empty() {
        each(
            errs,
            &path.child("priorityClassName"),
            priority_class,
            name_is_dns_subdomain(priority_class, false),
        );
    }
    if let Some(runtime_class) = &spec.runtime_class_name {
        each(
            errs,
            &path.child("runtimeClassName"),
            runtime_class,
            name_is_dns_subdomain(runtime_class, false),
        );
    }
    if let Some(policy) = &spec.preemption_policy {
        validate_preemption_policy(policy, &path.child("preemptionPolicy"), errs);
    }
    if !spec.overhead.is_empty() {
        let requirements = ResourceRequirements {
            limits: spec.overhead.clone(),
            ..Default::default()
        };
        validate_resource_requirements(
            &requirements,
            &BTreeSet::new(),
            &path.child("overhead"),
            errs,
        );
    }
    if let Some(os) = &spec.os {
        match s(&os.name) {
            "linux" | "windows" => {}
            "" => errs.push(required(&path.child("os").child("name"), "")),
            other => errs.push(not_supported(
                &path.child("os").child("name"),
                other,
                &["linux", "windows"],
            )),
        }
    }
}

/// `ValidatePreemptionPolicy`.
pub(crate) fn validate_preemption_policy(policy: &str, path: &Path, errs: &mut Errs) {
    match policy {
        "PreemptLowerPriority" | "Never" => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(
            path,
            other,
            &["PreemptLowerPriority", "Never"],
        )),
    }
}

fn validate_pod_resource_claims(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    let mut seen = HashSet::new();
    for (i, claim) in spec.resource_claims.iter().enumerate() {
        let p = path.index(i);
        let name = s(&claim.name);
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        } else if !seen.insert(name) {
            errs.push(duplicate_str(&p.child("name"), name));
        } else {
            each(errs, &p.child("name"), name, is_dns1123_label(name));
        }
        match (&claim.resource_claim_name, &claim.resource_claim_template_name) {
            (Some(_), Some(_)) => errs.push(invalid(
                &p,
                q(name),
                "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified",
            )),
            (None, None) => {
                errs.push(invalid(&p, q(name), "must specify one of: `resourceClaimName`, `resourceClaimTemplateName`"))
            }
            _ => {}
        }
    }
}

fn validate_host_network_ports(spec: &PodSpec, ctx: SpecContext<'_>, path: &Path, errs: &mut Errs) {
    if spec.host_network != Some(true) {
        return;
    }
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, port) in c.ports.iter().enumerate() {
            let (hp, cp) = (
                port.host_port.unwrap_or(0),
                port.container_port.unwrap_or(0),
            );
            if (ctx.is_pod || hp != 0) && hp != cp {
                let p = path
                    .child("containers")
                    .index(i)
                    .child("ports")
                    .index(j)
                    .child("hostPort");
                errs.push(invalid(
                    &p,
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

fn validate_host_users(spec: &PodSpec, host_users: bool, path: &Path, errs: &mut Errs) {
    if host_users {
        return;
    }
    for (field, set) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if set == Some(true) {
            errs.push(forbidden(
                &path.child(field),
                "when `pod.Spec.HostUsers` is false",
            ));
        }
    }
}

// ---- volumes ------------------------------------------------------------------------------

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

fn validate_volumes(
    volumes: &[Volume],
    path: &Path,
    errs: &mut Errs,
) -> HashMap<String, VolumeInfo> {
    let mut out = HashMap::new();
    for (i, volume) in volumes.iter().enumerate() {
        let p = path.index(i);
        let name_path = p.child("name");
        let name = s(&volume.name);
        let mut el = Vec::new();
        validate_volume_source(volume, &p, &mut el);
        if name.is_empty() {
            el.push(required(&name_path, ""));
        } else {
            each(&mut el, &name_path, name, is_dns1123_label(name));
        }
        if out.contains_key(name) {
            el.push(duplicate_str(&name_path, name));
        }
        if el.is_empty() {
            let claim = volume.persistent_volume_claim.is_some() || volume.ephemeral.is_some();
            out.insert(name.to_string(), VolumeInfo { claim });
        } else {
            errs.extend(el);
        }
    }
    out
}

fn validate_volume_source(v: &Volume, path: &Path, errs: &mut Errs) {
    // Kubernetes' order: the second source found is the one reported.
    let sources: [(&str, bool); 30] = [
        ("emptyDir", v.empty_dir.is_some()),
        ("hostPath", v.host_path.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("secret", v.secret.is_some()),
        ("nfs", v.nfs.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("flocker", v.flocker.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("rbd", v.rbd.is_some()),
        ("cinder", v.cinder.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("downwardAPI", v.downward_api.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("configMap", v.config_map.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("storageos", v.storageos.is_some()),
        ("projected", v.projected.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("csi", v.csi.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("image", v.image.is_some()),
    ];
    let mut count = 0;
    for (name, present) in sources {
        if !present {
            continue;
        }
        let p = path.child(name);
        if count > 0 {
            errs.push(forbidden(&p, "may not specify more than 1 volume type"));
            continue;
        }
        count += 1;
        validate_one_source(v, name, &p, errs);
    }
    if count == 0 {
        errs.push(required(path, "must specify a volume type"));
    }
}

fn validate_one_source(v: &Volume, source: &str, p: &Path, errs: &mut Errs) {
    match source {
        "emptyDir" => {
            if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref())
                && parse_quantity(limit).is_some_and(|q| q.nanos() < 0)
            {
                errs.push(forbidden(
                    &p.child("sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
        "hostPath" => {
            let host_path = v.host_path.as_ref().expect("present");
            let path = s(&host_path.path);
            if path.is_empty() {
                errs.push(required(&p.child("path"), ""));
                return;
            }
            validate_no_backsteps(path, &p.child("path"), errs);
            if let Some(kind) = &host_path.r#type {
                const TYPES: [&str; 8] = [
                    "",
                    "BlockDevice",
                    "CharDevice",
                    "Directory",
                    "DirectoryOrCreate",
                    "File",
                    "FileOrCreate",
                    "Socket",
                ];
                if !TYPES.contains(&kind.as_str()) {
                    errs.push(not_supported(&p.child("type"), kind, &TYPES));
                }
            }
        }
        "gitRepo" => {
            let git = v.git_repo.as_ref().expect("present");
            if s(&git.repository).is_empty() {
                errs.push(required(&p.child("repository"), ""));
            }
            validate_local_descending_path(s(&git.directory), &p.child("directory"), errs);
        }
        "secret" => {
            let secret = v.secret.as_ref().expect("present");
            if s(&secret.secret_name).is_empty() {
                errs.push(required(&p.child("secretName"), ""));
            }
            validate_file_mode(secret.default_mode, &p.child("defaultMode"), errs);
            for (i, item) in secret.items.iter().enumerate() {
                validate_key_to_path(item, &p.child("items").index(i), errs);
            }
        }
        "configMap" => {
            let cm = v.config_map.as_ref().expect("present");
            if s(&cm.name).is_empty() {
                errs.push(required(&p.child("name"), ""));
            }
            validate_file_mode(cm.default_mode, &p.child("defaultMode"), errs);
            for (i, item) in cm.items.iter().enumerate() {
                validate_key_to_path(item, &p.child("items").index(i), errs);
            }
        }
        "nfs" => {
            let nfs = v.nfs.as_ref().expect("present");
            if s(&nfs.server).is_empty() {
                errs.push(required(&p.child("server"), ""));
            }
            if s(&nfs.path).is_empty() {
                errs.push(required(&p.child("path"), ""));
            }
            if !s(&nfs.path).starts_with('/') {
                errs.push(invalid_str(
                    &p.child("path"),
                    s(&nfs.path),
                    "must be an absolute path",
                ));
            }
        }
        "iscsi" => {
            let iscsi = v.iscsi.as_ref().expect("present");
            if s(&iscsi.target_portal).is_empty() {
                errs.push(required(&p.child("targetPortal"), ""));
            }
            if s(&iscsi.iqn).is_empty() {
                errs.push(required(&p.child("iqn"), ""));
            }
            let lun = iscsi.lun.unwrap_or(0);
            if !(0..=255).contains(&lun) {
                errs.push(invalid(&p.child("lun"), lun, inclusive_range_error(0, 255)));
            }
        }
        "persistentVolumeClaim"
            if s(&v
                .persistent_volume_claim
                .as_ref()
                .expect("present")
                .claim_name)
            .is_empty() =>
        {
            errs.push(required(&p.child("claimName"), ""));
        }
        "downwardAPI" => {
            let api = v.downward_api.as_ref().expect("present");
            validate_file_mode(api.default_mode, &p.child("defaultMode"), errs);
            for item in &api.items {
                validate_downward_api_file(item, p, errs);
            }
        }
        "projected" => validate_projected(v.projected.as_ref().expect("present"), p, errs),
        "csi" if s(&v.csi.as_ref().expect("present").driver).is_empty() => {
            errs.push(required(&p.child("driver"), ""));
        }
        "ephemeral" => match &v.ephemeral.as_ref().expect("present").volume_claim_template {
            None => errs.push(required(&p.child("volumeClaimTemplate"), "")),
            Some(template) => {
                let tp = p.child("volumeClaimTemplate");
                let meta = or_default(&template.metadata);
                validate_labels(&meta.labels, &tp.child("metadata").child("labels"), errs);
                validate_annotations(
                    &meta.annotations,
                    &tp.child("metadata").child("annotations"),
                    errs,
                );
                validate_pvc_spec(&or_default(&template.spec), &tp.child("spec"), errs);
            }
        },
        "image" => {
            let image = v.image.as_ref().expect("present");
            if let Some(policy) = &image.pull_policy {
                validate_pull_policy(policy, &p.child("pullPolicy"), errs);
            }
        }
        _ => {}
    }
}

fn validate_file_mode(mode: Option<i32>, path: &Path, errs: &mut Errs) {
    if let Some(mode) = mode
        && !(0..=0o777).contains(&mode)
    {
        errs.push(invalid(path, mode, FILE_MODE_ERROR));
    }
}

fn validate_key_to_path(item: &KeyToPath, path: &Path, errs: &mut Errs) {
    if s(&item.key).is_empty() {
        errs.push(required(&path.child("key"), ""));
    }
    if s(&item.path).is_empty() {
        errs.push(required(&path.child("path"), ""));
    }
    validate_local_non_reserved_path(s(&item.path), &path.child("path"), errs);
    validate_file_mode(item.mode, &path.child("mode"), errs);
}

fn validate_downward_api_file(
    file: &crate::core::v1::DownwardApiVolumeFile,
    path: &Path,
    errs: &mut Errs,
) {
    if s(&file.path).is_empty() {
        errs.push(required(&path.child("path"), ""));
    }
    validate_local_non_reserved_path(s(&file.path), &path.child("path"), errs);
    match (&file.field_ref, &file.resource_field_ref) {
        (Some(field_ref), resource) => {
            validate_object_field_selector(
                field_ref,
                &VOLUME_FIELD_PATHS,
                &path.child("fieldRef"),
                errs,
            );
            if resource.is_some() {
                errs.push(invalid(
                    path,
                    q("resource"),
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        (None, Some(resource)) => {
            validate_resource_field_selector(resource, true, &path.child("resourceFieldRef"), errs)
        }
        (None, None) => errs.push(required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        )),
    }
    validate_file_mode(file.mode, &path.child("mode"), errs);
}

fn validate_projected(
    projected: &crate::core::v1::ProjectedVolumeSource,
    path: &Path,
    errs: &mut Errs,
) {
    validate_file_mode(projected.default_mode, &path.child("defaultMode"), errs);
    let mut all_paths = HashSet::new();
    for (i, source) in projected.sources.iter().enumerate() {
        let sp = path.child("sources").index(i);
        let mut count = 0;
        if let Some(secret) = &source.secret {
            count += 1;
            if s(&secret.name).is_empty() {
                errs.push(required(&sp.child("secret").child("name"), ""));
            }
            for (j, item) in secret.items.iter().enumerate() {
                validate_key_to_path(item, &sp.child("secret").child("items").index(j), errs);
                if !s(&item.path).is_empty() && !all_paths.insert(s(&item.path).to_string()) {
                    errs.push(invalid_str(
                        path,
                        s(&secret.name),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(cm) = &source.config_map {
            count += 1;
            if s(&cm.name).is_empty() {
                errs.push(required(&sp.child("configMap").child("name"), ""));
            }
            for (j, item) in cm.items.iter().enumerate() {
                validate_key_to_path(item, &sp.child("configMap").child("items").index(j), errs);
                if !s(&item.path).is_empty() && !all_paths.insert(s(&item.path).to_string()) {
                    errs.push(invalid_str(
                        path,
                        s(&cm.name),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(api) = &source.downward_api {
            count += 1;
            for item in &api.items {
                validate_downward_api_file(item, &sp.child("downwardAPI"), errs);
                if !s(&item.path).is_empty() && !all_paths.insert(s(&item.path).to_string()) {
                    errs.push(invalid_str(
                        path,
                        s(&item.path),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(token) = &source.service_account_token {
            count += 1;
            let tp = sp.child("serviceAccountToken");
            let expiration = token.expiration_seconds.unwrap_or(0);
            if expiration < 600 {
                errs.push(invalid(
                    &tp.child("expirationSeconds"),
                    expiration,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if expiration > 1 << 32 {
                errs.push(invalid(
                    &tp.child("expirationSeconds"),
                    expiration,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let token_path = s(&token.path);
            if token_path.is_empty() {
                errs.push(required(&tp.child("path"), ""));
            } else {
                validate_local_non_reserved_path(token_path, &tp.child("path"), errs);
            }
            if !token_path.is_empty() && !all_paths.insert(token_path.to_string()) {
                errs.push(invalid_str(path, token_path, "conflicting duplicate paths"));
            }
        }
        if source.cluster_trust_bundle.is_some() {
            count += 1;
        }
        if source.pod_certificate.is_some() {
            count += 1;
        }
        if count > 1 {
            errs.push(forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

/// `ValidatePersistentVolumeClaimSpec` (claims, claim templates, ephemeral volumes).
pub(crate) fn validate_pvc_spec(spec: &PersistentVolumeClaimSpec, path: &Path, errs: &mut Errs) {
    const MODES: [&str; 4] = [
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    if spec.access_modes.is_empty() {
        errs.push(required(
            &path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for mode in &spec.access_modes {
        if !MODES.contains(&mode.as_str()) {
            errs.push(not_supported(&path.child("accessModes"), mode, &MODES));
        }
    }
    if spec.access_modes.iter().any(|m| m == "ReadWriteOncePod") && spec.access_modes.len() > 1 {
        errs.push(forbidden(
            &path.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    if let Some(selector) = &spec.selector {
        validate_label_selector(selector, &path.child("selector"), errs);
    }
    let storage_path = path.child("resources").key("storage");
    let requests = spec.resources.as_ref().map(|r| &r.requests);
    match requests.and_then(|r| r.get("storage")) {
        None => {
            if spec.data_source.is_none() && spec.data_source_ref.is_none() {
                errs.push(required(&storage_path, ""));
            }
        }
        Some(storage) => match parse_quantity(storage) {
            Some(q) if q.nanos() <= 0 => {
                errs.push(invalid_str(
                    &storage_path,
                    &q.to_string(),
                    "must be greater than zero",
                ));
            }
            Some(_) => {}
            None => errs.push(invalid_str(
                &storage_path,
                &storage.value,
                "must be a valid resource quantity",
            )),
        },
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        each(
            errs,
            &path.child("storageClassName"),
            class,
            name_is_dns_subdomain(class, false),
        );
    }
    if let Some(mode) = &spec.volume_mode
        && mode != "Block"
        && mode != "Filesystem"
    {
        errs.push(not_supported(
            &path.child("volumeMode"),
            mode,
            &["Block", "Filesystem"],
        ));
    }
}

fn validate_no_backsteps(target: &str, path: &Path, errs: &mut Errs) {
    if target.split('/').any(|part| part == "..") {
        errs.push(invalid_str(path, target, "must not contain '..'"));
    }
}

fn validate_local_descending_path(target: &str, path: &Path, errs: &mut Errs) {
    if target.starts_with('/') {
        errs.push(invalid_str(path, target, "must be a relative path"));
    }
    validate_no_backsteps(target, path, errs);
}

fn validate_local_non_reserved_path(target: &str, path: &Path, errs: &mut Errs) {
    validate_local_descending_path(target, path, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(invalid_str(path, target, "must not start with '..'"));
    }
}

// ---- containers ---------------------------------------------------------------------------

struct Containers<'a> {
    volumes: &'a HashMap<String, VolumeInfo>,
    claims: &'a BTreeSet<&'a str>,
    grace: Option<i64>,
    restart_policy: &'a str,
    host_users: bool,
}

impl Containers<'_> {
    fn regular(&self, containers: &[Container], path: &Path, errs: &mut Errs) {
        if containers.is_empty() {
            errs.push(required(path, ""));
            return;
        }
        let mut names = HashSet::new();
        for (i, c) in containers.iter().enumerate() {
            let p = path.index(i);
            self.common(c, &p, errs);
            if !names.insert(s(&c.name)) {
                errs.push(duplicate_str(&p.child("name"), s(&c.name)));
            }
            self.lifecycle_and_probes(c, &p, errs);
            if c.restart_policy.is_some() {
                errs.push(forbidden(
                    &p.child("restartPolicy"),
                    "may not be set for non-init containers",
                ));
            }
        }
        check_host_port_conflicts(containers, path, errs);
    }

    fn init(&self, containers: &[Container], regular: &[Container], path: &Path, errs: &mut Errs) {
        let mut names: HashSet<&str> = regular.iter().map(|c| s(&c.name)).collect();
        for (i, c) in containers.iter().enumerate() {
            let p = path.index(i);
            self.common(c, &p, errs);
            let mut restart_always = false;
            if let Some(policy) = &c.restart_policy {
                if policy == "Always" {
                    restart_always = true;
                } else {
                    errs.push(not_supported(
                        &p.child("restartPolicy"),
                        policy,
                        &["Always"],
                    ));
                }
            }
            let name = s(&c.name);
            if names.contains(name) {
                errs.push(duplicate_str(&p.child("name"), name));
            } else if !name.is_empty() {
                names.insert(name);
            }
            check_host_port_conflicts(std::slice::from_ref(c), path, errs);
            if restart_always {
                self.lifecycle_and_probes(c, &p, errs);
            } else {
                const WHY: &str = "may not be set for init containers without restartPolicy=Always";
                for (field, set) in [
                    ("lifecycle", c.lifecycle.is_some()),
                    ("livenessProbe", c.liveness_probe.is_some()),
                    ("readinessProbe", c.readiness_probe.is_some()),
                    ("startupProbe", c.startup_probe.is_some()),
                ] {
                    if set {
                        errs.push(forbidden(&p.child(field), WHY));
                    }
                }
            }
            if !c.resize_policy.is_empty() {
                errs.push(invalid(
                    &p.child("resizePolicy"),
                    "[...]",
                    "must not be set for init containers",
                ));
            }
        }
    }

    fn ephemeral(
        &self,
        containers: &[EphemeralContainer],
        spec: &PodSpec,
        path: &Path,
        errs: &mut Errs,
    ) {
        if containers.is_empty() {
            return;
        }
        let others: HashSet<&str> = spec
            .containers
            .iter()
            .chain(&spec.init_containers)
            .map(|c| s(&c.name))
            .collect();
        let mut all = others.clone();
        for (i, e) in containers.iter().enumerate() {
            let p = path.index(i);
            let c = ephemeral_as_container(e);
            self.common(&c, &p, errs);
            validate_image_whitespace(s(&c.image), &p.child("image"), errs);
            let name = s(&e.name);
            if all.contains(name) {
                errs.push(duplicate_str(&p.child("name"), name));
            } else {
                all.insert(name);
            }
            if let Some(target) = e.target_container_name.as_deref().filter(|t| !t.is_empty())
                && !others.contains(target)
            {
                errs.push(not_found(&p.child("targetContainerName"), target));
            }
            for (field, set) in [
                ("lifecycle", e.lifecycle.is_some()),
                ("livenessProbe", e.liveness_probe.is_some()),
                ("ports", !e.ports.is_empty()),
                ("readinessProbe", e.readiness_probe.is_some()),
                ("resizePolicy", !e.resize_policy.is_empty()),
                (
                    "resources",
                    e.resources
                        .as_ref()
                        .is_some_and(|r| *r != ResourceRequirements::default()),
                ),
                ("restartPolicy", e.restart_policy.is_some()),
                ("restartPolicyRules", !e.restart_policy_rules.is_empty()),
                ("startupProbe", e.startup_probe.is_some()),
            ] {
                if set {
                    errs.push(forbidden(
                        &p.child(field),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
            for (j, mount) in e.volume_mounts.iter().enumerate() {
                let mp = p.child("volumeMounts").index(j);
                if !s(&mount.sub_path).is_empty() {
                    errs.push(forbidden(
                        &mp.child("subPath"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
                if !s(&mount.sub_path_expr).is_empty() {
                    errs.push(forbidden(
                        &mp.child("subPathExpr"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }

    fn lifecycle_and_probes(&self, c: &Container, p: &Path, errs: &mut Errs) {
        if let Some(lifecycle) = &c.lifecycle {
            validate_lifecycle(lifecycle, self.grace, &p.child("lifecycle"), errs);
        }
        if let Some(probe) = &c.liveness_probe {
            let pp = p.child("livenessProbe");
            validate_probe(probe, self.grace, &pp, errs);
            validate_success_threshold_one(probe, &pp, errs);
        }
        if let Some(probe) = &c.readiness_probe {
            let pp = p.child("readinessProbe");
            validate_probe(probe, self.grace, &pp, errs);
            if let Some(grace) = probe.termination_grace_period_seconds {
                errs.push(invalid(
                    &pp.child("terminationGracePeriodSeconds"),
                    grace,
                    "must not be set for readinessProbes",
                ));
            }
        }
        if let Some(probe) = &c.startup_probe {
            let pp = p.child("startupProbe");
            validate_probe(probe, self.grace, &pp, errs);
            validate_success_threshold_one(probe, &pp, errs);
        }
    }

    /// `validateContainerCommon`.
    fn common(&self, c: &Container, p: &Path, errs: &mut Errs) {
        let name = s(&c.name);
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        } else {
            each(errs, &p.child("name"), name, is_dns1123_label(name));
        }
        if s(&c.image).is_empty() {
            errs.push(required(&p.child("image"), ""));
        }
        match s(&c.termination_message_policy) {
            "File" | "FallbackToLogsOnError" => {}
            "" => errs.push(required(&p.child("terminationMessagePolicy"), "")),
            other => errs.push(not_supported(
                &p.child("terminationMessagePolicy"),
                other,
                &["File", "FallbackToLogsOnError"],
            )),
        }
        validate_container_ports(&c.ports, &p.child("ports"), errs);
        validate_env(&c.env, &p.child("env"), errs);
        validate_env_from(&c.env_from, &p.child("envFrom"), errs);
        let devices: HashMap<&str, &str> = c
            .volume_devices
            .iter()
            .map(|d| (s(&d.name), s(&d.device_path)))
            .collect();
        let mounts: HashMap<&str, &str> = c
            .volume_mounts
            .iter()
            .map(|m| (s(&m.name), s(&m.mount_path)))
            .collect();
        self.volume_mounts(
            &c.volume_mounts,
            &devices,
            c,
            &p.child("volumeMounts"),
            errs,
        );
        self.volume_devices(&c.volume_devices, &mounts, &p.child("volumeDevices"), errs);
        match &c.image_pull_policy {
            Some(policy) => validate_pull_policy(policy, &p.child("imagePullPolicy"), errs),
            None => errs.push(required(&p.child("imagePullPolicy"), "")),
        }
        validate_resource_requirements(
            &or_default(&c.resources),
            self.claims,
            &p.child("resources"),
            errs,
        );
        validate_resize_policy(c, self.restart_policy, &p.child("resizePolicy"), errs);
        if let Some(sc) = &c.security_context {
            validate_security_context(sc, self.host_users, &p.child("securityContext"), errs);
        }
    }

    fn volume_mounts(
        &self,
        mounts: &[VolumeMount],
        devices: &HashMap<&str, &str>,
        c: &Container,
        path: &Path,
        errs: &mut Errs,
    ) {
        let mut mount_points = HashSet::new();
        for (i, m) in mounts.iter().enumerate() {
            let p = path.index(i);
            let (name, mount_path) = (s(&m.name), s(&m.mount_path));
            if name.is_empty() {
                errs.push(required(&p.child("name"), ""));
            }
            if !self.volumes.contains_key(name) {
                errs.push(not_found(&p.child("name"), name));
            }
            if mount_path.is_empty() {
                errs.push(required(&p.child("mountPath"), ""));
            }
            if !mount_points.insert(mount_path) {
                errs.push(invalid_str(
                    &p.child("mountPath"),
                    mount_path,
                    "must be unique",
                ));
            }
            if devices.contains_key(name) {
                errs.push(invalid_str(
                    &p.child("name"),
                    name,
                    "must not already exist in volumeDevices",
                ));
            }
            if devices.values().any(|d| *d == mount_path) {
                errs.push(invalid_str(
                    &p.child("mountPath"),
                    mount_path,
                    "must not already exist as a path in volumeDevices",
                ));
            }
            let sub_path = s(&m.sub_path);
            if !sub_path.is_empty() {
                validate_local_descending_path(sub_path, &path.child("subPath"), errs);
            }
            let expr = s(&m.sub_path_expr);
            if !expr.is_empty() {
                if !sub_path.is_empty() {
                    errs.push(invalid_str(
                        &p.child("subPathExpr"),
                        expr,
                        "subPathExpr and subPath are mutually exclusive",
                    ));
                }
                validate_local_descending_path(expr, &path.child("subPathExpr"), errs);
            }
            if let Some(propagation) = &m.mount_propagation {
                let pp = path.child("mountPropagation");
                match propagation.as_str() {
                    "None" | "HostToContainer" => {}
                    "Bidirectional" => {
                        let privileged =
                            c.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
                        if !privileged {
                            errs.push(forbidden(&pp, "Bidirectional mount propagation is available only to privileged containers"));
                        }
                    }
                    other => errs.push(not_supported(
                        &pp,
                        other,
                        &["Bidirectional", "HostToContainer", "None"],
                    )),
                }
            }
            if let Some(rro) = &m.recursive_read_only {
                let rp = path.child("recursiveReadOnly");
                match rro.as_str() {
                    "Disabled" => {}
                    "Enabled" | "IfPossible" => {
                        if m.read_only != Some(true) {
                            errs.push(forbidden(
                                &rp,
                                "may only be specified when readOnly is true",
                            ));
                        }
                        if m.mount_propagation.as_deref().is_some_and(|p| p != "None") {
                            errs.push(forbidden(&rp, "may only be specified when mountPropagation is None or not specified"));
                        }
                    }
                    other => errs.push(not_supported(
                        &rp,
                        other,
                        &["Disabled", "Enabled", "IfPossible"],
                    )),
                }
            }
        }
    }

    fn volume_devices(
        &self,
        devices: &[VolumeDevice],
        mounts: &HashMap<&str, &str>,
        path: &Path,
        errs: &mut Errs,
    ) {
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        for (i, d) in devices.iter().enumerate() {
            let p = path.index(i);
            let (name, device_path) = (s(&d.name), s(&d.device_path));
            if name.is_empty() {
                errs.push(required(&p.child("name"), ""));
            }
            if names.contains(name) {
                errs.push(invalid_str(&p.child("name"), name, "must be unique"));
            }
            match self.volumes.get(name) {
                Some(info) if !info.claim => errs.push(invalid_str(
                    &p.child("name"),
                    name,
                    "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
                )),
                Some(_) => {}
                None => errs.push(not_found(&p.child("name"), name)),
            }
            if device_path.is_empty() {
                errs.push(required(&p.child("devicePath"), ""));
            }
            if paths.contains(device_path) {
                errs.push(invalid_str(
                    &p.child("devicePath"),
                    device_path,
                    "must be unique",
                ));
            }
            if device_path.split('/').any(|part| part == "..") {
                errs.push(invalid_str(
                    &p.child("devicePath"),
                    device_path,
                    "can not contain backsteps ('..')",
                ));
            } else {
                paths.insert(device_path);
            }
            if mounts.contains_key(name) {
                errs.push(invalid_str(
                    &p.child("name"),
                    name,
                    "must not already exist in volumeMounts",
                ));
            }
            if mounts.values().any(|m| *m == device_path) {
                errs.push(invalid_str(
                    &p.child("devicePath"),
                    device_path,
                    "must not already exist as a path in volumeMounts",
                ));
            }
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
}

fn ephemeral_as_container(e: &EphemeralContainer) -> Container {
    Container {
        args: e.args.clone(),
        command: e.command.clone(),
        env: e.env.clone(),
        env_from: e.env_from.clone(),
        image: e.image.clone(),
        image_pull_policy: e.image_pull_policy.clone(),
        lifecycle: None,
        liveness_probe: None,
        name: e.name.clone(),
        ports: Vec::new(),
        readiness_probe: None,
        resize_policy: Vec::new(),
        resources: None,
        restart_policy: None,
        restart_policy_rules: Vec::new(),
        security_context: e.security_context.clone(),
        startup_probe: None,
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        termination_message_path: e.termination_message_path.clone(),
        termination_message_policy: e.termination_message_policy.clone(),
        tty: e.tty,
        volume_devices: e.volume_devices.clone(),
        volume_mounts: e.volume_mounts.clone(),
        working_dir: e.working_dir.clone(),
    }
}

fn check_host_port_conflicts(containers: &[Container], path: &Path, errs: &mut Errs) {
    let mut seen = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in c.ports.iter().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!("{}/{}/{}", s(&port.protocol), s(&port.host_ip), host_port);
            if !seen.insert(key.clone()) {
                errs.push(duplicate_str(
                    &path.index(ci).child("ports").index(pi).child("hostPort"),
                    &key,
                ));
            }
        }
    }
}

fn validate_pull_policy(policy: &str, path: &Path, errs: &mut Errs) {
    match policy {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(
            path,
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
}

fn validate_container_ports(ports: &[ContainerPort], path: &Path, errs: &mut Errs) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = s(&port.name);
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                each(errs, &p.child("name"), name, msgs);
            } else if !names.insert(name) {
                errs.push(duplicate_str(&p.child("name"), name));
            }
        }
        match port.container_port.unwrap_or(0) {
            0 => errs.push(required(&p.child("containerPort"), "")),
            n => {
                for msg in is_valid_port_num(i64::from(n)) {
                    errs.push(invalid(&p.child("containerPort"), n, msg));
                }
            }
        }
        let host_port = port.host_port.unwrap_or(0);
        if host_port != 0 {
            for msg in is_valid_port_num(i64::from(host_port)) {
                errs.push(invalid(&p.child("hostPort"), host_port, msg));
            }
        }
        validate_protocol(s(&port.protocol), &p.child("protocol"), errs);
    }
}

/// TCP, UDP or SCTP (required).
pub(crate) fn validate_protocol(protocol: &str, path: &Path, errs: &mut Errs) {
    match protocol {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(path, other, &["SCTP", "TCP", "UDP"])),
    }
}

// ---- env ----------------------------------------------------------------------------------

const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_FIELD_PATHS: [&str; 5] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
/// Field labels the v1 downward API converts (`ConvertDownwardAPIFieldLabel`).
const DOWNWARD_API_LABELS: [&str; 14] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_env(vars: &[EnvVar], path: &Path, errs: &mut Errs) {
    for (i, var) in vars.iter().enumerate() {
        let p = path.index(i);
        let name = s(&var.name);
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        } else {
            each(errs, &p.child("name"), name, is_env_var_name(name));
        }
        validate_env_value_from(var, &p.child("valueFrom"), errs);
    }
}

fn validate_env_value_from(var: &EnvVar, path: &Path, errs: &mut Errs) {
    let Some(from) = &var.value_from else { return };
    let mut sources = 0;
    if let Some(field_ref) = &from.field_ref {
        sources += 1;
        validate_object_field_selector(field_ref, &ENV_FIELD_PATHS, &path.child("fieldRef"), errs);
    }
    if let Some(resource) = &from.resource_field_ref {
        sources += 1;
        validate_resource_field_selector(resource, false, &path.child("resourceFieldRef"), errs);
    }
    if let Some(cm) = &from.config_map_key_ref {
        sources += 1;
        validate_key_selector(
            s(&cm.name),
            s(&cm.key),
            &path.child("configMapKeyRef"),
            errs,
        );
    }
    if let Some(secret) = &from.secret_key_ref {
        sources += 1;
        validate_key_selector(
            s(&secret.name),
            s(&secret.key),
            &path.child("secretKeyRef"),
            errs,
        );
    }
    if let Some(file) = &from.file_key_ref {
        sources += 1;
        let fp = path.child("fileKeyRef");
        for (field, value) in [
            ("volumeName", &file.volume_name),
            ("path", &file.path),
            ("key", &file.key),
        ] {
            if s(value).is_empty() {
                errs.push(required(&fp.child(field), ""));
            }
        }
    }
    if sources == 0 {
        errs.push(invalid(
            path,
            q(""),
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if !s(&var.value).is_empty() {
        errs.push(invalid(
            path,
            q(""),
            "may not be specified when `value` is not empty",
        ));
    } else if sources > 1 {
        errs.push(invalid(
            path,
            q(""),
            "may not have more than one field specified at a time",
        ));
    }
}

fn validate_key_selector(name: &str, key: &str, path: &Path, errs: &mut Errs) {
    each(
        errs,
        &path.child("name"),
        name,
        name_is_dns_subdomain(name, false),
    );
    if key.is_empty() {
        errs.push(required(&path.child("key"), ""));
    } else {
        each(errs, &path.child("key"), key, is_config_map_key(key));
    }
}

fn validate_object_field_selector(
    selector: &ObjectFieldSelector,
    expressions: &[&str],
    path: &Path,
    errs: &mut Errs,
) {
    let (api_version, field_path) = (s(&selector.api_version), s(&selector.field_path));
    if api_version.is_empty() {
        errs.push(required(&path.child("apiVersion"), ""));
        return;
    }
    if field_path.is_empty() {
        errs.push(required(&path.child("fieldPath"), ""));
        return;
    }
    let (base, subscript) = split_subscripted(field_path);
    let converted = if api_version != "v1" {
        Err(format!("unsupported pod version: {api_version}"))
    } else if DOWNWARD_API_LABELS.contains(&base)
        && (subscript.is_none() || base.starts_with("metadata."))
    {
        Ok(())
    } else {
        Err(format!("field label not supported: {field_path}"))
    };
    if let Err(e) = converted {
        errs.push(invalid_str(
            &path.child("fieldPath"),
            field_path,
            format!("error converting fieldPath: {e}"),
        ));
        return;
    }
    match subscript {
        Some(sub) => match base {
            "metadata.annotations" => {
                let lower = sub.to_lowercase();
                each(errs, path, &lower, is_qualified_name(&lower));
            }
            "metadata.labels" => each(errs, path, sub, is_qualified_name(sub)),
            other => errs.push(invalid_str(path, other, "does not support subscript")),
        },
        None => {
            if !expressions.contains(&base) {
                errs.push(not_supported(&path.child("fieldPath"), base, expressions));
            }
        }
    }
}

/// `metadata.labels['app']` → (`metadata.labels`, Some(`app`)).
fn split_subscripted(field_path: &str) -> (&str, Option<&str>) {
    if let Some(rest) = field_path.strip_suffix("']")
        && let Some((base, sub)) = rest.split_once("['")
    {
        return (base, Some(sub));
    }
    (field_path, None)
}

const RESOURCE_FIELD_PATHS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_resource_field_selector(
    selector: &ResourceFieldSelector,
    volume: bool,
    path: &Path,
    errs: &mut Errs,
) {
    let resource = s(&selector.resource);
    if volume && s(&selector.container_name).is_empty() {
        errs.push(required(&path.child("containerName"), ""));
    } else if resource.is_empty() {
        errs.push(required(&path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(not_supported(
            &path.child("resource"),
            resource,
            &RESOURCE_FIELD_PATHS,
        ));
    }
    let Some(divisor) = selector
        .divisor
        .as_ref()
        .and_then(parse_quantity)
        .filter(|d| !d.is_zero())
    else {
        return;
    };
    let divisor = divisor.to_string();
    const MEMORY: [&str; 13] = [
        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
    ];
    let (ok, what) = match resource {
        "limits.cpu" | "requests.cpu" => (
            ["1m", "1"].contains(&divisor.as_str()),
            "1m and 1 are supported with the cpu resource",
        ),
        "limits.memory" | "requests.memory" => (
            MEMORY.contains(&divisor.as_str()),
            "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource",
        ),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => (
            MEMORY.contains(&divisor.as_str()),
            "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource",
        ),
        _ => (true, ""),
    };
    if !ok {
        errs.push(invalid_str(
            &path.child("divisor"),
            resource,
            format!("only divisor's values {what}"),
        ));
    }
}

fn validate_env_from(sources: &[EnvFromSource], path: &Path, errs: &mut Errs) {
    for (i, source) in sources.iter().enumerate() {
        let p = path.index(i);
        let prefix = s(&source.prefix);
        if !prefix.is_empty() {
            each(errs, &p.child("prefix"), prefix, is_env_var_name(prefix));
        }
        let mut count = 0;
        for (field, name) in [
            (
                "configMapRef",
                source.config_map_ref.as_ref().map(|r| s(&r.name)),
            ),
            ("secretRef", source.secret_ref.as_ref().map(|r| s(&r.name))),
        ] {
            let Some(name) = name else { continue };
            count += 1;
            let np = p.child(field).child("name");
            if name.is_empty() {
                errs.push(required(&np, ""));
            } else {
                each(errs, &np, name, name_is_dns_subdomain(name, true));
            }
        }
        if count == 0 {
            errs.push(invalid(
                path,
                q(""),
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errs.push(invalid(
                path,
                q(""),
                "may not have more than one field specified at a time",
            ));
        }
    }
}

// ---- resources ----------------------------------------------------------------------------

/// Parses a quantity message (the codec has already canonicalised it).
pub(crate) fn parse_quantity(q: &QuantityMsg) -> Option<Quantity> {
    q.value.parse().ok()
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_huge_page(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_huge_page(name)
}

fn is_integer_resource(name: &str) -> bool {
    is_extended_resource(name)
        || [
            "pods",
            "services",
            "replicationcontrollers",
            "resourcequotas",
            "secrets",
            "configmaps",
            "persistentvolumeclaims",
        ]
        .contains(&name)
}

const STANDARD_RESOURCES: [&str; 20] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

/// `validateContainerResourceName`.
pub(crate) fn validate_container_resource_name(name: &str, path: &Path, errs: &mut Errs) {
    // ResourceName has a String() method, so Kubernetes prints it unquoted.
    let msgs = is_qualified_name(name);
    let qualified = msgs.is_empty();
    errs.extend(msgs.into_iter().map(|m| invalid(path, name, m)));
    let standard = STANDARD_RESOURCES.contains(&name)
        || ["", "requests.", "limits."]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(is_huge_page));
    if qualified && !name.contains('/') && !standard {
        errs.push(invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
    if !name.contains('/') {
        if !["cpu", "memory", "ephemeral-storage"].contains(&name) && !is_huge_page(name) {
            errs.push(invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

/// `ValidateResourceQuantityValue`: non-negative, whole for integer resources.
pub(crate) fn validate_resource_quantity(
    name: &str,
    quantity: &QuantityMsg,
    path: &Path,
    errs: &mut Errs,
) {
    let Some(q) = parse_quantity(quantity) else {
        errs.push(invalid_str(
            path,
            &quantity.value,
            "must be a valid resource quantity",
        ));
        return;
    };
    if q.nanos() < 0 {
        errs.push(invalid_str(
            path,
            &q.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if is_integer_resource(name) && q.nanos() % 1_000_000_000 != 0 {
        errs.push(invalid(path, q, "must be an integer"));
    }
}

/// `ValidateResourceRequirements`.
pub(crate) fn validate_resource_requirements(
    requirements: &ResourceRequirements,
    claims: &BTreeSet<&str>,
    path: &Path,
    errs: &mut Errs,
) {
    let (lim_path, req_path) = (path.child("limits"), path.child("requests"));
    let mut cpu_or_memory = false;
    let mut huge_pages = false;
    for (name, quantity) in &requirements.limits {
        let p = lim_path.key(name);
        validate_container_resource_name(name, &p, errs);
        validate_resource_quantity(name, quantity, &p, errs);
        if is_huge_page(name) {
            huge_pages = true;
            validate_huge_page_value(name, quantity, &p, errs);
        }
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    for (name, quantity) in &requirements.requests {
        let p = req_path.key(name);
        validate_container_resource_name(name, &p, errs);
        validate_resource_quantity(name, quantity, &p, errs);
        let request = parse_quantity(quantity);
        match requirements.limits.get(name).and_then(parse_quantity) {
            Some(limit) => {
                if let Some(request) = request {
                    if request != limit && !is_overcommit_allowed(name) {
                        errs.push(invalid_str(
                            &req_path,
                            &request.to_string(),
                            format!("must be equal to {name} limit of {limit}"),
                        ));
                    } else if request > limit {
                        errs.push(invalid_str(
                            &req_path,
                            &request.to_string(),
                            format!("must be less than or equal to {name} limit of {limit}"),
                        ));
                    }
                }
            }
            None => {
                if !is_overcommit_allowed(name) {
                    errs.push(required(
                        &lim_path,
                        "Limit must be set for non overcommitable resources",
                    ));
                }
            }
        }
        if is_huge_page(name) {
            huge_pages = true;
            validate_huge_page_value(name, quantity, &p, errs);
        }
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    if huge_pages && !cpu_or_memory {
        errs.push(forbidden(path, "HugePages require cpu or memory"));
    }
    let mut names = HashSet::new();
    for (i, claim) in requirements.claims.iter().enumerate() {
        let p = path.child("claims").index(i);
        let name = s(&claim.name);
        if name.is_empty() {
            errs.push(required(&p, ""));
            continue;
        }
        if !names.insert(name) {
            errs.push(duplicate_str(&p, name));
        }
        if !claims.contains(name) {
            let mut e = not_found(&p, name);
            e.detail = if claims.is_empty() {
                "must be one of the names in pod.spec.resourceClaims which is empty".to_string()
            } else {
                format!(
                    "must be one of the names in pod.spec.resourceClaims: {}",
                    claims.iter().copied().collect::<Vec<_>>().join(", ")
                )
            };
            errs.push(e);
        }
    }
}

fn validate_huge_page_value(name: &str, quantity: &QuantityMsg, path: &Path, errs: &mut Errs) {
    let (Some(value), Some(page)) = (
        parse_quantity(quantity),
        name["hugepages-".len()..].parse::<Quantity>().ok(),
    ) else {
        return;
    };
    if page.nanos() > 0 && value.nanos() % page.nanos() != 0 {
        errs.push(invalid_str(
            path,
            &value.to_string(),
            format!("{value} is not positive integer multiple of {name}"),
        ));
    }
}

fn validate_resize_policy(c: &Container, restart_policy: &str, path: &Path, errs: &mut Errs) {
    let mut seen = HashSet::new();
    for (i, policy) in c.resize_policy.iter().enumerate() {
        let name = s(&policy.resource_name);
        if !seen.insert(name) {
            errs.push(duplicate_str(&path.index(i), name));
        }
        match name {
            "cpu" | "memory" => {}
            "" => errs.push(required(path, "")),
            other => errs.push(not_supported(path, other, &["cpu", "memory"])),
        }
        let rp = s(&policy.restart_policy);
        match rp {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(required(path, "")),
            other => errs.push(not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if restart_policy == "Never" && rp != "NotRequired" {
            errs.push(invalid_str(
                path,
                rp,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

// ---- probes and lifecycle -----------------------------------------------------------------

fn validate_success_threshold_one(probe: &Probe, path: &Path, errs: &mut Errs) {
    let threshold = probe.success_threshold.unwrap_or(0);
    if threshold != 1 {
        errs.push(invalid(
            &path.child("successThreshold"),
            threshold,
            "must be 1",
        ));
    }
}

fn validate_probe(probe: &Probe, grace: Option<i64>, path: &Path, errs: &mut Errs) {
    let handlers = Handlers {
        exec: probe.exec.as_ref().map(|e| e.command.is_empty()),
        http_get: probe.http_get.as_ref(),
        tcp_socket: probe.tcp_socket.as_ref().map(|t| &t.port),
        grpc: probe.grpc.as_ref().map(|g| g.port.unwrap_or(0)),
        sleep: None,
    };
    handlers.validate(grace, path, errs);
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        nonnegative(errs, &path.child(field), i64::from(value.unwrap_or(0)));
    }
    if let Some(grace) = probe.termination_grace_period_seconds
        && grace <= 0
    {
        errs.push(invalid(
            &path.child("terminationGracePeriodSeconds"),
            grace,
            "must be greater than 0",
        ));
    }
}

fn validate_lifecycle(lifecycle: &Lifecycle, grace: Option<i64>, path: &Path, errs: &mut Errs) {
    for (field, handler) in [
        ("postStart", &lifecycle.post_start),
        ("preStop", &lifecycle.pre_stop),
    ] {
        if let Some(handler) = handler {
            handlers_of(handler).validate(grace, &path.child(field), errs);
        }
    }
    if let Some(signal) = &lifecycle.stop_signal
        && !signal.starts_with("SIG")
    {
        errs.push(invalid_str(
            &path.child("stopSignal"),
            signal,
            "must be a valid signal name (e.g. SIGTERM)",
        ));
    }
}

fn handlers_of(h: &LifecycleHandler) -> Handlers<'_> {
    Handlers {
        exec: h.exec.as_ref().map(|e| e.command.is_empty()),
        http_get: h.http_get.as_ref(),
        tcp_socket: h.tcp_socket.as_ref().map(|t| &t.port),
        grpc: None,
        sleep: h.sleep.as_ref().map(|s| s.seconds.unwrap_or(0)),
    }
}

/// The handler fields of a probe or lifecycle hook; exactly one must be set.
struct Handlers<'a> {
    /// Some(command is empty).
    exec: Option<bool>,
    http_get: Option<&'a HttpGetAction>,
    tcp_socket: Option<&'a Option<IntOrString>>,
    grpc: Option<i32>,
    sleep: Option<i64>,
}

impl Handlers<'_> {
    fn validate(&self, grace: Option<i64>, path: &Path, errs: &mut Errs) {
        let mut count = 0;
        let mut one = |present: bool, name: &str, errs: &mut Errs| -> bool {
            if !present {
                return false;
            }
            if count > 0 {
                errs.push(forbidden(
                    &path.child(name),
                    "may not specify more than 1 handler type",
                ));
                return false;
            }
            count += 1;
            true
        };
        if one(self.exec.is_some(), "exec", errs) && self.exec == Some(true) {
            errs.push(required(&path.child("exec").child("command"), ""));
        }
        if one(self.http_get.is_some(), "httpGet", errs)
            && let Some(http) = self.http_get
        {
            let hp = path.child("httpGet");
            if s(&http.path).is_empty() {
                errs.push(required(&hp.child("path"), ""));
            }
            validate_port_num_or_name(&http.port, &hp.child("port"), errs);
            let scheme = s(&http.scheme);
            if scheme != "HTTP" && scheme != "HTTPS" {
                errs.push(not_supported(
                    &hp.child("scheme"),
                    scheme,
                    &["HTTP", "HTTPS"],
                ));
            }
            for header in &http.http_headers {
                each(
                    errs,
                    &hp.child("httpHeaders"),
                    s(&header.name),
                    is_http_header_name(s(&header.name)),
                );
            }
        }
        if one(self.tcp_socket.is_some(), "tcpSocket", errs)
            && let Some(port) = self.tcp_socket
        {
            validate_port_num_or_name(port, &path.child("tcpSocket").child("port"), errs);
        }
        if one(self.grpc.is_some(), "grpc", errs)
            && let Some(port) = self.grpc
        {
            for msg in is_valid_port_num(i64::from(port)) {
                errs.push(invalid(&path.child("grpc").child("port"), port, msg));
            }
        }
        if one(self.sleep.is_some(), "sleep", errs)
            && let Some(seconds) = self.sleep
        {
            let grace = grace.unwrap_or(0);
            if seconds <= 0 || seconds > grace {
                errs.push(invalid(
                    &path.child("sleep"),
                    seconds,
                    format!("must be greater than 0 and less than terminationGracePeriodSeconds ({grace})"),
                ));
            }
        }
        if count == 0 {
            errs.push(required(path, "must specify a handler type"));
        }
    }
}

/// `ValidatePortNumOrName`: 1–65535 or an IANA_SVC_NAME.
pub(crate) fn validate_port_num_or_name(port: &Option<IntOrString>, path: &Path, errs: &mut Errs) {
    match port.as_ref().and_then(|p| p.value.as_ref()) {
        Some(int_or_string::Value::StrVal(name)) => {
            each(errs, path, name, is_valid_port_name(name))
        }
        Some(int_or_string::Value::IntVal(n)) => {
            for msg in is_valid_port_num(i64::from(*n)) {
                errs.push(invalid(path, n, msg));
            }
        }
        None => {
            for msg in is_valid_port_num(0) {
                errs.push(invalid(path, 0, msg));
            }
        }
    }
}

// ---- security contexts ----------------------------------------------------------------------

fn validate_ids(errs: &mut Errs, path: &Path, field: &str, id: Option<i64>) {
    if let Some(id) = id {
        for msg in is_valid_id(id) {
            errs.push(invalid(&path.child(field), id, msg));
        }
    }
}

fn validate_security_context(sc: &SecurityContext, host_users: bool, path: &Path, errs: &mut Errs) {
    validate_ids(errs, path, "runAsUser", sc.run_as_user);
    validate_ids(errs, path, "runAsGroup", sc.run_as_group);
    if let Some(proc_mount) = &sc.proc_mount {
        match proc_mount.as_str() {
            "Default" => {}
            "Unmasked" => {
                if host_users {
                    errs.push(invalid_str(
                        &path.child("procMount"),
                        proc_mount,
                        "`hostUsers` must be false to use `Unmasked`",
                    ));
                }
            }
            other => errs.push(not_supported(
                &path.child("procMount"),
                other,
                &["Default", "Unmasked"],
            )),
        }
    }
    if let Some(profile) = &sc.seccomp_profile {
        validate_seccomp_profile(profile, &path.child("seccompProfile"), errs);
    }
    if sc.allow_privilege_escalation == Some(false) {
        let rendered = || crate::codec::encode_json(sc).to_string();
        if sc.privileged == Some(true) {
            errs.push(invalid(
                path,
                rendered(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if sc
            .capabilities
            .as_ref()
            .is_some_and(|c| c.add.iter().any(|a| a == "CAP_SYS_ADMIN"))
        {
            errs.push(invalid(
                path,
                rendered(),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    if let Some(profile) = &sc.app_armor_profile {
        validate_app_armor(
            s(&profile.r#type),
            profile.localhost_profile.as_deref(),
            &path.child("appArmorProfile"),
            errs,
        );
    }
}

fn validate_pod_security_context(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    let Some(sc) = &spec.security_context else {
        return;
    };
    validate_ids(errs, path, "fsGroup", sc.fs_group);
    validate_ids(errs, path, "runAsUser", sc.run_as_user);
    validate_ids(errs, path, "runAsGroup", sc.run_as_group);
    for (i, gid) in sc.supplemental_groups.iter().enumerate() {
        for msg in is_valid_id(*gid) {
            errs.push(invalid(
                &path.child("supplementalGroups").index(i),
                gid,
                msg,
            ));
        }
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(invalid(
            &path.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    validate_sysctls(spec, sc, &path.child("sysctls"), errs);
    if let Some(policy) = &sc.fs_group_change_policy
        && policy != "OnRootMismatch"
        && policy != "Always"
    {
        errs.push(not_supported(
            &path.child("fsGroupChangePolicy"),
            policy,
            &["Always", "OnRootMismatch"],
        ));
    }
    if let Some(profile) = &sc.seccomp_profile {
        validate_seccomp_profile(profile, &path.child("seccompProfile"), errs);
    }
    if let Some(profile) = &sc.app_armor_profile {
        validate_app_armor(
            s(&profile.r#type),
            profile.localhost_profile.as_deref(),
            &path.child("appArmorProfile"),
            errs,
        );
    }
    if let Some(policy) = &sc.supplemental_groups_policy
        && policy != "Merge"
        && policy != "Strict"
    {
        errs.push(not_supported(
            &path.child("supplementalGroupsPolicy"),
            policy,
            &["Merge", "Strict"],
        ));
    }
}

fn validate_sysctls(spec: &PodSpec, sc: &PodSecurityContext, path: &Path, errs: &mut Errs) {
    static SYSCTL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
            .expect("static regex")
    });
    let mut names = HashSet::new();
    for (i, sysctl) in sc.sysctls.iter().enumerate() {
        let p = path.index(i).child("name");
        let name = s(&sysctl.name);
        if name.is_empty() {
            errs.push(required(&p, ""));
        } else if name.len() > 253 || !SYSCTL.is_match(name) {
            errs.push(invalid_str(
                &p,
                name,
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if !names.insert(name) {
            errs.push(duplicate_str(&p, name));
        }
        let normalized = name.replace('/', ".");
        if spec.host_network == Some(true) && normalized.starts_with("net.") {
            errs.push(invalid_str(
                &p,
                name,
                "may not be specified when 'hostNetwork' is true",
            ));
        }
        let ipc = ["kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."]
            .iter()
            .any(|prefix| normalized.starts_with(prefix));
        if spec.host_ipc == Some(true) && ipc {
            errs.push(invalid_str(
                &p,
                name,
                "may not be specified when 'hostIPC' is true",
            ));
        }
    }
}

fn validate_seccomp_profile(profile: &SeccompProfile, path: &Path, errs: &mut Errs) {
    let kind = s(&profile.r#type);
    match kind {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(required(
            &path.child("type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    if kind == "Localhost" {
        match &profile.localhost_profile {
            None => errs.push(required(
                &path.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(p) => validate_local_descending_path(p, &path.child("localhostProfile"), errs),
        }
    } else if let Some(p) = &profile.localhost_profile {
        errs.push(invalid_str(
            &path.child("localhostProfile"),
            p,
            "can only be set when seccomp type is Localhost",
        ));
    }
}

fn validate_app_armor(kind: &str, localhost: Option<&str>, path: &Path, errs: &mut Errs) {
    match kind {
        "Localhost" => match localhost {
            None | Some("") => errs.push(required(
                &path.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(p) if p.trim() != p => errs.push(invalid_str(
                &path.child("localhostProfile"),
                p,
                "must not be padded with whitespace",
            )),
            Some(_) => {}
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(p) = localhost {
                errs.push(invalid_str(
                    &path.child("localhostProfile"),
                    p,
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => errs.push(required(
            &path.child("type"),
            "type is required when appArmorProfile is set",
        )),
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

// ---- scheduling -----------------------------------------------------------------------------

/// `validateTaintEffect`.
pub(crate) fn validate_taint_effect(effect: &str, allow_empty: bool, path: &Path, errs: &mut Errs) {
    match effect {
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
        "" if allow_empty => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(
            path,
            other,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        )),
    }
}

fn go_toleration(t: &Toleration) -> String {
    format!(
        "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{}}}",
        q(s(&t.key)),
        q(s(&t.operator)),
        q(s(&t.value)),
        q(s(&t.effect)),
        t.toleration_seconds
            .map_or_else(|| "(*int64)(nil)".to_string(), |v| format!("&{v}"))
    )
}

/// `ValidateTolerations`.
pub(crate) fn validate_tolerations(tolerations: &[Toleration], path: &Path, errs: &mut Errs) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let (key, operator, value, effect) = (s(&t.key), s(&t.operator), s(&t.value), s(&t.effect));
        if !key.is_empty() {
            validate_label_name(key, &p.child("key"), errs);
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(invalid_str(
                &p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(invalid_str(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid_str(&p.child("operator"), value, msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(invalid(
                        &p.child("operator"),
                        go_toleration(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            validate_taint_effect(effect, true, &p.child("effect"), errs);
        }
    }
}

fn validate_affinity(affinity: &Affinity, path: &Path, errs: &mut Errs) {
    if let Some(node) = &affinity.node_affinity {
        let np = path.child("nodeAffinity");
        if let Some(required_terms) = &node.required_during_scheduling_ignored_during_execution {
            validate_node_selector(
                required_terms,
                &np.child("requiredDuringSchedulingIgnoredDuringExecution"),
                errs,
            );
        }
        for (i, term) in node
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .enumerate()
        {
            let tp = np
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            let weight = term.weight.unwrap_or(0);
            if !(1..=100).contains(&weight) {
                errs.push(invalid(
                    &tp.child("weight"),
                    weight,
                    "must be in the range 1-100",
                ));
            }
            validate_node_selector_term(
                &or_default(&term.preference),
                &tp.child("preference"),
                errs,
            );
        }
    }
    for (field, pod_affinity) in [
        (
            "podAffinity",
            affinity.pod_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            "podAntiAffinity",
            affinity.pod_anti_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ] {
        let Some((required_terms, preferred)) = pod_affinity else {
            continue;
        };
        let ap = path.child(field);
        for (i, term) in required_terms.iter().enumerate() {
            validate_pod_affinity_term(
                term,
                &ap.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
                errs,
            );
        }
        for (i, weighted) in preferred.iter().enumerate() {
            let wp = ap
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            let weight = weighted.weight.unwrap_or(0);
            if !(1..=100).contains(&weight) {
                errs.push(invalid(
                    &wp.child("weight"),
                    weight,
                    "must be in the range 1-100",
                ));
            }
            validate_pod_affinity_term(
                &or_default(&weighted.pod_affinity_term),
                &wp.child("podAffinityTerm"),
                errs,
            );
        }
    }
}

fn validate_node_selector(selector: &NodeSelector, path: &Path, errs: &mut Errs) {
    let terms = path.child("nodeSelectorTerms");
    if selector.node_selector_terms.is_empty() {
        errs.push(required(
            &terms,
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, term) in selector.node_selector_terms.iter().enumerate() {
        validate_node_selector_term(term, &terms.index(i), errs);
    }
}

fn validate_node_selector_term(term: &NodeSelectorTerm, path: &Path, errs: &mut Errs) {
    for (j, req) in term.match_expressions.iter().enumerate() {
        validate_node_selector_requirement(req, &path.child("matchExpressions").index(j), errs);
    }
    for (j, req) in term.match_fields.iter().enumerate() {
        let p = path.child("matchFields").index(j);
        let operator = s(&req.operator);
        match operator {
            "In" | "NotIn" => {
                if req.values.len() != 1 {
                    errs.push(required(
                        &p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            _ => errs.push(invalid_str(
                &p.child("operator"),
                operator,
                "not a valid selector operator",
            )),
        }
        if s(&req.key) != "metadata.name" {
            errs.push(invalid_str(
                &p.child("key"),
                s(&req.key),
                "not a valid field selector key",
            ));
        } else {
            for (k, v) in req.values.iter().enumerate() {
                each(
                    errs,
                    &p.child("values").index(k),
                    v,
                    name_is_dns_subdomain(v, false),
                );
            }
        }
    }
}

/// `ValidateNodeSelectorRequirement`.
fn validate_node_selector_requirement(req: &NodeSelectorRequirement, path: &Path, errs: &mut Errs) {
    let operator = s(&req.operator);
    match operator {
        "In" | "NotIn" => {
            if req.values.is_empty() {
                errs.push(required(
                    &path.child("values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !req.values.is_empty() {
                errs.push(forbidden(
                    &path.child("values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        "Gt" | "Lt" => {
            if req.values.len() != 1 {
                errs.push(required(
                    &path.child("values"),
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
        }
        other => errs.push(invalid_str(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    validate_label_name(s(&req.key), &path.child("key"), errs);
}

fn validate_pod_affinity_term(term: &PodAffinityTerm, path: &Path, errs: &mut Errs) {
    if let Some(selector) = &term.label_selector {
        validate_label_selector(selector, &path.child("labelSelector"), errs);
    }
    if let Some(selector) = &term.namespace_selector {
        validate_label_selector(selector, &path.child("namespaceSelector"), errs);
    }
    for namespace in &term.namespaces {
        each(
            errs,
            &path.child("namespace"),
            namespace,
            is_dns1123_label(namespace),
        );
    }
    for (field, keys) in [
        ("matchLabelKeys", &term.match_label_keys),
        ("mismatchLabelKeys", &term.mismatch_label_keys),
    ] {
        if !keys.is_empty() && term.label_selector.is_none() {
            errs.push(forbidden(
                &path.child(field),
                "must not be specified when labelSelector is not set",
            ));
        }
        for (i, key) in keys.iter().enumerate() {
            validate_label_name(key, &path.child(field).index(i), errs);
        }
    }
    let topology_key = s(&term.topology_key);
    if topology_key.is_empty() {
        errs.push(required(&path.child("topologyKey"), "can not be empty"));
    }
    validate_label_name(topology_key, &path.child("topologyKey"), errs);
}

fn validate_dns_config(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    if s(&spec.dns_policy) == "None" {
        match &spec.dns_config {
            None => {
                errs.push(required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return;
            }
            Some(config) if config.nameservers.is_empty() => {
                errs.push(required(
                    &path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            Some(_) => {}
        }
    }
    let Some(config) = &spec.dns_config else {
        return;
    };
    if config.nameservers.len() > 3 {
        errs.push(invalid(
            &path.child("nameservers"),
            super::go_strings(&config.nameservers),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in config.nameservers.iter().enumerate() {
        if !is_valid_ip(ns) {
            errs.push(invalid_str(
                &path.child("nameservers").index(i),
                ns,
                INVALID_IP,
            ));
        }
    }
    if config.searches.len() > 32 {
        errs.push(invalid(
            &path.child("searches"),
            super::go_strings(&config.searches),
            "must not have more than 32 search paths",
        ));
    }
    if config.searches.join(" ").len() > 2048 {
        errs.push(invalid(
            &path.child("searches"),
            super::go_strings(&config.searches),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, search) in config.searches.iter().enumerate() {
        let trimmed = search.strip_suffix('.').unwrap_or(search);
        each(
            errs,
            &path.child("searches").index(i),
            trimmed,
            is_dns1123_subdomain(trimmed),
        );
    }
    for (i, option) in config.options.iter().enumerate() {
        if s(&option.name).is_empty() {
            errs.push(required(
                &path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}

fn validate_topology_spread(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    let constraints = &spec.topology_spread_constraints;
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        let max_skew = c.max_skew.unwrap_or(0);
        if max_skew <= 0 {
            errs.push(invalid(
                &p.child("maxSkew"),
                max_skew,
                "must be greater than zero",
            ));
        }
        let key = s(&c.topology_key);
        if key.is_empty() {
            errs.push(required(&p.child("topologyKey"), "can not be empty"));
        } else {
            validate_label_name(key, &p.child("topologyKey"), errs);
        }
        let action = s(&c.when_unsatisfiable);
        if action != "DoNotSchedule" && action != "ScheduleAnyway" {
            errs.push(not_supported(
                &p.child("whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if constraints[i + 1..]
            .iter()
            .any(|o| s(&o.topology_key) == key && s(&o.when_unsatisfiable) == action)
        {
            errs.push(duplicate(
                &p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{key}, {action}}}"),
            ));
        }
        if let Some(min_domains) = c.min_domains {
            if min_domains <= 0 {
                errs.push(invalid(
                    &p.child("minDomains"),
                    min_domains,
                    "must be greater than zero",
                ));
            }
            if action != "DoNotSchedule" {
                errs.push(invalid(
                    &p.child("minDomains"),
                    min_domains,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                    ),
                ));
            }
        }
        for (field, policy) in [
            ("nodeAffinityPolicy", &c.node_affinity_policy),
            ("nodeTaintsPolicy", &c.node_taints_policy),
        ] {
            if let Some(policy) = policy
                && policy != "Honor"
                && policy != "Ignore"
            {
                errs.push(not_supported(&p.child(field), policy, &["Honor", "Ignore"]));
            }
        }
        if !c.match_label_keys.is_empty() && c.label_selector.is_none() {
            errs.push(forbidden(
                &p.child("matchLabelKeys"),
                "must not be specified when labelSelector is not set",
            ));
        }
        for (j, k) in c.match_label_keys.iter().enumerate() {
            validate_label_name(k, &p.child("matchLabelKeys").index(j), errs);
        }
        if let Some(selector) = &c.label_selector {
            validate_label_selector(selector, &p.child("labelSelector"), errs);
        }
    }
}

// ---- updates ----------------------------------------------------------------------------------

const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`'s spec rules: only images, activeDeadlineSeconds (set or lowered),
/// added tolerations and removed scheduling gates may change.
fn validate_pod_update(new: &PodSpec, old: &PodSpec, errs: &mut Errs) {
    let path = Path::new("spec");
    for (field, new_c, old_c) in [
        ("containers", &new.containers, &old.containers),
        ("initContainers", &new.init_containers, &old.init_containers),
    ] {
        if new_c.len() != old_c.len() {
            errs.push(forbidden(
                &path.child(field),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in new_c.iter().enumerate() {
            if s(&c.image).is_empty() {
                errs.push(required(&path.child(field).index(i).child("image"), ""));
            }
        }
    }
    let deadline_path = path.child("activeDeadlineSeconds");
    match (new.active_deadline_seconds, old.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(invalid(
                &deadline_path,
                n,
                inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid(
                &deadline_path,
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(invalid(
            &deadline_path,
            "null",
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    for old_t in &old.tolerations {
        let kept = new.tolerations.iter().any(|n| {
            let mut o = old_t.clone();
            o.toleration_seconds = n.toleration_seconds;
            o == *n
        });
        if !kept {
            errs.push(forbidden(
                &path.child("tolerations"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
    let old_gates: HashSet<&str> = old.scheduling_gates.iter().map(|g| s(&g.name)).collect();
    for (i, gate) in new.scheduling_gates.iter().enumerate() {
        if !old_gates.contains(s(&gate.name)) {
            errs.push(forbidden(
                &path.child("schedulingGates").index(i).child("name"),
                format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    s(&gate.name)
                ),
            ));
        }
    }
    if new == old {
        return;
    }
    let mut munged = new.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old.containers) {
        c.image.clone_from(&o.image);
    }
    for (c, o) in munged.init_containers.iter_mut().zip(&old.init_containers) {
        c.image.clone_from(&o.image);
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.scheduling_gates.clone_from(&old.scheduling_gates);
    munged.tolerations.clone_from(&old.tolerations);
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    if !old.scheduling_gates.is_empty() && munged.node_selector != old.node_selector {
        for (k, v) in &old.node_selector {
            if munged.node_selector.get(k) != Some(v) {
                errs.push(invalid_str(
                    &path.child("nodeSelector").key(k),
                    munged.node_selector.get(k).map_or("", String::as_str),
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                ));
            }
        }
        munged.node_selector.clone_from(&old.node_selector);
    }
    if munged != *old {
        errs.push(forbidden(
            &path,
            format!(
                "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}",
                spec_diff(old, &munged)
            ),
        ));
    }
}

/// A short diff of the top-level spec fields that changed, in place of Go's `cmp.Diff`.
fn spec_diff(old: &PodSpec, new: &PodSpec) -> String {
    let (old, new) = (
        crate::codec::encode_json(old),
        crate::codec::encode_json(new),
    );
    let empty = serde_json::Map::new();
    let (old, new) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = String::from("  core.PodSpec{\n");
    for key in keys {
        let (a, b) = (old.get(key), new.get(key));
        if a == b {
            continue;
        }
        if let Some(a) = a {
            out.push_str(&format!("- \t{key}: {a},\n"));
        }
        if let Some(b) = b {
            out.push_str(&format!("+ \t{key}: {b},\n"));
        }
    }
    out.push_str("  }\n");
    out
}

/// `ValidatePodStatusUpdate` (status subresource writes).
pub(crate) fn validate_pod_status_update(new: &Pod, old: &Pod, errs: &mut Errs) {
    let (new_spec, old_spec) = (or_default(&new.spec), or_default(&old.spec));
    let status = or_default(&new.status);
    let path = Path::new("status");
    if s(&new_spec.node_name) != s(&old_spec.node_name) {
        errs.push(forbidden(
            &path.child("nodeName"),
            "may not be changed directly",
        ));
    }
    let old_nominated = old
        .status
        .as_ref()
        .map_or("", |s| s.nominated_node_name.as_deref().unwrap_or(""));
    let nominated = s(&status.nominated_node_name);
    if nominated != old_nominated && !nominated.is_empty() {
        each(
            errs,
            &path.child("nominatedNodeName"),
            nominated,
            name_is_dns_subdomain(nominated, false),
        );
    }
    for (i, ip) in status.pod_i_ps.iter().enumerate() {
        if !is_valid_ip(s(&ip.ip)) {
            errs.push(invalid_str(
                &path.child("podIPs").index(i),
                s(&ip.ip),
                INVALID_IP,
            ));
        }
    }
    for (i, ip) in status.host_i_ps.iter().enumerate() {
        if !is_valid_ip(s(&ip.ip)) {
            errs.push(invalid_str(
                &path.child("hostIPs").index(i),
                s(&ip.ip),
                INVALID_IP,
            ));
        }
    }
    if let Some(first) = status.host_i_ps.first()
        && s(&first.ip) != s(&status.host_ip)
    {
        errs.push(invalid_str(
            &path.child("hostIPs").index(0).child("ip"),
            s(&first.ip),
            "must be equal to `hostIP`",
        ));
    }
    for (i, condition) in status.conditions.iter().enumerate() {
        let kind = s(&condition.r#type);
        if !["PodScheduled", "Ready", "Initialized"].contains(&kind) {
            each(
                errs,
                &path.child("conditions").index(i).child("type"),
                kind,
                is_qualified_name(kind),
            );
        }
    }
}

/// Labels of a pod template's metadata (for selector matching).
pub(crate) fn template_labels(template: &Option<PodTemplateSpec>) -> BTreeMap<String, String> {
    template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .map(|m: &ObjectMeta| m.labels.clone())
        .unwrap_or_default()
}
