//! The REST facade judged by real clients (issue 3): kubectl 1.27 (the oldest installed) and
//! 1.33 (the newest) run their everyday commands against `navarch up` with the kubeconfig it
//! wrote and nothing else; the dispatcher `/usr/bin/kubectl` picks the release matching the
//! server's `/version`; bad input gets a 4xx Status naming the problem while the server keeps
//! serving; curl drives the plain `/apply` endpoint and the HTTP details (HTTP/1.1 chunked
//! watch, gzip, 401/404/405/413); and the official Python client creates, watches, patches and
//! deletes a Deployment.

use std::process::Command;
use std::time::Duration;

use navarch_e2e::kubectl::{
    KUBECTL_DISPATCHER, KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl, Lines, wait_output,
};
use navarch_e2e::{Navarch, repo_root};

const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
  size: large
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"#;

/// The same file, changed: 3 replicas and a new image.
fn app_changed() -> String {
    APP.replace("replicas: 2", "replicas: 3")
        .replace("nginx:1.27", "nginx:1.28")
}

/// The changed file with fields removed: the `size` key and the `tier` label.
fn app_trimmed() -> String {
    app_changed()
        .replace("  size: large\n", "")
        .replace(", tier: front}", "}")
}

const SERVER_SIDE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
  namespace: team
data:
  owner: kubectl
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: team
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: busybox:1.36
"#;

fn jsonpath(k: &Kubectl, args: &[&str], path: &str) -> String {
    let expr = format!("-o=jsonpath={path}");
    let mut all: Vec<&str> = args.to_vec();
    all.push(&expr);
    k.ok(&all)
}

