//! ConfigMap, Secret, downward API and projected volumes on real containers: `navarch up
//! --runtime runc` (no service proxy, so it runs beside the services test), a pod reading
//! them through `kubectl exec`, a ConfigMap change reaching the running container, modes
//! and read-only mounts, and a pod waiting for a missing ConfigMap until it exists; and a
//! `hostPort` (the CNI `portmap` plugin) reachable on the node's address, its rules gone with
//! the pod.
//!
//! Skipped (with a message) only when not root or runc is missing.

use std::process::Command;
use std::time::{Duration, Instant};

use navarch_e2e::images::{Registry, push_busybox};
use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use navarch_e2e::runc::RuncNode;
use navarch_e2e::{eventually, has, is_root};

const OBJECTS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  app.conf: "version=1"
  mode: "fast"
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: s3cret
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
  labels: {app: reader}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: sec, mountPath: /etc/creds}
    - {name: info, mountPath: /etc/info}
    - {name: proj, mountPath: /etc/proj}
  volumes:
  - name: cfg
    configMap: {name: app}
  - name: sec
    secret: {secretName: creds, defaultMode: 0400}
  - name: info
    downwardAPI:
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
  - name: proj
    projected:
      sources:
      - configMap:
          name: app
          items: [{key: app.conf, path: conf/app.conf}]
      - secret:
          name: creds
"#;

const HOSTPORT: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: [httpd, -f, -p, "8080", -h, /www]
    ports:
    - {containerPort: 8080, hostPort: HOSTPORT}
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
"#;

fn http_get(addr: &str) -> std::io::Result<String> {
    navarch_e2e::http_get(addr, "/").map(|(_, body)| body)
}

fn nat_rules() -> String {
    let out = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .expect("iptables");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The portmap plugin's shared chains stay after its last pod (as with any CNI runtime):
/// the test removes them when no other pod's rules are left in them.
fn remove_portmap_chains() {
    if nat_rules().contains("CNI-DN-") {
        return;
    }
    for (chain, from) in [
        ("CNI-HOSTPORT-DNAT", &["PREROUTING", "OUTPUT"][..]),
        ("CNI-HOSTPORT-SETMARK", &[][..]),
        ("CNI-HOSTPORT-MASQ", &["POSTROUTING"][..]),
    ] {
        for parent in from {
            for line in nat_rules().lines() {
                if line.starts_with(&format!("-A {parent} "))
                    && line.contains(&format!("-j {chain}"))
                {
                    // `-S` prints the rule shell-quoted (comments have spaces).
                    let rule = line.trim_start_matches("-A ");
                    let _ = Command::new("sh")
                        .args(["-c", &format!("iptables -t nat -D {rule}")])
                        .status();
                }
            }
        }
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-F", chain])
            .status();
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-X", chain])
            .status();
    }
}

const WAITER: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: waiter
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts:
    - {name: late, mountPath: /etc/late}
  volumes:
  - name: late
    configMap: {name: late}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_and_host_ports_in_runc_pods() {
    if !is_root() || !has("runc") {
        eprintln!("SKIPPED volumes e2e: needs root and runc (see .ci/test.sh)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(work.path()).unwrap();
    let image = registry.image("test/busybox:1");
    push_busybox(&image).await.unwrap();
    let octet = 100 + std::process::id() % 20;
    let mut node = RuncNode::up("vol", octet, octet + 20, &[]).unwrap();
    let navarch = &mut node.navarch;
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let objects = k.file("objects.yaml", &OBJECTS.replace("IMAGE", &image));
    k.ok(&["apply", "-f", objects.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/reader",
        "--timeout=60s",
    ]);
    let cat = |path: &str| k.ok(&["exec", "reader", "--", "cat", path]);
    assert_eq!(cat("/etc/app/app.conf"), "version=1");
    assert_eq!(cat("/etc/app/mode"), "fast");
    assert_eq!(cat("/etc/creds/password"), "s3cret");
    assert_eq!(cat("/etc/info/name"), "reader");
    assert_eq!(cat("/etc/info/labels"), "app=\"reader\"\n");
    assert_eq!(cat("/etc/proj/conf/app.conf"), "version=1");
    assert_eq!(cat("/etc/proj/password"), "s3cret");
    let ls = k.ok(&["exec", "reader", "--", "ls", "-lL", "/etc/creds/password"]);
    assert!(ls.starts_with("-r--------"), "defaultMode 0400: {ls}");
    let write = k.run(&["exec", "reader", "--", "sh", "-c", "echo x > /etc/app/new"]);
    assert!(!write.ok, "a ConfigMap volume is read-only: {write:?}");

    // A change to the ConfigMap reaches the running container.
    let changed = Instant::now();
    k.ok(&[
        "patch",
        "configmap",
        "app",
        "--type=merge",
        "-p",
        r#"{"data":{"app.conf":"version=2"}}"#,
    ]);
    eventually(
        "the new ConfigMap contents",
        Duration::from_secs(30),
        || (cat("/etc/app/app.conf") == "version=2").then_some(()),
    );
    eprintln!(
        "a ConfigMap change is in the container {:?} after the patch",
        changed.elapsed()
    );
    assert_eq!(cat("/etc/proj/conf/app.conf"), "version=2");

    // A missing ConfigMap: the pod waits (ContainerCreating, the reason why), then starts.
    let waiter = k.file("waiter.yaml", &WAITER.replace("IMAGE", &image));
    k.ok(&["apply", "-f", waiter.to_str().unwrap()]);
    let message = eventually(
        "waiter waiting for its ConfigMap",
        Duration::from_secs(30),
        || {
            let reason = k.ok(&[
            "get",
            "pod",
            "waiter",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        ]);
            let (reason, message) = reason.split_once('|')?;
            (reason == "ContainerCreating" && !message.is_empty()).then(|| message.to_string())
        },
    );
    assert!(
        message.contains(r#"configmap "late" not found"#),
        "{message}"
    );
    k.ok(&["create", "configmap", "late", "--from-literal=k=v"]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/waiter",
        "--timeout=60s",
    ]);
    assert_eq!(k.ok(&["exec", "waiter", "--", "cat", "/etc/late/k"]), "v");

    // A hostPort on the node's address (127.0.0.1 here), through portmap's DNAT.
    let host_port = navarch_e2e::free_port().unwrap();
    let web = k.file(
        "web.yaml",
        &HOSTPORT
            .replace("IMAGE", &image)
            .replace("HOSTPORT", &host_port.to_string()),
    );
    k.ok(&["apply", "-f", web.to_str().unwrap()]);
    k.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"]);
    let body = eventually("the hostPort answering", Duration::from_secs(10), || {
        http_get(&format!("127.0.0.1:{host_port}")).ok()
    });
    assert_eq!(body, "hello from navarch\n");
    assert!(nat_rules().contains(&format!("--dport {host_port}")));

    k.ok(&[
        "delete",
        "pod",
        "reader",
        "waiter",
        "web",
        "--wait=true",
        "--timeout=60s",
    ]);
    eventually("the hostPort's rules gone", Duration::from_secs(10), || {
        (!nat_rules().contains(&format!("--dport {host_port}"))).then_some(())
    });
    remove_portmap_chains();
    let status = navarch.stop().unwrap();
    assert!(status.success(), "{status}: {}", navarch.log());
    drop(registry);
}
