//! The serving certificate: reused while it is valid for long enough, signed by the current
//! CA and covers every requested name; re-issued otherwise.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use crate::authority::{self, ClusterCa, IssuedPem};
use crate::error::Result;
use crate::files::{self, PRIVATE_MODE, PUBLIC_MODE};
use crate::sans::SubjectAltName;

/// File name of the serving certificate.
pub const SERVER_CERT_FILE: &str = "server.crt";
/// File name of the serving certificate's private key.
pub const SERVER_KEY_FILE: &str = "server.key";

/// How long a new serving certificate is valid.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A serving certificate closer than this to expiry is re-issued on start.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Subject common name of serving certificates.
const SERVER_COMMON_NAME: &str = "navarch-server";

/// Returns the serving certificate and key from `dir`, issuing (and writing) new ones if the
/// stored pair is missing or unfit.
pub(crate) fn load_or_issue(
    dir: &Path,
    ca: &ClusterCa,
    sans: &[SubjectAltName],
    validity: Duration,
) -> Result<IssuedPem> {
    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    let stored = match (
        files::read_optional(&cert_path)?,
        files::read_optional(&key_path)?,
    ) {
        (Some(cert_pem), Some(key_pem)) => Some(IssuedPem { cert_pem, key_pem }),
        _ => None,
    };
    let reason = match &stored {
        None => Some("missing".to_string()),
        Some(pem) => reissue_reason_within(
            pem,
            &ca.cert_der,
            sans,
            OffsetDateTime::now_utc(),
            renew_window(validity),
        ),
    };
    match (stored, reason) {
        (Some(pem), None) => {
            files::restrict_private(&key_path)?;
            tracing::debug!(path = %cert_path.display(), "reusing serving certificate");
            Ok(pem)
        }
        (_, reason) => {
            let issued = ca.issue_serving(SERVER_COMMON_NAME, sans, validity)?;
            files::write_atomic(&key_path, &issued.key_pem, PRIVATE_MODE)?;
            files::write_atomic(&cert_path, &issued.cert_pem, PUBLIC_MODE)?;
            let names: Vec<String> = sans.iter().map(ToString::to_string).collect();
            tracing::info!(
                path = %cert_path.display(),
                reason = reason.as_deref().unwrap_or("unknown"),
                sans = %names.join(","),
                "issued serving certificate"
            );
            Ok(issued)
        }
    }
}

/// How long before expiry a certificate valid for `validity` is renewed: [`RENEW_BEFORE`],
/// or a third of its life for short-lived ones.
pub fn renew_window(validity: Duration) -> Duration {
    RENEW_BEFORE.min(validity / 3)
}

/// Why the stored serving certificate cannot be reused, or `None` if it can.
#[cfg(test)]
fn reissue_reason(
    stored: &IssuedPem,
    ca_der: &CertificateDer<'_>,
    sans: &[SubjectAltName],
    now: OffsetDateTime,
) -> Option<String> {
    reissue_reason_within(stored, ca_der, sans, now, RENEW_BEFORE)
}

/// [`reissue_reason`] renewing within `window` of expiry.
pub(crate) fn reissue_reason_within(
    stored: &IssuedPem,
    ca_der: &CertificateDer<'_>,
    sans: &[SubjectAltName],
    now: OffsetDateTime,
    window: Duration,
) -> Option<String> {
    unfit(stored, ca_der, now, window, &|cert| {
        let present = match cert_sans(cert) {
            Ok(present) => present,
            Err(err) => return Some(format!("unreadable subject alternative names: {err}")),
        };
        let missing: Vec<String> = sans
            .iter()
            .filter(|san| !present.contains(san))
            .map(ToString::to_string)
            .collect();
        (!missing.is_empty()).then(|| format!("lacks {}", missing.join(",")))
    })
}

/// Why a stored certificate and key cannot be reused: unreadable, key and certificate apart,
/// not signed by the current CA, within `window` of expiry, or what `also` finds.
pub(crate) fn unfit(
    stored: &IssuedPem,
    ca_der: &CertificateDer<'_>,
    now: OffsetDateTime,
    window: Duration,
    also: &dyn Fn(&x509_parser::certificate::X509Certificate<'_>) -> Option<String>,
) -> Option<String> {
    let here = Path::new(SERVER_CERT_FILE);
    let der = match authority::parse_cert_pem(&stored.cert_pem, here) {
        Ok(der) => der,
        Err(err) => return Some(err.to_string()),
    };
    let cert = match authority::parse_x509(&der, here) {
        Ok(cert) => cert,
        Err(err) => return Some(err.to_string()),
    };
    let key = match KeyPair::from_pem(&stored.key_pem) {
        Ok(key) => key,
        Err(err) => return Some(format!("unreadable key: {err}")),
    };
    if !authority::key_matches(&cert, &key) {
        return Some("key does not match certificate".into());
    }
    let ca = match authority::parse_x509(ca_der, here) {
        Ok(ca) => ca,
        Err(err) => return Some(err.to_string()),
    };
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Some("not signed by the current cluster CA".into());
    }
    let not_after = cert.validity().not_after.to_datetime();
    if not_after <= now + window {
        return Some(format!("expires at {not_after}"));
    }
    also(&cert)
}

