//! Kubernetes' protobuf wire format: every corpus manifest round-trips JSON → k8s protobuf →
//! JSON, and bodies captured from real kubectl 1.33 (`tests/k8s_wire/*.pb`) decode to the
//! objects kubectl meant. When kubectl is installed the bodies are captured again, live, from
//! a local HTTPS listener, and must decode the same (`NAVARCH_UPDATE_K8S_WIRE=1` rewrites the
//! fixtures).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use navarch_api::Quantity;
use navarch_api::codec;
use navarch_api::k8s_wire;
use navarch_api::kinds;
use serde_json::{Value, json};

/// kubectl releases that send protobuf; fixtures are (re)captured from the first.
const KUBECTLS: [&str; 2] = [
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.32",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s_wire")
}

/// Drops what Kubernetes treats as absent (nulls, empty lists), as `corpus_round_trip.rs` does.
fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| normalize(i).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// Names of the non-pointer Go fields whose zero `k8s_wire::decode` drops.
const GO_VALUE_FIELDS: &[&str] = &[
    "generation",
    "stdin",
    "stdinOnce",
    "tty",
    "hostPort",
    "readOnly",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
    "nodePort",
    "healthCheckNodePort",
    "publishNotReadyAddresses",
    "count",
    "minReadySeconds",
    "paused",
    "value",
    "globalDefault",
];

fn same(path: &str, a: &Value, b: &Value, problems: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                match (x.get(k), y.get(k)) {
                    (Some(a), Some(b)) => same(&format!("{path}.{k}"), a, b, problems),
                    // The wire form cannot tell an empty string, or a non-pointer Go field's
                    // zero, from unset (see `k8s_wire`).
                    (Some(Value::String(s)), None) | (None, Some(Value::String(s)))
                        if s.is_empty() => {}
                    (Some(v), None) | (None, Some(v))
                        if GO_VALUE_FIELDS.contains(&k.as_str())
                            && (v == &json!(0) || v == &json!(false)) => {}
                    (a, b) => problems.push(format!("{path}.{k}: {a:?} vs {b:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                same(&format!("{path}[{i}]"), a, b, problems);
            }
        }
        _ if a == b => {}
        _ => {
            let text = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let as_quantity = |v: &Value| text(v).and_then(|s| s.parse::<Quantity>().ok());
            match (as_quantity(a), as_quantity(b)) {
                (Some(x), Some(y)) if x == y => {}
                _ => problems.push(format!("{path}: {a} vs {b}")),
            }
        }
    }
}

/// Times written as Kubernetes does (`metav1.Time` at second precision on the wire; MicroTime's
/// six fraction digits printed without trailing zeros), to compare by instant.
fn canonical_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if let Value::String(s) = v
                    && (k.ends_with("Time") || k.ends_with("Timestamp") || k.ends_with("At"))
                    && let Ok(ts) = s.parse::<jiff::Timestamp>()
                {
                    let micro = matches!(
                        k.as_str(),
                        "eventTime" | "renewTime" | "acquireTime" | "lastObservedTime"
                    );
                    let ts = if micro {
                        ts.round(jiff::Unit::Microsecond).unwrap()
                    } else {
                        jiff::Timestamp::from_second(ts.as_second()).unwrap()
                    };
                    *s = ts.to_string();
                } else {
                    canonical_times(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_times),
        _ => {}
    }
}

