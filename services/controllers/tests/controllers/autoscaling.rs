//! The HorizontalPodAutoscaler loop against a real gateway: a fake node reports pod usage
//! through `ReportResourceUsage` (what agents do), the gateway serves it as metrics.k8s.io,
//! and the loop scales a Deployment up under load and back down after the stabilization
//! window; the same HPA reads through autoscaling/v1.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use navarch_api::apps::v1::{Deployment, DeploymentSpec};
use navarch_api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use navarch_api::core::v1::{Event as CoreEvent, Pod, ResourceRequirements};
use navarch_api::gateway::v1::ResourceUsageReport;
use navarch_api::meta::v1::{ObjectMeta, Quantity};
use navarch_api::metrics::v1beta1::{ContainerMetrics, NodeMetrics, PodMetrics};
use navarch_gateway::Client;
use navarch_gateway::client::ListParams;
use navarch_runtime::KubeObject;

use crate::common::*;

fn quantity(v: &str) -> Quantity {
    Quantity { value: v.into() }
}

fn usage(cpu_millis: i64) -> std::collections::BTreeMap<String, Quantity> {
    [
        (
            "cpu".to_string(),
            quantity(&format!("{}n", cpu_millis * 1_000_000)),
        ),
        ("memory".to_string(), quantity("10240Ki")),
    ]
    .into()
}

