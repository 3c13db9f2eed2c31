//! OpenAPI documents (`/openapi/v2`, `/openapi/v3`, `/openapi/v3/<group-version>`), generated
//! from our own object model: the descriptor pool ([`navarch_api::codec::pool`]), the kinds
//! table ([`navarch_api::kinds::KINDS`]) and the list merge rules
//! ([`navarch_api::patch::schema`]). Nothing here is written per kind.
//!
//! Definitions carry Kubernetes' names (`io.k8s.api.core.v1.Pod`,
//! `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`, …), descriptions from the proto comments
//! (the first sentence of the upstream description), `x-kubernetes-group-version-kind` on
//! kinds, `x-kubernetes-patch-merge-key`/`-patch-strategy` and `x-kubernetes-list-type`/
//! `-list-map-keys` on lists, `x-kubernetes-map-type: atomic` on atomic maps and structs.
//!
//! # What kubectl reads (verified in its sources, 1.27–1.33)
//!
//! * `kubectl explain` (`k8s.io/kubectl/pkg/explain/v2`, used by default since 1.27) GETs
//!   `/openapi/v3`, then the `serverRelativeURL` of `api/v1` or `apis/<g>/<v>` with
//!   `Accept: application/json`. Its template takes the GVK from the
//!   `x-kubernetes-group-version-kind` of an operation on `/apis/<g>/<v>/<plural>`,
//!   `…/<plural>/{name}`, `…/namespaces/{namespace}/<plural>` or `…/{name}` (get/post/put/
//!   patch/delete, literally `{name}`/`{namespace}`), then the schema in
//!   `components.schemas` whose `x-kubernetes-group-version-kind` list contains exactly that
//!   `{group, kind, version}` object (Go `reflect.DeepEqual`, so the core group must be `""`).
//! * Server-side field validation (`kubectl apply/create/replace`, default
//!   `--validate=strict`): `k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go` walks
//!   the group-version's v3 document, takes the **first PATCH operation whose GVK matches**
//!   (Go map order: any of them, including `/status` and `/scale`) and looks for a parameter
//!   named `fieldValidation` in the operation's own `parameters`. Every PATCH here declares
//!   it (POST and PUT too). If the v3 lookup fails with anything but "unsupported", it falls
//!   back to the same check on the OpenAPI v2 document fetched as protobuf.
//! * OpenAPI v2: client-go (`DiscoveryClient.OpenAPISchema`) only ever asks
//!   `/openapi/v2` with `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
//!   and `proto.Unmarshal`s the body: there is **no JSON fallback** (the 1.27/1.28 clients retry
//!   `/swagger-2.0.0.pb-v1`, also protobuf, on 403/404/406). kubectl **1.27 and 1.28 load it
//!   eagerly** in `apply`, `create -f`, `replace` and `explain` (`Factory.Validator` calls
//!   `OpenAPISchema()`) and fail with "the server could not find the requested resource"
//!   without it; 1.29+ load it lazily. It also feeds client-side apply's patch metadata
//!   (preferred over kubectl's compiled-in struct tags when present, so the merge keys,
//!   strategies and `retainKeys` here must be Kubernetes' own), client-side validation
//!   (`kind: List` documents, or servers without `fieldValidation`) and
//!   `kubectl explain --output plaintext-openapiv2`. Hence [`openapi_v2_protobuf`].
//!
//! All of the above was checked with kubectl 1.27–1.33 against a static server serving these
//! documents: `explain` (every kind, `--recursive`), `apply` create and three-way patch (same
//! `$retainKeys`/`$setElementOrder` patch from 1.27 with our v2 metadata as from 1.33 with its
//! struct tags), `fieldValidation=Strict` sent by every version (v3 verifier, and the v2
//! verifier with v3 switched off), client-side validation of a `kind: List`.
//!
//! # What the handlers must do
//!
//! [`openapi_v2_answer`] and [`openapi_v3_answer`] make the decisions below; the handlers map
//! them to HTTP.
//!
//! * `GET /openapi/v2`: an `Accept` listing `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
//!   (what client-go sends, alone) or `…spec.v2.v1.0+protobuf` → [`openapi_v2_protobuf`] with
//!   `Content-Type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf`
//!   ([`OPENAPI_V2_PROTOBUF`]); `application/json`, `*/*` or no Accept → [`openapi_v2_json`] as
//!   `application/json`; anything else 406. **Do not answer 406 to the protobuf type**:
//!   kubectl 1.27/1.28 then fail `apply`, `create -f`, `replace` and `explain`. Send the bytes
//!   as they are (not through the generic object encoder). `ETag: "<openapi_v2_hash()>"`,
//!   304 on a matching `If-None-Match`.
//! * `GET /openapi/v3`: [`openapi_v3_index`] as `application/json` (kube-apiserver also sends
//!   an ETag of the body; optional).
//! * `GET /openapi/v3/<path>` (`api/v1`, `apis/apps/v1`; the path may contain dots):
//!   [`openapi_v3_json`] as `application/json` when `Accept` allows it (kubectl sends exactly
//!   `application/json`); the v3 protobuf type alone → 406; unknown path → 404. With a `hash`
//!   query parameter that differs from [`openapi_v3_hash`] → `301 Moved Permanently` to
//!   `/openapi/v3/<path>?hash=<current>` (kube-openapi's handler3 does this, so a client
//!   holding a stale index follows to the current document); with the current hash add
//!   `Cache-Control: public, immutable` and an `Expires` a year ahead. Always
//!   `ETag: "<hash>"` and `Vary: Accept`. Ignore other query parameters (`timeout=32s`).
//! * These documents are ~1 MB (v2) and 30–530 KB (v3 per group-version): gzip them for
//!   clients sending `Accept-Encoding: gzip` (client-go does).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use navarch_api::codec;
use navarch_api::kinds::{KINDS, KindInfo};
use navarch_api::patch::schema::{ATOMIC_MAPS, ATOMIC_STRUCTS, Smp, Ssa, list_rule};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::discovery::{self, Subresource};

const QUANTITY: &str = "navarch.api.meta.v1.Quantity";
const INT_OR_STRING: &str = "navarch.api.meta.v1.IntOrString";
const RAW_JSON: &str = "navarch.api.meta.v1.RawJson";
const STRING_LIST: &str = "navarch.api.meta.v1.StringList";

