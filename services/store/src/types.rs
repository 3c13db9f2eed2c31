//! The data types every engine speaks: key-values, transactions, list pages and watch events.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::StoreError;

/// A cluster-wide revision. Strictly increasing; the first write gets 1.
/// `0` means "latest" (reads) or "none" (a key that does not exist).
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// A condition on a key's current state, checked by a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent,
    /// The key exists.
    Exists,
    /// The key exists and was last written at exactly this revision
    /// (never holds for an absent key, unlike etcd's `mod_revision == 0`).
    ModRevision(Revision),
}

/// A write inside a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite `key`.
    Put { key: String, value: Bytes },
    /// Remove `key`; a no-op (no event) when it does not exist.
    Delete { key: String },
}

impl Op {
    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// An atomic compare-and-write: if every compare holds, every op applies at one new revision.
///
/// A key may appear in at most one op. A txn whose ops change nothing (no ops, or only
/// deletes of absent keys) commits without taking a new revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<(String, Compare)>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// An empty txn, to build on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    pub fn when(mut self, key: impl Into<String>, compare: Compare) -> Self {
        self.compares.push((key.into(), compare));
        self
    }

    /// Adds a put.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// What became of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every compare held and the ops were applied, durably.
    Committed {
        /// The txn's revision; the current revision when the ops changed nothing.
        revision: Revision,
        /// Per op, the key's value before the txn.
        prev: Vec<Option<KeyValue>>,
    },
    /// A compare failed; nothing was written.
    Failed {
        /// Per compare, the key's current value.
        current: Vec<Option<KeyValue>>,
    },
}

impl TxnOutcome {
    /// Whether the txn was applied.
    pub fn is_committed(&self) -> bool {
        matches!(self, TxnOutcome::Committed { .. })
    }
}

/// The kind of change a [`WatchEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// The key after the change. For a delete: empty value, `create_revision` 0 and
    /// `mod_revision` the delete's revision.
    pub kv: KeyValue,
    /// The key before the change, if it existed.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision of the txn that made this change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A request for one page of keys under a prefix, read at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys starting with this (empty = all keys).
    pub prefix: String,
    /// Only keys strictly after this one: the last key of the previous page.
    pub start_after: Option<String>,
    /// At most this many keys; 0 = all.
    pub limit: usize,
    /// Read at this revision; 0 = latest. Pass the first page's [`ListPage::revision`]
    /// for every later page so all pages come from one snapshot.
    pub revision: Revision,
}

/// One page of a list, sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub kvs: Vec<KeyValue>,
    /// The snapshot revision the page was read at.
    pub revision: Revision,
    /// Whether more keys follow the last one in this page.
    pub more: bool,
}

/// A stream of watch events, in revision order (op order within a revision).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;
