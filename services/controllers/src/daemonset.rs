//! The DaemonSet loop (`pkg/controller/daemon`): one pod per eligible node — the node
//! matches the template's nodeSelector and required node affinity, and its NoSchedule /
//! NoExecute taints are tolerated (daemon pods tolerate the node-condition taints, as in
//! Kubernetes). Each pod is pinned to its node through a required node affinity on
//! `metadata.name`, so the scheduler binds it there. Pods on nodes that are gone or no longer
//! eligible are deleted; RollingUpdate replaces pods node by node within maxUnavailable (or
//! surges within maxSurge); the template history is kept in ControllerRevisions.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};

use navarch_api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use navarch_api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use navarch_api::{ApiError, Reason};
use navarch_runtime::{
    Action, Event, EventType, Expectations, Informer, KubeObject, ObjectKey, WorkQueue,
};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::history::{self, HASH_LABEL};
use crate::pods;
use crate::util::{self, controller_of_kind, controller_ref, int_or_percent};

pub const NAME: &str = "daemonset";

struct Ctx {
    shared: Arc<Shared>,
    daemonsets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Expectations,
    queue: WorkQueue<ObjectKey>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        daemonsets: shared.factory.informer(),
        pods: shared.factory.informer(),
        nodes: shared.factory.informer(),
        revisions: shared.factory.informer(),
        expectations: Expectations::with_timeout(shared.settings.expectations_timeout),
        queue: queue.clone(),
    });
    let q = queue.clone();
    ctx.daemonsets
        .add_handler(move |ev: &Event<DaemonSet>| q.add(ObjectKey::of(ev.object().as_ref())));
    let weak = Arc::downgrade(&ctx);
    ctx.pods
        .add_handler(move |ev: &Event<Pod>| on_pod(&weak, ev));
    let weak: Weak<Ctx> = Arc::downgrade(&ctx);
    ctx.nodes.add_handler(move |ev: &Event<Node>| {
        let Some(ctx) = weak.upgrade() else { return };
        if let Event::Updated { old, new } = ev
            && old.meta().labels == new.meta().labels
            && old.spec == new.spec
        {
            return;
        }
        for key in ctx.daemonsets.cache().keys() {
            ctx.queue.add(key);
        }
    });
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
    .linked(navarch_api::kinds::of::<navarch_api::apps::v1::DaemonSet>().expect("a served kind"))
}

fn on_pod(ctx: &Weak<Ctx>, ev: &Event<Pod>) {
    let Some(ctx) = ctx.upgrade() else { return };
    let pod = ev.object();
    let Some(r) = controller_of_kind(pod.meta(), "DaemonSet") else {
        return;
    };
    let key = ObjectKey::new(
        util::namespace(pod.meta()),
        r.name.clone().unwrap_or_default(),
    );
    let owner = key.to_string();
    match ev {
        Event::Added(p) if p.meta().deletion_timestamp.is_none() => {
            ctx.expectations.creation_observed(&owner)
        }
        Event::Updated { old, new }
            if old.meta().deletion_timestamp.is_none()
                && new.meta().deletion_timestamp.is_some() =>
        {
            ctx.expectations.deletion_observed(&owner)
        }
        Event::Deleted(p) if p.meta().deletion_timestamp.is_none() => {
            ctx.expectations.deletion_observed(&owner)
        }
        _ => {}
    }
    ctx.queue.add(key);
}

/// The tolerations every daemon pod gets (`util.AddOrUpdateDaemonPodTolerations`).
fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// Whether `toleration` tolerates `taint` (`Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && Some(effect) != taint.effect.as_deref() {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && Some(key) != taint.key.as_deref() {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = &r.values;
    match r.operator.as_deref().unwrap_or("") {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator.as_deref() == Some("Gt") {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    let labels = &node.meta().labels;
    term.match_expressions.iter().all(|r| {
        requirement_matches(
            r,
            r.key
                .as_deref()
                .and_then(|k| labels.get(k))
                .map(String::as_str),
        )
    }) && term.match_fields.iter().all(|r| {
        let v = (r.key.as_deref() == Some("metadata.name")).then(|| util::name(node.meta()));
        requirement_matches(r, v)
    })
}

/// Whether a pod with `spec` may run on `node` (`NodeShouldRunDaemonPod`).
fn should_run(spec: &PodSpec, node: &Node) -> bool {
    let labels = &node.meta().labels;
    if !spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    if let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
    {
        return false;
    }
    let mut tolerations = spec.tolerations.clone();
    tolerations.extend(daemon_tolerations(spec));
    node.spec
        .as_ref()
        .map(|s| s.taints.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|t| matches!(t.effect.as_deref(), Some("NoSchedule" | "NoExecute")))
        .all(|taint| tolerations.iter().any(|tol| tolerates(tol, taint)))
}

/// The node a daemon pod is for: bound, or pinned by its node affinity.
fn target_node(pod: &Pod) -> Option<String> {
    if let Some(n) = pod.node_name() {
        return Some(n.to_string());
    }
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields
            .iter()
            .find(|r| {
                r.key.as_deref() == Some("metadata.name") && r.operator.as_deref() == Some("In")
            })
            .and_then(|r| r.values.first().cloned())
    })
}

