//! The StatefulSet loop (`pkg/controller/statefulset`): pods with stable names
//! `<set>-<ordinal>` for ordinals `[start, start + replicas)` (`spec.ordinals.start`), stable
//! hostnames under the governing service; OrderedReady creates them one at a time in order,
//! each waiting for the previous to be Running and Ready, and removes surplus ones in reverse
//! order; Parallel does both at once. RollingUpdate replaces pods from the highest ordinal
//! down to the partition, one at a time; OnDelete waits for users. Revisions are
//! ControllerRevisions; `currentRevision` follows `updateRevision` once every pod runs it.
//! volumeClaimTemplates are accepted and recorded (no volumes are provisioned).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};

use navarch_api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use navarch_api::core::v1::{Pod, PodTemplateSpec};
use navarch_api::{ApiError, Reason};
use navarch_runtime::{Action, Event, EventType, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::history::{self, HASH_LABEL};
use crate::pods;
use crate::util::{self, controller_of_kind, controller_ref};

pub const NAME: &str = "statefulset";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Ctx {
    shared: Arc<Shared>,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        sets: shared.factory.informer(),
        pods: shared.factory.informer(),
        revisions: shared.factory.informer(),
    });
    let q = queue.clone();
    ctx.sets
        .add_handler(move |ev: &Event<StatefulSet>| q.add(ObjectKey::of(ev.object().as_ref())));
    let q = queue.clone();
    let weak: Weak<Ctx> = Arc::downgrade(&ctx);
    ctx.pods.add_handler(move |ev: &Event<Pod>| {
        if weak.upgrade().is_none() {
            return;
        }
        let pod = ev.object();
        if let Some(r) = controller_of_kind(pod.meta(), "StatefulSet") {
            q.add(ObjectKey::new(
                util::namespace(pod.meta()),
                r.name.clone().unwrap_or_default(),
            ));
        }
    });
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
    .linked(navarch_api::kinds::of::<navarch_api::apps::v1::StatefulSet>().expect("a served kind"))
}

/// The ordinal in a pod name `<set>-<ordinal>`.
fn ordinal(set: &str, pod: &Pod) -> Option<i32> {
    util::name(pod.meta())
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn revision_of(pod: &Pod) -> &str {
    pod.meta()
        .labels
        .get(HASH_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

fn running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod)
}

fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && pod.meta().deletion_timestamp.is_none()
}

/// The template a revision recorded.
fn template_of(rev: &ControllerRevision, fallback: &PodTemplateSpec) -> PodTemplateSpec {
    let Some(data) = rev.data.as_ref() else {
        return fallback.clone();
    };
    let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&data.json) else {
        return fallback.clone();
    };
    let Some(template) = json.pointer_mut("/spec/template") else {
        return fallback.clone();
    };
    if let Some(m) = template.as_object_mut() {
        m.remove("$patch");
    }
    let wrapper = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "spec": { "template": template.clone() },
    });
    let kind = <StatefulSet as navarch_gateway::client::Resource>::kind();
    navarch_api::Object::from_json(kind, &wrapper, navarch_api::codec::FieldValidation::Ignore)
        .ok()
        .and_then(|(o, _)| o.to_typed::<StatefulSet>().ok())
        .and_then(|s| s.spec?.template)
        .unwrap_or_else(|| fallback.clone())
}

