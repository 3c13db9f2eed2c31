//! Subject alternative names of the serving certificate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rcgen::SanType;

use crate::error::{PkiError, Result};

/// DNS names every serving certificate carries, besides the machine hostname.
pub const DEFAULT_DNS_SANS: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// One subject alternative name: a DNS name (lower-cased) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// A DNS name, possibly a wildcard (`*.example.com`).
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl SubjectAltName {
    /// Parses `text` as an IP address, else as a DNS name.
    pub fn parse(text: &str) -> Result<Self> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        if is_dns_name(text) {
            Ok(Self::Dns(text.to_ascii_lowercase()))
        } else {
            Err(PkiError::InvalidSan(text.to_string()))
        }
    }

    pub(crate) fn to_rcgen(&self) -> Result<SanType> {
        Ok(match self {
            Self::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
            Self::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The SANs the serving certificate must cover: loopback names and addresses, the machine
/// hostname, the in-cluster `kubernetes` service names, then `extra` (deduplicated, in order).
pub fn serving_sans(extra: &[String]) -> Result<Vec<SubjectAltName>> {
    let mut sans = vec![
        SubjectAltName::Dns("localhost".into()),
        SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SubjectAltName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let hostname = gethostname::gethostname();
    match hostname.to_str().map(SubjectAltName::parse) {
        Some(Ok(san)) => sans.push(san),
        _ => tracing::warn!(
            hostname = %hostname.to_string_lossy(),
            "machine hostname is not a valid DNS name; leaving it out of the serving certificate"
        ),
    }
    for name in &DEFAULT_DNS_SANS[1..] {
        sans.push(SubjectAltName::Dns((*name).to_string()));
    }
    for text in extra {
        sans.push(SubjectAltName::parse(text.trim())?);
    }
    let mut unique = Vec::with_capacity(sans.len());
    for san in sans {
        if !unique.contains(&san) {
            unique.push(san);
        }
    }
    Ok(unique)
}

/// A permissive RFC 1123 check: labels of letters, digits, `-` and `_`, an optional leading
/// `*.` wildcard label, at most 253 characters.
fn is_dns_name(text: &str) -> bool {
    let name = text.strip_prefix("*.").unwrap_or(text);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && text.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips_and_dns_names() {
        assert_eq!(
            SubjectAltName::parse("10.0.0.1").unwrap(),
            SubjectAltName::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            SubjectAltName::parse("fd00::1").unwrap(),
            SubjectAltName::Ip("fd00::1".parse().unwrap())
        );
        assert_eq!(
            SubjectAltName::parse("API.Example.com").unwrap(),
            SubjectAltName::Dns("api.example.com".into())
        );
        assert_eq!(
            SubjectAltName::parse("*.nodes.example").unwrap(),
            SubjectAltName::Dns("*.nodes.example".into())
        );
        for bad in ["", "a b", "-bad.example", "x..y", "http://x", "h\u{e9}te"] {
            assert!(SubjectAltName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serving_sans_have_defaults_then_extras_without_duplicates() {
        let sans =
            serving_sans(&["LOCALHOST".into(), "10.1.2.3".into(), "api.example".into()]).unwrap();
        assert_eq!(sans[0], SubjectAltName::Dns("localhost".into()));
        for name in DEFAULT_DNS_SANS {
            assert!(
                sans.contains(&SubjectAltName::Dns((*name).into())),
                "{name}"
            );
        }
        assert!(sans.contains(&SubjectAltName::Ip("::1".parse().unwrap())));
        assert!(sans.contains(&SubjectAltName::Ip("10.1.2.3".parse().unwrap())));
        assert_eq!(
            sans.last(),
            Some(&SubjectAltName::Dns("api.example".into()))
        );
        let localhost = SubjectAltName::Dns("localhost".into());
        assert_eq!(sans.iter().filter(|s| **s == localhost).count(), 1);
    }

    #[test]
    fn invalid_extra_san_is_an_error() {
        assert!(matches!(
            serving_sans(&["not a name".into()]),
            Err(PkiError::InvalidSan(_))
        ));
    }
}
