//! Metrics recorded through the OpenTelemetry API come out of `gather_text` and `/metrics`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use opentelemetry::KeyValue;
use tower::ServiceExt;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The tests share the process-wide telemetry and each initialises it (twice), so `init`
/// runs several times, possibly concurrently, in this binary.
fn init_twice() {
    let _first = navarch_telemetry::init("telemetry-test").unwrap();
    let _second = navarch_telemetry::init("telemetry-test").unwrap();
}

fn record_sample_metrics() {
    init_twice();
    let meter = navarch_telemetry::meter("navarch-telemetry-test");
    let requests = meter
        .u64_counter("navarch.test.requests")
        .with_unit("{request}")
        .with_description("Requests handled")
        .build();
    requests.add(3, &[KeyValue::new("verb", "get")]);
    let duration = navarch_telemetry::seconds_histogram(
        &meter,
        "navarch.test.request.duration",
        "Request latency",
    );
    duration.record(0.042, &[KeyValue::new("verb", "get")]);
    let sent = meter
        .u64_counter("navarch.test.sent")
        .with_unit("By")
        .build();
    sent.add(512, &[]);
}

/// The value of the first sample of `name` whose labels include all of `labels`
/// (`key="value"` strings, in any order).
fn sample<'t>(text: &'t str, name: &str, labels: &[&str]) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_text, value) = rest.split_once("} ")?;
        let present: Vec<&str> = label_text.split(',').collect();
        labels
            .iter()
            .all(|label| present.contains(label))
            .then_some(value)
    })
}

#[test]
fn gather_text_names_follow_the_exporter_rules() {
    record_sample_metrics();
    let text = navarch_telemetry::gather_text();
    let scope = r#"otel_scope_name="navarch-telemetry-test""#;

    // counters: `.` → `_`, then `_total`; annotation units such as `{request}` add nothing
    assert!(
        text.contains("# TYPE navarch_test_requests_total counter"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "navarch_test_requests_total",
            &[scope, r#"verb="get""#]
        ),
        Some("3"),
        "{text}"
    );
    // histogram in seconds: `_seconds`, with the seconds buckets
    assert!(
        text.contains("# TYPE navarch_test_request_duration_seconds histogram"),
        "{text}"
    );
    let bucket = |le: &str| {
        let le = format!(r#"le="{le}""#);
        sample(
            &text,
            "navarch_test_request_duration_seconds_bucket",
            &[scope, &le],
        )
    };
    assert_eq!(bucket("0.025"), Some("0"), "{text}");
    assert_eq!(bucket("0.05"), Some("1"), "{text}");
    assert_eq!(
        sample(
            &text,
            "navarch_test_request_duration_seconds_count",
            &[scope]
        ),
        Some("1"),
        "{text}"
    );
    // the unit suffix comes before `_total`
    assert_eq!(
        sample(&text, "navarch_test_sent_bytes_total", &[scope]),
        Some("512"),
        "{text}"
    );
    // the resource, with the service name of the first `init`
    assert!(
        sample(&text, "target_info", &[r#"service_name="telemetry-test""#]).is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_router_serves_prometheus_text() {
    init_twice();
    navarch_telemetry::meter("navarch-telemetry-router-test")
        .u64_counter("navarch.test.router.hits")
        .build()
        .add(1, &[]);
    let app: axum::Router = navarch_telemetry::metrics_router();
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = tokio::time::timeout(TIMEOUT, app.oneshot(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4"
    );
    let body = tokio::time::timeout(
        TIMEOUT,
        axum::body::to_bytes(response.into_body(), usize::MAX),
    )
    .await
    .unwrap()
    .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        body.contains("# TYPE navarch_test_router_hits_total counter"),
        "{body}"
    );
}
