//! The scheduler as `navarch up` / `navarch server` run it: in-process, leader-elected, talking
//! to the gateway over TLS like any other client.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A scheduler running in the background.
pub struct RunningScheduler {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A unique identity for this process: host name plus a random suffix.
pub fn identity() -> String {
    format!(
        "{}_{}",
        gethostname::gethostname().to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Connects to the gateway at `grpc` (verified against `ca_pem`) with `token` and starts the
/// scheduler. The admin token stands in until the scheduler gets an identity of its own.
pub async fn start(grpc: &str, ca_pem: &str, token: &str) -> anyhow::Result<RunningScheduler> {
    let client = navarch_gateway::Client::connect(grpc, ca_pem, token).await?;
    let config = navarch_scheduler::SchedulerConfig::new(identity());
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(navarch_scheduler::run(client, config, token));
    Ok(RunningScheduler { stop, task })
}

impl RunningScheduler {
    /// Stops scheduling and gives up the Lease.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
