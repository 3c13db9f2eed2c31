//! Kubernetes' v1 defaulting (`pkg/apis/*/v1/defaults.go` and the declarative `+default`
//! tags), applied by the gateway before validation on create and update.
//!
//! Defaulting is idempotent: applying it twice gives the same object. Pod templates inside
//! workloads get the pod spec defaults; the Pod-only defaults (requests from limits,
//! `enableServiceLinks`, host ports under `hostNetwork`) apply to Pods alone, as in Kubernetes.

use std::collections::BTreeMap;

use prost::Message;
use prost_reflect::{DynamicMessage, ReflectMessage};

use crate::apps::v1::{
    DaemonSet, Deployment, ReplicaSet, RollingUpdateDaemonSet, RollingUpdateDeployment,
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
};
use crate::autoscaling::{v1 as hpa_v1, v2 as hpa_v2};
use crate::batch::v1::{CronJob, Job};
use crate::core::v1::{
    ClientIpConfig, Container, EmptyDirVolumeSource, Endpoints, EphemeralContainer, HttpGetAction,
    LimitRange, Namespace, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, Pod, PodSecurityContext, PodSpec, PodTemplate, PodTemplateSpec,
    Probe, Secret, Service, SessionAffinityConfig, Volume,
};
use crate::discovery::v1::EndpointSlice;
use crate::kinds::KindInfo;
use crate::meta::v1::{IntOrString, Quantity as QuantityMsg, int_or_string};
use crate::quantity::Quantity;
use crate::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use crate::scheduling::v1::PriorityClass;

/// Applies Kubernetes' defaults to an object of `kind`, in place. Kinds without defaults are
/// left untouched.
pub fn apply_defaults(kind: &KindInfo, obj: &mut DynamicMessage) {
    match (kind.group, kind.version, kind.kind) {
        ("", "v1", "Pod") => typed(obj, default_pod),
        ("", "v1", "PodTemplate") => typed(obj, |t: &mut PodTemplate| {
            default_pod_template(&mut t.template)
        }),
        ("", "v1", "Service") => typed(obj, default_service),
        ("", "v1", "Secret") => typed(obj, default_secret),
        ("", "v1", "Namespace") => typed(obj, default_namespace),
        ("", "v1", "Endpoints") => typed(obj, default_endpoints),
        ("", "v1", "PersistentVolumeClaim") => typed(obj, default_persistent_volume_claim),
        ("", "v1", "LimitRange") => typed(obj, default_limit_range),
        ("apps", "v1", "Deployment") => typed(obj, default_deployment),
        ("apps", "v1", "ReplicaSet") => typed(obj, default_replica_set),
        ("apps", "v1", "DaemonSet") => typed(obj, default_daemon_set),
        ("apps", "v1", "StatefulSet") => typed(obj, default_stateful_set),
        ("batch", "v1", "Job") => typed(obj, default_job),
        ("batch", "v1", "CronJob") => typed(obj, default_cron_job),
        ("discovery.k8s.io", "v1", "EndpointSlice") => typed(obj, default_endpoint_slice),
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            typed(obj, default_horizontal_pod_autoscaler)
        }
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            typed(obj, default_horizontal_pod_autoscaler_v1)
        }
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => typed(obj, default_role_binding),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            typed(obj, default_cluster_role_binding)
        }
        ("scheduling.k8s.io", "v1", "PriorityClass") => typed(obj, default_priority_class),
        _ => {}
    }
}

fn typed<T: Message + Default>(obj: &mut DynamicMessage, f: impl FnOnce(&mut T)) {
    let Ok(mut value) = obj.transcode_to::<T>() else {
        return;
    };
    f(&mut value);
    if let Ok(message) = DynamicMessage::decode(obj.descriptor(), value.encode_to_vec().as_slice())
    {
        *obj = message;
    }
}

// ---- small setters (Go's zero value means "unset") ---------------------------------------------

fn set_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

fn set_i32(field: &mut Option<i32>, value: i32) {
    if field.is_none() {
        *field = Some(value);
    }
}

