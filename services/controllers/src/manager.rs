//! The supervisor tree: a [`Supervisor`] actor owns one [`LoopActor`] per control loop.
//!
//! actix's own `Supervised` only restarts an actor that stopped, and a panic inside a handler
//! takes its arbiter down, so the tree is built differently: each loop's work runs on the
//! Tokio runtime of the gateway client, its reconciles wrapped in `catch_unwind` (by
//! [`navarch_runtime::Controller`]); a caught panic ends the loop's run with an error, its
//! actor reports the crash to the supervisor and stops, and the supervisor starts a fresh
//! actor after a back-off (logged, and counted in `navarch.controller.restarts`). The other
//! loops never notice. The actix system lives on its own thread.
//!
//! Only the holder of the Lease `kube-system/navarch-controller-manager` runs loops; on losing
//! it the loops stop and the manager campaigns again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use navarch_gateway::Client;
use navarch_runtime::{EventRecorder, InformerFactory, LeaderElectionConfig, LeaderElector};
use opentelemetry::KeyValue;
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

/// Restart counts per loop (also exported as `navarch.controller.restarts`).
#[derive(Default)]
struct Stats {
    restarts: Mutex<HashMap<&'static str, u64>>,
    running: Mutex<HashMap<&'static str, bool>>,
}

/// A running controller-manager.
pub struct ControllerManager {
    stop: CancellationToken,
    lead_task: Option<tokio::task::JoinHandle<()>>,
    system: actix_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Stats>,
    faults: Arc<Faults>,
    leading: watch::Receiver<bool>,
}

impl ControllerManager {
    /// Starts the actix supervisor on its own thread and campaigns for leadership; loops run
    /// on the current Tokio runtime while this instance leads.
    pub fn start(config: ManagerConfig) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let stats = Arc::new(Stats::default());
        let faults = Arc::new(Faults::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let settings = config.settings.clone();
        let supervisor_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("controller-manager".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                let started = system.block_on(async move {
                    let supervisor = Supervisor {
                        runtime,
                        term: 0,
                        loops: HashMap::new(),
                        stats: supervisor_stats,
                        restarts: restart_counter(),
                        settings,
                    }
                    .start();
                    (supervisor, actix_rt::System::current())
                });
                let _ = tx.send(started);
                if let Err(e) = system.run() {
                    tracing::error!(error = %e, "controller-manager actor system failed");
                }
            })
            .expect("spawning the controller-manager thread");
        let (supervisor, system) = rx.recv().expect("the actor system starts");
        let stop = CancellationToken::new();
        let (leading_tx, leading) = watch::channel(false);
        let lead_task = tokio::spawn(lead(
            config,
            supervisor,
            stop.clone(),
            leading_tx,
            faults.clone(),
        ));
        Self {
            stop,
            lead_task: Some(lead_task),
            system,
            thread: Some(thread),
            stats,
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
        self.stats
            .restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(controller)
            .copied()
            .unwrap_or(0)
    }

    /// Whether `controller`'s actor is running now (not stopped or waiting to restart).
    pub fn is_running(&self, controller: &str) -> bool {
        self.stats
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(controller)
            .copied()
            .unwrap_or(false)
    }

    /// Whether this instance leads (runs loops) now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
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
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.thread.is_some() {
            self.system.stop();
        }
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
    supervisor: Addr<Supervisor>,
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
        let _ = supervisor.send(StartLoops(loops)).await;
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
        let _ = supervisor.send(StopLoops).await;
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
        (crate::nodeipam::NAME, crate::nodeipam::build),
    ];
    all.iter()
        .filter(|(name, _)| config.enabled(name))
        .map(|(_, build)| build(shared))
        .collect()
}

/// Starts the loops of a new term.
#[derive(Message)]
#[rtype(result = "()")]
struct StartLoops(Vec<Arc<dyn ControlLoop>>);

/// Stops every loop (leadership lost or shutdown).
#[derive(Message)]
#[rtype(result = "()")]
struct StopLoops;

/// A loop actor ended: `crash` says why when it was not asked to.
#[derive(Message)]
#[rtype(result = "()")]
struct LoopExited {
    name: &'static str,
    term: u64,
    crash: Option<String>,
}

/// Asks a loop actor to stop.
#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

