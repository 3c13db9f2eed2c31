//! Security end to end: service-account tokens mounted into real (runc) pods and used by an
//! in-cluster client through `kubernetes.default` (cluster DNS, the Service proxy, TLS
//! verified with the mounted CA), allowed or refused by RBAC, revoked with their account;
//! `kubectl create token`; client certificates from another CA refused.
//!
//! Runs only as root with `runc`, CNI plugins and `docker-registry` installed (the test
//! command installs them).

use std::time::Duration;

use navarch_e2e::images::{Registry, program_files, push_busybox_with};
use navarch_e2e::kubectl::{KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl};
use navarch_e2e::runc::RuncNode;
use navarch_e2e::{Navarch, eventually, has, is_root};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: sa-test}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: sa-test}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: sa-test}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-reads-pods, namespace: sa-test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: reader, namespace: sa-test}
---
apiVersion: v1
kind: Pod
metadata: {name: reader, namespace: sa-test}
spec:
  serviceAccountName: reader
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: nobody, namespace: sa-test}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: opted-out, namespace: sa-test}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, "3600"]}
"#;

/// `podclient kube PATH` in `pod`: the status code (or the error) and the body.
fn in_pod(k: &Kubectl, pod: &str, path: &str) -> (String, String) {
    let out = k.run(&[
        "exec",
        "-n",
        "sa-test",
        pod,
        "--",
        "podclient",
        "kube",
        path,
    ]);
    let (code, body) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
    (code.trim().to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_use_their_mounted_service_account_token_through_kubernetes_default() {
    if !is_root() || !has("runc") || !has("docker-registry") {
        eprintln!("skipping: needs root, runc and docker-registry");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path()).unwrap();
    let image = registry.image("navarch-test/sa-client:v1");
    let client_files = program_files(
        std::path::Path::new(env!("CARGO_BIN_EXE_podclient")),
        "bin/podclient",
    )
    .unwrap();
    push_busybox_with(&image, &client_files).await.unwrap();

    let octet = 240 + std::process::id() % 5;
    // Pods reach the API at the node's bridge address (the first node's pod gateway), where
    // the Service proxy sends `kubernetes.default`'s ClusterIP.
    let api_listen = format!("0.0.0.0:{}", navarch_e2e::free_port().unwrap());
    let advertise = format!("10.{octet}.0.1");
    let up = RuncNode::up_with_proxy(
        "key",
        octet,
        octet + 5,
        &[
            "--api-listen",
            &api_listen,
            "--advertise-address",
            &advertise,
        ],
    )
    .unwrap();
    let n = &up.navarch;
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let manifest = k.file("sa.yaml", &MANIFEST.replace("IMAGE", &image));
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    for pod in ["reader", "nobody", "opted-out"] {
        k.ok(&[
            "wait",
            "-n",
            "sa-test",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            "--timeout=120s",
        ]);
    }

    // The ServiceAccount admission mounted a projected token, the CA and the namespace.
    let mount = "/var/run/secrets/kubernetes.io/serviceaccount";
    let volume = k.ok(&[
        "get",
        "pod",
        "-n",
        "sa-test",
        "reader",
        "-o",
        "jsonpath={.spec.volumes[0].name} {.spec.containers[0].volumeMounts[0].mountPath}",
    ]);
    assert!(
        volume.starts_with("kube-api-access-") && volume.ends_with(mount),
        "{volume}"
    );
    let namespace = k.ok(&[
        "exec",
        "-n",
        "sa-test",
        "reader",
        "--",
        "cat",
        &format!("{mount}/namespace"),
    ]);
    assert_eq!(namespace, "sa-test");
    let ca = k.ok(&[
        "exec",
        "-n",
        "sa-test",
        "reader",
        "--",
        "cat",
        &format!("{mount}/ca.crt"),
    ]);
    assert_eq!(
        ca.trim(),
        std::fs::read_to_string(&n.ca_file).unwrap().trim()
    );
    let opted_out = k.run(&["exec", "-n", "sa-test", "opted-out", "--", "ls", mount]);
    assert!(
        !opted_out.ok,
        "automountServiceAccountToken: false mounts nothing"
    );

    // Allowed by the Role: listing pods of its namespace.
    let (code, body) = eventually(
        "the in-cluster client reaches the API",
        Duration::from_secs(30),
        || {
            let (code, body) = in_pod(&k, "reader", "/api/v1/namespaces/sa-test/pods");
            (code == "200").then_some((code, body))
        },
    );
    assert_eq!(code, "200");
    assert!(
        body.contains("\"PodList\"") && body.contains("\"nobody\""),
        "{body}"
    );
    // Refused: another namespace, another resource; the default account has no role.
    let (code, body) = in_pod(&k, "reader", "/api/v1/namespaces/kube-system/pods");
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains("system:serviceaccount:sa-test:reader"),
        "{body}"
    );
    let (code, _) = in_pod(&k, "reader", "/api/v1/namespaces/sa-test/secrets");
    assert_eq!(code, "403");
    let (code, _) = in_pod(&k, "nobody", "/api/v1/namespaces/sa-test/pods");
    assert_eq!(code, "403");
    // Discovery is open to every authenticated account.
    let (code, _) = in_pod(&k, "nobody", "/api");
    assert_eq!(code, "200");

    // `kubectl create token` (both ends of the supported kubectl range) issues tokens that
    // authenticate as the account.
    for bin in [KUBECTL_OLDEST, KUBECTL_NEWEST] {
        let admin = Kubectl::new(bin, &n.kubeconfig).unwrap();
        let token = admin.ok(&["create", "token", "reader", "-n", "sa-test"]);
        let as_reader = Kubectl::new(bin, &n.kubeconfig_for(token.trim())).unwrap();
        let pods = as_reader.ok(&["get", "pods", "-n", "sa-test", "-o", "name"]);
        assert!(pods.contains("pod/reader"), "{pods}");
        let denied = as_reader.run(&["get", "secrets", "-n", "sa-test"]);
        assert!(
            !denied.ok && denied.stderr.contains("Forbidden"),
            "{}",
            denied.stderr
        );
    }
    let short = k.run(&[
        "create",
        "token",
        "reader",
        "-n",
        "sa-test",
        "--duration",
        "5m",
    ]);
    assert!(
        !short.ok
            && short
                .stderr
                .contains("may not specify a duration less than 10 minutes"),
        "{}",
        short.stderr
    );
    let wrong_audience = k.ok(&[
        "create",
        "token",
        "reader",
        "-n",
        "sa-test",
        "--audience",
        "https://vault.example",
    ]);
    let other = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig_for(wrong_audience.trim())).unwrap();
    let refused = other.run(&["get", "pods", "-n", "sa-test"]);
    assert!(
        !refused.ok
            && refused
                .stderr
                .contains("You must be logged in to the server"),
        "{}",
        refused.stderr
    );

    // Deleting the account revokes its tokens, the mounted one included.
    k.ok(&["delete", "serviceaccount", "reader", "-n", "sa-test"]);
    let (code, _) = in_pod(&k, "reader", "/api/v1/namespaces/sa-test/pods");
    assert_eq!(code, "401");
}

