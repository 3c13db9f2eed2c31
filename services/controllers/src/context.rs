//! What every loop shares during one leadership term (client, informer factory, event
//! recorder, clock, settings, fault hooks), and the runner that turns a `reconcile` function
//! into a [`ControlLoop`] the supervisor can start and restart.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use navarch_api::ApiError;
use navarch_gateway::Client;
use navarch_runtime::events::object_reference;
use navarch_runtime::{
    Action, Cache, Controller, EventRecorder, EventType, InformerFactory, KubeObject, WorkQueue,
};

use crate::clock::Clock;
use crate::manager::Faults;
use crate::settings::Settings;

/// The state shared by the loops of one leadership term.
pub(crate) struct Shared {
    pub client: Client,
    pub factory: InformerFactory,
    pub recorder: EventRecorder,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub faults: Arc<Faults>,
}

impl Shared {
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Records an event about `obj`.
    pub fn event<T: KubeObject>(&self, obj: &T, kind: EventType, reason: &str, message: String) {
        self.recorder
            .record(object_reference(obj), kind, reason, reason, message);
    }

    /// Queues every key of `cache` whenever a fake clock jumps, so loops that wait for a
    /// time (schedules, deadlines) notice at once.
    pub fn requeue_on_clock_jumps<T: KubeObject>(
        &self,
        queue: &WorkQueue<navarch_runtime::ObjectKey>,
        cache: &Arc<Cache<T>>,
    ) {
        let Some(mut jumps) = self.clock.jumps() else {
            return;
        };
        let queue = queue.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            while jumps.changed().await.is_ok() {
                if queue.is_shutting_down() {
                    return;
                }
                for key in cache.keys() {
                    queue.add(key);
                }
            }
        });
    }
}

/// One control loop as the supervisor sees it: something to run until it stops or crashes
/// (`run` returns `Err` with the panic message when a reconcile panics; pending keys are kept
/// for the next run), and to stop.
pub use navarch_runtime::Supervised as ControlLoop;

type ReconcileFn<K, C> = fn(K, Arc<C>) -> BoxFuture<'static, Result<Action, ApiError>>;

/// A [`ControlLoop`] made of a queue, a context and a reconcile function.
pub(crate) struct Runner<K, C> {
    name: &'static str,
    queue: WorkQueue<K>,
    ctx: Arc<C>,
    shared: Arc<Shared>,
    workers: usize,
    reconcile: ReconcileFn<K, C>,
    link: Option<navarch_runtime::controller::LinkFn<K>>,
}

impl<K, C> Runner<K, C>
where
    K: Clone + Eq + Hash + std::fmt::Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    pub fn new(
        name: &'static str,
        queue: WorkQueue<K>,
        ctx: Arc<C>,
        shared: Arc<Shared>,
        reconcile: ReconcileFn<K, C>,
    ) -> Arc<Self> {
        let workers = shared.settings.workers;
        Arc::new(Self {
            name,
            queue,
            ctx,
            shared,
            workers,
            reconcile,
            link: None,
        })
    }

    /// Each reconcile continues the trace of the last change seen of the object its key
    /// names, an object of `kind` (see `navarch_runtime::controller::Controller::linked`).
    pub fn linked(mut self: Arc<Self>, kind: &'static navarch_api::kinds::KindInfo) -> Arc<Self>
    where
        K: std::fmt::Display,
    {
        if let Some(this) = Arc::get_mut(&mut self) {
            this.link = Some(Arc::new(move |key: &K| {
                let key = key.to_string();
                let (namespace, name) = key.split_once('/').unwrap_or(("", key.as_str()));
                navarch_telemetry::traces::link_key(kind.group, kind.plural, namespace, name)
            }));
        }
        self
    }

    /// A loop that must run one reconcile at a time (allocators).
    pub fn single_worker(mut self: Arc<Self>) -> Arc<Self> {
        if let Some(this) = Arc::get_mut(&mut self) {
            this.workers = 1;
        }
        self
    }
}

impl<K, C> ControlLoop for Runner<K, C>
where
    K: Clone + Eq + Hash + std::fmt::Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), String>> {
        async move {
            // Never act on a partial view of the cluster.
            while self
                .shared
                .factory
                .wait_synced(Duration::from_secs(30))
                .await
                .is_err()
            {
                if self.queue.is_shutting_down() {
                    return Ok(());
                }
                tracing::warn!(controller = self.name, "informers not synced yet");
            }
            let name = self.name;
            let reconcile = self.reconcile;
            let faults = self.shared.faults.clone();
            let mut controller = Controller::new(name, self.queue.clone()).workers(self.workers);
            if let Some(link) = &self.link {
                controller = controller.linked(link.clone());
            }
            controller
                .run(
                    move |key: K, ctx: Arc<C>| {
                        let faults = faults.clone();
                        async move {
                            faults.check(name);
                            reconcile(key, ctx).await
                        }
                    },
                    navarch_runtime::controller::backoff_on_error,
                    self.ctx.clone(),
                )
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn shutdown(&self) {
        self.queue.shutdown();
    }
}

/// Boxes a reconcile future (the runner stores plain function pointers).
pub(crate) fn boxed<F>(f: F) -> BoxFuture<'static, Result<Action, ApiError>>
where
    F: Future<Output = Result<Action, ApiError>> + Send + 'static,
{
    f.boxed()
}
