//! Which pods this node runs: a list+watch of the pods bound to the node (or one shared
//! watch for a fleet of hollow nodes), and the [`PodManager`] that keeps one [`PodWorker`]
//! per pod.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use navarch_api::Reason;
use navarch_api::core::v1::Pod;
use navarch_gateway::Client;
use navarch_gateway::client::{ListParams, WatchEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::worker::record::PodRecord;
use crate::worker::{PodUpdate, PodWorker, WorkerContext};

/// What the pod source tells the manager.
#[derive(Clone, Debug)]
pub enum PodSourceEvent {
    /// The complete set of pods bound to the node (after a list).
    Sync(Vec<Pod>),
    Upsert(Pod),
    Delete(Pod),
}

fn uid(p: &Pod) -> String {
    p.metadata
        .as_ref()
        .and_then(|m| m.uid.clone())
        .unwrap_or_default()
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// Lists and watches pods matching `field_selector`, relisting after errors, forwarding
/// events through `emit` until `stop`.
async fn list_watch(
    client: Client,
    field_selector: String,
    emit: impl Fn(PodSourceEvent) -> bool,
    mut stop: watch::Receiver<bool>,
) {
    let params = ListParams {
        field_selector,
        ..Default::default()
    };
    let mut delay = Duration::from_millis(500);
    'relist: loop {
        if *stop.borrow() {
            return;
        }
        let mut items = vec![];
        let mut rv;
        let mut page = params.clone();
        loop {
            match client.list::<Pod>("", &page).await {
                Ok(list) => {
                    items.extend(list.items);
                    rv = list.resource_version;
                    if list.continue_token.is_empty() {
                        break;
                    }
                    page.continue_token = list.continue_token;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_ms = delay.as_millis() as u64, "listing pods failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    continue 'relist;
                }
            }
        }
        if !emit(PodSourceEvent::Sync(items)) {
            return;
        }
        loop {
            let stream = match client.watch::<Pod>("", &rv, &params).await {
                Ok(s) => s,
                Err(error) => {
                    tracing::warn!(%error, "watching pods failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    continue 'relist;
                }
            };
            delay = Duration::from_millis(500);
            let mut stream = stream;
            loop {
                let ev = tokio::select! {
                    ev = stream.next() => ev,
                    _ = stop.changed() => return,
                };
                match ev {
                    None => break,
                    Some(Ok(WatchEvent::Added(p))) | Some(Ok(WatchEvent::Modified(p))) => {
                        rv = p
                            .metadata
                            .as_ref()
                            .and_then(|m| m.resource_version.clone())
                            .unwrap_or(rv);
                        if !emit(PodSourceEvent::Upsert(p)) {
                            return;
                        }
                    }
                    Some(Ok(WatchEvent::Deleted(p))) => {
                        rv = p
                            .metadata
                            .as_ref()
                            .and_then(|m| m.resource_version.clone())
                            .unwrap_or(rv);
                        if !emit(PodSourceEvent::Delete(p)) {
                            return;
                        }
                    }
                    Some(Ok(WatchEvent::Bookmark(v))) => rv = v,
                    Some(Err(e)) if e.reason == Reason::Expired => {
                        tracing::info!("pod watch expired; relisting");
                        continue 'relist;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "pod watch failed");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.changed() => return,
                        }
                        continue 'relist;
                    }
                }
            }
        }
    }
}

/// Watches the pods bound to `node` and sends them to `tx`.
pub async fn watch_node_pods(
    client: Client,
    node: String,
    tx: mpsc::UnboundedSender<PodSourceEvent>,
    stop: watch::Receiver<bool>,
) {
    list_watch(
        client,
        format!("spec.nodeName={node}"),
        move |ev| tx.send(ev).is_ok(),
        stop,
    )
    .await;
}

/// One watch over every pod, dispatched to the hollow nodes of this process by
/// `spec.nodeName`: 5,000 nodes cost one watch, not 5,000.
#[derive(Clone, Default)]
pub struct PodDispatcher {
    nodes: Arc<RwLock<HashMap<String, mpsc::UnboundedSender<PodSourceEvent>>>>,
}

impl PodDispatcher {
    pub fn register(&self, node: &str) -> mpsc::UnboundedReceiver<PodSourceEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.into(), tx);
        rx
    }

    fn dispatch(&self, ev: PodSourceEvent) {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        match ev {
            PodSourceEvent::Sync(pods) => {
                let mut per: HashMap<String, Vec<Pod>> = HashMap::new();
                for p in pods {
                    per.entry(node_of(&p)).or_default().push(p);
                }
                for (node, tx) in nodes.iter() {
                    let _ = tx.send(PodSourceEvent::Sync(per.remove(node).unwrap_or_default()));
                }
            }
            PodSourceEvent::Upsert(p) => {
                if let Some(tx) = nodes.get(&node_of(&p)) {
                    let _ = tx.send(PodSourceEvent::Upsert(p));
                }
            }
            PodSourceEvent::Delete(p) => {
                if let Some(tx) = nodes.get(&node_of(&p)) {
                    let _ = tx.send(PodSourceEvent::Delete(p));
                }
            }
        }
    }

    /// Runs the shared watch (bound pods only) until `stop`.
    pub async fn run(self, client: Client, stop: watch::Receiver<bool>) {
        list_watch(
            client,
            "spec.nodeName!=".into(),
            move |ev| {
                self.dispatch(ev);
                true
            },
            stop,
        )
        .await;
    }
}