/// The everyday commands of the issue, in one cluster, for one kubectl release.
fn everyday(bin: &str) {
    let navarch = Navarch::up().expect("navarch up");
    let k = Kubectl::new(bin, &navarch.kubeconfig).unwrap();

    // version, api-resources, get ns.
    let out = k.ok(&["version"]);
    assert!(
        out.contains("Server Version") && out.contains("v1.33"),
        "{out}"
    );
    let out = k.ok(&["api-resources"]);
    for needle in [
        "deployments",
        "deploy",
        "apps/v1",
        "configmaps",
        "cm",
        "namespaces",
    ] {
        assert!(out.contains(needle), "api-resources lacks {needle}:\n{out}");
    }
    let out = k.ok(&["get", "ns"]);
    assert!(
        out.contains("default") && out.contains("kube-system"),
        "{out}"
    );

    // create namespace, create configmap --from-literal.
    assert!(
        k.ok(&["create", "namespace", "team"])
            .contains("namespace/team created")
    );
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=1",
        "-n",
        "team",
    ]);
    assert_eq!(
        jsonpath(&k, &["get", "cm", "cfg", "-n", "team"], "{.data.a}"),
        "1"
    );

    // apply -f a multi-document file: create, change, remove a field.
    let app = k.file("app.yaml", APP);
    let out = k.ok(&["apply", "-f", app.to_str().unwrap()]);
    for line in [
        "deployment.apps/web created",
        "configmap/settings created",
        "service/web created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    k.file("app.yaml", &app_changed());
    let out = k.ok(&["apply", "-f", app.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert_eq!(
        jsonpath(
            &k,
            &["get", "deploy", "web"],
            "{.spec.replicas} {.spec.template.spec.containers[0].image}"
        ),
        "3 nginx:1.28"
    );
    k.file("app.yaml", &app_trimmed());
    k.ok(&["apply", "-f", app.to_str().unwrap()]);
    assert_eq!(
        jsonpath(&k, &["get", "cm", "settings"], "{.data}"),
        r#"{"color":"blue"}"#
    );
    assert_eq!(
        jsonpath(&k, &["get", "deploy", "web"], "{.metadata.labels}"),
        r#"{"app":"web"}"#
    );

    // apply --server-side.
    let ssa = k.file("ssa.yaml", SERVER_SIDE);
    let out = k.ok(&["apply", "--server-side", "-f", ssa.to_str().unwrap()]);
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");
    let out = k.ok(&[
        "get",
        "cm",
        "ssa",
        "-n",
        "team",
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    assert!(
        out.contains("\"manager\": \"kubectl\"") && out.contains("\"operation\": \"Apply\""),
        "{out}"
    );

    // get -o wide / yaml / json / jsonpath.
    let out = k.ok(&["get", "deploy", "-o", "wide"]);
    for col in [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
        "nginx:1.28",
    ] {
        assert!(out.contains(col), "get -o wide lacks {col}:\n{out}");
    }
    let out = k.ok(&["get", "svc", "web"]);
    assert!(
        out.contains("CLUSTER-IP") && out.contains("PORT(S)"),
        "{out}"
    );
    let out = k.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        out.contains("kind: Deployment") && out.contains("replicas: 3"),
        "{out}"
    );
    let out = k.ok(&["get", "cm", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["kind"], "List");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["metadata"]["name"] == "settings")
    );
    let out = k.ok(&["get", "all"]);
    assert!(
        out.contains("deployment.apps/web") && out.contains("service/web"),
        "{out}"
    );
    let out = k.ok(&["get", "cm", "-A"]);
    assert!(
        out.contains("NAMESPACE") && out.contains("team") && out.contains("cfg"),
        "{out}"
    );

    // get -w receives a change.
    let mut watch = k.spawn(&["get", "cm", "settings", "-w", "--output-watch-events"]);
    let lines = Lines::of(&mut watch);
    let (ok, seen) = lines.until(Duration::from_secs(20), |l| l.contains("settings"));
    assert!(ok, "get -w printed no initial event: {seen}");
    k.ok(&["label", "cm", "settings", "watched=yes"]);
    let (ok, seen) = lines.until(Duration::from_secs(20), |l| {
        l.contains("MODIFIED") && l.contains("settings")
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(ok, "get -w did not show the change: {seen}");

    // describe, with the events that name the object (field selectors on events).
    let uid = jsonpath(&k, &["get", "deploy", "web"], "{.metadata.uid}");
    let event = k.file(
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: web.1}}\ninvolvedObject: {{apiVersion: apps/v1, kind: Deployment, name: web, namespace: default, uid: {uid}}}\nreason: ScalingReplicaSet\nmessage: Scaled up replica set web-1 to 3\ntype: Normal\ncount: 1\nsource: {{component: deployment-controller}}\nfirstTimestamp: \"2025-01-01T00:00:00Z\"\nlastTimestamp: \"2025-01-01T00:00:00Z\"\n"
        ),
    );
    k.ok(&["create", "-f", event.to_str().unwrap()]);
    let out = k.ok(&["describe", "deploy", "web"]);
    for needle in [
        "Name:",
        "web",
        "Replicas:",
        "3 desired",
        "nginx:1.28",
        "ScalingReplicaSet",
        "Scaled up replica set web-1 to 3",
    ] {
        assert!(out.contains(needle), "describe lacks {needle}:\n{out}");
    }
    let out = k.ok(&["describe", "ns", "team"]);
    assert!(out.contains("Status:") && out.contains("Active"), "{out}");

    // edit, non-interactively.
    let r = k.run_with(
        &["edit", "cm", "settings"],
        None,
        &[("KUBE_EDITOR", "sed -i s/blue/green/")],
    );
    assert!(r.ok, "edit failed: {} {}", r.stdout, r.stderr);
    assert_eq!(
        jsonpath(&k, &["get", "cm", "settings"], "{.data.color}"),
        "green"
    );

    // label, annotate.
    k.ok(&["label", "deploy", "web", "env=prod"]);
    k.ok(&["annotate", "deploy", "web", "note=hello world"]);
    assert_eq!(
        jsonpath(
            &k,
            &["get", "deploy", "web"],
            "{.metadata.labels.env} {.metadata.annotations.note}"
        ),
        "prod hello world"
    );
    let out = k.ok(&["get", "deploy", "-l", "env=prod", "-o", "name"]);
    assert_eq!(out.trim(), "deployment.apps/web");

    // patch: strategic, merge, json.
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.29"}]}}}}"#,
    ]);
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"shape":"round"}}"#,
    ]);
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/data/color"}]"#,
    ]);
    assert_eq!(
        jsonpath(
            &k,
            &["get", "deploy", "web"],
            "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "nginx:1.29 80"
    );
    assert_eq!(
        jsonpath(&k, &["get", "cm", "settings"], "{.data}"),
        r#"{"shape":"round"}"#
    );

    // scale.
    assert!(
        k.ok(&["scale", "deploy", "web", "--replicas=5"])
            .contains("scaled")
    );
    assert_eq!(
        jsonpath(&k, &["get", "deploy", "web"], "{.spec.replicas}"),
        "5"
    );

    // explain.
    let out = k.ok(&["explain", "deployment.spec"]);
    assert!(
        out.contains("DeploymentSpec") && out.contains("replicas"),
        "{out}"
    );

    // delete -f with cascade: background (the garbage collector deletes the ReplicaSets after
    // the Deployment) and orphan (they stay).
    let out = k.ok(&[
        "delete",
        "-f",
        app.to_str().unwrap(),
        "--cascade=background",
    ]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let r = k.run(&["get", "deploy", "web"]);
    assert!(!r.ok && r.stderr.contains("NotFound"), "{r:?}");
    let out = k.ok(&["delete", "-f", ssa.to_str().unwrap(), "--cascade=orphan"]);
    assert!(out.contains("configmap \"ssa\" deleted"), "{out}");
    let r = k.run(&["get", "deploy", "api", "-n", "team"]);
    assert!(!r.ok && r.stderr.contains("NotFound"), "{r:?}");
    k.ok(&["delete", "namespace", "team", "--wait=false"]);
}

#[test]
fn kubectl_1_33_everyday_commands() {
    everyday(KUBECTL_NEWEST);
}

#[test]
fn kubectl_1_27_everyday_commands() {
    everyday(KUBECTL_OLDEST);
}

#[test]
fn kubectl_dispatcher_runs_the_release_of_the_server_version() {
    let navarch = Navarch::up().expect("navarch up");
    let k = Kubectl::new(KUBECTL_DISPATCHER, &navarch.kubeconfig).unwrap();
    let out = k.ok(&["version"]);
    assert!(out.contains("Client Version: v1.33"), "{out}");
    assert!(out.contains("Server Version: v1.33"), "{out}");
    let out = k.ok(&["get", "ns", "default"]);
    assert!(out.contains("Active"), "{out}");
    // `navarch kubeconfig` prints the same kubeconfig `navarch up` wrote.
    let printed = Command::new(navarch_e2e::navarch_bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(&navarch.data_dir)
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        std::fs::read_to_string(&navarch.kubeconfig).unwrap()
    );
}

#[test]
fn bad_input_gets_a_4xx_status_naming_the_problem() {
    let navarch = Navarch::up().expect("navarch up");
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown field (kubectl's default --validate=strict)",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\nspec: {foo: 1}\n",
            &["BadRequest", "unknown field \"spec\""],
        ),
        (
            "unknown nested field",
            &APP.split("---")
                .next()
                .unwrap()
                .replace("  replicas: 2", "  replicas: 2\n  replicaz: 3"),
            &["BadRequest", "unknown field \"spec.replicaz\""],
        ),
        (
            "wrong type",
            &APP.split("---")
                .next()
                .unwrap()
                .replace("replicas: 2", "replicas: three"),
            &["spec.replicas"],
        ),
        (
            "missing required fields",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: empty}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n",
            &["Invalid", "spec.selector", "Required value", "image"],
        ),
        (
            "a name that is not DNS-1123",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
            &["Invalid", "metadata.name", "Bad_Name", "RFC 1123"],
        ),
    ];
    for (what, manifest, needles) in cases {
        let file = k.file("bad.yaml", manifest);
        let err = k.fails(&["create", "-f", file.to_str().unwrap()]);
        for needle in *needles {
            assert!(
                err.contains(needle),
                "{what}: error lacks {needle:?}:\n{err}"
            );
        }
    }
    // Invalid YAML: kubectl refuses it itself; the server names the line too.
    let file = k.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
    );
    let err = k.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(err.contains("line"), "{err}");
    let (code, body) = curl(
        &navarch,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/yaml",
            "--data-binary",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
        ],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("\"kind\": \"Status\"") && body.contains("line 4"),
        "{body}"
    );
    // Oversized body: 413 naming the limit.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: {}\n",
        "x".repeat(4 * 1024 * 1024)
    );
    let file = k.file("big.yaml", &big);
    let err = k.fails(&["create", "-f", file.to_str().unwrap()]);
    assert!(
        err.contains("Request entity too large") && err.contains("3145728"),
        "{err}"
    );
    // The server keeps serving.
    assert!(k.ok(&["get", "ns"]).contains("default"));
    let r = k.run(&["get", "cm", "a", "Bad_Name", "empty", "big"]);
    assert!(
        !r.ok && r.stderr.contains("NotFound"),
        "nothing bad was stored: {r:?}"
    );
}

