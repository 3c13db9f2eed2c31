//! The running scheduler: informers feed the [`Snapshot`] and the [`SchedulingQueue`]; one loop
//! takes pods off the queue, runs [`framework::schedule`], assumes each decision in the snapshot
//! at once (so the next pod sees the node as taken) and hands the binding to a background task;
//! a small controller writes `PodScheduled=False` conditions and events for pods that fit
//! nowhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use navarch_api::core::v1::{Node, Pod, PodCondition};
use navarch_api::scheduling::v1::PriorityClass;
use navarch_api::{ApiError, Reason};
use navarch_gateway::{Client, PodBinding};
use navarch_runtime::controller::backoff_on_error;
use navarch_runtime::events::object_reference;
use navarch_runtime::{
    Action, Controller, Event, EventRecorder, EventType, Informer, InformerFactory,
    LeaderElectionConfig, LeaderElector, ObjectKey, Scope, WorkQueue,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::framework::{self, Cursor, Registry};
use crate::metrics::SchedulerMetrics;
use crate::pod_info::PodInfo;
use crate::preemption;
use crate::queue::{Popped, SchedulingQueue};
use crate::snapshot::Snapshot;

/// How a scheduler runs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this are ours; others are ignored.
    pub scheduler_name: String,
    /// This instance (events' `reportingInstance`, the Lease holder).
    pub identity: String,
    /// `None` runs without leader election (one scheduler only, tests).
    pub leader_election: Option<LeaderElectionConfig>,
    /// Pods whose binding is in flight, at most.
    pub bind_concurrency: usize,
    /// CreateBindings calls in flight at most: decisions made while they are out wait and
    /// go together in the next call.
    pub bind_calls: usize,
    /// Bindings per CreateBindings call, at most.
    pub bind_batch: usize,
    /// Pods scheduled per pass of the loop (while holding the snapshot).
    pub batch: usize,
    /// Overrides the adaptive share of nodes searched for feasible ones (1–100).
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Write `Scheduled` / `FailedScheduling` events.
    pub record_events: bool,
    /// Back-off of a pod after a failed attempt: initial and maximum.
    pub backoff: (Duration, Duration),
    /// Fault injection for tests (panics in the scheduling loop).
    pub faults: Arc<Faults>,
}

/// Fault injection for tests: the next `n` scheduling attempts panic, to prove that the
/// supervisor restarts the scheduler without losing or double-binding pods.
#[derive(Debug, Default)]
pub struct Faults {
    panics: std::sync::atomic::AtomicU32,
}

impl Faults {
    pub fn panic_next(&self, n: u32) {
        self.panics.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) {
        use std::sync::atomic::Ordering;
        if self.panics.load(Ordering::Relaxed) > 0
            && self
                .panics
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            panic!("injected fault: a scheduling attempt panics");
        }
    }
}

impl SchedulerConfig {
    /// The defaults for `default-scheduler`, with leader election on the
    /// `kube-system/navarch-scheduler` Lease.
    pub fn new(identity: impl Into<String>) -> Self {
        let identity = identity.into();
        Self {
            scheduler_name: "default-scheduler".into(),
            leader_election: Some(LeaderElectionConfig::new(
                "kube-system",
                "navarch-scheduler",
                identity.clone(),
            )),
            identity,
            bind_concurrency: 1024,
            bind_calls: 4,
            bind_batch: 128,
            batch: 64,
            percentage_of_nodes_to_score: None,
            record_events: true,
            backoff: (Duration::from_secs(1), Duration::from_secs(10)),
            faults: Arc::default(),
        }
    }
}

