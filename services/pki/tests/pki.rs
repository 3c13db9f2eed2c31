//! Creating, reopening and using the cluster PKI through its public API.

use std::future::Future;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use navarch_pki::{ClusterPki, PkiError};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("timed out")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

fn mode(dir: &Path, file: &str) -> u32 {
    std::fs::metadata(dir.join(file))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// DNS names and IPs in the certificate's subjectAltName extension.
fn sans_of(cert_pem: &str) -> (Vec<String>, Vec<IpAddr>) {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let ext = cert.subject_alternative_name().unwrap().unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(name) => dns.push(name.to_string()),
            GeneralName::IPAddress(bytes) if bytes.len() == 4 => {
                ips.push(IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()))
            }
            GeneralName::IPAddress(bytes) => {
                ips.push(IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()))
            }
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (dns, ips)
}

#[test]
fn first_start_creates_ca_and_serving_cert_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data/pki");
    let pki = ClusterPki::load_or_create(&dir, &[]).unwrap();

    for file in ["ca.crt", "ca.key", "server.crt", "server.key"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert_eq!(mode(&dir, "ca.key"), 0o600);
    assert_eq!(mode(&dir, "server.key"), 0o600);
    assert_eq!(mode(&dir, "ca.crt"), 0o644);
    assert_eq!(read(&dir, "ca.crt"), pki.ca_pem());
    assert_eq!(read(&dir, "server.crt"), pki.server_cert_pem());
    assert_eq!(read(&dir, "server.key"), pki.server_key_pem());

    let ca_der =
        rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca.is_ca());
    let lifetime = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
    assert!(lifetime >= 10 * 365 * 24 * 3600, "CA lifetime {lifetime}s");
    assert_eq!(
        ca.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
}

#[test]
fn reopening_reuses_ca_and_serving_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let ca_key = read(tmp.path(), "ca.key");
    let second = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(ca_key, read(tmp.path(), "ca.key"));
    assert_eq!(first.server_cert_pem(), second.server_cert_pem());
    assert_eq!(first.server_key_pem(), second.server_key_pem());
}

#[test]
fn serving_cert_covers_default_and_extra_sans() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = [
        "api.example.com".to_string(),
        "10.20.30.40".to_string(),
        "fd00::7".to_string(),
    ];
    let pki = ClusterPki::load_or_create(tmp.path(), &extra).unwrap();
    let (dns, ips) = sans_of(&pki.server_cert_pem());

    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "api.example.com",
    ] {
        assert!(dns.contains(&name.to_string()), "{name} not in {dns:?}");
    }
    let hostname = gethostname::gethostname()
        .to_string_lossy()
        .to_ascii_lowercase();
    assert!(
        dns.contains(&hostname),
        "hostname {hostname} not in {dns:?}"
    );
    for ip in ["127.0.0.1", "::1", "10.20.30.40", "fd00::7"] {
        assert!(ips.contains(&ip.parse().unwrap()), "{ip} not in {ips:?}");
    }
}

#[test]
fn new_extra_san_reissues_serving_cert_but_keeps_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let second = ClusterPki::load_or_create(tmp.path(), &["192.0.2.10".to_string()]).unwrap();
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_ne!(first.server_cert_pem(), second.server_cert_pem());
    assert_ne!(first.server_key_pem(), second.server_key_pem());
    let (_, ips) = sans_of(&second.server_cert_pem());
    assert!(ips.contains(&"192.0.2.10".parse().unwrap()));
    assert_eq!(mode(tmp.path(), "server.key"), 0o600);
    // Asking again for the same names reuses what was just issued.
    let third = ClusterPki::load_or_create(tmp.path(), &["192.0.2.10".to_string()]).unwrap();
    assert_eq!(second.server_cert_pem(), third.server_cert_pem());
}

#[test]
fn missing_serving_cert_is_reissued() {
    let tmp = tempfile::tempdir().unwrap();
    let first = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    std::fs::remove_file(tmp.path().join("server.crt")).unwrap();
    let second = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_ne!(first.server_cert_pem(), second.server_cert_pem());
    assert_eq!(read(tmp.path(), "server.crt"), second.server_cert_pem());
}

#[test]
fn loose_key_permissions_are_tightened_on_load() {
    let tmp = tempfile::tempdir().unwrap();
    ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let key = tmp.path().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    assert_eq!(mode(tmp.path(), "ca.key"), 0o600);
}

