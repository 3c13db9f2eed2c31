//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use crate::framework::{FilterPlugin, PluginState, Unfit};
use crate::node_info::{NodeInfo, TAINT_UNSCHEDULABLE, Taint, TaintEffect};
use crate::pod_info::{PodInfo, tolerated};
use crate::snapshot::Snapshot;

pub const REASON: &str = "node(s) were unschedulable";

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn prepare(&self, pod: &PodInfo, _: &Snapshot) -> Option<PluginState> {
        let taint = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
        };
        (!tolerated(&pod.tolerations, &taint)).then(|| Box::new(()) as PluginState)
    }

    fn filter(&self, _: &PluginState, _: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if node.unschedulable {
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
    fn cordoned_nodes_are_skipped_unless_tolerated() {
        let mut cordoned = node("cordoned", "1", "1Gi");
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let s = Snapshot::from_objects(vec![node("open", "1", "1Gi"), cordoned], vec![]);
        let plain = pod("p", "", "");
        let tolerant = tolerating(
            pod("p", "", ""),
            TAINT_UNSCHEDULABLE,
            "Exists",
            "",
            "NoSchedule",
        );
        assert_eq!(
            filter_all(&NodeUnschedulable, &plain, &s),
            [
                ("open".to_string(), None),
                ("cordoned".to_string(), Some(vec![REASON.to_string()]))
            ]
        );
        assert_eq!(
            passing(&NodeUnschedulable, &tolerant, &s),
            ["open", "cordoned"]
        );
    }
}
