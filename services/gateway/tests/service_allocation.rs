//! Service ClusterIP and NodePort allocation through the registry: concurrent creates (also
//! from two gateways on one store), restarts, requested addresses, release on delete.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use navarch_api::core::v1::{Service, ServicePort, ServiceSpec};
use navarch_api::kinds::{self, KindInfo};
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, Object, Reason};
use navarch_gateway::Registry;
use navarch_gateway::allocator::{IP_PREFIX, NODE_PORT_PREFIX, ServiceNetwork};
use navarch_gateway::registry::{DeleteOptions, WriteOptions};
use navarch_gateway::watch_cache::WatchCache;
use navarch_store::{ListRequest, Store};

fn kind() -> &'static KindInfo {
    kinds::of::<Service>().unwrap()
}

async fn registry(store: Arc<dyn Store>, network: ServiceNetwork) -> Arc<Registry> {
    let cache = WatchCache::start(store.clone(), 10_000).await.unwrap();
    let r = Arc::new(Registry::with_service_network(store, cache, network));
    r.ensure_system_namespaces().await.unwrap();
    r.repair_service_allocations().await.unwrap();
    r
}

fn service(name: &str, ty: &str, cluster_ip: Option<&str>, node_port: Option<i32>) -> Object {
    Object::from_typed(&Service {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            r#type: Some(ty.into()),
            cluster_ip: cluster_ip.map(Into::into),
            selector: [("app".to_string(), name.to_string())].into(),
            ports: vec![ServicePort {
                port: Some(80),
                node_port,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap()
}

fn spec(obj: &Object) -> ServiceSpec {
    obj.to_typed::<Service>().unwrap().spec.unwrap()
}

async fn create(r: &Registry, obj: Object) -> Result<ServiceSpec, ApiError> {
    r.create(kind(), "default", obj, &WriteOptions::default())
        .await
        .map(|o| spec(&o))
}

async fn keys(store: &Arc<dyn Store>, prefix: &str) -> usize {
    store
        .list(ListRequest {
            prefix: prefix.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .kvs
        .len()
}

async fn open(dir: &Path) -> Arc<dyn Store> {
    // After a stop, the old store closes once its last background task has ended.
    for _ in 0..100 {
        match navarch_store::open_embedded(dir.join("store")) {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    panic!("store did not close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_on_two_gateways_get_distinct_addresses_that_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // A /23 (509 usable dynamic addresses) and 400 node ports: 300 NodePort services crowd
    // both ranges, so races and the crowded-range scan both happen.
    let net = ServiceNetwork::new("10.100.0.0/23", "31000-31399").unwrap();
    let a = registry(store.clone(), net.clone()).await;
    let b = registry(store.clone(), net.clone()).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            create(&r, service(&format!("svc-{i}"), "NodePort", None, None))
                .await
                .unwrap()
        }));
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for t in tasks {
        let s = t.await.unwrap();
        let ip: std::net::Ipv4Addr = s.cluster_ip.clone().unwrap().parse().unwrap();
        assert!(net.contains(ip), "{ip} outside {}", net.cidr());
        assert_ne!(
            ip,
            net.kubernetes_ip(),
            ".1 is reserved for the kubernetes Service"
        );
        assert_eq!(s.cluster_i_ps, vec![ip.to_string()]);
        assert!(ips.insert(ip), "{ip} handed out twice");
        let port = s.ports[0].node_port.unwrap();
        assert!(net.contains_port(port));
        assert!(ports.insert(port), "node port {port} handed out twice");
    }
    assert_eq!(keys(&store, IP_PREFIX).await, 300);
    assert_eq!(keys(&store, NODE_PORT_PREFIX).await, 300);
    a.cache().stop();
    b.cache().stop();
    drop((a, b, store));

    // Restart on the same data: the allocations are still held.
    let store = open(dir.path()).await;
    let r = registry(store.clone(), net.clone()).await;
    let taken = r
        .get(kind(), "default", "svc-0")
        .await
        .map(|o| spec(&o).cluster_ip.unwrap())
        .unwrap();
    let err = create(&r, service("dup", "ClusterIP", Some(&taken), None))
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::Invalid);
    assert_eq!(err.causes[0].field, "spec.clusterIPs");
    assert!(
        err.message.contains("provided IP is already allocated"),
        "{}",
        err.message
    );
    for i in 300..400 {
        let s = create(&r, service(&format!("svc-{i}"), "ClusterIP", None, None))
            .await
            .unwrap();
        let ip = s.cluster_ip.unwrap().parse().unwrap();
        assert!(ips.insert(ip), "{ip} handed out again after restart");
    }
    r.cache().stop();
}

#[tokio::test]
async fn requested_addresses_headless_and_release_on_delete() {
    let store = navarch_store::open_memory();
    let r = registry(store.clone(), ServiceNetwork::default()).await;

    // A requested address inside the range is honoured.
    let s = create(
        &r,
        service("web", "NodePort", Some("10.96.0.10"), Some(30080)),
    )
    .await
    .unwrap();
    assert_eq!(s.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(s.ports[0].node_port, Some(30080));

    // Taken, or outside the ranges: 422 Invalid naming the field.
    let err = create(&r, service("web2", "ClusterIP", Some("10.96.0.10"), None))
        .await
        .unwrap_err();
    assert_eq!(
        (err.reason, err.code(), err.causes[0].field.as_str()),
        (Reason::Invalid, 422, "spec.clusterIPs")
    );
    let err = create(&r, service("web2", "ClusterIP", Some("192.168.1.1"), None))
        .await
        .unwrap_err();
    assert_eq!(err.causes[0].field, "spec.clusterIPs");
    assert!(
        err.message.contains("not in the valid range"),
        "{}",
        err.message
    );
    let err = create(&r, service("web2", "NodePort", None, Some(30080)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.causes[0].field.as_str()),
        (422, "spec.ports[0].nodePort")
    );
    assert!(err.message.contains("already allocated"), "{}", err.message);
    let err = create(&r, service("web2", "NodePort", None, Some(8080)))
        .await
        .unwrap_err();
    assert_eq!(err.causes[0].field, "spec.ports[0].nodePort");
    assert!(err.message.contains("30000-32767"), "{}", err.message);
    // The failed creates wrote nothing.
    assert!(r.get(kind(), "default", "web2").await.is_err());
    assert_eq!(keys(&store, IP_PREFIX).await, 1);

    // Headless: no address; ClusterIP type: no node port.
    let s = create(&r, service("db", "ClusterIP", Some("None"), None))
        .await
        .unwrap();
    assert_eq!(s.cluster_i_ps, vec!["None".to_string()]);
    let s = create(&r, service("plain", "ClusterIP", None, None))
        .await
        .unwrap();
    assert_eq!(s.ports[0].node_port, None);
    assert_eq!(keys(&store, IP_PREFIX).await, 2);
    assert_eq!(keys(&store, NODE_PORT_PREFIX).await, 1);

    // An update that switches to NodePort gets a node port; back to ClusterIP releases it.
    let mut current = r.get(kind(), "default", "plain").await.unwrap();
    let mut typed: Service = current.to_typed().unwrap();
    typed.spec.as_mut().unwrap().r#type = Some("NodePort".into());
    current = Object::from_typed(&typed).unwrap();
    let updated = r
        .update(
            kind(),
            "default",
            "plain",
            current,
            &WriteOptions::default(),
            false,
        )
        .await
        .unwrap();
    let np = spec(&updated).ports[0].node_port.unwrap();
    assert!(ServiceNetwork::default().contains_port(np));
    assert_eq!(keys(&store, NODE_PORT_PREFIX).await, 2);
    let mut typed: Service = updated.to_typed().unwrap();
    let sp = typed.spec.as_mut().unwrap();
    sp.r#type = Some("ClusterIP".into());
    sp.ports[0].node_port = None;
    sp.external_traffic_policy = None;
    let back = r
        .update(
            kind(),
            "default",
            "plain",
            Object::from_typed(&typed).unwrap(),
            &WriteOptions::default(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(spec(&back).ports[0].node_port, None);
    assert_eq!(keys(&store, NODE_PORT_PREFIX).await, 1);

    // Delete releases: the same address and port can be taken again.
    r.delete(kind(), "default", "web", &DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(keys(&store, NODE_PORT_PREFIX).await, 0);
    let s = create(
        &r,
        service("web2", "NodePort", Some("10.96.0.10"), Some(30080)),
    )
    .await
    .unwrap();
    assert_eq!(s.cluster_ip.as_deref(), Some("10.96.0.10"));
    r.cache().stop();
}

#[test]
fn service_network_flags() {
    let n = ServiceNetwork::new("10.96.0.0/12", "30000-32767").unwrap();
    assert_eq!(n.kubernetes_ip().to_string(), "10.96.0.1");
    assert!(n.contains("10.111.255.254".parse().unwrap()));
    assert!(!n.contains("10.111.255.255".parse().unwrap()));
    assert!(!n.contains("10.96.0.0".parse().unwrap()));
    assert!(!n.contains("10.112.0.1".parse().unwrap()));
    assert_eq!(
        ServiceNetwork::new("10.96.1.7/24", "1-2").unwrap().cidr(),
        "10.96.1.0/24"
    );
    for bad in [
        ("10.96.0.0", "30000-32767"),
        ("fd00::/108", "30000-32767"),
        ("10.0.0.0/31", "1-2"),
    ] {
        assert!(ServiceNetwork::new(bad.0, bad.1).is_err(), "{bad:?}");
    }
    assert!(ServiceNetwork::new("10.96.0.0/12", "32767-30000").is_err());
    assert!(ServiceNetwork::new("10.96.0.0/12", "x").is_err());
}

#[tokio::test]
async fn the_kubernetes_service_points_at_the_advertised_address() {
    use navarch_api::core::v1::Endpoints;
    use navarch_api::discovery::v1::EndpointSlice;
    use navarch_gateway::kubernetes_service::reconcile;
    let store = navarch_store::open_memory();
    let net = ServiceNetwork::new("10.43.0.0/16", "30000-32767").unwrap();
    let r = registry(store.clone(), net).await;
    // Only data: no traffic goes to this documentation address.
    let addr: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    reconcile(&r, addr, 6443).await.unwrap();
    let svc = r.get(kind(), "default", "kubernetes").await.unwrap();
    let s = spec(&svc);
    assert_eq!(s.cluster_ip.as_deref(), Some("10.43.0.1"));
    assert_eq!(
        (s.ports[0].port, s.ports[0].name.as_deref()),
        (Some(443), Some("https"))
    );
    let ep: Endpoints = r
        .get(kinds::of::<Endpoints>().unwrap(), "default", "kubernetes")
        .await
        .unwrap()
        .to_typed()
        .unwrap();
    assert_eq!(ep.subsets[0].addresses[0].ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(ep.subsets[0].ports[0].port, Some(6443));
    let slice = r
        .get(
            kinds::of::<EndpointSlice>().unwrap(),
            "default",
            "kubernetes",
        )
        .await
        .unwrap();
    let typed: EndpointSlice = slice.to_typed().unwrap();
    assert_eq!(typed.endpoints[0].addresses, vec!["192.0.2.10".to_string()]);
    assert_eq!(typed.ports[0].port, Some(6443));

    // Idempotent: a second round writes nothing.
    let before = (
        svc.resource_version().unwrap(),
        slice.resource_version().unwrap(),
    );
    reconcile(&r, addr, 6443).await.unwrap();
    let svc = r.get(kind(), "default", "kubernetes").await.unwrap();
    let slice = r
        .get(
            kinds::of::<EndpointSlice>().unwrap(),
            "default",
            "kubernetes",
        )
        .await
        .unwrap();
    assert_eq!(
        before,
        (
            svc.resource_version().unwrap(),
            slice.resource_version().unwrap()
        )
    );
    // Deleted: put back.
    r.delete(kind(), "default", "kubernetes", &DeleteOptions::default())
        .await
        .unwrap();
    reconcile(&r, addr, 6443).await.unwrap();
    assert_eq!(
        spec(&r.get(kind(), "default", "kubernetes").await.unwrap())
            .cluster_ip
            .as_deref(),
        Some("10.43.0.1")
    );
    r.cache().stop();
}
