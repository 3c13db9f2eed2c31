//! Pod startup latency and the node agent's memory, on real containers (root, runc, CNI):
//! `navarch server` and a separate `navarch agent --runtime runc` process, a local registry
//! with the busybox test image (pulled once by a warm-up pod, so the image is present),
//! then 10 pods created at once and 30 one after another; each pod's latency is from its
//! create call to `phase: Running` seen by a watch. The agent's RSS is read from /proc with
//! 0 and with 30 pods running.
//!
//! `cargo run --release -p navarch-e2e --example pod_startup` (as root).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use navarch_api::core::v1::{Container, Pod, PodSpec};
use navarch_api::meta::v1::ObjectMeta;
use navarch_e2e::Navarch;
use navarch_e2e::images::{Registry, push_busybox};
use navarch_e2e::runc::RuncLeftovers;
use navarch_gateway::Client;
use navarch_gateway::client::{ListParams, WatchEvent};
use tokio::sync::mpsc;

fn pod(name: &str, image: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(1),
            containers: vec![Container {
                name: Some("main".into()),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: vec!["sleep".into(), "3600".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{what}: {} pods, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
}

/// Names → when they were first seen Running.
async fn running_watch(client: Client) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stream = client
        .watch::<Pod>("default", "", &ListParams::default())
        .await
        .expect("watch");
    tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            if let Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)) = ev
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            {
                let name = p.metadata.and_then(|m| m.name).unwrap_or_default();
                let _ = tx.send((name, Instant::now()));
            }
        }
    });
    rx
}

async fn wait_running(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    created: &HashMap<String, Instant>,
    seen: &mut HashMap<String, Duration>,
) {
    while created.keys().any(|n| !seen.contains_key(n)) {
        let (name, at) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("pods Running within 120 s")
            .expect("watch open");
        if let Some(c) = created.get(&name) {
            seen.entry(name).or_insert(at - *c);
        }
    }
}

async fn delete_all(client: &Client, names: &[String]) {
    for n in names {
        let _ = client.delete::<Pod>("default", n).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let left = client
            .list::<Pod>("default", &ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(1);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let registry = Registry::start(work.path())?;
    let image = registry.image("bench/busybox:1");
    push_busybox(&image).await?;
    let tag = format!("{:04x}", std::process::id() & 0xffff);
    let server = Navarch::server_with_args(&[
        "--cluster-cidr",
        "10.250.0.0/16",
        "--service-cidr",
        "10.251.0.0/16",
    ])?;
    let agent_dir = work.path().join("agent");
    let mut agent: Child = Command::new(navarch_e2e::navarch_bin())
        .args(["agent", "--gateway", &server.grpc, "--token", &server.token])
        .arg("--ca-file")
        .arg(&server.ca_file)
        .arg("--data-dir")
        .arg(&agent_dir)
        .args(["--runtime", "runc", "--proxy-mode", "none"])
        .args(["--node-name", "bench-node", "--node-ip", "127.0.0.1"])
        .args(["--cni-bridge", &format!("nvb{tag}")])
        .args(["--cgroup-parent", &format!("navarch-bench-{tag}")])
        .args([
            "--cluster-cidr",
            "10.250.0.0/16",
            "--service-cidr",
            "10.251.0.0/16",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let _leftovers = RuncLeftovers {
        state: agent_dir.join("runc/state"),
        dir: agent_dir.clone(),
        bridge: format!("nvb{tag}"),
        cgroup_parent: format!("navarch-bench-{tag}"),
        cluster_cidr: "10.250.0.0/16".into(),
    };
    let ca = std::fs::read_to_string(&server.ca_file)?;
    let client = Client::connect(&server.grpc, &ca, &server.token).await?;
    let mut rx = running_watch(client.clone()).await;

    // Warm-up: the image is pulled and unpacked once.
    let mut seen = HashMap::new();
    let created = HashMap::from([("warmup".to_string(), Instant::now())]);
    client.create("default", &pod("warmup", &image)).await?;
    wait_running(&mut rx, &created, &mut seen).await;
    println!("warm-up pod (image pull included): {:?}", seen["warmup"]);
    delete_all(&client, &["warmup".into()]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(agent.id());

    // 10 at once.
    let mut created = HashMap::new();
    let mut seen = HashMap::new();
    let names: Vec<String> = (0..10).map(|i| format!("batch-{i}")).collect();
    let creates = names.iter().map(|n| {
        let client = client.clone();
        let p = pod(n, &image);
        async move {
            let at = Instant::now();
            client.create("default", &p).await.map(|_: Pod| at)
        }
    });
    for (n, at) in names.iter().zip(futures::future::join_all(creates).await) {
        created.insert(n.clone(), at?);
    }
    wait_running(&mut rx, &created, &mut seen).await;
    report("10 pods created at once", seen.values().copied().collect());
    delete_all(&client, &names).await;

    // 30 one after another.
    let mut latencies = vec![];
    let mut names = vec![];
    for i in 0..30 {
        let name = format!("seq-{i}");
        let created = HashMap::from([(name.clone(), Instant::now())]);
        client.create("default", &pod(&name, &image)).await?;
        let mut seen = HashMap::new();
        wait_running(&mut rx, &created, &mut seen).await;
        latencies.push(seen[&name]);
        names.push(name);
    }
    report("30 pods one after another", latencies);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = rss_mib(agent.id());
    println!("agent RSS: {idle:.1} MiB with 0 pods, {busy:.1} MiB with 30 pods");
    delete_all(&client, &names).await;

    let _ = Command::new("kill").arg(agent.id().to_string()).status();
    let _ = agent.wait();
    drop(server);
    drop(registry);
    Ok(())
}
