//! The typed gateway client every component uses (controllers, scheduler, agents, tests).
//!
//! Objects are the generated types (`navarch_api::core::v1::Pod`, …); the kind and resource
//! path come from the type. Errors come back as [`ApiError`] with their Kubernetes reason.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use navarch_api::gateway::v1 as pb;
use navarch_api::gateway::v1::gateway_client::GatewayClient;
use navarch_api::kinds::{self, KindInfo};
use navarch_api::object::content_type;
use navarch_api::{ApiError, Object};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if navarch_telemetry::traces::exporting() {
            navarch_telemetry::traces::inject_grpc(req.metadata_mut());
        }
        Ok(req)
    }
}

/// A generated type of a served kind.
pub trait Resource: Message + Default + prost::Name + Clone + Send + Sync + 'static {
    fn kind() -> &'static KindInfo {
        kinds::of::<Self>().unwrap_or_else(|| panic!("{} is not a served kind", Self::full_name()))
    }
}

impl<T: Message + Default + prost::Name + Clone + Send + Sync + 'static> Resource for T {}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    /// Progress: the stream has seen everything up to this resourceVersion.
    Bookmark(String),
}

/// List/watch parameters.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
}

/// Delete options (Kubernetes `DeleteOptions`): grace period, preconditions, propagation.
#[derive(Clone, Debug, Default)]
pub struct DeleteParams {
    /// `Some(0)` deletes at once, even a running pod.
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the object still has this UID.
    pub precondition_uid: String,
    /// Delete only at this resourceVersion.
    pub precondition_resource_version: String,
    /// `Orphan`, `Background` or `Foreground` ("" = the kind's default).
    pub propagation_policy: String,
}

/// Typed access to the gateway.
/// How a client authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// A bearer token.
    Token(String),
    /// A client certificate signed by the cluster CA (mutual TLS), PEM.
    Certificate { cert_pem: String, key_pem: String },
    /// A client certificate renewed while the client runs (see [`crate::renewing`]).
    Renewable(Arc<navarch_pki::RenewableIdentity>),
}

impl From<Arc<navarch_pki::RenewableIdentity>> for Credentials {
    fn from(identity: Arc<navarch_pki::RenewableIdentity>) -> Self {
        Self::Renewable(identity)
    }
}

impl From<&str> for Credentials {
    fn from(token: &str) -> Self {
        Self::Token(token.to_string())
    }
}

impl From<&String> for Credentials {
    fn from(token: &String) -> Self {
        Self::Token(token.clone())
    }
}

impl From<(String, String)> for Credentials {
    /// `(cert_pem, key_pem)`.
    fn from((cert_pem, key_pem): (String, String)) -> Self {
        Self::Certificate { cert_pem, key_pem }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Token(_) => "Token(..)",
            Self::Certificate { .. } => "Certificate(..)",
            Self::Renewable(_) => "Renewable(..)",
        })
    }
}

#[derive(Clone)]
pub struct Client {
    inner: GatewayClient<InterceptedService<Channel, BearerToken>>,
}

/// One page of a typed list.
#[derive(Clone, Debug)]
pub struct List<T> {
    pub items: Vec<T>,
    pub resource_version: String,
    pub continue_token: String,
}

fn resource(kind: &KindInfo, subresource: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        group: kind.group.into(),
        version: kind.version.into(),
        resource: kind.plural.into(),
        subresource: subresource.into(),
    })
}

fn decode<T: Resource>(raw: Option<pb::RawObject>) -> Result<T, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::internal("response without an object"))?;
    T::decode(raw.raw.as_slice())
        .map_err(|e| ApiError::internal(format!("decoding {}: {e}", T::full_name())))
}

/// Remembers which trace produced the change in `ev`, for whoever acts on the object next
/// (see `navarch_telemetry::traces::watch_links`).
fn remember_link(kind: &'static KindInfo, ev: &pb::WatchEvent) {
    let Some(obj) = ev
        .object
        .as_ref()
        .and_then(|raw| Object::decode(kind, &raw.raw).ok())
    else {
        return;
    };
    let meta = obj.meta();
    navarch_telemetry::traces::watch_links().remember(
        navarch_telemetry::traces::link_key(
            kind.group,
            kind.plural,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        ),
        ev.traceparent.clone(),
    );
}

