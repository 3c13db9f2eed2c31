//! OpenTelemetry traces: OTLP export configured by the standard `OTEL_*` environment
//! variables, and W3C trace context carried across every hop.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set (and `OTEL_TRACES_EXPORTER` is not `none`). The protocol comes from
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or
//! `http/protobuf` (the specification's default). Sampling follows `OTEL_TRACES_SAMPLER` /
//! `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`), the service name
//! `OTEL_SERVICE_NAME` when set, else the component's own name.
//!
//! Propagation is W3C `traceparent`/`tracestate`: [`inject_grpc`] / [`extract_grpc`] for tonic
//! metadata, [`extract_http`] for HTTP headers. Steps linked only through the cluster state
//! (a controller reacting to a watch event) carry the writer's context as a `traceparent`
//! string: [`current_traceparent`] and [`set_parent_traceparent`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;

/// The provider installed by the first [`install`], kept to flush and shut it down.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);
/// Whether [`PROVIDER`] is installed, readable without a lock on hot paths.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// How spans leave the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

/// What the environment asks for: `None` when no OTLP endpoint is configured.
pub fn configured_protocol(env: impl Fn(&str) -> Option<String>) -> Option<OtlpProtocol> {
    signal_protocol("TRACES", env)
}

/// The OTLP protocol the environment configures for one signal (`TRACES` or `METRICS`):
/// `OTEL_<signal>_EXPORTER=none` turns it off; an endpoint (general or per signal) turns it on;
/// the per-signal protocol wins over the general one, `http/protobuf` by default.
pub(crate) fn signal_protocol(
    signal: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Option<OtlpProtocol> {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    if env(&format!("OTEL_{signal}_EXPORTER"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return None;
    }
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
    {
        return None;
    }
    let protocol = env(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    Some(match protocol.trim() {
        "grpc" => OtlpProtocol::Grpc,
        _ => OtlpProtocol::HttpProtobuf,
    })
}

/// `OTEL_SERVICE_NAME` when set, else the component's own name.
pub(crate) fn service_name(service: &str) -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| service.to_string())
}

/// The runtime the exporters' network I/O runs on. The SDK's batch processor exports from a
/// plain thread, and both OTLP transports need a Tokio reactor; this one lives as long as the
/// process (a runtime cannot be dropped from inside another).
pub(crate) fn export_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .expect("building the OTLP export runtime")
    })
}

/// Runs an exporter's futures on [`export_runtime`], whatever thread calls it.
#[derive(Debug)]
struct OnExportRuntime<E>(E);

/// Runs `f` to completion on [`export_runtime`], from whatever thread calls it (the SDK's
/// export threads have no reactor; a runtime thread may not block, so it hops to a scoped one).
pub(crate) fn block_on_export<T: Send>(f: impl Future<Output = T> + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| export_runtime().block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        export_runtime().block_on(f)
    }
}

impl<E: SpanExporter> SpanExporter for OnExportRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let result = block_on_export(self.0.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

fn exporter(protocol: OtlpProtocol) -> Result<impl SpanExporter, String> {
    let _entered = export_runtime().enter();
    let built = match protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build(),
    };
    built.map(OnExportRuntime).map_err(|e| e.to_string())
}

/// Installs the W3C propagator and, when the environment configures OTLP, the tracer
/// provider; returns the `tracing` layer that turns spans into OpenTelemetry spans.
pub(crate) fn install(
    service: &str,
) -> Option<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync + 'static>> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let protocol = configured_protocol(|name| std::env::var(name).ok())?;
    let mut installed = PROVIDER.lock().unwrap_or_else(PoisonError::into_inner);
    if installed.is_some() {
        return None;
    }
    let exporter = match exporter(protocol) {
        Ok(e) => e,
        Err(error) => {
            // The subscriber is not installed yet: stderr is the only place to say it.
            eprintln!("navarch: OTLP trace export disabled: {error}");
            return None;
        }
    };
    let service_name = service_name(service);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name)
                .with_attribute(KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION").to_string(),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("navarch");
    opentelemetry::global::set_tracer_provider(provider.clone());
    *installed = Some(provider);
    EXPORTING.store(true, Ordering::Release);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .boxed(),
    )
}

/// Exports every finished span still buffered, then stops the exporter.
pub(crate) fn shutdown() {
    let provider = PROVIDER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    EXPORTING.store(false, Ordering::Release);
    if let Some(provider) = provider
        && let Err(error) = provider.shutdown()
    {
        tracing::debug!(%error, "shutting down the tracer provider failed");
    }
}

/// Whether spans are being exported (tests and callers that want to skip costly attributes).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Acquire)
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The OpenTelemetry context of the current `tracing` span.
fn current_context() -> Context {
    tracing::Span::current().context()
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_grpc(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = current_context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata));
    });
}

/// The trace context an incoming gRPC request carries (empty when none).
pub fn extract_grpc(metadata: &tonic::metadata::MetadataMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)))
}

