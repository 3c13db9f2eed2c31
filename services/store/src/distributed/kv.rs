//! The transactional key-value primitives the distributed engine needs, as TiKV's
//! transactional (Percolator) API offers them: snapshot reads at a start timestamp, range
//! scans, and optimistic commit with write-write conflict detection.

use async_trait::async_trait;

/// A key-value pair as stored.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// What a transactional backend can fail with. The engine decides from the kind whether to
/// retry, fall back or give up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Another transaction committed (or holds a lock on) a key this one writes, after this
    /// one started. Nothing was written; retrying from a fresh snapshot may succeed.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// A transient cluster condition (region error, leader change, busy server) that the
    /// client's own retries did not hide. Nothing was written.
    #[error("transient backend error: {0}")]
    Retryable(String),
    /// The commit may or may not have been applied (the connection was lost after the
    /// primary key's commit was sent). The caller must not assume either.
    #[error("commit outcome unknown: {0}")]
    Undetermined(String),
    /// The backend cannot be reached.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
}

/// A transactional key-value backend: TiKV, or [`super::MemoryKv`] in tests.
#[async_trait]
pub trait TxnKv: Send + Sync + 'static {
    /// Starts an optimistic transaction at a fresh start timestamp from the timestamp
    /// oracle: it reads everything committed before that, and nothing after.
    async fn begin(&self) -> Result<Box<dyn KvTxn>, KvError>;
}

/// One optimistic transaction: reads at its start timestamp, writes buffered until commit.
#[async_trait]
pub trait KvTxn: Send {
    /// The start timestamp every read sees.
    fn start_ts(&self) -> u64;

    /// The value of `key` at the start timestamp (this transaction's own buffered writes
    /// are not consulted; the engine never reads what it wrote).
    async fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, KvError>;

    /// The values of the present keys among `keys`, in any order.
    async fn batch_get(&mut self, keys: Vec<Vec<u8>>) -> Result<Vec<KvPair>, KvError>;

    /// Keys in `start..end`, ascending, at most `limit`.
    async fn scan(
        &mut self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> Result<Vec<KvPair>, KvError>;

    /// Buffers a put.
    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError>;

    /// Buffers a delete.
    async fn delete(&mut self, key: Vec<u8>) -> Result<(), KvError>;

    /// Commits the buffered writes atomically. Fails with [`KvError::Conflict`] when another
    /// transaction committed one of the written keys after this one's start timestamp.
    /// Returns the commit timestamp (the start timestamp for a read-only transaction).
    async fn commit(self: Box<Self>) -> Result<u64, KvError>;

    /// Discards the transaction (also the right end for a read-only one).
    async fn rollback(self: Box<Self>) -> Result<(), KvError>;
}
