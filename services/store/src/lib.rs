//! navarch-store: the revisioned key-value store behind the API gateway, with the semantics
//! controllers rely on (the ones etcd gives Kubernetes).
//!
//! - One cluster-wide revision, strictly increasing; every write txn that changes something
//!   takes the next one. Every key keeps its create and mod revision.
//! - [`Txn`]: compares on keys' current state, then ops applied atomically at one revision.
//!   [`StoreExt`] wraps the usual create / update / delete with expected revision.
//! - MVCC history: [`Store::get`] and [`Store::list`] read at any revision not yet compacted,
//!   so every page of a paginated list comes from the first page's snapshot.
//! - [`Store::watch`]: every change under a prefix after a revision, in revision order (op
//!   order within a txn), catching up from the log then following live commits, with no gap
//!   and no duplicate. A watcher that falls more than a buffer behind gets
//!   [`StoreError::WatchLagged`] as its last item and re-watches from the revision it names.
//! - [`Store::compact`] drops superseded history and the log; reading or watching below the
//!   compacted revision answers [`StoreError::Expired`].
//!
//! Engines: [`embedded`] (default; redb on local disk, group commit — see that module for why
//! redb), [`distributed`] (several gateways over one transactional backend: TiKV with the
//! `tikv` feature, or an in-memory one) and [`memory`] (for tests). All pass [`conformance`]
//! (feature `conformance`).

mod apply;
pub mod distributed;
pub mod embedded;
mod error;
mod ext;
pub mod memory;
mod store;
mod types;
mod watch;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::path::Path;
use std::sync::Arc;

pub use distributed::{DistributedOptions, DistributedStore, MemoryKv};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::StoreError;
pub use ext::{Deleted, StoreExt};
pub use memory::MemoryStore;
pub use store::Store;
pub use types::{
    Compare, EventKind, KeyValue, ListPage, ListRequest, Op, Revision, Txn, TxnOutcome, WatchEvent,
    WatchStream,
};

/// Opens the embedded engine at `path` (a file, or a directory to hold it).
pub fn open_embedded(path: impl AsRef<Path>) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(EmbeddedStore::open(path)?))
}

/// [`open_embedded`] with explicit tuning.
pub fn open_embedded_with(
    path: impl AsRef<Path>,
    options: EmbeddedOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(EmbeddedStore::open_with(path, options)?))
}

/// Opens a store by URL: `tikv://pd1:2379,pd2:2379` is the distributed engine on TiKV under
/// the namespace `prefix` (needs the `tikv` feature).
pub async fn open_url(url: &str, prefix: &str) -> Result<Arc<dyn Store>, StoreError> {
    if !url.starts_with("tikv://") {
        return Err(StoreError::InvalidArgument(format!(
            "unknown store {url:?}: use `embedded` or `tikv://pd-host:2379[,...]`"
        )));
    }
    #[cfg(feature = "tikv")]
    {
        distributed::tikv::open(url, prefix).await
    }
    #[cfg(not(feature = "tikv"))]
    {
        let _ = prefix;
        Err(StoreError::InvalidArgument(
            "this build has no TiKV support: build with `--features navarch-store/tikv`".into(),
        ))
    }
}

/// A new, empty in-memory store.
pub fn open_memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}
