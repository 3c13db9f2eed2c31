//! The agent's metrics: pod startup latency, container restarts, runtime operation latency
//! and errors, image pull time.

use std::sync::LazyLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

/// Buckets for pod startup and image pulls, in seconds: these take longer than API calls.
const STARTUP_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

pub(crate) struct AgentMetrics {
    pub pod_startup: Histogram<f64>,
    pub container_restarts: Counter<u64>,
    pub runtime_duration: Histogram<f64>,
    pub runtime_errors: Counter<u64>,
    pub image_pull: Histogram<f64>,
}

/// Built on first use, after `navarch_telemetry::init` installed the meter provider.
pub(crate) static METRICS: LazyLock<AgentMetrics> = LazyLock::new(|| {
    let meter = navarch_telemetry::meter("navarch-agent");
    let metrics = AgentMetrics {
        pod_startup: meter
            .f64_histogram("navarch.agent.pod.startup.duration")
            .with_unit("s")
            .with_description(
                "From a pod's creation to all its containers started, once per pod (image pulls included)",
            )
            .with_boundaries(STARTUP_BUCKETS.to_vec())
            .build(),
        container_restarts: meter
            .u64_counter("navarch.agent.container.restarts")
            .with_unit("{restart}")
            .with_description("Containers restarted after they exited or failed a probe")
            .build(),
        runtime_duration: navarch_telemetry::seconds_histogram(
            &meter,
            "navarch.agent.runtime.operation.duration",
            "Container runtime operations by operation",
        ),
        runtime_errors: meter
            .u64_counter("navarch.agent.runtime.operation.errors")
            .with_unit("{error}")
            .with_description("Failed container runtime operations by operation")
            .build(),
        image_pull: meter
            .f64_histogram("navarch.agent.image.pull.duration")
            .with_unit("s")
            .with_description("Image pulls (resolving, downloading and unpacking) by result")
            .with_boundaries(STARTUP_BUCKETS.to_vec())
            .build(),
    };
    // Series exist from the start, so dashboards and alerts see zeros rather than nothing.
    metrics.container_restarts.add(0, &[]);
    metrics
});

/// Records one runtime operation.
pub(crate) fn runtime_operation(operation: &'static str, seconds: f64, ok: bool) {
    let attrs = [KeyValue::new("operation", operation)];
    METRICS.runtime_duration.record(seconds, &attrs);
    // Zero on success keeps one error series per operation, so ratios see 0, not nothing.
    METRICS.runtime_errors.add(u64::from(!ok), &attrs);
}
