//! The `hollow` runtime: simulated containers that "run" with no process at all, so one
//! machine can host thousands of nodes for scale tests (like kubemark / kwok).
//!
//! Containers start after `start_delay` and run forever, unless `run_for` is set (then they
//! exit with `exit_code`). A container may override both with the env vars
//! `NAVARCH_HOLLOW_RUN_SECONDS` and `NAVARCH_HOLLOW_EXIT_CODE`. Exec (probes) succeeds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    ContainerConfig, ContainerRunState, ContainerRuntime, ContainerStats, ContainerStatus,
    ExecOutput, ExecSession, ExecSpec, ImageRef, PullAuth, PullPolicy, Result, RuntimeError,
    SandboxConfig, SandboxStatus, now_rfc3339,
};
use crate::worker::backoff::now_ms;

/// How simulated containers behave.
#[derive(Clone, Copy, Debug, Default)]
pub struct HollowBehaviour {
    pub start_delay: Duration,
    pub run_for: Option<Duration>,
    pub exit_code: i32,
}

struct HollowContainer {
    sandbox: String,
    created_at: String,
    /// Unix ms when it started / will exit; 0 = not yet.
    started_ms: i64,
    exit_ms: Option<i64>,
    exit_code: i32,
    stopped: Option<(i64, i32)>,
}

/// Simulated containers; cheap enough for thousands of nodes in one process.
pub struct HollowRuntime {
    behaviour: HollowBehaviour,
    next: AtomicU64,
    /// Pod IPs come from this /16 prefix (e.g. `10.200`), one per sandbox.
    ip_prefix: [u8; 2],
    sandboxes: Mutex<HashMap<String, SandboxStatus>>,
    containers: Mutex<HashMap<String, HollowContainer>>,
}

fn ms_to_rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(super::rfc3339_secs)
        .unwrap_or_else(|_| now_rfc3339())
}

impl HollowRuntime {
    pub fn new(behaviour: HollowBehaviour, ip_prefix: [u8; 2]) -> Self {
        Self {
            behaviour,
            next: AtomicU64::new(1),
            ip_prefix,
            sandboxes: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashMap::new()),
        }
    }

    fn status_of(&self, id: &str, c: &HollowContainer, now: i64) -> ContainerStatus {
        let mut st = ContainerStatus {
            id: id.into(),
            created_at: c.created_at.clone(),
            ..Default::default()
        };
        if c.started_ms == 0 {
            st.state = ContainerRunState::Created;
            return st;
        }
        if now < c.started_ms {
            st.state = ContainerRunState::Created;
            return st;
        }
        st.started_at = Some(ms_to_rfc3339(c.started_ms));
        let end = match (c.stopped, c.exit_ms) {
            (Some((at, code)), _) => Some((at, code)),
            (None, Some(at)) if now >= at => Some((at, c.exit_code)),
            _ => None,
        };
        match end {
            Some((at, code)) => {
                st.state = ContainerRunState::Exited;
                st.exit_code = Some(code);
                st.reason = Some(super::exit_reason(code).into());
                st.finished_at = Some(ms_to_rfc3339(at));
            }
            None => st.state = ContainerRunState::Running,
        }
        st
    }
}

