//! Service ClusterIP and NodePort allocation.
//!
//! # Where allocations live, and why
//!
//! Every allocated ClusterIP and NodePort is one key in the store, outside `/registry/` (so
//! the watch cache and lists never see it):
//! `/navarch/allocations/serviceips/<ip>` and `/navarch/allocations/servicenodeports/<port>`,
//! each holding the owning Service's namespace, name and uid. This is the shape of
//! Kubernetes' newer `IPAddress` objects (one object per allocated address) rather than its
//! older single bitmap, and it is chosen because it makes allocation exactly as strong as
//! the store's compare-and-write, with no in-memory state to lose or to disagree about:
//!
//! - A Service is written **in the same transaction** as the keys for the addresses and
//!   ports it takes, each guarded by `Compare::Absent`. Two creates racing for one address
//!   (in one gateway, or in several gateways sharing one store) cannot both commit; the
//!   loser sees which key was taken and picks again (or, for an address the user asked for,
//!   gets `422 Invalid` on `spec.clusterIPs` / `spec.ports[i].nodePort`).
//! - A Service delete removes its keys in the delete's transaction, so nothing leaks and
//!   nothing is released early.
//! - Restarts need nothing: the keys are durable with the Services. At start the gateway
//!   still [`repair`](ServiceAllocator::repair)s: it claims the addresses of any Service
//!   that has none recorded (Services written before this allocator existed), as
//!   Kubernetes' repair controllers do.
//!
//! Picking a free address is random (a few tries against the store, then a scan of the
//! allocated keys from a random offset when the range is crowded), so concurrent creates
//! rarely collide in the first place. The first address of the service CIDR is kept out of
//! dynamic allocation: it belongs to the `kubernetes` Service. The range is IPv4 only.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use navarch_api::core::v1::{Service, ServiceSpec};
use navarch_api::{ApiError, FieldError, Object};
use navarch_store::{Compare, ListRequest, Store, Txn, TxnOutcome};
use rand::Rng;

use crate::registry::store_error;

/// Store prefix of allocated ClusterIPs.
pub const IP_PREFIX: &str = "/navarch/allocations/serviceips/";
/// Store prefix of allocated NodePorts.
pub const NODE_PORT_PREFIX: &str = "/navarch/allocations/servicenodeports/";

/// Kubeadm's default `--service-cidr`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// Kubernetes' default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: &str = "30000-32767";

/// Random picks tried against the store before scanning the allocated keys.
const RANDOM_TRIES: usize = 8;

/// The address ranges Services are given addresses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNetwork {
    base: u32,
    prefix_len: u8,
    node_port_first: u16,
    node_port_last: u16,
}

/// A flag value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NetworkError(String);

impl Default for ServiceNetwork {
    fn default() -> Self {
        Self::new(DEFAULT_SERVICE_CIDR, DEFAULT_NODE_PORT_RANGE).expect("valid defaults")
    }
}

impl ServiceNetwork {
    /// From `--service-cidr` (IPv4, like `10.96.0.0/12`, prefix 8–30) and
    /// `--service-node-port-range` (like `30000-32767`).
    pub fn new(cidr: &str, node_ports: &str) -> Result<Self, NetworkError> {
        let (addr, len) = cidr.split_once('/').ok_or_else(|| {
            NetworkError(format!("service CIDR {cidr:?}: expected ADDRESS/PREFIX"))
        })?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            NetworkError(format!(
                "service CIDR {cidr:?}: {addr:?} is not an IPv4 address"
            ))
        })?;
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| {
                NetworkError(format!("service CIDR {cidr:?}: prefix must be 8 to 30"))
            })?;
        let mask = u32::MAX << (32 - prefix_len);
        let (first, last) = node_ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|(a, b)| *a > 0 && a <= b)
            .ok_or_else(|| {
                NetworkError(format!(
                    "node port range {node_ports:?}: expected FIRST-LAST, like 30000-32767"
                ))
            })?;
        Ok(Self {
            base: u32::from(addr) & mask,
            prefix_len,
            node_port_first: first,
            node_port_last: last,
        })
    }

    /// The CIDR, normalized (`10.96.0.0/12`).
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix_len)
    }

    /// The node port range as Kubernetes prints it (`30000-32767`).
    pub fn node_port_range(&self) -> String {
        format!("{}-{}", self.node_port_first, self.node_port_last)
    }

    fn broadcast(&self) -> u32 {
        self.base | (u32::MAX >> self.prefix_len)
    }

    /// The first address: the `kubernetes` Service's ClusterIP.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Whether `ip` may be a ClusterIP: inside the CIDR, not its network or broadcast address.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.broadcast()
    }

    /// Whether `port` is in the node port range.
    pub fn contains_port(&self, port: i32) -> bool {
        (i32::from(self.node_port_first)..=i32::from(self.node_port_last)).contains(&port)
    }
}

