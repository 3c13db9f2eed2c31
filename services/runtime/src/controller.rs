//! The reconciler runner, in the kube-rs style: workers take keys from a [`WorkQueue`] and call
//! `reconcile(key, ctx) -> Result<Action, E>`; on error an error policy decides the retry.
//!
//! The runner never tells the reconciler why it was woken, which keeps reconcilers idempotent:
//! read the cache, compare with the desired state, act. A panicking reconcile is caught at the
//! reconcile boundary: its key is retried with back-off and [`Controller::run`] returns
//! [`ControllerError::Panicked`] so that a supervisor can restart the loop (the queue, and so
//! the pending keys, survive the restart).

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use tokio::sync::watch;
use tracing::Instrument;

use crate::queue::{QueueKey, WorkQueue};

/// What to do with a key after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long (even if nothing changes).
    Requeue(Duration),
    /// Nothing to do until a watched object changes and queues the key again.
    AwaitChange,
    /// Retry with the queue's rate limiter (per-key exponential back-off): what an error
    /// policy usually answers.
    Backoff,
}

impl Action {
    pub fn requeue(after: Duration) -> Self {
        Self::Requeue(after)
    }
    pub fn await_change() -> Self {
        Self::AwaitChange
    }
    pub fn backoff() -> Self {
        Self::Backoff
    }
}

/// The error policy most loops want: retry with back-off.
pub fn backoff_on_error<K, E, C>(_key: &K, _error: &E, _ctx: &Arc<C>) -> Action {
    Action::Backoff
}

/// Why a controller stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError<K: std::fmt::Debug> {
    /// A reconcile panicked; the key was queued for a retry.
    #[error("reconcile of {key:?} panicked: {message}")]
    Panicked { key: K, message: String },
}

/// The instruments of one control loop.
#[derive(Clone)]
struct ReconcileMetrics {
    attrs: [KeyValue; 1],
    reconciles: Counter<u64>,
    errors: Counter<u64>,
    duration: Histogram<f64>,
}

impl ReconcileMetrics {
    fn new(controller: &'static str) -> Self {
        let meter = navarch_telemetry::meter("navarch-runtime");
        let metrics = Self {
            attrs: [KeyValue::new("controller", controller)],
            reconciles: meter
                .u64_counter("navarch.controller.reconcile")
                .with_unit("{reconcile}")
                .with_description("Reconciles run, by result (success, error, panic)")
                .build(),
            errors: meter
                .u64_counter("navarch.controller.reconcile.errors")
                .with_unit("{reconcile}")
                .with_description("Reconciles that returned an error or panicked")
                .build(),
            duration: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.controller.reconcile.duration",
                "How long one reconcile took",
            ),
        };
        // The error series exists from the start: ratios and alerts see zero, not nothing.
        metrics.errors.add(0, &metrics.attrs);
        metrics
    }

    fn record(&self, result: &'static str, elapsed: Duration) {
        let attrs = [self.attrs[0].clone(), KeyValue::new("result", result)];
        self.reconciles.add(1, &attrs);
        if result != "success" {
            self.errors.add(1, &self.attrs);
        }
        self.duration.record(elapsed.as_secs_f64(), &self.attrs);
    }
}

/// Maps a queue key to the [`navarch_telemetry::traces::link_key`] of the object it names.
pub type LinkFn<K> = Arc<dyn Fn(&K) -> String + Send + Sync>;

/// The span of one reconcile (controller, key, result), continuing the trace of the change
/// that queued the key when it is known; none while traces are not exported.
fn reconcile_span<K: std::fmt::Debug>(
    controller: &'static str,
    key: &K,
    link: Option<&LinkFn<K>>,
) -> tracing::Span {
    if !navarch_telemetry::traces::exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "reconcile",
        otel.name = %format!("reconcile {controller}"),
        component = "controller",
        controller,
        key = ?key,
        result = tracing::field::Empty,
    );
    if let Some(tp) = link.and_then(|f| navarch_telemetry::traces::watch_links().recall(&f(key))) {
        navarch_telemetry::traces::set_parent_traceparent(&span, &tp);
    }
    span
}

