//! What a test with real containers leaves outside its temp dir, removed on drop (even on
//! panic): containers still running, mounts (network namespaces, rootfs) under the dir, the
//! CNI bridge, and the cgroups.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct RuncLeftovers {
    /// runc's `--root` (the runtime's `runc/state`).
    pub state: PathBuf,
    /// Everything mounted below this goes.
    pub dir: PathBuf,
    pub bridge: String,
    pub cgroup_parent: String,
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
