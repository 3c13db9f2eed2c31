//! The API gateway: the one door to cluster state.
//!
//! Every request goes through the same stages, each its own module: authenticate
//! ([`auth`], a tonic interceptor) → authorize ([`auth::Authorizer`]) → default → validate
//! (`navarch_api::{defaults, validation}`) → admit ([`admission`]) → persist ([`registry`]).
//! Watches are served from the [`watch_cache`]. [`client`] is the typed client every other
//! component uses.

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod client;
pub mod encryption;
pub mod filter;
pub mod kubernetes_service;
pub mod node_authorizer;
pub mod rbac;
pub mod rbac_bootstrap;
pub mod registry;
pub mod renewing;
pub mod resource_metrics;
pub mod reviews;
pub mod service;
pub mod subresources;
pub mod tokens;
pub mod trace_links;
pub mod tunnel;
pub mod watch_cache;

use std::net::SocketAddr;
use std::sync::Arc;

use navarch_api::gateway::v1::gateway_server::GatewayServer;
use navarch_store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::{AuthChain, Authenticator, Authorizer, MastersOnly, TokenFile, UserInfo};
pub use client::{Client, PodBinding};
pub use registry::Registry;

/// Events the watch cache keeps in memory for watchers that resume.
pub const WATCH_CACHE_CAPACITY: usize = 50_000;

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// How often old revisions are compacted, and how far back history is kept: like
/// kube-apiserver, every 5 minutes compact to the revision seen 5 minutes before.
pub const COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// What a gateway needs to run.
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub store: Arc<dyn Store>,
    pub authenticator: AuthChain,
    pub authorizer: Arc<dyn Authorizer>,
    /// TLS (the cluster PKI's server configuration: its serving certificate can be renewed
    /// while the gateway runs, client certificates are verified against the CA); `None`
    /// serves plain HTTP/2 (tests only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Signs service-account tokens (TokenRequest); `None` issues none. Add it to
    /// `authenticator` too so the tokens authenticate.
    pub tokens: Option<Arc<tokens::TokenIssuer>>,
    /// One line per request (`--audit-log-path`); `None` writes none.
    pub audit: Option<Arc<audit::AuditLog>>,
    /// Signs node credentials (join tokens and renewals); `None` signs none.
    pub node_signer: Option<Arc<navarch_pki::ClusterPki>>,
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] navarch_store::StoreError),
    #[error("api: {0}")]
    Api(#[from] navarch_api::ApiError),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A gateway serving in the background.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    compactor: JoinHandle<()>,
}

