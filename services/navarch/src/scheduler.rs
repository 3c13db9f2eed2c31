//! The scheduler as `navarch up` / `navarch server` run it: in-process, leader-elected, a
//! supervised actor, talking to the gateway over TLS like any other client.

pub use navarch_scheduler::RunningScheduler;

/// A unique identity for this process: host name plus a random suffix.
pub fn identity() -> String {
    format!(
        "{}_{}",
        gethostname::gethostname().to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Connects to the gateway at `grpc` (verified against `ca_pem`) with `credentials` and starts
/// the scheduler under its supervisor.
pub async fn start(
    grpc: &str,
    ca_pem: &str,
    credentials: navarch_gateway::client::Credentials,
) -> anyhow::Result<RunningScheduler> {
    let client = navarch_gateway::Client::connect(grpc, ca_pem, credentials).await?;
    let config = navarch_scheduler::SchedulerConfig::new(identity());
    Ok(navarch_scheduler::start(client, config).await)
}
