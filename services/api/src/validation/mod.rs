//! Validation of every served kind with Kubernetes' rules, field paths and messages.
//!
//! The gateway runs [`crate::defaults::apply_defaults`] and then [`validate`] on create and
//! update; like Kubernetes, validation assumes defaults were applied (a missing
//! `spec.dnsPolicy` is reported as `Required value`). Every field at fault is reported, in the
//! order Kubernetes checks them, formatted by [`FieldError`]'s `Display`
//! (`spec.replicas: Invalid value: -1: must be greater than or equal to 0`).
//!
//! Typed entry points (`validate_pod`, `validate_deployment`, …) take the generated structs;
//! [`validate`] dispatches a `DynamicMessage` on its [`KindInfo`].

mod autoscaling;
mod cluster;
mod config;
mod cron;
mod meta;
pub mod names;
mod pod;
mod rbac;
mod service;
mod workloads;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use prost_reflect::DynamicMessage;

pub use autoscaling::{validate_horizontal_pod_autoscaler, validate_horizontal_pod_autoscaler_v1};
pub use cluster::{
    validate_event, validate_lease, validate_limit_range, validate_namespace, validate_node,
    validate_persistent_volume_claim, validate_pod_disruption_budget, validate_priority_class,
    validate_resource_quota,
};
pub use config::{validate_config_map, validate_secret, validate_service_account};
pub use cron::parse_schedule;
pub use meta::NameRule;
pub use pod::{validate_pod, validate_pod_template};
pub use rbac::{
    validate_cluster_role, validate_cluster_role_binding, validate_role, validate_role_binding,
};
pub use service::{validate_endpoint_slice, validate_endpoints, validate_service};
pub use workloads::{
    validate_controller_revision, validate_cron_job, validate_daemon_set, validate_deployment,
    validate_job, validate_replica_set, validate_stateful_set,
};

use crate::errors::{FieldError, FieldErrorType};
use crate::kinds::KindInfo;
use crate::meta::v1::{LabelSelector, ObjectMeta};

/// Validates an object of `kind` on create (`old` = `None`) or update (`old` = the stored
/// object). Returns every field at fault; empty means valid.
pub fn validate(
    kind: &KindInfo,
    obj: &DynamicMessage,
    old: Option<&DynamicMessage>,
) -> Vec<FieldError> {
    use crate::{
        apps, autoscaling as hpa, batch, coordination, core, discovery, policy, rbac as r,
        scheduling,
    };
    match (kind.group, kind.version, kind.kind) {
        ("", "v1", "Pod") => typed::<core::v1::Pod>(obj, old, validate_pod),
        ("", "v1", "PodTemplate") => {
            typed::<core::v1::PodTemplate>(obj, old, validate_pod_template)
        }
        ("", "v1", "Namespace") => typed::<core::v1::Namespace>(obj, old, validate_namespace),
        ("", "v1", "Node") => typed::<core::v1::Node>(obj, old, validate_node),
        ("", "v1", "Service") => typed::<core::v1::Service>(obj, old, validate_service),
        ("", "v1", "Endpoints") => typed::<core::v1::Endpoints>(obj, old, validate_endpoints),
        ("", "v1", "ConfigMap") => typed::<core::v1::ConfigMap>(obj, old, validate_config_map),
        ("", "v1", "Secret") => typed::<core::v1::Secret>(obj, old, validate_secret),
        ("", "v1", "Event") => typed::<core::v1::Event>(obj, old, validate_event),
        ("", "v1", "ServiceAccount") => {
            typed::<core::v1::ServiceAccount>(obj, old, validate_service_account)
        }
        ("", "v1", "PersistentVolumeClaim") => {
            typed::<core::v1::PersistentVolumeClaim>(obj, old, validate_persistent_volume_claim)
        }
        ("", "v1", "LimitRange") => typed::<core::v1::LimitRange>(obj, old, validate_limit_range),
        ("", "v1", "ResourceQuota") => {
            typed::<core::v1::ResourceQuota>(obj, old, validate_resource_quota)
        }
        ("apps", "v1", "Deployment") => {
            typed::<apps::v1::Deployment>(obj, old, validate_deployment)
        }
        ("apps", "v1", "ReplicaSet") => {
            typed::<apps::v1::ReplicaSet>(obj, old, validate_replica_set)
        }
        ("apps", "v1", "DaemonSet") => typed::<apps::v1::DaemonSet>(obj, old, validate_daemon_set),
        ("apps", "v1", "StatefulSet") => {
            typed::<apps::v1::StatefulSet>(obj, old, validate_stateful_set)
        }
        ("apps", "v1", "ControllerRevision") => {
            typed::<apps::v1::ControllerRevision>(obj, old, validate_controller_revision)
        }
        ("batch", "v1", "Job") => typed::<batch::v1::Job>(obj, old, validate_job),
        ("batch", "v1", "CronJob") => typed::<batch::v1::CronJob>(obj, old, validate_cron_job),
        ("coordination.k8s.io", "v1", "Lease") => {
            typed::<coordination::v1::Lease>(obj, old, validate_lease)
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => {
            typed::<discovery::v1::EndpointSlice>(obj, old, validate_endpoint_slice)
        }
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            typed::<hpa::v2::HorizontalPodAutoscaler>(obj, old, validate_horizontal_pod_autoscaler)
        }
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            typed::<hpa::v1::HorizontalPodAutoscaler>(
                obj,
                old,
                validate_horizontal_pod_autoscaler_v1,
            )
        }
        ("rbac.authorization.k8s.io", "v1", "Role") => {
            typed::<r::v1::Role>(obj, old, validate_role)
        }
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => {
            typed::<r::v1::ClusterRole>(obj, old, validate_cluster_role)
        }
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => {
            typed::<r::v1::RoleBinding>(obj, old, validate_role_binding)
        }
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            typed::<r::v1::ClusterRoleBinding>(obj, old, validate_cluster_role_binding)
        }
        ("scheduling.k8s.io", "v1", "PriorityClass") => {
            typed::<scheduling::v1::PriorityClass>(obj, old, validate_priority_class)
        }
        ("policy", "v1", "PodDisruptionBudget") => {
            typed::<policy::v1::PodDisruptionBudget>(obj, old, validate_pod_disruption_budget)
        }
        _ => validate_generic(kind, obj, old),
    }
}

