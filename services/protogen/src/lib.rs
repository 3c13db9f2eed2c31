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

/// Where the table of Kubernetes wire field numbers lives, relative to the repository root.
pub const WIRE_NUMBERS_FILE: &str = "proto/navarch/api/v1/k8s_wire_numbers.json";

/// Kubernetes message types whose wire form differs from our field's type, recorded in the
/// table next to the tag (our model holds them as RFC 3339 / Go duration strings).
const WIRE_SPECIALS: [&str; 3] = ["MicroTime", "Time", "Duration"];

/// One field of a k8s-pb struct: tag, the last segment of its Rust type, and for times and
/// durations the Kubernetes type.
#[derive(Debug)]
struct K8sField {
    tag: u32,
    type_name: String,
    special: Option<&'static str>,
}

/// Names compared case- and underscore-insensitively: prost's snake-casing of Kubernetes'
/// proto names (`clusterIPs` → `cluster_ips`, `uID` → `u_id`) is not heck's of our JSON names.
fn loose(name: &str) -> String {
    name.trim_start_matches("r#")
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The structs of one k8s-pb module: loose struct name → (struct name, loose field name → field).
type K8sStructs = BTreeMap<String, (String, BTreeMap<String, K8sField>)>;

/// Parses the prost-generated structs of one k8s-pb `mod.rs`.
fn parse_k8s_pb(source: &str) -> K8sStructs {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, BTreeMap<String, K8sField>)> = None;
    let mut text = String::new();
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            current = Some((name, BTreeMap::new()));
            text.clear();
            continue;
        }
        if line == "}" {
            if let Some((name, mut fields)) = current.take() {
                for chunk in text.split("#[prost(").skip(1) {
                    let Some((attribute, decl)) = chunk.split_once(")]") else {
                        continue;
                    };
                    let Some(tag) = attribute
                        .split("tag = \"")
                        .nth(1)
                        .and_then(|t| t.split('"').next())
                        .and_then(|t| t.parse().ok())
                    else {
                        continue;
                    };
                    let Some((field, ty)) = decl
                        .trim()
                        .strip_prefix("pub ")
                        .and_then(|d| d.split_once(':'))
                    else {
                        continue;
                    };
                    let type_name = ty
                        .trim()
                        .trim_end_matches(',')
                        .trim_end_matches('>')
                        .rsplit(['<', ':'])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let special = WIRE_SPECIALS
                        .iter()
                        .find(|s| type_name == **s && attribute.starts_with("message"))
                        .copied();
                    fields.insert(
                        loose(field.trim()),
                        K8sField {
                            tag,
                            type_name,
                            special,
                        },
                    );
                }
                out.insert(loose(&name), (name, fields));
            }
            continue;
        }
        if current.is_some() && !line.trim_start().starts_with("//") {
            text.push_str(line.trim());
            text.push(' ');
        }
    }
    out
}

/// Finds `field` in the k8s-pb struct `fields`, directly or inside an embedded Go struct
/// (`EphemeralContainer.ephemeralContainerCommon`, `Volume.volumeSource`, `Probe.handler`,
/// `ConfigMapEnvSource.localObjectReference`): the tag path and the special type.
fn find_k8s_field(
    structs: &K8sStructs,
    fields: &BTreeMap<String, K8sField>,
    field: &str,
    depth: usize,
) -> Option<(Vec<u32>, Option<&'static str>)> {
    if let Some(f) = fields.get(&loose(field)) {
        return Some((vec![f.tag], f.special));
    }
    // apiVersion and kind are never inside an embedded struct (they travel in the envelope).
    if depth == 0 || field == "apiVersion" || field == "kind" {
        return None;
    }
    for embedded in fields.values() {
        let Some((_, inner)) = structs.get(&loose(&embedded.type_name)) else {
            continue;
        };
        // An embedded struct is a message field named after its type (Probe's is `handler`).
        let name = embedded_name(fields, embedded);
        if loose(&embedded.type_name) != name
            && (name.as_str(), embedded.type_name.as_str()) != ("handler", "ProbeHandler")
        {
            continue;
        }
        if let Some((mut path, special)) = find_k8s_field(structs, inner, field, depth - 1) {
            path.insert(0, embedded.tag);
            return Some((path, special));
        }
    }
    None
}

