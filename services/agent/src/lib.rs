//! The node agent: registers its Node, heartbeats a Lease, watches the pods bound to it and
//! drives each through a [`worker::PodWorker`] over a CRI-shaped [`runtime::ContainerRuntime`]
//! (`runc`, `process` or `hollow`).
//!
//! [`start`] runs one agent; [`start_hollow_fleet`] runs thousands of simulated nodes in one
//! process (one shared pod watch, one gateway connection) for scale tests.
//!
//! Stopping an agent leaves its containers running: the next agent on the node re-adopts them
//! from the pod records under `<data-dir>/pods`.

pub mod api;
pub mod dns;
pub mod image_build;
pub mod logs;
pub mod machine;
mod metrics;
pub mod node;
pub mod pods;
pub mod runtime;
pub mod usage;
pub mod worker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use navarch_gateway::Client;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

pub use machine::MachineInfo;
pub use node::{NodeIdentity, NodeOptions, NodeTiming};
pub use runtime::ContainerRuntime;
pub use worker::backoff::BackoffPolicy;

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("api: {0}")]
    Api(#[from] navarch_api::ApiError),
}

/// Where a node's pods find the cluster DNS (`dnsPolicy: ClusterFirst`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClusterDns {
    /// None: pods use the node's resolver, as the kubelet does without `--cluster-dns`.
    #[default]
    None,
    /// These servers (the kubelet's `--cluster-dns`, e.g. a DNS Service's ClusterIP).
    Servers(Vec<String>),
    /// The node's own DNS on the pod bridge's gateway: the first address of the pod CIDR.
    PodGateway,
}

/// What one agent needs.
#[derive(Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// Pod records, logs and volumes live here.
    pub data_dir: PathBuf,
    pub node: NodeOptions,
    pub timing: NodeTiming,
    pub backoff: BackoffPolicy,
    /// Longest time between two syncs of one pod.
    pub sync_period: Duration,
    /// The node's address (InternalIP, hostIP); default: the machine's default-route source.
    pub node_ip: Option<IpAddr>,
    /// Where pods find the cluster DNS, and its domain.
    pub cluster_dns: ClusterDns,
    pub cluster_domain: String,
    /// Where pods reach a ClusterIP (service environment variables) when the node's proxy
    /// serves it elsewhere (the userspace proxy's loopback stand-ins).
    pub service_address: Option<ServiceAddress>,
    /// How often the node's and pods' resource usage is reported (metrics.k8s.io, `kubectl
    /// top`, autoscaling); `None`: never.
    pub metrics_interval: Option<Duration>,
}

/// A ClusterIP's stand-in address, where the node's proxy serves it instead.
pub type ServiceAddress = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl AgentConfig {
    /// The kubelet's defaults for `node_name`, keeping state under `data_dir`.
    pub fn new(node_name: &str, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            node: NodeOptions {
                agent_port: 10250,
                ..Default::default()
            },
            timing: NodeTiming::default(),
            backoff: BackoffPolicy::default(),
            sync_period: Duration::from_secs(1),
            node_ip: None,
            cluster_dns: ClusterDns::None,
            cluster_domain: "cluster.local".into(),
            service_address: None,
            metrics_interval: Some(Duration::from_secs(10)),
        }
    }
}

/// A running agent. [`RunningAgent::shutdown`] stops it and leaves the containers running.
pub struct RunningAgent {
    pub node_name: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pod_cidr: watch::Receiver<Option<String>>,
}

impl RunningAgent {
    /// The node's pod CIDR once the cluster has assigned it (`node.spec.podCIDR`): the
    /// service proxy and the route sync start from it.
    pub fn pod_cidr(&self) -> watch::Receiver<Option<String>> {
        self.pod_cidr.clone()
    }

    /// Stops heartbeats, watches and workers; containers keep running.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                tracing::warn!(node = %self.node_name, "agent task did not stop in time");
            }
        }
        tracing::info!(node = %self.node_name, "agent stopped");
    }
}

/// Where the node's pod CIDR goes once known: the runtime, and the agent's watchers.
type PodCidrSink = (Arc<dyn ContainerRuntime>, watch::Sender<Option<String>>);

