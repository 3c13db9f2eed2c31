//! A recording, scriptable runtime for tests: every call is logged, and tests decide which
//! pulls fail, which containers fail to create, how containers exit and what exec returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    ContainerConfig, ContainerRunState, ContainerRuntime, ContainerStats, ContainerStatus,
    ExecOutput, ExecSession, ExecSpec, ImageRef, PullAuth, PullPolicy, Result, RuntimeError,
    SandboxConfig, SandboxStatus, now_rfc3339,
};

#[derive(Default)]
struct FakeState {
    calls: Vec<String>,
    next_id: u64,
    sandboxes: BTreeMap<String, (SandboxConfig, SandboxStatus)>,
    containers: BTreeMap<String, (ContainerConfig, ContainerStatus)>,
    images: BTreeSet<String>,
    fail_pull: BTreeSet<String>,
    fail_create: BTreeSet<String>,
    /// Container name → exit code it exits with as soon as it starts.
    exit_on_start: HashMap<String, i32>,
    /// Container name → exit code of every exec in it (probes).
    exec_exit: HashMap<String, i32>,
    /// Container name → ignores SIGTERM (stop waits for the timeout, then kills).
    ignore_term: BTreeSet<String>,
}

/// The recording fake. Containers "run" until a test makes them exit or they are stopped.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<FakeState>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, call: String) {
        self.lock().calls.push(call);
    }

    /// Every call so far, e.g. `start_container c1`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Calls whose text starts with `prefix`.
    pub fn calls_starting(&self, prefix: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }

    pub fn fail_pull(&self, image: &str, fail: bool) {
        let mut s = self.lock();
        if fail {
            s.fail_pull.insert(image.into());
        } else {
            s.fail_pull.remove(image);
        }
    }

    pub fn fail_create(&self, container: &str, fail: bool) {
        let mut s = self.lock();
        if fail {
            s.fail_create.insert(container.into());
        } else {
            s.fail_create.remove(container);
        }
    }

    /// Containers named `container` exit with `code` as soon as they start (`None`: they run).
    pub fn exit_on_start(&self, container: &str, code: Option<i32>) {
        let mut s = self.lock();
        match code {
            Some(c) => s.exit_on_start.insert(container.into(), c),
            None => s.exit_on_start.remove(container),
        };
    }

    /// Every exec in containers named `container` exits with `code`.
    pub fn exec_exit(&self, container: &str, code: i32) {
        self.lock().exec_exit.insert(container.into(), code);
    }

    pub fn ignore_term(&self, container: &str) {
        self.lock().ignore_term.insert(container.into());
    }

    /// Makes the running container named `container` exit now with `code` (and `reason`).
    pub fn exit(&self, container: &str, code: i32, reason: Option<&str>) {
        let mut s = self.lock();
        for (cfg, st) in s.containers.values_mut() {
            if cfg.name == container && st.state == ContainerRunState::Running {
                st.state = ContainerRunState::Exited;
                st.exit_code = Some(code);
                st.finished_at = Some(now_rfc3339());
                st.reason = Some(reason.unwrap_or(super::exit_reason(code)).to_string());
                st.pid = None;
            }
        }
    }

    /// Ids of the containers (any state) named `container`.
    pub fn containers_named(&self, container: &str) -> Vec<String> {
        self.lock()
            .containers
            .iter()
            .filter(|(_, (c, _))| c.name == container)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Number of containers currently running.
    pub fn running(&self) -> usize {
        self.lock()
            .containers
            .values()
            .filter(|(_, s)| s.state == ContainerRunState::Running)
            .count()
    }

    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn version(&self) -> String {
        "fake://0.1.0".into()
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("sb{}", s.next_id);
        s.calls.push(format!("run_pod_sandbox {}", config.name));
        let status = SandboxStatus {
            id: id.clone(),
            ready: true,
            ips: vec![format!("10.99.0.{}", s.next_id % 250 + 2)],
        };
        s.sandboxes.insert(id, (config.clone(), status.clone()));
        Ok(status)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.calls.push(format!("stop_pod_sandbox {id}"));
        if let Some((_, st)) = s.sandboxes.get_mut(id) {
            st.ready = false;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.calls.push(format!("remove_pod_sandbox {id}"));
        s.sandboxes.remove(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        self.lock()
            .sandboxes
            .get(id)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {id}")))
    }

    async fn pull_image(
        &self,
        image: &str,
        policy: PullPolicy,
        _auth: Option<&PullAuth>,
    ) -> Result<ImageRef> {
        let mut s = self.lock();
        s.calls.push(format!("pull_image {image}"));
        let present = s.images.contains(image);
        if policy == PullPolicy::Never && !present {
            return Err(RuntimeError::ImageNeverPull(image.into()));
        }
        if s.fail_pull.contains(image) && !(present && policy == PullPolicy::IfNotPresent) {
            return Err(RuntimeError::ImagePull {
                image: image.into(),
                message: "manifest unknown".into(),
            });
        }
        s.images.insert(image.into());
        Ok(ImageRef {
            image: image.into(),
            id: format!("{image}@sha256:{:064x}", image.len()),
        })
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let mut s = self.lock();
        s.calls.push(format!(
            "create_container {} {}",
            config.name, config.attempt
        ));
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(RuntimeError::NotFound(format!("sandbox {sandbox_id}")));
        }
        if s.fail_create.contains(&config.name) {
            return Err(RuntimeError::Create(format!(
                "cannot create {}: scripted failure",
                config.name
            )));
        }
        s.next_id += 1;
        let id = format!("{}-{}", config.name, s.next_id);
        let status = ContainerStatus {
            id: id.clone(),
            state: ContainerRunState::Created,
            created_at: now_rfc3339(),
            ..Default::default()
        };
        s.containers.insert(id.clone(), (config.clone(), status));
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.calls.push(format!("start_container {id}"));
        let name = s
            .containers
            .get(id)
            .map(|(c, _)| c.name.clone())
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        let exit = s.exit_on_start.get(&name).copied();
        let (_, st) = s.containers.get_mut(id).expect("checked above");
        st.state = ContainerRunState::Running;
        st.started_at = Some(now_rfc3339());
        st.pid = Some(4242);
        if let Some(code) = exit {
            st.state = ContainerRunState::Exited;
            st.exit_code = Some(code);
            st.finished_at = Some(now_rfc3339());
            st.reason = Some(super::exit_reason(code).into());
            st.pid = None;
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let mut s = self.lock();
        s.calls
            .push(format!("stop_container {id} {}s", timeout.as_secs()));
        let ignore = s
            .containers
            .get(id)
            .is_some_and(|(c, _)| s.ignore_term.contains(&c.name));
        if let Some((_, st)) = s.containers.get_mut(id)
            && st.state == ContainerRunState::Running
        {
            st.state = ContainerRunState::Exited;
            let code = if ignore { 137 } else { 143 };
            st.exit_code = Some(code);
            st.reason = Some("Error".into());
            st.finished_at = Some(now_rfc3339());
            st.pid = None;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.calls.push(format!("remove_container {id}"));
        s.containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.lock()
            .containers
            .get(id)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], _timeout: Duration) -> Result<ExecOutput> {
        let mut s = self.lock();
        s.calls.push(format!("exec_sync {id} {}", cmd.join(" ")));
        let name = s
            .containers
            .get(id)
            .map(|(c, _)| c.name.clone())
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        Ok(ExecOutput {
            exit_code: s.exec_exit.get(&name).copied().unwrap_or(0),
            ..Default::default()
        })
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        let mut s = self.lock();
        s.calls
            .push(format!("exec {id} {}", spec.command.join(" ")));
        let name = s
            .containers
            .get(id)
            .map(|(c, _)| c.name.clone())
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        Ok(ExecSession::exited(
            s.exec_exit.get(&name).copied().unwrap_or(0),
        ))
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        self.record(format!("container_stats {id}"));
        Ok(ContainerStats::default())
    }
}
