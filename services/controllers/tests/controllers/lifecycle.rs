//! The manager itself: supervision (a panicking loop is restarted alone), leader election,
//! and the namespace and service-account loops.

use std::time::Duration;

use navarch_api::apps::v1::{Deployment, DeploymentSpec};
use navarch_api::core::v1::{
    ConfigMap, Namespace, Pod, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use navarch_controllers::CONTROLLERS;
use navarch_runtime::{KubeObject, LeaderElectionConfig};

use crate::common::*;

fn deployment(ns: &str, name: &str, replicas: i32) -> Deployment {
    Deployment {
        metadata: meta(ns, name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: selector(name),
            template: template(name, "nginx:1"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_loop_restarts_only_that_actor() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    manager.faults().panic_next("replicaset", 1);
    t(c.create("default", &deployment("default", "web", 2)))
        .await
        .unwrap();
    eventually("the ReplicaSet loop to crash and come back", || async {
        manager.restarts("replicaset") == 1 && manager.is_running("replicaset")
    })
    .await;
    // The restarted loop converges: the Deployment's pods exist.
    eventually("two pods", || async {
        pods(&c, "default").await.len() == 2
    })
    .await;
    for name in CONTROLLERS.iter().filter(|n| **n != "replicaset") {
        assert_eq!(manager.restarts(name), 0, "{name} was not restarted");
        assert!(manager.is_running(name), "{name} kept running");
    }
    // Other loops kept reconciling meanwhile: the service-account loop made `default`'s.
    eventually("the default service account", || async {
        c.get::<ServiceAccount>("default", "default").await.is_ok()
    })
    .await;
    let metrics = navarch_telemetry::gather_text();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("navarch_controller_restarts_total")
                && l.contains("controller=\"replicaset\"")
        })
        .unwrap_or_else(|| panic!("no restart metric in:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let elect = |identity: &str| {
        let mut le =
            LeaderElectionConfig::new("kube-system", "navarch-controller-manager", identity);
        le.lease_duration = Duration::from_secs(2);
        le.renew_deadline = Duration::from_millis(1500);
        le.retry_period = Duration::from_millis(200);
        Some(le)
    };
    let first = cluster.manager_with(|cfg| cfg.leader_election = elect("first"));
    t(first.wait_leading()).await;
    let second = cluster.manager_with(|cfg| cfg.leader_election = elect("second"));
    t(c.create("default", &deployment("default", "web", 1)))
        .await
        .unwrap();
    eventually("one pod", || async { pods(&c, "default").await.len() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        first.is_leading() && !second.is_leading(),
        "exactly one leads"
    );

    // The leader goes away (releasing its Lease); the standby takes over and reconciles.
    first.shutdown().await;
    t(second.wait_leading()).await;
    t(c.create("default", &deployment("default", "api", 2)))
        .await
        .unwrap();
    eventually("the standby's pods", || async {
        pods(&c, "default").await.len() == 3
    })
    .await;
    second.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_content_then_the_namespace() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    t(c.create(
        "",
        &Namespace {
            metadata: meta("", "team"),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    t(c.create("team", &deployment("team", "web", 2)))
        .await
        .unwrap();
    t(c.create(
        "team",
        &ConfigMap {
            metadata: meta("team", "settings"),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    t(c.create(
        "team",
        &Service {
            metadata: meta("team", "web"),
            spec: Some(ServiceSpec {
                selector: labels("web"),
                ports: vec![ServicePort {
                    port: Some(80),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    eventually("pods and the default service account", || async {
        pods(&c, "team").await.len() == 2
            && c.get::<ServiceAccount>("team", "default").await.is_ok()
    })
    .await;

    let ns: Namespace = t(c.delete("", "team")).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    eventually("the namespace gone", || async {
        c.get::<Namespace>("", "team").await.is_err()
    })
    .await;
    assert!(pods(&c, "team").await.is_empty());
    assert!(
        t(c.list::<ConfigMap>("team", &Default::default()))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        t(c.list::<Deployment>("team", &Default::default()))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let _ = Pod::default().meta();
    manager.shutdown().await;
    cluster.stop().await;
}