impl RunningGateway {
    /// Registers the gateway's readiness on `health`: `store` (a read of the store answers).
    pub fn add_health_checks(&self, health: &navarch_telemetry::Health) {
        let store = self.registry.store().clone();
        health.add(navarch_telemetry::Probe::Ready, "store", move || {
            let store = store.clone();
            async move {
                store
                    .get("/healthz", 0)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
    }

    /// Stops accepting requests, lets in-flight ones finish, and waits.
    pub async fn shutdown(mut self) {
        self.registry.cache().close_watches();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // In-flight requests get a moment to finish; idle client connections are not waited
        // for (an HTTP/2 client may keep its connection open past GOAWAY).
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gateway server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "gateway server task failed"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => {
                tracing::info!(
                    timeout_s = DRAIN_TIMEOUT.as_secs(),
                    "closing remaining client connections"
                );
                self.task.abort();
            }
        }
        self.compactor.abort();
        self.registry.cache().stop();
    }
}

/// The span of one gRPC call, continuing the caller's trace (W3C `traceparent` metadata); no
/// span at all while traces are not exported.
fn rpc_span(req: &tonic::codegen::http::Request<()>) -> tracing::Span {
    if !navarch_telemetry::traces::exporting() {
        return tracing::Span::none();
    }
    let path = req.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %format!("{service}/{method}"),
        otel.kind = "server",
        component = "gateway",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    navarch_telemetry::traces::set_parent(
        &span,
        navarch_telemetry::traces::extract_http(req.headers()),
    );
    span
}

/// Starts the gateway: watch cache, system namespaces, gRPC server (gateway, health,
/// reflection) on `config.listen` (port 0 picks one; see [`RunningGateway::addr`]).
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    start_with_network(config, allocator::ServiceNetwork::default()).await
}

/// [`start`], giving Services ClusterIPs and node ports from `network`
/// (`--service-cidr`, `--service-node-port-range`).
pub async fn start_with_network(
    config: GatewayConfig,
    network: allocator::ServiceNetwork,
) -> Result<RunningGateway, GatewayError> {
    let cache = watch_cache::WatchCache::start(config.store.clone(), WATCH_CACHE_CAPACITY).await?;
    let registry = Arc::new(Registry::with_service_network(
        trace_links::TracedStore::wrap(config.store.clone()),
        cache,
        network,
    ));
    if config.tokens.is_some() {
        registry.mount_service_account_tokens();
    }
    registry.ensure_system_namespaces().await?;
    registry.repair_service_allocations().await?;

    let service = service::GatewayService::new(registry.clone(), config.authorizer.clone())
        .with_tokens(config.tokens.clone())
        .with_audit(config.audit.clone())
        .with_node_signer(config.node_signer.clone());
    let chain = config.authenticator.clone();
    let server = GatewayServer::new(service)
        .max_decoding_message_size(16 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let gateway = tonic::service::interceptor::InterceptedService::new(
        server,
        move |mut req: tonic::Request<()>| {
            let metadata = req.metadata();
            let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
            let peer = req.peer_certs();
            let peer = peer
                .as_ref()
                .and_then(|certs| certs.first())
                .map(|c| c.as_ref());
            match chain.authenticate(peer, text(auth::FORWARDED_CERT), text("authorization")) {
                Ok(user) => {
                    req.extensions_mut().insert(user);
                    Ok(req)
                }
                Err(e) => Err(e.into()),
            }
        },
    );

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<GatewayServer<service::GatewayService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(navarch_api::codec::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
        addr: config.listen,
        source,
    })?;
    let mut builder = tonic::transport::Server::builder()
        .trace_fn(rpc_span)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)));
    let router = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(gateway);
    let (tx, rx) = oneshot::channel::<()>();
    let stop = async {
        let _ = rx.await;
    };
    // Our own listener (for port 0), so the builder's nodelay does not apply: set it on each
    // accepted socket, or small gRPC frames wait for delayed ACKs (~40 ms a request).
    let accepted = futures::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |socket| {
            if let Ok(s) = &socket
                && let Err(e) = s.set_nodelay(true)
            {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            socket
        },
    );
    let task = match config.tls {
        Some(tls) => {
            let incoming = tls_handshakes(accepted, tls);
            tokio::spawn(async move { router.serve_with_incoming_shutdown(incoming, stop).await })
        }
        None => {
            tokio::spawn(async move { router.serve_with_incoming_shutdown(accepted, stop).await })
        }
    };
    let compactor = tokio::spawn(compactor(config.store.clone(), COMPACTION_INTERVAL));
    tracing::info!(%addr, "gateway serving gRPC");
    Ok(RunningGateway {
        addr,
        registry,
        shutdown: Some(tx),
        task,
        compactor,
    })
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// TLS on every accepted connection, each handshake in its own task (a slow client holds up
/// no one), with `tls` read at each handshake: a renewed serving certificate applies to
/// the next connection.
fn tls_handshakes(
    accepted: impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
    tls: Arc<rustls::ServerConfig>,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
{
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        let mut accepted = std::pin::pin!(accepted);
        while let Some(socket) = futures::StreamExt::next(&mut accepted).await {
            let socket = match socket {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a gateway connection failed");
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let peer = socket.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Compacts the store periodically to the revision it had one interval ago, so watchers get
/// at least one interval to resume before they see Expired.
async fn compactor(store: Arc<dyn Store>, interval: std::time::Duration) {
    let mut previous = store.current_revision();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let target = previous;
        previous = store.current_revision();
        if target <= store.compacted_revision() {
            continue;
        }
        let started = std::time::Instant::now();
        match store.compact(target).await {
            Ok(()) => tracing::info!(
                revision = target,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "compacted store history"
            ),
            Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
        }
    }
}
