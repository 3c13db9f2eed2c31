//! Informers: list + watch of one kind into a [`Cache`], with change notifications.
//!
//! The informer lists (paginated) at a consistent revision, then watches from exactly that
//! revision, moving its resourceVersion forward with every event and bookmark, so a broken
//! watch resumes where it stopped with no gap and no duplicate. When the gateway answers
//! Expired (410: the revision was compacted), it lists again and turns the difference between
//! its cache and the new list into the Added/Updated/Deleted events it missed. Failures back
//! off (800 ms doubling to 30 s, with jitter) instead of hammering the gateway.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use navarch_gateway::client::{List, ListParams, WatchEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;

use crate::backoff::Backoff;
use crate::cache::Cache;
use crate::object::{KubeObject, ObjectKey, resource_version};

/// A change the informer applied to its cache; handlers see it after the cache does.
#[derive(Debug)]
pub enum Event<T> {
    Added(Arc<T>),
    Updated { old: Arc<T>, new: Arc<T> },
    Deleted(Arc<T>),
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Added(o) => Self::Added(o.clone()),
            Self::Updated { old, new } => Self::Updated {
                old: old.clone(),
                new: new.clone(),
            },
            Self::Deleted(o) => Self::Deleted(o.clone()),
        }
    }
}

impl<T> Event<T> {
    /// The object as it is now (for a deletion: as it was last seen).
    pub fn object(&self) -> &Arc<T> {
        match self {
            Self::Added(o) | Self::Deleted(o) => o,
            Self::Updated { new, .. } => new,
        }
    }
}

/// A stream of watch events.
pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<WatchEvent<T>, ApiError>> + Send>>;

/// Where an informer lists and watches from. [`ClientListWatch`] is the gateway; tests wrap it
/// to inject failures.
#[async_trait::async_trait]
pub trait ListWatch<T>: Send + Sync + 'static {
    /// One page of the list (`limit` items at most, continuing from `continue_token`).
    async fn list(&self, limit: i64, continue_token: &str) -> Result<List<T>, ApiError>;
    /// Every change after `resource_version`.
    async fn watch(&self, resource_version: &str) -> Result<WatchStream<T>, ApiError>;
}

/// Which objects of a kind an informer holds: a namespace ("" = all) and selectors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scope {
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
}

impl Scope {
    /// Every object of the kind.
    pub fn all() -> Self {
        Self::default()
    }

    /// The objects in one namespace.
    pub fn namespace(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            ..Self::default()
        }
    }

    /// Only objects whose labels match (`app=web`).
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = selector.into();
        self
    }

    /// Only objects whose fields match (`spec.nodeName=node-1`).
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = selector.into();
        self
    }
}

/// Lists and watches through the gateway client.
#[derive(Clone)]
pub struct ClientListWatch {
    client: Client,
    scope: Scope,
}

impl ClientListWatch {
    pub fn new(client: Client, scope: Scope) -> Self {
        Self { client, scope }
    }
}

#[async_trait::async_trait]
impl<T: KubeObject> ListWatch<T> for ClientListWatch {
    async fn list(&self, limit: i64, continue_token: &str) -> Result<List<T>, ApiError> {
        let params = ListParams {
            label_selector: self.scope.label_selector.clone(),
            field_selector: self.scope.field_selector.clone(),
            limit,
            continue_token: continue_token.to_string(),
        };
        self.client.list(&self.scope.namespace, &params).await
    }

    async fn watch(&self, resource_version: &str) -> Result<WatchStream<T>, ApiError> {
        let params = ListParams {
            label_selector: self.scope.label_selector.clone(),
            field_selector: self.scope.field_selector.clone(),
            ..Default::default()
        };
        self.client
            .watch(&self.scope.namespace, resource_version, &params)
            .await
    }
}

/// How an informer lists and reconnects.
#[derive(Clone, Debug)]
pub struct InformerConfig {
    /// Items per list page.
    pub page_size: i64,
    /// Back-off between failed lists and watches.
    pub backoff: Backoff,
    /// A watch is restarted (from its resourceVersion, so without a gap) after a random time
    /// between this and twice this, like client-go, so connections rebalance.
    pub watch_timeout: Duration,
}

