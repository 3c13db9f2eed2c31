//! The authorization matrix (issue 9): users, a group and a service account with a set of
//! bindings (an aggregated default role bound in one namespace and cluster-wide, custom
//! Roles, `resourceNames`), and every (subject, verb, resource, namespace) combination tried
//! for real through the gateway. Expected from the bindings by a small model; the test
//! counts unauthorized successes and wrong denials, and both must be 0.

use std::time::Duration;

use navarch_api::Object;
use navarch_api::apps::v1::Deployment;
use navarch_api::codec::FieldValidation;
use navarch_api::core::v1::{ConfigMap, Pod, Secret};
use navarch_api::kinds::KindInfo;
use navarch_api::{ApiError, Reason};
use navarch_e2e::Navarch;
use navarch_e2e::kubectl::{KUBECTL_NEWEST, Kubectl};
use navarch_gateway::Client;
use navarch_gateway::client::Resource;

const POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ci, namespace: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-edit, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ops-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: Group, name: ops}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader, namespace: team-b}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get, list]}
- {apiGroups: [""], resources: [pods], verbs: [delete], resourceNames: [victim-bob]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-reads, namespace: team-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects: [{kind: User, name: bob}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: team-a}
rules:
- {apiGroups: [apps], resources: [deployments], verbs: [get, create, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci-deploys, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: ServiceAccount, name: ci, namespace: team-a}]
"#;

const VERBS: [&str; 5] = ["get", "list", "create", "update", "delete"];
const RESOURCES: [&str; 4] = ["pods", "configmaps", "secrets", "deployments"];
const NAMESPACES: [&str; 2] = ["team-a", "team-b"];
const SUBJECTS: [&str; 5] = ["alice", "bob", "carol", "ci", "dave"];

/// What the bindings above grant.
fn expected(subject: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    match subject {
        // edit (aggregated) in team-a: everything here, secrets included.
        "alice" => namespace == "team-a",
        // bob: read configmaps in team-b, delete only the pod named victim-bob there.
        "bob" => {
            namespace == "team-b"
                && ((resource == "configmaps" && matches!(verb, "get" | "list"))
                    || (resource == "pods" && verb == "delete"))
        }
        // group ops: view everywhere, which never includes secrets.
        "carol" => resource != "secrets" && matches!(verb, "get" | "list"),
        "ci" => {
            namespace == "team-a"
                && resource == "deployments"
                && matches!(verb, "get" | "create" | "update")
        }
        _ => false,
    }
}

fn object<T: Resource>(json: &str) -> T {
    let kind: &KindInfo = T::kind();
    let (obj, _) = Object::from_raw(
        kind,
        json.as_bytes(),
        "application/json",
        FieldValidation::Strict,
    )
    .unwrap();
    obj.to_typed().unwrap()
}

fn manifest(resource: &str, name: &str) -> String {
    let meta = format!(r#""metadata": {{"name": "{name}", "labels": {{"app": "m"}}}}"#);
    match resource {
        "pods" => format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", {meta}, "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
        ),
        "configmaps" => {
            format!(r#"{{"apiVersion": "v1", "kind": "ConfigMap", {meta}, "data": {{"k": "v"}}}}"#)
        }
        "secrets" => {
            format!(r#"{{"apiVersion": "v1", "kind": "Secret", {meta}, "data": {{"k": "dg=="}}}}"#)
        }
        _ => format!(
            r#"{{"apiVersion": "apps/v1", "kind": "Deployment", {meta}, "spec": {{"replicas": 0, "selector": {{"matchLabels": {{"app": "m"}}}}, "template": {{"metadata": {{"labels": {{"app": "m"}}}}, "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}}}}}"#
        ),
    }
}

/// Whether the gateway authorized a call: a 403 is a denial, anything else (success, or a
/// refusal that comes after authorization: not found, conflict, already exists) is not.
fn authorized<T>(result: Result<T, ApiError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => {
            assert_ne!(e.reason, Reason::Unauthorized, "authentication failed: {e}");
            e.reason != Reason::Forbidden
        }
    }
}

/// Tries `verb` as `client` on `resource` objects of type `T` in `namespace`.
async fn attempt<T: Resource>(
    admin: &Client,
    client: &Client,
    subject: &str,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> bool {
    let probe = format!("probe-{resource}");
    match verb {
        "get" => authorized(client.get::<T>(namespace, &probe).await),
        "list" => authorized(client.list::<T>(namespace, &Default::default()).await),
        "create" => {
            let obj: T = object(&manifest(resource, &format!("new-{subject}")));
            authorized(client.create(namespace, &obj).await)
        }
        "update" => {
            let current: T = admin.get(namespace, &probe).await.unwrap();
            authorized(client.update(namespace, &probe, &current).await)
        }
        _ => authorized(
            client
                .delete::<T>(namespace, &format!("victim-{subject}"))
                .await,
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_verb_resource_and_namespace_is_allowed_exactly_as_bound() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "admin-token\n").unwrap();
    std::fs::write(
        dir.path().join("tokens.csv"),
        "admin-token,admin,admin,\"system:masters\"\nalice-token,alice,a,\"dev\"\nbob-token,bob,b\ncarol-token,carol,c,\"ops\"\ndave-token,dave,d\n",
    )
    .unwrap();
    let n = Navarch::up_in(dir.path()).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let policy = k.file("policy.yaml", POLICY);
    k.ok(&["apply", "-f", policy.to_str().unwrap()]);
    let ca = std::fs::read_to_string(&n.ca_file).unwrap();
    let admin = Client::connect(&n.grpc, &ca, "admin-token").await.unwrap();
    // Objects to get, update and delete, per namespace and resource (a victim per subject).
    for ns in NAMESPACES {
        for resource in RESOURCES {
            let mut names = vec![format!("probe-{resource}")];
            names.extend(SUBJECTS.iter().map(|s| format!("victim-{s}")));
            for name in names {
                let json = manifest(resource, &name);
                let created = match resource {
                    "pods" => admin.create(ns, &object::<Pod>(&json)).await.map(|_| ()),
                    "configmaps" => admin
                        .create(ns, &object::<ConfigMap>(&json))
                        .await
                        .map(|_| ()),
                    "secrets" => admin.create(ns, &object::<Secret>(&json)).await.map(|_| ()),
                    _ => admin
                        .create(ns, &object::<Deployment>(&json))
                        .await
                        .map(|_| ()),
                };
                created.unwrap();
            }
        }
    }
    let (ci_token, _) = admin
        .request_token("team-a", "ci", &[], 3600, None)
        .await
        .unwrap();
    // Give the policy sync its moment: alice's edit must show before the matrix runs.
    let alice = Client::connect(&n.grpc, &ca, "alice-token").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !authorized(alice.list::<Pod>("team-a", &Default::default()).await) {
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut wrongly_allowed = Vec::new();
    let mut wrongly_denied = Vec::new();
    let mut checked = 0;
    for subject in SUBJECTS {
        let token = match subject {
            "ci" => ci_token.clone(),
            s => format!("{s}-token"),
        };
        let client = Client::connect(&n.grpc, &ca, &token).await.unwrap();
        for ns in NAMESPACES {
            for resource in RESOURCES {
                for verb in VERBS {
                    let got = match resource {
                        "pods" => {
                            attempt::<Pod>(&admin, &client, subject, verb, resource, ns).await
                        }
                        "configmaps" => {
                            attempt::<ConfigMap>(&admin, &client, subject, verb, resource, ns).await
                        }
                        "secrets" => {
                            attempt::<Secret>(&admin, &client, subject, verb, resource, ns).await
                        }
                        _ => {
                            attempt::<Deployment>(&admin, &client, subject, verb, resource, ns)
                                .await
                        }
                    };
                    checked += 1;
                    let want = expected(subject, verb, resource, ns);
                    let case = format!("{subject} {verb} {resource} -n {ns}");
                    match (want, got) {
                        (false, true) => wrongly_allowed.push(case),
                        (true, false) => wrongly_denied.push(case),
                        _ => {}
                    }
                }
            }
        }
    }
    assert_eq!(
        checked,
        SUBJECTS.len() * NAMESPACES.len() * RESOURCES.len() * VERBS.len()
    );
    assert!(
        wrongly_allowed.is_empty() && wrongly_denied.is_empty(),
        "{checked} checks: {} unauthorized successes {wrongly_allowed:?}, {} wrong denials {wrongly_denied:?}",
        wrongly_allowed.len(),
        wrongly_denied.len()
    );
    // resourceNames: bob may delete victim-bob in team-b, and no other pod there.
    let bob = Client::connect(&n.grpc, &ca, "bob-token").await.unwrap();
    let other = bob
        .delete::<Pod>("team-b", "victim-alice")
        .await
        .unwrap_err();
    assert_eq!(other.reason, Reason::Forbidden);
}
