//! NodeReady: a node whose `Ready` condition is not `True` takes no new pods, as if it carried
//! the `node.kubernetes.io/not-ready` (or `unreachable`, for `Unknown`) NoSchedule taint that
//! Kubernetes puts on such nodes; pods tolerating that taint (DaemonSets) may still go there.

use crate::framework::{FilterPlugin, PluginState, Unfit};
use crate::node_info::{
    NodeInfo, Readiness, TAINT_NOT_READY, TAINT_UNREACHABLE, Taint, TaintEffect,
};
use crate::pod_info::{PodInfo, tolerated};
use crate::snapshot::Snapshot;

pub struct NodeReady;

struct State {
    tolerates_not_ready: bool,
    tolerates_unreachable: bool,
}

fn condition_taint(key: &str) -> Taint {
    Taint {
        key: key.into(),
        value: String::new(),
        effect: TaintEffect::NoSchedule,
    }
}

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn prepare(&self, pod: &PodInfo, _: &Snapshot) -> Option<PluginState> {
        let state = State {
            tolerates_not_ready: tolerated(&pod.tolerations, &condition_taint(TAINT_NOT_READY)),
            tolerates_unreachable: tolerated(&pod.tolerations, &condition_taint(TAINT_UNREACHABLE)),
        };
        (!(state.tolerates_not_ready && state.tolerates_unreachable))
            .then(|| Box::new(state) as PluginState)
    }

    fn filter(&self, state: &PluginState, _: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let state = state.downcast_ref::<State>().expect("NodeReady state");
        match node.readiness {
            Readiness::NotReady if !state.tolerates_not_ready => Err(Unfit::new(
                "node(s) had untolerated taint {node.kubernetes.io/not-ready: }",
            )),
            Readiness::Unknown if !state.tolerates_unreachable => Err(Unfit::new(
                "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    #[test]
    fn only_ready_nodes_pass_unless_tolerated() {
        let mut no_condition = node("new", "1", "1Gi");
        no_condition.status.as_mut().unwrap().conditions.clear();
        let s = Snapshot::from_objects(
            vec![
                node("ready", "1", "1Gi"),
                ready(node("down", "1", "1Gi"), "False"),
                ready(node("gone", "1", "1Gi"), "Unknown"),
                no_condition,
            ],
            vec![],
        );
        let reasons: Vec<_> = filter_all(&NodeReady, &pod("p", "", ""), &s)
            .into_iter()
            .map(|(n, r)| (n, r.map(|r| r.join(";"))))
            .collect();
        assert_eq!(
            reasons,
            [
                ("ready".to_string(), None),
                (
                    "down".to_string(),
                    Some(
                        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
                            .to_string()
                    )
                ),
                (
                    "gone".to_string(),
                    Some(
                        "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
                            .to_string()
                    )
                ),
                (
                    "new".to_string(),
                    Some(
                        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
                            .to_string()
                    )
                ),
            ]
        );
        let daemon = tolerating(
            tolerating(pod("d", "", ""), TAINT_NOT_READY, "Exists", "", ""),
            TAINT_UNREACHABLE,
            "Exists",
            "",
            "",
        );
        assert_eq!(passing(&NodeReady, &daemon, &s).len(), 4);
        let half = tolerating(
            pod("d", "", ""),
            TAINT_NOT_READY,
            "Exists",
            "",
            "NoSchedule",
        );
        assert_eq!(passing(&NodeReady, &half, &s), ["ready", "down", "new"]);
    }
}