impl Default for InformerConfig {
    fn default() -> Self {
        Self {
            page_size: 500,
            backoff: Backoff::default(),
            watch_timeout: Duration::from_secs(300),
        }
    }
}

type Handler<T> = Box<dyn Fn(&Event<T>) -> bool + Send + Sync>;

/// Identifies a handler for [`Informer::remove_handler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerId(u64);

struct Shared<T> {
    kind: &'static str,
    cache: Arc<Cache<T>>,
    handlers: Mutex<Vec<(HandlerId, Handler<T>)>>,
    next_handler: AtomicU64,
    synced: watch::Sender<bool>,
    resource_version: Mutex<String>,
}

impl<T: KubeObject> Shared<T> {
    fn handlers(&self) -> std::sync::MutexGuard<'_, Vec<(HandlerId, Handler<T>)>> {
        self.handlers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies changes to the cache and tells the handlers, atomically with respect to
    /// handler registration (a new handler sees each object exactly once).
    fn apply(&self, change: impl FnOnce(&Cache<T>) -> Vec<Event<T>>) {
        let mut handlers = self.handlers();
        let events = change(&self.cache);
        if events.is_empty() {
            return;
        }
        handlers.retain(|(_, h)| {
            events.iter().all(
                |ev| match std::panic::catch_unwind(AssertUnwindSafe(|| h(ev))) {
                    Ok(keep) => keep,
                    Err(_) => {
                        tracing::error!(kind = self.kind, "informer event handler panicked");
                        true
                    }
                },
            )
        });
    }

    fn set_resource_version(&self, rv: &str) {
        if !rv.is_empty() {
            *self
                .resource_version
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = rv.to_string();
        }
    }
}

/// An informer: a task that keeps a [`Cache`] equal to the cluster's objects of one kind (in
/// one [`Scope`]) and tells handlers about each change. Dropping it stops the task.
pub struct Informer<T> {
    shared: Arc<Shared<T>>,
    task: JoinHandle<()>,
}

impl<T: KubeObject> Informer<T> {
    /// Starts an informer over `client` for the objects in `scope`.
    pub fn new(client: Client, scope: Scope) -> Self {
        Self::start(
            ClientListWatch::new(client, scope),
            InformerConfig::default(),
        )
    }

    /// Starts an informer over any [`ListWatch`].
    pub fn start(source: impl ListWatch<T>, config: InformerConfig) -> Self {
        let shared = Arc::new(Shared {
            kind: T::kind().kind,
            cache: Arc::new(Cache::new()),
            handlers: Mutex::new(Vec::new()),
            next_handler: AtomicU64::new(0),
            synced: watch::channel(false).0,
            resource_version: Mutex::new(String::new()),
        });
        let task = tokio::spawn(run(source, shared.clone(), config));
        Self { shared, task }
    }

    /// The cache this informer fills.
    pub fn cache(&self) -> &Arc<Cache<T>> {
        &self.shared.cache
    }

    /// Calls `handler` for every change from now on, after first calling it with `Added` for
    /// every object already cached. Handlers run on the informer's task: keep them short
    /// (update a map, enqueue a key) and never call back into the informer from one.
    pub fn add_handler(&self, handler: impl Fn(&Event<T>) + Send + Sync + 'static) -> HandlerId {
        self.add_handler_inner(Box::new(move |ev| {
            handler(ev);
            true
        }))
    }

    fn add_handler_inner(&self, handler: Handler<T>) -> HandlerId {
        let id = HandlerId(self.shared.next_handler.fetch_add(1, Ordering::Relaxed));
        let mut handlers = self.shared.handlers();
        for obj in self.shared.cache.list() {
            handler(&Event::Added(obj));
        }
        handlers.push((id, handler));
        id
    }

    /// Stops calling a handler.
    pub fn remove_handler(&self, id: HandlerId) {
        self.shared.handlers().retain(|(h, _)| *h != id);
    }

