//! The gRPC service: decodes each request, authorizes it, calls the registry, encodes the
//! answer. `ApiError` becomes `tonic::Status` here and nowhere else (via its `From` impl).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use futures::{Stream, StreamExt};
use navarch_api::codec::FieldValidation;
use navarch_api::conversion;
use navarch_api::gateway::v1 as pb;
use navarch_api::gateway::v1::gateway_server::Gateway;
use navarch_api::kinds::{self, KindInfo};
use navarch_api::{ApiError, Object, Reason};
use opentelemetry::KeyValue as Attr;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::audit::Audit;
use crate::auth::{Attributes, Authorizer, UserInfo};
use crate::filter::Filter;
use crate::registry::{self, DeleteOptions, ListOptions, Registry, WriteOptions};
use crate::resource_metrics::{self, ResourceMetrics};
use crate::subresources;
use crate::tunnel::{Answer, Tunnels};
use crate::watch_cache::{CacheEvent, decode_event};

/// Interval between watch bookmarks.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// RED metrics of the API.
#[derive(Clone)]
struct ApiMetrics {
    requests: Counter<u64>,
    duration: Histogram<f64>,
    watches: UpDownCounter<i64>,
    watch_events: Counter<u64>,
}

impl ApiMetrics {
    fn new() -> Self {
        let meter = navarch_telemetry::meter("navarch-gateway");
        Self {
            requests: meter
                .u64_counter("navarch.api.requests")
                .with_description("API requests by verb, resource and code")
                .build(),
            duration: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.api.request.duration",
                "API request latency",
            ),
            watches: meter
                .i64_up_down_counter("navarch.api.watches")
                .with_description("Open watch streams")
                .build(),
            watch_events: meter
                .u64_counter("navarch.api.watch.events")
                .with_description("Events sent to watchers")
                .build(),
        }
    }
}

/// The gateway's gRPC service.
#[derive(Clone)]
pub struct GatewayService {
    registry: Arc<Registry>,
    authorizer: Arc<dyn Authorizer>,
    metrics: ApiMetrics,
    tunnels: Tunnels,
    usage: Arc<ResourceMetrics>,
    tokens: Option<Arc<crate::tokens::TokenIssuer>>,
    audit: Option<Arc<crate::audit::AuditLog>>,
    node_signer: Option<Arc<navarch_pki::ClusterPki>>,
}

impl GatewayService {
    pub fn new(registry: Arc<Registry>, authorizer: Arc<dyn Authorizer>) -> Self {
        Self {
            registry,
            authorizer,
            metrics: ApiMetrics::new(),
            tunnels: Tunnels::default(),
            usage: Arc::new(ResourceMetrics::default()),
            tokens: None,
            audit: None,
            node_signer: None,
        }
    }

    /// Sign node credentials (`RequestNodeCredential`) with the cluster CA in `pki`.
    pub fn with_node_signer(mut self, pki: Option<Arc<navarch_pki::ClusterPki>>) -> Self {
        self.node_signer = pki;
        self
    }

    /// Write one audit line per request to `log`.
    pub fn with_audit(mut self, log: Option<Arc<crate::audit::AuditLog>>) -> Self {
        self.audit = log;
        self
    }

    /// Issue service-account tokens (TokenRequest) with `issuer`.
    pub fn with_tokens(mut self, issuer: Option<Arc<crate::tokens::TokenIssuer>>) -> Self {
        self.tokens = issuer;
        self
    }

    /// Serve metrics.k8s.io from `usage` (shared with whoever else needs the reports).
    pub fn with_resource_metrics(mut self, usage: Arc<ResourceMetrics>) -> Self {
        self.usage = usage;
        self
    }

    /// The authenticated caller; a service-account token must still name a live
    /// ServiceAccount (and Pod).
    async fn user<T>(&self, req: &Request<T>) -> Result<UserInfo, ApiError> {
        let user = req
            .extensions()
            .get::<UserInfo>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        crate::tokens::check_still_bound(&self.registry, &user).await?;
        Ok(user)
    }

    fn authorize(
        &self,
        user: &UserInfo,
        verb: &'static str,
        kind: &KindInfo,
        sub: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        self.authorizer.authorize(
            user,
            &Attributes {
                verb,
                group: kind.group.to_string(),
                resource: kind.plural.to_string(),
                subresource: sub.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
        )
    }

    /// The node, UID and container a pods/log or pods/exec request goes to.
    async fn pod_target(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<(String, String, String), ApiError> {
        let pod: navarch_api::core::v1::Pod =
            self.registry.get(kind, namespace, name).await?.to_typed()?;
        let container = log_container(&pod, container)?;
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: the pod is not scheduled"
                ))
            })?;
        let uid = pod
            .metadata
            .as_ref()
            .and_then(|m| m.uid.clone())
            .unwrap_or_default();
        Ok((node, uid, container))
    }

    fn finish<T>(
        &self,
        audit: &Audit,
        verb: &'static str,
        resource: &str,
        start: Instant,
        result: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        self.record(audit, verb, resource, start, result.as_ref().err());
        result.map(Response::new).map_err(Status::from)
    }

    /// Counts a request (or one item of a batch) in the metrics and the audit log, and logs
    /// it if the server failed it.
    fn record(
        &self,
        audit: &Audit,
        verb: &'static str,
        resource: &str,
        start: Instant,
        error: Option<&ApiError>,
    ) {
        let code = error.map_or(200, ApiError::code);
        let attrs = [
            Attr::new("verb", verb),
            Attr::new("resource", resource.to_string()),
            Attr::new("code", i64::from(code)),
        ];
        self.metrics.requests.add(1, &attrs);
        self.metrics
            .duration
            .record(start.elapsed().as_secs_f64(), &attrs[..2]);
        if let Some(log) = &self.audit {
            // As the HTTP API answers: 201 for a create that made something.
            let http = if code == 200 && verb == "create" {
                201
            } else {
                code
            };
            audit.write(log, verb, http, start);
        }
        if let Some(e) = error.filter(|e| e.code() >= 500) {
            tracing::warn!(verb, resource, code, error = %e.message, "request failed");
        }
    }

    /// `pods/binding` (Create's subresource, and each item of CreateBindings).
    async fn create_binding(&self, user: &UserInfo, r: &pb::CreateRequest) -> Result<(), ApiError> {
        let (kind, sub) = resolve_for_write(r.resource.as_ref())?;
        if kind.kind != "Pod" || sub != "binding" {
            return Err(ApiError::bad_request(format!(
                "CreateBindings takes pods/binding only, not {}{}{sub}",
                kind.plural,
                if sub.is_empty() { "" } else { "/" },
            )));
        }
        let opts = write_options(r.options.as_ref(), user)?;
        self.authorize(user, "create", kind, "binding", &r.namespace, &r.name)?;
        let body = r
            .object
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("object is required"))?;
        let binding = subresources::decode_typed_body::<navarch_api::core::v1::Binding>(
            &body.raw,
            &body.content_type,
        )?;
        subresources::bind(&self.registry, kind, &r.namespace, &r.name, &binding, &opts).await
    }
}

