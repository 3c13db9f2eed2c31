//! TaintToleration: a node's NoSchedule and NoExecute taints keep out pods that do not tolerate
//! them (filter); PreferNoSchedule taints only make a node less attractive (score).

use crate::framework::{FilterPlugin, PluginState, ScorePlugin, Unfit, default_normalize};
use crate::node_info::{NodeInfo, TaintEffect};
use crate::pod_info::{PodInfo, Toleration, tolerated};
use crate::snapshot::Snapshot;

pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn prepare(&self, _: &PodInfo, _: &Snapshot) -> Option<PluginState> {
        Some(Box::new(()))
    }

    fn filter(&self, _: &PluginState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match node.taints.iter().find(|t| {
            matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
                && !tolerated(&pod.tolerations, t)
        }) {
            None => Ok(()),
            Some(t) => Err(Unfit::new(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key, t.value
            ))),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn prepare(&self, pod: &PodInfo, _: &Snapshot, _: &[&NodeInfo]) -> Option<PluginState> {
        let prefer: Vec<Toleration> = pod
            .tolerations
            .iter()
            .filter(|t| t.effect.is_none_or(|e| e == TaintEffect::PreferNoSchedule))
            .cloned()
            .collect();
        Some(Box::new(prefer))
    }

    /// The number of PreferNoSchedule taints the pod does not tolerate.
    fn score(&self, state: &PluginState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let prefer = state
            .downcast_ref::<Vec<Toleration>>()
            .expect("TaintToleration state");
        node.taints
            .iter()
            .filter(|t| t.effect == TaintEffect::PreferNoSchedule && !tolerated(prefer, t))
            .count() as i64
    }

    fn normalize(&self, _: &PluginState, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    fn snapshot() -> Snapshot {
        Snapshot::from_objects(
            vec![
                node("clean", "1", "1Gi"),
                tainted(node("gpu", "1", "1Gi"), "dedicated", "gpu", "NoSchedule"),
                tainted(node("draining", "1", "1Gi"), "maintenance", "", "NoExecute"),
                tainted(node("meh", "1", "1Gi"), "spot", "true", "PreferNoSchedule"),
            ],
            vec![],
        )
    }

    #[test]
    fn table_of_taint_filters() {
        let s = snapshot();
        let cases = [
            ("no tolerations", pod("p", "", ""), vec!["clean", "meh"]),
            (
                "tolerates gpu by value",
                tolerating(pod("p", "", ""), "dedicated", "Equal", "gpu", "NoSchedule"),
                vec!["clean", "gpu", "meh"],
            ),
            (
                "wrong value",
                tolerating(pod("p", "", ""), "dedicated", "Equal", "tpu", "NoSchedule"),
                vec!["clean", "meh"],
            ),
            (
                "exists for any effect",
                tolerating(pod("p", "", ""), "maintenance", "Exists", "", ""),
                vec!["clean", "draining", "meh"],
            ),
            (
                "tolerates everything",
                tolerating(pod("p", "", ""), "", "Exists", "", ""),
                vec!["clean", "gpu", "draining", "meh"],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(passing(&TaintToleration, &p, &s), want, "{name}");
        }
        let reasons = filter_all(&TaintToleration, &pod("p", "", ""), &s);
        assert_eq!(
            reasons[1].1.as_deref(),
            Some(&["node(s) had untolerated taint {dedicated: gpu}".to_string()][..])
        );
        assert_eq!(
            reasons[2].1.as_deref(),
            Some(&["node(s) had untolerated taint {maintenance: }".to_string()][..])
        );
    }

    #[test]
    fn prefer_no_schedule_only_lowers_the_score() {
        let s = snapshot();
        assert_eq!(
            scores(&TaintToleration, &pod("p", "", ""), &s).unwrap(),
            [100, 100, 100, 0]
        );
        let tolerant = tolerating(pod("p", "", ""), "spot", "Exists", "", "PreferNoSchedule");
        assert_eq!(
            scores(&TaintToleration, &tolerant, &s).unwrap(),
            [100, 100, 100, 100]
        );
    }
}
