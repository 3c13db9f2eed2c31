//! The Endpoints and EndpointSlice loops (`pkg/controller/endpoint`, `endpointslice`): for
//! every Service with a selector, the pods it selects that have an IP — ready ones as
//! addresses, the others as notReadyAddresses (Endpoints) or with `ready: false`
//! (EndpointSlices, which also list terminating pods with `terminating`/`serving`) — and the
//! Service's ports with named target ports resolved against each pod's container ports.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use navarch_api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use navarch_api::discovery::v1::{self as discovery, EndpointSlice};
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::meta::v1::int_or_string::Value as IntOrStringValue;
use navarch_api::selectors::LabelSelector;
use navarch_api::{ApiError, Reason};
use navarch_runtime::{Action, Event, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::pods;
use crate::util::{self, controller_ref};

pub const ENDPOINTS: &str = "endpoints";
pub const ENDPOINT_SLICES: &str = "endpointslice";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice (`--max-endpoints-per-slice`).
const MAX_PER_SLICE: usize = 100;

struct Ctx {
    shared: Arc<Shared>,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    slices: Arc<Informer<EndpointSlice>>,
    queue: WorkQueue<ObjectKey>,
}

fn wire(shared: &Arc<Shared>, name: &'static str) -> Arc<Ctx> {
    let queue = WorkQueue::new(name);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        services: shared.factory.informer(),
        pods: shared.factory.informer(),
        endpoints: shared.factory.informer(),
        slices: shared.factory.informer(),
        queue: queue.clone(),
    });
    let q = queue.clone();
    ctx.services
        .add_handler(move |ev: &Event<Service>| q.add(ObjectKey::of(ev.object().as_ref())));
    let weak = Arc::downgrade(&ctx);
    ctx.pods
        .add_handler(move |ev: &Event<Pod>| on_pod(&weak, ev));
    ctx
}

pub fn build_endpoints(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let ctx = wire(shared, ENDPOINTS);
    let q = ctx.queue.clone();
    ctx.endpoints
        .add_handler(move |ev: &Event<Endpoints>| q.add(ObjectKey::of(ev.object().as_ref())));
    Runner::new(ENDPOINTS, ctx.queue.clone(), ctx, shared.clone(), |k, c| {
        boxed(reconcile_endpoints(k, c))
    })
}

pub fn build_endpoint_slices(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let ctx = wire(shared, ENDPOINT_SLICES);
    let q = ctx.queue.clone();
    ctx.slices.add_handler(move |ev: &Event<EndpointSlice>| {
        let meta = ev.object().meta();
        if let Some(svc) = meta.labels.get(SERVICE_NAME_LABEL) {
            q.add(ObjectKey::new(util::namespace(meta), svc.clone()));
        }
    });
    Runner::new(
        ENDPOINT_SLICES,
        ctx.queue.clone(),
        ctx,
        shared.clone(),
        |k, c| boxed(reconcile_slices(k, c)),
    )
}

fn service_selector(svc: &Service) -> Option<LabelSelector> {
    let labels = &svc.spec.as_ref()?.selector;
    (!labels.is_empty()).then(|| LabelSelector::from_labels(labels))
}

fn on_pod(ctx: &Weak<Ctx>, ev: &Event<Pod>) {
    let Some(ctx) = ctx.upgrade() else { return };
    let (old, new) = match ev {
        Event::Added(p) | Event::Deleted(p) => (None, p),
        Event::Updated { old, new } => (Some(old), new),
    };
    for svc in ctx
        .services
        .cache()
        .in_namespace(util::namespace(new.meta()))
    {
        let Some(sel) = service_selector(&svc) else {
            continue;
        };
        if sel.matches(&new.meta().labels) || old.is_some_and(|o| sel.matches(&o.meta().labels)) {
            ctx.queue.add(ObjectKey::of(svc.as_ref()));
        }
    }
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

/// The container port a service port targets on `pod` (`podutil.FindPort`).
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match port.target_port.as_ref().and_then(|t| t.value.as_ref()) {
        None => port.port,
        Some(IntOrStringValue::IntVal(0)) => port.port,
        Some(IntOrStringValue::IntVal(n)) => Some(*n),
        Some(IntOrStringValue::StrVal(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports
                    .iter()
                    .find(|p| {
                        p.name.as_deref() == Some(name.as_str())
                            && p.protocol.as_deref().unwrap_or("TCP") == protocol
                    })
                    .and_then(|p| p.container_port)
            })
        }
    }
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.meta().namespace.clone(),
        name: pod.meta().name.clone(),
        uid: pod.meta().uid.clone(),
        ..Default::default()
    }
}

