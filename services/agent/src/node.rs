//! Node registration, node status (written only when it changed, or every report interval),
//! and the Lease heartbeat in `kube-node-lease`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use navarch_api::coordination::v1::{Lease, LeaseSpec};
use navarch_api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use navarch_api::meta::v1::{ObjectMeta, OwnerReference, Quantity};
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use tokio::sync::watch;

use crate::machine::MachineInfo;

/// The version the agent reports as `kubeletVersion`.
pub const KUBELET_VERSION: &str = concat!("v1.34.0-navarch.", env!("CARGO_PKG_VERSION"));

/// How the Node looks: identity, labels, taints, resources.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Overrides of capacity (`cpu`, `memory`, `pods`, `ephemeral-storage`, …).
    pub capacity: BTreeMap<String, String>,
    /// Overrides of allocatable; by default capacity minus the kubelet's eviction reserve.
    pub allocatable: BTreeMap<String, String>,
    /// Extra addresses (type, address) reported besides InternalIP and Hostname.
    pub addresses: Vec<(String, String)>,
    /// Port of the agent's own service (`daemonEndpoints.kubeletEndpoint`).
    pub agent_port: i32,
    pub max_pods: u32,
    /// A pod CIDR fixed by the operator (`--pod-cidr`), registered as `spec.podCIDR`;
    /// without one the node IPAM loop assigns it.
    pub pod_cidr: Option<String>,
}

/// Heartbeat timing (the kubelet's defaults: lease 40 s renewed every 10 s; status checked
/// every 10 s and written when it changed or every 5 min).
#[derive(Clone, Copy, Debug)]
pub struct NodeTiming {
    pub lease_duration: Duration,
    pub lease_renew: Duration,
    pub status_update: Duration,
    pub status_report: Duration,
}

impl Default for NodeTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(40),
            lease_renew: Duration::from_secs(10),
            status_update: Duration::from_secs(10),
            status_report: Duration::from_secs(300),
        }
    }
}

fn q(v: impl ToString) -> Quantity {
    Quantity {
        value: v.to_string(),
    }
}

/// Capacity and allocatable from the machine and the overrides.
pub fn resources(
    machine: &MachineInfo,
    opts: &NodeOptions,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut capacity: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), q(machine.cpus)),
        (
            "memory".to_string(),
            q(format!("{}Ki", machine.memory_bytes / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            q(format!("{}Ki", machine.ephemeral_storage_bytes / 1024)),
        ),
        (
            "pods".to_string(),
            q(if opts.max_pods == 0 {
                110
            } else {
                opts.max_pods
            }),
        ),
        ("hugepages-1Gi".to_string(), q(0)),
        ("hugepages-2Mi".to_string(), q(0)),
    ]
    .into();
    for (k, v) in &opts.capacity {
        capacity.insert(k.clone(), q(v));
    }
    let mut allocatable = capacity.clone();
    // The kubelet's default hard eviction thresholds come off allocatable.
    if !opts.capacity.contains_key("memory") {
        let mem = machine.memory_bytes.saturating_sub(100 * 1024 * 1024);
        allocatable.insert("memory".into(), q(format!("{}Ki", mem / 1024)));
    }
    if !opts.capacity.contains_key("ephemeral-storage") {
        let disk = machine.ephemeral_storage_bytes / 10 * 9;
        allocatable.insert("ephemeral-storage".into(), q(disk));
    }
    for (k, v) in &opts.allocatable {
        allocatable.insert(k.clone(), q(v));
    }
    (capacity, allocatable)
}

/// The labels every node carries, then the user's.
pub fn labels(
    node_name: &str,
    machine: &MachineInfo,
    opts: &NodeOptions,
) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = [
        ("kubernetes.io/hostname".to_string(), node_name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            machine.architecture.clone(),
        ),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            machine.architecture.clone(),
        ),
    ]
    .into();
    l.extend(opts.labels.clone());
    l
}

