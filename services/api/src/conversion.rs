//! Kinds served at several versions share one stored version, as in Kubernetes: the
//! `autoscaling/v1` HorizontalPodAutoscaler is stored as `autoscaling/v2` and converted at the
//! API's edge, both ways, after `pkg/apis/autoscaling/v1/conversion.go`:
//!
//! - v1's `targetCPUUtilizationPercentage` is v2's CPU `Utilization` Resource metric, and
//!   `status.currentCPUUtilizationPercentage` its current average utilization;
//! - what v1 cannot say travels in annotations, so a v2 object read and written back through
//!   v1 keeps it: the other metrics (`autoscaling.alpha.kubernetes.io/metrics`), the
//!   behavior (`autoscaling.alpha.kubernetes.io/behavior`), the status conditions
//!   (`autoscaling.alpha.kubernetes.io/conditions`) and the other current metrics
//!   (`autoscaling.alpha.kubernetes.io/current-metrics`).

use serde_json::{Map, Value as Json, json};

use crate::codec::FieldValidation;
use crate::kinds::{self, KindInfo};
use crate::{ApiError, Object};

pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";

/// The version a kind is stored at (itself for most kinds).
pub fn storage_kind(kind: &'static KindInfo) -> &'static KindInfo {
    if kind.group == "autoscaling" && kind.kind == "HorizontalPodAutoscaler" && kind.version == "v1"
    {
        kinds::by_kind("autoscaling/v2", "HorizontalPodAutoscaler").unwrap_or(kind)
    } else {
        kind
    }
}

/// `obj` (of a served version) at its stored version.
pub fn to_storage(obj: Object) -> Result<Object, ApiError> {
    let target = storage_kind(obj.kind);
    if std::ptr::eq(target, obj.kind) {
        return Ok(obj);
    }
    let json = hpa_v1_to_v2(obj.to_json());
    decode(target, &json)
}

/// A stored `obj` as the version `served` asked for.
pub fn to_served(obj: Object, served: &'static KindInfo) -> Result<Object, ApiError> {
    if std::ptr::eq(served, obj.kind) || !std::ptr::eq(storage_kind(served), obj.kind) {
        return Ok(obj);
    }
    let json = hpa_v2_to_v1(obj.to_json());
    decode(served, &json)
}

fn decode(kind: &'static KindInfo, json: &Json) -> Result<Object, ApiError> {
    Object::from_json(kind, json, FieldValidation::Ignore).map(|(o, _)| o)
}

/// The fields both versions have, under the same names.
const SPEC_KEYS: &[&str] = &["scaleTargetRef", "minReplicas", "maxReplicas"];
const STATUS_KEYS: &[&str] = &[
    "currentReplicas",
    "desiredReplicas",
    "lastScaleTime",
    "observedGeneration",
];

fn copy(from: &Json, keys: &[&str]) -> Map<String, Json> {
    keys.iter()
        .filter_map(|k| Some((k.to_string(), from.get(*k)?.clone())))
        .collect()
}

fn is_cpu_utilization(metric: &Json) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn annotations(obj: &mut Json) -> &mut Map<String, Json> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let meta = obj["metadata"].as_object_mut().expect("an object");
    if !meta.get("annotations").is_some_and(Json::is_object) {
        meta.insert("annotations".into(), json!({}));
    }
    meta.get_mut("annotations")
        .and_then(Json::as_object_mut)
        .expect("an object")
}

/// Takes a JSON-valued annotation off `obj`.
fn take_annotation(obj: &mut Json, key: &str) -> Option<Json> {
    let a = annotations(obj);
    let v = a
        .remove(key)
        .and_then(|v| serde_json::from_str(v.as_str()?).ok());
    if a.is_empty() {
        obj["metadata"].as_object_mut()?.remove("annotations");
    }
    v
}

fn put_annotation(obj: &mut Json, key: &str, value: &Json) {
    annotations(obj).insert(key.into(), Json::String(value.to_string()));
}

/// autoscaling/v1 → autoscaling/v2.
pub fn hpa_v1_to_v2(mut v1: Json) -> Json {
    let other_metrics = take_annotation(&mut v1, METRICS_ANNOTATION);
    let behavior = take_annotation(&mut v1, BEHAVIOR_ANNOTATION);
    let conditions = take_annotation(&mut v1, CONDITIONS_ANNOTATION);
    let current_other = take_annotation(&mut v1, CURRENT_METRICS_ANNOTATION);
    let spec = v1["spec"].take();
    let status = v1["status"].take();
    let mut metrics: Vec<Json> = other_metrics
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    if let Some(pct) = spec
        .get("targetCPUUtilizationPercentage")
        .and_then(Json::as_i64)
    {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": pct}}}),
        );
    }
    let mut spec2 = copy(&spec, SPEC_KEYS);
    if !metrics.is_empty() {
        spec2.insert("metrics".into(), Json::Array(metrics));
    }
    if let Some(b) = behavior {
        spec2.insert("behavior".into(), b);
    }
    let mut out = v1;
    out["apiVersion"] = json!("autoscaling/v2");
    out["spec"] = Json::Object(spec2);
    if status.is_object() {
        let mut status2 = copy(&status, STATUS_KEYS);
        let mut current: Vec<Json> = current_other
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        if let Some(pct) = status
            .get("currentCPUUtilizationPercentage")
            .and_then(Json::as_i64)
        {
            current.insert(
                0,
                json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": pct}}}),
            );
        }
        if !current.is_empty() {
            status2.insert("currentMetrics".into(), Json::Array(current));
        }
        if let Some(c) = conditions {
            status2.insert("conditions".into(), c);
        }
        out["status"] = Json::Object(status2);
    } else if let Some(o) = out.as_object_mut() {
        o.remove("status");
    }
    out
}

