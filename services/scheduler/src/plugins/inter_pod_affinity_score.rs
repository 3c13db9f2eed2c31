//! InterPodAffinity (score): preferred pod affinity pulls a pod towards topology domains (a
//! node for `kubernetes.io/hostname`, a zone, …) that run pods its terms match, preferred
//! anti-affinity pushes it away, each by the term's weight per matching pod. As in Kubernetes
//! the rule is symmetric: placed pods whose preferred terms match the incoming pod count too,
//! and so do their required affinity terms (with `hardPodAffinityWeight` 1). Raw sums are
//! normalized to `0..=MAX_NODE_SCORE` between the lowest and highest node.

use std::collections::HashMap;

use crate::framework::{MAX_NODE_SCORE, PluginState, ScorePlugin};
use crate::node_info::NodeInfo;
use crate::pod_info::{AffinityTerm, PodInfo};
use crate::snapshot::Snapshot;

/// Kubernetes' default `hardPodAffinityWeight`.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct InterPodAffinityScore;

/// Score per topology key, per topology value.
#[derive(Default)]
struct State(HashMap<String, HashMap<String, i64>>);

impl State {
    fn add(&mut self, key: &str, value: &str, weight: i64) {
        *self
            .0
            .entry(key.to_string())
            .or_default()
            .entry(value.to_string())
            .or_default() += weight;
    }
}

/// Adds `weight` to the domain of every placed pod `term` matches.
fn add_matching(state: &mut State, term: &AffinityTerm, weight: i64, pod: &PodInfo, s: &Snapshot) {
    let mut visit = |other: &PodInfo| {
        if other.key != pod.key
            && term.matches(other)
            && let Some(node) = s.node_of(&other.key)
            && let Some(value) = node.topology_value(&term.topology_key)
        {
            state.add(&term.topology_key, value, weight);
        }
    };
    if term.all_namespaces {
        s.placed_pods().for_each(|p| visit(&p.info));
    } else {
        for ns in &term.namespaces {
            s.pods_in_namespace(ns).for_each(|p| visit(p));
        }
    }
}

impl ScorePlugin for InterPodAffinityScore {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn prepare(&self, pod: &PodInfo, snapshot: &Snapshot, _: &[&NodeInfo]) -> Option<PluginState> {
        let own_terms =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !own_terms && snapshot.scoring_affinity_pods().next().is_none() {
            return None;
        }
        let mut state = State::default();
        for (weight, term) in &pod.preferred_affinity {
            add_matching(&mut state, term, *weight, pod, snapshot);
        }
        for (weight, term) in &pod.preferred_anti_affinity {
            add_matching(&mut state, term, -*weight, pod, snapshot);
        }
        // Symmetry: placed pods' own terms that match the incoming pod.
        for other in snapshot.scoring_affinity_pods() {
            if other.key == pod.key {
                continue;
            }
            let Some(node) = snapshot.node_of(&other.key) else {
                continue;
            };
            let required = other
                .required_affinity
                .iter()
                .map(|t| (HARD_POD_AFFINITY_WEIGHT, t));
            let preferred = other.preferred_affinity.iter().map(|(w, t)| (*w, t));
            let anti = other.preferred_anti_affinity.iter().map(|(w, t)| (-*w, t));
            for (weight, term) in required.chain(preferred).chain(anti) {
                if term.matches(pod)
                    && let Some(value) = node.topology_value(&term.topology_key)
                {
                    state.add(&term.topology_key, value, weight);
                }
            }
        }
        if state.0.is_empty() {
            return None;
        }
        Some(Box::new(state))
    }

    fn score(&self, state: &PluginState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let state = state
            .downcast_ref::<State>()
            .expect("InterPodAffinity score state");
        state
            .0
            .iter()
            .filter_map(|(key, values)| values.get(node.topology_value(key)?))
            .sum()
    }

    fn normalize(&self, _: &PluginState, scores: &mut [i64]) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                MAX_NODE_SCORE * (*s - min) / diff
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{
        Affinity, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
    };
    use navarch_api::meta::v1::LabelSelector as WireSelector;

    use super::*;
    use crate::plugins::testing::*;
    use crate::pod_info::{LABEL_HOSTNAME, LABEL_ZONE};

    fn weighted(app: &str, key: &str, weight: i32) -> WeightedPodAffinityTerm {
        WeightedPodAffinityTerm {
            weight: Some(weight),
            pod_affinity_term: Some(PodAffinityTerm {
                label_selector: Some(WireSelector {
                    match_labels: [("app".to_string(), app.to_string())].into(),
                    ..Default::default()
                }),
                topology_key: Some(key.into()),
                ..Default::default()
            }),
        }
    }

    fn prefer(mut p: Pod, app: &str, key: &str, weight: i32) -> Pod {
        spec(&mut p)
            .affinity
            .get_or_insert_with(Affinity::default)
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .push(weighted(app, key, weight));
        p
    }

    fn avoid(mut p: Pod, app: &str, key: &str, weight: i32) -> Pod {
        spec(&mut p)
            .affinity
            .get_or_insert_with(Affinity::default)
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .push(weighted(app, key, weight));
        p
    }

    #[test]
    fn table_of_preferred_terms() {
        let placed = vec![
            on(app("cache-1", "cache"), "a1"),
            on(app("web-1", "web"), "b1"),
        ];
        let s = Snapshot::from_objects(zoned_nodes(), placed);
        let cases = [
            // (case, pod, normalized scores on a1, a2, b1)
            ("no terms, no placed terms: skipped", app("p", "web"), None),
            (
                "near the cache, by host",
                prefer(app("p", "web"), "cache", LABEL_HOSTNAME, 10),
                Some(vec![100, 0, 0]),
            ),
            (
                "near the cache, by zone",
                prefer(app("p", "web"), "cache", LABEL_ZONE, 10),
                Some(vec![100, 100, 0]),
            ),
            (
                "away from other web pods, by zone",
                avoid(app("p", "web"), "web", LABEL_ZONE, 50),
                Some(vec![100, 100, 0]),
            ),
            (
                "weights add up: near cache (host, 10) beats away-from-web (zone, 5)",
                avoid(
                    prefer(app("p", "web"), "cache", LABEL_HOSTNAME, 10),
                    "web",
                    LABEL_ZONE,
                    5,
                ),
                Some(vec![100, 33, 0]),
            ),
            (
                "terms matching nothing: skipped",
                prefer(app("p", "web"), "db", LABEL_HOSTNAME, 10),
                None,
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(scores(&InterPodAffinityScore, &p, &s), want, "{name}");
        }
    }

    #[test]
    fn placed_pods_terms_count_for_the_incoming_pod() {
        // The placed cache pod prefers web pods on its host; a web pod is drawn there even
        // though it has no terms of its own. A pod it does not match is not.
        let s = Snapshot::from_objects(
            zoned_nodes(),
            vec![on(
                prefer(app("cache-1", "cache"), "web", LABEL_HOSTNAME, 20),
                "a2",
            )],
        );
        assert_eq!(
            scores(&InterPodAffinityScore, &app("p", "web"), &s),
            Some(vec![0, 100, 0])
        );
        assert_eq!(scores(&InterPodAffinityScore, &app("p", "api"), &s), None);
        // A placed pod's preferred anti-affinity pushes matching pods out of its zone.
        let s = Snapshot::from_objects(
            zoned_nodes(),
            vec![on(avoid(app("db-1", "db"), "web", LABEL_ZONE, 20), "b1")],
        );
        assert_eq!(
            scores(&InterPodAffinityScore, &app("p", "web"), &s),
            Some(vec![100, 100, 0])
        );
    }
}
