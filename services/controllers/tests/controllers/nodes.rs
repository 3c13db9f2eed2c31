//! Node-facing loops: DaemonSets over fake Nodes, node lifecycle (lease expiry, taints,
//! eviction), node IPAM.

use std::collections::HashSet;
use std::time::Duration;

use navarch_api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use navarch_api::coordination::v1::{Lease, LeaseSpec};
use navarch_api::core::v1::{Node, NodeCondition, NodeStatus, Pod, PodSpec, Taint, Toleration};
use navarch_api::meta::v1::IntOrString;
use navarch_api::meta::v1::int_or_string::Value;
use navarch_gateway::Client;
use navarch_runtime::KubeObject;

use crate::common::*;

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A Ready node with a fresh Lease.
async fn add_node(c: &Client, name: &str) {
    t(c.create(
        "",
        &Node {
            metadata: meta("", name),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    set_ready(c, name).await;
    renew_lease(c, name).await;
}

/// Posts Ready=True (retrying: the IPAM loop may update the node meanwhile).
async fn set_ready(c: &Client, name: &str) {
    eventually("node status posted", || async {
        let mut n: Node = c.get("", name).await.unwrap();
        n.status = Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: Some("Ready".into()),
                status: Some("True".into()),
                reason: Some("KubeletReady".into()),
                last_heartbeat_time: Some(now()),
                last_transition_time: Some(now()),
                ..Default::default()
            }],
            ..Default::default()
        });
        c.update_status("", name, &n).await.is_ok()
    })
    .await;
}