/// Runs a reconciler over a work queue with N workers.
pub struct Controller<K> {
    name: &'static str,
    queue: WorkQueue<K>,
    workers: usize,
    link: Option<LinkFn<K>>,
}

impl<K: QueueKey> Controller<K> {
    /// A controller named `name` (the `controller` label of its metrics) with one worker.
    pub fn new(name: &'static str, queue: WorkQueue<K>) -> Self {
        Self {
            name,
            queue,
            workers: 1,
            link: None,
        }
    }

    /// Continues, in each reconcile's span, the trace of the last change seen of the object
    /// the key names (`link(key)` is its link key), when traces are exported.
    pub fn linked(mut self, link: LinkFn<K>) -> Self {
        self.link = Some(link);
        self
    }

    /// How many keys are reconciled concurrently (never two for the same key).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The queue event handlers add keys to.
    pub fn queue(&self) -> &WorkQueue<K> {
        &self.queue
    }

    /// Runs until the queue is shut down (then returns `Ok` once in-flight reconciles finish)
    /// or a reconcile panics (then returns the panic, after the other workers finish theirs).
    ///
    /// After a successful reconcile the key's back-off is forgotten and `Requeue(d)` queues it
    /// again after `d`. After an error, `error_policy(key, error, ctx)` decides.
    pub async fn run<C, E, R, F, P>(
        self,
        reconcile: R,
        error_policy: P,
        ctx: Arc<C>,
    ) -> Result<(), ControllerError<K>>
    where
        C: Send + Sync + 'static,
        E: Display + Send + 'static,
        R: Fn(K, Arc<C>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(&K, &E, &Arc<C>) -> Action + Send + Sync + 'static,
    {
        let metrics = ReconcileMetrics::new(self.name);
        let reconcile = Arc::new(reconcile);
        let error_policy = Arc::new(error_policy);
        // Set when a worker saw a panic: the others stop taking keys.
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let mut workers = tokio::task::JoinSet::new();
        tracing::info!(
            controller = self.name,
            workers = self.workers,
            "controller starting"
        );
        for _ in 0..self.workers {
            let queue = self.queue.clone();
            let (reconcile, error_policy, ctx) =
                (reconcile.clone(), error_policy.clone(), ctx.clone());
            let metrics = metrics.clone();
            let mut stop_rx = stop_rx.clone();
            let stop_tx = stop_tx.clone();
            let name = self.name;
            let link = self.link.clone();
            workers.spawn(async move {
                loop {
                    let key = tokio::select! {
                        key = queue.get() => key,
                        _ = stop_rx.wait_for(|s| *s) => None,
                    };
                    let key = key?;
                    let started = Instant::now();
                    let span = reconcile_span(name, &key, link.as_ref());
                    let outcome = AssertUnwindSafe(
                        reconcile(key.clone(), ctx.clone()).instrument(span.clone()),
                    )
                    .catch_unwind()
                    .await;
                    let elapsed = started.elapsed();
                    span.record(
                        "result",
                        match &outcome {
                            Ok(Ok(_)) => "success",
                            Ok(Err(_)) => "error",
                            Err(_) => "panic",
                        },
                    );
                    match outcome {
                        Ok(Ok(action)) => {
                            metrics.record("success", elapsed);
                            match action {
                                Action::Requeue(after) => {
                                    queue.forget(&key);
                                    queue.add_after(key.clone(), after);
                                }
                                Action::AwaitChange => queue.forget(&key),
                                Action::Backoff => queue.add_rate_limited(key.clone()),
                            }
                            queue.done(&key);
                        }
                        Ok(Err(error)) => {
                            metrics.record("error", elapsed);
                            let action = error_policy(&key, &error, &ctx);
                            tracing::warn!(
                                controller = name,
                                key = ?key,
                                error = %error,
                                retries = queue.retries(&key),
                                ?action,
                                "reconcile failed"
                            );
                            match action {
                                Action::Backoff => queue.add_rate_limited(key.clone()),
                                Action::Requeue(after) => queue.add_after(key.clone(), after),
                                Action::AwaitChange => queue.forget(&key),
                            }
                            queue.done(&key);
                        }
                        Err(panic) => {
                            metrics.record("panic", elapsed);
                            let message = panic_message(&panic);
                            tracing::error!(controller = name, key = ?key, %message, "reconcile panicked");
                            queue.add_rate_limited(key.clone());
                            queue.done(&key);
                            stop_tx.send_replace(true);
                            return Some(ControllerError::Panicked { key, message });
                        }
                    }
                }
            });
        }
        let mut failure = None;
        while let Some(result) = workers.join_next().await {
            match result {
                Ok(Some(err)) if failure.is_none() => failure = Some(err),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(controller = self.name, error = %e, "controller worker failed")
                }
            }
        }
        tracing::info!(controller = self.name, "controller stopped");
        failure.map_or(Ok(()), Err)
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[derive(Default)]
    struct Ctx {
        calls: Mutex<HashMap<String, u32>>,
        fail_first: AtomicU32,
    }

    impl Ctx {
        fn calls(&self, key: &str) -> u32 {
            self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
        }
    }

    async fn reconcile(key: String, ctx: Arc<Ctx>) -> Result<Action, String> {
        let n = {
            let mut calls = ctx.calls.lock().unwrap();
            let n = calls.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        match key.as_str() {
            "flaky" if n <= ctx.fail_first.load(Ordering::Relaxed) => Err(format!("attempt {n}")),
            "periodic" if n < 3 => Ok(Action::requeue(Duration::from_millis(10))),
            "boom" if n == 1 => panic!("boom"),
            _ => Ok(Action::await_change()),
        }
    }

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        tokio::time::timeout(T, async {
            while !f() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    #[tokio::test]
    async fn errors_retry_with_backoff_and_requeues_repeat() {
        let ctx = Arc::new(Ctx::default());
        ctx.fail_first.store(3, Ordering::Relaxed);
        let queue = WorkQueue::new("test");
        let controller = Controller::new("test", queue.clone()).workers(2);
        let run = tokio::spawn(controller.run(reconcile, backoff_on_error, ctx.clone()));
        queue.add("flaky".to_string());
        queue.add("periodic".to_string());
        queue.add("once".to_string());
        eventually("flaky to succeed", || ctx.calls("flaky") == 4).await;
        eventually("periodic to settle", || ctx.calls("periodic") == 3).await;
        eventually("flaky's back-off to be forgotten", || {
            queue.retries(&"flaky".to_string()) == 0
        })
        .await;
        assert_eq!(ctx.calls("once"), 1);
        queue.shutdown();
        tokio::time::timeout(T, run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_panic_stops_the_controller_and_keeps_the_key() {
        let ctx = Arc::new(Ctx::default());
        let queue = WorkQueue::new("test");
        queue.add("boom".to_string());
        let err = tokio::time::timeout(
            T,
            Controller::new("test", queue.clone()).run(reconcile, backoff_on_error, ctx.clone()),
        )
        .await
        .unwrap()
        .unwrap_err();
        let ControllerError::Panicked { key, message } = err;
        assert_eq!((key.as_str(), message.as_str()), ("boom", "boom"));
        // A restarted controller over the same queue retries the key and converges.
        let run = tokio::spawn(Controller::new("test", queue.clone()).run(
            reconcile,
            backoff_on_error,
            ctx.clone(),
        ));
        eventually("the retry", || ctx.calls("boom") == 2).await;
        queue.shutdown();
        tokio::time::timeout(T, run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
