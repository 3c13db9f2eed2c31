//! Deploying with Helm (issue 10): the Navarch chart lints and renders (default and HA values,
//! with its values schema), the rendered objects pass `kubectl apply --dry-run=server`
//! against `navarch up`, a real Helm v3 installs, upgrades, rolls back and uninstalls a
//! chart on Navarch (Helm stores releases in Secrets and waits on Deployments), and, with
//! real containers, the chart runs the `navarch` image inside Navarch until its readiness
//! probe passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use navarch_e2e::kubectl::{KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl};
use navarch_e2e::{Navarch, is_root, repo_root};

/// The helm binary: `NAVARCH_HELM`, else what the test command fetched, else `helm`.
fn helm_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NAVARCH_HELM") {
        return PathBuf::from(p);
    }
    let fetched = repo_root().join("target/tools/helm");
    if fetched.exists() {
        return fetched;
    }
    PathBuf::from("helm")
}

/// Helm with its own cache/config/data dirs and `kubeconfig`.
struct Helm {
    dir: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    fn new(kubeconfig: Option<&Path>) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            kubeconfig: kubeconfig.map(Path::to_path_buf),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(helm_bin());
        cmd.args(args)
            .env("HELM_CACHE_HOME", self.dir.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("config"))
            .env("HELM_DATA_HOME", self.dir.path().join("data"));
        if let Some(k) = &self.kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        cmd.output().unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (the test command fetches helm)",
                helm_bin().display()
            )
        })
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "helm {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

fn chart() -> String {
    repo_root().join("charts/navarch").display().to_string()
}

fn ha_values() -> String {
    repo_root()
        .join("charts/navarch/values-ha.yaml")
        .display()
        .to_string()
}

/// The kinds of the objects in a multi-document YAML stream.
fn kinds(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(String::from)
        .collect()
}

#[test]
fn chart_lints_renders_and_refuses_bad_values() {
    let helm = Helm::new(None);
    println!("{}", helm.ok(&["version", "--short"]));
    helm.ok(&["lint", "--strict", &chart()]);
    helm.ok(&["lint", "--strict", &chart(), "-f", &ha_values()]);

    let default = helm.ok(&["template", "nv", &chart(), "--namespace", "navarch"]);
    assert_eq!(
        kinds(&default),
        [
            "ServiceAccount",
            "PersistentVolumeClaim",
            "Service",
            "Deployment"
        ]
    );
    assert!(
        default.contains("type: Recreate"),
        "one server owns the embedded store"
    );
    assert!(default.contains("- --tls-san=nv-navarch.navarch.svc"));
    assert!(default.contains("path: /readyz"));

    let ha = helm.ok(&["template", "nv", &chart(), "-f", &ha_values()]);
    assert_eq!(
        kinds(&ha),
        [
            "PodDisruptionBudget",
            "ServiceAccount",
            "Service",
            "Deployment",
            "ServiceMonitor"
        ]
    );
    assert!(ha.contains("replicas: 3"));
    assert!(ha.contains("--store=tikv://tikv-pd-0.tikv-pd-peer.tikv.svc:2379,"));
    assert!(ha.contains("requiredDuringSchedulingIgnoredDuringExecution"));
    assert!(ha.contains("--cluster-ca-dir=/etc/navarch/ca"));
    assert!(ha.contains("--token-auth-file=/etc/navarch/auth/tokens.csv"));

    // The schema and the chart's own checks refuse what cannot work, saying why.
    let err = helm.fails(&["template", "nv", &chart(), "--set", "server.replicas=two"]);
    assert!(err.contains("server.replicas: Invalid type"), "{err}");
    let err = helm.fails(&[
        "template",
        "nv",
        &chart(),
        "--set",
        "server.store.type=etcd",
    ]);
    assert!(err.contains("server.store.type"), "{err}");
    let err = helm.fails(&["template", "nv", &chart(), "--set", "server.replicas=3"]);
    assert!(err.contains("needs server.store.type=tikv"), "{err}");
    let err = helm.fails(&["template", "nv", &chart(), "--set", "servr.replicas=1"]);
    assert!(err.contains("servr"), "unknown keys are refused: {err}");
}

