//! An in-memory [`TxnKv`] with TiKV's conflict semantics: MVCC versions stamped with commit
//! timestamps, one timestamp oracle, reads at the start timestamp, and a commit that fails
//! when any written key has a version committed after the start timestamp. Commits are
//! atomic under one lock, so no reader ever sees a half-committed transaction (TiKV gets
//! the same from its primary-key commit and lock resolution).
//!
//! Several engine instances over one `MemoryKv` behave like several gateways over one TiKV
//! cluster. Test hooks make the backend unavailable or slow down commits.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::kv::{KvError, KvPair, KvTxn, TxnKv};

/// An in-memory transactional backend; clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryKv {
    inner: Arc<Inner>,
}

/// Every version of every key, oldest first: (commit_ts, value or tombstone).
type Versions = BTreeMap<Vec<u8>, Vec<(u64, Option<Vec<u8>>)>>;

#[derive(Default)]
struct Inner {
    data: Mutex<Versions>,
    /// The timestamp oracle.
    oracle: AtomicU64,
    unavailable: AtomicBool,
    commit_delay_ms: AtomicU64,
    commits: AtomicU64,
    conflicts: AtomicU64,
}

impl MemoryKv {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail with [`KvError::Unavailable`] (an outage) or work again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.inner.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Delays every commit by `delay` before it is applied, so tests can stop an engine
    /// while its batch is in flight.
    pub fn set_commit_delay(&self, delay: Duration) {
        self.inner
            .commit_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many transactions with writes committed.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::SeqCst)
    }

    /// How many commits failed with a write conflict.
    pub fn conflicts(&self) -> u64 {
        self.inner.conflicts.load(Ordering::SeqCst)
    }

    /// The latest value of every live key, for tests that inspect the raw layout.
    pub fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.inner
            .lock()
            .iter()
            .filter_map(|(key, versions)| {
                let (_, value) = versions.last()?;
                Some((key.clone(), value.clone()?))
            })
            .collect()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Versions> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> Result<(), KvError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(KvError::Unavailable("memory backend switched off".into()));
        }
        Ok(())
    }

    fn next_ts(&self) -> u64 {
        self.oracle.fetch_add(1, Ordering::SeqCst) + 1
    }
}

fn visible(versions: &[(u64, Option<Vec<u8>>)], ts: u64) -> Option<&Vec<u8>> {
    let upto = versions.partition_point(|(commit, _)| *commit < ts);
    versions[..upto]
        .last()
        .and_then(|(_, value)| value.as_ref())
}

#[async_trait]
impl TxnKv for MemoryKv {
    async fn begin(&self) -> Result<Box<dyn KvTxn>, KvError> {
        self.inner.check()?;
        Ok(Box::new(MemoryTxn {
            kv: self.inner.clone(),
            start_ts: self.inner.next_ts(),
            writes: BTreeMap::new(),
        }))
    }
}

struct MemoryTxn {
    kv: Arc<Inner>,
    start_ts: u64,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

#[async_trait]
impl KvTxn for MemoryTxn {
    fn start_ts(&self) -> u64 {
        self.start_ts
    }

    async fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, KvError> {
        self.kv.check()?;
        let data = self.kv.lock();
        Ok(data
            .get(&key)
            .and_then(|versions| visible(versions, self.start_ts))
            .cloned())
    }

    async fn batch_get(&mut self, keys: Vec<Vec<u8>>) -> Result<Vec<KvPair>, KvError> {
        self.kv.check()?;
        let data = self.kv.lock();
        Ok(keys
            .into_iter()
            .filter_map(|key| {
                let value = visible(data.get(&key)?, self.start_ts)?.clone();
                Some((key, value))
            })
            .collect())
    }

    async fn scan(
        &mut self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> Result<Vec<KvPair>, KvError> {
        self.kv.check()?;
        if start >= end {
            return Ok(Vec::new());
        }
        let data = self.kv.lock();
        Ok(data
            .range::<Vec<u8>, _>((Bound::Included(&start), Bound::Excluded(&end)))
            .filter_map(|(key, versions)| {
                Some((key.clone(), visible(versions, self.start_ts)?.clone()))
            })
            .take(limit as usize)
            .collect())
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.writes.insert(key, Some(value));
        Ok(())
    }

    async fn delete(&mut self, key: Vec<u8>) -> Result<(), KvError> {
        self.writes.insert(key, None);
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<u64, KvError> {
        self.kv.check()?;
        if self.writes.is_empty() {
            return Ok(self.start_ts);
        }
        let delay = self.kv.commit_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut data = self.kv.lock();
        for key in self.writes.keys() {
            if let Some((commit, _)) = data.get(key).and_then(|versions| versions.last())
                && *commit > self.start_ts
            {
                self.kv.conflicts.fetch_add(1, Ordering::SeqCst);
                return Err(KvError::Conflict(format!(
                    "key {:?} committed at {commit} after start {}",
                    String::from_utf8_lossy(key),
                    self.start_ts
                )));
            }
        }
        let commit_ts = self.kv.next_ts();
        for (key, value) in self.writes {
            data.entry(key).or_default().push((commit_ts, value));
        }
        self.kv.commits.fetch_add(1, Ordering::SeqCst);
        Ok(commit_ts)
    }

    async fn rollback(self: Box<Self>) -> Result<(), KvError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshot_reads_and_write_conflicts() {
        let kv = MemoryKv::new();
        let mut setup = kv.begin().await.unwrap();
        setup.put(b"a".to_vec(), b"1".to_vec()).await.unwrap();
        setup.commit().await.unwrap();

        let mut first = kv.begin().await.unwrap();
        let mut second = kv.begin().await.unwrap();
        assert_eq!(first.get(b"a".to_vec()).await.unwrap(), Some(b"1".to_vec()));
        first.put(b"a".to_vec(), b"2".to_vec()).await.unwrap();
        second.put(b"a".to_vec(), b"3".to_vec()).await.unwrap();
        let committed = first.commit().await.unwrap();
        assert!(matches!(second.commit().await, Err(KvError::Conflict(_))));
        assert_eq!(kv.conflicts(), 1);

        // A snapshot started before the commit still reads the old value.
        let mut late = kv.begin().await.unwrap();
        assert!(late.start_ts() > committed);
        assert_eq!(late.get(b"a".to_vec()).await.unwrap(), Some(b"2".to_vec()));
        let scanned = late.scan(b"a".to_vec(), b"b".to_vec(), 10).await.unwrap();
        assert_eq!(scanned, vec![(b"a".to_vec(), b"2".to_vec())]);

        // Disjoint writes do not conflict.
        let mut x = kv.begin().await.unwrap();
        let mut y = kv.begin().await.unwrap();
        x.put(b"x".to_vec(), b"1".to_vec()).await.unwrap();
        y.delete(b"a".to_vec()).await.unwrap();
        x.commit().await.unwrap();
        y.commit().await.unwrap();
        assert_eq!(kv.dump().len(), 1);

        kv.set_unavailable(true);
        assert!(matches!(kv.begin().await, Err(KvError::Unavailable(_))));
    }
}
