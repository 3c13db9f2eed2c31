//! The agent's cgroups: every container runs in `/<parent>/<pod-uid>/<container-id>/ctr`.
//! On cgroup v1 the agent owns `<container-id>` in the memory hierarchy and puts the memory
//! limit there, so the OOM kill is counted in a cgroup that outlives runc's own (runc removes
//! `ctr` when the container exits) and the agent can report `OOMKilled`.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout the machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

pub fn detect() -> CgroupVersion {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

/// One container's cgroup, relative to each hierarchy's root.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerCgroup {
    pub parent: String,
    pub pod: String,
    pub container: String,
}

impl ContainerCgroup {
    /// The `cgroupsPath` for runc.
    pub fn runc_path(&self) -> String {
        format!("/{}/{}/{}/ctr", self.parent, self.pod, self.container)
    }

    fn rel(&self) -> PathBuf {
        Path::new(&self.parent)
            .join(&self.pod)
            .join(&self.container)
    }

    /// The directory holding the memory limit and OOM counter.
    pub fn memory_dir(&self) -> PathBuf {
        match detect() {
            CgroupVersion::V1 => Path::new(ROOT).join("memory").join(self.rel()),
            CgroupVersion::V2 => Path::new(ROOT).join(self.rel()),
        }
    }

    /// Creates the agent-owned level and sets the memory limit (v1). On v2 the limit goes into
    /// the runtime spec instead (see [`ContainerCgroup::limit_in_spec`]).
    pub fn prepare(&self, memory_limit: Option<i64>) -> std::io::Result<()> {
        if detect() == CgroupVersion::V2 {
            return Ok(());
        }
        let dir = self.memory_dir();
        std::fs::create_dir_all(&dir)?;
        if let Some(limit) = memory_limit {
            std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string())?;
        }
        Ok(())
    }

    pub fn limit_in_spec(&self) -> bool {
        detect() == CgroupVersion::V2
    }

    /// Whether the kernel OOM-killed in this container. On v2, `memory.events` counts OOM
    /// kills hierarchically. On v1 the kill is counted in runc's leaf cgroup, which is gone
    /// once the container exited; the agent-owned level still shows that the limit was hit
    /// (`memory.failcnt`), which together with a SIGKILL exit means an OOM kill.
    pub fn oom_killed(&self, exit_code: i32) -> bool {
        let dir = self.memory_dir();
        let field = |file: &str, key: &str| -> u64 {
            std::fs::read_to_string(dir.join(file))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        match detect() {
            CgroupVersion::V2 => field("memory.events", "oom_kill") > 0,
            CgroupVersion::V1 => {
                let failcnt = std::fs::read_to_string(dir.join("memory.failcnt"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                field("memory.oom_control", "oom_kill") > 0 || (exit_code == 137 && failcnt > 0)
            }
        }
    }

    /// Memory working set (bytes: usage minus inactive file pages, as the kubelet counts it)
    /// and CPU time used (ns).
    pub fn usage(&self) -> (u64, u64) {
        let read = |p: PathBuf| -> u64 {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        let stat = |p: PathBuf, key: &str| -> u64 {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        match detect() {
            CgroupVersion::V1 => {
                let dir = self.memory_dir();
                let mem = read(dir.join("memory.usage_in_bytes"))
                    .saturating_sub(stat(dir.join("memory.stat"), "total_inactive_file "));
                let cpu = read(
                    Path::new(ROOT)
                        .join("cpuacct")
                        .join(self.rel())
                        .join("ctr/cpuacct.usage"),
                );
                (mem, cpu)
            }
            CgroupVersion::V2 => {
                let dir = Path::new(ROOT).join(self.rel());
                let mem = read(dir.join("memory.current"))
                    .saturating_sub(stat(dir.join("memory.stat"), "inactive_file "));
                let cpu = std::fs::read_to_string(dir.join("cpu.stat"))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1000;
                (mem, cpu)
            }
        }
    }

    /// Removes this container's directories (bottom-up) in every hierarchy.
    pub fn remove(&self) {
        for base in hierarchies() {
            let dir = base.join(self.rel());
            let _ = std::fs::remove_dir(dir.join("ctr"));
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Removes a pod's (now empty) cgroup directories.
pub fn remove_pod(parent: &str, pod: &str) {
    for base in hierarchies() {
        let _ = std::fs::remove_dir(base.join(parent).join(pod));
    }
}

fn hierarchies() -> Vec<PathBuf> {
    match detect() {
        CgroupVersion::V2 => vec![PathBuf::from(ROOT)],
        CgroupVersion::V1 => std::fs::read_dir(ROOT)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && !p.is_symlink())
                    .collect()
            })
            .unwrap_or_default(),
    }
}
