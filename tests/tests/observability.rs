//! Operating Navarch (issue 10): the health endpoints answer without credentials with
//! Kubernetes' per-check detail, `/metrics` is served on the telemetry listener and through
//! the API for authorized users only, and every metric the shipped dashboards and rules use
//! is one a real Prometheus scrapes from a running `navarch up`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use navarch_e2e::kubectl::{KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl};
use navarch_e2e::{Navarch, eventually, free_port, has, http_get, https_get, repo_root};

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: observed
spec:
  replicas: 2
  selector:
    matchLabels: {app: observed}
  template:
    metadata:
      labels: {app: observed}
    spec:
      containers:
      - name: app
        image: busybox:1.36
"#;

/// `host:port` of the telemetry listener.
fn telemetry(n: &Navarch) -> String {
    n.telemetry.trim_start_matches("http://").to_string()
}

/// `GET path` on the API without any credentials (an anonymous client, like a probe).
fn anonymous(n: &Navarch, path: &str) -> (u16, String) {
    https_get(&n.api, &n.ca_file, None, path).unwrap()
}

#[test]
fn health_endpoints_answer_without_credentials_with_per_check_detail() {
    let n = Navarch::up().unwrap();
    let at = telemetry(&n);
    let checks = [
        "ping",
        "store",
        "scheduler",
        "controller-manager",
        "gateway",
        "node",
    ];
    let (code, body) = eventually("readyz", Duration::from_secs(20), || {
        http_get(&at, "/readyz?verbose")
            .ok()
            .filter(|(c, _)| *c == 200)
    });
    assert_eq!(code, 200);
    for check in checks {
        assert!(
            body.contains(&format!("[+]{check} ok")),
            "{check} in {body}"
        );
    }
    assert!(body.ends_with("readyz check passed\n"), "{body}");
    // livez: only the checks that say the process must be restarted.
    let (code, live) = http_get(&at, "/livez?verbose").unwrap();
    assert_eq!(code, 200);
    assert!(
        live.contains("[+]ping ok") && !live.contains("store"),
        "{live}"
    );
    assert_eq!(http_get(&at, "/healthz").unwrap(), (200, "ok".into()));
    assert_eq!(http_get(&at, "/readyz/store").unwrap(), (200, "ok".into()));
    assert_eq!(http_get(&at, "/readyz/nonexistent").unwrap().0, 404);
    let (_, excluded) = http_get(&at, "/readyz?verbose&exclude=store").unwrap();
    assert!(!excluded.contains("store"), "{excluded}");

    // The API serves the same checks to anonymous clients (kube-apiserver's
    // system:public-info-viewer), and refuses them /metrics.
    let (code, text) = anonymous(&n, "/readyz?verbose");
    assert_eq!(code, 200, "{text}");
    for check in checks {
        assert!(
            text.contains(&format!("[+]{check} ok")),
            "{check} in {text}"
        );
    }
    assert_eq!(anonymous(&n, "/livez"), (200, "ok".into()));
    assert_eq!(anonymous(&n, "/readyz/gateway"), (200, "ok".into()));
    let (code, refused) = anonymous(&n, "/metrics");
    assert_eq!(code, 401, "{refused}");
    assert!(refused.contains("Unauthorized"), "{refused}");

    // The admin reads /metrics through the API, as with kube-apiserver (oldest and newest
    // kubectl).
    for bin in [KUBECTL_OLDEST, KUBECTL_NEWEST] {
        let k = Kubectl::new(bin, &n.kubeconfig).unwrap();
        let metrics = k.ok(&["get", "--raw", "/metrics"]);
        assert!(metrics.contains("navarch_api_requests_total{"), "{bin}");
        assert!(metrics.contains("process_memory_usage_bytes"), "{bin}");
    }
    let (code, plain) = http_get(&at, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(plain.contains("# TYPE navarch_store_commit_duration_seconds histogram"));
}

/// The metric names a PromQL expression reads: identifiers that are not functions,
/// keywords, label names (matchers, `by`/`on` lists) or parts of numbers and strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings and the insides of label matchers and range selectors go first.
    let mut flat = String::new();
    let (mut quote, mut depth_brace, mut depth_bracket) = (false, 0, 0);
    for c in expr.chars() {
        match c {
            '"' if depth_brace == 0 => quote = !quote,
            _ if quote => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            c => flat.push(c),
        }
    }
    let chars: Vec<char> = flat.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number, exponent included (1e-9).
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let ident: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let grouping = matches!(
            ident.as_str(),
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        );
        if grouping {
            // Skip its label list.
            if chars.get(j) == Some(&'(') {
                while j < chars.len() && chars[j] != ')' {
                    j += 1;
                }
                i = j + 1;
            }
            continue;
        }
        // Aggregations may put `by (...)` between their name and their argument.
        let keyword = matches!(
            ident.as_str(),
            "and"
                | "or"
                | "unless"
                | "bool"
                | "offset"
                | "sum"
                | "min"
                | "max"
                | "avg"
                | "count"
                | "group"
                | "stddev"
                | "stdvar"
                | "topk"
                | "bottomk"
                | "quantile"
                | "count_values"
        );
        let function = chars.get(j) == Some(&'(');
        if !keyword && !function {
            names.insert(ident);
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |e| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (code) (rate(navarch_api_requests_total{job=~"$job", code=~"5.."}[5m])) / clamp_min(x_total, 1e-9)"#
        ),
        ["navarch_api_requests_total", "x_total"]
    );
    assert_eq!(
        names(
            r#"a > 0 and on (name) label_replace(sum by (controller) (rate(b[10m])) == 0, "name", "$1", "controller", "(.*)")"#
        ),
        ["a", "b"]
    );
    assert_eq!(
        names("navarch:api_errors:ratio_rate1h > (14.4 * 0.001)"),
        ["navarch:api_errors:ratio_rate1h"]
    );
}

