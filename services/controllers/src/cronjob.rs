//! The CronJob loop (`pkg/controller/cronjob`, v2): creates a Job named
//! `<cronjob>-<minutes since the epoch>` for the most recent missed schedule (only the most
//! recent one after downtime, and none if `startingDeadlineSeconds` has passed), honours
//! `concurrencyPolicy` (Allow / Forbid / Replace), `suspend` and `timeZone`, keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, and deletes finished Jobs
//! beyond the history limits. Time comes from the injectable clock.

use std::sync::{Arc, Weak};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use navarch_api::batch::v1::{CronJob, Job};
use navarch_api::core::v1::ObjectReference;
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, Reason};
use navarch_runtime::{Action, Event, EventType, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::cron::Schedule;
use crate::util::{self, controller_of_kind, controller_ref, fmt_time, parse_time};

pub const NAME: &str = "cronjob";
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed schedules looked at, at most (Kubernetes warns past 100).
const MAX_MISSED: usize = 100_000;

struct Ctx {
    shared: Arc<Shared>,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        cronjobs: shared.factory.informer(),
        jobs: shared.factory.informer(),
    });
    let q = queue.clone();
    ctx.cronjobs
        .add_handler(move |ev: &Event<CronJob>| q.add(ObjectKey::of(ev.object().as_ref())));
    let q = queue.clone();
    let weak: Weak<Ctx> = Arc::downgrade(&ctx);
    ctx.jobs.add_handler(move |ev: &Event<Job>| {
        if weak.upgrade().is_none() {
            return;
        }
        let job = ev.object();
        if let Some(r) = controller_of_kind(job.meta(), "CronJob") {
            q.add(ObjectKey::new(
                util::namespace(job.meta()),
                r.name.clone().unwrap_or_default(),
            ));
        }
    });
    shared.requeue_on_clock_jumps(&queue, ctx.cronjobs.cache());
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
}

fn finished(job: &Job) -> Option<&'static str> {
    let status = job.status.as_ref()?;
    status.conditions.iter().find_map(|c| {
        if c.status.as_deref() != Some("True") {
            return None;
        }
        match c.r#type.as_deref() {
            Some("Complete") => Some("Complete"),
            Some("Failed") => Some("Failed"),
            _ => None,
        }
    })
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.meta().namespace.clone(),
        name: job.meta().name.clone(),
        uid: job.meta().uid.clone(),
        resource_version: job.meta().resource_version.clone(),
        field_path: None,
    }
}