/// How long to wait before trying again after the caches failed to sync.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Runs the scheduler until `shutdown` is cancelled. With leader election, it schedules only
/// while it holds the Lease; on losing it, it stops everything (informers, in-flight bindings)
/// and campaigns again with fresh state. If its caches cannot sync, it steps down (releasing
/// the Lease) and tries again.
pub async fn run(client: Client, config: SchedulerConfig, shutdown: CancellationToken) {
    let elector = config
        .leader_election
        .clone()
        .map(|election| LeaderElector::new(client.clone(), election));
    while !shutdown.is_cancelled() {
        let leadership = match &elector {
            None => None,
            Some(elector) => tokio::select! {
                l = elector.acquire() => Some(l),
                _ = shutdown.cancelled() => return,
            },
        };
        tracing::info!(identity = %config.identity, "scheduler is leading");
        let term = shutdown.child_token();
        let lost = async {
            match &leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            r = run_leading(client.clone(), config.clone(), term.clone()) => Some(r),
            _ = lost => None,
        };
        term.cancel();
        match outcome {
            Some(Ok(())) => {
                if let Some(l) = leadership {
                    l.release().await;
                }
                return;
            }
            Some(Err(e)) => {
                tracing::error!(identity = %config.identity, error = %e, "scheduler stopped; retrying");
                if let Some(l) = leadership {
                    l.release().await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            None => tracing::warn!(
                identity = %config.identity,
                "scheduler lost leadership; stopped scheduling, campaigning again"
            ),
        }
    }
}

/// Everything one term of leadership owns.
struct Shared {
    config: SchedulerConfig,
    client: Client,
    registry: Registry,
    state: Mutex<State>,
    wake: Notify,
    priorities: Mutex<Priorities>,
    /// Why each pending pod last failed, for the status writer.
    failures: Mutex<HashMap<ObjectKey, String>>,
    /// Pods that preempted, and their victims: no second preemption while a victim remains.
    preempting: Mutex<HashMap<ObjectKey, Vec<ObjectKey>>>,
    status_queue: WorkQueue<ObjectKey>,
    recorder: Option<EventRecorder>,
    metrics: SchedulerMetrics,
    binds: Arc<Semaphore>,
}

struct State {
    snapshot: Snapshot,
    queue: SchedulingQueue,
    cursor: Cursor,
}

#[derive(Default)]
struct Priorities {
    classes: HashMap<String, i32>,
    global_default: Option<(String, i32)>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, String>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `spec.priority`, else the value of its PriorityClass (or the global default class).
    fn priority_of(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        let priorities = self.priorities.lock().unwrap_or_else(|e| e.into_inner());
        match spec
            .and_then(|s| s.priority_class_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            Some(class) => priorities.classes.get(class).copied().unwrap_or(0),
            None => priorities.global_default.as_ref().map_or(0, |(_, v)| *v),
        }
    }

    fn on_priority_class(&self, ev: &Event<PriorityClass>) {
        let mut p = self.priorities.lock().unwrap_or_else(|e| e.into_inner());
        let pc = ev.object();
        let name = pc
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        if let Event::Deleted(_) = ev {
            p.classes.remove(&name);
            if p.global_default.as_ref().is_some_and(|(n, _)| *n == name) {
                p.global_default = None;
            }
            return;
        }
        let value = pc.value.unwrap_or(0);
        p.classes.insert(name.clone(), value);
        if pc.global_default == Some(true) {
            p.global_default = Some((name, value));
        } else if p.global_default.as_ref().is_some_and(|(n, _)| *n == name) {
            p.global_default = None;
        }
    }

    fn on_node(&self, ev: &Event<Node>) {
        let now = Instant::now();
        let mut st = self.state();
        match ev {
            Event::Added(n) => {
                st.snapshot.upsert_node(n.clone());
                st.queue.cluster_changed(now);
            }
            Event::Updated { old, new } => {
                st.snapshot.upsert_node(new.clone());
                if node_scheduling_changed(old, new) {
                    st.queue.cluster_changed(now);
                }
            }
            Event::Deleted(n) => {
                let name = n
                    .metadata
                    .as_ref()
                    .and_then(|m| m.name.as_deref())
                    .unwrap_or_default();
                st.snapshot.remove_node(name);
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    fn on_pod(&self, ev: &Event<Pod>) {
        match ev {
            Event::Added(pod) => self.pod_seen(None, pod),
            Event::Updated { old, new } => self.pod_seen(Some(old), new),
            Event::Deleted(pod) => self.pod_gone(&ObjectKey::of(pod.as_ref())),
        }
    }

    fn pod_seen(&self, old: Option<&Arc<Pod>>, pod: &Arc<Pod>) {
        if self.confirmed(pod) {
            return;
        }
        let info = Arc::new(PodInfo::new(pod.clone(), self.priority_of(pod)));
        let now = Instant::now();
        if let Some(node) = info.node_name.clone() {
            // Bound (by us or anyone): it takes its share of the node from now on.
            let key = info.key.clone();
            let labels_changed = old.is_some_and(|o| {
                o.metadata.as_ref().map(|m| &m.labels) != pod.metadata.as_ref().map(|m| &m.labels)
            });
            let mut st = self.state();
            st.snapshot.place(info, &node, false);
            st.queue.remove(&key);
            if labels_changed {
                st.queue.cluster_changed(now);
            }
            drop(st);
            self.failures().remove(&key);
            return;
        }
        if info.scheduler_name != self.config.scheduler_name {
            return;
        }
        let mut st = self.state();
        // Terminating pods are not placed; gated pods wait until their gates are removed.
        if info.terminating || info.gated {
            st.queue.remove(&info.key);
            return;
        }
        let changed = old.is_none_or(|o| PodInfo::scheduling_changed(o, pod));
        st.queue.add(info, changed, now);
        drop(st);
        self.wake.notify_one();
    }

    /// Our own binding, seen on the watch: the assumed placement is now a bound one, kept as
    /// it is. A binding sets `spec.nodeName` (and the PodScheduled condition) only, so nothing
    /// the snapshot derives from the pod changed, unless its labels or deletion did meanwhile;
    /// then, or when the pod is bound elsewhere or is another pod by that name, the caller
    /// re-places it from the new object.
    fn confirmed(&self, pod: &Pod) -> bool {
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
        else {
            return false;
        };
        let meta = pod.metadata.as_ref();
        let key = ObjectKey::of(pod);
        let mut st = self.state();
        let same = st.snapshot.placement(&key).is_some_and(|p| {
            p.assumed
                && p.node == node
                && Some(p.info.uid.as_str()) == meta.and_then(|m| m.uid.as_deref())
                && meta.is_some_and(|m| m.labels == p.info.labels)
                && p.info.terminating == meta.is_some_and(|m| m.deletion_timestamp.is_some())
        });
        if !same {
            return false;
        }
        st.snapshot.confirm(&key);
        st.queue.remove(&key);
        drop(st);
        self.failures().remove(&key);
        true
    }

    fn pod_gone(&self, key: &ObjectKey) {
        let mut st = self.state();
        let freed = st.snapshot.unplace(key).is_some();
        st.queue.remove(key);
        if freed {
            st.queue.cluster_changed(Instant::now());
        }
        drop(st);
        self.failures().remove(key);
        if freed {
            self.wake.notify_one();
        }
    }
}

/// Whether a node update can change where pods fit (not just a heartbeat).
fn node_scheduling_changed(old: &Node, new: &Node) -> bool {
    let ready = |n: &Node| {
        n.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.r#type.as_deref() == Some("Ready"))
                .map(|c| c.status.clone())
        })
    };
    old.spec != new.spec
        || old.metadata.as_ref().map(|m| &m.labels) != new.metadata.as_ref().map(|m| &m.labels)
        || old.status.as_ref().map(|s| &s.allocatable)
            != new.status.as_ref().map(|s| &s.allocatable)
        || ready(old) != ready(new)
}

/// Schedules while `stop` is not cancelled, with informers and state of its own.
async fn run_leading(
    client: Client,
    config: SchedulerConfig,
    stop: CancellationToken,
) -> Result<(), navarch_runtime::factory::SyncTimeout> {
    let factory = InformerFactory::new(client.clone());
    let pods: Arc<Informer<Pod>> =
        factory.scoped(Scope::all().fields("status.phase!=Succeeded,status.phase!=Failed"));
    let nodes: Arc<Informer<Node>> = factory.informer();
    let classes: Arc<Informer<PriorityClass>> = factory.informer();
    let recorder = config
        .record_events
        .then(|| EventRecorder::new(client.clone(), &config.scheduler_name, &config.identity));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            snapshot: Snapshot::new(),
            queue: SchedulingQueue::with_backoff(config.backoff.0, config.backoff.1),
            cursor: Cursor {
                next_start: 0,
                seed: rand::random(),
            },
        }),
        binds: Arc::new(Semaphore::new(config.bind_concurrency.max(1))),
        client: client.clone(),
        registry: Registry::default(),
        wake: Notify::new(),
        priorities: Mutex::default(),
        failures: Mutex::default(),
        preempting: Mutex::default(),
        status_queue: WorkQueue::new("scheduler-status"),
        recorder,
        metrics: SchedulerMetrics::new(),
        config,
    });
    let s = shared.clone();
    classes.add_handler(move |ev| s.on_priority_class(ev));
    let s = shared.clone();
    nodes.add_handler(move |ev| s.on_node(ev));
    let s = shared.clone();
    pods.add_handler(move |ev| s.on_pod(ev));

    tokio::select! {
        synced = factory.wait_synced(Duration::from_secs(300)) => synced?,
        _ = stop.cancelled() => {
            factory.shutdown();
            return Ok(());
        }
    }
    {
        let st = shared.state();
        tracing::info!(
            nodes = st.snapshot.len(),
            bound_pods = st.snapshot.pod_count(),
            pending_pods = st.queue.len(),
            "scheduler caches synced; scheduling"
        );
    }

    let status = tokio::spawn(
        Controller::new("scheduler-status", shared.status_queue.clone())
            .workers(4)
            .run(
                write_unschedulable_status,
                backoff_on_error,
                Arc::new(StatusContext {
                    shared: shared.clone(),
                    pods: pods.clone(),
                }),
            ),
    );
    schedule_loop(shared.clone(), stop).await;
    shared.status_queue.shutdown();
    status.abort();
    factory.shutdown();
    Ok(())
}