/// The gateway's name for a resource (what requests name, what audit lines record).
fn api_resource(group: &str, version: &str, resource: &str, subresource: &str) -> pb::Resource {
    pb::Resource {
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        subresource: subresource.into(),
    }
}

/// The body of a subresource call (Binding, Eviction, TokenRequest), as JSON.
fn subresource_body(
    body: Option<&pb::RawObject>,
    message: &str,
) -> Result<serde_json::Value, ApiError> {
    let body = body.ok_or_else(|| ApiError::bad_request("object is required"))?;
    subresources::decode_body(message, &body.raw, &body.content_type)
}

/// The plural resource a request names, for metrics and logs.
fn resource_name(resource: Option<&pb::Resource>) -> String {
    resource.map(|r| r.resource.clone()).unwrap_or_default()
}

/// The kind and subresource a request names.
fn resolve(resource: Option<&pb::Resource>) -> Result<(&'static KindInfo, String), ApiError> {
    let r = resource.ok_or_else(|| ApiError::bad_request("resource is required"))?;
    let kind = kinds::by_resource(&r.group, &r.version, &r.resource).ok_or_else(|| {
        let gv = if r.group.is_empty() {
            r.version.clone()
        } else {
            format!("{}/{}", r.group, r.version)
        };
        ApiError::not_found("resources", &format!("{gv}/{}", r.resource)).on(
            &r.group,
            &r.resource,
            "",
        )
    })?;
    Ok((kind, r.subresource.clone()))
}

/// [`resolve`] for a write: the metrics.k8s.io kinds are read-only (405, as metrics-server
/// answers).
fn resolve_for_write(
    resource: Option<&pb::Resource>,
) -> Result<(&'static KindInfo, String), ApiError> {
    let (kind, sub) = resolve(resource)?;
    if resource_metrics::serves(kind) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    Ok((kind, sub))
}

fn write_options(
    opts: Option<&pb::WriteOptions>,
    user: &UserInfo,
) -> Result<WriteOptions, ApiError> {
    let Some(o) = opts else {
        return Ok(WriteOptions {
            user: Some(user.clone()),
            ..Default::default()
        });
    };
    let field_validation = FieldValidation::parse(&o.field_validation).ok_or_else(|| {
        ApiError::bad_request(format!(
            "fieldValidation must be one of Ignore, Warn or Strict, got {:?}",
            o.field_validation
        ))
    })?;
    for d in &o.dry_run {
        if d != "All" {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {d:?}: supported values: \"All\""
            )));
        }
    }
    Ok(WriteOptions {
        dry_run: !o.dry_run.is_empty(),
        field_manager: o.field_manager.clone(),
        field_validation,
        user: Some(user.clone()),
    })
}

fn raw(obj: &Object, accept: &str) -> Result<pb::RawObject, ApiError> {
    Ok(pb::RawObject {
        api_version: obj.kind.api_version(),
        kind: obj.kind.kind.to_string(),
        raw: obj.to_raw(accept)?.to_vec(),
        content_type: if accept.is_empty() {
            navarch_api::object::content_type::PROTOBUF.into()
        } else {
            accept.into()
        },
    })
}

/// [`raw`] of a stored object at the version the request named (`served`).
fn raw_as(
    obj: &Object,
    served: &'static KindInfo,
    accept: &str,
) -> Result<pb::RawObject, ApiError> {
    if std::ptr::eq(obj.kind, served) {
        return raw(obj, accept);
    }
    raw(&conversion::to_served(obj.clone(), served)?, accept)
}

/// [`raw_as`] of an object read from the store, whose stored bytes are `stored` at
/// `revision`: in protobuf at its stored version, those bytes are sent as they are (with the
/// revision appended, see [`Object::stored_encoding`]) instead of encoding the object again.
/// `object` gives the decoded object, for the other forms.
pub(crate) fn raw_stored<'a>(
    kind: &'static KindInfo,
    stored: &[u8],
    revision: i64,
    served: &'static KindInfo,
    accept: &str,
    object: impl FnOnce() -> &'a Object,
) -> Result<pb::RawObject, ApiError> {
    let protobuf = matches!(accept, "" | navarch_api::object::content_type::PROTOBUF);
    if !(protobuf && std::ptr::eq(kind, served)) {
        return raw_as(object(), served, accept);
    }
    Ok(stored_raw(served, stored, revision))
}

/// The protobuf envelope of an object of `kind` stored as `stored` at `revision`.
fn stored_raw(kind: &'static KindInfo, stored: &[u8], revision: i64) -> pb::RawObject {
    pb::RawObject {
        api_version: kind.api_version(),
        kind: kind.kind.to_string(),
        raw: Object::stored_encoding(kind, stored, revision),
        content_type: navarch_api::object::content_type::PROTOBUF.into(),
    }
}

/// `Status: Success, code 201`, the answer to a binding.
fn success() -> navarch_api::meta::v1::Status {
    navarch_api::meta::v1::Status {
        api_version: Some("v1".into()),
        kind: Some("Status".into()),
        metadata: Some(Default::default()),
        status: Some("Success".into()),
        code: Some(201),
        ..Default::default()
    }
}

/// [`success`] in `accept`.
fn success_status(accept: &str) -> Result<pb::RawObject, ApiError> {
    let status = success();
    match accept {
        "" | navarch_api::object::content_type::PROTOBUF => Ok(pb::RawObject {
            api_version: "v1".into(),
            kind: "Status".into(),
            raw: prost::Message::encode_to_vec(&status),
            content_type: navarch_api::object::content_type::PROTOBUF.into(),
        }),
        _ => raw_json(
            "v1",
            "Status",
            "navarch.api.meta.v1.Status",
            &navarch_api::codec::encode_json(&status),
            accept,
        ),
    }
}

