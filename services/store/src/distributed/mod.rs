//! The distributed engine: the [`Store`] trait over a transactional key-value backend
//! ([`TxnKv`]: TiKV in production, [`MemoryKv`] in tests), built so that several gateways
//! (engine instances in different processes) share one store and behave as one.
//!
//! - **Revisions** come from one counter key (`m/rev`) that every writing transaction reads
//!   and advances, so revisions are contiguous and cluster-wide, and any two concurrent
//!   writing transactions conflict on it: the backend's write-conflict check serializes them,
//!   which also makes compare-and-write serializable across gateways. The price is a hot key:
//!   writes to the whole cluster are serialized through it. Group commit (one backend
//!   transaction per batch of writes from one gateway) amortizes that. The alternative —
//!   commit timestamps as revisions — avoids the hot key but needs a safe point below every
//!   in-flight transaction before the log may be tailed; contiguous revisions make the watch
//!   log trivially safe (revision `n + 1` is visible exactly when its transaction committed)
//!   and keep the etcd contract the conformance suite checks ("no revision skipped").
//! - **Watch log**: each revision's events (with previous values) are written to `l/<rev>` in
//!   the same transaction as the data. Every instance runs one tailer that reads the log in
//!   revision order from fresh snapshots and broadcasts it to its watchers; a watcher catches
//!   up from the log, then hands off to the broadcast (the shared logic in `watch.rs`). A
//!   write is acknowledged once the writing instance's tailer has passed it, so its own
//!   watchers already have it, as with the embedded engine.
//! - **Group commit**: one committer per instance drains queued txns into one backend
//!   transaction. A conflicting batch is retried with back-off a few times, then each txn is
//!   committed alone (with its own retries), so one troublesome write cannot stall a batch.
//! - **Compaction**: [`Store::compact`] advances `m/compacted` (cheap, idempotent, any
//!   instance); deleting superseded history and old log entries is done, from the log, by the
//!   instance holding the compaction lease (`m/lease`, with expiry). The lease only avoids
//!   duplicate work: cleaning is correct even when two instances do it at once, so the
//!   lease's expiry may rely on the gateways' wall clocks.
//!
//! Outages: backend calls are bounded by [`DistributedOptions::op_timeout`]; a backend that
//! cannot be reached answers [`StoreError::Unavailable`] at once, and everything resumes
//! when it returns (the tailer keeps polling).

mod kv;
mod layout;
mod memkv;
#[cfg(feature = "tikv")]
pub mod tikv;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::runtime::Handle;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::kv::{KvError, KvPair, KvTxn, TxnKv};
pub use self::layout::Layout;
use self::layout::{
    decode_latest, decode_lease, decode_log, decode_version, encode_i64, encode_latest,
    encode_lease, encode_log, encode_version, read_i64,
};
pub use self::memkv::MemoryKv;
use crate::apply::{self, VersionedState};
use crate::watch::{self, LogChunk, LogSource, RevisionEvents};
use crate::{
    EventKind, KeyValue, ListPage, ListRequest, Revision, Store, StoreError, Txn, TxnOutcome,
    WatchStream,
};

/// How many entries one backend scan reads.
const SCAN_CHUNK: u32 = 1024;
/// How many log entries one cleaning transaction removes.
const CLEAN_CHUNK: i64 = 256;
/// How many times a conflicting batch is retried whole before its txns go one by one.
const BATCH_ATTEMPTS: u32 = 3;

/// Tuning of one engine instance (one gateway).
#[derive(Clone, Debug)]
pub struct DistributedOptions {
    /// The namespace in the shared key space (`--store-prefix`), so several clusters can
    /// share one backend.
    pub prefix: String,
    /// This instance's name, as the compaction lease records it.
    pub instance: String,
    /// Most txns committed in one backend transaction.
    pub max_batch: usize,
    /// How many revisions a live watcher may fall behind before its stream ends.
    pub watch_buffer: usize,
    /// How often the tailer polls the log when this instance wrote nothing.
    pub poll_interval: Duration,
    /// How long conflicts and transient backend errors are retried before a call fails
    /// with `Unavailable`.
    pub retry_budget: Duration,
    /// The longest one backend operation may take before it counts as an outage.
    pub op_timeout: Duration,
    /// How long the compaction lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How many revisions behind the head log entries are kept even when compacted, so a
    /// gateway whose tailer is briefly behind does not lose its place.
    pub log_grace: i64,
}

