//! Generates Navarch's object model (`proto/navarch/api/v1/*.proto`) from the upstream
//! Kubernetes OpenAPI schemas that the `k8s-openapi` crate carries.
//!
//! The `.proto` files are the contract; this generator is how we keep them complete: every
//! property of every upstream kind we serve becomes a field, with proto3 `optional` on scalars
//! so that presence survives (`replicas: 0` is not an absent `replicas`). Field numbers of an
//! existing file are kept when it is regenerated; new fields get the next free number.
//!
//! Mapping rules (the JSON codec in `navarch-api` mirrors them):
//! - `Quantity` → `navarch.api.meta.v1.Quantity`, `IntOrString` → `navarch.api.meta.v1.IntOrString`,
//!   free-form JSON (`RawExtension`, `FieldsV1`) → `navarch.api.meta.v1.RawJson`;
//! - `Time`/`MicroTime` → `string` (RFC 3339); `format: byte` → `bytes` (base64 in JSON);
//! - `map[string][]string` → `map<string, navarch.api.meta.v1.StringList>`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;

/// Where the generated files live, relative to the repository root.
pub const PROTO_DIR: &str = "proto/navarch/api/v1";

/// Kinds whose schema roots the model (each with its nested types). `list` says whether a
/// `<Kind>List` message is generated too.
fn roots(generator: &mut SchemaGenerator) -> Vec<(String, bool)> {
    use k8s_openapi::api::{
        apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut out = Vec::new();
    macro_rules! root {
        ($list:expr; $($t:ty),* $(,)?) => {$(
            generator.subschema_for::<$t>();
            out.push((<$t as JsonSchema>::schema_name().into_owned(), $list));
        )*};
    }
    root!(true;
        core::Namespace, core::Pod, core::Node, core::Service, core::Endpoints, core::ConfigMap,
        core::Secret, core::Event, core::ServiceAccount, core::PersistentVolumeClaim,
        core::PodTemplate, core::LimitRange, core::ResourceQuota,
        apps::Deployment, apps::ReplicaSet, apps::DaemonSet, apps::StatefulSet,
        apps::ControllerRevision, batch::Job, batch::CronJob, coordination::Lease,
        discovery::EndpointSlice, autoscaling2::HorizontalPodAutoscaler,
        autoscaling1::HorizontalPodAutoscaler, rbac::Role, rbac::ClusterRole, rbac::RoleBinding,
        rbac::ClusterRoleBinding, scheduling::PriorityClass, policy::PodDisruptionBudget,
    );
    root!(false;
        core::Binding, autoscaling1::Scale, policy::Eviction, authn::TokenRequest,
        authn::TokenReview, authn::SelfSubjectReview, authz::SubjectAccessReview,
        authz::SelfSubjectAccessReview, authz::LocalSubjectAccessReview,
        authz::SelfSubjectRulesReview, meta::Status, meta::DeleteOptions, meta::ListMeta,
        meta::APIResourceList, meta::APIGroupList, meta::APIVersions,
    );
    out
}

/// A definition name split into the proto file it lands in and its message name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    file: String,
    package: String,
    message: String,
}

/// How a definition is represented in proto.
enum Repr {
    Message(Target),
    Scalar(&'static str),
}

fn meta_special(message: &str) -> Repr {
    Repr::Message(Target {
        file: "meta_v1".into(),
        package: "navarch.api.meta.v1".into(),
        message: message.into(),
    })
}

fn classify(definition: &str) -> Result<Repr> {
    Ok(match definition {
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => meta_special("Quantity"),
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => meta_special("IntOrString"),
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => meta_special("RawJson"),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => Repr::Scalar("string"),
        other => {
            let (group, version, message) = if let Some(rest) = other.strip_prefix("io.k8s.api.") {
                let parts: Vec<&str> = rest.split('.').collect();
                if parts.len() != 3 {
                    bail!("unexpected definition name {other}");
                }
                (
                    parts[0].to_string(),
                    parts[1].to_string(),
                    parts[2].to_string(),
                )
            } else if let Some(rest) = other.strip_prefix("io.k8s.apimachinery.pkg.apis.meta.v1.") {
                ("meta".into(), "v1".into(), rest.to_string())
            } else if let Some(rest) = other.strip_prefix("io.k8s.apimachinery.pkg.version.") {
                ("version".into(), "v1".into(), rest.to_string())
            } else {
                bail!("no proto mapping for definition {other}");
            };
            Repr::Message(Target {
                file: format!("{group}_{version}"),
                package: format!("navarch.api.{group}.{version}"),
                message,
            })
        }
    })
}

/// One generated field line.
struct Field {
    json_name: String,
    label: &'static str,
    ty: String,
    comment: String,
}

struct FileOut {
    package: String,
    imports: BTreeSet<String>,
    messages: BTreeMap<String, Vec<Field>>,
}

fn ref_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.rsplit('/').next()
}

