//! `navarch up` as a user runs it: starts quickly, serves gRPC over TLS with the admin token it
//! wrote, stops cleanly on SIGTERM, and keeps its data across restarts and crashes.

use std::time::{Duration, Instant};

use futures::StreamExt;
use navarch_api::core::v1::ConfigMap;
use navarch_api::meta::v1::ObjectMeta;
use navarch_e2e::Navarch;
use navarch_gateway::Client;
use navarch_gateway::client::{ListParams, WatchEvent};

const T: Duration = Duration::from_secs(10);

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        }),
        data: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    }
}

async fn connect(n: &Navarch) -> Client {
    let ca = std::fs::read_to_string(&n.ca_file).unwrap();
    tokio::time::timeout(T, Client::connect(&n.grpc, &ca, &n.token))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn up_serves_and_keeps_data_across_restart_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut n = Navarch::up_in(dir.path()).unwrap();
    let startup = started.elapsed();
    eprintln!("navarch up ready in {startup:?}");
    assert!(std::fs::metadata(dir.path().join("pki/ca.key")).is_ok());
    let c = connect(&n).await;
    // Only ours: the cluster adds its own ConfigMap (kube-root-ca.crt) to every namespace.
    let ours = ListParams {
        field_selector: "metadata.name=one".into(),
        ..Default::default()
    };
    let mut watch = tokio::time::timeout(T, c.watch::<ConfigMap>("default", "", &ours))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(T, c.create("default", &cm("one")))
        .await
        .unwrap()
        .unwrap();
    match tokio::time::timeout(T, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(o) => assert_eq!(o.metadata.unwrap().name.as_deref(), Some("one")),
        other => panic!("{other:?}"),
    }
    drop(watch);
    let status = n.stop().unwrap();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        n.log()
    );

    let mut n = Navarch::up_in(dir.path()).unwrap();
    let c = connect(&n).await;
    let got: ConfigMap = tokio::time::timeout(T, c.get("default", "one"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data["k"], "v");
    // An acknowledged write survives kill -9.
    let written = tokio::time::timeout(T, c.create("default", &cm("two")))
        .await
        .unwrap()
        .unwrap();
    n.kill();
    let n = Navarch::up_in(dir.path()).unwrap();
    let c = connect(&n).await;
    let got: ConfigMap = tokio::time::timeout(T, c.get("default", "two"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.metadata.unwrap().resource_version,
        written.metadata.unwrap().resource_version
    );
    let list = tokio::time::timeout(T, c.list::<ConfigMap>("default", &ListParams::default()))
        .await
        .unwrap()
        .unwrap();
    // The two written, beside the cluster CA every namespace gets (kube-root-ca.crt).
    let ours = list
        .items
        .iter()
        .filter(|cm| {
            cm.metadata.as_ref().and_then(|m| m.name.as_deref()) != Some("kube-root-ca.crt")
        })
        .count();
    assert_eq!(ours, 2);
}
