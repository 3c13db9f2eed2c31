//! Pod helpers shared by the workload loops (Kubernetes' `podutil` and `controller_utils`):
//! activity, readiness and availability, the order surplus pods are deleted in, pods from
//! templates, and claiming (adoption and release by selector).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use navarch_api::core::v1::{Pod, PodTemplateSpec};
use navarch_api::meta::v1::{ObjectMeta, OwnerReference};
use navarch_api::selectors::LabelSelector;
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use navarch_runtime::KubeObject;

use crate::util::{self, parse_time};

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Neither terminal nor being deleted (`FilterActivePods`).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.meta().deletion_timestamp.is_none()
}

/// Being deleted but not finished.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.meta().deletion_timestamp.is_some() && !is_terminal(pod)
}

fn ready_condition(pod: &Pod) -> Option<&navarch_api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some("Ready"))
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status.as_deref() == Some("True"))
}

/// When the pod became ready (its Ready condition's lastTransitionTime).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status.as_deref() == Some("True"))
        .and_then(|c| parse_time(c.last_transition_time.as_deref()))
}

/// Ready for at least `min_ready_seconds` (`IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(since) => util::seconds_between(since, now) >= f64::from(min_ready_seconds),
        None => false,
    }
}

/// How long until a ready pod becomes available (`None` when it already is or is not ready).
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<f64> {
    if min_ready_seconds <= 0 || !is_ready(pod) {
        return None;
    }
    let since = ready_since(pod)?;
    let left = f64::from(min_ready_seconds) - util::seconds_between(since, now);
    (left > 0.0).then_some(left)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .map(|s| {
            s.container_statuses
                .iter()
                .map(|c| c.restart_count.unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.meta()
        .annotations
        .get("controller.kubernetes.io/pod-deletion-cost")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Orders pods so the ones to delete first come first (`ActivePodsWithRanks`): unscheduled,
/// pending, not ready, cheaper to delete, crowded on one node, ready more recently, more
/// restarts, newer.
pub fn deletion_order(pods: &mut [Arc<Pod>]) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods.iter() {
        if let Some(n) = p.node_name() {
            *per_node.entry(n.to_string()).or_default() += 1;
        }
    }
    let rank = |p: &Pod| p.node_name().map(|n| per_node[n]).unwrap_or(0);
    pods.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        let by = |o: Ordering| o;
        by(a.node_name().is_some().cmp(&b.node_name().is_some()))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(is_ready(a).cmp(&is_ready(b)))
            .then(deletion_cost(a).cmp(&deletion_cost(b)))
            .then(rank(b).cmp(&rank(a)))
            .then_with(|| match (ready_since(a), ready_since(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            })
            .then(restarts(b).cmp(&restarts(a)))
            .then_with(|| {
                let ca = a.meta().creation_timestamp.clone().unwrap_or_default();
                let cb = b.meta().creation_timestamp.clone().unwrap_or_default();
                cb.cmp(&ca)
            })
            .then_with(|| b.meta().name.cmp(&a.meta().name))
    });
}

/// A pod for `template` owned by `owner`.
pub fn from_template(template: &PodTemplateSpec, namespace: &str, owner: OwnerReference) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: Some(ObjectMeta {
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: vec![owner],
            ..Default::default()
        }),
        spec: template.spec.clone(),
        ..Default::default()
    }
}

/// Claims dependents for a controller (`ControllerRefManager.Claim*`): keeps the ones it
/// controls that still match, adopts matching orphans, releases controlled ones that no
/// longer match. Returns the claimed objects.
pub async fn claim<T: KubeObject>(
    client: &Client,
    owner_ref: &OwnerReference,
    owner_deleting: bool,
    selector: &LabelSelector,
    candidates: Vec<Arc<T>>,
) -> Result<Vec<Arc<T>>, ApiError> {
    let owner_uid = owner_ref.uid.as_deref().unwrap_or("");
    let mut claimed = Vec::new();
    let mut first_error = None;
    for obj in candidates {
        let meta = obj.meta();
        let matches = selector.matches(&meta.labels);
        match navarch_runtime::object::controller_of(meta) {
            Some(r) if r.uid.as_deref() == Some(owner_uid) => {
                if matches {
                    claimed.push(obj);
                } else if !owner_deleting {
                    let released = util::update_meta(client, obj.as_ref(), |m| {
                        m.owner_references
                            .retain(|r| r.uid.as_deref() != Some(owner_uid));
                    })
                    .await;
                    match released {
                        Ok(_) => {}
                        Err(e) if e.reason == Reason::NotFound => {}
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
            Some(_) => {}
            None => {
                if !matches || owner_deleting || meta.deletion_timestamp.is_some() {
                    continue;
                }
                let adopted = util::update_meta(client, obj.as_ref(), |m| {
                    m.owner_references.push(owner_ref.clone());
                })
                .await;
                match adopted {
                    Ok(o) => claimed.push(Arc::new(o)),
                    Err(e) if e.reason == Reason::NotFound => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{PodCondition, PodSpec, PodStatus};

    use super::*;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: Some(ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(created.into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: vec![PodCondition {
                    r#type: Some("Ready".into()),
                    status: Some(if ready { "True" } else { "False" }.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn surplus_pods_are_deleted_unscheduled_then_not_ready_then_newest() {
        let mut pods = vec![
            pod("old-ready", "n1", "Running", true, "2024-01-01T00:00:00Z"),
            pod("new-ready", "n2", "Running", true, "2024-01-02T00:00:00Z"),
            pod("not-ready", "n3", "Running", false, "2024-01-01T00:00:00Z"),
            pod("pending", "n4", "Pending", false, "2024-01-01T00:00:00Z"),
            pod("unscheduled", "", "Pending", false, "2024-01-01T00:00:00Z"),
        ];
        deletion_order(&mut pods);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.meta().name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "not-ready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut p = (*pod("p", "n", "Running", true, "2024-01-01T00:00:00Z")).clone();
        p.status.as_mut().unwrap().conditions[0].last_transition_time =
            Some("2024-01-01T00:00:10Z".into());
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(is_available(&p, 0, at("2024-01-01T00:00:10Z")));
        assert!(!is_available(&p, 5, at("2024-01-01T00:00:12Z")));
        assert!(is_available(&p, 5, at("2024-01-01T00:00:15Z")));
        assert_eq!(
            until_available(&p, 5, at("2024-01-01T00:00:12Z")),
            Some(3.0)
        );
    }
}
