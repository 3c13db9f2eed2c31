//! The scheduler as a supervised actor, the way `navarch up` / `navarch server` run it: the
//! scheduling loop ([`crate::run`], leader election included) is the one child of a
//! [`navarch_runtime::Supervisor`], so a panic in the loop restarts it with back-off (with
//! fresh caches, from a fresh list of pods and nodes) instead of taking the process down.
//! Restarts are counted in `navarch.scheduler.restarts`.

use std::sync::Arc;

use futures::future::BoxFuture;
use navarch_gateway::Client;
use navarch_runtime::{Supervised, Supervisor, SupervisorConfig, SupervisorHandle};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::SchedulerConfig;

/// The actor's name (and the `actor` attribute of its restart counter).
pub const NAME: &str = "scheduler";

struct SchedulerLoop {
    client: Client,
    config: SchedulerConfig,
    stop: CancellationToken,
    /// One run at a time: a restarted run waits until the crashed one is gone.
    running: Mutex<()>,
}

impl Supervised for SchedulerLoop {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let _one = self.running.lock().await;
            crate::run(self.client.clone(), self.config.clone(), self.stop.clone()).await;
            Ok(())
        })
    }

    fn shutdown(&self) {
        self.stop.cancel();
    }
}

/// A scheduler running under its supervisor.
pub struct RunningScheduler {
    supervisor: Supervisor,
    handle: SupervisorHandle,
}

/// Starts the scheduler under a supervisor on the current Tokio runtime.
pub async fn start(client: Client, config: SchedulerConfig) -> RunningScheduler {
    let restarts = navarch_telemetry::meter("navarch-scheduler")
        .u64_counter("navarch.scheduler.restarts")
        .with_unit("{restart}")
        .with_description("Scheduler restarts by its supervisor after a crash")
        .build();
    let supervisor = Supervisor::start(SupervisorConfig::new(NAME, restarts, "actor"));
    let handle = supervisor.handle();
    handle
        .start_all(vec![Arc::new(SchedulerLoop {
            client,
            config,
            stop: CancellationToken::new(),
            running: Mutex::new(()),
        })])
        .await;
    RunningScheduler { supervisor, handle }
}

impl RunningScheduler {
    /// How many times the supervisor restarted the scheduling loop.
    pub fn restarts(&self) -> u64 {
        self.handle.restarts(NAME)
    }

    /// Whether the scheduling loop runs now (not waiting for a restart).
    pub fn is_running(&self) -> bool {
        self.handle.is_running(NAME)
    }

    /// A health probe: whether the scheduling loop runs now (checked from any thread).
    pub fn probe(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let handle = self.handle.clone();
        move || handle.is_running(NAME)
    }

    /// Stops scheduling, gives the Lease up and stops the supervisor.
    pub async fn shutdown(self) {
        self.supervisor.shutdown().await;
    }
}
