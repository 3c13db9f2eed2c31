//! Subresources that are not plain object writes: `scale`, `binding`, `eviction`.

use navarch_api::codec::{self, FieldValidation};
use navarch_api::core::v1::{Binding, Pod, PodCondition};
use navarch_api::kinds::KindInfo;
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, FieldError, Object, Reason};
use serde_json::{Value as Json, json};

use crate::registry::{DeleteOptions, Registry, WriteOptions};

/// Decodes a body of a message that is not a stored kind (Binding, Eviction, Scale).
pub fn decode_body(message: &str, raw: &[u8], content_type: &str) -> Result<Json, ApiError> {
    let desc = codec::pool()
        .get_message_by_name(message)
        .ok_or_else(|| ApiError::internal(format!("{message} is not compiled in")))?;
    match content_type {
        "" | navarch_api::object::content_type::PROTOBUF => {
            let m = prost_reflect::DynamicMessage::decode(desc, raw)
                .map_err(|e| ApiError::bad_request(format!("invalid protobuf: {e}")))?;
            Ok(codec::to_json(&m))
        }
        ct if ct.starts_with("application/json") => {
            let json: Json = serde_json::from_slice(raw)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
            check(&desc, &json)?;
            Ok(json)
        }
        ct if ct.starts_with("application/yaml") => {
            let text =
                std::str::from_utf8(raw).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
            let json = codec::yaml_to_json(text)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?;
            check(&desc, &json)?;
            Ok(json)
        }
        other => Err(ApiError::new(
            Reason::UnsupportedMediaType,
            format!("the content type {other:?} is not supported"),
        )),
    }
}

fn check(desc: &prost_reflect::MessageDescriptor, json: &Json) -> Result<(), ApiError> {
    codec::from_json(desc, json, FieldValidation::Ignore)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Encodes a non-kind message (Scale, Status) from its JSON form.
pub fn encode_body(message: &str, json: &Json, content_type: &str) -> Result<Vec<u8>, ApiError> {
    match content_type {
        "" | navarch_api::object::content_type::PROTOBUF => {
            use prost::Message as _;
            let desc = codec::pool()
                .get_message_by_name(message)
                .ok_or_else(|| ApiError::internal(format!("{message} is not compiled in")))?;
            let m = codec::from_json(&desc, json, FieldValidation::Ignore)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(m.message.encode_to_vec())
        }
        ct if ct.starts_with("application/yaml") => serde_yaml::to_string(json)
            .map(String::into_bytes)
            .map_err(|e| ApiError::internal(e.to_string())),
        _ => serde_json::to_vec(json).map_err(|e| ApiError::internal(e.to_string())),
    }
}

/// The autoscaling/v1 Scale of a Deployment, ReplicaSet or StatefulSet.
pub fn scale_of(obj: &Object) -> Json {
    let o = obj.to_json();
    let meta = &o["metadata"];
    let selector = o
        .pointer("/spec/selector")
        .map(selector_string)
        .unwrap_or_default();
    let mut status =
        json!({"replicas": o.pointer("/status/replicas").and_then(Json::as_i64).unwrap_or(0)});
    if !selector.is_empty() {
        status["selector"] = Json::String(selector);
    }
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": o.pointer("/spec/replicas").and_then(Json::as_i64).unwrap_or(0)},
        "status": status,
    })
}

