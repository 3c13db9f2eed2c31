//! The resource verbs: each HTTP request becomes one gateway call (two for the few answers
//! that need the object first), and the gateway's answer becomes the Kubernetes response.

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;
use navarch_api::kinds::KindInfo;
use serde_json::{Value as Json, json};

use crate::convert;
use crate::gateway::{self, Gateway};
use crate::negotiate::{self, Conversion};
use crate::query::{DeleteOptions, Query};
use crate::request::{self, AGENT_SUBRESOURCES, Resolved, ResourcePath, Verb};
use crate::response::{Responder, success_status, with_warnings};
use crate::watch;

const JSON: &str = "application/json";

/// Kinds whose delete answers with the deleted object rather than a Status, as their
/// kube-apiserver storage does (`ReturnDeletedObject: true`).
const RETURNS_DELETED_OBJECT: &[&str] = &["Pod", "Service", "ServiceAccount", "Namespace"];

/// Everything a resource handler needs from the request.
pub struct Call<'a> {
    pub parts: &'a Parts,
    pub query: Query,
    pub target: Resolved,
    pub responder: Responder,
    pub gateway: Gateway,
}

/// Serves one request on a resource path.
pub async fn serve(
    channel: &tonic::transport::Channel,
    parts: &Parts,
    body: Bytes,
    path: &ResourcePath,
) -> Response {
    let query = match Query::parse(parts.uri.query()) {
        Ok(q) => q,
        Err(e) => return Responder::PLAIN.error(&e),
    };
    let target = match request::resolve(path, &parts.method, query.watch) {
        Ok(t) => t,
        Err(e) => {
            return Responder::new(negotiate::Output::JSON, &parts.headers, query.pretty).error(&e);
        }
    };
    let reads = matches!(target.verb, Verb::Get | Verb::List | Verb::Watch);
    let accept = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let output = negotiate::negotiate(accept, reads, target.verb == Verb::Watch);
    let responder = Responder::new(output, &parts.headers, query.pretty);
    let call = Call {
        parts,
        gateway: gateway::for_request(channel, &parts.headers),
        query,
        target,
        responder,
    };
    let result = match call.target.verb {
        Verb::Get => get(&call).await,
        Verb::List => list(&call).await,
        Verb::Watch => watch::serve(&call).await,
        Verb::Create => create(&call, body).await,
        Verb::Update => update(&call, body).await,
        Verb::Patch => patch(&call, body).await,
        Verb::Delete => delete(&call, body).await,
        Verb::DeleteCollection => delete_collection(&call, body).await,
    };
    match result {
        Ok(resp) => resp,
        Err(e) => call.responder.error(&e),
    }
}

/// Subresources streamed from the node agent besides `log` (exec, attach, port-forward, proxy): not
/// served yet, so a clear 501 Status rather than a fake answer.
async fn agent_subresource(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.target;
    // The pod must exist (so `kubectl logs missing` is a NotFound as usual).
    call.gateway
        .clone()
        .get(pb::GetRequest {
            resource: gateway::resource(t.kind, ""),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            accept: JSON.into(),
        })
        .await
        .map_err(gateway::error)?;
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "{}/{} is not served yet: streaming it from the node agent is not implemented",
            t.kind.plural, t.subresource
        ),
        "reason": "NotImplemented",
        "details": {"name": t.name, "kind": t.kind.plural},
        "code": 501,
    });
    Ok(call
        .responder
        .json_only()
        .value(StatusCode::NOT_IMPLEMENTED, &status))
}

async fn get(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.target;
    if t.subresource == "log" {
        return crate::logs::serve(call).await;
    }
    if t.subresource == "exec" {
        return crate::exec::serve(call).await;
    }
    if AGENT_SUBRESOURCES.contains(&t.subresource.as_str()) {
        return agent_subresource(call).await;
    }
    if !matches!(t.subresource.as_str(), "" | "status" | "scale") {
        return Err(request::method_not_allowed("GET", &t.subresource));
    }
    let resp = call
        .gateway
        .clone()
        .get(pb::GetRequest {
            resource: gateway::resource(t.kind, &t.subresource),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            accept: JSON.into(),
        })
        .await
        .map_err(gateway::error)?
        .into_inner();
    let raw = object_bytes(resp.object)?;
    match (call.responder.output.conversion, t.subresource.as_str()) {
        (Conversion::None, _) | (_, "scale") => Ok(call.responder.json_bytes(StatusCode::OK, raw)),
        (conversion, _) => {
            let obj = parse(&raw)?;
            let converted = convert::single(t.kind, obj, conversion, &call.query)?;
            Ok(call.responder.value(StatusCode::OK, &converted))
        }
    }
}

