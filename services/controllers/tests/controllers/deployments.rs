//! Deployments and ReplicaSets: creation, scaling, self-healing, rolling updates within
//! maxSurge/maxUnavailable, rollback, and cascading deletion.

use std::sync::{Arc, Mutex};

use navarch_api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use navarch_api::core::v1::Pod;
use navarch_api::meta::v1::IntOrString;
use navarch_api::meta::v1::int_or_string::Value;
use navarch_gateway::Client;
use navarch_gateway::client::DeleteParams;
use navarch_runtime::{Event, Informer, KubeObject, Scope};

use crate::common::*;

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    Deployment {
        metadata: meta("default", name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: selector(name),
            template: template(name, image),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn get_deploy(c: &Client, name: &str) -> Deployment {
    t(c.get("default", name)).await.unwrap()
}

async fn replicasets(c: &Client) -> Vec<ReplicaSet> {
    t(c.list::<ReplicaSet>("default", &Default::default()))
        .await
        .unwrap()
        .items
}

fn active(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.meta().deletion_timestamp.is_none())
        .collect()
}

/// Complete the way `kubectl rollout status` sees it.
fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().unwrap().replicas.unwrap();
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation >= d.meta().generation
        && s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.conditions.iter().any(|c| {
            c.r#type.as_deref() == Some("Progressing")
                && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        })
}

async fn wait_rolled_out(c: &Client, name: &str) {
    eventually(&format!("{name} rolled out"), || async {
        rolled_out(&get_deploy(c, name).await)
    })
    .await;
}