/// Drops `apiVersion`/`kind` below the top level (a StatefulSet's PVC templates): Kubernetes'
/// protobuf messages do not carry them, so neither does the wire form.
fn drop_nested_type_meta(v: &mut Value, top: bool) {
    match v {
        Value::Object(map) => {
            // Embedded whole objects (they have metadata), not object references.
            if !top && map.contains_key("metadata") {
                map.remove("apiVersion");
                map.remove("kind");
            }
            for (k, v) in map.iter_mut() {
                // roleRef.kind and subjects[].kind are real fields.
                if k != "roleRef" && k != "subjects" {
                    drop_nested_type_meta(v, false);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| drop_nested_type_meta(i, false)),
        _ => {}
    }
}

#[test]
fn corpus_round_trips_through_the_kubernetes_wire_format() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut documents = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, doc) in codec::yaml_documents(&text)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            documents += 1;
            let name = format!("{}#{i}", file.file_name().unwrap().to_string_lossy());
            let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let body = match k8s_wire::encode(&doc, &api_version, &kind) {
                Ok(b) => b,
                Err(e) => {
                    failures.push(format!("{name}: encode: {}", e.message));
                    continue;
                }
            };
            let (av, k, back) = match k8s_wire::decode(&body) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{name}: decode: {}", e.message));
                    continue;
                }
            };
            assert_eq!(
                (av.as_str(), k.as_str()),
                (api_version.as_str(), kind.as_str())
            );
            let mut expected = doc.clone();
            drop_nested_type_meta(&mut expected, true);
            canonical_times(&mut expected);
            let mut back = back;
            canonical_times(&mut back);
            let mut problems = Vec::new();
            same(
                "",
                &normalize(&expected).unwrap(),
                &normalize(&back).unwrap(),
                &mut problems,
            );
            if !problems.is_empty() {
                failures.push(format!("{name}: {}", problems.join("; ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {documents} documents failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(documents >= 40);
}

/// The kubectl commands whose bodies are captured: fixture name → arguments after `create`.
fn commands() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("configmap", vec!["configmap", "x", "--from-literal=a=b"]),
        ("deployment", vec!["deployment", "web", "--image=nginx"]),
        (
            "secret",
            vec!["secret", "generic", "s", "--from-literal=k=v"],
        ),
        ("namespace", vec!["namespace", "n"]),
        (
            "service",
            vec!["service", "clusterip", "svc", "--tcp=80:8080"],
        ),
        ("job", vec!["job", "j", "--image=busybox"]),
        (
            "cronjob",
            vec!["cronjob", "c", "--image=busybox", "--schedule=*/1 * * * *"],
        ),
        ("serviceaccount", vec!["serviceaccount", "sa"]),
        (
            "role",
            vec![
                "role",
                "r",
                "--verb=get,list",
                "--resource=pods,deployments.apps",
            ],
        ),
        (
            "rolebinding",
            vec![
                "rolebinding",
                "rb",
                "--role=r",
                "--user=alice",
                "--serviceaccount=default:sa",
            ],
        ),
        (
            "clusterrole",
            vec![
                "clusterrole",
                "cr",
                "--verb=get",
                "--non-resource-url=/healthz",
            ],
        ),
        (
            "clusterrolebinding",
            vec![
                "clusterrolebinding",
                "crb",
                "--clusterrole=cr",
                "--group=devs",
            ],
        ),
        (
            "priorityclass",
            vec![
                "priorityclass",
                "high",
                "--value=1000",
                "--description=important",
            ],
        ),
        (
            "quota",
            vec!["quota", "q", "--hard=cpu=1,memory=1Gi,pods=10"],
        ),
        (
            "poddisruptionbudget",
            vec![
                "poddisruptionbudget",
                "pdb",
                "--selector=app=web",
                "--min-available=50%",
            ],
        ),
        ("token", vec!["token", "sa", "--duration=1h"]),
    ]
}

/// What each captured body must decode to.
fn expected(name: &str) -> Value {
    match name {
        "configmap" => json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x"},
            "data": {"a": "b"}
        }),
        "secret" => json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"k": "dg=="}
        }),
        "namespace" => json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "n"},
            "spec": {}, "status": {}
        }),
        other => panic!("no expectation for {other}"),
    }
}

fn check_decoded(name: &str, body: &[u8]) -> Value {
    let (_, _, decoded) = k8s_wire::decode(body).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    decoded
}

#[test]
fn kubectl_bodies_decode() {
    for (name, _) in commands() {
        let path = fixtures().join(format!("{name}.pb"));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoded = check_decoded(name, &body);
        assert_expected(name, &decoded);
    }
}

fn assert_expected(name: &str, decoded: &Value) {
    let want = match name {
        "configmap" | "secret" | "namespace" => expected(name),
        "deployment" | "service" | "job" | "cronjob" => expected_workload(name),
        _ => expected_other(name),
    };
    assert_eq!(decoded, &want, "{name}: decoded {decoded:#}");
}

