//! The discovery and OpenAPI documents against what kubectl reads from them.

use std::collections::BTreeSet;

use navarch_api::kinds::KINDS;
use navarch_facade::discovery;
use navarch_facade::openapi::{
    definition_name, openapi_v2, openapi_v2_hash, openapi_v2_json, openapi_v2_protobuf,
    openapi_v3_document, openapi_v3_hash, openapi_v3_index, openapi_v3_json,
};
use serde_json::{Value, json};

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Follows `$ref`, `allOf: [$ref]` (OpenAPI v3) to the definition's schema.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf").and_then(|a| a[0].get("$ref")));
    match reference.and_then(Value::as_str) {
        Some(r) => {
            let mut cur = doc;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            assert!(!cur.is_null(), "{r} resolves");
            cur
        }
        None => schema,
    }
}

fn schemas(doc: &Value) -> &serde_json::Map<String, Value> {
    doc.get("definitions")
        .or_else(|| doc["components"].get("schemas"))
        .and_then(Value::as_object)
        .expect("definitions")
}

/// Every document served: the v2 document and each v3 group-version document.
fn documents() -> Vec<(String, &'static Value)> {
    let mut docs = vec![("v2".to_string(), openapi_v2())];
    for (group, version) in discovery::group_versions() {
        let path = gv_path(group, version);
        docs.push((path.clone(), openapi_v3_document(&path).unwrap()));
    }
    docs
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves_within_its_document() {
    for (name, doc) in documents() {
        let mut refs = Vec::new();
        collect_refs(doc, &mut refs);
        assert!(!refs.is_empty());
        let prefix = if name == "v2" {
            "#/definitions/"
        } else {
            "#/components/schemas/"
        };
        let defs = schemas(doc);
        for r in refs {
            let target = r
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{name}: {r} is local"));
            let schema = defs
                .get(target)
                .unwrap_or_else(|| panic!("{name}: {r} resolves"));
            assert!(schema.is_object(), "{name}: {target} is defined");
        }
    }
}

#[test]
fn every_kind_has_a_schema_with_its_gvk() {
    for kind in KINDS {
        let gvk = gvk(kind.group, kind.version, kind.kind);
        let name = definition_name(kind.message, "").unwrap();
        let v2 = &schemas(openapi_v2())[&name];
        assert!(
            v2["x-kubernetes-group-version-kind"]
                .as_array()
                .unwrap()
                .contains(&gvk),
            "v2 {name}"
        );
        let doc = openapi_v3_document(&gv_path(kind.group, kind.version)).unwrap();
        // kubectl explain: the schema whose GVK list contains the kind, found by scanning.
        let found: Vec<&String> = schemas(doc)
            .iter()
            .filter(|(_, s)| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| l.contains(&gvk))
            })
            .map(|(n, _)| n)
            .collect();
        assert_eq!(found, vec![&name], "v3 {}", kind.kind);
        if kind.create_only() {
            continue;
        }
        let list = definition_name(&format!("{}List", kind.message), "").unwrap();
        assert_eq!(
            schemas(doc)[&list]["x-kubernetes-group-version-kind"][0]["kind"],
            format!("{}List", kind.kind)
        );
    }
}

#[test]
fn kubernetes_definition_names() {
    let names: BTreeSet<&String> = schemas(openapi_v2()).keys().collect();
    for expected in [
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.core.v1.PodSpec",
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.api.rbac.v1.ClusterRole",
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.api.policy.v1.Eviction",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
    ] {
        assert!(names.contains(&expected.to_string()), "{expected}");
    }
    assert!(names.iter().all(|n| n.starts_with("io.k8s.")), "{names:?}");
}