async fn renew_lease(c: &Client, name: &str) {
    match c.get::<Lease>("kube-node-lease", name).await {
        Ok(mut l) => {
            l.spec.get_or_insert_with(Default::default).renew_time = Some(micro_now());
            let _ = c.update("kube-node-lease", name, &l).await;
        }
        Err(_) => {
            let l = Lease {
                metadata: meta("kube-node-lease", name),
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(micro_now()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            t(c.create("kube-node-lease", &l)).await.unwrap();
        }
    }
}

fn pinned_node(p: &Pod) -> String {
    p.spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms[0]
        .match_fields[0]
        .values[0]
        .clone()
}

async fn get_ds(c: &Client) -> DaemonSet {
    t(c.get("default", "agent")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_one_pod_per_eligible_node_and_rolls() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let _kubelet = FakeKubelet::start(&c, "default");
    for n in ["n1", "n2", "n3"] {
        add_node(&c, n).await;
    }
    let ds = DaemonSet {
        metadata: meta("default", "agent"),
        spec: Some(DaemonSetSpec {
            selector: selector("agent"),
            template: template("agent", "agent:1"),
            update_strategy: Some(DaemonSetUpdateStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString {
                        value: Some(Value::IntVal(1)),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    t(c.create("default", &ds)).await.unwrap();
    eventually("one ready pod per node", || async {
        let s = get_ds(&c).await.status.unwrap_or_default();
        s.desired_number_scheduled == Some(3)
            && s.number_ready == Some(3)
            && s.number_available == Some(3)
    })
    .await;
    let ps = pods(&c, "default").await;
    let nodes: HashSet<String> = ps.iter().map(pinned_node).collect();
    assert_eq!(
        nodes,
        HashSet::from(["n1".to_string(), "n2".into(), "n3".into()])
    );
    let tolerations = &ps[0].spec.as_ref().unwrap().tolerations;
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"))
    );
    assert!(
        ps.iter()
            .all(|p| p.meta().labels.contains_key("controller-revision-hash"))
    );

    // An untolerated NoSchedule taint makes n3 ineligible: its pod goes.
    eventually("n3 tainted", || async {
        let mut n3: Node = c.get("", "n3").await.unwrap();
        n3.spec
            .get_or_insert_with(Default::default)
            .taints
            .push(Taint {
                key: Some("dedicated".into()),
                value: Some("db".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            });
        c.update("", "n3", &n3).await.is_ok()
    })
    .await;
    eventually("n3's pod removed", || async {
        let ps = pods(&c, "default").await;
        ps.len() == 2 && ps.iter().all(|p| pinned_node(p) != "n3")
    })
    .await;

    // A new template rolls node by node.
    let mut ds = get_ds(&c).await;
    ds.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("agent:2".into());
    modify(&c, "default", "agent", |o: &mut DaemonSet| {
        o.spec = ds.spec.clone()
    })
    .await;
    eventually("every pod updated", || async {
        let s = get_ds(&c).await.status.unwrap_or_default();
        let ps = pods(&c, "default").await;
        s.updated_number_scheduled == Some(2)
            && s.number_available == Some(2)
            && ps.len() == 2
            && ps.iter().all(|p| image(p) == "agent:2")
    })
    .await;
    let revisions =
        t(c.list::<navarch_api::apps::v1::ControllerRevision>("default", &Default::default()))
            .await
            .unwrap()
            .items;
    assert_eq!(revisions.len(), 2, "one ControllerRevision per template");
    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_goes_unknown_gets_tainted_and_its_pods_are_evicted() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    add_node(&c, "alive").await;
    add_node(&c, "silent").await;
    // The live node's agent keeps renewing its Lease.
    let renewer = {
        let c = c.clone();
        tokio::spawn(async move {
            loop {
                renew_lease(&c, "alive").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let bound = |name: &str, tolerate: Option<i64>| Pod {
        metadata: meta("default", name),
        spec: Some(PodSpec {
            node_name: Some("silent".into()),
            tolerations: tolerate
                .map(|s| {
                    vec![Toleration {
                        key: Some("node.kubernetes.io/unreachable".into()),
                        operator: Some("Exists".into()),
                        effect: Some("NoExecute".into()),
                        toleration_seconds: Some(s),
                        ..Default::default()
                    }]
                })
                .unwrap_or_default(),
            ..template("x", "app:1").unwrap().spec.unwrap()
        }),
        ..Default::default()
    };
    for (name, tol) in [("victim", None), ("patient", Some(3600))] {
        let p = t(c.create("default", &bound(name, tol))).await.unwrap();
        assert!(mark_ready(&c, &p, "10.9.0.1").await);
    }

    eventually("the silent node Unknown and tainted", || async {
        let n: Node = c.get("", "silent").await.unwrap();
        let ready = n
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type.as_deref() == Some("Ready"))
            .unwrap();
        let taints = n.spec.unwrap_or_default().taints;
        ready.status.as_deref() == Some("Unknown")
            && ready.reason.as_deref() == Some("NodeStatusUnknown")
            && taints.iter().any(|t| {
                t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                    && t.effect.as_deref() == Some("NoExecute")
            })
    })
    .await;
    eventually("the pod without a long toleration evicted", || async {
        let p: Pod = c.get("default", "victim").await.unwrap();
        p.meta().deletion_timestamp.is_some()
    })
    .await;
    let patient: Pod = t(c.get("default", "patient")).await.unwrap();
    assert!(
        patient.meta().deletion_timestamp.is_none(),
        "a pod tolerating the taint for an hour stays"
    );
    // But not as Ready: no Service may send it traffic while its node is silent.
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.r#type.as_deref() == Some("Ready"))
            })
            .and_then(|c| c.status.clone())
    };
    eventually("the staying pod marked not ready", || async {
        let p: Pod = c.get("default", "patient").await.unwrap();
        ready(&p).as_deref() == Some("False")
    })
    .await;
    let alive: Node = t(c.get("", "alive")).await.unwrap();
    assert!(alive.spec.clone().unwrap_or_default().taints.is_empty());
    assert_eq!(
        alive.status.unwrap().conditions[0].status.as_deref(),
        Some("True"),
        "a node renewing its Lease stays Ready"
    );

    // Node IPAM gave both nodes distinct pod CIDRs.
    let mut cidrs = HashSet::new();
    for n in ["alive", "silent"] {
        let node: Node = t(c.get("", n)).await.unwrap();
        cidrs.insert(node.spec.unwrap().pod_cidr.unwrap_or_default());
    }
    assert_eq!(cidrs.len(), 2);
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.244.") && c.ends_with("/24")),
        "{cidrs:?}"
    );

    // The node comes back: taints go.
    renew_lease(&c, "silent").await;
    set_ready(&c, "silent").await;
    eventually("taints removed", || async {
        let n: Node = c.get("", "silent").await.unwrap();
        n.spec.unwrap_or_default().taints.is_empty()
    })
    .await;
    renewer.abort();
    manager.shutdown().await;
    cluster.stop().await;
}