/// A fake node: every 100 ms reports each running pod of `app` using `total / pods`
/// millicores, so the load is shared by however many replicas there are.
fn report_usage(client: Client, total: Arc<AtomicI64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let pods: Vec<Pod> = client
                .list::<Pod>("default", &ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| is_ready(p) && p.meta().deletion_timestamp.is_none())
                .collect();
            let each = total.load(Ordering::SeqCst) / (pods.len().max(1) as i64);
            let now = now();
            let report = ResourceUsageReport {
                node: Some(NodeMetrics {
                    metadata: meta("", "node-1"),
                    timestamp: Some(now.clone()),
                    window: Some("1s".into()),
                    usage: usage(each * pods.len() as i64),
                    ..Default::default()
                }),
                pods: pods
                    .iter()
                    .map(|p| PodMetrics {
                        metadata: Some(ObjectMeta {
                            namespace: Some("default".into()),
                            name: p.meta().name.clone(),
                            labels: p.meta().labels.clone(),
                            ..Default::default()
                        }),
                        timestamp: Some(now.clone()),
                        window: Some("1s".into()),
                        containers: vec![ContainerMetrics {
                            name: Some("main".into()),
                            usage: usage(each),
                        }],
                        ..Default::default()
                    })
                    .collect(),
            };
            let _ = client.report_resource_usage(report).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn deployment() -> Deployment {
    let mut template = template("web", "nginx").unwrap();
    template.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
        requests: [("cpu".to_string(), quantity("100m"))].into(),
        ..Default::default()
    });
    Deployment {
        metadata: meta("default", "web"),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: selector("web"),
            template: Some(template),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hpa() -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: meta("default", "web"),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: Some(CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                name: Some("web".into()),
            }),
            min_replicas: Some(1),
            max_replicas: Some(6),
            metrics: vec![MetricSpec {
                r#type: Some("Resource".into()),
                resource: Some(ResourceMetricSource {
                    name: Some("cpu".into()),
                    target: Some(MetricTarget {
                        r#type: Some("Utilization".into()),
                        average_utilization: Some(50),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn replicas(c: &Client) -> i32 {
    t(c.get::<Deployment>("default", "web"))
        .await
        .unwrap()
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0)
}

fn condition(h: &HorizontalPodAutoscaler, kind: &str) -> Option<(String, String)> {
    h.status.as_ref()?.conditions.iter().find_map(|c| {
        (c.r#type.as_deref() == Some(kind)).then(|| {
            (
                c.status.clone().unwrap_or_default(),
                c.reason.clone().unwrap_or_default(),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_up_under_load_and_down_after_the_stabilization_window() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let _kubelet = FakeKubelet::start(&c, "default");
    let manager = cluster.manager_with(|m| {
        m.settings.hpa_sync_period = Duration::from_millis(300);
        m.settings.hpa_downscale_stabilization = Duration::from_secs(3);
        m.settings.hpa_cpu_initialization_period = Duration::ZERO;
    });
    let total = Arc::new(AtomicI64::new(200));
    let reporter = report_usage(cluster.new_client().await, total.clone());
    t(c.create("default", &deployment())).await.unwrap();
    t(c.create("default", &hpa())).await.unwrap();

    // 200m over pods requesting 100m at a 50 % target: 4 replicas, then steady (50 % each).
    eventually("scaled up to 4", || async { replicas(&c).await == 4 }).await;
    eventually("HPA status at 4 replicas, 50 %", || async {
        let h: HorizontalPodAutoscaler = c.get("default", "web").await.unwrap();
        let s = h.status.clone().unwrap_or_default();
        s.current_replicas == Some(4)
            && s.desired_replicas == Some(4)
            && s.current_metrics
                .first()
                .and_then(|m| m.resource.as_ref()?.current.as_ref()?.average_utilization)
                == Some(50)
    })
    .await;
    let h: HorizontalPodAutoscaler = c.get("default", "web").await.unwrap();
    assert_eq!(
        condition(&h, "ScalingActive"),
        Some(("True".into(), "ValidMetricFound".into()))
    );
    assert_eq!(condition(&h, "AbleToScale").unwrap().0, "True");
    assert!(h.status.as_ref().unwrap().last_scale_time.is_some());
    // A few more syncs at the same load change nothing.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(replicas(&c).await, 4);

    // The load drops to 20m (5 % of requests): one replica, but only after the window.
    let dropped = Instant::now();
    total.store(20, Ordering::SeqCst);
    eventually("scaled down to 1", || async { replicas(&c).await == 1 }).await;
    let waited = dropped.elapsed();
    // The window runs from the last high recommendation, made up to one sync (300 ms) and
    // one report (100 ms) before the drop was seen.
    assert!(
        waited >= Duration::from_millis(2600),
        "scaled down after {waited:?}, inside the 3 s stabilization window"
    );
    // Events are recorded after the scale write lands, so the last one may trail it.
    let rescales = || async {
        t(c.list::<CoreEvent>("default", &ListParams::default()))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulRescale"))
            .filter_map(|e| e.message)
            .collect::<Vec<String>>()
    };
    eventually("both SuccessfulRescale events", || async {
        let rescales = rescales().await;
        rescales
            .iter()
            .any(|m| m == "New size: 1; reason: All metrics below target")
    })
    .await;
    let rescales = rescales().await;
    assert!(
        rescales.iter().any(|m| m.starts_with(
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        )),
        "{rescales:?}"
    );

    // The same object through autoscaling/v1.
    let v1: navarch_api::autoscaling::v1::HorizontalPodAutoscaler =
        t(c.get("default", "web")).await.unwrap();
    assert_eq!(
        v1.spec.as_ref().unwrap().target_cpu_utilization_percentage,
        Some(50)
    );
    assert_eq!(v1.spec.as_ref().unwrap().max_replicas, Some(6));
    assert!(
        v1.metadata.as_ref().unwrap().annotations["autoscaling.alpha.kubernetes.io/conditions"]
            .contains("ScalingActive")
    );

    reporter.abort();
    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_api_serves_reports_read_only() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let _kubelet = FakeKubelet::start(&c, "default");
    let manager =
        cluster.manager_with(|m| m.controllers = vec!["replicaset".into(), "deployment".into()]);
    let reporter = report_usage(cluster.new_client().await, Arc::new(AtomicI64::new(300)));
    let mut d = deployment();
    d.spec.as_mut().unwrap().replicas = Some(3);
    t(c.create("default", &d)).await.unwrap();
    eventually("three pods with metrics", || async {
        c.list::<PodMetrics>(
            "default",
            &ListParams {
                label_selector: "app=web".into(),
                ..Default::default()
            },
        )
        .await
        .map(|l| l.items.len() == 3)
        .unwrap_or(false)
    })
    .await;
    let none = t(c.list::<PodMetrics>(
        "default",
        &ListParams {
            label_selector: "app=other".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    assert!(none.items.is_empty());
    let node: NodeMetrics = t(c.get("", "node-1")).await.unwrap();
    assert_eq!(node.kind.as_deref(), Some("NodeMetrics"));
    assert_eq!(node.usage["cpu"].value, "300000000n");
    let err = t(c.create("", &node)).await.unwrap_err();
    assert_eq!(err.code(), 405);
    let missing = t(c.get::<NodeMetrics>("", "node-2")).await.unwrap_err();
    assert_eq!(missing.code(), 404);
    reporter.abort();
    manager.shutdown().await;
    cluster.stop().await;
}
