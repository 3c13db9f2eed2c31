//! InterPodAffinity (required terms): a pod with required pod affinity goes only into a
//! topology domain (a node for `kubernetes.io/hostname`, a zone, …) that already runs a
//! matching pod; a pod with required anti-affinity never into one that does; and no pod goes
//! into a domain whose pods' anti-affinity rejects it.

use std::collections::{HashMap, HashSet};

use crate::framework::{FilterPlugin, PluginState, Unfit};
use crate::node_info::NodeInfo;
use crate::pod_info::{AffinityTerm, PodInfo};
use crate::snapshot::Snapshot;

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

pub struct InterPodAffinity;

/// Topology values per topology key.
type Domains = HashMap<String, HashSet<String>>;

struct State {
    /// Domains whose pods' anti-affinity rejects the incoming pod.
    existing_anti: Domains,
    /// For each of the pod's affinity terms: the domains with a matching pod.
    affinity: Vec<(String, HashSet<String>)>,
    /// No pod anywhere matches the affinity terms but the pod matches them itself: the first
    /// pod of a group may go anywhere that has the topology keys.
    affinity_self_start: bool,
    /// For each of the pod's anti-affinity terms: the domains with a matching pod.
    anti: Vec<(String, HashSet<String>)>,
}

/// The domains (values of the term's key) of the placed pods the term matches.
fn matching_domains(term: &AffinityTerm, snapshot: &Snapshot, pod: &PodInfo) -> HashSet<String> {
    let mut domains = HashSet::new();
    let mut visit = |other: &PodInfo| {
        if other.key != pod.key
            && term.matches(other)
            && let Some(node) = snapshot.node_of(&other.key)
            && let Some(value) = node.topology_value(&term.topology_key)
        {
            domains.insert(value.to_string());
        }
    };
    if term.all_namespaces {
        snapshot.placed_pods().for_each(|p| visit(&p.info));
    } else {
        for ns in &term.namespaces {
            snapshot.pods_in_namespace(ns).for_each(|p| visit(p));
        }
    }
    domains
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn prepare(&self, pod: &PodInfo, snapshot: &Snapshot) -> Option<PluginState> {
        let mut existing_anti: Domains = HashMap::new();
        for other in snapshot.anti_affinity_pods() {
            if other.key == pod.key {
                continue;
            }
            for term in &other.required_anti_affinity {
                if term.matches(pod)
                    && let Some(node) = snapshot.node_of(&other.key)
                    && let Some(value) = node.topology_value(&term.topology_key)
                {
                    existing_anti
                        .entry(term.topology_key.clone())
                        .or_default()
                        .insert(value.to_string());
                }
            }
        }
        if existing_anti.is_empty()
            && pod.required_affinity.is_empty()
            && pod.required_anti_affinity.is_empty()
        {
            return None;
        }
        let affinity: Vec<(String, HashSet<String>)> = pod
            .required_affinity
            .iter()
            .map(|t| (t.topology_key.clone(), matching_domains(t, snapshot, pod)))
            .collect();
        let affinity_self_start = !affinity.is_empty()
            && affinity.iter().all(|(_, d)| d.is_empty())
            && pod.required_affinity.iter().all(|t| t.matches(pod));
        let anti = pod
            .required_anti_affinity
            .iter()
            .map(|t| (t.topology_key.clone(), matching_domains(t, snapshot, pod)))
            .collect();
        Some(Box::new(State {
            existing_anti,
            affinity,
            affinity_self_start,
            anti,
        }))
    }

    fn filter(&self, state: &PluginState, _: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let state = state
            .downcast_ref::<State>()
            .expect("InterPodAffinity state");
        for (key, domains) in &state.affinity {
            let Some(value) = node.topology_value(key) else {
                return Err(Unfit::new(REASON_AFFINITY));
            };
            if !state.affinity_self_start && !domains.contains(value) {
                return Err(Unfit::new(REASON_AFFINITY));
            }
        }
        for (key, domains) in &state.anti {
            if node
                .topology_value(key)
                .is_some_and(|v| domains.contains(v))
            {
                return Err(Unfit::new(REASON_ANTI_AFFINITY));
            }
        }
        for (key, domains) in &state.existing_anti {
            if node
                .topology_value(key)
                .is_some_and(|v| domains.contains(v))
            {
                return Err(Unfit::new(REASON_EXISTING_ANTI_AFFINITY));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{Affinity, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity};
    use navarch_api::meta::v1::LabelSelector as WireSelector;

    use super::*;
    use crate::plugins::testing::*;
    use crate::pod_info::{LABEL_HOSTNAME, LABEL_ZONE};

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(WireSelector {
                match_labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            }),
            topology_key: Some(key.into()),
            ..Default::default()
        }
    }

    fn anti(p: Pod, app: &str, key: &str) -> Pod {
        let mut p = p;
        let affinity = spec(&mut p).affinity.get_or_insert_with(Affinity::default);
        affinity
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .push(term(app, key));
        p
    }

    fn affine(p: Pod, app: &str, key: &str) -> Pod {
        let mut p = p;
        let affinity = spec(&mut p).affinity.get_or_insert_with(Affinity::default);
        affinity
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .push(term(app, key));
        p
    }

    #[test]
    fn table_of_required_anti_affinity() {
        let s = Snapshot::from_objects(zoned_nodes(), vec![on(app("web-1", "web"), "a1")]);
        let cases = [
            ("no terms", app("p", "web"), vec!["a1", "a2", "b1"]),
            (
                "one web per host",
                anti(app("p", "web"), "web", LABEL_HOSTNAME),
                vec!["a2", "b1"],
            ),
            (
                "one web per zone",
                anti(app("p", "web"), "web", LABEL_ZONE),
                vec!["b1"],
            ),
            (
                "away from nothing",
                anti(app("p", "web"), "cache", LABEL_HOSTNAME),
                vec!["a1", "a2", "b1"],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(passing(&InterPodAffinity, &p, &s), want, "{name}");
        }
        let reasons = filter_all(
            &InterPodAffinity,
            &anti(app("p", "web"), "web", LABEL_HOSTNAME),
            &s,
        );
        assert_eq!(reasons[0].1, Some(vec![REASON_ANTI_AFFINITY.to_string()]));
    }

    #[test]
    fn existing_pods_anti_affinity_keeps_matching_pods_away() {
        let s = Snapshot::from_objects(
            zoned_nodes(),
            vec![on(anti(app("loner", "db"), "web", LABEL_ZONE), "a1")],
        );
        // A web pod may not enter zone a, where the db pod refuses web pods.
        assert_eq!(passing(&InterPodAffinity, &app("p", "web"), &s), ["b1"]);
        let reasons = filter_all(&InterPodAffinity, &app("p", "web"), &s);
        assert_eq!(
            reasons[1].1,
            Some(vec![REASON_EXISTING_ANTI_AFFINITY.to_string()])
        );
        // Other pods are not affected.
        assert_eq!(passing(&InterPodAffinity, &app("p", "api"), &s).len(), 3);
    }

    #[test]
    fn required_affinity_follows_matching_pods() {
        let s = Snapshot::from_objects(zoned_nodes(), vec![on(app("cache-1", "cache"), "a2")]);
        assert_eq!(
            passing(
                &InterPodAffinity,
                &affine(app("p", "web"), "cache", LABEL_HOSTNAME),
                &s
            ),
            ["a2"]
        );
        assert_eq!(
            passing(
                &InterPodAffinity,
                &affine(app("p", "web"), "cache", LABEL_ZONE),
                &s
            ),
            ["a1", "a2"]
        );
        // Nothing matches anywhere: unschedulable, unless the pod matches its own term.
        assert!(
            passing(
                &InterPodAffinity,
                &affine(app("p", "web"), "db", LABEL_ZONE),
                &s
            )
            .is_empty()
        );
        assert_eq!(
            passing(
                &InterPodAffinity,
                &affine(app("p", "db"), "db", LABEL_ZONE),
                &s
            ),
            ["a1", "a2", "b1"]
        );
        let reasons = filter_all(
            &InterPodAffinity,
            &affine(app("p", "web"), "cache", LABEL_ZONE),
            &s,
        );
        assert_eq!(reasons[2].1, Some(vec![REASON_AFFINITY.to_string()]));
    }
}