#[test]
fn client_certificates_authenticate_and_foreign_ones_are_refused() {
    let n = Navarch::up_with_args(&["--runtime", "process"]).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    // The admin kubeconfig carries a client certificate (CN=admin, O=system:masters).
    let me = k.ok(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert_eq!(me, "admin [\"system:masters\",\"system:authenticated\"]");

    // A certificate for the same names from another CA.
    let other = tempfile::tempdir().unwrap();
    let foreign = navarch_pki_cert(other.path());
    let text = std::fs::read_to_string(&n.kubeconfig).unwrap();
    let mut config: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    config["users"][0]["user"] = serde_json::json!({
        "client-certificate-data": b64(&foreign.0),
        "client-key-data": b64(&foreign.1),
    });
    let path = n.data_dir.join("kubeconfig-foreign");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let intruder = Kubectl::new(KUBECTL_NEWEST, &path).unwrap();
    let out = intruder.run(&["get", "pods"]);
    assert!(
        !out.ok,
        "a certificate from another CA must not authenticate"
    );

    // The server's certificate is checked too: a wrong server name fails the handshake.
    let mut config: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    config["clusters"][0]["cluster"]["tls-server-name"] = serde_json::json!("not-the-api.example");
    let path = n.data_dir.join("kubeconfig-wrong-name");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let out = Kubectl::new(KUBECTL_NEWEST, &path)
        .unwrap()
        .run(&["get", "pods"]);
    assert!(
        !out.ok && out.stderr.contains("not-the-api.example"),
        "{}",
        out.stderr
    );
}

/// A client certificate `CN=admin, O=system:masters` from a fresh CA in `dir`.
fn navarch_pki_cert(dir: &std::path::Path) -> (String, String) {
    let pki = navarch_pki::ClusterPki::load_or_create(dir, &[]).unwrap();
    pki.issue_client_cert("admin", &["system:masters"], Duration::from_secs(3600))
        .unwrap()
}

/// Whether any file under `dir` contains `needle`.
fn found_under(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            found_under(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[test]
fn secrets_are_encrypted_at_rest_and_survive_restarts_and_key_rotation() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let mut n = Navarch::up_in(dir.path()).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let secret = format!("s3cr3t-{}", std::process::id());
    let visible = format!("v1s1ble-{}", std::process::id());
    k.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={secret}"),
    ]);
    k.ok(&[
        "create",
        "configmap",
        "settings",
        &format!("--from-literal=greeting={visible}"),
    ]);
    let read = |k: &Kubectl| {
        let b64 = k.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]);
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(read(&k), secret);
    n.stop().unwrap();

    // The engine's files: the ConfigMap value is there (the positive control), the Secret
    // neither as text nor as base64.
    let store = dir.path().join("store");
    assert!(found_under(&store, visible.as_bytes()));
    assert!(!found_under(&store, secret.as_bytes()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
    assert!(!found_under(&store, b64.as_bytes()));
    assert!(found_under(&store, b"k8s:enc:aesgcm:v1:key1:"));

    // Rotation: a new first key, the old one kept for reading; rewriting re-encrypts.
    let config = dir.path().join("encryption.yaml");
    let old = std::fs::read_to_string(&config).unwrap();
    let old_key = old
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key2\n        secret: {}\n      - name: key1\n        secret: {old_key}\n  - identity: {{}}\n",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        ),
    )
    .unwrap();
    let mut n = Navarch::up_in(dir.path()).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    assert_eq!(read(&k), secret, "read with the old key after rotation");
    k.ok(&["label", "secret", "db", "rotated=yes"]);
    n.stop().unwrap();
    // Only the new key remains: the rewritten Secret is still readable.
    std::fs::write(
        &config,
        format!(
            "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key2\n        secret: {}\n",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        ),
    )
    .unwrap();
    let mut n = Navarch::up_in(dir.path()).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    assert_eq!(read(&k), secret, "re-encrypted with key2 on write");
    n.stop().unwrap();
}

