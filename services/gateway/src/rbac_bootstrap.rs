//! The default RBAC policy kube-apiserver creates on start, with the same names: the
//! user-facing roles (`cluster-admin`, and `admin`, `edit`, `view` aggregated from the
//! `system:aggregate-to-*` roles), discovery and self-review for every authenticated user,
//! health and version for everyone, `/metrics` for `system:monitoring`, and least-privilege
//! roles for the components (`system:kube-scheduler`, `system:kube-controller-manager`,
//! `system:node`).
//!
//! Missing objects are created; existing ones are brought back to the defaults unless their
//! `rbac.authorization.kubernetes.io/autoupdate` annotation is `"false"` (as upstream's
//! reconciliation). Aggregated roles keep the rules the aggregation loop wrote.

use navarch_api::codec::FieldValidation;
use navarch_api::{ApiError, Object, Reason};
use serde_json::{Value, json};

use crate::registry::{Registry, WriteOptions};

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const RW: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const RO: &[&str] = &["get", "list", "watch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(paths: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": verbs})
}

fn meta(name: &str, labels: Value) -> Value {
    json!({
        "name": name,
        "labels": labels,
        "annotations": {AUTOUPDATE: "true"},
    })
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta(name, labels),
        "rules": rules,
    })
}

fn aggregated(name: &str, into: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta(name, labels),
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{into}"): "true"}}
        ]},
        "rules": [],
    })
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": meta(name, json!({"kubernetes.io/bootstrapping": "rbac-defaults"})),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

