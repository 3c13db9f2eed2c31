//! The node service proxy (kube-proxy's iptables mode): every node agent runs one. It
//! watches Services and EndpointSlices ([`proxier`]), turns them into chains ([`rules`],
//! pure functions) and programs them atomically with `iptables-restore` ([`iptables`]).
//! It also keeps the host-gw routes to the other nodes' pods ([`routes`]). Nodes without
//! root serve ClusterIPs from loopback stand-ins instead ([`userspace`]).

pub mod iptables;
pub mod proxier;
pub mod routes;
pub mod rules;
pub mod userspace;

pub use iptables::Iptables;
pub use proxier::{Proxy, ProxyConfig};
pub use routes::RouteSync;
pub use rules::RulesConfig;
pub use userspace::{UserspaceConfig, UserspaceProxy};

/// The kernel settings the proxy's rules rely on, as kube-proxy sets them: bridged
/// pod-to-pod traffic passes through iptables (`br_netfilter`; without it a pod reaching a
/// Service whose endpoint sits on the same bridge gets replies that skip the conntrack
/// un-DNAT), forwarding, and NodePorts on 127.0.0.1 (`route_localnet`; the `FIREWALL`
/// chain drops what that would otherwise let in). Best effort: logged when unavailable.
pub fn prepare_host() {
    for (path, what) in [
        (
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
            "bridged traffic through iptables",
        ),
        ("/proc/sys/net/ipv4/ip_forward", "IPv4 forwarding"),
        (
            "/proc/sys/net/ipv4/conf/all/route_localnet",
            "NodePorts on localhost",
        ),
    ] {
        match std::fs::read_to_string(path) {
            Ok(v) if v.trim() == "1" => {}
            Ok(_) => match std::fs::write(path, "1") {
                Ok(()) => tracing::info!(sysctl = path, "enabled {what}"),
                Err(error) => tracing::warn!(sysctl = path, %error, "cannot enable {what}"),
            },
            Err(error) => tracing::warn!(
                sysctl = path,
                %error,
                "{what} unavailable (load br_netfilter); Services may not answer pods on the same node"
            ),
        }
    }
}