/// For Go non-pointer integers, where 0 means unset.
fn set_i32_if_zero(field: &mut Option<i32>, value: i32) {
    if field.unwrap_or(0) == 0 {
        *field = Some(value);
    }
}

fn set_bool(field: &mut Option<bool>, value: bool) {
    if field.is_none() {
        *field = Some(value);
    }
}

fn int_or_string_unset(v: &Option<IntOrString>) -> bool {
    v.as_ref().and_then(|v| v.value.as_ref()).is_none()
}

fn int_value(i: i32) -> Option<IntOrString> {
    Some(IntOrString {
        value: Some(int_or_string::Value::IntVal(i)),
    })
}

fn str_value(s: &str) -> Option<IntOrString> {
    Some(IntOrString {
        value: Some(int_or_string::Value::StrVal(s.to_string())),
    })
}

// ---- pods -------------------------------------------------------------------------------------

/// `SetDefaults_Pod` and everything nested: pod spec defaults plus the Pod-only ones.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        if let Some(resources) = &mut c.resources {
            let limits = resources.limits.clone();
            for (name, limit) in limits {
                resources.requests.entry(name).or_insert(limit);
            }
        }
    }
    set_bool(&mut spec.enable_service_links, true);
    if spec.host_network == Some(true) {
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut())
        {
            for port in &mut c.ports {
                if port.host_port.unwrap_or(0) == 0 {
                    port.host_port = port.container_port;
                }
            }
        }
    }
    default_pod_spec(spec);
}

/// `SetDefaults_PodSpec` and the defaults of everything inside a pod spec (containers,
/// probes, volumes). Used for Pods and for the pod templates of workloads.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_str(&mut spec.dns_policy, "ClusterFirst");
    set_str(&mut spec.restart_policy, "Always");
    if spec.security_context.is_none() {
        spec.security_context = Some(PodSecurityContext::default());
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(30);
    }
    set_str(&mut spec.scheduler_name, "default-scheduler");
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        default_container(c);
    }
    for e in &mut spec.ephemeral_containers {
        default_ephemeral_container(e);
    }
    for v in &mut spec.volumes {
        default_volume(v);
    }
    round_up_milli(&mut spec.overhead);
    if let Some(resources) = &mut spec.resources {
        round_up_milli(&mut resources.limits);
        round_up_milli(&mut resources.requests);
    }
}

/// Defaults a pod template (labels are kept as written).
pub fn default_pod_template(template: &mut Option<PodTemplateSpec>) {
    let template = template.get_or_insert_with(Default::default);
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// The pull policy Kubernetes picks: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference: `latest` when neither tag nor digest is given.
fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].rfind(':') {
        Some(i) => &name[last + i + 1..],
        None if digest.is_some() => "",
        None => "latest",
    }
}

/// `SetDefaults_Container` with its nested defaults.
pub fn default_container(c: &mut Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        c.image_pull_policy =
            Some(default_pull_policy(c.image.as_deref().unwrap_or("")).to_string());
    }
    set_str(&mut c.termination_message_path, "/dev/termination-log");
    set_str(&mut c.termination_message_policy, "File");
    for port in &mut c.ports {
        set_str(&mut port.protocol, "TCP");
    }
    for env in &mut c.env {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            default_field_selector(field_ref);
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = &mut c.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            if let Some(http) = &mut handler.http_get {
                default_http_get(http);
            }
        }
    }
    if let Some(resources) = &mut c.resources {
        round_up_milli(&mut resources.limits);
        round_up_milli(&mut resources.requests);
    }
}

fn default_ephemeral_container(e: &mut EphemeralContainer) {
    if e.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        e.image_pull_policy =
            Some(default_pull_policy(e.image.as_deref().unwrap_or("")).to_string());
    }
    set_str(&mut e.termination_message_path, "/dev/termination-log");
    set_str(&mut e.termination_message_policy, "File");
    for port in &mut e.ports {
        set_str(&mut port.protocol, "TCP");
    }
    for env in &mut e.env {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            default_field_selector(field_ref);
        }
    }
}

fn default_field_selector(selector: &mut ObjectFieldSelector) {
    set_str(&mut selector.api_version, "v1");
}