fn raw_json(
    api_version: &str,
    kind: &str,
    message: &str,
    json: &serde_json::Value,
    accept: &str,
) -> Result<pb::RawObject, ApiError> {
    Ok(pb::RawObject {
        api_version: api_version.into(),
        kind: kind.into(),
        raw: subresources::encode_body(message, json, accept)?,
        content_type: if accept.is_empty() {
            navarch_api::object::content_type::PROTOBUF.into()
        } else {
            accept.into()
        },
    })
}

fn decode_object(
    kind: &'static KindInfo,
    body: Option<&pb::RawObject>,
    validation: FieldValidation,
) -> Result<(Object, Vec<String>), ApiError> {
    let body = body.ok_or_else(|| ApiError::bad_request("object is required"))?;
    Object::from_raw(kind, &body.raw, &body.content_type, validation)
}

fn warnings(unknown: Vec<String>) -> Vec<String> {
    unknown
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect()
}

type WatchResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;
type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecChunk, Status>> + Send>>;
type TunnelStream = Pin<Box<dyn Stream<Item = Result<pb::TunnelDown, Status>> + Send>>;

/// The container `pods/log` reads: the one named, or the pod's only one. Errors read like
/// the kube-apiserver's.
fn log_container(pod: &navarch_api::core::v1::Pod, wanted: &str) -> Result<String, ApiError> {
    let name = pod
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let all: Vec<String> = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .filter_map(|c| c.name.clone())
        .collect();
    if wanted.is_empty() {
        return match spec.containers.as_slice() {
            [only] => Ok(only.name.clone().unwrap_or_default()),
            many => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                many.iter()
                    .filter_map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(" ")
            ))),
        };
    }
    if all.iter().any(|c| c == wanted) {
        Ok(wanted.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {name}"
        )))
    }
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    type PodLogsStream = LogStream;
    type AgentTunnelStream = TunnelStream;
    type PodExecStream = ExecStream;

    async fn request_node_credential(
        &self,
        req: Request<pb::NodeCredentialRequest>,
    ) -> Result<Response<pb::NodeCredentialResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let csr_kind = api_resource(
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            "",
        );
        let mut audit = Audit::new(&user, "", "", Some(&csr_kind));
        let result = async {
            let user = user?;
            // A bootstrapper asks for a new node's credential (nodeclient), a node renews
            // its own (selfnodeclient): kube-controller-manager's CSR auto-approval rules.
            let sub = if user.in_group("system:nodes") {
                "selfnodeclient"
            } else {
                "nodeclient"
            };
            let resource = format!("certificatesigningrequests/{sub}");
            let allowed = self.authorizer.allows(
                &user,
                &crate::rbac::Request::Resource {
                    verb: "create",
                    group: "certificates.k8s.io",
                    resource: &resource,
                    namespace: "",
                    name: "",
                },
            );
            if !allowed {
                return Err(ApiError::forbidden(format!(
                    "certificatesigningrequests.certificates.k8s.io is forbidden: User \"{}\" cannot create resource \"certificatesigningrequests/{sub}\" in API group \"certificates.k8s.io\" at the cluster scope",
                    user.name
                )));
            }
            let signer = self.node_signer.as_ref().ok_or_else(|| {
                ApiError::method_not_allowed("this server signs no node credentials")
            })?;
            let asked = navarch_pki::client_csr_subject(&r.csr_pem)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let node = crate::bootstrap::node_name_for(&user, &asked)?;
            let common_name = format!("system:node:{node}");
            let cert = signer
                .sign_client_csr(
                    &r.csr_pem,
                    &common_name,
                    &["system:nodes"],
                    crate::bootstrap::NODE_CERT_VALIDITY,
                )
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            tracing::info!(node, by = %user.name, "issued node credential");
            Ok((
                node,
                pb::NodeCredentialResponse {
                    certificate_pem: cert,
                    ca_pem: signer.ca_pem().to_string(),
                },
            ))
        }
        .await;
        let result = result.map(|(node, answer)| {
            audit.set_name(&format!("system:node:{node}"));
            answer
        });
        self.finish(
            &audit,
            "create",
            "certificatesigningrequests",
            start,
            result,
        )
    }

    async fn pod_exec(
        &self,
        req: Request<tonic::Streaming<pb::PodExecClientMessage>>,
    ) -> Result<Response<Self::PodExecStream>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let mut client = req.into_inner();
        let mut r = match client.message().await? {
            Some(pb::PodExecClientMessage {
                msg: Some(pb::pod_exec_client_message::Msg::Request(r)),
            }) => r,
            _ => {
                return Err(ApiError::bad_request("an exec starts with its request").into());
            }
        };
        let audit = Audit::new(
            &user,
            &r.namespace,
            &r.name,
            Some(&api_resource("", "v1", "pods", "exec")),
        );
        let setup = async {
            let user = user?;
            let kind = kinds::by_resource("", "v1", "pods").expect("pods are a kind");
            // As kube-apiserver: exec is a `create` on pods/exec, whatever the HTTP verb.
            self.authorize(&user, "create", kind, "exec", &r.namespace, &r.name)?;
            if r.command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let (node, uid, container) = self
                .pod_target(kind, &r.namespace, &r.name, &r.container)
                .await?;
            r.container = container;
            r.uid = uid;
            if r.validate_only {
                return Ok(None);
            }
            self.tunnels
                .send(&node, pb::tunnel_down::Msg::Exec(r))
                .await
                .map(Some)
        }
        .await;
        let request = match setup {
            Ok(v) => v,
            Err(e) => return self.finish(&audit, "create", "pods", start, Err(e)),
        };
        // The client's input goes down the tunnel as it comes, flow controlled; it stops
        // with the client's stream or the exec (then the input sender fails).
        if let Some(request) = &request {
            let input = request.input();
            tokio::spawn(async move {
                while let Ok(Some(m)) = client.message().await {
                    let Some(pb::pod_exec_client_message::Msg::Input(i)) = m.msg else {
                        continue;
                    };
                    if input.send(i).await.is_err() {
                        break;
                    }
                }
            });
        }
        let stream = futures::stream::unfold(request, |state| async move {
            let mut request = state?;
            let chunk = |stream, data| pb::ExecChunk {
                stream,
                data,
                exit_code: None,
            };
            match request.answers.recv().await? {
                Answer::Data(data) => Some((Ok(chunk(1, data)), Some(request))),
                Answer::Stderr(data) => Some((Ok(chunk(2, data)), Some(request))),
                Answer::End(Ok(code)) => Some((
                    Ok(pb::ExecChunk {
                        stream: 0,
                        data: vec![],
                        exit_code: Some(code.unwrap_or(0)),
                    }),
                    None,
                )),
                Answer::End(Err(e)) => Some((Err(Status::from(e)), None)),
            }
        });
        let stream: ExecStream = Box::pin(stream);
        self.finish(&audit, "create", "pods", start, Ok(stream))
    }

    async fn pod_logs(
        &self,
        req: Request<pb::PodLogsRequest>,
    ) -> Result<Response<Self::PodLogsStream>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let mut r = req.into_inner();
        let audit = Audit::new(
            &user,
            &r.namespace,
            &r.name,
            Some(&api_resource("", "v1", "pods", "log")),
        );
        let setup = async {
            let user = user?;
            let kind = kinds::by_resource("", "v1", "pods").expect("pods are a kind");
            self.authorize(&user, "get", kind, "log", &r.namespace, &r.name)?;
            if r.tail_lines.is_some_and(|n| n < 0) {
                return Err(ApiError::bad_request("tailLines must be 0 or more"));
            }
            if r.limit_bytes.is_some_and(|n| n <= 0) {
                return Err(ApiError::bad_request("limitBytes must be greater than 0"));
            }
            let (node, uid, container) = self
                .pod_target(kind, &r.namespace, &r.name, &r.container)
                .await?;
            r.container = container;
            r.uid = uid;
            self.tunnels
                .send(&node, pb::tunnel_down::Msg::Logs(r))
                .await
        }
        .await;
        let request = match setup {
            Ok(v) => v,
            Err(e) => return self.finish(&audit, "get", "pods", start, Err(e)),
        };
        // The request (dropping it cancels on the agent) lives as long as the stream.
        let stream = futures::stream::unfold(Some(request), |state| async move {
            let mut request = state?;
            match request.answers.recv().await? {
                Answer::Data(data) | Answer::Stderr(data) => {
                    Some((Ok(pb::LogChunk { data }), Some(request)))
                }
                Answer::End(Ok(_)) => None,
                Answer::End(Err(e)) => Some((Err(Status::from(e)), None)),
            }
        });
        let stream: LogStream = Box::pin(stream);
        self.finish(&audit, "get", "pods", start, Ok(stream))
    }

    async fn report_resource_usage(
        &self,
        req: Request<pb::ResourceUsageReport>,
    ) -> Result<Response<pb::ResourceUsageAck>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(
            &user,
            "",
            "",
            Some(&api_resource("metrics.k8s.io", "v1beta1", "nodes", "")),
        );
        let result = (|| {
            let user = user?;
            let node = r.node.ok_or_else(|| {
                ApiError::bad_request("a usage report carries the node's NodeMetrics")
            })?;
            let name = node
                .metadata
                .as_ref()
                .and_then(|m| m.name.clone())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "metrics.k8s.io",
                        "NodeMetrics",
                        "",
                        vec![navarch_api::errors::FieldError::required(
                            "node.metadata.name",
                            "",
                        )],
                    )
                })?;
            // As for the tunnel: whoever may write the node's status is its agent.
            let kind = kinds::by_resource("", "v1", "nodes").expect("nodes are a kind");
            self.authorize(&user, "update", kind, "status", "", &name)?;
            crate::node_authorizer::own_node(&user, kind, &name)?;
            self.usage.report(name, node, r.pods);
            Ok(pb::ResourceUsageAck {})
        })();
        self.finish(&audit, "create", "nodes.metrics.k8s.io", start, result)
    }

    async fn agent_tunnel(
        &self,
        req: Request<tonic::Streaming<pb::TunnelUp>>,
    ) -> Result<Response<Self::AgentTunnelStream>, Status> {
        let user = self.user(&req).await?;
        let mut up = req.into_inner();
        let node = match up.message().await? {
            Some(pb::TunnelUp {
                msg: Some(pb::tunnel_up::Msg::Hello(h)),
                ..
            }) if !h.node_name.is_empty() => h.node_name,
            _ => {
                return Err(ApiError::bad_request(
                    "an agent tunnel opens with a hello naming the node",
                )
                .into());
            }
        };
        // Whoever may write the node's status is its agent.
        let kind = kinds::by_resource("", "v1", "nodes").expect("nodes are a kind");
        self.authorize(&user, "update", kind, "status", "", &node)?;
        crate::node_authorizer::own_node(&user, kind, &node)?;
        let (tx, rx) = mpsc::channel(64);
        let epoch = self.tunnels.open(&node, tx);
        let tunnels = self.tunnels.clone();
        tokio::spawn(async move {
            loop {
                match up.message().await {
                    Ok(Some(msg)) => tunnels.answer(&node, msg).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(node, error = %e, "agent tunnel broke");
                        break;
                    }
                }
            }
            tunnels.close(&node, epoch);
        });
        let stream: TunnelStream =
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok));
        Ok(Response::new(stream))
    }

    async fn get(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, &r.name, r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let result = async {
            let user = user?;
            let (kind, sub) = resolve(r.resource.as_ref())?;
            self.authorize(&user, "get", kind, &sub, &r.namespace, &r.name)?;
            crate::node_authorizer::check(
                &self.registry,
                &user,
                "get",
                kind,
                &sub,
                &r.namespace,
                &r.name,
            )
            .await?;
            let obj = if resource_metrics::serves(kind) && sub.is_empty() {
                self.usage.get(kind, &r.namespace, &r.name)?
            } else {
                let stored = conversion::storage_kind(kind);
                self.registry.get(stored, &r.namespace, &r.name).await?
            };
            let object = match sub.as_str() {
                "" | "status" => raw_as(&obj, kind, &r.accept)?,
                "scale" if kind.scale => raw_json(
                    "autoscaling/v1",
                    "Scale",
                    "navarch.api.autoscaling.v1.Scale",
                    &subresources::scale_of(&obj),
                    &r.accept,
                )?,
                other => {
                    return Err(ApiError::not_found(
                        &format!("{}/{other}", kind.plural),
                        &r.name,
                    ));
                }
            };
            Ok(pb::ObjectResponse {
                object: Some(object),
                warnings: vec![],
            })
        }
        .await;
        self.finish(&audit, "get", &resource, start, result)
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, "", r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let result = async {
            let user = user?;
            let (kind, _) = resolve(r.resource.as_ref())?;
            self.authorize(&user, "list", kind, "", &r.namespace, "")?;
            crate::node_authorizer::check(
                &self.registry,
                &user,
                "list",
                kind,
                "",
                &r.namespace,
                "",
            )
            .await?;
            if resource_metrics::serves(kind) {
                let filter = Filter::new(kind, &r.namespace, &r.label_selector, &r.field_selector)?;
                return Ok(pb::ListResponse {
                    items: self
                        .usage
                        .list(kind, &filter)?
                        .iter()
                        .map(|o| raw(o, &r.accept))
                        .collect::<Result<_, _>>()?,
                    resource_version: String::new(),
                    r#continue: String::new(),
                    remaining_item_count: None,
                });
            }
            let stored_kind = conversion::storage_kind(kind);
            let opts = ListOptions {
                label_selector: r.label_selector.clone(),
                field_selector: r.field_selector.clone(),
                limit: r.limit,
                continue_token: r.r#continue.clone(),
                resource_version: r.resource_version.clone(),
                resource_version_match: r.resource_version_match.clone(),
            };
            // In protobuf at the stored version, the items go out as they are stored.
            let as_stored = std::ptr::eq(stored_kind, kind)
                && matches!(
                    r.accept.as_str(),
                    "" | navarch_api::object::content_type::PROTOBUF
                );
            let (page, items) = if as_stored {
                let page = self.registry.list_stored(kind, &r.namespace, &opts).await?;
                let items = page
                    .stored
                    .iter()
                    .map(|(stored, rv)| stored_raw(kind, stored, *rv))
                    .collect();
                (page, items)
            } else {
                let page = self.registry.list(stored_kind, &r.namespace, &opts).await?;
                let items = page
                    .items
                    .iter()
                    .map(|o| raw_as(o, kind, &r.accept))
                    .collect::<Result<_, _>>()?;
                (page, items)
            };
            Ok(pb::ListResponse {
                items,
                resource_version: page.resource_version.to_string(),
                r#continue: page.continue_token,
                remaining_item_count: None,
            })
        }
        .await;
        self.finish(&audit, "list", &resource, start, result)
    }

    type WatchStream = WatchResponseStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, "", r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let setup = async {
            let user = user?;
            let (kind, _) = resolve(r.resource.as_ref())?;
            self.authorize(&user, "watch", kind, "", &r.namespace, "")?;
            crate::node_authorizer::check(
                &self.registry,
                &user,
                "watch",
                kind,
                "",
                &r.namespace,
                "",
            )
            .await?;
            if resource_metrics::serves(kind) {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
            let filter = Filter::new(kind, &r.namespace, &r.label_selector, &r.field_selector)?;
            let revision = match r.resource_version.as_str() {
                "" | "0" => 0,
                rv => rv.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?,
            };
            Ok((kind, filter, revision))
        }
        .await;
        let (kind, filter, revision) = match setup {
            Ok(v) => v,
            Err(e) => return self.finish(&audit, "watch", &resource, start, Err(e)),
        };
        let (tx, rx) = mpsc::channel(256);
        let watcher = Watcher {
            registry: self.registry.clone(),
            kind: conversion::storage_kind(kind),
            served: kind,
            namespace: r.namespace.clone(),
            filter,
            accept: r.accept.clone(),
            allow_bookmarks: r.allow_bookmarks,
            send_initial_events: r.send_initial_events,
            tx,
            metrics: self.metrics.clone(),
        };
        let timeout =
            (r.timeout_seconds > 0).then(|| Duration::from_secs(r.timeout_seconds as u64));
        self.metrics
            .watches
            .add(1, &[Attr::new("resource", resource.clone())]);
        let metrics = self.metrics.clone();
        let res = resource.clone();
        tokio::spawn(async move {
            let run = watcher.run(revision);
            match timeout {
                Some(t) => {
                    let _ = tokio::time::timeout(t, run).await;
                }
                None => run.await,
            }
            metrics.watches.add(-1, &[Attr::new("resource", res)]);
        });
        let stream: WatchResponseStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        self.finish(&audit, "watch", &resource, start, Ok(stream))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, &r.name, r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let result = async {
            let user = user?;
            let (kind, sub) = resolve_for_write(r.resource.as_ref())?;
            let opts = write_options(r.options.as_ref(), &user)?;
            if kind.create_only() && sub.is_empty() {
                self.authorize(&user, "create", kind, "", &r.namespace, "")?;
                let (obj, unknown) = decode_object(kind, r.object.as_ref(), opts.field_validation)?;
                let mut answered =
                    crate::reviews::answer(self.authorizer.as_ref(), &user, &r.namespace, &obj)?;
                // One message serves several versions (SelfSubjectReview v1 and v1beta1):
                // answer in the version asked.
                if answered.kind.message == kind.message {
                    answered.kind = kind;
                    answered.set_type_meta();
                }
                return Ok(pb::ObjectResponse {
                    object: Some(raw_as(&answered, kind, &r.accept)?),
                    warnings: warnings(unknown),
                });
            }
            match sub.as_str() {
                "" => {
                    self.authorize(&user, "create", kind, "", &r.namespace, "")?;
                    let (obj, unknown) =
                        decode_object(kind, r.object.as_ref(), opts.field_validation)?;
                    crate::node_authorizer::check_create(
                        &self.registry,
                        &user,
                        kind,
                        "",
                        &r.namespace,
                        Some(&obj),
                        None,
                    )
                    .await?;
                    let obj = conversion::to_storage(obj)?;
                    let (created, stored) = self
                        .registry
                        .create_stored(obj.kind, &r.namespace, obj, &opts)
                        .await?;
                    let object = match stored {
                        Some((stored, revision)) => {
                            raw_stored(created.kind, &stored, revision, kind, &r.accept, || {
                                &created
                            })?
                        }
                        None => raw_as(&created, kind, &r.accept)?,
                    };
                    Ok(pb::ObjectResponse {
                        object: Some(object),
                        warnings: warnings(unknown),
                    })
                }
                "binding" if kind.kind == "Pod" => {
                    self.create_binding(&user, &r).await?;
                    Ok(pb::ObjectResponse {
                        object: Some(success_status(&r.accept)?),
                        warnings: vec![],
                    })
                }
                "eviction" if kind.kind == "Pod" => {
                    self.authorize(&user, "create", kind, "eviction", &r.namespace, &r.name)?;
                    let eviction =
                        subresource_body(r.object.as_ref(), "navarch.api.policy.v1.Eviction")?;
                    let status = subresources::evict(
                        &self.registry,
                        kind,
                        &r.namespace,
                        &r.name,
                        &eviction,
                        opts.dry_run,
                    )
                    .await?;
                    Ok(pb::ObjectResponse {
                        object: Some(raw_json(
                            "v1",
                            "Status",
                            "navarch.api.meta.v1.Status",
                            &status,
                            &r.accept,
                        )?),
                        warnings: vec![],
                    })
                }
                "token" if kind.kind == "ServiceAccount" => {
                    self.authorize(&user, "create", kind, "token", &r.namespace, &r.name)?;
                    let issuer = self.tokens.as_ref().ok_or_else(|| {
                        ApiError::method_not_allowed("this server issues no service-account tokens")
                    })?;
                    let request = subresource_body(
                        r.object.as_ref(),
                        "navarch.api.authentication.v1.TokenRequest",
                    )?;
                    crate::node_authorizer::check_create(
                        &self.registry,
                        &user,
                        kind,
                        "token",
                        &r.namespace,
                        None,
                        Some(&request),
                    )
                    .await?;
                    let answer = crate::tokens::request(
                        &self.registry,
                        issuer,
                        &r.namespace,
                        &r.name,
                        request,
                    )
                    .await?;
                    Ok(pb::ObjectResponse {
                        object: Some(raw_json(
                            "authentication.k8s.io/v1",
                            "TokenRequest",
                            "navarch.api.authentication.v1.TokenRequest",
                            &answer,
                            &r.accept,
                        )?),
                        warnings: vec![],
                    })
                }
                other => Err(ApiError::method_not_allowed(format!(
                    "create is not supported on {}/{other}",
                    kind.plural
                ))),
            }
        }
        .await;
        self.finish(&audit, "create", &resource, start, result)
    }

    async fn create_bindings(
        &self,
        req: Request<pb::CreateBindingsRequest>,
    ) -> Result<Response<pb::CreateBindingsResponse>, Status> {
        let user = self.user(&req).await;
        let items: Vec<(pb::CreateRequest, String)> = req
            .into_inner()
            .items
            .into_iter()
            .map(|item| (item.request.unwrap_or_default(), item.traceparent))
            .collect();
        let user = match user {
            Ok(user) => user,
            Err(e) => {
                let start = Instant::now();
                for (r, _) in &items {
                    let audit =
                        Audit::new(&Err(e.clone()), &r.namespace, &r.name, r.resource.as_ref());
                    let resource = resource_name(r.resource.as_ref());
                    self.record(&audit, "create", &resource, start, Some(&e));
                }
                return Err(e.into());
            }
        };
        // Concurrently, so the store commits the batch's writes together; each in the trace
        // of its own pod.
        let results = futures::future::join_all(items.iter().map(|(r, traceparent)| {
            let span = if navarch_telemetry::traces::exporting() {
                let span = tracing::info_span!(
                    "binding",
                    component = "gateway",
                    rpc.method = "CreateBindings",
                    pod = %format!("{}/{}", r.namespace, r.name),
                );
                navarch_telemetry::traces::set_parent_traceparent(&span, traceparent);
                span
            } else {
                tracing::Span::none()
            };
            let user = &user;
            async move {
                let start = Instant::now();
                let audit = Audit::new(
                    &Ok(user.clone()),
                    &r.namespace,
                    &r.name,
                    r.resource.as_ref(),
                );
                let result = self.create_binding(user, r).await;
                let resource = resource_name(r.resource.as_ref());
                self.record(&audit, "create", &resource, start, result.as_ref().err());
                match result {
                    Ok(()) => success(),
                    Err(e) => e.to_status(),
                }
            }
            .instrument(span)
        }))
        .await;
        Ok(Response::new(pb::CreateBindingsResponse { results }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, &r.name, r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let result = self.do_update(user, r, None).await;
        self.finish(&audit, "update", &resource, start, result)
    }

    async fn update_status(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, &r.name, r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let result = self.do_update(user, r, Some("status")).await;
        self.finish(&audit, "update", &resource, start, result)
    }

    async fn patch(
        &self,
        req: Request<pb::PatchRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, &r.name, r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let result = async {
            let user = user?;
            let (kind, sub) = resolve_for_write(r.resource.as_ref())?;
            self.authorize(&user, "patch", kind, &sub, &r.namespace, &r.name)?;
            crate::node_authorizer::check(
                &self.registry,
                &user,
                "patch",
                kind,
                &sub,
                &r.namespace,
                &r.name,
            )
            .await?;
            let opts = write_options(r.options.as_ref(), &user)?;
            match sub.as_str() {
                "" | "status" if !std::ptr::eq(conversion::storage_kind(kind), kind) => {
                    let patched = self
                        .patch_converted(kind, &r, &opts, sub == "status")
                        .await?;
                    Ok(pb::ObjectResponse {
                        object: Some(raw_as(&patched, kind, &r.accept)?),
                        warnings: vec![],
                    })
                }
                "" | "status" => {
                    let patched = self
                        .registry
                        .patch(
                            kind,
                            &r.namespace,
                            &r.name,
                            &r.patch_type,
                            &r.patch,
                            &opts,
                            r.force,
                            sub == "status",
                        )
                        .await?;
                    Ok(pb::ObjectResponse {
                        object: Some(raw(&patched, &r.accept)?),
                        warnings: vec![],
                    })
                }
                "scale" if kind.scale => {
                    use navarch_api::patch::{PatchOptions, PatchType, apply_patch};
                    let obj = self.registry.get(kind, &r.namespace, &r.name).await?;
                    let ptype = PatchType::from_content_type(&r.patch_type).ok_or_else(|| {
                        ApiError::new(
                            Reason::UnsupportedMediaType,
                            format!("unsupported patch type {:?}", r.patch_type),
                        )
                    })?;
                    let scale_kind =
                        kinds::by_resource("apps", "v1", "deployments").expect("served");
                    let patched = apply_patch(
                        scale_kind,
                        &subresources::scale_of(&obj),
                        ptype,
                        &r.patch,
                        &PatchOptions {
                            field_manager: opts.field_manager.clone(),
                            force: r.force,
                            now: String::new(),
                            subresource: Some("scale".into()),
                        },
                    )?;
                    let scale = subresources::update_scale(
                        &self.registry,
                        kind,
                        &r.namespace,
                        &r.name,
                        &patched,
                        &opts,
                    )
                    .await?;
                    Ok(pb::ObjectResponse {
                        object: Some(raw_json(
                            "autoscaling/v1",
                            "Scale",
                            "navarch.api.autoscaling.v1.Scale",
                            &scale,
                            &r.accept,
                        )?),
                        warnings: vec![],
                    })
                }
                other => Err(ApiError::method_not_allowed(format!(
                    "patch is not supported on {}/{other}",
                    kind.plural
                ))),
            }
        }
        .await;
        self.finish(&audit, "patch", &resource, start, result)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let audit = Audit::new(&user, &r.namespace, &r.name, r.resource.as_ref());
        let resource = resource_name(r.resource.as_ref());
        let result = async {
            let user = user?;
            let (kind, _) = resolve_for_write(r.resource.as_ref())?;
            self.authorize(&user, "delete", kind, "", &r.namespace, &r.name)?;
            crate::node_authorizer::check(
                &self.registry,
                &user,
                "delete",
                kind,
                "",
                &r.namespace,
                &r.name,
            )
            .await?;
            let deleted = self
                .registry
                .delete(
                    conversion::storage_kind(kind),
                    &r.namespace,
                    &r.name,
                    &delete_options(&r)?,
                )
                .await?;
            Ok(pb::ObjectResponse {
                object: Some(raw_as(&deleted, kind, &r.accept)?),
                warnings: vec![],
            })
        }
        .await;
        self.finish(&audit, "delete", &resource, start, result)
    }

    async fn delete_collection(
        &self,
        req: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        let start = Instant::now();
        let user = self.user(&req).await;
        let r = req.into_inner();
        let list = r.list.unwrap_or_default();
        let audit = Audit::new(&user, &list.namespace, "", list.resource.as_ref());
        let resource = resource_name(list.resource.as_ref());
        let result = async {
            let user = user?;
            let (kind, _) = resolve_for_write(list.resource.as_ref())?;
            self.authorize(&user, "deletecollection", kind, "", &list.namespace, "")?;
            crate::node_authorizer::check(
                &self.registry,
                &user,
                "deletecollection",
                kind,
                "",
                &list.namespace,
                "",
            )
            .await?;
            let opts = r
                .options
                .as_ref()
                .map(delete_options)
                .transpose()?
                .unwrap_or_default();
            let deleted = self
                .registry
                .delete_collection(
                    conversion::storage_kind(kind),
                    &list.namespace,
                    &ListOptions {
                        label_selector: list.label_selector.clone(),
                        field_selector: list.field_selector.clone(),
                        ..Default::default()
                    },
                    &opts,
                )
                .await?;
            Ok(pb::DeleteCollectionResponse {
                items: deleted
                    .iter()
                    .map(|o| raw_as(o, kind, &list.accept))
                    .collect::<Result<_, _>>()?,
            })
        }
        .await;
        self.finish(&audit, "deletecollection", &resource, start, result)
    }
}

fn delete_options(r: &pb::DeleteRequest) -> Result<DeleteOptions, ApiError> {
    for d in &r.dry_run {
        if d != "All" {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {d:?}: supported values: \"All\""
            )));
        }
    }
    Ok(DeleteOptions {
        grace_period_seconds: r.grace_period_seconds,
        propagation_policy: r.propagation_policy.clone(),
        precondition_uid: r.precondition_uid.clone(),
        precondition_resource_version: r.precondition_resource_version.clone(),
        dry_run: !r.dry_run.is_empty(),
    })
}

