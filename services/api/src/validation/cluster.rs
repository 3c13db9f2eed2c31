//! Cluster-level and smaller kinds: Namespace, Node, Event, Lease, PriorityClass,
//! PersistentVolumeClaim, LimitRange, ResourceQuota, PodDisruptionBudget.

use std::collections::HashSet;

use super::meta::{NameRule, validate_label_selector, validate_namespace_finalizer};
use super::names::{
    INVALID_CIDR, is_dns1123_subdomain, is_qualified_name, is_valid_cidr, is_valid_label_value,
    is_valid_percent,
};
use super::pod::{
    validate_container_resource_name, validate_pvc_spec, validate_resource_quantity,
    validate_taint_effect,
};
use super::{
    Errs, Path, duplicate, each, forbidden, invalid, invalid_str, nonnegative, not_supported,
    or_default, q, required, s, validate_meta,
};
use crate::FieldError;
use crate::coordination::v1::Lease;
use crate::core::v1::{Event, LimitRange, Namespace, Node, PersistentVolumeClaim, ResourceQuota};
use crate::meta::v1::{IntOrString, int_or_string};
use crate::policy::v1::PodDisruptionBudget;
use crate::scheduling::v1::PriorityClass;

/// Validates a Namespace (a DNS-1123 label, cluster-scoped).
pub fn validate_namespace(ns: &Namespace, old: Option<&Namespace>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &ns.metadata,
        old.map(|o| &o.metadata),
        false,
        NameRule::DnsLabel,
        &mut errs,
    );
    for finalizer in ns
        .spec
        .as_ref()
        .map(|s| s.finalizers.as_slice())
        .unwrap_or_default()
    {
        validate_namespace_finalizer(finalizer, &Path::new("spec").child("finalizers"), &mut errs);
    }
    errs
}

/// A Namespace's phase follows its deletion timestamp.
pub(crate) fn validate_namespace_status(ns: &Namespace, errs: &mut Errs) {
    let deleting = ns.metadata.as_ref().is_some_and(|m| {
        m.deletion_timestamp
            .as_deref()
            .is_some_and(|t| !t.is_empty())
    });
    let phase = ns
        .status
        .as_ref()
        .map_or("", |s| s.phase.as_deref().unwrap_or(""));
    let path = Path::new("status").child("Phase");
    if !deleting && phase != "Active" {
        errs.push(invalid_str(
            &path,
            phase,
            "may only be 'Active' if `deletionTimestamp` is empty",
        ));
    } else if deleting && phase != "Terminating" {
        errs.push(invalid_str(
            &path,
            phase,
            "may only be 'Terminating' if `deletionTimestamp` is not empty",
        ));
    }
}

