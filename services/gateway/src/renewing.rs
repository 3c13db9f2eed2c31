//! Connections that present a [`RenewableIdentity`]: TLS done here (tokio-rustls) under
//! tonic, so each new connection takes the current certificate, and every connection made
//! with an older certificate is closed when it is replaced; the channel reconnects with the
//! new one (in-flight calls on the old connection fail once and are retried by their owners,
//! as with the kubelet's certificate rotation).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use navarch_pki::RenewableIdentity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Changed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A TLS stream that fails (and so closes) once its identity is renewed.
pub struct Expiring {
    inner: TlsStream<TcpStream>,
    renewed: Changed,
    closed: bool,
}

impl Expiring {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closed || self.renewed.as_mut().poll(cx).is_ready() {
            self.closed = true;
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "client certificate renewed: reconnecting",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Expiring {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Expiring {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connects `host:port` over TLS with `identity`, verifying the server as `server_name`.
pub fn connector(
    identity: Arc<RenewableIdentity>,
    config: Arc<rustls::ClientConfig>,
    server_name: String,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<Expiring>,
    Error = io::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: http::Uri| {
        let (identity, config, server_name) =
            (identity.clone(), config.clone(), server_name.clone());
        async move {
            let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            // Subscribed before the handshake: a renewal during it closes this one too.
            let mut renewed = identity.renewed();
            renewed.borrow_and_update();
            let name = rustls::pki_types::ServerName::try_from(server_name)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let inner = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            let renewed: Changed = Box::pin(async move {
                let _ = renewed.changed().await;
            });
            Ok(hyper_util::rt::TokioIo::new(Expiring {
                inner,
                renewed,
                closed: false,
            }))
        }
    })
}

/// The plain-HTTP/2 endpoint for `url` (`https://host:port`) and the connector that makes its
/// connections TLS with `identity`, trusting the CAs in `ca_pem`. IP addresses are checked
/// as `localhost`, which every serving certificate of the cluster carries.
pub fn endpoint(
    url: &str,
    ca_pem: &str,
    identity: Arc<RenewableIdentity>,
) -> Result<
    (
        tonic::transport::Endpoint,
        impl tower::Service<
            http::Uri,
            Response = hyper_util::rt::TokioIo<Expiring>,
            Error = io::Error,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
    ),
    navarch_api::ApiError,
> {
    use navarch_api::ApiError;
    let invalid = |e: String| ApiError::bad_request(format!("invalid gateway URL {url}: {e}"));
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
    let host = uri
        .host()
        .unwrap_or("localhost")
        .trim_matches(['[', ']'])
        .to_string();
    let server_name = if host.parse::<std::net::IpAddr>().is_ok() {
        "localhost".to_string()
    } else {
        host
    };
    let config = identity
        .client_config(ca_pem)
        .map_err(|e| ApiError::internal(format!("TLS configuration: {e}")))?;
    let plain = format!(
        "http://{}",
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    let endpoint = tonic::transport::Endpoint::from_shared(plain)
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok((endpoint, connector(identity, config, server_name)))
}
