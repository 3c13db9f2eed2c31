//! The scheduler's view of the cluster: every node with the pods on it (bound, or assumed while
//! their binding is in flight), plus the indexes the plugins need (pods per owner per node and
//! zone, pods per namespace, pods with required anti-affinity). Plain data, updated in place;
//! the scheduling algorithm only reads it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use navarch_api::core::v1::{Node, Pod};
use navarch_runtime::ObjectKey;

use crate::node_info::NodeInfo;
use crate::pod_info::{LABEL_ZONE, PodInfo};

/// A fast hasher for the small integer ids the snapshot hands out (node, owner): scoring looks
/// them up once per node per pod, where SipHash would dominate.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by snapshot ids.
pub type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Where a pod is placed.
#[derive(Clone, Debug)]
pub struct Placement {
    pub info: Arc<PodInfo>,
    pub node: String,
    /// Placed by this scheduler; the binding is not confirmed by the watch yet.
    pub assumed: bool,
}

/// How many pods of one owner are on each node (by node id) and in each zone (by zone id).
#[derive(Clone, Debug, Default)]
pub struct OwnerCounts {
    by_node: IdMap<u32>,
    by_zone: Vec<u32>,
    total: u32,
}

impl OwnerCounts {
    pub fn on_node(&self, node_id: u32) -> u32 {
        self.by_node.get(&node_id).copied().unwrap_or(0)
    }

    pub fn in_zone(&self, zone_id: u32) -> u32 {
        self.by_zone.get(zone_id as usize).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.total
    }
}

/// Ids for the strings of node labels (keys and values share one table). Ids are never reused:
/// the table grows with the distinct label strings nodes have had.
#[derive(Clone, Debug, Default)]
pub struct LabelIds(HashMap<String, u32>);

impl LabelIds {
    /// The id of `s`, if any node has had it as a label key or value.
    pub fn get(&self, s: &str) -> Option<u32> {
        self.0.get(s).copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.0.get(s) {
            return id;
        }
        let id = self.0.len() as u32;
        self.0.insert(s.to_string(), id);
        id
    }
}