/// `SetDefaults_Probe` (zero means unset) and the handler defaults.
pub fn default_probe(probe: &mut Probe) {
    set_i32_if_zero(&mut probe.timeout_seconds, 1);
    set_i32_if_zero(&mut probe.period_seconds, 10);
    set_i32_if_zero(&mut probe.success_threshold, 1);
    set_i32_if_zero(&mut probe.failure_threshold, 3);
    if let Some(http) = &mut probe.http_get {
        default_http_get(http);
    }
    if let Some(grpc) = &mut probe.grpc
        && grpc.service.is_none()
    {
        grpc.service = Some(String::new());
    }
}

fn default_http_get(http: &mut HttpGetAction) {
    set_str(&mut http.path, "/");
    set_str(&mut http.scheme, "HTTP");
}

/// File mode 0644 of configMap, secret, downwardAPI and projected volumes.
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// `SetDefaults_Volume` and its sources.
pub fn default_volume(v: &mut Volume) {
    let name = v.name.take();
    if *v == Volume::default() {
        v.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    v.name = name;
    if let Some(cm) = &mut v.config_map {
        set_i32(&mut cm.default_mode, DEFAULT_VOLUME_MODE);
    }
    if let Some(secret) = &mut v.secret {
        set_i32(&mut secret.default_mode, DEFAULT_VOLUME_MODE);
    }
    if let Some(api) = &mut v.downward_api {
        set_i32(&mut api.default_mode, DEFAULT_VOLUME_MODE);
        for item in &mut api.items {
            if let Some(field_ref) = &mut item.field_ref {
                default_field_selector(field_ref);
            }
        }
    }
    if let Some(projected) = &mut v.projected {
        set_i32(&mut projected.default_mode, DEFAULT_VOLUME_MODE);
        for source in &mut projected.sources {
            if let Some(token) = &mut source.service_account_token
                && token.expiration_seconds.is_none()
            {
                token.expiration_seconds = Some(3600);
            }
            if let Some(api) = &mut source.downward_api {
                for item in &mut api.items {
                    if let Some(field_ref) = &mut item.field_ref {
                        default_field_selector(field_ref);
                    }
                }
            }
        }
    }
    if let Some(host_path) = &mut v.host_path
        && host_path.r#type.is_none()
    {
        host_path.r#type = Some(String::new());
    }
    if let Some(template) = v
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        default_pvc_spec(template.spec.get_or_insert_with(Default::default));
    }
    if let Some(image) = &mut v.image
        && image.pull_policy.as_deref().is_none_or(str::is_empty)
    {
        image.pull_policy =
            Some(default_pull_policy(image.reference.as_deref().unwrap_or("")).to_string());
    }
}

/// Resource quantities are rounded up to milli precision (`SetDefaults_ResourceList`).
fn round_up_milli(list: &mut BTreeMap<String, QuantityMsg>) {
    for q in list.values_mut() {
        let Ok(value) = q.value.parse::<Quantity>() else {
            continue;
        };
        let rem = value.nanos().rem_euclid(1_000_000);
        if rem != 0 {
            q.value = Quantity::from_nanos(value.nanos() - rem + 1_000_000).to_string();
        }
    }
}

fn default_pvc_spec(spec: &mut PersistentVolumeClaimSpec) {
    set_str(&mut spec.volume_mode, "Filesystem");
}

// ---- workloads ----------------------------------------------------------------------------

/// `SetDefaults_Deployment`: 1 replica, RollingUpdate 25%/25%, 10 revisions, 600s deadline.
pub fn default_deployment(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    set_i32(&mut spec.replicas, 1);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    set_str(&mut strategy.r#type, "RollingUpdate");
    if strategy.r#type.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        if int_or_string_unset(&ru.max_unavailable) {
            ru.max_unavailable = str_value("25%");
        }
        if int_or_string_unset(&ru.max_surge) {
            ru.max_surge = str_value("25%");
        }
    }
    set_i32(&mut spec.revision_history_limit, 10);
    set_i32(&mut spec.progress_deadline_seconds, 600);
    default_pod_template(&mut spec.template);
}