struct Slot {
    control_loop: Arc<dyn ControlLoop>,
    actor: Option<Addr<LoopActor>>,
    /// Crashes in a row (reset after a minute without one).
    crashes: u32,
    last_crash: Option<Instant>,
}

/// The root of the tree: starts one [`LoopActor`] per loop and restarts crashed ones.
struct Supervisor {
    runtime: tokio::runtime::Handle,
    term: u64,
    loops: HashMap<&'static str, Slot>,
    stats: Arc<Stats>,
    restarts: Counter<u64>,
    settings: Settings,
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Supervisor {
    fn start_loop(&mut self, name: &'static str, ctx: &mut Context<Self>) {
        let Some(slot) = self.loops.get_mut(name) else {
            return;
        };
        if slot.actor.is_some() {
            return;
        }
        let actor = LoopActor {
            control_loop: slot.control_loop.clone(),
            supervisor: ctx.address(),
            runtime: self.runtime.clone(),
            term: self.term,
            task: None,
        }
        .start();
        slot.actor = Some(actor);
        self.set_running(name, true);
    }

    fn set_running(&self, name: &'static str, running: bool) {
        self.stats
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, running);
    }

    fn backoff(&self, crashes: u32) -> Duration {
        let base = self.settings.restart_backoff;
        let factor = 1u32 << crashes.saturating_sub(1).min(16);
        (base * factor).min(self.settings.restart_backoff_max)
    }
}

impl Handler<StartLoops> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: StartLoops, ctx: &mut Context<Self>) {
        self.term += 1;
        for control_loop in msg.0 {
            let name = control_loop.name();
            self.loops.insert(
                name,
                Slot {
                    control_loop,
                    actor: None,
                    crashes: 0,
                    last_crash: None,
                },
            );
            self.start_loop(name, ctx);
        }
        tracing::info!(
            loops = self.loops.len(),
            term = self.term,
            "control loops started"
        );
    }
}

impl Handler<StopLoops> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: StopLoops, _: &mut Context<Self>) {
        self.term += 1;
        for (name, slot) in self.loops.drain() {
            slot.control_loop.shutdown();
            if let Some(actor) = slot.actor {
                actor.do_send(Stop);
            }
            self.stats
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, false);
        }
        tracing::info!("control loops stopped");
    }
}

impl Handler<LoopExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: LoopExited, ctx: &mut Context<Self>) {
        if msg.term != self.term {
            return;
        }
        self.set_running(msg.name, false);
        let Some(slot) = self.loops.get_mut(msg.name) else {
            return;
        };
        slot.actor = None;
        let Some(reason) = msg.crash else {
            tracing::info!(controller = msg.name, "control loop stopped");
            return;
        };
        if slot
            .last_crash
            .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
        {
            slot.crashes = 0;
        }
        slot.crashes += 1;
        slot.last_crash = Some(Instant::now());
        let crashes = slot.crashes;
        let delay = self.backoff(crashes);
        let total = {
            let mut restarts = self
                .stats
                .restarts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = restarts.entry(msg.name).or_default();
            *n += 1;
            *n
        };
        self.restarts
            .add(1, &[KeyValue::new("controller", msg.name)]);
        tracing::error!(
            controller = msg.name,
            %reason,
            crashes_in_a_row = crashes,
            restarts = total,
            restart_in_ms = delay.as_millis() as u64,
            "control loop crashed; restarting it"
        );
        let term = self.term;
        let name = msg.name;
        ctx.run_later(delay, move |act, ctx| {
            if act.term == term {
                act.start_loop(name, ctx);
            }
        });
    }
}

/// One control loop: runs it on the Tokio runtime and reports how it ended.
struct LoopActor {
    control_loop: Arc<dyn ControlLoop>,
    supervisor: Addr<Supervisor>,
    runtime: tokio::runtime::Handle,
    term: u64,
    task: Option<tokio::task::AbortHandle>,
}

impl Actor for LoopActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let join = self.runtime.spawn(self.control_loop.clone().run());
        self.task = Some(join.abort_handle());
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(join).map(|result, act, ctx| {
                let crash = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(message)) => Some(message),
                    Err(e) if e.is_panic() => Some(format!("loop task panicked: {e}")),
                    Err(_) => None,
                };
                act.supervisor.do_send(LoopExited {
                    name: act.control_loop.name(),
                    term: act.term,
                    crash,
                });
                ctx.stop();
            }),
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Handler<Stop> for LoopActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
