//! Autoscaling on real containers: `navarch up --runtime runc`, a Deployment whose container
//! burns CPU while a file exists (requests 100m, limit 200m), `kubectl autoscale` by the
//! oldest kubectl (an autoscaling/v1 HPA) at 50 %; the load on → the HPA scales up to its
//! bound within a few sync periods; `kubectl top pods` shows the burning pod at its CPU limit
//! (measured from its cgroup); the load off → back to one replica after the (shortened)
//! stabilization window. `kubectl top nodes` and `kubectl get hpa` show what users expect.
//!
//! Skipped (with a message) only when not root or runc is missing.

use std::time::{Duration, Instant};

use navarch_e2e::images::{Registry, push_busybox};
use navarch_e2e::kubectl::{KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl};
use navarch_e2e::runc::RuncNode;
use navarch_e2e::{eventually, has, is_root};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels: {app: burn}
  template:
    metadata:
      labels: {app: burn}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: IMAGE
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "while true; do if [ -f /tmp/burn ]; then :; else sleep 1; fi; done"]
        resources:
          requests: {cpu: 100m, memory: 16Mi}
          limits: {cpu: 200m}
"#;

/// Millicores from a `kubectl top` cell (`187m`, `1`).
fn millicores(cell: &str) -> i64 {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(-1),
        None => cell.parse::<i64>().map(|c| c * 1000).unwrap_or(-1),
    }
}

/// `kubectl top pods --no-headers`: pod name → millicores.
fn top_pods(k: &Kubectl) -> Vec<(String, i64)> {
    let run = k.run(&["top", "pods", "--no-headers"]);
    if !run.ok {
        return vec![];
    }
    run.stdout
        .lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some((cols.next()?.to_string(), millicores(cols.next()?)))
        })
        .collect()
}

fn replicas(k: &Kubectl) -> i64 {
    k.ok(&["get", "deploy", "burn", "-o", "jsonpath={.spec.replicas}"])
        .parse()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_cpu_burning_deployment_up_and_back_down() {
    if !is_root() || !has("runc") {
        eprintln!("SKIPPED autoscaling e2e: needs root and runc (see .ci/test.sh)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(work.path()).unwrap();
    let image = registry.image("test/busybox:1");
    push_busybox(&image).await.unwrap();
    let octet = 140 + std::process::id() % 10;
    let mut node = RuncNode::up(
        "hpa",
        octet,
        octet + 10,
        &[
            "--metrics-interval",
            "2s",
            "--horizontal-pod-autoscaler-sync-period",
            "2s",
            "--horizontal-pod-autoscaler-downscale-stabilization",
            "20s",
            "--horizontal-pod-autoscaler-cpu-initialization-period",
            "0s",
        ],
    )
    .unwrap();
    let navarch = &mut node.navarch;
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let old = Kubectl::new(KUBECTL_OLDEST, &navarch.kubeconfig).unwrap();
    let manifest = k.file("burn.yaml", &DEPLOYMENT.replace("IMAGE", &image));
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Available",
        "deploy/burn",
        "--timeout=60s",
    ]);
    let pod = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=burn",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);

    // Metrics flow: the node and the idle pod show up in `kubectl top`.
    let nodes = eventually("kubectl top nodes", Duration::from_secs(30), || {
        let r = k.run(&["top", "nodes"]);
        (r.ok && r.stdout.contains("CPU(cores)")).then_some(r.stdout)
    });
    eprintln!("kubectl top nodes:\n{nodes}");
    let idle = eventually(
        "the idle pod in kubectl top",
        Duration::from_secs(30),
        || {
            top_pods(&k)
                .into_iter()
                .find(|(p, _)| *p == pod)
                .map(|(_, m)| m)
        },
    );
    assert!(idle < 50, "an idle pod uses {idle}m");

    // kubectl 1.27 creates autoscaling/v1 HPAs.
    old.ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=4",
    ]);
    let loaded = Instant::now();
    k.ok(&["exec", &pod, "--", "touch", "/tmp/burn"]);
    let burning = eventually(
        "the burning pod at its CPU limit in kubectl top",
        Duration::from_secs(30),
        || {
            top_pods(&k)
                .into_iter()
                .find(|(p, m)| *p == pod && *m > 120)
                .map(|(_, m)| m)
        },
    );
    eprintln!("kubectl top pods: the burning pod uses {burning}m (limit 200m)");
    assert!(
        (120..=230).contains(&burning),
        "a pod limited to 200m burns {burning}m"
    );
    eventually("scaled up to 4", Duration::from_secs(60), || {
        (replicas(&k) == 4).then_some(())
    });
    let up = loaded.elapsed();
    eprintln!("scaled 1 -> 4 replicas {up:?} after the load started (sync period 2 s)");
    let hpa = k.ok(&["get", "hpa", "burn"]);
    eprintln!("{hpa}");
    assert!(hpa.contains("Deployment/burn"), "{hpa}");
    assert!(hpa.contains("/50%"), "{hpa}");
    let old_hpa = old.ok(&[
        "get",
        "hpa.v1.autoscaling",
        "burn",
        "-o",
        "jsonpath={.spec.targetCPUUtilizationPercentage}",
    ]);
    assert_eq!(old_hpa, "50");
    let describe = k.ok(&["describe", "hpa", "burn"]);
    assert!(describe.contains("SuccessfulRescale"), "{describe}");
    assert!(describe.contains("New size: 4"), "{describe}");

    // Load off: back to one replica, not before the stabilization window.
    let unloaded = Instant::now();
    k.ok(&["exec", &pod, "--", "rm", "-f", "/tmp/burn"]);
    eventually("scaled down to 1", Duration::from_secs(90), || {
        (replicas(&k) == 1).then_some(())
    });
    let down = unloaded.elapsed();
    eprintln!("scaled 4 -> 1 replica {down:?} after the load stopped (stabilization 20 s)");
    assert!(
        down >= Duration::from_secs(15),
        "scaled down after {down:?}, before the 20 s window"
    );
    let status = k.ok(&[
        "get",
        "hpa",
        "burn",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"ScalingActive\")].status}",
    ]);
    assert_eq!(status, "True");

    k.ok(&["delete", "hpa", "burn"]);
    k.ok(&["delete", "deploy", "burn", "--wait=true", "--timeout=60s"]);
    eventually("pods gone", Duration::from_secs(60), || {
        k.ok(&["get", "pods", "-o", "name"])
            .is_empty()
            .then_some(())
    });
    navarch.stop().unwrap();
}