/// `SetDefaults_ReplicaSet`: 1 replica.
pub fn default_replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    set_i32(&mut spec.replicas, 1);
    default_pod_template(&mut spec.template);
}

/// `SetDefaults_DaemonSet`: RollingUpdate with maxUnavailable 1, maxSurge 0; 10 revisions.
pub fn default_daemon_set(ds: &mut DaemonSet) {
    let spec = ds.spec.get_or_insert_with(Default::default);
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    set_str(&mut strategy.r#type, "RollingUpdate");
    if strategy.r#type.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        if int_or_string_unset(&ru.max_unavailable) {
            ru.max_unavailable = int_value(1);
        }
        if int_or_string_unset(&ru.max_surge) {
            ru.max_surge = int_value(0);
        }
    }
    set_i32(&mut spec.revision_history_limit, 10);
    default_pod_template(&mut spec.template);
}

/// `SetDefaults_StatefulSet`: OrderedReady, RollingUpdate with partition 0, Retain/Retain,
/// 1 replica, 10 revisions; claim templates get the PVC defaults.
pub fn default_stateful_set(ss: &mut StatefulSet) {
    let spec = ss.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    if strategy.r#type.as_deref().is_none_or(str::is_empty) {
        strategy.r#type = Some("RollingUpdate".into());
        strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
    }
    if strategy.r#type.as_deref() == Some("RollingUpdate")
        && let Some(ru) = &mut strategy.rolling_update
    {
        set_i32(&mut ru.partition, 0);
    }
    let policy = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    set_str(&mut policy.when_deleted, "Retain");
    set_str(&mut policy.when_scaled, "Retain");
    set_i32(&mut spec.replicas, 1);
    set_i32(&mut spec.revision_history_limit, 10);
    default_pod_template(&mut spec.template);
    for claim in &mut spec.volume_claim_templates {
        default_persistent_volume_claim(claim);
    }
}

/// `SetDefaults_Job`.
pub fn default_job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    set_i32(&mut spec.parallelism, 1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .map(|m| m.labels.clone());
    if let Some(labels) = template_labels.filter(|l| !l.is_empty()) {
        let meta = job.metadata.get_or_insert_with(Default::default);
        if meta.labels.is_empty() {
            meta.labels = labels;
        }
    }
    set_str(&mut spec.completion_mode, "NonIndexed");
    set_bool(&mut spec.suspend, false);
    if let Some(policy) = &mut spec.pod_failure_policy {
        for rule in &mut policy.rules {
            for pattern in &mut rule.on_pod_conditions {
                set_str(&mut pattern.status, "True");
            }
        }
    }
    if spec
        .pod_replacement_policy
        .as_deref()
        .is_none_or(str::is_empty)
    {
        let policy = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy = Some(policy.into());
    }
    default_pod_template(&mut spec.template);
}

/// `SetDefaults_CronJob`: Allow, not suspended, keep 3 successful and 1 failed Job.
pub fn default_cron_job(cj: &mut CronJob) {
    let spec = cj.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.concurrency_policy, "Allow");
    set_bool(&mut spec.suspend, false);
    set_i32(&mut spec.successful_jobs_history_limit, 3);
    set_i32(&mut spec.failed_jobs_history_limit, 1);
    let job = spec
        .job_template
        .get_or_insert_with(Default::default)
        .spec
        .get_or_insert_with(Default::default);
    default_pod_template(&mut job.template);
}

// ---- services and networking ------------------------------------------------------------------

