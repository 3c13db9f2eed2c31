//! The Job loop (`pkg/controller/job`, plus the TTL-after-finished controller): runs pods
//! until `completions` succeed (NonIndexed) or every index in `[0, completions)` has
//! succeeded (Indexed), `parallelism` at a time; counts failures against `backoffLimit`
//! (recreating failed pods after an exponential back-off); enforces `activeDeadlineSeconds`;
//! finishes like Kubernetes 1.33 — the interim `SuccessCriteriaMet`/`FailureTarget` condition
//! first, then `Complete`/`Failed` once no pod is left running; deletes finished Jobs after
//! `ttlSecondsAfterFinished`.
//!
//! Simplification: failures and successes are counted from the pods that exist (terminal
//! pods stay until the Job is deleted) rather than through pod finalizers and
//! `uncountedTerminatedPods`; counters never go down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use navarch_api::batch::v1::{Job, JobCondition, JobStatus};
use navarch_api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use navarch_api::{ApiError, Reason};
use navarch_runtime::{
    Action, Event, EventType, Expectations, Informer, KubeObject, ObjectKey, WorkQueue,
};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::pods;
use crate::replicaset::slow_start;
use crate::util::{self, controller_of_kind, controller_ref, fmt_time, parse_time};

pub const NAME: &str = "job";
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

struct Ctx {
    shared: Arc<Shared>,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    expectations: Expectations,
    queue: WorkQueue<ObjectKey>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        jobs: shared.factory.informer(),
        pods: shared.factory.informer(),
        expectations: Expectations::with_timeout(shared.settings.expectations_timeout),
        queue: queue.clone(),
    });
    let q = queue.clone();
    ctx.jobs
        .add_handler(move |ev: &Event<Job>| q.add(ObjectKey::of(ev.object().as_ref())));
    let weak = Arc::downgrade(&ctx);
    ctx.pods
        .add_handler(move |ev: &Event<Pod>| on_pod(&weak, ev));
    shared.requeue_on_clock_jumps(&queue, ctx.jobs.cache());
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
    .linked(navarch_api::kinds::of::<navarch_api::batch::v1::Job>().expect("a served kind"))
}

impl Ctx {
    fn owner_key(&self, pod: &Pod) -> Option<ObjectKey> {
        let r = controller_of_kind(pod.meta(), "Job")?;
        let job = self
            .jobs
            .cache()
            .get_named(util::namespace(pod.meta()), r.name.as_deref()?)?;
        (job.meta().uid == r.uid).then(|| ObjectKey::of(job.as_ref()))
    }
}

fn on_pod(ctx: &Weak<Ctx>, ev: &Event<Pod>) {
    let Some(ctx) = ctx.upgrade() else { return };
    let pod = ev.object();
    let Some(key) = ctx.owner_key(pod) else {
        return;
    };
    let owner = key.to_string();
    match ev {
        Event::Added(p) if p.meta().deletion_timestamp.is_none() => {
            ctx.expectations.creation_observed(&owner)
        }
        Event::Added(p) | Event::Deleted(p) | Event::Updated { new: p, .. }
            if p.meta().deletion_timestamp.is_some() || matches!(ev, Event::Deleted(_)) =>
        {
            ctx.expectations
                .deletion_of_observed(&owner, &ObjectKey::of(p.as_ref()).to_string())
        }
        _ => {}
    }
    ctx.queue.add(key);
}

fn condition<'a>(status: &'a JobStatus, kind: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some(kind) && c.status.as_deref() == Some("True"))
}

fn new_condition(kind: &str, reason: &str, message: &str, now: &str) -> JobCondition {
    JobCondition {
        r#type: Some(kind.into()),
        status: Some("True".into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.into()),
        last_transition_time: Some(now.into()),
    }
}

fn completion_index(pod: &Pod) -> Option<i32> {
    pod.meta()
        .annotations
        .get(INDEX_KEY)
        .and_then(|v| v.parse().ok())
}

