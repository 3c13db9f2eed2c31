//! The agent end to end with the `runc` runtime: a busybox image built here (from Debian's
//! `busybox-static`) and pushed to a local `docker-registry` on 127.0.0.1, pulled by the
//! agent; pods on a CNI bridge and subnet of this test's own; HTTP served by `busybox httpd`
//! at the pod IP, readiness by httpGet, logs captured, crash loop with back-off, OOMKilled,
//! agent restart re-adopting the running container, and nothing left behind after delete.
//!
//! Skipped (with a message) only when not root or runc is missing; everything else it needs
//! is installed by `.ci/test.sh`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use navarch_agent::runtime::ContainerRuntime;
use navarch_agent::runtime::runc::cni::CniNetwork;
use navarch_agent::runtime::runc::{self, RuncConfig, RuncRuntime};
use navarch_agent::{AgentConfig, BackoffPolicy, NodeTiming};
use navarch_api::core::v1::{Container, HttpGetAction, Pod, Probe, ResourceRequirements};
use navarch_api::meta::v1::int_or_string::Value as IntOrStr;
use navarch_api::meta::v1::{IntOrString, Quantity};
use navarch_gateway::Client;

const NODE: &str = "runc-node";

/// Everything this test creates outside its temp dir, removed on drop (even on panic):
/// the registry first, then containers, mounts, the bridge and cgroups.
struct Cleanup {
    registry: Option<navarch_e2e::images::Registry>,
    _leftovers: navarch_e2e::runc::RuncLeftovers,
}

fn runc_config(dir: &Path, bridge: &str, subnet: &str, cgroup_parent: &str) -> RuncConfig {
    let mut cfg = RuncConfig::new(dir);
    cfg.network = CniNetwork {
        name: format!("{bridge}-net"),
        bridge: bridge.into(),
        subnet: subnet.into(),
        bin_dirs: runc::cni::default_bin_dirs(),
        ipam_dir: dir.join("cni/networks"),
        ip_masq: false,
    };
    cfg.cgroup_parent = cgroup_parent.into();
    cfg
}

async fn start_agent(client: &Client, dir: &Path, cfg: &RuncConfig) -> navarch_agent::RunningAgent {
    let runtime = Arc::new(RuncRuntime::new(cfg.clone()).unwrap());
    let mut c = AgentConfig::new(NODE, dir);
    c.node_ip = Some("127.0.0.1".parse().unwrap());
    c.timing = NodeTiming {
        lease_duration: Duration::from_secs(4),
        lease_renew: Duration::from_millis(500),
        status_update: Duration::from_millis(500),
        status_report: Duration::from_secs(60),
    };
    c.backoff = BackoffPolicy {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(2),
    };
    c.sync_period = Duration::from_millis(250);
    tokio::time::timeout(T, navarch_agent::start(client.clone(), c, runtime))
        .await
        .unwrap()
        .unwrap()
}

