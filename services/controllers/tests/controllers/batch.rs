//! Jobs (completions, parallelism, failures against backoffLimit, Indexed, TTL) and CronJobs
//! (schedules under an injected clock, concurrency policy, missed windows, history limits).

use std::sync::Arc;
use std::time::Duration;

use navarch_api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use navarch_api::core::v1::Pod;
use navarch_controllers::FakeClock;
use navarch_gateway::Client;
use navarch_runtime::KubeObject;

use crate::common::*;

fn job(name: &str, completions: i32, parallelism: i32, backoff_limit: i32) -> Job {
    let mut tmpl = template(name, "busybox").unwrap();
    tmpl.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    Job {
        metadata: meta("default", name),
        spec: Some(JobSpec {
            completions: Some(completions),
            parallelism: Some(parallelism),
            backoff_limit: Some(backoff_limit),
            template: Some(tmpl),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn job_pods(c: &Client, job: &str) -> Vec<Pod> {
    pods(c, "default")
        .await
        .into_iter()
        .filter(|p| {
            p.meta()
                .owner_references
                .iter()
                .any(|r| r.name.as_deref() == Some(job))
        })
        .collect()
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

async fn get_job(c: &Client, name: &str) -> Job {
    t(c.get("default", name)).await.unwrap()
}

fn has_condition(j: &Job, kind: &str) -> bool {
    j.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type.as_deref() == Some(kind) && c.status.as_deref() == Some("True"))
    })
}

/// Finishes the first pending pod of `job` with `outcome`.
async fn finish_one(c: &Client, job: &str, outcome: &str) {
    eventually(
        &format!("a running pod of {job} to mark {outcome}"),
        || async {
            for p in job_pods(c, job).await {
                if phase(&p) == "Pending" && p.meta().deletion_timestamp.is_none() {
                    return finish_pod(c, &p, outcome).await;
                }
            }
            false
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_completion_through_failures() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    t(c.create("default", &job("work", 3, 2, 2))).await.unwrap();
    eventually("two pods at a time", || async {
        job_pods(&c, "work").await.len() == 2
    })
    .await;
    finish_one(&c, "work", "Failed").await;
    for _ in 0..3 {
        finish_one(&c, "work", "Succeeded").await;
    }
    eventually("the job complete", || async {
        has_condition(&get_job(&c, "work").await, "Complete")
    })
    .await;
    let j = get_job(&c, "work").await;
    let s = j.status.clone().unwrap();
    assert_eq!(
        (s.succeeded, s.failed, s.active),
        (Some(3), Some(1), Some(0))
    );
    assert!(s.completion_time.is_some() && s.start_time.is_some());
    let kinds: Vec<_> = s
        .conditions
        .iter()
        .map(|c| c.r#type.clone().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["SuccessCriteriaMet", "Complete"],
        "the interim condition comes first"
    );
    assert_eq!(
        s.conditions[1].reason.as_deref(),
        Some("CompletionsReached")
    );
    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_pods_keep_failing_hits_its_backoff_limit() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    t(c.create("default", &job("flaky", 1, 1, 2)))
        .await
        .unwrap();
    for _ in 0..3 {
        finish_one(&c, "flaky", "Failed").await;
    }
    eventually("the job failed", || async {
        has_condition(&get_job(&c, "flaky").await, "Failed")
    })
    .await;
    let s = get_job(&c, "flaky").await.status.unwrap();
    assert_eq!(s.failed, Some(3));
    let failed = s
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some("Failed"))
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.r#type.as_deref() == Some("FailureTarget"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        job_pods(&c, "flaky").await.len(),
        3,
        "no pod after the failure"
    );
    manager.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_completes_every_index_and_its_ttl_deletes_it() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let manager = cluster.manager();
    let mut j = job("idx", 3, 3, 6);
    let spec = j.spec.as_mut().unwrap();
    spec.completion_mode = Some("Indexed".into());
    spec.ttl_seconds_after_finished = Some(0);
    t(c.create("default", &j)).await.unwrap();
    eventually("one pod per index", || async {
        job_pods(&c, "idx").await.len() == 3
    })
    .await;
    let mut indexes: Vec<String> = job_pods(&c, "idx")
        .await
        .iter()
        .map(|p| p.meta().annotations["batch.kubernetes.io/job-completion-index"].clone())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    let p = &job_pods(&c, "idx").await[0];
    let i = &p.meta().annotations["batch.kubernetes.io/job-completion-index"];
    assert_eq!(
        p.spec.as_ref().unwrap().hostname.as_deref(),
        Some(format!("idx-{i}").as_str())
    );
    for _ in 0..3 {
        finish_one(&c, "idx", "Succeeded").await;
    }
    // ttlSecondsAfterFinished: 0 deletes the Job (and its pods) once it is complete.
    eventually("the finished job deleted", || async {
        c.get::<Job>("default", "idx").await.is_err() && job_pods(&c, "idx").await.is_empty()
    })
    .await;
    manager.shutdown().await;
    cluster.stop().await;
}

fn cronjob(name: &str, schedule: &str, policy: &str) -> CronJob {
    let j = job(name, 1, 1, 0);
    CronJob {
        metadata: meta("default", name),
        spec: Some(CronJobSpec {
            schedule: Some(schedule.into()),
            concurrency_policy: Some(policy.into()),
            successful_jobs_history_limit: Some(1),
            job_template: Some(JobTemplateSpec {
                metadata: None,
                spec: j.spec,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn jobs(c: &Client) -> Vec<Job> {
    let mut v = t(c.list::<Job>("default", &Default::default()))
        .await
        .unwrap()
        .items;
    v.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_runs_on_schedule_under_an_injected_clock() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let start = jiff::Timestamp::now();
    let clock = Arc::new(FakeClock::new(start));
    let manager = cluster.manager_with(|cfg| cfg.clock = clock.clone());
    t(c.create("default", &cronjob("tick", "* * * * *", "Forbid")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(jobs(&c).await.is_empty(), "nothing before the first minute");

    clock.advance(Duration::from_secs(61));
    eventually("the first job", || async { jobs(&c).await.len() == 1 }).await;
    let first = jobs(&c).await.remove(0);
    // The most recent minute at or before the fake "now": a start in the last
    // second of a minute makes that the one after next, and the CronJob (created
    // a moment after `start`) runs only the latest missed time.
    let scheduled = (start.as_second() + 61) / 60;
    assert_eq!(
        first.meta().name.as_deref(),
        Some(format!("tick-{scheduled}").as_str())
    );
    assert!(
        first
            .meta()
            .annotations
            .contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp")
    );
    eventually("status.active and lastScheduleTime", || async {
        let cj: CronJob = c.get("default", "tick").await.unwrap();
        let s = cj.status.unwrap_or_default();
        s.active.len() == 1 && s.last_schedule_time.is_some()
    })
    .await;

    // Forbid: the next minute does not start a second Job while the first runs.
    clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(jobs(&c).await.len(), 1, "Forbid keeps one job at a time");

    // When the first finishes, the run Forbid held back starts.
    finish_one(&c, first.meta().name.as_deref().unwrap(), "Succeeded").await;
    let second = format!("tick-{}", scheduled + 1);
    eventually("the held-back run", || async {
        jobs(&c)
            .await
            .iter()
            .any(|j| j.meta().name.as_deref() == Some(second.as_str()))
    })
    .await;
    // successfulJobsHistoryLimit 1: the first job goes once the second one completes.
    finish_one(&c, &second, "Succeeded").await;
    eventually("history trimmed to the latest success", || async {
        let names: Vec<_> = jobs(&c)
            .await
            .iter()
            .map(|j| j.meta().name.clone().unwrap())
            .collect();
        names == [second.clone()]
    })
    .await;
    // Ten missed minutes start one Job, for the most recent of them.
    clock.advance(Duration::from_secs(600));
    let latest = format!("tick-{}", clock_minutes(&clock));
    eventually("one job for the missed window", || async {
        let names: Vec<_> = jobs(&c)
            .await
            .iter()
            .map(|j| j.meta().name.clone().unwrap())
            .collect();
        names == [second.clone(), latest.clone()]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        jobs(&c).await.len(),
        2,
        "missed runs are not started one by one"
    );
    let cj: CronJob = t(c.get("default", "tick")).await.unwrap();
    assert!(cj.status.unwrap().last_successful_time.is_some());
    manager.shutdown().await;
    cluster.stop().await;
}

fn clock_minutes(clock: &FakeClock) -> i64 {
    use navarch_controllers::Clock;
    clock.now().as_second() / 60
}
