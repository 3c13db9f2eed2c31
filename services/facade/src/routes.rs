//! The router: discovery, OpenAPI, health, version, the `/apply` endpoint and every resource
//! path, with the body limit and request logging/metrics around them.

use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use navarch_api::gateway::v1 as pb;
use navarch_api::{ApiError, Reason};
use opentelemetry::KeyValue as Attr;
use opentelemetry::metrics::{Counter, Histogram};
use serde_json::Value as Json;
use tonic::transport::Channel;

use crate::negotiate;
use crate::openapi::{self, OpenApiAnswer};
use crate::request::{self, ApiPath};
use crate::response::Responder;
use crate::{MAX_BODY_BYTES, apply, discovery, gateway, resources};

/// What every handler shares.
pub struct AppState {
    pub gateway: Channel,
    metrics: FacadeMetrics,
}

impl AppState {
    pub fn new(gateway: Channel) -> Self {
        Self {
            gateway,
            metrics: FacadeMetrics::new(),
        }
    }
}

/// RED metrics of the HTTP API.
struct FacadeMetrics {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

impl FacadeMetrics {
    fn new() -> Self {
        let meter = navarch_telemetry::meter("navarch-facade");
        Self {
            requests: meter
                .u64_counter("navarch.facade.requests")
                .with_description("HTTP API requests by method and code")
                .build(),
            duration: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.facade.request.duration",
                "HTTP API request latency (until the response head; watches excluded)",
            ),
        }
    }
}

/// The facade's router.
pub fn router(state: Arc<AppState>, health: navarch_telemetry::Health) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/apply", post(apply_manifests))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v3/{*path}", get(openapi_v3_document))
        .route("/metrics", get(metrics))
        .merge(navarch_telemetry::health_router(health))
        .fallback(api)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Logs and counts every request.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let watch = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "watch=true" || p == "watch=1" || p == "watch")
    }) || path.contains("/watch/");
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let span = request_span(&method, &path, req.headers());
    let resp = next.run(req).instrument(span.clone()).await;
    let code = resp.status().as_u16();
    span.record("http.response.status_code", code);
    let elapsed = started.elapsed();
    let attrs = [
        Attr::new("method", method.to_string()),
        Attr::new("code", i64::from(code)),
    ];
    state.metrics.requests.add(1, &attrs);
    if !watch {
        state
            .metrics
            .duration
            .record(elapsed.as_secs_f64(), &attrs[..1]);
    }
    // 501 is a subresource not served yet, not a failure of the server.
    if code >= 500 && code != 501 {
        tracing::warn!(%method, path, code, elapsed_ms = elapsed.as_millis() as u64, user_agent = agent, "API request failed");
    } else {
        tracing::debug!(%method, path, code, elapsed_ms = elapsed.as_millis() as u64, user_agent = agent, "API request");
    }
    resp
}

/// The span of one HTTP request, continuing the caller's trace (W3C `traceparent`); none
/// while traces are not exported.
fn request_span(method: &axum::http::Method, path: &str, headers: &HeaderMap) -> tracing::Span {
    if !navarch_telemetry::traces::exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        component = "facade",
        http.request.method = %method,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
    );
    navarch_telemetry::traces::set_parent(&span, navarch_telemetry::traces::extract_http(headers));
    span
}

async fn method_not_allowed(req: Request) -> Response {
    Responder::PLAIN.error(&request::method_not_allowed(
        req.method().as_str(),
        req.uri().path(),
    ))
}

fn responder(headers: &HeaderMap, query: Option<&str>) -> Responder {
    let pretty = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "pretty")
            .map(|(_, v)| matches!(v.as_ref(), "1" | "t" | "T" | "true" | "True" | "TRUE" | ""))
    });
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    Responder::new(negotiate::negotiate(accept, false, false), headers, pretty)
}

async fn version(headers: HeaderMap) -> Response {
    responder(&headers, None).value(StatusCode::OK, &discovery::version_info())
}

/// The facade's readiness: the gateway answers (any gRPC answer, even "unauthenticated",
/// means it is serving).
pub fn add_health_checks(health: &navarch_telemetry::Health, state: &Arc<AppState>) {
    let channel = state.gateway.clone();
    health.add(navarch_telemetry::Probe::Ready, "gateway", move || {
        let mut gw = gateway::for_request(&channel, &HeaderMap::new());
        async move {
            match gw
                .get(pb::GetRequest {
                    resource: None,
                    ..Default::default()
                })
                .await
            {
                Ok(_) => Ok(()),
                Err(s) if !matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
                    Ok(())
                }
                Err(s) => Err(s.message().to_string()),
            }
        }
    });
}

