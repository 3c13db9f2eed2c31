//! NodeResourcesFit: a pod goes only where allocatable minus what the node's pods request
//! covers its requests, and where a pod slot is free (filter); among those, the least allocated
//! node scores best (score: free CPU and memory after placing the pod, with request-less
//! containers counted as 100m / 200Mi).

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, PluginState, ScorePlugin, Unfit};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn prepare(&self, _: &PodInfo, _: &Snapshot) -> Option<PluginState> {
        Some(Box::new(()))
    }

    fn filter(&self, _: &PluginState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let mut unfit = None;
        let (alloc, used, want) = (&node.allocatable, &node.requested, &pod.requests);
        if node.pods.len() as i64 + 1 > alloc.pods {
            Unfit::note(&mut unfit, "Too many pods");
        }
        let short = |want: i64, alloc: i64, used: i64| want > 0 && want > alloc - used;
        if short(want.milli_cpu, alloc.milli_cpu, used.milli_cpu) {
            Unfit::note(&mut unfit, "Insufficient cpu");
        }
        if short(want.memory, alloc.memory, used.memory) {
            Unfit::note(&mut unfit, "Insufficient memory");
        }
        if short(
            want.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        ) {
            Unfit::note(&mut unfit, "Insufficient ephemeral-storage");
        }
        for (name, amount) in &want.scalar {
            if short(*amount, alloc.get(name), used.get(name)) {
                Unfit::note(&mut unfit, format!("Insufficient {name}"));
            }
        }
        unfit.map_or(Ok(()), Err)
    }
}

/// `(allocatable - requested) * 100 / allocatable`, 0 when the node is full or has none.
fn least_requested(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn prepare(&self, _: &PodInfo, _: &Snapshot, _: &[&NodeInfo]) -> Option<PluginState> {
        Some(Box::new(()))
    }

    /// LeastAllocated: the mean of the CPU and memory scores (equal weights).
    fn score(&self, _: &PluginState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let cpu = least_requested(
            node.non_zero_requested.0 + pod.non_zero.0,
            node.allocatable.milli_cpu,
        );
        let memory = least_requested(
            node.non_zero_requested.1 + pod.non_zero.1,
            node.allocatable.memory,
        );
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    #[test]
    fn table_of_resource_fits() {
        let mut full = node("full-pods", "8", "8Gi");
        full = allocatable(full, "pods", "1");
        let s = Snapshot::from_objects(
            vec![
                node("small", "1", "1Gi"),
                node("big", "8", "16Gi"),
                full,
                allocatable(node("gpu", "8", "16Gi"), "nvidia.com/gpu", "2"),
            ],
            vec![
                on(pod("a", "500m", "512Mi"), "small"),
                on(pod("b", "1", "1Gi"), "full-pods"),
            ],
        );
        let mut gpu = pod("g", "1", "1Gi");
        spec(&mut gpu).containers[0]
            .resources
            .as_mut()
            .unwrap()
            .requests
            .insert(
                "nvidia.com/gpu".into(),
                navarch_api::meta::v1::Quantity { value: "1".into() },
            );
        let cases = [
            (
                "fits everywhere with a free slot",
                pod("p", "100m", "100Mi"),
                vec!["small", "big", "gpu"],
            ),
            (
                "half a core left on small",
                pod("p", "600m", "100Mi"),
                vec!["big", "gpu"],
            ),
            (
                "exactly what is left",
                pod("p", "500m", "512Mi"),
                vec!["small", "big", "gpu"],
            ),
            (
                "no requests still needs a slot",
                pod("p", "", ""),
                vec!["small", "big", "gpu"],
            ),
            ("too big for anyone", pod("p", "9", "1Gi"), vec![]),
            ("extended resource", gpu, vec!["gpu"]),
        ];
        for (name, p, want) in cases {
            assert_eq!(passing(&NodeResourcesFit, &p, &s), want, "{name}");
        }
        let reasons = filter_all(&NodeResourcesFit, &pod("p", "2", "2Gi"), &s);
        assert_eq!(
            reasons[0].1,
            Some(vec![
                "Insufficient cpu".to_string(),
                "Insufficient memory".to_string()
            ])
        );
        assert_eq!(reasons[2].1, Some(vec!["Too many pods".to_string()]));
    }

    #[test]
    fn the_least_allocated_node_scores_best() {
        let s = Snapshot::from_objects(
            vec![node("empty", "4", "8Gi"), node("half", "4", "8Gi")],
            vec![on(pod("a", "2", "4Gi"), "half")],
        );
        // Placing 1 CPU / 2Gi: empty keeps 75% of both, half keeps 25%.
        assert_eq!(
            scores(&NodeResourcesFit, &pod("p", "1", "2Gi"), &s).unwrap(),
            [75, 25]
        );
        // A pod without requests counts as 100m / 200Mi.
        let free = scores(&NodeResourcesFit, &pod("p", "", ""), &s).unwrap();
        assert_eq!(free, [(97 + 97) / 2, (47 + 47) / 2]);
    }
}
