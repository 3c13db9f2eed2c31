//! The ReplicaSet loop (`pkg/controller/replicaset`): keeps exactly `spec.replicas` active
//! pods matching the selector, owned through a controller reference; adopts matching orphans
//! and releases pods that stopped matching; deletes surplus pods unscheduled / not-ready /
//! newest first; reports replicas, fullyLabeled, ready and available (minReadySeconds) counts.
//! Expectations keep it from creating or deleting twice while its own writes are in flight.

use std::sync::{Arc, Weak};

use futures::future::join_all;
use navarch_api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use navarch_api::core::v1::Pod;
use navarch_api::{ApiError, Reason};
use navarch_runtime::{
    Action, Event, EventType, Expectations, Informer, KubeObject, ObjectKey, WorkQueue,
};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::pods;
use crate::util::{self, controller_of_kind, controller_ref, fmt_time};

pub const NAME: &str = "replicaset";
/// Most pods created or deleted in one sync (`BurstReplicas`).
const BURST: usize = 500;

struct Ctx {
    shared: Arc<Shared>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    expectations: Expectations,
    queue: WorkQueue<ObjectKey>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        replicasets: shared.factory.informer(),
        pods: shared.factory.informer(),
        expectations: Expectations::with_timeout(shared.settings.expectations_timeout),
        queue: queue.clone(),
    });
    let q = queue.clone();
    ctx.replicasets
        .add_handler(move |ev: &Event<ReplicaSet>| q.add(ObjectKey::of(ev.object().as_ref())));
    let weak = Arc::downgrade(&ctx);
    ctx.pods
        .add_handler(move |ev: &Event<Pod>| on_pod(&weak, ev));
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
    .linked(navarch_api::kinds::of::<navarch_api::apps::v1::ReplicaSet>().expect("a served kind"))
}

impl Ctx {
    /// The ReplicaSet controlling `pod`, if it is in the cache with the referenced uid.
    fn owner(&self, pod: &Pod) -> Option<Arc<ReplicaSet>> {
        let r = controller_of_kind(pod.meta(), "ReplicaSet")?;
        let rs = self
            .replicasets
            .cache()
            .get_named(util::namespace(pod.meta()), r.name.as_deref()?)?;
        (rs.meta().uid == r.uid).then_some(rs)
    }

    /// ReplicaSets in the pod's namespace whose selector matches it (adoption candidates).
    fn matching(&self, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
        self.replicasets
            .cache()
            .in_namespace(util::namespace(pod.meta()))
            .into_iter()
            .filter(|rs| {
                util::selector(rs.spec.as_ref().and_then(|s| s.selector.as_ref()))
                    .is_some_and(|sel| sel.matches(&pod.meta().labels))
            })
            .collect()
    }

    fn deleted(&self, pod: &Pod) {
        if let Some(rs) = self.owner(pod) {
            let key = ObjectKey::of(rs.as_ref());
            self.expectations
                .deletion_of_observed(&key.to_string(), &ObjectKey::of(pod).to_string());
            self.queue.add(key);
        }
    }
}

