//! `navarch up` / `navarch server`: the control plane on one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use navarch_gateway::GatewayConfig;
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::client::Credentials;
use serde::Serialize;

/// Flags shared by `up` and `server`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Where the store, the cluster CA and the credentials live.
    #[arg(long, env = "NAVARCH_DATA_DIR", default_value_os_t = crate::default_data_dir())]
    pub data_dir: PathBuf,
    /// Address of the gRPC API gateway.
    #[arg(long, default_value_t = crate::default_grpc_listen())]
    pub grpc_listen: SocketAddr,
    /// Address of the Kubernetes HTTPS API (what kubectl talks to).
    #[arg(long, default_value_t = crate::default_api_listen())]
    pub api_listen: SocketAddr,
    /// Address of the plain-HTTP telemetry listener: `/metrics` (Prometheus text) and
    /// `/livez`, `/readyz`, `/healthz`, without credentials.
    #[arg(long, default_value_t = crate::default_telemetry_listen())]
    pub telemetry_listen: SocketAddr,
    /// Users' bearer tokens (Kubernetes' `--token-auth-file` format: `token,user,uid,"groups"`),
    /// e.g. a mounted Secret shared by several servers. Default: `tokens.csv` in the data dir,
    /// created with the admin user on first start.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// A directory holding the cluster CA (`ca.crt`, `ca.key`), e.g. a mounted Secret, so
    /// several servers share one CA. Default: the CA in the data dir, created on first start.
    #[arg(long)]
    pub cluster_ca_dir: Option<PathBuf>,
    /// How Secrets (and other resources) are encrypted in the store: a Kubernetes
    /// `EncryptionConfiguration` (`aesgcm` and `identity` providers). Default with the
    /// embedded store: `encryption.yaml` in the data dir, created with a random key for
    /// Secrets on first start. Servers sharing a TiKV store must share one file.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// Write one audit line (`audit.k8s.io/v1` Event, JSON) per API request to this file
    /// (`-`: standard output). Default: no audit log.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// What each audit line records: `Metadata` (user, verb, resource, namespace, name,
    /// response code, latency) or `None`.
    #[arg(long, default_value = "Metadata")]
    pub audit_log_level: navarch_gateway::audit::Level,
    /// Rotate the audit log to `<path>.1` past this many megabytes.
    #[arg(long, default_value_t = 100)]
    pub audit_log_maxsize: u64,
    /// How long serving certificates are valid; each is renewed, without a restart, when a
    /// third of its life (at most 30 days) is left.
    #[arg(long, default_value = "8760h", value_parser = crate::parse_duration, hide = true)]
    pub serving_cert_validity: std::time::Duration,
    /// How long the client certificates of this process's components are valid; each is
    /// renewed in memory, without a restart, when a third of its life is left.
    #[arg(long, default_value = "8760h", value_parser = crate::parse_duration, hide = true)]
    pub client_cert_validity: std::time::Duration,
    /// Extra names and addresses for the serving certificate.
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// The store: `embedded` (in the data dir) or `tikv://pd1:2379,pd2:2379` (shared by
    /// several servers).
    #[arg(long, env = "NAVARCH_STORE", default_value = "embedded")]
    pub store: String,
    /// The namespace of this cluster in a shared TiKV cluster.
    #[arg(long, env = "NAVARCH_STORE_PREFIX", default_value = "default")]
    pub store_prefix: String,
    /// The range Service ClusterIPs come from (IPv4); its first address is the
    /// `kubernetes` Service's.
    #[arg(long, default_value = navarch_gateway::allocator::DEFAULT_SERVICE_CIDR)]
    pub service_cidr: String,
    /// The range pods' addresses come from; each node gets a /24 of it (`node.spec.podCIDR`).
    #[arg(long, default_value = crate::agent::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: String,
    /// The ports NodePort and LoadBalancer Services get.
    #[arg(long, default_value = navarch_gateway::allocator::DEFAULT_NODE_PORT_RANGE)]
    pub service_node_port_range: String,
    /// The address pods reach the API at (the `kubernetes` Service's endpoint). Default: the
    /// `--api-listen` address when it is a specific non-loopback one, else this machine's
    /// primary address.
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,
    /// How often each HorizontalPodAutoscaler is evaluated.
    #[arg(long, default_value = "15s", value_parser = crate::parse_duration)]
    pub horizontal_pod_autoscaler_sync_period: std::time::Duration,
    /// How long a scale-down waits for lower recommendations when an HPA's behavior does not
    /// say (Kubernetes' default: 5m).
    #[arg(long, default_value = "5m", value_parser = crate::parse_duration)]
    pub horizontal_pod_autoscaler_downscale_stabilization: std::time::Duration,
    /// Usage ratios within this of 1 do not rescale.
    #[arg(long, default_value_t = 0.1)]
    pub horizontal_pod_autoscaler_tolerance: f64,
    /// After a pod starts, how long its CPU counts only once it is ready.
    #[arg(long, default_value = "5m", value_parser = crate::parse_duration)]
    pub horizontal_pod_autoscaler_cpu_initialization_period: std::time::Duration,
    /// How long a node may go without a heartbeat (Lease renewal or status) before it is
    /// marked `Ready=Unknown`, tainted unreachable and its pods not ready.
    #[arg(long, default_value = "40s", value_parser = crate::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub node_monitor_period: std::time::Duration,
    /// How long pods without a toleration of their own stay on a `not-ready` node before
    /// they are evicted.
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// How long pods without a toleration of their own stay on an `unreachable` node (its
    /// agent stopped reporting) before they are evicted.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
}

