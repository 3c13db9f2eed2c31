//! host-gw routes against the real kernel: two "nodes" as network namespaces this test
//! creates (joined by a veth pair), the second holding a "pod" address; the route applier
//! in the first makes the pod reachable, reconciles after a restart without changes, never
//! touches a route it does not own, and removes its own on cleanup.

use std::process::Command;

use navarch_proxy::routes::{RouteTable, Routes};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("nvrt{tag}-{}-{}", std::process::id(), rand::random::<u16>());
        sh(&["ip", "netns", "add", &name]);
        Self(name)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.0];
        all.extend_from_slice(args);
        sh(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

#[tokio::test]
async fn routes_reach_the_other_nodes_pods_and_are_removed_on_cleanup() {
    if !root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let a = Netns::new("a");
    let b = Netns::new("b");
    let veth = format!("nvrt{}", rand::random::<u16>());
    sh(&[
        "ip", "-n", &a.0, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
        &b.0,
    ]);
    a.ip(&["addr", "add", "192.168.77.1/24", "dev", &veth]);
    a.ip(&["link", "set", &veth, "up"]);
    a.ip(&["link", "set", "lo", "up"]);
    b.ip(&["addr", "add", "192.168.77.2/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "10.244.77.5/32", "dev", "lo"]);
    b.ip(&["link", "set", "eth0", "up"]);
    b.ip(&["link", "set", "lo", "up"]);
    // Someone else's route in the same table, which we must leave alone.
    a.ip(&["route", "add", "10.99.0.0/24", "via", "192.168.77.2"]);

    let want = RouteTable::from([("10.244.77.0/24".into(), "192.168.77.2".parse().unwrap())]);
    let mut routes = Routes::in_netns(&a.0);
    assert_eq!(routes.sync(&want).await.unwrap(), 1);
    let get = a.ip(&["route", "get", "10.244.77.5"]);
    assert!(get.contains("via 192.168.77.2"), "{get}");
    // The pod answers through the route (busybox-static's ping; a raw socket in netns a).
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &a.0, "busybox", "ping", "-c", "1", "-W", "2",
        ])
        .arg("10.244.77.5")
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping through the route: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // A restarted agent finds its routes: nothing to change.
    let mut again = Routes::in_netns(&a.0);
    assert_eq!(again.installed().await.unwrap(), want);
    assert_eq!(again.sync(&want).await.unwrap(), 0);

    // A node moving: replaced in place. A gateway off every connected network is refused
    // without stopping the rest.
    b.ip(&["addr", "add", "192.168.77.3/24", "dev", "eth0"]);
    let moved = RouteTable::from([
        ("10.244.77.0/24".into(), "192.168.77.3".parse().unwrap()),
        ("10.244.78.0/24".into(), "172.31.250.9".parse().unwrap()),
    ]);
    assert!(again.sync(&moved).await.is_err());
    let get = a.ip(&["route", "get", "10.244.77.5"]);
    assert!(get.contains("via 192.168.77.3"), "{get}");

    assert_eq!(again.cleanup().await.unwrap(), 1);
    let left = a.ip(&["route", "show"]);
    assert!(!left.contains("10.244.77."), "{left}");
    assert!(left.contains("10.99.0.0/24"), "not ours, kept: {left}");
}
