//! What a Kubernetes API path names: discovery documents or a resource request (group,
//! version, namespace, resource, name, subresource), parsed the way kube-apiserver's
//! `RequestInfoFactory` does, plus the verb from the method and query.

use navarch_api::ApiError;
use navarch_api::kinds::{self, KindInfo};

/// A parsed `/api/...` or `/apis/...` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api`: the core APIVersions.
    CoreVersions,
    /// `/apis`: the APIGroupList.
    Groups,
    /// `/apis/<group>`: one APIGroup.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: an APIResourceList.
    Resources { group: String, version: String },
    /// Anything below a group version.
    Resource(ResourcePath),
}

/// The resource part of a path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    /// "" when the path names no namespace.
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
    /// The deprecated `/watch/` form (`/api/v1/watch/namespaces/x/pods`).
    pub legacy_watch: bool,
}

/// The verb of a resource request, as Kubernetes names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// Subresources of a namespace that live under `/namespaces/<name>/` (not a namespaced
/// resource in their own right).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Subresources served later by the node agent (streamed or upgraded connections).
pub const AGENT_SUBRESOURCES: &[&str] = &["log", "exec", "attach", "portforward", "proxy"];

/// Parses a path below `/api` or `/apis` (already percent-decoded segments). `None` when the
/// path is not an API path at all.
pub fn parse_path(path: &str) -> Option<ApiPath> {
    let trimmed = path.trim_end_matches('/');
    let mut parts: Vec<String> = trimmed
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let prefix = parts.remove(0);
    let (group, version) = match prefix.as_str() {
        "api" => {
            if parts.is_empty() {
                return Some(ApiPath::CoreVersions);
            }
            (String::new(), parts.remove(0))
        }
        "apis" => {
            if parts.is_empty() {
                return Some(ApiPath::Groups);
            }
            let group = parts.remove(0);
            if parts.is_empty() {
                return Some(ApiPath::Group(group));
            }
            (group, parts.remove(0))
        }
        _ => return None,
    };
    if parts.is_empty() {
        return Some(ApiPath::Resources { group, version });
    }
    let mut r = ResourcePath {
        group,
        version,
        ..Default::default()
    };
    if parts[0] == "watch" {
        r.legacy_watch = true;
        parts.remove(0);
        if parts.is_empty() {
            return Some(ApiPath::Resource(r));
        }
    }
    let mut rest: &[String] = &parts;
    if rest[0] == "namespaces" && rest.len() > 1 {
        r.namespace = rest[1].clone();
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2].as_str()) {
            rest = &rest[2..];
        }
    }
    r.resource = rest[0].clone();
    if rest.len() >= 2 {
        r.name = rest[1].clone();
    }
    if rest.len() >= 3 {
        r.subresource = rest[2..].join("/");
    }
    Some(ApiPath::Resource(r))
}

/// The server could not find the requested resource (kube-apiserver's wording).
pub fn not_found() -> ApiError {
    let mut e = ApiError::new(
        navarch_api::Reason::NotFound,
        "the server could not find the requested resource",
    );
    e.kind = String::new();
    e
}

/// The method is not served on this path (kube-apiserver's wording).
pub fn method_not_allowed(method: &str, what: &str) -> ApiError {
    ApiError::method_not_allowed(format!(
        "the server does not allow this method on the requested resource ({method} {what})"
    ))
}

/// A resource request resolved against the served kinds.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub kind: &'static KindInfo,
    pub verb: Verb,
    /// The namespace to use ("" for cluster-scoped kinds and all-namespace lists).
    pub namespace: String,
    pub name: String,
    pub subresource: String,
}

/// Resolves the kind, checks scope, and derives the verb from the method (`watch` from the
/// query or the legacy path).
pub fn resolve(
    path: &ResourcePath,
    method: &http::Method,
    watch: bool,
) -> Result<Resolved, ApiError> {
    let kind =
        kinds::by_resource(&path.group, &path.version, &path.resource).ok_or_else(not_found)?;
    let mut namespace = path.namespace.clone();
    if !kind.namespaced {
        if kind.plural == "namespaces" {
            // `/api/v1/namespaces/<name>` names the namespace itself.
            namespace.clear();
        } else if !namespace.is_empty() {
            return Err(not_found());
        }
    } else if namespace.is_empty() && !path.name.is_empty() {
        // `/api/v1/pods/<name>` does not exist: named requests need a namespace.
        return Err(not_found());
    }
    if !path.subresource.is_empty() {
        check_subresource(kind, &path.subresource)?;
    }
    let watch = watch || path.legacy_watch;
    let named = !path.name.is_empty();
    let verb = match *method {
        http::Method::GET | http::Method::HEAD if watch => Verb::Watch,
        http::Method::GET | http::Method::HEAD if named => Verb::Get,
        http::Method::GET | http::Method::HEAD => Verb::List,
        _ if path.legacy_watch => {
            return Err(method_not_allowed(method.as_str(), &path.resource));
        }
        http::Method::POST if named && !path.subresource.is_empty() => Verb::Create,
        http::Method::POST if !named => Verb::Create,
        http::Method::PUT if named => Verb::Update,
        http::Method::PATCH if named => Verb::Patch,
        http::Method::DELETE if named && path.subresource.is_empty() => Verb::Delete,
        http::Method::DELETE if !named => Verb::DeleteCollection,
        _ => return Err(method_not_allowed(method.as_str(), &path.resource)),
    };
    // Namespaces have no deletecollection (as in kube-apiserver).
    if verb == Verb::DeleteCollection && kind.plural == "namespaces" {
        return Err(method_not_allowed(method.as_str(), &path.resource));
    }
    // Namespaced kinds across all namespaces: only list and watch (as in kube-apiserver).
    if kind.namespaced && path.namespace.is_empty() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(method_not_allowed(method.as_str(), &path.resource));
    }
    Ok(Resolved {
        kind,
        verb,
        namespace,
        name: path.name.clone(),
        subresource: path.subresource.clone(),
    })
}

