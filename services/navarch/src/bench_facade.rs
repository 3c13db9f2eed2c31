//! `navarch bench facade`: what the Kubernetes REST facade costs on top of the gRPC gateway.
//!
//! In one process: the embedded store, the gateway (gRPC over TLS) and the facade (HTTPS),
//! on a temporary directory, then
//! 1. a kubectl-style list of N pods (10,000 by default, created first through gRPC) as JSON
//!    and as a meta.k8s.io Table (also gzipped, and in kubectl's 500-item chunks): time to
//!    first byte, total time, body size, and the process's resident memory around each list;
//! 2. 1 KiB ConfigMap creates through the facade (JSON POSTs over HTTPS, one keep-alive
//!    HTTP/1.1 connection per client, as kubectl and client-go hold them) against the same
//!    objects created through gRPC directly: writes/s, p50/p99, and the overhead ratio.
//!
//! Client, facade, gateway and store share the machine's cores, so the figures are an upper
//! bound on the overhead of a facade running next to its gateway, and noisy on small hosts.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use navarch_api::core::v1::{Container, Pod, PodSpec};
use navarch_api::meta::v1::ObjectMeta;
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::{Client, GatewayConfig, MastersOnly};
use tokio::sync::Mutex;

use crate::bench::{GatewayTarget, Round, Target, round};

const TOKEN: &str = "bench";

/// `Accept` header kubectl sends for `kubectl get` (server-side printing).
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(clap::Args, Debug)]
pub struct FacadeBenchArgs {
    /// Pods to create and then list.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent clients for each write round.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    pub clients: Vec<usize>,
    /// Seconds per write round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Where to put the data (a temporary directory by default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `VmRSS` and `VmHWM` (peak) of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0), so each list's peak is its own.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// An HTTP/1.1 keep-alive connection to the facade over TLS, trusting the cluster CA.
async fn connect(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let mut config = (**tls).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = connector.connect(name, tcp).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
}

/// One GET: time to the first body byte, total time, body bytes, and the body.
struct Fetched {
    ttfb: Duration,
    total: Duration,
    body: Bytes,
}

async fn fetch(
    send: &mut SendRequest<Full<Bytes>>,
    path: &str,
    accept: &str,
    gzip: bool,
) -> anyhow::Result<Fetched> {
    let mut req = request(Method::GET, path).header("accept", accept);
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let req = req.body(Full::new(Bytes::new()))?;
    send.ready().await?;
    let start = Instant::now();
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut ttfb = None;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            ttfb.get_or_insert_with(|| start.elapsed());
            buf.extend_from_slice(&data);
        }
    }
    let total = start.elapsed();
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET {path}: {status}: {}",
        String::from_utf8_lossy(&buf[..buf.len().min(300)])
    );
    Ok(Fetched {
        ttfb: ttfb.unwrap_or(total),
        total,
        body: buf.into(),
    })
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: Some(format!("pod-{i:05}")),
            namespace: Some("default".into()),
            labels: [("app".to_string(), format!("bench-{}", i % 100))].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates `n` pods through gRPC with 64 concurrent creates.
async fn create_pods(client: &Client, n: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                client
                    .create("default", &pod(i))
                    .await
                    .with_context(|| format!("creating pod {i}"))?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The list rounds: one row per representation.
async fn lists(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    pods: usize,
) -> anyhow::Result<()> {
    let path = "/api/v1/namespaces/default/pods";
    let mut send = connect(addr, tls).await?;
    // Warm-up (TLS, discovery of the gateway channel, first allocations): not measured.
    fetch(
        &mut send,
        &format!("{path}?limit=1"),
        "application/json",
        false,
    )
    .await?;
    println!("list of {pods} pods through the facade (HTTPS, HTTP/1.1, one request each):");
    println!(
        "{:<22} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "format", "ttfb ms", "total ms", "body MiB", "items", "RSS0 MiB", "RSS1 MiB", "peak MiB"
    );
    let rows: [(&str, &str, bool); 4] = [
        ("json", "application/json", false),
        ("table", TABLE_ACCEPT, false),
        ("json+gzip", "application/json", true),
        ("table+gzip", TABLE_ACCEPT, true),
    ];
    for (label, accept, gzip) in rows {
        let (rss0, _) = memory();
        reset_peak();
        let got = fetch(&mut send, path, accept, gzip).await?;
        let (rss1, peak) = memory();
        let items = if gzip {
            "-".to_string()
        } else {
            let v: serde_json::Value = serde_json::from_slice(&got.body)?;
            let key = if label == "table" { "rows" } else { "items" };
            v[key].as_array().map_or(0, |a| a.len()).to_string()
        };
        println!(
            "{label:<22} {:>9.1} {:>9.1} {:>10.2} {:>10} {:>10.1} {:>10.1} {:>10.1}",
            ms(got.ttfb),
            ms(got.total),
            mib(got.body.len()),
            items,
            rss0,
            rss1,
            peak
        );
    }
    // What `kubectl get pods` really sends: Table pages of 500, following `continue`.
    for (label, accept) in [
        ("json, 500/page", "application/json"),
        ("table, 500/page", TABLE_ACCEPT),
    ] {
        let (rss0, _) = memory();
        reset_peak();
        let start = Instant::now();
        let mut first = None;
        let (mut bytes, mut items, mut pages) = (0usize, 0usize, 0usize);
        let mut cont = String::new();
        loop {
            let mut p = format!("{path}?limit=500");
            if !cont.is_empty() {
                p.push_str("&continue=");
                p.push_str(&percent_encode(&cont));
            }
            let got = fetch(&mut send, &p, accept, false).await?;
            first.get_or_insert(got.ttfb);
            bytes += got.body.len();
            pages += 1;
            let v: serde_json::Value = serde_json::from_slice(&got.body)?;
            let key = if accept == TABLE_ACCEPT {
                "rows"
            } else {
                "items"
            };
            items += v[key].as_array().map_or(0, |a| a.len());
            cont = v["metadata"]["continue"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if cont.is_empty() || pages > pods {
                break;
            }
        }
        let total = start.elapsed();
        let (rss1, peak) = memory();
        println!(
            "{label:<22} {:>9.1} {:>9.1} {:>10.2} {:>10} {:>10.1} {:>10.1} {:>10.1}",
            ms(first.unwrap_or_default()),
            ms(total),
            mib(bytes),
            format!("{items}/{pages}p"),
            rss0,
            rss1,
            peak
        );
    }
    Ok(())
}

/// Percent-encodes a `continue` token for a query string.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// 1 KiB ConfigMap creates through the facade: one keep-alive connection per client.
struct RestTarget {
    conns: Vec<Mutex<SendRequest<Full<Bytes>>>>,
    value: String,
    run: String,
}

impl Target for RestTarget {
    async fn write(&self, worker: usize, seq: u64) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("bench-{}-{seq}", self.run)},
            "data": {"payload": self.value},
        });
        let req = request(Method::POST, "/api/v1/namespaces/default/configmaps")
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
        let mut send = self.conns[worker].lock().await;
        send.ready().await?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        // Read the whole answer, as a client would, before the connection is reused.
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "POST: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        Ok(())
    }
}

