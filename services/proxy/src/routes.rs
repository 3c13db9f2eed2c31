//! Pod routes between nodes, host-gw style (flannel's `host-gw` backend): for every other
//! node, `<its spec.podCIDR> via <its InternalIP>`, so pods on different nodes reach each
//! other directly with their own addresses (nothing masqueraded: see the proxy's
//! `POD-EGRESS` chain). Nodes must share a layer-2 segment, as with host-gw.
//!
//! [`desired`] is a pure function of the Nodes; [`Routes`] programs the difference with
//! `ip route replace` / `ip route del`, marking its routes with their own protocol number
//! ([`ROUTE_PROTO`]) so a restarted agent finds and reconciles the routes it made before,
//! and never touches anyone else's.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use navarch_api::core::v1::Node;
use navarch_gateway::Client;
use navarch_runtime::{Informer, KubeObject, Scope};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::iptables::{IptablesError, run};

/// The `proto` of every route we own (`ip route show proto 78`; 78 is unassigned in
/// `/etc/iproute2/rt_protos`).
pub const ROUTE_PROTO: &str = "78";
/// Nodes simulated in-process (hollow nodes) have made-up addresses: never routed to.
pub const HOLLOW_LABEL: &str = "node.navarch.io/hollow";

/// Pod CIDR → the node address it is reached through.
pub type RouteTable = BTreeMap<String, IpAddr>;

