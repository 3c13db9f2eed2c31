//! HorizontalPodAutoscalers, autoscaling/v2 and v1 (`pkg/apis/autoscaling/validation`).

use super::meta::{NameRule, validate_label_selector};
use super::names::is_valid_path_segment_name;
use super::pod::{parse_quantity, validate_container_resource_name};
use super::{
    Errs, Path, each, forbidden, invalid, invalid_str, not_supported, or_default, required, s,
    validate_meta,
};
use crate::FieldError;
use crate::autoscaling::{v1, v2};
use crate::meta::v1::Quantity as QuantityMsg;

const MIN_REPLICAS_LOWER_BOUND: i32 = 1;

/// Validates an autoscaling/v2 HorizontalPodAutoscaler.
pub fn validate_horizontal_pod_autoscaler(
    hpa: &v2::HorizontalPodAutoscaler,
    old: Option<&v2::HorizontalPodAutoscaler>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &hpa.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&hpa.spec);
    let path = Path::new("spec");
    validate_replicas(
        spec.min_replicas,
        spec.max_replicas.unwrap_or(0),
        &path,
        &mut errs,
    );
    let target = or_default(&spec.scale_target_ref);
    validate_cross_version_ref(
        s(&target.kind),
        s(&target.name),
        &path.child("scaleTargetRef"),
        &mut errs,
    );
    for (i, metric) in spec.metrics.iter().enumerate() {
        validate_metric_spec(metric, &path.child("metrics").index(i), &mut errs);
    }
    if let Some(behavior) = &spec.behavior {
        let bp = path.child("behavior");
        for (field, rules) in [
            ("scaleUp", &behavior.scale_up),
            ("scaleDown", &behavior.scale_down),
        ] {
            if let Some(rules) = rules {
                validate_scaling_rules(rules, &bp.child(field), &mut errs);
            }
        }
    }
    errs
}

/// Validates an autoscaling/v1 HorizontalPodAutoscaler.
pub fn validate_horizontal_pod_autoscaler_v1(
    hpa: &v1::HorizontalPodAutoscaler,
    old: Option<&v1::HorizontalPodAutoscaler>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &hpa.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&hpa.spec);
    let path = Path::new("spec");
    validate_replicas(
        spec.min_replicas,
        spec.max_replicas.unwrap_or(0),
        &path,
        &mut errs,
    );
    let target = or_default(&spec.scale_target_ref);
    validate_cross_version_ref(
        s(&target.kind),
        s(&target.name),
        &path.child("scaleTargetRef"),
        &mut errs,
    );
    if let Some(cpu) = spec.target_cpu_utilization_percentage
        && cpu < 1
    {
        errs.push(invalid(
            &path.child("targetCPUUtilizationPercentage"),
            cpu,
            "must be greater than 0",
        ));
    }
    errs
}