/// `SetDefaults_Service`, plus what Kubernetes' service registry fills in before validation:
/// `clusterIPs` from `clusterIP`, and single-stack IPv4 families.
pub fn default_service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if timeout.is_none() {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIpConfig {
                        timeout_seconds: Some(10800),
                    }),
                });
            }
        }
        _ => {}
    }
    set_str(&mut spec.r#type, "ClusterIP");
    for port in &mut spec.ports {
        set_str(&mut port.protocol, "TCP");
        let unset = match port.target_port.as_ref().and_then(|t| t.value.as_ref()) {
            None => true,
            Some(int_or_string::Value::IntVal(0)) => true,
            Some(int_or_string::Value::StrVal(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset {
            port.target_port = int_value(port.port.unwrap_or(0));
        }
    }
    let kind = spec.r#type.clone().unwrap_or_default();
    let accessible = kind == "NodePort"
        || kind == "LoadBalancer"
        || (kind == "ClusterIP" && !spec.external_i_ps.is_empty());
    if accessible {
        set_str(&mut spec.external_traffic_policy, "Cluster");
    }
    if spec.internal_traffic_policy.is_none()
        && ["NodePort", "LoadBalancer", "ClusterIP"].contains(&kind.as_str())
    {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    if kind == "LoadBalancer" {
        set_bool(&mut spec.allocate_load_balancer_node_ports, true);
    }
    if kind == "ExternalName" {
        return;
    }
    let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
    if !cluster_ip.is_empty() && spec.cluster_i_ps.is_empty() {
        spec.cluster_i_ps = vec![cluster_ip.clone()];
    }
    if cluster_ip.is_empty()
        && let Some(first) = spec.cluster_i_ps.first()
    {
        spec.cluster_ip = Some(first.clone());
    }
    set_str(&mut spec.ip_family_policy, "SingleStack");
    if spec.ip_families.is_empty() {
        let family = |ip: &str| if ip.contains(':') { "IPv6" } else { "IPv4" };
        let ips: Vec<&String> = spec
            .cluster_i_ps
            .iter()
            .filter(|ip| ip.as_str() != "None")
            .collect();
        spec.ip_families = if !ips.is_empty() {
            ips.iter().map(|ip| family(ip).to_string()).collect()
        } else if spec.ip_family_policy.as_deref() == Some("RequireDualStack") {
            vec!["IPv4".into(), "IPv6".into()]
        } else {
            vec!["IPv4".into()]
        };
    }
}

/// Endpoints ports default to TCP.
pub fn default_endpoints(ep: &mut Endpoints) {
    for subset in &mut ep.subsets {
        for port in &mut subset.ports {
            set_str(&mut port.protocol, "TCP");
        }
    }
}

/// EndpointSlice ports default to name "" and protocol TCP.
pub fn default_endpoint_slice(slice: &mut EndpointSlice) {
    for port in &mut slice.ports {
        if port.name.is_none() {
            port.name = Some(String::new());
        }
        if port.protocol.is_none() {
            port.protocol = Some("TCP".into());
        }
    }
}

// ---- configuration and cluster kinds ----------------------------------------------------------

/// Secrets default to type Opaque; `stringData` is merged into `data` and cleared, as the
/// Kubernetes API does on every write.
pub fn default_secret(secret: &mut Secret) {
    set_str(&mut secret.r#type, "Opaque");
    for (key, value) in std::mem::take(&mut secret.string_data) {
        secret.data.insert(key, value.into_bytes());
    }
}

/// Namespaces carry the `kubernetes.io/metadata.name` label.
pub fn default_namespace(ns: &mut Namespace) {
    let meta = ns.metadata.get_or_insert_with(Default::default);
    if let Some(name) = meta.name.clone().filter(|n| !n.is_empty()) {
        meta.labels
            .insert("kubernetes.io/metadata.name".into(), name);
    }
}

/// Claims are Filesystem volumes and start Pending.
pub fn default_persistent_volume_claim(pvc: &mut PersistentVolumeClaim) {
    default_pvc_spec(pvc.spec.get_or_insert_with(Default::default));
    let status = pvc
        .status
        .get_or_insert_with(PersistentVolumeClaimStatus::default);
    set_str(&mut status.phase, "Pending");
}

/// `SetDefaults_LimitRangeItem`: Container limits default from max, requests from the default
/// limit or min.
pub fn default_limit_range(lr: &mut LimitRange) {
    for item in lr.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
        if item.r#type.as_deref() != Some("Container") {
            continue;
        }
        for (k, v) in &item.max {
            item.default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &item.default {
            item.default_request
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        for (k, v) in &item.min {
            item.default_request
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }
}

fn default_subjects(subjects: &mut [Subject]) {
    for subject in subjects {
        if subject.api_group.as_deref().is_none_or(str::is_empty) {
            match subject.kind.as_deref() {
                Some("ServiceAccount") => subject.api_group = Some(String::new()),
                Some("User" | "Group") => {
                    subject.api_group = Some("rbac.authorization.k8s.io".into())
                }
                _ => {}
            }
        }
    }
}

/// roleRef and User/Group subjects are in the RBAC API group.
pub fn default_role_binding(binding: &mut RoleBinding) {
    set_str(
        &mut binding
            .role_ref
            .get_or_insert_with(Default::default)
            .api_group,
        "rbac.authorization.k8s.io",
    );
    default_subjects(&mut binding.subjects);
}

/// roleRef and User/Group subjects are in the RBAC API group.
pub fn default_cluster_role_binding(binding: &mut ClusterRoleBinding) {
    set_str(
        &mut binding
            .role_ref
            .get_or_insert_with(Default::default)
            .api_group,
        "rbac.authorization.k8s.io",
    );
    default_subjects(&mut binding.subjects);
}

/// PriorityClasses preempt lower priorities unless told otherwise.
pub fn default_priority_class(pc: &mut PriorityClass) {
    set_str(&mut pc.preemption_policy, "PreemptLowerPriority");
}

/// The CPU utilization an HPA targets when it names no metric.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// autoscaling/v2: minReplicas 1, an 80% CPU metric when none is given, and the scale-up and
/// scale-down rules filled in when `behavior` is set.
pub fn default_horizontal_pod_autoscaler(hpa: &mut hpa_v2::HorizontalPodAutoscaler) {
    let spec = hpa.spec.get_or_insert_with(Default::default);
    set_i32(&mut spec.min_replicas, 1);
    if spec.metrics.is_empty() {
        spec.metrics = vec![hpa_v2::MetricSpec {
            r#type: Some("Resource".into()),
            resource: Some(hpa_v2::ResourceMetricSource {
                name: Some("cpu".into()),
                target: Some(hpa_v2::MetricTarget {
                    r#type: Some("Utilization".into()),
                    average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }];
    }
    if let Some(behavior) = &mut spec.behavior {
        let policy = |kind: &str, value: i32| hpa_v2::HpaScalingPolicy {
            r#type: Some(kind.into()),
            value: Some(value),
            period_seconds: Some(15),
        };
        let up = behavior.scale_up.get_or_insert_with(Default::default);
        set_i32(&mut up.stabilization_window_seconds, 0);
        set_str(&mut up.select_policy, "Max");
        if up.policies.is_empty() {
            up.policies = vec![policy("Pods", 4), policy("Percent", 100)];
        }
        let down = behavior.scale_down.get_or_insert_with(Default::default);
        set_i32(&mut down.stabilization_window_seconds, 300);
        set_str(&mut down.select_policy, "Max");
        if down.policies.is_empty() {
            down.policies = vec![policy("Percent", 100)];
        }
    }
}

/// autoscaling/v1: minReplicas 1.
pub fn default_horizontal_pod_autoscaler_v1(hpa: &mut hpa_v1::HorizontalPodAutoscaler) {
    set_i32(
        &mut hpa.spec.get_or_insert_with(Default::default).min_replicas,
        1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_and_pull_policies() {
        for (image, tag, policy) in [
            ("nginx", "latest", "Always"),
            ("nginx:latest", "latest", "Always"),
            ("nginx:1.27", "1.27", "IfNotPresent"),
            ("registry:5000/team/app", "latest", "Always"),
            ("registry:5000/team/app:v2", "v2", "IfNotPresent"),
            ("app@sha256:abcd", "", "IfNotPresent"),
            ("app:latest@sha256:abcd", "latest", "Always"),
        ] {
            assert_eq!(image_tag(image), tag, "{image}");
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn quantities_round_up_to_millis() {
        let mut list = BTreeMap::from([
            (
                "cpu".to_string(),
                QuantityMsg {
                    value: "100u".into(),
                },
            ),
            (
                "memory".to_string(),
                QuantityMsg {
                    value: "128Mi".into(),
                },
            ),
        ]);
        round_up_milli(&mut list);
        assert_eq!(list["cpu"].value, "1m");
        assert_eq!(list["memory"].value, "128Mi");
    }
}