/// Pins a pod spec to `node` (`ReplaceDaemonSetPodNodeNameNodeAffinity`).
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field = NodeSelectorRequirement {
        key: Some("metadata.name".into()),
        operator: Some("In".into()),
        values: vec![node.to_string()],
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = vec![field.clone()];
    }
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.meta().labels.get(HASH_LABEL).map(String::as_str)
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let owner_key = key.to_string();
    let Some(ds) = ctx.daemonsets.cache().get(&key) else {
        ctx.expectations.forget(&owner_key);
        return Ok(Action::await_change());
    };
    let spec = ds.spec.clone().unwrap_or_default();
    let Some(selector) = util::selector(spec.selector.as_ref()) else {
        return Ok(Action::await_change());
    };
    let client = &ctx.shared.client;
    let deleting = util::is_deleting(ds.meta());
    let template = spec.template.clone().unwrap_or_default();
    let uid = util::uid(ds.meta()).to_string();
    let owned_revisions: Vec<_> = ctx
        .revisions
        .cache()
        .in_namespace(&key.namespace)
        .into_iter()
        .filter(|r| util::is_controlled_by(r.meta(), &uid))
        .collect();
    let mut status = ds.status.clone().unwrap_or_default();
    let revisions = if deleting {
        None
    } else {
        match history::sync(
            client,
            ds.as_ref(),
            &template,
            status.collision_count,
            owned_revisions,
        )
        .await
        {
            Ok(r) => Some(r),
            Err(e) if e.reason == Reason::Conflict => {
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                write_status(&ctx, &ds, status).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    };
    let hash = revisions
        .as_ref()
        .and_then(|r| r.current.meta().labels.get(HASH_LABEL).cloned())
        .unwrap_or_default();

    let candidates = ctx.pods.cache().in_namespace(&key.namespace);
    let claimed = pods::claim(
        client,
        &controller_ref(ds.as_ref()),
        deleting,
        &selector,
        candidates,
    )
    .await?;
    let nodes: BTreeMap<String, Arc<Node>> = ctx
        .nodes
        .cache()
        .list()
        .into_iter()
        .map(|n| (util::name(n.meta()).to_string(), n))
        .collect();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    let mut orphaned: Vec<Arc<Pod>> = Vec::new();
    for p in claimed
        .iter()
        .filter(|p| p.meta().deletion_timestamp.is_none())
    {
        match target_node(p).filter(|n| nodes.contains_key(n)) {
            Some(n) => by_node.entry(n).or_default().push(p.clone()),
            None => orphaned.push(p.clone()),
        }
    }
    let template_spec = template.spec.clone().unwrap_or_default();
    let eligible: HashSet<String> = nodes
        .iter()
        .filter(|(_, n)| should_run(&template_spec, n))
        .map(|(name, _)| name.clone())
        .collect();
    let now = ctx.shared.now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);

    if !deleting && ctx.expectations.satisfied(&owner_key) {
        let mut create: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = orphaned;
        for (node, node_pods) in &by_node {
            if !eligible.contains(node) {
                delete.extend(node_pods.iter().cloned());
                continue;
            }
            // Failed pods are replaced; of several, the oldest stays.
            let mut live: Vec<Arc<Pod>> = Vec::new();
            for p in node_pods {
                if pods::phase(p) == "Failed" {
                    delete.push(p.clone());
                } else {
                    live.push(p.clone());
                }
            }
            live.sort_by(|a, b| {
                a.meta()
                    .creation_timestamp
                    .cmp(&b.meta().creation_timestamp)
            });
            let has_new = live.iter().any(|p| pod_hash(p) == Some(hash.as_str()));
            if has_new && live.len() > 1 {
                // Keep the newest-template pod; drop duplicates beyond one of each kind.
                let keep_new = live.iter().position(|p| pod_hash(p) == Some(hash.as_str()));
                for (i, p) in live.iter().enumerate() {
                    if Some(i) != keep_new && pod_hash(p) == Some(hash.as_str()) {
                        delete.push(p.clone());
                    }
                }
            } else if !has_new && live.len() > 1 {
                delete.extend(live.iter().skip(1).cloned());
            }
        }
        for node in &eligible {
            if by_node
                .get(node)
                .is_none_or(|v| v.iter().all(|p| pods::phase(p) == "Failed"))
            {
                create.push(node.clone());
            }
        }
        if is_rolling(&ds) {
            rolling_update(
                &ds,
                &by_node,
                &eligible,
                &hash,
                min_ready,
                now,
                &mut create,
                &mut delete,
            );
        }
        manage(&ctx, &ds, &template, &hash, create, delete).await?;
    }

    // Status, from what exists now.
    let mut desired = 0;
    let (mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0);
    for node in nodes.keys() {
        let node_pods = by_node.get(node).cloned().unwrap_or_default();
        if eligible.contains(node) {
            desired += 1;
            if !node_pods.is_empty() {
                current += 1;
            }
            if node_pods.iter().any(|p| pods::is_ready(p)) {
                ready += 1;
            }
            if node_pods
                .iter()
                .any(|p| pods::is_available(p, min_ready, now))
            {
                available += 1;
            }
            if node_pods.iter().any(|p| pod_hash(p) == Some(hash.as_str())) {
                updated += 1;
            }
        } else if !node_pods.is_empty() {
            misscheduled += 1;
        }
    }
    status.desired_number_scheduled = Some(desired);
    status.current_number_scheduled = Some(current);
    status.number_misscheduled = Some(misscheduled);
    status.number_ready = Some(ready);
    status.number_available = Some(available);
    status.number_unavailable = Some((desired - available).max(0));
    status.updated_number_scheduled = Some(updated);
    status.observed_generation = ds.meta().generation;
    write_status(&ctx, &ds, status).await?;

    if let Some(revs) = &revisions {
        let in_use: HashSet<String> = claimed
            .iter()
            .filter_map(|p| pod_hash(p).map(|h| format!("{}-{h}", key.name)))
            .chain([util::name(revs.current.meta()).to_string()])
            .collect();
        history::truncate(
            client,
            &revs.all,
            spec.revision_history_limit.unwrap_or(10),
            &in_use,
        )
        .await?;
    }
    let next = claimed
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.min(s))));
    Ok(next.map_or(Action::await_change(), |s| {
        Action::requeue(util::secs(s + 0.05))
    }))
}

fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.r#type.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// Picks old pods to replace (`rollingUpdate`): unavailable old pods at once, available
/// ones while fewer than maxUnavailable nodes lack an available pod; with maxSurge, the new
/// pod starts first and the old one goes once the new one is available.
#[allow(clippy::too_many_arguments)]
fn rolling_update(
    ds: &DaemonSet,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    eligible: &HashSet<String>,
    hash: &str,
    min_ready: i32,
    now: jiff::Timestamp,
    create: &mut Vec<String>,
    delete: &mut Vec<Arc<Pod>>,
) {
    let desired = eligible.len() as i32;
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let surge = int_or_percent(ru.max_surge.as_ref(), desired, true);
    let mut max_unavailable = int_or_percent(ru.max_unavailable.as_ref(), desired, true);
    if surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let mut unavailable = 0;
    let mut candidates: Vec<(String, Arc<Pod>)> = Vec::new();
    let mut surge_used = 0;
    for node in eligible {
        let Some(node_pods) = by_node.get(node) else {
            unavailable += 1;
            continue;
        };
        let live: Vec<&Arc<Pod>> = node_pods
            .iter()
            .filter(|p| pods::phase(p) != "Failed")
            .collect();
        let new = live.iter().find(|p| pod_hash(p) == Some(hash));
        let old: Vec<&&Arc<Pod>> = live.iter().filter(|p| pod_hash(p) != Some(hash)).collect();
        let any_available = live.iter().any(|p| pods::is_available(p, min_ready, now));
        if !any_available {
            unavailable += 1;
        }
        if old.is_empty() {
            continue;
        }
        match new {
            Some(n) if pods::is_available(n, min_ready, now) => {
                delete.extend(old.iter().map(|p| (**p).clone()));
            }
            Some(_) => surge_used += 1,
            None => {
                for p in &old {
                    if !pods::is_available(p, min_ready, now) {
                        delete.push((**p).clone());
                    } else {
                        candidates.push((node.clone(), (**p).clone()));
                    }
                }
            }
        }
    }
    if surge > 0 {
        let mut budget = (surge - surge_used).max(0);
        for (node, _) in candidates {
            if budget == 0 {
                break;
            }
            create.push(node);
            budget -= 1;
        }
        return;
    }
    let mut allowed = max_unavailable - unavailable;
    for (_, pod) in candidates {
        if allowed <= 0 {
            break;
        }
        delete.push(pod);
        allowed -= 1;
    }
}