const DEF_QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const DEF_INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const DEF_RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
const DEF_FIELDS_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1";
const DEF_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const DEF_MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";
const DEF_PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// The four patch content types a PATCH accepts.
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Which time type an upstream field has (our protos keep times as RFC 3339 strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeKind {
    Time,
    MicroTime,
}

/// Fields whose upstream type is `meta/v1.Time` or `MicroTime`, by (message without the
/// `navarch.api.` prefix, JSON field). Generated from k8s-openapi 0.29 (`v1_37`) by taking
/// every property whose schema is `meta::v1::Time`/`MicroTime` in a type that our protos
/// model; a test checks that every entry names a string field (or a map of strings).
/// The descriptors cannot tell a time from any other string, hence this table.
#[rustfmt::skip]
static TIME_FIELDS: &[(&str, &str, TimeKind)] = &[
    ("apps.v1.DaemonSetCondition", "lastTransitionTime", TimeKind::Time),
    ("apps.v1.DeploymentCondition", "lastTransitionTime", TimeKind::Time),
    ("apps.v1.DeploymentCondition", "lastUpdateTime", TimeKind::Time),
    ("apps.v1.ReplicaSetCondition", "lastTransitionTime", TimeKind::Time),
    ("apps.v1.StatefulSetCondition", "lastTransitionTime", TimeKind::Time),
    ("authentication.v1.TokenRequestStatus", "expirationTimestamp", TimeKind::Time),
    ("autoscaling.v1.HorizontalPodAutoscalerStatus", "lastScaleTime", TimeKind::Time),
    ("autoscaling.v2.HorizontalPodAutoscalerCondition", "lastTransitionTime", TimeKind::Time),
    ("autoscaling.v2.HorizontalPodAutoscalerStatus", "lastScaleTime", TimeKind::Time),
    ("batch.v1.CronJobStatus", "lastScheduleTime", TimeKind::Time),
    ("batch.v1.CronJobStatus", "lastSuccessfulTime", TimeKind::Time),
    ("batch.v1.JobCondition", "lastProbeTime", TimeKind::Time),
    ("batch.v1.JobCondition", "lastTransitionTime", TimeKind::Time),
    ("batch.v1.JobStatus", "completionTime", TimeKind::Time),
    ("batch.v1.JobStatus", "startTime", TimeKind::Time),
    ("coordination.v1.LeaseSpec", "acquireTime", TimeKind::MicroTime),
    ("coordination.v1.LeaseSpec", "renewTime", TimeKind::MicroTime),
    ("core.v1.ContainerStateRunning", "startedAt", TimeKind::Time),
    ("core.v1.ContainerStateTerminated", "finishedAt", TimeKind::Time),
    ("core.v1.ContainerStateTerminated", "startedAt", TimeKind::Time),
    ("core.v1.Event", "eventTime", TimeKind::MicroTime),
    ("core.v1.Event", "firstTimestamp", TimeKind::Time),
    ("core.v1.Event", "lastTimestamp", TimeKind::Time),
    ("core.v1.EventSeries", "lastObservedTime", TimeKind::MicroTime),
    ("core.v1.NamespaceCondition", "lastTransitionTime", TimeKind::Time),
    ("core.v1.NodeCondition", "lastHeartbeatTime", TimeKind::Time),
    ("core.v1.NodeCondition", "lastTransitionTime", TimeKind::Time),
    ("core.v1.PersistentVolumeClaimCondition", "lastProbeTime", TimeKind::Time),
    ("core.v1.PersistentVolumeClaimCondition", "lastTransitionTime", TimeKind::Time),
    ("core.v1.PodCondition", "lastProbeTime", TimeKind::Time),
    ("core.v1.PodCondition", "lastTransitionTime", TimeKind::Time),
    ("core.v1.PodStatus", "startTime", TimeKind::Time),
    ("core.v1.PodVolumeHealth", "lastTransitionTime", TimeKind::Time),
    ("core.v1.Taint", "timeAdded", TimeKind::Time),
    ("core.v1.VolumeHealthStatus", "lastTransitionTime", TimeKind::Time),
    ("meta.v1.Condition", "lastTransitionTime", TimeKind::Time),
    ("meta.v1.ManagedFieldsEntry", "time", TimeKind::Time),
    ("meta.v1.ObjectMeta", "creationTimestamp", TimeKind::Time),
    ("meta.v1.ObjectMeta", "deletionTimestamp", TimeKind::Time),
    // map[string]metav1.Time
    ("policy.v1.PodDisruptionBudgetStatus", "disruptedPods", TimeKind::Time),
];

/// Non-list fields and lists whose strategic-merge strategy includes `retainKeys`
/// (`patchStrategy:"retainKeys"` / `"merge,retainKeys"` in Kubernetes' Go types). The patch
/// engine's table ([`navarch_api::patch::schema::LIST_RULES`]) does not model `retainKeys`
/// (the server honours `$retainKeys` wherever a client sends it); clients that compute
/// strategic merge patches from this document need it to emit the directive.
#[rustfmt::skip]
static RETAIN_KEYS: &[(&str, &str)] = &[
    ("apps.v1.DeploymentSpec", "strategy"),
    ("core.v1.PodSpec", "volumes"),
    ("core.v1.PodSpec", "resourceClaims"),
];

/// Kinds that are not stored but travel through subresources, with their API group and
/// version: (message, group, version, kind).
#[rustfmt::skip]
static SUBRESOURCE_KINDS: &[(&str, &str, &str, &str)] = &[
    ("navarch.api.autoscaling.v1.Scale", "autoscaling", "v1", "Scale"),
    ("navarch.api.policy.v1.Eviction", "policy", "v1", "Eviction"),
    ("navarch.api.core.v1.Binding", "", "v1", "Binding"),
    ("navarch.api.authentication.v1.TokenRequest", "authentication.k8s.io", "v1", "TokenRequest"),
];

/// The `meta/v1` kinds every API group serves (`Status` answers, `APIResourceList`
/// discovery), with the GVK kube-apiserver gives them.
const META_KINDS: &[&str] = &[
    "Status",
    "APIResourceList",
    "APIGroupList",
    "APIGroup",
    "APIVersions",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// Swagger 2.0: `#/definitions/…`, parameters with `type`, `consumes`/`produces`.
    V2,
    /// OpenAPI 3.0: `#/components/schemas/…`, parameters with `schema`, `requestBody`.
    V3,
}

impl Flavor {
    fn reference(self, name: &str) -> Value {
        match self {
            Flavor::V2 => json!({"$ref": format!("#/definitions/{name}")}),
            Flavor::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public API

/// The swagger 2.0 document of every served kind (`GET /openapi/v2` as JSON).
pub fn openapi_v2() -> &'static Value {
    &V2.value
}

/// [`openapi_v2`] serialised (compact JSON), for the `application/json` answer.
pub fn openapi_v2_json() -> &'static [u8] {
    &V2.json
}

/// A content hash of [`openapi_v2_json`], for its `ETag`.
pub fn openapi_v2_hash() -> &'static str {
    &V2.hash
}

/// [`openapi_v2`] encoded as gnostic's `openapi.v2.Document` protobuf, the only form
/// client-go's `OpenAPISchema()` accepts (`Content-Type:
/// application/com.github.proto-openapi.spec.v2.v1.0+protobuf`).
pub fn openapi_v2_protobuf() -> &'static [u8] {
    &V2_PROTOBUF.0
}

/// Builds every document now rather than on the first request (a fraction of a second of
/// CPU); call it from a blocking task at startup if first-request latency matters.
pub fn prebuild() {
    LazyLock::force(&V2_PROTOBUF);
    LazyLock::force(&V3);
}

/// `GET /openapi/v3`: every group-version document with its URL (`?hash=` the content hash),
/// as kube-openapi's handler3 answers.
pub fn openapi_v3_index() -> Value {
    let mut paths = Map::new();
    for (path, doc) in V3.iter() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
        );
    }
    json!({ "paths": paths })
}

/// The OpenAPI v3 document of one group-version; `path` is `api/v1` or `apis/<group>/<version>`
/// (a leading `/` or `/openapi/v3/` is tolerated). `None` if the group-version is not served.
pub fn openapi_v3_document(path: &str) -> Option<&'static Value> {
    V3.get(v3_key(path)).map(|d| &d.value)
}

/// [`openapi_v3_document`] serialised (compact JSON).
pub fn openapi_v3_json(path: &str) -> Option<&'static [u8]> {
    V3.get(v3_key(path)).map(|d| d.json.as_slice())
}

/// The content hash of a group-version document (the `hash` query parameter of its URL).
pub fn openapi_v3_hash(path: &str) -> Option<&'static str> {
    V3.get(v3_key(path)).map(|d| d.hash.as_str())
}

/// The Kubernetes definition name of one of our messages (`navarch.api.apps.v1.Deployment` →
/// `io.k8s.api.apps.v1.Deployment`). `field` disambiguates `RawJson` (`fieldsV1` is a
/// `FieldsV1`, anything else a `RawExtension`). `None` for messages inlined in the schema
/// (`StringList`, an array of strings).
pub fn definition_name(message: &str, field: &str) -> Option<String> {
    Some(match message {
        QUANTITY => DEF_QUANTITY.to_string(),
        INT_OR_STRING => DEF_INT_OR_STRING.to_string(),
        RAW_JSON if field == "fieldsV1" => DEF_FIELDS_V1.to_string(),
        RAW_JSON => DEF_RAW_EXTENSION.to_string(),
        STRING_LIST => return None,
        other => {
            let rest = other.strip_prefix("navarch.api.").unwrap_or(other);
            let mut parts = rest.splitn(3, '.');
            let (group, version, name) = (parts.next()?, parts.next()?, parts.next()?);
            match group {
                "meta" => format!("io.k8s.apimachinery.pkg.apis.meta.{version}.{name}"),
                "version" => format!("io.k8s.apimachinery.pkg.version.{name}"),
                _ => format!("io.k8s.api.{group}.{version}.{name}"),
            }
        }
    })
}