/// The trace context an incoming HTTP request carries (empty when none).
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Makes `span` a child of the remote context `cx` if it carries a valid span context.
pub fn set_parent(span: &tracing::Span, cx: Context) {
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The current span's context as a W3C `traceparent` value, when there is a sampled or
/// unsampled but valid one (never when traces are off: spans then have no context).
pub fn current_traceparent() -> Option<String> {
    let cx = current_context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

/// Makes `span` a child of the context in a `traceparent` value (ignored when malformed).
pub fn set_parent_traceparent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier =
        std::collections::HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    set_parent(span, cx);
}

/// Trace contexts remembered by key, for steps that are linked only through the cluster state:
/// the gateway remembers which trace last wrote a key, watchers which trace produced the last
/// change they saw of an object. Bounded: when full it starts over (losing links, never memory).
pub struct LinkTable {
    map: Mutex<std::collections::BTreeMap<String, String>>,
    capacity: usize,
}

impl LinkTable {
    /// An empty table holding at most `capacity` links.
    pub const fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(std::collections::BTreeMap::new()),
            capacity,
        }
    }

    /// Remembers `traceparent` for `key` (replacing an older one).
    pub fn remember(&self, key: String, traceparent: String) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, traceparent);
    }

    /// The last trace context remembered for `key`.
    pub fn recall(&self, key: &str) -> Option<String> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }
}

/// Links from watch events to the trace of the write that caused them, filled by the
/// gateway client as events arrive and read by whoever acts on the object (a reconcile, a
/// scheduling attempt, a pod start) to continue that trace.
pub fn watch_links() -> &'static LinkTable {
    static LINKS: LinkTable = LinkTable::new(65_536);
    &LINKS
}

/// The key of an object in a [`LinkTable`]: `group/resource/namespace/name` (group empty for
/// the core group, namespace empty for cluster-scoped objects).
pub fn link_key(group: &str, resource: &str, namespace: &str, name: &str) -> String {
    format!("{group}/{resource}/{namespace}/{name}")
}

/// A span named `name` (with `component` and `key` fields) that continues the trace of the
/// last change seen of object `link`; a disabled span when traces are not exported, so hot
/// paths pay nothing.
#[macro_export]
macro_rules! linked_span {
    ($name:literal, $link:expr, $($fields:tt)*) => {{
        if $crate::traces::exporting() {
            let span = ::tracing::info_span!($name, $($fields)*);
            if let Some(tp) = $crate::traces::watch_links().recall(&$link) {
                $crate::traces::set_parent_traceparent(&span, &tp);
            }
            span
        } else {
            ::tracing::Span::none()
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_off_without_an_endpoint_and_follows_the_protocol_variables() {
        assert_eq!(configured_protocol(env(&[])), None);
        assert_eq!(
            configured_protocol(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])),
            None
        );
        assert_eq!(
            configured_protocol(env(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4318"
            )])),
            Some(OtlpProtocol::HttpProtobuf)
        );
        assert_eq!(
            configured_protocol(env(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://127.0.0.1:4317"
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ])),
            Some(OtlpProtocol::Grpc)
        );
        assert_eq!(
            configured_protocol(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ])),
            Some(OtlpProtocol::HttpProtobuf)
        );
        assert_eq!(
            configured_protocol(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ])),
            None
        );
    }

    #[test]
    fn a_traceparent_round_trips_through_a_span() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        use tracing_subscriber::layer::SubscriberExt;

        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (seen, mut metadata) = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile");
            set_parent_traceparent(&span, parent);
            let _entered = span.enter();
            let mut metadata = tonic::metadata::MetadataMap::new();
            inject_grpc(&mut metadata);
            (current_traceparent(), metadata)
        });
        let seen = seen.expect("a traceparent inside the span");
        assert!(
            seen.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "same trace: {seen}"
        );
        assert!(!seen.contains("b7ad6b7169203331"), "a new span id: {seen}");
        let sent = metadata.remove("traceparent").expect("injected");
        assert_eq!(sent.to_str().unwrap(), seen);
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].parent_span_id.to_string(),
            "b7ad6b7169203331",
            "the remote parent"
        );
    }

    #[test]
    fn link_tables_remember_the_latest_context_and_stay_bounded() {
        let table = LinkTable::new(2);
        table.remember(link_key("", "pods", "default", "a"), "tp1".into());
        table.remember(link_key("", "pods", "default", "a"), "tp2".into());
        assert_eq!(table.recall("/pods/default/a").as_deref(), Some("tp2"));
        table.remember(
            link_key("apps", "deployments", "default", "b"),
            "tp3".into(),
        );
        table.remember(link_key("", "nodes", "", "n1"), "tp4".into());
        assert_eq!(table.recall("/nodes//n1").as_deref(), Some("tp4"));
        assert!(table.map.lock().unwrap().len() <= 2);
    }

    #[test]
    fn malformed_or_absent_contexts_are_ignored() {
        let span = tracing::info_span!("x");
        set_parent_traceparent(&span, "garbage");
        set_parent_traceparent(&span, "");
        assert_eq!(current_traceparent(), None);
        let headers = http::HeaderMap::new();
        assert!(!extract_http(&headers).span().span_context().is_valid());
    }
}
