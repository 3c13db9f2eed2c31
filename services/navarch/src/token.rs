//! `navarch token create`: a join token for a new node (kubeadm's `kubeadm token create`),
//! stored as a bootstrap token Secret in `kube-system`, with the command that joins.

use std::path::PathBuf;

use anyhow::Context;
use navarch_gateway::bootstrap;

#[derive(clap::Args, Debug)]
pub struct TokenCreateArgs {
    /// The data dir of the control plane (`navarch up` / `navarch server`).
    #[arg(long, env = "NAVARCH_DATA_DIR", default_value_os_t = crate::default_data_dir())]
    pub data_dir: PathBuf,
    /// How long the token may be used to join.
    #[arg(long, default_value = "24h", value_parser = crate::parse_duration)]
    pub ttl: std::time::Duration,
    /// A note stored with the token.
    #[arg(long, default_value = "created by navarch token create")]
    pub description: String,
}

pub async fn create(args: TokenCreateArgs) -> anyhow::Result<()> {
    let connection = crate::status::Connection::read(&args.data_dir)?;
    let client = connection.admin().await?;
    let token = bootstrap::generate();
    let ttl = jiff::SignedDuration::try_from(args.ttl).context("--ttl")?;
    let expires = jiff::Timestamp::now() + ttl;
    let secret = bootstrap::secret_for(&token, expires, &args.description)
        .expect("generated tokens have the bootstrap form");
    client.create(bootstrap::NAMESPACE, &secret).await?;
    tracing::info!(expires = %expires, "join token created");
    // The token on stdout alone, for scripts; how to use it on stderr.
    println!("{token}");
    eprintln!(
        "join a node (valid until {expires}):\n  navarch agent --gateway {} --ca-file {} --join-token {token}",
        connection.grpc,
        args.data_dir.join(&connection.ca_file).display()
    );
    Ok(())
}