/// `Content-Type` of [`openapi_v2_protobuf`].
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// How to answer a request for an OpenAPI document, decided from its path, `hash` query
/// parameter and `Accept` header (see [`openapi_v2_answer`], [`openapi_v3_answer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenApiAnswer {
    /// 200 with this body. Send `Content-Type`, `ETag: "<etag>"` (304 when `If-None-Match`
    /// matches) and `Vary: Accept`; when `immutable` (the URL's `hash` is current) also
    /// `Cache-Control: public, immutable` and an `Expires` a year ahead.
    Document {
        content_type: &'static str,
        body: &'static [u8],
        etag: &'static str,
        immutable: bool,
    },
    /// 301 to this location: the `hash` asked for is not the current one.
    Redirect(String),
    /// 406: no acceptable representation.
    NotAcceptable,
    /// 404: no such group-version.
    NotFound,
}

/// `GET /openapi/v2`: protobuf when the client lists the gnostic media type (client-go always
/// does, and reads nothing else), JSON for `application/json`, `application/*`, `*/*` or no
/// `Accept`; the first acceptable type in the header's order wins.
pub fn openapi_v2_answer(accept: Option<&str>) -> OpenApiAnswer {
    let document = |content_type, body, etag| OpenApiAnswer::Document {
        content_type,
        body,
        etag,
        immutable: false,
    };
    for media in media_types(accept) {
        match media.as_str() {
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" => {
                return document(OPENAPI_V2_PROTOBUF, openapi_v2_protobuf(), &V2_PROTOBUF.1);
            }
            "application/json" | "application/*" | "*/*" => {
                return document("application/json", openapi_v2_json(), openapi_v2_hash());
            }
            _ => {}
        }
    }
    OpenApiAnswer::NotAcceptable
}

/// `GET /openapi/v3/<path>[?hash=…]`: the group-version document as JSON (the v3 protobuf form
/// is not served: kubectl only asks for `application/json`), or a redirect to the current
/// hash, as kube-openapi's handler3.
pub fn openapi_v3_answer(path: &str, hash: Option<&str>, accept: Option<&str>) -> OpenApiAnswer {
    let key = v3_key(path);
    let Some(doc) = V3.get(key) else {
        return OpenApiAnswer::NotFound;
    };
    if !media_types(accept)
        .iter()
        .any(|m| matches!(m.as_str(), "application/json" | "application/*" | "*/*"))
    {
        return OpenApiAnswer::NotAcceptable;
    }
    match hash.filter(|h| !h.is_empty()) {
        Some(h) if h != doc.hash => {
            OpenApiAnswer::Redirect(format!("/openapi/v3/{key}?hash={}", doc.hash))
        }
        given => OpenApiAnswer::Document {
            content_type: "application/json",
            body: &doc.json,
            etag: &doc.hash,
            immutable: given.is_some(),
        },
    }
}

/// The media types of an `Accept` header, lower-cased, parameters dropped, in order, without
/// those refused with `q=0`; an absent or empty header accepts anything.
fn media_types(accept: Option<&str>) -> Vec<String> {
    let accept = accept.map(str::trim).unwrap_or("");
    if accept.is_empty() {
        return vec!["*/*".to_string()];
    }
    accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (!media.is_empty() && !refused).then_some(media)
        })
        .collect()
}

fn v3_key(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("openapi/v3/").unwrap_or(path);
    path.trim_end_matches('/')
}

// ---------------------------------------------------------------------------------------------
// Documents

struct Document {
    value: Value,
    json: Vec<u8>,
    hash: String,
}

impl Document {
    fn new(value: Value) -> Self {
        let json = serde_json::to_vec(&value).expect("JSON values serialise");
        let hash = content_hash(&json);
        Document { value, json, hash }
    }
}

static V2: LazyLock<Document> = LazyLock::new(|| Document::new(build_v2()));

/// The protobuf form and its own hash (the `ETag` differs per representation).
static V2_PROTOBUF: LazyLock<(Vec<u8>, String)> = LazyLock::new(|| {
    let bytes = v2proto::document(&V2.value);
    let hash = content_hash(&bytes);
    (bytes, hash)
});

static V3: LazyLock<BTreeMap<String, Document>> = LazyLock::new(|| {
    discovery::group_versions()
        .into_iter()
        .map(|(group, version)| {
            (
                gv_path(group, version),
                Document::new(build_v3(group, version)),
            )
        })
        .collect()
});

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// 128-bit FNV-1a of the document, upper-case hex (kube-apiserver uses SHA-512; clients only
/// echo the value back in `?hash=` and compare ETags).
fn content_hash(bytes: &[u8]) -> String {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in bytes {
        hash ^= u128::from(*byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    format!("{hash:032X}")
}

fn info() -> Value {
    json!({
        "title": "Kubernetes",
        "version": format!("v{}.{}.0", discovery::KUBERNETES_MAJOR, discovery::KUBERNETES_MINOR),
    })
}

fn build_v2() -> Value {
    let mut schemas = Schemas::new(Flavor::V2);
    let mut paths = Map::new();
    for (group, version) in discovery::group_versions() {
        paths.extend(group_version_paths(group, version, &mut schemas));
    }
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": schemas.finish(),
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            }
        },
        "security": [{"BearerToken": []}],
    })
}

fn build_v3(group: &str, version: &str) -> Value {
    let mut schemas = Schemas::new(Flavor::V3);
    let paths = group_version_paths(group, version, &mut schemas);
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": schemas.finish(),
            "securitySchemes": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "type": "apiKey",
                    "name": "authorization",
                    "in": "header",
                }
            }
        },
        "security": [{"BearerToken": []}],
    })
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// Comments of every message and field, by full name.
static COMMENTS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let pool = codec::pool();
    let mut by_path: HashMap<(String, Vec<i32>), String> = HashMap::new();
    for file in pool.files() {
        let proto = file.file_descriptor_proto();
        let Some(info) = &proto.source_code_info else {
            continue;
        };
        for location in &info.location {
            if let Some(comment) = &location.leading_comments {
                let text = comment
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !text.is_empty() {
                    by_path.insert((file.name().to_string(), location.path.clone()), text);
                }
            }
        }
    }
    let mut out = HashMap::new();
    for message in pool.all_messages() {
        let file = message.parent_file().name().to_string();
        if let Some(c) = by_path.get(&(file.clone(), message.path().to_vec())) {
            out.insert(message.full_name().to_string(), c.clone());
        }
        for field in message.fields() {
            if let Some(c) = by_path.get(&(file.clone(), field.path().to_vec())) {
                out.insert(field.full_name().to_string(), c.clone());
            }
        }
    }
    out
});

fn short_name(full: &str) -> &str {
    full.strip_prefix("navarch.api.").unwrap_or(full)
}

