//! The pod network through real CNI plugins, invoked as the CNI spec says: one process per
//! plugin, parameters in `CNI_*` environment variables, the network config on stdin, the
//! result on stdout. The agent generates its network list: `bridge` (with `host-local` IPAM)
//! on a bridge and subnet it owns, `portmap` for pods with `hostPort`s, plus `loopback` for
//! `lo`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::runtime::{PortMapping, Result, RuntimeError};

/// The CNI spec version the generated configs use (containernetworking-plugins ≥ 1.0).
pub const CNI_VERSION: &str = "1.0.0";

/// The agent's pod network.
#[derive(Clone, Debug)]
pub struct CniNetwork {
    /// Network name (also host-local's lease directory name).
    pub name: String,
    /// Linux bridge the plugin creates and owns (`navarch0`).
    pub bridge: String,
    /// Pod subnet, e.g. `10.88.0.0/16` (the node's podCIDR).
    pub subnet: String,
    /// Where plugin binaries are looked up.
    pub bin_dirs: Vec<PathBuf>,
    /// host-local's lease store (kept under the agent's data dir).
    pub ipam_dir: PathBuf,
    /// Masquerade traffic leaving the subnet.
    pub ip_masq: bool,
}

impl CniNetwork {
    /// The default network (`navarch0`, 10.88.0.0/16) with plugins from the usual places.
    pub fn default_for(data_dir: &Path) -> Self {
        Self {
            name: "navarch".into(),
            bridge: "navarch0".into(),
            subnet: "10.88.0.0/16".into(),
            bin_dirs: default_bin_dirs(),
            ipam_dir: data_dir.join("cni/networks"),
            ip_masq: true,
        }
    }

