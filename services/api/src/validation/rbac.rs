//! RBAC: Roles, ClusterRoles and their bindings (`pkg/apis/rbac/validation`).

use super::meta::{NameRule, validate_label_selector};
use super::names::{is_valid_path_segment_name, name_is_dns_subdomain};
use super::{Errs, Path, each, invalid, not_supported, q, required, s, validate_meta};
use crate::FieldError;
use crate::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Validates a Role.
pub fn validate_role(role: &Role, old: Option<&Role>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &role.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::PathSegment,
        &mut errs,
    );
    for (i, rule) in role.rules.iter().enumerate() {
        validate_policy_rule(rule, true, &Path::new("rules").index(i), &mut errs);
    }
    errs
}

/// Validates a ClusterRole, including its aggregation rule.
pub fn validate_cluster_role(role: &ClusterRole, old: Option<&ClusterRole>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &role.metadata,
        old.map(|o| &o.metadata),
        false,
        NameRule::PathSegment,
        &mut errs,
    );
    for (i, rule) in role.rules.iter().enumerate() {
        validate_policy_rule(rule, false, &Path::new("rules").index(i), &mut errs);
    }
    if let Some(aggregation) = &role.aggregation_rule {
        let path = Path::new("aggregationRule").child("clusterRoleSelectors");
        if aggregation.cluster_role_selectors.is_empty() {
            errs.push(required(
                &path,
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        for (i, selector) in aggregation.cluster_role_selectors.iter().enumerate() {
            validate_label_selector(selector, &path.index(i), &mut errs);
        }
    }
    errs
}

/// `ValidatePolicyRule`.
fn validate_policy_rule(rule: &PolicyRule, namespaced: bool, path: &Path, errs: &mut Errs) {
    if rule.verbs.is_empty() {
        errs.push(required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = || super::go_strings(&rule.non_resource_ur_ls);
    if !rule.non_resource_ur_ls.is_empty() {
        if namespaced {
            errs.push(invalid(
                &path.child("nonResourceURLs"),
                urls(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !rule.api_groups.is_empty()
            || !rule.resources.is_empty()
            || !rule.resource_names.is_empty()
        {
            errs.push(invalid(
                &path.child("nonResourceURLs"),
                urls(),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if rule.api_groups.is_empty() {
        errs.push(required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if rule.resources.is_empty() {
        errs.push(required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

/// Validates a RoleBinding; its roleRef never changes.
pub fn validate_role_binding(binding: &RoleBinding, old: Option<&RoleBinding>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &binding.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::PathSegment,
        &mut errs,
    );
    validate_binding(&binding.role_ref, &binding.subjects, true, &mut errs);
    if let Some(old) = old {
        role_ref_immutable(&binding.role_ref, &old.role_ref, &mut errs);
    }
    errs
}

/// Validates a ClusterRoleBinding; its roleRef never changes.
pub fn validate_cluster_role_binding(
    binding: &ClusterRoleBinding,
    old: Option<&ClusterRoleBinding>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &binding.metadata,
        old.map(|o| &o.metadata),
        false,
        NameRule::PathSegment,
        &mut errs,
    );
    validate_binding(&binding.role_ref, &binding.subjects, false, &mut errs);
    if let Some(old) = old {
        role_ref_immutable(&binding.role_ref, &old.role_ref, &mut errs);
    }
    errs
}

fn role_ref_immutable(new: &Option<RoleRef>, old: &Option<RoleRef>, errs: &mut Errs) {
    let (new, old) = (
        new.clone().unwrap_or_default(),
        old.clone().unwrap_or_default(),
    );
    if new != old {
        errs.push(invalid(
            &Path::new("roleRef"),
            format!(
                "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                q(s(&new.api_group)),
                q(s(&new.kind)),
                q(s(&new.name))
            ),
            "cannot change roleRef",
        ));
    }
}

fn validate_binding(
    role_ref: &Option<RoleRef>,
    subjects: &[Subject],
    namespaced: bool,
    errs: &mut Errs,
) {
    let role_ref = role_ref.clone().unwrap_or_default();
    let path = Path::new("roleRef");
    let group = s(&role_ref.api_group);
    if group != RBAC_GROUP {
        errs.push(not_supported(&path.child("apiGroup"), group, &[RBAC_GROUP]));
    }
    let kind = s(&role_ref.kind);
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(not_supported(&path.child("kind"), kind, kinds));
    }
    let name = s(&role_ref.name);
    if name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else {
        each(
            errs,
            &path.child("name"),
            name,
            is_valid_path_segment_name(name, false),
        );
    }
    for (i, subject) in subjects.iter().enumerate() {
        validate_subject(subject, namespaced, &Path::new("subjects").index(i), errs);
    }
}

/// `ValidateRoleBindingSubject`.
fn validate_subject(subject: &Subject, namespaced: bool, path: &Path, errs: &mut Errs) {
    let name = s(&subject.name);
    if name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    }
    let group = s(&subject.api_group);
    match s(&subject.kind) {
        "ServiceAccount" => {
            if !name.is_empty() {
                each(
                    errs,
                    &path.child("name"),
                    name,
                    name_is_dns_subdomain(name, false),
                );
            }
            if !group.is_empty() {
                errs.push(not_supported(&path.child("apiGroup"), group, &[""]));
            }
            if !namespaced && s(&subject.namespace).is_empty() {
                errs.push(required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errs.push(not_supported(&path.child("apiGroup"), group, &[RBAC_GROUP]));
            }
        }
        other => errs.push(not_supported(
            &path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}
