//! Telemetry every Navarch service installs first: `tracing` logs (text or JSON on stderr),
//! OpenTelemetry traces exported by OTLP, OpenTelemetry metrics exported in Prometheus format,
//! the `/metrics` endpoint and the health endpoints, served together by [`serve`].

pub mod health;
mod logs;
mod metrics;
pub mod traces;

pub use health::{Health, Probe, health_router};

pub use logs::{LOG_FORMAT_ENV, LogFormat};
pub use metrics::{
    LATENCY_BUCKETS_SECONDS, METRICS_CONTENT_TYPE, gather_text, meter, metrics_router,
    seconds_histogram,
};

/// Errors while installing telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The Prometheus exporter could not be built or registered.
    #[error("prometheus exporter: {0}")]
    Exporter(#[from] opentelemetry_sdk::error::OTelSdkError),
}

/// Result alias for this crate.
pub type Result<T, E = TelemetryError> = std::result::Result<T, E>;

/// Keeps telemetry flushed: hold it for the life of the process; dropping it flushes the
/// meter provider. Metrics stay installed afterwards, so a second [`init`] is harmless.
#[derive(Debug)]
#[must_use = "dropping the guard flushes telemetry immediately"]
pub struct TelemetryGuard {
    _private: (),
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        metrics::flush();
        traces::shutdown();
    }
}

/// Installs telemetry for `service`:
/// - the global `tracing` subscriber: filter from `RUST_LOG` (default `info`), text on
///   stderr, or JSON when `NAVARCH_LOG_FORMAT=json`;
/// - OTLP span export when the standard `OTEL_EXPORTER_OTLP_*` variables ask for it, and the
///   W3C trace-context propagator (see [`traces`]);
/// - the global OpenTelemetry meter provider with resource `service.name = service`, read by a
///   Prometheus exporter whose registry [`gather_text`] and [`metrics_router`] serve.
///
/// Safe to call more than once (tests do): the first subscriber and the first meter provider
/// stay in place, and later calls only return another guard.
pub fn init(service: &str) -> Result<TelemetryGuard> {
    let format = LogFormat::from_env();
    let otel = traces::install(service);
    let exporting = otel.is_some();
    let installed_logs = logs::install(format, otel);
    metrics::install(service)?;
    if installed_logs {
        tracing::debug!(service, ?format, traces = exporting, "telemetry installed");
    }
    Ok(TelemetryGuard { _private: () })
}

/// The plain-HTTP telemetry listener of a component: `/metrics` and the health endpoints.
#[derive(Debug)]
pub struct TelemetryServer {
    /// Where it listens (the port is real when `:0` was asked for).
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TelemetryServer {
    /// Stops serving.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

/// Serves `/metrics` (Prometheus text) and `/livez`, `/readyz`, `/healthz` from `health` on
/// `listen`, without credentials (Prometheus scrapes and probes it).
pub async fn serve(
    listen: std::net::SocketAddr,
    health: Health,
) -> std::io::Result<TelemetryServer> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let router = metrics_router::<()>().merge(health_router(health));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "telemetry listener stopped");
        }
    });
    tracing::debug!(%addr, "serving /metrics and health");
    Ok(TelemetryServer { addr, task })
}