impl Default for DistributedOptions {
    fn default() -> Self {
        Self {
            prefix: "default".into(),
            instance: format!(
                "gateway-{:016x}",
                RandomState::new().hash_one(Instant::now())
            ),
            max_batch: 256,
            watch_buffer: crate::memory::DEFAULT_WATCH_BUFFER,
            poll_interval: Duration::from_millis(20),
            retry_budget: Duration::from_secs(10),
            op_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            log_grace: 4096,
        }
    }
}

/// One engine instance over a shared transactional backend. Several instances (in one
/// process or many) over the same backend and prefix form one store.
pub struct DistributedStore {
    shared: Arc<Shared>,
    /// The strong end of the broadcast: watchers see `Closed` once the store is dropped.
    _events: broadcast::Sender<Arc<RevisionEvents>>,
    requests: mpsc::UnboundedSender<Request>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
}

/// What the committer, the tailer, readers and watch streams share.
struct Shared {
    kv: Arc<dyn TxnKv>,
    layout: Layout,
    options: DistributedOptions,
    /// The highest revision this instance knows is committed.
    current: AtomicI64,
    /// The highest compacted revision this instance has seen.
    compacted: AtomicI64,
    events: broadcast::WeakSender<Arc<RevisionEvents>>,
    /// Wakes the tailer after this instance committed.
    wake: Notify,
    /// Set once the tailer knows where the log ends; watches wait for it.
    tail_ready: tokio::sync::watch::Sender<bool>,
    /// The revision up to which the tailer has broadcast the log to this instance's watchers.
    tailed: tokio::sync::watch::Sender<Revision>,
    runtime: Handle,
}

impl DistributedStore {
    /// Starts an instance over `kv`. Must be called inside a Tokio runtime: it spawns the
    /// committer and the log tailer.
    pub fn new(kv: Arc<dyn TxnKv>, options: DistributedOptions) -> Result<Self, StoreError> {
        let layout = Layout::new(&options.prefix)?;
        let runtime = Handle::try_current().map_err(|_| {
            StoreError::Internal("the distributed store needs a Tokio runtime".into())
        })?;
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            kv,
            layout,
            options,
            current: AtomicI64::new(0),
            compacted: AtomicI64::new(0),
            events: events.downgrade(),
            wake: Notify::new(),
            tail_ready: tokio::sync::watch::Sender::new(false),
            tailed: tokio::sync::watch::Sender::new(0),
            runtime,
        });
        let (requests, rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(run_committer(shared.clone(), rx)),
            tokio::spawn(run_tailer(shared.clone())),
        ];
        Ok(Self {
            shared,
            _events: events,
            requests,
            tasks: Mutex::new(tasks),
        })
    }

    /// Stops this instance at once, as a crash would: queued and in-flight txns are
    /// abandoned (their callers get `Unavailable`; a batch in flight either committed whole
    /// or not at all), the tailer stops.
    pub fn kill(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// Takes or renews the compaction lease; whether this instance holds it now.
    pub async fn hold_compaction_lease(&self) -> Result<bool, StoreError> {
        self.shared.hold_lease().await
    }

    /// The revisions up to which superseded history, and log entries, are deleted.
    pub async fn cleaned_revisions(&self) -> Result<(Revision, Revision), StoreError> {
        self.shared
            .read(|shared, txn| {
                Box::pin(async move {
                    let history = shared.read_counter(txn, shared.layout.cleaned()).await?;
                    let log = shared
                        .read_counter(txn, shared.layout.log_cleaned())
                        .await?;
                    Ok((history, log))
                })
            })
            .await
    }
}

