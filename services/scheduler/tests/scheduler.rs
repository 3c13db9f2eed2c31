//! The scheduler against a real gateway (in-process, memory store, 127.0.0.1:0): binding,
//! Unschedulable conditions and events, retries when the cluster changes, priorities,
//! schedulerName, no double-booking, restarts and leader election.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use navarch_api::core::v1::{
    Container, Event as CoreEvent, Node, NodeCondition, NodeStatus, Pod, PodSpec,
    ResourceRequirements,
};
use navarch_api::meta::v1::{ObjectMeta, Quantity};
use navarch_api::scheduling::v1::PriorityClass;
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::client::ListParams;
use navarch_gateway::{Client, GatewayConfig, MastersOnly, RunningGateway};
use navarch_runtime::LeaderElectionConfig;
use navarch_scheduler::SchedulerConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "admin-token";

struct Cluster {
    gateway: Option<RunningGateway>,
    url: String,
}

impl Cluster {
    async fn start() -> Self {
        let mut tokens = TokenFile::default();
        tokens.insert(
            TOKEN,
            UserInfo {
                name: "admin".into(),
                uid: "1".into(),
                groups: vec!["system:masters".into()],
                extra: Default::default(),
            },
        );
        let gateway = navarch_gateway::start(GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            store: navarch_store::open_memory(),
            authenticator: AuthChain::new(vec![Arc::new(tokens)]),
            authorizer: Arc::new(MastersOnly),
            tls: None,
            tokens: None,
            audit: None,
            node_signer: None,
        })
        .await
        .unwrap();
        let url = format!("http://{}", gateway.addr);
        Self {
            gateway: Some(gateway),
            url,
        }
    }

    async fn client(&self) -> Client {
        t(Client::connect(&self.url, "", TOKEN)).await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            t(g.shutdown()).await;
        }
    }
}

async fn t<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

/// A running scheduler; dropping the handle does not stop it, `stop` / `kill` do.
struct Running {
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Graceful: the scheduler stops and releases its lease.
    async fn stop(self) {
        self.token.cancel();
        t(self.task).await.unwrap();
    }

    /// Abrupt: everything in flight is dropped, nothing is released.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn config(identity: &str) -> SchedulerConfig {
    SchedulerConfig {
        leader_election: None,
        backoff: (Duration::from_millis(100), Duration::from_millis(500)),
        ..SchedulerConfig::new(identity)
    }
}

fn start(client: &Client, config: SchedulerConfig) -> Running {
    let token = CancellationToken::new();
    let client = client.clone();
    let stop = token.clone();
    let task = tokio::spawn(navarch_scheduler::run(client, config, stop));
    Running { token, task }
}

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

