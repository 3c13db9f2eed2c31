//! A node as the scheduler sees it: what it offers and what its pods (bound or assumed)
//! already take.

use std::collections::BTreeMap;
use std::sync::Arc;

use navarch_api::core::v1::Node;

use crate::pod_info::{HostPort, LABEL_HOSTNAME, PodInfo};
use crate::resources::Resources;

/// A taint's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// One node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

/// The taint the node lifecycle controller puts on a node that is not ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint for a node whose status is unknown (stopped heartbeating).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint for a cordoned node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The node's `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// `False`, or no Ready condition yet.
    NotReady,
    /// `Unknown`: the node stopped reporting.
    Unknown,
}

/// One node and the pods on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Stable for the node's life in the snapshot (indexes per-node counters).
    pub id: u32,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `labels` as the snapshot's [`crate::snapshot::LabelIds`], sorted by key: what node
    /// affinity compares (thousands of nodes per pod), integers instead of strings.
    pub label_ids: Vec<(u32, u32)>,
    /// The snapshot's id for the node's zone label, if it has one.
    pub zone: Option<u32>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub readiness: Readiness,
    pub allocatable: Resources,
    /// Sum of the requests of the pods on the node.
    pub requested: Resources,
    /// Sum of the non-zero (defaulted) CPU and memory requests, for scoring.
    pub non_zero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    pub node: Arc<Node>,
}

fn effect(e: &str) -> Option<TaintEffect> {
    match e {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

impl NodeInfo {
    /// A node with no pods yet.
    pub fn new(id: u32, node: Arc<Node>) -> Self {
        let meta = node.metadata.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let taints = spec
            .taints
            .iter()
            .filter_map(|t| {
                Some(Taint {
                    key: t.key.clone().unwrap_or_default(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: effect(t.effect.as_deref()?)?,
                })
            })
            .collect();
        let readiness = match status
            .conditions
            .iter()
            .find(|c| c.r#type.as_deref() == Some("Ready"))
            .and_then(|c| c.status.as_deref())
        {
            Some("True") => Readiness::Ready,
            Some("Unknown") => Readiness::Unknown,
            _ => Readiness::NotReady,
        };
        let allocatable = if status.allocatable.is_empty() {
            Resources::from_list(&status.capacity)
        } else {
            Resources::from_list(&status.allocatable)
        };
        Self {
            id,
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone(),
            label_ids: Vec::new(),
            zone: None,
            taints,
            unschedulable: spec.unschedulable.unwrap_or(false),
            readiness,
            allocatable,
            requested: Resources::default(),
            non_zero_requested: (0, 0),
            pods: Vec::new(),
            used_ports: Vec::new(),
            node,
        }
    }

    /// Replaces the node object, keeping the pods.
    pub fn update_node(&mut self, node: Arc<Node>) {
        let mut fresh = Self::new(self.id, node);
        fresh.requested = std::mem::take(&mut self.requested);
        fresh.non_zero_requested = self.non_zero_requested;
        fresh.pods = std::mem::take(&mut self.pods);
        fresh.used_ports = std::mem::take(&mut self.used_ports);
        *self = fresh;
    }

    /// The id of the node's value for the label key with id `key`.
    pub fn label_id(&self, key: u32) -> Option<u32> {
        self.label_ids
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| self.label_ids[i].1)
    }

    /// The node's value for a topology key; the host name falls back to the node name.
    pub fn topology_value(&self, key: &str) -> Option<&str> {
        match self.labels.get(key) {
            Some(v) => Some(v.as_str()),
            None if key == LABEL_HOSTNAME => Some(self.name.as_str()),
            None => None,
        }
    }

    /// Accounts for a pod placed on the node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.0 += pod.non_zero.0;
        self.non_zero_requested.1 += pod.non_zero.1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Removes a pod's share; returns whether it was there.
    pub fn remove_pod(&mut self, key: &navarch_runtime::ObjectKey) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == *key) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.0 -= pod.non_zero.0;
        self.non_zero_requested.1 -= pod.non_zero.1;
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        true
    }
}