    /// The changes as a channel (with the current objects first, as `Added`); the subscription
    /// ends when the receiver is dropped.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event<T>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.add_handler_inner(Box::new(move |ev| tx.send(ev.clone()).is_ok()));
        rx
    }

    /// Whether the first list has been applied.
    pub fn has_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Waits until the first list has been applied.
    pub async fn wait_synced(&self) {
        let mut rx = self.shared.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The resourceVersion the cache reflects.
    pub fn resource_version(&self) -> String {
        self.shared
            .resource_version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the informer (the cache keeps its last contents).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl<T> Drop for Informer<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lists every page; restarts from the first page if the continue token expires.
/// Lists every page into the cache. While one page is applied (to the cache and the
/// handlers), a task fetches and decodes the next, so a large list keeps both the gateway and
/// this side busy. What the cache holds that the list no longer has is deleted at the end.
/// Returns the list's resource version and how many objects it had.
async fn list_into<T: KubeObject, S: ListWatch<T>>(
    source: &Arc<S>,
    shared: &Shared<T>,
    page_size: i64,
) -> Result<(String, usize), ApiError> {
    'list: loop {
        let (tx, mut pages) = mpsc::channel(1);
        let src = source.clone();
        let _fetch = AbortOnDropHandle::new(tokio::spawn(async move {
            let mut token = String::new();
            loop {
                let continued = !token.is_empty();
                let page = src.list(page_size, &token).await;
                let last = page.as_ref().map_or(true, |p| p.continue_token.is_empty());
                if let Ok(p) = &page {
                    token.clone_from(&p.continue_token);
                }
                if tx.send((page, continued)).await.is_err() || last {
                    return;
                }
            }
        }));
        let mut seen = HashSet::new();
        while let Some((page, continued)) = pages.recv().await {
            match page {
                Ok(page) => {
                    let items = page.items.into_iter().map(Arc::new).collect();
                    shared.apply(|cache| upsert_page(cache, items, &mut seen));
                    if page.continue_token.is_empty() {
                        shared.apply(|cache| forget_unseen(cache, &seen));
                        return Ok((page.resource_version, seen.len()));
                    }
                }
                // The list's snapshot is gone (compacted): start over.
                Err(e) if e.reason == Reason::Expired && continued => continue 'list,
                Err(e) => return Err(e),
            }
        }
        return Err(ApiError::internal("the list stopped before its last page"));
    }
}

/// Puts one page of a list into the cache; returns the events that turn the old contents into
/// the new ones, and adds the page's keys to `seen`.
fn upsert_page<T: KubeObject>(
    cache: &Cache<T>,
    items: Vec<Arc<T>>,
    seen: &mut HashSet<ObjectKey>,
) -> Vec<Event<T>> {
    let mut events = Vec::with_capacity(items.len());
    for obj in items {
        seen.insert(ObjectKey::of(obj.as_ref()));
        match cache.upsert(obj.clone()) {
            None => events.push(Event::Added(obj)),
            Some(old) if resource_version(old.as_ref()) != resource_version(obj.as_ref()) => {
                events.push(Event::Updated { old, new: obj })
            }
            Some(_) => {}
        }
    }
    events
}

/// After the last page: deletes what the list did not have.
fn forget_unseen<T: KubeObject>(cache: &Cache<T>, seen: &HashSet<ObjectKey>) -> Vec<Event<T>> {
    let mut events = Vec::new();
    for key in cache.keys() {
        if !seen.contains(&key)
            && let Some(old) = cache.remove(&key)
        {
            events.push(Event::Deleted(old));
        }
    }
    events
}

/// Applies one watch event to the cache.
fn apply_event<T: KubeObject>(cache: &Cache<T>, ev: WatchEvent<T>) -> Vec<Event<T>> {
    match ev {
        WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
            let obj = Arc::new(obj);
            match cache.upsert(obj.clone()) {
                None => vec![Event::Added(obj)],
                Some(old) => vec![Event::Updated { old, new: obj }],
            }
        }
        // A deletion of an object never seen (it left a selector before we saw it) is no news.
        WatchEvent::Deleted(obj) => cache
            .remove(&ObjectKey::of(&obj))
            .map(|old| Event::Deleted(old))
            .into_iter()
            .collect(),
        WatchEvent::Bookmark(_) => Vec::new(),
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::random::<f64>())
}

