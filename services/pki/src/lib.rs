//! The cluster PKI: a certificate authority kept in the data dir's `pki/` folder, the API
//! serving certificate it signs, client certificates on demand, and the rustls and tonic
//! configurations that every TLS endpoint and client of the cluster uses.

mod authority;
mod client;
mod error;
mod files;
mod identity;
mod sans;
mod serving;
mod tls;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

pub use authority::{
    CA_CERT_FILE, CA_CROSS_FILE, CA_KEY_FILE, CA_VALIDITY, finish_ca_rotation, rotate_ca,
};
pub use client::{
    ClientVerifier, SA_KEY_FILE, SigningKey, Subject, client_csr, client_csr_subject, issued_by,
    not_after, pem_to_der, subject, validity,
};
pub use error::{PkiError, Result};
pub use identity::RenewableIdentity;
pub use sans::{DEFAULT_DNS_SANS, SubjectAltName, serving_sans};
pub use serving::{RENEW_BEFORE, SERVER_CERT_FILE, SERVER_KEY_FILE, SERVER_VALIDITY, renew_window};
pub use tls::ensure_crypto_provider;

use authority::ClusterCa;

/// The cluster CA plus the serving certificate, loaded from (or created in) one directory.
pub struct ClusterPki {
    dir: PathBuf,
    ca: ClusterCa,
    sans: Vec<SubjectAltName>,
    serving: Arc<serving::ServingCert>,
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
}

impl ClusterPki {
    /// Opens the PKI in `dir`, creating the CA (`ca.crt`, `ca.key`) on first start and
    /// (re-)issuing the serving certificate (`server.crt`, `server.key`) when it is missing,
    /// expires within [`RENEW_BEFORE`], was not signed by the CA, or lacks one of the
    /// [`serving_sans`] for `extra_sans` (each a DNS name or an IP address).
    pub fn load_or_create(dir: &Path, extra_sans: &[String]) -> Result<Self> {
        Self::load_or_create_with(dir, extra_sans, SERVER_VALIDITY)
    }

    /// [`Self::load_or_create`] issuing serving certificates valid for `validity` (renewed
    /// within [`renew_window`] of expiry).
    pub fn load_or_create_with(
        dir: &Path,
        extra_sans: &[String],
        validity: Duration,
    ) -> Result<Self> {
        let sans = serving_sans(extra_sans)?;
        files::ensure_dir(dir)?;
        let ca = ClusterCa::load_or_create(dir)?;
        let issued = serving::load_or_issue(dir, &ca, &sans, validity)?;
        let serving = Arc::new(serving::ServingCert::new(issued, ca.cross.clone())?);
        let server_config = tls::server_config(&ca.trusted, serving.clone())?;
        let client_config = tls::client_config(&ca.trusted)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca,
            sans,
            serving,
            server_config: Arc::new(server_config),
            client_config: Arc::new(client_config),
        })
    }

    /// Re-issues the serving certificate when it is within [`renew_window`] of expiry (for
    /// `validity`) or otherwise unfit, writes it, and swaps it into every listener built from
    /// [`Self::server_config`] without a restart. Returns why it was renewed, or `None`.
    pub fn renew_serving(&self, validity: Duration) -> Result<Option<String>> {
        let reason = self.serving.with_pem(|pem| {
            serving::reissue_reason_within(
                pem,
                &self.ca.cert_der,
                &self.sans,
                time::OffsetDateTime::now_utc(),
                renew_window(validity),
            )
        });
        let Some(reason) = reason else {
            return Ok(None);
        };
        let issued = self
            .ca
            .issue_serving("navarch-server", &self.sans, validity)?;
        files::write_atomic(
            &self.dir.join(SERVER_KEY_FILE),
            &issued.key_pem,
            files::PRIVATE_MODE,
        )?;
        files::write_atomic(
            &self.dir.join(SERVER_CERT_FILE),
            &issued.cert_pem,
            files::PUBLIC_MODE,
        )?;
        self.serving.set(issued)?;
        tracing::info!(reason, "renewed the serving certificate");
        Ok(Some(reason))
    }

    /// The directory holding the PKI files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca.cert_der
    }

    /// The serving certificate now, PEM.
    pub fn server_cert_pem(&self) -> String {
        self.serving.pem().0
    }

    /// The serving certificate's private key now, PEM (PKCS#8).
    pub fn server_key_pem(&self) -> String {
        self.serving.pem().1
    }

    /// Issues a client certificate signed by the cluster CA with subject
    /// `CN=common_name[, O=group]` (Kubernetes reads CN as the user and O as the group),
    /// valid for `validity`. Returns `(cert_pem, key_pem)`.
    ///
    /// At most one group is supported: rcgen encodes one value per subject attribute type,
    /// so a second `O=` would silently replace the first; more than one is an error.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<(String, String)> {
        let issued = self.ca.issue_client(common_name, groups, validity)?;
        tracing::info!(common_name, ?groups, "issued client certificate");
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// A rustls server configuration presenting the serving certificate and advertising
    /// `alpn`. Client certificates are optional; one that is presented must chain to the CA.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = (*self.server_config).clone();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// A rustls client configuration that trusts the cluster CA (and nothing else).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client_config)
    }

    /// A rustls client configuration that trusts the cluster CA and presents `cert_pem` (with
    /// its `key_pem`) as a client certificate, for mutual TLS.
    pub fn client_config_with_cert(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Arc<ClientConfig>> {
        let cert = authority::decode_cert_pem(cert_pem).map_err(|reason| PkiError::InvalidPem {
            what: "client certificate",
            reason,
        })?;
        let key = authority::decode_key_pem(key_pem).map_err(|reason| PkiError::InvalidPem {
            what: "client key",
            reason,
        })?;
        let chain = vec![cert];
        Ok(Arc::new(tls::client_config_with_cert(
            &self.ca.trusted,
            chain,
            key,
        )?))
    }

    /// TLS settings for a tonic server: the serving certificate, with optional client
    /// certificates verified against the CA.
    pub fn tonic_server_tls(&self) -> ServerTlsConfig {
        // tonic builds its rustls config through the process-default provider.
        ensure_crypto_provider();
        let (cert, key) = self.serving.pem();
        ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(&self.ca.cert_pem))
            .client_auth_optional(true)
    }

    /// TLS settings for a tonic client that trusts the CA and expects the server to present a
    /// certificate for `domain` (e.g. `localhost`).
    pub fn tonic_client_tls(&self, domain: &str) -> ClientTlsConfig {
        ensure_crypto_provider();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca.cert_pem))
            .domain_name(domain)
    }
}

impl fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}