/// The routes this node (`self_name`) needs: every other node with a pod CIDR and an
/// InternalIP of the same family, except hollow ones.
pub fn desired(nodes: &[&Node], self_name: &str) -> RouteTable {
    let mut table = RouteTable::new();
    for node in nodes {
        let meta = node.meta();
        if meta.name.as_deref() == Some(self_name)
            || meta.labels.get(HOLLOW_LABEL).is_some_and(|v| v == "true")
            || meta.deletion_timestamp.is_some()
        {
            continue;
        }
        let cidrs: Vec<&str> = node
            .spec
            .as_ref()
            .map(|s| {
                let mut all: Vec<&str> = s.pod_cid_rs.iter().map(String::as_str).collect();
                if all.is_empty() {
                    all.extend(s.pod_cidr.as_deref());
                }
                all
            })
            .unwrap_or_default();
        let addresses: Vec<IpAddr> = node
            .status
            .as_ref()
            .map(|s| {
                s.addresses
                    .iter()
                    .filter(|a| a.r#type.as_deref() == Some("InternalIP"))
                    .filter_map(|a| a.address.as_deref()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for cidr in cidrs.into_iter().filter(|c| !c.is_empty()) {
            let v6 = cidr.contains(':');
            if let Some(via) = addresses.iter().find(|a| a.is_ipv6() == v6) {
                table.insert(cidr.to_string(), *via);
            }
        }
    }
    table
}

/// The applier: what is in the kernel (ours only) and how to change it.
pub struct Routes {
    exec_prefix: Vec<String>,
    /// What we installed, as far as we know; `None` until read from the kernel.
    applied: Option<RouteTable>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    /// Routes in this network namespace.
    pub fn new() -> Self {
        Self {
            exec_prefix: Vec::new(),
            applied: None,
        }
    }

    /// Routes in the named network namespace (tests).
    pub fn in_netns(netns: &str) -> Self {
        Self {
            exec_prefix: ["ip", "netns", "exec", netns].map(String::from).to_vec(),
            applied: None,
        }
    }

    async fn ip(&self, args: &[&str]) -> Result<String, IptablesError> {
        run(&self.exec_prefix, "ip", args, None).await
    }

    /// Our routes in the kernel now (`ip route show proto 78`, both families).
    pub async fn installed(&self) -> Result<RouteTable, IptablesError> {
        let mut table = RouteTable::new();
        for family in ["-4", "-6"] {
            let out = self
                .ip(&[family, "route", "show", "proto", ROUTE_PROTO])
                .await?;
            for line in out.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let via = words
                    .iter()
                    .position(|w| *w == "via")
                    .and_then(|i| words.get(i + 1))
                    .and_then(|a| a.parse().ok());
                if let (Some(dst), Some(via)) = (words.first(), via) {
                    table.insert((*dst).to_string(), via);
                }
            }
        }
        Ok(table)
    }

    /// Makes our routes exactly `want`. Returns how many routes were changed. A route the
    /// kernel refuses (e.g. a gateway not on a connected network) is logged and retried at
    /// the next sync; the others are still applied.
    pub async fn sync(&mut self, want: &RouteTable) -> Result<usize, IptablesError> {
        let have = match self.applied.take() {
            Some(t) => t,
            None => self.installed().await?,
        };
        let mut now = have.clone();
        let mut changed = 0;
        let mut first_err = None;
        for (dst, via) in &have {
            if !want.contains_key(dst) {
                match self
                    .ip(&[
                        "route",
                        "del",
                        dst,
                        "via",
                        &via.to_string(),
                        "proto",
                        ROUTE_PROTO,
                    ])
                    .await
                {
                    Ok(_) => {
                        now.remove(dst);
                        changed += 1;
                        tracing::info!(pod_cidr = %dst, via = %via, "pod route removed");
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        for (dst, via) in want {
            if have.get(dst) == Some(via) {
                continue;
            }
            let via_s = via.to_string();
            match self
                .ip(&["route", "replace", dst, "via", &via_s, "proto", ROUTE_PROTO])
                .await
            {
                Ok(_) => {
                    now.insert(dst.clone(), *via);
                    changed += 1;
                    tracing::info!(pod_cidr = %dst, via = %via, "pod route installed");
                }
                Err(e) => {
                    tracing::warn!(pod_cidr = %dst, via = %via, error = %e, "pod route refused");
                    first_err.get_or_insert(e);
                }
            }
        }
        self.applied = Some(now);
        match first_err {
            Some(e) => Err(e),
            None => Ok(changed),
        }
    }

    /// Removes every route we own.
    pub async fn cleanup(&mut self) -> Result<usize, IptablesError> {
        self.applied = None;
        self.sync(&RouteTable::new()).await
    }
}

/// A running route syncer.
pub struct RouteSync {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RouteSync {
    /// Watches Nodes and keeps the routes to the other nodes' pods (in this namespace).
    pub fn start(client: Client, node_name: String) -> Self {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(route_loop(client, node_name, rx));
        Self {
            shutdown: Some(tx),
            task,
        }
    }

    /// Stops and removes the routes it made.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "route task failed");
        }
    }
}

async fn route_loop(client: Client, node_name: String, mut shutdown: oneshot::Receiver<()>) {
    let nodes = Informer::<Node>::new(client, Scope::all());
    let changed = Arc::new(Notify::new());
    let c = changed.clone();
    nodes.add_handler(move |_| c.notify_one());
    let mut routes = Routes::new();
    tokio::select! {
        _ = nodes.wait_synced() => {}
        _ = &mut shutdown => {
            nodes.stop();
            return;
        }
    }
    loop {
        let all = nodes.cache().list();
        let refs: Vec<&Node> = all.iter().map(AsRef::as_ref).collect();
        let want = desired(&refs, &node_name);
        let retry = match routes.sync(&want).await {
            Ok(_) => Duration::from_secs(60),
            Err(_) => Duration::from_secs(5),
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(retry) => {}
            _ = &mut shutdown => break,
        }
    }
    nodes.stop();
    match routes.cleanup().await {
        Ok(n) => tracing::info!(routes = n, "pod routes removed"),
        Err(e) => tracing::warn!(error = %e, "removing pod routes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use navarch_api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
    use navarch_api::meta::v1::ObjectMeta;

    fn node(name: &str, cidrs: &[&str], ips: &[&str], hollow: bool) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: Some(name.into()),
                labels: if hollow {
                    [(HOLLOW_LABEL.to_string(), "true".to_string())].into()
                } else {
                    Default::default()
                },
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                pod_cidr: cidrs.first().map(|c| c.to_string()),
                pod_cid_rs: cidrs.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: ips
                    .iter()
                    .map(|ip| NodeAddress {
                        r#type: Some("InternalIP".into()),
                        address: Some(ip.to_string()),
                    })
                    .chain([NodeAddress {
                        r#type: Some("Hostname".into()),
                        address: Some(name.into()),
                    }])
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn routes_to_every_other_real_node_of_the_same_family() {
        let nodes = [
            node("a", &["10.244.0.0/24"], &["192.168.5.1"], false),
            node(
                "b",
                &["10.244.1.0/24", "fd00:1::/64"],
                &["192.168.5.2", "fd00::2"],
                false,
            ),
            node("c", &["10.244.2.0/24"], &[], false),
            node("d", &[], &["192.168.5.4"], false),
            node("hollow-0", &["10.244.9.0/24"], &["10.128.0.0"], true),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        let table = desired(&refs, "a");
        assert_eq!(
            table,
            RouteTable::from([
                ("10.244.1.0/24".into(), "192.168.5.2".parse().unwrap()),
                ("fd00:1::/64".into(), "fd00::2".parse().unwrap()),
            ])
        );
        // From b's side: a's range via a, never b's own.
        let table = desired(&refs, "b");
        assert_eq!(
            table,
            RouteTable::from([("10.244.0.0/24".into(), "192.168.5.1".parse().unwrap())])
        );
    }

    #[test]
    fn a_node_being_deleted_loses_its_route() {
        let mut gone = node("b", &["10.244.1.0/24"], &["192.168.5.2"], false);
        gone.metadata.as_mut().unwrap().deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        assert!(desired(&[&gone], "a").is_empty());
    }
}
