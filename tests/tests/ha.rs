//! A highly available control plane (issue 12, step 6) as far as this machine allows: two
//! control planes, each a gateway with its own distributed-store instance, a
//! controller-manager and a scheduler, over one shared transactional backend. In production
//! that backend is TiKV (`navarch server --store tikv://…` on every replica); here it is the
//! store's in-memory backend with TiKV's transaction semantics, so both control planes live in
//! this test process. Both gateways serve reads, writes and watches; the controller-manager
//! and the scheduler of one of them lead (Leases in `kube-system`). The leader is killed (its
//! gateway goes away at once, so nothing it does reaches the store any more and it never gives
//! its Leases up); the other takes both Leases within the lease duration and reconciles and
//! schedules what is created through its gateway. Prints the takeover times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use navarch_api::apps::v1::{Deployment, DeploymentSpec};
use navarch_api::coordination::v1::{Lease, LeaseSpec};
use navarch_api::core::v1::{
    Container, Node, NodeCondition, NodeStatus, Pod, PodSpec, PodTemplateSpec,
};
use navarch_api::meta::v1::{LabelSelector, ObjectMeta};
use navarch_controllers::manager::{LEASE_NAME, LEASE_NAMESPACE};
use navarch_controllers::{ControllerManager, ManagerConfig};
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::client::ListParams;
use navarch_gateway::{Client, GatewayConfig, MastersOnly, RunningGateway};
use navarch_runtime::LeaderElectionConfig;
use navarch_scheduler::{RunningScheduler, SchedulerConfig};
use navarch_store::{DistributedOptions, DistributedStore, MemoryKv};

const TOKEN: &str = "ha-admin-token";
/// Leader election timings (client-go's defaults are 15 s, 10 s and 2 s).
const LEASE: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);
const SCHEDULER_LEASE: &str = "navarch-scheduler";
const STEP: Duration = Duration::from_secs(30);

/// One control-plane replica.
struct ControlPlane {
    name: String,
    gateway: Option<RunningGateway>,
    client: Client,
    manager: Option<ControllerManager>,
    scheduler: Option<RunningScheduler>,
}

fn election(namespace: &str, lease: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: LEASE,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY,
        ..LeaderElectionConfig::new(namespace, lease, identity)
    }
}

impl ControlPlane {
    async fn start(kv: &MemoryKv, name: &str) -> Self {
        let store = DistributedStore::new(
            Arc::new(kv.clone()),
            DistributedOptions {
                instance: name.into(),
                poll_interval: Duration::from_millis(10),
                ..Default::default()
            },
        )
        .expect("a store instance");
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
            store: Arc::new(store),
            authenticator: AuthChain::new(vec![Arc::new(tokens)]),
            authorizer: Arc::new(MastersOnly),
            tls: None,
            tokens: None,
            audit: None,
            node_signer: None,
        })
        .await
        .expect("a gateway");
        let client = Client::connect(&format!("http://{}", gateway.addr), "", TOKEN)
            .await
            .expect("a client");
        let mut manager = ManagerConfig::new(client.clone(), name);
        manager.leader_election = Some(election(LEASE_NAMESPACE, LEASE_NAME, name));
        manager.settings.workers = 2;
        let manager = ControllerManager::start(manager);
        let mut scheduler = SchedulerConfig::new(name);
        scheduler.leader_election = Some(election("kube-system", SCHEDULER_LEASE, name));
        let scheduler = navarch_scheduler::start(client.clone(), scheduler).await;
        Self {
            name: name.into(),
            gateway: Some(gateway),
            client,
            manager: Some(manager),
            scheduler: Some(scheduler),
        }
    }

    /// The process dies: its gateway stops serving at once (so its controllers and scheduler
    /// reach nothing any more, and cannot give their Leases up), then the rest goes.
    async fn kill(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        drop(self.manager.take());
        drop(self.scheduler.take());
    }
}

