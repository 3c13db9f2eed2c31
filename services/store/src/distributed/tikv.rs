//! [`TxnKv`] on TiKV through `tikv-client`: optimistic (Percolator) transactions whose start
//! timestamps come from PD's timestamp oracle. The client retries region errors, stale
//! region caches and PD leader changes itself; what still surfaces is classified into
//! [`KvError`] so the engine retries conflicts and transient errors on top.

use std::sync::Arc;

use async_trait::async_trait;
use tikv_client::{CheckLevel, Error, TransactionClient, TransactionOptions};

use super::kv::{KvError, KvPair, KvTxn, TxnKv};
use super::{DistributedOptions, DistributedStore};
use crate::{Store, StoreError};

/// A TiKV cluster, reached through its PD endpoints.
pub struct TikvKv {
    client: TransactionClient,
}

impl TikvKv {
    /// Connects to the PD endpoints (`host:port`, as many as there are).
    pub async fn connect(pd_endpoints: Vec<String>) -> Result<Self, StoreError> {
        let client = TransactionClient::new(pd_endpoints)
            .await
            .map_err(|error| StoreError::Unavailable(format!("cannot reach TiKV: {error}")))?;
        Ok(Self { client })
    }
}

/// Parses `tikv://pd1:2379,pd2:2379` into PD endpoints.
pub fn parse_url(url: &str) -> Result<Vec<String>, StoreError> {
    let endpoints: Vec<String> = url
        .strip_prefix("tikv://")
        .ok_or_else(|| StoreError::InvalidArgument(format!("not a tikv:// URL: {url:?}")))?
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        return Err(StoreError::InvalidArgument(format!(
            "no PD endpoint in {url:?}"
        )));
    }
    Ok(endpoints)
}

/// Opens the distributed engine on the TiKV cluster at `url` (`tikv://pd1:2379,...`).
pub async fn open(url: &str, prefix: &str) -> Result<Arc<dyn Store>, StoreError> {
    let kv = TikvKv::connect(parse_url(url)?).await?;
    let options = DistributedOptions {
        prefix: prefix.to_owned(),
        ..Default::default()
    };
    Ok(Arc::new(DistributedStore::new(Arc::new(kv), options)?))
}

/// Sorts a client error into what the engine does about it.
pub fn classify(error: Error) -> KvError {
    let message = error.to_string();
    match error {
        Error::KeyError(key_error) => {
            if key_error.conflict.is_some() || key_error.already_exist.is_some() {
                KvError::Conflict(message)
            } else if key_error.commit_ts_expired.is_some() || key_error.txn_not_found.is_some() {
                KvError::Undetermined(message)
            } else {
                // Locks left by other transactions, `retryable`, `abort`, deadlocks.
                KvError::Retryable(message)
            }
        }
        Error::UndeterminedError(_) => KvError::Undetermined(message),
        Error::MultipleKeyErrors(errors) | Error::ExtractedErrors(errors) => {
            let kinds: Vec<KvError> = errors.into_iter().map(classify).collect();
            kinds
                .iter()
                .find(|kind| matches!(kind, KvError::Undetermined(_)))
                .or_else(|| {
                    kinds
                        .iter()
                        .find(|kind| matches!(kind, KvError::Conflict(_)))
                })
                .cloned()
                .unwrap_or(KvError::Retryable(message))
        }
        Error::Grpc(_) | Error::Io(_) | Error::Canceled(_) | Error::Channel(_) => {
            KvError::Unavailable(message)
        }
        // The client's own (older) tonic: compare the code by name.
        Error::GrpcAPI(status) if format!("{:?}", status.code()) == "Unavailable" => {
            KvError::Unavailable(message)
        }
        _ => KvError::Retryable(message),
    }
}

#[async_trait]
impl TxnKv for TikvKv {
    async fn begin(&self) -> Result<Box<dyn KvTxn>, KvError> {
        // Warn rather than panic when a transaction is dropped unfinished (a timed-out call).
        let options = TransactionOptions::new_optimistic().drop_check(CheckLevel::Warn);
        let txn = self
            .client
            .begin_with_options(options)
            .await
            .map_err(classify)?;
        Ok(Box::new(TikvTxn { txn }))
    }
}

struct TikvTxn {
    txn: tikv_client::Transaction,
}

#[async_trait]
impl KvTxn for TikvTxn {
    fn start_ts(&self) -> u64 {
        use tikv_client::TimestampExt;
        self.txn.start_timestamp().version()
    }

    async fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, KvError> {
        self.txn.get(key).await.map_err(classify)
    }

    async fn batch_get(&mut self, keys: Vec<Vec<u8>>) -> Result<Vec<KvPair>, KvError> {
        let pairs = self.txn.batch_get(keys).await.map_err(classify)?;
        Ok(pairs.map(|pair| (pair.0.into(), pair.1)).collect())
    }

    async fn scan(
        &mut self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> Result<Vec<KvPair>, KvError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let pairs = self.txn.scan(start..end, limit).await.map_err(classify)?;
        Ok(pairs.map(|pair| (pair.0.into(), pair.1)).collect())
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.txn.put(key, value).await.map_err(classify)
    }

    async fn delete(&mut self, key: Vec<u8>) -> Result<(), KvError> {
        self.txn.delete(key).await.map_err(classify)
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, KvError> {
        use tikv_client::TimestampExt;
        let start = self.start_ts();
        match self.txn.commit().await {
            Ok(commit) => Ok(commit.map_or(start, |ts| ts.version())),
            Err(error) => {
                let kind = classify(error);
                if !matches!(kind, KvError::Undetermined(_)) {
                    // Prewrite failed: release whatever locks it left.
                    let _ = self.txn.rollback().await;
                }
                Err(kind)
            }
        }
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), KvError> {
        self.txn.rollback().await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_sorted_into_retry_decisions() {
        use tikv_client::ProtoKeyError;
        let key_error = |error: ProtoKeyError| Error::KeyError(Box::new(error));
        let conflict = key_error(ProtoKeyError {
            conflict: Some(Default::default()),
            ..Default::default()
        });
        assert!(matches!(classify(conflict), KvError::Conflict(_)));
        let locked = key_error(ProtoKeyError {
            locked: Some(Default::default()),
            ..Default::default()
        });
        assert!(matches!(classify(locked), KvError::Retryable(_)));
        let undetermined = Error::UndeterminedError(Box::new(Error::StringError("x".into())));
        assert!(matches!(classify(undetermined), KvError::Undetermined(_)));
        let several = Error::MultipleKeyErrors(vec![
            Error::StringError("x".into()),
            key_error(ProtoKeyError {
                conflict: Some(Default::default()),
                ..Default::default()
            }),
        ]);
        assert!(matches!(classify(several), KvError::Conflict(_)));
        let region = Error::RegionError(Box::default());
        assert!(matches!(classify(region), KvError::Retryable(_)));
    }

    #[test]
    fn store_urls_name_pd_endpoints() {
        assert_eq!(
            parse_url("tikv://pd1:2379,pd2:2379/").unwrap(),
            vec!["pd1:2379".to_string(), "pd2:2379".to_string()]
        );
        assert!(parse_url("tikv://").is_err());
        assert!(parse_url("http://pd1:2379").is_err());
    }
}