/// curl against the facade with the admin token; returns (HTTP code, body).
fn curl(navarch: &Navarch, args: &[&str], path: &str) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "30", "--cacert"])
        .arg(&navarch.ca_file)
        .args(["-H", &format!("Authorization: Bearer {}", navarch.token)])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("{}{path}", navarch.api))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out =
        wait_output(c.spawn().expect("curl runs"), Duration::from_secs(40)).expect("curl ends");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn curl_apply_endpoint_and_http_details() {
    let navarch = Navarch::up().expect("navarch up");
    // POST /apply: a multi-document file, applied server-side, one result per object.
    let (code, body) = curl(
        &navarch,
        &["-H", "Content-Type: application/yaml", "--data-binary", APP],
        "/apply",
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let actions: Vec<_> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["created", "created", "created"], "{body}");
    let (_, body) = curl(&navarch, &["--data-binary", &app_changed()], "/apply");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"][0]["action"], "configured", "{body}");
    assert_eq!(v["results"][1]["action"], "unchanged", "{body}");
    let (_, body) = curl(&navarch, &["--data-binary", &app_trimmed()], "/apply");
    assert!(body.contains("configured"), "{body}");
    let (_, body) = curl(
        &navarch,
        &[],
        "/api/v1/namespaces/default/configmaps/settings",
    );
    assert!(
        !body.contains("size"),
        "a field the file stopped applying is removed: {body}"
    );
    let (code, body) = curl(
        &navarch,
        &[
            "--data-binary",
            "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: after}\n",
        ],
        "/apply",
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("no matches for kind") && body.contains("\"created\""),
        "{body}"
    );

    // Unauthenticated: 401 Status, for resources and discovery alike.
    for path in ["/api/v1/namespaces", "/apis", "/openapi/v3"] {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&navarch.ca_file)
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{}{path}", navarch.api))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with("401") && text.contains("Unauthorized"),
            "{path}: {text}"
        );
    }
    // Health and version need no credentials.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&navarch.ca_file)
        .arg(format!("{}/readyz", navarch.api))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");

    // Unknown paths 404, wrong methods 405, as Status bodies.
    let (code, body) = curl(&navarch, &[], "/api/v1/widgets");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"reason\": \"NotFound\""), "{body}");
    let (code, body) = curl(
        &navarch,
        &["-X", "PUT", "-d", "{}"],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 405, "{body}");
    assert!(body.contains("MethodNotAllowed"), "{body}");

    // YAML out; gzip for large answers.
    let (_, body) = curl(
        &navarch,
        &["-H", "Accept: application/yaml"],
        "/apis/apps/v1/namespaces/default/deployments/web",
    );
    assert!(body.starts_with("apiVersion: apps/v1\n"), "{body}");
    let (code, headers) = curl(
        &navarch,
        &["-H", "Accept-Encoding: gzip", "-o", "/dev/null", "-D", "-"],
        "/openapi/v2",
    );
    assert_eq!(code, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{headers}"
    );

    // An HTTP/1.1 watch: chunked, one event per line, ended by timeoutSeconds.
    let (_, list) = curl(&navarch, &[], "/api/v1/namespaces/default/configmaps");
    let rv =
        serde_json::from_str::<serde_json::Value>(&list).unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
    let mut watch = Command::new("curl");
    watch
        .args(["-sS", "-N", "--http1.1", "-D", "-", "--max-time", "20", "--cacert"])
        .arg(&navarch.ca_file)
        .args(["-H", &format!("Authorization: Bearer {}", navarch.token)])
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=2",
            navarch.api
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = watch.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    curl(
        &navarch,
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "-d",
            r#"{"data":{"w":"1"}}"#,
        ],
        "/api/v1/namespaces/default/configmaps/settings",
    );
    let started = std::time::Instant::now();
    let out = wait_output(child, Duration::from_secs(25)).expect("the watch ends by itself");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "timeoutSeconds honoured"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HTTP/1.1 200")
            && text
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
        "{text}"
    );
    let event = text
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("an event line");
    let event: serde_json::Value = serde_json::from_str(event).unwrap();
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(event["object"]["data"]["w"], "1");
    // A watch from a revision that was compacted away ends with a 410 Expired ERROR event.
    let (_, text) = curl(
        &navarch,
        &[],
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1&timeoutSeconds=2",
    );
    if text.contains("ERROR") {
        assert!(
            text.contains("\"code\":410") && text.contains("Expired"),
            "{text}"
        );
    }
}

#[test]
fn python_kubernetes_client_creates_watches_patches_and_deletes() {
    let navarch = Navarch::up().expect("navarch up");
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/python/kube_client.py"))
        .arg(&navarch.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = wait_output(cmd.spawn().expect("python3 runs"), Duration::from_secs(90))
        .expect("the python client finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("\"ok\": true"),
        "python client failed:\nstdout: {stdout}\nstderr: {stderr}\nnavarch log:\n{}",
        navarch.log()
    );
}