/// Nodes and the pods on them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    next_id: u32,
    pods: HashMap<ObjectKey, Placement>,
    /// Pods bound to nodes the snapshot does not have (yet).
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    zone_ids: HashMap<String, u32>,
    label_ids: LabelIds,
    owner_ids: HashMap<String, u32>,
    next_owner: u32,
    owners: IdMap<OwnerCounts>,
    by_namespace: HashMap<String, HashMap<ObjectKey, Arc<PodInfo>>>,
    anti_affinity: HashMap<ObjectKey, Arc<PodInfo>>,
    /// Placed pods with preferred (anti-)affinity or required affinity terms.
    scoring_affinity: HashMap<ObjectKey, Arc<PodInfo>>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// A snapshot of `nodes` with the pods among `pods` that name one (tests, benchmarks;
    /// priorities from `spec.priority`).
    pub fn from_objects(nodes: Vec<Node>, pods: Vec<Pod>) -> Self {
        let mut s = Self::new();
        for n in nodes {
            s.upsert_node(Arc::new(n));
        }
        for p in pods {
            let priority = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            let info = Arc::new(PodInfo::new(Arc::new(p), priority));
            if let Some(node) = info.node_name.clone() {
                s.place(info, &node, false);
            }
        }
        s
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// How many distinct zones nodes have had (zone ids are below this).
    pub fn zone_count(&self) -> usize {
        self.zone_ids.len()
    }

    /// The id of a zone (`topology.kubernetes.io/zone` value).
    pub fn zone_id(&self, zone: &str) -> Option<u32> {
        self.zone_ids.get(zone).copied()
    }

    /// The ids of the label keys and values nodes have had.
    pub fn label_ids(&self) -> &LabelIds {
        &self.label_ids
    }

    fn intern_labels(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let mut ids: Vec<(u32, u32)> = n
            .labels
            .iter()
            .map(|(k, v)| (self.label_ids.intern(k), self.label_ids.intern(v)))
            .collect();
        ids.sort_unstable();
        n.label_ids = ids;
    }

    fn intern_zone(&mut self, node: usize) {
        self.intern_labels(node);
        let zone = self.nodes[node].labels.get(LABEL_ZONE).map(|z| {
            let next = self.zone_ids.len() as u32;
            *self.zone_ids.entry(z.clone()).or_insert(next)
        });
        self.nodes[node].zone = zone;
    }

    /// Adds a node or updates it (keeping its pods).
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            let old_zone = self.nodes[i].zone;
            self.nodes[i].update_node(node);
            self.intern_zone(i);
            let new_zone = self.nodes[i].zone;
            if old_zone != new_zone {
                let pods = self.nodes[i].pods.clone();
                for p in &pods {
                    self.count_owner(p, i, old_zone, -1);
                    self.count_owner(p, i, new_zone, 1);
                }
            }
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.push(NodeInfo::new(id, node));
        let i = self.nodes.len() - 1;
        self.intern_zone(i);
        self.index.insert(name.clone(), i);
        for pod in self.orphans.remove(&name).unwrap_or_default() {
            self.attach(pod, i);
        }
    }

    /// Removes a node; its pods wait as orphans until it comes back or they go.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let zone = self.nodes[i].zone;
        let pods = std::mem::take(&mut self.nodes[i].pods);
        for p in &pods {
            self.count_owner(p, i, zone, -1);
        }
        self.orphans
            .entry(name.to_string())
            .or_default()
            .extend(pods);
        self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name.clone();
            self.index.insert(moved, i);
        }
    }

    fn count_owner(&mut self, pod: &PodInfo, node: usize, zone: Option<u32>, delta: i32) {
        let Some(owner) = &pod.owner else {
            return;
        };
        let id = match self.owner_ids.get(owner) {
            Some(id) => *id,
            None if delta > 0 => {
                let id = self.next_owner;
                self.next_owner += 1;
                self.owner_ids.insert(owner.clone(), id);
                id
            }
            None => return,
        };
        let node_id = self.nodes[node].id;
        let counts = self.owners.entry(id).or_default();
        let apply = |n: &mut u32| *n = n.saturating_add_signed(delta);
        apply(counts.by_node.entry(node_id).or_default());
        if counts.by_node.get(&node_id) == Some(&0) {
            counts.by_node.remove(&node_id);
        }
        if let Some(zone) = zone {
            let z = zone as usize;
            if counts.by_zone.len() <= z {
                counts.by_zone.resize(z + 1, 0);
            }
            apply(&mut counts.by_zone[z]);
        }
        apply(&mut counts.total);
        if counts.total == 0 {
            self.owners.remove(&id);
            self.owner_ids.remove(owner);
        }
    }

    fn attach(&mut self, pod: Arc<PodInfo>, node: usize) {
        let zone = self.nodes[node].zone;
        self.count_owner(&pod, node, zone, 1);
        self.nodes[node].add_pod(pod);
    }

    /// Places a pod on a node (moving it if it was elsewhere). `assumed`: placed by this
    /// scheduler, binding not yet confirmed.
    pub fn place(&mut self, info: Arc<PodInfo>, node: &str, assumed: bool) {
        self.unplace(&info.key);
        let key = info.key.clone();
        self.by_namespace
            .entry(key.namespace.clone())
            .or_default()
            .insert(key.clone(), info.clone());
        if !info.required_anti_affinity.is_empty() {
            self.anti_affinity.insert(key.clone(), info.clone());
        }
        if info.has_scoring_affinity() {
            self.scoring_affinity.insert(key.clone(), info.clone());
        }
        match self.index.get(node) {
            Some(&i) => self.attach(info.clone(), i),
            None => self
                .orphans
                .entry(node.to_string())
                .or_default()
                .push(info.clone()),
        }
        self.pods.insert(
            key,
            Placement {
                info,
                node: node.to_string(),
                assumed,
            },
        );
    }

    /// Takes a pod off its node; returns where it was.
    pub fn unplace(&mut self, key: &ObjectKey) -> Option<Placement> {
        let placed = self.pods.remove(key)?;
        if let Some(ns) = self.by_namespace.get_mut(&key.namespace) {
            ns.remove(key);
            if ns.is_empty() {
                self.by_namespace.remove(&key.namespace);
            }
        }
        self.anti_affinity.remove(key);
        self.scoring_affinity.remove(key);
        match self.index.get(&placed.node) {
            Some(&i) => {
                if self.nodes[i].remove_pod(key) {
                    let zone = self.nodes[i].zone;
                    self.count_owner(&placed.info, i, zone, -1);
                }
            }
            None => {
                if let Some(list) = self.orphans.get_mut(&placed.node) {
                    list.retain(|p| p.key != *key);
                    if list.is_empty() {
                        self.orphans.remove(&placed.node);
                    }
                }
            }
        }
        Some(placed)
    }

    /// Where a pod is placed.
    pub fn placement(&self, key: &ObjectKey) -> Option<&Placement> {
        self.pods.get(key)
    }

    /// Marks an assumed pod as bound (the watch showed its binding).
    pub fn confirm(&mut self, key: &ObjectKey) {
        if let Some(p) = self.pods.get_mut(key) {
            p.assumed = false;
        }
    }

    /// Pods placed but not yet confirmed.
    pub fn assumed(&self) -> impl Iterator<Item = &Placement> {
        self.pods.values().filter(|p| p.assumed)
    }

    /// How many pods are placed (bound or assumed).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The id under which an owner's counts are kept (`None`: no pod of it is placed).
    pub fn owner_id(&self, owner: &str) -> Option<u32> {
        self.owner_ids.get(owner).copied()
    }

    /// The counts of an owner id.
    pub fn owner(&self, id: u32) -> Option<&OwnerCounts> {
        self.owners.get(&id)
    }

    /// Pods of `owner` on each node and zone.
    pub fn owner_counts(&self, owner: &str) -> Option<&OwnerCounts> {
        self.owner(self.owner_id(owner)?)
    }

    /// Placed pods in a namespace.
    pub fn pods_in_namespace(&self, namespace: &str) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Every placed pod.
    pub fn placed_pods(&self) -> impl Iterator<Item = &Placement> {
        self.pods.values()
    }

    /// Placed pods with required pod anti-affinity.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.anti_affinity.values()
    }

    /// Placed pods with preferred (anti-)affinity or required affinity terms.
    pub fn scoring_affinity_pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.scoring_affinity.values()
    }

    /// The node a placed pod is on, if the snapshot has it.
    pub fn node_of(&self, key: &ObjectKey) -> Option<&NodeInfo> {
        self.node(&self.pods.get(key)?.node)
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::PodSpec;
    use navarch_api::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn node(name: &str, zone: &str) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: Some(name.into()),
                labels: [(LABEL_ZONE.to_string(), zone.to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, owner: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(
            Arc::new(Pod {
                metadata: Some(ObjectMeta {
                    namespace: Some("default".into()),
                    name: Some(name.into()),
                    owner_references: vec![OwnerReference {
                        uid: Some(owner.into()),
                        controller: Some(true),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
                ..Default::default()
            }),
            0,
        ))
    }

    #[test]
    fn placements_keep_owner_counts_and_survive_node_churn() {
        let mut s = Snapshot::new();
        s.upsert_node(Arc::new(node("n1", "a")));
        s.upsert_node(Arc::new(node("n2", "b")));
        s.place(pod("p1", "rs"), "n1", true);
        s.place(pod("p2", "rs"), "n1", false);
        s.place(pod("p3", "rs"), "n2", false);
        let id1 = s.node("n1").unwrap().id;
        let zone = |s: &Snapshot, z: &str| s.zone_id(z).unwrap();
        let counts = s.owner_counts("rs").unwrap();
        assert_eq!(counts.on_node(id1), 2);
        assert_eq!(counts.in_zone(zone(&s, "b")), 1);
        assert_eq!(counts.total(), 3);
        assert_eq!(s.assumed().count(), 1);
        s.confirm(&ObjectKey::new("default", "p1"));
        assert_eq!(s.assumed().count(), 0);

        // Moving a pod moves its counts.
        s.place(pod("p2", "rs"), "n2", false);
        assert_eq!(s.owner_counts("rs").unwrap().in_zone(zone(&s, "b")), 2);
        assert_eq!(s.node("n1").unwrap().pods.len(), 1);

        // A removed node's pods wait for it; when it returns they are back on it.
        s.remove_node("n1");
        assert!(s.node("n1").is_none());
        assert_eq!(s.node("n2").unwrap().pods.len(), 2);
        assert_eq!(s.owner_counts("rs").unwrap().in_zone(zone(&s, "a")), 0);
        s.upsert_node(Arc::new(node("n1", "c")));
        assert_eq!(s.node("n1").unwrap().pods.len(), 1);
        assert_eq!(s.owner_counts("rs").unwrap().in_zone(zone(&s, "c")), 1);

        // A relabelled zone moves the zone counts.
        s.upsert_node(Arc::new(node("n1", "d")));
        assert_eq!(s.owner_counts("rs").unwrap().in_zone(zone(&s, "c")), 0);
        assert_eq!(s.owner_counts("rs").unwrap().in_zone(zone(&s, "d")), 1);
        assert_eq!(s.zone_count(), 4);

        for p in ["p1", "p2", "p3"] {
            s.unplace(&ObjectKey::new("default", p)).unwrap();
        }
        assert!(s.owner_counts("rs").is_none());
        assert_eq!(s.pod_count(), 0);
        assert_eq!(s.pods_in_namespace("default").count(), 0);
    }
}
