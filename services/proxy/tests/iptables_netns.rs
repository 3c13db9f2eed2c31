//! The applier against the real `iptables-restore`, inside a network namespace this test
//! creates and removes: apply, no-op resync, one-endpoint delta, restart without duplicate
//! jumps, clean removal.

use std::process::Command;

use navarch_proxy::Iptables;
use navarch_proxy::rules::{self, Chains, RulesConfig, ServicePortInfo};

struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("nvproxy-{}-{}", std::process::id(), rand::random::<u16>());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        Self(name)
    }

    fn save(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "iptables-save"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn chains(endpoints: &[&str]) -> Chains {
    let port = ServicePortInfo {
        name: "ns/web:http".into(),
        cluster_ip: "10.96.0.10".parse().unwrap(),
        protocol: "tcp".into(),
        port: 80,
        node_port: Some(30080),
        affinity_seconds: None,
        endpoints: endpoints
            .iter()
            .map(|e| (e.parse().unwrap(), 8080))
            .collect(),
    };
    let cfg = RulesConfig {
        service_cidr: Some("10.96.0.0/12".into()),
        ..RulesConfig::default()
    };
    rules::chains(&cfg, &[port])
}

#[tokio::test]
async fn applies_deltas_restarts_without_duplicates_and_cleans_up() {
    let ns = Netns::new();
    let mut ipt = Iptables::new("NAVARCH-").in_netns(&ns.0);
    let a = chains(&["10.244.1.2", "10.244.1.3"]);
    let first = ipt.sync(&a).await.unwrap();
    assert_eq!(first.chains_written, a.len());
    let saved = ns.save();
    assert!(
        saved.contains("--to-destination 10.244.1.3:8080"),
        "{saved}"
    );
    assert_eq!(saved.matches("-j NAVARCH-SERVICES").count(), 4, "{saved}");
    // No change: nothing run.
    assert_eq!(ipt.sync(&a).await.unwrap().bytes, 0);
    // One endpoint changed: SVC rewritten, one SEP added, one deleted.
    let b = chains(&["10.244.1.2", "10.244.1.4"]);
    let delta = ipt.sync(&b).await.unwrap();
    assert_eq!((delta.chains_written, delta.chains_deleted), (2, 1));
    let saved = ns.save();
    assert!(saved.contains("10.244.1.4:8080") && !saved.contains("10.244.1.3:8080"));

    // A restarted proxy rebuilds without duplicating the jumps.
    let mut again = Iptables::new("NAVARCH-").in_netns(&ns.0);
    again.sync(&b).await.unwrap();
    let saved = ns.save();
    assert_eq!(saved.matches("-j NAVARCH-SERVICES").count(), 4, "{saved}");
    assert_eq!(
        saved.matches("-j NAVARCH-POSTROUTING").count(),
        1,
        "{saved}"
    );

    again.cleanup().await.unwrap();
    let saved = ns.save();
    assert!(!saved.contains("NAVARCH-"), "{saved}");
}
