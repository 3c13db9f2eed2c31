//! The watch cache: one store watch for the whole cluster, fanned out to every API watcher.
//!
//! A task follows the store's log from the revision the gateway started at, decodes each
//! change once, keeps the most recent events in a ring buffer and broadcasts them. A watcher
//! asking for a revision still in the buffer is served from memory; an older one falls back to
//! a watch on the store itself (which answers Expired once the revision is compacted).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use navarch_api::gateway::v1 as pb;
use navarch_api::kinds::{self, KindInfo};
use navarch_api::{ApiError, Object};
use navarch_store::{EventKind, Revision, Store, StoreError, WatchEvent};
use tokio::sync::{broadcast, watch};

use crate::filter::Attrs;

/// One change, as stored; decoded only if someone needs the object itself (watchers in
/// protobuf filter on and send the stored bytes).
#[derive(Debug)]
pub struct CacheEvent {
    pub revision: Revision,
    pub key: String,
    pub deleted: bool,
    pub kind: &'static KindInfo,
    /// The object after the change as stored (see [`Object::stored_encoding`]); for a
    /// delete, its last state.
    pub stored: Bytes,
    /// The object before the change as stored, and its revision, if it existed.
    prev_stored: Option<(Bytes, Revision)>,
    object: OnceLock<Object>,
    prev: OnceLock<Option<Object>>,
    /// Computed once, on first use, for every watcher that filters this change.
    attrs: OnceLock<Attrs>,
    prev_attrs: OnceLock<Option<Attrs>>,
    /// The object as sent to watchers, per served kind and content type: encoded once, not
    /// once per watcher.
    encoded: std::sync::Mutex<Vec<(&'static KindInfo, String, pb::RawObject)>>,
}

/// The object of `kind` stored as `value` at `revision`.
fn decoded(kind: &'static KindInfo, key: &str, value: &[u8], revision: Revision) -> Object {
    let mut obj = Object::decode(kind, value).unwrap_or_else(|error| {
        // Only this server writes the store; a value it cannot read is a bug, not input.
        tracing::error!(key, %error, "stored object does not decode");
        Object::new(kind)
    });
    obj.set_type_meta();
    obj.set_resource_version(Some(revision));
    obj
}

impl CacheEvent {
    pub fn new(
        revision: Revision,
        key: String,
        deleted: bool,
        kind: &'static KindInfo,
        stored: Bytes,
        prev_stored: Option<(Bytes, Revision)>,
    ) -> Self {
        Self {
            revision,
            key,
            deleted,
            kind,
            stored,
            prev_stored,
            object: OnceLock::new(),
            prev: OnceLock::new(),
            attrs: OnceLock::new(),
            prev_attrs: OnceLock::new(),
            encoded: Default::default(),
        }
    }

    /// The object after the change (for a delete: the last state, with the delete's
    /// revision as its resourceVersion, as Kubernetes reports it).
    pub fn object(&self) -> &Object {
        self.object
            .get_or_init(|| decoded(self.kind, &self.key, &self.stored, self.revision))
    }

    /// The object before the change, if it existed.
    pub fn prev(&self) -> Option<&Object> {
        self.prev
            .get_or_init(|| {
                let (value, revision) = self.prev_stored.as_ref()?;
                Some(decoded(self.kind, &self.key, value, *revision))
            })
            .as_ref()
    }

    /// Whether the object existed before the change.
    pub fn had_prev(&self) -> bool {
        self.prev_stored.is_some()
    }

    /// The filter attributes of [`Self::object`].
    pub fn attrs(&self) -> &Attrs {
        self.attrs
            .get_or_init(|| Attrs::of_stored(self.kind, &self.stored))
    }

    /// The filter attributes of [`Self::prev`].
    pub fn prev_attrs(&self) -> Option<&Attrs> {
        self.prev_attrs
            .get_or_init(|| {
                let (value, _) = self.prev_stored.as_ref()?;
                Some(Attrs::of_stored(self.kind, value))
            })
            .as_ref()
    }