/// This machine's primary address: the source address of the default route (a UDP
/// `connect` picks it without sending anything), loopback when there is none.
fn primary_address() -> std::net::IpAddr {
    let local = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr());
    match local {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => std::net::Ipv4Addr::LOCALHOST.into(),
    }
}

/// What `navarch up` writes into the data dir for clients: `connection.json`.
#[derive(Serialize)]
struct Connection<'a> {
    grpc: String,
    /// The Kubernetes HTTPS API (`https://host:port`).
    api: String,
    /// The telemetry listener (`http://host:port`: `/metrics`, `/readyz`, …).
    telemetry: String,
    kubeconfig: &'a str,
    token_file: &'a str,
    ca_file: &'a str,
}

const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The identity of this process's hollow (simulated) nodes: in `system:nodes` for the node
/// role, but not one node, so the Node authorizer leaves it alone.
const HOLLOW_FLEET_USER: &str = "system:navarch:hollow-fleet";
/// The admin kubeconfig `navarch up` writes (and `navarch kubeconfig` prints).
pub const KUBECONFIG_FILE: &str = "kubeconfig";
const TOKEN_AUTH_FILE: &str = "tokens.csv";

/// The admin token, created on first start (random, 0600).
fn ensure_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    use base64::Engine as _;
    use rand::RngCore;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}

pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The cluster admin (`system:masters`).
fn admin_user() -> UserInfo {
    UserInfo {
        name: "admin".into(),
        uid: "admin".into(),
        groups: vec!["system:masters".into()],
        extra: Default::default(),
    }
}

/// Copies the cluster CA from `from` (a mounted Secret) into the PKI dir, replacing the one
/// there when it differs; the serving certificate is then re-issued by that CA.
fn adopt_cluster_ca(from: &Path, pki: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(pki).with_context(|| format!("creating {}", pki.display()))?;
    for file in [
        "ca.crt",
        "ca.key",
        navarch_pki::SA_KEY_FILE,
        navarch_pki::CA_CROSS_FILE,
    ] {
        let source = from.join(file);
        if matches!(file, navarch_pki::SA_KEY_FILE | navarch_pki::CA_CROSS_FILE) && !source.exists()
        {
            // Optional: without sa.key each server signs service-account tokens with its
            // own key; ca-cross.crt exists only during a CA rotation (gone from the source:
            // the rotation finished).
            if file == navarch_pki::CA_CROSS_FILE {
                let _ = std::fs::remove_file(pki.join(file));
            }
            continue;
        }
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("reading {} (--cluster-ca-dir)", source.display()))?;
        let target = pki.join(file);
        if std::fs::read_to_string(&target).ok().as_deref() != Some(text.as_str()) {
            write_private(&target, &text)?;
            tracing::info!(from = %source.display(), to = %target.display(), "cluster CA taken from --cluster-ca-dir");
        }
    }
    Ok(())
}

