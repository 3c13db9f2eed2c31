//! The work queue of a control loop (client-go's `workqueue`): keys, not objects.
//!
//! - de-duplicating: a key added while it waits is queued once;
//! - per-key serialised: a key handed to a worker is not handed out again until [`WorkQueue::done`];
//!   if it was added meanwhile, it is queued again at `done`, so the change is not lost;
//! - delayed adds ([`WorkQueue::add_after`]) and rate-limited retries
//!   ([`WorkQueue::add_rate_limited`], per-key exponential back-off plus an overall bucket).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backoff::{RateLimiter, default_rate_limiter};

/// What can be queued: cheap to clone, hashable.
pub trait QueueKey: Clone + Eq + Hash + Debug + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Debug + Send + Sync + 'static> QueueKey for T {}

/// A shared handle to one queue (clones are the same queue).
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    name: &'static str,
    state: Mutex<State<K>>,
    ready: Notify,
    timer: Arc<Notify>,
    limiter: Box<dyn RateLimiter<K>>,
    metrics: QueueMetrics,
}

impl<K> Drop for Inner<K> {
    fn drop(&mut self) {
        // Let the timer task notice that the queue is gone.
        self.timer.notify_one();
    }
}

struct State<K> {
    /// Keys ready for a worker, in order.
    queue: VecDeque<K>,
    /// Keys that need processing (queued, or re-added while processing).
    dirty: HashSet<K>,
    /// Keys a worker holds.
    processing: HashSet<K>,
    /// When each queued key was queued (for the queue-latency metric).
    queued_at: HashMap<K, Instant>,
    /// Delayed keys: the earliest time each one is due.
    waiting: HashMap<K, Instant>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    deadline_keys: HashMap<u64, K>,
    seq: u64,
    shutting_down: bool,
}

#[derive(Clone)]
struct QueueMetrics {
    attrs: [KeyValue; 1],
    depth: Gauge<u64>,
    adds: Counter<u64>,
    retries: Counter<u64>,
    latency: Histogram<f64>,
}

impl QueueMetrics {
    fn new(name: &'static str) -> Self {
        let meter = navarch_telemetry::meter("navarch-runtime");
        Self {
            attrs: [KeyValue::new("name", name)],
            depth: meter
                .u64_gauge("navarch.workqueue.depth")
                .with_unit("{key}")
                .with_description("Keys waiting in the work queue")
                .build(),
            adds: meter
                .u64_counter("navarch.workqueue.adds")
                .with_unit("{key}")
                .with_description("Keys added to the work queue")
                .build(),
            retries: meter
                .u64_counter("navarch.workqueue.retries")
                .with_unit("{key}")
                .with_description("Rate-limited re-adds of keys to the work queue")
                .build(),
            latency: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.workqueue.queue.duration",
                "How long a key waits in the work queue before a worker takes it",
            ),
        }
    }
}

impl<K: QueueKey> WorkQueue<K> {
    /// A queue with client-go's default rate limiter (5 ms → 1000 s per key, 10 qps burst 100
    /// overall). `name` labels its metrics.
    pub fn new(name: &'static str) -> Self {
        Self::with_rate_limiter(name, default_rate_limiter())
    }

