//! The filter and score plugins, one module each; [`crate::framework::Registry::default`] lists
//! them with their weights. Adding a plugin is one file and one line there.

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod inter_pod_affinity_score;
pub mod node_affinity;
pub mod node_ports;
pub mod node_ready;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod resources_fit;
pub mod taint_toleration;

#[cfg(test)]
pub(crate) mod testing;
