//! The review kinds: requests answered in the returned object's status and never stored.
//! `SelfSubjectAccessReview` (`kubectl auth can-i`), `SubjectAccessReview` and
//! `LocalSubjectAccessReview` (for another user), `SelfSubjectRulesReview` (`kubectl auth
//! can-i --list`), `SelfSubjectReview` (`kubectl auth whoami`).

use navarch_api::authentication::v1 as authn;
use navarch_api::authorization::v1 as authz;
use navarch_api::errors::FieldError;
use navarch_api::{ApiError, Object};

/// An Invalid error on the review `kind` for `field`.
fn invalid(kind: &str, field: &str, detail: &str) -> ApiError {
    let group = if kind == "SelfSubjectReview" {
        "authentication.k8s.io"
    } else {
        "authorization.k8s.io"
    };
    ApiError::invalid(group, kind, "", vec![FieldError::required(field, detail)])
}

use crate::auth::{Authorizer, UserInfo};
use crate::rbac::Request;

/// Whether `user` may do what `resource`/`non_resource` describe; `namespace` overrides the
/// attributes' own for LocalSubjectAccessReview.
fn decide(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    resource: Option<&authz::ResourceAttributes>,
    non_resource: Option<&authz::NonResourceAttributes>,
) -> Result<authz::SubjectAccessReviewStatus, ApiError> {
    let allowed = match (resource, non_resource) {
        (Some(r), _) => {
            let sub = r.subresource.clone().unwrap_or_default();
            let base = r.resource.clone().unwrap_or_default();
            let resource = if sub.is_empty() {
                base
            } else {
                format!("{base}/{sub}")
            };
            authorizer.allows(
                user,
                &Request::Resource {
                    verb: r.verb.as_deref().unwrap_or_default(),
                    group: r.group.as_deref().unwrap_or_default(),
                    resource: &resource,
                    namespace: r.namespace.as_deref().unwrap_or_default(),
                    name: r.name.as_deref().unwrap_or_default(),
                },
            )
        }
        (None, Some(n)) => authorizer.allows(
            user,
            &Request::NonResource {
                verb: n.verb.as_deref().unwrap_or_default(),
                path: n.path.as_deref().unwrap_or_default(),
            },
        ),
        (None, None) => {
            return Err(invalid(
                "SubjectAccessReview",
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    Ok(authz::SubjectAccessReviewStatus {
        allowed: Some(allowed),
        denied: None,
        evaluation_error: None,
        reason: Some(if allowed {
            "RBAC: allowed".into()
        } else {
            String::new()
        }),
    })
}

fn subject(spec: &authz::SubjectAccessReviewSpec) -> Result<UserInfo, ApiError> {
    let name = spec.user.clone().unwrap_or_default();
    if name.is_empty() && spec.groups.is_empty() {
        return Err(invalid(
            "SubjectAccessReview",
            "spec.user",
            "at least one of user or group must be specified",
        ));
    }
    Ok(UserInfo {
        name,
        uid: spec.uid.clone().unwrap_or_default(),
        groups: spec.groups.clone(),
        extra: Default::default(),
    })
}

/// Answers a review `obj` (of a create-only kind) for the caller `user`.
pub fn answer(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    namespace: &str,
    obj: &Object,
) -> Result<Object, ApiError> {
    match obj.kind.kind {
        "SelfSubjectAccessReview" => {
            let mut r: authz::SelfSubjectAccessReview = obj.to_typed()?;
            let spec = r.spec.clone().unwrap_or_default();
            r.status = Some(decide(
                authorizer,
                user,
                spec.resource_attributes.as_ref(),
                spec.non_resource_attributes.as_ref(),
            )?);
            Object::from_typed(&r)
        }
        "SubjectAccessReview" => {
            let mut r: authz::SubjectAccessReview = obj.to_typed()?;
            let spec = r.spec.clone().unwrap_or_default();
            r.status = Some(decide(
                authorizer,
                &subject(&spec)?,
                spec.resource_attributes.as_ref(),
                spec.non_resource_attributes.as_ref(),
            )?);
            Object::from_typed(&r)
        }
        "LocalSubjectAccessReview" => {
            let mut r: authz::LocalSubjectAccessReview = obj.to_typed()?;
            let spec = r.spec.clone().unwrap_or_default();
            let attrs = spec.resource_attributes.as_ref().ok_or_else(|| {
                invalid(
                    "LocalSubjectAccessReview",
                    "spec.resourceAttributes",
                    "resourceAttributes are required in a LocalSubjectAccessReview",
                )
            })?;
            if attrs.namespace.as_deref().unwrap_or_default() != namespace {
                return Err(invalid(
                    "LocalSubjectAccessReview",
                    "spec.resourceAttributes.namespace",
                    "must match metadata.namespace",
                ));
            }
            r.status = Some(decide(authorizer, &subject(&spec)?, Some(attrs), None)?);
            Object::from_typed(&r)
        }
        "SelfSubjectRulesReview" => {
            let mut r: authz::SelfSubjectRulesReview = obj.to_typed()?;
            let ns = r
                .spec
                .as_ref()
                .and_then(|s| s.namespace.clone())
                .unwrap_or_default();
            let (rules, complete) = authorizer.rules(user, &ns);
            let mut status = authz::SubjectRulesReviewStatus {
                incomplete: Some(!complete),
                ..Default::default()
            };
            for rule in rules {
                if rule.non_resource_ur_ls.is_empty() {
                    status.resource_rules.push(authz::ResourceRule {
                        api_groups: rule.api_groups,
                        resource_names: rule.resource_names,
                        resources: rule.resources,
                        verbs: rule.verbs,
                    });
                } else {
                    status.non_resource_rules.push(authz::NonResourceRule {
                        non_resource_ur_ls: rule.non_resource_ur_ls,
                        verbs: rule.verbs,
                    });
                }
            }
            r.status = Some(status);
            Object::from_typed(&r)
        }
        "SelfSubjectReview" => {
            let mut r: authn::SelfSubjectReview = obj.to_typed()?;
            r.status = Some(authn::SelfSubjectReviewStatus {
                user_info: Some(authn::UserInfo {
                    username: Some(user.name.clone()),
                    uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                    groups: user.groups.clone(),
                    extra: user
                        .extra
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                navarch_api::meta::v1::StringList { items: v.clone() },
                            )
                        })
                        .collect(),
                }),
            });
            Object::from_typed(&r)
        }
        other => Err(ApiError::method_not_allowed(format!(
            "{other} is not a review kind"
        ))),
    }
}
