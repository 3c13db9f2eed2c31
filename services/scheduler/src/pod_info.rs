//! A pod as the scheduler needs it, computed once from the Pod object: its requests, its
//! node constraints and its pod (anti-)affinity and spread terms in parsed form.

use std::collections::BTreeMap;
use std::sync::Arc;

use navarch_api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use navarch_api::selectors::{LabelSelector, Operator, Requirement};
use navarch_runtime::ObjectKey;

use crate::node_info::{Taint, TaintEffect};
use crate::resources::{Resources, pod_non_zero_requests, pod_requests};

/// The node label Kubernetes uses for the node's host name.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The node label Kubernetes uses for the zone.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// One toleration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    /// `Exists` or `Equal` ("" means `Equal`).
    pub exists: bool,
    pub value: String,
    /// `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Kubernetes' `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        // An empty key with `Exists` tolerates everything.
        self.exists || self.value == taint.value
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// One `nodeSelectorTerm`: its expressions (on labels) and fields (on `metadata.name`) must all
/// hold; a term with neither matches nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTerm {
    pub expressions: Vec<Requirement>,
    pub fields: Vec<Requirement>,
}

impl NodeTerm {
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions.iter().all(|r| r.matches(labels))
            && (self.fields.is_empty() || {
                let fields = BTreeMap::from([("metadata.name".to_string(), node_name.to_string())]);
                self.fields.iter().all(|r| r.matches(&fields))
            })
    }
}

fn node_requirement(r: &navarch_api::core::v1::NodeSelectorRequirement) -> Requirement {
    let operator = match r.operator.as_deref().unwrap_or("") {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        // Validation rejects other operators; one that slipped through matches nothing.
        _ => Operator::In,
    };
    Requirement {
        key: r.key.clone().unwrap_or_default(),
        operator,
        values: if matches!(r.operator.as_deref(), Some("In" | "NotIn" | "Gt" | "Lt")) {
            r.values.clone()
        } else {
            Vec::new()
        },
    }
}

fn node_term(t: &navarch_api::core::v1::NodeSelectorTerm) -> NodeTerm {
    NodeTerm {
        expressions: t.match_expressions.iter().map(node_requirement).collect(),
        fields: t.match_fields.iter().map(node_requirement).collect(),
    }
}

/// A pod (anti-)affinity term: pods in `namespaces` (or all) whose labels match `selector`,
/// counted per value of `topology_key`.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub selector: LabelSelector,
    /// Empty with `all_namespaces` false never happens: it defaults to the pod's namespace.
    pub namespaces: Vec<String>,
    pub all_namespaces: bool,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(
        pod_namespace: &str,
        term: &PodAffinityTerm,
        labels: &BTreeMap<String, String>,
    ) -> Option<Self> {
        let selector = term
            .label_selector
            .as_ref()
            .map(LabelSelector::from_meta)
            .unwrap_or_else(|| Ok(LabelSelector::everything()));
        // A term without a selector matches no pods (Kubernetes: nil selector selects nothing).
        let mut selector = match (term.label_selector.is_some(), selector) {
            (true, Ok(s)) => s,
            _ => return None,
        };
        add_label_key_requirements(&mut selector, &term.match_label_keys, labels, false);
        add_label_key_requirements(&mut selector, &term.mismatch_label_keys, labels, true);
        let all_namespaces = term
            .namespace_selector
            .as_ref()
            .is_some_and(|s| s.match_labels.is_empty() && s.match_expressions.is_empty());
        let namespaces = if term.namespaces.is_empty() {
            vec![pod_namespace.to_string()]
        } else {
            term.namespaces.clone()
        };
        Some(Self {
            selector,
            namespaces,
            all_namespaces,
            topology_key: term.topology_key.clone().unwrap_or_default(),
        })
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        (self.all_namespaces || self.namespaces.contains(&pod.key.namespace))
            && self.selector.matches(&pod.labels)
    }
}

