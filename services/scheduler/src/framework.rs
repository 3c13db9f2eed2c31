//! The scheduling algorithm: filter plugins drop the nodes that cannot run a pod, score plugins
//! rank the rest, the best node wins. A pure function of a pod and a [`Snapshot`].
//!
//! Like kube-scheduler, a large cluster is not searched exhaustively: once enough feasible nodes
//! are found (all of them up to 100 nodes; at 5,000 nodes 10%) the search stops, and the next
//! search starts where this one stopped, so every node gets its turn.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

/// What a plugin computed for one pod before looking at nodes.
pub type PluginState = Box<dyn Any + Send + Sync>;

/// The highest normalized score.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node cannot run a pod: one reason or more, as they appear in the pod's condition.
/// One static reason costs no allocation (filters run for thousands of nodes per pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit {
    first: Cow<'static, str>,
    more: Vec<Cow<'static, str>>,
}

impl Unfit {
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            first: reason.into(),
            more: Vec::new(),
        }
    }

    /// Adds a reason to `unfit`, creating it with this first reason if needed.
    pub fn note(unfit: &mut Option<Unfit>, reason: impl Into<Cow<'static, str>>) {
        match unfit {
            Some(u) => u.more.push(reason.into()),
            None => *unfit = Some(Self::new(reason)),
        }
    }

    /// The reasons, first to last.
    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.first.as_ref()).chain(self.more.iter().map(|r| r.as_ref()))
    }

    fn into_reasons(self) -> impl Iterator<Item = Cow<'static, str>> {
        std::iter::once(self.first).chain(self.more)
    }
}

/// Decides whether a node can run a pod.
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Per-pod preparation; `None` when the plugin has nothing to check for this pod.
    fn prepare(&self, pod: &PodInfo, snapshot: &Snapshot) -> Option<PluginState>;
    fn filter(&self, state: &PluginState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit>;
}

/// Ranks the feasible nodes for a pod.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Per-pod preparation over the feasible nodes; `None` to skip (adds nothing).
    fn prepare(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        feasible: &[&NodeInfo],
    ) -> Option<PluginState>;
    /// The raw score of one node.
    fn score(
        &self,
        state: &PluginState,
        pod: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> i64;
    /// Maps raw scores to `0..=MAX_NODE_SCORE` (in place). The default keeps them.
    fn normalize(&self, _state: &PluginState, _scores: &mut [i64]) {}
}

/// The plugins a scheduler runs, in order, and the weight of each score plugin.
pub struct Registry {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scorers: Vec<(Box<dyn ScorePlugin>, i64)>,
}

impl Default for Registry {
    /// Kubernetes' default profile (the plugins this scheduler has), with its weights.
    fn default() -> Self {
        use crate::plugins::*;
        Self {
            filters: vec![
                Box::new(node_unschedulable::NodeUnschedulable),
                Box::new(node_ready::NodeReady),
                Box::new(taint_toleration::TaintToleration),
                Box::new(node_affinity::NodeAffinity),
                Box::new(node_ports::NodePorts),
                Box::new(resources_fit::NodeResourcesFit),
                Box::new(pod_topology_spread::PodTopologySpread),
                Box::new(inter_pod_affinity::InterPodAffinity),
            ],
            scorers: vec![
                (Box::new(taint_toleration::TaintToleration), 3),
                (Box::new(node_affinity::NodeAffinity), 2),
                (Box::new(pod_topology_spread::PodTopologySpread), 2),
                (Box::new(inter_pod_affinity_score::InterPodAffinityScore), 2),
                (Box::new(resources_fit::NodeResourcesFit), 1),
                (Box::new(balanced_allocation::BalancedAllocation), 1),
            ],
        }
    }
}

/// Where a pod goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub node: String,
    pub score: i64,
    /// Feasible nodes found.
    pub feasible: usize,
    /// Nodes filtered.
    pub evaluated: usize,
}

/// No node can run the pod: how many nodes there are, and how many failed for each reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    /// Kubernetes' message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had …`
    /// (reasons as "count reason", sorted as strings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        reasons.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            reasons.join(", ")
        )
    }
}

impl std::error::Error for FitError {}

/// How many feasible nodes to find before scoring (kube-scheduler's adaptive
/// `percentageOfNodesToScore`: 50% at 0 nodes falling by 1% per 125 nodes, at least 5%, and
/// never fewer than 100 nodes). `percentage` overrides the adaptive value.
pub fn feasible_nodes_to_find(nodes: usize, percentage: Option<u32>) -> usize {
    const MIN: usize = 100;
    if nodes < MIN {
        return nodes;
    }
    let pct = match percentage {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => (50usize.saturating_sub(nodes / 125)).max(5),
    };
    (nodes * pct / 100).max(MIN)
}

/// The scheduler's rotating state between pods: where the next search starts, and the seed
/// that breaks ties between equally good nodes.
#[derive(Clone, Debug, Default)]
pub struct Cursor {
    pub next_start: usize,
    pub seed: u64,
}

