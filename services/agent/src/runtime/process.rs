//! The `process` runtime: each container is a plain host process (no root, no images: the
//! image is recorded, not pulled). The pod shares the node's network (pod IP = node IP).
//!
//! Each container runs under a small `/bin/sh` wrapper in its own process group that
//! forwards SIGTERM to the command and writes the exit code to a file, so the exit code is
//! known even when the agent restarted in between (the container is then not its child).
//! State lives in `<root>/containers/<id>.json` so a restarted agent re-adopts it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use super::{
    ContainerConfig, ContainerRunState, ContainerRuntime, ContainerStats, ContainerStatus,
    ExecOutput, ExecSession, ExecSpec, ImageRef, PullAuth, PullPolicy, Result, RuntimeError,
    SandboxConfig, SandboxStatus, now_rfc3339,
};

/// Runs the command, forwards SIGTERM/SIGINT (also one that came before the command
/// started), writes the command's PID to `$1.pid` once signals are handled, and records its
/// exit code in `$1`.
const WRAPPER: &str = r#"f=$1; shift
sig= child=
trap 'sig=TERM; [ -n "$child" ] && kill -TERM $child 2>/dev/null' TERM
trap 'sig=INT; [ -n "$child" ] && kill -INT $child 2>/dev/null' INT
"$@" &
child=$!
[ -n "$sig" ] && kill -$sig $child 2>/dev/null
echo $child > "$f.pid"
while :; do
  wait $child
  rc=$?
  kill -0 $child 2>/dev/null || break
done
echo $rc > "$f.tmp" && mv "$f.tmp" "$f"
exit $rc
"#;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProcContainer {
    id: String,
    sandbox_id: String,
    config: ContainerConfig,
    hostname: String,
    created_at: String,
    started_at: Option<String>,
    pid: Option<u32>,
    /// Start time of the process (clock ticks since boot), to tell a reused PID apart.
    start_ticks: Option<u64>,
    /// Set when the agent had to SIGKILL it (no exit code gets written then).
    killed: bool,
    finished_at: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProcSandbox {
    config: SandboxConfig,
    status: SandboxStatus,
}

/// Containers as host processes.
pub struct ProcessRuntime {
    root: PathBuf,
    containers: Mutex<HashMap<String, ProcContainer>>,
    sandboxes: Mutex<HashMap<String, ProcSandbox>>,
}

/// `/proc/<pid>/stat`: (state, starttime).
fn proc_stat(pid: u32) -> Option<(char, u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Fields after the command: state is 3rd overall, utime 14th, stime 15th, starttime 22nd.
    let utime = fields.get(11)?.parse().ok()?;
    let stime = fields.get(12)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, utime, stime, start))
}

/// `pid` and every process below it (the container's process tree: the supervising shell,
/// the command and whatever it started), from one scan of `/proc`.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let ppid = text
            .rfind(')')
            .and_then(|i| text.get(i + 2..))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

fn pid(p: u32) -> Option<Pid> {
    Pid::from_raw(p as i32)
}

