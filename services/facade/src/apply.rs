//! `POST /apply`: the plain endpoint for users with only curl. The body is a multi-document
//! YAML (or JSON) file; every object in it is applied with server-side apply (field manager
//! `navarch-apply` unless `?fieldManager=` says otherwise, conflicts forced), in order, and
//! the answer lists what happened to each: `created`, `configured`, `unchanged`, or the error
//! Status. A later object is applied even when an earlier one failed (as `kubectl apply -f`
//! does); the HTTP code is 200 when every object applied, else that of the first failure.
//!
//! ```text
//! curl --cacert ca.crt -H "Authorization: Bearer $TOKEN" \
//!      -H 'Content-Type: application/yaml' --data-binary @app.yaml https://127.0.0.1:6443/apply
//! ```

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use navarch_api::gateway::v1 as pb;
use navarch_api::kinds::{self, KindInfo};
use navarch_api::{ApiError, FieldError, Reason};
use serde_json::{Value as Json, json};
use tonic::transport::Channel;

use crate::gateway::{self, Gateway};
use crate::query::Query;
use crate::response::{Responder, status_json};

/// The field manager of objects applied through `/apply`.
pub const FIELD_MANAGER: &str = "navarch-apply";

/// One object of the file and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub result: Result<&'static str, ApiError>,
}

impl Outcome {
    fn to_json(&self) -> Json {
        let mut v = json!({
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
        });
        if !self.namespace.is_empty() {
            v["namespace"] = json!(self.namespace);
        }
        match &self.result {
            Ok(action) => v["action"] = json!(action),
            Err(e) => {
                v["action"] = json!("failed");
                v["error"] = status_json(e);
            }
        }
        v
    }
}

/// The objects of a manifest file: documents, with `kind: List` expanded.
pub fn objects(text: &str) -> Result<Vec<Json>, ApiError> {
    let docs = navarch_api::codec::yaml_documents(text)
        .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?;
    let mut out = Vec::new();
    for doc in docs {
        let is_list = doc.get("kind").and_then(Json::as_str) == Some("List")
            || doc
                .get("kind")
                .and_then(Json::as_str)
                .is_some_and(|k| k.ends_with("List") && doc.get("items").is_some());
        if is_list {
            if let Some(items) = doc.get("items").and_then(Json::as_array) {
                out.extend(items.iter().cloned());
            }
        } else {
            out.push(doc);
        }
    }
    Ok(out)
}

/// Serves `POST /apply`.
pub async fn serve(channel: &Channel, parts: &Parts, body: Bytes, r: Responder) -> Response {
    let query = match Query::parse(parts.uri.query()) {
        Ok(q) => q,
        Err(e) => return r.error(&e),
    };
    let default_namespace = parts
        .uri
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "namespace")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "default".into());
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return r.error(&ApiError::bad_request("the request body is not UTF-8")),
    };
    let objects = match objects(text) {
        Ok(o) if o.is_empty() => {
            return r.error(&ApiError::bad_request(
                "the request body holds no objects: send one or more YAML documents",
            ));
        }
        Ok(o) => o,
        Err(e) => return r.error(&e),
    };
    let gw = gateway::for_request(channel, &parts.headers);
    let mut outcomes = Vec::with_capacity(objects.len());
    for obj in &objects {
        outcomes.push(apply_one(&gw, obj, &default_namespace, &query).await);
    }
    let code = outcomes
        .iter()
        .find_map(|o| o.result.as_ref().err())
        .map(|e| StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .unwrap_or(StatusCode::OK);
    let applied = outcomes.iter().filter(|o| o.result.is_ok()).count();
    tracing::info!(
        objects = outcomes.len(),
        applied,
        dry_run = !query.dry_run.is_empty(),
        "applied manifests through /apply"
    );
    let body = json!({
        "kind": "ApplyResult",
        "apiVersion": "navarch.io/v1",
        "results": outcomes.iter().map(Outcome::to_json).collect::<Vec<_>>(),
    });
    r.value(code, &body)
}

async fn apply_one(gw: &Gateway, obj: &Json, default_namespace: &str, q: &Query) -> Outcome {
    let api_version = obj
        .get("apiVersion")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let kind_name = obj
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let mut outcome = Outcome {
        api_version: api_version.clone(),
        kind: kind_name.clone(),
        namespace: String::new(),
        name: name.clone(),
        result: Ok("unchanged"),
    };
    let kind = match check(obj, &api_version, &kind_name, &name) {
        Ok(k) => k,
        Err(e) => {
            outcome.result = Err(e);
            return outcome;
        }
    };
    if kind.namespaced {
        outcome.namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Json::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(default_namespace)
            .to_string();
    }
    outcome.result = apply_object(gw, kind, &outcome.namespace, &name, obj, q).await;
    outcome
}

