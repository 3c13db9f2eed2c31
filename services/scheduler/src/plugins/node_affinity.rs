//! NodeAffinity: `nodeSelector` and required node affinity decide where a pod may go (filter);
//! preferred node affinity terms add their weights (score).

use crate::framework::{FilterPlugin, PluginState, ScorePlugin, Unfit, default_normalize};
use crate::node_info::NodeInfo;
use crate::pod_info::{NodeTerm, PodInfo};
use crate::snapshot::{LabelIds, Snapshot};
use navarch_api::selectors::{Operator, Requirement};

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn prepare(&self, pod: &PodInfo, snapshot: &Snapshot) -> Option<PluginState> {
        (!pod.node_selector.is_empty() || pod.required_node_terms.is_some())
            .then(|| Box::new(Compiled::new(pod, snapshot.label_ids())) as PluginState)
    }

    fn filter(&self, state: &PluginState, _: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let compiled = state
            .downcast_ref::<Compiled>()
            .expect("node affinity state");
        if compiled.matches(node) {
            Ok(())
        } else {
            Err(Unfit::new(REASON))
        }
    }
}

/// A pod's nodeSelector and required terms over the snapshot's label ids: checked against
/// thousands of nodes per pod, so each check compares integers, not strings. A key or value
/// no node has ever had has no id, and is decided once here.
struct Compiled {
    /// `None`: a nodeSelector pair no node has, nothing matches.
    selector: Option<Vec<(u32, u32)>>,
    /// Any term must hold (`None`: no required terms).
    terms: Option<Vec<Term>>,
}

struct Term {
    checks: Vec<Check>,
    /// matchFields (on `metadata.name`), as written.
    fields: Option<NodeTerm>,
}

enum Check {
    Never,
    /// The key's value is one of these (In).
    OneOf(u32, Vec<u32>),
    /// The key is missing or its value is none of these (NotIn).
    NoneOf(u32, Vec<u32>),
    Exists(u32),
    Absent(u32),
    /// Integer comparisons (Gt, Lt) read the value itself.
    Labels(Requirement),
}

impl Compiled {
    fn new(pod: &PodInfo, ids: &LabelIds) -> Self {
        let selector = pod
            .node_selector
            .iter()
            .map(|(k, v)| Some((ids.get(k)?, ids.get(v)?)))
            .collect();
        let terms = pod
            .required_node_terms
            .as_ref()
            .map(|terms| terms.iter().map(|t| Term::new(t, ids)).collect());
        Self { selector, terms }
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        let Some(selector) = &self.selector else {
            return false;
        };
        selector.iter().all(|(k, v)| node.label_id(*k) == Some(*v))
            && self
                .terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
    }
}

impl Term {
    fn new(term: &NodeTerm, ids: &LabelIds) -> Self {
        let values =
            |r: &Requirement| -> Vec<u32> { r.values.iter().filter_map(|v| ids.get(v)).collect() };
        let mut checks: Vec<Check> = term
            .expressions
            .iter()
            .filter_map(|r| {
                let key = ids.get(&r.key);
                Some(match (&r.operator, key) {
                    (Operator::In | Operator::Equals | Operator::DoubleEquals, None) => {
                        Check::Never
                    }
                    (Operator::In | Operator::Equals | Operator::DoubleEquals, Some(k)) => {
                        Check::OneOf(k, values(r))
                    }
                    // No node has the key: the requirement holds everywhere.
                    (Operator::NotIn | Operator::NotEquals | Operator::DoesNotExist, None) => {
                        return None;
                    }
                    (Operator::NotIn | Operator::NotEquals, Some(k)) => Check::NoneOf(k, values(r)),
                    (Operator::Exists, None) => Check::Never,
                    (Operator::Exists, Some(k)) => Check::Exists(k),
                    (Operator::DoesNotExist, Some(k)) => Check::Absent(k),
                    (Operator::GreaterThan | Operator::LessThan, _) => Check::Labels(r.clone()),
                })
            })
            .collect();
        // A term with neither expressions nor fields matches nothing.
        if term.expressions.is_empty() && term.fields.is_empty() {
            checks.push(Check::Never);
        }
        Self {
            checks,
            fields: (!term.fields.is_empty()).then(|| NodeTerm {
                expressions: Vec::new(),
                fields: term.fields.clone(),
            }),
        }
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        self.checks.iter().all(|c| match c {
            Check::Never => false,
            Check::OneOf(k, values) => node.label_id(*k).is_some_and(|v| values.contains(&v)),
            Check::NoneOf(k, values) => node.label_id(*k).is_none_or(|v| !values.contains(&v)),
            Check::Exists(k) => node.label_id(*k).is_some(),
            Check::Absent(k) => node.label_id(*k).is_none(),
            Check::Labels(r) => r.matches(&node.labels),
        }) && self
            .fields
            .as_ref()
            .is_none_or(|f| f.matches(&node.labels, &node.name))
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
            // Keys and values no node has: decided without looking at the nodes.
            (
                "In on a key no node has",
                required(vec![term("rack", "In", &["r1"])]),
                vec![],
            ),
            (
                "NotIn on a key no node has",
                required(vec![term("rack", "NotIn", &["r1"])]),
                vec!["a1", "b1", "c1"],
            ),
            (
                "NotIn with a value no node has",
                required(vec![term("zone", "NotIn", &["z", "a"])]),
                vec!["b1", "c1"],
            ),
            (
                "Exists on a key no node has",
                required(vec![term("rack", "Exists", &[])]),
                vec![],
            ),
            (
                "DoesNotExist on a key no node has",
                required(vec![term("rack", "DoesNotExist", &[])]),
                vec!["a1", "b1", "c1"],
            ),
            (
                "a value that is another label's key",
                required(vec![term("zone", "In", &["disk"])]),
                vec![],
            ),
            (
                "an empty term matches nothing",
                required(vec![NodeSelectorTerm::default()]),
                vec![],
            ),
            (
                "expressions and fields together",
                required(vec![NodeSelectorTerm {
                    match_fields: vec![NodeSelectorRequirement {
                        key: Some("metadata.name".into()),
                        operator: Some("In".into()),
                        values: vec!["b1".into(), "c1".into()],
                    }],
                    ..term("cores", "Gt", &["20"])
                }]),
                vec!["c1"],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(passing(&NodeAffinity, &p, &s), want, "{name}");
            // The same answer as the label strings give.
            let info = PodInfo::new(std::sync::Arc::new(p), 0);
            let by_strings: Vec<&str> = s
                .nodes()
                .iter()
                .filter(|n| info.matches_node_selector(&n.labels, &n.name))
                .map(|n| n.name.as_str())
                .collect();
            assert_eq!(by_strings, want, "{name} (strings)");
        }
        let mut by_unknown_value = pod("p", "", "");
        spec(&mut by_unknown_value).node_selector =
            [("disk".to_string(), "nvme".to_string())].into();
        assert!(passing(&NodeAffinity, &by_unknown_value, &s).is_empty());

        // A relabelled node is matched by its new labels.
        let mut s = s;
        s.upsert_node(std::sync::Arc::new(labeled(
            node("c1", "1", "1Gi"),
            &[("zone", "a"), ("disk", "nvme")],
        )));
        assert_eq!(passing(&NodeAffinity, &by_unknown_value, &s), ["c1"]);
        assert_eq!(
            passing(
                &NodeAffinity,
                &required(vec![term("cores", "Exists", &[])]),
                &s
            ),
            ["a1", "b1"]
        );
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