/// `matchLabelKeys` / `mismatchLabelKeys`: the selector also requires the incoming pod's value
/// of each key (or a different one).
fn add_label_key_requirements(
    selector: &mut LabelSelector,
    keys: &[String],
    labels: &BTreeMap<String, String>,
    mismatch: bool,
) {
    let mut extra: Vec<Requirement> = selector.requirements().to_vec();
    for key in keys {
        if let Some(v) = labels.get(key) {
            extra.push(Requirement {
                key: key.clone(),
                operator: if mismatch {
                    Operator::NotIn
                } else {
                    Operator::In
                },
                values: vec![v.clone()],
            });
        }
    }
    if extra.len() != selector.requirements().len() {
        let text = extra
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if let Ok(s) = LabelSelector::parse(&text) {
            *selector = s;
        }
    }
}

/// One topology spread constraint.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    pub selector: LabelSelector,
    pub min_domains: i32,
    /// Count only nodes that pass the pod's node selector / required affinity (default).
    pub honor_node_affinity: bool,
    /// Count only nodes whose taints the pod tolerates (default: ignore taints).
    pub honor_taints: bool,
}

/// A host port a pod asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be used (same port and protocol, overlapping IPs).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// Everything the scheduler reads about a pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub key: ObjectKey,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// Higher is scheduled first.
    pub priority: i32,
    pub scheduler_name: String,
    /// `spec.nodeName` when bound.
    pub node_name: Option<String>,
    pub terminating: bool,
    /// `spec.preemptionPolicy: Never`: waits for room instead of evicting others.
    pub preemption_never: bool,
    /// `status.nominatedNodeName`: where it preempted pods and waits for them to go.
    pub nominated_node: Option<String>,
    /// `spec.schedulingGates` is not empty: not to be scheduled yet.
    pub gated: bool,
    pub requests: Resources,
    /// (millicores, bytes) with per-container defaults, for scoring.
    pub non_zero: (i64, i64),
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: any term must match. `None` when there is none.
    pub required_node_terms: Option<Vec<NodeTerm>>,
    pub preferred_node_terms: Vec<(i64, NodeTerm)>,
    pub tolerations: Vec<Toleration>,
    pub host_ports: Vec<HostPort>,
    /// The uid of the controlling owner (ReplicaSet, StatefulSet, …).
    pub owner: Option<String>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity / anti-affinity terms with their weights (1–100).
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
    pub spread: Vec<SpreadConstraint>,
    pub creation: String,
    pub pod: Arc<Pod>,
}