/// The served kind of a document, and that it names itself.
fn check(
    obj: &Json,
    api_version: &str,
    kind_name: &str,
    name: &str,
) -> Result<&'static KindInfo, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "every document must be an object with apiVersion, kind and metadata",
        ));
    }
    if api_version.is_empty() || kind_name.is_empty() {
        let mut causes = Vec::new();
        if api_version.is_empty() {
            causes.push(FieldError::required("apiVersion", "must be set"));
        }
        if kind_name.is_empty() {
            causes.push(FieldError::required("kind", "must be set"));
        }
        return Err(ApiError::invalid("", "Object", name, causes));
    }
    let kind = kinds::by_kind(api_version, kind_name).ok_or_else(|| {
        ApiError::new(
            Reason::NotFound,
            format!("no matches for kind {kind_name:?} in version {api_version:?}"),
        )
    })?;
    if name.is_empty() {
        return Err(ApiError::invalid(
            kind.group,
            kind.kind,
            "",
            vec![FieldError::required("metadata.name", "name is required")],
        ));
    }
    Ok(kind)
}

async fn apply_object(
    gw: &Gateway,
    kind: &'static KindInfo,
    namespace: &str,
    name: &str,
    obj: &Json,
    q: &Query,
) -> Result<&'static str, ApiError> {
    let before = match gw
        .clone()
        .get(pb::GetRequest {
            resource: gateway::resource(kind, ""),
            namespace: namespace.into(),
            name: name.into(),
            accept: "application/json".into(),
        })
        .await
    {
        Ok(resp) => Some(resource_version(resp.into_inner().object)),
        Err(s) => {
            let e = gateway::error(s);
            if e.reason != Reason::NotFound {
                return Err(e);
            }
            None
        }
    };
    let field_manager = if q.field_manager.is_empty() {
        FIELD_MANAGER.to_string()
    } else {
        q.field_manager.clone()
    };
    let patched = gw
        .clone()
        .patch(pb::PatchRequest {
            resource: gateway::resource(kind, ""),
            namespace: namespace.into(),
            name: name.into(),
            patch_type: "application/apply-patch+yaml".into(),
            patch: serde_json::to_vec(obj).unwrap_or_default(),
            options: Some(pb::WriteOptions {
                dry_run: q.dry_run.clone(),
                field_manager,
                field_validation: if q.field_validation.is_empty() {
                    "Strict".into()
                } else {
                    q.field_validation.clone()
                },
            }),
            force: true,
            accept: "application/json".into(),
        })
        .await
        .map_err(gateway::error)?
        .into_inner();
    let after = resource_version(patched.object);
    Ok(match before {
        None => "created",
        Some(rv) if rv == after => "unchanged",
        Some(_) => "configured",
    })
}

fn resource_version(obj: Option<pb::RawObject>) -> String {
    obj.and_then(|o| serde_json::from_slice::<Json>(&o.raw).ok())
        .and_then(|v| {
            v.pointer("/metadata/resourceVersion")
                .and_then(Json::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lists_become_objects() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n- {apiVersion: v1, kind: Secret, metadata: {name: c}}\n";
        let objs = objects(text).unwrap();
        let names: Vec<_> = objs
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn invalid_yaml_names_the_line() {
        let e = objects("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n").unwrap_err();
        assert_eq!(e.code(), 400);
        assert!(e.message.contains("line"), "{}", e.message);
    }

    #[test]
    fn documents_must_name_a_served_kind() {
        let e = check(&json!({"kind": "Widget"}), "example.com/v1", "Widget", "w").unwrap_err();
        assert_eq!(e.code(), 404);
        let e = check(&json!({}), "", "ConfigMap", "c").unwrap_err();
        assert_eq!(e.code(), 422);
        let e = check(&json!({}), "v1", "ConfigMap", "").unwrap_err();
        assert!(e.message.contains("metadata.name"), "{}", e.message);
        assert_eq!(
            check(&json!({}), "apps/v1", "Deployment", "d")
                .unwrap()
                .plural,
            "deployments"
        );
    }
}
