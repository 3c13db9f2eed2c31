//! The node lifecycle loop (`pkg/controller/nodelifecycle` and its taint-eviction manager,
//! plus the orphan part of pod GC): a node whose Lease in `kube-node-lease` (or Ready
//! heartbeat) has not been renewed within the grace period gets its conditions set to
//! Unknown (`NodeStatusUnknown`); Ready False/Unknown nodes get the
//! `node.kubernetes.io/not-ready` / `unreachable` NoExecute and NoSchedule taints (removed
//! when the node is Ready again); pods on NoExecute-tainted nodes are evicted after their
//! tolerationSeconds (pods without a toleration for these two taints get the default, as the
//! `DefaultTolerationSeconds` admission plugin would give them). Pods bound to nodes that no
//! longer exist are deleted.
//!
//! Heartbeats are judged by when this loop saw them change, on its own clock, so clock skew
//! between machines does not matter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::Timestamp;
use navarch_api::coordination::v1::Lease;
use navarch_api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use navarch_api::{ApiError, Reason};
use navarch_gateway::client::DeleteParams;
use navarch_runtime::{
    Action, Event, EventType, Informer, KubeObject, ObjectKey, Scope, WorkQueue,
};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::daemonset::tolerates;
use crate::pods;
use crate::util::{self, fmt_time, parse_time};

pub const NAME: &str = "node-lifecycle";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The node conditions counted by `navarch.nodes`.
const COUNTED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The cache the `navarch.nodes` gauge counts: the current leader's (replaced when a new
/// term builds the loop again; empty while this instance does not lead).
static COUNTED: Mutex<Option<Weak<navarch_runtime::Cache<Node>>>> = Mutex::new(None);

/// Registers (once per process) the gauge `navarch.nodes`: nodes by condition and status
/// (`True`, `False`, `Unknown`: a node without the condition counts as Unknown), and
/// cordoned nodes as condition `Unschedulable`.
fn observe_node_conditions(cache: &Arc<navarch_runtime::Cache<Node>>) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    *COUNTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(cache));
    REGISTERED.call_once(|| {
        // The provider keeps the callback; the handle need not be kept.
        let _ = navarch_telemetry::meter("navarch-controllers")
            .u64_observable_gauge("navarch.nodes")
            .with_unit("{node}")
            .with_description(
                "Nodes by condition and status (counted by the leading controller-manager)",
            )
            .with_callback(|observer| {
                let cache = COUNTED
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .and_then(Weak::upgrade);
                let Some(cache) = cache else { return };
                let nodes = cache.list();
                for condition in COUNTED_CONDITIONS {
                    for status in ["True", "False", "Unknown"] {
                        let n = nodes
                            .iter()
                            .filter(|node| condition_status(node, condition) == status)
                            .count();
                        observer.observe(
                            n as u64,
                            &[
                                opentelemetry::KeyValue::new("condition", condition),
                                opentelemetry::KeyValue::new("status", status),
                            ],
                        );
                    }
                }
                let cordoned = nodes
                    .iter()
                    .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true))
                    .count();
                observer.observe(
                    cordoned as u64,
                    &[
                        opentelemetry::KeyValue::new("condition", "Unschedulable"),
                        opentelemetry::KeyValue::new("status", "True"),
                    ],
                );
            })
            .build();
    });
}

/// The status of `condition` on `node`, `Unknown` when it is not reported.
fn condition_status<'a>(node: &'a Node, kind: &str) -> &'a str {
    condition(node, kind)
        .and_then(|c| c.status.as_deref())
        .unwrap_or("Unknown")
}

/// The last heartbeat seen from a node, and when (on our clock).
struct Heartbeat {
    lease_renew: Option<String>,
    ready_heartbeat: Option<String>,
    observed: Timestamp,
}