/// The pod for `ordinal` from `template` at `revision`.
fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let key = ObjectKey::of(set);
    let name = format!("{}-{ordinal}", key.name);
    let mut pod = pods::from_template(template, &key.namespace, controller_ref(set));
    let meta = pod.meta_mut();
    meta.name = Some(name.clone());
    meta.labels.insert(POD_NAME_LABEL.into(), name.clone());
    meta.labels
        .insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    meta.labels.insert(HASH_LABEL.into(), revision.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    if let Some(service) = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(service);
    }
    pod
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let Some(set) = ctx.sets.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    let spec = set.spec.clone().unwrap_or_default();
    let Some(selector) = util::selector(spec.selector.as_ref()) else {
        return Ok(Action::await_change());
    };
    let client = &ctx.shared.client;
    let deleting = util::is_deleting(set.meta());
    let uid = util::uid(set.meta()).to_string();
    let template = spec.template.clone().unwrap_or_default();
    let mut status = set.status.clone().unwrap_or_default();
    let owned: Vec<_> = ctx
        .revisions
        .cache()
        .in_namespace(&key.namespace)
        .into_iter()
        .filter(|r| util::is_controlled_by(r.meta(), &uid))
        .collect();
    let candidates = ctx.pods.cache().in_namespace(&key.namespace);
    let claimed = pods::claim(
        client,
        &controller_ref(set.as_ref()),
        deleting,
        &selector,
        candidates,
    )
    .await?;
    if deleting {
        return Ok(Action::await_change());
    }
    let revisions = match history::sync(
        client,
        set.as_ref(),
        &template,
        status.collision_count,
        owned,
    )
    .await
    {
        Ok(r) => r,
        Err(e) if e.reason == Reason::Conflict => {
            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
            write_status(&ctx, &set, status).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let update_revision = util::name(revisions.current.meta()).to_string();
    let current_rev = revisions
        .all
        .iter()
        .find(|r| status.current_revision.as_deref() == Some(util::name(r.meta())))
        .cloned()
        .unwrap_or_else(|| revisions.current.clone());
    let current_revision = util::name(current_rev.meta()).to_string();
    let current_template = template_of(&current_rev, &template);
    let rev_hash =
        |r: &ControllerRevision| r.meta().labels.get(HASH_LABEL).cloned().unwrap_or_default();
    let update_hash = rev_hash(&revisions.current);
    let current_hash = rev_hash(&current_rev);

    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let end = start + replicas;
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.r#type.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = ctx.shared.now();

    let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for p in &claimed {
        match ordinal(&key.name, p) {
            Some(o) if (start..end).contains(&o) => {
                by_ordinal.insert(o, p.clone());
            }
            _ => condemned.push(p.clone()),
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(&key.name, p).unwrap_or(i32::MAX)));

    // Status from the pods as they are.
    let count = |f: &dyn Fn(&Pod) -> bool| claimed.iter().filter(|p| f(p)).count() as i32;
    status.observed_generation = set.meta().generation;
    status.replicas = Some(count(&|p| p.meta().deletion_timestamp.is_none()));
    status.ready_replicas = Some(count(&|p| {
        running_and_ready(p) && p.meta().deletion_timestamp.is_none()
    }));
    status.available_replicas = Some(count(&|p| {
        running_and_ready(p)
            && pods::is_available(p, min_ready, now)
            && p.meta().deletion_timestamp.is_none()
    }));
    status.current_replicas = Some(count(&|p| {
        revision_of(p) == current_hash && p.meta().deletion_timestamp.is_none()
    }));
    status.updated_replicas = Some(count(&|p| {
        revision_of(p) == update_hash && p.meta().deletion_timestamp.is_none()
    }));
    status.current_revision = Some(current_revision.clone());
    status.update_revision = Some(update_revision.clone());
    if rolling
        && status.updated_replicas == status.replicas
        && status.ready_replicas == status.replicas
        && status.replicas == Some(replicas)
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = Some(update_revision.clone());
    }

    let result = apply(
        &ctx,
        &set,
        Plan {
            start,
            end,
            monotonic,
            rolling,
            partition,
            by_ordinal: &by_ordinal,
            condemned: &condemned,
            current: (&current_template, &current_hash),
            update: (&template, &update_hash),
            current_replicas: set
                .status
                .as_ref()
                .and_then(|s| s.current_replicas)
                .unwrap_or(0),
        },
    )
    .await;
    write_status(&ctx, &set, status).await?;
    result?;

    let keep: HashSet<String> = claimed
        .iter()
        .map(|p| format!("{}-{}", key.name, revision_of(p)))
        .chain([current_revision, update_revision])
        .collect();
    history::truncate(
        client,
        &revisions.all,
        spec.revision_history_limit.unwrap_or(10),
        &keep,
    )
    .await?;
    Ok(Action::await_change())
}

struct Plan<'a> {
    start: i32,
    end: i32,
    monotonic: bool,
    rolling: bool,
    partition: i32,
    by_ordinal: &'a BTreeMap<i32, Arc<Pod>>,
    condemned: &'a [Arc<Pod>],
    current: (&'a PodTemplateSpec, &'a str),
    update: (&'a PodTemplateSpec, &'a str),
    current_replicas: i32,
}

