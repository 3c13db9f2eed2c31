//! Table tests of the zone: Services × EndpointSlices → answers.

use super::*;
use navarch_api::core::v1::{ServicePort, ServiceSpec};
use navarch_api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use navarch_api::meta::v1::ObjectMeta;

fn svc(name: &str, ip: Option<&str>, ty: &str) -> Service {
    Service {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            r#type: Some(ty.into()),
            cluster_ip: ip.map(Into::into),
            external_name: (ty == "ExternalName").then(|| "db.example.org".into()),
            ports: vec![ServicePort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(80),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(svc: &str, eps: &[(&str, Option<&str>, bool)]) -> EndpointSlice {
    EndpointSlice {
        metadata: Some(ObjectMeta {
            name: Some(format!("{svc}-abc")),
            namespace: Some("ns".into()),
            labels: [(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into(),
            ..Default::default()
        }),
        address_type: Some("IPv4".into()),
        endpoints: eps
            .iter()
            .map(|(ip, host, ready)| Endpoint {
                addresses: vec![(*ip).into()],
                hostname: host.map(Into::into),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    serving: Some(*ready),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: vec![EndpointPort {
            name: Some("http".into()),
            protocol: Some("TCP".into()),
            port: Some(8080),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn sample() -> (Vec<Service>, Vec<EndpointSlice>) {
    (
        vec![
            svc("web", Some("10.96.0.10"), "ClusterIP"),
            svc("db", None, "ClusterIP"),
            svc("ext", None, "ExternalName"),
        ],
        vec![
            slice("web", &[("10.244.0.5", None, true)]),
            slice(
                "db",
                &[
                    ("10.244.0.7", Some("db-0"), true),
                    ("10.244.0.8", Some("db-1"), true),
                    ("10.244.0.9", Some("db-2"), false),
                ],
            ),
        ],
    )
}

pub(crate) fn zone() -> Zone {
    let (services, slices) = sample();
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    Zone::build(&ZoneConfig::default(), &s, &e)
}

fn q(z: &Zone, n: &str, t: RecordType) -> Option<Answer> {
    z.answer(&Name::from_str(n).unwrap(), t)
}

fn texts(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.data().to_string()).collect();
    v.sort();
    v
}

#[test]
fn cluster_ip_services_answer_their_cluster_ip() {
    let z = zone();
    assert_eq!(z.services(), 3);
    let a = q(&z, "web.ns.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(a.code, ResponseCode::NoError);
    assert_eq!(texts(&a.answers), ["10.96.0.10"]);
    assert_eq!(a.answers[0].ttl(), 5);
    // Case does not matter, and the name need not be fully qualified.
    let a = q(&z, "WEB.ns.svc.Cluster.Local", RecordType::A).unwrap();
    assert_eq!(texts(&a.answers), ["10.96.0.10"]);
}

#[test]
fn missing_types_are_nodata_and_missing_names_nxdomain() {
    let z = zone();
    let a = q(&z, "web.ns.svc.cluster.local.", RecordType::AAAA).unwrap();
    assert_eq!(a.code, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority.len(), 1, "the SOA for negative caching");
    for existing in [
        "ns.svc.cluster.local.",
        "svc.cluster.local.",
        "cluster.local.",
    ] {
        let a = q(&z, existing, RecordType::A).unwrap();
        assert_eq!(a.code, ResponseCode::NoError, "{existing}");
    }
    for missing in [
        "nope.ns.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "web.ns.cluster.local.",
        "x.web.ns.svc.cluster.local.",
    ] {
        let a = q(&z, missing, RecordType::A).unwrap();
        assert_eq!(a.code, ResponseCode::NXDomain, "{missing}");
        assert_eq!(a.authority.len(), 1);
    }
}

#[test]
fn headless_services_answer_ready_endpoints_and_pod_hostnames() {
    let z = zone();
    let a = q(&z, "db.ns.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(texts(&a.answers), ["10.244.0.7", "10.244.0.8"]);
    let a = q(&z, "db-1.db.ns.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(texts(&a.answers), ["10.244.0.8"]);
    // Not ready: not published.
    let a = q(&z, "db-2.db.ns.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(a.code, ResponseCode::NXDomain);
}

#[test]
fn srv_records_name_ports_and_carry_addresses() {
    let z = zone();
    let a = q(&z, "_http._tcp.web.ns.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(texts(&a.answers), ["0 100 80 web.ns.svc.cluster.local."]);
    assert_eq!(texts(&a.additionals), ["10.96.0.10"]);
    let a = q(&z, "_http._tcp.db.ns.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(
        texts(&a.answers),
        [
            "0 100 8080 db-0.db.ns.svc.cluster.local.",
            "0 100 8080 db-1.db.ns.svc.cluster.local."
        ]
    );
    assert_eq!(texts(&a.additionals), ["10.244.0.7", "10.244.0.8"]);
    // SRV on the service name lists every port.
    let a = q(&z, "web.ns.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(a.answers.len(), 1);
    let a = q(&z, "_grpc._tcp.web.ns.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(a.code, ResponseCode::NXDomain);
}

#[test]
fn external_names_are_cnames() {
    let z = zone();
    for t in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let a = q(&z, "ext.ns.svc.cluster.local.", t).unwrap();
        assert_eq!(texts(&a.answers), ["db.example.org."]);
    }
}

#[test]
fn pod_names_and_reverse_lookups() {
    let z = zone();
    let a = q(&z, "10-244-0-5.ns.pod.cluster.local.", RecordType::A).unwrap();
    assert_eq!(texts(&a.answers), ["10.244.0.5"]);
    let a = q(&z, "not-an-ip.ns.pod.cluster.local.", RecordType::A).unwrap();
    assert_eq!(a.code, ResponseCode::NXDomain);
    let a = q(&z, "10.0.96.10.in-addr.arpa.", RecordType::PTR).unwrap();
    assert_eq!(texts(&a.answers), ["web.ns.svc.cluster.local."]);
    let a = q(&z, "7.0.244.10.in-addr.arpa.", RecordType::PTR).unwrap();
    assert_eq!(texts(&a.answers), ["db-0.db.ns.svc.cluster.local."]);
}

#[test]
fn names_outside_the_zone_are_not_ours() {
    let z = zone();
    assert!(q(&z, "example.org.", RecordType::A).is_none());
    assert!(q(&z, "cluster.local.example.org.", RecordType::A).is_none());
    assert!(q(&z, "1.1.1.1.in-addr.arpa.", RecordType::PTR).is_none());
}

#[test]
fn another_cluster_domain() {
    let services = [svc("web", Some("10.96.0.10"), "ClusterIP")];
    let s: Vec<&Service> = services.iter().collect();
    let cfg = ZoneConfig {
        domain: "corp.internal".into(),
        ttl: 30,
    };
    let z = Zone::build(&cfg, &s, &[]);
    let a = q(&z, "web.ns.svc.corp.internal.", RecordType::A).unwrap();
    assert_eq!(texts(&a.answers), ["10.96.0.10"]);
    assert_eq!(a.answers[0].ttl(), 30);
    assert!(q(&z, "web.ns.svc.cluster.local.", RecordType::A).is_none());
}
