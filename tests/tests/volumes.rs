//! ConfigMap, Secret, downward API and projected volumes on real containers: `navarch up
//! --runtime runc` (no service proxy, so it runs beside the services test), a pod reading
//! them through `kubectl exec`, a ConfigMap change reaching the running container, modes
//! and read-only mounts, and a pod waiting for a missing ConfigMap until it exists.
//!
//! Skipped (with a message) only when not root or runc is missing.

use std::process::Command;
use std::time::{Duration, Instant};

use navarch_e2e::Navarch;
use navarch_e2e::images::{Registry, push_busybox};
use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use navarch_e2e::runc::RuncLeftovers;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

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
async fn config_map_secret_and_downward_volumes_in_runc_pods() {
    if !is_root() || !has_runc() {
        eprintln!("SKIPPED volumes e2e: needs root and runc (see .ci/test.sh)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(work.path()).unwrap();
    let image = registry.image("test/busybox:1");
    push_busybox(&image).await.unwrap();
    let tag = format!("{:04x}", std::process::id() & 0xffff);
    let bridge = format!("nvv{tag}");
    let cgroup_parent = format!("navarch-vol-{tag}");
    let octet = 100 + std::process::id() % 20;
    let navarch = Navarch::up_with_args(&[
        "--runtime",
        "runc",
        "--proxy-mode",
        "none",
        "--node-ip",
        "127.0.0.1",
        "--cni-bridge",
        &bridge,
        "--cgroup-parent",
        &cgroup_parent,
        "--cluster-cidr",
        &format!("10.{octet}.0.0/16"),
        "--service-cidr",
        &format!("10.{}.0.0/16", octet + 20),
    ])
    .unwrap();
    let _leftovers = RuncLeftovers {
        state: navarch.data_dir.join("agent/runc/state"),
        dir: navarch.data_dir.clone(),
        bridge,
        cgroup_parent,
    };
    let mut navarch = navarch;
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

    k.ok(&[
        "delete",
        "pod",
        "reader",
        "waiter",
        "--wait=true",
        "--timeout=60s",
    ]);
    let status = navarch.stop().unwrap();
    assert!(status.success(), "{status}: {}", navarch.log());
    drop(registry);
}

fn has_runc() -> bool {
    Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .is_ok_and(|o| o.status.success())
}