    /// [`Self::object`] encoded as `served` in `accept`, by `encode` the first time a watcher
    /// asks for that form.
    pub fn encoded(
        &self,
        served: &'static KindInfo,
        accept: &str,
        encode: impl FnOnce(&Self) -> Result<pb::RawObject, ApiError>,
    ) -> Result<pb::RawObject, ApiError> {
        let mut cache = self.encoded.lock().expect("encoding cache lock");
        if let Some((_, _, raw)) = cache
            .iter()
            .find(|(k, a, _)| std::ptr::eq(*k, served) && a == accept)
        {
            return Ok(raw.clone());
        }
        let raw = encode(self)?;
        cache.push((served, accept.to_string(), raw.clone()));
        Ok(raw)
    }
}

/// Decodes a store event into a cache event; `None` for keys that are not objects.
pub fn decode_event(ev: &WatchEvent) -> Option<CacheEvent> {
    let kind = kinds::by_storage_key(&ev.kv.key)?;
    let prev = ev.prev.as_ref().map(|p| (p.value.clone(), p.mod_revision));
    let stored = match ev.kind {
        EventKind::Put => ev.kv.value.clone(),
        EventKind::Delete => ev.prev.as_ref()?.value.clone(),
    };
    Some(CacheEvent::new(
        ev.kv.mod_revision,
        ev.kv.key.clone(),
        ev.kind == EventKind::Delete,
        kind,
        stored,
        prev,
    ))
}

struct Buffer {
    events: VecDeque<Arc<CacheEvent>>,
    /// Every event with a revision above this one is in `events`.
    complete_after: Revision,
}

/// Buffered events to replay, then the live feed.
pub type Subscription = (Vec<Arc<CacheEvent>>, broadcast::Receiver<Arc<CacheEvent>>);

/// The cluster-wide watch cache.
pub struct WatchCache {
    store: Arc<dyn Store>,
    buffer: std::sync::Mutex<Buffer>,
    capacity: usize,
    tx: broadcast::Sender<Arc<CacheEvent>>,
    /// The newest revision the cache has seen.
    revision: AtomicI64,
    progress: watch::Sender<Revision>,
    follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: watch::Sender<bool>,
    /// Namespaces seen by the cache: name → terminating (for admission without a store read).
    namespaces: std::sync::RwLock<std::collections::HashMap<String, bool>>,
}

impl WatchCache {
    /// Starts following the store from its current revision.
    pub async fn start(store: Arc<dyn Store>, capacity: usize) -> Result<Arc<Self>, StoreError> {
        let start = store.current_revision();
        let (tx, _) = broadcast::channel(capacity.max(1024));
        let (progress, _) = watch::channel(start);
        let cache = Arc::new(Self {
            store: store.clone(),
            buffer: std::sync::Mutex::new(Buffer {
                events: VecDeque::new(),
                complete_after: start,
            }),
            capacity,
            tx,
            revision: AtomicI64::new(start),
            progress,
            follower: std::sync::Mutex::new(None),
            closed: watch::channel(false).0,
            namespaces: Default::default(),
        });
        // Namespaces that exist already (admission reads them from here).
        if let Some(ns_kind) = kinds::by_resource("", "v1", "namespaces") {
            let mut req = navarch_store::ListRequest {
                prefix: ns_kind.storage_prefix(),
                start_after: None,
                limit: 1000,
                revision: start,
            };
            loop {
                let page = store.list(req.clone()).await?;
                for kv in &page.kvs {
                    if let Ok(obj) = Object::decode(ns_kind, &kv.value) {
                        cache
                            .namespaces
                            .write()
                            .expect("namespace cache lock")
                            .insert(obj.name(), obj.meta().deletion_timestamp.is_some());
                    }
                }
                if !page.more {
                    break;
                }
                req.start_after = page.kvs.last().map(|kv| kv.key.clone());
            }
        }
        let stream = store.watch("/registry/", start).await?;
        let task = tokio::spawn(cache.clone().follow(stream, start));
        *cache.follower.lock().expect("watch cache lock") = Some(task);
        Ok(cache)
    }

    /// Ends every watch stream (on shutdown, before the server drains).
    pub fn close_watches(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`WatchCache::close_watches`] was called.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Stops following the store (on shutdown), releasing its watch.
    pub fn stop(&self) {
        if let Some(task) = self.follower.lock().expect("watch cache lock").take() {
            task.abort();
        }
    }

