//! Object metadata, labels, annotations and label selectors
//! (`k8s.io/apimachinery/pkg/api/validation/objectmeta.go`, `apis/meta/v1/validation`).

use std::collections::BTreeMap;

use super::names::{self, is_qualified_name, is_valid_label_value};
use super::{
    Errs, Path, forbidden, go_strings, immutable_str, invalid, invalid_str, nonnegative, q,
    required, s,
};
use crate::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

/// Total size of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Which name syntax a kind uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    DnsSubdomain,
    /// DNS-1123 label (Namespace, StatefulSet).
    DnsLabel,
    /// DNS-1035 label (Service).
    Dns1035Label,
    /// A path segment (RBAC roles and bindings: `system:controller:x` is fine).
    PathSegment,
}

impl NameRule {
    /// The problems with `name` (`prefix` for a generateName prefix).
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        match self {
            NameRule::DnsSubdomain => names::name_is_dns_subdomain(name, prefix),
            NameRule::DnsLabel => names::name_is_dns_label(name, prefix),
            NameRule::Dns1035Label => names::name_is_dns1035_label(name, prefix),
            NameRule::PathSegment => names::is_valid_path_segment_name(name, prefix),
        }
    }
}

const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// `ValidateObjectMeta` for create: name, generateName, namespace, labels, annotations,
/// owner references, finalizers. `create` lets an empty name pass when generateName is set
/// (the gateway generates the name).
pub(crate) fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
    create: bool,
    path: &Path,
    errs: &mut Errs,
) {
    let name = s(&meta.name);
    let generate_name = s(&meta.generate_name);
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(invalid_str(&path.child("generateName"), generate_name, msg));
        }
    }
    if name.is_empty() {
        if !create || generate_name.is_empty() {
            errs.push(required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in rule.check(name, false) {
            errs.push(invalid_str(&path.child("name"), name, msg));
        }
    }
    let namespace = s(&meta.namespace);
    if namespaced {
        if namespace.is_empty() {
            errs.push(required(&path.child("namespace"), ""));
        } else {
            for msg in names::name_is_dns_label(namespace, false) {
                errs.push(invalid_str(&path.child("namespace"), namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(generation) = meta.generation {
        nonnegative(errs, &path.child("generation"), generation);
    }
    validate_metadata_maps(meta, path, errs);
}

/// Labels, annotations, owner references and finalizers: checked on create and update.
fn validate_metadata_maps(meta: &ObjectMeta, path: &Path, errs: &mut Errs) {
    validate_labels(&meta.labels, &path.child("labels"), errs);
    validate_annotations(&meta.annotations, &path.child("annotations"), errs);
    validate_owner_references(&meta.owner_references, &path.child("ownerReferences"), errs);
    validate_finalizers(&meta.finalizers, &path.child("finalizers"), errs);
}

/// `ValidateObjectMetaUpdate`: identity fields are immutable; the rest is validated as on create.
pub(crate) fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    path: &Path,
    errs: &mut Errs,
) {
    if old
        .deletion_timestamp
        .as_deref()
        .is_some_and(|t| !t.is_empty())
    {
        let extra: Vec<String> = new
            .finalizers
            .iter()
            .filter(|f| !old.finalizers.contains(f))
            .cloned()
            .collect();
        if !extra.is_empty() {
            errs.push(forbidden(
                &path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_strings(&extra)
                ),
            ));
        }
    }
    immutable_str(errs, &path.child("name"), s(&new.name), s(&old.name));
    immutable_str(
        errs,
        &path.child("namespace"),
        s(&new.namespace),
        s(&old.namespace),
    );
    // An empty uid or creationTimestamp means "keep the stored one" (the gateway copies it).
    if !s(&new.uid).is_empty() {
        immutable_str(errs, &path.child("uid"), s(&new.uid), s(&old.uid));
    }
    if !s(&new.creation_timestamp).is_empty() {
        immutable_str(
            errs,
            &path.child("creationTimestamp"),
            s(&new.creation_timestamp),
            s(&old.creation_timestamp),
        );
    }
    validate_metadata_maps(new, path, errs);
}

/// `ValidateLabels`: qualified-name keys and label-syntax values, reported at the map's path.
pub(crate) fn validate_labels(labels: &BTreeMap<String, String>, path: &Path, errs: &mut Errs) {
    for (k, v) in labels {
        validate_label_name(k, path, errs);
        for msg in is_valid_label_value(v) {
            errs.push(invalid_str(path, v, msg));
        }
    }
}

/// `ValidateLabelName`: a qualified name.
pub(crate) fn validate_label_name(name: &str, path: &Path, errs: &mut Errs) {
    for msg in is_qualified_name(name) {
        errs.push(invalid_str(path, name, msg));
    }
}

/// `ValidateAnnotations`: case-insensitive qualified-name keys, total size ≤ 256 KiB.
pub(crate) fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    path: &Path,
    errs: &mut Errs,
) {
    let mut total = 0usize;
    for (k, v) in annotations {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid_str(path, k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(crate::FieldError::too_long(
            path.as_str(),
            TOTAL_ANNOTATION_SIZE_LIMIT,
        ));
    }
}

fn validate_owner_references(refs: &[OwnerReference], path: &Path, errs: &mut Errs) {
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = s(&r.api_version);
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        if version.is_empty() {
            errs.push(invalid_str(
                &path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if s(&r.kind).is_empty() {
            errs.push(invalid_str(
                &path.child("kind"),
                s(&r.kind),
                "kind must not be empty",
            ));
        }
        if s(&r.name).is_empty() {
            errs.push(invalid_str(
                &path.child("name"),
                s(&r.name),
                "name must not be empty",
            ));
        }
        if s(&r.uid).is_empty() {
            errs.push(invalid_str(
                &path.child("uid"),
                s(&r.uid),
                "uid must not be empty",
            ));
        }
        if api_version == "v1" && s(&r.kind) == "Event" {
            errs.push(invalid(
                path,
                format!("{}/{}", s(&r.kind), s(&r.name)),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let current = format!("{}/{}", s(&r.kind), s(&r.name));
            match &first_controller {
                Some(first) => errs.push(invalid(
                    path,
                    go_strings(&refs.iter().map(|r| format!("{}/{}", s(&r.kind), s(&r.name))).collect::<Vec<_>>()),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

fn validate_finalizers(finalizers: &[String], path: &Path, errs: &mut Errs) {
    for finalizer in finalizers {
        validate_finalizer_name(finalizer, path, errs);
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(invalid(
            path,
            go_strings(finalizers),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    for (i, finalizer) in finalizers.iter().enumerate() {
        validate_kube_finalizer_name(finalizer, &path.index(i), errs);
    }
}

fn validate_finalizer_name(name: &str, path: &Path, errs: &mut Errs) {
    for msg in is_qualified_name(name) {
        errs.push(invalid_str(path, name, msg));
    }
}

fn validate_kube_finalizer_name(name: &str, path: &Path, errs: &mut Errs) {
    if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        errs.push(invalid_str(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// A finalizer in `Namespace.spec.finalizers`: qualified and standard-or-prefixed.
pub(crate) fn validate_namespace_finalizer(name: &str, path: &Path, errs: &mut Errs) {
    validate_finalizer_name(name, path, errs);
    validate_kube_finalizer_name(name, path, errs);
}

/// `ValidateLabelSelector`: matchLabels and matchExpressions (In/NotIn need values,
/// Exists/DoesNotExist must not have any).
pub(crate) fn validate_label_selector(selector: &LabelSelector, path: &Path, errs: &mut Errs) {
    validate_labels(&selector.match_labels, &path.child("matchLabels"), errs);
    for (i, expr) in selector.match_expressions.iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let operator = s(&expr.operator);
        match operator {
            "In" | "NotIn" => {
                if expr.values.is_empty() {
                    errs.push(required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !expr.values.is_empty() {
                    errs.push(forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(invalid(
                &p.child("operator"),
                q(operator),
                "not a valid selector operator",
            )),
        }
        validate_label_name(s(&expr.key), &p.child("key"), errs);
        for (j, value) in expr.values.iter().enumerate() {
            for msg in is_valid_label_value(value) {
                errs.push(invalid_str(&p.child("values").index(j), value, msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, namespace: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        }
    }

    #[test]
    fn names_namespaces_and_generate_name() {
        let mut errs = Vec::new();
        validate_object_meta(
            &meta("web", "default"),
            true,
            NameRule::DnsSubdomain,
            true,
            &Path::new("metadata"),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");

        let mut errs = Vec::new();
        validate_object_meta(
            &meta("", ""),
            true,
            NameRule::DnsSubdomain,
            true,
            &Path::new("metadata"),
            &mut errs,
        );
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value"
            ]
        );

        let mut m = meta("", "default");
        m.generate_name = Some("web-".into());
        let mut errs = Vec::new();
        validate_object_meta(
            &m,
            true,
            NameRule::DnsSubdomain,
            true,
            &Path::new("metadata"),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");

        let mut errs = Vec::new();
        validate_object_meta(
            &meta("x", "default"),
            false,
            NameRule::DnsLabel,
            true,
            &Path::new("metadata"),
            &mut errs,
        );
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }

    #[test]
    fn labels_annotations_finalizers() {
        let mut m = meta("web", "default");
        m.labels.insert("bad key".into(), "ok".into());
        m.labels.insert("app".into(), "-bad".into());
        m.annotations
            .insert("x".into(), "y".repeat(TOTAL_ANNOTATION_SIZE_LIMIT));
        m.finalizers = vec![
            "custom".into(),
            "example.com/cleanup".into(),
            "kubernetes".into(),
        ];
        let mut errs = Vec::new();
        validate_object_meta(
            &m,
            true,
            NameRule::DnsSubdomain,
            true,
            &Path::new("metadata"),
            &mut errs,
        );
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.labels",
                "metadata.labels",
                "metadata.annotations",
                "metadata.finalizers[0]"
            ]
        );
        assert_eq!(
            errs[3].to_string(),
            "metadata.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
        );
    }

    #[test]
    fn update_keeps_identity() {
        let old = ObjectMeta {
            uid: Some("u1".into()),
            ..meta("web", "default")
        };
        let new = ObjectMeta {
            uid: Some("u2".into()),
            ..meta("web2", "default")
        };
        let mut errs = Vec::new();
        validate_object_meta_update(&new, &old, &Path::new("metadata"), &mut errs);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "metadata.name: Invalid value: \"web2\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable"
            ]
        );
    }
}
