//! `navarch agent` (a worker's node agent) and the local node agent of `navarch up`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use navarch_agent::runtime::process::ProcessRuntime;
use navarch_agent::runtime::runc::{self, RuncConfig, RuncRuntime};
use navarch_agent::{AgentConfig, ClusterDns, ContainerRuntime, HollowFleetConfig, RunningAgent};
use navarch_api::core::v1::Taint;
use navarch_gateway::Client;

/// How the node looks and which runtime runs its pods (shared by `agent` and `up`).
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Container runtime: `runc` (real containers: root, runc and the CNI plugins),
    /// `process` (host processes), or `auto` (runc when possible).
    #[arg(long, default_value = "auto")]
    pub runtime: String,
    /// The node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address (default: the source address of the default route).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Extra node labels, `key=value`.
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
    /// Taints to register with, `key=value:Effect` or `key:Effect`.
    #[arg(long = "register-with-taints")]
    pub taints: Vec<String>,
    /// Capacity overrides, `resource=quantity` (e.g. `cpu=8`, `memory=16Gi`).
    #[arg(long = "capacity")]
    pub capacity: Vec<String>,
    /// Most pods this node runs.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The pod subnet of this node (runc runtime). Default: the one the cluster assigns
    /// (`node.spec.podCIDR`, cut from the server's `--cluster-cidr`).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The service proxy: `iptables` (kube-proxy's iptables mode; runc runtime, root),
    /// `userspace` (ClusterIPs served on loopback stand-ins, `127.64.0.0/10`; no root),
    /// `none`, or `auto` (iptables with the runc runtime, userspace with the process one).
    #[arg(long, default_value = "auto")]
    pub proxy_mode: String,
    /// The Linux bridge the pods attach to (runc runtime).
    #[arg(long, default_value = "navarch0")]
    pub cni_bridge: String,
    /// The cgroup the pods' cgroups go under (runc runtime).
    #[arg(long, default_value = "navarch")]
    pub cgroup_parent: String,
    /// Registries reached over plain HTTP (those on 127.0.0.0/8 always are).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// DNS servers for pods (`ClusterFirst`), like the kubelet's `--cluster-dns`. Default:
    /// the node's own DNS on the pod bridge's gateway (runc runtime).
    #[arg(long = "cluster-dns")]
    pub cluster_dns: Vec<String>,
    /// Resolvers the node's DNS forwards names outside the cluster domain to (`ip` or
    /// `ip:port`). Default: the nameservers of the node's `/etc/resolv.conf`.
    #[arg(long = "dns-upstream")]
    pub dns_upstreams: Vec<String>,
    /// How often the node's and its pods' resource usage is reported (`kubectl top`,
    /// autoscaling); `0s` turns the reports off.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub metrics_interval: std::time::Duration,
    /// How long the node's Lease is valid; it is renewed every quarter of that (the
    /// kubelet's `--node-lease-duration-seconds`). Keep it within the server's
    /// `--node-monitor-grace-period`.
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: u64,
    /// How often the node's status is checked (and written when it changed).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub node_status_update_frequency: std::time::Duration,
    /// Also run this many simulated (hollow) nodes in this process.
    #[arg(long, default_value_t = 0)]
    pub hollow_nodes: usize,
}