impl Cursor {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to break ties fairly.
        let mut x = self.seed.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Picks a node for `pod`, or says why none fits.
pub fn schedule(
    pod: &PodInfo,
    snapshot: &Snapshot,
    registry: &Registry,
    cursor: &mut Cursor,
    percentage: Option<u32>,
) -> Result<Decision, FitError> {
    let nodes = snapshot.nodes();
    let n = nodes.len();
    if n == 0 {
        return Err(FitError {
            nodes: 0,
            reasons: BTreeMap::new(),
        });
    }
    let filters: Vec<(&dyn FilterPlugin, PluginState)> = registry
        .filters
        .iter()
        .filter_map(|f| f.prepare(pod, snapshot).map(|s| (f.as_ref(), s)))
        .collect();
    let want = feasible_nodes_to_find(n, percentage);
    let fits = |node: &NodeInfo| {
        filters
            .iter()
            .try_for_each(|(f, state)| f.filter(state, pod, node))
    };
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(n));
    let start = cursor.next_start % n;
    let mut evaluated = 0;
    for i in 0..n {
        let node = &nodes[(start + i) % n];
        evaluated += 1;
        if fits(node).is_ok() {
            feasible.push(node);
            if feasible.len() >= want {
                break;
            }
        }
    }
    cursor.next_start = (start + evaluated) % n;
    if feasible.is_empty() {
        // Only now find out why: each node counts the reasons of its first failing filter.
        let mut reasons: BTreeMap<Cow<'static, str>, usize> = BTreeMap::new();
        for node in nodes {
            if let Err(unfit) = fits(node) {
                for reason in unfit.into_reasons() {
                    *reasons.entry(reason).or_default() += 1;
                }
            }
        }
        return Err(FitError {
            nodes: n,
            reasons: reasons
                .into_iter()
                .map(|(r, c)| (r.into_owned(), c))
                .collect(),
        });
    }
    if feasible.len() == 1 {
        return Ok(Decision {
            node: feasible[0].name.clone(),
            score: 0,
            feasible: 1,
            evaluated,
        });
    }
    let mut totals = vec![0i64; feasible.len()];
    let mut scores = vec![0i64; feasible.len()];
    for (plugin, weight) in &registry.scorers {
        let Some(state) = plugin.prepare(pod, snapshot, &feasible) else {
            continue;
        };
        for (s, node) in scores.iter_mut().zip(&feasible) {
            *s = plugin.score(&state, pod, node, snapshot);
        }
        plugin.normalize(&state, &mut scores);
        for (t, s) in totals.iter_mut().zip(&scores) {
            *t += s * weight;
        }
    }
    // The best score; ties are broken uniformly at random (reservoir sampling).
    let mut best = 0;
    let mut ties = 1u64;
    for i in 1..totals.len() {
        if totals[i] > totals[best] {
            best = i;
            ties = 1;
        } else if totals[i] == totals[best] {
            ties += 1;
            if cursor.next_random().is_multiple_of(ties) {
                best = i;
            }
        }
    }
    Ok(Decision {
        node: feasible[best].name.clone(),
        score: totals[best],
        feasible: feasible.len(),
        evaluated,
    })
}