/// Takes pods off the queue and places them until `stop`.
async fn schedule_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut binds: JoinSet<()> = JoinSet::new();
    let (to_binder, decisions) = tokio::sync::mpsc::unbounded_channel();
    binds.spawn(binder(shared.clone(), decisions));
    let pct = shared.config.percentage_of_nodes_to_score;
    loop {
        if stop.is_cancelled() {
            return;
        }
        while binds.try_join_next().is_some() {}
        let (batch, next_backoff, counts) = {
            let mut st = shared.state();
            st.queue.flush(Instant::now());
            let batch: Vec<Popped> = std::iter::from_fn(|| st.queue.pop())
                .take(shared.config.batch.max(1))
                .collect();
            (batch, st.queue.next_backoff(), st.queue.counts())
        };
        shared.metrics.pending(counts);
        if batch.is_empty() {
            let wait = next_backoff
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let mut failed = Vec::new();
        let mut preemptions = Vec::new();
        for p in batch {
            // The state lock is taken per pod, not per batch: the informers' handlers (which
            // take it on every pod and node change) wait for one decision at most, instead of
            // blocking a runtime thread for a whole batch.
            let placed = {
                let mut st = shared.state();
                let State {
                    snapshot,
                    queue,
                    cursor,
                } = &mut *st;
                let key = &p.info.key;
                if snapshot.placement(key).is_some() {
                    // Bound meanwhile (by another scheduler instance or by hand).
                    queue.remove(key);
                    continue;
                }
                shared.config.faults.check();
                let started = std::time::Instant::now();
                let result = framework::schedule(&p.info, snapshot, &shared.registry, cursor, pct);
                let took = started.elapsed().as_secs_f64();
                match result {
                    Ok(decision) => {
                        shared.metrics.attempt("scheduled", took);
                        snapshot.place(p.info.clone(), &decision.node, true);
                        Some(decision.node)
                    }
                    Err(fit) => {
                        shared.metrics.attempt("unschedulable", took);
                        queue.unschedulable(key, Instant::now());
                        failed.push((key.clone(), fit.to_string()));
                        if let Some(candidate) = try_preemption(&shared, &p.info, snapshot) {
                            preemptions.push((p.info.clone(), candidate));
                        }
                        None
                    }
                }
            };
            if let Some(node) = placed {
                // Bound as soon as decided, so bindings flow while the batch is scheduled.
                let permit = tokio::select! {
                    permit = shared.binds.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    _ = stop.cancelled() => return,
                };
                let span = navarch_telemetry::linked_span!(
                    "schedule",
                    navarch_telemetry::traces::link_key("", "pods", &p.info.key.namespace, &p.info.key.name),
                    component = "scheduler",
                    pod = %p.info.key,
                    node = %node,
                );
                let traceparent = span.in_scope(navarch_telemetry::traces::current_traceparent);
                let decided = Decided {
                    pod: p,
                    node,
                    span,
                    traceparent,
                    started: Instant::now(),
                    _permit: permit,
                };
                if to_binder.send(decided).is_err() {
                    return; // the binder is gone: stopping
                }
            }
        }
        for (pod, candidate) in preemptions {
            binds.spawn(preempt(shared.clone(), pod, candidate));
        }
        for (key, message) in failed {
            tracing::debug!(pod = %key, %message, "pod is unschedulable");
            shared.failures().insert(key.clone(), message);
            shared.status_queue.add(key);
        }
    }
}