#[test]
fn rendered_chart_passes_a_server_side_dry_run_on_navarch() {
    let n = Navarch::up().unwrap();
    let helm = Helm::new(Some(&n.kubeconfig));
    let default = helm.ok(&["template", "nv", &chart()]);
    // The HA values without the ServiceMonitor, whose CRD a bare cluster does not have.
    let ha = helm.ok(&[
        "template",
        "nv",
        &chart(),
        "-f",
        &ha_values(),
        "--set",
        "metrics.serviceMonitor.enabled=false",
    ]);
    // The agent DaemonSet too.
    let agents = helm.ok(&[
        "template",
        "nv",
        &chart(),
        "--set",
        "agent.enabled=true,agent.tokenSecret=agent-token,tls.caSecret=navarch-ca",
    ]);
    assert!(kinds(&agents).contains(&"DaemonSet".to_string()));
    for bin in [KUBECTL_OLDEST, KUBECTL_NEWEST] {
        let k = Kubectl::new(bin, &n.kubeconfig).unwrap();
        for (name, rendered) in [("default", &default), ("ha", &ha), ("agents", &agents)] {
            let file = k.file(&format!("{name}.yaml"), rendered);
            let out = k.ok(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()]);
            assert_eq!(
                out.matches("(server dry run)").count(),
                kinds(rendered).len(),
                "{bin} {name}: {out}"
            );
        }
        // Nothing was persisted.
        assert!(
            k.run(&["get", "deployment", "nv-navarch"])
                .stderr
                .contains("NotFound")
        );
    }
    // With the ServiceMonitor, the answer is Kubernetes': its kind is not served.
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let full = helm.ok(&["template", "nv", &chart(), "-f", &ha_values()]);
    let file = k.file("full.yaml", &full);
    let err = k.fails(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()]);
    assert!(
        err.contains("no matches for kind \"ServiceMonitor\""),
        "{err}"
    );
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_a_chart_on_navarch() {
    let n = Navarch::up().unwrap();
    let helm = Helm::new(Some(&n.kubeconfig));
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    // The chart every Helm user starts from: Deployment with probes, Service, ServiceAccount.
    helm.ok(&["create", helm.dir.path().join("sample").to_str().unwrap()]);
    let sample = helm.dir.path().join("sample").display().to_string();

    let started = Instant::now();
    helm.ok(&["install", "demo", &sample, "--wait", "--timeout", "90s"]);
    let install = started.elapsed();
    let release = k.ok(&["get", "secret", "-l", "owner=helm,name=demo", "-o", "name"]);
    assert_eq!(release.trim(), "secret/sh.helm.release.v1.demo.v1");
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "demo-sample",
            "-o",
            "jsonpath={.status.readyReplicas} {.metadata.generation}"
        ]),
        "1 1",
        "ready, and one spec write"
    );

    let started = Instant::now();
    helm.ok(&[
        "upgrade",
        "demo",
        &sample,
        "--set",
        "replicaCount=3",
        "--wait",
        "--timeout",
        "90s",
    ]);
    let upgrade = started.elapsed();
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "demo-sample",
            "-o",
            "jsonpath={.status.readyReplicas}"
        ]),
        "3"
    );
    let history = helm.ok(&["history", "demo"]);
    assert!(
        history.contains("superseded") && history.contains("Upgrade complete"),
        "{history}"
    );

    helm.ok(&["rollback", "demo", "1", "--wait", "--timeout", "90s"]);
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "demo-sample",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "1"
    );
    let status = helm.ok(&["status", "demo"]);
    assert!(
        status.contains("STATUS: deployed") && status.contains("REVISION: 3"),
        "{status}"
    );

    let started = Instant::now();
    helm.ok(&["uninstall", "demo", "--wait", "--timeout", "60s"]);
    let uninstall = started.elapsed();
    for what in [
        "deployment/demo-sample",
        "service/demo-sample",
        "serviceaccount/demo-sample",
    ] {
        assert!(
            k.run(&["get", what]).stderr.contains("NotFound"),
            "{what} left"
        );
    }
    assert!(
        k.ok(&["get", "secrets", "-l", "owner=helm", "-o", "name"])
            .trim()
            .is_empty()
    );
    assert!(helm.ok(&["list", "-q"]).trim().is_empty());
    println!(
        "helm install {install:.1?}, upgrade to 3 replicas {upgrade:.1?}, uninstall {uninstall:.1?}"
    );
}

/// Real containers: `navarch image push` puts the navarch image in a local registry, and the
/// chart runs it on a runc node of `navarch up`: the inner `navarch server` passes its
/// readiness probe (`/readyz`, dialled at the pod IP) and Helm sees the release ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navarch_chart_runs_the_navarch_image_inside_navarch() {
    if !is_root() {
        eprintln!("skipped: needs root for runc and CNI");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = navarch_e2e::images::Registry::start(work.path()).unwrap();
    let image = registry.image("navarch");
    let started = Instant::now();
    let pushed = Command::new(navarch_e2e::navarch_bin())
        .args(["image", "push", &format!("{image}:e2e")])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{pushed:?}");
    let push_time = started.elapsed();

    let node = navarch_e2e::runc::RuncNode::up("helm", 210, 211, &[]).unwrap();
    let n = &node.navarch;
    let helm = Helm::new(Some(&n.kubeconfig));
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let started = Instant::now();
    let install = tokio::task::spawn_blocking({
        let chart = chart();
        let image = image.clone();
        move || {
            let out = helm.run(&[
                "install",
                "inner",
                &chart,
                "--namespace",
                "navarch-system",
                "--create-namespace",
                "--set",
                &format!("image.repository={image}"),
                "--set",
                "image.tag=e2e",
                "--set",
                "server.persistence.enabled=false",
                "--set",
                "server.resources.requests.cpu=100m",
                "--set",
                "server.resources.requests.memory=128Mi",
                "--wait",
                "--timeout",
                "120s",
            ]);
            (helm, out)
        }
    })
    .await
    .unwrap();
    let (_helm, out) = install;
    let ready = started.elapsed();
    if !out.status.success() {
        let pods = k.run(&["get", "pods", "-A", "-o", "wide"]).stdout;
        let describe = k.run(&["describe", "pods", "-n", "navarch-system"]).stdout;
        let logs = k
            .run(&[
                "logs",
                "-n",
                "navarch-system",
                "deployment/inner-navarch",
                "--tail=40",
            ])
            .stdout;
        panic!(
            "helm install failed: {}\n{pods}\n{describe}\n{logs}\n{}",
            String::from_utf8_lossy(&out.stderr),
            n.log()
        );
    }
    let logs = k.ok(&["logs", "-n", "navarch-system", "deployment/inner-navarch"]);
    assert!(logs.contains("navarch is up"), "{logs}");
    assert!(
        logs.contains("\"level\":\"INFO\""),
        "JSON logs as the chart asks: {logs}"
    );
    println!(
        "navarch image pushed in {push_time:.1?}; chart ready (inner navarch server passing /readyz) {ready:.1?} after helm install"
    );
    drop(registry);
}