/// Registers the node (retrying while the gateway is unreachable), then keeps its status and
/// Lease, and runs its heartbeats until `stop`.
async fn node_tasks(
    client: Client,
    id: NodeIdentity,
    timing: NodeTiming,
    stop: watch::Receiver<bool>,
    registered: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<PodCidrSink>,
) {
    let mut delay = Duration::from_millis(200);
    let mut stop_wait = stop.clone();
    let node = loop {
        match node::register(&client, &id).await {
            Ok(n) => break n,
            Err(error) => {
                tracing::warn!(node = %id.name, %error, retry_ms = delay.as_millis() as u64, "node registration failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop_wait.changed() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    if let Some(tx) = registered {
        let _ = tx.send(());
    }
    if let Some((runtime, published)) = runtime {
        tokio::spawn(pod_cidr_loop(
            client.clone(),
            node.clone(),
            runtime,
            published,
            stop.clone(),
        ));
    }
    let lease = tokio::spawn(node::lease_loop(
        client.clone(),
        node.clone(),
        timing,
        stop.clone(),
    ));
    node::status_loop(client, id, node, timing, stop).await;
    let _ = lease.await;
}

/// Hands the node's `spec.podCIDR` to the runtime (the kubelet's `UpdateRuntimeConfig`),
/// waiting for the node IPAM loop to assign one if the node has none yet.
async fn pod_cidr_loop(
    client: Client,
    mut node: navarch_api::core::v1::Node,
    runtime: Arc<dyn ContainerRuntime>,
    published: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let name = node
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    loop {
        if let Some(cidr) = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .filter(|c| !c.is_empty())
        {
            tracing::info!(node = %name, pod_cidr = cidr, "pod CIDR handed to the runtime");
            runtime.update_pod_cidr(cidr);
            published.send_replace(Some(cidr.to_string()));
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
        match client.get("", &name).await {
            Ok(n) => node = n,
            Err(error) => {
                tracing::debug!(node = %name, %error, "reading the node for its pod CIDR")
            }
        }
    }
}

/// Starts an agent for `config.node_name` with `runtime`, talking to the cluster through
/// `client`. Returns at once; registration is retried in the background.
pub async fn start(
    client: Client,
    config: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
) -> Result<RunningAgent, AgentError> {
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(runtime::instrumented::Instrumented(runtime));
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| AgentError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let mut machine = MachineInfo::read(&data_dir);
    if let Some(ip) = config.node_ip {
        machine.internal_ip = Some(ip);
    }
    let host_ips: Vec<String> = machine
        .internal_ip
        .map(|ip| vec![ip.to_string()])
        .unwrap_or_else(|| vec!["127.0.0.1".into()]);
    let records = worker::record::RecordStore::open(&data_dir.join("pods")).map_err(|source| {
        AgentError::DataDir {
            path: data_dir.join("pods"),
            source,
        }
    })?;
    let id = NodeIdentity {
        name: config.node_name.clone(),
        machine,
        options: config.node.clone(),
        runtime_version: runtime.version(),
    };
    let (cidr_tx, pod_cidr) = watch::channel(None);
    let ctx = worker::WorkerContext {
        node_name: config.node_name.clone(),
        host_ips,
        runtime: runtime.clone(),
        api: Arc::new(api::TokenCache::new(client.clone())),
        records,
        log_root: data_dir.join("logs").join("pods"),
        volume_root: data_dir.join("volumes"),
        backoff: config.backoff,
        sync_period: config.sync_period,
        cluster_dns: config.cluster_dns.clone(),
        cluster_domain: config.cluster_domain.clone(),
        pod_cidr: pod_cidr.clone(),
        service_address: config.service_address.clone(),
    };
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(node_tasks(
        client.clone(),
        id,
        config.timing,
        stop.clone(),
        None,
        Some((runtime.clone(), cidr_tx)),
    ))];
    let (tx, rx) = mpsc::unbounded_channel();
    tasks.push(tokio::spawn(pods::watch_node_pods(
        client.clone(),
        config.node_name.clone(),
        tx,
        stop.clone(),
    )));
    tasks.push(logs::spawn_tunnel(
        client.clone(),
        config.node_name.clone(),
        logs::LogSource {
            log_root: ctx.log_root.clone(),
            records: ctx.records.clone(),
            runtime: runtime.clone(),
        },
        stop.clone(),
    ));
    let manager = pods::PodManager::new(ctx, stop.clone());
    if let Some(interval) = config.metrics_interval {
        let reporter = usage::UsageReporter {
            client: client.clone(),
            node_name: config.node_name.clone(),
            runtime: runtime.clone(),
            records: manager.records(),
            labels: manager.labels(),
            interval,
        };
        tasks.push(tokio::spawn(reporter.run(stop.clone())));
    }
    tasks.push(tokio::spawn(manager.run(rx)));
    tracing::info!(node = %config.node_name, runtime = runtime.name(), data_dir = %data_dir.display(), "agent started");
    Ok(RunningAgent {
        node_name: config.node_name,
        stop: stop_tx,
        tasks,
        pod_cidr,
    })
}

/// A fleet of hollow nodes in this process.
#[derive(Clone)]
pub struct HollowFleetConfig {
    /// Nodes are named `<prefix>-<n>` for n in 0..count.
    pub name_prefix: String,
    pub count: usize,
    pub behaviour: runtime::hollow::HollowBehaviour,
    pub timing: NodeTiming,
    pub backoff: BackoffPolicy,
    pub sync_period: Duration,
    /// Extra labels on every hollow node (besides `node.navarch.io/hollow: "true"`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Capacity of each hollow node (defaults: 4 CPUs, 16 GiB, 110 pods).
    pub capacity: std::collections::BTreeMap<String, String>,
    /// How many nodes register at the same time.
    pub register_concurrency: usize,
}

impl Default for HollowFleetConfig {
    fn default() -> Self {
        Self {
            name_prefix: "hollow".into(),
            count: 1,
            behaviour: Default::default(),
            timing: NodeTiming::default(),
            backoff: BackoffPolicy::default(),
            sync_period: Duration::from_secs(10),
            labels: Default::default(),
            capacity: Default::default(),
            register_concurrency: 32,
        }
    }
}

/// The label every hollow node carries.
pub const HOLLOW_LABEL: &str = "node.navarch.io/hollow";

/// Starts `config.count` hollow nodes sharing one gateway client and one pod watch. Each has
/// its own Node, Lease and pod workers; their containers are simulated.
pub async fn start_hollow_fleet(client: Client, config: HollowFleetConfig) -> RunningAgent {
    let (stop_tx, stop) = watch::channel(false);
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(runtime::hollow::HollowRuntime::new(
        config.behaviour,
        [10, 244],
    ));
    let dispatcher = pods::PodDispatcher::default();
    let permits = Arc::new(Semaphore::new(config.register_concurrency.max(1)));
    let mut tasks = vec![];
    let api: Arc<dyn api::PodApi> = Arc::new(api::TokenCache::new(client.clone()));
    for n in 0..config.count {
        let name = format!("{}-{n}", config.name_prefix);
        // 10.128.0.0/9 as made-up node addresses, never routed anywhere.
        let ip = IpAddr::from([10, 128 + ((n >> 16) & 0x7f) as u8, (n >> 8) as u8, n as u8]);
        let mut labels = config.labels.clone();
        labels.insert(HOLLOW_LABEL.into(), "true".into());
        let id = NodeIdentity {
            name: name.clone(),
            machine: MachineInfo::hollow(&name, ip),
            options: NodeOptions {
                labels,
                capacity: config.capacity.clone(),
                agent_port: 10250,
                ..Default::default()
            },
            runtime_version: runtime.version(),
        };
        let ctx = worker::WorkerContext {
            node_name: name.clone(),
            host_ips: vec![ip.to_string()],
            runtime: runtime.clone(),
            api: api.clone(),
            records: worker::record::RecordStore::memory(),
            log_root: std::env::temp_dir().join("navarch-hollow-logs"),
            volume_root: std::env::temp_dir().join("navarch-hollow-volumes"),
            backoff: config.backoff,
            sync_period: config.sync_period,
            cluster_dns: ClusterDns::None,
            cluster_domain: "cluster.local".into(),
            pod_cidr: watch::channel(None).1,
            service_address: None,
        };
        let rx = dispatcher.register(&name);
        let manager = pods::PodManager::new(ctx, stop.clone());
        tasks.push(tokio::spawn(manager.run(rx)));
        let client = client.clone();
        let stop = stop.clone();
        let permits = permits.clone();
        let timing = config.timing;
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let permit = permits.acquire_owned().await;
            let run = tokio::spawn(node_tasks(client, id, timing, stop, Some(tx), None));
            let _ = rx.await;
            drop(permit);
            let _ = run.await;
        }));
    }
    tasks.push(tokio::spawn(dispatcher.run(client, stop.clone())));
    tracing::info!(nodes = config.count, prefix = %config.name_prefix, "hollow fleet started");
    RunningAgent {
        node_name: format!("{}-*", config.name_prefix),
        stop: stop_tx,
        tasks,
        pod_cidr: watch::channel(None).1,
    }
}