fn node(name: &str, cpu: &str, pods: &str) -> Node {
    Node {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: quantities(&[("cpu", cpu), ("memory", "8Gi"), ("pods", pods)]),
            capacity: quantities(&[("cpu", cpu), ("memory", "8Gi"), ("pods", pods)]),
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

fn pod(name: &str, cpu: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                resources: Some(ResourceRequirements {
                    requests: quantities(&[("cpu", cpu)]),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn priority_class(name: &str, value: i32) -> PriorityClass {
    PriorityClass {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        }),
        value: Some(value),
        ..Default::default()
    }
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

async fn pods(c: &Client) -> Vec<Pod> {
    t(c.list::<Pod>("default", &ListParams::default()))
        .await
        .unwrap()
        .items
}

/// Polls until `check` passes on the pods; returns them.
async fn until_pods(c: &Client, what: &str, check: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    tokio::time::timeout(T, async {
        loop {
            let list = pods(c).await;
            if check(&list) {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn bound(list: &[Pod]) -> usize {
    list.iter().filter(|p| node_of(p).is_some()).count()
}

fn scheduled_condition(p: &Pod) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some("PodScheduled"))
        .map(|c| {
            (
                c.status.clone().unwrap_or_default(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

#[tokio::test]
async fn two_pods_that_each_need_60_percent_of_the_only_node_get_one_binding() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("", &node("only", "1", "110"))).await.unwrap();
    let scheduler = start(&c, config("s1"));
    let (pa, pb) = (pod("a", "600m"), pod("b", "600m"));
    let (a, b) = tokio::join!(c.create("default", &pa), c.create("default", &pb));
    a.unwrap();
    b.unwrap();
    let list = until_pods(&c, "one bound, one unschedulable", |l| {
        bound(l) == 1
            && l.iter()
                .any(|p| node_of(p).is_none() && scheduled_condition(p).is_some())
    })
    .await;
    let pending = list.iter().find(|p| node_of(p).is_none()).unwrap();
    assert_eq!(
        scheduled_condition(pending).unwrap(),
        (
            "False".to_string(),
            "Unschedulable".to_string(),
            "0/1 nodes are available: 1 Insufficient cpu.".to_string()
        )
    );
    let winner = list.iter().find(|p| node_of(p).is_some()).unwrap();
    assert_eq!(
        scheduled_condition(winner).map(|c| c.0),
        Some("True".to_string())
    );

    // The failure is an Event too.
    let pending_name = pending.metadata.as_ref().unwrap().name.clone().unwrap();
    let event = t(async {
        loop {
            let events = c
                .list::<CoreEvent>("default", &ListParams::default())
                .await
                .unwrap()
                .items;
            if let Some(e) = events.into_iter().find(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.involved_object.as_ref().and_then(|o| o.name.clone())
                        == Some(pending_name.clone())
            }) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert_eq!(event.r#type.as_deref(), Some("Warning"));
    assert_eq!(
        event.message.as_deref(),
        Some("0/1 nodes are available: 1 Insufficient cpu.")
    );

    // A new node makes room: the pending pod is retried and bound there.
    t(c.create("", &node("second", "1", "110"))).await.unwrap();
    let list = until_pods(&c, "both bound", |l| bound(l) == 2).await;
    let nodes: Vec<String> = list.iter().filter_map(node_of).collect();
    assert!(nodes.contains(&"only".to_string()) && nodes.contains(&"second".to_string()));
    scheduler.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_pending_pod_is_retried_when_a_node_grows_or_a_pod_goes() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("", &node("n1", "4", "1"))).await.unwrap();
    let scheduler = start(&c, config("s1"));
    t(c.create("default", &pod("first", "100m"))).await.unwrap();
    until_pods(&c, "first bound", |l| bound(l) == 1).await;
    t(c.create("default", &pod("second", "100m")))
        .await
        .unwrap();
    let list = until_pods(&c, "second unschedulable", |l| {
        l.iter()
            .any(|p| scheduled_condition(p).is_some_and(|c| c.0 == "False"))
    })
    .await;
    let second = list.iter().find(|p| node_of(p).is_none()).unwrap();
    assert_eq!(
        scheduled_condition(second).unwrap().2,
        "0/1 nodes are available: 1 Too many pods."
    );

    // Deleting the bound pod right away frees its slot.
    let req = navarch_api::gateway::v1::DeleteRequest {
        resource: Some(navarch_api::gateway::v1::Resource {
            group: "".into(),
            version: "v1".into(),
            resource: "pods".into(),
            subresource: "".into(),
        }),
        namespace: "default".into(),
        name: "first".into(),
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    t(c.raw().delete(req)).await.unwrap();
    let list = until_pods(&c, "second bound", |l| l.len() == 1 && bound(l) == 1).await;
    assert_eq!(node_of(&list[0]).as_deref(), Some("n1"));

    // A third pod waits until the node offers more pods.
    t(c.create("default", &pod("third", "100m"))).await.unwrap();
    until_pods(&c, "third unschedulable", |l| {
        l.iter()
            .any(|p| scheduled_condition(p).is_some_and(|c| c.0 == "False"))
    })
    .await;
    let mut n1: Node = t(c.get("", "n1")).await.unwrap();
    let status = n1.status.as_mut().unwrap();
    status.allocatable = quantities(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "10")]);
    t(c.update_status("", "n1", &n1)).await.unwrap();
    until_pods(&c, "third bound", |l| bound(l) == 2).await;
    scheduler.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn pods_for_other_schedulers_are_left_alone() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("", &node("n1", "4", "110"))).await.unwrap();
    let scheduler = start(&c, config("s1"));
    let mut theirs = pod("theirs", "100m");
    theirs.spec.as_mut().unwrap().scheduler_name = Some("other-scheduler".into());
    t(c.create("default", &theirs)).await.unwrap();
    t(c.create("default", &pod("ours", "100m"))).await.unwrap();
    let list = until_pods(&c, "ours bound", |l| bound(l) == 1).await;
    let theirs = list
        .iter()
        .find(|p| p.metadata.as_ref().unwrap().name.as_deref() == Some("theirs"))
        .unwrap();
    assert_eq!(node_of(theirs), None);
    assert_eq!(scheduled_condition(theirs), None);
    scheduler.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn higher_priority_pods_are_scheduled_first() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("", &priority_class("high", 1000)))
        .await
        .unwrap();
    t(c.create("", &node("n1", "4", "1"))).await.unwrap();
    // Both wait before the scheduler starts; the low one was created first.
    t(c.create("default", &pod("low", "100m"))).await.unwrap();
    let mut high = pod("high", "100m");
    high.spec.as_mut().unwrap().priority_class_name = Some("high".into());
    t(c.create("default", &high)).await.unwrap();
    let scheduler = start(&c, config("s1"));
    let list = until_pods(&c, "one bound", |l| bound(l) == 1).await;
    let winner = list.iter().find(|p| node_of(p).is_some()).unwrap();
    assert_eq!(
        winner.metadata.as_ref().unwrap().name.as_deref(),
        Some("high")
    );
    scheduler.stop().await;
    cluster.stop().await;
}

/// Pods per node, failing on any pod bound twice or to an unknown node.
fn placement(list: &[Pod]) -> HashMap<String, usize> {
    let mut per_node = HashMap::new();
    for p in list {
        if let Some(n) = node_of(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    per_node
}

#[tokio::test]
async fn a_restarted_scheduler_neither_loses_nor_double_books_pods() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    // Exactly as many pod slots as pods: a lost or double-counted pod would leave one pending.
    for i in 0..4 {
        t(c.create("", &node(&format!("n{i}"), "64", "30")))
            .await
            .unwrap();
    }
    let creates = (0..120).map(|i| {
        let c = c.clone();
        async move { c.create("default", &pod(&format!("p{i}"), "10m")).await }
    });
    for r in t(futures::future::join_all(creates)).await {
        r.unwrap();
    }
    let first = start(
        &c,
        SchedulerConfig {
            batch: 8,
            bind_concurrency: 4,
            ..config("s1")
        },
    );
    until_pods(&c, "some bound", |l| bound(l) >= 10).await;
    first.kill().await; // mid-batch: assumed pods and bindings in flight are dropped
    let second = start(&c, config("s2"));
    let list = until_pods(&c, "all bound", |l| bound(l) == 120).await;
    let per_node = placement(&list);
    assert_eq!(per_node.len(), 4);
    assert!(per_node.values().all(|n| *n == 30), "{per_node:?}");
    second.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_standby_scheduler_takes_over_when_the_leader_dies() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("", &node("n1", "64", "110"))).await.unwrap();
    let elected = |identity: &str| SchedulerConfig {
        leader_election: Some(LeaderElectionConfig {
            lease_duration: Duration::from_secs(1),
            renew_deadline: Duration::from_millis(600),
            retry_period: Duration::from_millis(100),
            ..LeaderElectionConfig::new("kube-system", "navarch-scheduler", identity)
        }),
        ..config(identity)
    };
    let one = start(&c, elected("one"));
    let two = start(&c, elected("two"));
    t(c.create("default", &pod("a", "100m"))).await.unwrap();
    until_pods(&c, "a bound", |l| bound(l) == 1).await;
    let lease: navarch_api::coordination::v1::Lease =
        t(c.get("kube-system", "navarch-scheduler")).await.unwrap();
    let leader = lease.spec.unwrap().holder_identity.unwrap();
    let (dead, standby) = if leader == "one" {
        (one, two)
    } else {
        (two, one)
    };
    dead.kill().await;
    t(c.create("default", &pod("b", "100m"))).await.unwrap();
    until_pods(&c, "b bound by the standby", |l| bound(l) == 2).await;
    let lease: navarch_api::coordination::v1::Lease =
        t(c.get("kube-system", "navarch-scheduler")).await.unwrap();
    let spec = lease.spec.unwrap();
    assert_ne!(spec.holder_identity.as_deref(), Some(leader.as_str()));
    assert_eq!(spec.lease_transitions, Some(1));
    standby.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn gated_pods_wait_for_their_gates() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("", &node("n1", "4", "110"))).await.unwrap();
    let scheduler = start(&c, config("s1"));
    let mut gated = pod("gated", "100m");
    gated.spec.as_mut().unwrap().scheduling_gates =
        vec![navarch_api::core::v1::PodSchedulingGate {
            name: Some("example.com/wait".into()),
        }];
    t(c.create("default", &gated)).await.unwrap();
    t(c.create("default", &pod("free", "100m"))).await.unwrap();
    let list = until_pods(&c, "the ungated pod bound", |l| bound(l) == 1).await;
    let gated = list
        .iter()
        .find(|p| p.metadata.as_ref().unwrap().name.as_deref() == Some("gated"))
        .unwrap();
    assert_eq!(node_of(gated), None);
    // Removing the gate lets it be scheduled.
    let mut ungated = gated.clone();
    ungated.spec.as_mut().unwrap().scheduling_gates.clear();
    t(c.update("default", "gated", &ungated)).await.unwrap();
    until_pods(&c, "the gated pod bound", |l| bound(l) == 2).await;
    scheduler.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_panicking_scheduler_is_restarted_by_its_supervisor_and_binds_every_pod_once() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    for i in 0..2 {
        t(c.create("", &node(&format!("n{i}"), "64", "20")))
            .await
            .unwrap();
    }
    for i in 0..40 {
        t(c.create("default", &pod(&format!("p{i}"), "10m")))
            .await
            .unwrap();
    }
    // Leader election on: the restarted loop must win its own Lease back.
    let config = SchedulerConfig {
        backoff: (Duration::from_millis(100), Duration::from_millis(500)),
        batch: 4,
        ..SchedulerConfig::new("supervised")
    };
    let faults = config.faults.clone();
    faults.panic_next(3);
    let running = navarch_scheduler::start(c.clone(), config).await;
    let list = until_pods(&c, "all bound", |l| bound(l) == 40).await;
    let per_node = placement(&list);
    assert!(per_node.values().all(|n| *n == 20), "{per_node:?}");
    assert_eq!(running.restarts(), 3);
    assert!(running.is_running());
    t(running.shutdown()).await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_high_priority_pod_preempts_lower_priority_pods_and_takes_their_place() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    t(c.create("", &priority_class("critical", 1000)))
        .await
        .unwrap();
    t(c.create("", &node("n1", "2", "10"))).await.unwrap();
    let scheduler = start(&c, config("s1"));
    // Two low pods fill the node (grace 0: deleted at once, as no agent runs here).
    for name in ["low-1", "low-2"] {
        let mut p = pod(name, "1");
        p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(0);
        t(c.create("default", &p)).await.unwrap();
    }
    until_pods(&c, "low pods bound", |l| bound(l) == 2).await;
    // A pod that never preempts waits; the critical one evicts one low pod, not both.
    let mut patient = pod("patient", "1");
    let spec = patient.spec.as_mut().unwrap();
    spec.priority_class_name = Some("critical".into());
    spec.preemption_policy = Some("Never".into());
    t(c.create("default", &patient)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bound(&pods(&c).await), 2, "a Never pod must not preempt");
    t(c.delete::<Pod>("default", "patient")).await.unwrap();
    let mut critical = pod("critical", "1");
    critical.spec.as_mut().unwrap().priority_class_name = Some("critical".into());
    t(c.create("default", &critical)).await.unwrap();
    let list = until_pods(&c, "critical bound in a victim's place", |l| {
        l.len() == 2
            && l.iter().any(|p| {
                p.metadata.as_ref().unwrap().name.as_deref() == Some("critical")
                    && node_of(p).as_deref() == Some("n1")
            })
    })
    .await;
    let critical = list
        .iter()
        .find(|p| p.metadata.as_ref().unwrap().name.as_deref() == Some("critical"))
        .unwrap();
    assert_eq!(
        critical
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref()),
        Some("n1")
    );
    // Exactly one low pod is left, still bound.
    let lows: Vec<_> = list
        .iter()
        .filter(|p| p.metadata.as_ref().unwrap().name.as_deref() != Some("critical"))
        .collect();
    assert_eq!(lows.len(), 1);
    assert_eq!(node_of(lows[0]).as_deref(), Some("n1"));
    scheduler.stop().await;
    cluster.stop().await;
}
