//! PodTopologySpread: spreads matching pods across topology domains (host names, zones, any
//! node label).
//!
//! - Filter: a `DoNotSchedule` constraint rejects a node when placing the pod there would make
//!   its domain exceed the least populated eligible domain by more than `maxSkew`.
//! - Score: `ScheduleAnyway` constraints prefer the less populated domains. A pod without any
//!   constraint that has a controlling owner gets Kubernetes' system defaults (host name with
//!   maxSkew 3, zone with maxSkew 5) over the pods of the same owner, read from the snapshot's
//!   per-owner counts, so spreading replicas costs no scan.

use std::collections::{HashMap, HashSet};

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, PluginState, ScorePlugin, Unfit};
use crate::node_info::{NodeInfo, TaintEffect};
use crate::pod_info::{LABEL_HOSTNAME, PodInfo, SpreadConstraint, tolerated};
use crate::snapshot::Snapshot;

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub struct PodTopologySpread;

/// Whether a node's pods count for a constraint (its node inclusion policies).
fn counts_for(c: &SpreadConstraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || pod.matches_node_selector(&node.labels, &node.name))
        && (!c.honor_taints
            || node.taints.iter().all(|t| {
                !matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
                    || tolerated(&pod.tolerations, t)
            }))
}

/// Matching pods per domain for each constraint, over the eligible nodes that have every
/// constraint's key; each eligible domain is present, with 0 if it has no matching pod.
fn domain_counts(
    pod: &PodInfo,
    snapshot: &Snapshot,
    constraints: &[&SpreadConstraint],
) -> Vec<HashMap<String, i64>> {
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    let mut eligible: Vec<HashSet<u32>> = vec![HashSet::new(); constraints.len()];
    for node in snapshot.nodes() {
        if constraints
            .iter()
            .any(|c| node.topology_value(&c.topology_key).is_none())
        {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if counts_for(c, pod, node) {
                let domain = node.topology_value(&c.topology_key).unwrap_or_default();
                counts[i].entry(domain.to_string()).or_insert(0);
                eligible[i].insert(node.id);
            }
        }
    }
    for other in snapshot.pods_in_namespace(&pod.key.namespace) {
        if other.terminating || other.key == pod.key {
            continue;
        }
        let Some(node) = snapshot.node_of(&other.key) else {
            continue;
        };
        for (i, c) in constraints.iter().enumerate() {
            if eligible[i].contains(&node.id) && c.selector.matches(&other.labels) {
                let domain = node.topology_value(&c.topology_key).unwrap_or_default();
                *counts[i].entry(domain.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

struct Hard {
    constraint: SpreadConstraint,
    counts: HashMap<String, i64>,
    min: i64,
    self_match: i64,
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn prepare(&self, pod: &PodInfo, snapshot: &Snapshot) -> Option<PluginState> {
        let hard: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| c.hard).collect();
        if hard.is_empty() {
            return None;
        }
        let counts = domain_counts(pod, snapshot, &hard);
        let state: Vec<Hard> = hard
            .into_iter()
            .zip(counts)
            .map(|(c, counts)| {
                let min = if (counts.len() as i32) < c.min_domains {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                Hard {
                    self_match: i64::from(c.selector.matches(&pod.labels)),
                    constraint: c.clone(),
                    counts,
                    min,
                }
            })
            .collect();
        Some(Box::new(state))
    }

    fn filter(&self, state: &PluginState, _: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let state = state
            .downcast_ref::<Vec<Hard>>()
            .expect("spread filter state");
        for h in state {
            let Some(domain) = node.topology_value(&h.constraint.topology_key) else {
                return Err(Unfit::new(REASON_MISSING_LABEL));
            };
            let count = h.counts.get(domain).copied().unwrap_or(0);
            if count + h.self_match - h.min > i64::from(h.constraint.max_skew) {
                return Err(Unfit::new(REASON));
            }
        }
        Ok(())
    }
}

/// One soft constraint, ready to score.
struct Soft {
    constraint: SpreadConstraint,
    /// Matching pods per domain (not used for the host name: counted per node).
    counts: HashMap<String, i64>,
    weight: f64,
}

enum ScoreState {
    /// The pod's own `ScheduleAnyway` constraints; nodes missing a key are not scored.
    Explicit {
        soft: Vec<Soft>,
        ignored: HashSet<u32>,
    },
    /// System defaults over the pods of the same owner (its snapshot id).
    Owner {
        owner: u32,
        host_weight: f64,
        zone_weight: f64,
    },
}

/// `ln(domains + 2)`: pods in small topologies weigh more than in big ones.
fn normalizing_weight(domains: usize) -> f64 {
    ((domains + 2) as f64).ln()
}

fn score_for_count(count: i64, max_skew: i32, weight: f64) -> f64 {
    count as f64 * weight + f64::from(max_skew - 1)
}

const DEFAULT_HOST_SKEW: i32 = 3;
const DEFAULT_ZONE_SKEW: i32 = 5;

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn prepare(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        feasible: &[&NodeInfo],
    ) -> Option<PluginState> {
        if !pod.spread.is_empty() {
            let soft: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| !c.hard).collect();
            if soft.is_empty() {
                return None;
            }
            let ignored: HashSet<u32> = feasible
                .iter()
                .filter(|n| {
                    soft.iter()
                        .any(|c| n.topology_value(&c.topology_key).is_none())
                })
                .map(|n| n.id)
                .collect();
            let counts = domain_counts(pod, snapshot, &soft);
            let scored = feasible.len() - ignored.len();
            let soft = soft
                .into_iter()
                .zip(counts)
                .map(|(c, counts)| {
                    let domains: HashSet<&str> = feasible
                        .iter()
                        .filter(|n| !ignored.contains(&n.id))
                        .filter_map(|n| n.topology_value(&c.topology_key))
                        .collect();
                    let size = if c.topology_key == LABEL_HOSTNAME {
                        scored
                    } else {
                        domains.len()
                    };
                    Soft {
                        constraint: c.clone(),
                        counts,
                        weight: normalizing_weight(size),
                    }
                })
                .collect();
            return Some(Box::new(ScoreState::Explicit { soft, ignored }));
        }
        // No replica of the owner is placed yet: every node would score the same.
        let owner = snapshot.owner_id(pod.owner.as_deref()?)?;
        let mut seen = vec![false; snapshot.zone_count()];
        let zones = feasible
            .iter()
            .filter_map(|n| n.zone)
            .filter(|z| !std::mem::replace(&mut seen[*z as usize], true))
            .count();
        Some(Box::new(ScoreState::Owner {
            owner,
            host_weight: normalizing_weight(feasible.len()),
            zone_weight: normalizing_weight(zones),
        }))
    }

    fn score(
        &self,
        state: &PluginState,
        pod: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> i64 {
        let state = state
            .downcast_ref::<ScoreState>()
            .expect("spread score state");
        let total = match state {
            ScoreState::Explicit { soft, ignored } => {
                if ignored.contains(&node.id) {
                    return -1;
                }
                soft.iter()
                    .map(|s| {
                        let c = &s.constraint;
                        let count = if c.topology_key == LABEL_HOSTNAME {
                            node.pods
                                .iter()
                                .filter(|p| {
                                    p.key.namespace == pod.key.namespace
                                        && !p.terminating
                                        && c.selector.matches(&p.labels)
                                })
                                .count() as i64
                        } else {
                            node.topology_value(&c.topology_key)
                                .and_then(|d| s.counts.get(d))
                                .copied()
                                .unwrap_or(0)
                        };
                        score_for_count(count, c.max_skew, s.weight)
                    })
                    .sum::<f64>()
            }
            ScoreState::Owner {
                owner,
                host_weight,
                zone_weight,
            } => {
                let counts = snapshot.owner(*owner);
                let on_node = counts.map_or(0, |c| c.on_node(node.id));
                let mut total =
                    score_for_count(i64::from(on_node), DEFAULT_HOST_SKEW, *host_weight);
                // Nodes without a zone label are spread by host name only.
                if let Some(zone) = node.zone {
                    let in_zone = counts.map_or(0, |c| c.in_zone(zone));
                    total += score_for_count(i64::from(in_zone), DEFAULT_ZONE_SKEW, *zone_weight);
                }
                total
            }
        };
        total.round() as i64
    }

    fn normalize(&self, _: &PluginState, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s >= 0);
        let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{Pod, TopologySpreadConstraint};
    use navarch_api::meta::v1::LabelSelector as WireSelector;

    use super::*;
    use crate::plugins::testing::*;
    use crate::pod_info::LABEL_ZONE;

    fn constrained(p: Pod, key: &str, max_skew: i32, when: &str, min_domains: Option<i32>) -> Pod {
        let mut p = p;
        spec(&mut p)
            .topology_spread_constraints
            .push(TopologySpreadConstraint {
                max_skew: Some(max_skew),
                topology_key: Some(key.into()),
                when_unsatisfiable: Some(when.into()),
                label_selector: Some(WireSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                min_domains,
                ..Default::default()
            });
        p
    }

    fn web(name: &str) -> Pod {
        with_labels(pod(name, "", ""), &[("app", "web")])
    }

    fn zones() -> Snapshot {
        Snapshot::from_objects(
            vec![
                labeled(node("a1", "4", "4Gi"), &[(LABEL_ZONE, "a")]),
                labeled(node("a2", "4", "4Gi"), &[(LABEL_ZONE, "a")]),
                labeled(node("b1", "4", "4Gi"), &[(LABEL_ZONE, "b")]),
                labeled(node("c1", "4", "4Gi"), &[(LABEL_ZONE, "c")]),
                node("unlabeled", "4", "4Gi"),
            ],
            vec![
                on(web("w1"), "a1"),
                on(web("w2"), "a2"),
                on(web("w3"), "b1"),
                on(with_labels(pod("other", "", ""), &[("app", "db")]), "c1"),
            ],
        )
    }

    #[test]
    fn table_of_hard_constraints() {
        let s = zones();
        // Zone counts: a=2, b=1, c=0.
        let cases = [
            (
                "maxSkew 1 sends it to the empty zone",
                constrained(web("p"), LABEL_ZONE, 1, "DoNotSchedule", None),
                vec!["c1"],
            ),
            (
                "maxSkew 2 allows b",
                constrained(web("p"), LABEL_ZONE, 2, "DoNotSchedule", None),
                vec!["b1", "c1"],
            ),
            (
                "maxSkew 3 allows all zones",
                constrained(web("p"), LABEL_ZONE, 3, "DoNotSchedule", None),
                vec!["a1", "a2", "b1", "c1"],
            ),
            (
                "a pod outside its own selector does not count itself",
                constrained(pod("p", "", ""), LABEL_ZONE, 2, "DoNotSchedule", None),
                vec!["a1", "a2", "b1", "c1"],
            ),
            (
                "host name spreading: one per node at most",
                constrained(web("p"), LABEL_HOSTNAME, 1, "DoNotSchedule", None),
                vec!["c1", "unlabeled"],
            ),
            (
                "ScheduleAnyway does not filter",
                constrained(web("p"), LABEL_ZONE, 1, "ScheduleAnyway", None),
                vec!["a1", "a2", "b1", "c1", "unlabeled"],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(passing(&PodTopologySpread, &p, &s), want, "{name}");
        }
        let reasons = filter_all(
            &PodTopologySpread,
            &constrained(web("p"), LABEL_ZONE, 1, "DoNotSchedule", None),
            &s,
        );
        assert_eq!(reasons[0].1, Some(vec![REASON.to_string()]));
        assert_eq!(reasons[4].1, Some(vec![REASON_MISSING_LABEL.to_string()]));
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        // Only zones a and b have nodes; with minDomains 3 the global minimum is 0, so zone b
        // (1 pod) cannot take another with maxSkew 1.
        let s = Snapshot::from_objects(
            vec![
                labeled(node("a1", "4", "4Gi"), &[(LABEL_ZONE, "a")]),
                labeled(node("b1", "4", "4Gi"), &[(LABEL_ZONE, "b")]),
            ],
            vec![on(web("w1"), "a1"), on(web("w2"), "b1")],
        );
        let loose = constrained(web("p"), LABEL_ZONE, 1, "DoNotSchedule", None);
        assert_eq!(passing(&PodTopologySpread, &loose, &s), ["a1", "b1"]);
        let strict = constrained(web("p"), LABEL_ZONE, 1, "DoNotSchedule", Some(3));
        assert!(passing(&PodTopologySpread, &strict, &s).is_empty());
    }

    #[test]
    fn replicas_of_one_owner_spread_by_default() {
        let s = Snapshot::from_objects(
            vec![
                labeled(node("a1", "4", "4Gi"), &[(LABEL_ZONE, "a")]),
                labeled(node("a2", "4", "4Gi"), &[(LABEL_ZONE, "a")]),
                labeled(node("b1", "4", "4Gi"), &[(LABEL_ZONE, "b")]),
            ],
            vec![
                on(owned_by(pod("r1", "", ""), "rs-1"), "a1"),
                on(owned_by(pod("r2", "", ""), "rs-1"), "a1"),
                on(owned_by(pod("x", "", ""), "rs-2"), "b1"),
            ],
        );
        let s = scores(&PodTopologySpread, &owned_by(pod("p", "", ""), "rs-1"), &s).unwrap();
        // b1 (empty zone) beats a2 (empty node, busy zone) beats a1 (two replicas).
        assert!(s[2] > s[1] && s[1] > s[0], "{s:?}");
        assert_eq!(s[2], MAX_NODE_SCORE);
        // A pod without owner or constraints is not spread.
        assert_eq!(
            scores(&PodTopologySpread, &pod("q", "", ""), &zones()),
            None
        );
    }

    #[test]
    fn soft_constraints_prefer_the_emptier_domains() {
        let s = zones();
        let p = constrained(web("p"), LABEL_ZONE, 1, "ScheduleAnyway", None);
        let got = scores(&PodTopologySpread, &p, &s).unwrap();
        // a1/a2 (zone a: 2) < b1 (1) < c1 (0); the unlabeled node is not scored.
        assert!(
            got[0] == got[1] && got[1] < got[2] && got[2] < got[3],
            "{got:?}"
        );
        assert_eq!(got[3], MAX_NODE_SCORE);
        assert_eq!(got[4], 0);
    }
}