/// Kubernetes' `DefaultNormalizeScore`: scales scores to `0..=max` by the highest one;
/// `reverse` turns high raw scores into low ones.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_errors_read_like_kubernetes() {
        let err = FitError {
            nodes: 3,
            reasons: BTreeMap::from([
                ("Insufficient cpu".to_string(), 1),
                (
                    "node(s) didn't match Pod's node affinity/selector".to_string(),
                    2,
                ),
            ]),
        };
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        let none = FitError {
            nodes: 0,
            reasons: BTreeMap::new(),
        };
        assert_eq!(none.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn table_of_feasible_nodes_to_find() {
        for (nodes, pct, want) in [
            (0, None, 0),
            (50, None, 50),
            (100, None, 100),
            (500, None, 230),
            (1000, None, 420),
            (5000, None, 500),
            (6000, None, 300),
            (20000, None, 1000),
            (5000, Some(100), 5000),
            (5000, Some(1), 100),
        ] {
            assert_eq!(
                feasible_nodes_to_find(nodes, pct),
                want,
                "{nodes} nodes, {pct:?}"
            );
        }
    }

    #[test]
    fn table_of_default_normalization() {
        let cases: [(&[i64], bool, &[i64]); 4] = [
            (&[0, 5, 10], false, &[0, 50, 100]),
            (&[0, 5, 10], true, &[100, 50, 0]),
            (&[0, 0], false, &[0, 0]),
            (&[0, 0], true, &[100, 100]),
        ];
        for (input, reverse, want) in cases {
            let mut s = input.to_vec();
            default_normalize(&mut s, reverse);
            assert_eq!(s, want, "{input:?} reverse={reverse}");
        }
    }

    mod end_to_end {
        use std::sync::Arc;

        use super::*;
        use crate::plugins::testing::*;
        use crate::pod_info::LABEL_ZONE;

        fn run(pod: &navarch_api::core::v1::Pod, s: &Snapshot) -> Result<Decision, FitError> {
            schedule(
                &info(pod),
                s,
                &Registry::default(),
                &mut Cursor::default(),
                None,
            )
        }

        #[test]
        fn the_message_counts_each_reason_like_kubernetes() {
            let s = Snapshot::from_objects(
                vec![
                    labeled(node("a1", "1", "4Gi"), &[("zone", "a")]),
                    labeled(node("b1", "8", "4Gi"), &[("zone", "b")]),
                    labeled(node("b2", "8", "4Gi"), &[("zone", "b")]),
                ],
                vec![],
            );
            let mut p = pod("p", "2", "1Gi");
            spec(&mut p).node_selector = [("zone".to_string(), "a".to_string())].into();
            assert_eq!(
                run(&p, &s).unwrap_err().to_string(),
                "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
            );
        }

        #[test]
        fn each_node_reports_its_first_failing_filter() {
            let mut cordoned = node("cordoned", "8", "8Gi");
            cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
            let s = Snapshot::from_objects(
                vec![
                    cordoned,
                    ready(node("down", "8", "8Gi"), "False"),
                    tainted(node("gpu", "8", "8Gi"), "dedicated", "gpu", "NoSchedule"),
                    node("small", "1", "1Gi"),
                    node("tiny", "1", "1Gi"),
                ],
                vec![],
            );
            assert_eq!(
                run(&pod("p", "2", "2Gi"), &s).unwrap_err().to_string(),
                "0/5 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
                 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
                 1 node(s) were unschedulable, 2 Insufficient cpu, 2 Insufficient memory."
            );
            assert_eq!(
                run(&pod("p", "1", "1Gi"), &Snapshot::new())
                    .unwrap_err()
                    .to_string(),
                "no nodes available to schedule pods"
            );
        }

        #[test]
        fn picks_the_least_allocated_node() {
            let s = Snapshot::from_objects(
                vec![node("busy", "4", "8Gi"), node("idle", "4", "8Gi")],
                vec![on(pod("x", "3", "6Gi"), "busy")],
            );
            let d = run(&pod("p", "500m", "512Mi"), &s).unwrap();
            assert_eq!(d.node, "idle");
            assert_eq!(d.feasible, 2);
        }

        #[test]
        fn assumed_pods_take_their_share_at_once() {
            // Two pods that each need 60% of the only node: exactly one fits.
            let mut s = Snapshot::from_objects(vec![node("only", "1", "1Gi")], vec![]);
            let mut cursor = Cursor::default();
            let registry = Registry::default();
            let first = info(&pod("a", "600m", "100Mi"));
            let d = schedule(&first, &s, &registry, &mut cursor, None).unwrap();
            s.place(Arc::new(first), &d.node, true);
            let err = schedule(
                &info(&pod("b", "600m", "100Mi")),
                &s,
                &registry,
                &mut cursor,
                None,
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "0/1 nodes are available: 1 Insufficient cpu."
            );
        }

        #[test]
        fn replicas_spread_over_nodes_and_zones() {
            let mut s = Snapshot::from_objects(
                vec![
                    labeled(node("a1", "8", "16Gi"), &[(LABEL_ZONE, "a")]),
                    labeled(node("a2", "8", "16Gi"), &[(LABEL_ZONE, "a")]),
                    labeled(node("b1", "8", "16Gi"), &[(LABEL_ZONE, "b")]),
                    labeled(node("b2", "8", "16Gi"), &[(LABEL_ZONE, "b")]),
                ],
                vec![],
            );
            let registry = Registry::default();
            let mut cursor = Cursor {
                next_start: 0,
                seed: 7,
            };
            for i in 0..8 {
                let p = info(&owned_by(pod(&format!("r{i}"), "100m", "128Mi"), "rs-1"));
                let d = schedule(&p, &s, &registry, &mut cursor, None).unwrap();
                s.place(Arc::new(p), &d.node, true);
            }
            for n in ["a1", "a2", "b1", "b2"] {
                assert_eq!(s.node(n).unwrap().pods.len(), 2, "{n}");
            }
        }

        #[test]
        fn large_clusters_search_a_rotating_share_of_nodes() {
            let nodes = (0..1000)
                .map(|i| node(&format!("n{i}"), "4", "8Gi"))
                .collect();
            let s = Snapshot::from_objects(nodes, vec![]);
            let mut cursor = Cursor::default();
            let d = schedule(
                &info(&pod("p", "1", "1Gi")),
                &s,
                &Registry::default(),
                &mut cursor,
                None,
            )
            .unwrap();
            assert_eq!((d.feasible, d.evaluated), (420, 420));
            assert_eq!(
                cursor.next_start, 420,
                "the next search starts after this one"
            );
        }
    }
}
