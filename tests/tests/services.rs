//! Services end to end on real containers: `navarch up --runtime runc` (the node's own
//! service proxy programs iptables in this machine's network namespace), a Deployment of
//! three `busybox httpd` pods from a local registry, and a ClusterIP + NodePort Service on
//! them, driven with the real kubectl. The host reaches the ClusterIP (nat OUTPUT) and the
//! NodePort on 127.0.0.1, traffic spreads over all three pods, endpoint changes follow
//! scaling, a Service without endpoints refuses at once, a pod reaches the Service (and
//! itself through it: hairpin), and stopping navarch removes every `NAVARCH-` chain.
//!
//! Cluster DNS in the same cluster: a client pod (our `podclient`, resolving through the C
//! library and the pod's `resolv.conf`) reaches `http://web.default.svc.cluster.local` and
//! `http://web` on all three pods, resolves a headless Service to its pods, StatefulSet pods
//! by hostname, and a name outside the zone through the node's upstream (a fake resolver
//! of the test's own on 127.0.0.1).
//!
//! Skipped (with a message) only when not root or runc is missing; the rest is installed by
//! `.ci/test.sh`. Only loopback addresses, and a bridge, subnets and chains of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use navarch_e2e::images::{Registry, program_files, push_busybox_with};
use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use navarch_e2e::runc::RuncNode;
use navarch_e2e::{eventually, has, is_root};

/// `GET /` at `addr`: the body, or why not.
fn http_get(addr: SocketAddr) -> Result<String, std::io::Error> {
    http_get_path(addr, "/")
}

fn http_get_path(addr: SocketAddr, path: &str) -> Result<String, std::io::Error> {
    navarch_e2e::http_get(&addr.to_string(), path).map(|(_, body)| body)
}

fn navarch_chains() -> String {
    let mut all = String::new();
    for table in ["nat", "filter"] {
        let out = Command::new("iptables")
            .args(["-t", table, "-S"])
            .output()
            .expect("iptables");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("NAVARCH-") {
                all.push_str(line);
                all.push('\n');
            }
        }
    }
    all
}

/// A fake upstream resolver on 127.0.0.1: every A question gets 192.0.2.7 (a documentation
/// address), others an empty answer; the names asked are recorded.
fn fake_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            // The question's name: labels from offset 12 up to the root label.
            let (mut at, mut labels) = (12, vec![]);
            while at < n && q[at] != 0 {
                let len = q[at] as usize;
                let Some(label) = q.get(at + 1..at + 1 + len) else {
                    break;
                };
                labels.push(String::from_utf8_lossy(label).to_string());
                at += 1 + len;
            }
            let end = at + 5;
            if end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[at + 1], q[at + 2]]);
            log.lock().unwrap().push(labels.join("."));
            let answers = u16::from(qtype == 1);
            let mut reply = vec![q[0], q[1], 0x81, 0x80, 0, 1];
            reply.extend(answers.to_be_bytes());
            reply.extend([0, 0, 0, 0]);
            reply.extend(&q[12..end]);
            if answers == 1 {
                reply.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
            }
            let _ = sock.send_to(&reply, from);
        }
    });
    (addr, asked)
}

const DNS_MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web-headless
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector: {app: db}
  ports:
  - {name: pg, port: 5432}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: IMAGE
        imagePullPolicy: IfNotPresent
        command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
"#;

/// `podclient get URL COUNT` in the client pod: how many answers came from whom.
fn fetch_from_client(k: &Kubectl, url: &str, count: usize) -> BTreeMap<String, usize> {
    let out = k.ok(&[
        "exec",
        "client",
        "--",
        "podclient",
        "get",
        url,
        &count.to_string(),
    ]);
    let mut seen = BTreeMap::new();
    for line in out.lines() {
        *seen.entry(line.trim().to_string()).or_default() += 1;
    }
    seen
}

/// `podclient resolve NAME` in the client pod: the addresses, or `None` if it fails.
fn resolve_in_client(k: &Kubectl, name: &str) -> Option<BTreeSet<String>> {
    let run = k.run(&["exec", "client", "--", "podclient", "resolve", name]);
    run.ok
        .then(|| run.stdout.split_whitespace().map(str::to_string).collect())
}