/// When a failed pod finished (its last container's finish time, else its last transition).
fn finished_at(pod: &Pod) -> Option<jiff::Timestamp> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_deref()
        })
        .filter_map(|t| parse_time(Some(t)))
        .max()
        .or_else(|| {
            status
                .conditions
                .iter()
                .filter_map(|c| parse_time(c.last_transition_time.as_deref()))
                .max()
        })
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .map(|s| {
            s.container_statuses
                .iter()
                .chain(&s.init_container_statuses)
                .map(|c| c.restart_count.unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let owner_key = key.to_string();
    let Some(job) = ctx.jobs.cache().get(&key) else {
        ctx.expectations.forget(&owner_key);
        return Ok(Action::await_change());
    };
    let now_ts = ctx.shared.now();
    let now = fmt_time(now_ts);
    let mut status = job.status.clone().unwrap_or_default();
    if condition(&status, "Complete").is_some() || condition(&status, "Failed").is_some() {
        return ttl_after_finished(&ctx, &job, &status).await;
    }
    if util::is_deleting(job.meta()) {
        return Ok(Action::await_change());
    }
    let spec = job.spec.clone().unwrap_or_default();
    let Some(selector) = util::selector(spec.selector.as_ref()) else {
        return Ok(Action::await_change());
    };
    let candidates = ctx.pods.cache().in_namespace(&key.namespace);
    let claimed = pods::claim(
        &ctx.shared.client,
        &controller_ref(job.as_ref()),
        false,
        &selector,
        candidates,
    )
    .await?;
    let active: Vec<Arc<Pod>> = claimed
        .iter()
        .filter(|p| pods::is_active(p))
        .cloned()
        .collect();
    let terminating = claimed.iter().filter(|p| pods::is_terminating(p)).count() as i32;
    let failed_pods: Vec<&Arc<Pod>> = claimed
        .iter()
        .filter(|p| pods::phase(p) == "Failed")
        .collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);

    let mut succeeded_indexes = BTreeSet::new();
    if indexed {
        succeeded_indexes = util::parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
        for p in claimed.iter().filter(|p| pods::phase(p) == "Succeeded") {
            if let Some(i) = completion_index(p)
                && (0..completions.unwrap_or(0)).contains(&i)
            {
                succeeded_indexes.insert(i);
            }
        }
        status.succeeded = Some(succeeded_indexes.len() as i32);
        status.completed_indexes = Some(util::format_indexes(&succeeded_indexes));
    } else {
        let succeeded = claimed
            .iter()
            .filter(|p| pods::phase(p) == "Succeeded")
            .count() as i32;
        status.succeeded = Some(status.succeeded.unwrap_or(0).max(succeeded));
    }
    let succeeded = status.succeeded.unwrap_or(0);
    let failed = status.failed.unwrap_or(0).max(failed_pods.len() as i32);
    status.failed = Some(failed);
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(now.clone());
    }

    // What finished the Job, if anything: an interim condition already recorded, or new.
    let mut finished = condition(&status, "FailureTarget")
        .or_else(|| condition(&status, "SuccessCriteriaMet"))
        .cloned();
    if finished.is_none() {
        let on_failure = spec
            .template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        let restarted: i32 = active.iter().map(|p| restarts(p)).sum();
        let past_backoff_on_failure = on_failure
            && if backoff_limit == 0 {
                restarted > 0
            } else {
                restarted >= backoff_limit
            };
        let deadline_passed = spec.active_deadline_seconds.is_some_and(|ads| {
            parse_time(status.start_time.as_deref())
                .is_some_and(|start| util::seconds_between(start, now_ts) >= ads as f64)
        });
        let complete = if indexed {
            succeeded_indexes.len() as i32 >= completions.unwrap_or(0)
        } else {
            match completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            }
        };
        finished = if failed > backoff_limit || past_backoff_on_failure {
            Some(new_condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                &now,
            ))
        } else if deadline_passed && !suspended {
            Some(new_condition(
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                &now,
            ))
        } else if complete {
            Some(new_condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &now,
            ))
        } else {
            None
        };
        if let Some(c) = &finished {
            status.conditions.push(c.clone());
        }
    }

    let mut requeue: Option<Duration> = None;
    let mut manage_error = None;
    let mut still_active = active.len() as i32;
    if let Some(cond) = &finished {
        // Finished: no pod may keep running; the terminal condition follows once none does.
        if !active.is_empty() {
            delete_pods(&ctx, &job, &active).await?;
            still_active = 0;
        }
        if active.is_empty() && terminating == 0 {
            let failure = cond.r#type.as_deref() == Some("FailureTarget");
            let kind = if failure { "Failed" } else { "Complete" };
            let reason = cond.reason.clone().unwrap_or_default();
            let message = cond.message.clone().unwrap_or_default();
            status
                .conditions
                .push(new_condition(kind, &reason, &message, &now));
            if failure {
                ctx.shared
                    .event(job.as_ref(), EventType::Warning, &reason, message);
            } else {
                status.completion_time = Some(now.clone());
                ctx.shared.event(
                    job.as_ref(),
                    EventType::Normal,
                    "Completed",
                    "Job completed".into(),
                );
            }
        }
    } else if suspended {
        if !active.is_empty() {
            delete_pods(&ctx, &job, &active).await?;
            still_active = 0;
        }
        if condition(&status, "Suspended").is_none() {
            status
                .conditions
                .retain(|c| c.r#type.as_deref() != Some("Suspended"));
            status.conditions.push(new_condition(
                "Suspended",
                "JobSuspended",
                "Job suspended",
                &now,
            ));
            ctx.shared.event(
                job.as_ref(),
                EventType::Normal,
                "Suspended",
                "Job suspended".into(),
            );
        }
    } else {
        if let Some(c) = status.conditions.iter_mut().find(|c| {
            c.r#type.as_deref() == Some("Suspended") && c.status.as_deref() == Some("True")
        }) {
            c.status = Some("False".into());
            c.reason = Some("JobResumed".into());
            c.message = Some("Job resumed".into());
            c.last_transition_time = Some(now.clone());
            status.start_time = Some(now.clone());
            ctx.shared.event(
                job.as_ref(),
                EventType::Normal,
                "Resumed",
                "Job resumed".into(),
            );
        }
        if ctx.expectations.satisfied(&owner_key) {
            match manage(
                &ctx,
                &job,
                &active,
                &failed_pods,
                &succeeded_indexes,
                succeeded,
                now_ts,
            )
            .await
            {
                Ok((delta, wait)) => {
                    still_active += delta;
                    requeue = wait;
                }
                Err(e) => manage_error = Some(e),
            }
        }
        if let (Some(ads), Some(start)) = (
            spec.active_deadline_seconds,
            parse_time(status.start_time.as_deref()),
        ) {
            let left = ads as f64 - util::seconds_between(start, now_ts);
            let left = util::secs(left + 0.05);
            requeue = Some(requeue.map_or(left, |r| r.min(left)));
        }
    }

    status.active = Some(still_active.max(0));
    status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
    status.terminating = Some(terminating);
    if job.status.as_ref() != Some(&status) {
        let mut updated = (*job).clone();
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
    Ok(requeue.map_or(Action::await_change(), Action::requeue))
}

/// Creates or deletes pods toward the wanted number of active ones; returns the change in
/// active pods and, when creation waits for a failure back-off, how long.
async fn manage(
    ctx: &Arc<Ctx>,
    job: &Job,
    active: &[Arc<Pod>],
    failed_pods: &[&Arc<Pod>],
    succeeded_indexes: &BTreeSet<i32>,
    succeeded: i32,
    now: jiff::Timestamp,
) -> Result<(i32, Option<Duration>), ApiError> {
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let active_count = active.len() as i32;

    // Which indexes (Indexed) or how many pods (NonIndexed) to create; which to delete.
    let mut surplus: Vec<Arc<Pod>> = Vec::new();
    let mut to_create: Vec<Option<i32>> = Vec::new();
    if indexed {
        let completions = spec.completions.unwrap_or(0);
        let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
        for p in active {
            match completion_index(p) {
                Some(i) if (0..completions).contains(&i) && !succeeded_indexes.contains(&i) => {
                    by_index.entry(i).or_default().push(p.clone())
                }
                _ => surplus.push(p.clone()),
            }
        }
        for pods in by_index.values_mut() {
            pods.sort_by(|a, b| {
                a.meta()
                    .creation_timestamp
                    .cmp(&b.meta().creation_timestamp)
            });
            surplus.extend(pods.drain(1..));
        }
        let running = by_index.len() as i32;
        if running > parallelism {
            let mut extra: Vec<i32> = by_index.keys().rev().copied().collect();
            extra.truncate((running - parallelism) as usize);
            for i in extra {
                surplus.extend(by_index.remove(&i).unwrap_or_default());
            }
        }
        let room = (parallelism - by_index.len() as i32).max(0) as usize;
        to_create = (0..completions)
            .filter(|i| !succeeded_indexes.contains(i) && !by_index.contains_key(i))
            .take(room)
            .map(Some)
            .collect();
    } else {
        let want = match spec.completions {
            Some(c) => (c - succeeded).min(parallelism).max(0),
            None if succeeded > 0 => active_count,
            None => parallelism,
        };
        if active_count > want {
            let mut ordered = active.to_vec();
            pods::deletion_order(&mut ordered);
            ordered.truncate((active_count - want) as usize);
            surplus = ordered;
        } else {
            to_create = vec![None; (want - active_count) as usize];
        }
    }

    if !surplus.is_empty() {
        delete_pods(ctx, job, &surplus).await?;
        return Ok((-(surplus.len() as i32), None));
    }
    if to_create.is_empty() {
        return Ok((0, None));
    }
    // Failed pods are replaced after an exponential back-off (10 s, 20 s, … 6 min).
    if !failed_pods.is_empty()
        && let Some(last) = failed_pods.iter().filter_map(|p| finished_at(p)).max()
    {
        let settings = &ctx.shared.settings;
        let exp = (failed_pods.len() as u32 - 1).min(16);
        let delay = (settings.job_backoff * (1u32 << exp)).min(settings.job_backoff_max);
        let left = delay.as_secs_f64() - util::seconds_between(last, now);
        if left > 0.0 {
            return Ok((0, Some(util::secs(left + 0.01))));
        }
    }
    let key = ObjectKey::of(job);
    let owner_key = key.to_string();
    let template = spec.template.clone().unwrap_or_default();
    let base = pods::from_template(&template, &key.namespace, controller_ref(job));
    let want = to_create.len();
    ctx.expectations.expect_creations(&owner_key, want as i64);
    let client = &ctx.shared.client;
    let ns = key.namespace.as_str();
    let (created, error) = slow_start(want, |n| {
        let pod = index_pod(&base, &key.name, to_create[n]);
        async move { client.create(ns, &pod).await }
    })
    .await;
    for _ in created.len()..want {
        ctx.expectations.creation_observed(&owner_key);
    }
    for p in &created {
        ctx.shared.event(
            job,
            EventType::Normal,
            "SuccessfulCreate",
            format!("Created pod: {}", util::name(p.meta())),
        );
    }
    if let Some(e) = error {
        ctx.shared.event(
            job,
            EventType::Warning,
            "FailedCreate",
            format!("Error creating: {}", e.message),
        );
        return Err(e);
    }
    Ok((created.len() as i32, None))
}

/// The pod for one index (or a NonIndexed pod).
fn index_pod(base: &Pod, job: &str, index: Option<i32>) -> Pod {
    let mut pod = base.clone();
    let Some(i) = index else {
        pod.meta_mut().generate_name = Some(format!("{job}-"));
        return pod;
    };
    let meta = pod.meta_mut();
    meta.generate_name = Some(format!("{job}-{i}-"));
    meta.annotations.insert(INDEX_KEY.into(), i.to_string());
    meta.labels.insert(INDEX_KEY.into(), i.to_string());
    if let Some(spec) = pod.spec.as_mut() {
        if spec.hostname.as_deref().is_none_or(str::is_empty) {
            spec.hostname = Some(format!("{job}-{i}"));
        }
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut())
        {
            if !c
                .env
                .iter()
                .any(|e| e.name.as_deref() == Some("JOB_COMPLETION_INDEX"))
            {
                c.env.push(EnvVar {
                    name: Some("JOB_COMPLETION_INDEX".into()),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: Some(format!("metadata.annotations['{INDEX_KEY}']")),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
    }
    pod
}

async fn delete_pods(ctx: &Ctx, job: &Job, pods: &[Arc<Pod>]) -> Result<(), ApiError> {
    let owner_key = ObjectKey::of(job).to_string();
    ctx.expectations.expect_deletions_of(
        &owner_key,
        pods.iter().map(|p| ObjectKey::of(p.as_ref()).to_string()),
    );
    let mut first_error = None;
    for p in pods {
        match util::delete_object(&ctx.shared.client, p.as_ref(), "").await {
            Ok(()) => ctx.shared.event(
                job,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {}", util::name(p.meta())),
            ),
            Err(e) => {
                ctx.expectations
                    .deletion_of_observed(&owner_key, &ObjectKey::of(p.as_ref()).to_string());
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Deletes a finished Job `ttlSecondsAfterFinished` after it finished (with its pods).
async fn ttl_after_finished(ctx: &Ctx, job: &Job, status: &JobStatus) -> Result<Action, ApiError> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    if util::is_deleting(job.meta()) {
        return Ok(Action::await_change());
    }
    let finished = parse_time(status.completion_time.as_deref()).or_else(|| {
        condition(status, "Failed")
            .or_else(|| condition(status, "Complete"))
            .and_then(|c| parse_time(c.last_transition_time.as_deref()))
    });
    let Some(finished) = finished else {
        return Ok(Action::await_change());
    };
    let left = f64::from(ttl) - util::seconds_between(finished, ctx.shared.now());
    if left > 0.0 {
        return Ok(Action::requeue(util::secs(left + 0.05)));
    }
    tracing::info!(job = %ObjectKey::of(job), "deleting a finished Job whose TTL expired");
    util::delete_object(&ctx.shared.client, job, "Foreground").await?;
    Ok(Action::await_change())
}