impl GatewayService {
    /// A patch on a version that is not the stored one: applied to the object as that
    /// version shows it, then converted back and written with the read's resourceVersion
    /// (a conflict if it changed in between, which clients retry).
    async fn patch_converted(
        &self,
        kind: &'static KindInfo,
        r: &pb::PatchRequest,
        opts: &WriteOptions,
        status: bool,
    ) -> Result<Object, ApiError> {
        use navarch_api::patch::{PatchOptions, PatchType, apply_patch};
        let stored = conversion::storage_kind(kind);
        let current = self.registry.get(stored, &r.namespace, &r.name).await?;
        let current = conversion::to_served(current, kind)?;
        let ptype = PatchType::from_content_type(&r.patch_type).ok_or_else(|| {
            ApiError::new(
                Reason::UnsupportedMediaType,
                format!("unsupported patch type {:?}", r.patch_type),
            )
        })?;
        let patched = apply_patch(
            kind,
            &current.to_json(),
            ptype,
            &r.patch,
            &PatchOptions {
                field_manager: opts.field_manager.clone(),
                force: r.force,
                now: String::new(),
                subresource: status.then(|| "status".to_string()),
            },
        )?;
        let (obj, _) = Object::from_json(kind, &patched, opts.field_validation)?;
        let obj = conversion::to_storage(obj)?;
        self.registry
            .update(stored, &r.namespace, &r.name, obj, opts, status)
            .await
    }