/// Every `expr` of the dashboards' panels.
fn dashboard_exprs(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for panel in doc["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("{file}: {}", panel["title"].as_str().unwrap_or_default()),
                    target["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert!(out.len() > 40, "dashboards have {} queries", out.len());
    out
}

/// Every rule's `expr`, and the names the recording rules define.
fn rule_exprs(file: &Path) -> (Vec<(String, String)>, BTreeSet<String>) {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut exprs = Vec::new();
    let mut recorded = BTreeSet::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["record"]
                .as_str()
                .or_else(|| rule["alert"].as_str())
                .unwrap()
                .to_string();
            if rule["record"].is_string() {
                recorded.insert(name.clone());
            }
            exprs.push((name, rule["expr"].as_str().unwrap().to_string()));
        }
    }
    (exprs, recorded)
}

/// A Prometheus server on loopback, stopped on drop.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        let addr = format!("127.0.0.1:{}", free_port().unwrap());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let (code, body) = http_get(&self.addr, path).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }
}

#[test]
fn dashboards_and_rules_use_only_metrics_navarch_exports() {
    assert!(
        has("prometheus") && has("promtool"),
        "this test needs prometheus and promtool (the test command installs them)"
    );
    let root = repo_root().join("observability");
    let rules = root.join("prometheus/rules.yaml");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(check.status.success(), "promtool check rules: {check:?}");

    let n = Navarch::up().unwrap();
    let kubectl = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let file = kubectl.file("deploy.yaml", DEPLOYMENT);
    kubectl.ok(&["apply", "-f", file.to_str().unwrap()]);
    kubectl.ok(&["rollout", "status", "deployment/observed", "--timeout=60s"]);

    // Scraped two ways: the telemetry listener, and the API path with the admin's token.
    let api = n.api.trim_start_matches("https://");
    let token_file = n.data_dir.join("admin.token");
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: navarch-control-plane
    static_configs:
      - targets: ["{telemetry}"]
  - job_name: navarch-api
    scheme: https
    authorization:
      credentials_file: {token}
    tls_config:
      ca_file: {ca}
    static_configs:
      - targets: ["{api}"]
"#,
        rules = rules.display(),
        telemetry = telemetry(&n),
        token = token_file.display(),
        ca = n.ca_file.display(),
    );
    let prometheus = Prometheus::start(&config);
    eventually("both targets up", Duration::from_secs(30), || {
        let targets = prometheus.get("/api/v1/targets")?;
        let active = targets["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 2 && active.iter().all(|t| t["health"] == "up")).then_some(())
    });
    let (rule_exprs, recorded) = rule_exprs(&rules);
    let mut used: Vec<(String, String)> = dashboard_exprs(&root.join("dashboards"));
    used.extend(rule_exprs);
    let exported_names = || -> Option<BTreeSet<String>> {
        let names = prometheus.get("/api/v1/label/__name__/values")?;
        Some(
            names["data"]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        )
    };
    let missing_from = |exported: &BTreeSet<String>| {
        let mut missing = Vec::new();
        let mut checked = BTreeSet::new();
        for (whence, expr) in &used {
            for name in metric_names(expr) {
                if recorded.contains(&name) {
                    continue;
                }
                checked.insert(name.clone());
                if !exported.contains(&name) {
                    missing.push(format!("{name} (in {whence})"));
                }
            }
        }
        (missing, checked)
    };
    // Series appear as the scrapes come in (a loaded machine may need a few): wait until
    // every name is there, or 30 s, then report what is still missing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (missing, checked) = loop {
        let exported = exported_names().unwrap_or_default();
        let (missing, checked) = missing_from(&exported);
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break (missing, checked);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(missing.is_empty(), "not exported: {missing:#?}");
    assert!(checked.len() >= 30, "only {} names checked", checked.len());
    println!(
        "{} metric names used by {} queries and rules, all exported",
        checked.len(),
        used.len()
    );

    // Prometheus loaded every rule and evaluates them without errors.
    let loaded = eventually("rules evaluated", Duration::from_secs(45), || {
        let rules = prometheus.get("/api/v1/rules")?;
        let groups = rules["data"]["groups"].as_array()?.clone();
        let all: Vec<serde_json::Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = all.iter().all(|r| r["health"] == "ok");
        (evaluated && !all.is_empty()).then_some(all)
    });
    println!("{} rules loaded and evaluated", loaded.len());
}

