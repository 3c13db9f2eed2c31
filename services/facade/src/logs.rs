//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: `kubectl logs`. The gateway authorizes
//! `pods/log` and relays the container's log from its node; this streams it as plain text.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{StatusCode, header};
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;

use crate::gateway;
use crate::query::{parse_bool, parse_int};
use crate::resources::Call;

/// How long the first chunk is awaited before the headers go out anyway: errors the node
/// finds at once (no such container instance) still become a proper Status, while a
/// followed, still empty log starts streaming.
const FIRST_CHUNK_WAIT: Duration = Duration::from_secs(2);

/// PodLogOptions from the query string (`container`, `follow`, `previous`, `tailLines`,
/// `limitBytes`; `timestamps` and `sinceSeconds`/`sinceTime` are accepted, but the node
/// keeps no per-line times, so they do not filter).
pub fn options(raw: Option<&str>) -> Result<pb::PodLogsRequest, ApiError> {
    let mut r = pb::PodLogsRequest::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let v = v.as_ref();
        match k.as_ref() {
            "container" => r.container = v.to_string(),
            "follow" => r.follow = parse_bool("follow", v)?,
            "previous" => r.previous = parse_bool("previous", v)?,
            "tailLines" => r.tail_lines = Some(parse_int("tailLines", v)?),
            "limitBytes" => r.limit_bytes = Some(parse_int("limitBytes", v)?),
            "sinceSeconds" if parse_int("sinceSeconds", v)? < 1 => {
                return Err(ApiError::bad_request("sinceSeconds must be greater than 0"));
            }
            "timestamps" => {
                parse_bool("timestamps", v)?;
            }
            _ => {}
        }
    }
    Ok(r)
}

pub async fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.target;
    let mut req = options(call.parts.uri.query())?;
    req.namespace = t.namespace.clone();
    req.name = t.name.clone();
    let mut stream = call
        .gateway
        .clone()
        .pod_logs(req)
        .await
        .map_err(gateway::error)?
        .into_inner();
    let first = match tokio::time::timeout(FIRST_CHUNK_WAIT, stream.next()).await {
        Ok(Some(Err(status))) => return Err(gateway::error(status)),
        Ok(Some(Ok(chunk))) => Some(Bytes::from(chunk.data)),
        Ok(None) => None,
        Err(_) => Some(Bytes::new()),
    };
    let done = first.is_none();
    let rest = stream
        .take_while(|c| std::future::ready(c.is_ok()))
        .filter_map(|c| std::future::ready(c.ok().map(|c| Bytes::from(c.data))));
    let body = futures::stream::iter(first)
        .chain(rest.take_while(move |_| std::future::ready(!done)))
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_parse_like_the_apiserver() {
        let r = options(Some(
            "container=web&follow=true&tailLines=10&limitBytes=5&timestamps=true",
        ))
        .unwrap();
        assert_eq!(r.container, "web");
        assert!(r.follow && !r.previous);
        assert_eq!(r.tail_lines, Some(10));
        assert_eq!(r.limit_bytes, Some(5));
        assert!(options(Some("tailLines=x")).is_err());
        assert!(options(Some("sinceSeconds=0")).is_err());
        assert!(options(None).unwrap().container.is_empty());
    }
}
