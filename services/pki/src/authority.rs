//! The cluster certificate authority: created once, persisted, and used to sign every other
//! certificate of the cluster.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::error::{PkiError, Result};
use crate::files::{self, PRIVATE_MODE, PUBLIC_MODE};
use crate::sans::SubjectAltName;

/// File name of the CA certificate.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key.
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Issued certificates start this long before "now", to tolerate clock skew between machines.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// A certificate and its private key, both PEM.
pub(crate) struct IssuedPem {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// File name of the new CA's certificate signed by the previous CA, during a CA rotation:
/// presented after the serving certificate so that clients which still trust only the
/// previous CA can verify it.
pub const CA_CROSS_FILE: &str = "ca-cross.crt";

/// The loaded cluster CA.
pub(crate) struct ClusterCa {
    /// `ca.crt` as written: the signing CA first, then any CA still trusted (a rotation's
    /// previous CA).
    pub(crate) cert_pem: String,
    /// The signing CA.
    pub(crate) cert_der: CertificateDer<'static>,
    /// Every trusted CA (the signing one first).
    pub(crate) trusted: Vec<CertificateDer<'static>>,
    /// During a rotation: the signing CA certified by the previous one.
    pub(crate) cross: Option<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// Loads `ca.crt`/`ca.key` from `dir`, or creates them if neither exists.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = files::read_optional(&cert_path)?;
        let key_pem = files::read_optional(&key_path)?;
        match (cert_pem, key_pem) {
            (Some(cert_pem), Some(key_pem)) => {
                files::restrict_private(&key_path)?;
                let ca = Self::from_pem(dir, cert_pem, &key_pem)?;
                tracing::debug!(dir = %dir.display(), "loaded cluster CA");
                Ok(ca)
            }
            (None, None) => {
                let (cert_pem, key_pem) = Self::generate()?;
                // Key first: a crash in between leaves an incomplete CA that is reported,
                // never a certificate whose key is lost.
                files::write_atomic(&key_path, &key_pem, PRIVATE_MODE)?;
                files::write_atomic(&cert_path, &cert_pem, PUBLIC_MODE)?;
                tracing::info!(dir = %dir.display(), "created cluster CA");
                Self::from_pem(dir, cert_pem, &key_pem)
            }
            (Some(_), None) => Err(PkiError::IncompleteCa {
                dir: dir.to_path_buf(),
                present: CA_CERT_FILE,
                missing: CA_KEY_FILE,
            }),
            (None, Some(_)) => Err(PkiError::IncompleteCa {
                dir: dir.to_path_buf(),
                present: CA_KEY_FILE,
                missing: CA_CERT_FILE,
            }),
        }
    }

    fn generate() -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let cert = ca_params(&key).self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn from_pem(dir: &Path, cert_pem: String, key_pem: &str) -> Result<Self> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let trusted: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| PkiError::InvalidMaterial {
                    path: cert_path.clone(),
                    reason: format!("unreadable certificate: {e}"),
                })?;
        let cert_der = trusted
            .first()
            .cloned()
            .ok_or_else(|| PkiError::InvalidMaterial {
                path: cert_path.clone(),
                reason: "no PEM certificate".into(),
            })?;
        let cross = match files::read_optional(&dir.join(CA_CROSS_FILE))? {
            Some(pem) => Some(parse_cert_pem(&pem, &dir.join(CA_CROSS_FILE))?),
            None => None,
        };
        Self::finish_load(dir, cert_pem, cert_der, trusted, cross, key_pem, &key_path)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_load(
        dir: &Path,
        cert_pem: String,
        cert_der: CertificateDer<'static>,
        trusted: Vec<CertificateDer<'static>>,
        cross: Option<CertificateDer<'static>>,
        key_pem: &str,
        key_path: &Path,
    ) -> Result<Self> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key = KeyPair::from_pem(key_pem).map_err(|err| PkiError::InvalidMaterial {
            path: key_path.to_path_buf(),
            reason: err.to_string(),
        })?;
        let x509 = parse_x509(&cert_der, &cert_path)?;
        if !key_matches(&x509, &key) {
            return Err(PkiError::InvalidMaterial {
                path: key_path.to_path_buf(),
                reason: format!("key does not belong to the certificate in {CA_CERT_FILE}"),
            });
        }
        let not_after = x509.validity().not_after.to_datetime();
        if not_after <= OffsetDateTime::now_utc() {
            return Err(PkiError::CaExpired {
                path: cert_path,
                not_after,
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_pem,
            cert_der,
            trusted,
            cross,
            issuer,
        })
    }
}

/// Starts a CA rotation in `dir`: a new CA signs from now on (`ca.key`), `ca.crt` trusts
/// the new and the previous CA, and `ca-cross.crt` (the new CA certified by the previous
/// one) lets clients that trust only the previous CA verify what the new one signs.
/// Returns the new CA's PEM.
pub fn rotate_ca(dir: &Path) -> Result<String> {
    let old = ClusterCa::load_or_create(dir)?;
    if old.cross.is_some() {
        return Err(PkiError::InvalidSubject(
            "a CA rotation is already in progress: finish it first".into(),
        ));
    }
    let key = KeyPair::generate()?;
    let params = ca_params(&key);
    let root = params.self_signed(&key)?;
    let cross = params.signed_by(&key, &old.issuer)?;
    let old_signing = files::read_optional(&dir.join(CA_CERT_FILE))?
        .and_then(|pem| {
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .next()
                .and_then(|c| c.ok())
        })
        .ok_or_else(|| PkiError::IncompleteCa {
            dir: dir.to_path_buf(),
            present: CA_KEY_FILE,
            missing: CA_CERT_FILE,
        })?;
    let old_pem = pem_of(&old_signing);
    files::write_atomic(&dir.join(CA_CROSS_FILE), &cross.pem(), PUBLIC_MODE)?;
    // Key, then the bundle naming it first: a crash in between leaves the old CA in force
    // with a key that does not match, which the next start reports.
    files::write_atomic(&dir.join(CA_KEY_FILE), &key.serialize_pem(), PRIVATE_MODE)?;
    files::write_atomic(
        &dir.join(CA_CERT_FILE),
        &format!("{}{old_pem}", root.pem()),
        PUBLIC_MODE,
    )?;
    tracing::info!(dir = %dir.display(), "CA rotation started: the new CA signs, both are trusted");
    Ok(root.pem())
}

