//! `navarch bench store`: durable 1 KiB ConfigMap creates through the gateway, with 1, 16 and
//! 64 concurrent clients, and the same workload against etcd (a single member on loopback,
//! default durability) in the same run, when an `etcd` binary is found.
//!
//! The etcd client is a minimal one (the `KV/Txn` call, messages declared with prost below):
//! the published Rust etcd clients need a system `protoc` to build, which this repository
//! does not require.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use navarch_api::core::v1::ConfigMap;
use navarch_api::meta::v1::ObjectMeta;
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::{Client, GatewayConfig, MastersOnly};

#[derive(clap::Args, Debug)]
pub struct StoreBenchArgs {
    /// Concurrent clients for each round.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Seconds per round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rate (writes/s) of the fixed-rate latency round.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// The etcd binary to compare against ("" to skip).
    #[arg(long, default_value = "etcd")]
    pub etcd: String,
    /// Where to put the data (a temporary directory by default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The outcome of one round.
#[derive(Clone, Debug)]
pub(crate) struct Round {
    pub(crate) ops: u64,
    pub(crate) elapsed: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) errors: u64,
}

impl Round {
    pub(crate) fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One write; the target decides what it is.
pub(crate) trait Target: Send + Sync + 'static {
    fn write(
        &self,
        worker: usize,
        seq: u64,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// Runs `clients` closed-loop workers for `seconds`, or, with `rate`, an open-loop schedule.
pub(crate) async fn round<T: Target>(
    target: Arc<T>,
    clients: usize,
    seconds: u64,
    rate: Option<u64>,
) -> Round {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let target = target.clone();
        let errors = errors.clone();
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let due = match rate {
                    Some(r) => start + Duration::from_secs_f64(n as f64 / r as f64),
                    None => Instant::now(),
                };
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let t = Instant::now();
                if target.write(worker, n).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                // Open loop: latency from when the write was due, so queueing counts.
                latencies.push(if rate.is_some() {
                    due.elapsed()
                } else {
                    t.elapsed()
                });
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    all.sort();
    Round {
        ops: all.len() as u64,
        elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

pub(crate) struct GatewayTarget {
    pub(crate) client: Client,
    pub(crate) value: String,
    pub(crate) run: String,
}

impl Target for GatewayTarget {
    async fn write(&self, _worker: usize, seq: u64) -> anyhow::Result<()> {
        let cm = ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some(format!("bench-{}-{seq}", self.run)),
                ..Default::default()
            }),
            data: [("payload".to_string(), self.value.clone())].into(),
            ..Default::default()
        };
        self.client.create("default", &cm).await?;
        Ok(())
    }
}

pub async fn store(args: StoreBenchArgs) -> anyhow::Result<()> {
    let _telemetry = navarch_telemetry::init("navarch-bench")?;
    let tmp = std::env::temp_dir().join(format!("navarch-bench-{}", std::process::id()));
    let dir = args.data_dir.clone().unwrap_or(tmp.clone());
    std::fs::create_dir_all(&dir)?;
    let pki = navarch_pki::ClusterPki::load_or_create(&dir.join("pki"), &[])?;
    let mut tokens = TokenFile::default();
    tokens.insert(
        "bench",
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
    let url = format!("https://{}", gateway.addr);
    // A 1 KiB ConfigMap: the payload plus name and metadata come to about 1 KiB encoded.
    let value = "x".repeat(1000);

    let etcd = if args.etcd.is_empty() {
        None
    } else {
        etcd::Etcd::start(&args.etcd, &dir.join("etcd")).await.ok()
    };
    if etcd.is_none() && !args.etcd.is_empty() {
        println!(
            "etcd: binary {:?} not found or failed to start; install it with `apt-get install etcd-server` to compare",
            args.etcd
        );
    }

    println!(
        "{:<8} {:>8} {:>12} {:>10} {:>10} {:>8}",
        "target", "clients", "writes/s", "p50 ms", "p99 ms", "errors"
    );
    let mut results = Vec::new();
    for &clients in &args.clients {
        // One connection per 16 clients, as a real component pool would.
        let client = Client::connect(&url, pki.ca_pem(), "bench").await?;
        let target = Arc::new(GatewayTarget {
            client,
            value: value.clone(),
            run: format!("c{clients}"),
        });
        let r = round(target, clients, args.seconds, None).await;
        print_row("navarch", clients, &r);
        let e = match &etcd {
            Some(etcd) => {
                let target = Arc::new(etcd.target(&value, &format!("c{clients}")).await?);
                let e = round(target, clients, args.seconds, None).await;
                print_row("etcd", clients, &e);
                Some(e)
            }
            None => None,
        };
        results.push((clients, r, e));
    }
    println!();
    for (clients, r, e) in &results {
        if let Some(e) = e {
            println!(
                "clients={clients}: navarch/etcd throughput ratio {:.2}x",
                r.rate() / e.rate()
            );
        }
    }
    // Latency at a fixed rate (open loop, 64 workers).
    let client = Client::connect(&url, pki.ca_pem(), "bench").await?;
    let target = Arc::new(GatewayTarget {
        client,
        value: value.clone(),
        run: "rate".into(),
    });
    let r = round(target, 64, args.seconds, Some(args.rate)).await;
    println!(
        "navarch at {} writes/s: achieved {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
        args.rate,
        r.rate(),
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.errors
    );
    if let Some(etcd) = &etcd {
        let target = Arc::new(etcd.target(&value, "rate").await?);
        let e = round(target, 64, args.seconds, Some(args.rate)).await;
        println!(
            "etcd    at {} writes/s: achieved {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
            args.rate,
            e.rate(),
            e.p50.as_secs_f64() * 1e3,
            e.p99.as_secs_f64() * 1e3,
            e.errors
        );
    }
    gateway.shutdown().await;
    drop(etcd);
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn print_row(target: &str, clients: usize, r: &Round) {
    println!(
        "{target:<8} {clients:>8} {:>12.0} {:>10.2} {:>10.2} {:>8}",
        r.rate(),
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.errors
    );
}

mod etcd {
    //! A single etcd member on loopback and the one call the benchmark makes.

    use std::path::Path;
    use std::process::Stdio;
    use std::time::Duration;

    use anyhow::Context;
    use tonic::transport::Channel;

    /// etcdserverpb messages used by `KV/Txn` (field numbers from etcd's rpc.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Compare {
        #[prost(int32, tag = "1")]
        pub result: i32,
        #[prost(int32, tag = "2")]
        pub target: i32,
        #[prost(bytes = "vec", tag = "3")]
        pub key: Vec<u8>,
        #[prost(int64, tag = "5")]
        pub create_revision: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RequestOp {
        #[prost(message, optional, tag = "2")]
        pub request_put: Option<PutRequest>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxnRequest {
        #[prost(message, repeated, tag = "1")]
        pub compare: Vec<Compare>,
        #[prost(message, repeated, tag = "2")]
        pub success: Vec<RequestOp>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxnResponse {
        #[prost(bool, tag = "2")]
        pub succeeded: bool,
    }

    pub struct Etcd {
        child: std::process::Child,
        endpoint: String,
        _dir: std::path::PathBuf,
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    impl Etcd {
        pub async fn start(binary: &str, dir: &Path) -> anyhow::Result<Self> {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir)?;
            let (client, peer) = (free_port()?, free_port()?);
            let endpoint = format!("http://127.0.0.1:{client}");
            let child = std::process::Command::new(binary)
                .args(["--data-dir", &dir.display().to_string()])
                .args([
                    "--listen-client-urls",
                    &endpoint,
                    "--advertise-client-urls",
                    &endpoint,
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args([
                    "--initial-cluster",
                    &format!("default=http://127.0.0.1:{peer}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {binary}"))?;
            let etcd = Self {
                child,
                endpoint,
                _dir: dir.to_path_buf(),
            };
            for _ in 0..100 {
                if let Ok(t) = etcd.target("", "probe").await
                    && t.put(b"/probe".to_vec()).await.is_ok()
                {
                    return Ok(etcd);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::bail!("etcd did not become ready")
        }

        pub async fn target(&self, value: &str, run: &str) -> anyhow::Result<EtcdTarget> {
            let channel = Channel::from_shared(self.endpoint.clone())?
                .connect()
                .await?;
            Ok(EtcdTarget {
                grpc: tonic::client::Grpc::new(channel),
                value: value.as_bytes().to_vec(),
                run: run.to_string(),
            })
        }
    }

    pub struct EtcdTarget {
        grpc: tonic::client::Grpc<Channel>,
        value: Vec<u8>,
        run: String,
    }

    impl EtcdTarget {
        /// Create-if-absent, as Kubernetes' etcd3 store does for creates.
        async fn put(&self, key: Vec<u8>) -> anyhow::Result<()> {
            let mut grpc = self.grpc.clone();
            grpc.ready().await?;
            let req = TxnRequest {
                // result EQUAL (0), target CREATE (1), create_revision 0 = absent.
                compare: vec![Compare {
                    result: 0,
                    target: 1,
                    key: key.clone(),
                    create_revision: 0,
                }],
                success: vec![RequestOp {
                    request_put: Some(PutRequest {
                        key,
                        value: self.value.clone(),
                    }),
                }],
            };
            let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Txn");
            let codec = tonic_prost::ProstCodec::<TxnRequest, TxnResponse>::default();
            let resp = grpc.unary(tonic::Request::new(req), path, codec).await?;
            anyhow::ensure!(resp.into_inner().succeeded, "key existed");
            Ok(())
        }
    }

    impl super::Target for EtcdTarget {
        async fn write(&self, _worker: usize, seq: u64) -> anyhow::Result<()> {
            self.put(format!("/registry/configmaps/default/bench-{}-{seq}", self.run).into_bytes())
                .await
        }
    }
}