/// Validates a write to the `status` subresource: metadata identity is kept and the status
/// fields Kubernetes checks (counts non-negative, pod IPs, namespace phase) are sane.
pub fn validate_status_update(
    kind: &KindInfo,
    obj: &DynamicMessage,
    old: &DynamicMessage,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (new_meta, old_meta) = (object_meta(obj), object_meta(old));
    meta::validate_object_meta_update(&new_meta, &old_meta, &Path::new("metadata"), &mut errs);
    match (kind.group, kind.kind) {
        ("", "Pod") => {
            if let (Ok(new), Ok(old)) = (
                obj.transcode_to::<crate::core::v1::Pod>(),
                old.transcode_to::<crate::core::v1::Pod>(),
            ) {
                pod::validate_pod_status_update(&new, &old, &mut errs);
            }
        }
        ("", "Namespace") => {
            if let Ok(ns) = obj.transcode_to::<crate::core::v1::Namespace>() {
                cluster::validate_namespace_status(&ns, &mut errs);
            }
        }
        ("apps", _) | ("batch", _) => workloads::validate_counts_status(obj, &mut errs),
        _ => {}
    }
    errs
}

fn typed<T: prost::Message + Default>(
    obj: &DynamicMessage,
    old: Option<&DynamicMessage>,
    f: fn(&T, Option<&T>) -> Vec<FieldError>,
) -> Vec<FieldError> {
    let new = match obj.transcode_to::<T>() {
        Ok(v) => v,
        Err(e) => {
            return vec![FieldError::invalid(
                "",
                "object",
                format!("cannot be decoded: {e}"),
            )];
        }
    };
    let old = match old.map(|o| o.transcode_to::<T>()).transpose() {
        Ok(v) => v,
        Err(e) => {
            return vec![FieldError::invalid(
                "",
                "object",
                format!("stored object cannot be decoded: {e}"),
            )];
        }
    };
    dedup(f(&new, old.as_ref()))
}

/// Drops repeated identical errors, as Kubernetes' `ErrorList.ToAggregate` does.
fn dedup(errs: Vec<FieldError>) -> Vec<FieldError> {
    let mut seen = std::collections::HashSet::new();
    errs.into_iter()
        .filter(|e| seen.insert(e.to_string()))
        .collect()
}

/// Kinds without specific rules: metadata only.
fn validate_generic(
    kind: &KindInfo,
    obj: &DynamicMessage,
    old: Option<&DynamicMessage>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = Path::new("metadata");
    match old {
        None => meta::validate_object_meta(
            &object_meta(obj),
            kind.namespaced,
            NameRule::DnsSubdomain,
            true,
            &path,
            &mut errs,
        ),
        Some(old) => meta::validate_object_meta_update(
            &object_meta(obj),
            &object_meta(old),
            &path,
            &mut errs,
        ),
    }
    errs
}

fn object_meta(obj: &DynamicMessage) -> ObjectMeta {
    obj.get_field_by_name("metadata")
        .and_then(|v| {
            v.as_message()
                .and_then(|m| m.transcode_to::<ObjectMeta>().ok())
        })
        .unwrap_or_default()
}

/// Runs create-time metadata validation, or update-time identity checks when `old` is given.
pub(crate) fn validate_meta(
    new: &Option<ObjectMeta>,
    old: Option<&Option<ObjectMeta>>,
    namespaced: bool,
    rule: NameRule,
    errs: &mut Errs,
) {
    let path = Path::new("metadata");
    let new = or_default(new);
    match old {
        None => meta::validate_object_meta(&new, namespaced, rule, true, &path, errs),
        Some(old) => meta::validate_object_meta_update(&new, &or_default(old), &path, errs),
    }
}

/// `ValidateLabelSelector` with paths under `root` (`""` for paths relative to the selector).
pub(crate) fn validate_label_selector_at(selector: &LabelSelector, root: &str, errs: &mut Errs) {
    meta::validate_label_selector(selector, &Path::new(root), errs);
}