    async fn do_update(
        &self,
        user: Result<UserInfo, ApiError>,
        r: pb::UpdateRequest,
        forced_sub: Option<&str>,
    ) -> Result<pb::ObjectResponse, ApiError> {
        let user = user?;
        let (kind, sub) = resolve_for_write(r.resource.as_ref())?;
        let sub = forced_sub.map(str::to_string).unwrap_or(sub);
        self.authorize(&user, "update", kind, &sub, &r.namespace, &r.name)?;
        crate::node_authorizer::check(
            &self.registry,
            &user,
            "update",
            kind,
            &sub,
            &r.namespace,
            &r.name,
        )
        .await?;
        let opts = write_options(r.options.as_ref(), &user)?;
        match sub.as_str() {
            "" | "status" => {
                let (obj, unknown) = decode_object(kind, r.object.as_ref(), opts.field_validation)?;
                let obj = conversion::to_storage(obj)?;
                let updated = self
                    .registry
                    .update(obj.kind, &r.namespace, &r.name, obj, &opts, sub == "status")
                    .await?;
                Ok(pb::ObjectResponse {
                    object: Some(raw_as(&updated, kind, &r.accept)?),
                    warnings: warnings(unknown),
                })
            }
            "scale" if kind.scale => {
                let body = r
                    .object
                    .as_ref()
                    .ok_or_else(|| ApiError::bad_request("object is required"))?;
                let scale = subresources::decode_body(
                    "navarch.api.autoscaling.v1.Scale",
                    &body.raw,
                    &body.content_type,
                )?;
                let updated = subresources::update_scale(
                    &self.registry,
                    kind,
                    &r.namespace,
                    &r.name,
                    &scale,
                    &opts,
                )
                .await?;
                Ok(pb::ObjectResponse {
                    object: Some(raw_json(
                        "autoscaling/v1",
                        "Scale",
                        "navarch.api.autoscaling.v1.Scale",
                        &updated,
                        &r.accept,
                    )?),
                    warnings: vec![],
                })
            }
            other => Err(ApiError::method_not_allowed(format!(
                "update is not supported on {}/{other}",
                kind.plural
            ))),
        }
    }
}