/// One allocated thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Ip(Ipv4Addr),
    NodePort(u16),
}

impl Resource {
    /// Its store key.
    pub fn key(&self) -> String {
        match self {
            Resource::Ip(ip) => format!("{IP_PREFIX}{ip}"),
            Resource::NodePort(p) => format!("{NODE_PORT_PREFIX}{p}"),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Ip(ip) => write!(f, "IP {ip}"),
            Resource::NodePort(p) => write!(f, "node port {p}"),
        }
    }
}

/// A resource a write takes: requested by the user (a clash is their error) or picked by us
/// (a clash means pick again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub resource: Resource,
    /// The field the user set, for a requested resource.
    pub requested_at: Option<String>,
}

/// What a Service write must do to the allocation keys, in its own transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys to create (each must be absent).
    pub claims: Vec<Claim>,
    /// Keys to delete (the write no longer holds them).
    pub releases: Vec<Resource>,
}

impl Plan {
    /// Adds the plan's compares and ops to `txn`, after its own.
    pub fn apply_to(&self, mut txn: Txn, owner: &[u8]) -> Txn {
        for c in &self.claims {
            let key = c.resource.key();
            txn = txn.when(&key, Compare::Absent).put(key, owner.to_vec());
        }
        for r in &self.releases {
            txn = txn.delete(r.key());
        }
        txn
    }

    /// After a failed txn whose first `own` compares were the write's own: the claim whose
    /// key turned out to be taken, if any.
    pub fn taken(&self, outcome: &TxnOutcome, own: usize) -> Option<&Claim> {
        let TxnOutcome::Failed { current } = outcome else {
            return None;
        };
        self.claims
            .iter()
            .zip(current.iter().skip(own))
            .find(|(_, kv)| kv.is_some())
            .map(|(c, _)| c)
    }
}

/// What a Service holds: its IPv4 ClusterIPs and its node ports.
pub fn held(spec: &ServiceSpec) -> BTreeSet<Resource> {
    let mut out = BTreeSet::new();
    let ips = spec.cluster_i_ps.iter().chain(spec.cluster_ip.iter());
    for ip in ips {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            out.insert(Resource::Ip(ip));
        }
    }
    let ports = spec.ports.iter().filter_map(|p| p.node_port);
    for p in ports.chain(spec.health_check_node_port) {
        if let Ok(p) = u16::try_from(p)
            && p > 0
        {
            out.insert(Resource::NodePort(p));
        }
    }
    out
}

/// Allocates from one [`ServiceNetwork`] against one store.
#[derive(Clone)]
pub struct ServiceAllocator {
    network: ServiceNetwork,
}

fn wants_cluster_ip(spec: &ServiceSpec) -> bool {
    let headless = spec.cluster_ip.as_deref() == Some("None")
        || spec.cluster_i_ps.first().map(String::as_str) == Some("None");
    spec.r#type.as_deref() != Some("ExternalName") && !headless
}

fn wants_node_ports(spec: &ServiceSpec) -> bool {
    match spec.r#type.as_deref() {
        Some("NodePort") => true,
        Some("LoadBalancer") => spec.allocate_load_balancer_node_ports != Some(false),
        _ => false,
    }
}

fn invalid(svc: &Service, errs: Vec<FieldError>) -> ApiError {
    let name = svc
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    ApiError::invalid("", "Service", &name, errs)
}

impl ServiceAllocator {
    pub fn new(network: ServiceNetwork) -> Self {
        Self { network }
    }

    pub fn network(&self) -> &ServiceNetwork {
        &self.network
    }