/// autoscaling/v2 → autoscaling/v1.
pub fn hpa_v2_to_v1(mut v2: Json) -> Json {
    let spec = v2["spec"].take();
    let status = v2["status"].take();
    let mut spec1 = copy(&spec, SPEC_KEYS);
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let (cpu, other): (Vec<Json>, Vec<Json>) = metrics.into_iter().partition(is_cpu_utilization);
    if let Some(pct) = cpu
        .first()
        .and_then(|m| m["resource"]["target"]["averageUtilization"].as_i64())
    {
        spec1.insert("targetCPUUtilizationPercentage".into(), json!(pct));
    }
    let mut out = v2;
    out["apiVersion"] = json!("autoscaling/v1");
    if !other.is_empty() {
        put_annotation(&mut out, METRICS_ANNOTATION, &Json::Array(other));
    }
    if let Some(b) = spec.get("behavior").filter(|b| b.is_object()) {
        put_annotation(&mut out, BEHAVIOR_ANNOTATION, b);
    }
    out["spec"] = Json::Object(spec1);
    if status.is_object() {
        let mut status1 = copy(&status, STATUS_KEYS);
        let current = status["currentMetrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (cpu, other): (Vec<Json>, Vec<Json>) = current.into_iter().partition(|m| {
            m["type"] == "Resource"
                && m["resource"]["name"] == "cpu"
                && m["resource"]["current"]["averageUtilization"].is_i64()
        });
        if let Some(pct) = cpu
            .first()
            .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
        {
            status1.insert("currentCPUUtilizationPercentage".into(), json!(pct));
        }
        if !other.is_empty() {
            put_annotation(&mut out, CURRENT_METRICS_ANNOTATION, &Json::Array(other));
        }
        if let Some(c) = status
            .get("conditions")
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
        {
            put_annotation(&mut out, CONDITIONS_ANNOTATION, c);
        }
        out["status"] = Json::Object(status1);
    } else if let Some(o) = out.as_object_mut() {
        o.remove("status");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Json {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}
            },
            "status": {
                "currentReplicas": 2,
                "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 75, "averageValue": "75m"}}}
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}]
            }
        })
    }

    #[test]
    fn v2_reads_as_v1_with_the_rest_in_annotations() {
        let v1 = hpa_v2_to_v1(v2());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["spec"]["maxReplicas"], 5);
        assert!(v1["spec"].get("metrics").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 75);
        assert_eq!(v1["status"]["desiredReplicas"], 3);
        let a = &v1["metadata"]["annotations"];
        let other: Json = serde_json::from_str(a[METRICS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(other[0]["resource"]["name"], "memory");
        assert!(
            a[CONDITIONS_ANNOTATION]
                .as_str()
                .unwrap()
                .contains("SucceededRescale")
        );
        assert!(a[BEHAVIOR_ANNOTATION].as_str().unwrap().contains("60"));
    }

    #[test]
    fn v1_round_trip_keeps_what_v1_cannot_say() {
        let back = hpa_v1_to_v2(hpa_v2_to_v1(v2()));
        let original = v2();
        assert_eq!(back["spec"], original["spec"]);
        assert_eq!(
            back["status"]["conditions"],
            original["status"]["conditions"]
        );
        assert_eq!(back["status"]["desiredReplicas"], 3);
        assert_eq!(
            back["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            75
        );
        assert!(back["metadata"].get("annotations").is_none());
    }

    #[test]
    fn a_plain_v1_object_becomes_a_cpu_utilization_metric() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 80}
        });
        let v2 = hpa_v1_to_v2(v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(v2.get("status").is_none());
        let v1_kind = kinds::by_kind("autoscaling/v1", "HorizontalPodAutoscaler").unwrap();
        let (obj, _) = Object::from_json(
            v1_kind,
            &json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}, "spec": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 60}}),
            FieldValidation::Strict,
        )
        .unwrap();
        let stored = to_storage(obj).unwrap();
        assert_eq!(stored.kind.version, "v2");
        let served = to_served(stored, v1_kind).unwrap();
        assert_eq!(
            served.to_json()["spec"]["targetCPUUtilizationPercentage"],
            60
        );
    }
}