    /// A queue with its own rate limiter. Must be called inside a Tokio runtime (a timer task
    /// moves delayed keys into the queue when they are due).
    pub fn with_rate_limiter(name: &'static str, limiter: impl RateLimiter<K> + 'static) -> Self {
        let timer = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            name,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                queued_at: HashMap::new(),
                waiting: HashMap::new(),
                deadlines: BinaryHeap::new(),
                deadline_keys: HashMap::new(),
                seq: 0,
                shutting_down: false,
            }),
            ready: Notify::new(),
            timer: timer.clone(),
            limiter: Box::new(limiter),
            metrics: QueueMetrics::new(name),
        });
        tokio::spawn(run_timer(Arc::downgrade(&inner), timer));
        Self { inner }
    }

    /// The name that labels this queue's metrics.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it is already queued; a key being processed is queued again when
    /// its worker calls [`WorkQueue::done`]. Ignored after [`WorkQueue::shutdown`].
    pub fn add(&self, key: K) {
        let mut st = self.state();
        if self.inner.add_locked(&mut st, key) {
            drop(st);
            self.inner.ready.notify_one();
        }
    }

    /// Queues `key` after `delay` (at once for a zero delay). A key delayed twice is due at the
    /// earlier of the two times.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let due = Instant::now() + delay;
        let mut st = self.state();
        if st.shutting_down {
            return;
        }
        if st.waiting.get(&key).is_some_and(|t| *t <= due) {
            return;
        }
        st.waiting.insert(key.clone(), due);
        st.seq += 1;
        let seq = st.seq;
        st.deadlines.push(Reverse((due, seq)));
        st.deadline_keys.insert(seq, key);
        drop(st);
        self.inner.timer.notify_one();
    }

    /// Queues `key` after the rate limiter's delay for it (its next retry).
    pub fn add_rate_limited(&self, key: K) {
        let delay = self.inner.limiter.when(&key);
        self.inner.metrics.retries.add(1, &self.inner.metrics.attrs);
        self.add_after(key, delay);
    }

    /// Stops tracking `key`'s retries (call after it succeeded).
    pub fn forget(&self, key: &K) {
        self.inner.limiter.forget(key);
    }

    /// How many rate-limited retries `key` has had since it was last forgotten.
    pub fn retries(&self, key: &K) -> u32 {
        self.inner.limiter.retries(key)
    }

    /// Waits for a key to process; `None` once the queue is shut down and empty. The caller
    /// owns the key until it calls [`WorkQueue::done`].
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.inner.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state();
                if let Some(key) = st.queue.pop_front() {
                    st.dirty.remove(&key);
                    st.processing.insert(key.clone());
                    let waited = st.queued_at.remove(&key).map(|t| t.elapsed());
                    let depth = st.queue.len() as u64;
                    let more = !st.queue.is_empty();
                    drop(st);
                    let m = &self.inner.metrics;
                    m.depth.record(depth, &m.attrs);
                    if let Some(waited) = waited {
                        m.latency.record(waited.as_secs_f64(), &m.attrs);
                    }
                    if more {
                        // Pass the wake-up on: another worker may be waiting.
                        self.inner.ready.notify_one();
                    }
                    return Some(key);
                }
                if st.shutting_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; queues it again if it was added while being processed.
    pub fn done(&self, key: &K) {
        let mut st = self.state();
        st.processing.remove(key);
        if st.dirty.contains(key) {
            st.queue.push_back(key.clone());
            st.queued_at.insert(key.clone(), Instant::now());
            let depth = st.queue.len() as u64;
            drop(st);
            let m = &self.inner.metrics;
            m.depth.record(depth, &m.attrs);
            self.inner.ready.notify_one();
        }
    }

    /// Keys ready for a worker (not those being processed or delayed): the queue-depth metric.
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys waiting for a delay or a retry back-off.
    pub fn delayed(&self) -> usize {
        self.state().waiting.len()
    }

    /// Stops accepting keys; workers drain what is queued, then [`WorkQueue::get`] returns
    /// `None`.
    pub fn shutdown(&self) {
        let mut st = self.state();
        st.shutting_down = true;
        st.waiting.clear();
        st.deadlines.clear();
        st.deadline_keys.clear();
        drop(st);
        self.inner.ready.notify_waiters();
        self.inner.timer.notify_one();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.state().shutting_down
    }
}

impl<K: QueueKey> Inner<K> {
    /// Returns whether the key became ready.
    fn add_locked(&self, st: &mut State<K>, key: K) -> bool {
        if st.shutting_down || st.dirty.contains(&key) {
            return false;
        }
        self.metrics.adds.add(1, &self.metrics.attrs);
        st.dirty.insert(key.clone());
        if st.processing.contains(&key) {
            return false;
        }
        st.queued_at.insert(key.clone(), Instant::now());
        st.queue.push_back(key);
        self.metrics
            .depth
            .record(st.queue.len() as u64, &self.metrics.attrs);
        true
    }

    /// Moves every due delayed key into the queue; returns the next deadline.
    fn release_due(&self, now: Instant) -> Option<Instant> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut released = 0;
        while let Some(Reverse((due, seq))) = st.deadlines.peek().copied() {
            if due > now {
                break;
            }
            st.deadlines.pop();
            let Some(key) = st.deadline_keys.remove(&seq) else {
                continue;
            };
            // A later entry for a key that was re-delayed earlier is stale.
            if st.waiting.get(&key) != Some(&due) {
                continue;
            }
            st.waiting.remove(&key);
            if self.add_locked(&mut st, key) {
                released += 1;
            }
        }
        let next = st.deadlines.peek().map(|Reverse((due, _))| *due);
        drop(st);
        for _ in 0..released {
            self.ready.notify_one();
        }
        next
    }
}