async fn run<T: KubeObject>(
    source: impl ListWatch<T>,
    shared: Arc<Shared<T>>,
    config: InformerConfig,
) {
    let kind = shared.kind;
    let source = Arc::new(source);
    let mut backoff = config.backoff.clone();
    // `None`: the cache must be (re)listed before watching.
    let mut rv: Option<String> = None;
    loop {
        let from = match rv.take() {
            Some(rv) => rv,
            None => match list_into(&source, &shared, config.page_size).await {
                Ok((list_rv, count)) => {
                    shared.set_resource_version(&list_rv);
                    shared.synced.send_replace(true);
                    tracing::debug!(kind, count, resource_version = %list_rv, "informer listed");
                    list_rv
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(kind, error = %e, retry_in_ms = delay.as_millis() as u64, "informer list failed");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            },
        };
        let mut stream = match source.watch(&from).await {
            Ok(stream) => stream,
            Err(e) if e.reason == Reason::Expired => {
                tracing::info!(kind, resource_version = %from, "informer watch expired; relisting");
                continue;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(kind, error = %e, retry_in_ms = delay.as_millis() as u64, "informer watch failed");
                tokio::time::sleep(delay).await;
                rv = Some(from);
                continue;
            }
        };
        let mut current = from;
        let timeout = tokio::time::sleep(jittered(config.watch_timeout));
        tokio::pin!(timeout);
        let mut relist = false;
        let mut failed = false;
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => {
                        backoff.reset();
                        let new_rv = match &ev {
                            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                                resource_version(o).to_string()
                            }
                            WatchEvent::Bookmark(rv) => rv.clone(),
                        };
                        shared.apply(|cache| apply_event(cache, ev));
                        if !new_rv.is_empty() {
                            shared.set_resource_version(&new_rv);
                            current = new_rv;
                        }
                    }
                    Some(Err(e)) if e.reason == Reason::Expired => {
                        tracing::info!(kind, resource_version = %current, "informer watch expired; relisting");
                        relist = true;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(kind, error = %e, resource_version = %current, "informer watch broke; resuming");
                        failed = true;
                        break;
                    }
                    None => {
                        tracing::debug!(kind, resource_version = %current, "informer watch ended; resuming");
                        break;
                    }
                },
                _ = &mut timeout => break,
            }
        }
        if relist {
            continue;
        }
        if failed {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        rv = Some(current);
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::ConfigMap;
    use navarch_api::meta::v1::ObjectMeta;

    use super::*;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: Some(ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn describe(events: &[Event<ConfigMap>]) -> Vec<String> {
        let mut out: Vec<String> = events
            .iter()
            .map(|e| {
                let name = e.object().meta().name.clone().unwrap_or_default();
                match e {
                    Event::Added(_) => format!("added {name}"),
                    Event::Updated { old, .. } => {
                        format!("updated {name} from {}", resource_version(old.as_ref()))
                    }
                    Event::Deleted(_) => format!("deleted {name}"),
                }
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_relist_reports_what_changed_since_the_cache() {
        let cache = Cache::new();
        // A relist in two pages.
        let list = |pages: Vec<Vec<ConfigMap>>| {
            let mut seen = HashSet::new();
            let mut events = Vec::new();
            for page in pages {
                let items = page.into_iter().map(Arc::new).collect();
                events.extend(upsert_page(&cache, items, &mut seen));
            }
            events.extend(forget_unseen(&cache, &seen));
            events
        };
        list(vec![vec![cm("a", "1"), cm("b", "2")], vec![cm("c", "3")]]);
        let events = list(vec![vec![cm("a", "1")], vec![cm("b", "7"), cm("d", "8")]]);
        assert_eq!(
            describe(&events),
            ["added d", "deleted c", "updated b from 2"]
        );
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn watch_events_update_the_cache() {
        let cache = Cache::new();
        let ev = apply_event(&cache, WatchEvent::Added(cm("a", "1")));
        assert_eq!(describe(&ev), ["added a"]);
        let ev = apply_event(&cache, WatchEvent::Modified(cm("a", "2")));
        assert_eq!(describe(&ev), ["updated a from 1"]);
        let ev = apply_event(&cache, WatchEvent::Deleted(cm("a", "3")));
        assert_eq!(describe(&ev), ["deleted a"]);
        assert!(cache.is_empty());
        assert!(apply_event(&cache, WatchEvent::Bookmark("9".into())).is_empty());
    }
}