/// Loads the token file, creating it with the admin user on first start.
fn token_auth(data_dir: &Path, admin_token: &str) -> anyhow::Result<TokenFile> {
    let path = data_dir.join(TOKEN_AUTH_FILE);
    if !path.exists() {
        let admin = admin_user();
        write_private(
            &path,
            &format!(
                "# token,user,uid,\"groups\" (Kubernetes --token-auth-file format)\n{}",
                TokenFile::line(admin_token, &admin)
            ),
        )?;
    }
    TokenFile::load(&path).with_context(|| format!("loading {}", path.display()))
}

pub async fn run(
    args: ServerArgs,
    mode: &'static str,
    local_node: Option<crate::agent::NodeArgs>,
) -> anyhow::Result<()> {
    let _telemetry = navarch_telemetry::init(&format!("navarch-{mode}"))?;
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    // In-cluster clients verify the API as the kubernetes Service's ClusterIP.
    let mut sans = args.tls_sans.clone();
    sans.push(
        navarch_gateway::allocator::ServiceNetwork::new(
            &args.service_cidr,
            &args.service_node_port_range,
        )?
        .kubernetes_ip()
        .to_string(),
    );
    // And as the addresses it listens on and advertises (kube-apiserver's advertise address):
    // a specific listen address, else this machine's primary one.
    for ip in [args.api_listen.ip(), args.grpc_listen.ip()]
        .into_iter()
        .chain(args.advertise_address)
    {
        let ip = if ip.is_unspecified() {
            primary_address()
        } else {
            ip
        };
        if !ip.is_loopback() {
            sans.push(ip.to_string());
        }
    }
    if let Some(dir) = &args.cluster_ca_dir {
        adopt_cluster_ca(dir, &data_dir.join("pki"))?;
    }
    let pki = Arc::new(navarch_pki::ClusterPki::load_or_create_with(
        &data_dir.join("pki"),
        &sans,
        args.serving_cert_validity,
    )?);
    let renewal = spawn_serving_renewal(pki.clone(), args.serving_cert_validity);
    let admin_token = ensure_admin_token(&data_dir)?;
    // The components of this process authenticate with their own client certificates
    // (mutual TLS), each bound to its least-privilege role.
    let renewals = std::sync::Mutex::new(Vec::new());
    let renewable =
        |user: &str, groups: &[&str]| -> anyhow::Result<Arc<navarch_pki::RenewableIdentity>> {
            let (cert, key) = pki.issue_client_cert(user, groups, args.client_cert_validity)?;
            let identity = navarch_pki::RenewableIdentity::new(cert, key)?;
            renewals
                .lock()
                .expect("not poisoned")
                .push(spawn_client_renewal(
                    pki.clone(),
                    identity.clone(),
                    user.to_string(),
                    groups.iter().map(|g| g.to_string()).collect(),
                    args.client_cert_validity,
                ));
            Ok(identity)
        };
    let identity = |user: &str, groups: &[&str]| -> anyhow::Result<Credentials> {
        Ok(renewable(user, groups)?.into())
    };
    let service_accounts = Arc::new(
        navarch_gateway::tokens::TokenIssuer::new(&pki.signing_key()?)
            .context("loading the service-account signing key")?,
    );
    let mut authenticators: Vec<Arc<dyn navarch_gateway::auth::Authenticator>> = match &args
        .token_auth_file
    {
        // Users come from the shared file; this process's own components use the data
        // dir's admin token, known only here.
        Some(file) => vec![
            Arc::new(TokenFile::load(file).with_context(|| format!("loading {}", file.display()))?),
            Arc::new(TokenFile::parse(&TokenFile::line(
                &admin_token,
                &admin_user(),
            ))?),
        ],
        None => vec![Arc::new(token_auth(&data_dir, &admin_token)?)],
    };
    authenticators.push(service_accounts.clone());
    let join_tokens = navarch_gateway::bootstrap::BootstrapTokens::new();
    authenticators.push(join_tokens.clone());
    let store = match args.store.as_str() {
        "embedded" => navarch_store::open_embedded(data_dir.join("store"))?,
        url => navarch_store::open_url(url, &args.store_prefix).await?,
    };
    let encryption = match (&args.encryption_provider_config, args.store.as_str()) {
        (None, "embedded") | (Some(_), _) => Some(
            navarch_gateway::encryption::load_or_generate(
                args.encryption_provider_config.as_deref(),
                &data_dir.join("encryption.yaml"),
            )
            .context("loading the encryption configuration")?,
        ),
        (None, _) => {
            tracing::warn!(
                "Secrets are stored unencrypted: pass --encryption-provider-config (one file shared by every server of the store)"
            );
            None
        }
    };
    let store = match encryption {
        Some(encryption) => {
            tracing::info!(?encryption, "encryption at rest");
            navarch_gateway::encryption::EncryptedStore::wrap(store, Arc::new(encryption))
        }
        None => store,
    };

    let network = navarch_gateway::allocator::ServiceNetwork::new(
        &args.service_cidr,
        &args.service_node_port_range,
    )?;
    let audit = match &args.audit_log_path {
        Some(path) => Some(Arc::new(
            navarch_gateway::audit::AuditLog::open(
                path.clone(),
                args.audit_log_level,
                args.audit_log_maxsize * 1024 * 1024,
            )
            .with_context(|| format!("opening the audit log {}", path.display()))?,
        )),
        None => None,
    };
    let health = navarch_telemetry::Health::new();
    let rbac = navarch_gateway::rbac::Rbac::new();
    let gateway = navarch_gateway::start_with_network(
        GatewayConfig {
            listen: args.grpc_listen,
            store,
            authenticator: AuthChain::new(authenticators)
                .with_forwarded_certificates(pki.client_verifier()?),
            authorizer: rbac.clone(),
            tls: Some(pki.server_config(&[b"h2"])),
            tokens: Some(service_accounts.clone()),
            audit,
            node_signer: Some(pki.clone()),
        },
        network.clone(),
    )
    .await?;

    let rbac_sync = navarch_gateway::rbac::enable(&gateway.registry, &rbac).await?;
    let join_token_sync = join_tokens.spawn_sync(gateway.registry.clone());
    gateway.add_health_checks(&health);
    let policy = rbac.clone();
    add_probe(
        &health,
        navarch_telemetry::Probe::Ready,
        "rbac",
        move || policy.synced(),
    );
    let grpc = format!("https://{}", gateway.addr);
    let scheduler =
        crate::scheduler::start(&grpc, pki.ca_pem(), identity("system:kube-scheduler", &[])?)
            .await?;
    add_probe(
        &health,
        navarch_telemetry::Probe::Ready,
        "scheduler",
        scheduler.probe(),
    );
    let mut manager = navarch_controllers::ManagerConfig::new(
        navarch_gateway::Client::connect(
            &grpc,
            pki.ca_pem(),
            identity("system:kube-controller-manager", &[])?,
        )
        .await?,
        navarch_controllers::manager::default_identity(),
    );
    manager.settings.cluster_cidr = args.cluster_cidr.clone();
    manager.settings.root_ca_pem = pki.ca_pem().to_string();
    manager.settings.hpa_sync_period = args.horizontal_pod_autoscaler_sync_period;
    manager.settings.hpa_downscale_stabilization =
        args.horizontal_pod_autoscaler_downscale_stabilization;
    manager.settings.hpa_tolerance = args.horizontal_pod_autoscaler_tolerance;
    manager.settings.hpa_cpu_initialization_period =
        args.horizontal_pod_autoscaler_cpu_initialization_period;
    manager.settings.node_monitor_grace_period = args.node_monitor_grace_period;
    manager.settings.node_monitor_period = args.node_monitor_period;
    manager.settings.default_not_ready_toleration_seconds =
        args.default_not_ready_toleration_seconds;
    manager.settings.default_unreachable_toleration_seconds =
        args.default_unreachable_toleration_seconds;
    let controllers = navarch_controllers::ControllerManager::start(manager);
    add_probe(
        &health,
        navarch_telemetry::Probe::Live,
        "controller-manager",
        controllers.probe(),
    );
    let channel = navarch_facade::gateway::channel(
        &navarch_facade::kubeconfig::server_url(gateway.addr),
        pki.ca_pem(),
        Some(renewable(navarch_gateway::auth::FRONT_PROXY_USER, &[])?),
    )?;
    let facade = navarch_facade::start(navarch_facade::FacadeConfig {
        listen: args.api_listen,
        tls: pki.server_config(&[b"h2", b"http/1.1"]),
        gateway: channel,
        health: health.clone(),
    })
    .await?;
    let telemetry = navarch_telemetry::serve(args.telemetry_listen, health.clone())
        .await
        .with_context(|| format!("serving telemetry on {}", args.telemetry_listen))?;
    let api = navarch_facade::kubeconfig::server_url(facade.addr);
    let advertise = args.advertise_address.unwrap_or_else(|| {
        let ip = facade.addr.ip();
        if ip.is_unspecified() || ip.is_loopback() {
            primary_address()
        } else {
            ip
        }
    });
    if facade.addr.ip().is_loopback() {
        tracing::warn!(
            api = %facade.addr,
            "the Kubernetes API listens on loopback only; pods cannot reach it (use --api-listen 0.0.0.0:6443)"
        );
    }
    let kubernetes_service = navarch_gateway::kubernetes_service::spawn(
        gateway.registry.clone(),
        advertise,
        facade.addr.port(),
    );
    let admin = admin_user();
    let (admin_cert, admin_key) = pki.load_or_issue_client(
        "admin",
        &admin.name,
        &admin.groups.iter().map(String::as_str).collect::<Vec<_>>(),
        navarch_pki::SERVER_VALIDITY,
    )?;
    write_private(
        &data_dir.join(KUBECONFIG_FILE),
        &navarch_facade::kubeconfig::render_with(
            &api,
            pki.ca_pem(),
            navarch_facade::kubeconfig::Credentials::Certificate {
                cert_pem: &admin_cert,
                key_pem: &admin_key,
            },
        ),
    )?;
    // `up`: this machine is also a node.
    let agents = match &local_node {
        Some(node) => {
            let node_name = crate::agent::node_name(node);
            let client = navarch_gateway::Client::connect(
                &grpc,
                pki.ca_pem(),
                identity(&format!("system:node:{node_name}"), &["system:nodes"])?,
            )
            .await?;
            let network = crate::agent::ClusterNetwork {
                cluster_cidr: args.cluster_cidr.clone(),
                service_cidr: args.service_cidr.clone(),
            };
            let fleet = match node.hollow_nodes {
                0 => None,
                _ => Some(
                    navarch_gateway::Client::connect(
                        &grpc,
                        pki.ca_pem(),
                        identity(HOLLOW_FLEET_USER, &["system:nodes"])?,
                    )
                    .await?,
                ),
            };
            let agents =
                crate::agent::start(client, fleet, &data_dir.join("agent"), node, &network).await?;
            agents.add_health_checks(&health);
            Some(agents)
        }
        None => None,
    };
    // Written once everything runs (with `up`, the local node too, so its readiness check
    // is part of /readyz from the first answer): clients wait for this file.
    let connection = Connection {
        grpc: grpc.clone(),
        api: api.clone(),
        telemetry: format!("http://{}", telemetry.addr),
        kubeconfig: KUBECONFIG_FILE,
        token_file: ADMIN_TOKEN_FILE,
        ca_file: "pki/ca.crt",
    };
    std::fs::write(
        data_dir.join("connection.json"),
        serde_json::to_vec_pretty(&connection)?,
    )?;
    tracing::info!(
        mode,
        grpc = %grpc,
        api = %api,
        telemetry = %telemetry.addr,
        kubeconfig = %data_dir.join(KUBECONFIG_FILE).display(),
        data_dir = %data_dir.display(),
        admin_token = %data_dir.join(ADMIN_TOKEN_FILE).display(),
        ca = %data_dir.join("pki/ca.crt").display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "navarch is up; connection details in {}",
        data_dir.join("connection.json").display()
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(agents) = agents {
        agents.shutdown().await;
    }
    kubernetes_service.abort();
    rbac_sync.abort();
    renewal.abort();
    for task in renewals.into_inner().unwrap_or_default() {
        task.abort();
    }
    join_token_sync.abort();
    telemetry.shutdown();
    controllers.shutdown().await;
    scheduler.shutdown().await;
    facade.shutdown().await;
    gateway.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Renews the serving certificate of every listener (API, gateway) before it expires.
fn spawn_serving_renewal(
    pki: Arc<navarch_pki::ClusterPki>,
    validity: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    every_tenth_of(validity, move || {
        if let Err(error) = pki.renew_serving(validity) {
            tracing::warn!(%error, "renewing the serving certificate failed; retrying");
        }
    })
}

/// Runs `check` every tenth of `validity` (at most hourly): how certificates valid that long
/// notice their renewal is due.
fn every_tenth_of(
    validity: std::time::Duration,
    check: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let every = (validity / 10).min(std::time::Duration::from_secs(3600));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            check();
        }
    })
}

