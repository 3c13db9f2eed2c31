//! The engine-neutral store trait.

use async_trait::async_trait;

use crate::{ListPage, ListRequest, Revision, StoreError, Txn, TxnOutcome, WatchStream};

/// A revisioned key-value store with etcd-like semantics. Every engine implements this and
/// passes the suite in `conformance`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `txn` atomically; returns only once the outcome is durable.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// `key` at `revision` (0 = latest); `None` if it did not exist then.
    async fn get(
        &self,
        key: &str,
        revision: Revision,
    ) -> Result<Option<crate::KeyValue>, StoreError>;

    /// One page of keys under a prefix at one snapshot revision.
    async fn list(&self, req: ListRequest) -> Result<ListPage, StoreError>;

    /// Every event under `prefix` with revision > `after`, in revision order, first the
    /// history then live. `after = 0` means from the first revision (so `Expired` once
    /// anything is compacted); to watch from now, pass `current_revision()` or a list's
    /// revision. `Expired` if `after` < the compacted revision. A watcher that falls too
    /// far behind gets [`StoreError::WatchLagged`] as its last item and must watch again.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Drops every version superseded at or before `revision` and the event log up to it.
    /// Reads at revisions below `revision` then answer `Expired`; reads at `revision` and
    /// later are unchanged. Compacting at or below the compacted revision does nothing.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision of the last durable write.
    fn current_revision(&self) -> Revision;

    /// The revision of the last compaction (0 = never compacted).
    fn compacted_revision(&self) -> Revision;
}