/// The list request a list, watch or deletecollection names.
pub fn list_request(call: &Call<'_>) -> pb::ListRequest {
    let t = &call.target;
    let q = &call.query;
    pb::ListRequest {
        resource: gateway::resource(t.kind, ""),
        namespace: t.namespace.clone(),
        label_selector: q.label_selector.clone(),
        field_selector: q.field_selector.clone(),
        limit: q.limit,
        r#continue: q.continue_token.clone(),
        resource_version: q.resource_version.clone(),
        accept: JSON.into(),
        resource_version_match: q.resource_version_match.clone(),
    }
}

async fn list(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.target;
    let resp = call
        .gateway
        .clone()
        .list(list_request(call))
        .await
        .map_err(gateway::error)?
        .into_inner();
    let meta = list_meta(
        &resp.resource_version,
        &resp.r#continue,
        resp.remaining_item_count,
    );
    match call.responder.output.conversion {
        Conversion::None => {
            let body = list_bytes(t.kind, &meta, resp.items.iter().map(|o| o.raw.as_slice()));
            Ok(call.responder.json_bytes(StatusCode::OK, body))
        }
        conversion => {
            let items = resp
                .items
                .iter()
                .map(|o| parse(&o.raw))
                .collect::<Result<Vec<_>, _>>()?;
            let converted = convert::list(t.kind, items, meta, conversion, &call.query)?;
            Ok(call.responder.value(StatusCode::OK, &converted))
        }
    }
}

/// `metadata` of a list.
pub fn list_meta(resource_version: &str, continue_token: &str, remaining: Option<i64>) -> Json {
    let mut meta = serde_json::Map::new();
    meta.insert("resourceVersion".into(), json!(resource_version));
    if !continue_token.is_empty() {
        meta.insert("continue".into(), json!(continue_token));
    }
    if let Some(n) = remaining {
        meta.insert("remainingItemCount".into(), json!(n));
    }
    Json::Object(meta)
}

/// A `<Kind>List` from items already encoded as JSON, without re-parsing them.
pub fn list_bytes<'a>(
    kind: &KindInfo,
    meta: &Json,
    items: impl Iterator<Item = &'a [u8]>,
) -> Bytes {
    let head = format!(
        "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{},\"items\":[",
        json!(kind.api_version()),
        json!(format!("{}List", kind.kind)),
        meta
    );
    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(head.as_bytes());
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(trim_newline(item));
    }
    out.extend_from_slice(b"]}\n");
    Bytes::from(out)
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &b[..end]
}

fn object_bytes(obj: Option<pb::RawObject>) -> Result<Bytes, ApiError> {
    obj.map(|o| Bytes::from(o.raw))
        .ok_or_else(|| ApiError::internal("the gateway answered without an object"))
}

pub fn parse(raw: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(raw)
        .map_err(|e| ApiError::internal(format!("decoding the gateway's answer: {e}")))
}

fn write_options(q: &Query) -> Option<pb::WriteOptions> {
    Some(pb::WriteOptions {
        dry_run: q.dry_run.clone(),
        field_manager: q.field_manager.clone(),
        field_validation: q.field_validation.clone(),
    })
}