#[test]
fn pod_spec_containers_merge_by_name() {
    for (name, doc) in documents() {
        let Some(spec) = schemas(doc).get("io.k8s.api.core.v1.PodSpec") else {
            continue;
        };
        let containers = &spec["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name", "{name}");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge", "{name}");
        assert_eq!(containers["x-kubernetes-list-type"], "map", "{name}");
        assert_eq!(
            containers["x-kubernetes-list-map-keys"],
            json!(["name"]),
            "{name}"
        );
        assert_eq!(containers["type"], "array");
        assert_eq!(
            resolve(doc, &containers["items"])["properties"]["image"]["type"],
            "string"
        );
        let volumes = &spec["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        assert_eq!(
            spec["properties"]["tolerations"]["x-kubernetes-list-type"],
            "atomic"
        );
        assert_eq!(
            spec["properties"]["nodeSelector"]["x-kubernetes-map-type"],
            "atomic"
        );
        let ports = &schemas(doc)["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
    }
    let deployment_spec = &schemas(openapi_v2())["io.k8s.api.apps.v1.DeploymentSpec"];
    assert_eq!(
        deployment_spec["properties"]["strategy"]["x-kubernetes-patch-strategy"],
        "retainKeys"
    );
    let meta = &schemas(openapi_v2())["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
    assert_eq!(
        meta["properties"]["finalizers"]["x-kubernetes-patch-strategy"],
        "merge"
    );
    assert_eq!(
        meta["properties"]["finalizers"]["x-kubernetes-list-type"],
        "set"
    );
    assert_eq!(
        schemas(openapi_v2())["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
        "atomic"
    );
}

#[test]
fn special_types_as_kubernetes_defines_them() {
    let v2 = schemas(openapi_v2());
    assert_eq!(
        v2["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
        "string"
    );
    assert_eq!(
        v2["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    assert_eq!(
        v2["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["x-kubernetes-int-or-string"],
        true
    );
    assert_eq!(
        v2["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
        "string"
    );
    assert_eq!(
        v2["io.k8s.apimachinery.pkg.apis.meta.v1.Time"],
        json!({
            "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.",
            "type": "string",
            "format": "date-time",
        })
    );
    let v3 = schemas(openapi_v3_document("apis/apps/v1").unwrap());
    let ios = &v3["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["format"], "int-or-string");
    assert_eq!(
        ios["oneOf"],
        json!([{"type": "integer"}, {"type": "string"}])
    );
    assert_eq!(
        v3["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"],
        json!([{"type": "string"}, {"type": "number"}])
    );

    // Fields: times, quantities, int-or-strings, byte maps, int32/int64.
    let meta = &v2["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
    assert_eq!(
        meta["creationTimestamp"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time"
    );
    assert!(
        meta["creationTimestamp"]["description"]
            .as_str()
            .unwrap()
            .starts_with("CreationTimestamp is")
    );
    assert_eq!(
        meta["generation"],
        json!({"type": "integer", "format": "int64",
        "description": meta["generation"]["description"]})
    );
    assert_eq!(
        meta["labels"]["additionalProperties"],
        json!({"type": "string"})
    );
    let lease = &v2["io.k8s.api.coordination.v1.LeaseSpec"]["properties"];
    assert_eq!(
        lease["renewTime"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
    );
    let requirements = &v2["io.k8s.api.core.v1.ResourceRequirements"]["properties"];
    assert_eq!(
        requirements["limits"]["additionalProperties"],
        json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"})
    );
    let strategy = &v2["io.k8s.api.apps.v1.RollingUpdateDeployment"]["properties"];
    assert_eq!(
        strategy["maxSurge"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    );
    let secret = &v2["io.k8s.api.core.v1.Secret"]["properties"];
    assert_eq!(
        secret["data"]["additionalProperties"],
        json!({"type": "string", "format": "byte"})
    );
    let spec = &v2["io.k8s.api.apps.v1.DeploymentSpec"]["properties"];
    assert_eq!(spec["replicas"]["type"], "integer");
    assert_eq!(spec["replicas"]["format"], "int32");
    let managed = &v2["io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"]["properties"];
    assert_eq!(
        managed["fieldsV1"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
    );
    let revision = &v2["io.k8s.api.apps.v1.ControllerRevision"]["properties"];
    assert_eq!(
        revision["data"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.runtime.RawExtension"
    );
    let pdb = &v2["io.k8s.api.policy.v1.PodDisruptionBudgetStatus"]["properties"];
    assert_eq!(
        pdb["disruptedPods"]["additionalProperties"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time"
    );

    // In v3 a described $ref is wrapped in allOf (siblings of $ref are ignored in 3.0).
    let v3_meta = &v3["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
    assert_eq!(
        v3_meta["creationTimestamp"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time"
    );
}

#[test]
fn descriptions_come_from_the_proto_comments() {
    let v2 = schemas(openapi_v2());
    let spec = &v2["io.k8s.api.apps.v1.DeploymentSpec"]["properties"];
    assert!(
        spec["replicas"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Number of desired pods")
    );
    let v3 = schemas(openapi_v3_document("apis/apps/v1").unwrap());
    let deployment = &v3["io.k8s.api.apps.v1.Deployment"]["properties"];
    assert_eq!(
        deployment["spec"]["description"],
        "Specification of the desired behavior of the Deployment."
    );
    assert_eq!(
        deployment["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
}

/// What `query_param_verifier{,_v3}.go` checks: the PATCH operation of the kind (any of them:
/// it stops at the first in Go map order) declares `fieldValidation`.
fn patch_ops_declare_field_validation(doc: &Value, gvk: &Value, v3: bool) -> usize {
    let mut found = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["patch", "post", "put"] {
            let Some(op) = item.get(method) else { continue };
            if &op["x-kubernetes-group-version-kind"] != gvk {
                continue;
            }
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} has parameters"))
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert!(
                names.contains(&"fieldValidation"),
                "{method} {path}: {names:?}"
            );
            assert!(names.contains(&"dryRun"), "{method} {path}");
            assert!(names.contains(&"fieldManager"), "{method} {path}");
            if method == "patch" {
                found += 1;
                assert!(names.contains(&"force"), "{path}");
                let types: Vec<String> = if v3 {
                    op["requestBody"]["content"]
                        .as_object()
                        .unwrap()
                        .keys()
                        .cloned()
                        .collect()
                } else {
                    op["consumes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect()
                };
                for t in [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                    "application/apply-patch+yaml",
                ] {
                    assert!(types.iter().any(|x| x == t), "{path} {t}");
                }
                assert_eq!(op["x-kubernetes-action"], "patch");
            }
        }
    }
    found
}

#[test]
fn every_write_declares_field_validation() {
    let deployment = gvk("apps", "v1", "Deployment");
    let doc = openapi_v3_document("apis/apps/v1").unwrap();
    // The object and its status.
    assert_eq!(
        patch_ops_declare_field_validation(doc, &deployment, true),
        2
    );
    assert_eq!(
        patch_ops_declare_field_validation(openapi_v2(), &deployment, false),
        2
    );
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"], deployment);
    // Read-only kinds (metrics.k8s.io) have no writes.
    for kind in KINDS.iter().filter(|k| !k.virtual_kind) {
        let gvk = gvk(kind.group, kind.version, kind.kind);
        let doc = openapi_v3_document(&gv_path(kind.group, kind.version)).unwrap();
        assert!(
            patch_ops_declare_field_validation(doc, &gvk, true) >= 1,
            "{}",
            kind.kind
        );
        assert!(
            patch_ops_declare_field_validation(openapi_v2(), &gvk, false) >= 1,
            "{}",
            kind.kind
        );
    }
    // Namespace is what kubectl checks for CRDs it cannot find.
    let core = openapi_v3_document("api/v1").unwrap();
    assert!(patch_ops_declare_field_validation(core, &gvk("", "v1", "Namespace"), true) >= 1);
}

/// The paths kubectl explain's template searches for a GVR and the GVK it finds there.
#[test]
fn explain_finds_every_kind_from_its_paths() {
    for kind in KINDS {
        let doc = openapi_v3_document(&gv_path(kind.group, kind.version)).unwrap();
        let prefix = if kind.group.is_empty() {
            "/api".to_string()
        } else {
            format!("/apis/{}", kind.group)
        };
        let candidates = [
            format!("{prefix}/{}/{}", kind.version, kind.plural),
            format!("{prefix}/{}/{}/{{name}}", kind.version, kind.plural),
            format!(
                "{prefix}/{}/namespaces/{{namespace}}/{}",
                kind.version, kind.plural
            ),
            format!(
                "{prefix}/{}/namespaces/{{namespace}}/{}/{{name}}",
                kind.version, kind.plural
            ),
        ];
        let mut found = None;
        for path in &candidates {
            let Some(item) = doc["paths"].get(path) else {
                continue;
            };
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(g) = item
                    .get(method)
                    .map(|op| &op["x-kubernetes-group-version-kind"])
                {
                    found = Some(g.clone());
                }
            }
        }
        assert_eq!(
            found,
            Some(gvk(kind.group, kind.version, kind.kind)),
            "{}",
            kind.plural
        );
    }
    // `kubectl explain deployment.spec` walks properties through references.
    let doc = openapi_v3_document("apis/apps/v1").unwrap();
    let deployment = &schemas(doc)["io.k8s.api.apps.v1.Deployment"];
    let spec = resolve(doc, &deployment["properties"]["spec"]);
    let template = resolve(doc, &spec["properties"]["template"]);
    let pod_spec = resolve(doc, &template["properties"]["spec"]);
    assert!(pod_spec["properties"]["containers"].is_object());
}

#[test]
fn subresource_operations() {
    let apps = openapi_v3_document("apis/apps/v1").unwrap();
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        gvk("autoscaling", "v1", "Scale")
    );
    assert_eq!(
        resolve(
            apps,
            &scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        )["x-kubernetes-group-version-kind"],
        json!([gvk("autoscaling", "v1", "Scale")])
    );
    let core = openapi_v3_document("api/v1").unwrap();
    let paths = core["paths"].as_object().unwrap();
    let log = &paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
    let log_params: Vec<&str> = log["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["container", "follow", "previous", "tailLines", "timestamps"] {
        assert!(log_params.contains(&p), "{p}");
    }
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]["x-kubernetes-group-version-kind"],
        gvk("policy", "v1", "Eviction")
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]["post"]["x-kubernetes-group-version-kind"],
        gvk("authentication.k8s.io", "v1", "TokenRequest")
    );
    assert!(paths.contains_key("/api/v1/namespaces/{name}/finalize"));
    assert!(paths.contains_key("/api/v1/nodes/{name}/status"));
    assert!(paths.contains_key("/api/v1/pods"));
    let list = &paths["/api/v1/namespaces/{namespace}/pods"]["get"];
    assert_eq!(list["x-kubernetes-action"], "list");
    assert!(
        list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "watch")
    );
    let operation_ids: Vec<&str> = openapi_v2()["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op.get("operationId").and_then(Value::as_str))
        .collect();
    let unique: BTreeSet<&&str> = operation_ids.iter().collect();
    assert_eq!(
        unique.len(),
        operation_ids.len(),
        "operation ids are unique"
    );
    assert!(operation_ids.contains(&"patchAppsV1NamespacedDeployment"));
    assert!(operation_ids.contains(&"listCoreV1PodForAllNamespaces"));
}

#[test]
fn v3_index_points_at_every_group_version_by_hash() {
    let index = openapi_v3_index();
    let paths = index["paths"].as_object().unwrap();
    let gvs = discovery::group_versions();
    assert_eq!(paths.len(), gvs.len());
    for (group, version) in gvs {
        let path = gv_path(group, version);
        let url = paths[&path]["serverRelativeURL"].as_str().unwrap();
        let hash = openapi_v3_hash(&path).unwrap();
        assert_eq!(url, format!("/openapi/v3/{path}?hash={hash}"));
        assert_eq!(hash.len(), 32);
        let bytes = openapi_v3_json(&path).unwrap();
        let parsed: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(&parsed, openapi_v3_document(&path).unwrap());
        assert_eq!(parsed["openapi"], "3.0.0");
    }
    assert!(openapi_v3_document("/openapi/v3/apis/apps/v1").is_some());
    assert!(openapi_v3_document("apis/apps/v2").is_none());
    assert!(openapi_v3_hash("apis/nope/v1").is_none());
    // Stable within a process (documents are built once).
    assert_eq!(openapi_v3_index(), index);
    let parsed: Value = serde_json::from_slice(openapi_v2_json()).unwrap();
    assert_eq!(&parsed, openapi_v2());
    assert_eq!(parsed["swagger"], "2.0");
    assert_eq!(openapi_v2_hash().len(), 32);
}

/// One protobuf field: a length-delimited one (number, payload) or a varint.
enum Pb<'a> {
    Bytes(u32, &'a [u8]),
    Varint,
}

fn pb_fields(mut bytes: &[u8]) -> Vec<Pb<'_>> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = bytes[0];
            *bytes = &bytes[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let number = (key >> 3) as u32;
        match key & 7 {
            0 => {
                varint(&mut bytes);
                out.push(Pb::Varint);
            }
            2 => {
                let len = varint(&mut bytes) as usize;
                out.push(Pb::Bytes(number, &bytes[..len]));
                bytes = &bytes[len..];
            }
            wire => panic!("unexpected wire type {wire}"),
        }
    }
    out
}

fn pb_messages(bytes: &[u8], number: u32) -> Vec<&[u8]> {
    pb_fields(bytes)
        .into_iter()
        .filter_map(|f| match f {
            Pb::Bytes(n, b) if n == number => Some(b),
            _ => None,
        })
        .collect()
}

fn pb_string(bytes: &[u8], number: u32) -> String {
    pb_messages(bytes, number)
        .first()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .unwrap_or_default()
}

/// Decodes parts of the gnostic `openapi.v2.Document` and compares them with the JSON.
#[test]
fn v2_protobuf_matches_the_json_document() {
    let doc = openapi_v2_protobuf();
    let json = openapi_v2();
    assert_eq!(pb_string(doc, 1), "2.0");
    // Definitions { repeated NamedSchema additional_properties = 1 }
    let definitions = pb_messages(doc, 9);
    assert_eq!(definitions.len(), 1);
    let named: Vec<&[u8]> = pb_messages(definitions[0], 1);
    assert_eq!(named.len(), schemas(json).len());
    let deployment_spec = named
        .iter()
        .find(|n| pb_string(n, 1) == "io.k8s.api.apps.v1.DeploymentSpec")
        .expect("DeploymentSpec");
    let schema = pb_messages(deployment_spec, 2)[0];
    // Schema.type = 22 (TypeItem.value = 1), properties = 25.
    assert_eq!(pb_string(pb_messages(schema, 22)[0], 1), "object");
    let properties = pb_messages(pb_messages(schema, 25)[0], 1);
    let strategy = properties
        .iter()
        .find(|p| pb_string(p, 1) == "strategy")
        .expect("strategy");
    let strategy = pb_messages(strategy, 2)[0];
    assert_eq!(
        pb_string(strategy, 1),
        "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
    );
    // vendor_extension = 31: NamedAny { name = 1, Any { yaml = 2 } }
    let extensions: Vec<(String, String)> = pb_messages(strategy, 31)
        .iter()
        .map(|e| (pb_string(e, 1), pb_string(pb_messages(e, 2)[0], 2)))
        .collect();
    assert_eq!(
        extensions,
        vec![(
            "x-kubernetes-patch-strategy".to_string(),
            "\"retainKeys\"".to_string()
        )]
    );
    // Paths { repeated NamedPathItem path = 2 }
    let paths = pb_messages(pb_messages(doc, 8)[0], 2);
    assert_eq!(paths.len(), json["paths"].as_object().unwrap().len());
    let item = paths
        .iter()
        .find(|p| pb_string(p, 1) == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        .expect("deployment path");
    let patch = pb_messages(pb_messages(item, 2)[0], 8)[0];
    let names: Vec<String> = pb_messages(patch, 8)
        .iter()
        .filter_map(|item| {
            let parameter = pb_messages(item, 1)[0];
            let non_body = pb_messages(parameter, 2);
            // NonBodyParameter.query_parameter_sub_schema = 3, name = 4
            non_body
                .first()
                .map(|nb| pb_string(pb_messages(nb, 3)[0], 4))
        })
        .collect();
    assert_eq!(
        names,
        ["dryRun", "fieldManager", "fieldValidation", "force"]
    );
    let patch_gvk = pb_messages(patch, 13)
        .iter()
        .find(|e| pb_string(e, 1) == "x-kubernetes-group-version-kind")
        .map(|e| pb_string(pb_messages(e, 2)[0], 2))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&patch_gvk).unwrap(),
        gvk("apps", "v1", "Deployment")
    );
}

/// Writes every document to `$NAVARCH_OPENAPI_DUMP` (a directory), for checking them with a
/// real kubectl against a static server: `NAVARCH_OPENAPI_DUMP=/tmp/docs cargo test -p
/// navarch-facade --test discovery_openapi dump -- --ignored`.
#[test]
#[ignore]
fn dump() {
    let Ok(dir) = std::env::var("NAVARCH_OPENAPI_DUMP") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    // `<url path>.json`: `api.json` next to the directory `api/`.
    let write = |path: &str, bytes: &[u8]| {
        let file = dir.join(format!("{path}.json"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    };
    let json = |v: &Value| serde_json::to_vec(v).unwrap();
    write("version", &json(&discovery::version_info()));
    write("api", &json(&discovery::api_versions()));
    write("apis", &json(&discovery::api_group_list()));
    for (group, version) in discovery::group_versions() {
        let path = gv_path(group, version);
        write(
            &path,
            &json(&discovery::api_resource_list(group, version).unwrap()),
        );
        write(
            &format!("openapi/v3/{path}"),
            openapi_v3_json(&path).unwrap(),
        );
    }
    write("openapi/v3", &json(&openapi_v3_index()));
    write("openapi/v2", openapi_v2_json());
    std::fs::write(dir.join("openapi/v2.pb"), openapi_v2_protobuf()).unwrap();
}