#[async_trait]
impl ContainerRuntime for HollowRuntime {
    fn name(&self) -> &'static str {
        "hollow"
    }

    fn version(&self) -> String {
        concat!("hollow://", env!("CARGO_PKG_VERSION")).into()
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{}", config.uid, config.attempt);
        let ips = if config.host_network {
            vec![]
        } else {
            vec![format!(
                "{}.{}.{}.{}",
                self.ip_prefix[0],
                self.ip_prefix[1],
                (n / 250) % 256,
                n % 250 + 2
            )]
        };
        let status = SandboxStatus {
            id: id.clone(),
            ready: true,
            ips,
        };
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, status.clone());
        Ok(status)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let now = now_ms();
        for c in self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values_mut()
            .filter(|c| c.sandbox == id)
        {
            if c.stopped.is_none() {
                c.stopped = Some((now, 137));
            }
        }
        if let Some(s) = self
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            s.ready = false;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, c| c.sandbox != id);
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {id}")))
    }

    async fn pull_image(
        &self,
        image: &str,
        _policy: PullPolicy,
        _auth: Option<&PullAuth>,
    ) -> Result<ImageRef> {
        Ok(ImageRef {
            image: image.into(),
            id: format!("{image}@sha256:{}", "0".repeat(64)),
        })
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{sandbox_id}-{}-{n}", config.name);
        let env = |k: &str| {
            config
                .env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let run_for = env("NAVARCH_HOLLOW_RUN_SECONDS")
            .and_then(|v| v.parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .or(self.behaviour.run_for);
        let exit_code = env("NAVARCH_HOLLOW_EXIT_CODE")
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.behaviour.exit_code);
        let c = HollowContainer {
            sandbox: sandbox_id.into(),
            created_at: now_rfc3339(),
            started_ms: 0,
            exit_ms: run_for.map(|d| d.as_millis() as i64),
            exit_code,
            stopped: None,
        };
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), c);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let now = now_ms();
        let start = now + self.behaviour.start_delay.as_millis() as i64;
        let mut all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        let c = all
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        c.started_ms = start;
        // `exit_ms` held the run time until now.
        c.exit_ms = c.exit_ms.map(|run| start + run);
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout: Duration) -> Result<()> {
        let now = now_ms();
        let mut all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = all.get_mut(id) {
            let running = self.status_of(id, c, now).state == ContainerRunState::Running;
            if running && c.stopped.is_none() {
                c.stopped = Some((now, 143));
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let now = now_ms();
        let all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        let c = all
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        Ok(self.status_of(id, c, now))
    }

    fn simulates_network(&self) -> bool {
        true
    }

    async fn exec_sync(&self, id: &str, _cmd: &[String], _timeout: Duration) -> Result<ExecOutput> {
        self.container_status(id).await?;
        Ok(ExecOutput::default())
    }

    async fn exec(&self, id: &str, _spec: &ExecSpec) -> Result<ExecSession> {
        self.container_status(id).await?;
        Ok(ExecSession::exited(0))
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        self.container_status(id).await?;
        Ok(ContainerStats {
            cpu_usage_nanos: 0,
            memory_working_set_bytes: 4 * 1024 * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn containers_run_then_exit_as_configured() {
        let rt = HollowRuntime::new(
            HollowBehaviour {
                run_for: Some(Duration::from_millis(0)),
                exit_code: 0,
                ..Default::default()
            },
            [10, 200],
        );
        let sb = rt
            .run_pod_sandbox(&SandboxConfig {
                uid: "u".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(sb.ips[0].starts_with("10.200."));
        let cfg = ContainerConfig {
            name: "c".into(),
            env: vec![("NAVARCH_HOLLOW_EXIT_CODE".into(), "7".into())],
            ..Default::default()
        };
        let id = rt.create_container(&sb.id, &cfg).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let st = rt.container_status(&id).await.unwrap();
        assert_eq!(st.state, ContainerRunState::Exited);
        assert_eq!(st.exit_code, Some(7));

        let forever = HollowRuntime::new(HollowBehaviour::default(), [10, 201]);
        let sb = forever
            .run_pod_sandbox(&SandboxConfig::default())
            .await
            .unwrap();
        let id = forever
            .create_container(&sb.id, &ContainerConfig::default())
            .await
            .unwrap();
        forever.start_container(&id).await.unwrap();
        assert_eq!(
            forever.container_status(&id).await.unwrap().state,
            ContainerRunState::Running
        );
        forever.stop_container(&id, Duration::ZERO).await.unwrap();
        assert_eq!(
            forever.container_status(&id).await.unwrap().exit_code,
            Some(143)
        );
    }
}