/// The default ClusterRoles and ClusterRoleBindings.
pub fn default_policy() -> Vec<Value> {
    let defaults = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let with = |extra: &str| {
        let mut l = defaults.clone();
        l[extra] = json!("true");
        l
    };
    let view_rules = vec![
        rule(
            &[""],
            &[
                "pods",
                "pods/log",
                "pods/status",
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "bindings",
                "events",
                "limitranges",
                "resourcequotas",
                "resourcequotas/status",
                "namespaces",
                "namespaces/status",
                "podtemplates",
            ],
            RO,
        ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            RO,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            RO,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            RO,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            RO,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], RO),
        rule(&["metrics.k8s.io"], &["pods", "nodes"], &["get", "list"]),
    ];
    let edit_rules = vec![
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "pods/eviction",
            ],
            &[
                "create",
                "delete",
                "deletecollection",
                "patch",
                "update",
                "get",
            ],
        ),
        rule(
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            RW,
        ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&[""], &["secrets"], RO),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            RW,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], RW),
        rule(&["batch"], &["cronjobs", "jobs"], RW),
        rule(&["policy"], &["poddisruptionbudgets"], RW),
        rule(&["discovery.k8s.io"], &["endpointslices"], RW),
    ];
    let admin_rules = vec![
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        ),
    ];
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    vec![
        cluster_role(
            "cluster-admin",
            defaults.clone(),
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        aggregated("admin", "admin", defaults.clone()),
        aggregated(
            "edit",
            "edit",
            with("rbac.authorization.k8s.io/aggregate-to-admin"),
        ),
        aggregated(
            "view",
            "view",
            with("rbac.authorization.k8s.io/aggregate-to-edit"),
        ),
        cluster_role(
            "system:aggregate-to-admin",
            with("rbac.authorization.k8s.io/aggregate-to-admin"),
            admin_rules,
        ),
        cluster_role(
            "system:aggregate-to-edit",
            with("rbac.authorization.k8s.io/aggregate-to-edit"),
            edit_rules,
        ),
        cluster_role(
            "system:aggregate-to-view",
            with("rbac.authorization.k8s.io/aggregate-to-view"),
            view_rules,
        ),
        cluster_role(
            "system:discovery",
            defaults.clone(),
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/readyz",
                    "/openapi",
                    "/openapi/*",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            defaults.clone(),
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            defaults.clone(),
            vec![urls(&health, &["get"])],
        ),
        cluster_role(
            "system:monitoring",
            defaults.clone(),
            vec![urls(
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:kube-scheduler",
            defaults.clone(),
            vec![
                rule(
                    &[""],
                    &[
                        "pods",
                        "nodes",
                        "namespaces",
                        "services",
                        "replicationcontrollers",
                        "persistentvolumeclaims",
                    ],
                    RO,
                ),
                rule(&[""], &["pods/binding", "bindings"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["pods"], &["delete"]),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                rule(&["apps"], &["replicasets", "statefulsets"], RO),
                rule(&["policy"], &["poddisruptionbudgets"], RO),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], RO),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["create", "get", "update"],
                ),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            defaults.clone(),
            vec![
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["create", "get", "update"],
                ),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                // The loops run under this one identity (kube-controller-manager without
                // --use-service-account-credentials): together they create, update and
                // delete every kind (the garbage collector and the namespace loop delete
                // anything), so everything but impersonation; escalate and bind for the
                // clusterrole-aggregation loop.
                rule(
                    &["*"],
                    &["*"],
                    &[
                        "get",
                        "list",
                        "watch",
                        "create",
                        "update",
                        "patch",
                        "delete",
                        "deletecollection",
                    ],
                ),
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["clusterroles", "roles"],
                    &["escalate", "bind"],
                ),
            ],
        ),
        cluster_role(
            "system:node",
            defaults.clone(),
            vec![
                rule(
                    &[""],
                    &["nodes"],
                    &["create", "get", "list", "watch", "patch", "update"],
                ),
                rule(&[""], &["nodes/status"], &["patch", "update"]),
                rule(
                    &[""],
                    &["pods"],
                    &["get", "list", "watch", "create", "delete"],
                ),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["pods/eviction"], &["create"]),
                // Only those its pods use (the Node authorizer checks which).
                rule(
                    &[""],
                    &["configmaps", "secrets", "persistentvolumeclaims"],
                    &["get"],
                ),
                rule(&[""], &["services", "endpoints"], &["get", "list", "watch"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], RO),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["create", "delete", "get", "patch", "update"],
                ),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
            ],
        ),
        // Node bootstrap (kubeadm's): join tokens may ask for a node credential, nodes may
        // renew their own.
        cluster_role(
            "system:node-bootstrapper",
            defaults.clone(),
            vec![rule(
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
                &["create", "get", "list", "watch"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            defaults.clone(),
            vec![rule(
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
                &["create"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            defaults.clone(),
            vec![rule(
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
                &["create"],
            )],
        ),
        binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            json!([group("system:bootstrappers")]),
        ),
        binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            json!([group("system:bootstrappers")]),
        ),
        binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            json!([group("system:nodes")]),
        ),
        binding(
            "cluster-admin",
            "cluster-admin",
            json!([group("system:masters")]),
        ),
        binding(
            "system:discovery",
            "system:discovery",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([
                group("system:authenticated"),
                group("system:unauthenticated")
            ]),
        ),
        binding(
            "system:monitoring",
            "system:monitoring",
            json!([group("system:monitoring")]),
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            json!([user("system:kube-scheduler")]),
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            json!([user("system:kube-controller-manager")]),
        ),
        binding("system:node", "system:node", json!([group("system:nodes")])),
    ]
}

/// Creates or reconciles the default policy.
pub async fn ensure_default_policy(registry: &Registry) -> Result<(), ApiError> {
    let opts = WriteOptions {
        field_manager: "kube-apiserver".into(),
        ..Default::default()
    };
    let (mut created, mut updated) = (0, 0);
    for doc in default_policy() {
        let kind = navarch_api::kinds::by_kind(
            "rbac.authorization.k8s.io/v1",
            doc["kind"].as_str().unwrap_or_default(),
        )
        .ok_or_else(|| ApiError::internal("RBAC kinds are served"))?;
        let (want, _) = Object::from_json(kind, &doc, FieldValidation::Strict)?;
        let name = want.name();
        match registry.get(kind, "", &name).await {
            Err(e) if e.reason == Reason::NotFound => {
                match registry.create(kind, "", want, &opts).await {
                    Ok(_) => created += 1,
                    Err(e) if e.reason == Reason::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            Ok(current) => {
                let meta = current.meta();
                let auto = meta.annotations.get(AUTOUPDATE).map(String::as_str) != Some("false");
                let aggregated = current.has("aggregationRule");
                if !auto || aggregated || current.same_spec(&want) {
                    continue;
                }
                let mut next = want;
                next.update_meta(|m| {
                    m.resource_version = meta.resource_version.clone();
                    m.uid = meta.uid.clone();
                    m.creation_timestamp = meta.creation_timestamp.clone();
                });
                match registry.update(kind, "", &name, next, &opts, false).await {
                    Ok(_) => updated += 1,
                    Err(e) if e.reason == Reason::Conflict => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    tracing::info!(created, updated, "default RBAC policy in place");
    Ok(())
}