struct Ctx {
    shared: Arc<Shared>,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    heartbeats: Mutex<HashMap<String, Heartbeat>>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        nodes: shared.factory.informer(),
        leases: shared.factory.scoped(Scope::namespace(LEASE_NAMESPACE)),
        pods: shared.factory.informer(),
        heartbeats: Mutex::new(HashMap::new()),
    });
    let q = queue.clone();
    ctx.nodes
        .add_handler(move |ev: &Event<Node>| q.add(ObjectKey::of(ev.object().as_ref())));
    let q = queue.clone();
    ctx.leases.add_handler(move |ev: &Event<Lease>| {
        q.add(ObjectKey::new("", util::name(ev.object().meta())));
    });
    let q = queue.clone();
    let weak: Weak<Ctx> = Arc::downgrade(&ctx);
    ctx.pods.add_handler(move |ev: &Event<Pod>| {
        if weak.upgrade().is_some()
            && !matches!(ev, Event::Deleted(_))
            && let Some(node) = ev.object().node_name()
        {
            q.add(ObjectKey::new("", node));
        }
    });
    shared.requeue_on_clock_jumps(&queue, ctx.nodes.cache());
    observe_node_conditions(ctx.nodes.cache());
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some(kind))
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let name = key.name.clone();
    let client = &ctx.shared.client;
    let Some(node) = ctx.nodes.cache().get(&key) else {
        ctx.heartbeats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        // Pods bound to a node that is gone will never be stopped by it: delete them.
        for pod in ctx.pods.cache().on_node(&name) {
            let k = ObjectKey::of(pod.as_ref());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                precondition_uid: util::uid(pod.meta()).to_string(),
                ..Default::default()
            };
            match client
                .delete_with::<Pod>(&k.namespace, &k.name, &params)
                .await
            {
                Ok(_) => {
                    tracing::info!(pod = %k, node = %name, "deleted a pod bound to a missing node")
                }
                Err(e) if matches!(e.reason, Reason::NotFound | Reason::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(Action::await_change());
    };
    let now = ctx.shared.now();
    let settings = &ctx.shared.settings;
    let grace = settings.node_monitor_grace_period.as_secs_f64();
    let lease = ctx.leases.cache().get_named(LEASE_NAMESPACE, &name);
    let lease_renew = lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.clone());
    let ready_heartbeat = condition(&node, "Ready").and_then(|c| c.last_heartbeat_time.clone());
    let silent_for = {
        let mut beats = ctx.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        let beat = beats.entry(name.clone()).or_insert_with(|| Heartbeat {
            lease_renew: lease_renew.clone(),
            ready_heartbeat: ready_heartbeat.clone(),
            observed: now,
        });
        if beat.lease_renew != lease_renew || beat.ready_heartbeat != ready_heartbeat {
            beat.lease_renew = lease_renew;
            beat.ready_heartbeat = ready_heartbeat;
            beat.observed = now;
        }
        util::seconds_between(beat.observed, now)
    };

    let mut node = (*node).clone();
    if silent_for > grace {
        mark_unknown(&ctx, &mut node, now).await?;
    }
    let ready = condition(&node, "Ready").and_then(|c| c.status.clone());
    let node = sync_taints(&ctx, node, ready.as_deref(), now).await?;
    if ready.as_deref() != Some("True") {
        mark_pods_not_ready(&ctx, &name, now).await?;
    }
    let next_eviction = evict(&ctx, &node, now).await?;

    let until_stale = (grace - silent_for).max(0.0) + 0.05;
    let mut after = Duration::from_secs_f64(until_stale)
        .min(settings.node_monitor_period.max(Duration::from_millis(100)));
    if silent_for > grace {
        after = settings.node_monitor_period;
    }
    if let Some(e) = next_eviction {
        after = after.min(e);
    }
    Ok(Action::requeue(after))
}

/// Sets the node's conditions to Unknown: its agent stopped reporting.
async fn mark_unknown(ctx: &Ctx, node: &mut Node, now: Timestamp) -> Result<(), ApiError> {
    let now = fmt_time(now);
    let status = node.status.get_or_insert_with(Default::default);
    let mut changed = false;
    if !status
        .conditions
        .iter()
        .any(|c| c.r#type.as_deref() == Some("Ready"))
    {
        status.conditions.push(NodeCondition {
            r#type: Some("Ready".into()),
            status: Some("Unknown".into()),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_transition_time: Some(now.clone()),
            last_heartbeat_time: None,
        });
        changed = true;
    }
    for c in &mut status.conditions {
        let kind = c.r#type.as_deref().unwrap_or("");
        if !matches!(
            kind,
            "Ready" | "MemoryPressure" | "DiskPressure" | "PIDPressure"
        ) || c.status.as_deref() == Some("Unknown")
        {
            continue;
        }
        c.status = Some("Unknown".into());
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some("Kubelet stopped posting node status.".into());
        c.last_transition_time = Some(now.clone());
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    let name = util::name(node.meta()).to_string();
    tracing::warn!(node = %name, "node stopped posting status; marking it Unknown");
    ctx.shared.event(
        node,
        EventType::Normal,
        "NodeNotReady",
        format!("Node {name} status is now: NodeNotReady"),
    );
    *node = ctx.shared.client.update_status("", &name, node).await?;
    Ok(())
}

/// Adds or removes the condition taints for a Ready status.
async fn sync_taints(
    ctx: &Ctx,
    mut node: Node,
    ready: Option<&str>,
    now: Timestamp,
) -> Result<Node, ApiError> {
    let wanted: &[&str] = match ready {
        Some("True") => &[],
        Some("False") => &[TAINT_NOT_READY],
        _ => &[TAINT_UNREACHABLE],
    };
    let spec = node.spec.get_or_insert_with(Default::default);
    let before = spec.taints.clone();
    spec.taints.retain(|t| {
        let key = t.key.as_deref().unwrap_or("");
        !(key == TAINT_NOT_READY || key == TAINT_UNREACHABLE) || wanted.contains(&key)
    });
    for key in wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !spec
                .taints
                .iter()
                .any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect))
            {
                spec.taints.push(Taint {
                    key: Some((*key).into()),
                    effect: Some(effect.into()),
                    time_added: Some(fmt_time(now)),
                    value: None,
                });
            }
        }
    }
    if spec.taints == before {
        return Ok(node);
    }
    let name = util::name(node.meta()).to_string();
    ctx.shared.client.update("", &name, &node).await
}