/// `navarch agent`: a node agent joining a cluster through its gateway.
#[derive(clap::Args, Clone, Debug)]
pub struct AgentArgs {
    /// The gateway's gRPC URL (`https://host:6444`).
    #[arg(long)]
    pub gateway: String,
    /// Bearer token for the gateway (instead of a node credential).
    #[arg(long, env = "NAVARCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A join token (`navarch token create`): used once to obtain this node's credential,
    /// a client certificate `CN=system:node:<name>` kept in `<data-dir>/pki/` and renewed
    /// by the agent itself.
    #[arg(long, env = "NAVARCH_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// The cluster CA (PEM) to verify the gateway with.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Where pod records, logs, images and containers live.
    #[arg(
        long,
        env = "NAVARCH_AGENT_DATA_DIR",
        default_value = "navarch-agent-data"
    )]
    pub data_dir: PathBuf,
    /// The cluster's pod range (the server's `--cluster-cidr`).
    #[arg(long, default_value = DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: String,
    /// Address of the plain-HTTP telemetry listener: `/metrics` and `/livez`, `/readyz`,
    /// `/healthz`, without credentials.
    #[arg(long, default_value_t = crate::default_agent_telemetry_listen())]
    pub telemetry_listen: std::net::SocketAddr,
    /// The cluster's service range (the server's `--service-cidr`).
    #[arg(long, default_value = navarch_gateway::allocator::DEFAULT_SERVICE_CIDR)]
    pub service_cidr: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The pod range nodes' pod CIDRs are cut from, unless `--cluster-cidr` says otherwise.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";

/// The cluster's address ranges, as the node's service proxy needs them.
#[derive(Clone, Debug)]
pub struct ClusterNetwork {
    pub cluster_cidr: String,
    pub service_cidr: String,
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{what} {s:?} is not key=value"))
        })
        .collect()
}

fn taint(s: &str) -> anyhow::Result<Taint> {
    let (kv, effect) = s
        .rsplit_once(':')
        .with_context(|| format!("taint {s:?} is not key[=value]:Effect"))?;
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    Ok(Taint {
        key: Some(key.into()),
        value: (!value.is_empty()).then(|| value.into()),
        effect: Some(effect.into()),
        ..Default::default()
    })
}

/// `ip` or `ip:port` (port 53 by default), `[v6]:port` too.
fn upstream(s: &str) -> anyhow::Result<std::net::SocketAddr> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let ip: IpAddr = s
        .trim_matches(['[', ']'])
        .parse()
        .with_context(|| format!("--dns-upstream {s:?} is not ip or ip:port"))?;
    Ok(std::net::SocketAddr::new(ip, 53))
}

fn choose_runtime(
    args: &NodeArgs,
    data_dir: &Path,
    proxy_egress: bool,
) -> anyhow::Result<Arc<dyn ContainerRuntime>> {
    let mut cfg = RuncConfig::new(data_dir);
    // Empty: the runtime waits for the node's podCIDR (UpdateRuntimeConfig).
    cfg.network.subnet = args.pod_cidr.clone().unwrap_or_default();
    cfg.network.bridge = args.cni_bridge.clone();
    cfg.cgroup_parent = args.cgroup_parent.clone();
    // The proxy masquerades pods' traffic leaving the cluster and keeps pod-to-pod across
    // nodes unmasqueraded; without it the bridge plugin masquerades everything off-node.
    cfg.network.ip_masq = !proxy_egress;
    cfg.insecure_registries = args.insecure_registries.clone();
    let process = || -> anyhow::Result<Arc<dyn ContainerRuntime>> {
        Ok(Arc::new(ProcessRuntime::new(&data_dir.join("process"))?))
    };
    match args.runtime.as_str() {
        "runc" => {
            if let Err(why) = runc::available(&cfg) {
                anyhow::bail!("the runc runtime cannot run here: {why}");
            }
            Ok(Arc::new(RuncRuntime::new(cfg)?))
        }
        "process" => process(),
        // Simulated containers: nothing runs; for trying the control plane and for tests.
        "hollow" => Ok(Arc::new(
            navarch_agent::runtime::hollow::HollowRuntime::new(
                navarch_agent::runtime::hollow::HollowBehaviour::default(),
                [10, 250],
            ),
        )),
        "auto" => match runc::available(&cfg) {
            Ok(()) => Ok(Arc::new(RuncRuntime::new(cfg)?)),
            Err(why) => {
                tracing::warn!(
                    "runc runtime unavailable ({why}); running pods as host processes. For real containers: apt-get install runc containernetworking-plugins iptables conntrack (as root)"
                );
                process()
            }
        },
        other => anyhow::bail!("unknown runtime {other:?} (runc, process, hollow or auto)"),
    }
}