const MANIFEST: &str = r#"
# The Services first: pods started after them get their environment variables.
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  clusterIP: VIP
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  selector: {app: nobody}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: IMAGE
        imagePullPolicy: IfNotPresent
        # Each pod serves its own name, so the test sees the spread, and keeps asking its
        # own Service, recording who answered in /www/seen (pod to Service, and hairpin).
        command:
        - sh
        - -c
        - |
          hostname > /www/index.html
          env > /www/env
          (while true; do wget -q -O - http://VIP/ >> /www/seen 2>/dev/null; sleep 0.3; done) &
          exec httpd -f -p 8080 -h /www
        ports:
        - containerPort: 8080
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_and_node_port_reach_runc_pods_and_follow_endpoints() {
    if !is_root() {
        eprintln!("SKIPPED services e2e: needs root (runc, iptables, network namespaces)");
        return;
    }
    if !has("runc") || !has("iptables-restore") {
        eprintln!("SKIPPED services e2e: runc or iptables missing (see .ci/test.sh)");
        return;
    }
    assert!(
        navarch_chains().is_empty(),
        "NAVARCH- chains exist before the test (another proxy on this machine?)"
    );
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(work.path()).unwrap();
    let image = registry.image("test/busybox:1");
    let client_files = program_files(
        std::path::Path::new(env!("CARGO_BIN_EXE_podclient")),
        "bin/podclient",
    )
    .unwrap();
    push_busybox_with(&image, &client_files).await.unwrap();
    let (upstream, asked_upstream) = fake_upstream();

    let octet = 160 + (std::process::id() % 40);
    // Dropped in this order even on a panic: navarch stops (its proxy removes its chains)
    // before its containers, mounts and bridge go.
    let mut up = RuncNode::up_with_proxy(
        "svc",
        octet,
        octet + 40,
        &["--dns-upstream", &upstream.to_string()],
    )
    .unwrap();
    let navarch = &mut up.navarch;
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    // A requested ClusterIP (inside the service CIDR) the pods can be told in advance.
    let requested_vip = format!("10.{}.0.100", octet + 40);
    let manifest = k.file(
        "web.yaml",
        &MANIFEST
            .replace("IMAGE", &image)
            .replace("VIP", &requested_vip),
    );
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);

    let cluster_ip = k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port = k.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let vip: SocketAddr = format!("{}:80", cluster_ip.trim()).parse().unwrap();
    let np: SocketAddr = format!("127.0.0.1:{}", node_port.trim()).parse().unwrap();
    let pods: BTreeSet<String> = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");

    // The ClusterIP from the host spreads over every pod.
    let seen = eventually(
        "all three pods behind the ClusterIP",
        Duration::from_secs(20),
        || {
            let mut seen = BTreeSet::new();
            for _ in 0..60 {
                if let Ok(body) = http_get(vip) {
                    seen.insert(body.trim().to_string());
                }
            }
            (seen == pods).then_some(seen)
        },
    );
    assert_eq!(seen, pods);
    // The NodePort on the node's address.
    let body = eventually("the NodePort", Duration::from_secs(10), || {
        http_get(np).ok()
    });
    assert!(pods.contains(body.trim()), "{body:?} from {np}");

    assert_eq!(vip.ip().to_string(), requested_vip);
    // From inside the pods: each reaches the Service, and through it itself (hairpin).
    let pod_ips: Vec<String> = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pod_ips.len(), 3, "{pod_ips:?}");
    for ip in &pod_ips {
        let at: SocketAddr = format!("{ip}:8080").parse().unwrap();
        let me = http_get(at).unwrap().trim().to_string();
        let env = http_get_path(at, "/env").unwrap();
        for want in [
            format!("WEB_SERVICE_HOST={requested_vip}"),
            "WEB_SERVICE_PORT=80".to_string(),
            format!("WEB_PORT_80_TCP=tcp://{requested_vip}:80"),
            format!("KUBERNETES_SERVICE_HOST=10.{}.0.1", octet + 40),
            "KUBERNETES_SERVICE_PORT=443".to_string(),
        ] {
            assert!(
                env.lines().any(|l| l == want),
                "{want} in {me}'s environment:\n{env}"
            );
        }
        eventually(
            &format!("{me} reaching itself through the Service"),
            Duration::from_secs(30),
            || {
                let seen = http_get_path(at, "/seen").ok()?;
                seen.lines().any(|l| l.trim() == me).then_some(())
            },
        );
    }

    // Cluster DNS, from a client pod.
    let dns = k.file("dns.yaml", &DNS_MANIFEST.replace("IMAGE", &image));
    k.ok(&["apply", "-f", dns.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=60s",
    ]);
    let resolv = k.ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    let lines: Vec<&str> = resolv.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("nameserver 10.{octet}.")) && l.ends_with(".1")),
        "the node DNS on the pod bridge's gateway: {resolv}"
    );
    assert!(lines.contains(&"options ndots:5"), "{resolv}");
    let by_fqdn = eventually(
        "the Service by its DNS name from a pod",
        Duration::from_secs(20),
        || {
            let seen = fetch_from_client(&k, "http://web.default.svc.cluster.local/", 300);
            (seen.keys().cloned().collect::<BTreeSet<_>>() == pods).then_some(seen)
        },
    );
    for (pod, n) in &by_fqdn {
        assert!(*n >= 50, "{pod} answered {n} of 300: {by_fqdn:?}");
    }
    let by_short = fetch_from_client(&k, "http://web/", 30);
    assert!(
        by_short.keys().all(|p| pods.contains(p)) && by_short.values().sum::<usize>() == 30,
        "http://web by the short name: {by_short:?}"
    );
    let want_ips: BTreeSet<String> = pod_ips.iter().cloned().collect();
    assert_eq!(
        resolve_in_client(&k, "web-headless"),
        Some(want_ips),
        "a headless Service resolves to its ready pods"
    );
    k.ok(&["rollout", "status", "statefulset/db", "--timeout=120s"]);
    for pod in ["db-0", "db-1"] {
        let ip = k.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
        let want = Some(BTreeSet::from([ip.trim().to_string()]));
        eventually(
            &format!("{pod}.db resolving"),
            Duration::from_secs(10),
            || (resolve_in_client(&k, &format!("{pod}.db")) == want).then_some(()),
        );
        assert_eq!(
            resolve_in_client(&k, &format!("{pod}.db.default.svc.cluster.local")),
            want
        );
    }
    assert_eq!(
        resolve_in_client(&k, "nothing-here.default.svc.cluster.local"),
        None,
        "an unknown name in the zone does not resolve"
    );
    assert_eq!(
        resolve_in_client(&k, "outside.example"),
        Some(BTreeSet::from(["192.0.2.7".to_string()])),
        "a name outside the zone goes to the node's upstream"
    );
    assert!(
        asked_upstream
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "outside.example"),
        "the fake upstream was asked: {:?}",
        asked_upstream.lock().unwrap()
    );
    assert!(
        !asked_upstream
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.ends_with("cluster.local")),
        "cluster names never leave the node: {:?}",
        asked_upstream.lock().unwrap()
    );

    // Scale to one: within a second of the endpoints changing, only it answers.
    k.ok(&["scale", "deployment/web", "--replicas=1"]);
    let scaled = Instant::now();
    let (to_one, answering) = eventually(
        "one pod answering the client pod",
        Duration::from_secs(10),
        || {
            let seen = fetch_from_client(&k, "http://web.default.svc.cluster.local/", 20);
            (seen.len() == 1 && !seen.keys().any(|p| p.starts_with("ERR"))).then(|| {
                (
                    scaled.elapsed(),
                    seen.into_keys().next().unwrap_or_default(),
                )
            })
        },
    );
    eprintln!(
        "scaled to one: every request from the pod reaches {answering} {to_one:?} after the scale"
    );
    assert!(to_one < Duration::from_secs(2), "{to_one:?}");
    let survivor = eventually("one pod left", Duration::from_secs(60), || {
        let names = k.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        let names: Vec<&str> = names.split_whitespace().collect();
        (names.len() == 1).then(|| names[0].to_string())
    });
    eventually("only the survivor answers", Duration::from_secs(10), || {
        let bodies: BTreeSet<String> = (0..20)
            .filter_map(|_| http_get(vip).ok())
            .map(|b| b.trim().to_string())
            .collect();
        (bodies.len() == 1 && bodies.contains(&survivor)).then_some(())
    });
    assert_eq!(answering, survivor);

    // No endpoints: refused at once, not a hang.
    let nobody = k.ok(&["get", "svc", "nobody", "-o", "jsonpath={.spec.clusterIP}"]);
    let nobody: SocketAddr = format!("{}:80", nobody.trim()).parse().unwrap();
    let started = Instant::now();
    let err = http_get(nobody).expect_err("no endpoints");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{err} after {:?}",
        started.elapsed()
    );

    // Deleting the Service takes its rules away.
    k.ok(&["delete", "svc", "web"]);
    // Refused at once (the service CIDR's reject rule), not routed off the node to hang.
    eventually("the ClusterIP is gone", Duration::from_secs(5), || {
        let started = Instant::now();
        http_get(vip)
            .is_err_and(|e| {
                e.kind() == std::io::ErrorKind::ConnectionRefused
                    && started.elapsed() < Duration::from_millis(500)
            })
            .then_some(())
    });
    assert!(navarch_chains().contains("NAVARCH-SERVICES"));
    let gone = eventually(
        "web gone from the pod's view",
        Duration::from_secs(10),
        || {
            let started = Instant::now();
            let seen = fetch_from_client(&k, "http://web.default.svc.cluster.local/", 1);
            seen.keys()
                .all(|l| l.starts_with("ERR"))
                .then(|| (started.elapsed(), seen))
        },
    );
    eprintln!(
        "deleted Service, from the pod: {:?} in {:?}",
        gone.1, gone.0
    );
    assert!(
        gone.0 < Duration::from_secs(2),
        "failing takes {:?}",
        gone.0
    );

    // Clean stop: pods go first (so no container outlives the test), then every chain.
    k.ok(&[
        "delete",
        "deployment/web",
        "statefulset/db",
        "pod/client",
        "--wait=true",
        "--timeout=60s",
    ]);
    eventually("pods gone", Duration::from_secs(60), || {
        k.ok(&["get", "pods", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    let status = navarch.stop().unwrap();
    assert!(status.success(), "{status}: {}", navarch.log());
    assert_eq!(
        navarch_chains(),
        "",
        "every NAVARCH- chain and jump removed"
    );
    drop(registry);
}