fn time_kind(message: &MessageDescriptor, field: &FieldDescriptor) -> Option<TimeKind> {
    let message = short_name(message.full_name());
    TIME_FIELDS
        .iter()
        .find(|(m, f, _)| *m == message && *f == field.name())
        .map(|(_, _, k)| *k)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// The `x-kubernetes-group-version-kind` list of each message that is a kind.
static MESSAGE_GVKS: LazyLock<HashMap<String, Vec<Value>>> = LazyLock::new(|| {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    let mut add = |message: String, value: Value| {
        let list = out.entry(message).or_default();
        if !list.contains(&value) {
            list.push(value);
        }
    };
    for kind in KINDS {
        add(
            kind.message.to_string(),
            gvk(kind.group, kind.version, kind.kind),
        );
        add(
            format!("{}List", kind.message),
            gvk(kind.group, kind.version, &format!("{}List", kind.kind)),
        );
    }
    for (message, group, version, kind) in SUBRESOURCE_KINDS {
        add(message.to_string(), gvk(group, version, kind));
    }
    for kind in META_KINDS {
        add(format!("navarch.api.meta.v1.{kind}"), gvk("", "v1", kind));
    }
    for (group, version) in discovery::group_versions() {
        add(
            "navarch.api.meta.v1.DeleteOptions".into(),
            gvk(group, version, "DeleteOptions"),
        );
    }
    out
});

/// The definitions of one document, filled as schemas reference them.
struct Schemas {
    flavor: Flavor,
    defs: BTreeMap<String, Value>,
}

impl Schemas {
    fn new(flavor: Flavor) -> Self {
        Schemas {
            flavor,
            defs: BTreeMap::new(),
        }
    }

    fn finish(self) -> Value {
        Value::Object(self.defs.into_iter().collect())
    }

    /// A reference to the definition `name`, defining it with `make` the first time.
    fn reference_with(&mut self, name: &str, make: impl FnOnce(&mut Self) -> Value) -> Value {
        if !self.defs.contains_key(name) {
            // Placeholder first: messages can be recursive (JSONSchemaProps-like types).
            self.defs.insert(name.to_string(), Value::Null);
            let schema = make(self);
            self.defs.insert(name.to_string(), schema);
        }
        self.flavor.reference(name)
    }

    /// A reference to (or, for `StringList`, the inline schema of) a message-typed value.
    fn message_ref(&mut self, desc: &MessageDescriptor, field: &str) -> Value {
        let full = desc.full_name();
        let Some(name) = definition_name(full, field) else {
            // StringList: map[string][]string values.
            return json!({"type": "array", "items": {"type": "string", "default": ""}});
        };
        match full {
            QUANTITY => self.reference_with(&name, |s| s.quantity()),
            INT_OR_STRING => self.reference_with(&name, |s| s.int_or_string()),
            RAW_JSON if name == DEF_FIELDS_V1 => self.reference_with(&name, |_| {
                json!({
                    "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.",
                    "type": "object",
                })
            }),
            RAW_JSON => self.reference_with(&name, |_| {
                json!({
                    "description": "RawExtension is used to hold extensions in external versions.",
                    "type": "object",
                })
            }),
            _ => {
                let desc = desc.clone();
                self.reference_with(&name, move |s| s.message_schema(&desc))
            }
        }
    }

    /// A reference to a definition by name, for the apimachinery types that are not messages
    /// (Time, MicroTime, Patch).
    fn named(&mut self, name: &str) -> Value {
        self.reference_with(name, |_| match name {
            DEF_TIME => json!({
                "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.",
                "type": "string",
                "format": "date-time",
            }),
            DEF_MICRO_TIME => json!({
                "description": "MicroTime is version of Time with microsecond level precision.",
                "type": "string",
                "format": "date-time",
            }),
            DEF_PATCH => json!({
                "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
                "type": "object",
            }),
            other => unreachable!("no definition for {other}"),
        })
    }

    fn quantity(&self) -> Value {
        let description = "Quantity is a fixed-point representation of a number. It provides convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.";
        match self.flavor {
            Flavor::V2 => json!({"description": description, "type": "string"}),
            Flavor::V3 => json!({
                "description": description,
                "oneOf": [{"type": "string"}, {"type": "number"}],
            }),
        }
    }

    fn int_or_string(&self) -> Value {
        let description = "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.";
        match self.flavor {
            Flavor::V2 => json!({
                "description": description,
                "type": "string",
                "format": "int-or-string",
                "x-kubernetes-int-or-string": true,
            }),
            Flavor::V3 => json!({
                "description": description,
                "format": "int-or-string",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": true,
            }),
        }
    }

    fn message_schema(&mut self, desc: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        let mut fields: Vec<FieldDescriptor> = desc.fields().collect();
        fields.sort_by(|a, b| a.name().cmp(b.name()));
        for field in fields {
            let schema = self.field_schema(desc, &field);
            properties.insert(field.name().to_string(), schema);
        }
        let mut schema = Map::new();
        if let Some(description) = COMMENTS.get(desc.full_name()) {
            schema.insert("description".into(), json!(description));
        }
        schema.insert("type".into(), json!("object"));
        if !properties.is_empty() {
            schema.insert("properties".into(), Value::Object(properties));
        }
        if let Some(gvks) = MESSAGE_GVKS.get(desc.full_name()) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!(gvks));
        }
        if ATOMIC_STRUCTS.contains(&short_name(desc.full_name())) {
            schema.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
        Value::Object(schema)
    }

    fn field_schema(&mut self, parent: &MessageDescriptor, field: &FieldDescriptor) -> Value {
        let parent_name = short_name(parent.full_name());
        let time = time_kind(parent, field);
        let mut schema = if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => {
                    let value_field = entry.map_entry_value_field();
                    match time {
                        Some(t) => self.time_ref(t),
                        None => self.value_schema(&value_field.kind(), field.name()),
                    }
                }
                _ => json!({}),
            };
            let mut m = json!({"type": "object", "additionalProperties": value});
            if ATOMIC_MAPS.contains(&(parent_name, field.name())) {
                m["x-kubernetes-map-type"] = json!("atomic");
            }
            m
        } else if field.is_list() {
            let items = self.value_schema(&field.kind(), field.name());
            let mut l = json!({"type": "array", "items": items});
            let rule = list_rule(parent_name, field.name());
            match rule.smp {
                Smp::MergeByKey(key) => {
                    l["x-kubernetes-patch-merge-key"] = json!(key);
                    l["x-kubernetes-patch-strategy"] = json!("merge");
                }
                Smp::MergePrimitives => {
                    l["x-kubernetes-patch-strategy"] = json!("merge");
                }
                Smp::Replace => {}
            }
            match rule.ssa {
                Ssa::Atomic => l["x-kubernetes-list-type"] = json!("atomic"),
                Ssa::Set => l["x-kubernetes-list-type"] = json!("set"),
                Ssa::Map(keys) => {
                    l["x-kubernetes-list-type"] = json!("map");
                    l["x-kubernetes-list-map-keys"] =
                        json!(keys.iter().map(|k| k.name).collect::<Vec<_>>());
                }
            }
            l
        } else {
            match time {
                Some(t) => self.time_ref(t),
                None => self.value_schema(&field.kind(), field.name()),
            }
        };
        if RETAIN_KEYS.contains(&(parent_name, field.name())) {
            let strategy = match schema.get("x-kubernetes-patch-strategy") {
                Some(s) => format!("{},retainKeys", s.as_str().unwrap_or("merge")),
                None => "retainKeys".to_string(),
            };
            schema = with_extension(
                self.flavor,
                schema,
                "x-kubernetes-patch-strategy",
                &strategy,
            );
        }
        match COMMENTS.get(field.full_name()) {
            Some(description) => with_description(self.flavor, schema, description),
            None => schema,
        }
    }

    fn time_ref(&mut self, kind: TimeKind) -> Value {
        match kind {
            TimeKind::Time => self.named(DEF_TIME),
            TimeKind::MicroTime => self.named(DEF_MICRO_TIME),
        }
    }

    /// The schema of one value of a field (an item of a list, a value of a map).
    fn value_schema(&mut self, kind: &Kind, field: &str) -> Value {
        match kind {
            Kind::String => json!({"type": "string"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "integer", "format": "int64"})
            }
            Kind::Double => json!({"type": "number", "format": "double"}),
            Kind::Float => json!({"type": "number", "format": "float"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(_) => json!({"type": "string"}),
            Kind::Message(desc) => self.message_ref(desc, field),
        }
    }
}