impl Drop for DistributedStore {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kv_error(error: KvError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Why a commit failed: contention (worth retrying, or splitting the batch) or anything else.
#[derive(Debug)]
enum CommitError {
    /// A write conflict or a transient backend error; nothing was written.
    Contended(KvError),
    Store(StoreError),
}

impl From<KvError> for CommitError {
    fn from(error: KvError) -> Self {
        match error {
            KvError::Conflict(_) | KvError::Retryable(_) => CommitError::Contended(error),
            other => CommitError::Store(kv_error(other)),
        }
    }
}

impl From<StoreError> for CommitError {
    fn from(error: StoreError) -> Self {
        CommitError::Store(error)
    }
}

impl From<CommitError> for StoreError {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Contended(error) => {
                tracing::warn!(code = "store.commit_retries_exhausted", %error, "giving up on a commit");
                StoreError::Unavailable(format!("commit retries exhausted: {error}"))
            }
            CommitError::Store(error) => error,
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Exponential back-off with jitter, within a time budget.
struct Backoff {
    attempt: u32,
    deadline: Instant,
}

impl Backoff {
    fn new(budget: Duration) -> Self {
        Self {
            attempt: 0,
            deadline: Instant::now() + budget,
        }
    }

    /// Sleeps before the next attempt; `false` once the budget is spent.
    async fn wait(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        let base = Duration::from_millis(1) * 2u32.pow(self.attempt.min(7));
        let jitter = RandomState::new().hash_one((self.attempt, Instant::now())) % 1000;
        let delay = base.mul_f64(0.5 + jitter as f64 / 1000.0);
        self.attempt += 1;
        tokio::time::sleep(delay.min(self.deadline.saturating_duration_since(Instant::now())))
            .await;
        true
    }
}

/// The key space as one batch sees it: the snapshot's latest versions of the keys the batch
/// touches, updated by each txn of the batch in turn.
struct BatchState {
    latest: HashMap<String, Option<KeyValue>>,
}

impl VersionedState for BatchState {
    fn latest(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.latest
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::Internal(format!("key {key:?} not prefetched")))
    }

    fn record(&mut self, changes: &RevisionEvents) -> Result<(), StoreError> {
        for event in &changes.events {
            let kv = (event.kind == EventKind::Put).then(|| event.kv.clone());
            self.latest.insert(event.kv.key.clone(), kv);
        }
        Ok(())
    }
}

impl Shared {
    async fn timed<T>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        tokio::time::timeout(self.options.op_timeout, op)
            .await
            .unwrap_or_else(|_| Err(KvError::Unavailable(format!("{what} timed out"))))
    }

    async fn begin(&self) -> Result<Box<dyn KvTxn>, StoreError> {
        self.timed("begin", self.kv.begin()).await.map_err(kv_error)
    }

    async fn read_counter(&self, txn: &mut dyn KvTxn, key: Vec<u8>) -> Result<i64, StoreError> {
        match self.timed("get", txn.get(key)).await.map_err(kv_error)? {
            Some(raw) => read_i64(&raw),
            None => Ok(0),
        }
    }

    /// The current and compacted revisions in `txn`'s snapshot; also refreshes this
    /// instance's view of them.
    async fn heads(&self, txn: &mut dyn KvTxn) -> Result<(Revision, Revision), StoreError> {
        let (current_key, compacted_key) = (self.layout.current(), self.layout.compacted());
        let got = self
            .timed(
                "batch_get",
                txn.batch_get(vec![current_key.clone(), compacted_key.clone()]),
            )
            .await
            .map_err(kv_error)?;
        let (mut current, mut compacted) = (0, 0);
        for (key, value) in got {
            if key == current_key {
                current = read_i64(&value)?;
            } else if key == compacted_key {
                compacted = read_i64(&value)?;
            }
        }
        self.current.fetch_max(current, Ordering::AcqRel);
        self.compacted.fetch_max(compacted, Ordering::AcqRel);
        Ok((current, compacted))
    }

    /// Runs a read-only operation in a fresh snapshot. (The TiKV client retries region
    /// errors and leader changes itself.)
    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'a> FnOnce(
            &'a Shared,
            &'a mut dyn KvTxn,
        ) -> futures::future::BoxFuture<'a, Result<T, StoreError>>,
    {
        let mut txn = self.begin().await?;
        let result = op(self, &mut *txn).await;
        let _ = txn.rollback().await;
        result
    }

    /// Evaluates `txns` in order against one snapshot and commits their writes in one backend
    /// transaction: the outcomes, and the last revision written (0 if none).
    async fn try_commit(&self, txns: &[&Txn]) -> Result<(Vec<TxnOutcome>, Revision), CommitError> {
        let mut kv_txn = self.timed("begin", self.kv.begin()).await?;
        match self.evaluate(&mut *kv_txn, txns).await {
            Ok((outcomes, 0)) => {
                let _ = kv_txn.rollback().await;
                Ok((outcomes, 0))
            }
            Ok((outcomes, last)) => {
                self.timed("commit", kv_txn.commit()).await?;
                Ok((outcomes, last))
            }
            Err(error) => {
                let _ = kv_txn.rollback().await;
                Err(error)
            }
        }
    }

