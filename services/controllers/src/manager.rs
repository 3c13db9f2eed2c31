//! The controller-manager: one supervised actor per control loop, under the supervisor tree
//! of [`navarch_runtime::supervisor`]. Each loop's reconciles run wrapped in `catch_unwind`
//! (by [`navarch_runtime::Controller`]); a caught panic ends the loop's run with an error, its
//! actor reports the crash and stops, and the supervisor starts a fresh actor after a back-off
//! (logged, and counted in `navarch.controller.restarts`). The other loops never notice.
//!
//! Only the holder of the Lease `kube-system/navarch-controller-manager` runs loops; on losing
//! it the loops stop and the manager campaigns again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use navarch_gateway::Client;
use navarch_runtime::{
    EventRecorder, InformerFactory, LeaderElectionConfig, LeaderElector, Supervisor,
    SupervisorConfig, SupervisorHandle,
};
use opentelemetry::metrics::Counter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::context::{ControlLoop, Shared};
use crate::settings::Settings;

/// Where the controller-manager's leader election Lease lives.
pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "navarch-controller-manager";

/// How to run a controller-manager.
#[derive(Clone)]
pub struct ManagerConfig {
    pub client: Client,
    /// This instance's name (events' `reportingInstance`, the Lease holder identity).
    pub identity: String,
    /// `None`: act at once without a Lease (one manager only, e.g. tests).
    pub leader_election: Option<LeaderElectionConfig>,
    /// Which loops run (`--controllers`): empty or `*` for all, `-name` to leave one out.
    pub controllers: Vec<String>,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
}

impl ManagerConfig {
    /// Every loop, default settings, the system clock, leader election on the default Lease.
    pub fn new(client: Client, identity: impl Into<String>) -> Self {
        let identity = identity.into();
        Self {
            leader_election: Some(LeaderElectionConfig::new(
                LEASE_NAMESPACE,
                LEASE_NAME,
                identity.clone(),
            )),
            client,
            identity,
            controllers: Vec::new(),
            settings: Settings::default(),
            clock: Arc::new(SystemClock),
        }
    }

    fn enabled(&self, name: &str) -> bool {
        if self.controllers.iter().any(|c| c == &format!("-{name}")) {
            return false;
        }
        self.controllers.is_empty() || self.controllers.iter().any(|c| c == "*" || c == name)
    }
}

/// A unique name for this process: the host name plus a random suffix.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "navarch".into());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// Fault injection for tests: makes a loop's next reconciles panic.
#[derive(Default)]
pub struct Faults {
    armed: AtomicBool,
    panics: Mutex<HashMap<String, u32>>,
}

