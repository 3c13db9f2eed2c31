//! The `kubernetes` Service in `default`: how pods find the API.
//!
//! Like kube-apiserver's "kubernetes service" controller and its endpoint reconciler, every
//! API server keeps, every [`RECONCILE_INTERVAL`]:
//! - the Service `default/kubernetes` (ClusterIP: the service CIDR's first address, port
//!   443 named `https` → the API's port, no selector),
//! - its Endpoints and EndpointSlice `default/kubernetes` listing this server's advertised
//!   address (`--advertise-address`) and port. With several servers, each adds its own
//!   address and keeps the others'.
//!
//! The objects have no selector, so the endpoints controller leaves them alone.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use navarch_api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use navarch_api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::meta::v1::{IntOrString, int_or_string};
use navarch_api::{ApiError, Object, Reason, kinds};

use crate::Registry;
use crate::registry::WriteOptions;

/// How often the objects are put back if someone changed or deleted them.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
const PORT_NAME: &str = "https";

fn meta(labels: BTreeMap<String, String>) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(NAMESPACE.into()),
        labels,
        ..Default::default()
    })
}

fn desired_service(registry: &Registry, port: u16) -> Service {
    let ip = registry
        .service_allocator()
        .network()
        .kubernetes_ip()
        .to_string();
    Service {
        metadata: meta(
            [
                ("component".to_string(), "apiserver".to_string()),
                ("provider".to_string(), "kubernetes".to_string()),
            ]
            .into(),
        ),
        spec: Some(ServiceSpec {
            r#type: Some("ClusterIP".into()),
            cluster_ip: Some(ip.clone()),
            cluster_i_ps: vec![ip],
            session_affinity: Some("None".into()),
            ports: vec![ServicePort {
                name: Some(PORT_NAME.into()),
                protocol: Some("TCP".into()),
                port: Some(443),
                target_port: Some(IntOrString {
                    value: Some(int_or_string::Value::IntVal(i32::from(port))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn get<T: prost::Message + prost::Name + Default>(
    registry: &Registry,
) -> Result<Option<T>, ApiError> {
    let kind = kinds::of::<T>().ok_or_else(|| ApiError::internal("kind not served"))?;
    match registry.get(kind, NAMESPACE, NAME).await {
        Ok(o) => Ok(Some(o.to_typed()?)),
        Err(e) if e.reason == Reason::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn put<T: prost::Message + prost::Name + Default>(
    registry: &Registry,
    value: &T,
    exists: bool,
) -> Result<(), ApiError> {
    let kind = kinds::of::<T>().ok_or_else(|| ApiError::internal("kind not served"))?;
    let obj = Object::from_typed(value)?;
    let opts = WriteOptions {
        field_manager: "kube-apiserver".into(),
        ..Default::default()
    };
    let result = if exists {
        registry
            .update(kind, NAMESPACE, NAME, obj, &opts, false)
            .await
    } else {
        registry.create(kind, NAMESPACE, obj, &opts).await
    };
    match result {
        Ok(_) => Ok(()),
        // Another server got there first; the next round looks again.
        Err(e) if matches!(e.reason, Reason::AlreadyExists | Reason::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Puts the Service, Endpoints and EndpointSlice in place for a server reachable at
/// `advertise:port` (the Service only, when `advertise` is loopback or unspecified).
pub async fn reconcile(registry: &Registry, advertise: IpAddr, port: u16) -> Result<(), ApiError> {
    let want = desired_service(registry, port);
    match get::<Service>(registry).await? {
        None => put(registry, &want, false).await?,
        Some(mut svc) => {
            let spec = svc.spec.get_or_insert_with(Default::default);
            let want_ports = want
                .spec
                .as_ref()
                .map(|s| s.ports.clone())
                .unwrap_or_default();
            if spec.ports != want_ports || !spec.selector.is_empty() {
                spec.ports = want_ports;
                spec.selector.clear();
                put(registry, &svc, true).await?;
            }
        }
    }

    if advertise.is_loopback() || advertise.is_unspecified() {
        // Endpoints may not point at loopback (pods could not reach it anyway).
        return Ok(());
    }
    let ip = advertise.to_string();
    let ep_port = EndpointPort {
        name: Some(PORT_NAME.into()),
        port: Some(i32::from(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let current = get::<Endpoints>(registry).await?;
    let mut addresses: Vec<EndpointAddress> = current
        .as_ref()
        .and_then(|e| e.subsets.first())
        .filter(|s| s.ports == [ep_port.clone()])
        .map(|s| s.addresses.clone())
        .unwrap_or_default();
    if !addresses
        .iter()
        .any(|a| a.ip.as_deref() == Some(ip.as_str()))
    {
        addresses.push(EndpointAddress {
            ip: Some(ip.clone()),
            ..Default::default()
        });
        addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
    }
    let want_subsets = vec![EndpointSubset {
        addresses: addresses.clone(),
        ports: vec![ep_port],
        ..Default::default()
    }];
    if current.as_ref().map(|e| &e.subsets) != Some(&want_subsets) {
        let mut ep = current.clone().unwrap_or_else(|| Endpoints {
            metadata: meta(BTreeMap::new()),
            ..Default::default()
        });
        ep.subsets = want_subsets;
        put(registry, &ep, current.is_some()).await?;
    }

    let family = if advertise.is_ipv4() { "IPv4" } else { "IPv6" };
    let want_endpoints: Vec<Endpoint> = addresses
        .iter()
        .map(|a| Endpoint {
            addresses: vec![a.ip.clone().unwrap_or_default()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Default::default()
        })
        .collect();
    let want_ports = vec![SlicePort {
        name: Some(PORT_NAME.into()),
        port: Some(i32::from(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    let current = get::<EndpointSlice>(registry).await?;
    let same = current.as_ref().is_some_and(|s| {
        s.endpoints == want_endpoints
            && s.ports == want_ports
            && s.address_type.as_deref() == Some(family)
    });
    if !same {
        let mut slice = current.clone().unwrap_or_else(|| EndpointSlice {
            metadata: meta([("kubernetes.io/service-name".to_string(), NAME.to_string())].into()),
            ..Default::default()
        });
        slice.address_type = Some(family.into());
        slice.endpoints = want_endpoints;
        slice.ports = want_ports;
        put(registry, &slice, current.is_some()).await?;
    }
    Ok(())
}

/// Reconciles now and then every [`RECONCILE_INTERVAL`], until the task is aborted.
pub fn spawn(registry: Arc<Registry>, advertise: IpAddr, port: u16) -> tokio::task::JoinHandle<()> {
    if advertise.is_loopback() || advertise.is_unspecified() {
        tracing::warn!(
            %advertise,
            "the advertised API address is not reachable from pods; the kubernetes service \
             gets no endpoints (set --advertise-address and listen on it)"
        );
    }
    tokio::spawn(async move {
        loop {
            if let Err(e) = reconcile(&registry, advertise, port).await {
                tracing::warn!(error = %e, %advertise, port, "reconciling the kubernetes service");
            }
            tokio::time::sleep(RECONCILE_INTERVAL).await;
        }
    })
}