async fn holder(client: &Client, lease: &str) -> Option<String> {
    client
        .get::<Lease>("kube-system", lease)
        .await
        .ok()?
        .spec?
        .holder_identity
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(STEP, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn meta(namespace: &str, name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        namespace: (!namespace.is_empty()).then(|| namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    })
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels: std::collections::BTreeMap<String, String> =
        [("app".to_string(), name.to_string())].into();
    Deployment {
        metadata: meta("default", name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: Some("app".into()),
                        image: Some("registry.example/app:1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Ready node whose heartbeat Lease the test keeps renewing (through `client`).
async fn node_with_heartbeats(client: &Client) -> tokio::task::JoinHandle<()> {
    let node = Node {
        metadata: Some(ObjectMeta {
            name: Some("node-1".into()),
            labels: [("kubernetes.io/hostname".to_string(), "node-1".to_string())].into(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: [("cpu", "8"), ("memory", "32Gi"), ("pods", "110")]
                .into_iter()
                .map(|(k, v)| {
                    let value = v.to_string();
                    (k.to_string(), navarch_api::meta::v1::Quantity { value })
                })
                .collect(),
            conditions: vec![NodeCondition {
                r#type: Some("Ready".into()),
                status: Some("True".into()),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    client.create("", &node).await.expect("the node");
    let client = client.clone();
    tokio::spawn(async move {
        loop {
            let lease = Lease {
                metadata: meta("kube-node-lease", "node-1"),
                spec: Some(LeaseSpec {
                    holder_identity: Some("node-1".into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(navarch_runtime::leader_election::micro_time_now()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match client.get::<Lease>("kube-node-lease", "node-1").await {
                Ok(mut current) => {
                    current.spec = lease.spec;
                    let _ = client.update("kube-node-lease", "node-1", &current).await;
                }
                Err(_) => {
                    let _ = client.create("kube-node-lease", &lease).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Names of the pods of `app` bound to a node, as `client`'s gateway sees them.
async fn bound_pods(client: &Client, app: &str) -> Vec<String> {
    let params = ListParams {
        label_selector: format!("app={app}"),
        ..Default::default()
    };
    let Ok(pods) = client.list::<Pod>("default", &params).await else {
        return vec![];
    };
    pods.items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-1"))
        .filter_map(|p| p.metadata.as_ref()?.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_control_plane_takes_over_when_the_leader_dies() {
    let _ = navarch_telemetry::init("ha-test");
    let kv = MemoryKv::new();
    let mut a = ControlPlane::start(&kv, "server-a").await;
    a.manager.as_ref().unwrap().wait_leading().await;
    eventually("server-a holds the scheduler Lease", || async {
        (holder(&a.client, SCHEDULER_LEASE).await.as_deref() == Some("server-a")).then_some(())
    })
    .await;
    let b = ControlPlane::start(&kv, "server-b").await;
    let heartbeats = node_with_heartbeats(&b.client).await;

    // Both gateways serve: written through one, reconciled and scheduled by the leader, seen
    // through the other.
    b.client
        .create("default", &deployment("before", 2))
        .await
        .unwrap();
    eventually(
        "server-a's loops run the Deployment made through server-b",
        || async { (bound_pods(&b.client, "before").await.len() == 2).then_some(()) },
    )
    .await;
    assert_eq!(bound_pods(&a.client, "before").await.len(), 2);
    for lease in [LEASE_NAME, SCHEDULER_LEASE] {
        assert_eq!(holder(&b.client, lease).await.as_deref(), Some("server-a"));
    }
    assert!(!b.manager.as_ref().unwrap().is_leading(), "one leader only");

    // The leader dies.
    let killed = Instant::now();
    a.kill().await;
    let manager_took = eventually("server-b leads the controller-manager", || async {
        (holder(&b.client, LEASE_NAME).await.as_deref() == Some("server-b"))
            .then(|| killed.elapsed())
    })
    .await;
    let scheduler_took = eventually("server-b leads the scheduler", || async {
        (holder(&b.client, SCHEDULER_LEASE).await.as_deref() == Some("server-b"))
            .then(|| killed.elapsed())
    })
    .await;
    assert!(b.manager.as_ref().unwrap().is_leading());
    // A Lease that is not renewed expires after its duration; a standby retries every retry
    // period: takeover comes within about one lease duration, never long after.
    let bound = LEASE + RETRY * 2 + Duration::from_secs(2);
    assert!(
        manager_took <= bound && scheduler_took <= bound,
        "takeover took {manager_took:?} / {scheduler_took:?} with a {LEASE:?} lease"
    );

    // The survivor reconciles and schedules: a new Deployment, and more of the old one.
    let after = Instant::now();
    b.client
        .create("default", &deployment("after", 2))
        .await
        .unwrap();
    let mut scale = b
        .client
        .get::<Deployment>("default", "before")
        .await
        .unwrap();
    scale.spec.as_mut().unwrap().replicas = Some(3);
    b.client.update("default", "before", &scale).await.unwrap();
    eventually("server-b reconciles and schedules", || async {
        (bound_pods(&b.client, "after").await.len() == 2
            && bound_pods(&b.client, "before").await.len() == 3)
            .then_some(())
    })
    .await;
    println!(
        "HA: {} killed; {} took the controller-manager Lease after {:.1} s and the scheduler's after {:.1} s ({:?} lease); new pods created and bound {:.1} s later",
        a.name,
        b.name,
        manager_took.as_secs_f64(),
        scheduler_took.as_secs_f64(),
        LEASE,
        after.elapsed().as_secs_f64()
    );
    heartbeats.abort();
}