fn on_pod(ctx: &Weak<Ctx>, ev: &Event<Pod>) {
    let Some(ctx) = ctx.upgrade() else { return };
    match ev {
        Event::Added(pod) => {
            if pod.meta().deletion_timestamp.is_some() {
                return ctx.deleted(pod);
            }
            if let Some(rs) = ctx.owner(pod) {
                let key = ObjectKey::of(rs.as_ref());
                ctx.expectations.creation_observed(&key.to_string());
                ctx.queue.add(key);
            } else if navarch_runtime::object::controller_of(pod.meta()).is_none() {
                for rs in ctx.matching(pod) {
                    ctx.queue.add(ObjectKey::of(rs.as_ref()));
                }
            }
        }
        Event::Updated { old, new } => {
            if new.meta().deletion_timestamp.is_some() {
                ctx.deleted(new);
                if old.meta().labels != new.meta().labels {
                    ctx.deleted(old);
                }
                return;
            }
            let old_owner = ctx.owner(old);
            let new_owner = ctx.owner(new);
            if let Some(o) = &old_owner
                && new_owner.as_ref().map(|n| &n.meta().uid) != Some(&o.meta().uid)
            {
                ctx.queue.add(ObjectKey::of(o.as_ref()));
            }
            match new_owner {
                Some(rs) => {
                    let key = ObjectKey::of(rs.as_ref());
                    ctx.queue.add(key.clone());
                    let min_ready = rs
                        .spec
                        .as_ref()
                        .and_then(|s| s.min_ready_seconds)
                        .unwrap_or(0);
                    if min_ready > 0 && !pods::is_ready(old) && pods::is_ready(new) {
                        ctx.queue
                            .add_after(key, std::time::Duration::from_secs(min_ready as u64 + 1));
                    }
                }
                None => {
                    if old.meta().labels != new.meta().labels || old_owner.is_some() {
                        for rs in ctx.matching(new) {
                            ctx.queue.add(ObjectKey::of(rs.as_ref()));
                        }
                    }
                }
            }
        }
        Event::Deleted(pod) => ctx.deleted(pod),
    }
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let owner_key = key.to_string();
    let Some(rs) = ctx.replicasets.cache().get(&key) else {
        ctx.expectations.forget(&owner_key);
        return Ok(Action::await_change());
    };
    let spec = rs.spec.clone().unwrap_or_default();
    let Some(selector) = util::selector(spec.selector.as_ref()) else {
        return Ok(Action::await_change());
    };
    let deleting = util::is_deleting(rs.meta());
    let needs_sync = ctx.expectations.satisfied(&owner_key);
    let all: Vec<Arc<Pod>> = ctx.pods.cache().in_namespace(&key.namespace);
    let terminating = all
        .iter()
        .filter(|p| {
            pods::is_terminating(p) && util::is_controlled_by(p.meta(), util::uid(rs.meta()))
        })
        .count() as i32;
    let active: Vec<Arc<Pod>> = all.into_iter().filter(|p| pods::is_active(p)).collect();
    let claimed = pods::claim(
        &ctx.shared.client,
        &controller_ref(rs.as_ref()),
        deleting,
        &selector,
        active,
    )
    .await?;

    let mut manage_error = None;
    if needs_sync && !deleting {
        manage_error = manage_replicas(&ctx, &rs, &claimed).await.err();
    }

    let now = ctx.shared.now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    let old = rs.status.clone().unwrap_or_default();
    let mut status = ReplicaSetStatus {
        replicas: Some(claimed.len() as i32),
        fully_labeled_replicas: Some(
            claimed
                .iter()
                .filter(|p| {
                    template_labels
                        .iter()
                        .all(|(k, v)| p.meta().labels.get(k) == Some(v))
                })
                .count() as i32,
        ),
        ready_replicas: Some(claimed.iter().filter(|p| pods::is_ready(p)).count() as i32),
        available_replicas: Some(
            claimed
                .iter()
                .filter(|p| pods::is_available(p, min_ready, now))
                .count() as i32,
        ),
        observed_generation: rs.meta().generation,
        terminating_replicas: old.terminating_replicas.map(|_| terminating),
        conditions: old
            .conditions
            .iter()
            .filter(|c| c.r#type.as_deref() != Some("ReplicaFailure"))
            .cloned()
            .collect(),
    };
    if let Some(e) = &manage_error {
        let reason = if claimed.len() < spec.replicas.unwrap_or(1) as usize {
            "FailedCreate"
        } else {
            "FailedDelete"
        };
        let existing = old
            .conditions
            .iter()
            .find(|c| c.r#type.as_deref() == Some("ReplicaFailure"));
        status.conditions.push(ReplicaSetCondition {
            r#type: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            reason: Some(reason.into()),
            message: Some(e.message.clone()),
            last_transition_time: existing
                .and_then(|c| c.last_transition_time.clone())
                .or_else(|| Some(fmt_time(now))),
        });
    }
    if rs.status.as_ref() != Some(&status) {
        let mut updated = (*rs).clone();
        updated.status = Some(status);
        match ctx
            .shared
            .client
            .update_status(&key.namespace, &key.name, &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if e.reason == Reason::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = manage_error {
        return Err(e);
    }
    // A ready pod becomes available after minReadySeconds: look again then.
    let next = claimed
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .fold(None, |acc: Option<f64>, s| {
            Some(acc.map_or(s, |a| a.min(s)))
        });
    Ok(match next {
        Some(s) => Action::requeue(util::secs(s + 0.05)),
        None => Action::await_change(),
    })
}

async fn manage_replicas(
    ctx: &Arc<Ctx>,
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
) -> Result<(), ApiError> {
    let key = ObjectKey::of(rs);
    let owner_key = key.to_string();
    let spec = rs.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let client = &ctx.shared.client;
    if pods.len() < replicas {
        let want = (replicas - pods.len()).min(BURST);
        ctx.expectations.expect_creations(&owner_key, want as i64);
        let template = spec.template.clone().unwrap_or_default();
        let mut pod = pods::from_template(&template, &key.namespace, controller_ref(rs));
        pod.meta_mut().generate_name = Some(format!("{}-", key.name));
        let ns = key.namespace.as_str();
        let (created, error) = slow_start(want, |_| {
            let pod = pod.clone();
            async move { client.create(ns, &pod).await }
        })
        .await;
        for _ in created.len()..want {
            ctx.expectations.creation_observed(&owner_key);
        }
        for p in &created {
            ctx.shared.event(
                rs,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created pod: {}", util::name(p.meta())),
            );
        }
        if let Some(e) = error {
            ctx.shared.event(
                rs,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating: {}", e.message),
            );
            return Err(e);
        }
    } else if pods.len() > replicas {
        let surplus = (pods.len() - replicas).min(BURST);
        let mut ordered = pods.to_vec();
        pods::deletion_order(&mut ordered);
        ordered.truncate(surplus);
        ctx.expectations.expect_deletions_of(
            &owner_key,
            ordered
                .iter()
                .map(|p| ObjectKey::of(p.as_ref()).to_string()),
        );
        let results = join_all(
            ordered
                .iter()
                .map(|p| util::delete_object(client, p.as_ref(), "")),
        )
        .await;
        let mut first_error = None;
        for (pod, result) in ordered.iter().zip(results) {
            match result {
                Ok(()) => ctx.shared.event(
                    rs,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", util::name(pod.meta())),
                ),
                Err(e) => {
                    ctx.expectations
                        .deletion_of_observed(&owner_key, &ObjectKey::of(pod.as_ref()).to_string());
                    ctx.shared.event(
                        rs,
                        EventType::Warning,
                        "FailedDelete",
                        format!("Error deleting: {}", e.message),
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    Ok(())
}

/// Runs `count` calls in batches of 1, 2, 4, … (`slowStartBatch`), stopping after the first
/// batch with a failure. Returns what succeeded and the first error.
pub(crate) async fn slow_start<T, F, Fut>(count: usize, f: F) -> (Vec<T>, Option<ApiError>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut done = Vec::new();
    let mut batch = 1;
    let mut i = 0;
    while i < count {
        let n = batch.min(count - i);
        let results = join_all((i..i + n).map(&f)).await;
        i += n;
        let mut error = None;
        for r in results {
            match r {
                Ok(v) => done.push(v),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        if error.is_some() {
            return (done, error);
        }
        batch *= 2;
    }
    (done, None)
}
