//! The pod worker over the recording fake runtime and fake API: one `sync` at a time.

use std::sync::Arc;
use std::time::Duration;

use navarch_api::core::v1::{Container, ExecAction, Pod, PodSpec, PodStatus, Probe as ApiProbe};
use navarch_api::meta::v1::ObjectMeta;
use tokio::sync::watch;

use super::*;
use crate::api::FakePodApi;
use crate::runtime::fake::FakeRuntime;

const T: Duration = Duration::from_secs(20);

struct Harness {
    runtime: Arc<FakeRuntime>,
    api: Arc<FakePodApi>,
    ctx: WorkerContext,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let api = Arc::new(FakePodApi::default());
    let ctx = WorkerContext {
        node_name: "n1".into(),
        host_ips: vec!["192.168.1.10".into()],
        runtime: runtime.clone(),
        api: api.clone(),
        records: RecordStore::open(&dir.path().join("pods")).unwrap(),
        log_root: dir.path().join("logs"),
        volume_root: dir.path().join("volumes"),
        backoff: BackoffPolicy {
            initial: Duration::from_millis(150),
            max: Duration::from_millis(600),
        },
        sync_period: Duration::from_secs(1),
        cluster_dns: crate::ClusterDns::None,
        cluster_domain: "cluster.local".into(),
        pod_cidr: tokio::sync::watch::channel(None).1,
        service_address: None,
    };
    Harness {
        runtime,
        api,
        ctx,
        _dir: dir,
    }
}

fn container(name: &str) -> Container {
    Container {
        name: Some(name.into()),
        image: Some(format!("registry.test/{name}:1")),
        ..Default::default()
    }
}

fn pod(init: &[&str], app: &[&str], policy: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            resource_version: Some("1".into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            init_containers: init.iter().map(|n| container(n)).collect(),
            containers: app.iter().map(|n| container(n)).collect(),
            restart_policy: Some(policy.into()),
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Harness {
    fn worker(&self, pod: &Pod) -> (PodWorker, watch::Sender<PodUpdate>) {
        let record = self
            .ctx
            .records
            .load_all()
            .into_iter()
            .find(|r| r.uid == "uid-1")
            .unwrap_or_else(|| PodRecord::new("uid-1", "default", "p"));
        let (tx, rx) = watch::channel(Some(pod.clone()));
        (PodWorker::new(self.ctx.clone(), record, rx), tx)
    }

    fn status(&self) -> PodStatus {
        self.api.last_status("p").expect("a status was written")
    }
}

async fn sync(w: &mut PodWorker) -> Next {
    tokio::time::timeout(T, w.sync())
        .await
        .expect("sync finishes")
}

fn waiting_reason(s: &PodStatus, i: usize) -> Option<String> {
    s.container_statuses[i]
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test]
async fn init_containers_run_in_order_then_app_containers() {
    let h = harness();
    let p = pod(&["init-a", "init-b"], &["web"], "Always");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    assert_eq!(w.record.lifecycle, PodLifecycle::Initializing);
    assert_eq!(
        h.runtime.calls_starting("create_container"),
        vec!["create_container init-a 0"]
    );
    assert_eq!(h.status().phase.as_deref(), Some("Pending"));

    h.runtime.exit("init-a", 0, None);
    sync(&mut w).await;
    assert_eq!(
        h.runtime.calls_starting("create_container"),
        vec!["create_container init-a 0", "create_container init-b 0"]
    );
    h.runtime.exit("init-b", 0, None);
    sync(&mut w).await;
    assert_eq!(w.record.lifecycle, PodLifecycle::Running);
    sync(&mut w).await;
    let calls = h.runtime.calls_starting("create_container");
    assert_eq!(
        calls.last().map(String::as_str),
        Some("create_container web 0")
    );
    let s = h.status();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some(h.runtime_ip().as_str()));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    let init = &s.init_container_statuses;
    assert!(init.iter().all(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.as_deref())
            == Some("Completed")
    }));
    // No readiness probe: ready once running.
    assert_eq!(s.container_statuses[0].ready, Some(true));
    // The record on disk says the same.
    let saved = h.ctx.records.load_all();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].lifecycle, PodLifecycle::Running);
}

impl Harness {
    fn runtime_ip(&self) -> String {
        "10.99.0.3".into()
    }
}

