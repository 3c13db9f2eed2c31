//! `navarch bench scheduler`: registers simulated nodes (Node objects with varied capacities,
//! zones, instance types and a few taints, each with its Lease) through the gateway — TLS, the
//! durable embedded store — runs the scheduler as `navarch up` does (leader-elected, events on),
//! then creates rounds of pods and measures, from the watch, when each binding is persisted:
//! pods/s from the first creation to the last binding, and per-pod latency from creation to
//! persisted binding (p50/p99).
//!
//! Before that, the same pods are scheduled in memory against the same nodes (no I/O): the
//! throughput and latency of the scheduling core itself.
//!
//! `--backlog` creates each round's pods first and starts the scheduler afterwards: the rate is
//! then the scheduler's alone (scheduling and binding a backlog), without pod creation competing
//! for the gateway.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use navarch_api::coordination::v1::{Lease, LeaseSpec};
use navarch_api::core::v1::{
    Container, Node, NodeCondition, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, Taint, Toleration,
};
use navarch_api::meta::v1::{ObjectMeta, OwnerReference, Quantity};
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::client::{ListParams, WatchEvent};
use navarch_gateway::{Client, GatewayConfig, MastersOnly};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct SchedulerBenchArgs {
    /// Simulated nodes to register.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods per round; rounds run in order on the same cluster.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub pods: Vec<usize>,
    /// Concurrent pod creators (each round).
    #[arg(long, default_value_t = 64)]
    pub creators: usize,
    /// Create each round's pods before starting the scheduler (scheduler throughput alone).
    #[arg(long)]
    pub backlog: bool,
    /// Only the in-memory scheduling-core rounds (no gateway).
    #[arg(long)]
    pub core_only: bool,
    /// Do not write Scheduled / FailedScheduling events.
    #[arg(long)]
    pub no_events: bool,
    /// Pods whose binding is in flight, at most (the scheduler's default unless given).
    #[arg(long)]
    pub bind_in_flight: Option<usize>,
    /// CreateBindings calls in flight, at most.
    #[arg(long)]
    pub bind_calls: Option<usize>,
    /// Bindings per CreateBindings call, at most.
    #[arg(long)]
    pub bind_batch: Option<usize>,
    /// Where to put the store (a temporary directory, removed afterwards, by default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn quantities(pairs: &[(&str, String)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity { value: v.clone() }))
        .collect()
}

const ZONES: usize = 5;
const INSTANCE_TYPES: [&str; 4] = ["small", "medium", "large", "xlarge"];