/// `/metrics` through the API (as kube-apiserver serves it): the process's metrics in the
/// Prometheus text format, for authorized callers only.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize_read(&state.gateway, &headers).await {
        return Responder::PLAIN.error(&e);
    }
    (
        [(
            header::CONTENT_TYPE,
            navarch_telemetry::METRICS_CONTENT_TYPE,
        )],
        navarch_telemetry::gather_text(),
    )
        .into_response()
}

/// Refuses callers the gateway does not authenticate, and those RBAC does not allow `get` on
/// the non-resource path `path` (asked as a SelfSubjectAccessReview, as kube-apiserver
/// authorizes `/metrics`).
async fn authorize_read(channel: &Channel, headers: &HeaderMap) -> Result<(), ApiError> {
    let path = "/metrics";
    let kind =
        navarch_api::kinds::by_resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
            .expect("served");
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": path, "verb": "get"}},
    });
    let mut gw = gateway::for_request(channel, headers);
    let answer = gw
        .create(pb::CreateRequest {
            resource: gateway::resource(kind, ""),
            object: Some(pb::RawObject {
                api_version: "authorization.k8s.io/v1".into(),
                kind: "SelfSubjectAccessReview".into(),
                raw: serde_json::to_vec(&review).unwrap_or_default(),
                content_type: "application/json".into(),
            }),
            accept: "application/json".into(),
            ..Default::default()
        })
        .await
        .map_err(gateway::error)
        .map_err(|e| match e.reason {
            // A user who may not even ask is not allowed either.
            Reason::Forbidden => forbidden_path(path),
            _ => e,
        })?
        .into_inner();
    let body: Json = answer
        .object
        .map(|o| serde_json::from_slice(&o.raw).unwrap_or_default())
        .unwrap_or_default();
    if body["status"]["allowed"] == Json::Bool(true) {
        Ok(())
    } else {
        Err(forbidden_path(path))
    }
}

fn forbidden_path(path: &str) -> ApiError {
    ApiError::forbidden(format!("forbidden: User cannot get path \"{path}\""))
}

/// A cheap authenticated read: `get namespaces/default` with the caller's credentials.
async fn probe_namespace(channel: &Channel, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut gw = gateway::for_request(channel, headers);
    gw.get(pb::GetRequest {
        resource: gateway::resource(
            navarch_api::kinds::by_resource("", "v1", "namespaces").expect("served"),
            "",
        ),
        namespace: String::new(),
        name: "default".into(),
        accept: "application/json".into(),
    })
    .await
    .map(|_| ())
    .map_err(gateway::error)
}

/// Discovery and OpenAPI documents are for authenticated users only (kube-apiserver's
/// `system:discovery`): the caller's credentials are checked by the gateway with a cheap read.
/// Only an authentication failure (or an unreachable gateway) refuses the request; a user that
/// may not read namespaces may still discover the API.
async fn authenticate(channel: &Channel, headers: &HeaderMap) -> Result<(), ApiError> {
    match probe_namespace(channel, headers).await {
        Ok(()) => Ok(()),
        Err(e) => match e.reason {
            Reason::Unauthorized | Reason::ServiceUnavailable | Reason::InternalError => Err(e),
            _ => Ok(()),
        },
    }
}

/// A JSON document for an authenticated caller.
async fn document(
    state: &AppState,
    parts: &Parts,
    doc: impl FnOnce() -> Result<Json, ApiError>,
) -> Response {
    let r = responder(&parts.headers, parts.uri.query());
    if let Err(e) = authenticate(&state.gateway, &parts.headers).await {
        return r.error(&e);
    }
    match doc() {
        Ok(v) => r.value(StatusCode::OK, &v),
        Err(e) => r.error(&e),
    }
}

async fn openapi_v2(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let answer = openapi::openapi_v2_answer(accept);
    openapi_answer(&state, &parts, answer).await
}

async fn openapi_v3_index(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    document(&state, &parts, || Ok(openapi::openapi_v3_index())).await
}

async fn openapi_v3_document(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let path = parts.uri.path().trim_start_matches("/openapi/v3/");
    let hash = parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "hash")
            .map(|(_, v)| v.into_owned())
    });
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let answer = openapi::openapi_v3_answer(path, hash.as_deref(), accept);
    openapi_answer(&state, &parts, answer).await
}

