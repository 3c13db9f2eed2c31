//! Several machines on this one: each host is a network namespace the test creates, with a
//! veth on a bridge of the test's own (`10.<octet>.0.1/24` on the bridge, host `i` at
//! `10.<octet>.0.<i + 2>`, default route via the bridge), and `navarch agent` runs inside
//! it. Only the network namespace is entered (`nsenter --net`): the host shares this
//! machine's mounts and cgroups, so what its containers leave is found and removed from here.
//! Everything is removed on drop, even on a panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::runc::{RuncLeftovers, kill_cgroup};

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The bridge in the root namespace and the hosts' namespaces.
pub struct Hosts {
    pub tag: String,
    pub octet: u32,
    bridge: String,
    namespaces: Vec<String>,
}

impl Hosts {
    /// `count` hosts on a new bridge `nvh<tag>` with `10.<octet>.0.1/24`.
    pub fn create(tag: &str, octet: u32, count: usize) -> Self {
        let bridge = format!("nvh{tag}");
        let mut hosts = Self {
            tag: tag.to_string(),
            octet,
            bridge: bridge.clone(),
            namespaces: Vec::new(),
        };
        assert!(ip(&["link", "add", &bridge, "type", "bridge"]));
        assert!(ip(&[
            "addr",
            "add",
            &format!("{}/24", hosts.gateway()),
            "dev",
            &bridge
        ]));
        assert!(ip(&["link", "set", &bridge, "up"]));
        for i in 0..count {
            let ns = format!("nvh{tag}-{i}");
            let (outside, inside) = (hosts.outside(i), format!("nvh{tag}i{i}"));
            assert!(ip(&["netns", "add", &ns]));
            hosts.namespaces.push(ns.clone());
            assert!(ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside
            ]));
            assert!(ip(&["link", "set", &outside, "master", &bridge, "up"]));
            assert!(ip(&["link", "set", &inside, "netns", &ns]));
            let addr = format!("{}/24", hosts.address(i));
            let gateway = hosts.gateway();
            for args in [
                vec!["addr", "add", addr.as_str(), "dev", inside.as_str()],
                vec!["link", "set", inside.as_str(), "up"],
                vec!["link", "set", "lo", "up"],
                vec!["route", "add", "default", "via", gateway.as_str()],
            ] {
                let mut all = vec!["-n", ns.as_str()];
                all.extend(args.iter().map(|s| &**s));
                assert!(ip(&all), "ip {all:?}");
            }
        }
        hosts
    }

    /// The bridge's address: where the control plane listens.
    pub fn gateway(&self) -> String {
        format!("10.{}.0.1", self.octet)
    }

    /// Host `i`'s address.
    pub fn address(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.octet, i + 2)
    }

    fn outside(&self, i: usize) -> String {
        format!("nvh{}o{i}", self.tag)
    }

    /// Cuts host `i` off the network (`false`) or plugs it back in (`true`).
    pub fn set_connected(&self, i: usize, connected: bool) {
        let state = if connected { "up" } else { "down" };
        assert!(ip(&["link", "set", &self.outside(i), state]));
    }

    /// `program` to be run inside host `i`'s network namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.namespaces[i]))
            .arg("--")
            .arg(program);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (i, ns) in self.namespaces.iter().enumerate() {
            // Whatever still runs in the host (process-runtime containers outlive their
            // agent, as on a real machine) would keep the namespace and its veth alive.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            ip(&["netns", "del", ns]);
            ip(&["link", "del", &self.outside(i)]);
        }
        ip(&["link", "del", &self.bridge]);
    }
}

/// How an agent on a host is started.
pub struct AgentSpec<'a> {
    pub gateway: &'a str,
    pub ca_file: &'a Path,
    pub join_token: &'a str,
    /// `runc` (real containers: the host's own CNI bridge, cgroup parent and service proxy)
    /// or `process`.
    pub runtime: &'a str,
    pub cluster_cidr: &'a str,
    pub service_cidr: &'a str,
    pub extra: &'a [&'a str],
}

/// `navarch agent` on a host, named `host-<i>`, with its data under `dir/host-<i>`; killed
/// on drop, and then what its containers left (runc runtime) is removed.
pub struct HostAgent {
    pub name: String,
    pub data_dir: PathBuf,
    pub host: usize,
    args: Vec<String>,
    child: Option<Child>,
    cgroup_parent: String,
    _leftovers: Option<RuncLeftovers>,
}

impl HostAgent {
    pub fn start(hosts: &Hosts, host: usize, dir: &Path, spec: &AgentSpec) -> Self {
        let name = format!("host-{host}");
        let data_dir = dir.join(&name);
        let cgroup_parent = format!("navarch-{}-{host}", hosts.tag);
        let bridge = format!("nvm{}{host}", hosts.tag);
        let mut args: Vec<String> = [
            "agent",
            "--gateway",
            spec.gateway,
            "--ca-file",
            &spec.ca_file.to_string_lossy(),
            "--join-token",
            spec.join_token,
            "--runtime",
            spec.runtime,
            "--node-name",
            &name,
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--telemetry-listen",
            "127.0.0.1:0",
            "--cluster-cidr",
            spec.cluster_cidr,
            "--service-cidr",
            spec.service_cidr,
        ]
        .map(String::from)
        .to_vec();
        let leftovers = (spec.runtime == "runc").then(|| {
            args.extend(
                ["--cni-bridge", &bridge, "--cgroup-parent", &cgroup_parent].map(String::from),
            );
            RuncLeftovers {
                state: data_dir.join("runc/state"),
                dir: data_dir.clone(),
                bridge,
                cgroup_parent: cgroup_parent.clone(),
                cluster_cidr: spec.cluster_cidr.to_string(),
            }
        });
        args.extend(spec.extra.iter().map(|s| s.to_string()));
        let mut agent = Self {
            name,
            data_dir,
            host,
            args,
            child: None,
            cgroup_parent,
            _leftovers: leftovers,
        };
        agent.spawn(hosts);
        agent
    }

    fn spawn(&mut self, hosts: &Hosts) {
        std::fs::create_dir_all(&self.data_dir).expect("agent data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let child = hosts
            .command(self.host, crate::navarch_bin())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting navarch agent");
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The host dies: the agent and every container it ran are killed at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_cgroup(&self.cgroup_parent);
    }

    /// Starts the agent again with the same flags and data (its node credential included).
    pub fn restart(&mut self, hosts: &Hosts) {
        assert!(self.child.is_none(), "the agent still runs");
        self.spawn(hosts);
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {}'s log:", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        crate::kill_processes_under(&self.data_dir);
    }
}
