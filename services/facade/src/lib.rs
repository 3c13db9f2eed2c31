//! The REST facade: the Kubernetes HTTP API over HTTPS, translating every request into a
//! gateway gRPC call. It holds no state and no credentials of its own: each request's
//! `Authorization` header is forwarded to the gateway, which authenticates and authorizes it.
//!
//! Modules: `discovery` (/version, /api, /apis, APIResourceLists), `openapi` (/openapi/v2,
//! /openapi/v3), `tables` (server-side printing for `as=Table`), and the request handling:
//! [`server`] (TLS, HTTP/1.1 and HTTP/2), [`routes`] (the router, body limit, logging),
//! [`request`] (paths and verbs), [`query`], [`negotiate`] (Accept/Content-Type),
//! [`resources`] (the verbs), [`watch`], [`convert`] (Table/metadata conversions),
//! [`response`] (encoding and `kind: Status` errors), [`apply`] (`POST /apply`), and
//! [`kubeconfig`].
//!
//! Limits: request bodies are at most [`MAX_BODY_BYTES`] (3 MiB, as kube-apiserver's
//! `--max-request-bytes` default); larger ones get a 413 Status. Responses of at least
//! [`response::GZIP_THRESHOLD_BYTES`] are gzipped for clients that send
//! `Accept-Encoding: gzip` (kube-apiserver's threshold; watch streams are never compressed).

pub mod apply;
pub mod convert;
pub mod discovery;
pub mod exec;
pub mod gateway;
pub mod kubeconfig;
pub mod logs;
pub mod negotiate;
pub mod openapi;
pub mod query;
pub mod request;
pub mod resources;
pub mod response;
pub mod routes;
pub mod server;
pub mod spdy;
pub mod tables;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

/// Largest request body accepted (3 MiB, kube-apiserver's default).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How long shutdown waits for in-flight requests before closing connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Default address of the HTTPS API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6443";

/// What a facade needs to run.
pub struct FacadeConfig {
    /// Where to serve HTTPS (port 0 picks one; see [`RunningFacade::addr`]).
    pub listen: SocketAddr,
    /// The serving configuration (certificate, ALPN `h2` and `http/1.1`).
    pub tls: Arc<rustls::ServerConfig>,
    /// The channel to the gateway, shared by every request (see [`gateway::channel`]).
    pub gateway: tonic::transport::Channel,
    /// The process's health checks, served at `/livez`, `/readyz` and `/healthz` without
    /// credentials; the facade adds its `gateway` readiness check.
    pub health: navarch_telemetry::Health,
}

/// Why a facade could not start.
#[derive(Debug, thiserror::Error)]
pub enum FacadeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A facade serving in the background.
pub struct RunningFacade {
    pub addr: SocketAddr,
    stop: signal::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningFacade {
    /// Stops accepting connections, lets in-flight requests finish (at most
    /// [`DRAIN_TIMEOUT`]), and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "facade server task failed");
        }
    }
}

/// Binds `config.listen` and serves the Kubernetes API there.
pub async fn start(config: FacadeConfig) -> Result<RunningFacade, FacadeError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| FacadeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| FacadeError::Bind {
        addr: config.listen,
        source,
    })?;
    // The OpenAPI documents take a fraction of a second to build: not on the first request.
    tokio::task::spawn_blocking(openapi::prebuild);
    let state = Arc::new(routes::AppState::new(config.gateway));
    routes::add_health_checks(&config.health, &state);
    let router = routes::router(state, config.health);
    let (stop, stopped) = signal::channel(false);
    let task = tokio::spawn(server::serve(
        listener,
        config.tls,
        router,
        stopped,
        DRAIN_TIMEOUT,
    ));
    tracing::info!(%addr, "facade serving the Kubernetes API over HTTPS");
    Ok(RunningFacade { addr, stop, task })
}
