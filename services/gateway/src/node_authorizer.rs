//! The Node authorizer and NodeRestriction, as Kubernetes: a node (`system:node:<name>` in
//! `system:nodes`) may change only its own Node and Lease and the pods bound to it, may
//! read a Secret, ConfigMap or PersistentVolumeClaim only when a pod bound to it uses it
//! (never list or watch them), and may ask for service-account tokens only for its pods.
//! These checks come on top of the `system:node` role: RBAC must allow the request too.

use navarch_api::kinds::KindInfo;
use navarch_api::{ApiError, Object, Reason};
use serde_json::Value as Json;

use crate::auth::UserInfo;
use crate::registry::{ListOptions, Registry};

const NODES_GROUP: &str = "system:nodes";
const PREFIX: &str = "system:node:";

/// The node a user is, when it is one.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    user.name
        .strip_prefix(PREFIX)
        .filter(|n| !n.is_empty() && user.in_group(NODES_GROUP))
}

fn forbidden(
    user: &UserInfo,
    verb: &str,
    kind: &KindInfo,
    namespace: &str,
    name: &str,
    why: &str,
) -> ApiError {
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{namespace}\"")
    };
    let what = if name.is_empty() {
        kind.plural.to_string()
    } else {
        format!("{} \"{name}\"", kind.plural)
    };
    ApiError::forbidden(format!(
        "{what} is forbidden: User \"{}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}: {why}",
        user.name, kind.plural, kind.group
    ))
    .on(kind.group, kind.plural, name)
}

/// The node a stored pod is bound to (`None`: no such pod).
async fn pod_node(
    registry: &Registry,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, ApiError> {
    let kind = <navarch_api::core::v1::Pod as crate::client::Resource>::kind();
    match registry.get(kind, namespace, name).await {
        Ok(pod) => Ok(Some(
            pod.to_json()
                .pointer("/spec/nodeName")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
        )),
        Err(e) if e.reason == Reason::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names of `kind` objects (secrets, configmaps, persistentvolumeclaims) `pod` uses.
fn references(pod: &Json, plural: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Json>| {
        if let Some(s) = v.and_then(Json::as_str) {
            out.push(s.to_string());
        }
    };
    let spec = &pod["spec"];
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| spec[*f].as_array().cloned().unwrap_or_default());
    // Where each kind is named: volume field, projected source, env ref, envFrom ref.
    let (volume, projected, env, env_from) = match plural {
        "secrets" => (
            "/secret/secretName",
            "/secret/name",
            "/valueFrom/secretKeyRef/name",
            "/secretRef/name",
        ),
        "configmaps" => (
            "/configMap/name",
            "/configMap/name",
            "/valueFrom/configMapKeyRef/name",
            "/configMapRef/name",
        ),
        _ => {
            for v in &volumes {
                push(v.pointer("/persistentVolumeClaim/claimName"));
            }
            return out;
        }
    };
    for v in &volumes {
        push(v.pointer(volume));
        for s in v
            .pointer("/projected/sources")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            push(s.pointer(projected));
        }
    }
    if plural == "secrets" {
        for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
            push(s.get("name"));
        }
    }
    for c in containers {
        for e in c["env"].as_array().into_iter().flatten() {
            push(e.pointer(env));
        }
        for e in c["envFrom"].as_array().into_iter().flatten() {
            push(e.pointer(env_from));
        }
    }
    out
}

/// Whether a pod bound to `node` in `namespace` uses the `plural` object `name`.
async fn used_by_a_pod_of(
    registry: &Registry,
    node: &str,
    namespace: &str,
    plural: &str,
    name: &str,
) -> Result<bool, ApiError> {
    let kind = <navarch_api::core::v1::Pod as crate::client::Resource>::kind();
    let pods = registry
        .list(
            kind,
            namespace,
            &ListOptions {
                field_selector: format!("spec.nodeName={node}"),
                ..Default::default()
            },
        )
        .await?;
    Ok(pods
        .items
        .iter()
        .any(|p| references(&p.to_json(), plural).iter().any(|n| n == name)))
}

