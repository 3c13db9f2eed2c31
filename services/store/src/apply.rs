//! Txn evaluation shared by every engine, so they agree on semantics to the letter.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::watch::RevisionEvents;
use crate::{Compare, EventKind, KeyValue, Op, Revision, StoreError, Txn, TxnOutcome, WatchEvent};

/// The versioned key space as one write sees it: the state after every earlier write,
/// including earlier txns of the same batch.
pub(crate) trait VersionedState {
    /// The key's latest live version, `None` if absent or deleted.
    fn latest(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Records the changes of one revision: new versions (tombstones for deletes) and the
    /// log entry.
    fn record(&mut self, changes: &RevisionEvents) -> Result<(), StoreError>;
}

/// Rejects txns no engine can apply: empty keys, a key written by two ops.
pub(crate) fn validate(txn: &Txn) -> Result<(), StoreError> {
    if txn.compares.iter().any(|(key, _)| key.is_empty())
        || txn.ops.iter().any(|op| op.key().is_empty())
    {
        return Err(StoreError::InvalidArgument("empty key".into()));
    }
    let mut seen = HashSet::with_capacity(txn.ops.len());
    for op in &txn.ops {
        if !seen.insert(op.key()) {
            return Err(StoreError::InvalidArgument(format!(
                "key {:?} is written twice in one txn",
                op.key()
            )));
        }
    }
    Ok(())
}

/// Whether `compare` holds for a key whose latest version is `current`.
pub(crate) fn holds(compare: &Compare, current: Option<&KeyValue>) -> bool {
    match (compare, current) {
        (Compare::Absent, current) => current.is_none(),
        (Compare::Exists, current) => current.is_some(),
        (Compare::ModRevision(revision), Some(kv)) => kv.mod_revision == *revision,
        (Compare::ModRevision(_), None) => false,
    }
}

/// Evaluates and applies `txn` on `state`. `revision` is the revision the txn gets if it
/// changes anything; the changes are returned so the caller can advance its revision and
/// feed watchers once they are durable.
pub(crate) fn apply<S: VersionedState + ?Sized>(
    state: &mut S,
    txn: &Txn,
    revision: Revision,
) -> Result<(TxnOutcome, Option<Arc<RevisionEvents>>), StoreError> {
    let mut current = Vec::with_capacity(txn.compares.len());
    let mut all_hold = true;
    for (key, compare) in &txn.compares {
        let kv = state.latest(key)?;
        all_hold &= holds(compare, kv.as_ref());
        current.push(kv);
    }
    if !all_hold {
        return Ok((TxnOutcome::Failed { current }, None));
    }

    let mut prev = Vec::with_capacity(txn.ops.len());
    let mut events = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        let before = state.latest(op.key())?;
        match op {
            Op::Put { key, value } => events.push(WatchEvent {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: before.as_ref().map_or(revision, |kv| kv.create_revision),
                    mod_revision: revision,
                },
                prev: before.clone(),
            }),
            Op::Delete { key } => {
                if before.is_some() {
                    events.push(WatchEvent {
                        kind: EventKind::Delete,
                        kv: tombstone(key.clone(), revision),
                        prev: before.clone(),
                    });
                }
            }
        }
        prev.push(before);
    }
    if events.is_empty() {
        let outcome = TxnOutcome::Committed {
            revision: revision - 1,
            prev,
        };
        return Ok((outcome, None));
    }
    let changes = Arc::new(RevisionEvents { revision, events });
    state.record(&changes)?;
    Ok((TxnOutcome::Committed { revision, prev }, Some(changes)))
}

/// The `kv` of a delete event.
pub(crate) fn tombstone(key: String, revision: Revision) -> KeyValue {
    KeyValue {
        key,
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: revision,
    }
}

/// Checks a read revision against the snapshot: 0 means `current`.
pub(crate) fn read_revision(
    requested: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<Revision, StoreError> {
    if requested < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "negative revision {requested}"
        )));
    }
    if requested == 0 {
        return Ok(current);
    }
    if requested < compacted {
        return Err(StoreError::Expired {
            requested,
            compacted,
        });
    }
    if requested > current {
        return Err(StoreError::FutureRevision { requested, current });
    }
    Ok(requested)
}

/// Checks a compaction target: `None` when there is nothing to do.
pub(crate) fn compaction_target(
    requested: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<Option<Revision>, StoreError> {
    if requested < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "negative revision {requested}"
        )));
    }
    if requested > current {
        return Err(StoreError::FutureRevision { requested, current });
    }
    Ok((requested > compacted).then_some(requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_against_present_and_absent_keys() {
        let kv = KeyValue {
            key: "k".into(),
            value: Bytes::new(),
            create_revision: 2,
            mod_revision: 4,
        };
        let table = [
            (Compare::Absent, None, true),
            (Compare::Absent, Some(&kv), false),
            (Compare::Exists, None, false),
            (Compare::Exists, Some(&kv), true),
            (Compare::ModRevision(4), Some(&kv), true),
            (Compare::ModRevision(2), Some(&kv), false),
            (Compare::ModRevision(0), None, false),
            (Compare::ModRevision(4), None, false),
        ];
        for (compare, current, expected) in table {
            assert_eq!(
                holds(&compare, current),
                expected,
                "{compare:?} on {current:?}"
            );
        }
    }

    #[test]
    fn read_revisions() {
        assert_eq!(read_revision(0, 9, 3), Ok(9));
        assert_eq!(read_revision(3, 9, 3), Ok(3));
        assert_eq!(read_revision(9, 9, 3), Ok(9));
        assert!(matches!(
            read_revision(2, 9, 3),
            Err(StoreError::Expired { .. })
        ));
        assert!(matches!(
            read_revision(10, 9, 3),
            Err(StoreError::FutureRevision { .. })
        ));
        assert!(matches!(
            read_revision(-1, 9, 3),
            Err(StoreError::InvalidArgument(_))
        ));
        assert_eq!(compaction_target(3, 9, 3), Ok(None));
        assert_eq!(compaction_target(5, 9, 3), Ok(Some(5)));
        assert!(compaction_target(10, 9, 3).is_err());
    }
}
