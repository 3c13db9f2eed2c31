//! The embedded engine: one redb file on local disk, written by a `GroupCommitter`
//! thread, read by any number of concurrent snapshot readers.
//!
//! Why redb: it is pure Rust (no C toolchain, no `unsafe` FFI to audit), actively maintained,
//! and crash-safe by design — a copy-on-write B-tree whose commit flips a checksummed root, so
//! `kill -9` at any instant leaves the last durable commit intact, with no WAL to replay or
//! tune. Readers get MVCC snapshots that never block the writer, and its single-writer model
//! is exactly what group commit wants: one thread, one transaction and one fsync per batch.
//!
//! Several processes cannot share one file (redb locks it); a multi-gateway deployment uses
//! the TiKV engine.

mod committer;
mod layout;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::committer::{GroupCommitter, Request};
use self::layout::{
    FORMAT, HISTORY, LOG, META, META_COMPACTED, META_CURRENT, META_FORMAT, db_error, stored,
};
use crate::watch::{self, LogChunk, LogSource, RevisionEvents};
use crate::{
    KeyValue, ListPage, ListRequest, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream,
    apply,
};

/// The file name used when [`EmbeddedStore::open`] is given a directory.
pub const FILE_NAME: &str = "navarch.redb";

/// Tuning for the embedded engine; the defaults suit a control plane.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Most txns committed in one redb transaction (one fsync).
    pub max_batch: usize,
    /// Txns that may wait for the committer before callers are held back.
    pub queue_depth: usize,
    /// How many revisions a live watcher may fall behind before its stream ends with
    /// [`StoreError::WatchLagged`].
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            queue_depth: 8192,
            watch_buffer: crate::memory::DEFAULT_WATCH_BUFFER,
        }
    }
}

/// The embedded [`Store`]: durable on local disk, group-committed.
///
/// Dropping it stops the committer after the writes already queued. The file stays open
/// (and locked) until the last watch stream on it is dropped too.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    committer: Option<JoinHandle<()>>,
}

/// What the committer, the readers and the watch streams share.
pub(crate) struct Shared {
    db: Database,
    /// The last durable revision, published after each commit.
    current: AtomicI64,
    compacted: AtomicI64,
    events: broadcast::WeakSender<Arc<RevisionEvents>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`: a directory to hold [`FILE_NAME`] (an existing
    /// directory, or a missing path without extension, which is created), or else the file
    /// itself. After a crash this restores the last durable commit.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::open`] with explicit tuning.
    pub fn open_with(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let path = resolve(path.as_ref())?;
        let db = Database::create(&path).map_err(db_error)?;
        let (current, compacted) = initialize(&db)?;
        tracing::info!(path = %path.display(), current, compacted, "store opened");

        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            db,
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            events: events.downgrade(),
        });
        let (requests, receiver) = mpsc::channel(options.queue_depth.max(1));
        let committer = GroupCommitter {
            shared: shared.clone(),
            requests: receiver,
            events,
            max_batch: options.max_batch.max(1),
            current,
            compacted,
            compactions: Vec::new(),
            metrics: committer::CommitMetrics::new(),
            path: path.clone(),
        };
        let committer = std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer.run())
            .map_err(|error| StoreError::Internal(format!("cannot start committer: {error}")))?;
        Ok(Self {
            shared,
            requests: Some(requests),
            committer: Some(committer),
        })
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let closed = || StoreError::Unavailable("store closed".into());
        let requests = self.requests.as_ref().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        requests.send(make(reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || read(&shared))
            .await
            .map_err(|error| StoreError::Internal(format!("read task failed: {error}")))?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(committer) = self.committer.take()
            && committer.join().is_err()
        {
            tracing::error!(code = "store.internal", "store committer panicked");
        }
    }
}

/// The database file for `path`: inside it if it is a directory, or if it does not exist and
/// has no extension (then the directory is created); otherwise `path` itself.
fn resolve(path: &Path) -> Result<PathBuf, StoreError> {
    let is_dir = path.is_dir() || (!path.exists() && path.extension().is_none());
    let file = if is_dir {
        path.join(FILE_NAME)
    } else {
        path.to_owned()
    };
    if let Some(parent) = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    Ok(file)
}

