//! The OCI runtime spec (`config.json`) of one container: process (args from the pod spec and
//! the image config, as Kubernetes combines them), env, cwd, user, mounts, hostname, the pod's
//! shared namespaces, cgroup path and CPU limits, rlimits.

use std::path::Path;

use serde_json::{Value, json};

use super::image::ImageConfig;
use crate::runtime::ContainerConfig;

/// The capabilities a container gets by default (containerd's / Docker's default set).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Where the pod's shared namespaces and files are.
pub struct PodNamespaces<'a> {
    /// `None` for host-network pods.
    pub net: Option<&'a Path>,
    pub ipc: &'a Path,
    pub uts: &'a Path,
    pub hostname: &'a str,
    pub hosts_file: &'a Path,
    pub resolv_file: &'a Path,
    pub hostname_file: &'a Path,
}

/// Kubernetes' rule: `command` replaces the entrypoint and drops the image's cmd; `args`
/// replaces the cmd.
pub fn process_args(config: &ContainerConfig, image: &ImageConfig) -> Vec<String> {
    match (config.command.is_empty(), config.args.is_empty()) {
        (false, _) => config.command.iter().chain(&config.args).cloned().collect(),
        (true, false) => image
            .entrypoint
            .iter()
            .chain(&config.args)
            .cloned()
            .collect(),
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// Image env, then the container's (later wins), `HOSTNAME` set.
pub fn process_env(config: &ContainerConfig, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![];
    let mut set = |k: &str, v: &str| {
        if let Some(e) = env.iter_mut().find(|(n, _)| n == k) {
            e.1 = v.into();
        } else {
            env.push((k.into(), v.into()));
        }
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set("HOSTNAME", hostname);
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in &config.env {
        set(k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// uid/gid: `runAsUser`/`runAsGroup`, else the image's `User` (numeric, or a name looked up
/// in the rootfs' `/etc/passwd`), else root.
pub fn process_user(config: &ContainerConfig, image: &ImageConfig, rootfs: &Path) -> (u32, u32) {
    let (mut uid, mut gid) = (0, 0);
    if !image.user.is_empty() {
        let (u, g) = image.user.split_once(':').unwrap_or((&image.user, ""));
        if let Ok(n) = u.parse::<u32>() {
            uid = n;
            gid = n;
        } else if let Ok(passwd) = std::fs::read_to_string(rootfs.join("etc/passwd")) {
            for line in passwd.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() > 3 && f[0] == u {
                    uid = f[2].parse().unwrap_or(0);
                    gid = f[3].parse().unwrap_or(0);
                }
            }
        }
        if let Ok(n) = g.parse::<u32>() {
            gid = n;
        }
    }
    if let Some(u) = config.run_as_user {
        uid = u;
    }
    if let Some(g) = config.run_as_group {
        gid = g;
    }
    (uid, gid)
}

fn bind(dest: &str, source: &Path, ro: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if ro {
        options.push("ro");
    }
    json!({"destination": dest, "type": "bind", "source": source, "options": options})
}

/// The whole `config.json`.
pub fn runtime_spec(
    config: &ContainerConfig,
    image: &ImageConfig,
    rootfs: &Path,
    ns: &PodNamespaces<'_>,
    cgroups_path: &str,
) -> Value {
    let (uid, gid) = process_user(config, image, rootfs);
    let cwd = config
        .working_dir
        .clone()
        .or_else(|| (!image.working_dir.is_empty()).then(|| image.working_dir.clone()))
        .unwrap_or_else(|| "/".into());
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        bind("/etc/hosts", ns.hosts_file, false),
        bind("/etc/resolv.conf", ns.resolv_file, false),
        bind("/etc/hostname", ns.hostname_file, false),
    ];
    for m in &config.mounts {
        mounts.push(bind(&m.container_path, &m.host_path, m.read_only));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "ipc", "path": ns.ipc}),
        json!({"type": "uts", "path": ns.uts}),
    ];
    if let Some(net) = ns.net {
        namespaces.push(json!({"type": "network", "path": net}));
    }
    let mut cpu = serde_json::Map::new();
    if let Some(req) = config.resources.cpu_request_millis {
        cpu.insert("shares".into(), json!(((req * 1024) / 1000).max(2)));
    }
    if let Some(limit) = config.resources.cpu_limit_millis {
        // Kubernetes: quota = limit * period / 1000, with the minimum of 1 ms.
        cpu.insert("quota".into(), json!((limit * 100).max(1000)));
        cpu.insert("period".into(), json!(100_000));
    }
    let privileged = config.privileged;
    // As many open files as the agent may have (containerd uses 1048576 where allowed).
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(1_048_576)
        .min(1_048_576);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": process_args(config, image),
            "env": process_env(config, image, ns.hostname),
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": config.read_only_root_filesystem},
        "hostname": ns.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "cpu": cpu,
            },
            "maskedPaths": if privileged { json!([]) } else { json!([
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware"
            ]) },
            "readonlyPaths": if privileged { json!([]) } else { json!([
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]) },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_follow_kubernetes() {
        let img = image();
        let mut c = ContainerConfig::default();
        assert_eq!(process_args(&c, &img), vec!["/entry", "default"]);
        c.args = vec!["x".into()];
        assert_eq!(process_args(&c, &img), vec!["/entry", "x"]);
        c.command = vec!["/bin/sh".into()];
        assert_eq!(process_args(&c, &img), vec!["/bin/sh", "x"]);
        c.args.clear();
        assert_eq!(process_args(&c, &img), vec!["/bin/sh"]);
    }

    #[test]
    fn env_layers() {
        let c = ContainerConfig {
            env: vec![("A".into(), "pod".into())],
            ..Default::default()
        };
        let env = process_env(&c, &image(), "h");
        assert_eq!(env, vec!["PATH=/bin", "HOSTNAME=h", "A=pod"]);
    }

    #[test]
    fn spec_joins_pod_namespaces_and_limits_cpu() {
        let mut c = ContainerConfig::default();
        c.resources.cpu_limit_millis = Some(500);
        c.resources.cpu_request_millis = Some(250);
        let p = Path::new("/x");
        let ns = PodNamespaces {
            net: Some(Path::new("/ns/net")),
            ipc: Path::new("/ns/ipc"),
            uts: Path::new("/ns/uts"),
            hostname: "web",
            hosts_file: p,
            resolv_file: p,
            hostname_file: p,
        };
        let s = runtime_spec(&c, &image(), p, &ns, "/navarch/u/c");
        assert_eq!(s["hostname"], "web");
        assert_eq!(s["linux"]["cgroupsPath"], "/navarch/u/c");
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 256);
        let nss = s["linux"]["namespaces"].as_array().unwrap();
        assert!(
            nss.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/ns/net")
        );
    }
}
