//! NodePorts: a pod asking for a host port cannot go where that port (protocol, overlapping
//! address) is already taken.

use crate::framework::{FilterPlugin, PluginState, Unfit};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn prepare(&self, pod: &PodInfo, _: &Snapshot) -> Option<PluginState> {
        (!pod.host_ports.is_empty()).then(|| Box::new(()) as PluginState)
    }

    fn filter(&self, _: &PluginState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let taken = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Err(Unfit::new(REASON))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    #[test]
    fn a_taken_host_port_keeps_the_pod_off() {
        let s = Snapshot::from_objects(
            vec![node("busy", "1", "1Gi"), node("free", "1", "1Gi")],
            vec![on(host_port(pod("web", "", ""), 8080), "busy")],
        );
        assert_eq!(
            passing(&NodePorts, &host_port(pod("p", "", ""), 8080), &s),
            ["free"]
        );
        assert_eq!(
            passing(&NodePorts, &host_port(pod("p", "", ""), 9090), &s),
            ["busy", "free"]
        );
        assert_eq!(passing(&NodePorts, &pod("p", "", ""), &s), ["busy", "free"]);
        assert_eq!(
            filter_all(&NodePorts, &host_port(pod("p", "", ""), 8080), &s)[0].1,
            Some(vec![REASON.to_string()])
        );
    }
}
