//! The supervisor tree shared by the controller-manager and the scheduler: a root actor owns
//! one child actor per [`Supervised`] unit of work (a control loop, the scheduling loop) and
//! restarts a crashed child after a back-off, without the others noticing.
//!
//! actix's own `Supervised` only restarts an actor that stopped, and a panic inside a handler
//! takes its arbiter down, so the tree is built differently: each child's work runs on the
//! Tokio runtime the supervisor was started from; a panic there (or an `Err` from
//! [`Supervised::run`]) ends the child's run, the child actor reports the crash to the root
//! and stops, and the root starts a fresh child after an exponential back-off (logged, and
//! counted in the restart counter handed to [`Supervisor::start`]). The actix system lives on
//! its own thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::BoxFuture;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

/// One unit of supervised work: something to run until it stops or crashes, and to stop.
pub trait Supervised: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Runs until [`Supervised::shutdown`] (`Ok`) or until it fails (`Err`, with the reason;
    /// a panic counts as a failure too). Can be called again after a crash.
    fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), String>>;
    /// Stops the work for good ([`Supervised::run`] returns).
    fn shutdown(&self);
}

/// How a supervisor restarts crashed children.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// Names the actor thread and the log lines (`controller-manager`, `scheduler`).
    pub name: String,
    /// The first restart waits this long; each crash in a row doubles it…
    pub restart_backoff: Duration,
    /// …up to this.
    pub restart_backoff_max: Duration,
    /// A child that ran this long without crashing starts its back-off from scratch.
    pub reset_after: Duration,
    /// Counts restarts, with the child's name under this attribute key.
    pub restarts: Counter<u64>,
    pub attribute: &'static str,
}

impl SupervisorConfig {
    pub fn new(name: impl Into<String>, restarts: Counter<u64>, attribute: &'static str) -> Self {
        Self {
            name: name.into(),
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            restarts,
            attribute,
        }
    }

    fn backoff(&self, crashes: u32) -> Duration {
        let factor = 1u32 << crashes.saturating_sub(1).min(16);
        (self.restart_backoff * factor).min(self.restart_backoff_max)
    }
}

/// Restart counts and liveness per child.
#[derive(Default)]
struct Stats {
    restarts: Mutex<HashMap<&'static str, u64>>,
    running: Mutex<HashMap<&'static str, bool>>,
}

impl Stats {
    fn set_running(&self, name: &'static str, running: bool) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, running);
    }
}

/// A running supervisor: its actor system on its own thread.
pub struct Supervisor {
    handle: SupervisorHandle,
    system: actix_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cheap handle to start and stop children from any task.
#[derive(Clone)]
pub struct SupervisorHandle {
    root: Addr<Root>,
    stats: Arc<Stats>,
}

impl Supervisor {
    /// Starts the actor system on its own thread; children run on the current Tokio runtime.
    pub fn start(config: SupervisorConfig) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let stats = Arc::new(Stats::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let root_stats = stats.clone();
        let thread_name = config.name.clone();
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let system = actix_rt::System::new();
                let name = config.name.clone();
                let started = system.block_on(async move {
                    let root = Root {
                        runtime,
                        term: 0,
                        children: HashMap::new(),
                        stats: root_stats,
                        config,
                    }
                    .start();
                    (root, actix_rt::System::current())
                });
                let _ = tx.send(started);
                if let Err(e) = system.run() {
                    tracing::error!(supervisor = %name, error = %e, "actor system failed");
                }
            })
            .expect("spawning a supervisor thread");
        let (root, system) = rx.recv().expect("the actor system starts");
        Self {
            handle: SupervisorHandle { root, stats },
            system,
            thread: Some(thread),
        }
    }

    pub fn handle(&self) -> SupervisorHandle {
        self.handle.clone()
    }

    /// Stops every child and the actor system.
    pub async fn shutdown(mut self) {
        self.handle.stop_all().await;
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.system.stop();
        }
    }
}

impl SupervisorHandle {
    /// Starts a new term with these children (replacing none: call [`Self::stop_all`] first).
    pub async fn start_all(&self, children: Vec<Arc<dyn Supervised>>) {
        let _ = self.root.send(StartAll(children)).await;
    }

    /// Stops every child (leadership lost, or shutdown).
    pub async fn stop_all(&self) {
        let _ = self.root.send(StopAll).await;
    }