/// The most recent schedule time in `(earliest, now]` and how many there were.
fn most_recent(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut last = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next(t, tz) {
        if next > now || count >= MAX_MISSED {
            break;
        }
        last = Some(next);
        count += 1;
        t = next;
    }
    (last, count)
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let Some(cj) = ctx.cronjobs.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    let client = &ctx.shared.client;
    let now = ctx.shared.now();
    let mut status = cj.status.clone().unwrap_or_default();
    let uid = util::uid(cj.meta()).to_string();
    let mut children: Vec<Arc<Job>> = ctx
        .jobs
        .cache()
        .in_namespace(&key.namespace)
        .into_iter()
        .filter(|j| util::is_controlled_by(j.meta(), &uid))
        .collect();
    children.sort_by(|a, b| {
        a.meta()
            .creation_timestamp
            .cmp(&b.meta().creation_timestamp)
    });

    // Reconcile status.active with the Jobs that exist.
    for job in &children {
        let in_active = status.active.iter().any(|r| r.uid == job.meta().uid);
        match finished(job) {
            None if !in_active => status.active.push(job_ref(job)),
            Some(outcome) if in_active => {
                status.active.retain(|r| r.uid != job.meta().uid);
                ctx.shared.event(
                    cj.as_ref(),
                    EventType::Normal,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {outcome}",
                        util::name(job.meta())
                    ),
                );
            }
            _ => {}
        }
        if finished(job) == Some("Complete")
            && let Some(done) = job
                .status
                .as_ref()
                .and_then(|s| parse_time(s.completion_time.as_deref()))
            && parse_time(status.last_successful_time.as_deref()).is_none_or(|t| t < done)
        {
            status.last_successful_time = Some(fmt_time(done));
        }
    }
    status
        .active
        .retain(|r| children.iter().any(|j| j.meta().uid == r.uid));

    let mut requeue = None;
    if !util::is_deleting(cj.meta()) {
        requeue = schedule_next(&ctx, &cj, &mut status, &children, now).await?;
        cleanup_history(&ctx, &cj, &children).await?;
    }

    if cj.status.as_ref() != Some(&status) {
        let mut updated = (*cj).clone();
        updated.status = Some(status);
        match client
            .update_status(&key.namespace, &key.name, &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if e.reason == Reason::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(requeue.map_or(Action::await_change(), Action::requeue))
}

/// Starts the Job for the most recent due schedule, if any; returns when to look again.
async fn schedule_next(
    ctx: &Ctx,
    cj: &CronJob,
    status: &mut navarch_api::batch::v1::CronJobStatus,
    children: &[Arc<Job>],
    now: Timestamp,
) -> Result<Option<Duration>, ApiError> {
    let spec = cj.spec.clone().unwrap_or_default();
    let key = ObjectKey::of(cj);
    let schedule = match Schedule::parse(spec.schedule.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(e) => {
            ctx.shared.event(
                cj,
                EventType::Warning,
                "UnparseableSchedule",
                format!(
                    "unparseable schedule: {:?} : {e}",
                    spec.schedule.unwrap_or_default()
                ),
            );
            return Ok(None);
        }
    };
    let tz_name = spec
        .time_zone
        .clone()
        .filter(|z| !z.is_empty())
        .or_else(|| schedule.time_zone().map(str::to_string));
    let tz = match &tz_name {
        None => TimeZone::UTC,
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(_) => {
                ctx.shared.event(
                    cj,
                    EventType::Warning,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}"),
                );
                return Ok(None);
            }
        },
    };
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let next_in = |after: Timestamp| {
        schedule
            .next(after, &tz)
            .map(|t| util::secs(util::seconds_between(now, t) + 0.1))
    };
    let created = parse_time(cj.meta().creation_timestamp.as_deref()).unwrap_or(now);
    let mut earliest = parse_time(status.last_schedule_time.as_deref()).unwrap_or(created);
    if let Some(sds) = spec.starting_deadline_seconds {
        let deadline = now - jiff::SignedDuration::from_secs(sds);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let (scheduled, missed) = most_recent(&schedule, &tz, earliest, now);
    let Some(scheduled) = scheduled else {
        return Ok(next_in(now));
    };
    if missed > 100 {
        ctx.shared.event(
            cj,
            EventType::Warning,
            "TooManyMissedTimes",
            format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        );
    }
    if let Some(sds) = spec.starting_deadline_seconds
        && util::seconds_between(scheduled, now) > sds as f64
    {
        ctx.shared.event(
            cj,
            EventType::Warning,
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                fmt_time(scheduled)
            ),
        );
        return Ok(next_in(now));
    }
    let job_name = format!("{}-{}", key.name, scheduled.as_second() / 60);
    if children.iter().any(|j| util::name(j.meta()) == job_name)
        || parse_time(status.last_schedule_time.as_deref()) == Some(scheduled)
    {
        return Ok(next_in(now));
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !status.active.is_empty() {
        ctx.shared.event(
            cj,
            EventType::Normal,
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        );
        return Ok(next_in(now));
    }
    if policy == "Replace" {
        for r in std::mem::take(&mut status.active) {
            if let Some(job) = children.iter().find(|j| j.meta().uid == r.uid) {
                util::delete_object(&ctx.shared.client, job.as_ref(), "Background").await?;
                ctx.shared.event(
                    cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted job {}", util::name(job.meta())),
                );
            }
        }
    }
    let template = spec.job_template.clone().unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations;
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    );
    let job = Job {
        metadata: Some(ObjectMeta {
            name: Some(job_name.clone()),
            namespace: Some(key.namespace.clone()),
            labels: tmeta.labels,
            annotations,
            owner_references: vec![controller_ref(cj)],
            ..Default::default()
        }),
        spec: template.spec,
        ..Default::default()
    };
    let created = match ctx.shared.client.create(&key.namespace, &job).await {
        Ok(j) => {
            ctx.shared.event(
                cj,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {job_name}"),
            );
            j
        }
        Err(e) if e.reason == Reason::AlreadyExists => {
            match ctx
                .shared
                .client
                .get::<Job>(&key.namespace, &job_name)
                .await
            {
                Ok(j) if util::is_controlled_by(j.meta(), util::uid(cj.meta())) => j,
                _ => return Ok(next_in(now)),
            }
        }
        Err(e) => {
            ctx.shared.event(
                cj,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {}", e.message),
            );
            return Err(e);
        }
    };
    if !status.active.iter().any(|r| r.uid == created.meta().uid) {
        status.active.push(job_ref(&created));
    }
    status.last_schedule_time = Some(fmt_time(scheduled));
    Ok(next_in(now))
}

/// Deletes the oldest finished Jobs beyond successful/failedJobsHistoryLimit.
async fn cleanup_history(ctx: &Ctx, cj: &CronJob, children: &[Arc<Job>]) -> Result<(), ApiError> {
    let spec = cj.spec.clone().unwrap_or_default();
    for (outcome, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = children
            .iter()
            .filter(|j| finished(j) == Some(outcome) && !util::is_deleting(j.meta()))
            .collect();
        let surplus = done.len() as i64 - i64::from(limit.max(0));
        if surplus <= 0 {
            continue;
        }
        done.sort_by_key(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| j.meta().creation_timestamp.clone())
                .unwrap_or_default()
        });
        for job in done.into_iter().take(surplus as usize) {
            util::delete_object(&ctx.shared.client, job.as_ref(), "Background").await?;
            ctx.shared.event(
                cj,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {}", util::name(job.meta())),
            );
        }
    }
    Ok(())
}
