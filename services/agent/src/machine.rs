//! What the agent reads about its machine: CPUs, memory, disk, addresses, identity.

use std::net::IpAddr;
use std::path::Path;

/// Facts about the machine, read once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Size of the filesystem holding the agent's data dir.
    pub ephemeral_storage_bytes: u64,
    pub hostname: String,
    pub internal_ip: Option<IpAddr>,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Kubernetes' name for this machine's architecture (`amd64`, `arm64`, …).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Memory from `/proc/meminfo` (`MemTotal`).
fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn disk_total(path: &Path) -> u64 {
    rustix::fs::statvfs(path)
        .map(|s| s.f_blocks * s.f_frsize)
        .unwrap_or(0)
}

/// The address other machines reach this one at: the source address of the default route,
/// found without sending anything (a connected UDP socket), else loopback.
pub fn default_ip() -> Option<IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connect() on UDP only picks the route and source address.
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

impl MachineInfo {
    /// Reads the machine; `data_dir` decides which filesystem counts as ephemeral storage.
    pub fn read(data_dir: &Path) -> Self {
        let uname = rustix::system::uname();
        Self {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_bytes: mem_total(),
            ephemeral_storage_bytes: disk_total(data_dir),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            internal_ip: default_ip(),
            machine_id: read_trim("/etc/machine-id"),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            kernel_version: uname.release().to_string_lossy().into_owned(),
            os_image: os_image(),
            architecture: go_arch().into(),
        }
    }

    /// A made-up machine for hollow nodes (no reads).
    pub fn hollow(name: &str, ip: IpAddr) -> Self {
        Self {
            cpus: 4,
            memory_bytes: 16 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
            hostname: name.into(),
            internal_ip: Some(ip),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            kernel_version: "hollow".into(),
            os_image: "Hollow Node".into(),
            architecture: go_arch().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let m = MachineInfo::read(Path::new("/"));
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
        assert!(m.ephemeral_storage_bytes > 0);
        assert!(!m.kernel_version.is_empty());
        assert!(!m.architecture.is_empty());
    }
}