    /// Fills in the ClusterIP and node ports `obj` (a Service, defaulted and validated)
    /// needs, and says which keys its write must claim and release. `old` is the Service
    /// being updated; `avoid` are resources already found taken in this request.
    pub async fn plan(
        &self,
        store: &Arc<dyn Store>,
        obj: &mut Object,
        old: Option<&Object>,
        avoid: &HashSet<Resource>,
    ) -> Result<Plan, ApiError> {
        let mut svc: Service = obj.to_typed()?;
        let old_held = match old {
            Some(o) => held(&o.to_typed::<Service>()?.spec.unwrap_or_default()),
            None => BTreeSet::new(),
        };
        let mut plan = Plan::default();
        let mut errs = Vec::new();
        let mut taking = avoid.clone();
        let spec = svc.spec.get_or_insert_with(Default::default);

        if wants_cluster_ip(spec) {
            let requested = spec
                .cluster_i_ps
                .first()
                .cloned()
                .or_else(|| spec.cluster_ip.clone())
                .filter(|s| !s.is_empty());
            match requested {
                Some(ip) => match ip.parse::<Ipv4Addr>() {
                    Ok(v4) if old_held.contains(&Resource::Ip(v4)) => {}
                    Ok(v4) if self.network.contains(v4) => plan.claims.push(Claim {
                        resource: Resource::Ip(v4),
                        requested_at: Some("spec.clusterIPs".into()),
                    }),
                    _ => errs.push(FieldError::invalid(
                        "spec.clusterIPs",
                        format!("[]string{{\"{ip}\"}}"),
                        format!(
                            "failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {}",
                            self.network.cidr()
                        ),
                    )),
                },
                None => {
                    let ip = self.pick_ip(store, &taking).await?;
                    taking.insert(Resource::Ip(ip));
                    plan.claims.push(Claim {
                        resource: Resource::Ip(ip),
                        requested_at: None,
                    });
                    spec.cluster_ip = Some(ip.to_string());
                    spec.cluster_i_ps = vec![ip.to_string()];
                    if spec.ip_families.is_empty() {
                        spec.ip_families = vec!["IPv4".into()];
                    }
                    if spec.ip_family_policy.is_none() {
                        spec.ip_family_policy = Some("SingleStack".into());
                    }
                }
            }
        }

        if wants_node_ports(spec) {
            let mut seen = BTreeSet::new();
            for i in 0..spec.ports.len() {
                match spec.ports[i].node_port.filter(|p| *p != 0) {
                    Some(p) => {
                        let field = format!("spec.ports[{i}].nodePort");
                        if !self.network.contains_port(p) {
                            if !u16::try_from(p)
                                .is_ok_and(|p| old_held.contains(&Resource::NodePort(p)))
                            {
                                errs.push(FieldError::invalid(
                                    field,
                                    p,
                                    format!(
                                        "provided port is not in the valid range. The range of valid ports is {}",
                                        self.network.node_port_range()
                                    ),
                                ));
                            }
                            continue;
                        }
                        let r = Resource::NodePort(p as u16);
                        // One port number may serve TCP and UDP of the same Service.
                        if !old_held.contains(&r) && seen.insert(r) {
                            taking.insert(r);
                            plan.claims.push(Claim {
                                resource: r,
                                requested_at: Some(field),
                            });
                        }
                    }
                    None => {
                        let p = self.pick_port(store, &taking).await?;
                        let r = Resource::NodePort(p);
                        taking.insert(r);
                        seen.insert(r);
                        plan.claims.push(Claim {
                            resource: r,
                            requested_at: None,
                        });
                        spec.ports[i].node_port = Some(i32::from(p));
                    }
                }
            }
        }
        if !errs.is_empty() {
            return Err(invalid(&svc, errs));
        }
        let new_held = held(spec);
        plan.releases = old_held.difference(&new_held).copied().collect();
        let meta = obj.meta();
        *obj = Object::from_typed(&svc)?;
        obj.set_meta(&meta);
        Ok(plan)
    }

    /// The error for a requested resource someone else holds.
    pub fn already_allocated(obj: &Object, claim: &Claim) -> ApiError {
        let field = claim.requested_at.clone().unwrap_or_default();
        let (value, detail) = match claim.resource {
            Resource::Ip(ip) => (
                format!("[]string{{\"{ip}\"}}"),
                format!("failed to allocate IP {ip}: provided IP is already allocated"),
            ),
            Resource::NodePort(p) => (p.to_string(), "provided port is already allocated".into()),
        };
        ApiError::invalid(
            "",
            "Service",
            &obj.name(),
            vec![FieldError::invalid(field, value, detail)],
        )
    }

    /// The owner record stored under each key a Service holds.
    pub fn owner_record(obj: &Object) -> Vec<u8> {
        let meta = obj.meta();
        serde_json::to_vec(&serde_json::json!({
            "namespace": meta.namespace.unwrap_or_default(),
            "name": meta.name.unwrap_or_default(),
            "uid": meta.uid.unwrap_or_default(),
        }))
        .unwrap_or_default()
    }