/// Sets the Ready condition of the node's pods to False (Kubernetes' `MarkPodsNotReady`):
/// their agent cannot be trusted to serve them, so Service endpoints drop them well before
/// the pods are evicted.
async fn mark_pods_not_ready(ctx: &Ctx, node: &str, now: Timestamp) -> Result<(), ApiError> {
    for pod in ctx.pods.cache().on_node(node) {
        if pods::is_terminal(&pod) {
            continue;
        }
        let ready = |c: &&PodCondition| c.r#type.as_deref() == Some("Ready");
        let status = pod.status.as_ref();
        if !status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| ready(&c) && c.status.as_deref() == Some("True"))
        }) {
            continue;
        }
        let mut updated = (*pod).clone();
        for c in &mut updated
            .status
            .get_or_insert_with(Default::default)
            .conditions
        {
            if ready(&&*c) {
                c.status = Some("False".into());
                c.last_transition_time = Some(fmt_time(now));
            }
        }
        let key = ObjectKey::of(pod.as_ref());
        match ctx
            .shared
            .client
            .update_status(&key.namespace, &key.name, &updated)
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %key, node, "marked a pod not ready: its node is not ready")
            }
            // Changed or gone meanwhile: the next check sees the new version.
            Err(e) if matches!(e.reason, Reason::NotFound | Reason::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Evicts pods whose tolerations for the node's NoExecute taints ran out; returns when the
/// next one will.
async fn evict(ctx: &Ctx, node: &Node, now: Timestamp) -> Result<Option<Duration>, ApiError> {
    let taints: Vec<&Taint> = node
        .spec
        .as_ref()
        .map(|s| {
            s.taints
                .iter()
                .filter(|t| t.effect.as_deref() == Some("NoExecute"))
                .collect()
        })
        .unwrap_or_default();
    if taints.is_empty() {
        return Ok(None);
    }
    let settings = &ctx.shared.settings;
    let mut next: Option<f64> = None;
    for pod in ctx.pods.cache().on_node(util::name(node.meta())) {
        if pods::is_terminal(&pod) || pod.meta().deletion_timestamp.is_some() {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .map(|s| s.tolerations.clone())
            .unwrap_or_default();
        // The earliest moment any taint stops being tolerated.
        let mut evict_at: Option<f64> = None;
        for taint in &taints {
            let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
            let seconds = if matching.is_empty() {
                match taint.key.as_deref() {
                    Some(TAINT_NOT_READY) => Some(settings.default_not_ready_toleration_seconds),
                    Some(TAINT_UNREACHABLE) => {
                        Some(settings.default_unreachable_toleration_seconds)
                    }
                    _ => Some(0),
                }
            } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
                None
            } else {
                matching.iter().filter_map(|t| t.toleration_seconds).min()
            };
            let Some(seconds) = seconds else { continue };
            let added = parse_time(taint.time_added.as_deref()).unwrap_or(now);
            let left = seconds.max(0) as f64 - util::seconds_between(added, now);
            evict_at = Some(evict_at.map_or(left, |e| e.min(left)));
        }
        let Some(left) = evict_at else { continue };
        if left > 0.0 {
            next = Some(next.map_or(left, |n| n.min(left)));
            continue;
        }
        let key = ObjectKey::of(pod.as_ref());
        tracing::info!(pod = %key, node = %util::name(node.meta()), "evicting a pod from a tainted node");
        ctx.shared.event(
            pod.as_ref(),
            EventType::Normal,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {key}"),
        );
        util::delete_object(&ctx.shared.client, pod.as_ref(), "").await?;
    }
    Ok(next.map(|s| util::secs(s + 0.05)))
}