/// The agent(s) of this process: the node's own, and any hollow fleet, and the node's
/// service proxy and pod routes.
pub struct LocalAgents {
    client: Client,
    node_name: String,
    agents: Vec<RunningAgent>,
    network: Option<NodeNetworking>,
    userspace: Option<navarch_proxy::UserspaceProxy>,
}

impl LocalAgents {
    /// Registers the agent's readiness on `health`: `node` (its Node is readable through the
    /// gateway: registered, and the gateway reachable with the node's credentials).
    pub fn add_health_checks(&self, health: &navarch_telemetry::Health) {
        let client = self.client.clone();
        let name = self.node_name.clone();
        health.add(navarch_telemetry::Probe::Ready, "node", move || {
            let client = client.clone();
            let name = name.clone();
            async move {
                client
                    .get::<navarch_api::core::v1::Node>("", &name)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
    }

    pub async fn shutdown(self) {
        if let Some(n) = self.network {
            n.shutdown().await;
        }
        if let Some(u) = self.userspace {
            u.shutdown().await;
        }
        for a in self.agents {
            a.shutdown().await;
        }
    }
}

/// The node's packet path: the service proxy, the host-gw routes and the node's DNS on the
/// pod bridge's gateway, started once the node has its pod CIDR and stopped (chains and
/// routes removed) with the agent.
struct NodeNetworking {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeNetworking {
    fn start(
        client: Client,
        node_name: String,
        network: ClusterNetwork,
        dns: Option<navarch_dns::DnsConfig>,
        mut pod_cidr: tokio::sync::watch::Receiver<Option<String>>,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let cidr = tokio::select! {
                c = pod_cidr.wait_for(Option::is_some) => match c {
                    Ok(c) => c.clone(),
                    Err(_) => return,
                },
                _ = &mut stopped => return,
            };
            navarch_proxy::prepare_host();
            let proxy = navarch_proxy::Proxy::start(
                client.clone(),
                navarch_proxy::ProxyConfig {
                    rules: navarch_proxy::RulesConfig {
                        cluster_cidr: Some(network.cluster_cidr.clone()),
                        service_cidr: Some(network.service_cidr.clone()),
                        pod_cidr: cidr.clone(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            );
            let routes = navarch_proxy::RouteSync::start(client.clone(), node_name.clone());
            tracing::info!(node = %node_name, pod_cidr = ?cidr, cluster_cidr = %network.cluster_cidr, service_cidr = %network.service_cidr, "service proxy and pod routes started");
            let dns = match (
                dns,
                cidr.as_deref().and_then(navarch_agent::dns::pod_gateway),
            ) {
                (Some(mut cfg), Some(gateway)) => {
                    cfg.listen = vec![std::net::SocketAddr::new(gateway, 53)];
                    if cfg.upstreams.is_empty() {
                        cfg.upstreams = navarch_dns::server::upstreams_from_resolv_conf(
                            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                            &cfg.listen,
                        );
                    }
                    match navarch_dns::DnsServer::start(client, cfg.clone()).await {
                        Ok(server) => {
                            tracing::info!(node = %node_name, listen = ?cfg.listen, upstreams = ?cfg.upstreams, domain = %cfg.zone.domain, "node DNS started");
                            Some(server)
                        }
                        Err(error) => {
                            tracing::error!(node = %node_name, %error, "node DNS cannot start; pods' lookups will fail");
                            None
                        }
                    }
                }
                _ => None,
            };
            let _ = stopped.await;
            if let Some(dns) = dns {
                dns.shutdown().await;
            }
            routes.shutdown().await;
            proxy.shutdown().await;
        });
        Self { stop, task }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The node's name: `--node-name`, else the host name in lower case.
pub fn node_name(args: &NodeArgs) -> String {
    args.node_name
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().to_lowercase())
}

/// Starts the node agent (and hollow nodes) against the gateway `client` (the hollow nodes
/// against `fleet` when given: one identity for many simulated nodes, which the Node
/// authorizer would refuse to a single node's credential).
pub async fn start(
    client: Client,
    fleet: Option<Client>,
    data_dir: &Path,
    args: &NodeArgs,
    network: &ClusterNetwork,
) -> anyhow::Result<LocalAgents> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let name = node_name(args);
    let mut config = AgentConfig::new(&name, &data_dir);
    config.node_ip = args.node_ip;
    let lease = std::time::Duration::from_secs(args.node_lease_duration_seconds.max(1));
    config.timing.lease_duration = lease;
    config.timing.lease_renew = lease / 4;
    config.timing.status_update = args.node_status_update_frequency;
    config.node.labels = pairs(&args.node_labels, "node label")?
        .into_iter()
        .collect();
    config.node.taints = args
        .taints
        .iter()
        .map(|t| taint(t))
        .collect::<Result<_, _>>()?;
    config.node.capacity = pairs(&args.capacity, "capacity")?.into_iter().collect();
    config.node.max_pods = args.max_pods;
    config.node.pod_cidr = args.pod_cidr.clone();
    config.cluster_domain = args.cluster_domain.clone();
    config.metrics_interval = (!args.metrics_interval.is_zero()).then_some(args.metrics_interval);
    let wants_proxy = match args.proxy_mode.as_str() {
        "iptables" => true,
        "none" | "userspace" => false,
        "auto" => args.runtime != "process" && args.runtime != "hollow",
        other => {
            anyhow::bail!("unknown proxy mode {other:?} (iptables, userspace, none or auto)")
        }
    };
    let runtime = choose_runtime(args, &data_dir, wants_proxy)?;
    let proxied = wants_proxy && runtime.name() == "runc";
    if wants_proxy && !proxied && args.proxy_mode == "iptables" {
        anyhow::bail!("--proxy-mode iptables needs the runc runtime (root, iptables)");
    }
    // Without iptables (the process runtime), ClusterIPs are served on loopback.
    let userspace = args.proxy_mode == "userspace"
        || (args.proxy_mode == "auto" && runtime.name() == "process");
    if userspace {
        let cidr = network.service_cidr.clone();
        config.service_address = Some(Arc::new(move |ip: &str| {
            let ip = ip.parse().ok()?;
            navarch_proxy::userspace::loopback_address(&cidr, ip).map(|l| l.to_string())
        }));
    }
    // The node runs its own DNS where its pods can reach it: the runc runtime's bridge.
    let node_dns = args.cluster_dns.is_empty() && proxied;
    config.cluster_dns = if !args.cluster_dns.is_empty() {
        ClusterDns::Servers(args.cluster_dns.clone())
    } else if node_dns {
        ClusterDns::PodGateway
    } else {
        ClusterDns::None
    };
    let dns = node_dns
        .then(|| -> anyhow::Result<_> {
            Ok(navarch_dns::DnsConfig {
                upstreams: args
                    .dns_upstreams
                    .iter()
                    .map(|u| upstream(u))
                    .collect::<Result<_, _>>()?,
                zone: navarch_dns::ZoneConfig {
                    domain: args.cluster_domain.clone(),
                    ..Default::default()
                },
                ..Default::default()
            })
        })
        .transpose()?;
    let agent = navarch_agent::start(client.clone(), config, runtime).await?;
    let userspace_cidr = network.service_cidr.clone();
    let network = proxied.then(|| {
        NodeNetworking::start(
            client.clone(),
            name.clone(),
            network.clone(),
            dns,
            agent.pod_cidr(),
        )
    });
    let userspace = userspace.then(|| {
        tracing::info!(service_cidr = %userspace_cidr, loopback = %navarch_proxy::userspace::LOOPBACK_BASE, "userspace service proxy: ClusterIPs served on loopback stand-ins");
        navarch_proxy::UserspaceProxy::start(
            client.clone(),
            navarch_proxy::UserspaceConfig {
                service_cidr: userspace_cidr,
                ..Default::default()
            },
        )
    });
    let mut agents = vec![agent];
    if args.hollow_nodes > 0 {
        agents.push(
            navarch_agent::start_hollow_fleet(
                fleet.unwrap_or_else(|| client.clone()),
                HollowFleetConfig {
                    name_prefix: format!("hollow-{name}"),
                    count: args.hollow_nodes,
                    ..Default::default()
                },
            )
            .await,
        );
    }
    Ok(LocalAgents {
        client,
        node_name: name,
        agents,
        network,
        userspace,
    })
}

/// A node certificate with less than this left is renewed when the agent starts.
const RENEW_NODE_CERT_BEFORE: std::time::Duration = std::time::Duration::from_secs(73 * 24 * 3600);

/// How this agent authenticates: its stored node certificate (renewed when close to expiry),
/// else one obtained with `--join-token`, else `--token`.
async fn node_credentials(args: &AgentArgs, ca: &str) -> anyhow::Result<NodeCredentials> {
    use navarch_gateway::client::Credentials;
    let name = node_name(&args.node);
    let dir = args.data_dir.join("pki");
    let (cert_path, key_path) = (dir.join("node.crt"), dir.join("node.key"));
    let stored = match (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        (Ok(cert), Ok(key)) => Some((cert, key)),
        _ => None,
    };
    let now = jiff::Timestamp::now().as_second();
    let stored = stored.filter(|(cert, _)| {
        navarch_pki::subject(&navarch_pki::pem_to_der(cert).unwrap_or_default())
            .is_ok_and(|s| s.common_name == format!("system:node:{name}"))
    });
    let ask_with = match &stored {
        Some((cert, key)) => {
            let left = navarch_pki::not_after(cert)? - now;
            // After a CA rotation (a --ca-file whose first CA is the new one) the credential
            // from the previous CA is exchanged while both are still trusted.
            let current_ca = ca.is_empty() || navarch_pki::issued_by(cert, ca);
            if left > renew_window(cert) && current_ca {
                tracing::info!(node = %name, path = %cert_path.display(), "using the stored node credential");
                return renewing(cert.clone(), key.clone(), cert_path, key_path);
            }
            tracing::info!(node = %name, days_left = left / 86400, current_ca, "renewing the node credential");
            Credentials::from((cert.clone(), key.clone()))
        }
        None => match (&args.join_token, &args.token) {
            (Some(join), _) => Credentials::Token(join.clone()),
            (None, Some(token)) => {
                return Ok(NodeCredentials {
                    credentials: Credentials::Token(token.clone()),
                    renewal: None,
                });
            }
            (None, None) => anyhow::bail!(
                "no credentials: pass --join-token (from `navarch token create`) or --token"
            ),
        },
    };
    let client = Client::connect(&args.gateway, ca, ask_with).await?;
    let common_name = format!("system:node:{name}");
    let (csr, key) = navarch_pki::client_csr(&common_name, &["system:nodes"])?;
    let cert = client
        .request_node_credential(&csr)
        .await
        .with_context(|| format!("asking {} for the node credential of {name}", args.gateway))?;
    std::fs::create_dir_all(&dir)?;
    crate::cluster::write_private(&key_path, &key)?;
    std::fs::write(&cert_path, &cert)?;
    tracing::info!(node = %name, path = %cert_path.display(), "obtained the node credential");
    renewing(cert, key, cert_path, key_path)
}

/// Seconds before expiry a node certificate is renewed: 73 days, or a third of its life
/// for short-lived ones.
fn renew_window(cert_pem: &str) -> i64 {
    let (from, to) = navarch_pki::validity(cert_pem).unwrap_or((0, 0));
    (RENEW_NODE_CERT_BEFORE.as_secs() as i64).min((to - from) / 3)
}

/// How the agent authenticates, and, for a node credential, what keeps it renewed.
struct NodeCredentials {
    credentials: navarch_gateway::client::Credentials,
    renewal: Option<NodeRenewal>,
}

/// A node credential in use and the files it is kept in.
struct NodeRenewal {
    identity: std::sync::Arc<navarch_pki::RenewableIdentity>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// The node credential as a renewable identity, renewed by [`spawn_renewal`] while the
/// agent runs.
fn renewing(
    cert: String,
    key: String,
    cert_path: PathBuf,
    key_path: PathBuf,
) -> anyhow::Result<NodeCredentials> {
    let identity = navarch_pki::RenewableIdentity::new(cert, key)?;
    Ok(NodeCredentials {
        credentials: identity.clone().into(),
        renewal: Some(NodeRenewal {
            identity,
            cert_path,
            key_path,
        }),
    })
}

/// Renews the node credential through `client` (authenticated with it) before it expires:
/// a new key and CSR, the certificate stored, then swapped in (connections reconnect).
fn spawn_renewal(
    client: Client,
    node: String,
    renewal: NodeRenewal,
) -> tokio::task::JoinHandle<()> {
    let NodeRenewal {
        identity,
        cert_path,
        key_path,
    } = renewal;
    tokio::spawn(async move {
        loop {
            let (cert, _) = identity.pem();
            let (from, to) = navarch_pki::validity(&cert).unwrap_or((0, 0));
            let check = std::time::Duration::from_secs(((to - from) / 10).clamp(1, 3600) as u64);
            tokio::time::sleep(check).await;
            let left = to - jiff::Timestamp::now().as_second();
            if left > renew_window(&cert) {
                continue;
            }
            let renewed = async {
                let cn = format!("system:node:{node}");
                let (csr, key) = navarch_pki::client_csr(&cn, &["system:nodes"])?;
                let cert = client.request_node_credential(&csr).await?;
                crate::cluster::write_private(&key_path, &key)?;
                std::fs::write(&cert_path, &cert)?;
                identity.set(cert, key)?;
                anyhow::Ok(())
            }
            .await;
            match renewed {
                Ok(()) => tracing::info!(%node, "renewed the node credential"),
                Err(error) => {
                    tracing::warn!(%node, %error, "renewing the node credential failed; retrying")
                }
            }
        }
    })
}

/// `navarch agent`: runs until SIGINT/SIGTERM; containers keep running after it stops.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let _telemetry = navarch_telemetry::init("navarch-agent")?;
    let ca = match &args.ca_file {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    if args.gateway.starts_with("https://") && ca.is_empty() {
        anyhow::bail!("--ca-file is needed to verify {}", args.gateway);
    }
    let NodeCredentials {
        credentials,
        renewal,
    } = node_credentials(&args, &ca).await?;
    let client = Client::connect(&args.gateway, &ca, credentials).await?;
    let renewal =
        renewal.map(|renewal| spawn_renewal(client.clone(), node_name(&args.node), renewal));
    let network = ClusterNetwork {
        cluster_cidr: args.cluster_cidr.clone(),
        service_cidr: args.service_cidr.clone(),
    };
    let agents = start(client, None, &args.data_dir, &args.node, &network).await?;
    let health = navarch_telemetry::Health::new();
    agents.add_health_checks(&health);
    let telemetry = navarch_telemetry::serve(args.telemetry_listen, health)
        .await
        .with_context(|| format!("serving telemetry on {}", args.telemetry_listen))?;
    tracing::info!(telemetry = %telemetry.addr, "agent serving /metrics and health");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("agent shutting down; containers keep running");
    if let Some(task) = renewal {
        task.abort();
    }
    telemetry.shutdown();
    agents.shutdown().await;
    Ok(())
}