fn node_condition(kind: &str, ok_is_true: bool, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        r#type: Some(kind.into()),
        status: Some(if ok_is_true { "True" } else { "False" }.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// The node's status now (heartbeat times set to `now`, transition times kept from `old`).
pub fn node_status(
    node_name: &str,
    machine: &MachineInfo,
    opts: &NodeOptions,
    runtime_version: &str,
    old: Option<&NodeStatus>,
    now: &str,
) -> NodeStatus {
    let (capacity, allocatable) = resources(machine, opts);
    let mut addresses = vec![];
    if let Some(ip) = machine.internal_ip {
        addresses.push(NodeAddress {
            r#type: Some("InternalIP".into()),
            address: Some(ip.to_string()),
        });
    }
    for (t, a) in &opts.addresses {
        addresses.push(NodeAddress {
            r#type: Some(t.clone()),
            address: Some(a.clone()),
        });
    }
    addresses.push(NodeAddress {
        r#type: Some("Hostname".into()),
        address: Some(node_name.into()),
    });
    let mut conditions = vec![
        node_condition(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        node_condition(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        node_condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        node_condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ];
    for c in &mut conditions {
        c.last_heartbeat_time = Some(now.into());
        let prev = old.and_then(|o| o.conditions.iter().find(|p| p.r#type == c.r#type));
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status && p.last_transition_time.is_some() => {
                p.last_transition_time.clone()
            }
            _ => Some(now.into()),
        };
    }
    NodeStatus {
        capacity,
        allocatable,
        addresses,
        conditions,
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: Some(opts.agent_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: Some(machine.architecture.clone()),
            boot_id: Some(machine.boot_id.clone()),
            container_runtime_version: Some(runtime_version.into()),
            kernel_version: Some(machine.kernel_version.clone()),
            kube_proxy_version: Some(String::new()),
            kubelet_version: Some(KUBELET_VERSION.into()),
            machine_id: Some(machine.machine_id.clone()),
            operating_system: Some("linux".into()),
            os_image: Some(machine.os_image.clone()),
            system_uuid: Some(machine.system_uuid.clone()),
            ..Default::default()
        }),
        // Images and volumes are not reported yet; keep whatever is there.
        images: old.map(|o| o.images.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

/// Status without the heartbeat times: what "changed" compares.
fn comparable(status: &NodeStatus) -> NodeStatus {
    let mut s = status.clone();
    for c in &mut s.conditions {
        c.last_heartbeat_time = None;
    }
    s
}

/// Kubernetes' MicroTime for Lease renewals.
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Everything that describes this node to the cluster.
#[derive(Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub machine: MachineInfo,
    pub options: NodeOptions,
    pub runtime_version: String,
}

/// Registers the node (create, or merge our labels into an existing one) and writes its
/// status. Returns the node as stored.
pub async fn register(client: &Client, id: &NodeIdentity) -> Result<Node, ApiError> {
    let labels = labels(&id.name, &id.machine, &id.options);
    let node = Node {
        metadata: Some(ObjectMeta {
            name: Some(id.name.clone()),
            labels: labels.clone(),
            annotations: [("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            taints: id.options.taints.clone(),
            pod_cidr: id.options.pod_cidr.clone(),
            pod_cid_rs: id.options.pod_cidr.iter().cloned().collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let stored = match client.create::<Node>("", &node).await {
        Ok(n) => n,
        Err(e) if e.reason == Reason::AlreadyExists => {
            let mut existing: Node = client.get("", &id.name).await?;
            let meta = existing.metadata.get_or_insert_with(Default::default);
            let before = meta.labels.clone();
            meta.labels.extend(labels);
            let spec = existing.spec.get_or_insert_with(Default::default);
            let mut taints_changed = false;
            for t in &id.options.taints {
                if !spec
                    .taints
                    .iter()
                    .any(|x| x.key == t.key && x.effect == t.effect)
                {
                    spec.taints.push(t.clone());
                    taints_changed = true;
                }
            }
            if let Some(cidr) = &id.options.pod_cidr
                && spec.pod_cidr.as_deref().is_none_or(str::is_empty)
            {
                spec.pod_cidr = Some(cidr.clone());
                spec.pod_cid_rs = vec![cidr.clone()];
                taints_changed = true;
            }
            if before
                != existing
                    .metadata
                    .as_ref()
                    .map(|m| m.labels.clone())
                    .unwrap_or_default()
                || taints_changed
            {
                client.update("", &id.name, &existing).await?
            } else {
                existing
            }
        }
        Err(e) => return Err(e),
    };
    let now = navarch_api_now();
    let status = node_status(
        &id.name,
        &id.machine,
        &id.options,
        &id.runtime_version,
        stored.status.as_ref(),
        &now,
    );
    let mut body = stored;
    body.status = Some(status);
    if let Some(m) = body.metadata.as_mut() {
        m.resource_version = None;
    }
    let written = client.update_status("", &id.name, &body).await?;
    tracing::info!(node = %id.name, "node registered");
    Ok(written)
}

fn navarch_api_now() -> String {
    crate::runtime::now_rfc3339()
}

/// Keeps the node's status current: checks every `status_update`, writes when something
/// other than heartbeat times changed or `status_report` passed.
pub async fn status_loop(
    client: Client,
    id: NodeIdentity,
    mut last: Node,
    timing: NodeTiming,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_write = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timing.status_update) => {}
            _ = stop.changed() => return,
        }
        let now = navarch_api_now();
        let status = node_status(
            &id.name,
            &id.machine,
            &id.options,
            &id.runtime_version,
            last.status.as_ref(),
            &now,
        );
        let changed = last.status.as_ref().map(comparable) != Some(comparable(&status));
        if !changed && last_write.elapsed() < timing.status_report {
            continue;
        }
        let mut body = last.clone();
        body.status = Some(status);
        if let Some(m) = body.metadata.as_mut() {
            m.resource_version = None;
        }
        match client.update_status("", &id.name, &body).await {
            Ok(n) => {
                tracing::debug!(node = %id.name, changed, "node status written");
                last = n;
                last_write = Instant::now();
            }
            Err(e) if e.reason == Reason::NotFound => {
                tracing::warn!(node = %id.name, "node object is gone; registering again");
                if let Ok(n) = register(&client, &id).await {
                    last = n;
                    last_write = Instant::now();
                }
            }
            Err(error) => tracing::warn!(node = %id.name, %error, "node status update failed"),
        }
    }
}

/// Renews the node's Lease every `lease_renew` until stopped.
pub async fn lease_loop(
    client: Client,
    node: Node,
    timing: NodeTiming,
    mut stop: watch::Receiver<bool>,
) {
    let name = node
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    let uid = node
        .metadata
        .as_ref()
        .and_then(|m| m.uid.clone())
        .unwrap_or_default();
    let mut current: Option<Lease> = None;
    let mut failures: u32 = 0;
    loop {
        match renew(&client, &name, &uid, timing, current.take()).await {
            Ok(l) => {
                failures = 0;
                current = Some(l);
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(node = %name, %error, failures, "lease renewal failed");
            }
        }
        // On failure retry sooner (the kubelet retries at 200 ms doubling up to 7 s).
        let wait = if failures == 0 {
            timing.lease_renew
        } else {
            Duration::from_millis(200u64 << failures.min(5)).min(timing.lease_renew)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn renew(
    client: &Client,
    name: &str,
    node_uid: &str,
    timing: NodeTiming,
    current: Option<Lease>,
) -> Result<Lease, ApiError> {
    const NS: &str = "kube-node-lease";
    let lease = match current {
        Some(l) => Some(l),
        None => match client.get::<Lease>(NS, name).await {
            Ok(l) => Some(l),
            Err(e) if e.reason == Reason::NotFound => None,
            Err(e) => return Err(e),
        },
    };
    let now = now_micro();
    match lease {
        None => {
            let lease = Lease {
                metadata: Some(ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(NS.into()),
                    owner_references: vec![OwnerReference {
                        api_version: Some("v1".into()),
                        kind: Some("Node".into()),
                        name: Some(name.into()),
                        uid: Some(node_uid.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(timing.lease_duration.as_secs() as i32),
                    renew_time: Some(now),
                    ..Default::default()
                }),
                ..Default::default()
            };
            client.create(NS, &lease).await
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(name.into());
            spec.lease_duration_seconds = Some(timing.lease_duration.as_secs() as i32);
            spec.renew_time = Some(now);
            match client.update(NS, name, &lease).await {
                Ok(l) => Ok(l),
                Err(e) if e.reason == Reason::Conflict || e.reason == Reason::NotFound => {
                    // Someone else wrote it (or removed it): read again next round.
                    Err(e)
                }
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_and_allocatable() {
        let m = MachineInfo {
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 1000 * 1024,
            architecture: "amd64".into(),
            ..Default::default()
        };
        let mut opts = NodeOptions::default();
        let (cap, alloc) = resources(&m, &opts);
        assert_eq!(cap["cpu"].value, "2");
        assert_eq!(cap["memory"].value, "4194304Ki");
        assert_eq!(cap["pods"].value, "110");
        assert_eq!(alloc["memory"].value, format!("{}Ki", 4194304 - 102400));
        opts.capacity.insert("cpu".into(), "64".into());
        opts.allocatable.insert("pods".into(), "20".into());
        let (cap, alloc) = resources(&m, &opts);
        assert_eq!(cap["cpu"].value, "64");
        assert_eq!(alloc["cpu"].value, "64");
        assert_eq!(alloc["pods"].value, "20");
    }

    #[test]
    fn status_changes_ignore_heartbeats() {
        let m = MachineInfo {
            cpus: 1,
            internal_ip: Some("10.1.2.3".parse().unwrap()),
            ..Default::default()
        };
        let o = NodeOptions::default();
        let a = node_status("n", &m, &o, "fake://1", None, "2025-01-01T00:00:00Z");
        let b = node_status("n", &m, &o, "fake://1", Some(&a), "2025-01-01T00:00:10Z");
        assert_ne!(a, b);
        assert_eq!(comparable(&a), comparable(&b));
        let ready = b
            .conditions
            .iter()
            .find(|c| c.r#type.as_deref() == Some("Ready"))
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.last_transition_time.as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(b.addresses[0].address.as_deref(), Some("10.1.2.3"));
        assert_eq!(b.addresses[1].r#type.as_deref(), Some("Hostname"));
    }

    #[test]
    fn micro_time_format() {
        let t = now_micro();
        assert_eq!(t.len(), "2025-01-01T00:00:00.000000Z".len(), "{t}");
    }
}