/// Creates the tables of a new file, checks the format of an old one, and returns its
/// current and compacted revisions.
fn initialize(db: &Database) -> Result<(Revision, Revision), StoreError> {
    let write = db.begin_write().map_err(db_error)?;
    let revisions = {
        let mut meta = write.open_table(META).map_err(db_error)?;
        let history = write.open_table(HISTORY).map_err(db_error)?;
        let log = write.open_table(LOG).map_err(db_error)?;
        let format = meta.get(META_FORMAT).map_err(db_error)?.map(|v| v.value());
        match format {
            None if history.is_empty().map_err(db_error)? => {
                meta.insert(META_FORMAT, FORMAT).map_err(db_error)?;
            }
            Some(FORMAT) => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unsupported store format {other:?} (this build reads {FORMAT})"
                )));
            }
        }
        let read_meta = |name| -> Result<Revision, StoreError> {
            let value = meta.get(name).map_err(db_error)?.map_or(0, |v| v.value());
            Revision::try_from(value)
                .map_err(|_| StoreError::Corrupt(format!("{name} {value} out of range")))
        };
        let current = read_meta(META_CURRENT)?;
        let compacted = read_meta(META_COMPACTED)?;
        let last_logged = log.last().map_err(db_error)?.map(|(rev, _)| rev.value());
        if compacted > current || last_logged.is_some_and(|last| last != stored(current)) {
            return Err(StoreError::Corrupt(format!(
                "current revision {current}, compacted {compacted}, last logged {last_logged:?}"
            )));
        }
        (current, compacted)
    };
    write.commit().map_err(db_error)?;
    Ok(revisions)
}

impl Shared {
    /// A snapshot and its current and compacted revisions.
    fn snapshot(&self) -> Result<(ReadTransaction, Revision, Revision), StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let (current, compacted) = {
            let meta = read.open_table(META).map_err(db_error)?;
            let get = |name| -> Result<Revision, StoreError> {
                Ok(meta
                    .get(name)
                    .map_err(db_error)?
                    .map_or(0, |v| v.value() as Revision))
            };
            (get(META_CURRENT)?, get(META_COMPACTED)?)
        };
        Ok((read, current, compacted))
    }

    fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        let (read, current, compacted) = self.snapshot()?;
        let revision = apply::read_revision(revision, current, compacted)?;
        let history = read.open_table(HISTORY).map_err(db_error)?;
        layout::version_at(&history, key, stored(revision))
    }

    fn list(&self, req: &ListRequest) -> Result<ListPage, StoreError> {
        let (read, current, compacted) = self.snapshot()?;
        let revision = apply::read_revision(req.revision, current, compacted)?;
        let history = read.open_table(HISTORY).map_err(db_error)?;
        let (kvs, more) = layout::list(
            &history,
            &req.prefix,
            req.start_after.as_deref(),
            req.limit,
            stored(revision),
        )?;
        Ok(ListPage {
            kvs,
            revision,
            more,
        })
    }
}

impl LogSource for Shared {
    fn read_log(&self, prefix: &str, after: Revision, max: i64) -> Result<LogChunk, StoreError> {
        let (read, current, compacted) = self.snapshot()?;
        if after < compacted {
            return Err(StoreError::Expired {
                requested: after,
                compacted,
            });
        }
        let end = current.min(after.saturating_add(max)).max(after);
        let history = read.open_table(HISTORY).map_err(db_error)?;
        let log = read.open_table(LOG).map_err(db_error)?;
        let mut revisions = Vec::new();
        let range = (Bound::Excluded(stored(after)), Bound::Included(stored(end)));
        for entry in log.range::<u64>(range).map_err(db_error)? {
            let (revision, ops) = entry.map_err(db_error)?;
            let changes = layout::events_at(&history, revision.value(), ops.value(), prefix)?;
            if !changes.events.is_empty() {
                revisions.push(changes);
            }
        }
        Ok(LogChunk {
            revisions,
            scanned_to: end,
            head: current,
        })
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<RevisionEvents>>> {
        self.events.upgrade().map(|sender| sender.subscribe())
    }

    fn current_revision(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        apply::validate(&txn)?;
        self.request(|reply| Request::Txn { txn, reply }).await
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        // A point read is a few B-tree pages, microseconds: done in place, where handing it
        // to the blocking pool and back would cost more than the read (lists, which can be
        // long, go to the pool).
        self.shared.get(key, revision)
    }

    async fn list(&self, req: ListRequest) -> Result<ListPage, StoreError> {
        self.read(move |shared| shared.list(&req)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        watch::check_after(after, self.current_revision(), self.compacted_revision())?;
        Ok(watch::watch_stream(self.shared.clone(), prefix, after))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.request(|reply| Request::Compact { revision, reply })
            .await
    }

    fn current_revision(&self) -> Revision {
        self.shared.current.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }
}