/// One step of `updateStatefulSet`: create, replace, delete — stopping where OrderedReady
/// must wait.
async fn apply(ctx: &Ctx, set: &StatefulSet, plan: Plan<'_>) -> Result<(), ApiError> {
    let client = &ctx.shared.client;
    let key = ObjectKey::of(set);
    for ordinal in plan.start..plan.end {
        match plan.by_ordinal.get(&ordinal) {
            None => {
                // Pods below the partition keep the current revision (`newVersionedStatefulSetPod`).
                let below = if plan.rolling {
                    ordinal < plan.start + plan.partition
                } else {
                    ordinal < plan.start + plan.current_replicas
                };
                let (template, hash) = if below && plan.current.1 != plan.update.1 {
                    plan.current
                } else {
                    plan.update
                };
                let pod = new_pod(set, template, hash, ordinal);
                match client.create(&key.namespace, &pod).await {
                    Ok(_) => ctx.shared.event(
                        set,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!(
                            "create Pod {}-{ordinal} in StatefulSet {} successful",
                            key.name, key.name
                        ),
                    ),
                    // The previous pod of that name is still terminating.
                    Err(e) if e.reason == Reason::AlreadyExists => {}
                    Err(e) => {
                        ctx.shared.event(
                            set,
                            EventType::Warning,
                            "FailedCreate",
                            format!(
                                "create Pod {}-{ordinal} in StatefulSet {} failed error: {}",
                                key.name, key.name, e.message
                            ),
                        );
                        return Err(e);
                    }
                }
                if plan.monotonic {
                    return Ok(());
                }
            }
            Some(pod) => {
                if pods::phase(pod) == "Failed" && pod.meta().deletion_timestamp.is_none() {
                    delete(ctx, set, pod).await?;
                    if plan.monotonic {
                        return Ok(());
                    }
                    continue;
                }
                if plan.monotonic && !healthy(pod) {
                    return Ok(());
                }
            }
        }
    }
    // Surplus pods, highest ordinal first; OrderedReady waits for every pod to be healthy.
    for pod in plan.condemned {
        if pod.meta().deletion_timestamp.is_some() {
            if plan.monotonic {
                return Ok(());
            }
            continue;
        }
        if plan.monotonic
            && (plan.by_ordinal.values().any(|p| !healthy(p))
                || plan.condemned.iter().any(|p| {
                    !std::ptr::eq(p.as_ref(), pod.as_ref())
                        && !healthy(p)
                        && p.meta().deletion_timestamp.is_some()
                }))
        {
            return Ok(());
        }
        delete(ctx, set, pod).await?;
        if plan.monotonic {
            return Ok(());
        }
    }
    if !plan.rolling {
        return Ok(());
    }
    // Rolling update: the highest ordinal not at the update revision goes first.
    if plan.by_ordinal.len() as i32 != plan.end - plan.start
        || plan.by_ordinal.values().any(|p| !healthy(p))
    {
        return Ok(());
    }
    for ordinal in (plan.start + plan.partition.max(0)..plan.end).rev() {
        let Some(pod) = plan.by_ordinal.get(&ordinal) else {
            continue;
        };
        if revision_of(pod) != plan.update.1 && pod.meta().deletion_timestamp.is_none() {
            delete(ctx, set, pod).await?;
            return Ok(());
        }
    }
    Ok(())
}

async fn delete(ctx: &Ctx, set: &StatefulSet, pod: &Pod) -> Result<(), ApiError> {
    util::delete_object(&ctx.shared.client, pod, "").await?;
    let key = ObjectKey::of(set);
    ctx.shared.event(
        set,
        EventType::Normal,
        "SuccessfulDelete",
        format!(
            "delete Pod {} in StatefulSet {} successful",
            util::name(pod.meta()),
            key.name
        ),
    );
    Ok(())
}

async fn write_status(
    ctx: &Ctx,
    set: &StatefulSet,
    status: StatefulSetStatus,
) -> Result<(), ApiError> {
    if set.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = set.clone();
    updated.status = Some(status);
    let key = ObjectKey::of(set);
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