/// NodeRestriction and the Node authorizer for a request on an existing object (or a list).
/// Users that are not nodes pass.
pub async fn check(
    registry: &Registry,
    user: &UserInfo,
    verb: &str,
    kind: &KindInfo,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let writes = matches!(verb, "update" | "patch" | "delete" | "deletecollection");
    match (kind.group, kind.plural) {
        ("", "nodes") if writes && name != node => Err(forbidden(
            user,
            verb,
            kind,
            namespace,
            name,
            &format!("node '{node}' may only change its own Node"),
        )),
        ("coordination.k8s.io", "leases") if writes && name != node => Err(forbidden(
            user,
            verb,
            kind,
            namespace,
            name,
            &format!("node '{node}' may only change its own Lease"),
        )),
        ("", "pods") if verb == "deletecollection" => Err(forbidden(
            user,
            verb,
            kind,
            namespace,
            name,
            "nodes delete their pods one by one",
        )),
        ("", "pods") if (writes && (subresource == "status" || verb == "delete")) => {
            match pod_node(registry, namespace, name).await? {
                Some(bound) if bound != node => Err(forbidden(
                    user,
                    verb,
                    kind,
                    namespace,
                    name,
                    &format!("the pod is not bound to node '{node}'"),
                )),
                _ => Ok(()),
            }
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims") => {
            if verb != "get" {
                return Err(forbidden(
                    user,
                    verb,
                    kind,
                    namespace,
                    name,
                    "nodes may only get the individual objects their pods use",
                ));
            }
            if used_by_a_pod_of(registry, node, namespace, kind.plural, name).await? {
                Ok(())
            } else {
                Err(forbidden(
                    user,
                    verb,
                    kind,
                    namespace,
                    name,
                    &format!("no relationship found between node '{node}' and this object"),
                ))
            }
        }
        _ => Ok(()),
    }
}

/// A node reports usage and opens its tunnel only for itself.
pub fn own_node(user: &UserInfo, kind: &KindInfo, name: &str) -> Result<(), ApiError> {
    match node_of(user) {
        Some(node) if node != name => Err(forbidden(
            user,
            "update",
            kind,
            "",
            name,
            &format!("node '{node}' may only act for itself"),
        )),
        _ => Ok(()),
    }
}

/// NodeRestriction for creates: a node creates only its own Node and Lease, and asks for
/// tokens only for pods bound to it.
pub async fn check_create(
    registry: &Registry,
    user: &UserInfo,
    kind: &KindInfo,
    subresource: &str,
    namespace: &str,
    object: Option<&Object>,
    token_request: Option<&Json>,
) -> Result<(), ApiError> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let name = object.map(Object::name).unwrap_or_default();
    match (kind.group, kind.plural, subresource) {
        ("", "nodes", "") | ("coordination.k8s.io", "leases", "") if name != node => {
            Err(forbidden(
                user,
                "create",
                kind,
                namespace,
                &name,
                &format!("node '{node}' may only create its own {}", kind.kind),
            ))
        }
        ("", "serviceaccounts", "token") => {
            let bound = token_request.and_then(|r| r.pointer("/spec/boundObjectRef"));
            let pod = bound
                .filter(|b| b.get("kind").and_then(Json::as_str) == Some("Pod"))
                .and_then(|b| b.get("name").and_then(Json::as_str));
            let on_node = match pod {
                Some(pod) => pod_node(registry, namespace, pod).await?.as_deref() == Some(node),
                None => false,
            };
            if on_node {
                Ok(())
            } else {
                Err(forbidden(
                    user,
                    "create",
                    kind,
                    namespace,
                    &name,
                    &format!("node '{node}' may only request tokens bound to its pods"),
                ))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_node_users_are_nodes() {
        let u = |name: &str, groups: &[&str]| UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(node_of(&u("system:node:a", &["system:nodes"])), Some("a"));
        assert_eq!(node_of(&u("system:node:a", &[])), None);
        assert_eq!(node_of(&u("system:node:", &["system:nodes"])), None);
        assert_eq!(node_of(&u("alice", &["system:nodes"])), None);
    }

    #[test]
    fn references_cover_volumes_env_and_pull_secrets() {
        let pod = json!({"spec": {
            "volumes": [
                {"secret": {"secretName": "vol"}},
                {"configMap": {"name": "cm-vol"}},
                {"projected": {"sources": [{"secret": {"name": "proj"}}, {"configMap": {"name": "cm-proj"}}]}},
                {"persistentVolumeClaim": {"claimName": "data"}}
            ],
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"env": [
                {"valueFrom": {"secretKeyRef": {"name": "env"}}},
                {"valueFrom": {"configMapKeyRef": {"name": "cm-env"}}}
            ], "envFrom": [{"secretRef": {"name": "from"}}]}],
            "initContainers": [{"envFrom": [{"configMapRef": {"name": "cm-init"}}]}]
        }});
        let mut s = references(&pod, "secrets");
        s.sort();
        assert_eq!(s, ["env", "from", "proj", "pull", "vol"]);
        let mut c = references(&pod, "configmaps");
        c.sort();
        assert_eq!(c, ["cm-env", "cm-init", "cm-proj", "cm-vol"]);
        assert_eq!(references(&pod, "persistentvolumeclaims"), ["data"]);
    }
}
