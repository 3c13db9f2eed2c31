//! The agent end to end with the `process` runtime, through a real in-process gateway:
//! node registration and Lease, a pod bound to the node runs and becomes Ready (httpGet
//! readiness), survives an agent restart untouched, crash-loops with back-off, and is stopped
//! and removed on delete.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use navarch_agent::runtime::process::ProcessRuntime;
use navarch_agent::{AgentConfig, BackoffPolicy, NodeTiming};
use navarch_api::coordination::v1::Lease;
use navarch_api::core::v1::{Container, HttpGetAction, Node, Probe};
use navarch_api::meta::v1::IntOrString;
use navarch_api::meta::v1::int_or_string::Value as IntOrStr;
use navarch_gateway::Client;

const NODE: &str = "proc-node";

fn config(dir: &std::path::Path) -> AgentConfig {
    let mut c = AgentConfig::new(NODE, dir);
    c.node_ip = Some("127.0.0.1".parse().unwrap());
    c.timing = NodeTiming {
        lease_duration: Duration::from_secs(4),
        lease_renew: Duration::from_millis(500),
        status_update: Duration::from_millis(500),
        status_report: Duration::from_secs(60),
    };
    c.backoff = BackoffPolicy {
        initial: Duration::from_millis(300),
        max: Duration::from_secs(2),
    };
    c.sync_period = Duration::from_millis(200);
    c.node.labels.insert("tier".into(), "test".into());
    c
}

