//! Rule generation, as pure functions: Services × EndpointSlices → the iptables chains
//! kube-proxy's iptables mode would program, with our chain prefix.
//!
//! nat table:
//! - `SERVICES` (from PREROUTING and OUTPUT): per service port with endpoints, ClusterIP:port
//!   → `SVC-…`; last, traffic to a local address → `NODEPORTS`.
//! - `NODEPORTS`: per node port, mark for masquerade and → `SVC-…`.
//! - `SVC-…` (one per service port): off-cluster sources marked for masquerade (when the
//!   cluster CIDR is known), `recent` checks for ClientIP affinity, then an even random
//!   spread with `statistic` (endpoint i of n taken with probability 1/(n-i)).
//! - `SEP-…` (one per endpoint): a pod reaching itself (hairpin) is marked for masquerade,
//!   then DNAT to the endpoint (recording the client for affinity).
//! - `POSTROUTING` (from POSTROUTING): masquerade what was marked; `MARK-MASQ` marks.
//!
//! filter table:
//! - `SERVICES` (from OUTPUT and FORWARD, new connections): service ports without endpoints
//!   REJECT at once (the client sees "connection refused" instead of a hang); last, anything
//!   still addressed to the service CIDR (no such service) is rejected so it is never routed
//!   off the node.
//! - `EXTERNAL-SERVICES` (from INPUT and FORWARD): node ports without endpoints REJECT.
//!
//! Chain names carry a hash of the service port (and endpoint), like kube-proxy's, so they
//! are stable across restarts and fit iptables' 28-character limit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use navarch_api::core::v1::Service;
use navarch_api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The packet mark meaning "masquerade me" (kube-proxy's `--iptables-masquerade-bit` 14).
pub const MASQ_MARK: &str = "0x4000";
/// Longest chain name iptables accepts.
pub const MAX_CHAIN_LEN: usize = 28;

/// What the generated rules depend on besides the objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// Prefix of every chain we own (`NAVARCH-`); at most 10 characters.
    pub prefix: String,
    /// The pods' cluster-wide CIDR: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidr: Option<String>,
    /// The service CIDR: traffic to it that matched no service is rejected, never routed.
    pub service_cidr: Option<String>,
    /// This node's pod CIDR: pods' traffic leaving the cluster CIDR is masqueraded to the
    /// node's address (pod-to-pod traffic across nodes keeps its source, as with flannel's
    /// host-gw).
    pub pod_cidr: Option<String>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            prefix: "NAVARCH-".into(),
            cluster_cidr: None,
            service_cidr: None,
            pod_cidr: None,
        }
    }
}

/// The two tables we write to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Nat,
    Filter,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }
}

/// A chain of ours and its rules (each rule the text after `-A CHAIN `).
pub type Chains = BTreeMap<(Table, String), Vec<String>>;

/// A rule in a built-in chain that sends traffic into ours (kept by the applier, which
/// inserts it once and removes it on shutdown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jump {
    pub table: Table,
    pub chain: &'static str,
    /// The rule spec, as separate arguments.
    pub args: Vec<String>,
}

/// One port of one Service, with the endpoints it spreads over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortInfo {
    /// `namespace/name:port-name`, as kube-proxy names it.
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub port: u16,
    pub node_port: Option<u16>,
    /// ClientIP affinity timeout, seconds.
    pub affinity_seconds: Option<i32>,
    /// `ip:port` of each endpoint, sorted, without duplicates.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

fn hash(parts: &[&str], len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let mut s = hex::encode_upper(h.finalize());
    s.truncate(len);
    s
}

impl ServicePortInfo {
    fn key(&self) -> String {
        format!("{}/{}", self.name, self.protocol)
    }

    /// `PREFIX SVC-<hash>`.
    pub fn svc_chain(&self, prefix: &str) -> String {
        let room = MAX_CHAIN_LEN - prefix.len() - 4;
        format!("{prefix}SVC-{}", hash(&[&self.key()], room))
    }