impl ProcessRuntime {
    /// Opens (or creates) the runtime's state under `root`, re-reading saved containers.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("containers"))?;
        std::fs::create_dir_all(root.join("sandboxes"))?;
        std::fs::create_dir_all(root.join("exit"))?;
        let mut containers = HashMap::new();
        for e in std::fs::read_dir(root.join("containers"))?.flatten() {
            if let Ok(c) = std::fs::read(e.path())
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<ProcContainer>(&b).map_err(|e| e.to_string())
                })
            {
                containers.insert(c.id.clone(), c);
            }
        }
        let mut sandboxes = HashMap::new();
        for e in std::fs::read_dir(root.join("sandboxes"))?.flatten() {
            if e.path().extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            if let Ok(s) = std::fs::read(e.path())
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<ProcSandbox>(&b).map_err(|e| e.to_string()))
            {
                sandboxes.insert(s.status.id.clone(), s);
            }
        }
        Ok(Self {
            root: root.into(),
            containers: Mutex::new(containers),
            sandboxes: Mutex::new(sandboxes),
        })
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.root.join("exit").join(id)
    }

    fn save(&self, c: &ProcContainer) -> Result<()> {
        let path = self.root.join("containers").join(format!("{}.json", c.id));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(c).map_err(RuntimeError::other)?)?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<ProcContainer> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))
    }

    fn put(&self, c: ProcContainer) -> Result<()> {
        self.save(&c)?;
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(c.id.clone(), c);
        Ok(())
    }

    fn alive(c: &ProcContainer) -> bool {
        match (c.pid, proc_stat(c.pid.unwrap_or(0))) {
            (Some(_), Some((state, _, _, start))) => state != 'Z' && Some(start) == c.start_ticks,
            _ => false,
        }
    }

    fn status_of(&self, c: &ProcContainer) -> ContainerStatus {
        let mut st = ContainerStatus {
            id: c.id.clone(),
            created_at: c.created_at.clone(),
            started_at: c.started_at.clone(),
            ..Default::default()
        };
        if c.pid.is_none() {
            st.state = ContainerRunState::Created;
            return st;
        }
        let exit_file = self.exit_file(&c.id);
        if let Ok(text) = std::fs::read_to_string(&exit_file) {
            let code = text.trim().parse::<i32>().unwrap_or(255);
            st.state = ContainerRunState::Exited;
            st.exit_code = Some(code);
            st.reason = Some(super::exit_reason(code).into());
            st.finished_at = std::fs::metadata(&exit_file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .map(super::rfc3339_secs)
                .or_else(|| Some(now_rfc3339()));
            return st;
        }
        if Self::alive(c) {
            st.state = ContainerRunState::Running;
            st.pid = c.pid;
            return st;
        }
        // Gone without writing its exit code: killed.
        st.state = ContainerRunState::Exited;
        st.exit_code = Some(137);
        st.reason = Some("Error".into());
        st.finished_at = c.finished_at.clone().or_else(|| Some(now_rfc3339()));
        st
    }

    fn argv(config: &ContainerConfig) -> Vec<String> {
        config
            .command
            .iter()
            .chain(config.args.iter())
            .cloned()
            .collect()
    }

    fn base_env(hostname: &str) -> Vec<(String, String)> {
        vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| {
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
                }),
            ),
            ("HOSTNAME".into(), hostname.into()),
            ("HOME".into(), "/".into()),
        ]
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn version(&self) -> String {
        concat!("process://", env!("CARGO_PKG_VERSION")).into()
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        let id = format!("{}-{}", config.uid, config.attempt);
        let status = SandboxStatus {
            id: id.clone(),
            ready: true,
            ips: vec![],
        };
        let sb = ProcSandbox {
            config: config.clone(),
            status: status.clone(),
        };
        std::fs::create_dir_all(self.root.join("sandboxes").join(&id))?;
        std::fs::write(
            self.root.join("sandboxes").join(format!("{id}.json")),
            serde_json::to_vec(&sb).map_err(RuntimeError::other)?,
        )?;
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, sb);
        Ok(status)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let ids: Vec<String> = self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for c in ids {
            self.stop_container(&c, Duration::from_secs(2)).await?;
        }
        if let Some(sb) = self
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            sb.status.ready = false;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.stop_pod_sandbox(id).await?;
        let ids: Vec<String> = self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for c in ids {
            self.remove_container(&c).await?;
        }
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let _ = std::fs::remove_file(self.root.join("sandboxes").join(format!("{id}.json")));
        let _ = std::fs::remove_dir_all(self.root.join("sandboxes").join(id));
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        self.sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|s| s.status.clone())
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {id}")))
    }

    async fn pull_image(
        &self,
        image: &str,
        _policy: PullPolicy,
        _auth: Option<&PullAuth>,
    ) -> Result<ImageRef> {
        // Nothing to pull: the command runs on the host.
        Ok(ImageRef {
            image: image.into(),
            id: String::new(),
        })
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let hostname = self
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sandbox_id)
            .map(|s| s.config.hostname.clone())
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {sandbox_id}")))?;
        if Self::argv(config).is_empty() {
            return Err(RuntimeError::Create(
                "the process runtime needs a command (the image is not run)".into(),
            ));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let c = ProcContainer {
            id: id.clone(),
            sandbox_id: sandbox_id.into(),
            config: config.clone(),
            hostname,
            created_at: now_rfc3339(),
            started_at: None,
            pid: None,
            start_ticks: None,
            killed: false,
            finished_at: None,
        };
        self.put(c)?;
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.get(id)?;
        if let Some(dir) = c.config.log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&c.config.log_path)?;
        let cwd = c
            .config
            .working_dir
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("sandboxes").join(&c.sandbox_id));
        std::fs::create_dir_all(&cwd).ok();
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(self.exit_file(id))
            .args(Self::argv(&c.config))
            .env_clear()
            .envs(Self::base_env(&c.hostname))
            .envs(c.config.env.iter().cloned())
            .current_dir(&cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Start(format!("spawning /bin/sh: {e}")))?;
        let p = child
            .id()
            .ok_or_else(|| RuntimeError::Start("no pid".into()))?;
        // Reap the wrapper while this agent lives (after a restart, init does).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        c.pid = Some(p);
        c.start_ticks = proc_stat(p).map(|s| s.3);
        c.started_at = Some(now_rfc3339());
        self.put(c)?;
        // Started once the wrapper handles signals (it wrote the command's PID).
        let ready = self.exit_file(id).with_extension("pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() && !self.exit_file(id).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::debug!(container = %id, pid = p, "process container started");
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let mut c = self.get(id)?;
        if !Self::alive(&c) || self.exit_file(id).exists() {
            return Ok(());
        }
        let Some(pg) = c.pid.and_then(pid) else {
            return Ok(());
        };
        let _ = rustix::process::kill_process_group(pg, Signal::TERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !Self::alive(&c) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(container = %id, "grace period over; killing");
        let _ = rustix::process::kill_process_group(pg, Signal::KILL);
        c.killed = true;
        c.finished_at = Some(now_rfc3339());
        self.put(c.clone())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Self::alive(&c) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        if let Ok(c) = self.get(id)
            && Self::alive(&c)
        {
            self.stop_container(id, Duration::from_secs(2)).await?;
        }
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let _ = std::fs::remove_file(self.root.join("containers").join(format!("{id}.json")));
        let _ = std::fs::remove_file(self.exit_file(id));
        let _ = std::fs::remove_file(self.exit_file(id).with_extension("pid"));
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let c = self.get(id)?;
        Ok(self.status_of(&c))
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        let c = self.get(id)?;
        let Some((prog, args)) = cmd.split_first() else {
            return Err(RuntimeError::Other("empty command".into()));
        };
        let cwd = c
            .config
            .working_dir
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("sandboxes").join(&c.sandbox_id));
        let child = tokio::process::Command::new(prog)
            .args(args)
            .env_clear()
            .envs(Self::base_env(&c.hostname))
            .envs(c.config.env.iter().cloned())
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::Other(format!("exec {prog}: {e}")))?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(ExecOutput {
                exit_code: out.status.code().unwrap_or(137),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Ok(Err(e)) => Err(RuntimeError::other(e)),
            Err(_) => Err(RuntimeError::Other(format!(
                "command timed out after {}s",
                timeout.as_secs()
            ))),
        }
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        let c = self.get(id)?;
        let Some((prog, args)) = spec.command.split_first() else {
            return Err(RuntimeError::Other("empty command".into()));
        };
        let cwd = c
            .config
            .working_dir
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("sandboxes").join(&c.sandbox_id));
        // With a terminal, `setsid --ctty` makes the pty (its stdin) the command's
        // controlling terminal in a session of its own, so ^C and resizes reach it.
        // Without one, its own process group, so that stopping it stops what it started.
        let mut cmd = if spec.tty {
            let mut cmd = tokio::process::Command::new("setsid");
            cmd.args(["--ctty", "--", prog]);
            cmd
        } else {
            let mut cmd = tokio::process::Command::new(prog);
            cmd.process_group(0);
            cmd
        };
        cmd.args(args)
            .env_clear()
            .envs(Self::base_env(&c.hostname))
            .envs(spec.tty.then(|| ("TERM".to_string(), "xterm".to_string())))
            .envs(c.config.env.iter().cloned())
            .current_dir(cwd);
        super::exec::spawn(cmd, spec, super::exec::TerminalUse::Own)
            .map_err(|e| RuntimeError::Other(format!("exec {prog}: {e}")))
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let c = self.get(id)?;
        let Some(p) = c.pid else {
            return Ok(ContainerStats::default());
        };
        // The whole tree: the container's command runs under a supervising shell. (CPU of
        // children that already exited is in their parent's cutime, which is not counted:
        // short-lived helpers are missed, as they would be between two cgroup reads.)
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        let page = rustix::param::page_size() as u64;
        let (mut cpu, mut rss) = (0u64, 0u64);
        for p in process_tree(p) {
            cpu += proc_stat(p)
                .map(|(_, u, s, _)| (u + s) * 1_000_000_000 / ticks)
                .unwrap_or(0);
            rss += std::fs::read_to_string(format!("/proc/{p}/statm"))
                .ok()
                .and_then(|t| {
                    t.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .unwrap_or(0)
                * page;
        }
        Ok(ContainerStats {
            cpu_usage_nanos: cpu,
            memory_working_set_bytes: rss,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::TerminalSize;

    const T: Duration = Duration::from_secs(20);

    async fn wait_exit(rt: &ProcessRuntime, id: &str) -> ContainerStatus {
        tokio::time::timeout(T, async {
            loop {
                let st = rt.container_status(id).await.unwrap();
                if st.state == ContainerRunState::Exited {
                    return st;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("container exits")
    }

    fn config(dir: &Path, name: &str, argv: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            command: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("GREETING".into(), "hello".into())],
            log_path: dir.join("logs").join(name).join("0.log"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn runs_logs_and_reports_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        let sb = rt
            .run_pod_sandbox(&SandboxConfig {
                uid: "u1".into(),
                hostname: "pod-a".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let cfg = config(
            dir.path(),
            "echo",
            &["/bin/sh", "-c", "echo $GREETING from $HOSTNAME; exit 3"],
        );
        let id = rt.create_container(&sb.id, &cfg).await.unwrap();
        assert_eq!(
            rt.container_status(&id).await.unwrap().state,
            ContainerRunState::Created
        );
        rt.start_container(&id).await.unwrap();
        let st = wait_exit(&rt, &id).await;
        assert_eq!(st.exit_code, Some(3));
        assert_eq!(st.reason.as_deref(), Some("Error"));
        let log = std::fs::read_to_string(&cfg.log_path).unwrap();
        assert_eq!(log, "hello from pod-a\n");
        rt.remove_container(&id).await.unwrap();
        assert!(matches!(
            rt.container_status(&id).await,
            Err(RuntimeError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn graceful_stop_then_kill_and_readoption() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        let sb = rt
            .run_pod_sandbox(&SandboxConfig {
                uid: "u2".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let polite = rt
            .create_container(&sb.id, &config(dir.path(), "polite", &["sleep", "1000"]))
            .await
            .unwrap();
        let stubborn = rt
            .create_container(
                &sb.id,
                &config(
                    dir.path(),
                    "stubborn",
                    &["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
                ),
            )
            .await
            .unwrap();
        rt.start_container(&polite).await.unwrap();
        rt.start_container(&stubborn).await.unwrap();
        let pid = rt.container_status(&polite).await.unwrap().pid;
        assert!(pid.is_some());

        // A second runtime over the same state (an agent restart) sees the same process.
        let again = ProcessRuntime::new(dir.path()).unwrap();
        let st = again.container_status(&polite).await.unwrap();
        assert_eq!(st.state, ContainerRunState::Running);
        assert_eq!(st.pid, pid);

        again
            .stop_container(&polite, Duration::from_secs(10))
            .await
            .unwrap();
        let st = wait_exit(&again, &polite).await;
        assert_eq!(st.exit_code, Some(143), "SIGTERM: 128 + 15");

        again
            .stop_container(&stubborn, Duration::from_millis(300))
            .await
            .unwrap();
        let st = wait_exit(&again, &stubborn).await;
        assert_eq!(st.exit_code, Some(137), "SIGKILL after the grace period");
        again.remove_pod_sandbox(&sb.id).await.unwrap();
    }

    #[tokio::test]
    async fn exec_runs_with_the_container_env() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        let sb = rt
            .run_pod_sandbox(&SandboxConfig {
                uid: "u3".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let id = rt
            .create_container(&sb.id, &config(dir.path(), "c", &["sleep", "1000"]))
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        let out = tokio::time::timeout(
            T,
            rt.exec_sync(
                &id,
                &[
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo $GREETING; exit 4".into(),
                ],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(out.exit_code, 4);
        assert_eq!(out.stdout, b"hello\n");
        rt.remove_pod_sandbox(&sb.id).await.unwrap();
    }

    /// A running container of the process runtime, for exec tests.
    async fn running(dir: &Path, uid: &str) -> (ProcessRuntime, String, String) {
        let rt = ProcessRuntime::new(dir).unwrap();
        let sb = rt
            .run_pod_sandbox(&SandboxConfig {
                uid: uid.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let id = rt
            .create_container(&sb.id, &config(dir, "c", &["sleep", "1000"]))
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        (rt, sb.id, id)
    }

    async fn read_all(r: Option<super::super::exec::Reader>) -> String {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        if let Some(mut r) = r {
            tokio::time::timeout(T, r.read_to_end(&mut out))
                .await
                .unwrap()
                .unwrap();
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn interactive_exec_reads_stdin_to_its_end() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let (rt, sb, id) = running(dir.path(), "u4").await;
        let spec = ExecSpec {
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat; echo done $GREETING >&2; exit 5".into(),
            ],
            stdin: true,
            ..Default::default()
        };
        let mut s = rt.exec(&id, &spec).await.unwrap();
        let mut stdin = s.stdin.take().unwrap();
        stdin.write_all(b"hello\n").await.unwrap();
        stdin.shutdown().await.unwrap();
        drop(stdin);
        let (out, err) = tokio::join!(read_all(s.stdout.take()), read_all(s.stderr.take()));
        assert_eq!(out, "hello\n");
        assert_eq!(err, "done hello\n");
        assert_eq!(tokio::time::timeout(T, s.exit).await.unwrap().unwrap(), 5);

        // Without stdin the command reads an empty one.
        let spec = ExecSpec {
            command: vec!["/bin/sh".into(), "-c".into(), "read x; exit 3".into()],
            ..Default::default()
        };
        let s = rt.exec(&id, &spec).await.unwrap();
        assert!(s.stdin.is_none());
        assert_eq!(tokio::time::timeout(T, s.exit).await.unwrap().unwrap(), 3);
        rt.remove_pod_sandbox(&sb).await.unwrap();
    }

    #[tokio::test]
    async fn exec_with_a_terminal_of_its_own_and_resizes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let (rt, sb, id) = running(dir.path(), "u5").await;
        let spec = ExecSpec {
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                "tty; stty size; read x; echo got $x; stty size; echo to-stderr >&2".into(),
            ],
            stdin: true,
            tty: true,
            size: Some(TerminalSize {
                width: 100,
                height: 30,
            }),
        };
        let mut s = rt.exec(&id, &spec).await.unwrap();
        assert!(s.stderr.is_none(), "a terminal carries stderr on stdout");
        let mut stdout = s.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("30 100") {
            let n = tokio::time::timeout(T, stdout.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(
                n > 0,
                "output ended early: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        (s.resize.as_ref().unwrap())(TerminalSize {
            width: 120,
            height: 40,
        })
        .unwrap();
        let mut stdin = s.stdin.take().unwrap();
        stdin.write_all(b"abc\n").await.unwrap();
        let rest = read_all(Some(stdout)).await;
        let all = format!("{}{rest}", String::from_utf8_lossy(&seen));
        assert!(all.starts_with("/dev/pts/"), "{all:?}");
        assert!(all.contains("got abc\r\n40 120\r\nto-stderr"), "{all:?}");
        assert_eq!(tokio::time::timeout(T, s.exit).await.unwrap().unwrap(), 0);
        rt.remove_pod_sandbox(&sb).await.unwrap();
    }

    #[tokio::test]
    async fn an_exec_whose_client_went_away_stops_with_what_it_started() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let (rt, sb, id) = running(dir.path(), "u6").await;
        for tty in [false, true] {
            let spec = ExecSpec {
                command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "sleep 1000 & echo $!; wait".into(),
                ],
                tty,
                ..Default::default()
            };
            let mut s = rt.exec(&id, &spec).await.unwrap();
            let mut stdout = s.stdout.take().unwrap();
            let mut line = Vec::new();
            let mut b = [0u8; 64];
            while !line.contains(&b'\n') {
                let n = tokio::time::timeout(T, stdout.read(&mut b))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0);
                line.extend_from_slice(&b[..n]);
            }
            let pid: u32 = String::from_utf8_lossy(&line).trim().parse().unwrap();
            assert!(Path::new(&format!("/proc/{pid}")).exists());
            drop(s);
            tokio::time::timeout(T, async {
                while proc_stat(pid).is_some_and(|(state, ..)| state != 'Z') {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the background sleep (tty {tty}) was stopped"));
        }
        rt.remove_pod_sandbox(&sb).await.unwrap();
    }
}
