//! One trace across the whole system (issue 10): `navarch up` exports OTLP over gRPC to a
//! collector in this test (a tonic server implementing the OTLP trace service), and the
//! spans of one `kubectl apply` of a Deployment form one connected trace: the facade's HTTP
//! request → the gateway's RPC → the store transaction → the Deployment reconcile → the
//! ReplicaSet's creation and reconcile → the pod's creation → the scheduler's bind → the
//! agent starting the pod. The same collector receives the OTLP metrics push.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use navarch_e2e::Navarch;
use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// One received span, flattened.
#[derive(Clone, Debug)]
struct Span {
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    service: String,
    attrs: HashMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map(String::as_str).unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

/// The OTLP metrics receiver: the names of every metric pushed, by service.
#[derive(Clone, Default)]
struct MetricNames(Arc<Mutex<Vec<(String, String)>>>);

#[tonic::async_trait]
impl MetricsService for MetricNames {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.0.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            let service = rm
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| text(a.value.as_ref()))
                .unwrap_or_default();
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    names.push((service.clone(), m.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| text(a.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(Span {
                        trace: s.trace_id,
                        id: s.span_id,
                        parent: s.parent_span_id,
                        name: s.name,
                        service: service.clone(),
                        attrs: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(a.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: traced
spec:
  replicas: 1
  selector:
    matchLabels: {app: traced}
  template:
    metadata:
      labels: {app: traced}
    spec:
      containers:
      - name: app
        image: busybox:1.36
"#;

/// The spans of `trace`, and whether every one of `wanted` is there with its whole chain of
/// parents up to the root.
fn connected<'a>(spans: &'a [Span], trace: &[u8], wanted: &[&'a Span]) -> Result<(), String> {
    let by_id: HashMap<&[u8], &Span> = spans
        .iter()
        .filter(|s| s.trace == trace)
        .map(|s| (s.id.as_slice(), s))
        .collect();
    for w in wanted {
        let mut at = *w;
        let mut hops = 0;
        while !at.parent.is_empty() {
            at = by_id.get(at.parent.as_slice()).copied().ok_or_else(|| {
                format!(
                    "{} ({}): parent of {} missing",
                    w.name,
                    w.attr("component"),
                    at.name
                )
            })?;
            hops += 1;
            if hops > 64 {
                return Err("parent cycle".into());
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kubectl_apply_is_one_trace_from_the_facade_to_the_agent() {
    let collector = Collector::default();
    let metrics = MetricNames::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(metrics.clone()))
            .serve_with_incoming(tokio_stream_from(listener)),
    );

    let endpoint = format!("http://127.0.0.1:{port}");
    let navarch = Navarch::up_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ])
    .unwrap();
    let kubectl = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let file = kubectl.file("deploy.yaml", DEPLOYMENT);
    let applied = tokio::task::spawn_blocking(move || {
        kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
        kubectl
    })
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let spans = collector.0.lock().unwrap().clone();
        let root = spans.iter().find(|s| {
            s.attr("component") == "facade"
                && s.attr("http.request.method") == "POST"
                && s.attr("url.path").ends_with("/deployments")
        });
        let outcome = match root {
            None => Err("no facade span for the POST yet".to_string()),
            Some(root) => {
                let t = root.trace.as_slice();
                let find = |what: &str, pred: &dyn Fn(&Span) -> bool| {
                    spans
                        .iter()
                        .find(|s| s.trace == t && pred(s))
                        .ok_or_else(|| format!("no {what} span in the trace yet"))
                };
                (|| {
                    let wanted = [
                        find("gateway Create", &|s| {
                            s.attr("component") == "gateway" && s.attr("rpc.method") == "Create"
                        })?,
                        find("store", &|s| s.attr("component") == "store")?,
                        find("deployment reconcile", &|s| {
                            s.attr("component") == "controller"
                                && s.attr("controller") == "deployment"
                        })?,
                        find("replicaset reconcile", &|s| {
                            s.attr("component") == "controller"
                                && s.attr("controller") == "replicaset"
                        })?,
                        find("scheduler bind", &|s| s.attr("component") == "scheduler")?,
                        find("gateway binding", &|s| {
                            s.attr("component") == "gateway"
                                && spans
                                    .iter()
                                    .any(|p| p.id == s.parent && p.attr("component") == "scheduler")
                        })?,
                        find("agent pod start", &|s| s.attr("component") == "agent")?,
                    ];
                    connected(&spans, t, &wanted)?;
                    Ok::<_, String>(
                        wanted
                            .iter()
                            .map(|s| format!("{} [{}]", s.name, s.service))
                            .collect::<Vec<_>>(),
                    )
                })()
            }
        };
        match outcome {
            Ok(chain) => break chain,
            Err(why) if Instant::now() > deadline => {
                let names: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{} {:?}", s.name, s.attrs.get("component")))
                    .collect();
                panic!(
                    "no connected trace within 30 s: {why}\n{} spans: {names:?}\n{}",
                    spans.len(),
                    navarch.log()
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    println!("one trace: {}", report.join(" → "));
    let spans = collector.0.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .all(|s| !s.attrs.values().any(|v| v.contains(&navarch.token))),
        "no credential in any attribute"
    );
    // Metrics are pushed by OTLP too, under the component's service name, with the names
    // of the OpenTelemetry instruments (the Prometheus names are derived from them).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pushed = metrics.0.lock().unwrap().clone();
        let has = |name: &str| {
            pushed
                .iter()
                .any(|(svc, n)| svc == "navarch-up" && n == name)
        };
        if [
            "navarch.api.requests",
            "navarch.store.commit.duration",
            "navarch.controller.reconcile",
            "navarch.scheduler.schedule_attempts",
            "navarch.agent.pod.startup.duration",
            "process.cpu.time",
            "process.memory.usage",
        ]
        .iter()
        .all(|n| has(n))
        {
            println!("OTLP metrics pushed: {} data sets", pushed.len());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "OTLP metrics missing; got {:?}",
            pushed
                .iter()
                .map(|(_, n)| n)
                .collect::<std::collections::BTreeSet<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(applied);
    server.abort();
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let accepted = l.accept().await.map(|(s, _)| s);
        Some((accepted, l))
    })
}
