//! The container runtime seam, shaped like Kubernetes' CRI: pod sandboxes, images, container
//! lifecycle, exec, logs and stats. The pod workers only talk to [`ContainerRuntime`].
//!
//! Implementations: [`runc`] (OCI images, runc, CNI), [`process`] (host processes),
//! [`hollow`] (simulated) and [`fake`] (records calls; for tests).

pub mod exec;
pub mod fake;
pub mod hollow;
pub mod instrumented;
pub mod process;
pub mod pty;
pub mod runc;

pub use exec::{ExecSession, ExecSpec, TerminalSize};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Why a runtime call failed. The worker maps these to the reasons users see in pod status.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image could not be pulled (shown as `ErrImagePull`, then `ImagePullBackOff`).
    #[error("pulling image {image}: {message}")]
    ImagePull { image: String, message: String },
    /// The image is not present and the pull policy forbids pulling (`ErrImageNeverPull`).
    #[error("image {0} is not present with pull policy of Never")]
    ImageNeverPull(String),
    /// The container could not be created (`CreateContainerError`).
    #[error("creating container: {0}")]
    Create(String),
    /// The container was created but could not start (`StartError`).
    #[error("starting container: {0}")]
    Start(String),
    /// The pod sandbox (namespaces, network) could not be set up.
    #[error("pod sandbox: {0}")]
    Sandbox(String),
    /// No such sandbox or container.
    #[error("{0} not found")]
    NotFound(String),
    /// Anything else from the OS or a helper program.
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    pub fn other(e: impl std::fmt::Display) -> Self {
        RuntimeError::Other(e.to_string())
    }
}

impl From<std::io::Error> for RuntimeError {
    fn from(e: std::io::Error) -> Self {
        RuntimeError::Other(e.to_string())
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What a sandbox needs: the pod's identity, hostname and network wishes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Incremented when a sandbox has to be recreated.
    pub attempt: u32,
    pub hostname: String,
    pub host_network: bool,
    pub labels: BTreeMap<String, String>,
    /// Where the pod's logs go: `<dir>/<container>/<restart>.log`.
    pub log_directory: PathBuf,
    /// `/etc/hosts`, `/etc/resolv.conf` contents the containers should see (runc).
    pub dns_servers: Vec<String>,
    pub dns_searches: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// Host ports forwarded to the pod (containers' `hostPort`s), as CRI's `port_mappings`.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

/// One `hostPort`: traffic to `host_ip:host_port` (any local address when empty) goes to
/// the pod's `container_port`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub host_ip: String,
}

/// A sandbox as the runtime sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SandboxStatus {
    pub id: String,
    pub ready: bool,
    /// Pod IPs, primary first (empty for host-network pods: the node's address is used).
    pub ips: Vec<String>,
}

/// A container as the worker asks for it (CRI `ContainerConfig`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    pub name: String,
    /// Restart number (CRI `attempt`): 0 for the first run.
    pub attempt: u32,
    /// Image reference as resolved by [`ContainerRuntime::pull_image`].
    pub image: ImageRef,
    /// Entrypoint override (`command`) and arguments (`args`), as Kubernetes defines them.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Where stdout and stderr go.
    pub log_path: PathBuf,
    pub resources: Resources,
    pub tty: bool,
    pub stdin: bool,
    pub labels: BTreeMap<String, String>,
    /// Run as this user/group (numeric), if set.
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub privileged: bool,
    pub read_only_root_filesystem: bool,
    /// Host directories to bind into the container (volumes).
    pub mounts: Vec<Mount>,
}

/// A bind mount into a container.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// Resource settings derived from `resources.requests`/`limits`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// CPU limit in millicores (cfs quota), if any.
    pub cpu_limit_millis: Option<i64>,
    /// CPU request in millicores (cpu shares).
    pub cpu_request_millis: Option<i64>,
    /// Memory limit in bytes, if any.
    pub memory_limit_bytes: Option<i64>,
}

/// A pulled image: the name the user gave, and its content digest (`imageID`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRef {
    /// Normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub image: String,
    /// `repo@sha256:…` (what Kubernetes shows as `imageID`).
    pub id: String,
}

/// Whether to pull an image that is already present (`imagePullPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// From the spec field, with Kubernetes' default (`Always` for `:latest` or no tag).
    pub fn from_spec(policy: Option<&str>, image: &str) -> Self {
        match policy {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ => {
                let last = image.rsplit('/').next().unwrap_or(image);
                if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
                    PullPolicy::IfNotPresent
                } else {
                    PullPolicy::Always
                }
            }
        }
    }
}

/// Registry credentials for a pull (from `imagePullSecrets`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub username: String,
    pub password: String,
}

/// The state of a container (CRI `ContainerState`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContainerRunState {
    #[default]
    Created,
    Running,
    Exited,
    Unknown,
}

/// What the runtime knows about one container (CRI `ContainerStatus`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub state: ContainerRunState,
    /// RFC 3339 times.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// `OOMKilled` when the kernel killed it for memory, `Error`/`Completed` otherwise.
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Host PID of the container's first process, while it runs.
    pub pid: Option<u32>,
}

/// Output of a command run inside a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Usage of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// Cumulative CPU time.
    pub cpu_usage_nanos: u64,
    pub memory_working_set_bytes: u64,
}

/// The CRI-shaped runtime every pod worker drives.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// A short name (`runc`, `process`, `hollow`, `fake`), also the `containerID` scheme.
    fn name(&self) -> &'static str;
    /// `containerRuntimeVersion` for the Node (e.g. `runc://1.1.5`).
    fn version(&self) -> String;

    // Pod sandbox.
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus>;

    // Images.
    async fn pull_image(
        &self,
        image: &str,
        policy: PullPolicy,
        auth: Option<&PullAuth>,
    ) -> Result<ImageRef>;

    // Containers.
    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Sends the stop signal, waits up to `timeout`, then kills.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// Runs a command in the container and waits for it (probes, hooks).
    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput>;
    /// Starts a command in the container with the client's stdin and terminal
    /// (`kubectl exec`); it runs until it exits or the session is dropped.
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession>;
    async fn container_stats(&self, id: &str) -> Result<ContainerStats>;
    /// CRI's `UpdateRuntimeConfig`: the node's pod CIDR, once the cluster has assigned one
    /// (`node.spec.podCIDR`). Runtimes without a pod network ignore it.
    fn update_pod_cidr(&self, _cidr: &str) {}
    /// Whether pods' networks are simulated (the hollow runtime): HTTP and TCP probes then
    /// succeed without connecting anywhere, as the simulated containers would answer.
    fn simulates_network(&self) -> bool {
        false
    }
    /// The address probes and hooks connect to for this sandbox (pod IP, or 127.0.0.1 for host
    /// processes).
    fn probe_host(&self, sandbox: &SandboxStatus) -> String {
        sandbox
            .ips
            .first()
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into())
    }
}

/// Current time as Kubernetes writes it (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    rfc3339_secs(jiff::Timestamp::now())
}

/// A time as Kubernetes writes it: RFC 3339, truncated to the second (never in the future).
pub fn rfc3339_secs(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// The reason Kubernetes shows for a terminated container with this exit code.
pub fn exit_reason(exit_code: i32) -> &'static str {
    if exit_code == 0 { "Completed" } else { "Error" }
}