fn first_sentence(description: &str) -> String {
    let line = description.lines().next().unwrap_or("");
    let end = line.find(". ").map(|i| i + 1).unwrap_or(line.len());
    let mut s: String = line[..end].chars().take(240).collect();
    if s.len() < line[..end].len() {
        s.push('…');
    }
    s
}

/// Resolves a property schema to (label, proto type). `label` is "optional", "repeated" or
/// "" (for maps and messages, which carry presence on their own).
fn field_type(
    schema: &Value,
    own_file: &str,
    imports: &mut BTreeSet<String>,
) -> Result<(&'static str, String)> {
    let qualified = |t: &Target, imports: &mut BTreeSet<String>| {
        if t.file != own_file {
            imports.insert(format!("{PROTO_DIR_IMPORT}/{}.proto", t.file));
        }
        format!("{}.{}", t.package, t.message)
    };
    if let Some(name) = ref_name(schema) {
        return Ok(match classify(name)? {
            Repr::Scalar(s) => ("optional", s.to_string()),
            Repr::Message(t) => ("optional", qualified(&t, imports)),
        });
    }
    if schema.get("x-kubernetes-int-or-string").is_some() {
        let Repr::Message(t) = meta_special("IntOrString") else {
            unreachable!()
        };
        return Ok(("optional", qualified(&t, imports)));
    }
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    Ok(match ty {
        "string" if format == "byte" => ("optional", "bytes".into()),
        "string" => ("optional", "string".into()),
        "integer" if format == "int32" => ("optional", "int32".into()),
        "integer" => ("optional", "int64".into()),
        "number" => ("optional", "double".into()),
        "boolean" => ("optional", "bool".into()),
        "array" => {
            let items = schema.get("items").context("array without items")?;
            if items.get("type").and_then(Value::as_str) == Some("array") {
                bail!("nested arrays are not mapped");
            }
            let (_, inner) = field_type(items, own_file, imports)?;
            ("repeated", inner)
        }
        "object" => match schema.get("additionalProperties") {
            Some(values) if values.is_object() => {
                let inner = if values.get("type").and_then(Value::as_str) == Some("array") {
                    let Repr::Message(t) = meta_special("StringList") else {
                        unreachable!()
                    };
                    qualified(&t, imports)
                } else {
                    field_type(values, own_file, imports)?.1
                };
                ("", format!("map<string, {inner}>"))
            }
            _ => {
                let Repr::Message(t) = meta_special("RawJson") else {
                    unreachable!()
                };
                ("optional", qualified(&t, imports))
            }
        },
        other => bail!("unmapped schema type {other}"),
    })
}

const PROTO_DIR_IMPORT: &str = "navarch/api/v1";

/// Hand-written messages with custom JSON forms (see the crate docs).
const META_SPECIALS: &str = r#"// Quantity is a fixed-point number with a suffix ("500m", "128Mi", "1e3"). JSON form: a
// string (numbers are accepted on input). `value` holds the string as written.
message Quantity {
  string value = 1;
}

// IntOrString holds an int32 or a string. JSON form: a bare number or a string.
message IntOrString {
  oneof value {
    int32 int_val = 1;
    string str_val = 2;
  }
}

// RawJson holds free-form JSON (runtime.RawExtension, FieldsV1). JSON form: the value itself.
message RawJson {
  string json = 1;
}

// StringList is the value type of map[string][]string fields. JSON form: an array of strings.
message StringList {
  repeated string items = 1;
}
"#;

/// Field numbers already assigned in an existing file: (message, field) → number.
fn existing_numbers(existing: &str) -> BTreeMap<(String, String), u32> {
    let mut out = BTreeMap::new();
    let mut message = String::new();
    for line in existing.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("message ") {
            message = rest.trim_end_matches('{').trim().to_string();
        } else if let Some((lhs, rhs)) = line.split_once(" = ")
            && !line.starts_with("//")
            && let Some(name) = lhs.split_whitespace().last()
            && let Ok(n) = rhs.trim_end_matches(';').trim().parse::<u32>()
        {
            out.insert((message.clone(), name.to_string()), n);
        }
    }
    out
}