async fn start_agent(client: &Client, dir: &std::path::Path) -> navarch_agent::RunningAgent {
    let runtime = Arc::new(ProcessRuntime::new(&dir.join("runtime")).unwrap());
    tokio::time::timeout(
        T,
        navarch_agent::start(client.clone(), config(dir), runtime),
    )
    .await
    .unwrap()
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).contains(" 200 ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_pods_run_restart_and_go_away() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let agent = start_agent(&client, dir.path()).await;

    // Registration: labels, capacity, Ready condition, Lease.
    let node: Node = eventually("node registered", || async {
        let n: Node = client.get("", NODE).await.ok()?;
        let ready =
            n.status.as_ref()?.conditions.iter().any(|c| {
                c.r#type.as_deref() == Some("Ready") && c.status.as_deref() == Some("True")
            });
        ready.then_some(n)
    })
    .await;
    let labels = &node.metadata.as_ref().unwrap().labels;
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["tier"], "test");
    let status = node.status.clone().unwrap();
    assert!(status.capacity.contains_key("cpu"));
    assert!(status.allocatable.contains_key("memory"));
    assert_eq!(status.capacity["pods"].value, "110");
    let lease: Lease = eventually("lease renewed", || async {
        client.get::<Lease>("kube-node-lease", NODE).await.ok()
    })
    .await;
    let first_renew = lease.spec.as_ref().unwrap().renew_time.clone();
    eventually("lease renewed again", || async {
        let l: Lease = client.get("kube-node-lease", NODE).await.ok()?;
        (l.spec?.renew_time != first_renew).then_some(())
    })
    .await;

    // A web server pod with an httpGet readiness probe.
    let port = free_port();
    let web = Container {
        name: Some("web".into()),
        image: Some("python:3".into()),
        command: vec!["python3".into(), "-m".into(), "http.server".into()],
        args: vec!["--bind".into(), "127.0.0.1".into(), port.to_string()],
        readiness_probe: Some(Probe {
            http_get: Some(HttpGetAction {
                path: Some("/".into()),
                port: Some(IntOrString {
                    value: Some(IntOrStr::IntVal(port as i32)),
                }),
                ..Default::default()
            }),
            period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    tokio::time::timeout(T, client.create("default", &pod("web", NODE, vec![web])))
        .await
        .unwrap()
        .unwrap();
    let s = wait_status(&client, "web", "Running and Ready", |s| {
        s.phase.as_deref() == Some("Running") && condition(s, "Ready").as_deref() == Some("True")
    })
    .await;
    assert_eq!(s.pod_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
    let cs = &s.container_statuses[0];
    assert_eq!(cs.ready, Some(true));
    assert_eq!(cs.started, Some(true));
    assert_eq!(cs.restart_count, Some(0));
    let container_id = cs.container_id.clone().unwrap();
    assert!(container_id.starts_with("process://"), "{container_id}");
    for what in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(condition(&s, what).as_deref(), Some("True"), "{what}");
    }
    assert!(http_ok(port));

    // Logs land under the agent's data dir.
    let pod_uid = get_pod(&client, "web")
        .await
        .unwrap()
        .metadata
        .unwrap()
        .uid
        .unwrap();
    let log_dir = dir
        .path()
        .join("logs/pods")
        .join(format!("default_web_{pod_uid}"))
        .join("web");
    eventually("log file", || async {
        std::fs::metadata(log_dir.join("0.log")).ok().map(|_| ())
    })
    .await;

    // Agent restart: the container is re-adopted, not restarted.
    tokio::time::timeout(T, agent.shutdown()).await.unwrap();
    assert!(http_ok(port), "the container outlives its agent");
    let agent = start_agent(&client, dir.path()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = wait_status(&client, "web", "still ready", |s| {
        condition(s, "Ready").as_deref() == Some("True")
    })
    .await;
    let cs = &s.container_statuses[0];
    assert_eq!(cs.container_id.as_deref(), Some(container_id.as_str()));
    assert_eq!(cs.restart_count, Some(0));
    assert!(http_ok(port));

    // A crashing container: restarts with back-off, CrashLoopBackOff in status.
    let crash = Container {
        name: Some("crash".into()),
        image: Some("busybox".into()),
        command: vec!["/bin/sh".into(), "-c".into(), "echo dying; exit 3".into()],
        ..Default::default()
    };
    tokio::time::timeout(
        T,
        client.create("default", &pod("crash", NODE, vec![crash])),
    )
    .await
    .unwrap()
    .unwrap();
    let s = wait_status(
        &client,
        "crash",
        "in CrashLoopBackOff after restarts",
        |s| {
            waiting_reason(s, 0).as_deref() == Some("CrashLoopBackOff")
                && s.container_statuses[0].restart_count >= Some(2)
        },
    )
    .await;
    let last = s.container_statuses[0]
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, Some(3));
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(s.phase.as_deref(), Some("Running"));

    // Delete: graceful stop, then the agent removes the pod object.
    for name in ["web", "crash"] {
        tokio::time::timeout(
            T,
            client.delete::<navarch_api::core::v1::Pod>("default", name),
        )
        .await
        .unwrap()
        .unwrap();
    }
    wait_gone(&client, "web").await;
    wait_gone(&client, "crash").await;
    assert!(!http_ok(port), "the container is stopped");
    eventually("pod records removed", || async {
        let n = std::fs::read_dir(dir.path().join("pods")).ok()?.count();
        (n == 0).then_some(())
    })
    .await;

    // A job that succeeds.
    let job = Container {
        name: Some("job".into()),
        image: Some("busybox".into()),
        command: vec!["/bin/sh".into(), "-c".into(), "echo done".into()],
        ..Default::default()
    };
    let mut p = pod("job", NODE, vec![job]);
    p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    tokio::time::timeout(T, client.create("default", &p))
        .await
        .unwrap()
        .unwrap();
    let s = wait_status(&client, "job", "Succeeded", |s| {
        s.phase.as_deref() == Some("Succeeded")
    })
    .await;
    let t = s.container_statuses[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert_eq!(t.exit_code, Some(0));
    tokio::time::timeout(
        T,
        client.delete::<navarch_api::core::v1::Pod>("default", "job"),
    )
    .await
    .unwrap()
    .unwrap();
    wait_gone(&client, "job").await;

    tokio::time::timeout(T, agent.shutdown()).await.unwrap();
    cluster.stop().await;
}
