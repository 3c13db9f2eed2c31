//! The per-pod worker: one task per pod that drives the pod through its [`PodLifecycle`]
//! over the [`ContainerRuntime`], persists its [`PodRecord`] after every change, runs probes,
//! restarts containers with back-off, terminates gracefully and reports status.
//!
//! `sync` is idempotent and never told why it was woken (a pod change, a probe result, a
//! timer): it reads the pod and what the runtime observes, and acts on the difference.

pub mod backoff;
pub mod env;
pub mod probe;
pub mod record;
pub mod state;
pub mod status;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use navarch_api::core::v1::{Container, Pod, PodStatus};
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use crate::api::PodApi;
use crate::runtime::{
    ContainerConfig, ContainerRunState, ContainerRuntime, ContainerStatus, Mount, PullAuth,
    PullPolicy, Resources, RuntimeError, SandboxConfig, now_rfc3339,
};
use backoff::{BackoffPolicy, now_ms, rfc3339_ms};
use probe::Probes;
use record::{PodRecord, RecordStore, Terminated, Waiting};
use state::{PodEvent, PodLifecycle};
use status::{ProbeView, StatusInputs, go_duration};

/// Minimum grace period the kubelet gives a container (`minimumGracePeriodInSeconds`).
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// How often a running pod's ConfigMap/Secret volumes are compared with the API objects.
const VOLUME_REFRESH: Duration = Duration::from_secs(2);

/// What every worker of one agent shares.
#[derive(Clone)]
pub struct WorkerContext {
    pub node_name: String,
    pub host_ips: Vec<String>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub api: Arc<dyn PodApi>,
    pub records: RecordStore,
    /// Root of the pod log directories (`<ns>_<name>_<uid>/<container>/<n>.log`).
    pub log_root: PathBuf,
    /// Root of per-pod volume directories (emptyDir).
    pub volume_root: PathBuf,
    pub backoff: BackoffPolicy,
    /// Longest sleep between two syncs of a pod (the kubelet's relist period is 1 s).
    pub sync_period: Duration,
    /// Where pods find the cluster DNS (`/etc/resolv.conf`), and its domain.
    pub cluster_dns: crate::ClusterDns,
    pub cluster_domain: String,
    /// The node's pod CIDR once assigned ([`crate::ClusterDns::PodGateway`] derives from it).
    pub pod_cidr: watch::Receiver<Option<String>>,
    /// Where pods reach a ClusterIP when not at the ClusterIP itself.
    pub service_address: Option<crate::ServiceAddress>,
}

impl WorkerContext {
    /// The cluster DNS servers pods get now (empty: none, pods use the node's resolver).
    pub fn cluster_dns_servers(&self) -> Vec<String> {
        match &self.cluster_dns {
            crate::ClusterDns::None => vec![],
            crate::ClusterDns::Servers(s) => s.clone(),
            crate::ClusterDns::PodGateway => self
                .pod_cidr
                .borrow()
                .as_deref()
                .and_then(crate::dns::pod_gateway)
                .map(|ip| vec![ip.to_string()])
                .unwrap_or_default(),
        }
    }
}

/// A pod as the manager hands it to the worker: `None` once the API object is gone.
pub type PodUpdate = Option<Pod>;

/// What one `sync` asks for next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    After(Duration),
    Done,
}

/// The worker of one pod.
pub struct PodWorker {
    ctx: WorkerContext,
    record: PodRecord,
    updates: watch::Receiver<PodUpdate>,
    /// The newest copy of the pod (from the watch, or returned by our status writes).
    latest: Option<Pod>,
    wake: Arc<Notify>,
    probes: HashMap<String, Probes>,
    /// When the ConfigMap/Secret/downward API volumes were last brought up to date.
    volumes_refreshed: Option<std::time::Instant>,
    /// Whether the last refresh failed (said once at warn level, until it works again).
    volume_refresh_failing: bool,
    last_published: Option<PodStatus>,
    /// Set when the pod's API object was deleted by us or seen gone.
    gone: bool,
    /// Whether this pod's startup latency was recorded (once per pod).
    startup_recorded: bool,
}