    async fn pick_ip(
        &self,
        store: &Arc<dyn Store>,
        avoid: &HashSet<Resource>,
    ) -> Result<Ipv4Addr, ApiError> {
        // .1 is the kubernetes Service's; the network and broadcast addresses are never used.
        let first = self.network.base + 2;
        let last = self.network.broadcast() - 1;
        let v = self
            .pick(store, first, last, IP_PREFIX, avoid, |v| {
                Resource::Ip(Ipv4Addr::from(v))
            })
            .await?;
        Ok(Ipv4Addr::from(v))
    }

    async fn pick_port(
        &self,
        store: &Arc<dyn Store>,
        avoid: &HashSet<Resource>,
    ) -> Result<u16, ApiError> {
        let v = self
            .pick(
                store,
                u32::from(self.network.node_port_first),
                u32::from(self.network.node_port_last),
                NODE_PORT_PREFIX,
                avoid,
                |v| Resource::NodePort(v as u16),
            )
            .await?;
        Ok(v as u16)
    }

    /// A value in `first..=last` whose key is absent, random when the range is sparse.
    async fn pick(
        &self,
        store: &Arc<dyn Store>,
        first: u32,
        last: u32,
        prefix: &str,
        avoid: &HashSet<Resource>,
        resource: impl Fn(u32) -> Resource,
    ) -> Result<u32, ApiError> {
        for _ in 0..RANDOM_TRIES {
            let v = rand::rng().random_range(first..=last);
            let r = resource(v);
            if !avoid.contains(&r) && store.get(&r.key(), 0).await.map_err(store_error)?.is_none() {
                return Ok(v);
            }
        }
        // Crowded: read what is taken and scan from a random offset.
        let mut taken: HashSet<Resource> = avoid.clone();
        let mut start_after = None;
        loop {
            let page = store
                .list(ListRequest {
                    prefix: prefix.to_string(),
                    start_after: start_after.clone(),
                    limit: 1000,
                    revision: 0,
                })
                .await
                .map_err(store_error)?;
            for kv in &page.kvs {
                let tail = &kv.key[prefix.len()..];
                if let Ok(ip) = tail.parse::<Ipv4Addr>() {
                    taken.insert(Resource::Ip(ip));
                } else if let Ok(p) = tail.parse::<u16>() {
                    taken.insert(Resource::NodePort(p));
                }
            }
            if !page.more {
                break;
            }
            start_after = page.kvs.last().map(|kv| kv.key.clone());
        }
        let size = u64::from(last - first) + 1;
        let offset = rand::rng().random_range(0..size);
        for i in 0..size {
            let v = first + ((offset + i) % size) as u32;
            if !taken.contains(&resource(v)) {
                return Ok(v);
            }
        }
        Err(ApiError::internal(if prefix == IP_PREFIX {
            format!(
                "failed to allocate a serviceIP: range is full ({})",
                self.network.cidr()
            )
        } else {
            format!(
                "failed to allocate a nodePort: range is full ({})",
                self.network.node_port_range()
            )
        }))
    }

    /// Claims the resources of Services that have none recorded (written before allocation
    /// keys existed); logs Services that share one.
    pub async fn repair(
        &self,
        store: &Arc<dyn Store>,
        services: &[Object],
    ) -> Result<(), ApiError> {
        for obj in services {
            let spec = obj.to_typed::<Service>()?.spec.unwrap_or_default();
            for r in held(&spec) {
                let key = r.key();
                let txn = Txn::new()
                    .when(&key, Compare::Absent)
                    .put(&key, Self::owner_record(obj));
                match store.txn(txn).await.map_err(store_error)? {
                    TxnOutcome::Committed { .. } => tracing::info!(
                        namespace = %obj.namespace(),
                        name = %obj.name(),
                        resource = %r,
                        "recorded a service allocation"
                    ),
                    TxnOutcome::Failed { current } => {
                        let owner = current.first().and_then(Option::as_ref).and_then(|kv| {
                            serde_json::from_slice::<serde_json::Value>(&kv.value).ok()
                        });
                        let uid = obj.meta().uid.unwrap_or_default();
                        if owner.as_ref().and_then(|o| o["uid"].as_str()) != Some(uid.as_str()) {
                            tracing::warn!(
                                namespace = %obj.namespace(),
                                name = %obj.name(),
                                resource = %r,
                                owner = ?owner,
                                "service holds an address allocated to another service"
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
