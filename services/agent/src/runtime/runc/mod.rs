//! The `runc` runtime: real OCI containers.
//!
//! - Images: pulled from registries ([`image`]), unpacked once per manifest; each container's
//!   rootfs is an overlay (image rootfs below, its own upper dir above).
//! - Sandbox: the pod's network, IPC and UTS namespaces pinned by bind mounts (like CRI-O's
//!   `pinns`, no pause process), the network wired by CNI plugins ([`cni`]).
//! - Containers: an OCI bundle ([`spec`]) run by `runc run` under a small `/bin/sh` shim in
//!   its own process group that outlives the agent and writes the exit code to a file; stdout
//!   and stderr go to the container's log file. State is kept in
//!   `<root>/containers/<id>/state.json`, so a restarted agent re-adopts running containers.
//! - Cgroups ([`cgroup`]): `/<parent>/<pod-uid>/<id>/ctr`, memory limit one level up so
//!   OOM kills are detected.

pub mod cgroup;
pub mod cni;
pub mod image;
pub mod spec;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    ContainerConfig, ContainerRunState, ContainerRuntime, ContainerStats, ContainerStatus,
    ExecOutput, ExecSession, ExecSpec, ImageRef, PullAuth, PullPolicy, Result, RuntimeError,
    SandboxConfig, SandboxStatus, now_rfc3339,
};
use cgroup::ContainerCgroup;
use cni::CniNetwork;
use image::{ImageStore, LocalImage};

/// The shim: runs `runc run` in the foreground (it forwards I/O and reaps the container)
/// and records the exit code. `$1` runc, `$2` state root, `$3` bundle, `$4` id.
const SHIM: &str = r#"r=$1 root=$2 b=$3 id=$4
"$r" --root "$root" run --bundle "$b" --pid-file "$b/pid" "$id" </dev/null
rc=$?
echo $rc > "$b/exit.tmp" && mv "$b/exit.tmp" "$b/exit"
"#;

/// How the runtime is set up.
#[derive(Clone, Debug)]
pub struct RuncConfig {
    /// Bundles, sandboxes, images and runc's own state live here.
    pub root: PathBuf,
    pub runc: PathBuf,
    pub network: CniNetwork,
    /// Top cgroup of the agent's containers.
    pub cgroup_parent: String,
    /// Registries reached over plain HTTP besides those on loopback addresses.
    pub insecure_registries: Vec<String>,
}

impl RuncConfig {
    /// Defaults under `data_dir`: `navarch0` bridge on 10.88.0.0/16, cgroup `navarch`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("runc"),
            runc: find_in_path("runc").unwrap_or_else(|| PathBuf::from("runc")),
            network: CniNetwork::default_for(data_dir),
            cgroup_parent: "navarch".into(),
            insecure_registries: vec![],
        }
    }
}

/// `name` found in `$PATH` (and the sbin directories, which root's PATH may lack).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Whether this machine can run the runc runtime: root, runc, and the CNI plugins. `Err`
/// says what is missing.
pub fn available(config: &RuncConfig) -> std::result::Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not running as root".into());
    }
    if !config.runc.is_file() {
        return Err("runc is not installed".into());
    }
    if !config.network.plugins_present() {
        return Err("the CNI plugins (bridge, host-local, loopback) are not installed".into());
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SandboxState {
    config: SandboxConfig,
    status: SandboxStatus,
    cni_result: Option<serde_json::Value>,
    network_attached: bool,
    /// The pod subnet the network was attached with.
    #[serde(default)]
    subnet: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ContainerState {
    id: String,
    sandbox_id: String,
    config: ContainerConfig,
    image: LocalImage,
    cgroup: ContainerCgroup,
    created_at: String,
    started_at: Option<String>,
    /// Host PID of the container's init and of the shim.
    pid: Option<u32>,
    pid_ticks: Option<u64>,
    shim_pid: Option<u32>,
    shim_ticks: Option<u64>,
}

/// `/proc/<pid>/stat` state and start time.
fn proc_state(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.first()?.chars().next()?, f.get(19)?.parse().ok()?))
}

