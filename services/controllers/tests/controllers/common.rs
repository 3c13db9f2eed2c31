//! A gateway in memory on 127.0.0.1:0 (plain HTTP/2), a controller-manager over it, and a
//! fake kubelet that marks pods Running and Ready the way a node agent would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use navarch_api::core::v1::{
    Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStatus, Pod,
    PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use navarch_api::meta::v1::{LabelSelector, ObjectMeta};
use navarch_controllers::{ControllerManager, ManagerConfig, Settings};
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::{Client, GatewayConfig, MastersOnly, RunningGateway};
use navarch_runtime::{Event, Informer, KubeObject, Scope};

pub const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "admin-token";

pub struct Cluster {
    gateway: Option<RunningGateway>,
    pub url: String,
    pub client: Client,
}

impl Cluster {
    pub async fn start() -> Self {
        let _ = navarch_telemetry::init("controllers-test");
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
        let gateway = t(navarch_gateway::start(GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            store: navarch_store::open_memory(),
            authenticator: AuthChain::new(vec![Arc::new(tokens)]),
            authorizer: Arc::new(MastersOnly),
            tls: None,
            tokens: None,
            audit: None,
            node_signer: None,
        }))
        .await
        .unwrap();
        let url = format!("http://{}", gateway.addr);
        let client = t(Client::connect(&url, "", TOKEN)).await.unwrap();
        Self {
            gateway: Some(gateway),
            url,
            client,
        }
    }

    pub async fn new_client(&self) -> Client {
        t(Client::connect(&self.url, "", TOKEN)).await.unwrap()
    }

    /// Fast settings for tests.
    pub fn settings() -> Settings {
        Settings {
            workers: 2,
            restart_backoff: Duration::from_millis(50),
            node_monitor_grace_period: Duration::from_secs(2),
            node_monitor_period: Duration::from_millis(300),
            default_not_ready_toleration_seconds: 1,
            default_unreachable_toleration_seconds: 1,
            job_backoff: Duration::from_millis(10),
            job_backoff_max: Duration::from_millis(100),
            ..Settings::default()
        }
    }

    /// A manager without leader election running every loop.
    pub fn manager(&self) -> ControllerManager {
        self.manager_with(|_| {})
    }

    pub fn manager_with(&self, f: impl FnOnce(&mut ManagerConfig)) -> ControllerManager {
        let mut config = ManagerConfig::new(self.client.clone(), "test-manager");
        config.leader_election = None;
        config.settings = Self::settings();
        f(&mut config);
        ControllerManager::start(config)
    }

    pub async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            t(g.shutdown()).await;
        }
    }
}

pub async fn t<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

/// Polls `f` until it is true (every await in the tests is bounded).
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(T, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

pub fn meta(ns: &str, name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        name: Some(name.into()),
        ..Default::default()
    })
}

pub fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

pub fn selector(app: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: labels(app),
        ..Default::default()
    })
}

pub fn template(app: &str, image: &str) -> Option<PodTemplateSpec> {
    Some(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: labels(app),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: Some("main".into()),
                image: Some(image.into()),
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    })
}

pub async fn pods(client: &Client, ns: &str) -> Vec<Pod> {
    t(client.list::<Pod>(ns, &Default::default()))
        .await
        .unwrap()
        .items
}

pub fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .map(|s| {
            s.conditions.iter().any(|c| {
                c.r#type.as_deref() == Some("Ready") && c.status.as_deref() == Some("True")
            })
        })
        .unwrap_or(false)
}

pub fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap()
        .to_string()
}

/// Marks a pod Running and Ready (with an IP), as a kubelet would.
pub async fn mark_ready(client: &Client, pod: &Pod, ip: &str) -> bool {
    let mut p = pod.clone();
    let now = now();
    let containers = p
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.into()),
        start_time: Some(now.clone()),
        conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
            .iter()
            .map(|c| PodCondition {
                r#type: Some((*c).into()),
                status: Some("True".into()),
                last_transition_time: Some(now.clone()),
                ..Default::default()
            })
            .collect(),
        container_statuses: containers
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone(),
                ready: Some(true),
                started: Some(true),
                restart_count: Some(0),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(now.clone()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    let meta = pod.meta();
    client
        .update_status(
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or(""),
            &p,
        )
        .await
        .is_ok()
}

/// Sets a pod's phase (Succeeded / Failed), as a kubelet would when its containers exit.
pub async fn finish_pod(client: &Client, pod: &Pod, phase: &str) -> bool {
    let mut p = pod.clone();
    let status = p.status.get_or_insert_with(Default::default);
    status.phase = Some(phase.into());
    status.conditions = vec![PodCondition {
        r#type: Some("Ready".into()),
        status: Some("False".into()),
        reason: Some("PodCompleted".into()),
        last_transition_time: Some(now()),
        ..Default::default()
    }];
    let meta = pod.meta();
    client
        .update_status(
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or(""),
            &p,
        )
        .await
        .is_ok()
}

/// A fake kubelet: marks every new pod in `namespace` Running and Ready, with an IP.
pub struct FakeKubelet {
    _informer: Arc<Informer<Pod>>,
}

impl FakeKubelet {
    pub fn start(client: &Client, namespace: &str) -> Self {
        let informer = Arc::new(Informer::<Pod>::new(
            client.clone(),
            Scope::namespace(namespace),
        ));
        let next_ip = Arc::new(AtomicU32::new(1));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pod>();
        informer.add_handler(move |ev: &Event<Pod>| {
            if let Event::Added(p) | Event::Updated { new: p, .. } = ev
                && !is_ready(p)
                && p.meta().deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .unwrap_or("Pending")
                    == "Pending"
            {
                let _ = tx.send((**p).clone());
            }
        });
        let client = client.clone();
        tokio::spawn(async move {
            let mut held: Vec<Pod> = Vec::new();
            loop {
                let pod = tokio::select! {
                    p = rx.recv() => match p { Some(p) => Some(p), None => return },
                    _ = tokio::time::sleep(Duration::from_millis(100)) => None,
                };
                held.extend(pod);
                for pod in std::mem::take(&mut held) {
                    // Fetch the latest copy (the cached one may be stale).
                    let meta = pod.meta();
                    let Ok(fresh) = client
                        .get::<Pod>(
                            meta.namespace.as_deref().unwrap_or(""),
                            meta.name.as_deref().unwrap_or(""),
                        )
                        .await
                    else {
                        continue;
                    };
                    if is_ready(&fresh) || fresh.meta().deletion_timestamp.is_some() {
                        continue;
                    }
                    let n = next_ip.fetch_add(1, Ordering::SeqCst);
                    if !mark_ready(
                        &client,
                        &fresh,
                        &format!("10.1.{}.{}", n / 250, n % 250 + 1),
                    )
                    .await
                    {
                        held.push(fresh);
                    }
                }
            }
        });
        Self {
            _informer: informer,
        }
    }
}

/// Reads, changes and writes an object, retrying when a controller wrote it in between.
pub async fn modify<T: KubeObject>(client: &Client, ns: &str, name: &str, f: impl Fn(&mut T)) {
    tokio::time::timeout(T, async {
        loop {
            let mut obj: T = client.get(ns, name).await.unwrap();
            f(&mut obj);
            match client.update(ns, name, &obj).await {
                Ok(_) => return,
                Err(e) if e.reason == navarch_api::Reason::Conflict => continue,
                Err(e) => panic!("updating {ns}/{name}: {e}"),
            }
        }
    })
    .await
    .expect("timed out updating");
}