    async fn follow(self: Arc<Self>, mut stream: navarch_store::WatchStream, mut last: Revision) {
        loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    last = ev.kv.mod_revision;
                    if let Some(decoded) = decode_event(&ev) {
                        self.push(Arc::new(decoded));
                    } else {
                        tracing::warn!(key = %ev.kv.key, "watch cache: skipping undecodable key");
                    }
                    self.revision.store(last, Ordering::Release);
                    self.progress.send_replace(last);
                }
                Some(Err(StoreError::Expired { compacted, .. })) => {
                    // Compaction passed us while we were away: what we missed is gone. Resume
                    // from the current revision; watchers older than that fall back to the
                    // store and get Expired, so they relist.
                    let now = self.store.current_revision().max(compacted);
                    tracing::warn!(
                        revision = last,
                        resume = now,
                        "watch cache: missed compacted events, resuming from current"
                    );
                    {
                        let mut buf = self.buffer.lock().expect("watch cache lock");
                        buf.events.clear();
                        buf.complete_after = now;
                    }
                    last = now;
                    stream = self.rewatch(last).await;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, revision = last, "watch cache: store watch ended, resuming");
                    stream = self.rewatch(last).await;
                }
                None => {
                    if self.tx.receiver_count() == 0 && Arc::strong_count(&self) <= 1 {
                        return;
                    }
                    tracing::warn!(revision = last, "watch cache: store watch closed, resuming");
                    stream = self.rewatch(last).await;
                }
            }
        }
    }

    async fn rewatch(&self, last: Revision) -> navarch_store::WatchStream {
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            match self.store.watch("/registry/", last).await {
                Ok(s) => return s,
                Err(StoreError::Expired { compacted, .. }) => {
                    let stream = futures::stream::iter([Err(StoreError::Expired {
                        requested: last,
                        compacted,
                    })]);
                    return Box::pin(stream);
                }
                Err(e) => {
                    tracing::error!(error = %e, revision = last, "watch cache: cannot re-watch the store");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    }

    /// Whether the cache has seen namespace `name`: `Some(terminating)`, or `None` when it
    /// does not know it (the caller then asks the store: the cache may lag a fresh create).
    pub fn namespace(&self, name: &str) -> Option<bool> {
        self.namespaces
            .read()
            .expect("namespace cache lock")
            .get(name)
            .copied()
    }

    fn push(&self, ev: Arc<CacheEvent>) {
        if ev.kind.kind == "Namespace" {
            let mut ns = self.namespaces.write().expect("namespace cache lock");
            let obj = ev.object();
            if ev.deleted {
                ns.remove(&obj.name());
            } else {
                ns.insert(obj.name(), obj.meta().deletion_timestamp.is_some());
            }
        }
        let mut buf = self.buffer.lock().expect("watch cache lock");
        buf.events.push_back(ev.clone());
        // Evict whole revisions, so the buffer never holds half of a transaction.
        while buf.events.len() > self.capacity {
            let Some(front) = buf.events.front().map(|e| e.revision) else {
                break;
            };
            if front == ev.revision {
                break;
            }
            while buf.events.front().is_some_and(|e| e.revision == front) {
                buf.events.pop_front();
            }
            buf.complete_after = front;
        }
        drop(buf);
        let _ = self.tx.send(ev);
    }

    /// The newest revision the cache has applied.
    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// Waits until the cache has seen `revision` (or the timeout passes).
    pub async fn wait_for(&self, revision: Revision, timeout: std::time::Duration) {
        let mut rx = self.progress.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await;
    }

    /// Events after `after`: buffered ones, then live ones. `None` when `after` is older than
    /// the buffer (the caller falls back to the store).
    pub fn subscribe(&self, after: Revision) -> Option<Subscription> {
        let rx = self.tx.subscribe();
        let buf = self.buffer.lock().expect("watch cache lock");
        if after < buf.complete_after {
            return None;
        }
        let replay = buf
            .events
            .iter()
            .filter(|e| e.revision > after)
            .cloned()
            .collect();
        Some((replay, rx))
    }

    /// A store watch for a watcher whose revision is older than the buffer.
    pub async fn store_watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<navarch_store::WatchStream, ApiError> {
        self.store
            .watch(prefix, after)
            .await
            .map_err(crate::registry::store_error)
    }
}

/// Keeps something in memory equal to the stored objects of `kinds` (all namespaces):
/// `reset` gets a full list, then `apply` every change `(object, deleted)` from the watch
/// cache; when the follower falls behind it lists again. Runs until the task is aborted.
pub fn follow(
    registry: Arc<crate::registry::Registry>,
    kinds: Vec<&'static navarch_api::kinds::KindInfo>,
    what: &'static str,
    reset: impl Fn(Vec<navarch_api::Object>) + Send + Sync + 'static,
    apply: impl Fn(&navarch_api::Object, bool) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let listed = kinds.clone();
    let ours = move |ev: &CacheEvent| kinds.iter().any(|k| std::ptr::eq(*k, ev.kind));
    tokio::spawn(async move {
        loop {
            let from = registry.cache().revision();
            let Some((replay, mut live)) = registry.cache().subscribe(from) else {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            };
            let mut objects = Vec::new();
            let mut failed = false;
            for kind in listed.iter().copied() {
                match registry
                    .list(kind, "", &crate::registry::ListOptions::default())
                    .await
                {
                    Ok(list) => objects.extend(list.items),
                    Err(error) => {
                        tracing::warn!(%error, kind = kind.kind, what, "listing failed; retrying");
                        failed = true;
                    }
                }
            }
            if failed {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            reset(objects);
            tracing::debug!(revision = from, what, "loaded");
            for ev in replay.iter().filter(|ev| ours(ev)) {
                apply(ev.object(), ev.deleted);
            }
            loop {
                match live.recv().await {
                    Ok(ev) => {
                        if ours(&ev) {
                            apply(ev.object(), ev.deleted);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::info!(skipped = n, what, "fell behind the watch cache; relisting");
                        break;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    })
}