/// The pod's hostname for the service, when it asked for one under it.
fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.meta().name.as_deref()).then_some(host)
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true)
}

/// The selected pods that belong in endpoints (an IP, not finished), sorted by name.
fn selected_pods(ctx: &Ctx, svc: &Service, selector: &LabelSelector) -> Vec<Arc<Pod>> {
    let mut v: Vec<Arc<Pod>> = ctx
        .pods
        .cache()
        .select(Some(util::namespace(svc.meta())), selector)
        .into_iter()
        .filter(|p| pod_ip(p).is_some() && !pods::is_terminal(p))
        .collect();
    v.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    v
}

fn service_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.meta().labels.clone();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels
}

async fn reconcile_endpoints(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let client = &ctx.shared.client;
    let Some(svc) = ctx.services.cache().get(&key) else {
        if ctx.endpoints.cache().get(&key).is_some() {
            match client.delete::<Endpoints>(&key.namespace, &key.name).await {
                Ok(_) => {}
                Err(e) if e.reason == Reason::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(Action::await_change());
    };
    let Some(selector) = service_selector(&svc) else {
        return Ok(Action::await_change());
    };
    let ports = svc
        .spec
        .as_ref()
        .map(|s| s.ports.clone())
        .unwrap_or_default();
    let publish = publish_not_ready(&svc);
    // Subsets keyed by their port list (`RepackSubsets`).
    let mut subsets: BTreeMap<PortKey, EndpointSubset> = BTreeMap::new();
    for pod in selected_pods(&ctx, &svc, &selector) {
        if pod.meta().deletion_timestamp.is_some() && !publish {
            continue;
        }
        let address = EndpointAddress {
            ip: pod_ip(&pod).map(str::to_string),
            hostname: hostname(&pod, &svc),
            node_name: pod.node_name().map(str::to_string),
            target_ref: Some(pod_ref(&pod)),
        };
        let mut eports: Vec<EndpointPort> = Vec::new();
        for p in &ports {
            if let Some(n) = target_port(p, &pod) {
                eports.push(EndpointPort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: Some(n),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                });
            }
        }
        if !ports.is_empty() && eports.is_empty() {
            continue;
        }
        let sig = eports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port.unwrap_or(0),
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        let subset = subsets.entry(sig).or_insert_with(|| EndpointSubset {
            ports: eports,
            ..Default::default()
        });
        if publish || pods::is_ready(&pod) {
            subset.addresses.push(address);
        } else {
            subset.not_ready_addresses.push(address);
        }
    }
    let subsets: Vec<EndpointSubset> = subsets
        .into_values()
        .map(|mut s| {
            s.addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
            s.not_ready_addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
            s
        })
        .collect();
    let mut labels = service_labels(&svc);
    labels.insert(
        "endpointslice.kubernetes.io/skip-mirror".into(),
        "true".into(),
    );
    match ctx.endpoints.cache().get(&key) {
        Some(current) if current.subsets == subsets && current.meta().labels == labels => {}
        Some(current) => {
            let mut updated = (*current).clone();
            updated.subsets = subsets;
            updated.meta_mut().labels = labels;
            client.update(&key.namespace, &key.name, &updated).await?;
        }
        None => {
            let ep = Endpoints {
                metadata: Some(ObjectMeta {
                    name: Some(key.name.clone()),
                    namespace: Some(key.namespace.clone()),
                    labels,
                    ..Default::default()
                }),
                subsets,
                ..Default::default()
            };
            match client.create(&key.namespace, &ep).await {
                Ok(_) => {}
                // Created meanwhile (cache lag): the event requeues us.
                Err(e) if e.reason == Reason::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Action::await_change())
}

/// The ports of an endpoint as a comparable key: (name, port, protocol).
type PortKey = Vec<(String, i32, String)>;

/// One desired slice: address type, ports, endpoints.
#[derive(Clone, PartialEq)]
struct DesiredSlice {
    address_type: String,
    ports: Vec<discovery::EndpointPort>,
    endpoints: Vec<discovery::Endpoint>,
}

async fn reconcile_slices(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let client = &ctx.shared.client;
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .cache()
        .in_namespace(&key.namespace)
        .into_iter()
        .filter(|s| {
            let l = &s.meta().labels;
            l.get(SERVICE_NAME_LABEL) == Some(&key.name)
                && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        })
        .collect();
    existing.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    let Some(svc) = ctx.services.cache().get(&key) else {
        for s in existing {
            util::delete_object(client, s.as_ref(), "").await?;
        }
        return Ok(Action::await_change());
    };
    let Some(selector) = service_selector(&svc) else {
        return Ok(Action::await_change());
    };
    let ports = svc
        .spec
        .as_ref()
        .map(|s| s.ports.clone())
        .unwrap_or_default();
    let publish = publish_not_ready(&svc);
    let mut groups: BTreeMap<(String, PortKey), DesiredSlice> = BTreeMap::new();
    for pod in selected_pods(&ctx, &svc, &selector) {
        let ip = pod_ip(&pod).unwrap_or_default().to_string();
        let address_type = if ip.contains(':') { "IPv6" } else { "IPv4" }.to_string();
        let mut eports = Vec::new();
        for p in &ports {
            if let Some(n) = target_port(p, &pod) {
                eports.push(discovery::EndpointPort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(n),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                });
            }
        }
        let terminating = pod.meta().deletion_timestamp.is_some();
        let serving = pods::is_ready(&pod) || publish;
        let endpoint = discovery::Endpoint {
            addresses: vec![ip],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(serving && !terminating),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(&pod, &svc),
            node_name: pod.node_name().map(str::to_string),
            target_ref: Some(pod_ref(&pod)),
            ..Default::default()
        };
        let sig = eports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port.unwrap_or(0),
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        groups
            .entry((address_type.clone(), sig))
            .or_insert_with(|| DesiredSlice {
                address_type,
                ports: eports,
                endpoints: Vec::new(),
            })
            .endpoints
            .push(endpoint);
    }
    let mut desired: Vec<DesiredSlice> = Vec::new();
    for g in groups.into_values() {
        for chunk in g.endpoints.chunks(MAX_PER_SLICE) {
            desired.push(DesiredSlice {
                endpoints: chunk.to_vec(),
                ..g.clone()
            });
        }
    }
    if desired.is_empty() {
        // A placeholder slice says "no endpoints" (Kubernetes keeps one per service).
        desired.push(DesiredSlice {
            address_type: "IPv4".into(),
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    let mut labels = service_labels(&svc);
    labels.insert(SERVICE_NAME_LABEL.into(), key.name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut unused: Vec<Arc<EndpointSlice>> = existing;
    for want in desired {
        let reuse = unused
            .iter()
            .position(|s| {
                s.address_type.as_deref() == Some(want.address_type.as_str())
                    && s.ports == want.ports
            })
            .or_else(|| (!unused.is_empty()).then_some(0));
        match reuse.map(|i| unused.remove(i)) {
            Some(slice) => {
                if slice.endpoints == want.endpoints
                    && slice.ports == want.ports
                    && slice.address_type.as_deref() == Some(want.address_type.as_str())
                    && slice.meta().labels == labels
                {
                    continue;
                }
                if slice.address_type.as_deref() != Some(want.address_type.as_str()) {
                    // addressType is immutable: replace the slice.
                    util::delete_object(client, slice.as_ref(), "").await?;
                    create_slice(&ctx, &svc, &labels, want).await?;
                    continue;
                }
                let mut updated = (*slice).clone();
                updated.endpoints = want.endpoints;
                updated.ports = want.ports;
                updated.meta_mut().labels = labels.clone();
                let k = ObjectKey::of(&updated);
                client.update(&k.namespace, &k.name, &updated).await?;
            }
            None => create_slice(&ctx, &svc, &labels, want).await?,
        }
    }
    for s in unused {
        util::delete_object(client, s.as_ref(), "").await?;
    }
    Ok(Action::await_change())
}

async fn create_slice(
    ctx: &Ctx,
    svc: &Service,
    labels: &BTreeMap<String, String>,
    want: DesiredSlice,
) -> Result<(), ApiError> {
    let ns = util::namespace(svc.meta()).to_string();
    let slice = EndpointSlice {
        metadata: Some(ObjectMeta {
            generate_name: Some(format!("{}-", util::name(svc.meta()))),
            namespace: Some(ns.clone()),
            labels: labels.clone(),
            owner_references: vec![controller_ref(svc)],
            ..Default::default()
        }),
        address_type: Some(want.address_type),
        endpoints: want.endpoints,
        ports: want.ports,
        ..Default::default()
    };
    ctx.shared.client.create(&ns, &slice).await?;
    Ok(())
}