fn alive(pid: Option<u32>, ticks: Option<u64>) -> bool {
    match pid.and_then(proc_state) {
        Some((state, start)) => state != 'Z' && ticks.is_none_or(|t| t == start),
        None => false,
    }
}

/// Whether `path` is a mounted namespace file.
fn is_ns_mount(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == NSFS_MAGIC)
}

/// The runc runtime.
pub struct RuncRuntime {
    cfg: RuncConfig,
    images: ImageStore,
    version: String,
    /// The pod subnet: `cfg.network.subnet` when set, else the node's podCIDR once known.
    pod_cidr: std::sync::RwLock<Option<String>>,
}

impl RuncRuntime {
    pub fn new(cfg: RuncConfig) -> std::io::Result<Self> {
        for d in ["containers", "sandboxes", "state"] {
            std::fs::create_dir_all(cfg.root.join(d))?;
        }
        std::fs::create_dir_all(&cfg.network.ipam_dir)?;
        let images = ImageStore::open(&cfg.root.join("images"), cfg.insecure_registries.clone())?;
        let version = std::process::Command::new(&cfg.runc)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(2))
                    .map(|v| v.split('+').next().unwrap_or(v).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let pod_cidr = (!cfg.network.subnet.is_empty()).then(|| cfg.network.subnet.clone());
        Ok(Self {
            cfg,
            images,
            version,
            pod_cidr: std::sync::RwLock::new(pod_cidr),
        })
    }

    pub fn config(&self) -> &RuncConfig {
        &self.cfg
    }