fn expected_workload(name: &str) -> Value {
    let container =
        |image: &str, name: &str| json!({"name": name, "image": image, "resources": {}});
    match name {
        "deployment" => json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [container("nginx", "nginx")]}
                },
                "strategy": {}
            },
            "status": {}
        }),
        "service" => json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc", "labels": {"app": "svc"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "svc"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        }),
        "job" => json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "metadata": {},
                    "spec": {"containers": [container("busybox", "j")], "restartPolicy": "Never"}
                }
            },
            "status": {}
        }),
        "cronjob" => json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "c"},
            "spec": {
                "schedule": "*/1 * * * *",
                "jobTemplate": {
                    "metadata": {"name": "c"},
                    "spec": {
                        "template": {
                            "metadata": {},
                            "spec": {
                                "containers": [container("busybox", "c")],
                                "restartPolicy": "OnFailure"
                            }
                        }
                    }
                }
            },
            "status": {}
        }),
        other => panic!("no expectation for {other}"),
    }
}

fn expected_other(name: &str) -> Value {
    let rbac = "rbac.authorization.k8s.io";
    match name {
        "serviceaccount" => json!({
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}
        }),
        "role" => json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r"},
            "rules": [
                // The core group is the empty string, which a list keeps.
                {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
                {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]}
            ]
        }),
        "rolebinding" => json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "rb"},
            "subjects": [
                {"kind": "User", "apiGroup": rbac, "name": "alice"},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}
            ],
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "r"}
        }),
        "clusterrole" => json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cr"},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]
        }),
        "clusterrolebinding" => json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "crb"},
            "subjects": [{"kind": "Group", "apiGroup": rbac, "name": "devs"}],
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "cr"}
        }),
        "priorityclass" => json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high"},
            "value": 1000,
            "description": "important",
            "preemptionPolicy": "PreemptLowerPriority"
        }),
        "quota" => json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "q"},
            "spec": {"hard": {"cpu": "1", "memory": "1Gi", "pods": "10"}},
            "status": {}
        }),
        "poddisruptionbudget" => json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "pdb"},
            "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
            "status": {}
        }),
        // POSTed to serviceaccounts/sa/token.
        "token" => json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {},
            "spec": {"expirationSeconds": 3600},
            "status": {}
        }),
        other => panic!("no expectation for {other}"),
    }
}

/// One request kubectl made: method, path, content type, body.
type Captured = (String, String, String, Vec<u8>);

/// A minimal HTTPS API server: discovery documents, and POSTs recorded and answered 201 with
/// the decoded object as JSON.
fn serve(listener: TcpListener, pki: &navarch_pki::ClusterPki, log: Arc<Mutex<Vec<Captured>>>) {
    let config = pki.server_config(&[b"http/1.1"]);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let config = config.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let tls = rustls::StreamOwned::new(conn, stream);
                let mut reader = BufReader::new(tls);
                while let Some((method, path, content_type, body)) = read_request(&mut reader) {
                    let (status, reply) = respond(&method, &path, &body);
                    log.lock().unwrap().push((method, path, content_type, body));
                    let text = reply.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    let tls = reader.get_mut();
                    if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn read_request<R: BufRead>(reader: &mut R) -> Option<Captured> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0;
    let mut content_type = String::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, content_type, body))
}

fn respond(method: &str, path: &str, body: &[u8]) -> (&'static str, Value) {
    let path = path.split('?').next().unwrap_or_default();
    let resources = |group_version: &str, list: &[(&str, &str, bool)]| {
        json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": list.iter().map(|(name, kind, namespaced)| json!({
                "name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
                "verbs": ["create", "get", "list"]
            })).collect::<Vec<_>>()
        })
    };
    match (method, path) {
        ("POST", _) => match k8s_wire::decode(body) {
            Ok((_, kind, mut json)) => {
                if kind == "TokenRequest" {
                    json["status"] =
                        json!({"token": "t", "expirationTimestamp": "2030-01-01T00:00:00Z"});
                }
                ("201 Created", json)
            }
            Err(e) => (
                "400 Bad Request",
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": e.message, "code": 400}),
            ),
        },
        ("GET", "/version") => (
            "200 OK",
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
        ),
        ("GET", "/api") => (
            "200 OK",
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        ("GET", "/apis") => {
            let group = |name: &str| {
                json!({"name": name, "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
                       "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"}})
            };
            let mut groups: Vec<&str> = kinds::KINDS
                .iter()
                .filter(|k| !k.group.is_empty())
                .map(|k| k.group)
                .collect();
            groups.dedup();
            (
                "200 OK",
                json!({"kind": "APIGroupList", "apiVersion": "v1",
                       "groups": groups.into_iter().map(group).collect::<Vec<_>>()}),
            )
        }
        ("GET", _) if path == "/api/v1" || path.starts_with("/apis/") => {
            let group_version = path
                .strip_prefix("/apis/")
                .unwrap_or("v1")
                .trim_end_matches('/');
            let list: Vec<(&str, &str, bool)> = kinds::KINDS
                .iter()
                .filter(|k| k.api_version() == group_version)
                .map(|k| (k.plural, k.kind, k.namespaced))
                .collect();
            if list.is_empty() {
                return not_found();
            }
            ("200 OK", resources(group_version, &list))
        }
        _ => not_found(),
    }
}

