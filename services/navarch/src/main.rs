//! The `navarch` binary: every Navarch service behind one set of subcommands.

mod agent;
mod bench;
mod bench_facade;
mod bench_scheduler;
mod cluster;
mod image;
mod scheduler;
mod status;
mod token;

/// jemalloc, not glibc's malloc: the control plane allocates and frees many small objects
/// (decoded API objects, requests, watch events) on every worker thread.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "navarch",
    version,
    // A flag given twice takes its last value (wrappers add defaults before the user's).
    args_override_self = true,
    about = "Navarch: a Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring up a one-machine cluster on the embedded store, with a node agent for this machine.
    Up {
        #[command(flatten)]
        server: cluster::ServerArgs,
        #[command(flatten)]
        node: agent::NodeArgs,
    },
    /// Run a node agent that joins a cluster through its gateway.
    Agent(agent::AgentArgs),
    /// Run the control plane (no local node agent).
    Server(cluster::ServerArgs),
    /// Print the admin kubeconfig of the cluster in the data dir
    /// (`KUBECONFIG=<(navarch kubeconfig) kubectl get nodes`).
    Kubeconfig {
        /// The data dir `navarch up` used.
        #[arg(long, env = "NAVARCH_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// The health of the control plane (its livez/readyz checks) and of every node.
    Status {
        /// The data dir `navarch up` / `navarch server` uses.
        #[arg(long, env = "NAVARCH_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// The cluster CA: rotation with an overlap.
    Certs {
        #[command(subcommand)]
        what: CertsCommand,
    },
    /// Join tokens for new nodes (`navarch agent --join-token`).
    Token {
        #[command(subcommand)]
        what: TokenCommand,
    },
    /// The `navarch` OCI image (what the Helm chart runs).
    Image {
        #[command(subcommand)]
        what: ImageCommand,
    },
    /// Benchmarks that print numbers.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Starts a CA rotation: a new CA signs from the next start of the server on, both CAs
    /// are trusted, and clients that know only the old one keep working (the new CA is
    /// certified by the old). Restart the server(s), hand out the new `pki/ca.crt`, then
    /// `finish-rotation`.
    RotateCa {
        #[arg(long, env = "NAVARCH_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Ends the overlap: only the new CA is trusted (restart the server(s) after).
    FinishRotation {
        #[arg(long, env = "NAVARCH_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates a join token and prints it (and the command that joins).
    Create(token::TokenCreateArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Builds the image from this binary (no container engine needed) and pushes it.
    Push(image::ImagePushArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Durable 1 KiB ConfigMap creates through the gateway (and against etcd, if found).
    Store(bench::StoreBenchArgs),
    /// Pods/s from creation to persisted binding, and scheduling latency, on simulated nodes.
    Scheduler(bench_scheduler::SchedulerBenchArgs),
    /// The REST facade against gRPC: listing 10,000 pods (JSON and Table) and 1 KiB creates.
    Facade(bench_facade::FacadeBenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up { server, node } => cluster::run(server, "up", Some(node)).await,
            Command::Server(args) => cluster::run(args, "server", None).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Kubeconfig { data_dir } => cluster::print_kubeconfig(&data_dir),
            Command::Status { data_dir } => status::run(&data_dir).await,
            Command::Certs {
                what: CertsCommand::RotateCa { data_dir },
            } => {
                let _telemetry = navarch_telemetry::init("navarch-certs")?;
                navarch_pki::rotate_ca(&data_dir.join("pki"))?;
                eprintln!(
                    "CA rotation started in {}: restart navarch; then give clients and agents the new {} (both CAs) and run `navarch certs finish-rotation`",
                    data_dir.join("pki").display(),
                    data_dir.join("pki/ca.crt").display()
                );
                Ok(())
            }
            Command::Certs {
                what: CertsCommand::FinishRotation { data_dir },
            } => {
                let _telemetry = navarch_telemetry::init("navarch-certs")?;
                navarch_pki::finish_ca_rotation(&data_dir.join("pki"))?;
                eprintln!("only the new CA is trusted now: restart navarch");
                Ok(())
            }
            Command::Token {
                what: TokenCommand::Create(args),
            } => {
                let _telemetry = navarch_telemetry::init("navarch-token")?;
                token::create(args).await
            }
            Command::Image {
                what: ImageCommand::Push(args),
            } => {
                let _telemetry = navarch_telemetry::init("navarch-image")?;
                image::run(args).await
            }
            Command::Bench {
                what: BenchCommand::Store(args),
            } => bench::store(args).await,
            Command::Bench {
                what: BenchCommand::Scheduler(args),
            } => bench_scheduler::run(args).await,
            Command::Bench {
                what: BenchCommand::Facade(args),
            } => bench_facade::run(args).await,
        }
    })
}

/// Default data directory: `./navarch-data`.
/// A duration flag: `15s`, `5m`, `1h30m` (Go-style, as the Kubernetes flags take them).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("invalid duration {s:?} (like 15s, 5m, 1h30m): {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("duration {s:?} must not be negative"))
}

pub fn default_data_dir() -> PathBuf {
    PathBuf::from("navarch-data")
}

/// Default Kubernetes HTTPS API address.
pub fn default_api_listen() -> SocketAddr {
    navarch_facade::DEFAULT_LISTEN
        .parse()
        .expect("valid address")
}

/// Default gRPC gateway address.
/// Default telemetry listener of the control plane (`/metrics`, health).
pub fn default_telemetry_listen() -> SocketAddr {
    "127.0.0.1:9464".parse().expect("valid address")
}

/// Default telemetry listener of a standalone `navarch agent` (beside a server's).
pub fn default_agent_telemetry_listen() -> SocketAddr {
    "127.0.0.1:9465".parse().expect("valid address")
}

pub fn default_grpc_listen() -> SocketAddr {
    "127.0.0.1:6444".parse().expect("valid address")
}
