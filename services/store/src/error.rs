//! The one error type of the store, with stable codes.

use crate::Revision;

/// Everything a store operation can fail with. [`StoreError::code`] is stable: grep logs and
/// dashboards for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The requested revision has been compacted away; list again (HTTP 410).
    #[error("revision {requested} is compacted (compacted revision {compacted})")]
    Expired {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision has not happened yet.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The watcher fell too far behind the writers and its stream was ended.
    /// Watch again with `after = resume_after`; nothing up to that revision was missed.
    #[error("watcher fell behind; watch again after revision {resume_after}")]
    WatchLagged { resume_after: Revision },
    /// Create of a key that exists.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// Update or delete of a key that does not exist.
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// Update or delete with an expected revision that is not the key's current one.
    #[error("key {key:?} was modified: expected revision {expected}, current {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The request is malformed (empty key, a key written twice in one txn, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store cannot serve now (closed, I/O error); the same request may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected engine failure.
    #[error("internal store error: {0}")]
    Internal(String),
    /// The data on disk is damaged.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A stable, grep-able code for logs, metrics and wire errors.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Expired { .. } => "store.expired",
            StoreError::FutureRevision { .. } => "store.future_revision",
            StoreError::WatchLagged { .. } => "store.watch_lagged",
            StoreError::AlreadyExists { .. } => "store.already_exists",
            StoreError::NotFound { .. } => "store.not_found",
            StoreError::Conflict { .. } => "store.conflict",
            StoreError::InvalidArgument(_) => "store.invalid_argument",
            StoreError::Unavailable(_) => "store.unavailable",
            StoreError::Internal(_) => "store.internal",
            StoreError::Corrupt(_) => "store.corrupt",
        }
    }

    /// Whether sending the same request again may succeed without the caller changing anything.
    /// (`Conflict` and `Expired` need a fresh read first, so they are not retryable.)
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::WatchLagged { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_only_transient_errors_retry() {
        let all = [
            (
                StoreError::Expired {
                    requested: 1,
                    compacted: 2,
                },
                false,
            ),
            (
                StoreError::FutureRevision {
                    requested: 2,
                    current: 1,
                },
                false,
            ),
            (StoreError::WatchLagged { resume_after: 1 }, true),
            (StoreError::AlreadyExists { key: "k".into() }, false),
            (StoreError::NotFound { key: "k".into() }, false),
            (
                StoreError::Conflict {
                    key: "k".into(),
                    expected: 1,
                    actual: 2,
                },
                false,
            ),
            (StoreError::InvalidArgument("x".into()), false),
            (StoreError::Unavailable("x".into()), true),
            (StoreError::Internal("x".into()), false),
            (StoreError::Corrupt("x".into()), false),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|(e, _)| e.code()).collect();
        assert_eq!(codes.len(), all.len());
        for (error, retryable) in all {
            assert_eq!(error.retryable(), retryable, "{error}");
            assert!(error.code().starts_with("store."));
        }
    }
}
