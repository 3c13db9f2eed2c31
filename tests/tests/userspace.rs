//! The userspace service proxy end to end: `navarch up --runtime process` (pods as host
//! processes, no iptables) serves each ClusterIP on its loopback stand-in (`127.64.0.0/10`,
//! same offset in the service CIDR). Three `busybox httpd` pods, each on its own port
//! behind one named `targetPort`; the test (on the host, like the pods) sees the spread,
//! ClientIP affinity, endpoint changes, a refusal without endpoints, the stand-in address
//! in pods' service environment variables, and nothing left listening after a clean stop.
//!
//! Pods of the process runtime have the node's address, and Kubernetes refuses loopback
//! endpoint addresses: the node gets one of the test's own, `10.N.255.1/32` added to `lo`
//! (so nothing leaves the machine) and removed at the end. That step needs root.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use navarch_e2e::{Navarch, eventually, free_port, is_root};

fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string())
}

fn spread(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let body = http_get(addr).unwrap_or_else(|e| format!("ERR {e}"));
        *seen.entry(body).or_default() += 1;
    }
    seen
}

fn pod(name: &str, dir: &std::path::Path, ip: &str, port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: busybox
    command: [busybox, httpd, -f, -p, "{ip}:{port}", -h, "{dir}"]
    ports:
    - {{name: http, containerPort: {port}}}
    readinessProbe:
      tcpSocket: {{port: http}}
      periodSeconds: 1
---
"#,
        dir = dir.display()
    )
}

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: NET.0.50
  selector: {app: web}
  ports:
  - {port: 8080, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: sticky
spec:
  clusterIP: NET.0.52
  selector: {app: web}
  sessionAffinity: ClientIP
  ports:
  - {port: 8080, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  clusterIP: NET.0.51
  selector: {app: nobody}
  ports:
  - {port: 8080}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "env; sleep 3600"]
"#;

/// An address on `lo` for the test's node, removed on drop.
struct NodeAddress(String);

impl NodeAddress {
    fn add(cidr: &str) -> Self {
        let ok = std::process::Command::new("ip")
            .args(["addr", "add", cidr, "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip addr add {cidr} dev lo");
        Self(cidr.to_string())
    }
}

impl Drop for NodeAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &self.0, "dev", "lo"])
            .status();
    }
}

#[test]
fn process_pods_reach_cluster_ips_through_the_userspace_proxy() {
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED userspace proxy e2e: /bin/busybox missing (see .ci/test.sh)");
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED userspace proxy e2e: adding the node's test address needs root");
        return;
    }
    let octet = 40 + std::process::id() % 40;
    let net = format!("10.{octet}");
    let node_ip = format!("{net}.255.1");
    let _address = NodeAddress::add(&format!("{node_ip}/32"));
    let mut navarch = Navarch::up_with_args(&[
        "--runtime",
        "process",
        "--node-ip",
        &node_ip,
        "--service-cidr",
        &format!("{net}.0.0/16"),
    ])
    .unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut manifest = String::new();
    let names = ["web-0", "web-1", "web-2"];
    for name in names {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("{name}\n")).unwrap();
        manifest.push_str(&pod(name, &dir, &node_ip, free_port().unwrap()));
    }
    manifest.push_str(&SERVICES.replace("NET", &net));
    let file = k.file("web.yaml", &manifest);
    k.ok(&["apply", "-f", file.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "--all",
        "--timeout=60s",
    ]);

    // The stand-in of 10.N.0.50 is 127.64.0.50.
    let web: SocketAddr = "127.64.0.50:8080".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = spread(web, 300);
        if seen.len() == 3 && names.iter().all(|n| seen.contains_key(*n)) {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "all three pods behind {web}: {seen:?}\n{}\n{}",
            k.ok(&["get", "endpointslices", "-o", "yaml"]),
            navarch.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (pod, n) in &seen {
        assert!(*n >= 50, "{pod} answered {n} of 300: {seen:?}");
    }
    // ClientIP affinity: one client, one pod.
    let sticky = spread("127.64.0.52:8080".parse().unwrap(), 30);
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    assert!(names.contains(&sticky.keys().next().unwrap().as_str()));
    // No endpoints: refused at once.
    let started = Instant::now();
    let err = http_get("127.64.0.51:8080".parse().unwrap()).expect_err("no endpoints");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));
    // Pods learn the stand-in from their service environment variables.
    let env = k.ok(&["logs", "client"]);
    for want in [
        "WEB_SERVICE_HOST=127.64.0.50",
        "WEB_SERVICE_PORT=8080",
        "WEB_PORT_8080_TCP=tcp://127.64.0.50:8080",
        "KUBERNETES_SERVICE_HOST=127.64.0.1",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in:\n{env}");
    }

    // An endpoint leaves: the proxy follows.
    let deleted = Instant::now();
    k.ok(&["delete", "pod", "web-2", "--wait=false"]);
    let took = eventually("web-2 out of rotation", Duration::from_secs(10), || {
        let seen = spread(web, 30);
        (!seen.contains_key("web-2") && seen.keys().all(|k| !k.starts_with("ERR")))
            .then(|| deleted.elapsed())
    });
    eprintln!("userspace proxy: a deleted endpoint is out of rotation {took:?} after the delete");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // The last endpoints go: the stand-in refuses.
    k.ok(&["delete", "pod", "web-0", "web-1", "--wait=false"]);
    eventually("web refusing", Duration::from_secs(10), || {
        http_get(web)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
            .then_some(())
    });
    k.ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);

    // Give them endpoints again, then stop: nothing keeps listening.
    let status = navarch.stop().unwrap();
    assert!(status.success(), "{status}: {}", navarch.log());
    assert!(http_get("127.64.0.52:8080".parse().unwrap()).is_err());
}