/// Re-issues a component's client certificate when a third of its life is left and swaps
/// it in (its connections then reconnect with the new one).
fn spawn_client_renewal(
    pki: Arc<navarch_pki::ClusterPki>,
    identity: Arc<navarch_pki::RenewableIdentity>,
    user: String,
    groups: Vec<String>,
    validity: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    every_tenth_of(validity, move || {
        let (cert, _) = identity.pem();
        let left = navarch_pki::not_after(&cert).unwrap_or(0) - jiff::Timestamp::now().as_second();
        if left > (validity / 3).as_secs() as i64 {
            return;
        }
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        match pki
            .issue_client_cert(&user, &groups, validity)
            .map_err(anyhow::Error::from)
            .and_then(|(cert, key)| Ok(identity.set(cert, key)?))
        {
            Ok(()) => tracing::info!(%user, "renewed client certificate"),
            Err(error) => {
                tracing::warn!(%user, %error, "renewing a client certificate failed; retrying")
            }
        }
    })
}

/// Registers a synchronous `probe` as the check `name`.
pub fn add_probe(
    health: &navarch_telemetry::Health,
    probe: navarch_telemetry::Probe,
    name: &str,
    check: impl Fn() -> bool + Send + Sync + 'static,
) {
    let check = Arc::new(check);
    let what = name.to_string();
    health.add(probe, name, move || {
        let ok = check();
        let what = what.clone();
        async move {
            if ok {
                Ok(())
            } else {
                Err(format!("{what} is not running"))
            }
        }
    });
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `navarch kubeconfig`: prints the admin kubeconfig `navarch up` wrote into the data dir.
pub fn print_kubeconfig(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(KUBECONFIG_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (run `navarch up --data-dir {}` first)",
            path.display(),
            data_dir.display()
        )
    })?;
    print!("{text}");
    Ok(())
}