    /// `PREFIX SEP-<hash>` for one endpoint.
    pub fn sep_chain(&self, prefix: &str, ep: (Ipv4Addr, u16)) -> String {
        let room = MAX_CHAIN_LEN - prefix.len() - 4;
        let ep = format!("{}:{}", ep.0, ep.1);
        format!("{prefix}SEP-{}", hash(&[&self.key(), &ep], room))
    }
}

/// The service ports a proxy programs: every port of every Service with an IPv4 ClusterIP
/// (not headless, not ExternalName), with the ready endpoints of its EndpointSlices (or,
/// when none is ready, the serving terminating ones, as kube-proxy falls back to).
pub fn service_ports(services: &[&Service], slices: &[&EndpointSlice]) -> Vec<ServicePortInfo> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let meta = s.metadata.clone().unwrap_or_default();
        if s.address_type.as_deref().is_some_and(|t| t != "IPv4") {
            continue;
        }
        if let Some(svc) = meta.labels.get(SERVICE_NAME_LABEL) {
            by_service
                .entry((meta.namespace.unwrap_or_default(), svc.clone()))
                .or_default()
                .push(s);
        }
    }
    let mut out = Vec::new();
    for svc in services {
        let meta = svc.metadata.clone().unwrap_or_default();
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.r#type.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let namespace = meta.namespace.unwrap_or_default();
        let name = meta.name.unwrap_or_default();
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800)
        });
        let node_ports = matches!(spec.r#type.as_deref(), Some("NodePort" | "LoadBalancer"));
        let svc_slices = by_service
            .get(&(namespace.clone(), name.clone()))
            .cloned()
            .unwrap_or_default();
        for port in &spec.ports {
            let (Some(p), protocol) = (
                port.port.and_then(|p| u16::try_from(p).ok()),
                port.protocol.as_deref().unwrap_or("TCP"),
            ) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let mut ready = BTreeSet::new();
            let mut terminating = BTreeSet::new();
            for slice in &svc_slices {
                let Some(target) = slice
                    .ports
                    .iter()
                    .find(|sp| {
                        sp.name.clone().unwrap_or_default() == port_name
                            && sp.protocol.as_deref().unwrap_or("TCP") == protocol
                    })
                    .and_then(|sp| sp.port)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for ep in &slice.endpoints {
                    let c = ep.conditions.unwrap_or_default();
                    let set = if c.ready != Some(false) {
                        &mut ready
                    } else if c.serving == Some(true) && c.terminating == Some(true) {
                        &mut terminating
                    } else {
                        continue;
                    };
                    for a in &ep.addresses {
                        if let Ok(ip) = a.parse::<Ipv4Addr>() {
                            set.insert((ip, target));
                        }
                    }
                }
            }
            let endpoints = if ready.is_empty() { terminating } else { ready };
            out.push(ServicePortInfo {
                name: format!("{namespace}/{name}:{port_name}"),
                cluster_ip,
                protocol: protocol.to_ascii_lowercase(),
                port: p,
                node_port: port
                    .node_port
                    .filter(|_| node_ports)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0),
                affinity_seconds,
                endpoints: endpoints.into_iter().collect(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.protocol.cmp(&b.protocol)));
    out
}

fn comment(text: &str) -> String {
    format!("-m comment --comment \"{}\"", text.replace('"', ""))
}

/// Every chain we own and its rules, for these service ports.
pub fn chains(cfg: &RulesConfig, ports: &[ServicePortInfo]) -> Chains {
    let p = &cfg.prefix;
    let services = format!("{p}SERVICES");
    let nodeports = format!("{p}NODEPORTS");
    let mark_masq = format!("{p}MARK-MASQ");
    let postrouting = format!("{p}POSTROUTING");
    let external = format!("{p}EXTERNAL-SERVICES");
    let mut c: Chains = BTreeMap::new();
    let mut nat_services = Vec::new();
    let mut nat_nodeports = Vec::new();
    let mut filter_services = Vec::new();
    let mut filter_external = Vec::new();
    c.insert(
        (Table::Nat, mark_masq.clone()),
        vec![format!("-j MARK --or-mark {MASQ_MARK}")],
    );
    c.insert(
        (Table::Nat, postrouting),
        vec![
            format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
            format!("-j MARK --xor-mark {MASQ_MARK}"),
            format!(
                "{} -j MASQUERADE",
                comment("navarch service traffic requiring SNAT")
            ),
        ],
    );
    let mut egress = Vec::new();
    if let Some(pods) = &cfg.pod_cidr {
        let inside = cfg.cluster_cidr.as_deref().unwrap_or(pods);
        egress.push(format!(
            "-s {pods} -d {inside} {} -j RETURN",
            comment("pod to pod: no SNAT")
        ));
        egress.push(format!("-s {pods} -d 224.0.0.0/4 -j RETURN"));
        egress.push(format!(
            "-s {pods} {} -j MASQUERADE",
            comment("pods leaving the cluster network: SNAT to the node")
        ));
    }
    c.insert((Table::Nat, format!("{p}POD-EGRESS")), egress);
    for sp in ports {
        let proto = &sp.protocol;
        let dst = format!(
            "-d {}/32 -p {proto} -m {proto} --dport {}",
            sp.cluster_ip, sp.port
        );
        if sp.endpoints.is_empty() {
            filter_services.push(format!(
                "{dst} {} -j REJECT",
                comment(&format!("{} has no endpoints", sp.name))
            ));
            if let Some(np) = sp.node_port {
                filter_external.push(format!(
                    "-m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {np} {} -j REJECT",
                    comment(&format!("{} has no endpoints", sp.name))
                ));
            }
            continue;
        }
        let svc = sp.svc_chain(p);
        nat_services.push(format!(
            "{dst} {} -j {svc}",
            comment(&format!("{} cluster IP", sp.name))
        ));
        if let Some(np) = sp.node_port {
            let m = format!("-p {proto} -m {proto} --dport {np}");
            nat_nodeports.push(format!("{m} {} -j {mark_masq}", comment(&sp.name)));
            nat_nodeports.push(format!("{m} {} -j {svc}", comment(&sp.name)));
        }
        let mut svc_rules = Vec::new();
        if let Some(cidr) = &cfg.cluster_cidr {
            svc_rules.push(format!("{dst} ! -s {cidr} -j {mark_masq}"));
        }
        let seps: Vec<String> = sp.endpoints.iter().map(|ep| sp.sep_chain(p, *ep)).collect();
        if let Some(secs) = sp.affinity_seconds {
            for sep in &seps {
                svc_rules.push(format!(
                    "-m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {secs} --reap -j {sep}"
                ));
            }
        }
        let n = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            if i + 1 < n {
                let mut rule = String::new();
                let _ = write!(
                    rule,
                    "-m statistic --mode random --probability {:.10} -j {sep}",
                    1.0 / (n - i) as f64
                );
                svc_rules.push(rule);
            } else {
                svc_rules.push(format!("-j {sep}"));
            }
        }
        c.insert((Table::Nat, svc), svc_rules);
        for (ep, sep) in sp.endpoints.iter().zip(&seps) {
            let recent = if sp.affinity_seconds.is_some() {
                format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set")
            } else {
                String::new()
            };
            c.insert(
                (Table::Nat, sep.clone()),
                vec![
                    format!("-s {}/32 -j {mark_masq}", ep.0),
                    format!(
                        "-p {proto}{recent} -m {proto} -j DNAT --to-destination {}:{}",
                        ep.0, ep.1
                    ),
                ],
            );
        }
    }
    nat_services.push(format!(
        "-m addrtype --dst-type LOCAL {} -j {nodeports}",
        comment("navarch service nodeports; NOTE: this must be the last rule in this chain")
    ));
    if let Some(cidr) = &cfg.service_cidr {
        filter_services.push(format!(
            "-d {cidr} {} -j REJECT",
            comment("no such service: never route the service CIDR off the node")
        ));
    }
    c.insert((Table::Nat, services.clone()), nat_services);
    c.insert((Table::Nat, nodeports), nat_nodeports);
    c.insert((Table::Filter, services), filter_services);
    c.insert((Table::Filter, external), filter_external);
    // route_localnet (NodePorts on 127.0.0.1) would also let other hosts reach local-only
    // services through a forged 127.0.0.0/8 destination (CVE-2020-8558): drop those, as
    // kube-proxy's KUBE-FIREWALL does.
    c.insert(
        (Table::Filter, format!("{p}FIREWALL")),
        vec![format!(
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT {} -j DROP",
            comment("block incoming localnet connections")
        )],
    );
    c
}