    /// Applies `txns` in order to the snapshot's latest versions and buffers their writes
    /// (data, history, log, the revision counter) in `kv_txn`.
    async fn evaluate(
        &self,
        kv_txn: &mut dyn KvTxn,
        txns: &[&Txn],
    ) -> Result<(Vec<TxnOutcome>, Revision), CommitError> {
        let mut keys: Vec<&str> = txns
            .iter()
            .flat_map(|txn| {
                let compared = txn.compares.iter().map(|(key, _)| key.as_str());
                compared.chain(txn.ops.iter().map(|op| op.key()))
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let current_key = self.layout.current();
        let mut raw_keys: Vec<Vec<u8>> = keys.iter().map(|key| self.layout.latest(key)).collect();
        raw_keys.push(current_key.clone());
        let got = self.timed("batch_get", kv_txn.batch_get(raw_keys)).await?;
        let mut raw: HashMap<Vec<u8>, Vec<u8>> = got.into_iter().collect();
        let start = match raw.remove(&current_key) {
            Some(value) => read_i64(&value)?,
            None => 0,
        };
        let mut state = BatchState {
            latest: HashMap::with_capacity(keys.len()),
        };
        for key in keys {
            let kv = match raw.get(&self.layout.latest(key)) {
                Some(value) => Some(decode_latest(key, value)?),
                None => None,
            };
            state.latest.insert(key.to_owned(), kv);
        }

        let mut outcomes = Vec::with_capacity(txns.len());
        let mut all_changes = Vec::new();
        let mut next = start + 1;
        for txn in txns {
            let (outcome, changes) = apply::apply(&mut state, txn, next)?;
            if let Some(changes) = changes {
                next += 1;
                all_changes.push(changes);
            }
            outcomes.push(outcome);
        }
        if all_changes.is_empty() {
            return Ok((outcomes, 0));
        }
        for mutation in mutations(&self.layout, &all_changes) {
            match mutation {
                (key, Some(value)) => kv_txn.put(key, value).await?,
                (key, None) => kv_txn.delete(key).await?,
            }
        }
        kv_txn.put(current_key, encode_i64(next - 1)).await?;
        Ok((outcomes, next - 1))
    }

    /// Commits `txns` as one batch, retrying conflicts and transient errors with back-off,
    /// at most `attempts` times when given.
    async fn commit_with_retry(
        &self,
        txns: &[&Txn],
        attempts: Option<u32>,
    ) -> Result<Vec<TxnOutcome>, CommitError> {
        let mut backoff = Backoff::new(self.options.retry_budget);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_commit(txns).await {
                Ok((outcomes, last)) => {
                    if last > 0 {
                        self.current.fetch_max(last, Ordering::AcqRel);
                        self.wake.notify_one();
                    }
                    return Ok(outcomes);
                }
                Err(CommitError::Contended(error)) => {
                    if attempts.is_some_and(|max| tries >= max) || !backoff.wait().await {
                        return Err(CommitError::Contended(error));
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn commit_batch(&self, batch: Vec<Request>) {
        let txns: Vec<&Txn> = batch.iter().map(|request| &request.txn).collect();
        let attempts = (batch.len() > 1).then_some(BATCH_ATTEMPTS);
        match self.commit_with_retry(&txns, attempts).await {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(CommitError::Contended(_)) if batch.len() > 1 => {
                tracing::debug!(
                    size = batch.len(),
                    "batch keeps conflicting; committing its txns one by one"
                );
                for request in batch {
                    let outcome = self
                        .commit_with_retry(&[&request.txn], None)
                        .await
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(StoreError::from);
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                let error = StoreError::from(error);
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Reads the log after `pos` and broadcasts it; the new position.
    async fn tail_once(&self, pos: Revision) -> Result<Revision, StoreError> {
        let mut txn = self.begin().await?;
        let result = self.tail_in(&mut *txn, pos).await;
        let _ = txn.rollback().await;
        result
    }

    async fn tail_in(&self, txn: &mut dyn KvTxn, pos: Revision) -> Result<Revision, StoreError> {
        let (current, compacted) = self.heads(txn).await?;
        if current <= pos {
            return Ok(pos);
        }
        let chunk = match self.read_log_in(txn, "", pos, 512, current).await {
            Ok(chunk) => chunk,
            Err(StoreError::Corrupt(_)) if pos < compacted => {
                // The log this instance still needed was cleaned: it was cut off for longer
                // than the log grace. Its live watchers see a gap (an error) and re-watch.
                tracing::error!(
                    code = "store.tail_expired",
                    pos,
                    compacted,
                    "log tailer fell behind log cleaning"
                );
                return Ok(compacted);
            }
            Err(error) => return Err(error),
        };
        let Some(sender) = self.events.upgrade() else {
            return Ok(pos);
        };
        for changes in chunk.revisions {
            // No receivers is fine: nobody is watching.
            let _ = sender.send(Arc::new(changes));
        }
        Ok(chunk.scanned_to)
    }

    /// The log after `after`, up to `max` revisions, from `txn`'s snapshot whose current
    /// revision is `current`.
    async fn read_log_in(
        &self,
        txn: &mut dyn KvTxn,
        prefix: &str,
        after: Revision,
        max: i64,
        current: Revision,
    ) -> Result<LogChunk, StoreError> {
        let end = current.min(after.saturating_add(max)).max(after);
        let (start, stop) = self.layout.log_range(after, end);
        let entries = self
            .timed("scan", txn.scan(start, stop, (end - after) as u32 + 1))
            .await
            .map_err(kv_error)?;
        if entries.len() as i64 != end - after {
            return Err(StoreError::Corrupt(format!(
                "watch log has {} entries in revisions {}..={end}",
                entries.len(),
                after + 1
            )));
        }
        let mut revisions = Vec::with_capacity(entries.len());
        for (offset, (_, value)) in entries.iter().enumerate() {
            let mut changes = decode_log(after + 1 + offset as i64, value)?;
            changes
                .events
                .retain(|event| event.kv.key.starts_with(prefix));
            revisions.push(changes);
        }
        Ok(LogChunk {
            revisions,
            scanned_to: end,
            head: current,
        })
    }

    async fn read_log_async(
        &self,
        prefix: &str,
        after: Revision,
        max: i64,
    ) -> Result<LogChunk, StoreError> {
        let mut txn = self.begin().await?;
        let result = async {
            let (current, compacted) = self.heads(&mut *txn).await?;
            if after < compacted {
                return Err(StoreError::Expired {
                    requested: after,
                    compacted,
                });
            }
            self.read_log_in(&mut *txn, prefix, after, max, current)
                .await
        }
        .await;
        let _ = txn.rollback().await;
        result
    }

    /// Takes or renews the compaction lease.
    async fn hold_lease(&self) -> Result<bool, StoreError> {
        let mut txn = self.begin().await?;
        let key = self.layout.lease();
        let now = unix_ms();
        let free = match self.timed("get", txn.get(key.clone())).await {
            Ok(None) => true,
            Ok(Some(raw)) => {
                let (holder, expires) = decode_lease(&raw)?;
                holder == self.options.instance || expires <= now
            }
            Err(error) => {
                let _ = txn.rollback().await;
                return Err(kv_error(error));
            }
        };
        if !free {
            let _ = txn.rollback().await;
            return Ok(false);
        }
        let expires = now + self.options.lease_ttl.as_millis() as i64;
        let _ = txn
            .put(key, encode_lease(&self.options.instance, expires))
            .await;
        match self.timed("commit", txn.commit()).await {
            Ok(_) => Ok(true),
            Err(KvError::Conflict(_)) => Ok(false),
            Err(error) => Err(kv_error(error)),
        }
    }

    /// Advances `m/compacted` to `revision`.
    async fn mark_compacted(&self, revision: Revision) -> Result<(), StoreError> {
        let mut backoff = Backoff::new(self.options.retry_budget);
        loop {
            let mut txn = self.begin().await?;
            let target = match self
                .heads(&mut *txn)
                .await
                .and_then(|(current, compacted)| {
                    apply::compaction_target(revision, current, compacted)
                }) {
                Ok(Some(target)) => target,
                other => {
                    let _ = txn.rollback().await;
                    return other.map(|_| ());
                }
            };
            txn.put(self.layout.compacted(), encode_i64(target))
                .await
                .map_err(kv_error)?;
            match self.timed("commit", txn.commit()).await {
                Ok(_) => {
                    self.compacted.fetch_max(target, Ordering::AcqRel);
                    return Ok(());
                }
                Err(KvError::Conflict(_) | KvError::Retryable(_)) if backoff.wait().await => {}
                Err(error) => return Err(kv_error(error)),
            }
        }
    }

    /// Deletes superseded history up to `m/compacted`, then log entries up to that and at
    /// least [`DistributedOptions::log_grace`] revisions behind the head.
    async fn clean(&self) -> Result<(), StoreError> {
        self.clean_with(Self::clean_chunk).await?;
        self.clean_with(Self::clean_log_chunk).await
    }

    async fn clean_with<F>(&self, chunk: F) -> Result<(), StoreError>
    where
        F: for<'a> Fn(
            &'a Shared,
            &'a mut dyn KvTxn,
        ) -> futures::future::BoxFuture<'a, Result<bool, StoreError>>,
    {
        let mut backoff = Backoff::new(self.options.retry_budget);
        loop {
            let mut txn = self.begin().await?;
            match chunk(self, &mut *txn).await {
                Ok(true) => {}
                other => {
                    let _ = txn.rollback().await;
                    return other.map(|_| ());
                }
            }
            match self.timed("commit", txn.commit()).await {
                Ok(_) => {}
                Err(KvError::Conflict(_) | KvError::Retryable(_)) if backoff.wait().await => {}
                Err(error) => return Err(kv_error(error)),
            }
        }
    }

    /// Buffers the deletes of one chunk of log entries; `false` when there is nothing left.
    fn clean_log_chunk<'a>(
        &'a self,
        txn: &'a mut dyn KvTxn,
    ) -> futures::future::BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (current, _) = self.heads(txn).await?;
            let cleaned = self.read_counter(txn, self.layout.cleaned()).await?;
            let log_cleaned = self.read_counter(txn, self.layout.log_cleaned()).await?;
            let upto = cleaned
                .min(current - self.options.log_grace)
                .min(log_cleaned + CLEAN_CHUNK);
            if upto <= log_cleaned {
                return Ok(false);
            }
            let (start, stop) = self.layout.log_range(log_cleaned, upto);
            let entries = self
                .timed(
                    "scan",
                    txn.scan(start, stop, (upto - log_cleaned) as u32 + 1),
                )
                .await
                .map_err(kv_error)?;
            for (raw_key, _) in entries {
                txn.delete(raw_key).await.map_err(kv_error)?;
            }
            txn.put(self.layout.log_cleaned(), encode_i64(upto))
                .await
                .map_err(kv_error)?;
            Ok(true)
        })
    }

    /// Buffers the history deletes of one chunk of the log; `false` when there is nothing
    /// left to clean.
    fn clean_chunk<'a>(
        &'a self,
        txn: &'a mut dyn KvTxn,
    ) -> futures::future::BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.clean_history_chunk(txn))
    }

    async fn clean_history_chunk(&self, txn: &mut dyn KvTxn) -> Result<bool, StoreError> {
        let (_, compacted) = self.heads(txn).await?;
        let cleaned = self.read_counter(txn, self.layout.cleaned()).await?;
        if cleaned >= compacted {
            return Ok(false);
        }
        let upto = compacted.min(cleaned + CLEAN_CHUNK);
        let (start, stop) = self.layout.log_range(cleaned, upto);
        let entries = self
            .timed("scan", txn.scan(start, stop, (upto - cleaned) as u32 + 1))
            .await
            .map_err(kv_error)?;
        for (raw_key, value) in entries {
            let revision = read_i64(&raw_key[raw_key.len() - 8..])?;
            if revision <= cleaned {
                continue;
            }
            let changes = decode_log(revision, &value)?;
            for event in &changes.events {
                if let Some(prev) = &event.prev {
                    let superseded = self.layout.history(&prev.key, prev.mod_revision);
                    txn.delete(superseded).await.map_err(kv_error)?;
                }
                if event.kind == EventKind::Delete {
                    let tombstone = self.layout.history(&event.kv.key, revision);
                    txn.delete(tombstone).await.map_err(kv_error)?;
                }
            }
        }
        txn.put(self.layout.cleaned(), encode_i64(upto))
            .await
            .map_err(kv_error)?;
        Ok(true)
    }

    async fn get_in(
        &self,
        txn: &mut dyn KvTxn,
        key: &str,
        revision: Revision,
    ) -> Result<Option<KeyValue>, StoreError> {
        let (current, compacted) = self.heads(txn).await?;
        let revision = apply::read_revision(revision, current, compacted)?;
        if revision == current {
            let raw = self
                .timed("get", txn.get(self.layout.latest(key)))
                .await
                .map_err(kv_error)?;
            return raw.map(|raw| decode_latest(key, &raw)).transpose();
        }
        let (mut start, stop) = self.layout.key_history_range(key, revision);
        let mut last = None;
        loop {
            let entries = self
                .timed("scan", txn.scan(start.clone(), stop.clone(), SCAN_CHUNK))
                .await
                .map_err(kv_error)?;
            let full = entries.len() == SCAN_CHUNK as usize;
            if let Some((raw_key, value)) = entries.into_iter().last() {
                start = raw_key.clone();
                start.push(0);
                last = Some((raw_key, value));
            }
            if !full {
                break;
            }
        }
        let Some((raw_key, value)) = last else {
            return Ok(None);
        };
        let (key, at) = self.layout.parse_history(&raw_key)?;
        decode_version(key, at, &value)
    }

    async fn list_in(
        &self,
        txn: &mut dyn KvTxn,
        req: &ListRequest,
    ) -> Result<ListPage, StoreError> {
        let (current, compacted) = self.heads(txn).await?;
        let revision = apply::read_revision(req.revision, current, compacted)?;
        let mut page = ListPage {
            kvs: Vec::new(),
            revision,
            more: false,
        };
        let (mut start, stop) = self
            .layout
            .history_range(&req.prefix, req.start_after.as_deref());
        // The latest version at or below `revision` of the key being scanned.
        let mut pending: Option<(String, Option<KeyValue>)> = None;
        let full = |page: &ListPage| req.limit > 0 && page.kvs.len() == req.limit;
        loop {
            let entries = self
                .timed("scan", txn.scan(start.clone(), stop.clone(), SCAN_CHUNK))
                .await
                .map_err(kv_error)?;
            let more_entries = entries.len() == SCAN_CHUNK as usize;
            for (raw_key, value) in entries {
                let (key, at) = self.layout.parse_history(&raw_key)?;
                if pending.as_ref().is_none_or(|(k, _)| *k != key) {
                    if let Some((_, Some(kv))) = pending.take() {
                        if full(&page) {
                            page.more = true;
                            return Ok(page);
                        }
                        page.kvs.push(kv);
                    }
                    pending = Some((key.clone(), None));
                }
                if at <= revision {
                    pending = Some((key.clone(), decode_version(key, at, &value)?));
                }
                start = raw_key;
                start.push(0);
            }
            if !more_entries {
                break;
            }
        }
        if let Some((_, Some(kv))) = pending {
            if full(&page) {
                page.more = true;
            } else {
                page.kvs.push(kv);
            }
        }
        Ok(page)
    }
}

/// The backend writes of a batch's changes: latest versions, history and log entries.
fn mutations(
    layout: &Layout,
    all_changes: &[Arc<RevisionEvents>],
) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for changes in all_changes {
        for event in &changes.events {
            let key = &event.kv.key;
            match event.kind {
                EventKind::Put => {
                    out.push((layout.latest(key), Some(encode_latest(&event.kv))));
                    out.push((
                        layout.history(key, changes.revision),
                        Some(encode_version(Some(&event.kv))),
                    ));
                }
                EventKind::Delete => {
                    out.push((layout.latest(key), None));
                    out.push((
                        layout.history(key, changes.revision),
                        Some(encode_version(None)),
                    ));
                }
            }
        }
        out.push((layout.log(changes.revision), Some(encode_log(changes))));
    }
    // A key written by two txns of one batch: the later write wins, in order.
    let mut seen = HashMap::new();
    for (index, (key, _)) in out.iter().enumerate() {
        seen.insert(key.clone(), index);
    }
    out.into_iter()
        .enumerate()
        .filter(|(index, (key, _))| seen[key] == *index)
        .map(|(_, mutation)| mutation)
        .collect()
}

async fn run_committer(shared: Arc<Shared>, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < shared.options.max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        shared.commit_batch(batch).await;
    }
}

