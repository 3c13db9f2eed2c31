//! The server over real sockets on loopback: the zone over UDP and TCP, truncation, and a
//! fake upstream resolver on 127.0.0.1 for everything else (nothing leaves the machine).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdp};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use navarch_api::core::v1::{Service, ServicePort, ServiceSpec};
use navarch_api::discovery::v1::{Endpoint, EndpointSlice};
use navarch_api::meta::v1::ObjectMeta;
use navarch_dns::client::query;
use navarch_dns::{DnsConfig, DnsServer, SharedZone, Zone, ZoneConfig};

fn free_port() -> u16 {
    StdUdp::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A resolver that answers every A question with 192.0.2.1 and counts them.
fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = StdUdp::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .add_queries(q.queries().iter().cloned());
            r.add_answer(Record::from_rdata(
                q.queries()[0].name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    (addr, count)
}

fn zone(services: usize) -> Zone {
    let svcs: Vec<Service> = (0..services)
        .map(|i| Service {
            metadata: Some(ObjectMeta {
                name: Some(format!("svc-{i}")),
                namespace: Some("ns".into()),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: Some(if i == 0 {
                    "None".into()
                } else {
                    format!("10.96.{}.{}", i / 250, i % 250 + 1)
                }),
                ports: vec![ServicePort {
                    name: Some("http".into()),
                    port: Some(80),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    // svc-0 is headless with 200 endpoints: too big for a 512-byte UDP answer.
    let slice = EndpointSlice {
        metadata: Some(ObjectMeta {
            name: Some("svc-0-x".into()),
            namespace: Some("ns".into()),
            labels: [(
                navarch_dns::zone::SERVICE_NAME_LABEL.to_string(),
                "svc-0".to_string(),
            )]
            .into(),
            ..Default::default()
        }),
        endpoints: (0..200)
            .map(|i| Endpoint {
                addresses: vec![format!("10.244.1.{i}")],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let s: Vec<&Service> = svcs.iter().collect();
    Zone::build(&ZoneConfig::default(), &s, &[&slice])
}

#[tokio::test]
async fn answers_the_zone_and_forwards_the_rest() {
    let (upstream, forwarded) = fake_upstream();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = DnsServer::serve(
        SharedZone::new(zone(10)),
        DnsConfig {
            listen: vec![listen],
            upstreams: vec![upstream],
            ..Default::default()
        },
    )
    .await
    .unwrap();

    for tcp in [false, true] {
        let m = query(listen, "svc-3.ns.svc.cluster.local.", RecordType::A, tcp)
            .await
            .unwrap();
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.authoritative());
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.answers()[0].data().to_string(), "10.96.0.4");

        let m = query(listen, "nope.ns.svc.cluster.local.", RecordType::A, tcp)
            .await
            .unwrap();
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(m.name_servers().len(), 1, "SOA");
    }
    assert_eq!(
        forwarded.load(Ordering::SeqCst),
        0,
        "zone names never go upstream"
    );

    // Outside the zone: relayed to the upstream, whose answer comes back unchanged.
    let m = query(listen, "www.example.org.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers()[0].data().to_string(), "192.0.2.1");
    assert_eq!(forwarded.load(Ordering::SeqCst), 1);

    // 200 addresses do not fit a plain UDP answer: truncated, complete over TCP.
    let m = query(listen, "svc-0.ns.svc.cluster.local.", RecordType::A, false)
        .await
        .unwrap();
    assert!(m.truncated());
    assert!(m.answers().is_empty());
    let m = query(listen, "svc-0.ns.svc.cluster.local.", RecordType::A, true)
        .await
        .unwrap();
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 200);

    // The zone is swapped whole.
    server.zone().set(zone(2));
    let m = query(listen, "svc-3.ns.svc.cluster.local.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    server.shutdown().await;
}

#[tokio::test]
async fn no_upstream_answers_servfail() {
    // An upstream that never answers (bound, silent).
    let silent = StdUdp::bind("127.0.0.1:0").unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = DnsServer::serve(
        SharedZone::new(zone(1)),
        DnsConfig {
            listen: vec![listen],
            upstreams: vec![silent.local_addr().unwrap()],
            forward_timeout: std::time::Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m = query(listen, "www.example.org.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    server.shutdown().await;
}

#[tokio::test]
async fn listens_on_an_address_that_does_not_exist_yet() {
    // 10.255.254.1 is on no interface: IP_FREEBIND lets the server bind it now and answer
    // once the pod bridge brings the address up.
    let addr: SocketAddr = "10.255.254.1:5353".parse().unwrap();
    let server = DnsServer::serve(
        SharedZone::new(zone(1)),
        DnsConfig {
            listen: vec![addr],
            ..Default::default()
        },
    )
    .await
    .expect("freebind");
    server.shutdown().await;
}