fn validate_replicas(min: Option<i32>, max: i32, path: &Path, errs: &mut Errs) {
    if let Some(min) = min
        && min < MIN_REPLICAS_LOWER_BOUND
    {
        errs.push(invalid(
            &path.child("minReplicas"),
            min,
            format!("must be greater than or equal to {MIN_REPLICAS_LOWER_BOUND}"),
        ));
    }
    if max < 1 {
        errs.push(invalid(
            &path.child("maxReplicas"),
            max,
            "must be greater than 0",
        ));
    }
    if let Some(min) = min
        && max < min
    {
        errs.push(invalid(
            &path.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
}

fn validate_cross_version_ref(kind: &str, name: &str, path: &Path, errs: &mut Errs) {
    if kind.is_empty() {
        errs.push(required(&path.child("kind"), ""));
    } else {
        each(
            errs,
            &path.child("kind"),
            kind,
            is_valid_path_segment_name(kind, false),
        );
    }
    if name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else {
        each(
            errs,
            &path.child("name"),
            name,
            is_valid_path_segment_name(name, false),
        );
    }
}

const METRIC_TYPES: [&str; 5] = [
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

fn validate_metric_spec(metric: &v2::MetricSpec, path: &Path, errs: &mut Errs) {
    let kind = s(&metric.r#type);
    if kind.is_empty() {
        errs.push(required(
            &path.child("type"),
            "must specify a metric source type",
        ));
    }
    let present = [
        ("object", metric.object.is_some()),
        ("pods", metric.pods.is_some()),
        ("resource", metric.resource.is_some()),
        ("external", metric.external.is_some()),
        ("containerResource", metric.container_resource.is_some()),
    ];
    let count = present.iter().filter(|(_, p)| *p).count();
    if count == 1 {
        if let Some(object) = &metric.object {
            let op = path.child("object");
            let described = or_default(&object.described_object);
            validate_cross_version_ref(
                s(&described.kind),
                s(&described.name),
                &op.child("describedObject"),
                errs,
            );
            validate_metric_identifier(&or_default(&object.metric), &op.child("metric"), errs);
            let target = or_default(&object.target);
            validate_metric_target(&target, &op.child("target"), errs);
            if target.value.is_none() && target.average_value.is_none() {
                errs.push(required(
                    &op.child("target").child("averageValue"),
                    "must set either a target value or averageValue",
                ));
            }
        }
        if let Some(pods) = &metric.pods {
            let pp = path.child("pods");
            validate_metric_identifier(&or_default(&pods.metric), &pp.child("metric"), errs);
            let target = or_default(&pods.target);
            validate_metric_target(&target, &pp.child("target"), errs);
            if target.average_value.is_none() {
                errs.push(required(
                    &pp.child("target").child("averageValue"),
                    "must specify a positive target averageValue",
                ));
            }
        }
        if let Some(resource) = &metric.resource {
            validate_resource_source(
                s(&resource.name),
                &or_default(&resource.target),
                &path.child("resource"),
                errs,
            );
        }
        if let Some(external) = &metric.external {
            let ep = path.child("external");
            validate_metric_identifier(&or_default(&external.metric), &ep.child("metric"), errs);
            let target = or_default(&external.target);
            validate_metric_target(&target, &ep.child("target"), errs);
            if target.value.is_none() && target.average_value.is_none() {
                errs.push(required(
                    &ep.child("target").child("averageValue"),
                    "must set either a target value for metric or a per-pod target",
                ));
            }
        }
        if let Some(container) = &metric.container_resource {
            let cp = path.child("containerResource");
            validate_resource_source(
                s(&container.name),
                &or_default(&container.target),
                &cp,
                errs,
            );
            let name = s(&container.container);
            if name.is_empty() {
                errs.push(required(&cp.child("container"), "must specify a container"));
            } else {
                each(
                    errs,
                    &cp.child("container"),
                    name,
                    super::names::is_dns1123_label(name),
                );
            }
        }
    }
    let expected = match kind {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "External" => "external",
        "ContainerResource" => "containerResource",
        other => {
            if !other.is_empty() {
                errs.push(not_supported(&path.child("type"), other, &METRIC_TYPES));
            }
            ""
        }
    };
    if !expected.is_empty() && !present.iter().any(|(name, p)| *p && *name == expected) {
        errs.push(required(
            &path.child(expected),
            "must populate information for the given metric source",
        ));
    }
    if count > 1 {
        for (name, p) in present {
            if p && name != expected {
                errs.push(forbidden(
                    &path.child(name),
                    "must populate the given metric source only",
                ));
            }
        }
    }
}

fn validate_resource_source(name: &str, target: &v2::MetricTarget, path: &Path, errs: &mut Errs) {
    if name.is_empty() {
        errs.push(required(
            &path.child("name"),
            "must specify a resource name",
        ));
    } else {
        validate_container_resource_name(name, &path.child("name"), errs);
    }
    validate_metric_target(target, &path.child("target"), errs);
    match (
        target.average_utilization.is_some(),
        target.average_value.is_some(),
    ) {
        (false, false) => errs.push(required(
            &path.child("target").child("averageUtilization"),
            "must set either a target raw value or a target utilization",
        )),
        (true, true) => errs.push(forbidden(
            &path.child("target").child("averageValue"),
            "may not set both a target raw value and a target utilization",
        )),
        _ => {}
    }
}

fn validate_metric_identifier(id: &v2::MetricIdentifier, path: &Path, errs: &mut Errs) {
    let name = s(&id.name);
    if name.is_empty() {
        errs.push(required(&path.child("name"), "must specify a metric name"));
    } else {
        each(
            errs,
            &path.child("name"),
            name,
            is_valid_path_segment_name(name, false),
        );
    }
    if let Some(selector) = &id.selector {
        validate_label_selector(selector, &path.child("selector"), errs);
    }
}

fn validate_metric_target(target: &v2::MetricTarget, path: &Path, errs: &mut Errs) {
    let kind = s(&target.r#type);
    if kind.is_empty() {
        errs.push(required(
            &path.child("type"),
            "must specify a metric target type",
        ));
    }
    if kind != "Utilization" && kind != "Value" && kind != "AverageValue" {
        errs.push(invalid_str(
            &path.child("type"),
            kind,
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    let positive = |q: &Option<QuantityMsg>| {
        q.as_ref()
            .is_none_or(|q| parse_quantity(q).is_some_and(|v| v.nanos() > 0))
    };
    if !positive(&target.value) {
        errs.push(invalid(
            &path.child("value"),
            target.value.as_ref().map_or("", |q| q.value.as_str()),
            "must be positive",
        ));
    }
    if !positive(&target.average_value) {
        let value = target
            .average_value
            .as_ref()
            .map_or("", |q| q.value.as_str());
        errs.push(invalid(
            &path.child("averageValue"),
            value,
            "must be positive",
        ));
    }
    if let Some(u) = target.average_utilization
        && u < 1
    {
        errs.push(invalid(
            &path.child("averageUtilization"),
            u,
            "must be greater than 0",
        ));
    }
}

fn validate_scaling_rules(rules: &v2::HpaScalingRules, path: &Path, errs: &mut Errs) {
    if let Some(window) = rules.stabilization_window_seconds {
        if window < 0 {
            errs.push(invalid(
                &path.child("stabilizationWindowSeconds"),
                window,
                "must be greater than or equal to zero",
            ));
        }
        if window > 3600 {
            errs.push(invalid(
                &path.child("stabilizationWindowSeconds"),
                window,
                "must be less than or equal to 3600",
            ));
        }
    }
    if let Some(select) = &rules.select_policy
        && !["Max", "Min", "Disabled"].contains(&select.as_str())
    {
        errs.push(not_supported(
            &path.child("selectPolicy"),
            select,
            &["Disabled", "Max", "Min"],
        ));
    }
    if rules.policies.is_empty() && rules.select_policy.as_deref() != Some("Disabled") {
        errs.push(required(
            &path.child("policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, policy) in rules.policies.iter().enumerate() {
        let pp = path.child("policies").index(i);
        let kind = s(&policy.r#type);
        if kind != "Pods" && kind != "Percent" {
            errs.push(not_supported(&pp.child("type"), kind, &["Percent", "Pods"]));
        }
        let value = policy.value.unwrap_or(0);
        if value <= 0 {
            errs.push(invalid(
                &pp.child("value"),
                value,
                "must be greater than zero",
            ));
        }
        let period = policy.period_seconds.unwrap_or(0);
        if period <= 0 {
            errs.push(invalid(
                &pp.child("periodSeconds"),
                period,
                "must be greater than zero",
            ));
        }
        if period > 1800 {
            errs.push(invalid(
                &pp.child("periodSeconds"),
                period,
                "must be less than or equal to 1800",
            ));
        }
    }
    if let Some(tolerance) = &rules.tolerance
        && parse_quantity(tolerance).is_some_and(|t| t.nanos() < 0)
    {
        errs.push(invalid(
            &path.child("tolerance"),
            &tolerance.value,
            "must be greater than or equal to 0",
        ));
    }
}