/// The rules that send traffic from the built-in chains into ours.
pub fn jumps(prefix: &str) -> Vec<Jump> {
    let j = |table, chain, rest: &str, target: String, text: &str| Jump {
        table,
        chain,
        args: rest
            .split_whitespace()
            .map(String::from)
            .chain([
                "-m".into(),
                "comment".into(),
                "--comment".into(),
                text.into(),
                "-j".into(),
                target,
            ])
            .collect(),
    };
    let services = format!("{prefix}SERVICES");
    let external = format!("{prefix}EXTERNAL-SERVICES");
    let new = "-m conntrack --ctstate NEW";
    vec![
        j(
            Table::Nat,
            "PREROUTING",
            "",
            services.clone(),
            "navarch service portals",
        ),
        j(
            Table::Nat,
            "OUTPUT",
            "",
            services.clone(),
            "navarch service portals",
        ),
        j(
            Table::Nat,
            "POSTROUTING",
            "",
            format!("{prefix}POSTROUTING"),
            "navarch postrouting rules",
        ),
        j(
            Table::Nat,
            "POSTROUTING",
            "",
            format!("{prefix}POD-EGRESS"),
            "navarch pod egress masquerade",
        ),
        j(
            Table::Filter,
            "INPUT",
            "",
            format!("{prefix}FIREWALL"),
            "navarch firewall",
        ),
        j(
            Table::Filter,
            "INPUT",
            new,
            external.clone(),
            "navarch external service portals",
        ),
        j(
            Table::Filter,
            "FORWARD",
            new,
            external,
            "navarch external service portals",
        ),
        j(
            Table::Filter,
            "FORWARD",
            new,
            services.clone(),
            "navarch service portals",
        ),
        j(
            Table::Filter,
            "OUTPUT",
            new,
            services,
            "navarch service portals",
        ),
    ]
}

