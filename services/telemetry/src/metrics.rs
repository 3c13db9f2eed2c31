//! OpenTelemetry metrics, exported through a Prometheus registry and served at `/metrics`.
//!
//! The exporter derives Prometheus names from instrument names: invalid characters (such as
//! `.`) become `_`, the unit adds a suffix (`s` → `_seconds`, `By` → `_bytes`, `1` → `_ratio`;
//! annotations like `{request}` add nothing), and monotonic counters end in `_total`. Neither
//! suffix is deduplicated, so name instruments without them: `navarch.request.duration` with
//! unit `s` is exported as `navarch_request_duration_seconds`.

use std::sync::{LazyLock, Mutex, PoisonError};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Registry, TextEncoder};

use crate::Result;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Histogram buckets for durations in seconds (the Prometheus client defaults). The
/// OpenTelemetry defaults (0, 5, 10, 25, … 10000) suit milliseconds, not seconds.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The registry the exporter writes into; exists before [`crate::init`] so serving it never
/// fails, it is just empty.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// The meter provider installed by the first [`crate::init`]; the lock also serialises
/// concurrent first calls, which would otherwise register two exporters on [`REGISTRY`].
static PROVIDER: Mutex<Option<SdkMeterProvider>> = Mutex::new(None);

/// Builds the provider and makes it the global one, once per process.
pub(crate) fn install(service: &str) -> Result<()> {
    let mut installed = PROVIDER.lock().unwrap_or_else(PoisonError::into_inner);
    if installed.is_some() {
        return Ok(());
    }
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(REGISTRY.clone())
        .build()?;
    let provider = SdkMeterProvider::builder()
        .with_reader(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    *installed = Some(provider);
    Ok(())
}

pub(crate) fn flush() {
    let provider = PROVIDER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(provider) = provider
        && let Err(err) = provider.force_flush()
    {
        tracing::debug!(error = %err, "flushing meter provider failed");
    }
}

/// A meter from the global provider, named after the component that records through it.
pub fn meter(name: &'static str) -> Meter {
    opentelemetry::global::meter(name)
}

/// An `f64` histogram in seconds with [`LATENCY_BUCKETS_SECONDS`]. `name` carries no unit:
/// the exporter appends `_seconds`.
pub fn seconds_histogram(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(LATENCY_BUCKETS_SECONDS.to_vec())
        .build()
}

/// Every metric in the Prometheus text exposition format.
pub fn gather_text() -> String {
    match TextEncoder::new().encode_to_string(&REGISTRY.gather()) {
        Ok(text) => text,
        Err(err) => {
            tracing::warn!(error = %err, "encoding metrics failed");
            String::new()
        }
    }
}

/// A router serving `GET /metrics` in the Prometheus text format; merge it into a service's
/// router or serve it alone.
pub fn metrics_router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route(
        "/metrics",
        get(|| async { ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], gather_text()) }),
    )
}
