//! NodeAffinity: `nodeSelector` and required node affinity decide where a pod may go (filter);
//! preferred node affinity terms add their weights (score).

use crate::framework::{FilterPlugin, PluginState, ScorePlugin, Unfit, default_normalize};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn prepare(&self, pod: &PodInfo, _: &Snapshot) -> Option<PluginState> {
        (!pod.node_selector.is_empty() || pod.required_node_terms.is_some())
            .then(|| Box::new(()) as PluginState)
    }

    fn filter(&self, _: &PluginState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if pod.matches_node_selector(&node.labels, &node.name) {
            Ok(())
        } else {
            Err(Unfit::new(REASON))
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn prepare(&self, pod: &PodInfo, _: &Snapshot, _: &[&NodeInfo]) -> Option<PluginState> {
        (!pod.preferred_node_terms.is_empty()).then(|| Box::new(()) as PluginState)
    }

    /// The sum of the weights of the preferred terms the node matches.
    fn score(&self, _: &PluginState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        pod.preferred_node_terms
            .iter()
            .filter(|(_, term)| term.matches(&node.labels, &node.name))
            .map(|(w, _)| *w)
            .sum()
    }

    fn normalize(&self, _: &PluginState, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{
        Affinity, NodeAffinity as WireNodeAffinity, NodeSelector, NodeSelectorRequirement,
        NodeSelectorTerm, PreferredSchedulingTerm,
    };

    use super::*;
    use crate::plugins::testing::*;

    fn term(key: &str, op: &str, values: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: vec![NodeSelectorRequirement {
                key: Some(key.into()),
                operator: Some(op.into()),
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            match_fields: vec![],
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot::from_objects(
            vec![
                labeled(
                    node("a1", "1", "1Gi"),
                    &[("zone", "a"), ("disk", "ssd"), ("cores", "4")],
                ),
                labeled(
                    node("b1", "1", "1Gi"),
                    &[("zone", "b"), ("disk", "hdd"), ("cores", "16")],
                ),
                labeled(node("c1", "1", "1Gi"), &[("zone", "c"), ("cores", "32")]),
            ],
            vec![],
        )
    }

    fn required(terms: Vec<NodeSelectorTerm>) -> navarch_api::core::v1::Pod {
        let mut p = pod("p", "", "");
        spec(&mut p).affinity = Some(Affinity {
            node_affinity: Some(WireNodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    #[test]
    fn table_of_selectors_and_required_affinity() {
        let s = snapshot();
        let mut by_selector = pod("p", "", "");
        spec(&mut by_selector).node_selector = [("disk".to_string(), "ssd".to_string())].into();
        let cases = [
            ("no constraints", pod("p", "", ""), vec!["a1", "b1", "c1"]),
            ("nodeSelector", by_selector, vec!["a1"]),
            (
                "In",
                required(vec![term("zone", "In", &["b", "c"])]),
                vec!["b1", "c1"],
            ),
            (
                "NotIn",
                required(vec![term("zone", "NotIn", &["b"])]),
                vec!["a1", "c1"],
            ),
            (
                "Exists",
                required(vec![term("disk", "Exists", &[])]),
                vec!["a1", "b1"],
            ),
            (
                "DoesNotExist",
                required(vec![term("disk", "DoesNotExist", &[])]),
                vec!["c1"],
            ),
            (
                "Gt",
                required(vec![term("cores", "Gt", &["8"])]),
                vec!["b1", "c1"],
            ),
            (
                "Lt",
                required(vec![term("cores", "Lt", &["8"])]),
                vec!["a1"],
            ),
            (
                "terms are ORed",
                required(vec![
                    term("zone", "In", &["a"]),
                    term("cores", "Gt", &["20"]),
                ]),
                vec!["a1", "c1"],
            ),
            (
                "no term matches",
                required(vec![term("zone", "In", &["z"])]),
                vec![],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(passing(&NodeAffinity, &p, &s), want, "{name}");
        }
        let reasons = filter_all(
            &NodeAffinity,
            &required(vec![term("zone", "In", &["a"])]),
            &s,
        );
        assert_eq!(reasons[1].1.as_deref(), Some(&[REASON.to_string()][..]));
    }

    #[test]
    fn preferred_terms_add_their_weights() {
        let s = snapshot();
        let mut p = pod("p", "", "");
        spec(&mut p).affinity = Some(Affinity {
            node_affinity: Some(WireNodeAffinity {
                preferred_during_scheduling_ignored_during_execution: vec![
                    PreferredSchedulingTerm {
                        weight: Some(80),
                        preference: Some(term("zone", "In", &["a"])),
                    },
                    PreferredSchedulingTerm {
                        weight: Some(20),
                        preference: Some(term("disk", "Exists", &[])),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        });
        // Raw 100, 20, 0 → normalized by the best.
        assert_eq!(scores(&NodeAffinity, &p, &s).unwrap(), [100, 20, 0]);
        assert_eq!(scores(&NodeAffinity, &pod("q", "", ""), &s), None);
    }
}
