//! RBAC authorization with Kubernetes' semantics: Roles and ClusterRoles hold rules
//! (apiGroups, resources incl. subresources, resourceNames, verbs incl. `*`,
//! nonResourceURLs), RoleBindings and ClusterRoleBindings grant them to users, groups and
//! service accounts. The gateway keeps every RBAC object in memory (listed, then followed
//! through the watch cache), so an authorization decision is a lookup, not a store read.
//!
//! Members of `system:masters` are allowed everything before any rule is consulted, as
//! kube-apiserver's superuser group.
//!
//! Escalation prevention: writing a Role/ClusterRole needs the `escalate` verb on it or every
//! permission it grants; writing a binding needs the `bind` verb on the role it references or
//! every permission of that role ([`Rbac::check_escalation`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use navarch_api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use navarch_api::{ApiError, Object};

use crate::auth::{Attributes, Authorizer, UserInfo, forbidden};

/// The superuser group.
pub const MASTERS: &str = "system:masters";
/// Every authenticated user's group.
pub const AUTHENTICATED: &str = "system:authenticated";

/// What `system:masters` holds, as rules: `*` on every resource and every path.
pub fn superuser_rules() -> Vec<PolicyRule> {
    let all = vec!["*".to_string()];
    vec![
        PolicyRule {
            api_groups: all.clone(),
            resources: all.clone(),
            verbs: all.clone(),
            ..Default::default()
        },
        PolicyRule {
            non_resource_ur_ls: all.clone(),
            verbs: all,
            ..Default::default()
        },
    ]
}

/// What a request asks, as RBAC matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        /// `pods`, or `pods/log` with a subresource.
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Whether `rule` allows `req` (Kubernetes' `RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, req: &Request<'_>) -> bool {
    match *req {
        Request::Resource {
            verb,
            group,
            resource,
            name,
            ..
        } => {
            if !has(&rule.verbs, verb) || !has(&rule.api_groups, group) {
                return false;
            }
            let resource_ok = rule.resources.iter().any(|r| {
                if r == "*" || r == resource {
                    return true;
                }
                // `*/scale` matches every resource's scale; `pods/*` every pods subresource.
                match (r.split_once('/'), resource.split_once('/')) {
                    (Some(("*", sub)), Some((_, want))) => sub == want,
                    (Some((res, "*")), Some((want, _))) => res == want,
                    _ => false,
                }
            });
            if !resource_ok {
                return false;
            }
            rule.resource_names.is_empty()
                || (!name.is_empty() && rule.resource_names.iter().any(|n| n == name))
        }
        Request::NonResource { verb, path } => {
            has(&rule.verbs, verb)
                && rule.non_resource_ur_ls.iter().any(|u| {
                    u == "*"
                        || u == path
                        || u.strip_suffix('*')
                            .is_some_and(|prefix| path.starts_with(prefix))
                })
        }
    }
}