async fn scale(c: &Client, name: &str, replicas: i32) {
    let mut d = get_deploy(c, name).await;
    d.spec.as_mut().unwrap().replicas = Some(replicas);
    modify(c, "default", name, |o: &mut Deployment| {
        o.spec = d.spec.clone()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_a_replicaset_and_scales() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let _kubelet = FakeKubelet::start(&c, "default");
    t(c.create("default", &deployment("web", 3, "nginx:1")))
        .await
        .unwrap();
    wait_rolled_out(&c, "web").await;

    let d = get_deploy(&c, "web").await;
    assert_eq!(
        d.meta()
            .annotations
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let status = d.status.clone().unwrap();
    let available = status
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some("Available"))
        .unwrap();
    assert_eq!(available.status.as_deref(), Some("True"));
    assert_eq!(
        available.reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );

    let rss = replicasets(&c).await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.meta().labels["pod-template-hash"].clone();
    assert_eq!(
        rs.meta().name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs.meta().annotations["deployment.kubernetes.io/revision"],
        "1"
    );
    let owner = &rs.meta().owner_references[0];
    assert_eq!(owner.kind.as_deref(), Some("Deployment"));
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );

    let ps = pods(&c, "default").await;
    assert_eq!(ps.len(), 3);
    for p in &ps {
        assert_eq!(p.meta().labels["pod-template-hash"], hash);
        let r = &p.meta().owner_references[0];
        assert_eq!(r.kind.as_deref(), Some("ReplicaSet"));
        assert_eq!(r.uid, rs.meta().uid);
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert!(
            p.meta()
                .name
                .as_deref()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
    }

    scale(&c, "web", 5).await;
    wait_rolled_out(&c, "web").await;
    assert_eq!(active(&pods(&c, "default").await).len(), 5);
    scale(&c, "web", 1).await;
    wait_rolled_out(&c, "web").await;
    eventually("one pod left", || async {
        pods(&c, "default").await.len() == 1
    })
    .await;
    assert_eq!(
        replicasets(&c).await.len(),
        1,
        "scaling makes no new ReplicaSet"
    );
    let rs: ReplicaSet = t(c.get("default", rs.meta().name.as_deref().unwrap()))
        .await
        .unwrap();
    let st = rs.status.unwrap();
    assert_eq!(
        (st.replicas, st.ready_replicas, st.available_replicas),
        (Some(1), Some(1), Some(1))
    );

    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pods_are_replaced_and_orphans_adopted() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let _kubelet = FakeKubelet::start(&c, "default");
    t(c.create("default", &deployment("web", 3, "nginx:1")))
        .await
        .unwrap();
    wait_rolled_out(&c, "web").await;
    let before = pods(&c, "default").await;
    let victim = before[0].meta().name.clone().unwrap();
    t(c.delete::<Pod>("default", &victim)).await.unwrap();
    eventually("a replacement pod", || async {
        let ps = pods(&c, "default").await;
        ps.len() == 3
            && ps
                .iter()
                .all(|p| p.meta().name.as_deref() != Some(victim.as_str()))
    })
    .await;
    wait_rolled_out(&c, "web").await;

    // A bare pod matching the ReplicaSet's selector is adopted, and a surplus pod deleted.
    let rs = replicasets(&c).await.remove(0);
    let mut orphan = Pod {
        metadata: meta("default", "stray"),
        spec: template("web", "nginx:1").unwrap().spec,
        ..Default::default()
    };
    orphan.meta_mut().labels = rs
        .spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone();
    t(c.create("default", &orphan)).await.unwrap();
    eventually("back to three pods, all owned", || async {
        let ps = pods(&c, "default").await;
        ps.len() == 3 && ps.iter().all(|p| !p.meta().owner_references.is_empty())
    })
    .await;
    manager.shutdown().await;
    cluster.stop().await;
}

fn ios(v: i32) -> Option<IntOrString> {
    Some(IntOrString {
        value: Some(Value::IntVal(v)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_surge_and_unavailability_and_rolls_back() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let _kubelet = FakeKubelet::start(&c, "default");
    let mut d = deployment("web", 4, "nginx:1");
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        r#type: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: ios(1),
            max_unavailable: ios(1),
        }),
    });
    t(c.create("default", &d)).await.unwrap();
    wait_rolled_out(&c, "web").await;

    // Watch every pod change from here on and check the bounds at each step.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let steps = Arc::new(Mutex::new(0usize));
    let observer = Informer::<Pod>::new(cluster.new_client().await, Scope::namespace("default"));
    t(observer.wait_synced()).await;
    let cache = observer.cache().clone();
    let (v, s) = (violations.clone(), steps.clone());
    observer.add_handler(move |_: &Event<Pod>| {
        let all = cache.list();
        let live: Vec<_> = all
            .iter()
            .filter(|p| p.meta().deletion_timestamp.is_none())
            .collect();
        let ready = live.iter().filter(|p| is_ready(p)).count();
        *s.lock().unwrap() += 1;
        if live.len() > 5 {
            v.lock()
                .unwrap()
                .push(format!("{} pods (> 4 + maxSurge 1)", live.len()));
        }
        if ready < 3 {
            v.lock()
                .unwrap()
                .push(format!("{ready} ready pods (< 4 - maxUnavailable 1)"));
        }
    });

    let mut d = get_deploy(&c, "web").await;
    d.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    modify(&c, "default", "web", |o: &mut Deployment| {
        o.spec = d.spec.clone()
    })
    .await;
    eventually("the new image everywhere", || async {
        let d = get_deploy(&c, "web").await;
        rolled_out(&d)
            && pods(&c, "default")
                .await
                .iter()
                .all(|p| image(p) == "nginx:2")
    })
    .await;
    assert!(
        *steps.lock().unwrap() > 4,
        "the rollout was observed step by step"
    );
    assert_eq!(violations.lock().unwrap().clone(), Vec::<String>::new());

    let d = get_deploy(&c, "web").await;
    assert_eq!(
        d.meta().annotations["deployment.kubernetes.io/revision"],
        "2"
    );
    let rss = replicasets(&c).await;
    assert_eq!(rss.len(), 2);
    let old = rss
        .iter()
        .find(|rs| rs.meta().annotations["deployment.kubernetes.io/revision"] == "1")
        .unwrap();
    assert_eq!(
        old.spec.as_ref().unwrap().replicas,
        Some(0),
        "the old ReplicaSet is kept, scaled to 0"
    );

    // Rollback (what `kubectl rollout undo` does): the old template comes back, the old
    // ReplicaSet is reused with the next revision.
    let mut d = get_deploy(&c, "web").await;
    d.spec.as_mut().unwrap().template = old.spec.as_ref().unwrap().template.clone();
    d.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .remove("pod-template-hash");
    modify(&c, "default", "web", |o: &mut Deployment| {
        o.spec = d.spec.clone()
    })
    .await;
    eventually("the old image back", || async {
        let d = get_deploy(&c, "web").await;
        rolled_out(&d)
            && pods(&c, "default")
                .await
                .iter()
                .all(|p| image(p) == "nginx:1")
    })
    .await;
    assert_eq!(violations.lock().unwrap().clone(), Vec::<String>::new());
    let rss = replicasets(&c).await;
    assert_eq!(rss.len(), 2, "rollback reuses the old ReplicaSet");
    let reused: ReplicaSet = t(c.get("default", old.meta().name.as_deref().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        reused.meta().annotations["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(
        reused.meta().annotations["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(
        get_deploy(&c, "web").await.meta().annotations["deployment.kubernetes.io/revision"],
        "3"
    );
    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_replaces_all_pods_at_once() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let _kubelet = FakeKubelet::start(&c, "default");
    let mut d = deployment("batch", 2, "app:1");
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        r#type: Some("Recreate".into()),
        rolling_update: None,
    });
    t(c.create("default", &d)).await.unwrap();
    wait_rolled_out(&c, "batch").await;
    let mut d = get_deploy(&c, "batch").await;
    d.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("app:2".into());
    modify(&c, "default", "batch", |o: &mut Deployment| {
        o.spec = d.spec.clone()
    })
    .await;
    eventually("recreated", || async {
        let d = get_deploy(&c, "batch").await;
        let ps = pods(&c, "default").await;
        rolled_out(&d) && ps.len() == 2 && ps.iter().all(|p| image(p) == "app:2")
    })
    .await;
    manager.shutdown().await;
    cluster.stop().await;
}

async fn owned_objects(c: &Client) -> (usize, usize) {
    (replicasets(c).await.len(), pods(c, "default").await.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_cascades_in_background_and_foreground_and_orphans() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let _kubelet = FakeKubelet::start(&c, "default");

    // Background (the default).
    t(c.create("default", &deployment("bg", 2, "nginx:1")))
        .await
        .unwrap();
    wait_rolled_out(&c, "bg").await;
    t(c.delete::<Deployment>("default", "bg")).await.unwrap();
    eventually("background cascade", || async {
        owned_objects(&c).await == (0, 0)
    })
    .await;

    // Foreground: the Deployment waits, with its finalizer, for its dependents.
    t(c.create("default", &deployment("fg", 2, "nginx:1")))
        .await
        .unwrap();
    wait_rolled_out(&c, "fg").await;
    let deleting: Deployment = t(c.delete_with(
        "default",
        "fg",
        &DeleteParams {
            propagation_policy: "Foreground".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    assert!(
        deleting
            .meta()
            .finalizers
            .iter()
            .any(|f| f == "foregroundDeletion")
    );
    eventually("foreground cascade", || async {
        owned_objects(&c).await == (0, 0) && c.get::<Deployment>("default", "fg").await.is_err()
    })
    .await;

    // Orphan: the ReplicaSet and its pods stay, without the owner reference.
    t(c.create("default", &deployment("or", 2, "nginx:1")))
        .await
        .unwrap();
    wait_rolled_out(&c, "or").await;
    t(c.delete_with::<Deployment>(
        "default",
        "or",
        &DeleteParams {
            propagation_policy: "Orphan".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    eventually("orphaned ReplicaSet", || async {
        let rss = replicasets(&c).await;
        c.get::<Deployment>("default", "or").await.is_err()
            && rss.len() == 1
            && rss[0].meta().owner_references.is_empty()
    })
    .await;
    assert_eq!(pods(&c, "default").await.len(), 2, "orphaned pods are kept");
    manager.shutdown().await;
    cluster.stop().await;
}