#[test]
fn every_request_is_audited_without_secret_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let n = Navarch::up_with_args(&[
        "--runtime",
        "process",
        "--audit-log-path",
        log.to_str().unwrap(),
    ])
    .unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    k.ok(&["create", "namespace", "audited"]);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "audited",
        "--from-literal=password=never-in-the-log",
    ]);
    assert!(!k.run(&["get", "configmap", "missing", "-n", "audited"]).ok);
    let jane = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig_for(&n.token)).unwrap();
    assert!(!jane.run(&["--token", "jane-token", "get", "pods"]).ok);
    let lines = eventually("the audit lines", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        lines
            .iter()
            .any(|l| l["objectRef"]["name"] == "missing")
            .then_some((text, lines))
    });
    let (text, lines) = lines;
    assert!(!text.contains("never-in-the-log"));
    assert!(!text.contains(&base64_of("never-in-the-log")));
    let find = |verb: &str, resource: &str, name: &str| {
        lines
            .iter()
            .find(|l| {
                l["verb"] == verb
                    && l["objectRef"]["resource"] == resource
                    && l["objectRef"]["name"].as_str().unwrap_or_default() == name
            })
            .unwrap_or_else(|| panic!("no {verb} {resource} {name} in {text}"))
            .clone()
    };
    let created = find("create", "secrets", "");
    assert_eq!(created["kind"], "Event");
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(created["stage"], "ResponseComplete");
    assert_eq!(created["user"]["username"], "admin");
    assert_eq!(created["objectRef"]["namespace"], "audited");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert!(created["annotations"]["navarch.io/latency-ms"].is_string());
    let missing = find("get", "configmaps", "missing");
    assert_eq!(missing["responseStatus"]["code"], 404);
    // The components are audited under their own identities.
    assert!(
        lines
            .iter()
            .any(|l| l["user"]["username"] == "system:kube-controller-manager"),
        "{text}"
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `navarch agent` joining `n` as `node` (process runtime) with `extra` flags; killed on drop.
struct Agent(std::process::Child);

impl Agent {
    fn start(n: &Navarch, node: &str, data_dir: &std::path::Path, extra: &[&str]) -> Self {
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = std::process::Command::new(navarch_e2e::navarch_bin())
            .args(["agent", "--gateway", &n.grpc, "--ca-file"])
            .arg(&n.ca_file)
            .args(["--runtime", "process", "--node-name", node, "--data-dir"])
            .arg(data_dir)
            .args(["--telemetry-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self(child)
    }

    fn log(data_dir: &std::path::Path) -> String {
        std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_ready(k: &Kubectl, node: &str) -> bool {
    k.run(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ])
    .stdout
    .trim()
        == "True"
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_with_a_short_lived_token_that_can_do_nothing_else() {
    let n = Navarch::server_with_args(&[]).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let create = |ttl: &str| {
        let out = std::process::Command::new(navarch_e2e::navarch_bin())
            .args(["token", "create", "--ttl", ttl, "--data-dir"])
            .arg(&n.data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let token = create("10m");
    let (id, _) = token.split_once('.').unwrap();
    assert_eq!(
        k.ok(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}"),
            "-o",
            "jsonpath={.type}"
        ]),
        "bootstrap.kubernetes.io/token"
    );
    // The join token itself may do nothing but ask for a node credential.
    let as_token = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig_for(&token)).unwrap();
    let denied = as_token.run(&["get", "pods", "-A"]);
    assert!(
        !denied.ok && denied.stderr.contains("Forbidden"),
        "{}",
        denied.stderr
    );
    let forged = Kubectl::new(
        KUBECTL_NEWEST,
        &n.kubeconfig_for(&format!("{id}.0000000000000000")),
    )
    .unwrap();
    let refused = forged.run(&["get", "pods"]);
    assert!(
        !refused.ok && refused.stderr.contains("You must be logged in"),
        "{}",
        refused.stderr
    );

    // A node joins with it and runs as system:node:<name>.
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = dir.path().join("joiner");
    let agent = Agent::start(&n, "joiner", &agent_dir, &["--join-token", &token]);
    eventually("the joined node is Ready", Duration::from_secs(30), || {
        node_ready(&k, "joiner").then_some(())
    });
    let cert = std::fs::read_to_string(agent_dir.join("pki/node.crt")).unwrap();
    let key = std::fs::read_to_string(agent_dir.join("pki/node.key")).unwrap();
    let subject = navarch_pki::subject(&navarch_pki::pem_to_der(&cert).unwrap()).unwrap();
    assert_eq!(subject.common_name, "system:node:joiner");
    assert_eq!(subject.organizations, vec!["system:nodes"]);
    drop(agent);

    // Restarted without the token: the stored credential is used.
    let agent = Agent::start(&n, "joiner", &agent_dir, &[]);
    eventually(
        "the stored credential is used",
        Duration::from_secs(20),
        || {
            Agent::log(&agent_dir)
                .contains("using the stored node credential")
                .then_some(())
        },
    );
    drop(agent);

    // A node renews only its own credential.
    let ca = std::fs::read_to_string(&n.ca_file).unwrap();
    let node = navarch_gateway::Client::connect(&n.grpc, &ca, (cert, key))
        .await
        .unwrap();
    let (csr, _) = navarch_pki::client_csr("system:node:other", &["system:nodes"]).unwrap();
    let e = node.request_node_credential(&csr).await.unwrap_err();
    assert_eq!(e.reason, navarch_api::Reason::Forbidden, "{e}");
    let (csr, _) = navarch_pki::client_csr("system:node:joiner", &["system:nodes"]).unwrap();
    let renewed = node.request_node_credential(&csr).await.unwrap();
    assert!(renewed.contains("BEGIN CERTIFICATE"));

    // The Node authorizer: its own Node, its own pods, and the secrets those pods use.
    let manifest = k.file(
        "node-authz.yaml",
        r#"
apiVersion: v1
kind: Node
metadata: {name: other}
---
apiVersion: v1
kind: Secret
metadata: {name: used}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: unused}
stringData: {k: v}
---
apiVersion: v1
kind: Pod
metadata: {name: mine}
spec:
  nodeName: joiner
  containers: [{name: c, image: busybox}]
  volumes: [{name: s, secret: {secretName: used}}]
---
apiVersion: v1
kind: Pod
metadata: {name: theirs}
spec:
  nodeName: other
  containers: [{name: c, image: busybox}]
"#,
    );
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    use navarch_api::Reason::Forbidden;
    use navarch_api::core::v1::{Node, Pod, Secret};
    let reason = |r: Result<(), navarch_api::ApiError>| r.err().map(|e| e.reason);
    assert!(node.get::<Secret>("default", "used").await.is_ok());
    assert_eq!(
        reason(node.get::<Secret>("default", "unused").await.map(|_| ())),
        Some(Forbidden)
    );
    assert_eq!(
        reason(
            node.list::<Secret>("default", &Default::default())
                .await
                .map(|_| ())
        ),
        Some(Forbidden)
    );
    let other: Node = node.get("", "other").await.unwrap();
    assert_eq!(
        reason(node.update("", "other", &other).await.map(|_| ())),
        Some(Forbidden)
    );
    let own: Node = node.get("", "joiner").await.unwrap();
    assert!(node.update("", "joiner", &own).await.is_ok());
    let theirs: Pod = node.get("default", "theirs").await.unwrap();
    assert_eq!(
        reason(
            node.update_status("default", "theirs", &theirs)
                .await
                .map(|_| ())
        ),
        Some(Forbidden)
    );
    let mine: Pod = node.get("default", "mine").await.unwrap();
    assert!(node.update_status("default", "mine", &mine).await.is_ok());
    let uid = |p: &Pod| p.metadata.as_ref().and_then(|m| m.uid.clone()).unwrap();
    assert!(
        node.request_token("default", "default", &[], 3600, Some(("mine", &uid(&mine))))
            .await
            .is_ok()
    );
    assert_eq!(
        reason(
            node.request_token(
                "default",
                "default",
                &[],
                3600,
                Some(("theirs", &uid(&theirs)))
            )
            .await
            .map(|_| ())
        ),
        Some(Forbidden)
    );

    // An expired token joins nothing.
    let expired = create("1s");
    std::thread::sleep(Duration::from_millis(1500));
    let late_dir = dir.path().join("late");
    let mut late = Agent::start(&n, "late", &late_dir, &["--join-token", &expired]);
    let status = eventually("the late agent gives up", Duration::from_secs(20), || {
        late.0.try_wait().unwrap()
    });
    assert!(!status.success());
    assert!(
        Agent::log(&late_dir).contains("Unauthorized")
            || Agent::log(&late_dir).contains("nauthenticated"),
        "{}",
        Agent::log(&late_dir)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_certificates_renew_without_a_restart() {
    // Certificates valid 9 s: renewed 3 s before they expire, checked every 0.9 s.
    let n =
        Navarch::up_with_args(&["--runtime", "process", "--serving-cert-validity", "9s"]).unwrap();
    let first = std::fs::read_to_string(n.data_dir.join("pki/server.crt")).unwrap();
    let renewed = eventually(
        "the serving certificate is renewed",
        Duration::from_secs(20),
        || {
            let now = std::fs::read_to_string(n.data_dir.join("pki/server.crt")).unwrap();
            (now != first).then_some(now)
        },
    );
    assert!(navarch_pki::not_after(&renewed).unwrap() > navarch_pki::not_after(&first).unwrap());
    // Past the first certificate's expiry, the same process serves new connections, over
    // HTTPS (kubectl) and gRPC, with the renewed one.
    let expiry = navarch_pki::not_after(&first).unwrap();
    while jiff::Timestamp::now().as_second() <= expiry + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    k.ok(&["get", "namespaces"]);
    let ca = std::fs::read_to_string(&n.ca_file).unwrap();
    let c = navarch_gateway::Client::connect(&n.grpc, &ca, n.token.as_str())
        .await
        .unwrap();
    assert!(
        c.list::<navarch_api::core::v1::Namespace>("", &Default::default())
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ca_rotates_with_an_overlap_in_which_old_clients_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Navarch::up_in(dir.path()).unwrap();
    // What clients hold before the rotation: the old kubeconfig (old CA, a client
    // certificate from the old CA) and the old CA file.
    let old_kubeconfig = dir.path().join("kubeconfig-before");
    std::fs::copy(&n.kubeconfig, &old_kubeconfig).unwrap();
    let old_ca = std::fs::read_to_string(&n.ca_file).unwrap();
    n.stop().unwrap();

    let certs = |what: &str| {
        let out = std::process::Command::new(navarch_e2e::navarch_bin())
            .args(["certs", what, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    certs("rotate-ca");
    let mut n = Navarch::up_in(dir.path()).unwrap();
    let bundle = std::fs::read_to_string(&n.ca_file).unwrap();
    assert!(
        bundle.ends_with(&old_ca),
        "the new ca.crt trusts the old CA too"
    );
    let new_ca = bundle.strip_suffix(&old_ca).unwrap().to_string();
    // The serving certificate now comes from the new CA...
    let serving = std::fs::read_to_string(dir.path().join("pki/server.crt")).unwrap();
    assert_ne!(
        navarch_pki::subject(&navarch_pki::pem_to_der(&serving).unwrap()).ok(),
        None
    );
    // ...and still, during the overlap, old clients work: the old kubeconfig over HTTPS
    // (pointed at this start's port) and a gRPC client trusting only the old CA.
    let repoint = |n: &Navarch| {
        let current: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&n.kubeconfig).unwrap()).unwrap();
        let mut before: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&old_kubeconfig).unwrap()).unwrap();
        before["clusters"][0]["cluster"]["server"] =
            current["clusters"][0]["cluster"]["server"].clone();
        let path = dir.path().join("kubeconfig-old-ca");
        std::fs::write(&path, serde_yaml::to_string(&before).unwrap()).unwrap();
        path
    };
    let old = Kubectl::new(KUBECTL_NEWEST, &repoint(&n)).unwrap();
    old.ok(&["get", "namespaces"]);
    let c = navarch_gateway::Client::connect(&n.grpc, &old_ca, n.token.as_str())
        .await
        .unwrap();
    assert!(
        c.list::<navarch_api::core::v1::Namespace>("", &Default::default())
            .await
            .is_ok()
    );
    // New clients trust the new CA alone.
    let new = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    new.ok(&["get", "namespaces"]);
    let c = navarch_gateway::Client::connect(&n.grpc, &new_ca, n.token.as_str())
        .await
        .unwrap();
    assert!(
        c.list::<navarch_api::core::v1::Namespace>("", &Default::default())
            .await
            .is_ok()
    );
    n.stop().unwrap();

    // After the overlap only the new CA is trusted: the old kubeconfig stops working.
    certs("finish-rotation");
    let n = Navarch::up_in(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&n.ca_file).unwrap(), new_ca);
    Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig)
        .unwrap()
        .ok(&["get", "namespaces"]);
    let old = Kubectl::new(KUBECTL_NEWEST, &repoint(&n)).unwrap();
    let out = old.run(&["get", "namespaces"]);
    assert!(!out.ok, "the old CA is no longer trusted");
}

#[test]
fn component_client_certificates_renew_while_they_run() {
    // Component certificates valid 9 s: renewed with 3 s left, so every component has
    // switched certificates (and connections) twice before the workload below; a component
    // still on a first certificate would be refused once it expired.
    let n =
        Navarch::up_with_args(&["--runtime", "process", "--client-cert-validity", "9s"]).unwrap();
    std::thread::sleep(Duration::from_secs(20));
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let manifest = k.file(
        "renewed.yaml",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: renewed}
spec:
  replicas: 2
  selector: {matchLabels: {app: renewed}}
  template:
    metadata: {labels: {app: renewed}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: busybox, command: [sleep, "3600"]}
"#,
    );
    // Controllers (ReplicaSet, pods), the scheduler (bindings), the agent (status) and the
    // facade (this request) all act after their renewals.
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    k.ok(&["rollout", "status", "deployment/renewed", "--timeout=60s"]);
    let log = n.log();
    for user in [
        "system:kube-controller-manager",
        "system:kube-scheduler",
        "system:navarch:facade",
    ] {
        assert!(
            log.lines()
                .filter(|l| l.contains("renewed client certificate") && l.contains(user))
                .count()
                >= 2,
            "{user} renewed twice: {log}"
        );
    }
    k.ok(&["delete", "deployment", "renewed"]);
}
