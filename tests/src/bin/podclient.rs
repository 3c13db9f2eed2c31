//! A small client the end-to-end tests put into pod images (busybox's `wget` crashes on
//! every fetch here and cannot resolve names). Names go through the C library's resolver,
//! so a pod's `/etc/resolv.conf` (search path, `ndots`, nameserver) is what is tested.
//!
//! - `podclient get URL COUNT`: COUNT `GET`s of `http://host[:port]/path`, one line per
//!   request: the body's first line, or `ERR <what went wrong>`;
//! - `podclient resolve NAME`: the addresses NAME resolves to, one per line (exit 1 if none);
//! - `podclient kube PATH [HOST]`: an in-cluster API client, as client libraries do it: a
//!   `GET https://HOST/PATH` (HOST defaults to `kubernetes.default.svc`, port
//!   `$KUBERNETES_SERVICE_PORT`) verified with the mounted `ca.crt`, authenticated with the
//!   mounted service-account token; prints the status code, then the body.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

fn get(host: &str, port: u16, path: &str) -> Result<String, String> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| format!("no HTTP reply from {addr}"))?;
    Ok(body.lines().next().unwrap_or_default().trim().to_string())
}

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn kube(path: &str, host: &str) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    let read = |file: &str| {
        std::fs::read(format!("{SERVICE_ACCOUNT}/{file}"))
            .map_err(|e| format!("reading {SERVICE_ACCOUNT}/{file}: {e}"))
    };
    let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&read("ca.crt")?) {
        roots
            .add(cert.map_err(|e| format!("ca.crt: {e}"))?)
            .map_err(|e| format!("ca.crt: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let port: u16 = std::env::var("KUBERNETES_SERVICE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(443);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("server name {host}: {e}"))?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .map_err(|e| format!("TLS with {addr}: {e}"))?;
    let mut reply = Vec::new();
    match tls.read_to_end(&mut reply) {
        Ok(_) => {}
        // Servers may close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => {}
        Err(e) => return Err(format!("reading from {addr}: {e}")),
    }
    let reply = String::from_utf8_lossy(&reply);
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP reply from {addr}"))?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Ok((code, body.to_string()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["get", url, count] => {
            let Some(rest) = url.strip_prefix("http://") else {
                eprintln!("only http:// URLs");
                return ExitCode::FAILURE;
            };
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().unwrap_or(80)),
                None => (authority, 80),
            };
            let count: usize = count.parse().unwrap_or(1);
            let mut out = std::io::stdout().lock();
            for _ in 0..count {
                let line = get(host, port, path).unwrap_or_else(|e| format!("ERR {e}"));
                let _ = writeln!(out, "{line}");
            }
            ExitCode::SUCCESS
        }
        ["resolve", name] => match (*name, 0).to_socket_addrs() {
            Ok(addrs) => {
                let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                ips.sort();
                ips.dedup();
                for ip in &ips {
                    println!("{ip}");
                }
                if ips.is_empty() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("resolving {name}: {e}");
                ExitCode::FAILURE
            }
        },
        ["kube", path] | ["kube", path, _] => {
            let host = args.get(2).map_or("kubernetes.default.svc", String::as_str);
            match kube(path, host) {
                Ok((code, body)) => {
                    println!("{code}");
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("ERR {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: podclient get URL COUNT | podclient resolve NAME | podclient kube PATH [HOST]"
            );
            ExitCode::FAILURE
        }
    }
}