/// A preemption for a pod that fits nowhere, unless it may not or need not preempt now: its
/// policy is `Never`, or victims of its last preemption are still there.
fn try_preemption(
    shared: &Shared,
    pod: &PodInfo,
    snapshot: &Snapshot,
) -> Option<preemption::Candidate> {
    let mut preempting = shared.preempting.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(victims) = preempting.get(&pod.key) {
        if victims.iter().any(|v| snapshot.placement(v).is_some()) {
            return None;
        }
        preempting.remove(&pod.key);
    }
    if !preemption::eligible(pod, snapshot) {
        return None;
    }
    let candidate = preemption::find_candidate(pod, snapshot, &shared.registry)?;
    preempting.insert(
        pod.key.clone(),
        candidate.victims.iter().map(|v| v.key.clone()).collect(),
    );
    Some(candidate)
}

/// Carries a preemption out: nominates the node on the preemptor
/// (`status.nominatedNodeName`), then deletes the victims (with their own grace periods) and
/// tells each why in a `Preempted` event. The preemptor is retried as the victims go.
async fn preempt(shared: Arc<Shared>, pod: Arc<PodInfo>, candidate: preemption::Candidate) {
    let key = &pod.key;
    shared.metrics.preemption(candidate.victims.len());
    tracing::info!(
        pod = %key,
        node = %candidate.node,
        victims = candidate.victims.len(),
        "preempting lower-priority pods"
    );
    for attempt in 0..3 {
        let result = async {
            let mut current: Pod = shared.client.get(&key.namespace, &key.name).await?;
            let status = current.status.get_or_insert_with(Default::default);
            if status.nominated_node_name.as_deref() == Some(candidate.node.as_str()) {
                return Ok(());
            }
            status.nominated_node_name = Some(candidate.node.clone());
            shared
                .client
                .update_status(&key.namespace, &key.name, &current)
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => break,
            Err(e) if e.reason == Reason::Conflict && attempt < 2 => continue,
            Err(e) if e.reason == Reason::NotFound => return,
            Err(e) => {
                tracing::warn!(pod = %key, error = %e, "could not nominate a node; preempting anyway");
                break;
            }
        }
    }
    for victim in &candidate.victims {
        let params = navarch_gateway::client::DeleteParams {
            precondition_uid: victim.uid.clone(),
            ..Default::default()
        };
        match shared
            .client
            .delete_with::<Pod>(&victim.key.namespace, &victim.key.name, &params)
            .await
        {
            Ok(_) => {
                if let Some(recorder) = &shared.recorder {
                    recorder.record(
                        object_reference(victim.pod.as_ref()),
                        EventType::Normal,
                        "Preempted",
                        "Preempting",
                        format!("Preempted by pod {} on node {}", pod.uid, candidate.node),
                    );
                }
            }
            Err(e) if matches!(e.reason, Reason::NotFound | Reason::Conflict) => {}
            Err(e) => tracing::warn!(victim = %victim.key, error = %e, "could not delete a victim"),
        }
    }
    shared.wake.notify_one();
}