fn not_found() -> (&'static str, Value) {
    (
        "404 Not Found",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

#[test]
fn kubectl_sends_kubernetes_protobuf_that_decodes() {
    let installed: Vec<&str> = KUBECTLS
        .into_iter()
        .filter(|k| Path::new(k).exists())
        .collect();
    if installed.is_empty() {
        eprintln!(
            "kubectl not installed; the committed fixtures are checked by kubectl_bodies_decode"
        );
        return;
    }
    navarch_pki::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = navarch_pki::ClusterPki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    serve(listener, &pki, log.clone());

    let ca = base64_encode(pki.ca_pem().as_bytes());
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let update = std::env::var_os("NAVARCH_UPDATE_K8S_WIRE").is_some();
    let mut failures = Vec::new();
    for (i, kubectl) in installed.iter().enumerate() {
        for (name, args) in commands() {
            log.lock().unwrap().clear();
            let output = Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .env("HOME", dir.path())
                .arg("create")
                .args(&args)
                .arg("--request-timeout=20s")
                .args(if name == "token" {
                    &[][..]
                } else {
                    &["--dry-run=server", "--validate=false"][..]
                })
                .output()
                .unwrap();
            let captured = log.lock().unwrap().clone();
            let Some(post) = captured.iter().find(|(method, ..)| method == "POST") else {
                failures.push(format!(
                    "{kubectl} {name}: no POST; requests {:?}; stderr {}",
                    captured
                        .iter()
                        .map(|(m, p, ..)| format!("{m} {p}"))
                        .collect::<Vec<_>>(),
                    String::from_utf8_lossy(&output.stderr)
                ));
                continue;
            };
            if post.2 != k8s_wire::CONTENT_TYPE || !output.status.success() {
                failures.push(format!(
                    "{kubectl} {name}: content type {:?}, stderr {}",
                    post.2,
                    String::from_utf8_lossy(&output.stderr)
                ));
                continue;
            }
            let fixture = fixtures().join(format!("{name}.pb"));
            if i == 0 && (update || !fixture.exists()) {
                std::fs::create_dir_all(fixtures()).unwrap();
                std::fs::write(&fixture, &post.3).unwrap();
            }
            let decoded = check_decoded(name, &post.3);
            if let Err(e) = std::panic::catch_unwind(|| assert_expected(name, &decoded)) {
                let message = e
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "panicked".into());
                failures.push(format!("{kubectl} {name}: {message}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Our encoder's bytes read back by Kubernetes' own generated types (k8s-pb), and k8s-pb's
/// bytes read by our decoder: every special form (times, quantities, int-or-strings, bytes,
/// embedded JSON, Go embedded structs) lands on Kubernetes' numbers.
#[test]
fn k8s_pb_reads_what_we_write_and_we_read_what_it_writes() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use prost::Message;

    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "prod", "labels": {"app": "web"},
            "creationTimestamp": "2024-01-02T03:04:05Z",
            "managedFields": [{"manager": "kubectl", "operation": "Update",
                               "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "web", "image": "nginx:1.27", "args": ["", "-g"],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                          "periodSeconds": 5}
                    }],
                    "volumes": [{"name": "cfg", "configMap": {"name": "web-config",
                                                               "defaultMode": 420}}]
                }
            }
        }
    });
    let body = k8s_wire::encode(&deployment, "apps/v1", "Deployment").unwrap();
    assert_eq!(&body[..4], b"k8s\0");
    let envelope = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&body[4..]).unwrap();
    let type_meta = envelope.type_meta.unwrap();
    assert_eq!(type_meta.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(type_meta.kind.as_deref(), Some("Deployment"));
    let d = apps::Deployment::decode(envelope.raw.unwrap().as_slice()).unwrap();
    let meta = d.metadata.unwrap();
    assert_eq!(meta.namespace.as_deref(), Some("prod"));
    assert_eq!(
        meta.creation_timestamp.unwrap().seconds,
        Some(1_704_164_645)
    );
    let managed = &meta.managed_fields[0];
    assert_eq!(
        serde_json::from_slice::<Value>(
            managed.fields_v1.as_ref().unwrap().raw.as_deref().unwrap()
        )
        .unwrap(),
        json!({"f:spec": {"f:replicas": {}}})
    );
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(0));
    let rolling = spec.strategy.unwrap().rolling_update.unwrap();
    let surge = rolling.max_surge.unwrap();
    assert_eq!(
        (surge.r#type, surge.str_val.as_deref()),
        (Some(1), Some("25%"))
    );
    let unavailable = rolling.max_unavailable.unwrap();
    assert_eq!(
        (unavailable.r#type, unavailable.int_val),
        (Some(0), Some(1))
    );
    let pod = spec.template.unwrap().spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.termination_grace_period_seconds, Some(0));
    let container = &pod.containers[0];
    assert_eq!(container.args, ["", "-g"]);
    let limits = &container.resources.as_ref().unwrap().limits;
    assert_eq!(limits["memory"].string.as_deref(), Some("128Mi"));
    let probe = container.liveness_probe.as_ref().unwrap();
    let http = probe.handler.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(http.path.as_deref(), Some("/healthz"));
    assert_eq!(http.port.as_ref().unwrap().str_val.as_deref(), Some("http"));
    assert_eq!(probe.period_seconds, Some(5));
    let config_map = pod.volumes[0]
        .volume_source
        .as_ref()
        .unwrap()
        .config_map
        .as_ref()
        .unwrap();
    assert_eq!(
        config_map
            .local_object_reference
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("web-config")
    );
    assert_eq!(config_map.default_mode, Some(420));

    // And the other way: a Secret and an Event written by prost with Kubernetes' numbers.
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: Some("tls".into()),
            generate_name: Some(String::new()),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        data: [("tls.key".to_string(), vec![0u8, 159, 146, 150])].into(),
        string_data: [("empty".to_string(), String::new())].into(),
        r#type: Some("kubernetes.io/tls".into()),
        immutable: Some(false),
    };
    let (_, _, json) = k8s_wire::decode(&wrap("v1", "Secret", &secret.encode_to_vec())).unwrap();
    assert_eq!(
        json,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tls"},
            "immutable": false,
            "data": {"tls.key": "AJ+Slg=="},
            "stringData": {"empty": ""},
            "type": "kubernetes.io/tls"
        })
    );
    let event = core::Event {
        metadata: Some(meta::ObjectMeta {
            name: Some("e".into()),
            ..Default::default()
        }),
        involved_object: Some(core::ObjectReference {
            kind: Some("Pod".into()),
            name: Some("web-0".into()),
            ..Default::default()
        }),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_704_164_645),
            nanos: Some(123_456_789),
        }),
        last_timestamp: Some(meta::Time {
            seconds: Some(1_704_164_645),
            nanos: Some(0),
        }),
        count: Some(3),
        ..Default::default()
    };
    let (_, _, json) = k8s_wire::decode(&wrap("v1", "Event", &event.encode_to_vec())).unwrap();
    assert_eq!(json["eventTime"], "2024-01-02T03:04:05.123456Z");
    assert_eq!(json["lastTimestamp"], "2024-01-02T03:04:05Z");
    assert_eq!(
        json["involvedObject"],
        json!({"kind": "Pod", "name": "web-0"})
    );
    assert_eq!(json["count"], 3);
}

/// A Kubernetes protobuf body around `raw`.
fn wrap(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    use prost::Message;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw.to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}
