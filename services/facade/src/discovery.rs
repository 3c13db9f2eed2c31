//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1` and `/apis/<group>/<version>`.
//!
//! Pure functions over the kinds table ([`navarch_api::kinds::KINDS`]); the handlers serialise
//! what they return. Everything here is what client-go's discovery client reads
//! (`k8s.io/client-go/discovery/discovery_client.go`) to build kubectl's REST mapper, resolve
//! short names (`po`, `deploy`), expand categories (`kubectl get all`) and find the `scale`
//! subresource (`kubectl scale`).
//!
//! # What the handlers must do (verified against client-go)
//!
//! * `/api` and `/apis` are requested with
//!   `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
//!   application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`
//!   (kubectl ≥ 1.30 may also put a `...;profile=nopeer` variant first). We do not serve the
//!   aggregated form: answer **200 with [`api_versions`] / [`api_group_list`] and
//!   `Content-Type: application/json`** (no `g=`/`v=`/`as=` parameters). client-go decides the
//!   format from the response's `Content-Type` alone (`ContentTypeIsGVK`), so a plain
//!   `application/json` answer makes it fall back to legacy discovery: it then fetches
//!   `/api/v1` and every `/apis/<group>/<version>` listed in `/apis` (in parallel) and decodes
//!   each as an `APIResourceList`. Never echo the Accept header's parameters back.
//! * `/api/v1` and `/apis/<g>/<v>`: [`api_resource_list`]; `None` → 404 with a `Status`
//!   (client-go tolerates 404 only for `v1`; for a listed group any error marks that group as
//!   failed and kubectl prints "couldn't get resource list for …").
//! * `/version`: [`version_info`], `Content-Type: application/json`.
//! * kubectl caches all of this under `~/.kube/cache/discovery/<host>/` for 6 hours (plain
//!   files, no ETag needed). Protobuf (`application/vnd.kubernetes.protobuf`) is never asked
//!   for on these paths by kubectl.

use navarch_api::kinds::{self, KINDS, KindInfo};
use serde_json::{Value, json};

/// The Kubernetes release whose API we present. kubectl warns when its own minor version is
/// more than one away from the server's (`kubectl version`), and the Google Cloud SDK kubectl
/// dispatcher picks `kubectl.1.<minor>` from it.
pub const KUBERNETES_MAJOR: &str = "1";
/// See [`KUBERNETES_MAJOR`].
pub const KUBERNETES_MINOR: &str = "33";

/// The standard verbs of a stored kind.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Groups whose kinds are read-only views computed on request rather than stored objects:
/// the resource metrics API (`kubectl top`), `NodeMetrics` and `PodMetrics`, served from the
/// gateway's memory with only the verbs `get` and `list` (what metrics-server advertises and
/// what `kubectl top` checks for), and no storage version hash.
const READ_ONLY_GROUPS: &[&str] = &["metrics.k8s.io"];

/// `GET /version` (`k8s.io/apimachinery/pkg/version.Info`).
///
/// `gitVersion` is a valid semantic version whose major/minor match `major`/`minor`
/// (`k8s.io/apimachinery/pkg/util/version.ParseGeneric` accepts the `-navarch` pre-release
/// suffix); the 1.33 emulation/compatibility fields are filled too.
pub fn version_info() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "emulationMajor": KUBERNETES_MAJOR,
        "emulationMinor": KUBERNETES_MINOR,
        "minCompatibilityMajor": KUBERNETES_MAJOR,
        "minCompatibilityMinor": "32",
        "gitVersion": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-navarch+v{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("NAVARCH_GIT_COMMIT").unwrap_or("0000000000000000000000000000000000000000"),
        "gitTreeState": "clean",
        "buildDate": option_env!("NAVARCH_BUILD_DATE").unwrap_or("2025-04-23T00:00:00Z"),
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": platform(),
    })
}

fn platform() -> String {
    let os = std::env::consts::OS;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{os}/{arch}")
}

