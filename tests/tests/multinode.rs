//! A real multi-node cluster (issue 12), on this one machine: hosts are network namespaces
//! this test creates, each with its own address on a bridge it creates (all removed
//! afterwards). `navarch server` runs on the bridge's address; `navarch agent` runs inside
//! each host with real containers (runc, the CNI bridge on its own pod CIDR, its own service
//! proxy and DNS) after joining with a short-lived join token. One cluster goes through:
//!
//! 1. join: token -> node credential -> pod CIDR -> Ready;
//! 2. cross-node traffic: a Deployment spread over both hosts; a pod reaches the pods on the
//!    other host by pod IP and all of them through the Service's DNS name; the NodePort
//!    answers on every host, from pods on both;
//! 3. a rolling update (`kubectl set image`) under continuous load through both NodePorts:
//!    zero failed requests;
//! 4. node loss: one host's agent and containers are killed and its link cut; the node goes
//!    NotReady, its pods leave the endpoints and are evicted, replacements run on the other
//!    host while the Service keeps answering (the failure window is printed); the host comes
//!    back, rejoins, and what its dead containers left is cleaned up;
//! 5. control-plane outage: `navarch server` is stopped for longer than the node grace
//!    period: the pods keep serving through the proxies' rules; restarted, it reconciles
//!    without restarting any pod.
//!
//! Prints the figures: time to join, request and failure counts, failure window and time to
//! reschedule. Skipped (with a message) only when not root or runc is missing; `.ci/test.sh`
//! installs the rest.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use navarch_e2e::hosts::{AgentSpec, HostAgent, Hosts};
use navarch_e2e::images::{ImageFile, Registry, program_files, push_busybox_with};
use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use navarch_e2e::{Navarch, eventually, has, is_root};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: httpd
        image: IMAGE_V1
        imagePullPolicy: IfNotPresent
        # Each pod answers with its image's version and its own name.
        command: [sh, -c, 'echo "$(cat /version) $(hostname)" > /www/index.html; exec httpd -f -p 8080 -h /www']
        ports:
        - {containerPort: 8080}
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
        # Endpoints and every node's proxy drop the pod before it stops serving.
        lifecycle:
          preStop:
            exec: {command: [sleep, "3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: IMAGE_V1, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}
"#;

/// `GET /` on `addr`: the body's first line, or what went wrong. The connect timeout lets
/// the kernel retransmit a lost SYN once (after 1 s), as any real client would wait for.
fn get(addr: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write {addr}: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read {addr}: {e}"))?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP reply from {addr}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{addr}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.lines().next().unwrap_or_default().trim().to_string())
}

struct Sample {
    at: Instant,
    took: Duration,
    answer: Result<String, String>,
}

/// Clients sending requests, one after another each, round-robin over `targets` until
/// stopped.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(targets: &[SocketAddr], clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..clients)
            .map(|c| {
                let (stop, targets) = (stop.clone(), targets.to_vec());
                std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    let mut next = c;
                    while !stop.load(Ordering::Relaxed) {
                        let target = targets[next % targets.len()];
                        next += 1;
                        let at = Instant::now();
                        let answer = get(target);
                        samples.push(Sample {
                            at,
                            took: at.elapsed(),
                            answer,
                        });
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    samples
                })
            })
            .collect();
        Self { stop, workers }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Sample> = self
            .workers
            .into_iter()
            .flat_map(|w| w.join().expect("a load worker"))
            .collect();
        all.sort_by_key(|s| s.at);
        all
    }
}

fn failures(samples: &[Sample]) -> Vec<&Sample> {
    samples.iter().filter(|s| s.answer.is_err()).collect()
}

/// `<n> took over 1 s, slowest <t> s`: answered requests that waited for a retransmission.
fn slow(samples: &[Sample]) -> String {
    let ok = samples.iter().filter(|s| s.answer.is_ok());
    let slow = ok
        .clone()
        .filter(|s| s.took > Duration::from_secs(1))
        .count();
    let max = ok.map(|s| s.took).max().unwrap_or_default();
    format!("{slow} took over 1 s, slowest {:.2} s", max.as_secs_f64())
}

/// `<node> <deleting?> <ready>` per web pod.
fn web_pods(k: &Kubectl) -> Vec<(String, bool, bool)> {
    k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        r#"jsonpath={range .items[*]}{.spec.nodeName} {.metadata.deletionTimestamp} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ])
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            [node, ready] => Some((node.to_string(), false, *ready == "True")),
            [node, _, ready] => Some((node.to_string(), true, *ready == "True")),
            _ => None,
        }
    })
    .collect()
}

