//! The error type of the PKI crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading, creating or using the cluster PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file under the PKI directory failed.
    #[error("pki file {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A stored certificate or key could not be used.
    #[error("invalid pki material in {}: {reason}", path.display())]
    InvalidMaterial {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// PEM text handed in by a caller holds no usable certificate or key.
    #[error("invalid {what}: {reason}")]
    InvalidPem {
        /// What was expected, e.g. "client certificate".
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Only one of `ca.crt` and `ca.key` exists; refusing to replace a CA that may have issued
    /// certificates still in use.
    #[error("incomplete cluster CA in {}: {present} exists but {missing} is missing", dir.display())]
    IncompleteCa {
        /// The PKI directory.
        dir: PathBuf,
        /// The file that exists.
        present: &'static str,
        /// The file that does not.
        missing: &'static str,
    },
    /// The cluster CA certificate has expired; it must be rotated by hand.
    #[error("cluster CA certificate in {} expired at {not_after}", path.display())]
    CaExpired {
        /// The CA certificate file.
        path: PathBuf,
        /// Its expiry time.
        not_after: time::OffsetDateTime,
    },
    /// A requested subject alternative name is neither an IP address nor a DNS name.
    #[error("invalid subject alternative name {0:?}: expected a DNS name or an IP address")]
    InvalidSan(String),
    /// A client certificate was requested with a subject that cannot be encoded.
    #[error("invalid client certificate subject: {0}")]
    InvalidSubject(String),
    /// Certificate or key generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// Building a rustls configuration failed.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Building the client certificate verifier failed.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Result alias for this crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;