/// Adds a description to a field schema. A `$ref` cannot carry siblings in OpenAPI 3.0, so
/// there it is wrapped in `allOf` (as kube-apiserver does; kubectl explain follows both).
fn with_description(flavor: Flavor, schema: Value, description: &str) -> Value {
    let mut schema = wrap_ref(flavor, schema);
    schema["description"] = json!(description);
    schema
}

fn with_extension(flavor: Flavor, schema: Value, key: &str, value: &str) -> Value {
    let mut schema = wrap_ref(flavor, schema);
    schema[key] = json!(value);
    schema
}

fn wrap_ref(flavor: Flavor, schema: Value) -> Value {
    if flavor == Flavor::V3 && schema.get("$ref").is_some() {
        json!({"allOf": [schema]})
    } else {
        schema
    }
}

// ---------------------------------------------------------------------------------------------
// Paths

/// A query or path parameter: (name, type, description).
type Param = (&'static str, &'static str, &'static str);

const PRETTY: Param = (
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);
const DRY_RUN: Param = (
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = (
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
);
const FIELD_VALIDATION: Param = (
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
);
const FORCE: Param = (
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const LIST_PARAMS: &[Param] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion.",
    ),
    (
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.",
    ),
    (
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    (
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    (
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
    ),
    (
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    ),
    (
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
    ),
    (
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
    ),
];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    (
        "gracePeriodSeconds",
        "integer",
        "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.",
    ),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error.",
    ),
    (
        "orphanDependents",
        "boolean",
        "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned.",
    ),
    (
        "propagationPolicy",
        "string",
        "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both.",
    ),
];
const LOG_PARAMS: &[Param] = &[
    (
        "container",
        "string",
        "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
    ),
    (
        "follow",
        "boolean",
        "Follow the log stream of the pod. Defaults to false.",
    ),
    (
        "insecureSkipTLSVerifyBackend",
        "boolean",
        "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.",
    ),
    (
        "limitBytes",
        "integer",
        "If set, the number of bytes to read from the server before terminating the log output.",
    ),
    (
        "previous",
        "boolean",
        "Return previous terminated container logs. Defaults to false.",
    ),
    (
        "sinceSeconds",
        "integer",
        "A relative time in seconds before the current time from which to show logs.",
    ),
    (
        "stream",
        "string",
        "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\". If not specified, \"All\" is used, and both stdout and stderr are returned interleaved.",
    ),
    (
        "tailLines",
        "integer",
        "If set, the number of lines from the end of the logs to show.",
    ),
    (
        "timestamps",
        "boolean",
        "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
    ),
];
const EXEC_PARAMS: &[Param] = &[
    (
        "command",
        "string",
        "Command is the remote command to execute. argv array. Not executed within a shell.",
    ),
    (
        "container",
        "string",
        "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
    ),
    (
        "stderr",
        "boolean",
        "Redirect the standard error stream of the pod for this call.",
    ),
    (
        "stdin",
        "boolean",
        "Redirect the standard input stream of the pod for this call. Defaults to false.",
    ),
    (
        "stdout",
        "boolean",
        "Redirect the standard output stream of the pod for this call.",
    ),
    (
        "tty",
        "boolean",
        "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
    ),
];

fn parameter(flavor: Flavor, (name, ty, description): Param, location: &str) -> Value {
    let required = location == "path";
    match flavor {
        Flavor::V2 => {
            let mut p = json!({
                "uniqueItems": true,
                "type": ty,
                "description": description,
                "name": name,
                "in": location,
            });
            if required {
                p["required"] = json!(true);
            }
            p
        }
        Flavor::V3 => {
            let mut p = json!({
                "name": name,
                "in": location,
                "description": description,
                "schema": {"type": ty, "uniqueItems": true},
            });
            if required {
                p["required"] = json!(true);
            }
            p
        }
    }
}

fn query(flavor: Flavor, params: &[Param]) -> Vec<Value> {
    params
        .iter()
        .map(|p| parameter(flavor, *p, "query"))
        .collect()
}

/// `apps` → `Apps`, `rbac.authorization.k8s.io` → `RbacAuthorization`, "" → `Core`.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalise)
        .collect()
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1` (kube-apiserver's tags).
fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase());
    format!(
        "{}{}_{version}",
        first.into_iter().collect::<String>(),
        chars.as_str()
    )
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// What one operation sends and returns.
#[derive(Clone)]
enum Body {
    None,
    /// A JSON object of this schema.
    Schema(Value),
    /// A patch: the four content types, each with this schema (`meta/v1.Patch`).
    Patch(Value),
}

/// One operation, before rendering for a flavor.
struct Op {
    id: String,
    action: &'static str,
    description: String,
    gvk: Value,
    params: Vec<Param>,
    body: Body,
    body_required: bool,
    /// Response schema, `None` for a plain-text (log) answer.
    response: Option<Value>,
    /// Also answers 201 (create, replace, patch) and/or 202 (create, delete).
    created: bool,
    accepted: bool,
    watch: bool,
    text: bool,
}

impl Op {
    fn render(&self, flavor: Flavor, tag: &str) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), json!(self.description));
        op.insert("operationId".into(), json!(self.id));
        op.insert("tags".into(), json!([tag]));
        let mut params = query(flavor, &self.params);
        let mut produces = vec!["application/json", "application/yaml"];
        if self.watch {
            produces.push("application/json;stream=watch");
        }
        if self.text {
            produces = vec!["text/plain", "application/json", "application/yaml"];
        }
        let responses = self.responses(flavor, &produces);
        match flavor {
            Flavor::V2 => {
                let consumes: Vec<&str> = match self.body {
                    Body::Patch(_) => PATCH_TYPES.to_vec(),
                    _ => vec!["*/*"],
                };
                op.insert("consumes".into(), json!(consumes));
                op.insert("produces".into(), json!(produces));
                op.insert("schemes".into(), json!(["https"]));
                let body_schema = match &self.body {
                    Body::None => None,
                    Body::Schema(s) => Some(s.clone()),
                    Body::Patch(s) => Some(s.clone()),
                };
                if let Some(schema) = body_schema {
                    let mut body = json!({"name": "body", "in": "body", "schema": schema});
                    if self.body_required {
                        body["required"] = json!(true);
                    }
                    params.insert(0, body);
                }
            }
            Flavor::V3 => {
                let content: Option<Map<String, Value>> = match &self.body {
                    Body::None => None,
                    Body::Schema(s) => Some(
                        [("*/*".to_string(), json!({"schema": s}))]
                            .into_iter()
                            .collect(),
                    ),
                    Body::Patch(s) => Some(
                        PATCH_TYPES
                            .iter()
                            .map(|t| (t.to_string(), json!({"schema": s})))
                            .collect(),
                    ),
                };
                if let Some(content) = content {
                    let mut body = json!({"content": content});
                    if self.body_required {
                        body["required"] = json!(true);
                    }
                    op.insert("requestBody".into(), body);
                }
            }
        }
        if !params.is_empty() {
            op.insert("parameters".into(), json!(params));
        }
        op.insert("responses".into(), responses);
        op.insert("x-kubernetes-action".into(), json!(self.action));
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk.clone());
        Value::Object(op)
    }

    fn responses(&self, flavor: Flavor, produces: &[&str]) -> Value {
        let schema = match &self.response {
            Some(s) => s.clone(),
            None => json!({"type": "string"}),
        };
        let one = |description: &str| match flavor {
            Flavor::V2 => json!({"description": description, "schema": schema}),
            Flavor::V3 => {
                let content: Map<String, Value> = produces
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": schema})))
                    .collect();
                json!({"description": description, "content": content})
            }
        };
        let mut responses = Map::new();
        responses.insert("200".into(), one("OK"));
        if self.created {
            responses.insert("201".into(), one("Created"));
        }
        if self.accepted {
            responses.insert("202".into(), one("Accepted"));
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        Value::Object(responses)
    }
}

/// Every path of one group-version, defining the schemas they reference in `schemas`.
fn group_version_paths(group: &str, version: &str, schemas: &mut Schemas) -> Map<String, Value> {
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let tag = tag(group, version);
    let gv_camel = format!("{}{}", group_camel(group), capitalise(version));
    let mut paths = Map::new();
    for kind in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        kind_paths(kind, &prefix, &gv_camel, &tag, schemas, &mut paths);
    }
    paths
}

fn path_item(flavor: Flavor, ops: Vec<(&'static str, Value)>, path_params: &[Param]) -> Value {
    let mut item = Map::new();
    for (method, op) in ops {
        item.insert(method.into(), op);
    }
    let mut params: Vec<Value> = path_params
        .iter()
        .map(|p| parameter(flavor, *p, "path"))
        .collect();
    params.push(parameter(flavor, PRETTY, "query"));
    item.insert("parameters".into(), json!(params));
    Value::Object(item)
}

fn kind_paths(
    kind: &KindInfo,
    prefix: &str,
    gv_camel: &str,
    tag: &str,
    schemas: &mut Schemas,
    paths: &mut Map<String, Value>,
) {
    let flavor = schemas.flavor;
    let desc = kind.descriptor();
    let object = schemas.message_ref(&desc, "");
    let list = kind
        .list_descriptor()
        .map(|l| schemas.message_ref(&l, ""))
        .unwrap_or_else(|| object.clone());
    let status = {
        let s = codec::pool()
            .get_message_by_name("navarch.api.meta.v1.Status")
            .expect("Status is compiled in");
        schemas.message_ref(&s, "")
    };
    let patch_body = schemas.named(DEF_PATCH);
    let delete_options = {
        let d = codec::pool()
            .get_message_by_name("navarch.api.meta.v1.DeleteOptions")
            .expect("DeleteOptions is compiled in");
        schemas.message_ref(&d, "")
    };
    let gvk_value = gvk(kind.group, kind.version, kind.kind);
    let verbs = discovery::verbs(kind);
    let can = |verb: &str| verbs.contains(&verb);
    let ns = if kind.namespaced { "Namespaced" } else { "" };
    let k = kind.kind;
    let name_param: Param = ("name", "string", "name of the object");
    let namespace_param: Param = (
        "namespace",
        "string",
        "object name and auth scope, such as for teams and projects",
    );
    let scope_params: Vec<Param> = if kind.namespaced {
        vec![namespace_param]
    } else {
        vec![]
    };
    let mut object_params = vec![name_param];
    object_params.extend(scope_params.iter().copied());
    let collection = if kind.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", kind.plural)
    } else {
        format!("{prefix}/{}", kind.plural)
    };
    let item = format!("{collection}/{{name}}");

    let op = |id: String, action: &'static str, description: String| Op {
        id,
        action,
        description,
        gvk: gvk_value.clone(),
        params: Vec::new(),
        body: Body::None,
        body_required: false,
        response: Some(object.clone()),
        created: false,
        accepted: false,
        watch: false,
        text: false,
    };
    let write_params = vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
    let patch_params = vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];

    // The collection: list (and watch with ?watch=true), create, deletecollection.
    let mut ops = Vec::new();
    if can("list") {
        let mut list_op = op(
            format!("list{gv_camel}{ns}{k}"),
            "list",
            format!("list or watch objects of kind {k}"),
        );
        list_op.params = LIST_PARAMS.to_vec();
        list_op.response = Some(list.clone());
        list_op.watch = true;
        ops.push(("get", list_op.render(flavor, tag)));
    }
    if can("create") {
        let mut create = op(
            format!("create{gv_camel}{ns}{k}"),
            "post",
            format!("create a {k}"),
        );
        create.params = write_params.clone();
        create.body = Body::Schema(object.clone());
        create.body_required = true;
        create.created = true;
        create.accepted = true;
        ops.push(("post", create.render(flavor, tag)));
    }
    if can("deletecollection") {
        let mut dc = op(
            format!("delete{gv_camel}Collection{ns}{k}"),
            "deletecollection",
            format!("delete collection of {k}"),
        );
        let mut params = DELETE_PARAMS.to_vec();
        params.extend(
            LIST_PARAMS
                .iter()
                .filter(|(n, _, _)| !matches!(*n, "watch" | "allowWatchBookmarks")),
        );
        dc.params = params;
        dc.body = Body::Schema(delete_options.clone());
        dc.response = Some(status.clone());
        ops.push(("delete", dc.render(flavor, tag)));
    }
    if !ops.is_empty() {
        paths.insert(collection.clone(), path_item(flavor, ops, &scope_params));
    }

    // Across namespaces: /apis/<g>/<v>/<plural> (kubectl explain looks here first).
    if kind.namespaced && can("list") {
        let mut all = op(
            format!("list{gv_camel}{k}ForAllNamespaces"),
            "list",
            format!("list or watch objects of kind {k}"),
        );
        all.params = LIST_PARAMS.to_vec();
        all.response = Some(list.clone());
        all.watch = true;
        paths.insert(
            format!("{prefix}/{}", kind.plural),
            path_item(flavor, vec![("get", all.render(flavor, tag))], &[]),
        );
    }

    // One object: read, replace, patch, delete.
    let mut ops = Vec::new();
    if can("get") {
        ops.push((
            "get",
            op(
                format!("read{gv_camel}{ns}{k}"),
                "get",
                format!("read the specified {k}"),
            )
            .render(flavor, tag),
        ));
    }
    if can("update") {
        let mut replace = op(
            format!("replace{gv_camel}{ns}{k}"),
            "put",
            format!("replace the specified {k}"),
        );
        replace.params = write_params.clone();
        replace.body = Body::Schema(object.clone());
        replace.body_required = true;
        replace.created = true;
        ops.push(("put", replace.render(flavor, tag)));
    }
    if can("patch") {
        let mut patch = op(
            format!("patch{gv_camel}{ns}{k}"),
            "patch",
            format!("partially update the specified {k}"),
        );
        patch.params = patch_params.clone();
        patch.body = Body::Patch(patch_body.clone());
        patch.body_required = true;
        patch.created = true;
        ops.push(("patch", patch.render(flavor, tag)));
    }
    if can("delete") {
        let mut delete = op(
            format!("delete{gv_camel}{ns}{k}"),
            "delete",
            format!("delete a {k}"),
        );
        delete.params = DELETE_PARAMS.to_vec();
        delete.body = Body::Schema(delete_options.clone());
        delete.response = Some(status.clone());
        delete.accepted = true;
        ops.push(("delete", delete.render(flavor, tag)));
    }
    if !ops.is_empty() {
        paths.insert(item.clone(), path_item(flavor, ops, &object_params));
    }

    // Subresources.
    for sub in discovery::subresources(kind) {
        let suffix = capitalise(sub.name);
        let id = |verb: &str| format!("{verb}{gv_camel}{ns}{k}{suffix}");
        let (sub_gvk, sub_schema) = subresource_kind(kind, &sub, schemas, &object);
        let sub_op = |id: String, action: &'static str, description: String| Op {
            gvk: sub_gvk.clone(),
            response: Some(sub_schema.clone()),
            ..op(id, action, description)
        };
        let mut ops = Vec::new();
        match sub.name {
            "log" => {
                let mut log = sub_op(id("read"), "get", format!("read log of the specified {k}"));
                log.params = LOG_PARAMS.to_vec();
                log.response = None;
                log.text = true;
                ops.push(("get", log.render(flavor, tag)));
            }
            "exec" => {
                for (method, verb) in [("get", "connectGet"), ("post", "connectPost")] {
                    let mut exec = sub_op(
                        format!("{verb}{gv_camel}{ns}{k}Exec"),
                        "connect",
                        format!("connect {method} requests to exec of {k}"),
                    );
                    exec.params = EXEC_PARAMS.to_vec();
                    exec.response = None;
                    exec.text = true;
                    ops.push((method, exec.render(flavor, tag)));
                }
            }
            _ => {
                for verb in sub.verbs {
                    let (method, rendered) = match *verb {
                        "get" => (
                            "get",
                            sub_op(
                                id("read"),
                                "get",
                                format!("read {} of the specified {k}", sub.name),
                            ),
                        ),
                        "update" => {
                            let mut o = sub_op(
                                id("replace"),
                                "put",
                                format!("replace {} of the specified {k}", sub.name),
                            );
                            o.params = write_params.clone();
                            o.body = Body::Schema(sub_schema.clone());
                            o.body_required = true;
                            o.created = true;
                            ("put", o)
                        }
                        "patch" => {
                            let mut o = sub_op(
                                id("patch"),
                                "patch",
                                format!("partially update {} of the specified {k}", sub.name),
                            );
                            o.params = patch_params.clone();
                            o.body = Body::Patch(patch_body.clone());
                            o.body_required = true;
                            o.created = true;
                            ("patch", o)
                        }
                        "create" => {
                            let mut o = sub_op(
                                id("create"),
                                "post",
                                format!("create {} of a {k}", sub.name),
                            );
                            o.params = write_params.clone();
                            o.body = Body::Schema(sub_schema.clone());
                            o.body_required = true;
                            o.created = true;
                            o.accepted = true;
                            ("post", o)
                        }
                        _ => continue,
                    };
                    ops.push((method, rendered.render(flavor, tag)));
                }
            }
        }
        if !ops.is_empty() {
            paths.insert(
                format!("{item}/{}", sub.name),
                path_item(flavor, ops, &object_params),
            );
        }
    }
}

/// The GVK and schema a subresource sends and returns.
fn subresource_kind(
    parent: &KindInfo,
    sub: &Subresource,
    schemas: &mut Schemas,
    parent_schema: &Value,
) -> (Value, Value) {
    let Some(kind) = sub.kind else {
        return (
            gvk(parent.group, parent.version, parent.kind),
            parent_schema.clone(),
        );
    };
    let group = sub.group.unwrap_or(parent.group);
    let version = sub.version.unwrap_or(parent.version);
    let message = SUBRESOURCE_KINDS
        .iter()
        .find(|(_, g, v, k)| *g == group && *v == version && *k == kind)
        .and_then(|(m, _, _, _)| codec::pool().get_message_by_name(m));
    let schema = match message {
        Some(desc) => schemas.message_ref(&desc, ""),
        None => json!({"type": "string"}),
    };
    (gvk(group, version, kind), schema)
}

// ---------------------------------------------------------------------------------------------
// OpenAPI v2 as protobuf

/// Encodes the swagger 2.0 JSON we generate as gnostic's `openapi.v2.Document`
/// (`github.com/google/gnostic-models/openapiv2/OpenAPIv2.proto`), covering the parts of
/// swagger our documents use. Vendor extensions are `NamedAny { name, Any { yaml } }` with
/// the value written as JSON (valid YAML), which is how client-go reads them back.
mod v2proto {
    use serde_json::Value;

    /// Protobuf writer: length-delimited fields are written to a scratch buffer and prefixed.
    #[derive(Default)]
    struct W(Vec<u8>);

    impl W {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        fn key(&mut self, field: u32, wire: u32) {
            self.varint(u64::from(field << 3 | wire));
        }
        fn string(&mut self, field: u32, s: &str) {
            if s.is_empty() {
                return;
            }
            self.bytes(field, s.as_bytes());
        }
        fn bytes(&mut self, field: u32, b: &[u8]) {
            self.key(field, 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
        }
        fn message(&mut self, field: u32, m: W) {
            self.bytes(field, &m.0);
        }
        fn boolean(&mut self, field: u32, b: bool) {
            if b {
                self.key(field, 0);
                self.varint(1);
            }
        }
    }

    fn s(v: &Value, key: &str) -> String {
        v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
    }

    fn strings(v: &Value, key: &str) -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `NamedAny` vendor extensions (`x-…` keys) of a JSON object.
    fn extensions(w: &mut W, field: u32, v: &Value) {
        let Some(map) = v.as_object() else { return };
        for (k, value) in map {
            if !k.starts_with("x-") {
                continue;
            }
            let mut any = W::default();
            any.string(2, &serde_json::to_string(value).expect("JSON serialises"));
            let mut named = W::default();
            named.string(1, k);
            named.message(2, any);
            w.message(field, named);
        }
    }

    pub(super) fn document(doc: &Value) -> Vec<u8> {
        let mut w = W::default();
        w.string(1, &s(doc, "swagger"));
        if let Some(info) = doc.get("info") {
            let mut i = W::default();
            i.string(1, &s(info, "title"));
            i.string(2, &s(info, "version"));
            w.message(2, i);
        }
        if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
            let mut p = W::default();
            for (name, item) in paths {
                let mut named = W::default();
                named.string(1, name);
                named.message(2, path_item(item));
                p.message(2, named);
            }
            w.message(8, p);
        }
        if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
            let mut d = W::default();
            for (name, schema_value) in defs {
                let mut named = W::default();
                named.string(1, name);
                named.message(2, schema(schema_value));
                d.message(1, named);
            }
            w.message(9, d);
        }
        if let Some(sec) = doc.get("securityDefinitions").and_then(Value::as_object) {
            let mut d = W::default();
            for (name, def) in sec {
                // SecurityDefinitionsItem.api_key_security = 2
                let mut api_key = W::default();
                api_key.string(1, &s(def, "type"));
                api_key.string(2, &s(def, "name"));
                api_key.string(3, &s(def, "in"));
                api_key.string(4, &s(def, "description"));
                let mut item = W::default();
                item.message(2, api_key);
                let mut named = W::default();
                named.string(1, name);
                named.message(2, item);
                d.message(1, named);
            }
            w.message(13, d);
        }
        if let Some(security) = doc.get("security").and_then(Value::as_array) {
            for requirement in security {
                let mut r = W::default();
                for (name, scopes) in requirement.as_object().into_iter().flatten() {
                    let mut array = W::default();
                    for scope in scopes.as_array().into_iter().flatten() {
                        array.string(1, scope.as_str().unwrap_or(""));
                    }
                    let mut named = W::default();
                    named.string(1, name);
                    named.message(2, array);
                    r.message(1, named);
                }
                w.message(12, r);
            }
        }
        w.0
    }

    fn path_item(item: &Value) -> W {
        let mut w = W::default();
        for (method, field) in [
            ("get", 2),
            ("put", 3),
            ("post", 4),
            ("delete", 5),
            ("options", 6),
            ("head", 7),
            ("patch", 8),
        ] {
            if let Some(op) = item.get(method) {
                w.message(field, operation(op));
            }
        }
        for p in item
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            w.message(9, parameters_item(p));
        }
        extensions(&mut w, 10, item);
        w
    }

    fn operation(op: &Value) -> W {
        let mut w = W::default();
        for t in strings(op, "tags") {
            w.string(1, &t);
        }
        w.string(3, &s(op, "description"));
        w.string(5, &s(op, "operationId"));
        for t in strings(op, "produces") {
            w.string(6, &t);
        }
        for t in strings(op, "consumes") {
            w.string(7, &t);
        }
        for p in op
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            w.message(8, parameters_item(p));
        }
        if let Some(responses) = op.get("responses").and_then(Value::as_object) {
            let mut r = W::default();
            for (code, response) in responses {
                let mut resp = W::default();
                resp.string(1, &s(response, "description"));
                if let Some(schema_value) = response.get("schema") {
                    // SchemaItem.schema = 1
                    let mut item = W::default();
                    item.message(1, schema(schema_value));
                    resp.message(2, item);
                }
                // ResponseValue.response = 1
                let mut value = W::default();
                value.message(1, resp);
                let mut named = W::default();
                named.string(1, code);
                named.message(2, value);
                r.message(1, named);
            }
            w.message(9, r);
        }
        for t in strings(op, "schemes") {
            w.string(10, &t);
        }
        extensions(&mut w, 13, op);
        w
    }

    fn parameters_item(p: &Value) -> W {
        let mut param = W::default();
        if p.get("in").and_then(Value::as_str) == Some("body") {
            let mut body = W::default();
            body.string(1, &s(p, "description"));
            body.string(2, &s(p, "name"));
            body.string(3, "body");
            body.boolean(4, p.get("required") == Some(&Value::Bool(true)));
            if let Some(schema_value) = p.get("schema") {
                body.message(5, schema(schema_value));
            }
            param.message(1, body);
        } else {
            let location = s(p, "in");
            let mut sub = W::default();
            sub.boolean(1, p.get("required") == Some(&Value::Bool(true)));
            sub.string(2, &location);
            sub.string(3, &s(p, "description"));
            sub.string(4, &s(p, "name"));
            let unique = p.get("uniqueItems") == Some(&Value::Bool(true));
            // QueryParameterSubSchema: type 6, unique_items 20 (allow_empty_value is 5);
            // PathParameterSubSchema: type 5, unique_items 19.
            let (oneof, type_field, unique_field) = if location == "path" {
                (4, 5, 19)
            } else {
                (3, 6, 20)
            };
            sub.string(type_field, &s(p, "type"));
            sub.boolean(unique_field, unique);
            let mut non_body = W::default();
            non_body.message(oneof, sub);
            param.message(2, non_body);
        }
        let mut item = W::default();
        item.message(1, param);
        item
    }

    fn schema(v: &Value) -> W {
        let mut w = W::default();
        w.string(1, &s(v, "$ref"));
        w.string(2, &s(v, "format"));
        w.string(4, &s(v, "description"));
        for r in strings(v, "required") {
            w.string(19, &r);
        }
        if let Some(ap) = v.get("additionalProperties") {
            let mut item = W::default();
            match ap {
                Value::Bool(b) => {
                    item.key(2, 0);
                    item.varint(u64::from(*b));
                }
                other => item.message(1, schema(other)),
            }
            w.message(21, item);
        }
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            let mut ty = W::default();
            ty.string(1, t);
            w.message(22, ty);
        }
        if let Some(items) = v.get("items") {
            let mut item = W::default();
            item.message(1, schema(items));
            w.message(23, item);
        }
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            let mut p = W::default();
            for (name, prop) in props {
                let mut named = W::default();
                named.string(1, name);
                named.message(2, schema(prop));
                p.message(1, named);
            }
            w.message(25, p);
        }
        extensions(&mut w, 31, v);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(message: &str, field: &str) -> FieldDescriptor {
        codec::pool()
            .get_message_by_name(&format!("navarch.api.{message}"))
            .unwrap_or_else(|| panic!("{message} exists"))
            .get_field_by_name(field)
            .unwrap_or_else(|| panic!("{message}.{field} exists"))
    }

    #[test]
    fn time_fields_name_string_fields() {
        for (message, name, _) in TIME_FIELDS {
            let f = field(message, name);
            let kind = if f.is_map() {
                match f.kind() {
                    Kind::Message(entry) => entry.map_entry_value_field().kind(),
                    other => other,
                }
            } else {
                f.kind()
            };
            assert!(!f.is_list(), "{message}.{name}");
            assert_eq!(kind, Kind::String, "{message}.{name}");
        }
    }

    #[test]
    fn retain_keys_and_subresource_kinds_exist() {
        for (message, name) in RETAIN_KEYS {
            field(message, name);
        }
        for (message, _, _, kind) in SUBRESOURCE_KINDS {
            let desc = codec::pool().get_message_by_name(message).unwrap();
            assert_eq!(desc.name(), *kind);
        }
    }

    #[test]
    fn definition_names() {
        assert_eq!(
            definition_name("navarch.api.rbac.v1.ClusterRole", "").unwrap(),
            "io.k8s.api.rbac.v1.ClusterRole"
        );
        assert_eq!(
            definition_name("navarch.api.meta.v1.ObjectMeta", "metadata").unwrap(),
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            definition_name(RAW_JSON, "fieldsV1").unwrap(),
            DEF_FIELDS_V1
        );
        assert_eq!(
            definition_name(RAW_JSON, "data").unwrap(),
            DEF_RAW_EXTENSION
        );
        assert_eq!(definition_name(QUANTITY, "cpu").unwrap(), DEF_QUANTITY);
        assert_eq!(
            definition_name(INT_OR_STRING, "port").unwrap(),
            DEF_INT_OR_STRING
        );
        assert!(definition_name(STRING_LIST, "extra").is_none());
    }

    #[test]
    fn names_and_tags_as_kube_apiserver() {
        assert_eq!(group_camel(""), "Core");
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(group_camel("coordination.k8s.io"), "Coordination");
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("autoscaling", "v2"), "autoscaling_v2");
        assert_eq!(v3_key("/openapi/v3/apis/apps/v1/"), "apis/apps/v1");
        assert_eq!(v3_key("api/v1"), "api/v1");
    }

    #[test]
    fn v2_negotiation() {
        let body = |a: OpenApiAnswer| match a {
            OpenApiAnswer::Document {
                content_type, body, ..
            } => (content_type, body.len()),
            other => panic!("{other:?}"),
        };
        // What client-go sends.
        let (ct, len) = body(openapi_v2_answer(Some(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )));
        assert_eq!(ct, OPENAPI_V2_PROTOBUF);
        assert_eq!(len, openapi_v2_protobuf().len());
        assert_eq!(
            body(openapi_v2_answer(Some(
                "application/json;q=0.9, application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            )))
            .0,
            "application/json"
        );
        assert_eq!(body(openapi_v2_answer(None)).0, "application/json");
        assert_eq!(body(openapi_v2_answer(Some("*/*"))).0, "application/json");
        assert_eq!(
            openapi_v2_answer(Some("application/yaml")),
            OpenApiAnswer::NotAcceptable
        );
        assert_eq!(
            openapi_v2_answer(Some("application/json;q=0")),
            OpenApiAnswer::NotAcceptable
        );
    }

    #[test]
    fn v3_negotiation_and_hash_redirects() {
        let hash = openapi_v3_hash("apis/apps/v1").unwrap();
        match openapi_v3_answer("apis/apps/v1", Some(hash), Some("application/json")) {
            OpenApiAnswer::Document {
                content_type,
                etag,
                immutable,
                body,
            } => {
                assert_eq!(content_type, "application/json");
                assert_eq!(etag, hash);
                assert!(immutable);
                assert_eq!(body, openapi_v3_json("apis/apps/v1").unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            openapi_v3_answer("/openapi/v3/api/v1", None, None),
            OpenApiAnswer::Document {
                immutable: false,
                ..
            }
        ));
        assert_eq!(
            openapi_v3_answer("apis/apps/v1", Some("STALE"), Some("application/json")),
            OpenApiAnswer::Redirect(format!("/openapi/v3/apis/apps/v1?hash={hash}"))
        );
        assert_eq!(
            openapi_v3_answer("apis/apps/v9", None, Some("application/json")),
            OpenApiAnswer::NotFound
        );
        assert_eq!(
            openapi_v3_answer(
                "apis/apps/v1",
                None,
                Some("application/com.github.proto-openapi.spec.v3.v1.0+protobuf")
            ),
            OpenApiAnswer::NotAcceptable
        );
    }

    #[test]
    fn content_hash_is_stable_and_sensitive() {
        assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
        assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
        assert_eq!(content_hash(b"").len(), 32);
    }
}