/// One watch stream: initial state if asked, then changes, bookmarks, until the client goes.
struct Watcher {
    registry: Arc<Registry>,
    /// The stored version (what the store and the cache hold).
    kind: &'static KindInfo,
    /// The version the client asked for (what it is sent).
    served: &'static KindInfo,
    namespace: String,
    filter: Filter,
    accept: String,
    allow_bookmarks: bool,
    send_initial_events: bool,
    tx: mpsc::Sender<Result<pb::WatchEvent, Status>>,
    metrics: ApiMetrics,
}

impl Watcher {
    async fn send(&self, event_type: &str, obj: &Object) -> bool {
        self.send_raw(
            event_type,
            raw_as(obj, self.served, &self.accept),
            String::new(),
        )
        .await
    }

    /// Sends an encoded object (or the error encoding it), carrying the trace context of the
    /// write that made the change.
    async fn send_raw(
        &self,
        event_type: &str,
        encoded: Result<pb::RawObject, ApiError>,
        traceparent: String,
    ) -> bool {
        let event = match encoded {
            Ok(o) => pb::WatchEvent {
                r#type: event_type.into(),
                object: Some(o),
                traceparent,
            },
            Err(e) => return self.send_error(e).await,
        };
        self.metrics.watch_events.add(1, &[]);
        self.tx.send(Ok(event)).await.is_ok()
    }