fn effect(e: Option<&str>) -> Option<TaintEffect> {
    match e.unwrap_or("") {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

impl PodInfo {
    /// Whether the pod has terms that the InterPodAffinity score must look at when *other*
    /// pods are scored (Kubernetes' symmetry: existing pods' preferred terms and required
    /// affinity terms count for an incoming pod they match).
    pub fn has_scoring_affinity(&self) -> bool {
        !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
            || !self.required_affinity.is_empty()
    }

    /// Parses `pod`; `priority` is its resolved priority (`spec.priority`, or its class's).
    pub fn new(pod: Arc<Pod>, priority: i32) -> Self {
        let meta = pod.metadata.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels = meta.labels.clone();
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let required_node_terms = node_affinity
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|sel| sel.node_selector_terms.iter().map(node_term).collect());
        let preferred_node_terms = node_affinity
            .map(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .filter(|p| p.weight.unwrap_or(0) != 0)
                    .filter_map(|p| {
                        Some((
                            i64::from(p.weight.unwrap_or(0)),
                            node_term(p.preference.as_ref()?),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tolerations = spec
            .tolerations
            .iter()
            .map(|t| Toleration {
                key: t.key.clone().unwrap_or_default(),
                exists: t.operator.as_deref() == Some("Exists"),
                value: t.value.clone().unwrap_or_default(),
                effect: effect(t.effect.as_deref()),
            })
            .collect();
        let host_ports = spec
            .containers
            .iter()
            .chain(
                spec.init_containers
                    .iter()
                    .filter(|c| c.restart_policy.as_deref() == Some("Always")),
            )
            .flat_map(|c| c.ports.iter())
            .filter(|p| p.host_port.unwrap_or(0) > 0)
            .map(|p| HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let terms = |list: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            list.map(|l| {
                l.iter()
                    .filter_map(|t| AffinityTerm::new(&namespace, t, &labels))
                    .collect()
            })
            .unwrap_or_default()
        };
        let affinity = spec.affinity.as_ref();
        let required_affinity = terms(
            affinity
                .and_then(|a| a.pod_affinity.as_ref())
                .map(|p| &p.required_during_scheduling_ignored_during_execution),
        );
        let required_anti_affinity = terms(
            affinity
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .map(|p| &p.required_during_scheduling_ignored_during_execution),
        );
        let weighted = |list: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<(i64, AffinityTerm)> {
            list.map(|l| {
                l.iter()
                    .filter(|w| w.weight.unwrap_or(0) != 0)
                    .filter_map(|w| {
                        let term =
                            AffinityTerm::new(&namespace, w.pod_affinity_term.as_ref()?, &labels)?;
                        Some((i64::from(w.weight.unwrap_or(0)), term))
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        let preferred_affinity = weighted(
            affinity
                .and_then(|a| a.pod_affinity.as_ref())
                .map(|p| &p.preferred_during_scheduling_ignored_during_execution),
        );
        let preferred_anti_affinity = weighted(
            affinity
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .map(|p| &p.preferred_during_scheduling_ignored_during_execution),
        );
        let spread = spec
            .topology_spread_constraints
            .iter()
            .filter_map(|c| {
                let mut selector = LabelSelector::from_meta(c.label_selector.as_ref()?).ok()?;
                add_label_key_requirements(&mut selector, &c.match_label_keys, &labels, false);
                Some(SpreadConstraint {
                    max_skew: c.max_skew.unwrap_or(1).max(1),
                    topology_key: c.topology_key.clone().unwrap_or_default(),
                    hard: c.when_unsatisfiable.as_deref() != Some("ScheduleAnyway"),
                    selector,
                    min_domains: c.min_domains.unwrap_or(1).max(1),
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                })
            })
            .collect();
        let owner = navarch_runtime::object::controller_of(&meta).and_then(|o| o.uid.clone());
        Self {
            key: ObjectKey::new(namespace.clone(), meta.name.clone().unwrap_or_default()),
            uid: meta.uid.clone().unwrap_or_default(),
            priority,
            scheduler_name: spec
                .scheduler_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default-scheduler".into()),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            terminating: meta.deletion_timestamp.is_some(),
            preemption_never: spec.preemption_policy.as_deref() == Some("Never"),
            nominated_node: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            gated: !spec.scheduling_gates.is_empty(),
            requests: pod_requests(&spec),
            non_zero: pod_non_zero_requests(&spec),
            node_selector: spec.node_selector.clone(),
            required_node_terms,
            preferred_node_terms,
            tolerations,
            host_ports,
            owner,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            spread,
            creation: meta.creation_timestamp.clone().unwrap_or_default(),
            labels,
            pod,
        }
    }

    /// Whether the pod's node selector and required node affinity accept a node.
    pub fn matches_node_selector(
        &self,
        labels: &BTreeMap<String, String>,
        node_name: &str,
    ) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .required_node_terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(labels, node_name)))
    }

    /// Whether scheduling-relevant parts differ (spec or labels), as opposed to status only.
    pub fn scheduling_changed(old: &Pod, new: &Pod) -> bool {
        old.spec != new.spec
            || old.metadata.as_ref().map(|m| &m.labels) != new.metadata.as_ref().map(|m| &m.labels)
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };

    use super::*;

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }

    #[test]
    fn table_of_tolerations() {
        use TaintEffect::*;
        let tol = |key: &str, exists: bool, value: &str, effect: Option<TaintEffect>| Toleration {
            key: key.into(),
            exists,
            value: value.into(),
            effect,
        };
        let cases = [
            (
                "equal key and value",
                tol("k", false, "v", Some(NoSchedule)),
                taint("k", "v", NoSchedule),
                true,
            ),
            (
                "different value",
                tol("k", false, "v", Some(NoSchedule)),
                taint("k", "w", NoSchedule),
                false,
            ),
            (
                "exists ignores value",
                tol("k", true, "", Some(NoSchedule)),
                taint("k", "w", NoSchedule),
                true,
            ),
            (
                "different effect",
                tol("k", true, "", Some(NoExecute)),
                taint("k", "v", NoSchedule),
                false,
            ),
            (
                "empty effect matches all",
                tol("k", true, "", None),
                taint("k", "v", PreferNoSchedule),
                true,
            ),
            (
                "empty key exists tolerates all",
                tol("", true, "", None),
                taint("x", "y", NoExecute),
                true,
            ),
            (
                "different key",
                tol("j", true, "", None),
                taint("k", "", NoSchedule),
                false,
            ),
            (
                "empty value equals empty",
                tol("k", false, "", None),
                taint("k", "", NoSchedule),
                true,
            ),
        ];
        for (name, t, taint, want) in cases {
            assert_eq!(t.tolerates(&taint), want, "{name}");
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: Some(key.into()),
            operator: Some(op.into()),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn table_of_node_affinity_operators() {
        let labels: BTreeMap<String, String> = [("zone", "a"), ("cores", "8"), ("gpu", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cases = [
            ("In", vec![req("zone", "In", &["a", "b"])], true),
            ("In miss", vec![req("zone", "In", &["b"])], false),
            ("NotIn", vec![req("zone", "NotIn", &["b"])], true),
            (
                "NotIn absent key",
                vec![req("disk", "NotIn", &["ssd"])],
                true,
            ),
            ("NotIn miss", vec![req("zone", "NotIn", &["a"])], false),
            ("Exists", vec![req("gpu", "Exists", &[])], true),
            ("Exists miss", vec![req("disk", "Exists", &[])], false),
            ("DoesNotExist", vec![req("disk", "DoesNotExist", &[])], true),
            (
                "DoesNotExist miss",
                vec![req("zone", "DoesNotExist", &[])],
                false,
            ),
            ("Gt", vec![req("cores", "Gt", &["4"])], true),
            ("Gt miss", vec![req("cores", "Gt", &["8"])], false),
            ("Lt", vec![req("cores", "Lt", &["16"])], true),
            ("Lt not a number", vec![req("zone", "Lt", &["16"])], false),
            ("Gt absent", vec![req("disk", "Gt", &["1"])], false),
            (
                "all must hold",
                vec![req("zone", "In", &["a"]), req("cores", "Gt", &["9"])],
                false,
            ),
            ("empty term matches nothing", vec![], false),
        ];
        for (name, exprs, want) in cases {
            let term = node_term(&NodeSelectorTerm {
                match_expressions: exprs,
                match_fields: vec![],
            });
            assert_eq!(term.matches(&labels, "n1"), want, "{name}");
        }
        let by_name = node_term(&NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req("metadata.name", "In", &["n1"])],
        });
        assert!(by_name.matches(&labels, "n1"));
        assert!(!by_name.matches(&labels, "n2"));
    }

    #[test]
    fn required_terms_are_ored_and_the_node_selector_anded() {
        let pod = Pod {
            spec: Some(navarch_api::core::v1::PodSpec {
                node_selector: [("disk".to_string(), "ssd".to_string())].into(),
                affinity: Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: vec![
                                NodeSelectorTerm {
                                    match_expressions: vec![req("zone", "In", &["a"])],
                                    match_fields: vec![],
                                },
                                NodeSelectorTerm {
                                    match_expressions: vec![req("zone", "In", &["b"])],
                                    match_fields: vec![],
                                },
                            ],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = PodInfo::new(Arc::new(pod), 0);
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(info.matches_node_selector(&labels(&[("disk", "ssd"), ("zone", "b")]), "n"));
        assert!(!info.matches_node_selector(&labels(&[("disk", "ssd"), ("zone", "c")]), "n"));
        assert!(!info.matches_node_selector(&labels(&[("disk", "hdd"), ("zone", "a")]), "n"));
    }

    #[test]
    fn host_ports_conflict_on_overlapping_addresses() {
        let p = |ip: &str, proto: &str, port| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port,
        };
        assert!(p("0.0.0.0", "TCP", 80).conflicts(&p("10.0.0.1", "TCP", 80)));
        assert!(p("10.0.0.1", "TCP", 80).conflicts(&p("10.0.0.1", "TCP", 80)));
        assert!(!p("10.0.0.1", "TCP", 80).conflicts(&p("10.0.0.2", "TCP", 80)));
        assert!(!p("0.0.0.0", "TCP", 80).conflicts(&p("0.0.0.0", "UDP", 80)));
        assert!(!p("0.0.0.0", "TCP", 80).conflicts(&p("0.0.0.0", "TCP", 81)));
    }
}