/// A binding, reduced to what authorization needs.
#[derive(Clone, Debug)]
struct Grant {
    /// `Role` (in the binding's namespace) or `ClusterRole`.
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

fn subject_matches(s: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    let name = s.name.as_deref().unwrap_or_default();
    match s.kind.as_deref().unwrap_or_default() {
        "User" => name == user.name,
        "Group" => user.in_group(name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// Every RBAC object, indexed for authorization.
#[derive(Default)]
struct State {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_grants: HashMap<String, Grant>,
    /// namespace → binding name → grant.
    grants: HashMap<String, HashMap<String, Grant>>,
}

impl State {
    /// The rules `user` holds for `namespace` ("" = cluster-wide only), in no order.
    fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<&PolicyRule> {
        let mut out = Vec::new();
        for g in self.cluster_grants.values() {
            if g.subjects.iter().any(|s| subject_matches(s, user, ""))
                && let Some(rules) = self.cluster_roles.get(&g.role_name)
            {
                out.extend(rules.iter());
            }
        }
        if !namespace.is_empty()
            && let Some(grants) = self.grants.get(namespace)
        {
            for g in grants.values() {
                if !g
                    .subjects
                    .iter()
                    .any(|s| subject_matches(s, user, namespace))
                {
                    continue;
                }
                let rules = match g.role_kind.as_str() {
                    "ClusterRole" => self.cluster_roles.get(&g.role_name),
                    _ => self
                        .roles
                        .get(&(namespace.to_string(), g.role_name.clone())),
                };
                out.extend(rules.into_iter().flatten());
            }
        }
        out
    }
}

/// The RBAC authorizer; [`spawn_sync`] keeps it up to date.
#[derive(Default)]
pub struct Rbac {
    state: RwLock<State>,
    synced: AtomicBool,
}

impl Rbac {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether the first full list has been loaded.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub(crate) fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Whether `user` may do `req`.
    pub fn allows(&self, user: &UserInfo, req: &Request<'_>) -> bool {
        if user.in_group(MASTERS) {
            return true;
        }
        let namespace = match req {
            Request::Resource { namespace, .. } => *namespace,
            Request::NonResource { .. } => "",
        };
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .rules_for(user, namespace)
            .into_iter()
            .any(|r| rule_allows(r, req))
    }

    /// The rules `user` holds in `namespace` (cluster-wide ones included), for
    /// SelfSubjectRulesReview; masters get `*` on everything.
    pub fn rules(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        if user.in_group(MASTERS) {
            return superuser_rules();
        }
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .rules_for(user, namespace)
            .into_iter()
            .cloned()
            .collect()
    }

    /// The rules of the role a binding in `namespace` refers to (`None`: no such role).
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<PolicyRule>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        match kind {
            "ClusterRole" => state.cluster_roles.get(name).cloned(),
            _ => state
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .cloned(),
        }
    }

    /// Whether `user` holds every permission of `rules` in `namespace` (Kubernetes'
    /// `ConfirmNoEscalation`): each rule is broken into single verb/group/resource/name
    /// requests, each of which the user must be allowed.
    pub fn covers(
        &self,
        user: &UserInfo,
        namespace: &str,
        rules: &[PolicyRule],
    ) -> Result<(), String> {
        if user.in_group(MASTERS) {
            return Ok(());
        }
        let mut missing = Vec::new();
        for rule in rules {
            for verb in &rule.verbs {
                if !rule.non_resource_ur_ls.is_empty() {
                    for url in &rule.non_resource_ur_ls {
                        if !self.allows_literal(user, "", &Request::NonResource { verb, path: url })
                        {
                            missing.push(format!("{{NonResourceURLs:[{url}], Verbs:[{verb}]}}"));
                        }
                    }
                    continue;
                }
                let names: Vec<&str> = if rule.resource_names.is_empty() {
                    vec![""]
                } else {
                    rule.resource_names.iter().map(String::as_str).collect()
                };
                for group in &rule.api_groups {
                    for resource in &rule.resources {
                        for name in &names {
                            let req = Request::Resource {
                                verb,
                                group,
                                resource,
                                namespace,
                                name,
                            };
                            if !self.allows_literal(user, namespace, &req) {
                                let names = if name.is_empty() {
                                    String::new()
                                } else {
                                    format!(", ResourceNames:[\"{name}\"]")
                                };
                                missing.push(format!(
                                    "{{APIGroups:[\"{group}\"], Resources:[\"{resource}\"]{names}, Verbs:[\"{verb}\"]}}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join(" "))
        }
    }

    /// Like [`Self::allows`], but a `*` or an empty resource name in the request only matches
    /// `*` or no-names in the user's rules (a grant of `*` needs `*`).
    fn allows_literal(&self, user: &UserInfo, namespace: &str, req: &Request<'_>) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .rules_for(user, namespace)
            .into_iter()
            .any(|rule| match *req {
                Request::Resource { name: "", .. } => {
                    rule.resource_names.is_empty() && rule_allows(rule, req)
                }
                _ => rule_allows(rule, req),
            })
    }

    /// Refuses an RBAC write that would grant more than its author holds (unless the author
    /// may `escalate` roles or `bind` the referenced role).
    pub fn check_escalation(&self, user: &UserInfo, obj: &Object) -> Result<(), ApiError> {
        if user.in_group(MASTERS) {
            return Ok(());
        }
        let namespace = obj.namespace();
        let name = obj.name();
        let kind = obj.kind.kind;
        let refuse = |what: String| {
            ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{what}",
                obj.kind.plural,
                user.name,
                user.groups
            ))
            .on(obj.kind.group, obj.kind.plural, &name)
        };
        let may = |verb: &str, resource: &str, target: &str| {
            self.allows(
                user,
                &Request::Resource {
                    verb,
                    group: "rbac.authorization.k8s.io",
                    resource,
                    namespace: &namespace,
                    name: target,
                },
            )
        };
        match kind {
            "Role" | "ClusterRole" => {
                if may("escalate", obj.kind.plural, &name) {
                    return Ok(());
                }
                let rules = match kind {
                    "Role" => obj.to_typed::<Role>()?.rules,
                    _ => obj.to_typed::<ClusterRole>()?.rules,
                };
                self.covers(user, &namespace, &rules).map_err(refuse)
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let role_ref = match kind {
                    "RoleBinding" => obj.to_typed::<RoleBinding>()?.role_ref,
                    _ => obj.to_typed::<ClusterRoleBinding>()?.role_ref,
                }
                .unwrap_or_default();
                let role_kind = role_ref.kind.unwrap_or_default();
                let role_name = role_ref.name.unwrap_or_default();
                let plural = if role_kind == "ClusterRole" {
                    "clusterroles"
                } else {
                    "roles"
                };
                if may("bind", plural, &role_name) {
                    return Ok(());
                }
                let rules = self
                    .role_rules(&role_kind, &namespace, &role_name)
                    .unwrap_or_default();
                self.covers(user, &namespace, &rules).map_err(refuse)
            }
            _ => Ok(()),
        }
    }

    // --- Updates from the store ---

    pub(crate) fn apply(&self, obj: &Object, deleted: bool) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let name = obj.name();
        let namespace = obj.namespace();
        match obj.kind.kind {
            "ClusterRole" => {
                if deleted {
                    state.cluster_roles.remove(&name);
                } else if let Ok(r) = obj.to_typed::<ClusterRole>() {
                    state.cluster_roles.insert(name, r.rules);
                }
            }
            "Role" => {
                if deleted {
                    state.roles.remove(&(namespace, name));
                } else if let Ok(r) = obj.to_typed::<Role>() {
                    state.roles.insert((namespace, name), r.rules);
                }
            }
            "ClusterRoleBinding" => {
                if deleted {
                    state.cluster_grants.remove(&name);
                } else if let Ok(b) = obj.to_typed::<ClusterRoleBinding>() {
                    let role_ref = b.role_ref.unwrap_or_default();
                    state.cluster_grants.insert(
                        name,
                        Grant {
                            role_kind: "ClusterRole".into(),
                            role_name: role_ref.name.unwrap_or_default(),
                            subjects: b.subjects,
                        },
                    );
                }
            }
            "RoleBinding" => {
                if deleted {
                    if let Some(g) = state.grants.get_mut(&namespace) {
                        g.remove(&name);
                    }
                } else if let Ok(b) = obj.to_typed::<RoleBinding>() {
                    let role_ref = b.role_ref.unwrap_or_default();
                    state.grants.entry(namespace).or_default().insert(
                        name,
                        Grant {
                            role_kind: role_ref.kind.unwrap_or_default(),
                            role_name: role_ref.name.unwrap_or_default(),
                            subjects: b.subjects,
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

impl Authorizer for Rbac {
    fn allows(&self, user: &UserInfo, req: &Request<'_>) -> bool {
        Rbac::allows(self, user, req)
    }

    fn rules(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, bool) {
        (Rbac::rules(self, user, namespace), true)
    }

    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        let resource = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        let req = Request::Resource {
            verb: attrs.verb,
            group: &attrs.group,
            resource: &resource,
            namespace: &attrs.namespace,
            name: &attrs.name,
        };
        if self.allows(user, &req) {
            return Ok(());
        }
        if !self.synced() {
            return Err(ApiError::new(
                navarch_api::Reason::ServiceUnavailable,
                "the authorizer is still loading RBAC policy; retry shortly",
            ));
        }
        Err(forbidden(user, attrs))
    }
}

/// The RBAC kinds the authorizer follows.
fn rbac_kinds() -> Vec<&'static navarch_api::kinds::KindInfo> {
    [
        "roles",
        "clusterroles",
        "rolebindings",
        "clusterrolebindings",
    ]
    .iter()
    .filter_map(|p| navarch_api::kinds::by_resource("rbac.authorization.k8s.io", "v1", p))
    .collect()
}

/// Keeps `rbac` equal to the stored RBAC objects: a full list, then every change from the
/// watch cache (relisting when it falls behind). Runs until the task is aborted.
pub fn spawn_sync(
    rbac: Arc<Rbac>,
    registry: Arc<crate::registry::Registry>,
) -> tokio::task::JoinHandle<()> {
    let loaded = rbac.clone();
    crate::watch_cache::follow(
        registry,
        rbac_kinds(),
        "RBAC policy",
        move |objects| {
            let staging = Rbac::default();
            for obj in &objects {
                staging.apply(obj, false);
            }
            *loaded.state.write().unwrap_or_else(|e| e.into_inner()) = staging
                .state
                .into_inner()
                .unwrap_or_else(|e| e.into_inner());
            loaded.mark_synced();
        },
        move |obj, deleted| rbac.apply(obj, deleted),
    )
}

/// Turns RBAC on for a running gateway whose authorizer is `rbac`: the default policy is
/// created or reconciled, escalation prevention joins admission, and `rbac` follows the
/// stored policy. Returns the sync task (abort it on shutdown).
pub async fn enable(
    registry: &Arc<crate::registry::Registry>,
    rbac: &Arc<Rbac>,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    crate::rbac_bootstrap::ensure_default_policy(registry).await?;
    registry.set_rbac(rbac.clone());
    let task = spawn_sync(rbac.clone(), registry.clone());
    // Serve with the policy loaded: non-masters would otherwise be refused for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !rbac.synced() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            api_groups: v(groups),
            resources: v(resources),
            verbs: v(verbs),
            resource_names: v(names),
            non_resource_ur_ls: vec![],
        }
    }

    fn res<'a>(verb: &'a str, group: &'a str, resource: &'a str, name: &'a str) -> Request<'a> {
        Request::Resource {
            verb,
            group,
            resource,
            namespace: "default",
            name,
        }
    }

    #[test]
    fn rules_match_as_kubernetes_does() {
        let pods = rule(&[""], &["pods"], &["get", "list"], &[]);
        assert!(rule_allows(&pods, &res("get", "", "pods", "x")));
        assert!(!rule_allows(&pods, &res("delete", "", "pods", "x")));
        assert!(!rule_allows(&pods, &res("get", "apps", "pods", "x")));
        // A subresource is its own resource.
        assert!(!rule_allows(&pods, &res("get", "", "pods/log", "x")));
        let sub = rule(&[""], &["pods/*"], &["get"], &[]);
        assert!(rule_allows(&sub, &res("get", "", "pods/log", "x")));
        let scale = rule(&["*"], &["*/scale"], &["update"], &[]);
        assert!(rule_allows(
            &scale,
            &res("update", "apps", "deployments/scale", "w")
        ));
        assert!(!rule_allows(
            &scale,
            &res("update", "apps", "deployments", "w")
        ));
        // resourceNames: only requests naming one of them.
        let named = rule(&[""], &["configmaps"], &["get"], &["app-config"]);
        assert!(rule_allows(
            &named,
            &res("get", "", "configmaps", "app-config")
        ));
        assert!(!rule_allows(&named, &res("get", "", "configmaps", "other")));
        assert!(!rule_allows(&named, &res("get", "", "configmaps", "")));
        let all = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(
            &all,
            &res("deletecollection", "batch", "jobs", "")
        ));
        let url = PolicyRule {
            non_resource_ur_ls: vec!["/healthz".into(), "/metrics/*".into()],
            verbs: vec!["get".into()],
            ..Default::default()
        };
        assert!(rule_allows(
            &url,
            &Request::NonResource {
                verb: "get",
                path: "/healthz"
            }
        ));
        assert!(rule_allows(
            &url,
            &Request::NonResource {
                verb: "get",
                path: "/metrics/slis"
            }
        ));
        assert!(!rule_allows(
            &url,
            &Request::NonResource {
                verb: "get",
                path: "/metrics"
            }
        ));
        assert!(!rule_allows(&url, &res("get", "", "healthz", "")));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let user = UserInfo {
            name: "system:serviceaccount:team:builder".into(),
            uid: String::new(),
            groups: vec!["system:serviceaccounts".into(), AUTHENTICATED.into()],
            extra: Default::default(),
        };
        let s = |kind: &str, name: &str, ns: Option<&str>| Subject {
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: ns.map(String::from),
            api_group: None,
        };
        assert!(subject_matches(
            &s("ServiceAccount", "builder", Some("team")),
            &user,
            ""
        ));
        assert!(subject_matches(
            &s("ServiceAccount", "builder", None),
            &user,
            "team"
        ));
        assert!(!subject_matches(
            &s("ServiceAccount", "builder", None),
            &user,
            "other"
        ));
        assert!(subject_matches(&s("Group", AUTHENTICATED, None), &user, ""));
        assert!(!subject_matches(&s("User", "builder", None), &user, ""));
    }
}