async fn run_tailer(shared: Arc<Shared>) {
    // Start at the head: earlier revisions reach watchers through catch-up.
    let mut backoff = Duration::from_millis(5);
    let mut pos = loop {
        let start = async {
            let mut txn = shared.begin().await?;
            let heads = shared.heads(&mut *txn).await;
            let _ = txn.rollback().await;
            heads
        };
        match start.await {
            Ok((current, _)) => break current,
            Err(error) => {
                tracing::warn!(code = error.code(), %error, "log tailer cannot read the store yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    };
    shared.tailed.send_replace(pos);
    shared.tail_ready.send_replace(true);
    loop {
        match shared.tail_once(pos).await {
            Ok(next) if next > pos => {
                pos = next;
                shared.tailed.send_replace(pos);
                backoff = Duration::from_millis(5);
                continue;
            }
            Ok(_) => backoff = Duration::from_millis(5),
            Err(error) => {
                tracing::warn!(code = error.code(), %error, pos, "log tailer failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(shared.options.poll_interval) => {}
        }
    }
}

impl LogSource for Shared {
    fn read_log(&self, prefix: &str, after: Revision, max: i64) -> Result<LogChunk, StoreError> {
        // Called on a blocking thread by `watch.rs`.
        self.runtime
            .block_on(self.read_log_async(prefix, after, max))
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<RevisionEvents>>> {
        self.events.upgrade().map(|sender| sender.subscribe())
    }

    fn current_revision(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }
}

#[async_trait]
impl Store for DistributedStore {
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        apply::validate(&txn)?;
        if txn.compares.iter().any(|(key, _)| key.contains('\0'))
            || txn.ops.iter().any(|op| op.key().contains('\0'))
        {
            return Err(StoreError::InvalidArgument("key contains NUL".into()));
        }
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(Request { txn, reply })
            .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        let outcome = outcome.await.map_err(|_| {
            StoreError::Unavailable("store closed before the txn finished".into())
        })??;
        // Acknowledge once this instance's watchers have the write too, so a client that
        // writes and then watches from the returned revision on the same gateway is served
        // at once. The write is durable either way; a slow tailer only delays the answer.
        if let TxnOutcome::Committed { revision, .. } = &outcome {
            let mut tailed = self.shared.tailed.subscribe();
            let _ = tokio::time::timeout(
                self.shared.options.op_timeout,
                tailed.wait_for(|tailed| *tailed >= *revision),
            )
            .await;
        }
        Ok(outcome)
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.shared
            .read(move |shared, txn| {
                let key = key.clone();
                Box::pin(async move { shared.get_in(txn, &key, revision).await })
            })
            .await
    }

    async fn list(&self, req: ListRequest) -> Result<ListPage, StoreError> {
        self.shared
            .read(move |shared, txn| {
                let req = req.clone();
                Box::pin(async move { shared.list_in(txn, &req).await })
            })
            .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let mut ready = self.shared.tail_ready.subscribe();
        tokio::time::timeout(
            self.shared.options.op_timeout,
            ready.wait_for(|ready| *ready),
        )
        .await
        .map_err(|_| StoreError::Unavailable("the watch log cannot be read".into()))?
        .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        let (current, compacted) = self
            .shared
            .read(|shared, txn| Box::pin(shared.heads(txn)))
            .await?;
        watch::check_after(after, current, compacted)?;
        Ok(watch::watch_stream(self.shared.clone(), prefix, after))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.shared.mark_compacted(revision).await?;
        match self.shared.hold_lease().await {
            Ok(true) => {
                if let Err(error) = self.shared.clean().await {
                    tracing::warn!(code = error.code(), %error, "cleaning compacted history failed; the next compaction resumes it");
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(code = error.code(), %error, "compaction lease unavailable")
            }
        }
        Ok(())
    }

    fn current_revision(&self) -> Revision {
        self.shared.current.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_batch_writes_latest_history_and_one_log_entry_per_revision() {
        let layout = Layout::new("t").unwrap();
        let kv = |key: &str, value: &str, create, at| KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            create_revision: create,
            mod_revision: at,
        };
        let first = Arc::new(RevisionEvents {
            revision: 7,
            events: vec![crate::WatchEvent {
                kind: EventKind::Put,
                kv: kv("a", "1", 7, 7),
                prev: None,
            }],
        });
        let second = Arc::new(RevisionEvents {
            revision: 8,
            events: vec![crate::WatchEvent {
                kind: EventKind::Delete,
                kv: apply::tombstone("a".into(), 8),
                prev: Some(kv("a", "1", 7, 7)),
            }],
        });
        let writes = mutations(&layout, &[first, second]);
        let keys: Vec<_> = writes
            .iter()
            .map(|(key, value)| (String::from_utf8_lossy(key).into_owned(), value.is_some()))
            .collect();
        // `k/a` is written by both revisions: only the later write (the delete) remains.
        assert_eq!(
            keys,
            vec![
                (
                    String::from_utf8_lossy(&layout.history("a", 7)).into_owned(),
                    true
                ),
                (String::from_utf8_lossy(&layout.log(7)).into_owned(), true),
                ("nv/t/k/a".to_string(), false),
                (
                    String::from_utf8_lossy(&layout.history("a", 8)).into_owned(),
                    true
                ),
                (String::from_utf8_lossy(&layout.log(8)).into_owned(), true),
            ]
        );
    }

    #[tokio::test]
    async fn batch_evaluation_sees_earlier_txns_and_numbers_revisions() {
        let kv = MemoryKv::new();
        let store =
            DistributedStore::new(Arc::new(kv.clone()), DistributedOptions::default()).unwrap();
        let create = Txn::new().when("a", crate::Compare::Absent).put("a", "1");
        let again = create.clone();
        let noop = Txn::new().delete("missing");
        let (outcomes, last) = store
            .shared
            .try_commit(&[&create, &again, &noop, &Txn::new().put("b", "2")])
            .await
            .unwrap();
        assert_eq!(last, 2, "two txns changed something");
        assert!(matches!(
            outcomes[0],
            TxnOutcome::Committed { revision: 1, .. }
        ));
        assert!(
            matches!(outcomes[1], TxnOutcome::Failed { .. }),
            "sees the first create"
        );
        assert!(matches!(
            outcomes[2],
            TxnOutcome::Committed { revision: 1, .. }
        ));
        assert!(matches!(
            outcomes[3],
            TxnOutcome::Committed { revision: 2, .. }
        ));
        assert_eq!(kv.commits(), 1, "one backend transaction for the batch");
        let dump = kv.dump();
        assert_eq!(
            dump.get(&store.shared.layout.current()),
            Some(&encode_i64(2))
        );
    }
}