    /// The network list this agent uses (what a `.conflist` file would hold).
    pub fn conflist(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                "ipMasq": self.ip_masq,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": self.ipam_dir,
                }
            }]
        })
    }

    /// The network list for one pod: [`Self::conflist`], plus `portmap` (DNAT from the host
    /// ports, SNAT for hairpin and localhost) when it has host ports.
    pub fn conflist_for(&self, ports: &[PortMapping]) -> Value {
        let mut list = self.conflist();
        if !ports.is_empty() {
            let mappings: Vec<Value> = ports
                .iter()
                .map(|p| {
                    let mut m = json!({
                        "hostPort": p.host_port,
                        "containerPort": p.container_port,
                        "protocol": p.protocol,
                    });
                    if !p.host_ip.is_empty() {
                        m["hostIP"] = json!(p.host_ip);
                    }
                    m
                })
                .collect();
            if let Some(plugins) = list["plugins"].as_array_mut() {
                plugins.push(json!({
                    "type": "portmap",
                    "capabilities": {"portMappings": true},
                    "snat": true,
                    "runtimeConfig": {"portMappings": mappings},
                }));
            }
        }
        list
    }

    fn loopback(&self) -> Value {
        json!({"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"})
    }

    /// Whether every plugin this network needs is installed.
    pub fn plugins_present(&self) -> bool {
        ["bridge", "host-local", "loopback"]
            .iter()
            .all(|p| self.find(p).is_some())
    }

    fn find(&self, plugin: &str) -> Option<PathBuf> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
    }

    fn cni_path(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    async fn invoke(
        &self,
        command: &str,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        config: &Value,
    ) -> Result<Value> {
        let plugin = config["type"].as_str().unwrap_or_default().to_string();
        let bin = self.find(&plugin).ok_or_else(|| {
            RuntimeError::Sandbox(format!(
                "CNI plugin {plugin} not found in {}",
                self.cni_path()
            ))
        })?;
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", self.cni_path())
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::Sandbox(format!("running {}: {e}", bin.display())))?;
        let input = serde_json::to_vec(config).map_err(RuntimeError::other)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&input).await?;
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .map_err(|_| {
                    RuntimeError::Sandbox(format!("CNI {plugin} {command} timed out"))
                })??;
        if !out.status.success() {
            let err: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let msg = err["msg"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            let details = err["details"].as_str().unwrap_or_default();
            return Err(RuntimeError::Sandbox(format!(
                "CNI {plugin} {command} failed: {msg} {details}"
            )));
        }
        if out.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| RuntimeError::Sandbox(format!("CNI {plugin} returned bad JSON: {e}")))
    }

    fn plugin_config(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let list = self.conflist();
        let mut conf = plugin.clone();
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        if let Some(prev) = prev
            && !prev.is_null()
        {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    /// ADD: loopback, then the chain on `eth0`. Returns the final result (IPs).
    pub async fn add(
        &self,
        container_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Value> {
        self.invoke("ADD", container_id, netns, "lo", &self.loopback())
            .await?;
        let list = self.conflist_for(ports);
        let mut prev: Option<Value> = None;
        for plugin in list["plugins"].as_array().cloned().unwrap_or_default() {
            let conf = self.plugin_config(&plugin, prev.as_ref());
            let result = self.invoke("ADD", container_id, netns, "eth0", &conf).await;
            match result {
                Ok(r) => prev = Some(r),
                Err(e) => {
                    // Undo what was done, so nothing (IP lease, veth) is leaked.
                    let _ = self.del(container_id, netns, prev.as_ref(), ports).await;
                    return Err(e);
                }
            }
        }
        Ok(prev.unwrap_or_default())
    }

    /// DEL in reverse order (idempotent; works without the netns too).
    pub async fn del(
        &self,
        container_id: &str,
        netns: &Path,
        prev: Option<&Value>,
        ports: &[PortMapping],
    ) -> Result<()> {
        let list = self.conflist_for(ports);
        let mut plugins = list["plugins"].as_array().cloned().unwrap_or_default();
        plugins.reverse();
        let netns_arg = if netns.exists() { netns } else { Path::new("") };
        let mut first_err = None;
        for plugin in plugins {
            let conf = self.plugin_config(&plugin, prev);
            if let Err(e) = self
                .invoke("DEL", container_id, netns_arg, "eth0", &conf)
                .await
            {
                first_err.get_or_insert(e);
            }
        }
        if netns.exists() {
            let _ = self
                .invoke("DEL", container_id, netns, "lo", &self.loopback())
                .await;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Where Debian (`/usr/lib/cni`) and upstream (`/opt/cni/bin`) install plugins.
pub fn default_bin_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
}

/// The IPv4/IPv6 addresses (without prefix length) of a CNI result.
pub fn result_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_has_bridge_with_host_local() {
        let n = CniNetwork {
            name: "t".into(),
            bridge: "nvt0".into(),
            subnet: "10.123.0.0/24".into(),
            bin_dirs: vec![],
            ipam_dir: "/x".into(),
            ip_masq: false,
        };
        let c = n.conflist();
        assert_eq!(c["plugins"][0]["type"], "bridge");
        assert_eq!(c["plugins"][0]["bridge"], "nvt0");
        assert_eq!(c["plugins"][0]["ipam"]["type"], "host-local");
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.123.0.0/24"
        );
        assert_eq!(c["plugins"][0]["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(n.conflist_for(&[])["plugins"].as_array().unwrap().len(), 1);
        let with_ports = n.conflist_for(&[PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }]);
        assert_eq!(with_ports["plugins"][1]["type"], "portmap");
        assert_eq!(
            with_ports["plugins"][1]["runtimeConfig"]["portMappings"][0],
            json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})
        );
        let conf = n.plugin_config(&c["plugins"][0], Some(&json!({"ips": []})));
        assert_eq!(conf["name"], "t");
        assert_eq!(conf["cniVersion"], CNI_VERSION);
        assert!(conf.get("prevResult").is_some());
    }

    #[test]
    fn ips_from_result() {
        let r = json!({"ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1"}]});
        assert_eq!(result_ips(&r), vec!["10.88.0.5"]);
    }
}
