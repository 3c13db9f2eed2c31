//! The group committer: one thread that owns every write to the database. It drains whatever
//! txns are queued, applies them in order in one redb write transaction (each txn's compares
//! see the earlier txns of the batch), commits durably (one fsync for the whole batch), and
//! only then publishes the new revision, feeds the watchers and answers the callers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use redb::{Durability, ReadableTable, Table};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Shared;
use super::layout::{self, HISTORY, LOG, META, META_COMPACTED, META_CURRENT, db_error, stored};
use crate::apply::{self, VersionedState};
use crate::watch::RevisionEvents;
use crate::{KeyValue, Revision, StoreError, Txn, TxnOutcome};

/// How many revisions one compaction step covers; writes are served between steps.
const COMPACTION_STEP: Revision = 4096;

/// A write for the committer.
pub(crate) enum Request {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

type TxnReply = oneshot::Sender<Result<TxnOutcome, StoreError>>;

pub(crate) struct GroupCommitter {
    pub(crate) shared: Arc<Shared>,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) events: broadcast::Sender<Arc<RevisionEvents>>,
    pub(crate) max_batch: usize,
    pub(crate) current: Revision,
    pub(crate) compacted: Revision,
    /// Compactions in progress: target revision and who to tell.
    pub(crate) compactions: Vec<(Revision, oneshot::Sender<Result<(), StoreError>>)>,
    pub(crate) metrics: CommitMetrics,
    /// The database file, whose size `navarch_store_size_bytes` reports.
    pub(crate) path: std::path::PathBuf,
}

/// The group committer's instruments (Prometheus names in comments).
pub(crate) struct CommitMetrics {
    /// `navarch_store_commit_duration_seconds`: one durable batch (write + fsync).
    duration: opentelemetry::metrics::Histogram<f64>,
    /// `navarch_store_commit_batch_size_txns`: transactions per durable batch.
    batch: opentelemetry::metrics::Histogram<u64>,
    /// `navarch_store_revision`: the store's current revision.
    revision: opentelemetry::metrics::Gauge<u64>,
    /// `navarch_store_commit_failures_total`: batches that failed (every txn in it failed).
    failures: opentelemetry::metrics::Counter<u64>,
    /// `navarch_store_size_bytes`: the database file's size (history kept until compaction).
    size: opentelemetry::metrics::Gauge<u64>,
}

impl CommitMetrics {
    pub(crate) fn new() -> Self {
        let meter = navarch_telemetry::meter("navarch-store");
        let failures = meter
            .u64_counter("navarch.store.commit.failures")
            .with_unit("{batch}")
            .with_description("Durable batches that failed")
            .build();
        failures.add(0, &[]);
        Self {
            duration: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.store.commit.duration",
                "Time to write and fsync one group-committed batch",
            ),
            batch: meter
                .u64_histogram("navarch.store.commit.batch_size")
                .with_unit("{txn}")
                .with_description("Transactions per durable batch (group commit)")
                .with_boundaries(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ])
                .build(),
            revision: meter
                .u64_gauge("navarch.store.revision")
                .with_unit("{revision}")
                .with_description("The store's current revision")
                .build(),
            failures,
            size: meter
                .u64_gauge("navarch.store.size")
                .with_unit("By")
                .with_description("Size of the store's database file")
                .build(),
        }
    }
}