fn encode<T: Resource>(obj: &T) -> Option<pb::RawObject> {
    let kind = T::kind();
    Some(pb::RawObject {
        api_version: kind.api_version(),
        kind: kind.kind.into(),
        raw: obj.encode_to_vec(),
        content_type: content_type::PROTOBUF.into(),
    })
}

fn status(e: tonic::Status) -> ApiError {
    ApiError::from_grpc(&e)
}

/// One item of [`Client::bind_all`].
#[derive(Clone, Copy, Debug)]
pub struct PodBinding<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub node: &'a str,
    /// The trace the binding continues (W3C `traceparent`), if any.
    pub traceparent: Option<&'a str>,
}

/// A `pods/binding` create of `pod` onto `node`.
fn binding_request(namespace: &str, pod: &str, node: &str) -> pb::CreateRequest {
    let binding = navarch_api::core::v1::Binding {
        metadata: Some(navarch_api::meta::v1::ObjectMeta {
            name: Some(pod.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        }),
        target: Some(navarch_api::core::v1::ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    pb::CreateRequest {
        resource: resource(
            kinds::of::<navarch_api::core::v1::Pod>().expect("pods are served"),
            "binding",
        ),
        namespace: namespace.into(),
        name: pod.into(),
        object: Some(pb::RawObject {
            api_version: "v1".into(),
            kind: "Binding".into(),
            raw: binding.encode_to_vec(),
            content_type: content_type::PROTOBUF.into(),
        }),
        ..Default::default()
    }
}

impl Client {
    /// Connects over TLS, verifying the gateway against the cluster CA (PEM), and
    /// authenticates with `credentials`: a bearer token (`&str`) or a client certificate.
    pub async fn connect(
        url: &str,
        ca_pem: &str,
        credentials: impl Into<Credentials>,
    ) -> Result<Self, ApiError> {
        navarch_pki::ensure_crypto_provider();
        let credentials = credentials.into();
        if let Credentials::Renewable(identity) = &credentials {
            return Self::connect_renewable(url, ca_pem, identity.clone()).await;
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| ApiError::bad_request(format!("invalid gateway URL {url}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let endpoint = if url.starts_with("https://") {
            let domain = endpoint.uri().host().unwrap_or("localhost").to_string();
            let domain = if domain.parse::<std::net::IpAddr>().is_ok() {
                "localhost".to_string()
            } else {
                domain
            };
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
                .domain_name(domain);
            if let Credentials::Certificate { cert_pem, key_pem } = &credentials {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
            }
            endpoint
                .tls_config(tls)
                .map_err(|e| ApiError::internal(format!("TLS configuration: {e}")))?
        } else {
            endpoint
        };
        let channel = endpoint.connect().await.map_err(|e| {
            ApiError::unavailable(format!("cannot connect to the gateway at {url}: {e}"))
        })?;
        let token = match &credentials {
            Credentials::Token(token) => token.as_str(),
            _ => "",
        };
        Ok(Self::from_channel(channel, token))
    }

    /// [`Self::connect`] presenting a renewable identity: TLS under tonic, through
    /// [`crate::renewing::connector`].
    async fn connect_renewable(
        url: &str,
        ca_pem: &str,
        identity: Arc<navarch_pki::RenewableIdentity>,
    ) -> Result<Self, ApiError> {
        let (endpoint, connector) = crate::renewing::endpoint(url, ca_pem, identity)?;
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("cannot connect to the gateway at {url}: {e}"))
            })?;
        Ok(Self::from_channel(channel, ""))
    }

    /// Wraps an established channel.
    pub fn from_channel(channel: Channel, token: &str) -> Self {
        let token = (!token.is_empty())
            .then(|| format!("Bearer {token}").parse().expect("tokens are ASCII"));
        let inner = GatewayClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024);
        Self { inner }
    }

    /// The raw gRPC client, for untyped calls (JSON bodies, any kind).
    pub fn raw(&self) -> GatewayClient<InterceptedService<Channel, BearerToken>> {
        self.inner.clone()
    }

    pub async fn get<T: Resource>(&self, namespace: &str, name: &str) -> Result<T, ApiError> {
        self.get_sub(T::kind(), "", namespace, name).await
    }

    /// A get of `kind` (or its `subresource`), decoded as `T`.
    async fn get_sub<T: Resource>(
        &self,
        kind: &KindInfo,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<T, ApiError> {
        let req = pb::GetRequest {
            resource: resource(kind, subresource),
            namespace: namespace.into(),
            name: name.into(),
            accept: String::new(),
        };
        decode(
            self.inner
                .clone()
                .get(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    pub async fn list<T: Resource>(
        &self,
        namespace: &str,
        params: &ListParams,
    ) -> Result<List<T>, ApiError> {
        let req = pb::ListRequest {
            resource: resource(T::kind(), ""),
            namespace: namespace.into(),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            limit: params.limit,
            r#continue: params.continue_token.clone(),
            ..Default::default()
        };
        let resp = self
            .inner
            .clone()
            .list(req)
            .await
            .map_err(status)?
            .into_inner();
        Ok(List {
            items: resp
                .items
                .into_iter()
                .map(|o| decode(Some(o)))
                .collect::<Result<_, _>>()?,
            resource_version: resp.resource_version,
            continue_token: resp.r#continue,
        })
    }

    pub async fn create<T: Resource>(&self, namespace: &str, obj: &T) -> Result<T, ApiError> {
        let req = pb::CreateRequest {
            resource: resource(T::kind(), ""),
            namespace: namespace.into(),
            object: encode(obj),
            ..Default::default()
        };
        decode(
            self.inner
                .clone()
                .create(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    pub async fn update<T: Resource>(
        &self,
        namespace: &str,
        name: &str,
        obj: &T,
    ) -> Result<T, ApiError> {
        let req = pb::UpdateRequest {
            resource: resource(T::kind(), ""),
            namespace: namespace.into(),
            name: name.into(),
            object: encode(obj),
            ..Default::default()
        };
        decode(
            self.inner
                .clone()
                .update(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    pub async fn update_status<T: Resource>(
        &self,
        namespace: &str,
        name: &str,
        obj: &T,
    ) -> Result<T, ApiError> {
        let req = pb::UpdateRequest {
            resource: resource(T::kind(), "status"),
            namespace: namespace.into(),
            name: name.into(),
            object: encode(obj),
            ..Default::default()
        };
        decode(
            self.inner
                .clone()
                .update_status(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    /// Patches with one of the Kubernetes patch content types.
    pub async fn patch<T: Resource>(
        &self,
        namespace: &str,
        name: &str,
        patch_type: &str,
        patch: &[u8],
        field_manager: &str,
    ) -> Result<T, ApiError> {
        let req = pb::PatchRequest {
            resource: resource(T::kind(), ""),
            namespace: namespace.into(),
            name: name.into(),
            patch_type: patch_type.into(),
            patch: patch.to_vec(),
            options: Some(pb::WriteOptions {
                field_manager: field_manager.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        decode(
            self.inner
                .clone()
                .patch(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    /// Binds a pod to a node through the `pods/binding` subresource (authorized as `create` on
    /// `pods/binding`). Fails with Conflict if the pod is already bound or being deleted.
    /// A service-account token (TokenRequest on `serviceaccounts/token`) for `account`,
    /// for `audiences` (empty: the API), valid `seconds`, bound to `pod` (`(name, uid)`)
    /// when given. Returns the token and its expiry (RFC 3339).
    pub async fn request_token(
        &self,
        namespace: &str,
        account: &str,
        audiences: &[String],
        seconds: i64,
        pod: Option<(&str, &str)>,
    ) -> Result<(String, String), ApiError> {
        use navarch_api::authentication::v1 as authn;
        let request = authn::TokenRequest {
            spec: Some(authn::TokenRequestSpec {
                audiences: audiences.to_vec(),
                expiration_seconds: Some(seconds),
                bound_object_ref: pod.map(|(name, uid)| authn::BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.into()),
                    uid: Some(uid.into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = pb::CreateRequest {
            resource: resource(
                kinds::of::<navarch_api::core::v1::ServiceAccount>()
                    .expect("service accounts are served"),
                "token",
            ),
            namespace: namespace.into(),
            name: account.into(),
            object: Some(pb::RawObject {
                api_version: "authentication.k8s.io/v1".into(),
                kind: "TokenRequest".into(),
                raw: request.encode_to_vec(),
                content_type: content_type::PROTOBUF.into(),
            }),
            ..Default::default()
        };
        let raw = self
            .inner
            .clone()
            .create(req)
            .await
            .map_err(status)?
            .into_inner()
            .object
            .ok_or_else(|| ApiError::internal("TokenRequest answered without an object"))?;
        let answer = authn::TokenRequest::decode(raw.raw.as_slice())
            .map_err(|e| ApiError::internal(format!("decoding a TokenRequest: {e}")))?;
        let status = answer.status.unwrap_or_default();
        Ok((
            status.token.unwrap_or_default(),
            status.expiration_timestamp.unwrap_or_default(),
        ))
    }

    /// A node's client certificate for the key of `csr_pem` (PEM); see
    /// [`crate::bootstrap`].
    pub async fn request_node_credential(&self, csr_pem: &str) -> Result<String, ApiError> {
        Ok(self
            .inner
            .clone()
            .request_node_credential(pb::NodeCredentialRequest {
                csr_pem: csr_pem.into(),
            })
            .await
            .map_err(status)?
            .into_inner()
            .certificate_pem)
    }

    pub async fn bind(&self, namespace: &str, pod: &str, node: &str) -> Result<(), ApiError> {
        self.inner
            .clone()
            .create(binding_request(namespace, pod, node))
            .await
            .map_err(status)?;
        Ok(())
    }

    /// Binds several pods in one call, each checked and written as [`Client::bind`] would:
    /// one result per item, in order.
    pub async fn bind_all(
        &self,
        bindings: &[PodBinding<'_>],
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        let items = bindings
            .iter()
            .map(|b| pb::create_bindings_request::Item {
                request: Some(binding_request(b.namespace, b.pod, b.node)),
                traceparent: b.traceparent.unwrap_or_default().to_string(),
            })
            .collect();
        let results = self
            .inner
            .clone()
            .create_bindings(pb::CreateBindingsRequest { items })
            .await
            .map_err(status)?
            .into_inner()
            .results;
        if results.len() != bindings.len() {
            return Err(ApiError::internal(format!(
                "CreateBindings answered {} results for {} bindings",
                results.len(),
                bindings.len()
            )));
        }
        Ok(results
            .iter()
            .map(|s| match s.status.as_deref() {
                Some("Success") => Ok(()),
                _ => Err(ApiError::from_status(s)),
            })
            .collect())
    }

    /// The `scale` subresource of a Deployment, ReplicaSet or StatefulSet (any kind with
    /// [`KindInfo::scale`]).
    pub async fn get_scale(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
    ) -> Result<navarch_api::autoscaling::v1::Scale, ApiError> {
        self.get_sub(kind, "scale", namespace, name).await
    }

    /// Writes `spec.replicas` through the `scale` subresource (a conflict if `scale` carries
    /// a stale resourceVersion).
    pub async fn update_scale(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        scale: &navarch_api::autoscaling::v1::Scale,
    ) -> Result<navarch_api::autoscaling::v1::Scale, ApiError> {
        let name = scale
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        let req = pb::UpdateRequest {
            resource: resource(kind, "scale"),
            namespace: namespace.into(),
            name,
            object: Some(pb::RawObject {
                api_version: "autoscaling/v1".into(),
                kind: "Scale".into(),
                raw: scale.encode_to_vec(),
                content_type: content_type::PROTOBUF.into(),
            }),
            ..Default::default()
        };
        decode(
            self.inner
                .clone()
                .update(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    /// Sends this node's resource usage (served as metrics.k8s.io until the next report).
    pub async fn report_resource_usage(
        &self,
        report: pb::ResourceUsageReport,
    ) -> Result<(), ApiError> {
        self.inner
            .clone()
            .report_resource_usage(report)
            .await
            .map_err(status)?;
        Ok(())
    }

    /// Deletes; returns the object as the gateway last saw it (with a deletionTimestamp when
    /// the deletion is graceful).
    pub async fn delete<T: Resource>(&self, namespace: &str, name: &str) -> Result<T, ApiError> {
        let req = pb::DeleteRequest {
            resource: resource(T::kind(), ""),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        };
        decode(
            self.inner
                .clone()
                .delete(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    /// Deletes with explicit options (grace period, UID/resourceVersion preconditions).
    pub async fn delete_with<T: Resource>(
        &self,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<T, ApiError> {
        let req = pb::DeleteRequest {
            resource: resource(T::kind(), ""),
            namespace: namespace.into(),
            name: name.into(),
            grace_period_seconds: params.grace_period_seconds,
            propagation_policy: params.propagation_policy.clone(),
            precondition_uid: params.precondition_uid.clone(),
            precondition_resource_version: params.precondition_resource_version.clone(),
            ..Default::default()
        };
        decode(
            self.inner
                .clone()
                .delete(req)
                .await
                .map_err(status)?
                .into_inner()
                .object,
        )
    }

    /// Watches changes after `resource_version` ("" = current state as Added events first).
    /// A container's log (`pods/log`), as chunks of bytes; with `follow` it goes on until
    /// the container stops or the stream is dropped.
    pub async fn pod_logs(
        &self,
        request: pb::PodLogsRequest,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<Vec<u8>, ApiError>> + Send>>, ApiError> {
        let stream = self
            .inner
            .clone()
            .pod_logs(request)
            .await
            .map_err(status)?
            .into_inner();
        Ok(Box::pin(stream.map(|c| c.map(|c| c.data).map_err(status))))
    }

    /// Opens this node's tunnel (see `crate::tunnel`): `up` starts with the hello; the
    /// requests for the node arrive on the returned stream.
    pub async fn agent_tunnel(
        &self,
        up: impl Stream<Item = pb::TunnelUp> + Send + 'static,
    ) -> Result<tonic::Streaming<pb::TunnelDown>, ApiError> {
        Ok(self
            .inner
            .clone()
            .agent_tunnel(up)
            .await
            .map_err(status)?
            .into_inner())
    }

    pub async fn watch<T: Resource>(
        &self,
        namespace: &str,
        resource_version: &str,
        params: &ListParams,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<WatchEvent<T>, ApiError>> + Send>>, ApiError> {
        let req = pb::WatchRequest {
            resource: resource(T::kind(), ""),
            namespace: namespace.into(),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            resource_version: resource_version.into(),
            allow_bookmarks: true,
            ..Default::default()
        };
        let stream = self
            .inner
            .clone()
            .watch(req)
            .await
            .map_err(status)?
            .into_inner();
        Ok(Box::pin(stream.map(|ev| {
            let ev = ev.map_err(status)?;
            if !ev.traceparent.is_empty() {
                remember_link(T::kind(), &ev);
            }
            match ev.r#type.as_str() {
                "ADDED" => Ok(WatchEvent::Added(decode(ev.object)?)),
                "MODIFIED" => Ok(WatchEvent::Modified(decode(ev.object)?)),
                "DELETED" => Ok(WatchEvent::Deleted(decode(ev.object)?)),
                "BOOKMARK" => {
                    let kind = T::kind();
                    let raw = ev
                        .object
                        .ok_or_else(|| ApiError::internal("bookmark without object"))?;
                    let obj = Object::decode(kind, &raw.raw)?;
                    Ok(WatchEvent::Bookmark(
                        obj.meta().resource_version.unwrap_or_default(),
                    ))
                }
                "ERROR" => {
                    let raw = ev
                        .object
                        .ok_or_else(|| ApiError::internal("error event without status"))?;
                    let s = navarch_api::meta::v1::Status::decode(raw.raw.as_slice())
                        .map_err(|e| ApiError::internal(format!("decoding watch error: {e}")))?;
                    Err(ApiError::from_status(&s))
                }
                other => Err(ApiError::internal(format!(
                    "unknown watch event type {other:?}"
                ))),
            }
        })))
    }
}