/// Validates a Node: name, taints, pod CIDRs; pod CIDRs and providerID are fixed once set.
pub fn validate_node(node: &Node, old: Option<&Node>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &node.metadata,
        old.map(|o| &o.metadata),
        false,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&node.spec);
    let path = Path::new("spec");
    let mut unique = HashSet::new();
    for (i, taint) in spec.taints.iter().enumerate() {
        let p = path.child("taints").index(i);
        let (key, value, effect) = (s(&taint.key), s(&taint.value), s(&taint.effect));
        super::meta::validate_label_name(key, &p.child("key"), &mut errs);
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(invalid_str(&p.child("value"), value, msgs.join(";")));
        }
        validate_taint_effect(effect, false, &p.child("effect"), &mut errs);
        if !unique.insert((effect, key)) {
            let mut e = duplicate(
                &p,
                format!(
                    "core.Taint{{Key:{}, Value:{}, Effect:{}}}",
                    q(key),
                    q(value),
                    q(effect)
                ),
            );
            e.detail = "taints must be unique by key and effect pair".into();
            errs.push(e);
        }
    }
    if let Some(cidr) = spec.pod_cidr.as_deref().filter(|c| !c.is_empty())
        && !is_valid_cidr(cidr)
    {
        errs.push(invalid_str(&path.child("podCIDR"), cidr, INVALID_CIDR));
    }
    let mut seen = HashSet::new();
    for (i, cidr) in spec.pod_cid_rs.iter().enumerate() {
        if !is_valid_cidr(cidr) {
            errs.push(invalid_str(
                &path.child("podCIDRs").index(i),
                cidr,
                INVALID_CIDR,
            ));
        } else if !seen.insert(cidr) {
            errs.push(super::duplicate_str(&path.child("podCIDRs").index(i), cidr));
        }
    }
    if spec.pod_cid_rs.len() > 2 {
        errs.push(invalid(
            &path.child("podCIDRs"),
            super::go_strings(&spec.pod_cid_rs),
            "may specify no more than one CIDR for each IP family",
        ));
    }
    if let Some(status) = &node.status {
        for (field, list) in [
            ("capacity", &status.capacity),
            ("allocatable", &status.allocatable),
        ] {
            for (name, quantity) in list {
                validate_resource_quantity(
                    name,
                    quantity,
                    &Path::new("status").child(field).child(name),
                    &mut errs,
                );
            }
        }
    }
    if let Some(old) = old {
        let old_spec = or_default(&old.spec);
        if !old_spec.pod_cid_rs.is_empty() && old_spec.pod_cid_rs != spec.pod_cid_rs {
            errs.push(forbidden(
                &path.child("podCIDRs"),
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = s(&old_spec.provider_id);
        if !old_provider.is_empty() && old_provider != s(&spec.provider_id) {
            errs.push(forbidden(
                &path.child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        if spec.external_id != old_spec.external_id {
            errs.push(forbidden(&path.child("externalID"), "may not be updated"));
        }
    }
    errs
}

/// Validates a core/v1 Event: it must name the object it is about, in its own namespace.
pub fn validate_event(event: &Event, old: Option<&Event>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &event.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let Some(involved) = &event.involved_object else {
        errs.push(required(&Path::new("involvedObject"), ""));
        return errs;
    };
    let namespace = event.metadata.as_ref().map_or("", |m| s(&m.namespace));
    let involved_ns = s(&involved.namespace);
    let ns_path = Path::new("involvedObject").child("namespace");
    let event_time = s(&event.event_time);
    if event_time.is_empty() {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(invalid_str(
                    &ns_path,
                    involved_ns,
                    "does not match event.namespace",
                ));
            }
        } else if namespace != involved_ns {
            errs.push(invalid_str(
                &ns_path,
                involved_ns,
                "does not match event.namespace",
            ));
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(invalid_str(
                &ns_path,
                involved_ns,
                "does not match event.namespace",
            ));
        }
        let controller = s(&event.reporting_component);
        if controller.is_empty() {
            errs.push(required(&Path::new("reportingComponent"), ""));
        }
        each(
            &mut errs,
            &Path::new("reportingComponent"),
            controller,
            is_qualified_name(controller),
        );
        for (field, value, limit) in [
            ("reportingInstance", s(&event.reporting_instance), 128),
            ("action", s(&event.action), 128),
            ("reason", s(&event.reason), 128),
        ] {
            if value.is_empty() {
                errs.push(required(&Path::new(field), ""));
            }
            if value.len() > limit {
                errs.push(invalid(
                    &Path::new(field),
                    q(""),
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if s(&event.message).len() > 1024 {
            errs.push(invalid(
                &Path::new("message"),
                q(""),
                "can have at most 1024 characters",
            ));
        }
    }
    each(
        &mut errs,
        &Path::new("namespace"),
        namespace,
        is_dns1123_subdomain(namespace),
    );
    errs
}

/// Validates a Lease.
pub fn validate_lease(lease: &Lease, old: Option<&Lease>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &lease.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&lease.spec);
    let path = Path::new("spec");
    if let Some(d) = spec.lease_duration_seconds
        && d <= 0
    {
        errs.push(invalid(
            &path.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.lease_transitions
        && t < 0
    {
        errs.push(invalid(
            &path.child("leaseTransitions"),
            t,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(strategy) = &spec.strategy
        && strategy != "OldestEmulationVersion"
    {
        errs.push(not_supported(
            &path.child("strategy"),
            strategy,
            &["OldestEmulationVersion"],
        ));
    }
    if spec
        .preferred_holder
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && spec.strategy.as_deref().unwrap_or("").is_empty()
    {
        errs.push(forbidden(
            &path.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

/// The highest priority a user-defined PriorityClass may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;

/// Validates a PriorityClass; `value` and `preemptionPolicy` never change.
pub fn validate_priority_class(pc: &PriorityClass, old: Option<&PriorityClass>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &pc.metadata,
        old.map(|o| &o.metadata),
        false,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let name = pc.metadata.as_ref().map_or("", |m| s(&m.name));
    let value = pc.value.unwrap_or(0);
    if name.starts_with("system-") {
        let known = match name {
            "system-node-critical" => Some(2_000_001_000),
            "system-cluster-critical" => Some(2_000_000_000),
            _ => None,
        };
        let problem = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some(v) if v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            errs.push(forbidden(
                &Path::new("metadata").child("name"),
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {problem}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(forbidden(
            &Path::new("value"),
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    if let Some(policy) = &pc.preemption_policy {
        super::pod::validate_preemption_policy(policy, &Path::new("preemptionPolicy"), &mut errs);
    }
    if let Some(old) = old {
        if pc.value != old.value {
            errs.push(forbidden(
                &Path::new("value"),
                "may not be changed in an update.",
            ));
        }
        super::immutable(
            &mut errs,
            &Path::new("preemptionPolicy"),
            &pc.preemption_policy,
            &old.preemption_policy,
            || {
                pc.preemption_policy
                    .as_deref()
                    .map_or_else(|| "null".to_string(), q)
            },
        );
    }
    errs
}

/// Validates a PersistentVolumeClaim.
pub fn validate_persistent_volume_claim(
    pvc: &PersistentVolumeClaim,
    old: Option<&PersistentVolumeClaim>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &pvc.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    validate_pvc_spec(&or_default(&pvc.spec), &Path::new("spec"), &mut errs);
    errs
}

/// Validates a LimitRange: known types, resource names, min ≤ default ≤ max.
pub fn validate_limit_range(lr: &LimitRange, old: Option<&LimitRange>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &lr.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let path = Path::new("spec").child("limits");
    let mut types = HashSet::new();
    for (i, item) in lr
        .spec
        .as_ref()
        .map(|s| s.limits.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = path.index(i);
        let kind = s(&item.r#type);
        if !kind.contains('/') && !["Pod", "Container", "PersistentVolumeClaim"].contains(&kind) {
            errs.push(invalid_str(
                &p.child("type"),
                kind,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(kind) {
            errs.push(super::duplicate_str(&p.child("type"), kind));
        }
        if kind == "Pod" {
            if !item.default.is_empty() {
                errs.push(forbidden(
                    &p.child("default"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
            if !item.default_request.is_empty() {
                errs.push(forbidden(
                    &p.child("defaultRequest"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
        }
        for (field, list) in [
            ("max", &item.max),
            ("min", &item.min),
            ("default", &item.default),
            ("defaultRequest", &item.default_request),
            ("maxLimitRequestRatio", &item.max_limit_request_ratio),
        ] {
            for (name, quantity) in list {
                let rp = p.child(field).key(name);
                if kind == "Pod" || kind == "Container" {
                    validate_container_resource_name(name, &rp, &mut errs);
                }
                validate_resource_quantity(name, quantity, &rp, &mut errs);
            }
        }
        for (name, min) in &item.min {
            let (Some(min), Some(max)) = (
                super::pod::parse_quantity(min),
                item.max.get(name).and_then(super::pod::parse_quantity),
            ) else {
                continue;
            };
            if min > max {
                errs.push(invalid(
                    &p.child("min").key(name),
                    min,
                    format!("min value {min} is greater than max value {max}"),
                ));
            }
        }
    }
    errs
}

/// Validates a ResourceQuota: quota resource names and non-negative amounts.
pub fn validate_resource_quota(rq: &ResourceQuota, old: Option<&ResourceQuota>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &rq.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&rq.spec);
    let path = Path::new("spec").child("hard");
    for (name, quantity) in &spec.hard {
        let p = path.key(name);
        each(&mut errs, &p, name, is_qualified_name(name));
        validate_resource_quantity(name, quantity, &p, &mut errs);
    }
    for (i, scope) in spec.scopes.iter().enumerate() {
        const SCOPES: [&str; 6] = [
            "BestEffort",
            "CrossNamespacePodAffinity",
            "NotBestEffort",
            "NotTerminating",
            "PriorityClass",
            "Terminating",
        ];
        if !SCOPES.contains(&scope.as_str()) {
            errs.push(invalid(
                &Path::new("spec").child("scopes").index(i),
                q(scope),
                "unsupported scope",
            ));
        }
    }
    if let Some(old) = old {
        let old_scopes: HashSet<&String> = old
            .spec
            .as_ref()
            .map(|s| s.scopes.iter().collect())
            .unwrap_or_default();
        let new_scopes: HashSet<&String> = spec.scopes.iter().collect();
        if old_scopes != new_scopes {
            errs.push(invalid(
                &Path::new("spec").child("scopes"),
                super::go_strings(&spec.scopes),
                "field is immutable",
            ));
        }
    }
    errs
}

/// Validates a PodDisruptionBudget.
pub fn validate_pod_disruption_budget(
    pdb: &PodDisruptionBudget,
    old: Option<&PodDisruptionBudget>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &pdb.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&pdb.spec);
    let path = Path::new("spec");
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(invalid(
            &path.child("minAvailable"),
            render_int_or_string(&spec.min_available),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (field, value) in [
        ("minAvailable", &spec.min_available),
        ("maxUnavailable", &spec.max_unavailable),
    ] {
        let p = path.child(field);
        match value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(int_or_string::Value::IntVal(n)) => nonnegative(&mut errs, &p, i64::from(*n)),
            Some(int_or_string::Value::StrVal(v)) => {
                let msgs = is_valid_percent(v);
                if msgs.is_empty() {
                    if v.trim_end_matches('%')
                        .parse::<i64>()
                        .is_ok_and(|n| n > 100)
                    {
                        errs.push(invalid(&p, v, "must not be greater than 100%"));
                    }
                } else {
                    errs.extend(msgs.into_iter().map(|m| invalid(&p, v, m)));
                }
            }
            None => {}
        }
    }
    if let Some(selector) = &spec.selector {
        validate_label_selector(selector, &path.child("selector"), &mut errs);
    }
    if let Some(policy) = &spec.unhealthy_pod_eviction_policy
        && policy != "IfHealthyBudget"
        && policy != "AlwaysAllow"
    {
        errs.push(not_supported(
            &path.child("unhealthyPodEvictionPolicy"),
            policy,
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
    errs
}

fn render_int_or_string(v: &Option<IntOrString>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(int_or_string::Value::IntVal(n)) => n.to_string(),
        Some(int_or_string::Value::StrVal(s)) => s.clone(),
        None => "null".into(),
    }
}