/// The (loose) field name under which `field` sits in `fields`.
fn embedded_name(fields: &BTreeMap<String, K8sField>, field: &K8sField) -> String {
    fields
        .iter()
        .find(|(_, f)| f.tag == field.tag)
        .map(|(n, _)| n.clone())
        .unwrap_or_default()
}
/// The k8s-pb module directory (under its `src/`) of one of our packages.
fn k8s_pb_module(package: &str) -> Option<String> {
    let rest = package.strip_prefix("navarch.api.")?;
    let (group, version) = rest.split_once('.')?;
    Some(match group {
        "meta" => format!("apimachinery/pkg/apis/meta/{version}"),
        "version" => "apimachinery/pkg/version".to_string(),
        _ => format!("api/{group}/{version}"),
    })
}

/// The `src/` directory of the k8s-pb crate the workspace locks, found in `CARGO_HOME`'s
/// registry sources (cargo fetches it as a dependency of this crate).
pub fn k8s_pb_src(workspace_root: &std::path::Path) -> Result<std::path::PathBuf> {
    let lock =
        std::fs::read_to_string(workspace_root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"k8s-pb\""))
        .and_then(|p| p.split("version = \"").nth(1))
        .and_then(|v| v.split('"').next())
        .context("k8s-pb is not in Cargo.lock")?
        .to_string();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry/src");
    for index in std::fs::read_dir(&registry).with_context(|| registry.display().to_string())? {
        let candidate = index?.path().join(format!("k8s-pb-{version}/src"));
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    bail!(
        "k8s-pb {version} sources not found under {}",
        registry.display()
    )
}

/// Builds the table of Kubernetes wire field numbers for every message of the generated
/// protos (`stem` → text, as [`generate`] returns them), by matching prost snake names against
/// the k8s-pb sources in `k8s_pb_src`. Returns the file text and the fields with no match.
pub fn wire_numbers(
    protos: &BTreeMap<String, String>,
    k8s_pb_src: &std::path::Path,
) -> Result<(String, Vec<String>)> {
    let mut modules: BTreeMap<String, K8sStructs> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut unmatched = Vec::new();
    for text in protos.values() {
        let package = text
            .lines()
            .find_map(|l| l.strip_prefix("package "))
            .map(|p| p.trim_end_matches(';').to_string())
            .context("proto without package")?;
        let Some(module) = k8s_pb_module(&package) else {
            continue;
        };
        if !modules.contains_key(&module) {
            let path = k8s_pb_src.join(&module).join("mod.rs");
            let parsed = std::fs::read_to_string(&path)
                .map(|s| parse_k8s_pb(&s))
                .unwrap_or_default();
            modules.insert(module.clone(), parsed);
        }
        let structs = &modules[&module];
        let mut message: Option<(String, Vec<String>)> = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("message ") {
                message = Some((rest.trim_end_matches('{').trim().to_string(), Vec::new()));
                continue;
            }
            if line == "}" {
                let Some((name, fields)) = message.take() else {
                    continue;
                };
                if package == "navarch.api.meta.v1"
                    && matches!(
                        name.as_str(),
                        "Quantity" | "IntOrString" | "RawJson" | "StringList"
                    )
                {
                    continue;
                }
                let full = format!("{package}.{name}");
                let Some((k8s_name, k8s)) = structs.get(&loose(&name)) else {
                    unmatched.push(format!("{full} (no k8s_pb struct)"));
                    continue;
                };
                let mut entries = Vec::new();
                for field in fields {
                    match find_k8s_field(structs, k8s, &field, 2) {
                        Some((path, special)) => {
                            let path: Vec<String> = path.iter().map(u32::to_string).collect();
                            let suffix = special.map(|s| format!(":{s}")).unwrap_or_default();
                            entries.push(format!("{field:?}:\"{}{suffix}\"", path.join(".")));
                        }
                        // apiVersion and kind travel in the runtime.Unknown envelope.
                        None if field == "apiVersion" || field == "kind" => {}
                        None => unmatched.push(format!("{full}.{field}")),
                    }
                }
                let k8s_path = format!("k8s_pb::{}::{k8s_name}", module.replace('/', "::"));
                lines.push(format!(
                    "{:?}:{{\"k8s\":{k8s_path:?},\"fields\":{{{}}}}}",
                    full,
                    entries.join(",")
                ));
                continue;
            }
            if let Some(message) = message.as_mut()
                && !line.starts_with("//")
                && let Some((lhs, _)) = line.split_once(" = ")
                && let Some(name) = lhs.split_whitespace().last()
            {
                message.1.push(name.to_string());
            }
        }
    }
    lines.sort();
    let text = format!(
        "{{\n\"//\":\"Generated by navarch-protogen from k8s-pb: Kubernetes protobuf field numbers of our messages. DO NOT EDIT.\",\n{}\n}}\n",
        lines.join(",\n")
    );
    Ok((text, unmatched))
}