/// The DNS and IP subject alternative names of `cert`.
pub(crate) fn cert_sans(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<Vec<SubjectAltName>, x509_parser::error::X509Error> {
    let Some(ext) = cert.subject_alternative_name()? else {
        return Ok(Vec::new());
    };
    Ok(ext
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(SubjectAltName::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(SubjectAltName::Ip),
            _ => None,
        })
        .collect())
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_in(dir: &Path) -> ClusterCa {
        ClusterCa::load_or_create(dir).unwrap()
    }

    fn sans() -> Vec<SubjectAltName> {
        vec![
            SubjectAltName::Dns("localhost".into()),
            SubjectAltName::Ip("127.0.0.1".parse().unwrap()),
        ]
    }

    #[test]
    fn fresh_certificate_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_in(dir.path());
        let issued = ca
            .issue_serving(SERVER_COMMON_NAME, &sans(), SERVER_VALIDITY)
            .unwrap();
        let reason = reissue_reason(&issued, &ca.cert_der, &sans(), OffsetDateTime::now_utc());
        assert_eq!(reason, None);
    }

    #[test]
    fn certificate_expiring_within_renewal_window_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_in(dir.path());
        let ten_days = Duration::from_secs(10 * 24 * 3600);
        let issued = ca
            .issue_serving(SERVER_COMMON_NAME, &sans(), ten_days)
            .unwrap();
        let reason = reissue_reason(&issued, &ca.cert_der, &sans(), OffsetDateTime::now_utc());
        assert!(reason.unwrap().starts_with("expires"));
        // A year-long certificate seen from 340 days later is inside the window too.
        let issued = ca
            .issue_serving(SERVER_COMMON_NAME, &sans(), SERVER_VALIDITY)
            .unwrap();
        let later = OffsetDateTime::now_utc() + time::Duration::days(340);
        assert!(reissue_reason(&issued, &ca.cert_der, &sans(), later).is_some());
    }

    #[test]
    fn certificate_missing_a_san_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_in(dir.path());
        let issued = ca
            .issue_serving(SERVER_COMMON_NAME, &sans(), SERVER_VALIDITY)
            .unwrap();
        let mut wanted = sans();
        wanted.push(SubjectAltName::Ip("10.9.8.7".parse().unwrap()));
        let reason = reissue_reason(&issued, &ca.cert_der, &wanted, OffsetDateTime::now_utc());
        assert_eq!(reason.as_deref(), Some("lacks 10.9.8.7"));
    }

    #[test]
    fn certificate_from_another_ca_or_with_a_foreign_key_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let ca = ca_in(dir.path());
        let other = ca_in(other_dir.path());
        let foreign = other
            .issue_serving(SERVER_COMMON_NAME, &sans(), SERVER_VALIDITY)
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let reason = reissue_reason(&foreign, &ca.cert_der, &sans(), now).unwrap();
        assert!(
            reason.contains("not signed by the current cluster CA"),
            "{reason}"
        );

        let mut swapped = ca
            .issue_serving(SERVER_COMMON_NAME, &sans(), SERVER_VALIDITY)
            .unwrap();
        swapped.key_pem = foreign.key_pem;
        let reason = reissue_reason(&swapped, &ca.cert_der, &sans(), now).unwrap();
        assert!(reason.contains("key does not match"), "{reason}");
    }
}

/// The serving certificate every TLS listener presents, swappable while they run: renewal
/// needs no restart, new handshakes get the new certificate.
#[derive(Debug)]
pub(crate) struct ServingCert {
    key: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
    pem: std::sync::RwLock<IssuedPem>,
    /// Presented after the certificate during a CA rotation (see [`crate::rotate_ca`]).
    cross: Option<CertificateDer<'static>>,
}

impl std::fmt::Debug for IssuedPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedPem")
    }
}

use std::sync::Arc;

impl ServingCert {
    pub(crate) fn new(pem: IssuedPem, cross: Option<CertificateDer<'static>>) -> Result<Self> {
        let key = certified(&pem, cross.as_ref())?;
        Ok(Self {
            key: std::sync::RwLock::new(key),
            pem: std::sync::RwLock::new(pem),
            cross,
        })
    }

    pub(crate) fn set(&self, pem: IssuedPem) -> Result<()> {
        let key = certified(&pem, self.cross.as_ref())?;
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = key;
        *self.pem.write().unwrap_or_else(|e| e.into_inner()) = pem;
        Ok(())
    }

    pub(crate) fn pem(&self) -> (String, String) {
        let pem = self.pem.read().unwrap_or_else(|e| e.into_inner());
        (pem.cert_pem.clone(), pem.key_pem.clone())
    }

    pub(crate) fn with_pem<T>(&self, f: impl FnOnce(&IssuedPem) -> T) -> T {
        f(&self.pem.read().unwrap_or_else(|e| e.into_inner()))
    }
}

fn certified(
    pem: &IssuedPem,
    cross: Option<&CertificateDer<'static>>,
) -> Result<Arc<rustls::sign::CertifiedKey>> {
    let here = Path::new(SERVER_CERT_FILE);
    let mut chain = vec![authority::parse_cert_pem(&pem.cert_pem, here)?];
    chain.extend(cross.cloned());
    let key = authority::decode_key_pem(&pem.key_pem).map_err(|reason| {
        crate::PkiError::InvalidMaterial {
            path: Path::new(SERVER_KEY_FILE).to_path_buf(),
            reason,
        }
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signer)))
}

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}
