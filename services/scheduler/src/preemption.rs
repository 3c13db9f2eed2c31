//! Preemption (Kubernetes' DefaultPreemption, simplified): when a pod fits nowhere, find a node
//! where evicting pods of lower priority would make it fit, and the fewest, least important
//! such pods. A pure function of the pod and the [`Snapshot`]; the scheduler then nominates
//! the node (`status.nominatedNodeName`), deletes the victims and retries the pod once they
//! are gone.
//!
//! Per node: take away every pod of lower priority; if the pod still does not fit, removing
//! pods cannot help there (taints, selectors, a cordon, …). Otherwise give pods back,
//! most important first, as long as the pod still fits; the ones that cannot come back are
//! the victims. Among nodes, the candidate whose most important victim has the lowest
//! priority wins, then the lowest sum of victim priorities, then the fewest victims, then the
//! node name. Plugin state is prepared once from the whole snapshot (so filters that look at
//! other nodes, like pod affinity, see the victims still in place: a conservative choice).
//! Pod disruption budgets are not consulted.

use std::sync::Arc;

use crate::framework::{FilterPlugin, PluginState, Registry};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

/// Stop looking after this many candidate nodes (Kubernetes: at least 100, or 10 %).
const MAX_CANDIDATES: usize = 100;

/// A node and the pods to evict there.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

impl Candidate {
    fn rank(&self) -> (i32, i64, usize) {
        let highest = self
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum = self.victims.iter().map(|v| i64::from(v.priority)).sum();
        (highest, sum, self.victims.len())
    }
}

/// Whether `pod` may preempt now: its policy allows it, and it is not still waiting for the
/// victims of an earlier preemption to terminate on its nominated node.
pub fn eligible(pod: &PodInfo, snapshot: &Snapshot) -> bool {
    if pod.preemption_never {
        return false;
    }
    match pod.nominated_node.as_deref().and_then(|n| snapshot.node(n)) {
        Some(node) => !node
            .pods
            .iter()
            .any(|p| p.terminating && p.priority < pod.priority),
        None => true,
    }
}

/// The best node to preempt on, or `None` when no eviction of lower-priority pods helps.
pub fn find_candidate(
    pod: &PodInfo,
    snapshot: &Snapshot,
    registry: &Registry,
) -> Option<Candidate> {
    let filters: Vec<(&dyn FilterPlugin, PluginState)> = registry
        .filters
        .iter()
        .filter_map(|f| f.prepare(pod, snapshot).map(|s| (f.as_ref(), s)))
        .collect();
    let fits = |node: &NodeInfo| {
        filters
            .iter()
            .all(|(f, state)| f.filter(state, pod, node).is_ok())
    };
    let mut candidates = Vec::new();
    for node in snapshot.nodes() {
        let mut lower: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority && !p.terminating)
            .cloned()
            .collect();
        if lower.is_empty() {
            continue;
        }
        let mut trial = node.clone();
        for p in &lower {
            trial.remove_pod(&p.key);
        }
        if !fits(&trial) {
            continue;
        }
        // Most important first get their place back; ties: the older pod stays.
        lower.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.creation.cmp(&b.creation))
        });
        let mut victims = Vec::new();
        for p in lower {
            trial.add_pod(p.clone());
            if !fits(&trial) {
                trial.remove_pod(&p.key);
                victims.push(p);
            }
        }
        candidates.push(Candidate {
            node: node.name.clone(),
            victims,
        });
        if candidates.len() >= MAX_CANDIDATES {
            break;
        }
    }
    candidates
        .into_iter()
        .min_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.node.cmp(&b.node)))
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::Pod;

    use super::*;
    use crate::plugins::testing::*;

    fn prio(mut p: Pod, priority: i32) -> Pod {
        spec(&mut p).priority = Some(priority);
        p
    }

    fn created(mut p: Pod, at: &str) -> Pod {
        p.metadata.as_mut().unwrap().creation_timestamp = Some(at.into());
        p
    }

    fn names(c: &Candidate) -> Vec<String> {
        let mut v: Vec<String> = c.victims.iter().map(|v| v.key.name.clone()).collect();
        v.sort();
        v
    }

    fn snapshot(pods: Vec<Pod>) -> Snapshot {
        Snapshot::from_objects(vec![node("n1", "2", "4Gi"), node("n2", "2", "4Gi")], pods)
    }

    #[test]
    fn table_of_candidates() {
        let full = || {
            vec![
                on(
                    created(prio(pod("low-1", "1", ""), 1), "2026-01-01T00:00:00Z"),
                    "n1",
                ),
                on(
                    created(prio(pod("low-2", "1", ""), 1), "2026-01-02T00:00:00Z"),
                    "n1",
                ),
                on(prio(pod("mid-1", "1", ""), 5), "n2"),
                on(prio(pod("low-3", "1", ""), 1), "n2"),
            ]
        };
        /// (case, placed pods, incoming pod, expected node and victims)
        type Case = (
            &'static str,
            Vec<Pod>,
            Pod,
            Option<(&'static str, Vec<&'static str>)>,
        );
        let cases: Vec<Case> = vec![
            (
                "one cpu needed: the newer low pod goes, on the node whose victims matter least",
                full(),
                prio(pod("p", "1", ""), 10),
                Some(("n1", vec!["low-2"])),
            ),
            (
                "two cpus needed: the node of two low pods, not the one with a mid pod",
                full(),
                prio(pod("p", "2", ""), 10),
                Some(("n1", vec!["low-1", "low-2"])),
            ),
            (
                "equal priority cannot preempt",
                full(),
                prio(pod("p", "1", ""), 1),
                None,
            ),
            (
                "too big for any node even when empty",
                full(),
                prio(pod("p", "3", ""), 10),
                None,
            ),
            (
                "only the mid pod's node frees enough for a pod above mid",
                vec![
                    on(prio(pod("mid-1", "2", ""), 5), "n1"),
                    on(prio(pod("high-1", "2", ""), 100), "n2"),
                ],
                prio(pod("p", "1", ""), 10),
                Some(("n1", vec!["mid-1"])),
            ),
        ];
        for (name, pods, p, want) in cases {
            let s = snapshot(pods);
            let got = find_candidate(&info(&p), &s, &Registry::default());
            match (got, want) {
                (None, None) => {}
                (Some(c), Some((node, victims))) => {
                    assert_eq!(c.node, node, "{name}");
                    assert_eq!(names(&c), victims, "{name}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_pod_that_preempted_waits_for_its_victims_and_never_policy_does_not_preempt() {
        let mut victim = on(prio(pod("low", "2", ""), 1), "n1");
        victim.metadata.as_mut().unwrap().deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        let s = snapshot(vec![victim]);
        let mut waiting = prio(pod("p", "2", ""), 10);
        waiting
            .status
            .get_or_insert_with(Default::default)
            .nominated_node_name = Some("n1".into());
        assert!(!eligible(&info(&waiting), &s));
        assert!(eligible(&info(&prio(pod("q", "2", ""), 10)), &s));
        let mut never = prio(pod("r", "2", ""), 10);
        spec(&mut never).preemption_policy = Some("Never".into());
        assert!(!eligible(&info(&never), &s));
    }
}
