//! NodeResourcesBalancedAllocation: prefers nodes whose CPU and memory would be used in equal
//! proportion after placing the pod (score: `(1 - standard deviation of the fractions) * 100`).

use crate::framework::{MAX_NODE_SCORE, PluginState, ScorePlugin};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

pub struct BalancedAllocation;

fn fraction(requested: i64, allocatable: i64) -> Option<f64> {
    (allocatable > 0).then(|| (requested as f64 / allocatable as f64).min(1.0))
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn prepare(&self, pod: &PodInfo, _: &Snapshot, _: &[&NodeInfo]) -> Option<PluginState> {
        (pod.requests.milli_cpu > 0 || pod.requests.memory > 0).then(|| Box::new(()) as PluginState)
    }

    fn score(&self, _: &PluginState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let cpu = fraction(
            node.requested.milli_cpu + pod.requests.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = fraction(
            node.requested.memory + pod.requests.memory,
            node.allocatable.memory,
        );
        let std = match (cpu, memory) {
            (Some(c), Some(m)) => (c - m).abs() / 2.0,
            _ => 0.0,
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    #[test]
    fn balanced_use_scores_best() {
        let s = Snapshot::from_objects(
            vec![node("cpu-heavy", "4", "8Gi"), node("even", "4", "8Gi")],
            vec![
                on(pod("a", "3", "0"), "cpu-heavy"),
                on(pod("b", "1", "2Gi"), "even"),
            ],
        );
        // After placing 1 CPU / 2Gi: cpu-heavy is at 100% CPU / 25% memory, even at 50% / 50%.
        assert_eq!(
            scores(&BalancedAllocation, &pod("p", "1", "2Gi"), &s).unwrap(),
            [62, 100]
        );
        assert_eq!(scores(&BalancedAllocation, &pod("p", "", ""), &s), None);
    }
}
