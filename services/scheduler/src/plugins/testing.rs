//! Builders for plugin table tests: nodes, pods, and running one plugin over a snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use navarch_api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec,
    ResourceRequirements, Taint as WireTaint, Toleration as WireToleration,
};
use navarch_api::meta::v1::{ObjectMeta, OwnerReference, Quantity};

use crate::framework::{FilterPlugin, ScorePlugin, Unfit};
use crate::pod_info::{LABEL_HOSTNAME, PodInfo};
use crate::snapshot::Snapshot;

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Quantity {
                    value: v.to_string(),
                },
            )
        })
        .collect()
}

/// A Ready node with `cpu`/`memory` allocatable, 110 pods, and its host name label.
pub fn node(name: &str, cpu: &str, memory: &str) -> Node {
    Node {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            labels: [(LABEL_HOSTNAME.to_string(), name.to_string())].into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: quantities(&[("cpu", cpu), ("memory", memory), ("pods", "110")]),
            conditions: vec![NodeCondition {
                r#type: Some("Ready".into()),
                status: Some("True".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn labeled(mut n: Node, pairs: &[(&str, &str)]) -> Node {
    let labels = &mut n.metadata.as_mut().unwrap().labels;
    for (k, v) in pairs {
        labels.insert(k.to_string(), v.to_string());
    }
    n
}

pub fn tainted(mut n: Node, key: &str, value: &str, effect: &str) -> Node {
    n.spec.as_mut().unwrap().taints.push(WireTaint {
        key: Some(key.into()),
        value: (!value.is_empty()).then(|| value.to_string()),
        effect: Some(effect.into()),
        ..Default::default()
    });
    n
}

pub fn ready(mut n: Node, status: &str) -> Node {
    n.status.as_mut().unwrap().conditions[0].status = Some(status.into());
    n
}

pub fn allocatable(mut n: Node, name: &str, value: &str) -> Node {
    n.status.as_mut().unwrap().allocatable.insert(
        name.into(),
        Quantity {
            value: value.into(),
        },
    );
    n
}

/// A pod in `default` with one container requesting `cpu`/`memory` ("" for none).
pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    let mut requests = Vec::new();
    if !cpu.is_empty() {
        requests.push(("cpu", cpu));
    }
    if !memory.is_empty() {
        requests.push(("memory", memory));
    }
    Pod {
        metadata: Some(ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: Some("c".into()),
                resources: Some(ResourceRequirements {
                    requests: quantities(&requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn spec(p: &mut Pod) -> &mut PodSpec {
    p.spec.as_mut().unwrap()
}

pub fn with_labels(mut p: Pod, pairs: &[(&str, &str)]) -> Pod {
    let labels = &mut p.metadata.as_mut().unwrap().labels;
    for (k, v) in pairs {
        labels.insert(k.to_string(), v.to_string());
    }
    p
}

pub fn owned_by(mut p: Pod, uid: &str) -> Pod {
    p.metadata
        .as_mut()
        .unwrap()
        .owner_references
        .push(OwnerReference {
            api_version: Some("apps/v1".into()),
            kind: Some("ReplicaSet".into()),
            name: Some(uid.into()),
            uid: Some(uid.into()),
            controller: Some(true),
            ..Default::default()
        });
    p
}

pub fn on(mut p: Pod, node: &str) -> Pod {
    spec(&mut p).node_name = Some(node.into());
    p
}

pub fn tolerating(mut p: Pod, key: &str, operator: &str, value: &str, effect: &str) -> Pod {
    spec(&mut p).tolerations.push(WireToleration {
        key: (!key.is_empty()).then(|| key.to_string()),
        operator: Some(operator.into()),
        value: (!value.is_empty()).then(|| value.to_string()),
        effect: (!effect.is_empty()).then(|| effect.to_string()),
        ..Default::default()
    });
    p
}

pub fn host_port(mut p: Pod, port: i32) -> Pod {
    spec(&mut p).containers[0].ports.push(ContainerPort {
        container_port: Some(port),
        host_port: Some(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    });
    p
}

pub fn info(p: &Pod) -> PodInfo {
    let priority = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    PodInfo::new(Arc::new(p.clone()), priority)
}

/// Runs a filter for `pod` on every node of the snapshot: `None` = fits, else the reasons.
pub fn filter_all(
    plugin: &dyn FilterPlugin,
    pod: &Pod,
    snapshot: &Snapshot,
) -> Vec<(String, Option<Vec<String>>)> {
    let pod = info(pod);
    let state = plugin.prepare(&pod, snapshot);
    snapshot
        .nodes()
        .iter()
        .map(|n| {
            let result = match &state {
                None => Ok(()),
                Some(s) => plugin.filter(s, &pod, n),
            };
            (
                n.name.clone(),
                result
                    .err()
                    .map(|u: Unfit| u.reasons().map(String::from).collect()),
            )
        })
        .collect()
}

/// The names of the nodes where `pod` passes the filter.
pub fn passing(plugin: &dyn FilterPlugin, pod: &Pod, snapshot: &Snapshot) -> Vec<String> {
    filter_all(plugin, pod, snapshot)
        .into_iter()
        .filter(|(_, r)| r.is_none())
        .map(|(n, _)| n)
        .collect()
}

/// Normalized scores of `pod` on every node, or `None` when the plugin skips the pod.
pub fn scores(plugin: &dyn ScorePlugin, pod: &Pod, snapshot: &Snapshot) -> Option<Vec<i64>> {
    let pod = info(pod);
    let nodes: Vec<_> = snapshot.nodes().iter().collect();
    let state = plugin.prepare(&pod, snapshot, &nodes)?;
    let mut s: Vec<i64> = nodes
        .iter()
        .map(|n| plugin.score(&state, &pod, n, snapshot))
        .collect();
    plugin.normalize(&state, &mut s);
    Some(s)
}

/// A pod labelled `app=<app>`.
pub fn app(name: &str, app: &str) -> Pod {
    with_labels(pod(name, "", ""), &[("app", app)])
}

/// Nodes a1 and a2 in zone `a`, b1 in zone `b` (4 CPUs, 4 GiB each).
pub fn zoned_nodes() -> Vec<Node> {
    use crate::pod_info::LABEL_ZONE;
    vec![
        labeled(node("a1", "4", "4Gi"), &[(LABEL_ZONE, "a")]),
        labeled(node("a2", "4", "4Gi"), &[(LABEL_ZONE, "a")]),
        labeled(node("b1", "4", "4Gi"), &[(LABEL_ZONE, "b")]),
    ]
}