impl Faults {
    /// The next `times` reconciles of `controller` panic.
    pub fn panic_next(&self, controller: &str, times: u32) {
        self.panics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(controller.to_string(), times);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Panics if a fault is armed for `controller` (called at the start of each reconcile).
    pub(crate) fn check(&self, controller: &str) {
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        let fire = {
            let mut panics = self.panics.lock().unwrap_or_else(|e| e.into_inner());
            match panics.get_mut(controller) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if fire {
            panic!("injected fault: {controller} reconcile panics");
        }
    }
}

/// A running controller-manager.
pub struct ControllerManager {
    stop: CancellationToken,
    lead_task: Option<tokio::task::JoinHandle<()>>,
    supervisor: Option<Supervisor>,
    handle: SupervisorHandle,
    faults: Arc<Faults>,
    leading: watch::Receiver<bool>,
}

impl ControllerManager {
    /// Starts the actix supervisor on its own thread and campaigns for leadership; loops run
    /// on the current Tokio runtime while this instance leads.
    pub fn start(config: ManagerConfig) -> Self {
        let faults = Arc::new(Faults::default());
        let mut supervision =
            SupervisorConfig::new("controller-manager", restart_counter(), "controller");
        supervision.restart_backoff = config.settings.restart_backoff;
        supervision.restart_backoff_max = config.settings.restart_backoff_max;
        let supervisor = Supervisor::start(supervision);
        let handle = supervisor.handle();
        let stop = CancellationToken::new();
        let (leading_tx, leading) = watch::channel(false);
        let lead_task = tokio::spawn(lead(
            config,
            handle.clone(),
            stop.clone(),
            leading_tx,
            faults.clone(),
        ));
        Self {
            stop,
            lead_task: Some(lead_task),
            supervisor: Some(supervisor),
            handle,
            faults,
            leading,
        }
    }

    /// The fault-injection hooks (tests).
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// How many times `controller` was restarted after a crash.
    pub fn restarts(&self, controller: &str) -> u64 {
        self.handle.restarts(controller)
    }

    /// Whether `controller`'s actor is running now (not stopped or waiting to restart).
    pub fn is_running(&self, controller: &str) -> bool {
        self.handle.is_running(controller)
    }

    /// Whether this instance leads (runs loops) now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// A health probe: whether the leader-election task still runs (leading or standing
    /// by); it ends only on shutdown or when it failed for good.
    pub fn probe(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let leading = self.leading.clone();
        move || leading.has_changed().is_ok()
    }

    /// Waits until this instance leads.
    pub async fn wait_leading(&self) {
        let mut rx = self.leading.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Stops the loops, gives the Lease up and stops the actor system.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.lead_task.take() {
            let _ = task.await;
        }
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.shutdown().await;
        }
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn restart_counter() -> Counter<u64> {
    navarch_telemetry::meter("navarch-controllers")
        .u64_counter("navarch.controller.restarts")
        .with_unit("{restart}")
        .with_description("Control loops restarted by the supervisor after a crash")
        .build()
}

/// Campaigns; while leading, builds the loops of a term and hands them to the supervisor.
async fn lead(
    config: ManagerConfig,
    supervisor: SupervisorHandle,
    stop: CancellationToken,
    leading: watch::Sender<bool>,
    faults: Arc<Faults>,
) {
    let elector = config
        .leader_election
        .clone()
        .map(|le| LeaderElector::new(config.client.clone(), le));
    loop {
        let leadership = match &elector {
            Some(elector) => tokio::select! {
                l = elector.acquire() => Some(l),
                _ = stop.cancelled() => break,
            },
            None => None,
        };
        tracing::info!(identity = %config.identity, "controller-manager leading; starting loops");
        leading.send_replace(true);
        let shared = Arc::new(Shared {
            client: config.client.clone(),
            factory: InformerFactory::new(config.client.clone()),
            recorder: EventRecorder::new(
                config.client.clone(),
                "controller-manager",
                &config.identity,
            ),
            clock: config.clock.clone(),
            settings: config.settings.clone(),
            faults: faults.clone(),
        });
        let loops = build_loops(&config, &shared);
        supervisor.start_all(loops).await;
        let lost = async {
            match &leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = lost => tracing::warn!(identity = %config.identity, "leadership lost; stopping loops"),
        }
        supervisor.stop_all().await;
        shared.factory.shutdown();
        leading.send_replace(false);
        if let Some(l) = leadership {
            l.release().await;
        }
        if stop.is_cancelled() {
            break;
        }
    }
}

fn build_loops(config: &ManagerConfig, shared: &Arc<Shared>) -> Vec<Arc<dyn ControlLoop>> {
    type Build = fn(&Arc<Shared>) -> Arc<dyn ControlLoop>;
    let all: &[(&str, Build)] = &[
        (crate::replicaset::NAME, crate::replicaset::build),
        (crate::deployment::NAME, crate::deployment::build),
        (crate::gc::NAME, crate::gc::build),
        (crate::namespace::NAME, crate::namespace::build),
        (crate::job::NAME, crate::job::build),
        (crate::cronjob::NAME, crate::cronjob::build),
        (crate::daemonset::NAME, crate::daemonset::build),
        (crate::statefulset::NAME, crate::statefulset::build),
        (crate::nodelifecycle::NAME, crate::nodelifecycle::build),
        (
            crate::endpoints::ENDPOINTS,
            crate::endpoints::build_endpoints,
        ),
        (
            crate::endpoints::ENDPOINT_SLICES,
            crate::endpoints::build_endpoint_slices,
        ),
        (crate::serviceaccount::NAME, crate::serviceaccount::build),
        (crate::clusterrole::NAME, crate::clusterrole::build),
        (crate::nodeipam::NAME, crate::nodeipam::build),
        (crate::hpa::NAME, crate::hpa::build),
    ];
    all.iter()
        .filter(|(name, _)| config.enabled(name))
        .map(|(_, build)| build(shared))
        .collect()
}