/// A `meta.v1.LabelSelector` in its string form (`app=web,tier in (a,b)`).
fn selector_string(sel: &Json) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Json::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Json::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or_default() {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// Writes a Scale's `spec.replicas` into the object.
pub async fn update_scale(
    registry: &Registry,
    kind: &'static KindInfo,
    namespace: &str,
    name: &str,
    scale: &Json,
    opts: &WriteOptions,
) -> Result<Json, ApiError> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Json::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let expected_rv = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let current = registry.get(kind, namespace, name).await?;
    let mut json = current.to_json();
    if !expected_rv.is_empty() && json["metadata"]["resourceVersion"] != Json::String(expected_rv) {
        return Err(ApiError::conflict(
            &kind.group_resource(),
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    json["spec"]["replicas"] = json!(replicas);
    let (obj, _) = Object::from_json(kind, &json, FieldValidation::Ignore)?;
    let updated = registry
        .update(kind, namespace, name, obj, opts, false)
        .await?;
    Ok(scale_of(&updated))
}

/// A subresource body decoded into its generated type: protobuf directly (the hot paths),
/// JSON and YAML through [`decode_body`]'s schema check.
pub fn decode_typed_body<T: prost::Message + Default + prost::Name>(
    raw: &[u8],
    content_type: &str,
) -> Result<T, ApiError> {
    match content_type {
        "" | navarch_api::object::content_type::PROTOBUF => {
            T::decode(raw).map_err(|e| ApiError::bad_request(format!("invalid protobuf: {e}")))
        }
        _ => {
            let json = decode_body(&T::full_name(), raw, content_type)?;
            codec::decode_json::<T>(&json, FieldValidation::Ignore)
                .map(|(typed, _)| typed)
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

/// `pods/binding`: assigns a pod to a node, failing if it is already bound.
pub async fn bind(
    registry: &Registry,
    pods: &'static KindInfo,
    namespace: &str,
    name: &str,
    binding: &Binding,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let target = binding
        .target
        .as_ref()
        .and_then(|t| t.name.as_deref())
        .unwrap_or_default();
    if target.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![FieldError::required("target.name", "")],
        ));
    }
    let pod_name = binding
        .metadata
        .as_ref()
        .and_then(|m| m.name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(name)
        .to_string();
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    registry
        .guaranteed_update(
            pods,
            namespace,
            &pod_name,
            opts.dry_run,
            |typed: &mut Pod| {
                // Typed, not dynamic: binding is the scheduler's hot path.
                let spec = typed.spec.get_or_insert_with(Default::default);
                if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
                    return Err(ApiError::conflict(
                        "pods/binding",
                        &pod_name,
                        &format!("pod {pod_name} is already assigned to node \"{node}\""),
                    ));
                }
                if typed
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.deletion_timestamp.is_some())
                {
                    return Err(ApiError::conflict(
                        "pods/binding",
                        &pod_name,
                        &format!("pod {pod_name} is being deleted, cannot be assigned to a host"),
                    ));
                }
                spec.node_name = Some(target.to_string());
                // The PodScheduled condition, as Kubernetes' binding sets it.
                let status = typed.status.get_or_insert_with(Default::default);
                status
                    .conditions
                    .retain(|c| c.r#type.as_deref() != Some("PodScheduled"));
                status.conditions.push(PodCondition {
                    r#type: Some("PodScheduled".into()),
                    status: Some("True".into()),
                    last_transition_time: Some(now.clone()),
                    ..Default::default()
                });
                Ok(())
            },
        )
        .await?;
    Ok(())
}

/// `pods/eviction`: deletes the pod with the eviction's delete options.
pub async fn evict(
    registry: &Registry,
    pods: &'static KindInfo,
    namespace: &str,
    name: &str,
    eviction: &Json,
    dry_run: bool,
) -> Result<Json, ApiError> {
    let opts = eviction.get("deleteOptions").cloned().unwrap_or(Json::Null);
    let delete = DeleteOptions {
        grace_period_seconds: opts.get("gracePeriodSeconds").and_then(Json::as_i64),
        propagation_policy: opts
            .get("propagationPolicy")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        precondition_uid: opts
            .pointer("/preconditions/uid")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        precondition_resource_version: opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        dry_run,
    };
    registry.delete(pods, namespace, name, &delete).await?;
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// An empty object carrying only a resourceVersion (watch bookmarks).
pub fn bookmark(kind: &'static KindInfo, revision: i64, initial_events_end: bool) -> Object {
    let mut obj = Object::new(kind);
    obj.set_type_meta();
    let mut meta = ObjectMeta {
        resource_version: Some(revision.to_string()),
        ..Default::default()
    };
    if initial_events_end {
        meta.annotations
            .insert("k8s.io/initial-events-end".into(), "true".into());
    }
    obj.set_meta(&meta);
    obj
}