    fn current_pod_cidr(&self) -> Option<String> {
        self.pod_cidr
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The pod network on the current pod CIDR (`subnet`: the one a sandbox was attached
    /// with, for DEL). Not ready until the node has a pod CIDR.
    fn network(&self, subnet: Option<&str>) -> Result<CniNetwork> {
        let subnet = subnet
            .map(str::to_string)
            .or_else(|| self.current_pod_cidr())
            .ok_or_else(|| {
                RuntimeError::Sandbox(
                    "network not ready: the node has no pod CIDR yet (node.spec.podCIDR)".into(),
                )
            })?;
        Ok(CniNetwork {
            subnet,
            ..self.cfg.network.clone()
        })
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join("sandboxes").join(id)
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.cfg.root.join("containers").join(id)
    }

    fn state_root(&self) -> PathBuf {
        self.cfg.root.join("state")
    }

    fn load_sandbox(&self, id: &str) -> Result<SandboxState> {
        let bytes = std::fs::read(self.sandbox_dir(id).join("sandbox.json"))
            .map_err(|_| RuntimeError::NotFound(format!("sandbox {id}")))?;
        serde_json::from_slice(&bytes).map_err(RuntimeError::other)
    }

    fn save_sandbox(&self, s: &SandboxState) -> Result<()> {
        let path = self.sandbox_dir(&s.status.id).join("sandbox.json");
        write_atomic(&path, &serde_json::to_vec(s).map_err(RuntimeError::other)?)
    }

    fn load(&self, id: &str) -> Result<ContainerState> {
        let bytes = std::fs::read(self.bundle(id).join("state.json"))
            .map_err(|_| RuntimeError::NotFound(format!("container {id}")))?;
        serde_json::from_slice(&bytes).map_err(RuntimeError::other)
    }

    fn save(&self, c: &ContainerState) -> Result<()> {
        write_atomic(
            &self.bundle(&c.id).join("state.json"),
            &serde_json::to_vec(c).map_err(RuntimeError::other)?,
        )
    }

    async fn runc(&self, args: &[&str], timeout: Duration) -> Result<std::process::Output> {
        let child = tokio::process::Command::new(&self.cfg.runc)
            .arg("--root")
            .arg(self.state_root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::Other(format!("running runc: {e}")))?;
        tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| RuntimeError::Other(format!("runc {} timed out", args.join(" "))))?
            .map_err(RuntimeError::other)
    }

    fn ns_paths(&self, id: &str) -> (PathBuf, PathBuf, PathBuf) {
        let d = self.sandbox_dir(id).join("ns");
        (d.join("net"), d.join("ipc"), d.join("uts"))
    }

    fn unpin(&self, id: &str) {
        let (net, ipc, uts) = self.ns_paths(id);
        for p in [net, ipc, uts] {
            if is_ns_mount(&p) {
                let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
            }
        }
    }

    fn container_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.cfg.root.join("containers"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn status_of(&self, c: &ContainerState) -> ContainerStatus {
        let mut st = ContainerStatus {
            id: c.id.clone(),
            created_at: c.created_at.clone(),
            started_at: c.started_at.clone(),
            ..Default::default()
        };
        if c.shim_pid.is_none() {
            st.state = ContainerRunState::Created;
            return st;
        }
        let exit = self.bundle(&c.id).join("exit");
        if let Ok(text) = std::fs::read_to_string(&exit) {
            let code = text.trim().parse::<i32>().unwrap_or(255);
            st.state = ContainerRunState::Exited;
            st.exit_code = Some(code);
            st.reason = Some(if c.cgroup.oom_killed(code) {
                "OOMKilled".into()
            } else {
                super::exit_reason(code).into()
            });
            st.finished_at = std::fs::metadata(&exit)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .map(super::rfc3339_secs);
            if code != 0 && c.pid.is_none() {
                // runc itself failed before the process ran.
                st.reason = Some("StartError".into());
                st.message = Some(log_tail(&c.config.log_path));
            }
            return st;
        }
        if alive(c.pid, c.pid_ticks) || alive(c.shim_pid, c.shim_ticks) {
            st.state = ContainerRunState::Running;
            st.pid = c.pid;
            return st;
        }
        st.state = ContainerRunState::Exited;
        st.exit_code = Some(137);
        st.reason = Some(if c.cgroup.oom_killed(137) {
            "OOMKilled".into()
        } else {
            "Error".into()
        });
        st.finished_at = Some(now_rfc3339());
        st
    }

    async fn kill(&self, id: &str, signal: &str) {
        let _ = self
            .runc(&["kill", id, signal], Duration::from_secs(10))
            .await;
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join("\n")
}

fn pod_files(dir: &Path, cfg: &SandboxConfig, ips: &[String]) -> std::io::Result<()> {
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    for ip in ips {
        hosts.push_str(&format!("{ip}\t{}\n", cfg.hostname));
    }
    std::fs::write(dir.join("hosts"), hosts)?;
    let resolv = crate::dns::ResolvConf {
        servers: cfg.dns_servers.clone(),
        searches: cfg.dns_searches.clone(),
        options: cfg.dns_options.clone(),
    }
    .render();
    std::fs::write(dir.join("resolv.conf"), resolv)?;
    std::fs::write(dir.join("hostname"), format!("{}\n", cfg.hostname))
}

/// The process spec of one `runc exec --process`: the container's own process (user, env,
/// working directory, capabilities) with the exec's command and terminal; removed with the
/// exec.
struct ExecProcessFile(PathBuf);

impl ExecProcessFile {
    fn write(bundle: &Path, spec: &ExecSpec) -> Result<Self> {
        let config: serde_json::Value = std::fs::read(bundle.join("config.json"))
            .map_err(RuntimeError::other)
            .and_then(|b| serde_json::from_slice(&b).map_err(RuntimeError::other))?;
        let mut process = config
            .get("process")
            .cloned()
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| RuntimeError::Other("the container's spec has no process".into()))?;
        process["args"] = serde_json::json!(spec.command);
        process["terminal"] = serde_json::Value::Bool(true);
        match spec.size {
            Some(s) if s.width > 0 && s.height > 0 => {
                process["consoleSize"] = serde_json::json!({"width": s.width, "height": s.height});
            }
            _ => {
                if let Some(p) = process.as_object_mut() {
                    p.remove("consoleSize");
                }
            }
        }
        if let Some(env) = process.get_mut("env").and_then(|e| e.as_array_mut()) {
            env.push(serde_json::Value::String("TERM=xterm".into()));
        }
        let path = bundle.join(format!("exec-{}.json", uuid::Uuid::new_v4().simple()));
        let bytes = serde_json::to_vec(&process).map_err(RuntimeError::other)?;
        std::fs::write(&path, bytes).map_err(RuntimeError::other)?;
        Ok(Self(path))
    }
}

impl Drop for ExecProcessFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[async_trait]
impl ContainerRuntime for RuncRuntime {
    fn name(&self) -> &'static str {
        "runc"
    }

    fn version(&self) -> String {
        format!("runc://{}", self.version)
    }

    fn update_pod_cidr(&self, cidr: &str) {
        let mut current = self.pod_cidr.write().unwrap_or_else(|e| e.into_inner());
        if current.as_deref() != Some(cidr) {
            tracing::info!(pod_cidr = cidr, previous = ?*current, "pod network configured");
            *current = Some(cidr.to_string());
        }
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.sandbox_dir(&id);
        std::fs::create_dir_all(dir.join("ns"))?;
        let (net, ipc, uts) = self.ns_paths(&id);
        for p in [&net, &ipc, &uts] {
            std::fs::write(p, b"")?;
        }
        let undo = |this: &Self| {
            this.unpin(&id);
            let _ = std::fs::remove_dir_all(this.sandbox_dir(&id));
        };
        // Pin the namespaces: `unshare` creates them and bind-mounts them on the files.
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.arg(format!("--ipc={}", ipc.display()))
            .arg(format!("--uts={}", uts.display()));
        if !config.host_network {
            cmd.arg(format!("--net={}", net.display()));
        }
        let out = cmd
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| RuntimeError::Sandbox(format!("running unshare: {e}")))?;
        if !out.status.success() {
            undo(self);
            return Err(RuntimeError::Sandbox(format!(
                "pinning namespaces: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut state = SandboxState {
            config: config.clone(),
            status: SandboxStatus {
                id: id.clone(),
                ready: true,
                ips: vec![],
            },
            cni_result: None,
            network_attached: false,
            subnet: None,
        };
        if !config.host_network {
            let network = match self.network(None) {
                Ok(n) => n,
                Err(e) => {
                    undo(self);
                    return Err(e);
                }
            };
            state.subnet = Some(network.subnet.clone());
            match network.add(&id, &net, &config.port_mappings).await {
                Ok(result) => {
                    state.status.ips = cni::result_ips(&result);
                    state.cni_result = Some(result);
                    state.network_attached = true;
                }
                Err(e) => {
                    undo(self);
                    return Err(e);
                }
            }
        }
        if let Err(e) = pod_files(&dir, config, &state.status.ips)
            .map_err(RuntimeError::from)
            .and_then(|()| self.save_sandbox(&state))
        {
            if state.network_attached
                && let Ok(network) = self.network(state.subnet.as_deref())
            {
                let _ = network
                    .del(&id, &net, state.cni_result.as_ref(), &config.port_mappings)
                    .await;
            }
            undo(self);
            return Err(e);
        }
        tracing::info!(sandbox = %id, pod = %format!("{}/{}", config.namespace, config.name), ips = ?state.status.ips, "pod sandbox ready");
        Ok(state.status)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.load_sandbox(id)?;
        for cid in self.container_ids() {
            if let Ok(c) = self.load(&cid)
                && c.sandbox_id == id
                && self.status_of(&c).state == ContainerRunState::Running
            {
                self.stop_container(&cid, Duration::ZERO).await?;
            }
        }
        if state.network_attached {
            let (net, _, _) = self.ns_paths(id);
            self.network(state.subnet.as_deref())?
                .del(
                    id,
                    &net,
                    state.cni_result.as_ref(),
                    &state.config.port_mappings,
                )
                .await?;
            state.network_attached = false;
        }
        state.status.ready = false;
        self.save_sandbox(&state)
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let state = match self.load_sandbox(id) {
            Ok(s) => s,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod_sandbox(id).await?;
        for cid in self.container_ids() {
            if let Ok(c) = self.load(&cid)
                && c.sandbox_id == id
            {
                self.remove_container(&cid).await?;
            }
        }
        self.unpin(id);
        std::fs::remove_dir_all(self.sandbox_dir(id))?;
        cgroup::remove_pod(&self.cfg.cgroup_parent, &state.config.uid);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        let mut state = self.load_sandbox(id)?;
        let (net, ipc, _) = self.ns_paths(id);
        let pinned = is_ns_mount(&ipc) && (state.config.host_network || is_ns_mount(&net));
        state.status.ready = state.status.ready && pinned;
        Ok(state.status)
    }

    async fn pull_image(
        &self,
        image: &str,
        policy: PullPolicy,
        auth: Option<&PullAuth>,
    ) -> Result<ImageRef> {
        Ok(self.images.pull(image, policy, auth).await?.reference)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let sandbox = self.load_sandbox(sandbox_id)?;
        let image = self.images.local(&config.image.image).ok_or_else(|| {
            RuntimeError::Create(format!("image {} is not present", config.image.image))
        })?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let bundle = self.bundle(&id);
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(bundle.join(d))?;
        }
        let undo = |mounted: bool| {
            if mounted {
                let _ = rustix::mount::unmount(
                    bundle.join("rootfs"),
                    rustix::mount::UnmountFlags::DETACH,
                );
            }
            let _ = std::fs::remove_dir_all(&bundle);
        };
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.rootfs.display(),
            bundle.join("upper").display(),
            bundle.join("work").display()
        );
        let data = std::ffi::CString::new(options).map_err(RuntimeError::other)?;
        if let Err(e) = rustix::mount::mount(
            "overlay",
            bundle.join("rootfs"),
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(data.as_c_str()),
        ) {
            undo(false);
            return Err(RuntimeError::Create(format!(
                "mounting the container rootfs: {e}"
            )));
        }
        let cg = ContainerCgroup {
            parent: self.cfg.cgroup_parent.clone(),
            pod: sandbox.config.uid.clone(),
            container: id.clone(),
        };
        if let Err(e) = cg.prepare(config.resources.memory_limit_bytes) {
            undo(true);
            cg.remove();
            return Err(RuntimeError::Create(format!("setting up cgroups: {e}")));
        }
        let sdir = self.sandbox_dir(sandbox_id);
        let (net, ipc, uts) = self.ns_paths(sandbox_id);
        let ns = spec::PodNamespaces {
            net: (!sandbox.config.host_network).then_some(net.as_path()),
            ipc: &ipc,
            uts: &uts,
            hostname: &sandbox.config.hostname,
            hosts_file: &sdir.join("hosts"),
            resolv_file: &sdir.join("resolv.conf"),
            hostname_file: &sdir.join("hostname"),
        };
        let mut runtime_spec = spec::runtime_spec(
            config,
            &image.config,
            &bundle.join("rootfs"),
            &ns,
            &cg.runc_path(),
        );
        if cg.limit_in_spec()
            && let Some(limit) = config.resources.memory_limit_bytes
        {
            runtime_spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": limit});
        }
        if spec::process_args(config, &image.config).is_empty() {
            undo(true);
            cg.remove();
            return Err(RuntimeError::Create("no command specified".into()));
        }
        let state = ContainerState {
            id: id.clone(),
            sandbox_id: sandbox_id.into(),
            config: config.clone(),
            image,
            cgroup: cg.clone(),
            created_at: now_rfc3339(),
            started_at: None,
            pid: None,
            pid_ticks: None,
            shim_pid: None,
            shim_ticks: None,
        };
        let written = serde_json::to_vec_pretty(&runtime_spec)
            .map_err(RuntimeError::other)
            .and_then(|b| write_atomic(&bundle.join("config.json"), &b))
            .and_then(|()| self.save(&state));
        if let Err(e) = written {
            undo(true);
            cg.remove();
            return Err(e);
        }
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        let bundle = self.bundle(id);
        if let Some(dir) = c.config.log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&c.config.log_path)?;
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(SHIM)
            .arg("navarch-shim")
            .arg(&self.cfg.runc)
            .arg(self.state_root())
            .arg(&bundle)
            .arg(id)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| RuntimeError::Start(format!("spawning the shim: {e}")))?;
        let shim = child.id();
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        c.shim_pid = shim;
        c.shim_ticks = shim.and_then(proc_state).map(|s| s.1);
        c.started_at = Some(now_rfc3339());
        self.save(&c)?;
        // Wait for runc to report the container's PID (or to fail).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(bundle.join("pid"))
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                c.pid = Some(pid);
                c.pid_ticks = proc_state(pid).map(|s| s.1);
                self.save(&c)?;
                tracing::debug!(container = %id, pid, "runc container started");
                return Ok(());
            }
            if bundle.join("exit").exists() {
                return Err(RuntimeError::Start(log_tail(&c.config.log_path)));
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Start(
                    "runc did not start the container in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let c = self.load(id)?;
        if self.status_of(&c).state != ContainerRunState::Running {
            return Ok(());
        }
        if !timeout.is_zero() {
            self.kill(id, "TERM").await;
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if self.status_of(&c).state != ContainerRunState::Running {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.kill(id, "KILL").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.status_of(&c).state != ContainerRunState::Running {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The container's processes are gone from runc's view, or never die: kill the shim.
        if let Some(p) = c
            .shim_pid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let c = match self.load(id) {
            Ok(c) => c,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if self.status_of(&c).state == ContainerRunState::Running {
            self.stop_container(id, Duration::ZERO).await?;
        }
        let _ = self
            .runc(&["delete", "--force", id], Duration::from_secs(10))
            .await;
        let bundle = self.bundle(id);
        let rootfs = bundle.join("rootfs");
        if let Err(e) = rustix::mount::unmount(&rootfs, rustix::mount::UnmountFlags::DETACH)
            && e != rustix::io::Errno::INVAL
            && e != rustix::io::Errno::NOENT
        {
            tracing::warn!(container = %id, error = %e, "unmounting rootfs");
        }
        std::fs::remove_dir_all(&bundle)?;
        c.cgroup.remove();
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let c = self.load(id)?;
        Ok(self.status_of(&c))
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        let mut args = vec!["exec", id];
        args.extend(cmd.iter().map(String::as_str));
        let out = self.runc(&args, timeout).await?;
        Ok(ExecOutput {
            exit_code: out.status.code().unwrap_or(137),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// `runc exec` in the foreground, so the agent is the parent that sees the exit code.
    /// With a terminal runc makes the container's pty and relays it to its own stdio, which
    /// is a pty the agent gives it (`--console-socket` is only honoured with `--detach`,
    /// whose process only a subreaper could reap). The terminal's first size goes in the
    /// process spec (`consoleSize`), so the command finds it set when it starts.
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        if spec.command.is_empty() {
            return Err(RuntimeError::Other("empty command".into()));
        }
        let mut cmd = tokio::process::Command::new(&self.cfg.runc);
        cmd.arg("--root").arg(self.state_root()).arg("exec");
        if !spec.tty {
            cmd.arg(id).args(&spec.command);
            return super::exec::spawn(cmd, spec, super::exec::TerminalUse::Relayed);
        }
        let process = ExecProcessFile::write(&self.bundle(id), spec)?;
        cmd.arg("--process").arg(&process.0).arg(id);
        let mut session = super::exec::spawn(cmd, spec, super::exec::TerminalUse::Relayed)?;
        let exit = session.exit;
        session.exit = Box::pin(async move {
            let code = exit.await;
            drop(process);
            code
        });
        Ok(session)
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let c = self.load(id)?;
        let (mem, cpu) = c.cgroup.usage();
        Ok(ContainerStats {
            cpu_usage_nanos: cpu,
            memory_working_set_bytes: mem,
        })
    }
}