/// The request body as a gateway `RawObject` (JSON or YAML, by `Content-Type`).
fn body_object(call: &Call<'_>, body: Bytes) -> Result<pb::RawObject, ApiError> {
    let format = negotiate::body_format(
        call.parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let (content_type, raw) = negotiate::gateway_body(format, &body)?;
    Ok(pb::RawObject {
        api_version: String::new(),
        kind: String::new(),
        raw,
        content_type: content_type.into(),
    })
}

async fn create(call: &Call<'_>, body: Bytes) -> Result<Response, ApiError> {
    let t = &call.target;
    match t.subresource.as_str() {
        "" | "binding" | "eviction" | "token" => {}
        "exec" => return crate::exec::serve(call).await,
        s if AGENT_SUBRESOURCES.contains(&s) => return agent_subresource(call).await,
        other => return Err(request::method_not_allowed("POST", other)),
    }
    let object = body_object(call, body)?;
    let resp = call
        .gateway
        .clone()
        .create(pb::CreateRequest {
            resource: gateway::resource(t.kind, &t.subresource),
            namespace: t.namespace.clone(),
            object: Some(object),
            options: write_options(&call.query),
            accept: JSON.into(),
            name: t.name.clone(),
        })
        .await
        .map_err(gateway::error)?
        .into_inner();
    let raw = object_bytes(resp.object)?;
    Ok(with_warnings(
        call.responder.json_bytes(StatusCode::CREATED, raw),
        &resp.warnings,
    ))
}

async fn update(call: &Call<'_>, body: Bytes) -> Result<Response, ApiError> {
    let t = &call.target;
    let object = body_object(call, body)?;
    let sub = match t.subresource.as_str() {
        // Finalize writes spec.finalizers, which a plain update of a namespace does.
        "" | "finalize" => "",
        s @ ("status" | "scale") => s,
        other => return Err(request::method_not_allowed("PUT", other)),
    };
    let req = pb::UpdateRequest {
        resource: gateway::resource(t.kind, sub),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        object: Some(object),
        options: write_options(&call.query),
        accept: JSON.into(),
    };
    let mut gw = call.gateway.clone();
    let resp = if sub == "status" {
        gw.update_status(req).await
    } else {
        gw.update(req).await
    }
    .map_err(gateway::error)?
    .into_inner();
    let raw = object_bytes(resp.object)?;
    Ok(with_warnings(
        call.responder.json_bytes(StatusCode::OK, raw),
        &resp.warnings,
    ))
}

async fn patch(call: &Call<'_>, body: Bytes) -> Result<Response, ApiError> {
    let t = &call.target;
    if !matches!(t.subresource.as_str(), "" | "status" | "scale") {
        return Err(request::method_not_allowed("PATCH", &t.subresource));
    }
    let patch_type = negotiate::patch_type(
        call.parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    let resp = call
        .gateway
        .clone()
        .patch(pb::PatchRequest {
            resource: gateway::resource(t.kind, &t.subresource),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            patch_type: patch_type.into(),
            patch: body.to_vec(),
            options: write_options(&call.query),
            force: call.query.force,
            accept: JSON.into(),
        })
        .await
        .map_err(gateway::error)?
        .into_inner();
    let raw = object_bytes(resp.object)?;
    Ok(with_warnings(
        call.responder.json_bytes(StatusCode::OK, raw),
        &resp.warnings,
    ))
}

/// DeleteOptions from the query and an optional JSON, YAML or Kubernetes protobuf body.
fn delete_options(call: &Call<'_>, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let format = negotiate::body_format(
        call.parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .unwrap_or(negotiate::BodyFormat::Json);
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else if format == negotiate::BodyFormat::KubeProtobuf {
        Some(navarch_api::k8s_wire::decode(body)?.2)
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        Some(
            navarch_api::codec::yaml_to_json(text)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions body: {e}")))?,
        )
    };
    DeleteOptions::from_request(&call.query, parsed.as_ref())
}

fn delete_request(call: &Call<'_>, o: &DeleteOptions, name: &str) -> pb::DeleteRequest {
    let t = &call.target;
    pb::DeleteRequest {
        resource: gateway::resource(t.kind, ""),
        namespace: t.namespace.clone(),
        name: name.into(),
        grace_period_seconds: o.grace_period_seconds,
        propagation_policy: o.propagation_policy.clone(),
        precondition_uid: o.precondition_uid.clone(),
        precondition_resource_version: o.precondition_resource_version.clone(),
        dry_run: o.dry_run.clone(),
        accept: JSON.into(),
    }
}

async fn delete(call: &Call<'_>, body: Bytes) -> Result<Response, ApiError> {
    let t = &call.target;
    let opts = delete_options(call, &body)?;
    let resp = call
        .gateway
        .clone()
        .delete(delete_request(call, &opts, &t.name))
        .await
        .map_err(gateway::error)?
        .into_inner();
    let raw = object_bytes(resp.object)?;
    let obj = parse(&raw)?;
    let pending = obj.pointer("/metadata/deletionTimestamp").is_some();
    if pending || RETURNS_DELETED_OBJECT.contains(&t.kind.kind) {
        return Ok(call.responder.json_bytes(StatusCode::OK, raw));
    }
    let mut details = json!({"name": t.name, "kind": t.kind.plural});
    if !t.kind.group.is_empty() {
        details["group"] = json!(t.kind.group);
    }
    if let Some(uid) = obj.pointer("/metadata/uid") {
        details["uid"] = uid.clone();
    }
    Ok(call
        .responder
        .json_only()
        .value(StatusCode::OK, &success_status(details)))
}

async fn delete_collection(call: &Call<'_>, body: Bytes) -> Result<Response, ApiError> {
    let t = &call.target;
    let opts = delete_options(call, &body)?;
    let resp = call
        .gateway
        .clone()
        .delete_collection(pb::DeleteCollectionRequest {
            list: Some(list_request(call)),
            options: Some(delete_request(call, &opts, "")),
        })
        .await
        .map_err(gateway::error)?
        .into_inner();
    let body = list_bytes(
        t.kind,
        &list_meta("", "", None),
        resp.items.iter().map(|o| o.raw.as_slice()),
    );
    Ok(call.responder.json_only().json_bytes(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_built_from_encoded_items() {
        let kind = navarch_api::kinds::by_resource("apps", "v1", "deployments").unwrap();
        let body = list_bytes(
            kind,
            &list_meta("42", "next", None),
            [b"{\"a\":1}\n".as_slice(), b"{\"b\":2}".as_slice()].into_iter(),
        );
        let v: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "DeploymentList");
        assert_eq!(v["apiVersion"], "apps/v1");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["metadata"]["continue"], "next");
        assert_eq!(v["items"][1]["b"], 2);
        let empty = list_bytes(kind, &list_meta("1", "", None), std::iter::empty());
        let v: Json = serde_json::from_slice(&empty).unwrap();
        assert_eq!(v["items"], json!([]));
        assert!(v["metadata"].get("continue").is_none());
    }
}