async fn manage(
    ctx: &Ctx,
    ds: &DaemonSet,
    template: &navarch_api::core::v1::PodTemplateSpec,
    hash: &str,
    create: Vec<String>,
    delete: Vec<Arc<Pod>>,
) -> Result<(), ApiError> {
    if create.is_empty() && delete.is_empty() {
        return Ok(());
    }
    let key = ObjectKey::of(ds);
    let owner_key = key.to_string();
    ctx.expectations
        .expect(&owner_key, create.len() as i64, delete.len() as i64);
    let client = &ctx.shared.client;
    let mut first_error = None;
    for pod in &delete {
        match util::delete_object(client, pod.as_ref(), "").await {
            Ok(()) => ctx.shared.event(
                ds,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {}", util::name(pod.meta())),
            ),
            Err(e) => {
                ctx.expectations.deletion_observed(&owner_key);
                first_error.get_or_insert(e);
            }
        }
    }
    for node in &create {
        let mut pod = pods::from_template(template, &key.namespace, controller_ref(ds));
        let meta = pod.meta_mut();
        meta.generate_name = Some(format!("{}-", key.name));
        meta.labels.insert(HASH_LABEL.into(), hash.to_string());
        let spec = pod.spec.get_or_insert_with(Default::default);
        for t in daemon_tolerations(spec) {
            if !spec
                .tolerations
                .iter()
                .any(|x| x.key == t.key && x.effect == t.effect)
            {
                spec.tolerations.push(t);
            }
        }
        pin_to_node(spec, node);
        match client.create(&key.namespace, &pod).await {
            Ok(p) => ctx.shared.event(
                ds,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created pod: {}", util::name(p.meta())),
            ),
            Err(e) => {
                ctx.expectations.creation_observed(&owner_key);
                ctx.shared.event(
                    ds,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {}", e.message),
                );
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn write_status(ctx: &Ctx, ds: &DaemonSet, status: DaemonSetStatus) -> Result<(), ApiError> {
    if ds.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = ds.clone();
    updated.status = Some(status);
    let key = ObjectKey::of(ds);
    match ctx
        .shared
        .client
        .update_status(&key.namespace, &key.name, &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.reason == Reason::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::NodeSpec;
    use navarch_api::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: Some(name.into()),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                taints,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: Some(key.into()),
            effect: Some(effect.into()),
            ..Default::default()
        }
    }

    #[test]
    fn eligibility_follows_selectors_and_taints() {
        let mut spec = PodSpec::default();
        assert!(should_run(&spec, &node("a", &[], vec![])));
        // Node-condition taints are tolerated by every daemon pod.
        assert!(should_run(
            &spec,
            &node(
                "a",
                &[],
                vec![taint("node.kubernetes.io/not-ready", "NoExecute")]
            )
        ));
        assert!(!should_run(
            &spec,
            &node("a", &[], vec![taint("dedicated", "NoSchedule")])
        ));
        assert!(should_run(
            &spec,
            &node("a", &[], vec![taint("dedicated", "PreferNoSchedule")])
        ));
        spec.tolerations.push(Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        });
        assert!(should_run(
            &spec,
            &node("a", &[], vec![taint("dedicated", "NoSchedule")])
        ));
        spec.node_selector.insert("disk".into(), "ssd".into());
        assert!(!should_run(&spec, &node("a", &[], vec![])));
        assert!(should_run(&spec, &node("a", &[("disk", "ssd")], vec![])));
    }

    #[test]
    fn pods_are_pinned_by_node_affinity() {
        let mut spec = PodSpec::default();
        pin_to_node(&mut spec, "node-1");
        let pod = Pod {
            spec: Some(spec.clone()),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
        assert!(should_run(&spec, &node("node-1", &[], vec![])));
        assert!(!should_run(&spec, &node("node-2", &[], vec![])));
        pin_to_node(&mut spec, "node-2");
        let terms = &spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_fields[0].values, ["node-2"]);
    }
}