/// Generates every file: `file stem` → content. `existing` returns the current content of a
/// file stem, so field numbers stay stable.
pub fn generate(existing: &dyn Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>> {
    let mut generator = SchemaGenerator::default();
    let roots = roots(&mut generator);
    let definitions = generator.take_definitions(true);
    let mut files: BTreeMap<String, FileOut> = BTreeMap::new();

    for (name, schema) in &definitions {
        let Repr::Message(target) = classify(name)? else {
            continue;
        };
        if target.file == "meta_v1"
            && matches!(
                target.message.as_str(),
                "Quantity" | "IntOrString" | "RawJson"
            )
        {
            continue;
        }
        let file = files.entry(target.file.clone()).or_insert_with(|| FileOut {
            package: target.package.clone(),
            imports: BTreeSet::new(),
            messages: BTreeMap::new(),
        });
        let mut fields = Vec::new();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (json_name, prop) in props {
                let (label, ty) = field_type(prop, &target.file, &mut file.imports)
                    .with_context(|| format!("{name}.{json_name}"))?;
                let label = if label == "optional" && !is_scalar(&ty) {
                    ""
                } else {
                    label
                };
                let comment = prop
                    .get("description")
                    .and_then(Value::as_str)
                    .map(first_sentence)
                    .unwrap_or_default();
                fields.push(Field {
                    json_name: json_name.clone(),
                    label,
                    ty,
                    comment,
                });
            }
        }
        file.messages.insert(target.message.clone(), fields);
    }

    for (name, list) in &roots {
        if !list {
            continue;
        }
        let Repr::Message(target) = classify(name)? else {
            continue;
        };
        let file = files.get_mut(&target.file).context("root file")?;
        if target.file != "meta_v1" {
            file.imports
                .insert(format!("{PROTO_DIR_IMPORT}/meta_v1.proto"));
        }
        let list_fields = vec![
            Field {
                json_name: "apiVersion".into(),
                label: "optional",
                ty: "string".into(),
                comment: String::new(),
            },
            Field {
                json_name: "items".into(),
                label: "repeated",
                ty: format!("{}.{}", target.package, target.message),
                comment: String::new(),
            },
            Field {
                json_name: "kind".into(),
                label: "optional",
                ty: "string".into(),
                comment: String::new(),
            },
            Field {
                json_name: "metadata".into(),
                label: "",
                ty: "navarch.api.meta.v1.ListMeta".into(),
                comment: String::new(),
            },
        ];
        file.messages
            .insert(format!("{}List", target.message), list_fields);
    }

    let mut out = BTreeMap::new();
    for (stem, file) in files {
        let numbers = existing(&stem)
            .map(|s| existing_numbers(&s))
            .unwrap_or_default();
        let mut text = String::new();
        text.push_str("// Code generated by navarch-protogen from the Kubernetes OpenAPI schemas. DO NOT EDIT.\n");
        text.push_str("// Regenerate with `cargo run -p navarch-protogen`; field numbers of existing fields are kept.\n");
        text.push_str("// Field names are the Kubernetes JSON names; see proto/README.md for the JSON mapping.\n");
        text.push_str("syntax = \"proto3\";\n\n");
        text.push_str(&format!("package {};\n\n", file.package));
        for import in &file.imports {
            text.push_str(&format!("import \"{import}\";\n"));
        }
        if !file.imports.is_empty() {
            text.push('\n');
        }
        if stem == "meta_v1" {
            text.push_str(META_SPECIALS);
            text.push('\n');
        }
        for (message, fields) in &file.messages {
            let mut next = fields
                .iter()
                .filter_map(|f| numbers.get(&(message.clone(), f.json_name.clone())))
                .max()
                .copied()
                .unwrap_or(0)
                + 1;
            text.push_str(&format!("message {message} {{\n"));
            for field in fields {
                let number = match numbers.get(&(message.clone(), field.json_name.clone())) {
                    Some(n) => *n,
                    None => {
                        next += 1;
                        next - 1
                    }
                };
                if !field.comment.is_empty() {
                    text.push_str(&format!("  // {}\n", field.comment));
                }
                let label = if field.label.is_empty() {
                    String::new()
                } else {
                    format!("{} ", field.label)
                };
                text.push_str(&format!(
                    "  {label}{} {} = {number};\n",
                    field.ty, field.json_name
                ));
            }
            text.push_str("}\n\n");
        }
        out.insert(stem, text.trim_end().to_string() + "\n");
    }
    Ok(out)
}

fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "string" | "bytes" | "int32" | "int64" | "double" | "bool"
    )
}