fn rv(p: &Pod) -> i64 {
    p.metadata
        .as_ref()
        .and_then(|m| m.resource_version.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn container_name(c: &Container) -> String {
    c.name.clone().unwrap_or_default()
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

impl PodWorker {
    /// A worker for a pod: from its saved record (agent restart) or a new one.
    pub fn new(ctx: WorkerContext, record: PodRecord, updates: watch::Receiver<PodUpdate>) -> Self {
        Self {
            ctx,
            record,
            updates,
            latest: None,
            wake: Arc::new(Notify::new()),
            probes: HashMap::new(),
            volumes_refreshed: None,
            volume_refresh_failing: false,
            last_published: None,
            gone: false,
            startup_recorded: false,
        }
    }

    pub fn uid(&self) -> &str {
        &self.record.uid
    }

    /// Runs until the pod is finished and removed, or `stop` fires (agent shutdown: the
    /// containers are left running for the next agent to adopt).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let next = self.sync().await;
            let wait = match next {
                Next::Done => break,
                Next::After(d) => d,
            };
            tokio::select! {
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        // The manager dropped us without a final update: agent shutdown.
                        break;
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        tracing::debug!(pod = %self.pod_key(), "pod worker stopped");
    }

    fn pod_key(&self) -> String {
        format!("{}/{}", self.record.namespace, self.record.name)
    }

    fn persist(&self) {
        if let Err(error) = self.ctx.records.save(&self.record) {
            tracing::error!(pod = %self.pod_key(), %error, "cannot save pod record");
        }
    }

    fn transition(&mut self, event: PodEvent) {
        match self.record.lifecycle.transition(event) {
            Ok(next) => {
                tracing::info!(
                    pod = %self.pod_key(),
                    from = ?self.record.lifecycle,
                    to = ?next,
                    "pod lifecycle"
                );
                if next == PodLifecycle::Running && !self.startup_recorded {
                    self.startup_recorded = true;
                    self.record_startup();
                }
                self.record.lifecycle = next;
                self.persist();
            }
            Err(e) => tracing::error!(pod = %self.pod_key(), error = %e, "refused transition"),
        }
    }

    /// Records the time from the pod's creation to now, when its containers have started.
    fn record_startup(&self) {
        let created = self
            .latest
            .as_ref()
            .and_then(|p| p.metadata.as_ref())
            .and_then(|m| m.creation_timestamp.as_deref())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if let Some(created) = created {
            let seconds = (jiff::Timestamp::now() - created).total(jiff::Unit::Second);
            if let Ok(seconds) = seconds {
                crate::metrics::METRICS
                    .pod_startup
                    .record(seconds.max(0.0), &[]);
            }
        }
    }

    /// One pass: observe, act, report. Returns when to come back.
    async fn sync(&mut self) -> Next {
        let update = self.updates.borrow_and_update().clone();
        match update {
            None => {
                self.gone = true;
                self.terminate(None).await;
                self.cleanup_and_forget();
                Next::Done
            }
            Some(pod) => {
                if self.latest.as_ref().is_none_or(|l| rv(&pod) >= rv(l)) {
                    self.latest = Some(pod);
                }
                let pod = self.latest.clone().expect("just set");
                let meta = pod.metadata.clone().unwrap_or_default();
                if meta.deletion_timestamp.is_some() {
                    let grace = meta.deletion_grace_period_seconds;
                    self.terminate(grace).await;
                    self.publish(&pod).await;
                    if !self.gone {
                        match self
                            .ctx
                            .api
                            .delete_final(
                                &self.record.namespace,
                                &self.record.name,
                                &self.record.uid,
                            )
                            .await
                        {
                            Ok(()) => {
                                tracing::info!(pod = %self.pod_key(), "pod deleted");
                                self.gone = true;
                            }
                            Err(error) => {
                                tracing::warn!(pod = %self.pod_key(), %error, "cannot finish pod deletion");
                                return Next::After(self.ctx.sync_period);
                            }
                        }
                    }
                    self.cleanup_and_forget();
                    return Next::Done;
                }
                // The first start of a pod continues the trace that created and bound it.
                let span = if self.record.sandbox.is_none() {
                    navarch_telemetry::linked_span!(
                        "pod.start",
                        navarch_telemetry::traces::link_key(
                            "",
                            "pods",
                            &self.record.namespace,
                            &self.record.name
                        ),
                        component = "agent",
                        pod = %self.pod_key(),
                        uid = %self.record.uid,
                    )
                } else {
                    tracing::Span::none()
                };
                let next = self.sync_pod(&pod).instrument(span.clone()).await;
                self.publish(&pod).instrument(span).await;
                next
            }
        }
    }

    /// Removes what is left (exited containers, sandbox) and the record.
    fn cleanup_and_forget(&mut self) {
        self.probes.clear();
        if let Err(error) = self.ctx.records.remove(&self.record.uid) {
            tracing::warn!(pod = %self.pod_key(), %error, "cannot remove pod record");
        }
        let dir = self.ctx.volume_root.join(&self.record.uid);
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn observe(&mut self) -> HashMap<String, ContainerStatus> {
        let mut observed = HashMap::new();
        let ids: Vec<(bool, String, String)> = self
            .record
            .init_containers
            .iter()
            .map(|c| (true, c.name.clone(), c.id.clone()))
            .chain(
                self.record
                    .containers
                    .iter()
                    .map(|c| (false, c.name.clone(), c.id.clone())),
            )
            .filter_map(|(init, name, id)| id.map(|id| (init, name, id)))
            .collect();
        for (init, name, id) in ids {
            match self.ctx.runtime.container_status(&id).await {
                Ok(st) => {
                    observed.insert(id, st);
                }
                Err(RuntimeError::NotFound(_)) => {
                    tracing::warn!(pod = %self.pod_key(), container = %name, %id, "container vanished");
                    let rec = self.record.container_mut(init, &name);
                    rec.id = None;
                    rec.last_terminated = Some(Terminated {
                        container_id: format!("{}://{id}", self.ctx.runtime.name()),
                        exit_code: 137,
                        reason: "ContainerStatusUnknown".into(),
                        message: Some(
                            "The container could not be located when the pod was terminated".into(),
                        ),
                        ..Default::default()
                    });
                    self.persist();
                }
                Err(error) => {
                    tracing::warn!(pod = %self.pod_key(), container = %name, %error, "container status failed");
                }
            }
        }
        observed
    }

    async fn sync_pod(&mut self, pod: &Pod) -> Next {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or("Always".into());
        let mut next = self.ctx.sync_period;
        if self.record.start_time.is_none() {
            self.record.start_time = Some(now_rfc3339());
            self.persist();
        }
        if self.record.lifecycle == PodLifecycle::Completed
            || self.record.lifecycle == PodLifecycle::Terminated
        {
            return Next::After(self.ctx.sync_period.max(Duration::from_secs(10)));
        }

        // Sandbox.
        if let Some(sb) = self.record.sandbox.clone() {
            let healthy = match self.ctx.runtime.pod_sandbox_status(&sb.id).await {
                Ok(s) => s.ready,
                Err(RuntimeError::NotFound(_)) => false,
                Err(error) => {
                    tracing::warn!(pod = %self.pod_key(), %error, "sandbox status failed");
                    true
                }
            };
            if !healthy && self.record.lifecycle.can_start_containers() {
                tracing::warn!(pod = %self.pod_key(), sandbox = %sb.id, "sandbox lost; recreating the pod's containers");
                self.stop_all(MIN_GRACE, true).await;
                let _ = self.ctx.runtime.remove_pod_sandbox(&sb.id).await;
                self.record.sandbox = None;
                self.transition(PodEvent::SandboxLost);
            }
        }
        if self.record.lifecycle.can_create_sandbox() {
            // Images first: a pod whose images cannot be pulled gets no sandbox (namespaces,
            // IP) until they can.
            let all = spec
                .init_containers
                .iter()
                .map(|c| (true, c))
                .chain(spec.containers.iter().map(|c| (false, c)));
            for (init, c) in all {
                match self.pull(pod, c, init).await {
                    Ok(r) => {
                        let rec = self.record.container_mut(init, &container_name(c));
                        rec.image = Some(r);
                        if rec.waiting.take().is_some() {
                            self.persist();
                        }
                    }
                    Err(wait) => return Next::After(wait),
                }
            }
            let meta = pod.metadata.clone().unwrap_or_default();
            let servers = self.ctx.cluster_dns_servers();
            let resolv = crate::dns::pod_resolv_conf(
                &spec,
                &self.record.namespace,
                &crate::dns::ClusterDnsView {
                    servers: &servers,
                    domain: &self.ctx.cluster_domain,
                },
                &crate::dns::ResolvConf::parse(
                    &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                ),
            );
            let config = SandboxConfig {
                name: self.record.name.clone(),
                namespace: self.record.namespace.clone(),
                uid: self.record.uid.clone(),
                attempt: self.record.sandbox_attempt,
                hostname: spec
                    .hostname
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| self.record.name.chars().take(63).collect()),
                host_network: spec.host_network.unwrap_or(false),
                labels: meta.labels.clone(),
                log_directory: self.pod_log_dir(),
                dns_servers: resolv.servers,
                dns_searches: resolv.searches,
                dns_options: resolv.options,
                port_mappings: spec
                    .containers
                    .iter()
                    .flat_map(|c| &c.ports)
                    .filter_map(|p| {
                        let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
                        Some(crate::runtime::PortMapping {
                            host_port,
                            container_port: u16::try_from(p.container_port?).ok()?,
                            protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                            host_ip: p.host_ip.clone().unwrap_or_default(),
                        })
                    })
                    .collect(),
            };
            match self.ctx.runtime.run_pod_sandbox(&config).await {
                Ok(sb) => {
                    tracing::info!(pod = %self.pod_key(), sandbox = %sb.id, ips = ?sb.ips, "sandbox ready");
                    self.record.sandbox = Some(sb);
                    self.record.sandbox_attempt += 1;
                    // A new sandbox reruns init containers: forget the old instances.
                    for c in &mut self.record.init_containers {
                        c.id = None;
                    }
                    self.transition(PodEvent::SandboxReady);
                    if spec.init_containers.is_empty() {
                        self.transition(PodEvent::Initialized);
                    }
                }
                Err(error) => {
                    tracing::warn!(pod = %self.pod_key(), %error, "cannot create pod sandbox");
                    return Next::After(self.ctx.backoff.initial.min(Duration::from_secs(5)));
                }
            }
        }

        let observed = self.observe().await;

        if self.record.lifecycle == PodLifecycle::Initializing {
            let mut all_done = true;
            for c in &spec.init_containers {
                let name = container_name(c);
                let st = self
                    .record
                    .container(true, &name)
                    .and_then(|r| r.id.as_ref())
                    .and_then(|id| observed.get(id))
                    .cloned();
                match st.as_ref().map(|s| &s.state) {
                    Some(ContainerRunState::Running) => {
                        all_done = false;
                        break;
                    }
                    Some(ContainerRunState::Exited)
                        if st.as_ref().and_then(|s| s.exit_code) == Some(0) =>
                    {
                        let rec = self.record.container_mut(true, &name);
                        if rec.waiting.take().is_some() {
                            self.persist();
                        }
                        continue;
                    }
                    Some(ContainerRunState::Exited) => {
                        all_done = false;
                        if policy == "Never" {
                            self.transition(PodEvent::Finished);
                            self.stop_sandbox().await;
                        } else if let Some(d) = self
                            .restart(pod, c, true, st.as_ref().expect("exited"))
                            .await
                        {
                            next = next.min(d);
                        }
                        break;
                    }
                    Some(ContainerRunState::Created) => {
                        all_done = false;
                        self.start_created(true, &name).await;
                        break;
                    }
                    _ => {
                        all_done = false;
                        if let Some(d) = self.ensure_started(pod, c, true).await {
                            next = next.min(d);
                        }
                        break;
                    }
                }
            }
            if all_done && self.record.lifecycle == PodLifecycle::Initializing {
                self.transition(PodEvent::Initialized);
            }
        }

        if self.record.lifecycle == PodLifecycle::Running {
            self.refresh_volumes(pod).await;
            let observed = self.observe().await;
            let mut finished = 0;
            for c in &spec.containers {
                let name = container_name(c);
                let st = self
                    .record
                    .container(false, &name)
                    .and_then(|r| r.id.as_ref())
                    .and_then(|id| observed.get(id))
                    .cloned();
                match st.as_ref().map(|s| s.state.clone()) {
                    Some(ContainerRunState::Running) => {
                        let failure = self.probes.get(&name).and_then(|p| p.take_failure());
                        if let Some(why) = failure {
                            let id = st.as_ref().map(|s| s.id.clone()).unwrap_or_default();
                            tracing::info!(pod = %self.pod_key(), container = %name, reason = %why, "container failed a probe, will be restarted");
                            self.probes.remove(&name);
                            let grace = c
                                .liveness_probe
                                .as_ref()
                                .and_then(|p| p.termination_grace_period_seconds)
                                .or(spec.termination_grace_period_seconds)
                                .unwrap_or(30);
                            self.kill(c, &id, grace_duration(Some(grace))).await;
                            next = Duration::ZERO;
                        }
                    }
                    Some(ContainerRunState::Exited) => {
                        let st = st.expect("exited");
                        let code = st.exit_code.unwrap_or(137);
                        if should_restart(&policy, code) {
                            if let Some(d) = self.restart(pod, c, false, &st).await {
                                next = next.min(d);
                            }
                        } else {
                            finished += 1;
                        }
                    }
                    Some(ContainerRunState::Created) => self.start_created(false, &name).await,
                    _ => {
                        if let Some(d) = self.ensure_started(pod, c, false).await {
                            next = next.min(d);
                        }
                    }
                }
            }
            if finished == spec.containers.len() && !spec.containers.is_empty() {
                self.probes.clear();
                self.transition(PodEvent::Finished);
                self.stop_sandbox().await;
            }
        }
        self.update_probes(&spec).await;
        Next::After(next)
    }

    fn pod_log_dir(&self) -> PathBuf {
        self.ctx.log_root.join(format!(
            "{}_{}_{}",
            self.record.namespace, self.record.name, self.record.uid
        ))
    }

    /// Starts probes for running containers, drops those of containers that stopped.
    async fn update_probes(&mut self, spec: &navarch_api::core::v1::PodSpec) {
        if !self.record.lifecycle.can_probe() {
            self.probes.clear();
            return;
        }
        // The kubelet probes the pod IP: a pod on the host's network (no IPs of its own)
        // is probed at the node's address.
        let host = match self.record.sandbox.as_ref() {
            Some(s) if !s.ips.is_empty() => self.ctx.runtime.probe_host(s),
            _ => Some(self.addresses().0)
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into()),
        };
        for c in &spec.containers {
            let name = container_name(c);
            let Some(id) = self
                .record
                .container(false, &name)
                .and_then(|r| r.id.clone())
            else {
                self.probes.remove(&name);
                continue;
            };
            let running = matches!(
                self.ctx
                    .runtime
                    .container_status(&id)
                    .await
                    .map(|s| s.state),
                Ok(ContainerRunState::Running)
            );
            if !running {
                self.probes.remove(&name);
                continue;
            }
            if self.probes.get(&name).is_none_or(|p| p.container_id != id) {
                self.probes.insert(
                    name.clone(),
                    Probes::start(
                        self.ctx.runtime.clone(),
                        &id,
                        c,
                        host.clone(),
                        self.wake.clone(),
                    ),
                );
            }
        }
    }

    /// Starts a container that was created but not started (the agent stopped in between).
    async fn start_created(&mut self, init: bool, name: &str) {
        let Some(id) = self.record.container(init, name).and_then(|r| r.id.clone()) else {
            return;
        };
        if let Err(error) = self.ctx.runtime.start_container(&id).await {
            tracing::warn!(pod = %self.pod_key(), container = %name, %error, "start failed");
        }
    }

    /// Decides about an exited container that the policy restarts: back-off, or a new
    /// instance now. Returns when to look again.
    async fn restart(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        exited: &ContainerStatus,
    ) -> Option<Duration> {
        let name = container_name(c);
        let now = now_ms();
        let finished = exited
            .finished_at
            .as_deref()
            .map(rfc3339_ms)
            .filter(|t| *t > 0)
            .unwrap_or(now);
        let policy = self.ctx.backoff;
        // Status times have second precision; the exit cannot predate the last restart.
        let finished = finished.max(
            self.record
                .container(init, &name)
                .map(|r| r.backoff.last_update_ms)
                .unwrap_or(0),
        );
        let pod_ref = format!(
            "{}_{}({})",
            self.record.name, self.record.namespace, self.record.uid
        );
        let rec = self.record.container_mut(init, &name);
        if policy.in_backoff_since(&rec.backoff, finished, now) {
            let waiting = Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {} restarting failed container={name} pod={pod_ref}",
                    go_duration(rec.backoff.delay_ms)
                )),
            };
            let wait = (policy.window_end_ms(&rec.backoff, finished) - now).max(0) as u64;
            if rec.waiting.as_ref() != Some(&waiting) {
                rec.waiting = Some(waiting);
                self.persist();
            }
            return Some(Duration::from_millis(wait));
        }
        policy.next(&mut rec.backoff, now);
        rec.last_terminated = Some(Terminated::from_status(self.ctx.runtime.name(), exited));
        rec.restart_count += 1;
        crate::metrics::METRICS.container_restarts.add(1, &[]);
        rec.id = None;
        rec.waiting = None;
        let restart_count = rec.restart_count;
        self.persist();
        tracing::info!(pod = %self.pod_key(), container = %name, restart_count, exit_code = ?exited.exit_code, "restarting container");
        if let Err(error) = self.ctx.runtime.remove_container(&exited.id).await {
            tracing::warn!(pod = %self.pod_key(), container = %name, %error, "cannot remove exited container");
        }
        self.ensure_started(pod, c, init).await
    }

    /// Pulls `c`'s image (unless a failure back-off holds); on failure records the waiting
    /// reason and returns when to try again.
    async fn pull(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
    ) -> Result<crate::runtime::ImageRef, Duration> {
        let name = container_name(c);
        let image = c.image.clone().unwrap_or_default();
        let now = now_ms();
        let bo = self.ctx.backoff;
        {
            let rec = self.record.container_mut(init, &name);
            if rec.last_failure_ms > 0
                && bo.in_backoff_since(&rec.failure_backoff, rec.last_failure_ms, now)
            {
                let wait = (bo.window_end_ms(&rec.failure_backoff, rec.last_failure_ms) - now)
                    .max(0) as u64;
                if let Some(w) = &rec.waiting
                    && w.reason == "ErrImagePull"
                {
                    rec.waiting = Some(Waiting {
                        reason: "ImagePullBackOff".into(),
                        message: Some(format!("Back-off pulling image \"{image}\"")),
                    });
                    self.persist();
                }
                return Err(Duration::from_millis(wait));
            }
        }
        let policy = PullPolicy::from_spec(c.image_pull_policy.as_deref(), &image);
        let auth = self.pull_auth(pod).await;
        match self
            .ctx
            .runtime
            .pull_image(&image, policy, auth.as_ref())
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => {
                let (reason, message) = match &e {
                    RuntimeError::ImageNeverPull(_) => (
                        "ErrImageNeverPull",
                        format!(
                            "Container image \"{image}\" is not present with pull policy of Never"
                        ),
                    ),
                    _ => ("ErrImagePull", e.to_string()),
                };
                tracing::warn!(pod = %self.pod_key(), container = %name, %image, error = %e, "image pull failed");
                Err(self.fail(init, &name, reason, message))
            }
        }
    }

    /// Pulls, creates and starts a new instance of `c` (unless a failure back-off holds).
    async fn ensure_started(&mut self, pod: &Pod, c: &Container, init: bool) -> Option<Duration> {
        let name = container_name(c);
        let image_ref = match self.pull(pod, c, init).await {
            Ok(r) => r,
            Err(wait) => return Some(wait),
        };
        let (pod_ip, host_ip) = self.addresses();
        let env = match env::container_env(
            self.ctx.api.as_ref(),
            pod,
            c,
            &pod_ip,
            &host_ip,
            self.ctx.service_address.as_ref(),
        )
        .await
        {
            Ok(env) => env,
            Err(e) => {
                return Some(self.fail(init, &name, "CreateContainerConfigError", e.0));
            }
        };
        let vars: std::collections::BTreeMap<String, String> = env.iter().cloned().collect();
        let rec = self.record.container_mut(init, &name);
        rec.image = Some(image_ref.clone());
        let attempt = rec.restart_count.max(0) as u32;
        let log_path = self
            .pod_log_dir()
            .join(&name)
            .join(format!("{attempt}.log"));
        let sc = c.security_context.clone().unwrap_or_default();
        let psc = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let config = ContainerConfig {
            name: name.clone(),
            attempt,
            image: image_ref,
            command: c.command.iter().map(|a| env::expand(a, &vars)).collect(),
            args: c.args.iter().map(|a| env::expand(a, &vars)).collect(),
            env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            log_path,
            resources: resources(c),
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            labels: [
                (
                    "io.kubernetes.pod.name".to_string(),
                    self.record.name.clone(),
                ),
                (
                    "io.kubernetes.pod.namespace".to_string(),
                    self.record.namespace.clone(),
                ),
                ("io.kubernetes.pod.uid".to_string(), self.record.uid.clone()),
                ("io.kubernetes.container.name".to_string(), name.clone()),
            ]
            .into(),
            run_as_user: sc.run_as_user.or(psc.run_as_user).map(|u| u as u32),
            run_as_group: sc.run_as_group.or(psc.run_as_group).map(|g| g as u32),
            privileged: sc.privileged.unwrap_or(false),
            read_only_root_filesystem: sc.read_only_root_filesystem.unwrap_or(false),
            mounts: match self.mounts(pod, c).await {
                Ok(m) => m,
                Err(message) => {
                    tracing::warn!(pod = %self.pod_key(), container = %name, %message, "volume setup failed");
                    return Some(self.fail(init, &name, "ContainerCreating", message));
                }
            },
        };
        let sandbox_id = self
            .record
            .sandbox
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default();
        let id = match self
            .ctx
            .runtime
            .create_container(&sandbox_id, &config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(pod = %self.pod_key(), container = %name, error = %e, "create failed");
                return Some(self.fail(init, &name, "CreateContainerError", e.to_string()));
            }
        };
        let rec = self.record.container_mut(init, &name);
        rec.id = Some(id.clone());
        rec.waiting = None;
        rec.last_failure_ms = 0;
        rec.failure_backoff = Default::default();
        self.persist();
        if let Err(error) = self.ctx.runtime.start_container(&id).await {
            tracing::warn!(pod = %self.pod_key(), container = %name, %error, "start failed");
        } else {
            tracing::info!(pod = %self.pod_key(), container = %name, %id, attempt, "container started");
        }
        None
    }

    /// Records a failure to start a container (waiting reason + back-off).
    fn fail(&mut self, init: bool, name: &str, reason: &str, message: String) -> Duration {
        let now = now_ms();
        let bo = self.ctx.backoff;
        let rec = self.record.container_mut(init, name);
        bo.next(&mut rec.failure_backoff, now);
        rec.last_failure_ms = now;
        rec.waiting = Some(Waiting {
            reason: reason.into(),
            message: Some(message),
        });
        let wait = Duration::from_millis(rec.failure_backoff.delay_ms);
        self.persist();
        wait
    }

    fn addresses(&self) -> (String, String) {
        let host = self.ctx.host_ips.first().cloned().unwrap_or_default();
        let pod = self
            .record
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned())
            .unwrap_or_else(|| host.clone());
        (pod, host)
    }

    /// Volume mounts the agent can serve: emptyDir, hostPath, and ConfigMap, Secret,
    /// downward API and projected volumes (written here, kept up to date while running).
    async fn mounts(&self, pod: &Pod, c: &Container) -> Result<Vec<Mount>, String> {
        let volumes = pod
            .spec
            .as_ref()
            .map(|s| s.volumes.clone())
            .unwrap_or_default();
        let mut out = vec![];
        for m in &c.volume_mounts {
            let vname = m.name.clone().unwrap_or_default();
            let Some(v) = volumes
                .iter()
                .find(|v| v.name.as_deref() == Some(vname.as_str()))
            else {
                continue;
            };
            let host_path = if v.empty_dir.is_some() {
                let p = self.volume_dir(&vname);
                if let Err(error) = std::fs::create_dir_all(&p) {
                    tracing::warn!(pod = %self.pod_key(), volume = %vname, %error, "cannot create emptyDir");
                }
                p
            } else if let Some(h) = &v.host_path {
                PathBuf::from(h.path.clone().unwrap_or_default())
            } else if volumes::is_projected(v) {
                self.write_volume(pod, v).await?
            } else {
                tracing::debug!(pod = %self.pod_key(), volume = %vname, "volume type not served yet");
                continue;
            };
            // A subPath mounts one entry of the volume (it is not updated, as in Kubernetes).
            let host_path = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
                Some(sub) => host_path.join(sub),
                None => host_path,
            };
            out.push(Mount {
                host_path,
                container_path: m.mount_path.clone().unwrap_or_default(),
                // ConfigMap, Secret, downward API and projected volumes are read-only.
                read_only: m.read_only.unwrap_or(false) || volumes::is_projected(v),
            });
        }
        Ok(out)
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.ctx.volume_root.join(&self.record.uid).join(name)
    }

    /// Brings one ConfigMap/Secret/downward API/projected volume up to date; its directory.
    async fn write_volume(
        &self,
        pod: &Pod,
        v: &navarch_api::core::v1::Volume,
    ) -> Result<PathBuf, String> {
        let name = v.name.clone().unwrap_or_default();
        let (pod_ip, _) = self.addresses();
        let files = volumes::files(self.ctx.api.as_ref(), pod, v, &pod_ip)
            .await
            .unwrap_or_else(|| Ok(Default::default()))
            .map_err(|e| format!("MountVolume.SetUp failed for volume {name:?} : {e}"))?;
        let dir = self.volume_dir(&name);
        match volumes::write_atomic(&dir, &files) {
            Ok(true) => {
                tracing::info!(pod = %self.pod_key(), volume = %name, files = files.len(), "volume contents written")
            }
            Ok(false) => {}
            Err(e) => {
                return Err(format!(
                    "MountVolume.SetUp failed for volume {name:?} : writing {}: {e}",
                    dir.display()
                ));
            }
        }
        Ok(dir)
    }

    /// Running pods see ConfigMap and Secret changes, as the kubelet's periodic sync does.
    async fn refresh_volumes(&mut self, pod: &Pod) {
        if self
            .volumes_refreshed
            .is_some_and(|t| t.elapsed() < VOLUME_REFRESH)
        {
            return;
        }
        self.volumes_refreshed = Some(std::time::Instant::now());
        let volumes = pod
            .spec
            .as_ref()
            .map(|s| s.volumes.clone())
            .unwrap_or_default();
        let mut failed = false;
        for v in volumes.iter().filter(|v| volumes::is_projected(v)) {
            if let Err(message) = self.write_volume(pod, v).await {
                // Typically the control plane is unreachable: once per outage, not per period.
                if self.volume_refresh_failing {
                    tracing::debug!(pod = %self.pod_key(), %message, "volume refresh failed; keeping the old contents");
                } else {
                    tracing::warn!(pod = %self.pod_key(), %message, "volume refresh failed; keeping the old contents (repeats are logged at debug level)");
                }
                failed = true;
            }
        }
        if self.volume_refresh_failing && !failed {
            tracing::info!(pod = %self.pod_key(), "volume refresh works again");
        }
        self.volume_refresh_failing = failed;
    }

    async fn pull_auth(&self, pod: &Pod) -> Option<PullAuth> {
        use base64::Engine as _;
        let secrets = pod.spec.as_ref()?.image_pull_secrets.clone();
        for s in secrets {
            let name = s.name.unwrap_or_default();
            let Ok(secret) = self.ctx.api.secret(&self.record.namespace, &name).await else {
                continue;
            };
            let raw = secret.data.get(".dockerconfigjson").cloned().or_else(|| {
                secret
                    .string_data
                    .get(".dockerconfigjson")
                    .map(|s| s.clone().into_bytes())
            });
            let Some(raw) = raw else { continue };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&raw) else {
                continue;
            };
            if let Some(auths) = json.get("auths").and_then(|a| a.as_object()) {
                for entry in auths.values() {
                    let user = entry.get("username").and_then(|v| v.as_str());
                    let pass = entry.get("password").and_then(|v| v.as_str());
                    if let (Some(u), Some(p)) = (user, pass) {
                        return Some(PullAuth {
                            username: u.into(),
                            password: p.into(),
                        });
                    }
                    if let Some(auth) = entry.get("auth").and_then(|v| v.as_str())
                        && let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(auth)
                        && let Some((u, p)) = String::from_utf8_lossy(&dec).split_once(':')
                    {
                        return Some(PullAuth {
                            username: u.into(),
                            password: p.into(),
                        });
                    }
                }
            }
        }
        None
    }

    /// Runs the preStop hook, then stops the container within `grace`.
    async fn kill(&self, c: &Container, id: &str, grace: Duration) {
        let started = std::time::Instant::now();
        let mut left = grace;
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) {
            let run = async {
                if let Some(exec) = &hook.exec {
                    let _ = self.ctx.runtime.exec_sync(id, &exec.command, grace).await;
                } else if let Some(sleep) = &hook.sleep {
                    tokio::time::sleep(Duration::from_secs(
                        sleep.seconds.unwrap_or(0).max(0) as u64
                    ))
                    .await;
                }
            };
            let _ = tokio::time::timeout(grace, run).await;
            left = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
        }
        if let Err(error) = self.ctx.runtime.stop_container(id, left).await {
            tracing::warn!(pod = %self.pod_key(), %id, %error, "stop failed");
        }
    }

    /// Stops every running container (app containers first, in parallel), keeping their
    /// final state; with `remove`, removes them too.
    async fn stop_all(&mut self, grace: Duration, remove: bool) {
        self.probes.clear();
        let spec = self
            .latest
            .as_ref()
            .and_then(|p| p.spec.clone())
            .unwrap_or_default();
        let mut targets = vec![];
        for init in [false, true] {
            let list = if init {
                &self.record.init_containers
            } else {
                &self.record.containers
            };
            for rec in list {
                if let Some(id) = &rec.id {
                    let spec_c = spec
                        .containers
                        .iter()
                        .chain(&spec.init_containers)
                        .find(|c| c.name.as_deref() == Some(rec.name.as_str()))
                        .cloned()
                        .unwrap_or_default();
                    targets.push((init, rec.name.clone(), id.clone(), spec_c));
                }
            }
        }
        let this = &*self;
        let kills = targets.iter().map(|(_, _, id, c)| async move {
            let running = matches!(
                this.ctx.runtime.container_status(id).await.map(|s| s.state),
                Ok(ContainerRunState::Running)
            );
            if running {
                this.kill(c, id, grace).await;
            }
        });
        futures::future::join_all(kills).await;
        for (init, name, id, _) in targets {
            let st = self.ctx.runtime.container_status(&id).await.ok();
            let scheme = self.ctx.runtime.name();
            let rec = self.record.container_mut(init, &name);
            rec.waiting = None;
            if let Some(st) = st {
                rec.final_state = Some(Terminated::from_status(scheme, &st));
            }
            if remove {
                rec.id = None;
            }
            if remove && let Err(error) = self.ctx.runtime.remove_container(&id).await {
                tracing::warn!(%id, %error, "cannot remove container");
            }
        }
        self.persist();
    }

    async fn stop_sandbox(&mut self) {
        if let Some(sb) = &self.record.sandbox
            && let Err(error) = self.ctx.runtime.stop_pod_sandbox(&sb.id).await
        {
            tracing::warn!(pod = %self.pod_key(), %error, "cannot stop sandbox");
        }
        if let Some(sb) = &mut self.record.sandbox {
            sb.ready = false;
        }
        self.persist();
    }

    /// Stops every container (grace from the deletion, else the spec, at least 2 s),
    /// removes containers and sandbox, and ends in `Terminated`.
    async fn terminate(&mut self, deletion_grace: Option<i64>) {
        if !self.record.lifecycle.can_terminate() {
            return;
        }
        let spec_grace = self
            .latest
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.termination_grace_period_seconds);
        let grace = grace_duration(deletion_grace.or(spec_grace));
        if self.record.lifecycle != PodLifecycle::Completed {
            self.transition(PodEvent::Terminate);
        }
        tracing::info!(pod = %self.pod_key(), grace_s = grace.as_secs(), "terminating pod");
        self.stop_all(grace, true).await;
        if let Some(sb) = self.record.sandbox.clone() {
            let _ = self.ctx.runtime.stop_pod_sandbox(&sb.id).await;
            if let Err(error) = self.ctx.runtime.remove_pod_sandbox(&sb.id).await {
                tracing::warn!(pod = %self.pod_key(), %error, "cannot remove sandbox");
            }
            if let Some(s) = &mut self.record.sandbox {
                s.ready = false;
            }
        }
        self.transition(if self.record.lifecycle == PodLifecycle::Completed {
            PodEvent::Terminate
        } else {
            PodEvent::Stopped
        });
    }

    /// Writes the status if it differs from what was last written.
    async fn publish(&mut self, pod: &Pod) {
        if self.gone {
            return;
        }
        let mut base = pod.clone();
        if let Some(last) = &self.last_published {
            base.status = Some(last.clone());
        }
        let observed = self.observe_quiet().await;
        let mut probes: HashMap<String, ProbeView> = HashMap::new();
        for (name, p) in &self.probes {
            probes.insert(name.clone(), p.view());
        }
        let now = now_rfc3339();
        let status = status::pod_status(
            &base,
            &self.record,
            &StatusInputs {
                observed: &observed,
                probes: &probes,
                host_ips: &self.ctx.host_ips,
                scheme: self.ctx.runtime.name(),
                now: &now,
            },
        );
        let current = self.last_published.as_ref().or(pod.status.as_ref());
        if current == Some(&status) {
            self.last_published = Some(status);
            return;
        }
        match self.ctx.api.update_status(pod, status.clone()).await {
            Ok(Some(updated)) => {
                tracing::debug!(pod = %self.pod_key(), phase = ?status.phase, "status updated");
                self.last_published = Some(status);
                if self.latest.as_ref().is_none_or(|l| rv(&updated) >= rv(l)) {
                    self.latest = Some(updated);
                }
            }
            Ok(None) => {
                tracing::info!(pod = %self.pod_key(), "pod is gone; not writing status");
            }
            Err(error) => {
                tracing::warn!(pod = %self.pod_key(), %error, "status update failed; will retry");
                self.wake_later();
            }
        }
    }

    fn wake_later(&self) {
        let wake = self.wake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            wake.notify_one();
        });
    }

    async fn observe_quiet(&self) -> HashMap<String, ContainerStatus> {
        let mut out = HashMap::new();
        for rec in self
            .record
            .init_containers
            .iter()
            .chain(&self.record.containers)
        {
            if let Some(id) = &rec.id
                && let Ok(st) = self.ctx.runtime.container_status(id).await
            {
                out.insert(id.clone(), st);
            }
        }
        out
    }
}

fn grace_duration(secs: Option<i64>) -> Duration {
    Duration::from_secs(secs.unwrap_or(30).max(0) as u64).max(MIN_GRACE)
}

/// Runtime resources from the container's requests and limits.
pub fn resources(c: &Container) -> Resources {
    let res = c.resources.clone().unwrap_or_default();
    let q = |m: &std::collections::BTreeMap<String, navarch_api::meta::v1::Quantity>, k: &str| {
        m.get(k)
            .and_then(|q| q.value.parse::<navarch_api::Quantity>().ok())
    };
    Resources {
        cpu_limit_millis: q(&res.limits, "cpu").map(|q| q.milli_value()),
        cpu_request_millis: q(&res.requests, "cpu")
            .or_else(|| q(&res.limits, "cpu"))
            .map(|q| q.milli_value()),
        memory_limit_bytes: q(&res.limits, "memory").map(|q| q.value()),
    }
}

#[cfg(test)]
mod tests;