#[test]
fn navarch_status_prints_control_plane_checks_and_nodes() {
    let mut n = Navarch::up().unwrap();
    let data_dir = n.data_dir.clone();
    let status = || {
        Command::new(navarch_e2e::navarch_bin())
            .args(["status", "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap()
    };
    let out = eventually("status ready", Duration::from_secs(20), || {
        let out = status();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.contains("node ") && text.contains("   Ready"))
            .then_some(text)
    });
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CONTROL PLANE") && lines[0].ends_with("Ready"));
    let store = lines.iter().find(|l| l.starts_with("store ")).unwrap();
    assert_eq!(
        store.split_whitespace().collect::<Vec<_>>(),
        ["store", "-", "ok"]
    );
    let header = lines.iter().position(|l| l.starts_with("NAME ")).unwrap();
    let node: Vec<&str> = lines[header + 1].split_whitespace().collect();
    assert_eq!(node[1], "Ready", "{out}");
    assert!(node[3].ends_with("/110"), "{out}");

    // With the control plane gone, it says so and fails.
    n.stop().unwrap();
    let out = status();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unreachable"),
        "{out:?}"
    );
}

#[test]
fn collector_config_wires_every_pipeline_to_defined_components() {
    let file = repo_root().join("observability/otel-collector.yaml");
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let pipelines = doc["service"]["pipelines"].as_mapping().unwrap();
    assert!(pipelines.contains_key("traces") && pipelines.contains_key("metrics"));
    for (name, pipeline) in pipelines {
        for section in ["receivers", "processors", "exporters"] {
            for component in pipeline[section].as_sequence().into_iter().flatten() {
                let component = component.as_str().unwrap();
                assert!(
                    doc[section].get(component).is_some(),
                    "pipeline {name:?} uses {section} {component:?}, which is not defined"
                );
            }
        }
    }
    // OTLP in on both transports, the ports Navarch's exporters use by default.
    assert_eq!(
        doc["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        "0.0.0.0:4317"
    );
    assert_eq!(
        doc["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        "0.0.0.0:4318"
    );
}
