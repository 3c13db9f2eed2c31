//! Watch streams: `?watch=true` (or the legacy `/watch/` paths) as one JSON event per line,
//! `{"type":"ADDED","object":{…}}`, each sent as soon as the gateway delivers it (one HTTP/1.1
//! chunk or HTTP/2 DATA frame per event). ERROR events carry a Status (410 Expired when the
//! revision is gone); `timeoutSeconds` ends the stream cleanly, as kube-apiserver does.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{StatusCode, header};
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;
use serde_json::{Value as Json, json};

use crate::convert;
use crate::gateway;
use crate::negotiate::Conversion;
use crate::resources::{Call, parse};
use crate::response::status_json;
use crate::tables::WatchTables;

/// Adds `metadata.name=<name>` to a field selector (a watch on a named object).
pub fn with_name(field_selector: &str, name: &str) -> String {
    if name.is_empty() {
        return field_selector.to_string();
    }
    let term = format!("metadata.name={name}");
    if field_selector.trim().is_empty() {
        term
    } else {
        format!("{field_selector},{term}")
    }
}

/// Starts a watch and streams it.
pub async fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.target;
    let q = &call.query;
    let timeout = q.timeout_seconds.filter(|s| *s > 0);
    let req = pb::WatchRequest {
        resource: gateway::resource(t.kind, ""),
        namespace: t.namespace.clone(),
        label_selector: q.label_selector.clone(),
        field_selector: with_name(&q.field_selector, &t.name),
        resource_version: q.resource_version.clone(),
        allow_bookmarks: q.allow_watch_bookmarks,
        send_initial_events: q.send_initial_events,
        timeout_seconds: timeout.unwrap_or(0),
        accept: "application/json".into(),
    };
    let events = call
        .gateway
        .clone()
        .watch(req)
        .await
        .map_err(gateway::error)?
        .into_inner();
    let tables = match call.responder.output.conversion {
        Conversion::Table { v1beta1 } => Some(WatchTables::new(
            t.kind,
            convert::table_options(q, v1beta1)?,
        )),
        _ => None,
    };
    let encoder = EventEncoder {
        conversion: call.responder.output.conversion,
        tables,
    };
    let lines = encode_stream(events, encoder);
    let body: std::pin::Pin<
        Box<dyn Stream<Item = Result<Bytes, std::convert::Infallible>> + Send>,
    > = match timeout {
        Some(secs) => {
            Box::pin(lines.take_until(tokio::time::sleep(Duration::from_secs(secs as u64))))
        }
        None => Box::pin(lines),
    };
    tracing::debug!(
        resource = t.kind.plural,
        namespace = %t.namespace,
        resource_version = %q.resource_version,
        "watch started"
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

/// Turns gateway events into lines; a gRPC failure mid-stream becomes a last ERROR event.
fn encode_stream(
    events: tonic::Streaming<pb::WatchEvent>,
    encoder: EventEncoder,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    futures::stream::unfold(
        (events, encoder, false),
        |(mut events, mut encoder, done)| async move {
            if done {
                return None;
            }
            match events.next().await {
                Some(Ok(ev)) => {
                    let line = encoder.encode(&ev);
                    Some((Ok(line), (events, encoder, false)))
                }
                Some(Err(status)) => {
                    let e = gateway::error(status);
                    let line = event_line("ERROR", &status_json(&e));
                    Some((Ok(line), (events, encoder, true)))
                }
                None => None,
            }
        },
    )
}

/// Encodes events, converting objects to Tables or metadata when asked.
struct EventEncoder {
    conversion: Conversion,
    /// Tables carry their column definitions only in the first event.
    tables: Option<WatchTables>,
}

impl EventEncoder {
    fn encode(&mut self, ev: &pb::WatchEvent) -> Bytes {
        let raw = ev
            .object
            .as_ref()
            .map(|o| o.raw.as_slice())
            .unwrap_or(b"{}");
        if self.conversion == Conversion::None || ev.r#type == "ERROR" {
            return raw_event_line(&ev.r#type, raw);
        }
        let obj = match parse(raw) {
            Ok(o) => o,
            Err(e) => return event_line("ERROR", &status_json(&e)),
        };
        let converted = match (self.conversion, self.tables.as_mut()) {
            (Conversion::Metadata { v1beta1 }, _) => convert::partial_metadata(&obj, v1beta1),
            (Conversion::Table { .. }, Some(tables)) => {
                tables.event_object(&obj, std::time::SystemTime::now())
            }
            _ => obj,
        };
        event_line(&ev.r#type, &converted)
    }
}

/// `{"type":…,"object":…}\n` around an object already encoded.
fn raw_event_line(event_type: &str, raw: &[u8]) -> Bytes {
    let mut end = raw.len();
    while end > 0 && raw[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    let mut out = Vec::with_capacity(end + 32);
    out.extend_from_slice(b"{\"type\":");
    out.extend_from_slice(json!(event_type).to_string().as_bytes());
    out.extend_from_slice(b",\"object\":");
    out.extend_from_slice(&raw[..end]);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn event_line(event_type: &str, object: &Json) -> Bytes {
    let mut v =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_one_json_object_each() {
        let line = raw_event_line("ADDED", b"{\"kind\":\"Pod\"}\n");
        assert_eq!(
            &line[..],
            b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\"}}\n"
        );
        let v: Json = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["object"]["kind"], "Pod");
    }

    #[test]
    fn named_watches_select_the_name() {
        assert_eq!(with_name("", "web"), "metadata.name=web");
        assert_eq!(
            with_name("spec.nodeName=n1", "web"),
            "spec.nodeName=n1,metadata.name=web"
        );
        assert_eq!(with_name("a=b", ""), "a=b");
    }
}