/// Whether `kind` serves `sub`; 404 otherwise.
fn check_subresource(kind: &KindInfo, sub: &str) -> Result<(), ApiError> {
    let ok = match sub {
        "status" => kind.status,
        "scale" => kind.scale,
        "binding" | "eviction" | "ephemeralcontainers" | "resize" => kind.kind == "Pod",
        "finalize" => kind.kind == "Namespace",
        "token" => kind.kind == "ServiceAccount",
        "proxy" => matches!(kind.kind, "Pod" | "Node" | "Service"),
        s if AGENT_SUBRESOURCES.contains(&s) => kind.kind == "Pod",
        _ => false,
    };
    if ok { Ok(()) } else { Err(not_found()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn res(path: &str) -> ResourcePath {
        match parse_path(path) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse_path("/api"), Some(ApiPath::CoreVersions));
        assert_eq!(parse_path("/api/"), Some(ApiPath::CoreVersions));
        assert_eq!(parse_path("/apis"), Some(ApiPath::Groups));
        assert_eq!(
            parse_path("/apis/apps"),
            Some(ApiPath::Group("apps".into()))
        );
        assert_eq!(
            parse_path("/api/v1"),
            Some(ApiPath::Resources {
                group: String::new(),
                version: "v1".into()
            })
        );
        assert_eq!(
            parse_path("/apis/apps/v1"),
            Some(ApiPath::Resources {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse_path("/version"), None);
    }

    #[test]
    fn resource_paths_as_kube_apiserver_reads_them() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (
                r.namespace.as_str(),
                r.resource.as_str(),
                r.name.as_str(),
                r.subresource.as_str()
            ),
            ("default", "pods", "web", "status")
        );
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str()),
            ("namespaces", "kube-system")
        );
        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("namespaces", "x", "finalize")
        );
        let r = res("/api/v1/namespaces");
        assert_eq!((r.resource.as_str(), r.name.as_str()), ("namespaces", ""));
        let r = res("/apis/apps/v1/deployments");
        assert_eq!(
            (r.group.as_str(), r.resource.as_str(), r.namespace.as_str()),
            ("apps", "deployments", "")
        );
        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.legacy_watch);
        assert_eq!(
            (r.namespace.as_str(), r.resource.as_str()),
            ("default", "pods")
        );
        let r = res("/api/v1/nodes/n1");
        assert_eq!((r.resource.as_str(), r.name.as_str()), ("nodes", "n1"));
    }

    #[test]
    fn verbs_and_scope() {
        let get = |p: &str, m: Method, w: bool| resolve(&res(p), &m, w);
        assert_eq!(
            get("/api/v1/pods", Method::GET, false).unwrap().verb,
            Verb::List
        );
        assert_eq!(
            get("/api/v1/pods", Method::GET, true).unwrap().verb,
            Verb::Watch
        );
        assert_eq!(
            get("/api/v1/namespaces/d/pods/x", Method::GET, false)
                .unwrap()
                .verb,
            Verb::Get
        );
        assert_eq!(
            get("/api/v1/namespaces/d/pods", Method::DELETE, false)
                .unwrap()
                .verb,
            Verb::DeleteCollection
        );
        assert_eq!(
            get("/api/v1/namespaces/d/pods/x/binding", Method::POST, false)
                .unwrap()
                .verb,
            Verb::Create
        );
        let ns = get("/api/v1/namespaces/x", Method::DELETE, false).unwrap();
        assert_eq!(
            (ns.verb, ns.namespace.as_str(), ns.name.as_str()),
            (Verb::Delete, "", "x")
        );
        assert_eq!(
            get("/api/v1/pods", Method::POST, false).unwrap_err().code(),
            405
        );
        assert_eq!(
            get("/api/v1/namespaces/d/pods", Method::PUT, false)
                .unwrap_err()
                .code(),
            405
        );
        assert_eq!(
            get("/api/v1/pods/x", Method::GET, false)
                .unwrap_err()
                .code(),
            404
        );
        assert_eq!(
            get("/api/v1/namespaces/d/nodes", Method::GET, false)
                .unwrap_err()
                .code(),
            404
        );
        assert_eq!(
            get("/api/v1/namespaces/d/widgets", Method::GET, false)
                .unwrap_err()
                .code(),
            404
        );
        assert_eq!(
            get(
                "/api/v1/namespaces/d/configmaps/x/scale",
                Method::GET,
                false
            )
            .unwrap_err()
            .code(),
            404
        );
        assert!(
            get(
                "/apis/apps/v1/namespaces/d/deployments/x/scale",
                Method::PATCH,
                false
            )
            .is_ok()
        );
    }
}
