//! The kubeconfig `navarch up` writes for the admin user: the HTTPS server URL, the cluster CA
//! inline, and the admin's credentials (a client certificate, or a bearer token); one
//! context, `navarch`, current.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

/// Name of the cluster, user and context in the kubeconfig.
pub const CONTEXT: &str = "navarch";

/// The `https://host:port` clients use for a listen address: unspecified addresses
/// (`0.0.0.0`, `::`) become loopback, which the serving certificate covers.
pub fn server_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("https://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// How a kubeconfig's user authenticates.
pub enum Credentials<'a> {
    Token(&'a str),
    /// A client certificate and its key, PEM.
    Certificate {
        cert_pem: &'a str,
        key_pem: &'a str,
    },
}

/// A kubeconfig (YAML) for `server` that trusts `ca_pem` and authenticates with `token`.
pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    render_with(server, ca_pem, Credentials::Token(token))
}

/// A kubeconfig (YAML) for `server` that trusts `ca_pem` and authenticates with `credentials`.
pub fn render_with(server: &str, ca_pem: &str, credentials: Credentials<'_>) -> String {
    let user = format!("{CONTEXT}-admin");
    let credentials = match credentials {
        Credentials::Token(token) => json!({"token": token}),
        Credentials::Certificate { cert_pem, key_pem } => json!({
            "client-certificate-data": BASE64.encode(cert_pem.as_bytes()),
            "client-key-data": BASE64.encode(key_pem.as_bytes()),
        }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": CONTEXT,
            "cluster": {
                "server": server,
                "certificate-authority-data": BASE64.encode(ca_pem.as_bytes()),
            },
        }],
        "users": [{
            "name": user,
            "user": credentials,
        }],
        "contexts": [{
            "name": CONTEXT,
            "context": {"cluster": CONTEXT, "user": user, "namespace": "default"},
        }],
        "current-context": CONTEXT,
        "preferences": {},
    });
    serde_yaml::to_string(&config).expect("a kubeconfig serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_has_one_current_context() {
        let text = render(
            "https://127.0.0.1:6443",
            "-----BEGIN CERTIFICATE-----\n",
            "t0k",
        );
        let v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "navarch");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(v["users"][0]["user"]["token"], "t0k");
        assert_eq!(v["contexts"][0]["context"]["user"], "navarch-admin");
        let ca = v["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        assert_eq!(BASE64.decode(ca).unwrap(), b"-----BEGIN CERTIFICATE-----\n");
    }

    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(
            server_url("0.0.0.0:6443".parse().unwrap()),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            server_url("[::]:6443".parse().unwrap()),
            "https://[::1]:6443"
        );
        assert_eq!(
            server_url("10.0.0.5:6443".parse().unwrap()),
            "https://10.0.0.5:6443"
        );
    }
}