// ---- field paths and error constructors -------------------------------------------------

/// A field path as Kubernetes prints it: `spec.containers[0].ports[1].name`, `data[key]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(root: &str) -> Self {
        Path(root.to_string())
    }
    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }
    pub(crate) fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }
    pub(crate) fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type Errs = Vec<FieldError>;

pub(crate) fn required(path: &Path, detail: impl Into<String>) -> FieldError {
    FieldError::required(path.as_str(), detail)
}

/// An invalid value rendered as given (numbers, Go-formatted structs).
pub(crate) fn invalid(
    path: &Path,
    value: impl fmt::Display,
    detail: impl Into<String>,
) -> FieldError {
    FieldError::invalid(path.as_str(), value, detail)
}

/// An invalid string value, quoted as Go's `%q`.
pub(crate) fn invalid_str(path: &Path, value: &str, detail: impl Into<String>) -> FieldError {
    FieldError::invalid(path.as_str(), q(value), detail)
}

pub(crate) fn not_supported(path: &Path, value: &str, supported: &[&str]) -> FieldError {
    FieldError::not_supported(path.as_str(), q_inner(value), supported)
}

pub(crate) fn duplicate(path: &Path, value: impl fmt::Display) -> FieldError {
    FieldError::duplicate(path.as_str(), value)
}

pub(crate) fn duplicate_str(path: &Path, value: &str) -> FieldError {
    FieldError::duplicate(path.as_str(), q(value))
}

pub(crate) fn forbidden(path: &Path, detail: impl Into<String>) -> FieldError {
    FieldError::forbidden(path.as_str(), detail)
}

pub(crate) fn not_found(path: &Path, value: &str) -> FieldError {
    FieldError {
        kind: FieldErrorType::NotFound,
        field: path.to_string(),
        value: Some(q(value)),
        detail: String::new(),
    }
}

pub(crate) fn too_many(path: &Path, actual: usize, max: usize) -> FieldError {
    FieldError {
        kind: FieldErrorType::TooMany,
        field: path.to_string(),
        value: Some(actual.to_string()),
        detail: format!("must have at most {max} items"),
    }
}

/// Pushes one `Invalid value` per message, Kubernetes' `for _, msg := range IsX(v)` idiom.
pub(crate) fn each(errs: &mut Errs, path: &Path, value: &str, msgs: Vec<String>) {
    errs.extend(msgs.into_iter().map(|m| invalid_str(path, value, m)));
}

/// `ValidateNonnegativeField`.
pub(crate) fn nonnegative(errs: &mut Errs, path: &Path, value: i64) {
    if value < 0 {
        errs.push(invalid(path, value, "must be greater than or equal to 0"));
    }
}

/// `ValidateImmutableField` for strings.
pub(crate) fn immutable_str(errs: &mut Errs, path: &Path, new: &str, old: &str) {
    if new != old {
        errs.push(invalid_str(path, new, "field is immutable"));
    }
}

/// `ValidateImmutableField` for any value, rendered by the caller.
pub(crate) fn immutable<T: PartialEq>(
    errs: &mut Errs,
    path: &Path,
    new: &T,
    old: &T,
    rendered: impl FnOnce() -> String,
) {
    if new != old {
        errs.push(invalid(path, rendered(), "field is immutable"));
    }
}

// ---- Go-style value rendering -------------------------------------------------------------

/// Go's `%q`.
pub(crate) fn q(value: &str) -> String {
    format!("\"{}\"", q_inner(value))
}

/// The inside of Go's `%q` (for constructors that add their own quotes).
fn q_inner(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `%#v` of a `map[string]string`.
pub(crate) fn go_map(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "map[string]string(nil)".to_string();
    }
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}:{}", q(k), q(v)))
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// Go's `%#v` of a `[]string`.
pub(crate) fn go_strings(items: &[String]) -> String {
    if items.is_empty() {
        return "[]string(nil)".to_string();
    }
    format!(
        "[]string{{{}}}",
        items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

/// Go's `%#v` of a `metav1.LabelSelector` (as `spec.selector: Invalid value: …` shows it).
pub(crate) fn go_selector(selector: &LabelSelector) -> String {
    let expressions = if selector.match_expressions.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = selector
            .match_expressions
            .iter()
            .map(|e| {
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                    q(s(&e.key)),
                    q(s(&e.operator)),
                    go_strings(&e.values)
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}",
        go_map(&selector.match_labels)
    )
}

/// An optional selector as Go renders a nil pointer.
pub(crate) fn go_selector_opt(selector: &Option<LabelSelector>) -> String {
    selector
        .as_ref()
        .map_or_else(|| "null".to_string(), go_selector)
}

// ---- small accessors ----------------------------------------------------------------------

/// The string or "".
pub(crate) fn s(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

/// The message or its zero value, as Go's non-pointer embedded structs behave.
pub(crate) fn or_default<T: Default + Clone>(value: &Option<T>) -> Cow<'_, T> {
    match value {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(T::default()),
    }
}
