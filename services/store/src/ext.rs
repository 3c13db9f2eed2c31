//! Conveniences over [`Store::txn`] so callers rarely build a [`Txn`] by hand.

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Compare, KeyValue, Revision, Store, StoreError, Txn, TxnOutcome};

/// The result of [`StoreExt::delete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete.
    pub revision: Revision,
    /// The key as it was just before the delete.
    pub prev: KeyValue,
}

/// Single-key writes with the errors Kubernetes-style callers want
/// (`AlreadyExists`, `NotFound`, `Conflict`). Implemented for every [`Store`].
#[async_trait]
pub trait StoreExt: Store {
    /// Creates `key`; [`StoreError::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let txn = Txn::new()
            .when(key, Compare::Absent)
            .put(key, value.clone());
        match self.txn(txn).await? {
            TxnOutcome::Committed { revision, .. } => Ok(KeyValue {
                key: key.to_owned(),
                value,
                create_revision: revision,
                mod_revision: revision,
            }),
            TxnOutcome::Failed { .. } => Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            }),
        }
    }

    /// Overwrites an existing `key`. With `expected = Some(rev)` only if its mod revision is
    /// `rev` ([`StoreError::Conflict`] otherwise); [`StoreError::NotFound`] if it is absent.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let txn = Txn::new()
            .when(key, expect(expected))
            .put(key, value.clone());
        match self.txn(txn).await? {
            TxnOutcome::Committed { revision, prev } => {
                let create_revision = prev
                    .into_iter()
                    .next()
                    .flatten()
                    .map(|kv| kv.create_revision)
                    .ok_or_else(|| {
                        StoreError::Internal("update without a previous value".into())
                    })?;
                Ok(KeyValue {
                    key: key.to_owned(),
                    value,
                    create_revision,
                    mod_revision: revision,
                })
            }
            TxnOutcome::Failed { current } => Err(write_failure(key, expected, current)),
        }
    }

    /// Deletes an existing `key`, like [`StoreExt::update`] for its conditions.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted, StoreError> {
        let txn = Txn::new().when(key, expect(expected)).delete(key);
        match self.txn(txn).await? {
            TxnOutcome::Committed { revision, prev } => {
                let prev = prev.into_iter().next().flatten().ok_or_else(|| {
                    StoreError::Internal("delete without a previous value".into())
                })?;
                Ok(Deleted { revision, prev })
            }
            TxnOutcome::Failed { current } => Err(write_failure(key, expected, current)),
        }
    }

    /// Creates or overwrites `key` unconditionally; returns the write's revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        match self.txn(Txn::new().put(key, value)).await? {
            TxnOutcome::Committed { revision, .. } => Ok(revision),
            TxnOutcome::Failed { .. } => Err(StoreError::Internal(
                "unconditional put failed a compare".into(),
            )),
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

fn expect(expected: Option<Revision>) -> Compare {
    match expected {
        Some(revision) => Compare::ModRevision(revision),
        None => Compare::Exists,
    }
}

fn write_failure(
    key: &str,
    expected: Option<Revision>,
    current: Vec<Option<KeyValue>>,
) -> StoreError {
    match current.into_iter().next().flatten() {
        None => StoreError::NotFound {
            key: key.to_owned(),
        },
        Some(kv) => StoreError::Conflict {
            key: key.to_owned(),
            expected: expected.unwrap_or_default(),
            actual: kv.mod_revision,
        },
    }
}