    /// How many times `name` was restarted after a crash.
    pub fn restarts(&self, name: &str) -> u64 {
        self.stats
            .restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Whether `name`'s actor runs now (not stopped, not waiting to restart).
    pub fn is_running(&self, name: &str) -> bool {
        self.stats
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(false)
    }
}

struct Slot {
    work: Arc<dyn Supervised>,
    actor: Option<Addr<Child>>,
    /// Crashes in a row (reset after `reset_after` without one).
    crashes: u32,
    last_crash: Option<Instant>,
}

/// The root of the tree: starts one [`Child`] per unit of work and restarts crashed ones.
struct Root {
    runtime: tokio::runtime::Handle,
    term: u64,
    children: HashMap<&'static str, Slot>,
    stats: Arc<Stats>,
    config: SupervisorConfig,
}

impl Actor for Root {
    type Context = Context<Self>;
}

impl Root {
    fn start_child(&mut self, name: &'static str, ctx: &mut Context<Self>) {
        let Some(slot) = self.children.get_mut(name) else {
            return;
        };
        if slot.actor.is_some() {
            return;
        }
        let actor = Child {
            work: slot.work.clone(),
            root: ctx.address(),
            runtime: self.runtime.clone(),
            term: self.term,
            task: None,
        }
        .start();
        slot.actor = Some(actor);
        self.stats.set_running(name, true);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StartAll(Vec<Arc<dyn Supervised>>);

#[derive(Message)]
#[rtype(result = "()")]
struct StopAll;

/// A child ended: `crash` says why when it was not asked to.
#[derive(Message)]
#[rtype(result = "()")]
struct Exited {
    name: &'static str,
    term: u64,
    crash: Option<String>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<StartAll> for Root {
    type Result = ();

    fn handle(&mut self, msg: StartAll, ctx: &mut Context<Self>) {
        self.term += 1;
        for work in msg.0 {
            let name = work.name();
            // The series exists from the start: a restart-storm alert compares against zero.
            self.config
                .restarts
                .add(0, &[KeyValue::new(self.config.attribute, name)]);
            self.children.insert(
                name,
                Slot {
                    work,
                    actor: None,
                    crashes: 0,
                    last_crash: None,
                },
            );
            self.start_child(name, ctx);
        }
        tracing::info!(
            supervisor = %self.config.name,
            children = self.children.len(),
            term = self.term,
            "supervised actors started"
        );
    }
}

impl Handler<StopAll> for Root {
    type Result = ();

    fn handle(&mut self, _: StopAll, _: &mut Context<Self>) {
        self.term += 1;
        if self.children.is_empty() {
            return;
        }
        for (name, slot) in self.children.drain() {
            slot.work.shutdown();
            if let Some(actor) = slot.actor {
                actor.do_send(Stop);
            }
            self.stats.set_running(name, false);
        }
        tracing::info!(supervisor = %self.config.name, "supervised actors stopped");
    }
}

impl Handler<Exited> for Root {
    type Result = ();

    fn handle(&mut self, msg: Exited, ctx: &mut Context<Self>) {
        if msg.term != self.term {
            return;
        }
        self.stats.set_running(msg.name, false);
        let Some(slot) = self.children.get_mut(msg.name) else {
            return;
        };
        slot.actor = None;
        let Some(reason) = msg.crash else {
            tracing::info!(supervisor = %self.config.name, actor = msg.name, "actor stopped");
            return;
        };
        if slot
            .last_crash
            .is_some_and(|t| t.elapsed() > self.config.reset_after)
        {
            slot.crashes = 0;
        }
        slot.crashes += 1;
        slot.last_crash = Some(Instant::now());
        let crashes = slot.crashes;
        let delay = self.config.backoff(crashes);
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
        self.config
            .restarts
            .add(1, &[KeyValue::new(self.config.attribute, msg.name)]);
        tracing::error!(
            supervisor = %self.config.name,
            actor = msg.name,
            %reason,
            crashes_in_a_row = crashes,
            restarts = total,
            restart_in_ms = delay.as_millis() as u64,
            "supervised actor crashed; restarting it"
        );
        let term = self.term;
        let name = msg.name;
        ctx.run_later(delay, move |act, ctx| {
            if act.term == term {
                act.start_child(name, ctx);
            }
        });
    }
}

/// One child: runs its work on the Tokio runtime and reports how it ended.
struct Child {
    work: Arc<dyn Supervised>,
    root: Addr<Root>,
    runtime: tokio::runtime::Handle,
    term: u64,
    task: Option<tokio::task::AbortHandle>,
}

impl Actor for Child {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let join = self.runtime.spawn(self.work.clone().run());
        self.task = Some(join.abort_handle());
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(join).map(|result, act, ctx| {
                let crash = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(message)) => Some(message),
                    Err(e) if e.is_panic() => Some(format!("task panicked: {e}")),
                    Err(_) => None,
                };
                act.root.do_send(Exited {
                    name: act.work.name(),
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

impl Handler<Stop> for Child {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Panics on its first `panics` runs, then runs until shut down.
    struct Flaky {
        panics: AtomicU32,
        runs: AtomicU32,
        stop: tokio_util::sync::CancellationToken,
    }

    impl Supervised for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), String>> {
            Box::pin(async move {
                self.runs.fetch_add(1, Ordering::SeqCst);
                if self
                    .panics
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    panic!("injected");
                }
                self.stop.cancelled().await;
                Ok(())
            })
        }
        fn shutdown(&self) {
            self.stop.cancel();
        }
    }

    fn counter() -> Counter<u64> {
        navarch_telemetry::meter("navarch-runtime-test")
            .u64_counter("test.restarts")
            .build()
    }

    #[tokio::test]
    async fn a_crashed_child_is_restarted_with_backoff_and_stops_on_request() {
        let mut config = SupervisorConfig::new("test", counter(), "actor");
        config.restart_backoff = Duration::from_millis(10);
        let supervisor = Supervisor::start(config);
        let work = Arc::new(Flaky {
            panics: AtomicU32::new(3),
            runs: AtomicU32::new(0),
            stop: Default::default(),
        });
        let handle = supervisor.handle();
        handle.start_all(vec![work.clone()]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while work.runs.load(Ordering::SeqCst) < 4 || !handle.is_running("flaky") {
            assert!(Instant::now() < deadline, "child was not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(handle.restarts("flaky"), 3);
        handle.stop_all().await;
        assert!(!handle.is_running("flaky"));
        supervisor.shutdown().await;
        assert_eq!(work.runs.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut config = SupervisorConfig::new("t", counter(), "actor");
        config.restart_backoff = Duration::from_millis(100);
        config.restart_backoff_max = Duration::from_millis(350);
        assert_eq!(config.backoff(1), Duration::from_millis(100));
        assert_eq!(config.backoff(2), Duration::from_millis(200));
        assert_eq!(config.backoff(3), Duration::from_millis(350));
        assert_eq!(config.backoff(40), Duration::from_millis(350));
    }
}
