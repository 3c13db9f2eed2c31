//! The in-memory engine: the same semantics as the embedded one, nothing on disk. For tests of
//! other crates and for trying things out.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::apply::{self, VersionedState};
use crate::watch::{self, LogChunk, LogSource, RevisionEvents};
use crate::{
    EventKind, KeyValue, ListPage, ListRequest, Revision, Store, StoreError, Txn, TxnOutcome,
    WatchStream,
};

/// How many revisions a live watcher may fall behind before its stream ends.
pub const DEFAULT_WATCH_BUFFER: usize = 16 * 1024;

/// An in-memory [`Store`]. Everything is lost when it is dropped.
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
    /// The strong end of the broadcast: live watchers see `Closed` once the store is dropped.
    events: broadcast::Sender<Arc<RevisionEvents>>,
}

struct MemoryInner {
    state: Mutex<MemoryState>,
    events: broadcast::WeakSender<Arc<RevisionEvents>>,
    current: AtomicI64,
    compacted: AtomicI64,
}

#[derive(Default)]
struct MemoryState {
    /// Every version of every key, oldest first; `None` is a delete.
    keys: BTreeMap<String, Vec<(Revision, Option<KeyValue>)>>,
    log: BTreeMap<Revision, Arc<RevisionEvents>>,
    current: Revision,
    compacted: Revision,
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::with_watch_buffer(DEFAULT_WATCH_BUFFER)
    }

    /// An empty store whose live watchers may fall `watch_buffer` revisions behind.
    pub fn with_watch_buffer(watch_buffer: usize) -> Self {
        let (events, _) = broadcast::channel(watch_buffer.max(1));
        let inner = Arc::new(MemoryInner {
            state: Mutex::new(MemoryState::default()),
            events: events.downgrade(),
            current: AtomicI64::new(0),
            compacted: AtomicI64::new(0),
        });
        Self { inner, events }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryInner {
    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // A panic while holding the lock cannot leave a half-applied txn: `apply` records a
        // revision's changes only after evaluating all of them.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemoryState {
    fn version_at(&self, key: &str, revision: Revision) -> Option<KeyValue> {
        let versions = self.keys.get(key)?;
        let newer = versions.partition_point(|(rev, _)| *rev <= revision);
        versions[..newer].last().and_then(|(_, kv)| kv.clone())
    }

    fn compact(&mut self, revision: Revision) {
        self.keys.retain(|_, versions| {
            let newer = versions.partition_point(|(rev, _)| *rev <= revision);
            let keep_from = match versions[..newer].last() {
                Some((_, Some(_))) => newer - 1,
                _ => newer,
            };
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        self.log = self.log.split_off(&(revision + 1));
        self.compacted = revision;
    }
}

impl VersionedState for MemoryState {
    fn latest(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self
            .keys
            .get(key)
            .and_then(|versions| versions.last())
            .and_then(|(_, kv)| kv.clone()))
    }

    fn record(&mut self, changes: &RevisionEvents) -> Result<(), StoreError> {
        for event in &changes.events {
            let kv = match event.kind {
                EventKind::Put => Some(event.kv.clone()),
                EventKind::Delete => None,
            };
            self.keys
                .entry(event.kv.key.clone())
                .or_default()
                .push((changes.revision, kv));
        }
        Ok(())
    }
}

impl LogSource for MemoryInner {
    fn read_log(&self, prefix: &str, after: Revision, max: i64) -> Result<LogChunk, StoreError> {
        let state = self.lock();
        if after < state.compacted {
            return Err(StoreError::Expired {
                requested: after,
                compacted: state.compacted,
            });
        }
        let end = state.current.min(after.saturating_add(max)).max(after);
        // `after + 1..=end` would panic when empty.
        let revisions = state
            .log
            .range((Bound::Excluded(after), Bound::Included(end)))
            .map(|(revision, changes)| RevisionEvents {
                revision: *revision,
                events: changes
                    .events
                    .iter()
                    .filter(|event| event.kv.key.starts_with(prefix))
                    .cloned()
                    .collect(),
            })
            .collect();
        Ok(LogChunk {
            revisions,
            scanned_to: end,
            head: state.current,
        })
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<RevisionEvents>>> {
        // Subscribing under the lock orders it against commits, which broadcast under it.
        let _state = self.lock();
        self.events.upgrade().map(|sender| sender.subscribe())
    }

    fn current_revision(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        apply::validate(&txn)?;
        // Nothing here waits, so a caller writing in a loop would never yield to its runtime.
        tokio::task::coop::consume_budget().await;
        let mut state = self.inner.lock();
        let revision = state.current + 1;
        let (outcome, changes) = apply::apply(&mut *state, &txn, revision)?;
        if let Some(changes) = changes {
            state.current = revision;
            state.log.insert(revision, changes.clone());
            self.inner.current.store(revision, Ordering::Release);
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(changes);
        }
        Ok(outcome)
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        let state = self.inner.lock();
        let revision = apply::read_revision(revision, state.current, state.compacted)?;
        Ok(state.version_at(key, revision))
    }

    async fn list(&self, req: ListRequest) -> Result<ListPage, StoreError> {
        let state = self.inner.lock();
        let revision = apply::read_revision(req.revision, state.current, state.compacted)?;
        let lower = match &req.start_after {
            Some(after) if after.as_str() >= req.prefix.as_str() => Bound::Excluded(after.as_str()),
            _ => Bound::Included(req.prefix.as_str()),
        };
        let mut page = ListPage {
            kvs: Vec::new(),
            revision,
            more: false,
        };
        for (key, _) in state
            .keys
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&req.prefix))
        {
            if let Some(kv) = state.version_at(key, revision) {
                if req.limit > 0 && page.kvs.len() == req.limit {
                    page.more = true;
                    break;
                }
                page.kvs.push(kv);
            }
        }
        Ok(page)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        watch::check_after(after, self.current_revision(), self.compacted_revision())?;
        Ok(watch::watch_stream(self.inner.clone(), prefix, after))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut state = self.inner.lock();
        let Some(revision) = apply::compaction_target(revision, state.current, state.compacted)?
        else {
            return Ok(());
        };
        state.compact(revision);
        self.inner.compacted.store(revision, Ordering::Release);
        Ok(())
    }

    fn current_revision(&self) -> Revision {
        self.inner.current.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.compacted.load(Ordering::Acquire)
    }
}
