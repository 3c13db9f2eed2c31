//! OpenTelemetry metrics, exported through a Prometheus registry and served at `/metrics`, and
//! pushed by OTLP when the environment configures it.
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
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use prometheus::{Registry, TextEncoder};

use crate::Result;
use crate::traces::OtlpProtocol;

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

/// Builds the provider and makes it the global one, once per process: read by the Prometheus
/// exporter always, and pushed by OTLP when the standard `OTEL_*` variables configure an
/// endpoint (`OTEL_METRICS_EXPORTER=none` turns that off; the interval is
/// `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds, 60 s by default).
pub(crate) fn install(service: &str) -> Result<()> {
    let mut installed = PROVIDER.lock().unwrap_or_else(PoisonError::into_inner);
    if installed.is_some() {
        return Ok(());
    }
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(REGISTRY.clone())
        .build()?;
    let mut builder = SdkMeterProvider::builder()
        .with_reader(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(crate::traces::service_name(service))
                .with_attribute(KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION").to_string(),
                ))
                .build(),
        );
    if let Some(protocol) = crate::traces::signal_protocol("METRICS", |n| std::env::var(n).ok()) {
        match otlp_exporter(protocol) {
            Ok(exporter) => {
                builder = builder.with_reader(PeriodicReader::builder(exporter).build());
            }
            // The subscriber may not be installed yet: stderr is the only sure place.
            Err(error) => eprintln!("navarch: OTLP metric export disabled: {error}"),
        }
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    register_process_metrics();
    *installed = Some(provider);
    Ok(())
}

/// The OTLP metric exporter for `protocol`, running its I/O on the export runtime.
fn otlp_exporter(protocol: OtlpProtocol) -> Result<OnExportRuntime, String> {
    let _entered = crate::traces::export_runtime().enter();
    let built = match protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build(),
    };
    built.map(OnExportRuntime).map_err(|e| e.to_string())
}

/// An OTLP metric exporter whose futures run on the export runtime (the periodic reader
/// exports from a plain thread).
struct OnExportRuntime(opentelemetry_otlp::MetricExporter);

impl PushMetricExporter for OnExportRuntime {
    fn export(
        &self,
        metrics: &ResourceMetrics,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(crate::traces::block_on_export(self.0.export(metrics)))
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.0.temporality()
    }
}

/// The process's own CPU time, resident memory and threads, with the OpenTelemetry
/// semantic-convention names (`process.cpu.time`, `process.memory.usage`,
/// `process.thread.count`), read when metrics are collected.
fn register_process_metrics() {
    let meter = meter("navarch-process");
    // The provider keeps the callbacks; the handles need not be kept.
    let _ = meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_description("CPU time used by the process, by state (user, system)")
        .with_callback(|observer| {
            if let Some((user, system)) = stat_cpu_seconds() {
                observer.observe(user, &[KeyValue::new("cpu.mode", "user")]);
                observer.observe(system, &[KeyValue::new("cpu.mode", "system")]);
            }
        })
        .build();
    let _ = meter
        .i64_observable_up_down_counter("process.memory.usage")
        .with_unit("By")
        .with_description("Resident memory of the process")
        .with_callback(|observer| {
            if let Some(pages) = statm_resident_pages() {
                observer.observe(pages * rustix::param::page_size() as i64, &[]);
            }
        })
        .build();
    let _ = meter
        .i64_observable_up_down_counter("process.thread.count")
        .with_unit("{thread}")
        .with_description("Threads of the process")
        .with_callback(|observer| {
            if let Ok(n) = std::fs::read_dir("/proc/self/task").map(Iterator::count) {
                observer.observe(n as i64, &[]);
            }
        })
        .build();
}

/// User and system CPU seconds of the process (`/proc/self/stat`, fields 14 and 15, in clock
/// ticks; the command name before them may hold spaces, so fields count from its `)`).
fn stat_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .skip(11);
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user / ticks, system / ticks))
}

/// The resident set in pages (`/proc/self/statm`, second field).
fn statm_resident_pages() -> Option<i64> {
    std::fs::read_to_string("/proc/self/statm")
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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
