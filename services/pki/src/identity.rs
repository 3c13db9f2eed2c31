//! A client certificate that can be replaced while connections use it: what components and
//! agents present, renewed before it expires. New TLS handshakes take the current
//! certificate; [`RenewableIdentity::renewed`] tells connection owners to close the old
//! connections (as the kubelet does after a rotation), so nothing keeps authenticating with
//! a certificate about to expire.

use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};

use crate::error::{PkiError, Result};

/// A client certificate and key, swappable.
pub struct RenewableIdentity {
    current: RwLock<(Arc<CertifiedKey>, String, String)>,
    renewed: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for RenewableIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenewableIdentity")
    }
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>> {
    let cert =
        crate::authority::decode_cert_pem(cert_pem).map_err(|reason| PkiError::InvalidPem {
            what: "client certificate",
            reason,
        })?;
    let key = crate::authority::decode_key_pem(key_pem).map_err(|reason| PkiError::InvalidPem {
        what: "client key",
        reason,
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signer)))
}

impl RenewableIdentity {
    pub fn new(cert_pem: String, key_pem: String) -> Result<Arc<Self>> {
        let key = certified(&cert_pem, &key_pem)?;
        Ok(Arc::new(Self {
            current: RwLock::new((key, cert_pem, key_pem)),
            renewed: tokio::sync::watch::channel(0).0,
        }))
    }

    /// Presents `cert_pem`/`key_pem` from the next handshake on, and tells the connection
    /// owners.
    pub fn set(&self, cert_pem: String, key_pem: String) -> Result<()> {
        let key = certified(&cert_pem, &key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (key, cert_pem, key_pem);
        self.renewed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The certificate and key now, PEM.
    pub fn pem(&self) -> (String, String) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.1.clone(), current.2.clone())
    }

    /// Changes each time the certificate is replaced.
    pub fn renewed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.renewed.subscribe()
    }

    /// A TLS client configuration trusting the CAs in `ca_pem` (a bundle), speaking HTTP/2,
    /// presenting this identity.
    pub fn client_config(self: &Arc<Self>, ca_pem: &str) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        for cert in <CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            ca_pem.as_bytes(),
        ) {
            let cert = cert.map_err(|e| PkiError::InvalidPem {
                what: "CA bundle",
                reason: e.to_string(),
            })?;
            roots.add(cert)?;
        }
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_client_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        // A resumed session keeps the identity of the handshake it resumes: every new
        // connection must present the current certificate.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

impl ResolvesClientCert for RenewableIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone(),
        )
    }

    fn has_certs(&self) -> bool {
        true
    }
}
