//! Client certificates: the identities the components and the admin kubeconfig present, and
//! how a presented one is read back (CN = user, O = groups, as Kubernetes reads them).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use time::OffsetDateTime;

use crate::authority::IssuedPem;
use crate::error::{PkiError, Result};
use crate::files::{self, PRIVATE_MODE, PUBLIC_MODE};
use crate::{ClusterPki, serving};

/// The subject of a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// CN: the user name.
    pub common_name: String,
    /// Every O: the groups.
    pub organizations: Vec<String>,
    /// When the certificate stops being valid (seconds since the epoch).
    pub not_after: i64,
}

/// Reads the subject of a DER certificate. Any input is safe: garbage is an error.
pub fn subject(der: &[u8]) -> std::result::Result<Subject, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    subject_of(&cert)
}

fn subject_of(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> std::result::Result<Subject, String> {
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_string)
            .map_err(|e| format!("unreadable subject attribute: {e}"))
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or("the certificate has no common name")
        .map_err(String::from)
        .and_then(text)?;
    if common_name.is_empty() {
        return Err("the certificate's common name is empty".into());
    }
    let organizations = cert
        .subject()
        .iter_organization()
        .map(text)
        .collect::<std::result::Result<_, _>>()?;
    Ok(Subject {
        common_name,
        organizations,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Verifies a client certificate chain against the cluster CA, as the TLS handshake does,
/// for certificates that arrive another way (forwarded by the API facade).
#[derive(Clone)]
pub struct ClientVerifier(Arc<dyn ClientCertVerifier>);

impl ClientVerifier {
    /// Whether `end_entity` (DER) is valid now and chains to the CA, for client auth.
    pub fn verify(&self, end_entity: &[u8]) -> std::result::Result<(), String> {
        self.0
            .verify_client_cert(&CertificateDer::from(end_entity), &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientVerifier")
    }
}

impl ClusterPki {
    /// A verifier of client certificates signed by this CA.
    pub fn client_verifier(&self) -> Result<ClientVerifier> {
        Ok(ClientVerifier(crate::tls::client_verifier(
            &self.ca().trusted,
        )?))
    }

    /// The client certificate kept as `<stem>.crt`/`<stem>.key` in the PKI dir: reused while
    /// it is signed by the current CA, names `common_name` and `groups` and is not within
    /// [`crate::RENEW_BEFORE`] of expiry; issued (for `validity`) and written otherwise.
    /// Returns `(cert_pem, key_pem)`.
    pub fn load_or_issue_client(
        &self,
        stem: &str,
        common_name: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<(String, String)> {
        let cert_path = self.dir().join(format!("{stem}.crt"));
        let key_path = self.dir().join(format!("{stem}.key"));
        if let (Some(cert_pem), Some(key_pem)) = (
            files::read_optional(&cert_path)?,
            files::read_optional(&key_path)?,
        ) {
            let stored = IssuedPem { cert_pem, key_pem };
            let reason = serving::unfit(
                &stored,
                self.ca_der(),
                OffsetDateTime::now_utc(),
                crate::RENEW_BEFORE,
                &|cert| {
                    let Ok(got) = subject_of(cert) else {
                        return Some("unreadable subject".into());
                    };
                    let want: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
                    (got.common_name != common_name || got.organizations != want)
                        .then(|| "names another subject".to_string())
                },
            );
            match reason {
                None => return Ok((stored.cert_pem, stored.key_pem)),
                Some(reason) => {
                    tracing::info!(path = %cert_path.display(), reason, "re-issuing client certificate")
                }
            }
        }
        let (cert_pem, key_pem) = self.issue_client_cert(common_name, groups, validity)?;
        files::write_atomic(&key_path, &key_pem, PRIVATE_MODE)?;
        files::write_atomic(&cert_path, &cert_pem, PUBLIC_MODE)?;
        Ok((cert_pem, key_pem))
    }
}

/// The DER of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    crate::authority::decode_cert_pem(pem)
        .map(|der| der.to_vec())
        .map_err(|reason| PkiError::InvalidPem {
            what: "certificate",
            reason,
        })
}

/// File name of the service-account token signing key (ECDSA P-256, PKCS#8 PEM).
pub const SA_KEY_FILE: &str = "sa.key";

/// A signing key for service-account tokens: its private key (PKCS#8 PEM) and public key
/// (SPKI PEM).
pub struct SigningKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl ClusterPki {
    /// The service-account signing key `sa.key` in the PKI dir, created on first start.
    /// Servers sharing a cluster share it (like the CA: `--cluster-ca-dir`).
    pub fn signing_key(&self) -> Result<SigningKey> {
        let path = self.dir().join(SA_KEY_FILE);
        let private_pem = match files::read_optional(&path)? {
            Some(pem) => pem,
            None => {
                let pem = rcgen::KeyPair::generate()?.serialize_pem();
                files::write_atomic(&path, &pem, PRIVATE_MODE)?;
                tracing::info!(path = %path.display(), "created service-account signing key");
                pem
            }
        };
        files::restrict_private(&path)?;
        let key =
            rcgen::KeyPair::from_pem(&private_pem).map_err(|e| PkiError::InvalidMaterial {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(SigningKey {
            public_pem: key.public_key_pem(),
            private_pem,
        })
    }
}

impl ClusterPki {
    /// Signs a client certificate `CN=common_name, O=group` for the key of `csr_pem` (see
    /// [`crate::authority`]): how node agents get their credential.
    pub fn sign_client_csr(
        &self,
        csr_pem: &str,
        common_name: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<String> {
        let cert = self
            .ca()
            .sign_client_csr(csr_pem, common_name, groups, validity)?;
        tracing::info!(common_name, ?groups, "signed a client certificate request");
        Ok(cert)
    }
}

/// A new key and a certificate signing request `CN=common_name, O=group` for it:
/// `(csr_pem, key_pem)`.
pub fn client_csr(common_name: &str, groups: &[&str]) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    for group in groups {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *group);
    }
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// When a certificate (PEM) stops being valid, as seconds since the epoch.
pub fn not_after(cert_pem: &str) -> Result<i64> {
    Ok(validity(cert_pem)?.1)
}

/// When a certificate (PEM) starts and stops being valid, as seconds since the epoch.
pub fn validity(cert_pem: &str) -> Result<(i64, i64)> {
    let der =
        crate::authority::decode_cert_pem(cert_pem).map_err(|reason| PkiError::InvalidPem {
            what: "certificate",
            reason,
        })?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::InvalidPem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    Ok((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// The CN a certificate signing request (PEM) asks for, after checking its signature.
pub fn client_csr_subject(csr_pem: &str) -> Result<String> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
        PkiError::InvalidPem {
            what: "certificate signing request",
            reason: e.to_string(),
        }
    })?;
    Ok(crate::authority::csr_common_name(&csr))
}

/// Whether `cert_pem` was signed by the first CA in `ca_pem` (the signing CA of a bundle).
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cert), Ok(ca)) = (
        crate::authority::decode_cert_pem(cert_pem),
        crate::authority::decode_cert_pem(ca_pem),
    ) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(&cert),
        x509_parser::parse_x509_certificate(&ca),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}