#[tokio::test]
async fn crash_loop_back_off_then_restart() {
    let h = harness();
    h.runtime.exit_on_start("crash", Some(1));
    let p = pod(&[], &["crash"], "Always");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await; // create + start: exits at once
    sync(&mut w).await; // first restart is immediate
    assert_eq!(w.record.containers[0].restart_count, 1);
    let next = sync(&mut w).await; // second exit: back-off 150ms
    let s = h.status();
    assert_eq!(waiting_reason(&s, 0).as_deref(), Some("CrashLoopBackOff"));
    let msg = s.container_statuses[0]
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert_eq!(
        msg,
        "back-off 150ms restarting failed container=crash pod=p_default(uid-1)"
    );
    assert_eq!(s.container_statuses[0].restart_count, Some(1));
    let last = s.container_statuses[0]
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(last.exit_code, Some(1));
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let Next::After(wait) = next else {
        panic!("worker should continue")
    };
    assert!(wait <= Duration::from_millis(150));

    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    sync(&mut w).await;
    assert_eq!(w.record.containers[0].restart_count, 2);
    sync(&mut w).await;
    let s = h.status();
    let msg = s.container_statuses[0]
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(msg.starts_with("back-off 300ms"), "doubled: {msg}");
}

#[tokio::test]
async fn image_pull_errors_then_back_off() {
    let h = harness();
    h.runtime.fail_pull("registry.test/web:1", true);
    let p = pod(&[], &["web"], "Always");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    assert_eq!(
        waiting_reason(&h.status(), 0).as_deref(),
        Some("ErrImagePull")
    );
    sync(&mut w).await;
    let s = h.status();
    assert_eq!(waiting_reason(&s, 0).as_deref(), Some("ImagePullBackOff"));
    assert_eq!(
        s.container_statuses[0]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .message
            .as_deref(),
        Some("Back-off pulling image \"registry.test/web:1\"")
    );
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    // The registry recovers: after the back-off the pull succeeds.
    h.runtime.fail_pull("registry.test/web:1", false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sync(&mut w).await;
    sync(&mut w).await;
    assert_eq!(h.status().phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn create_errors_are_reported() {
    let h = harness();
    h.runtime.fail_create("web", true);
    let p = pod(&[], &["web"], "Always");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    let s = h.status();
    assert_eq!(
        waiting_reason(&s, 0).as_deref(),
        Some("CreateContainerError")
    );
}

#[tokio::test]
async fn never_restart_completes_the_pod() {
    let h = harness();
    h.runtime.exit_on_start("job", Some(0));
    let p = pod(&[], &["job"], "Never");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    sync(&mut w).await;
    assert_eq!(w.record.lifecycle, PodLifecycle::Completed);
    let s = h.status();
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        s.container_statuses[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );
    assert_eq!(
        h.runtime.calls_starting("create_container").len(),
        1,
        "never restarted"
    );
    assert_eq!(
        h.runtime.calls_starting("stop_pod_sandbox").len(),
        1,
        "network released"
    );
}

#[tokio::test]
async fn failed_init_container_with_never_fails_the_pod() {
    let h = harness();
    h.runtime.exit_on_start("init", Some(2));
    let p = pod(&["init"], &["web"], "Never");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    sync(&mut w).await;
    assert_eq!(w.record.lifecycle, PodLifecycle::Completed);
    assert_eq!(h.status().phase.as_deref(), Some("Failed"));
    assert!(h.runtime.calls_starting("create_container web").is_empty());
}

#[tokio::test]
async fn graceful_deletion_stops_containers_and_finishes_the_delete() {
    let h = harness();
    let p = pod(&[], &["web", "sidecar"], "Always");
    let (mut w, tx) = h.worker(&p);
    sync(&mut w).await;
    assert_eq!(h.runtime.running(), 2);
    let mut deleting = p.clone();
    let m = deleting.metadata.as_mut().unwrap();
    m.deletion_timestamp = Some("2030-01-01T00:00:00Z".into());
    m.deletion_grace_period_seconds = Some(7);
    m.resource_version = Some("5".into());
    tx.send(Some(deleting)).unwrap();
    assert_eq!(sync(&mut w).await, Next::Done);
    assert_eq!(h.runtime.running(), 0);
    let stops = h.runtime.calls_starting("stop_container");
    assert_eq!(stops.len(), 2);
    assert!(stops.iter().all(|c| c.ends_with(" 7s")), "{stops:?}");
    assert_eq!(h.runtime.sandbox_count(), 0);
    assert_eq!(h.api.deleted(), vec!["p".to_string()]);
    assert!(h.ctx.records.load_all().is_empty(), "record removed");
    let s = h.status();
    assert_eq!(
        s.phase.as_deref(),
        Some("Failed"),
        "killed containers exit 143"
    );
    let t = s.container_statuses[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(t.exit_code, Some(143));
}

#[tokio::test]
async fn a_new_worker_adopts_running_containers() {
    let h = harness();
    let p = pod(&[], &["web"], "Always");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    let id = w.record.containers[0].id.clone().unwrap();
    drop(w);
    let before = h.runtime.calls().len();
    // The agent restarts: a worker from the saved record, over the same runtime.
    let (mut again, _tx) = h.worker(&p);
    assert_eq!(again.record.lifecycle, PodLifecycle::Running);
    sync(&mut again).await;
    let new_calls = &h.runtime.calls()[before..];
    assert!(
        !new_calls.iter().any(|c| c.starts_with("create_container")
            || c.starts_with("stop_container")
            || c.starts_with("run_pod_sandbox")),
        "{new_calls:?}"
    );
    assert_eq!(again.record.containers[0].id.as_deref(), Some(id.as_str()));
    assert_eq!(h.status().container_statuses[0].restart_count, Some(0));
}

#[tokio::test]
async fn pod_gone_from_the_api_is_cleaned_up() {
    let h = harness();
    let p = pod(&[], &["web"], "Always");
    let (mut w, tx) = h.worker(&p);
    sync(&mut w).await;
    tx.send(None).unwrap();
    assert_eq!(sync(&mut w).await, Next::Done);
    assert_eq!(h.runtime.running(), 0);
    assert_eq!(h.runtime.sandbox_count(), 0);
    assert!(h.ctx.records.load_all().is_empty());
    assert!(h.api.deleted().is_empty(), "nothing left to delete");
}

#[tokio::test]
async fn liveness_failure_restarts_the_container() {
    let h = harness();
    h.runtime.exec_exit("web", 1);
    let mut p = pod(&[], &["web"], "Always");
    p.spec.as_mut().unwrap().containers[0].liveness_probe = Some(ApiProbe {
        exec: Some(ExecAction {
            command: vec!["check".into()],
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    });
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    // Wait for the probe task to report the failure.
    tokio::time::timeout(T, async {
        loop {
            if w.probes.get("web").is_some_and(|p| p.has_failure()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("liveness probe fails");
    sync(&mut w).await; // kills it
    sync(&mut w).await; // restarts it (first restart is immediate)
    assert_eq!(w.record.containers[0].restart_count, 1);
    assert_eq!(h.runtime.calls_starting("stop_container").len(), 1);
    let last = h.status().container_statuses[0]
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, Some(143));
}

#[tokio::test]
async fn readiness_drives_ready() {
    let h = harness();
    h.runtime.exec_exit("web", 1);
    let mut p = pod(&[], &["web"], "Always");
    p.spec.as_mut().unwrap().containers[0].readiness_probe = Some(ApiProbe {
        exec: Some(ExecAction {
            command: vec!["ready?".into()],
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    sync(&mut w).await;
    let s = h.status();
    assert_eq!(s.container_statuses[0].ready, Some(false));
    let ready = s
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some("Ready"))
        .unwrap();
    assert_eq!(ready.status.as_deref(), Some("False"));
    h.runtime.exec_exit("web", 0);
    tokio::time::timeout(T, async {
        loop {
            if w.probes.get("web").is_some_and(|p| p.view().ready) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("readiness probe succeeds");
    sync(&mut w).await;
    assert_eq!(h.status().container_statuses[0].ready, Some(true));
}

#[tokio::test]
async fn status_is_written_only_on_change() {
    let h = harness();
    let p = pod(&[], &["web"], "Always");
    let (mut w, _tx) = h.worker(&p);
    sync(&mut w).await;
    sync(&mut w).await;
    let n = h.api.statuses().len();
    for _ in 0..3 {
        sync(&mut w).await;
    }
    assert_eq!(h.api.statuses().len(), n);
}