/// `GET /api`: the legacy core group's versions (`APIVersions`), without a server address.
/// kubectl does not read `serverAddressByClientCIDRs`; see [`api_versions_at`] to fill it.
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// `GET /api` as kube-apiserver answers it: the address clients should use (`host:port`) for
/// every client network.
pub fn api_versions_at(server_address: &str) -> Value {
    let mut doc = api_versions();
    doc["serverAddressByClientCIDRs"] = json!([{
        "clientCIDR": "0.0.0.0/0",
        "serverAddress": server_address,
    }]);
    doc
}

/// `GET /apis`: every non-core group with its versions, in the order of the kinds table
/// (`APIGroupList`). The first version listed for a group is its preferred version.
pub fn api_group_list() -> Value {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for kind in KINDS.iter().filter(|k| !k.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == kind.group) {
            Some((_, versions)) => {
                if !versions.contains(&kind.version) {
                    versions.push(kind.version);
                }
            }
            None => groups.push((kind.group, vec![kind.version])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({
                "name": group,
                "versions": versions,
                "preferredVersion": versions[0],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups,
    })
}

/// The group/versions served, core first: `("", "v1")`, `("apps", "v1")`, …
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = vec![("", "v1")];
    for kind in KINDS {
        if !out.contains(&(kind.group, kind.version)) {
            out.push((kind.group, kind.version));
        }
    }
    out
}

/// `GET /api/v1` (`group` = "") or `GET /apis/<group>/<version>`: one `APIResource` per kind
/// and per subresource (`APIResourceList`); `None` if the group/version is not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&KindInfo> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for kind in kinds {
        resources.push(resource(kind));
        for sub in subresources(kind) {
            resources.push(sub.to_json(kind));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The verbs a kind supports on its main resource.
pub fn verbs(kind: &KindInfo) -> &'static [&'static str] {
    if READ_ONLY_GROUPS.contains(&kind.group) {
        &["get", "list"]
    } else if kind.virtual_kind {
        &["create"]
    } else if kind.group.is_empty() && kind.plural == "namespaces" {
        // As kube-apiserver: namespaces have no deletecollection.
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]
    } else {
        ALL_VERBS
    }
}

fn resource(kind: &KindInfo) -> Value {
    let mut r = json!({
        "name": kind.plural,
        "singularName": kinds::singular(kind),
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": verbs(kind),
    });
    if !kind.short_names.is_empty() {
        r["shortNames"] = json!(kind.short_names);
    }
    if !kind.categories.is_empty() {
        r["categories"] = json!(kind.categories);
    }
    if !kind.virtual_kind && !READ_ONLY_GROUPS.contains(&kind.group) {
        r["storageVersionHash"] = json!(storage_version_hash(kind));
    }
    r
}

/// A subresource of a kind, as discovery lists it (`pods/log`, `deployments/scale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// The path segment after the object's name (`scale`).
    pub name: &'static str,
    /// The group of the kind sent and returned, when it differs from the parent's
    /// (`autoscaling` for `scale`, `policy` for `eviction`).
    pub group: Option<&'static str>,
    /// Its version, with `group`.
    pub version: Option<&'static str>,
    /// The kind sent and returned; `None` means the parent's kind (`status`, `log`).
    pub kind: Option<&'static str>,
    pub verbs: &'static [&'static str],
}

