//! Several machines (issue 12, step 1): hosts are network namespaces this test creates, each
//! with its own address on a bridge it creates (all removed afterwards). `navarch server`
//! runs on the bridge's address; `navarch agent` runs inside each host namespace and joins
//! with a short-lived join token, gets its node credential and pod CIDR, shows up Ready, and
//! runs the pods scheduled to it. Prints the time to join.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use navarch_e2e::{Navarch, eventually, is_root, navarch_bin};

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A bridge in the root namespace and, per host, a namespace with a veth on it; removed on
/// drop (even on a panic).
struct Hosts {
    bridge: String,
    namespaces: Vec<String>,
}

impl Hosts {
    /// `10.<octet>.0.1/24` on the bridge; host `i` gets `10.<octet>.0.<i + 2>`.
    fn create(tag: &str, octet: u32, count: usize) -> Self {
        let bridge = format!("nvh{tag}");
        let mut hosts = Self {
            bridge: bridge.clone(),
            namespaces: Vec::new(),
        };
        assert!(ip(&["link", "add", &bridge, "type", "bridge"]));
        assert!(ip(&[
            "addr",
            "add",
            &format!("10.{octet}.0.1/24"),
            "dev",
            &bridge
        ]));
        assert!(ip(&["link", "set", &bridge, "up"]));
        for i in 0..count {
            let ns = format!("nvh{tag}-{i}");
            let (outside, inside) = (format!("nvh{tag}o{i}"), format!("nvh{tag}i{i}"));
            assert!(ip(&["netns", "add", &ns]));
            hosts.namespaces.push(ns.clone());
            assert!(ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside
            ]));
            assert!(ip(&["link", "set", &outside, "master", &bridge, "up"]));
            assert!(ip(&["link", "set", &inside, "netns", &ns]));
            let addr = format!("10.{octet}.0.{}/24", i + 2);
            for args in [
                vec!["addr", "add", addr.as_str(), "dev", inside.as_str()],
                vec!["link", "set", inside.as_str(), "up"],
                vec!["link", "set", "lo", "up"],
                vec!["route", "add", "default", "via", &format!("10.{octet}.0.1")],
            ] {
                let mut all = vec!["-n", ns.as_str()];
                all.extend(args.iter().map(|s| &**s));
                assert!(ip(&all), "ip {all:?}");
            }
        }
        hosts
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (i, ns) in self.namespaces.iter().enumerate() {
            // Whatever still runs in the host (process-runtime containers outlive their
            // agent, as on a real machine) would keep the namespace and its veth alive.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            ip(&["netns", "del", ns]);
            let tag = self.bridge.trim_start_matches("nvh");
            ip(&["link", "del", &format!("nvh{tag}o{i}")]);
        }
        ip(&["link", "del", &self.bridge]);
    }
}

/// `navarch agent` inside a host namespace; killed on drop.
struct HostAgent(Child);

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn agents_on_other_hosts_join_with_a_token_and_run_pods() {
    if !is_root() {
        eprintln!("SKIPPED multi-node join: network namespaces need root");
        return;
    }
    let tag = format!("{:04x}", std::process::id() & 0xffff);
    // 10.20-24 (hosts) and 10.25-29 (pods): ranges no other test uses, so no other test's
    // Service rules match this bridge.
    let octet = 20 + std::process::id() % 5;
    let hosts = Hosts::create(&tag, octet, 2);
    let server_ip = format!("10.{octet}.0.1");
    let n = Navarch::server_with_args(&[
        "--grpc-listen",
        &format!("{server_ip}:0"),
        "--api-listen",
        &format!("{server_ip}:0"),
        "--cluster-cidr",
        &format!("10.{}.0.0/16", octet + 5),
    ])
    .unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let token = n.create_join_token("10m");

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut agents = Vec::new();
    for (i, ns) in hosts.namespaces.iter().enumerate() {
        let name = format!("host-{i}");
        let data = dir.path().join(&name);
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(navarch_bin())
            .args(["agent", "--gateway", &n.grpc, "--ca-file"])
            .arg(&n.ca_file)
            .args(["--join-token", &token, "--runtime", "process"])
            .args(["--node-name", &name, "--data-dir"])
            .arg(&data)
            .args(["--telemetry-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        agents.push(HostAgent(child));
    }
    let ready = |node: &str| {
        k.run(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.spec.podCIDR} {.status.addresses[?(@.type==\"InternalIP\")].address}",
        ])
        .stdout
    };
    for i in 0..2 {
        let node = format!("host-{i}");
        let seen = eventually(&format!("{node} joins"), Duration::from_secs(60), || {
            let line = ready(&node);
            line.starts_with("True ").then_some(line)
        });
        // Its own address (from its namespace) and a pod CIDR from the cluster range.
        let fields: Vec<&str> = seen.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{seen}");
        assert!(
            fields[1].starts_with(&format!("10.{}.", octet + 5)),
            "{seen}"
        );
        assert_eq!(fields[2], format!("10.{octet}.0.{}", i + 2), "{seen}");
    }
    let joined = started.elapsed();
    println!(
        "two hosts joined (token -> credential -> Ready) in {:.2} s",
        joined.as_secs_f64()
    );
    // Each runs as itself.
    for i in 0..2 {
        let cert =
            std::fs::read_to_string(dir.path().join(format!("host-{i}/pki/node.crt"))).unwrap();
        let subject = navarch_pki::subject(&navarch_pki::pem_to_der(&cert).unwrap()).unwrap();
        assert_eq!(subject.common_name, format!("system:node:host-{i}"));
    }

    // Pods scheduled onto each host run there.
    let manifest = k.file(
        "spread.yaml",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 4
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}
      containers:
      - {name: main, image: busybox, command: [sleep, "3600"]}
"#,
    );
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    k.ok(&["rollout", "status", "deployment/spread", "--timeout=60s"]);
    let nodes = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=spread",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    for i in 0..2 {
        assert_eq!(
            nodes
                .split_whitespace()
                .filter(|n| *n == format!("host-{i}"))
                .count(),
            2,
            "{nodes}"
        );
    }
    // The pods go with their Deployment (the agents stop their processes) before the hosts do.
    k.ok(&["delete", "deployment", "spread", "--wait=false"]);
    eventually("the pods are gone", Duration::from_secs(30), || {
        k.ok(&["get", "pods", "-l", "app=spread", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    drop(agents);
    drop(hosts);
}