/// Node `i`: 8–64 cores, 32–256 GiB, 110 pods, one of 5 zones; every 50th is tainted
/// `dedicated=infra:NoSchedule`, every 30th `spot=true:PreferNoSchedule`.
fn node(i: usize) -> Node {
    let name = format!("node-{i:05}");
    let size = i % 4;
    let mut taints = Vec::new();
    if i % 50 == 7 {
        taints.push(Taint {
            key: Some("dedicated".into()),
            value: Some("infra".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
    }
    if i % 30 == 3 {
        taints.push(Taint {
            key: Some("spot".into()),
            value: Some("true".into()),
            effect: Some("PreferNoSchedule".into()),
            ..Default::default()
        });
    }
    let resources = quantities(&[
        ("cpu", format!("{}", 8 << size)),
        ("memory", format!("{}Gi", 32 << size)),
        ("pods", "110".into()),
    ]);
    Node {
        metadata: Some(ObjectMeta {
            name: Some(name.clone()),
            labels: [
                ("kubernetes.io/hostname".to_string(), name),
                (
                    "topology.kubernetes.io/zone".to_string(),
                    format!("zone-{}", i % ZONES),
                ),
                (
                    "node.kubernetes.io/instance-type".to_string(),
                    INSTANCE_TYPES[size].to_string(),
                ),
            ]
            .into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            taints,
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: resources.clone(),
            capacity: resources,
            conditions: vec![NodeCondition {
                r#type: Some("Ready".into()),
                status: Some("True".into()),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The heartbeat Lease of node `i`.
fn lease(i: usize) -> Lease {
    let now = navarch_runtime::leader_election::micro_time_now();
    Lease {
        metadata: Some(ObjectMeta {
            name: Some(format!("node-{i:05}")),
            namespace: Some("kube-node-lease".into()),
            ..Default::default()
        }),
        spec: Some(LeaseSpec {
            holder_identity: Some(format!("node-{i:05}")),
            lease_duration_seconds: Some(40),
            renew_time: Some(now),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pod `i` of a round: 100–250m CPU, 128–256Mi; groups of 50 share an owner (spread); every
/// 10th selects a zone, every 100th tolerates the infra taint, every 200th requires instance
/// types by node affinity.
fn pod(round: usize, i: usize) -> Pod {
    let group = i / 50;
    let mut spec = PodSpec {
        containers: vec![Container {
            name: Some("app".into()),
            image: Some("registry.example/app:1".into()),
            resources: Some(ResourceRequirements {
                requests: quantities(&[
                    ("cpu", format!("{}m", 100 + 50 * (i % 4))),
                    ("memory", format!("{}Mi", 128 + 64 * (i % 3))),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    if i % 10 == 1 {
        spec.node_selector = [(
            "topology.kubernetes.io/zone".to_string(),
            format!("zone-{}", i % ZONES),
        )]
        .into();
    }
    if i % 100 == 2 {
        spec.tolerations.push(Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("infra".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
    }
    if i % 200 == 3 {
        spec.affinity = Some(navarch_api::core::v1::Affinity {
            node_affinity: Some(navarch_api::core::v1::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: vec![NodeSelectorRequirement {
                            key: Some("node.kubernetes.io/instance-type".into()),
                            operator: Some("In".into()),
                            values: vec!["large".into(), "xlarge".into()],
                        }],
                        match_fields: vec![],
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Pod {
        metadata: Some(ObjectMeta {
            name: Some(format!("r{round}-{i:06}")),
            namespace: Some("default".into()),
            labels: [("app".to_string(), format!("bench-{round}-{group}"))].into(),
            owner_references: vec![OwnerReference {
                api_version: Some("apps/v1".into()),
                kind: Some("ReplicaSet".into()),
                name: Some(format!("bench-{round}-{group}")),
                uid: Some(format!("00000000-0000-4000-8000-{round:04}{group:08}")),
                controller: Some(true),
                ..Default::default()
            }],
            ..Default::default()
        }),
        spec: Some(spec),
        ..Default::default()
    }
}

/// Runs `f(i)` for `0..n` with `concurrency` workers spread over `clients`; returns when
/// every call succeeded.
async fn for_each_concurrent<F, Fut>(
    n: usize,
    concurrency: usize,
    clients: &[Client],
    f: F,
) -> anyhow::Result<()>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency.max(1) {
        let client = clients[w % clients.len()].clone();
        let (next, f) = (next.clone(), f.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                f(client.clone(), i).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct SchedulerTask {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start_scheduler(
    url: &str,
    ca: &str,
    token: &str,
    args: &SchedulerBenchArgs,
) -> anyhow::Result<SchedulerTask> {
    let client = Client::connect(url, ca, token).await?;
    let defaults = navarch_scheduler::SchedulerConfig::new(crate::scheduler::identity());
    let config = navarch_scheduler::SchedulerConfig {
        record_events: !args.no_events,
        bind_concurrency: args.bind_in_flight.unwrap_or(defaults.bind_concurrency),
        bind_calls: args.bind_calls.unwrap_or(defaults.bind_calls),
        bind_batch: args.bind_batch.unwrap_or(defaults.bind_batch),
        ..defaults
    };
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(navarch_scheduler::run(client, config, token));
    Ok(SchedulerTask { stop, task })
}

/// Schedules the rounds' pods in memory (filter, score, assume), one after another like the
/// scheduling loop does: the cost of the algorithm without the API around it.
fn algorithm_only(nodes: usize, rounds: &[usize]) {
    use navarch_scheduler::framework::{Cursor, Registry, schedule};
    use navarch_scheduler::pod_info::PodInfo;
    let mut snapshot =
        navarch_scheduler::Snapshot::from_objects((0..nodes).map(node).collect(), vec![]);
    let registry = Registry::default();
    let mut cursor = Cursor {
        next_start: 0,
        seed: 42,
    };
    println!("scheduling core, in memory ({nodes} nodes):");
    println!(
        "{:>8}  {:>12}  {:>10}  {:>10}  {:>12}",
        "pods", "pods/s", "p50", "p99", "unschedulable"
    );
    for (round, &n) in rounds.iter().enumerate() {
        let pods: Vec<Arc<PodInfo>> = (0..n)
            .map(|i| Arc::new(PodInfo::new(Arc::new(pod(round, i)), 0)))
            .collect();
        let mut latencies = Vec::with_capacity(n);
        let mut unschedulable = 0;
        let started = Instant::now();
        for info in pods {
            let t = Instant::now();
            match schedule(&info, &snapshot, &registry, &mut cursor, None) {
                Ok(d) => snapshot.place(info, &d.node, true),
                Err(_) => unschedulable += 1,
            }
            latencies.push(t.elapsed());
        }
        let took = started.elapsed();
        latencies.sort();
        println!(
            "{:>8}  {:>12.0}  {:>10}  {:>10}  {:>12}",
            n,
            n as f64 / took.as_secs_f64(),
            format!("{:.1} us", percentile(&latencies, 0.5).as_secs_f64() * 1e6),
            format!("{:.1} us", percentile(&latencies, 0.99).as_secs_f64() * 1e6),
            unschedulable
        );
    }
    println!();
}

pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let _telemetry = navarch_telemetry::init("navarch-bench")?;
    algorithm_only(args.nodes, &args.pods);
    if args.core_only {
        return Ok(());
    }
    let tmp = std::env::temp_dir().join(format!("navarch-bench-scheduler-{}", std::process::id()));
    let dir = args.data_dir.clone().unwrap_or(tmp.clone());
    std::fs::create_dir_all(&dir)?;
    let pki = navarch_pki::ClusterPki::load_or_create(&dir.join("pki"), &[])?;
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut tokens = TokenFile::default();
    tokens.insert(
        token.clone(),
        UserInfo {
            name: "admin".into(),
            uid: "admin".into(),
            groups: vec!["system:masters".into()],
            extra: Default::default(),
        },
    );
    let store = navarch_store::open_embedded(dir.join("store")).context("opening the store")?;
    let gateway = navarch_gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        store,
        authenticator: AuthChain::new(vec![Arc::new(tokens)]),
        authorizer: Arc::new(MastersOnly),
        tls: Some(pki.server_config(&[b"h2"])),
        tokens: None,
        audit: None,
        node_signer: None,
    })
    .await?;
    let url = format!("https://{}", gateway.addr);
    let ca = pki.ca_pem().to_string();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(&url, &ca, &token).await?);
    }
    println!(
        "navarch bench scheduler: {} nodes, rounds of {:?} pods, {} creators, {} mode, events {}, store {}",
        args.nodes,
        args.pods,
        args.creators,
        if args.backlog { "backlog" } else { "streaming" },
        if args.no_events { "off" } else { "on" },
        dir.join("store").display()
    );

    let started = Instant::now();
    for_each_concurrent(args.nodes, 64, &clients, |c, i| async move {
        c.create("", &node(i)).await?;
        c.create("kube-node-lease", &lease(i)).await?;
        Ok(())
    })
    .await?;
    let took = started.elapsed();
    println!(
        "registered {} nodes (+ leases) in {:.1} s ({:.0} nodes/s)",
        args.nodes,
        took.as_secs_f64(),
        args.nodes as f64 / took.as_secs_f64()
    );

    // Bindings as the watch reports them: pod name → when its nodeName was first seen.
    let watcher = clients[0].clone();
    let from = watcher
        .list::<Pod>(
            "default",
            &ListParams {
                limit: 1,
                ..Default::default()
            },
        )
        .await?
        .resource_version;
    let (bound_tx, mut bound_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn(async move {
        let mut rv = from;
        loop {
            let mut stream = match watcher
                .watch::<Pod>("default", &rv, &ListParams::default())
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "bench watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)) => {
                        let meta = p.metadata.unwrap_or_default();
                        rv = meta.resource_version.unwrap_or(rv);
                        if p.spec.and_then(|s| s.node_name).is_some() {
                            let _ = bound_tx.send((meta.name.unwrap_or_default(), Instant::now()));
                        }
                    }
                    Ok(WatchEvent::Bookmark(r)) => rv = r,
                    Ok(WatchEvent::Deleted(_)) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "bench watch broke; resuming");
                        break;
                    }
                }
            }
        }
    });

    let mut scheduler = if args.backlog {
        None
    } else {
        Some(start_scheduler(&url, &ca, &token, &args).await?)
    };
    let mut bound: HashMap<String, Instant> = HashMap::new();
    println!();
    println!(
        "{:>8}  {:>10}  {:>12}  {:>12}  {:>10}  {:>10}  {:>10}",
        "pods", "create/s", "e2e pods/s", "elapsed", "p50", "p99", "max"
    );
    for (round, &n) in args.pods.iter().enumerate() {
        let created: Arc<Vec<std::sync::Mutex<Option<Instant>>>> =
            Arc::new((0..n).map(|_| std::sync::Mutex::new(None)).collect());
        let t0 = Instant::now();
        let marks = created.clone();
        for_each_concurrent(n, args.creators, &clients, move |c, i| {
            let marks = marks.clone();
            async move {
                let p = pod(round, i);
                *marks[i].lock().expect("lock") = Some(Instant::now());
                c.create("default", &p).await?;
                Ok(())
            }
        })
        .await?;
        let created_in = t0.elapsed();
        let scheduling_from = if args.backlog {
            let start = Instant::now();
            scheduler = Some(start_scheduler(&url, &ca, &token, &args).await?);
            start
        } else {
            t0
        };
        let prefix = format!("r{round}-");
        let mut remaining = n - bound.keys().filter(|k| k.starts_with(&prefix)).count();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
        while remaining > 0 {
            let Ok(Some((name, at))) = tokio::time::timeout_at(deadline, bound_rx.recv()).await
            else {
                anyhow::bail!(
                    "round {round}: {remaining} of {n} pods still unbound after 30 minutes"
                );
            };
            if name.starts_with(&prefix) && bound.insert(name, at).is_none() {
                remaining -= 1;
            }
        }
        let mut latencies: Vec<Duration> = Vec::with_capacity(n);
        let mut last = scheduling_from;
        for i in 0..n {
            let at = bound[&format!("r{round}-{i:06}")];
            last = last.max(at);
            let from = if args.backlog {
                scheduling_from
            } else {
                created[i].lock().expect("lock").unwrap_or(t0)
            };
            latencies.push(at.saturating_duration_since(from));
        }
        latencies.sort();
        let elapsed = last.duration_since(scheduling_from);
        println!(
            "{:>8}  {:>10.0}  {:>12.0}  {:>10.2} s  {:>10}  {:>10}  {:>10}",
            n,
            n as f64 / created_in.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        );
        if args.backlog
            && let Some(s) = scheduler.take()
        {
            s.stop.cancel();
            let _ = s.task.await;
        }
    }

    // Sanity: every node within its pod and CPU capacity.
    let mut per_node: HashMap<String, (usize, i64)> = HashMap::new();
    let mut token_ = String::new();
    loop {
        let page = clients[0]
            .list::<Pod>(
                "default",
                &ListParams {
                    limit: 5000,
                    continue_token: token_.clone(),
                    ..Default::default()
                },
            )
            .await?;
        for p in &page.items {
            let spec = p.spec.as_ref();
            let node = spec
                .and_then(|s| s.node_name.clone())
                .context("a pod is unbound")?;
            let cpu: i64 = spec
                .map(|s| {
                    s.containers
                        .iter()
                        .filter_map(|c| c.resources.as_ref()?.requests.get("cpu"))
                        .filter_map(|q| q.value.parse::<navarch_api::Quantity>().ok())
                        .map(|q| q.milli_value())
                        .sum()
                })
                .unwrap_or(0);
            let e = per_node.entry(node).or_default();
            e.0 += 1;
            e.1 += cpu;
        }
        if page.continue_token.is_empty() {
            break;
        }
        token_ = page.continue_token;
    }
    let over = per_node
        .iter()
        .filter(|(name, (pods, cpu))| {
            let i: usize = name.trim_start_matches("node-").parse().unwrap_or(0);
            *pods > 110 || *cpu > (8i64 << (i % 4)) * 1000
        })
        .count();
    println!();
    println!(
        "check: {} pods bound on {} nodes, {} nodes over capacity, at most {} pods on one node",
        per_node.values().map(|(p, _)| p).sum::<usize>(),
        per_node.len(),
        over,
        per_node.values().map(|(p, _)| *p).max().unwrap_or(0)
    );

    if let Some(s) = scheduler.take() {
        s.stop.cancel();
        let _ = s.task.await;
    }
    watch.abort();
    gateway.shutdown().await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}
