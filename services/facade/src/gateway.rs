//! The facade's side of the gateway: one shared gRPC channel, and per request a client that
//! forwards the caller's `Authorization` header. The facade holds no credentials: the gateway
//! authenticates and authorizes every call.

use std::time::Duration;

use http::HeaderMap;
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;
use navarch_api::gateway::v1::gateway_client::GatewayClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The header the TLS listener sets to the caller's client certificate (base64 DER), after
/// removing any a caller sent; forwarded to the gateway, which believes it only from the
/// facade's own connection (`navarch_gateway::auth::FRONT_PROXY_USER`).
pub const CLIENT_CERT_HEADER: &str = "navarch-client-certificate";

/// Adds the caller's credentials to a gateway call.
#[derive(Clone)]
pub struct ForwardAuth {
    authorization: Option<MetadataValue<Ascii>>,
    certificate: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for ForwardAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.authorization {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if let Some(v) = &self.certificate {
            req.metadata_mut().insert(CLIENT_CERT_HEADER, v.clone());
        }
        if navarch_telemetry::traces::exporting() {
            navarch_telemetry::traces::inject_grpc(req.metadata_mut());
        }
        Ok(req)
    }
}

/// A gateway client acting for one HTTP caller.
pub type Gateway = GatewayClient<InterceptedService<Channel, ForwardAuth>>;

/// Largest gateway answer the facade reads (lists of many objects).
const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

/// The client for a request: the caller's client certificate and `Authorization` header are
/// forwarded as they are (a certificate or a bearer token authenticates; anything else is
/// rejected by the gateway as Unauthorized).
pub fn for_request(channel: &Channel, headers: &HeaderMap) -> Gateway {
    let forward = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| MetadataValue::try_from(v.trim()).ok())
    };
    let auth = ForwardAuth {
        authorization: forward(http::header::AUTHORIZATION.as_str()),
        certificate: forward(CLIENT_CERT_HEADER),
    };
    GatewayClient::with_interceptor(channel.clone(), auth)
        .max_decoding_message_size(MAX_DECODE_BYTES)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// A lazily connected channel to the gateway at `url` (`https://host:port`), verifying its
/// certificate against the cluster CA. IP addresses are checked as `localhost`, which every
/// serving certificate of the cluster carries. `identity` is the facade's own client
/// certificate (renewed while it runs), which lets the gateway believe forwarded
/// certificates.
pub fn channel(
    url: &str,
    ca_pem: &str,
    identity: Option<std::sync::Arc<navarch_pki::RenewableIdentity>>,
) -> Result<Channel, ApiError> {
    if let Some(identity) = identity {
        let (endpoint, connector) = navarch_gateway::renewing::endpoint(url, ca_pem, identity)?;
        return Ok(endpoint.connect_with_connector_lazy(connector));
    }
    navarch_pki::ensure_crypto_provider();
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| ApiError::bad_request(format!("invalid gateway URL {url}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let endpoint = if url.starts_with("https://") {
        let host = endpoint.uri().host().unwrap_or("localhost").to_string();
        let domain = if host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
        {
            "localhost".to_string()
        } else {
            host
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
            .domain_name(domain);
        endpoint
            .tls_config(tls)
            .map_err(|e| ApiError::internal(format!("TLS configuration: {e}")))?
    } else {
        endpoint
    };
    Ok(endpoint.connect_lazy())
}

/// The gateway's name for a resource.
pub fn resource(kind: &navarch_api::kinds::KindInfo, subresource: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        group: kind.group.into(),
        version: kind.version.into(),
        resource: kind.plural.into(),
        subresource: subresource.into(),
    })
}

/// Converts a failed call. The causes' messages arrive fully formatted
/// (`spec.replicas: Invalid value: -1: …`); their prefix is taken off again so the Status the
/// facade writes carries each message exactly once.
pub fn error(status: tonic::Status) -> ApiError {
    let mut e = ApiError::from_grpc(&status);
    for cause in &mut e.causes {
        let shown = cause.to_string();
        let prefix = shown
            .strip_suffix(cause.detail.as_str())
            .unwrap_or_default()
            .trim_end_matches(": ")
            .to_string();
        if let Some(rest) = cause.detail.strip_prefix(prefix.as_str()) {
            cause.detail = rest.trim_start_matches(": ").to_string();
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use navarch_api::FieldError;

    use super::*;

    #[test]
    fn causes_survive_the_grpc_round_trip_formatted_once() {
        let sent = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![
                FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                FieldError::required("spec.selector", ""),
            ],
        );
        let back = error(tonic::Status::from(sent.clone()));
        let got = back.to_status().details.unwrap().causes;
        let want = sent.to_status().details.unwrap().causes;
        assert_eq!(got, want);
    }
}
