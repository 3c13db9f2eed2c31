//! rustls and tonic configurations built from the cluster PKI, always on the ring provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::Result;

/// Installs rustls's ring provider as the process default, unless one is already installed.
///
/// Several crates may call this; only the first call installs anything. Needed by code that
/// builds rustls configurations through `ServerConfig::builder()` (tonic's server does).
pub fn ensure_crypto_provider() {
    // `Err` means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cas: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone())?;
    }
    Ok(Arc::new(roots))
}

/// A server configuration presenting `chain`/`key` that verifies client certificates against
/// `ca` when a client presents one and accepts clients that present none.
pub(crate) fn server_config(
    ca: &[CertificateDer<'static>],
    serving: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, ring())
        .allow_unauthenticated()
        .build()?;
    Ok(ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving))
}

/// A client configuration that trusts only `ca` and presents no client certificate.
pub(crate) fn client_config(ca: &[CertificateDer<'static>]) -> Result<ClientConfig> {
    Ok(ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth())
}

/// A client configuration that trusts only `ca` and presents `chain`/`key`.
pub(crate) fn client_config_with_cert(
    ca: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig> {
    Ok(ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)?)
}

/// A verifier that requires a client certificate chaining to `ca`.
pub(crate) fn client_verifier(
    ca: &[CertificateDer<'static>],
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    Ok(WebPkiClientVerifier::builder_with_provider(roots(ca)?, ring()).build()?)
}