/// Writes an OpenAPI answer: the document's bytes as they are (ETag, 304 on a match, gzip when
/// large), a redirect to the current hash, or a Status.
async fn openapi_answer(state: &AppState, parts: &Parts, answer: OpenApiAnswer) -> Response {
    let r = responder(&parts.headers, None);
    if let Err(e) = authenticate(&state.gateway, &parts.headers).await {
        return r.error(&e);
    }
    match answer {
        OpenApiAnswer::Document {
            content_type,
            body,
            etag,
            immutable,
        } => {
            let etag = format!("\"{etag}\"");
            let matches = parts
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
            let mut resp = if matches {
                let mut resp = Response::new(Body::empty());
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                resp
            } else {
                let mut resp = Responder { pretty: false, ..r }
                    .bytes(StatusCode::OK, Bytes::from_static(body));
                if let Ok(v) = HeaderValue::from_str(content_type) {
                    resp.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                resp
            };
            let headers = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&etag) {
                headers.insert(header::ETAG, v);
            }
            headers.insert(header::VARY, HeaderValue::from_static("Accept"));
            if immutable {
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, immutable"),
                );
                let expires = httpdate(std::time::SystemTime::now() + YEAR);
                if let Ok(v) = HeaderValue::from_str(&expires) {
                    headers.insert(header::EXPIRES, v);
                }
            }
            resp
        }
        OpenApiAnswer::Redirect(location) => Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, location)
            .body(Body::empty())
            .unwrap_or_else(|_| Response::new(Body::empty())),
        OpenApiAnswer::NotAcceptable => r.error(&ApiError::new(
            Reason::NotAcceptable,
            "only the following media types are accepted: application/json, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )),
        OpenApiAnswer::NotFound => r.error(&request::not_found()),
    }
}

const YEAR: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// An HTTP date (RFC 7231 IMF-fixdate) for `Expires`.
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match jiff::Timestamp::from_second(secs) {
        Ok(ts) => ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        Err(_) => String::new(),
    }
}

/// Reads a request body up to [`MAX_BODY_BYTES`]; 413 beyond. An oversized body is still
/// read (and dropped, within [`DRAIN_LIMIT_BYTES`] and [`DRAIN_TIMEOUT`]) before answering, so
/// HTTP/2 clients that are still sending see the 413 rather than a reset stream.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt as _;
    let too_large = || {
        ApiError::new(
            Reason::RequestEntityTooLarge,
            format!("Request entity too large: limit is {MAX_BODY_BYTES}"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let mut buf = bytes::BytesMut::with_capacity(
        declared.map_or(0, |n| n.min(MAX_BODY_BYTES as u64) as usize),
    );
    let mut over = declared.is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let mut seen: usize = 0;
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        let frame = if over {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(f) => f,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > MAX_BODY_BYTES {
            over = true;
            buf.clear();
        }
        if over {
            if seen > DRAIN_LIMIT_BYTES {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if over {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// How much of an oversized body is read and dropped before the 413 is sent.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;
/// How long an oversized body is read before the 413 is sent anyway.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn apply_manifests(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let r = responder(&parts.headers, parts.uri.query());
    let body = match read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(e) => return r.error(&e),
    };
    apply::serve(&state.gateway, &parts, body, r).await
}

/// Everything under `/api` and `/apis`; 404 Status for anything else.
async fn api(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(path) = request::parse_path(parts.uri.path()) else {
        return responder(&parts.headers, parts.uri.query()).error(&request::not_found());
    };
    if let ApiPath::Resource(resource) = path {
        let body = if matches!(
            parts.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) {
            match read_body(&parts.headers, body).await {
                Ok(b) => b,
                Err(e) => {
                    return responder(&parts.headers, parts.uri.query()).error(&e);
                }
            }
        } else {
            Bytes::new()
        };
        return resources::serve(&state.gateway, &parts, body, &resource).await;
    }
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Responder::PLAIN.error(&request::method_not_allowed(
            parts.method.as_str(),
            parts.uri.path(),
        ));
    }
    document(&state, &parts, || match path {
        ApiPath::CoreVersions => Ok(discovery::api_versions()),
        ApiPath::Groups => Ok(discovery::api_group_list()),
        ApiPath::Group(group) => discovery::api_group_list()["groups"]
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["name"] == group.as_str()))
            .map(|g| {
                let mut g = g.clone();
                g["kind"] = "APIGroup".into();
                g["apiVersion"] = "v1".into();
                g
            })
            .ok_or_else(request::not_found),
        ApiPath::Resources { group, version } => {
            discovery::api_resource_list(&group, &version).ok_or_else(request::not_found)
        }
        ApiPath::Resource(_) => Err(request::not_found()),
    })
    .await
}
