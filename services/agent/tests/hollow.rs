//! A fleet of 1,000 hollow nodes in one process against one gateway: every node registers
//! (with the hollow label) and keeps renewing its Lease; a pod bound to one of them runs and
//! is deleted.

mod common;

use std::time::Duration;

use common::*;
use navarch_agent::{HOLLOW_LABEL, HollowFleetConfig, NodeTiming};
use navarch_api::coordination::v1::Lease;
use navarch_api::core::v1::{Container, Node, Pod};
use navarch_gateway::client::ListParams;

const NODES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_fleet_registers_heartbeats_and_runs_pods() {
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let fleet = navarch_agent::start_hollow_fleet(
        client.clone(),
        HollowFleetConfig {
            name_prefix: "hollow".into(),
            count: NODES,
            timing: NodeTiming {
                lease_duration: Duration::from_secs(10),
                lease_renew: Duration::from_secs(2),
                status_update: Duration::from_secs(2),
                status_report: Duration::from_secs(60),
            },
            sync_period: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;

    let params = ListParams {
        label_selector: format!("{HOLLOW_LABEL}=true"),
        ..Default::default()
    };
    eventually("every hollow node registered and Ready", || async {
        let nodes = client.list::<Node>("", &params).await.ok()?.items;
        let ready = nodes
            .iter()
            .filter(|n| {
                n.status.as_ref().is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.r#type.as_deref() == Some("Ready") && c.status.as_deref() == Some("True")
                    })
                })
            })
            .count();
        (ready == NODES).then_some(())
    })
    .await;
    let renewals = || async {
        let leases = client
            .list::<Lease>("kube-node-lease", &ListParams::default())
            .await
            .ok()?
            .items;
        Some(
            leases
                .into_iter()
                .filter_map(|l| {
                    let name = l.metadata.and_then(|m| m.name)?;
                    let renewed = l.spec.and_then(|s| s.renew_time)?;
                    name.starts_with("hollow-").then_some((name, renewed))
                })
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    };
    let first = eventually("every hollow node has a Lease", || async {
        let r = renewals().await?;
        (r.len() == NODES).then_some(r)
    })
    .await;
    // Heartbeats keep coming: every Lease is renewed again (every 2 s here).
    eventually("every hollow node renewing its Lease", || async {
        let now = renewals().await?;
        first
            .iter()
            .all(|(name, at)| now.get(name).is_some_and(|t| t > at))
            .then_some(())
    })
    .await;

    let c = Container {
        name: Some("app".into()),
        image: Some("registry.example/app:1".into()),
        ..Default::default()
    };
    tokio::time::timeout(
        T,
        client.create("default", &pod("sim", "hollow-7", vec![c])),
    )
    .await
    .unwrap()
    .unwrap();
    let s = wait_status(&client, "sim", "Running", |s| {
        s.phase.as_deref() == Some("Running") && condition(s, "Ready").as_deref() == Some("True")
    })
    .await;
    assert!(s.pod_ip.as_deref().unwrap().starts_with("10.244."));
    assert!(
        s.container_statuses[0]
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("hollow://")
    );
    tokio::time::timeout(T, client.delete::<Pod>("default", "sim"))
        .await
        .unwrap()
        .unwrap();
    wait_gone(&client, "sim").await;

    tokio::time::timeout(T, fleet.shutdown()).await.unwrap();
    cluster.stop().await;
}