#[test]
fn half_a_ca_is_refused_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    std::fs::remove_file(tmp.path().join("ca.key")).unwrap();
    let err = ClusterPki::load_or_create(tmp.path(), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::IncompleteCa {
                missing: "ca.key",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn invalid_extra_san_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ClusterPki::load_or_create(tmp.path(), &["not a name".to_string()]).unwrap_err();
    assert!(matches!(err, PkiError::InvalidSan(_)), "{err}");
}

#[test]
fn client_cert_carries_user_and_group() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let (cert_pem, key_pem) = pki
        .issue_client_cert("admin", &["system:masters"], Duration::from_secs(3600))
        .unwrap();
    assert!(key_pem.contains("PRIVATE KEY"));
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    let org: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["admin"]);
    assert_eq!(org, ["system:masters"]);
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .client_auth
    );
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (3600..=3600 + 600).contains(&lifetime),
        "lifetime {lifetime}s"
    );

    let err = pki
        .issue_client_cert("x", &["a", "b"], Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidSubject(_)), "{err}");
}

/// Accepts one TLS connection with `pki`'s server config; reports the server's view: the
/// client's certificate common names, or the handshake error.
async fn serve_once(pki: &ClusterPki) -> (u16, tokio::task::JoinHandle<Result<usize, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(pki.server_config(&[b"h2", b"http/1.1"]));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer_certs = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(&byte).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(peer_certs)
    });
    (port, task)
}

/// Connects with `config` to `server_name`, sends a byte and reads the echo.
async fn echo(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    tls.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await?;
    assert_eq!(&byte, b"x");
    Ok(())
}

#[tokio::test]
async fn client_config_completes_handshake_with_server_config() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let (port, server) = within(serve_once(&pki)).await;
    within(echo(port, pki.client_config(), "localhost"))
        .await
        .expect("handshake with localhost");
    assert_eq!(within(server).await.unwrap(), Ok(0));

    // The IP SAN works as a server name too.
    let (port, server) = within(serve_once(&pki)).await;
    within(echo(port, pki.client_config(), "127.0.0.1"))
        .await
        .expect("handshake with 127.0.0.1");
    assert_eq!(within(server).await.unwrap(), Ok(0));
}

#[tokio::test]
async fn wrong_server_name_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let (port, server) = within(serve_once(&pki)).await;
    let err = within(echo(port, pki.client_config(), "wrong.example"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert!(within(server).await.unwrap().is_err());
}

#[tokio::test]
async fn client_trusting_another_ca_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let other_tmp = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let other = ClusterPki::load_or_create(other_tmp.path(), &[]).unwrap();
    let (port, server) = within(serve_once(&pki)).await;
    let err = within(echo(port, other.client_config(), "localhost"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(within(server).await.unwrap().is_err());
}

#[tokio::test]
async fn client_certificates_from_the_ca_are_accepted_and_others_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let other_tmp = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let other = ClusterPki::load_or_create(other_tmp.path(), &[]).unwrap();
    let hour = Duration::from_secs(3600);

    let (cert, key) = pki
        .issue_client_cert("node-1", &["system:nodes"], hour)
        .unwrap();
    let (port, server) = within(serve_once(&pki)).await;
    let config = pki.client_config_with_cert(&cert, &key).unwrap();
    within(echo(port, config, "localhost"))
        .await
        .expect("mTLS handshake");
    assert_eq!(within(server).await.unwrap(), Ok(1));

    // A certificate from another CA: the server refuses it (in TLS 1.3 the client may finish
    // its side of the handshake first, so the server's view is what counts).
    let (cert, key) = other.issue_client_cert("intruder", &[], hour).unwrap();
    let (port, server) = within(serve_once(&pki)).await;
    let config = pki.client_config_with_cert(&cert, &key).unwrap();
    let _ = within(echo(port, config, "localhost")).await;
    let refused = within(server).await.unwrap().unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}

#[tokio::test]
async fn tonic_channel_connects_over_cluster_tls() {
    use tonic::transport::{Endpoint, Server};

    let tmp = tempfile::tempdir().unwrap();
    let other_tmp = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(tmp.path(), &[]).unwrap();
    let other = ClusterPki::load_or_create(other_tmp.path(), &[]).unwrap();

    let listener = within(TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .tls_config(pki.tonic_server_tls())
            .unwrap()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );

    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}")).unwrap();
    let connect = |tls| {
        let endpoint = endpoint.clone().tls_config(tls).unwrap();
        async move { endpoint.connect().await }
    };
    within(connect(pki.tonic_client_tls("localhost")))
        .await
        .expect("tonic TLS connect");
    assert!(
        within(connect(pki.tonic_client_tls("wrong.example")))
            .await
            .is_err()
    );
    assert!(
        within(connect(other.tonic_client_tls("localhost")))
            .await
            .is_err()
    );

    stop_tx.send(()).unwrap();
    within(server).await.unwrap().unwrap();
}
