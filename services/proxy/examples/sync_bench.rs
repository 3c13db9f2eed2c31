//! Rule sync time for 1,000 services × 10 endpoints with the real `iptables-restore`, in a
//! network namespace it creates and removes: the full first sync, then one endpoint change.
//! Run as root: `cargo run --release -p navarch-proxy --example sync_bench`.

use std::process::Command;
use std::time::Instant;

use navarch_proxy::Iptables;
use navarch_proxy::rules::{self, RulesConfig, ServicePortInfo};

fn ports(changed: bool) -> Vec<ServicePortInfo> {
    (0..1000u32)
        .map(|s| ServicePortInfo {
            name: format!("bench/svc-{s}:http"),
            cluster_ip: std::net::Ipv4Addr::from(0x0a60_0000 + 2 + s),
            protocol: "tcp".into(),
            port: 80,
            node_port: None,
            affinity_seconds: None,
            endpoints: (0..10u32)
                .map(|e| {
                    let last = if changed && s == 0 && e == 9 { 250 } else { e };
                    (
                        std::net::Ipv4Addr::from(0x0af4_0000 + s * 256 + last + 2),
                        8080,
                    )
                })
                .collect(),
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let ns = format!("nvbench-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let cfg = RulesConfig::default();
    let mut ipt = Iptables::new("NAVARCH-").in_netns(&ns);
    let t = Instant::now();
    let full = rules::chains(&cfg, &ports(false));
    let generated = t.elapsed();
    let t = Instant::now();
    let stats = ipt.sync(&full).await.unwrap();
    let full_sync = t.elapsed();
    let t = Instant::now();
    let one = rules::chains(&cfg, &ports(true));
    let stats_one = ipt.sync(&one).await.unwrap();
    let one_sync = t.elapsed();
    println!(
        "1000 services x 10 endpoints: {} chains; generate {:.1} ms; full sync {:.1} ms ({} bytes); one endpoint change (generate + sync) {:.1} ms ({} chains written, {} deleted, {} bytes)",
        full.len(),
        generated.as_secs_f64() * 1e3,
        full_sync.as_secs_f64() * 1e3,
        stats.bytes,
        one_sync.as_secs_f64() * 1e3,
        stats_one.chains_written,
        stats_one.chains_deleted,
        stats_one.bytes
    );
    ipt.cleanup().await.unwrap();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
}
