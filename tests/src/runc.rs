//! What a test with real containers leaves outside its temp dir, removed on drop (even on
//! panic): containers still running, mounts (network namespaces, rootfs) under the dir, the
//! CNI bridge, the bridge plugin's masquerade chains of the test's pods, and the cgroups.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct RuncLeftovers {
    /// runc's `--root` (the runtime's `runc/state`).
    pub state: PathBuf,
    /// Everything mounted below this goes.
    pub dir: PathBuf,
    pub bridge: String,
    pub cgroup_parent: String,
    /// The test's cluster CIDR (`10.N.0.0/16`): NAT rules for pod addresses in it go.
    pub cluster_cidr: String,
}

/// `10.148.` for `10.148.0.0/16`: the leading octets the mask covers.
fn cidr_prefix(cidr: &str) -> Option<String> {
    let (ip, bits) = cidr.split_once('/')?;
    let octets = (bits.parse::<usize>().ok()? / 8).clamp(1, 3);
    let parts: Vec<&str> = ip.split('.').take(octets).collect();
    Some(format!("{}.", parts.join(".")))
}

/// Removes the CNI bridge plugin's per-pod masquerade chains (`-A POSTROUTING -s <pod ip>/32
/// ... -j CNI-<hash>`) for pods whose address starts with `prefix`: a container killed with
/// its agent never got its CNI DEL.
fn remove_masquerade_chains(prefix: &str) {
    let Ok(out) = Command::new("iptables")
        .args(["-t", "nat", "-S", "POSTROUTING"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let ours = rule
            .split_whitespace()
            .skip_while(|w| *w != "-s")
            .nth(1)
            .is_some_and(|src| src.starts_with(prefix));
        let chain = rule
            .rsplit_once("-j ")
            .map(|(_, c)| c.trim().to_string())
            .filter(|c| c.starts_with("CNI-"));
        let (true, Some(chain)) = (ours, chain) else {
            continue;
        };
        // `-S` prints the rule shell-quoted (comments have spaces).
        let _ = Command::new("sh")
            .args(["-c", &format!("iptables -t nat -D {rule}")])
            .status();
        for op in ["-F", "-X"] {
            let _ = Command::new("iptables")
                .args(["-t", "nat", op, &chain])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for RuncLeftovers {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&self.state)
                    .args(["delete", "--force", id])
                    .status();
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(prefix) = cidr_prefix(&self.cluster_cidr) {
            remove_masquerade_chains(&prefix);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup") {
            for d in dirs.flatten() {
                remove_tree(&d.path().join(&self.cgroup_parent));
            }
        }
    }
}

/// Kills (SIGKILL) every process in the cgroups under `parent`, in every hierarchy: the
/// containers of an agent that died with its machine.
pub fn kill_cgroup(parent: &str) {
    fn kill_in(dir: &Path) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        if let Ok(children) = std::fs::read_dir(dir) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    kill_in(&c.path());
                }
            }
        }
    }
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.flatten() {
            kill_in(&h.path().join(parent));
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.flatten() {
            if c.path().is_dir() {
                remove_tree(&c.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// `navarch up --runtime runc` for a test that needs no service proxy: its own CNI bridge
/// (`nv<letter><tag>`), cgroup parent, pod range `10.<octet>.0.0/16` and Service range
/// `10.<service_octet>.0.0/16`, node address 127.0.0.1, plus `extra` flags. Dropping it stops
/// navarch first, then removes what its containers left.
pub struct RuncNode {
    pub navarch: crate::Navarch,
    _leftovers: RuncLeftovers,
}

impl RuncNode {
    pub fn up(name: &str, octet: u32, service_octet: u32, extra: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec!["--proxy-mode", "none"];
        args.extend_from_slice(extra);
        Self::up_with_proxy(name, octet, service_octet, &args)
    }

    /// [`Self::up`] with the node's service proxy (iptables): for tests of Services and of
    /// pods that reach the API through `kubernetes.default`. Leaves no `NAVARCH-` chain: the
    /// proxy removes its chains when navarch stops, before the rest goes.
    pub fn up_with_proxy(
        name: &str,
        octet: u32,
        service_octet: u32,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let tag = format!("{:04x}", std::process::id() & 0xffff);
        let letter = name.chars().next().unwrap_or('x');
        let bridge = format!("nv{letter}{tag}");
        let cgroup_parent = format!("navarch-{name}-{tag}");
        let cluster_cidr = format!("10.{octet}.0.0/16");
        let service_cidr = format!("10.{service_octet}.0.0/16");
        let mut args = vec![
            "--runtime",
            "runc",
            "--node-ip",
            "127.0.0.1",
            "--cni-bridge",
            &bridge,
            "--cgroup-parent",
            &cgroup_parent,
            "--cluster-cidr",
            &cluster_cidr,
            "--service-cidr",
            &service_cidr,
        ];
        args.extend_from_slice(extra);
        let navarch = crate::Navarch::up_with_args(&args)?;
        let leftovers = RuncLeftovers {
            state: navarch.data_dir.join("agent/runc/state"),
            dir: navarch.data_dir.clone(),
            bridge: bridge.clone(),
            cgroup_parent: cgroup_parent.clone(),
            cluster_cidr,
        };
        Ok(Self {
            navarch,
            _leftovers: leftovers,
        })
    }
}