impl Subresource {
    const fn new(name: &'static str, verbs: &'static [&'static str]) -> Self {
        Subresource {
            name,
            group: None,
            version: None,
            kind: None,
            verbs,
        }
    }

    const fn of(
        self,
        group: Option<&'static str>,
        version: Option<&'static str>,
        kind: &'static str,
    ) -> Self {
        Subresource {
            group,
            version,
            kind: Some(kind),
            ..self
        }
    }

    fn to_json(self, parent: &KindInfo) -> Value {
        let mut r = json!({
            "name": format!("{}/{}", parent.plural, self.name),
            "singularName": "",
            "namespaced": parent.namespaced,
        });
        if let Some(group) = self.group {
            r["group"] = json!(group);
        }
        if let Some(version) = self.version {
            r["version"] = json!(version);
        }
        r["kind"] = json!(self.kind.unwrap_or(parent.kind));
        r["verbs"] = json!(self.verbs);
        r
    }
}

const STATUS: Subresource = Subresource::new("status", &["get", "patch", "update"]);
/// `deployments/scale` etc.: `autoscaling/v1` `Scale`, which is what `kubectl scale` (the
/// scale client's discovery resolver) reads from the parent's resource list.
const SCALE: Subresource = Subresource::new("scale", &["get", "patch", "update"]).of(
    Some("autoscaling"),
    Some("v1"),
    "Scale",
);

/// The subresources served for `kind`, in discovery order.
pub fn subresources(kind: &KindInfo) -> Vec<Subresource> {
    let mut out = Vec::new();
    if kind.group.is_empty() {
        match kind.plural {
            "pods" => {
                out.push(Subresource::new("binding", &["create"]).of(None, None, "Binding"));
                out.push(Subresource::new("eviction", &["create"]).of(
                    Some("policy"),
                    Some("v1"),
                    "Eviction",
                ));
                out.push(Subresource::new("exec", &["create", "get"]).of(
                    None,
                    None,
                    "PodExecOptions",
                ));
                out.push(Subresource::new("log", &["get"]));
            }
            "namespaces" => out.push(Subresource::new("finalize", &["update"])),
            "serviceaccounts" => out.push(Subresource::new("token", &["create"]).of(
                Some("authentication.k8s.io"),
                Some("v1"),
                "TokenRequest",
            )),
            _ => {}
        }
    }
    if kind.scale {
        out.push(SCALE);
    }
    if kind.status {
        out.push(STATUS);
    }
    out
}

/// A stable opaque hash of the kind's storage version, as `storageVersionHash` (kube-apiserver
/// uses 8 bytes of a SHA-256 of `group/version/kind`; clients only compare it for equality).
fn storage_version_hash(kind: &KindInfo) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{}/{}/{}", kind.group, kind.version, kind.kind).bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    base64_8(hash.to_be_bytes())
}