/// The `iptables-restore --noflush` input that turns `old` into `new`: chains whose rules
/// changed are declared (which flushes them) and refilled; chains gone are flushed, then
/// deleted once nothing refers to them. Chains that did not change are not mentioned.
/// Empty when nothing changed.
pub fn restore_input(old: &Chains, new: &Chains) -> String {
    let mut out = String::new();
    for table in [Table::Nat, Table::Filter] {
        let changed: Vec<(&String, &Vec<String>)> = new
            .iter()
            .filter(|((t, _), _)| *t == table)
            .filter(|(k, rules)| old.get(*k) != Some(*rules))
            .map(|((_, name), rules)| (name, rules))
            .collect();
        let gone: Vec<&String> = old
            .keys()
            .filter(|(t, name)| *t == table && !new.contains_key(&(table, name.clone())))
            .map(|(_, name)| name)
            .collect();
        if changed.is_empty() && gone.is_empty() {
            continue;
        }
        let _ = writeln!(out, "*{}", table.name());
        for (name, _) in &changed {
            let _ = writeln!(out, ":{name} - [0:0]");
        }
        for name in &gone {
            let _ = writeln!(out, ":{name} - [0:0]");
        }
        for (name, rules) in &changed {
            for r in *rules {
                let _ = writeln!(out, "-A {name} {r}");
            }
        }
        for name in &gone {
            let _ = writeln!(out, "-X {name}");
        }
        out.push_str("COMMIT\n");
    }
    out
}