struct WorkerHandle {
    tx: watch::Sender<PodUpdate>,
    task: JoinHandle<()>,
}

/// Keeps one worker per pod bound to the node; adopts saved records after a restart and
/// cleans up pods that disappeared while the agent was away.
pub struct PodManager {
    ctx: WorkerContext,
    labels: crate::usage::PodLabels,
    workers: HashMap<String, WorkerHandle>,
    saved: HashMap<String, PodRecord>,
    synced: bool,
    stop: watch::Receiver<bool>,
    done_tx: mpsc::UnboundedSender<String>,
    done_rx: mpsc::UnboundedReceiver<String>,
}

impl PodManager {
    pub fn new(ctx: WorkerContext, stop: watch::Receiver<bool>) -> Self {
        let saved = ctx
            .records
            .load_all()
            .into_iter()
            .map(|r| (r.uid.clone(), r))
            .collect::<HashMap<_, _>>();
        if !saved.is_empty() {
            tracing::info!(pods = saved.len(), "found saved pod records; will re-adopt");
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            ctx,
            labels: Default::default(),
            workers: HashMap::new(),
            saved,
            synced: false,
            stop,
            done_tx,
            done_rx,
        }
    }

    /// Where the pod records live.
    pub fn records(&self) -> crate::worker::record::RecordStore {
        self.ctx.records.clone()
    }

    /// The labels of the pods this manager runs, kept current (for the usage reports).
    pub fn labels(&self) -> crate::usage::PodLabels {
        self.labels.clone()
    }

    fn spawn(&mut self, record: PodRecord, first: PodUpdate) {
        let uid = record.uid.clone();
        let (tx, rx) = watch::channel(first);
        let worker = PodWorker::new(self.ctx.clone(), record, rx);
        let stop = self.stop.clone();
        let done = self.done_tx.clone();
        let id = uid.clone();
        let task = tokio::spawn(async move {
            worker.run(stop).await;
            let _ = done.send(id);
        });
        self.workers.insert(uid, WorkerHandle { tx, task });
    }

    fn upsert(&mut self, pod: Pod) {
        let id = uid(&pod);
        if id.is_empty() || node_of(&pod) != self.ctx.node_name {
            return;
        }
        if let Some(m) = &pod.metadata {
            self.labels
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), m.labels.clone());
        }
        if let Some(w) = self.workers.get(&id) {
            let _ = w.tx.send(Some(pod));
            return;
        }
        let record = match self.saved.remove(&id) {
            Some(r) => r,
            None => {
                let phase = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                if phase == "Succeeded" || phase == "Failed" {
                    // Finished before we knew it (or its record is gone): nothing to run.
                    return;
                }
                let m = pod.metadata.clone().unwrap_or_default();
                PodRecord::new(
                    &id,
                    &m.namespace.unwrap_or_default(),
                    &m.name.unwrap_or_default(),
                )
            }
        };
        self.spawn(record, Some(pod));
    }

    fn handle(&mut self, ev: PodSourceEvent) {
        match ev {
            PodSourceEvent::Sync(pods) => {
                let seen: HashSet<String> = pods.iter().map(uid).collect();
                for p in pods {
                    self.upsert(p);
                }
                for (id, w) in &self.workers {
                    if !seen.contains(id) {
                        let _ = w.tx.send(None);
                    }
                }
                if !self.synced {
                    self.synced = true;
                    let orphans: Vec<PodRecord> = self
                        .saved
                        .drain()
                        .filter(|(id, _)| !seen.contains(id))
                        .map(|(_, r)| r)
                        .collect();
                    for r in orphans {
                        tracing::info!(pod = %format!("{}/{}", r.namespace, r.name), uid = %r.uid, "pod is gone from the cluster; cleaning up");
                        self.spawn(r, None);
                    }
                }
            }
            PodSourceEvent::Upsert(p) => self.upsert(p),
            PodSourceEvent::Delete(p) => {
                if let Some(w) = self.workers.get(&uid(&p)) {
                    let _ = w.tx.send(None);
                }
            }
        }
    }

    /// Runs until `stop`; then waits for the workers to let go (containers keep running).
    pub async fn run(mut self, mut events: mpsc::UnboundedReceiver<PodSourceEvent>) {
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.handle(ev),
                    None => break,
                },
                Some(id) = self.done_rx.recv() => {
                    self.workers.remove(&id);
                    self.labels.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
                }
                _ = stop.changed() => break,
            }
        }
        for (_, w) in self.workers.drain() {
            let _ = tokio::time::timeout(Duration::from_secs(5), w.task).await;
        }
    }
}