    async fn send_error(&self, e: ApiError) -> bool {
        let status = navarch_api::codec::encode_json(&e.to_status());
        let object = raw_json(
            "v1",
            "Status",
            "navarch.api.meta.v1.Status",
            &status,
            &self.accept,
        )
        .ok();
        let _ = self
            .tx
            .send(Ok(pb::WatchEvent {
                r#type: "ERROR".into(),
                object,
                traceparent: String::new(),
            }))
            .await;
        false
    }

    async fn run(self, revision: i64) {
        let mut last = revision;
        let initial = revision == 0 || self.send_initial_events;
        if initial {
            let opts = ListOptions {
                resource_version: if revision == 0 {
                    String::new()
                } else {
                    revision.to_string()
                },
                resource_version_match: if revision == 0 {
                    String::new()
                } else {
                    "Exact".into()
                },
                ..Default::default()
            };
            let mut opts = opts;
            loop {
                match self.registry.list(self.kind, &self.namespace, &opts).await {
                    Ok(page) => {
                        for obj in &page.items {
                            if self.filter.matches(obj) && !self.send("ADDED", obj).await {
                                return;
                            }
                        }
                        last = page.resource_version;
                        if page.continue_token.is_empty() {
                            break;
                        }
                        opts.continue_token = page.continue_token;
                    }
                    Err(e) => {
                        self.send_error(e).await;
                        return;
                    }
                }
            }
            if self.send_initial_events
                && self.allow_bookmarks
                && !self
                    .send("BOOKMARK", &subresources::bookmark(self.served, last, true))
                    .await
            {
                return;
            }
        } else {
            let compacted = self.registry.store().compacted_revision();
            if revision < compacted {
                self.send_error(ApiError::expired(format!(
                    "too old resource version: {revision} ({compacted})"
                )))
                .await;
                return;
            }
        }
        let prefix = registry::list_prefix(self.kind, &self.namespace);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        // Changes after `last`: from the watch cache, or from the store when `last` is older
        // than the cache's buffer.
        type Events = Pin<Box<dyn Stream<Item = Result<Arc<CacheEvent>, ApiError>> + Send>>;
        let mut events: Events = match self.registry.cache().subscribe(last) {
            Some((replay, rx)) => {
                // A lagging receiver ends the stream; the client re-watches from its last revision.
                let live = tokio_stream::wrappers::BroadcastStream::new(rx)
                    .take_while(|r| futures::future::ready(r.is_ok()))
                    .filter_map(|r| futures::future::ready(r.ok().map(Ok)));
                Box::pin(futures::stream::iter(replay.into_iter().map(Ok)).chain(live))
            }
            None => match self.registry.cache().store_watch(&prefix, last).await {
                Ok(stream) => Box::pin(stream.filter_map(|ev| {
                    futures::future::ready(match ev {
                        Ok(ev) => decode_event(&ev).map(|e| Ok(Arc::new(e))),
                        Err(e) => Some(Err(registry::store_error(e))),
                    })
                })),
                Err(e) => {
                    self.send_error(e).await;
                    return;
                }
            },
        };
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        if ev.revision <= last { continue; }
                        last = ev.revision;
                        if !self.deliver(&prefix, &ev).await { return; }
                    }
                    Some(Err(e)) => { self.send_error(e).await; return; }
                    None => return,
                },
                _ = ticker.tick() => {
                    if self.allow_bookmarks && !self.send("BOOKMARK", &subresources::bookmark(self.served, last, false)).await { return; }
                }
                _ = self.tx.closed() => return,
                _ = self.registry.cache().closed() => return,
            }
        }
    }

    /// Sends one change as the watcher sees it through its filter: an object entering the
    /// filter is ADDED, leaving it DELETED.
    async fn deliver(&self, prefix: &str, ev: &CacheEvent) -> bool {
        if !ev.key.starts_with(prefix) {
            return true;
        }
        let everything = self.filter.is_everything();
        let now = !ev.deleted && (everything || self.filter.matches_attrs(ev.attrs()));
        let before = ev.had_prev()
            && (everything
                || ev
                    .prev_attrs()
                    .is_some_and(|p| self.filter.matches_attrs(p)));
        let event_type = match (ev.deleted, before, now) {
            (true, true, _) => "DELETED",
            (true, false, _) => return true,
            (false, true, true) => "MODIFIED",
            (false, false, true) => "ADDED",
            (false, true, false) => "DELETED",
            (false, false, false) => return true,
        };
        let traceparent = if navarch_telemetry::traces::exporting() {
            crate::trace_links::write_links()
                .recall(&ev.key)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let encoded = ev.encoded(self.served, &self.accept, |ev| {
            raw_stored(
                ev.kind,
                &ev.stored,
                ev.revision,
                self.served,
                &self.accept,
                || ev.object(),
            )
        });
        self.send_raw(event_type, encoded, traceparent).await
    }
}