/// Standard base64 of 8 bytes (12 characters, one `=` of padding, like kube-apiserver's).
fn base64_8(bytes: [u8; 8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(12);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
    }

    #[test]
    fn every_kind_is_discoverable_with_scope_and_short_names() {
        let groups = api_group_list();
        for kind in KINDS {
            let list = api_resource_list(kind.group, kind.version)
                .unwrap_or_else(|| panic!("{} is served", kind.api_version()));
            assert_eq!(list["groupVersion"], kind.api_version());
            let r = find(&list, kind.plural).unwrap_or_else(|| panic!("{}", kind.plural));
            assert_eq!(r["kind"], kind.kind);
            assert_eq!(r["namespaced"], kind.namespaced, "{}", kind.plural);
            assert_eq!(r["singularName"], kind.kind.to_ascii_lowercase());
            let short: Vec<&str> = r["shortNames"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(short, kind.short_names, "{}", kind.plural);
            let categories: Vec<&str> = r["categories"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(categories, kind.categories, "{}", kind.plural);
            if kind.create_only() {
                assert_eq!(r["verbs"], json!(["create"]), "{}", kind.plural);
                assert!(r.get("storageVersionHash").is_none());
                continue;
            }
            assert!(r["verbs"].as_array().unwrap().contains(&json!("get")));
            if READ_ONLY_GROUPS.contains(&kind.group) {
                assert_eq!(r["verbs"], json!(["get", "list"]), "{}", kind.plural);
                assert!(r.get("storageVersionHash").is_none());
            } else {
                assert!(r["storageVersionHash"].as_str().unwrap().len() == 12);
            }
            if !kind.group.is_empty() {
                let group = groups["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|g| g["name"] == kind.group)
                    .unwrap_or_else(|| panic!("{} in /apis", kind.group));
                assert!(group["versions"].as_array().unwrap().contains(
                    &json!({"groupVersion": kind.api_version(), "version": kind.version})
                ));
            }
        }
        assert!(api_resource_list("apps", "v1beta1").is_none());
        assert!(api_resource_list("nope", "v1").is_none());
    }

    #[test]
    fn subresources_kubectl_uses() {
        let core = api_resource_list("", "v1").unwrap();
        assert_eq!(
            find(&core, "pods/log").unwrap(),
            &json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]})
        );
        let eviction = find(&core, "pods/eviction").unwrap();
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["version"], "v1");
        assert_eq!(eviction["kind"], "Eviction");
        assert_eq!(eviction["verbs"], json!(["create"]));
        assert_eq!(
            find(&core, "pods/binding").unwrap()["verbs"],
            json!(["create"])
        );
        assert_eq!(
            find(&core, "pods/exec").unwrap()["verbs"],
            json!(["create", "get"])
        );
        assert_eq!(
            find(&core, "pods/status").unwrap()["verbs"],
            json!(["get", "patch", "update"])
        );
        let token = find(&core, "serviceaccounts/token").unwrap();
        assert_eq!(token["group"], "authentication.k8s.io");
        assert_eq!(token["kind"], "TokenRequest");
        assert_eq!(
            find(&core, "namespaces/finalize").unwrap()["verbs"],
            json!(["update"])
        );
        assert!(find(&core, "configmaps/status").is_none());
        assert!(
            !find(&core, "namespaces").unwrap()["verbs"]
                .as_array()
                .unwrap()
                .contains(&json!("deletecollection"))
        );

        let apps = api_resource_list("apps", "v1").unwrap();
        for scaled in ["deployments", "replicasets", "statefulsets"] {
            let scale = find(&apps, &format!("{scaled}/scale")).unwrap();
            assert_eq!(
                scale,
                &json!({"name": format!("{scaled}/scale"), "singularName": "", "namespaced": true,
                        "group": "autoscaling", "version": "v1", "kind": "Scale",
                        "verbs": ["get", "patch", "update"]})
            );
        }
        assert!(find(&apps, "daemonsets/scale").is_none());
        assert!(find(&apps, "daemonsets/status").is_some());
    }

    #[test]
    fn legacy_and_group_documents() {
        assert_eq!(api_versions()["versions"], json!(["v1"]));
        assert_eq!(
            api_versions_at("10.0.0.1:6443")["serverAddressByClientCIDRs"][0]["serverAddress"],
            "10.0.0.1:6443"
        );
        let groups = api_group_list();
        assert_eq!(groups["kind"], "APIGroupList");
        let apps = &groups["groups"][0];
        assert_eq!(apps["name"], "apps");
        assert_eq!(
            apps["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["name"] != "")
        );
        // The resource metrics API, as metrics-server registers it (`kubectl top` looks for it).
        let metrics = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "metrics.k8s.io")
            .expect("metrics.k8s.io in /apis");
        assert_eq!(
            metrics["preferredVersion"],
            json!({"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"})
        );
        // autoscaling/v2 is preferred, v1 served too.
        let autoscaling = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
        assert_eq!(autoscaling["versions"].as_array().unwrap().len(), 2);
        let gvs = group_versions();
        assert_eq!(gvs[0], ("", "v1"));
        assert!(gvs.contains(&("autoscaling", "v2")));
    }

    #[test]
    fn version_is_parseable() {
        let v = version_info();
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], KUBERNETES_MINOR);
        let git = v["gitVersion"].as_str().unwrap();
        assert!(
            git.starts_with(&format!("v1.{KUBERNETES_MINOR}.0-")),
            "{git}"
        );
        for field in [
            "gitCommit",
            "gitTreeState",
            "buildDate",
            "goVersion",
            "compiler",
            "platform",
        ] {
            assert!(!v[field].as_str().unwrap().is_empty(), "{field}");
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_8(*b"abcdefgh"), "YWJjZGVmZ2g=");
        assert_eq!(base64_8([0xff; 8]), "//////////8=");
    }
}