/// `uid containerID restartCount` per web pod, sorted: what a restart would change.
fn web_identities(k: &Kubectl) -> Vec<String> {
    let mut ids: Vec<String> = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.uid} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}{"\n"}{end}"#,
        ])
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

fn node_ready(k: &Kubectl, node: &str) -> String {
    k.run(&[
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
    ])
    .stdout
    .trim()
    .to_string()
}

/// The podclient in the `client` pod: `count` GETs of `url`, one answer line each.
fn fetch_in_client(k: &Kubectl, url: &str, count: usize) -> Vec<String> {
    k.ok(&[
        "exec",
        "client",
        "--",
        "podclient",
        "get",
        url,
        &count.to_string(),
    ])
    .lines()
    .map(|l| l.trim().to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_hosts_joins_serves_rolls_out_and_survives_node_and_control_plane_loss() {
    if !is_root() {
        eprintln!("SKIPPED multi-node: network namespaces need root");
        return;
    }
    if !has("runc") || !has("iptables-restore") || !has("nsenter") {
        eprintln!("SKIPPED multi-node: runc, iptables or nsenter missing (see .ci/test.sh)");
        return;
    }
    let tag = format!("{:04x}", std::process::id() & 0xffff);
    // 10.20-24 (hosts), 10.25-29 (pods), 10.30-34 (services): ranges no other test uses,
    // so no other test's rules in this machine's namespace match this bridge's traffic.
    let octet = 20 + std::process::id() % 5;
    let (cluster_cidr, service_cidr) = (
        format!("10.{}.0.0/16", octet + 5),
        format!("10.{}.0.0/16", octet + 10),
    );
    let hosts = Hosts::create(&tag, octet, 2);
    let dir = tempfile::tempdir().unwrap();

    // The images, in a registry on the bridge address the hosts reach.
    let registry = Registry::start_on(dir.path(), &hosts.gateway()).unwrap();
    let client = program_files(
        std::path::Path::new(env!("CARGO_BIN_EXE_podclient")),
        "bin/podclient",
    )
    .unwrap();
    let (v1, v2) = (registry.image("test/web:v1"), registry.image("test/web:v2"));
    for (image, version) in [(&v1, "v1"), (&v2, "v2")] {
        let mut files = client.clone();
        files.push(ImageFile::plain(
            "version",
            format!("{version}\n").into_bytes(),
        ));
        push_busybox_with(image, &files).await.unwrap();
    }

    let mut n = Navarch::server_with_args(&[
        "--grpc-listen",
        &format!("{}:0", hosts.gateway()),
        "--api-listen",
        &format!("{}:0", hosts.gateway()),
        "--cluster-cidr",
        &cluster_cidr,
        "--service-cidr",
        &service_cidr,
        // Node loss within seconds, not minutes.
        "--node-monitor-grace-period",
        "5s",
        "--node-monitor-period",
        "1s",
        "--default-unreachable-toleration-seconds",
        "3",
        "--default-not-ready-toleration-seconds",
        "3",
    ])
    .unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let token = n.create_join_token("10m");

    // 1. Join.
    let started = Instant::now();
    let registry_host = registry.host();
    let extra = [
        "--insecure-registry",
        registry_host.as_str(),
        "--node-lease-duration-seconds",
        "4",
        "--node-status-update-frequency",
        "1s",
    ];
    let spec = AgentSpec {
        gateway: &n.grpc,
        ca_file: &n.ca_file,
        join_token: &token,
        runtime: "runc",
        cluster_cidr: &cluster_cidr,
        service_cidr: &service_cidr,
        extra: &extra,
    };
    let mut agents: Vec<HostAgent> = (0..2)
        .map(|i| HostAgent::start(&hosts, i, dir.path(), &spec))
        .collect();
    for (i, agent) in agents.iter().enumerate() {
        let seen = eventually(
            &format!("{} joins", agent.name),
            Duration::from_secs(60),
            || {
                let line = k
                    .run(&[
                        "get",
                        "node",
                        &agent.name,
                        "-o",
                        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}"#,
                    ])
                    .stdout;
                line.starts_with("True ").then_some(line)
            },
        );
        // Its own address (from its namespace) and a pod CIDR from the cluster range.
        let fields: Vec<&str> = seen.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{seen}");
        assert!(
            fields[1].starts_with(&format!("10.{}.", octet + 5)),
            "{seen}"
        );
        assert_eq!(fields[2], hosts.address(i), "{seen}");
        // It runs as itself.
        let cert = std::fs::read_to_string(agent.data_dir.join("pki/node.crt")).unwrap();
        let subject = navarch_pki::subject(&navarch_pki::pem_to_der(&cert).unwrap()).unwrap();
        assert_eq!(subject.common_name, format!("system:node:{}", agent.name));
    }
    println!(
        "join: two hosts joined (token -> credential -> Ready) in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // 2. Cross-node traffic.
    let manifest = k.file("web.yaml", &MANIFEST.replace("IMAGE_V1", &v1));
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    k.ok(&[
        "wait",
        "pod/client",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    let placed = web_pods(&k);
    for agent in &agents {
        assert_eq!(
            placed
                .iter()
                .filter(|(node, ..)| *node == agent.name)
                .count(),
            2,
            "the pods spread over both hosts: {placed:?}"
        );
    }
    let client_node = k.ok(&["get", "pod", "client", "-o", "jsonpath={.spec.nodeName}"]);
    let others = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        &format!(
            r#"jsonpath={{range .items[?(@.spec.nodeName!="{}")]}}{{.metadata.name}} {{.status.podIP}}{{"\n"}}{{end}}"#,
            client_node.trim()
        ),
    ]);
    let mut crossed = 0;
    for line in others.lines() {
        let (name, ip) = line.split_once(' ').unwrap();
        let answer = fetch_in_client(&k, &format!("http://{ip}:8080/"), 1);
        assert_eq!(
            answer,
            [format!("v1 {name}")],
            "pod IP {ip} from another host"
        );
        crossed += 1;
    }
    assert_eq!(crossed, 2, "{others}");
    let by_name = fetch_in_client(&k, "http://web.default.svc.cluster.local/", 60);
    let names: std::collections::BTreeSet<&String> = by_name.iter().collect();
    assert_eq!(
        names.len(),
        4,
        "the Service's DNS name reaches all four pods: {by_name:?}"
    );
    assert!(
        by_name.iter().all(|a| a.starts_with("v1 web-")),
        "{by_name:?}"
    );
    let node_port: u16 = k
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .trim()
        .parse()
        .unwrap();
    let node_ports: Vec<SocketAddr> = (0..2)
        .map(|i| format!("{}:{node_port}", hosts.address(i)).parse().unwrap())
        .collect();
    for np in &node_ports {
        let answers: std::collections::BTreeSet<String> = (0..40)
            .map(|_| get(*np).unwrap_or_else(|e| panic!("NodePort {np}: {e}")))
            .collect();
        assert_eq!(
            answers.len(),
            4,
            "NodePort {np} reaches pods on both hosts: {answers:?}"
        );
    }
    println!("cross-node: pod IPs, the Service's DNS name and the NodePort on both hosts answer");
    k.ok(&["delete", "pod", "client", "--wait=false"]);

    // 3. Rolling update under load.
    let load = Load::start(&node_ports, 2);
    std::thread::sleep(Duration::from_secs(1));
    let rollout = Instant::now();
    k.ok(&["set", "image", "deployment/web", &format!("httpd={v2}")]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let rolled = rollout.elapsed();
    // The old pods finish terminating (preStop, then SIGTERM) under load too.
    eventually("the old pods are gone", Duration::from_secs(30), || {
        (web_pods(&k).len() == 4).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let samples = load.finish();
    let failed = failures(&samples);
    let v2_answers = samples
        .iter()
        .filter(|s| s.answer.as_ref().is_ok_and(|a| a.starts_with("v2 ")))
        .count();
    println!(
        "rollout: {} requests through both NodePorts while rolling 4 pods ({:.1} s), {} failed, {} answered by v2; {}",
        samples.len(),
        rolled.as_secs_f64(),
        failed.len(),
        v2_answers,
        slow(&samples)
    );
    assert!(
        failed.is_empty(),
        "failed requests during the rollout: {:?}",
        failed
            .iter()
            .map(|s| &s.answer)
            .take(10)
            .collect::<Vec<_>>()
    );
    assert!(
        v2_answers > 0 && samples.len() > 100,
        "{} requests",
        samples.len()
    );

    // 4. Node loss: host-1 dies (agent and containers killed, link cut).
    let load = Load::start(&node_ports[..1], 2);
    std::thread::sleep(Duration::from_secs(1));
    let lost = Instant::now();
    agents[1].kill();
    hosts.set_connected(1, false);
    eventually("host-1 is NotReady", Duration::from_secs(30), || {
        (node_ready(&k, "host-1") != "True").then_some(())
    });
    let not_ready = lost.elapsed();
    eventually(
        "four ready replacements on host-0",
        Duration::from_secs(60),
        || {
            let pods = web_pods(&k);
            (pods
                .iter()
                .filter(|(node, deleting, ready)| node == "host-0" && !deleting && *ready)
                .count()
                == 4)
                .then_some(())
        },
    );
    let rescheduled = lost.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let samples = load.finish();
    let failed = failures(&samples);
    // From the start of the first failed request to the end of the last.
    let window = match (failed.first(), failed.iter().map(|s| s.at + s.took).max()) {
        (Some(first), Some(end)) => end.duration_since(first.at),
        _ => Duration::ZERO,
    };
    println!(
        "node loss: NotReady after {:.1} s, 4 pods ready on host-0 after {:.1} s; {} requests to host-0's NodePort, {} failed within a {:.1} s window",
        not_ready.as_secs_f64(),
        rescheduled.as_secs_f64(),
        samples.len(),
        failed.len(),
        window.as_secs_f64()
    );
    // The Service answers throughout once the dead pods left the endpoints.
    let settled = lost + rescheduled;
    let late: Vec<_> = failed.iter().filter(|s| s.at > settled).collect();
    assert!(
        late.is_empty(),
        "requests failed after the replacements were ready: {:?}",
        late.iter().map(|s| &s.answer).take(5).collect::<Vec<_>>()
    );
    assert!(samples.len() > 100);

    // The host comes back: it rejoins, and what its dead containers left goes.
    hosts.set_connected(1, true);
    let back = Instant::now();
    agents[1].restart(&hosts);
    eventually("host-1 is Ready again", Duration::from_secs(60), || {
        (node_ready(&k, "host-1") == "True").then_some(())
    });
    let rejoined = back.elapsed();
    eventually(
        "host-1's evicted pods are gone",
        Duration::from_secs(60),
        || {
            web_pods(&k)
                .iter()
                .all(|(node, ..)| node != "host-1")
                .then_some(())
        },
    );
    let state = agents[1].data_dir.join("runc/state");
    eventually(
        "host-1 has no containers, mounts or addresses left",
        Duration::from_secs(30),
        || {
            let containers = std::process::Command::new("runc")
                .arg("--root")
                .arg(&state)
                .args(["list", "-q"])
                .output()
                .unwrap();
            let containers = String::from_utf8_lossy(&containers.stdout)
                .trim()
                .to_string();
            let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|m| std::path::Path::new(m).starts_with(&agents[1].data_dir))
                .map(str::to_string)
                .collect();
            let leases: Vec<String> = std::fs::read_dir(agents[1].data_dir.join("cni/networks"))
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|net| {
                    std::fs::read_dir(net.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                })
                .map(|f| f.file_name().to_string_lossy().to_string())
                .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
                .collect();
            (containers.is_empty() && mounts.is_empty() && leases.is_empty()).then_some(())
        },
    );
    println!(
        "node loss: host-1 back and Ready after {:.1} s, its dead containers cleaned up",
        rejoined.as_secs_f64()
    );

    // 5. Control-plane outage: spread over both hosts again, then stop the server.
    k.ok(&["scale", "deployment/web", "--replicas=6"]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let before = web_identities(&k);
    let load = Load::start(&node_ports, 2);
    std::thread::sleep(Duration::from_secs(1));
    let outage = Instant::now();
    n.stop().unwrap();
    // Longer than the node grace period: nothing may act on stale heartbeats afterwards.
    std::thread::sleep(Duration::from_secs(8));
    let during = outage.elapsed();
    n.restart().unwrap();
    eventually(
        "both hosts Ready after the restart",
        Duration::from_secs(60),
        || (node_ready(&k, "host-0") == "True" && node_ready(&k, "host-1") == "True").then_some(()),
    );
    let reconciled = outage.elapsed() - during;
    // Give the node monitor several grace periods' worth of checks.
    std::thread::sleep(Duration::from_secs(8));
    let samples = load.finish();
    let failed = failures(&samples);
    let in_outage = samples
        .iter()
        .filter(|s| s.at >= outage && s.at < outage + during)
        .count();
    println!(
        "outage: server stopped {:.1} s; {} requests ({} during the outage), {} failed, {}; Ready again {:.1} s after the restart",
        during.as_secs_f64(),
        samples.len(),
        in_outage,
        failed.len(),
        slow(&samples),
        reconciled.as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "requests failed around the outage (seconds after the stop, error): {:?}",
        failed
            .iter()
            .map(|s| (s.at.duration_since(outage).as_secs_f64(), &s.answer))
            .take(10)
            .collect::<Vec<_>>()
    );
    assert!(in_outage > 50, "{in_outage} requests during the outage");
    assert_eq!(
        web_identities(&k),
        before,
        "no pod was replaced or restarted across the outage"
    );

    // The pods go with their Deployment (the agents remove their containers, addresses and
    // namespaces) before the hosts do.
    k.ok(&["delete", "deployment", "web", "--wait=false"]);
    eventually("the pods are gone", Duration::from_secs(60), || {
        k.ok(&["get", "pods", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    drop(agents);
    drop(hosts);
}