impl GroupCommitter {
    /// Serves requests until every sender is gone.
    pub(crate) fn run(mut self) {
        loop {
            let first = if self.compactions.is_empty() {
                match self.requests.blocking_recv() {
                    Some(request) => request,
                    None => break,
                }
            } else {
                match self.requests.try_recv() {
                    Ok(request) => request,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.compaction_step();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            };
            let mut batch = Vec::new();
            self.take(first, &mut batch);
            while batch.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(request) => self.take(request, &mut batch),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
        }
        tracing::debug!(revision = self.current, "store committer stopped");
    }

    fn take(&mut self, request: Request, batch: &mut Vec<(Txn, TxnReply)>) {
        match request {
            Request::Txn { txn, reply } => batch.push((txn, reply)),
            Request::Compact { revision, reply } => {
                match apply::compaction_target(revision, self.current, self.compacted) {
                    Ok(Some(target)) => self.compactions.push((target, reply)),
                    Ok(None) => {
                        let _ = reply.send(Ok(()));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
        }
    }

    /// Applies a batch in one durable redb transaction, then publishes it.
    fn commit(&mut self, batch: Vec<(Txn, TxnReply)>) {
        let started = Instant::now();
        let (txns, replies): (Vec<Txn>, Vec<TxnReply>) = batch.into_iter().unzip();
        match self.write_batch(&txns) {
            Ok(WrittenBatch {
                outcomes,
                committed: changes,
                revision,
            }) => {
                self.current = revision;
                self.shared.current.store(revision, Ordering::Release);
                self.metrics
                    .duration
                    .record(started.elapsed().as_secs_f64(), &[]);
                self.metrics.batch.record(txns.len() as u64, &[]);
                self.metrics.revision.record(revision.max(0) as u64, &[]);
                if let Ok(meta) = std::fs::metadata(&self.path) {
                    self.metrics.size.record(meta.len(), &[]);
                }
                for changes in changes {
                    // No receivers is fine: nobody is watching.
                    let _ = self.events.send(changes);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The caller may have gone away; the write stands.
                    let _ = reply.send(Ok(outcome));
                }
                tracing::trace!(
                    txns = txns.len(),
                    revision,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "store batch committed"
                );
            }
            Err(error) => {
                tracing::error!(code = error.code(), %error, txns = txns.len(), "store batch failed");
                self.metrics.failures.add(1, &[]);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn write_batch(&self, txns: &[Txn]) -> Result<WrittenBatch, StoreError> {
        let mut write = self.shared.db.begin_write().map_err(db_error)?;
        // The default, spelled out: `commit` returns only after fsync.
        write
            .set_durability(Durability::Immediate)
            .map_err(db_error)?;
        let mut outcomes = Vec::with_capacity(txns.len());
        let mut committed = Vec::new();
        let mut revision = self.current;
        {
            let mut state = BatchState {
                history: write.open_table(HISTORY).map_err(db_error)?,
                log: write.open_table(LOG).map_err(db_error)?,
            };
            for txn in txns {
                let (outcome, changes) = apply::apply(&mut state, txn, revision + 1)?;
                if let Some(changes) = changes {
                    revision += 1;
                    committed.push(changes);
                }
                outcomes.push(outcome);
            }
        }
        if committed.is_empty() {
            // Nothing changed: every answer reads state that is already durable.
            write.abort().map_err(db_error)?;
        } else {
            write
                .open_table(META)
                .map_err(db_error)?
                .insert(META_CURRENT, stored(revision))
                .map_err(db_error)?;
            write.commit().map_err(db_error)?;
        }
        Ok(WrittenBatch {
            outcomes,
            committed,
            revision,
        })
    }

    /// Compacts up to `COMPACTION_STEP` more revisions towards the highest pending target.
    fn compaction_step(&mut self) {
        let goal = self
            .compactions
            .iter()
            .map(|(target, _)| *target)
            .max()
            .unwrap_or(self.compacted);
        let to = goal.min(self.compacted + COMPACTION_STEP);
        let started = Instant::now();
        match self.compact_to(to) {
            Ok(removed) => {
                self.compacted = to;
                self.shared.compacted.store(to, Ordering::Release);
                tracing::debug!(
                    revision = to,
                    removed_versions = removed,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "store compacted"
                );
                let (done, pending) = std::mem::take(&mut self.compactions)
                    .into_iter()
                    .partition(|(target, _)| *target <= to);
                self.compactions = pending;
                for (_, reply) in done {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(code = error.code(), %error, revision = to, "store compaction failed");
                for (_, reply) in std::mem::take(&mut self.compactions) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Drops the log up to `to` and, for every key it names, the versions that are superseded
    /// at `to`; returns how many versions went.
    fn compact_to(&self, to: Revision) -> Result<usize, StoreError> {
        let write = self.shared.db.begin_write().map_err(db_error)?;
        let mut removed = 0;
        {
            let mut log = write.open_table(LOG).map_err(db_error)?;
            let mut history = write.open_table(HISTORY).map_err(db_error)?;
            let mut keys = BTreeSet::new();
            for entry in log.range(..=stored(to)).map_err(db_error)? {
                let (revision, ops) = entry.map_err(db_error)?;
                for (_, key) in layout::decode_log(revision.value(), ops.value())? {
                    keys.insert(key.to_owned());
                }
            }
            log.retain_in(..=stored(to), |_, _| false)
                .map_err(db_error)?;
            for key in &keys {
                let versions = layout::versions_up_to(&history, key, stored(to))?;
                // Keep the version visible at `to`, unless it is a delete.
                let keep = match versions.last() {
                    Some((_, true)) => versions.len() - 1,
                    _ => versions.len(),
                };
                for (revision, _) in &versions[..keep] {
                    history
                        .remove((key.as_str(), *revision))
                        .map_err(db_error)?;
                    removed += 1;
                }
            }
            write
                .open_table(META)
                .map_err(db_error)?
                .insert(META_COMPACTED, stored(to))
                .map_err(db_error)?;
        }
        write.commit().map_err(db_error)?;
        Ok(removed)
    }
}

/// A durably committed batch, to publish.
struct WrittenBatch {
    /// Per txn, its outcome.
    outcomes: Vec<TxnOutcome>,
    /// The changes of each new revision, in order.
    committed: Vec<Arc<RevisionEvents>>,
    /// The last revision after the batch.
    revision: Revision,
}

/// The database as the txns of one batch see it.
struct BatchState<'txn> {
    history: Table<'txn, (&'static str, u64), &'static [u8]>,
    log: Table<'txn, u64, &'static [u8]>,
}

impl VersionedState for BatchState<'_> {
    fn latest(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        layout::version_at(&self.history, key, u64::MAX)
    }

    fn record(&mut self, changes: &RevisionEvents) -> Result<(), StoreError> {
        let revision = stored(changes.revision);
        for event in &changes.events {
            let kv = match event.kind {
                crate::EventKind::Put => Some(&event.kv),
                crate::EventKind::Delete => None,
            };
            self.history
                .insert(
                    (event.kv.key.as_str(), revision),
                    layout::encode_version(kv).as_slice(),
                )
                .map_err(db_error)?;
        }
        self.log
            .insert(revision, layout::encode_log(changes).as_slice())
            .map_err(db_error)?;
        Ok(())
    }
}