async fn run_timer<K: QueueKey>(queue: Weak<Inner<K>>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = queue.upgrade() else {
                return;
            };
            if inner
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .shutting_down
            {
                return;
            }
            inner.release_due(Instant::now())
        };
        match next {
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::ItemExponentialBackoff;

    const T: Duration = Duration::from_secs(5);

    async fn get<K: QueueKey>(q: &WorkQueue<K>) -> Option<K> {
        tokio::time::timeout(T, q.get())
            .await
            .expect("get timed out")
    }

    /// Drains what is ready now, marking each key done.
    fn ready_now<K: QueueKey>(q: &WorkQueue<K>) -> Vec<K> {
        let mut out = Vec::new();
        while !q.is_empty() {
            let k = futures::executor::block_on(q.get()).unwrap();
            q.done(&k);
            out.push(k);
        }
        out
    }

    #[tokio::test]
    async fn table_of_add_get_done_sequences() {
        // Each step: "+k" add, "g" get (expects the key), "d k" done; then the final queue.
        struct Case {
            name: &'static str,
            steps: &'static [&'static str],
            queued: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "a key added twice is queued once",
                steps: &["+a", "+b", "+a"],
                queued: &["a", "b"],
            },
            Case {
                name: "a key re-added while processing is queued again after done",
                steps: &["+a", "g a", "+a", "d a"],
                queued: &["a"],
            },
            Case {
                name: "a key being processed is not handed out twice",
                steps: &["+a", "g a", "+a", "+b"],
                queued: &["b"],
            },
            Case {
                name: "done without a re-add forgets the key",
                steps: &["+a", "g a", "d a"],
                queued: &[],
            },
            Case {
                name: "order is first in, first out",
                steps: &["+c", "+a", "+b", "+a"],
                queued: &["c", "a", "b"],
            },
        ];
        for case in cases {
            let q = WorkQueue::<String>::new("test");
            for step in case.steps {
                if let Some(k) = step.strip_prefix('+') {
                    q.add(k.to_string());
                } else if let Some(k) = step.strip_prefix("g ") {
                    assert_eq!(get(&q).await.as_deref(), Some(k), "{}", case.name);
                } else if let Some(k) = step.strip_prefix("d ") {
                    q.done(&k.to_string());
                }
            }
            let mut queued = Vec::new();
            while !q.is_empty() {
                queued.push(get(&q).await.unwrap());
            }
            assert_eq!(queued, case.queued, "{}", case.name);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_arrive_when_due_and_deduplicate() {
        let q = WorkQueue::<&str>::new("test");
        q.add_after("late", Duration::from_secs(10));
        q.add_after("soon", Duration::from_secs(1));
        q.add_after("late", Duration::from_secs(2)); // earlier time wins
        q.add_after("soon", Duration::from_secs(30)); // later time is ignored
        assert_eq!(q.delayed(), 2);
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(ready_now(&q), ["soon"]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ready_now(&q), ["late"]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(ready_now(&q).is_empty(), "stale deadlines fire nothing");
        assert_eq!(q.delayed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_retries_back_off_per_key_until_forgotten() {
        let ms = Duration::from_millis;
        let q = WorkQueue::with_rate_limiter(
            "test",
            ItemExponentialBackoff::new(ms(100), Duration::from_secs(10)),
        );
        // Retry delays 100, 200, 400 ms: each retry arrives only after its delay.
        for (i, delay) in [100u64, 200, 400].into_iter().enumerate() {
            q.add_rate_limited("k");
            assert_eq!(q.retries(&"k"), i as u32 + 1);
            tokio::time::sleep(ms(delay - 1)).await;
            assert!(ready_now(&q).is_empty(), "retry {i} came early");
            tokio::time::sleep(ms(2)).await;
            assert_eq!(ready_now(&q), ["k"], "retry {i}");
        }
        q.forget(&"k");
        assert_eq!(q.retries(&"k"), 0);
        q.add_rate_limited("k");
        tokio::time::sleep(ms(101)).await;
        assert_eq!(ready_now(&q), ["k"], "back to the base delay");
    }

    #[tokio::test]
    async fn shutdown_drains_then_ends_every_worker() {
        let q = WorkQueue::<u32>::new("test");
        q.add(1);
        q.add(2);
        let waiting = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(k) = q.get().await {
                    got.push(k);
                    q.done(&k);
                }
                got
            })
        };
        let idle = {
            let q = q.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                while let Some(k) = q.get().await {
                    q.done(&k);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.shutdown();
        q.add(3); // ignored
        q.add_after(4, Duration::from_millis(1)); // ignored
        let got = tokio::time::timeout(T, waiting).await.unwrap().unwrap();
        assert_eq!(got, [1, 2]);
        tokio::time::timeout(T, idle).await.unwrap().unwrap();
        assert_eq!(get(&q).await, None);
    }

    #[tokio::test]
    async fn concurrent_workers_never_hold_the_same_key() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let q = WorkQueue::<u32>::new("test");
        let holding: Arc<Mutex<HashSet<u32>>> = Arc::default();
        let processed = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (q, holding, processed) = (q.clone(), holding.clone(), processed.clone());
            workers.push(tokio::spawn(async move {
                while let Some(k) = q.get().await {
                    assert!(holding.lock().unwrap().insert(k), "key {k} held twice");
                    tokio::task::yield_now().await;
                    holding.lock().unwrap().remove(&k);
                    processed.fetch_add(1, Ordering::Relaxed);
                    q.done(&k);
                }
            }));
        }
        for round in 0..200u32 {
            q.add(round % 5);
            if round % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::timeout(T, async {
            while !q.is_empty() || !holding.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        q.shutdown();
        for w in workers {
            tokio::time::timeout(T, w).await.unwrap().unwrap();
        }
        let n = processed.load(Ordering::Relaxed);
        assert!((5..=200).contains(&n), "processed {n}");
    }
}