fn http_get(ip: &str, port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(3),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn busybox(name: &str, image: &str, script: &str) -> Container {
    Container {
        name: Some(name.into()),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

async fn read_to_end(r: Option<navarch_agent::runtime::exec::Reader>) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    if let Some(mut r) = r {
        tokio::time::timeout(T, r.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `kubectl exec -i` and `-it` at the runtime: stdin to its end, then a terminal (runc
/// relays the container's pty to one of the agent's) with its size and a resize.
async fn exec_in_runc_container(runtime: &RuncRuntime, id: &str) {
    use navarch_agent::runtime::{ExecSpec, TerminalSize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let mut s = runtime
        .exec(
            id,
            &ExecSpec {
                command: sh("cat; echo done >&2; exit 3"),
                stdin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"in the container\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let (out, err) = tokio::join!(read_to_end(s.stdout.take()), read_to_end(s.stderr.take()));
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("in the container\n", "done\n")
    );
    assert_eq!(tokio::time::timeout(T, s.exit).await.unwrap().unwrap(), 3);

    let mut s = runtime
        .exec(
            id,
            &ExecSpec {
                command: sh("tty; stty size; read x; echo got $x; stty size; exit 2"),
                stdin: true,
                tty: true,
                size: Some(TerminalSize {
                    width: 100,
                    height: 30,
                }),
            },
        )
        .await
        .unwrap();
    let mut stdout = s.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("30 100") {
        let n = tokio::time::timeout(T, stdout.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "ended early: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    (s.resize.as_ref().unwrap())(TerminalSize {
        width: 120,
        height: 40,
    })
    .unwrap();
    // runc applies the new size when its SIGWINCH is handled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"abc\r").await.unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&seen),
        read_to_end(Some(stdout)).await
    );
    assert!(all.starts_with("/dev/pts/"), "{all:?}");
    assert!(all.contains("got abc\r\n40 120"), "{all:?}");
    assert_eq!(tokio::time::timeout(T, s.exit).await.unwrap().unwrap(), 2);

    // The client went away: the command stops (runc forwards the signals into the container).
    let mut s = runtime
        .exec(
            id,
            &ExecSpec {
                command: sh("echo $$; exec sleep 1000"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdout = s.stdout.take().unwrap();
    let mut line = Vec::new();
    while !line.contains(&b'\n') {
        let n = tokio::time::timeout(T, stdout.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        line.extend_from_slice(&buf[..n]);
    }
    let pid = String::from_utf8_lossy(&line).trim().to_string();
    drop(s);
    let check = format!("kill -0 {pid} 2>/dev/null && echo running || echo stopped");
    let deadline = std::time::Instant::now() + T;
    loop {
        let out = runtime
            .exec_sync(id, &sh(&check), Duration::from_secs(10))
            .await
            .unwrap();
        if out.stdout == b"stopped\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the exec'd sleep still runs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn links_on(bridge: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runc_pods_end_to_end() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED runc_pods_end_to_end: needs root (runc, network namespaces, cgroups)");
        return;
    }
    if runc::find_in_path("runc").is_none() {
        eprintln!("SKIPPED runc_pods_end_to_end: runc is not installed (apt-get install runc)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let bridge = format!("nvt{tag}");
    let n: u8 = u8::from_str_radix(&tag[..2], 16).unwrap();
    let subnet = format!("10.231.{n}.0/24");
    let cgroup_parent = format!("navarch-test-{tag}");
    let mut cleanup = Cleanup {
        registry: None,
        _leftovers: navarch_e2e::runc::RuncLeftovers {
            state: dir.path().join("runc/state"),
            dir: dir.path().to_path_buf(),
            bridge: bridge.clone(),
            cgroup_parent: cgroup_parent.clone(),
            cluster_cidr: subnet.clone(),
        },
    };
    let registry = navarch_e2e::images::Registry::start(dir.path()).expect("docker-registry");
    let port = registry.port;
    cleanup.registry = Some(registry);
    let image = format!("127.0.0.1:{port}/test/busybox:1");
    navarch_e2e::images::push_busybox(&image)
        .await
        .expect("push to the local registry");

    let cfg = runc_config(dir.path(), &bridge, &subnet, &cgroup_parent);
    runc::available(&cfg).expect("runc and the CNI plugins are installed");
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let agent = start_agent(&client, dir.path(), &cfg).await;

    // A web server pod, reachable at its pod IP, Ready through an httpGet probe.
    let mut web = busybox(
        "web",
        &image,
        "echo hello-from-web; exec httpd -f -v -p 8080 -h /www",
    );
    web.readiness_probe = Some(Probe {
        http_get: Some(HttpGetAction {
            path: Some("/".into()),
            port: Some(IntOrString {
                value: Some(IntOrStr::IntVal(8080)),
            }),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    tokio::time::timeout(T, client.create("default", &pod("web", NODE, vec![web])))
        .await
        .unwrap()
        .unwrap();
    let s = wait_status(&client, "web", "Running and Ready", |s| {
        s.phase.as_deref() == Some("Running") && condition(s, "Ready").as_deref() == Some("True")
    })
    .await;
    let ip = s.pod_ip.clone().unwrap();
    assert!(
        ip.starts_with(&format!("10.231.{n}.")),
        "pod IP {ip} from the test subnet {subnet}"
    );
    let cs = s.container_statuses[0].clone();
    assert!(cs.container_id.as_deref().unwrap().starts_with("runc://"));
    assert!(
        cs.image_id
            .as_deref()
            .unwrap()
            .starts_with(&format!("127.0.0.1:{port}/test/busybox@sha256:")),
        "{:?}",
        cs.image_id
    );
    let body = http_get(&ip, 8080).expect("the pod answers at its IP");
    assert!(
        body.contains("200 OK") && body.contains("hello from navarch"),
        "{body}"
    );

    // Logs.
    let uid = get_pod(&client, "web")
        .await
        .unwrap()
        .metadata
        .unwrap()
        .uid
        .unwrap();
    let log = dir
        .path()
        .join("logs/pods")
        .join(format!("default_web_{uid}/web/0.log"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("hello-from-web"), "log: {text:?}");

    // Agent restart: same container, same PID, not restarted.
    let runtime = RuncRuntime::new(cfg.clone()).unwrap();
    let cid = cs.container_id.clone().unwrap();
    let short = cid.trim_start_matches("runc://");
    let pid_before = runtime.container_status(short).await.unwrap().pid;
    assert!(pid_before.is_some());
    exec_in_runc_container(&runtime, short).await;
    tokio::time::timeout(T, agent.shutdown()).await.unwrap();
    assert!(
        http_get(&ip, 8080).is_some(),
        "serves while the agent is down"
    );
    let agent = start_agent(&client, dir.path(), &cfg).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = wait_status(&client, "web", "still Ready", |s| {
        condition(s, "Ready").as_deref() == Some("True")
    })
    .await;
    assert_eq!(
        s.container_statuses[0].container_id.as_deref(),
        Some(cid.as_str())
    );
    assert_eq!(s.container_statuses[0].restart_count, Some(0));
    assert_eq!(
        runtime.container_status(short).await.unwrap().pid,
        pid_before
    );

    // A crashing container: back-off, CrashLoopBackOff, restartCount growing.
    tokio::time::timeout(
        T,
        client.create(
            "default",
            &pod(
                "crash",
                NODE,
                vec![busybox("crash", &image, "echo boom; exit 2")],
            ),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let s = wait_status(&client, "crash", "CrashLoopBackOff", |s| {
        waiting_reason(s, 0).as_deref() == Some("CrashLoopBackOff")
            && s.container_statuses[0].restart_count >= Some(2)
    })
    .await;
    let last = s.container_statuses[0]
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, Some(2));
    assert_eq!(last.reason.as_deref(), Some("Error"));

    // Over the memory limit: OOMKilled.
    let mut hog = busybox(
        "hog",
        &image,
        "exec dd if=/dev/zero of=/dev/shm/fill bs=1M count=48",
    );
    hog.resources = Some(ResourceRequirements {
        limits: [(
            "memory".to_string(),
            Quantity {
                value: "16Mi".into(),
            },
        )]
        .into(),
        ..Default::default()
    });
    let mut p = pod("hog", NODE, vec![hog]);
    p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    tokio::time::timeout(T, client.create("default", &p))
        .await
        .unwrap()
        .unwrap();
    let s = wait_status(&client, "hog", "Failed", |s| {
        s.phase.as_deref() == Some("Failed")
    })
    .await;
    let t = s.container_statuses[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"), "{t:?}");
    assert_eq!(t.exit_code, Some(137));

    // Delete everything: nothing left behind.
    for name in ["web", "crash", "hog"] {
        tokio::time::timeout(T, client.delete::<Pod>("default", name))
            .await
            .unwrap()
            .unwrap();
    }
    for name in ["web", "crash", "hog"] {
        wait_gone(&client, name).await;
    }
    eventually("sandboxes and containers removed", || async {
        let sandboxes = std::fs::read_dir(cfg.root.join("sandboxes")).ok()?.count();
        let containers = std::fs::read_dir(cfg.root.join("containers")).ok()?.count();
        (sandboxes == 0 && containers == 0).then_some(())
    })
    .await;
    assert_eq!(links_on(&bridge), "", "no veth left on the bridge");
    let leases: Vec<PathBuf> = std::fs::read_dir(cfg.network.ipam_dir.join(&cfg.network.name))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let ip_leases: Vec<_> = leases
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
        })
        .collect();
    assert!(ip_leases.is_empty(), "IPAM leases released: {ip_leases:?}");
    let pod_cgroups = std::fs::read_dir(Path::new("/sys/fs/cgroup/memory").join(&cgroup_parent))
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0);
    assert_eq!(pod_cgroups, 0, "pod cgroups removed");
    assert!(http_get(&ip, 8080).is_none(), "the pod is gone");

    tokio::time::timeout(T, agent.shutdown()).await.unwrap();
    cluster.stop().await;
    drop(cleanup);
}
