//! Traces across the cluster state: the gateway remembers which trace last wrote each key, and
//! puts that trace's context on the watch events the write produces, so a controller, the
//! scheduler or an agent reacting to the event continues the trace of the request that caused
//! it (`kubectl apply` → gateway → store → reconcile → … → agent).
//!
//! [`TracedStore`] wraps the store only while traces are exported: each transaction gets a
//! `store.txn` span, and the keys it writes are remembered with that span's context before
//! the commit, so the watch event can never be delivered before its link exists. Concurrent
//! writers of one key may swap links; the link is best effort, the data never depends on it.

use std::sync::Arc;

use async_trait::async_trait;
use navarch_store::{
    ListPage, ListRequest, Op, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream,
};
use navarch_telemetry::traces::{LinkTable, current_traceparent};
use tracing::Instrument;

/// Storage key → the trace context of its last write.
pub fn write_links() -> &'static LinkTable {
    static LINKS: LinkTable = LinkTable::new(65_536);
    &LINKS
}

/// The store, with a span per transaction and its written keys linked to the current trace.
pub struct TracedStore(pub Arc<dyn Store>);

impl TracedStore {
    /// `store`, wrapped when traces are exported (unchanged otherwise).
    pub fn wrap(store: Arc<dyn Store>) -> Arc<dyn Store> {
        if navarch_telemetry::traces::exporting() {
            Arc::new(Self(store))
        } else {
            store
        }
    }
}

#[async_trait]
impl Store for TracedStore {
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let first = txn.ops.first().map(Op::key).unwrap_or_default();
        let span = tracing::info_span!(
            "store.txn",
            component = "store",
            db.operation.name = "txn",
            key = first,
            ops = txn.ops.len(),
            revision = tracing::field::Empty,
        );
        async {
            if let Some(tp) = current_traceparent() {
                for op in &txn.ops {
                    write_links().remember(op.key().to_string(), tp.clone());
                }
            }
            let outcome = self.0.txn(txn).await;
            if let Ok(TxnOutcome::Committed { revision, .. }) = &outcome {
                tracing::Span::current().record("revision", *revision);
            }
            outcome
        }
        .instrument(span)
        .await
    }

    async fn get(
        &self,
        key: &str,
        revision: Revision,
    ) -> Result<Option<navarch_store::KeyValue>, StoreError> {
        self.0.get(key, revision).await
    }

    async fn list(&self, req: ListRequest) -> Result<ListPage, StoreError> {
        self.0.list(req).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.0.watch(prefix, after).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.0.compact(revision).await
    }

    fn current_revision(&self) -> Revision {
        self.0.current_revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.0.compacted_revision()
    }
}
