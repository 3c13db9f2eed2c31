//! Cluster DNS load test: a zone of 1,000 services, the real UDP server on loopback, and
//! concurrent stub clients asking for random service names. Prints queries/s and latency.
//!
//! `cargo run --release -p navarch-dns --example dns_bench [-- SECONDS CLIENTS]`

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use navarch_api::core::v1::{Service, ServicePort, ServiceSpec};
use navarch_api::meta::v1::ObjectMeta;
use navarch_dns::client::query_message;
use navarch_dns::{DnsConfig, DnsServer, SharedZone, Zone, ZoneConfig};
use tokio::net::UdpSocket;

const SERVICES: usize = 1000;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let svcs: Vec<Service> = (0..SERVICES)
        .map(|i| Service {
            metadata: Some(ObjectMeta {
                name: Some(format!("svc-{i}")),
                namespace: Some(format!("ns-{}", i % 20)),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: Some(format!("10.96.{}.{}", i / 250, i % 250 + 1)),
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
    let refs: Vec<&Service> = svcs.iter().collect();
    let started = Instant::now();
    let zone = Zone::build(&ZoneConfig::default(), &refs, &[]);
    let build = started.elapsed();
    let port = StdUdp::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(std::io::Error::other)?;
    let server = DnsServer::serve(
        SharedZone::new(zone),
        DnsConfig {
            listen: vec![listen],
            ..Default::default()
        },
    )
    .await
    .map_err(std::io::Error::other)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let s = UdpSocket::bind("127.0.0.1:0").await?;
            s.connect(listen).await?;
            let mut latencies = Vec::new();
            let mut buf = vec![0u8; 4096];
            let mut i = c;
            while Instant::now() < deadline {
                i = (i * 7919 + 13) % SERVICES;
                let name = format!("svc-{i}.ns-{}.svc.cluster.local.", i % 20);
                let msg = query_message(i as u16, &name, RecordType::A)?;
                let t = Instant::now();
                s.send(&msg).await?;
                match tokio::time::timeout(Duration::from_secs(1), s.recv(&mut buf)).await {
                    Ok(Ok(_)) => latencies.push(t.elapsed()),
                    _ => latencies.push(Duration::from_secs(1)),
                }
            }
            Ok::<_, std::io::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(std::io::Error::other)??);
    }
    server.shutdown().await;
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "zone build ({SERVICES} services): {:.2} ms",
        build.as_secs_f64() * 1000.0
    );
    println!(
        "{} queries in {seconds} s from {clients} clients: {:.0} queries/s, p50 {:?}, p99 {:?}, max {:?}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.99),
        all[all.len() - 1]
    );
    Ok(())
}
