//! The object model is complete against upstream Kubernetes: the committed `.proto` files are
//! what the generator produces from the k8s-openapi schemas (the oracle), and every field path
//! of every served kind exists in the compiled descriptors.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::schemars::SchemaGenerator;
use navarch_api::codec;
use navarch_api::kinds::KINDS;
use serde_json::Value;

fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(navarch_protogen::PROTO_DIR)
}

#[test]
fn committed_protos_match_the_generator() {
    let dir = proto_dir();
    let files = navarch_protogen::generate(&|stem| {
        std::fs::read_to_string(dir.join(format!("{stem}.proto"))).ok()
    })
    .unwrap();
    for (stem, text) in files {
        let on_disk =
            std::fs::read_to_string(dir.join(format!("{stem}.proto"))).unwrap_or_default();
        assert!(
            on_disk == text,
            "{stem}.proto is stale: run `cargo run -p navarch-protogen`"
        );
    }
}

#[test]
fn committed_wire_numbers_match_the_generator() {
    let dir = proto_dir();
    let files = navarch_protogen::generate(&|stem| {
        std::fs::read_to_string(dir.join(format!("{stem}.proto"))).ok()
    })
    .unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let k8s_pb = navarch_protogen::k8s_pb_src(&root).unwrap();
    let (table, unmatched) = navarch_protogen::wire_numbers(&files, &k8s_pb).unwrap();
    let on_disk =
        std::fs::read_to_string(root.join(navarch_protogen::WIRE_NUMBERS_FILE)).unwrap_or_default();
    assert!(
        on_disk == table,
        "{} is stale: run `cargo run -p navarch-protogen`",
        navarch_protogen::WIRE_NUMBERS_FILE
    );
    // Fields newer than the k8s-pb release (none of which kubectl 1.33 sends); the served
    // kinds' everyday fields all have a tag.
    assert!(unmatched.len() < 60, "{unmatched:#?}");
    for field in [
        "navarch.api.core.v1.Probe.httpGet",
        "navarch.api.core.v1.Volume.configMap",
        "navarch.api.core.v1.PodStatus.podIPs",
        "navarch.api.meta.v1.ObjectMeta.creationTimestamp",
    ] {
        assert!(!unmatched.iter().any(|u| u == field), "{field} unmatched");
    }
    let table: Value = serde_json::from_str(&table).unwrap();
    assert_eq!(
        table["navarch.api.meta.v1.ObjectMeta"]["fields"]["creationTimestamp"],
        "8:Time"
    );
    assert_eq!(
        table["navarch.api.core.v1.Probe"]["fields"]["httpGet"],
        "1.2"
    );
}

/// Walks a schema and its `$ref`s, checking each property against the descriptor.
fn walk(
    defs: &serde_json::Map<String, Value>,
    schema: &Value,
    message: &prost_reflect::MessageDescriptor,
    path: &str,
    seen: &mut BTreeSet<String>,
    missing: &mut Vec<String>,
    checked: &mut usize,
) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            if !seen.insert(format!("{name}@{}", message.full_name())) {
                return;
            }
            &defs[name]
        }
        None => schema,
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        let field_path = format!("{path}.{name}");
        let Some(field) = message.get_field_by_name(name) else {
            missing.push(field_path);
            continue;
        };
        *checked += 1;
        let mut inner = prop;
        if prop.get("type").and_then(Value::as_str) == Some("array") {
            inner = &prop["items"];
        }
        if let Some(values) = prop.get("additionalProperties") {
            inner = values;
        }
        if let prost_reflect::Kind::Message(m) = field.kind() {
            let m = if field.is_map() {
                match m.map_entry_value_field().kind() {
                    prost_reflect::Kind::Message(v) => v,
                    _ => continue,
                }
            } else {
                m
            };
            walk(defs, inner, &m, &field_path, seen, missing, checked);
        }
    }
}

#[test]
fn every_upstream_field_path_exists_in_the_model() {
    let mut generator = SchemaGenerator::default();
    macro_rules! schema_of {
        ($($t:ty),*) => { vec![$( (<$t as k8s_openapi::Resource>::API_VERSION, <$t as k8s_openapi::Resource>::KIND, generator.subschema_for::<$t>()) ),*] };
    }
    use k8s_openapi::api::*;
    let roots = schema_of!(
        core::v1::Namespace,
        core::v1::Pod,
        core::v1::Node,
        core::v1::Service,
        core::v1::Endpoints,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::Event,
        core::v1::ServiceAccount,
        apps::v1::Deployment,
        apps::v1::ReplicaSet,
        apps::v1::DaemonSet,
        apps::v1::StatefulSet,
        apps::v1::ControllerRevision,
        batch::v1::Job,
        batch::v1::CronJob,
        coordination::v1::Lease,
        discovery::v1::EndpointSlice,
        autoscaling::v2::HorizontalPodAutoscaler,
        rbac::v1::Role,
        rbac::v1::ClusterRole,
        rbac::v1::RoleBinding,
        rbac::v1::ClusterRoleBinding,
        scheduling::v1::PriorityClass
    );
    let defs = generator.take_definitions(true);
    let mut missing = Vec::new();
    let mut checked = 0;
    for (api_version, kind, schema) in roots {
        let info = navarch_api::kinds::by_kind(api_version, kind)
            .unwrap_or_else(|| panic!("{api_version} {kind} not served"));
        let mut seen = BTreeSet::new();
        walk(
            &defs,
            &serde_json::to_value(&schema).unwrap(),
            &info.descriptor(),
            kind,
            &mut seen,
            &mut missing,
            &mut checked,
        );
    }
    assert!(
        missing.is_empty(),
        "fields missing from the model: {missing:?}"
    );
    assert!(checked > 1000, "only {checked} field paths checked");
    assert!(KINDS.len() >= 24);
    let _ = codec::pool();
}
