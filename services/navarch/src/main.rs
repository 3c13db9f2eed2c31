//! The `navarch` binary: every Navarch service behind one set of subcommands.

mod bench;
mod cluster;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "navarch",
    version,
    about = "Navarch: a Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring up a one-machine cluster on the embedded store.
    Up(cluster::ServerArgs),
    /// Run the control plane (no local node agent).
    Server(cluster::ServerArgs),
    /// Benchmarks that print numbers.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Durable 1 KiB ConfigMap creates through the gateway (and against etcd, if found).
    Store(bench::StoreBenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => cluster::run(args, "up").await,
            Command::Server(args) => cluster::run(args, "server").await,
            Command::Bench {
                what: BenchCommand::Store(args),
            } => bench::store(args).await,
        }
    })
}

/// Default data directory: `./navarch-data`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("navarch-data")
}

/// Default gRPC gateway address.
pub fn default_grpc_listen() -> SocketAddr {
    "127.0.0.1:6444".parse().expect("valid address")
}