/// A decision on its way to the gateway.
struct Decided {
    pod: Popped,
    node: String,
    /// Open from the decision until the binding's answer; continues the trace of the pod's
    /// creation.
    span: tracing::Span,
    /// `span`'s context, for the gateway's side of the binding.
    traceparent: Option<String>,
    started: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Sends decisions to the gateway in CreateBindings calls: at most `bind_calls` at once, each
/// with whatever was decided while the others were out (up to `bind_batch`).
async fn binder(shared: Arc<Shared>, mut decisions: UnboundedReceiver<Decided>) {
    let calls_allowed = Arc::new(Semaphore::new(shared.config.bind_calls.max(1)));
    let mut calls = JoinSet::new();
    while let Some(first) = decisions.recv().await {
        let call = calls_allowed
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut batch = vec![first];
        while batch.len() < shared.config.bind_batch.max(1) {
            match decisions.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        while calls.try_join_next().is_some() {}
        calls.spawn(bind(shared.clone(), batch, call));
    }
}

/// Binds assumed pods in one call; a pod whose binding failed loses its assumption and is
/// retried with back-off.
async fn bind(shared: Arc<Shared>, batch: Vec<Decided>, _call: OwnedSemaphorePermit) {
    let items: Vec<PodBinding> = batch
        .iter()
        .map(|d| PodBinding {
            namespace: &d.pod.info.key.namespace,
            pod: &d.pod.info.key.name,
            node: &d.node,
            traceparent: d.traceparent.as_deref(),
        })
        .collect();
    let results = shared
        .client
        .bind_all(&items)
        .instrument(tracing::info_span!("bind", pods = items.len()))
        .await;
    let results = match results {
        Ok(results) => results,
        Err(e) => vec![Err(e); batch.len()],
    };
    for (decided, result) in batch.into_iter().zip(results) {
        bound(&shared, decided, result);
    }
}

/// What a binding's answer means for the pod.
fn bound(shared: &Shared, decided: Decided, result: Result<(), ApiError>) {
    let Decided {
        pod,
        node,
        span,
        started,
        ..
    } = decided;
    let _span = span.enter();
    let key = &pod.info.key;
    let now = Instant::now();
    match result {
        Ok(()) => {
            shared.state().queue.remove(key);
            shared.failures().remove(key);
            shared.metrics.bound(
                now.duration_since(started).as_secs_f64(),
                now.duration_since(pod.first_seen).as_secs_f64(),
            );
            tracing::debug!(pod = %key, node = %node, "bound");
            if let Some(recorder) = &shared.recorder {
                recorder.record(
                    object_reference(pod.info.pod.as_ref()),
                    EventType::Normal,
                    "Scheduled",
                    "Binding",
                    format!("Successfully assigned {key} to {node}"),
                );
            }
        }
        Err(e) => {
            shared.metrics.attempt("error", 0.0);
            let mut st = shared.state();
            let assumed_here = st
                .snapshot
                .placement(key)
                .is_some_and(|p| p.assumed && p.node == node);
            if assumed_here {
                st.snapshot.unplace(key);
                st.queue.cluster_changed(now);
            }
            if e.reason == Reason::NotFound {
                st.queue.remove(key);
            } else {
                // Already bound (the watch will say so and drop it from the queue), being
                // deleted, or a transient failure: try again after the back-off.
                st.queue.retry(key, now);
            }
            drop(st);
            tracing::info!(pod = %key, node = %node, error = %e, "binding failed");
            shared.wake.notify_one();
        }
    }
}

struct StatusContext {
    shared: Arc<Shared>,
    pods: Arc<Informer<Pod>>,
}

/// Writes `PodScheduled=False, reason Unschedulable` with the latest message onto a pending
/// pod (and a FailedScheduling event when the message changes).
async fn write_unschedulable_status(
    key: ObjectKey,
    ctx: Arc<StatusContext>,
) -> Result<Action, ApiError> {
    let Some(message) = ctx.shared.failures().get(&key).cloned() else {
        return Ok(Action::await_change());
    };
    let Some(pod) = ctx.pods.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let conditions = pod
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let current = conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some("PodScheduled"));
    if current.is_some_and(|c| {
        c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message.as_str())
    }) {
        return Ok(Action::await_change());
    }
    let transition = match current {
        Some(c) if c.status.as_deref() == Some("False") => c.last_transition_time.clone(),
        _ => None,
    };
    let mut updated = (*pod).clone();
    let status = updated.status.get_or_insert_with(Default::default);
    status
        .conditions
        .retain(|c| c.r#type.as_deref() != Some("PodScheduled"));
    status.conditions.push(PodCondition {
        r#type: Some("PodScheduled".into()),
        status: Some("False".into()),
        reason: Some("Unschedulable".into()),
        message: Some(message.clone()),
        last_transition_time: transition.or_else(|| {
            Some(
                jiff::Timestamp::now()
                    .round(jiff::Unit::Second)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            )
        }),
        ..Default::default()
    });
    match ctx
        .shared
        .client
        .update_status(&key.namespace, &key.name, &updated)
        .await
    {
        Ok(_) => {}
        Err(e) if e.reason == Reason::NotFound => return Ok(Action::await_change()),
        Err(e) => return Err(e),
    }
    if let Some(recorder) = &ctx.shared.recorder {
        recorder.record(
            object_reference(pod.as_ref()),
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            message,
        );
    }
    Ok(Action::await_change())
}