/// Ends a CA rotation: only the new CA is trusted, the cross certificate goes.
pub fn finish_ca_rotation(dir: &Path) -> Result<()> {
    let ca = ClusterCa::load_or_create(dir)?;
    files::write_atomic(&dir.join(CA_CERT_FILE), &pem_of(&ca.cert_der), PUBLIC_MODE)?;
    match std::fs::remove_file(dir.join(CA_CROSS_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(PkiError::Io {
                path: dir.join(CA_CROSS_FILE),
                source,
            });
        }
    }
    tracing::info!(dir = %dir.display(), "CA rotation finished: only the new CA is trusted");
    Ok(())
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A CA's parameters for `key`, named apart from every other CA.
fn ca_params(key: &KeyPair) -> CertificateParams {
    {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // Name CAs apart even when two clusters start in the same second, so a certificate
        // from another cluster reads as "unknown issuer", not as a bad signature.
        let key_tag: String = key.public_key_raw()[1..5]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("navarch-ca@{}-{key_tag}", now.unix_timestamp()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "navarch");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params
    }
}

impl ClusterCa {
    /// Issues a serving (TLS server) certificate for `sans`.
    pub(crate) fn issue_serving(
        &self,
        common_name: &str,
        sans: &[SubjectAltName],
        validity: Duration,
    ) -> Result<IssuedPem> {
        let mut params = leaf_params(common_name, validity);
        params.subject_alt_names = sans
            .iter()
            .map(SubjectAltName::to_rcgen)
            .collect::<Result<_>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(&params)
    }

    /// Issues a client certificate with subject `CN=common_name, O=group`.
    pub(crate) fn issue_client(
        &self,
        common_name: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<IssuedPem> {
        self.sign(&client_params(common_name, groups, validity)?)
    }

    /// Signs the key of `csr_pem` (whose signature proves possession of it) as a client
    /// certificate `CN=common_name, O=group`; the subject and extensions the request asks
    /// for are replaced, only its key is kept. The request must ask for `common_name`.
    pub(crate) fn sign_client_csr(
        &self,
        csr_pem: &str,
        common_name: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            PkiError::InvalidPem {
                what: "certificate signing request",
                reason: e.to_string(),
            }
        })?;
        let asked = csr_common_name(&csr);
        if asked != common_name {
            return Err(PkiError::InvalidSubject(format!(
                "the request asks for CN={asked:?}, not {common_name:?}"
            )));
        }
        csr.params = client_params(common_name, groups, validity)?;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }

    fn sign(&self, params: &CertificateParams) -> Result<IssuedPem> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A client certificate's parameters: `CN=common_name, O=group`, client auth only.
fn client_params(
    common_name: &str,
    groups: &[&str],
    validity: Duration,
) -> Result<CertificateParams> {
    if common_name.is_empty() {
        return Err(PkiError::InvalidSubject("empty common name".into()));
    }
    // rcgen keeps one value per attribute type, so a subject can hold one O= only.
    if groups.len() > 1 {
        return Err(PkiError::InvalidSubject(format!(
            "at most one group (O=) per certificate is supported, got {groups:?}"
        )));
    }
    let mut params = leaf_params(common_name, validity);
    if let Some(group) = groups.first() {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *group);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// The CN a certificate signing request asks for.
pub(crate) fn csr_common_name(csr: &rcgen::CertificateSigningRequestParams) -> String {
    csr.params
        .distinguished_name
        .get(&DnType::CommonName)
        .map(dn_text)
        .unwrap_or_default()
}

/// The text of a distinguished-name value.
fn dn_text(value: &rcgen::DnValue) -> String {
    match value {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_string(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_string(),
        rcgen::DnValue::TeletexString(s) => s.as_str().to_string(),
        rcgen::DnValue::BmpString(s) => String::from_utf8_lossy(s.as_bytes()).to_string(),
        rcgen::DnValue::UniversalString(s) => String::from_utf8_lossy(s.as_bytes()).to_string(),
        _ => String::new(),
    }
}

fn leaf_params(common_name: &str, validity: Duration) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params
}

/// Decodes the first certificate of a PEM document.
pub(crate) fn decode_cert_pem(pem: &str) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| format!("no PEM certificate: {err}"))
}

/// Decodes the first private key of a PEM document.
pub(crate) fn decode_key_pem(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| format!("no PEM private key: {err}"))
}

/// Decodes the first certificate of a PEM file's contents.
pub(crate) fn parse_cert_pem(pem: &str, path: &Path) -> Result<CertificateDer<'static>> {
    decode_cert_pem(pem).map_err(|reason| PkiError::InvalidMaterial {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses a DER certificate for inspection.
pub(crate) fn parse_x509<'a>(
    der: &'a CertificateDer<'_>,
    path: &Path,
) -> Result<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|err| PkiError::InvalidMaterial {
            path: path.to_path_buf(),
            reason: format!("unparsable certificate: {err}"),
        })
}

/// Whether `key` is the private key of `cert`.
pub(crate) fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    use rcgen::PublicKeyData;
    cert.public_key().subject_public_key.data.as_ref() == key.der_bytes()
}
