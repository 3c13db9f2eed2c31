//! StatefulSets (ordered creation, stable identities, partitioned rolling update) and
//! Endpoints / EndpointSlices following pod readiness.

use navarch_api::apps::v1::{Deployment, DeploymentSpec};
use navarch_api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use navarch_api::core::v1::{Endpoints, Pod, Service, ServicePort, ServiceSpec};
use navarch_api::discovery::v1::EndpointSlice;
use navarch_api::meta::v1::IntOrString;
use navarch_api::meta::v1::int_or_string::Value;
use navarch_gateway::Client;
use navarch_runtime::KubeObject;

use crate::common::*;

async fn names(c: &Client) -> Vec<String> {
    let mut v: Vec<String> = pods(c, "default")
        .await
        .iter()
        .map(|p| p.meta().name.clone().unwrap())
        .collect();
    v.sort();
    v
}

async fn pod(c: &Client, name: &str) -> Pod {
    t(c.get("default", name)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_creates_pods_in_order_and_updates_above_the_partition() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let sts = StatefulSet {
        metadata: meta("default", "db"),
        spec: Some(StatefulSetSpec {
            replicas: Some(3),
            service_name: Some("db".into()),
            selector: selector("db"),
            template: template("db", "db:1"),
            ..Default::default()
        }),
        ..Default::default()
    };
    t(c.create("default", &sts)).await.unwrap();
    // OrderedReady: db-1 waits for db-0 to be Running and Ready.
    eventually("db-0", || async { names(&c).await == ["db-0"] }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(names(&c).await, ["db-0"], "db-1 waits for db-0");
    let db0 = pod(&c, "db-0").await;
    assert_eq!(db0.spec.as_ref().unwrap().hostname.as_deref(), Some("db-0"));
    assert_eq!(db0.spec.as_ref().unwrap().subdomain.as_deref(), Some("db"));
    assert_eq!(
        db0.meta().labels["statefulset.kubernetes.io/pod-name"],
        "db-0"
    );
    assert_eq!(db0.meta().labels["apps.kubernetes.io/pod-index"], "0");
    assert!(mark_ready(&c, &db0, "10.2.0.1").await);
    eventually("db-1 after db-0 is ready", || async {
        names(&c).await == ["db-0", "db-1"]
    })
    .await;

    let _kubelet = FakeKubelet::start(&c, "default");
    eventually("three ready replicas", || async {
        let s: StatefulSet = c.get("default", "db").await.unwrap();
        let st = s.status.unwrap_or_default();
        st.ready_replicas == Some(3) && st.current_revision == st.update_revision
    })
    .await;
    assert_eq!(names(&c).await, ["db-0", "db-1", "db-2"]);

    // A partitioned rolling update replaces only ordinals >= 1, highest first.
    let mut s: StatefulSet = t(c.get("default", "db")).await.unwrap();
    let spec = s.spec.as_mut().unwrap();
    spec.update_strategy = Some(StatefulSetUpdateStrategy {
        r#type: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy {
            partition: Some(1),
            ..Default::default()
        }),
    });
    spec.template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("db:2".into());
    modify(&c, "default", "db", |o: &mut StatefulSet| {
        o.spec = s.spec.clone()
    })
    .await;
    eventually("ordinals 1 and 2 updated", || async {
        let ps = pods(&c, "default").await;
        let img = |n: &str| {
            ps.iter()
                .find(|p| p.meta().name.as_deref() == Some(n))
                .map(image)
        };
        let s: StatefulSet = c.get("default", "db").await.unwrap();
        let st = s.status.unwrap_or_default();
        img("db-1").as_deref() == Some("db:2")
            && img("db-2").as_deref() == Some("db:2")
            && st.updated_replicas == Some(2)
            && st.ready_replicas == Some(3)
    })
    .await;
    assert_eq!(
        image(&pod(&c, "db-0").await),
        "db:1",
        "below the partition stays"
    );
    let s: StatefulSet = t(c.get("default", "db")).await.unwrap();
    let st = s.status.unwrap();
    assert_ne!(st.current_revision, st.update_revision);
    let revisions =
        t(c.list::<navarch_api::apps::v1::ControllerRevision>("default", &Default::default()))
            .await
            .unwrap()
            .items;
    assert_eq!(revisions.len(), 2);

    // Scale down removes the highest ordinals.
    let mut s: StatefulSet = t(c.get("default", "db")).await.unwrap();
    s.spec.as_mut().unwrap().replicas = Some(1);
    modify(&c, "default", "db", |o: &mut StatefulSet| {
        o.spec = s.spec.clone()
    })
    .await;
    eventually("only db-0 left", || async { names(&c).await == ["db-0"] }).await;
    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pod_readiness() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let _kubelet = FakeKubelet::start(&c, "default");
    let svc = Service {
        metadata: meta("default", "web"),
        spec: Some(ServiceSpec {
            selector: labels("web"),
            ports: vec![ServicePort {
                name: Some("http".into()),
                port: Some(80),
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString {
                    value: Some(Value::StrVal("http".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    t(c.create("default", &svc)).await.unwrap();
    let d = Deployment {
        metadata: meta("default", "web"),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: selector("web"),
            template: template("web", "nginx:1"),
            ..Default::default()
        }),
        ..Default::default()
    };
    t(c.create("default", &d)).await.unwrap();
    let endpoints = || async {
        let ep: Endpoints = match c.get("default", "web").await {
            Ok(ep) => ep,
            Err(_) => return (0, 0, 0),
        };
        let s = ep.subsets.first().cloned().unwrap_or_default();
        (
            s.addresses.len(),
            s.not_ready_addresses.len(),
            s.ports.first().and_then(|p| p.port).unwrap_or(0),
        )
    };
    let slices = || async {
        let items = c
            .list::<EndpointSlice>("default", &Default::default())
            .await
            .unwrap()
            .items;
        let ready = items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        let total: usize = items.iter().map(|s| s.endpoints.len()).sum();
        (items, ready, total)
    };
    eventually("two ready addresses on the named port", || async {
        endpoints().await == (2, 0, 8080)
    })
    .await;
    eventually("a slice with two ready endpoints", || async {
        let (items, ready, total) = slices().await;
        items.len() == 1 && ready == 2 && total == 2
    })
    .await;
    let (items, _, _) = slices().await;
    let slice = &items[0];
    assert_eq!(slice.meta().labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        slice.meta().labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice.address_type.as_deref(), Some("IPv4"));
    assert_eq!(slice.ports[0].port, Some(8080));
    assert_eq!(
        slice.meta().owner_references[0].kind.as_deref(),
        Some("Service")
    );

    // One pod stops being ready: it moves to notReadyAddresses.
    let p = pods(&c, "default").await.remove(0);
    let mut p2 = p.clone();
    for cond in &mut p2.status.as_mut().unwrap().conditions {
        if cond.r#type.as_deref() == Some("Ready") {
            cond.status = Some("False".into());
        }
    }
    t(c.update_status("default", p.meta().name.as_deref().unwrap(), &p2))
        .await
        .unwrap();
    eventually("one ready, one not ready", || async {
        endpoints().await == (1, 1, 8080)
    })
    .await;
    eventually("the slice marks it not ready", || async {
        let (_, ready, total) = slices().await;
        ready == 1 && total == 2
    })
    .await;

    // No pods: no addresses, one empty placeholder slice.
    t(c.delete::<Deployment>("default", "web")).await.unwrap();
    eventually("empty endpoints", || async {
        endpoints().await.0 + endpoints().await.1 == 0
    })
    .await;
    eventually("a placeholder slice", || async {
        let (items, _, total) = slices().await;
        items.len() == 1 && total == 0
    })
    .await;
    // Deleting the Service removes both.
    t(c.delete::<Service>("default", "web")).await.unwrap();
    eventually("endpoints and slices gone", || async {
        c.get::<Endpoints>("default", "web").await.is_err() && slices().await.0.is_empty()
    })
    .await;
    manager.shutdown().await;
    cluster.stop().await;
}