fn print_row(target: &str, clients: usize, r: &Round) {
    println!(
        "{target:<8} {clients:>8} {:>12.0} {:>10.2} {:>10.2} {:>8}",
        r.rate(),
        ms(r.p50),
        ms(r.p99),
        r.errors
    );
}

pub async fn run(args: FacadeBenchArgs) -> anyhow::Result<()> {
    let _telemetry = navarch_telemetry::init("navarch-bench")?;
    let tmp = std::env::temp_dir().join(format!("navarch-bench-facade-{}", std::process::id()));
    let dir = args.data_dir.clone().unwrap_or(tmp.clone());
    std::fs::create_dir_all(&dir)?;
    let pki = navarch_pki::ClusterPki::load_or_create(&dir.join("pki"), &[])?;
    let mut tokens = TokenFile::default();
    tokens.insert(
        TOKEN,
        UserInfo {
            name: "bench".into(),
            uid: "bench".into(),
            groups: vec!["system:masters".into()],
            extra: Default::default(),
        },
    );
    let store = navarch_store::open_embedded(dir.join("store"))?;
    let gateway = navarch_gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        store,
        authenticator: AuthChain::new(vec![Arc::new(tokens)]),
        authorizer: Arc::new(MastersOnly),
        tls: Some(pki.server_config(&[b"h2"])),
        tokens: None,
        audit: None,
        node_signer: None,
    })
    .await?;
    let grpc = format!("https://{}", gateway.addr);
    let facade = navarch_facade::start(navarch_facade::FacadeConfig {
        listen: "127.0.0.1:0".parse()?,
        tls: pki.server_config(&[b"h2", b"http/1.1"]),
        gateway: navarch_facade::gateway::channel(&grpc, pki.ca_pem(), None)?,
        health: navarch_telemetry::Health::new(),
    })
    .await?;
    let tls = pki.client_config();
    let (rss, _) = memory();
    println!(
        "started gateway {grpc} and facade https://{} (RSS {rss:.1} MiB)",
        facade.addr
    );

    // 1. Lists.
    let client = Client::connect(&grpc, pki.ca_pem(), TOKEN).await?;
    let took = create_pods(&client, args.pods).await?;
    let (rss, _) = memory();
    println!(
        "created {} pods through gRPC in {:.1} s ({:.0}/s, 64 concurrent; RSS {rss:.1} MiB)\n",
        args.pods,
        took.as_secs_f64(),
        args.pods as f64 / took.as_secs_f64()
    );
    lists(facade.addr, &tls, args.pods).await?;
    println!();

    // 2. Writes: the same 1 KiB ConfigMaps through the facade and through gRPC.
    let value = "x".repeat(1000);
    println!(
        "{:<8} {:>8} {:>12} {:>10} {:>10} {:>8}",
        "target", "clients", "writes/s", "p50 ms", "p99 ms", "errors"
    );
    let mut results = Vec::new();
    for &clients in &args.clients {
        let mut conns = Vec::with_capacity(clients);
        for _ in 0..clients {
            conns.push(Mutex::new(connect(facade.addr, &tls).await?));
        }
        let rest = Arc::new(RestTarget {
            conns,
            value: value.clone(),
            run: format!("rest-c{clients}"),
        });
        let r = round(rest, clients, args.seconds, None).await;
        print_row("rest", clients, &r);
        let grpc_target = Arc::new(GatewayTarget {
            client: Client::connect(&grpc, pki.ca_pem(), TOKEN).await?,
            value: value.clone(),
            run: format!("grpc-c{clients}"),
        });
        let g = round(grpc_target, clients, args.seconds, None).await;
        print_row("grpc", clients, &g);
        results.push((clients, r, g));
    }
    println!();
    for (clients, r, g) in &results {
        println!(
            "clients={clients}: facade overhead {:.2}x in writes/s (grpc/rest; goal <= 1.5x), \
             p50 {:.2}x, p99 {:.2}x (rest/grpc)",
            g.rate() / r.rate(),
            r.p50.as_secs_f64() / g.p50.as_secs_f64(),
            r.p99.as_secs_f64() / g.p99.as_secs_f64()
        );
    }

    facade.shutdown().await;
    gateway.shutdown().await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}
