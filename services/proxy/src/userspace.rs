//! The userspace proxy, for nodes that cannot program iptables (the `process` runtime, no
//! root). Every ClusterIP has a stand-in on the loopback network: `127.0.0.0/8` is local on
//! Linux and any process may bind any address in it, so the Service `10.96.0.10` of the
//! service CIDR `10.96.0.0/12` is served on `127.64.0.10` ([`loopback_address`]), and the
//! node's pods are told that address (service environment variables). On it the proxy
//! listens on each TCP service port and relays every connection to a ready endpoint:
//! random among them, or the client's previous one under `sessionAffinity: ClientIP`;
//! another endpoint is tried when one does not accept. A port without endpoints has no
//! listener, so a client is refused at once, as the iptables mode's reject rule does.
//!
//! Differences from the iptables mode: TCP only (UDP and SCTP ports are skipped with a
//! log line), no NodePorts, and ports below 1024 need `CAP_NET_BIND_SERVICE`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use navarch_api::core::v1::Service;
use navarch_api::discovery::v1::EndpointSlice;
use navarch_gateway::Client;
use navarch_runtime::{Informer, Scope};
use rand::seq::SliceRandom;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::rules::{self, ServicePortInfo};

/// Where the loopback stand-ins live: `127.64.0.0/10`, clear of `127.0.0.1` and of the
/// addresses tests and local tools usually pick.
pub const LOOPBACK_BASE: Ipv4Addr = Ipv4Addr::new(127, 64, 0, 0);
const LOOPBACK_BITS: u32 = 22;

/// The loopback stand-in of `cluster_ip` in `service_cidr` (`a.b.c.d/len`): the same offset
/// from [`LOOPBACK_BASE`]. `None` outside the CIDR or beyond the room (a CIDR wider than
/// `/10`).
pub fn loopback_address(service_cidr: &str, cluster_ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let (base, len) = service_cidr.split_once('/')?;
    let base: Ipv4Addr = base.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    let ip = u32::from(cluster_ip);
    if ip & mask != u32::from(base) & mask {
        return None;
    }
    let offset = ip & !mask;
    (offset < 1 << LOOPBACK_BITS).then(|| Ipv4Addr::from(u32::from(LOOPBACK_BASE) + offset))
}

/// What one listener relays to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backends {
    /// `namespace/name:port-name`.
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    /// ClientIP affinity: how long a client keeps its endpoint.
    pub affinity: Option<Duration>,
}

/// The listeners a userspace proxy keeps for `ports`: one per TCP service port with at
/// least one endpoint, on the ClusterIP's loopback stand-in.
pub fn listeners(
    service_cidr: &str,
    ports: &[ServicePortInfo],
) -> BTreeMap<SocketAddrV4, Backends> {
    let mut out = BTreeMap::new();
    for p in ports {
        if p.protocol != "tcp" || p.endpoints.is_empty() {
            continue;
        }
        let Some(ip) = loopback_address(service_cidr, p.cluster_ip) else {
            continue;
        };
        out.insert(
            SocketAddrV4::new(ip, p.port),
            Backends {
                name: p.name.clone(),
                endpoints: p
                    .endpoints
                    .iter()
                    .map(|(ip, port)| SocketAddr::from((*ip, *port)))
                    .collect(),
                affinity: p
                    .affinity_seconds
                    .map(|s| Duration::from_secs(s.max(1) as u64)),
            },
        );
    }
    out
}

/// How the userspace proxy runs.
#[derive(Clone, Debug)]
pub struct UserspaceConfig {
    /// The cluster's service CIDR (the server's `--service-cidr`).
    pub service_cidr: String,
    /// How long a change waits for more changes before a sync.
    pub min_sync_period: Duration,
    /// How long one endpoint gets to accept a connection before the next is tried.
    pub connect_timeout: Duration,
}

impl Default for UserspaceConfig {
    fn default() -> Self {
        Self {
            service_cidr: String::new(),
            min_sync_period: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// A running userspace proxy.
pub struct UserspaceProxy {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    synced: Arc<Notify>,
}

impl UserspaceProxy {
    /// Starts watching Services and EndpointSlices and serving their ClusterIPs.
    pub fn start(client: Client, config: UserspaceConfig) -> Self {
        let (tx, rx) = oneshot::channel();
        let synced = Arc::new(Notify::new());
        let task = tokio::spawn(run(client, config, rx, synced.clone()));
        Self {
            shutdown: Some(tx),
            task,
            synced,
        }
    }

    /// Waits for the next sync.
    pub async fn synced(&self) {
        self.synced.notified().await;
    }

    /// Stops every listener (connections in flight finish on their own).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "userspace proxy task failed");
        }
    }
}

struct Listener {
    backends: watch::Sender<Backends>,
    task: JoinHandle<()>,
}

async fn run(
    client: Client,
    config: UserspaceConfig,
    mut shutdown: oneshot::Receiver<()>,
    synced: Arc<Notify>,
) {
    let services = Informer::<Service>::new(client.clone(), Scope::all());
    let slices = Informer::<EndpointSlice>::new(client, Scope::all());
    let changed = Arc::new(Notify::new());
    let c = changed.clone();
    services.add_handler(move |_| c.notify_one());
    let c = changed.clone();
    slices.add_handler(move |_| c.notify_one());
    let mut active: HashMap<SocketAddrV4, Listener> = HashMap::new();
    tokio::select! {
        _ = async { services.wait_synced().await; slices.wait_synced().await } => {}
        _ = &mut shutdown => {
            services.stop();
            slices.stop();
            return;
        }
    }
    loop {
        let svcs = services.cache().list();
        let eps = slices.cache().list();
        let svc_refs: Vec<&Service> = svcs.iter().map(AsRef::as_ref).collect();
        let ep_refs: Vec<&EndpointSlice> = eps.iter().map(AsRef::as_ref).collect();
        let ports = rules::service_ports(&svc_refs, &ep_refs);
        let want = listeners(&config.service_cidr, &ports);
        let mut retry = false;
        active.retain(|addr, l| {
            let keep = want.contains_key(addr);
            if !keep {
                l.task.abort();
                tracing::info!(listen = %addr, "userspace proxy: no endpoints left, stopped listening");
            }
            keep
        });
        for (addr, backends) in want {
            if let Some(l) = active.get(&addr) {
                l.backends.send_if_modified(|b| {
                    let changed = *b != backends;
                    *b = backends.clone();
                    changed
                });
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(listen = %addr, service = %backends.name, endpoints = backends.endpoints.len(), "userspace proxy listening");
                    let (tx, rx) = watch::channel(backends);
                    let task = tokio::spawn(serve(listener, rx, config.connect_timeout));
                    active.insert(addr, Listener { backends: tx, task });
                }
                Err(error) => {
                    tracing::warn!(listen = %addr, service = %backends.name, %error, "userspace proxy cannot listen; retrying");
                    retry = true;
                }
            }
        }
        for p in ports.iter().filter(|p| p.protocol != "tcp") {
            tracing::debug!(service = %p.name, protocol = %p.protocol, "userspace proxy relays TCP only");
        }
        synced.notify_waiters();
        let resync = if retry {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(30)
        };
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(config.min_sync_period).await,
            _ = tokio::time::sleep(resync) => {}
            _ = &mut shutdown => break,
        }
    }
    services.stop();
    slices.stop();
    for (_, l) in active {
        l.task.abort();
    }
    tracing::info!("userspace proxy stopped");
}

/// Accepts on one service port and relays each connection.
async fn serve(
    listener: TcpListener,
    backends: watch::Receiver<Backends>,
    connect_timeout: Duration,
) {
    let affinity: Arc<Mutex<HashMap<std::net::IpAddr, (SocketAddr, Instant)>>> = Arc::default();
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "userspace proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let current = backends.borrow().clone();
        let affinity = affinity.clone();
        tokio::spawn(async move {
            let order = choose(&current, peer.ip(), &affinity);
            for ep in order {
                match tokio::time::timeout(connect_timeout, TcpStream::connect(ep)).await {
                    Ok(Ok(upstream)) => {
                        if current.affinity.is_some() {
                            let mut map = affinity.lock().unwrap_or_else(|e| e.into_inner());
                            map.insert(peer.ip(), (ep, Instant::now()));
                        }
                        relay(conn, upstream).await;
                        return;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(service = %current.name, endpoint = %ep, %error, "endpoint refused; trying another")
                    }
                    Err(_) => {
                        tracing::debug!(service = %current.name, endpoint = %ep, "endpoint did not accept in time; trying another")
                    }
                }
            }
            tracing::warn!(service = %current.name, client = %peer, "no endpoint accepted the connection");
        });
    }
}

/// The endpoints to try, in order: the client's sticky one first (under ClientIP
/// affinity, while it lasts and still exists), then the rest shuffled.
fn choose(
    backends: &Backends,
    client: std::net::IpAddr,
    affinity: &Mutex<HashMap<std::net::IpAddr, (SocketAddr, Instant)>>,
) -> Vec<SocketAddr> {
    let mut order = backends.endpoints.clone();
    order.shuffle(&mut rand::rng());
    if let Some(timeout) = backends.affinity {
        let mut map = affinity.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < timeout);
        if let Some((sticky, _)) = map.get(&client)
            && let Some(i) = order.iter().position(|e| e == sticky)
        {
            order.swap(0, i);
        }
    }
    order
}

async fn relay(mut client: TcpStream, mut upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%error, "relay ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_stand_ins() {
        let a = |cidr, ip: &str| loopback_address(cidr, ip.parse().unwrap()).map(|i| i.to_string());
        assert_eq!(
            a("10.96.0.0/12", "10.96.0.1").as_deref(),
            Some("127.64.0.1")
        );
        assert_eq!(
            a("10.96.0.0/12", "10.100.3.4").as_deref(),
            Some("127.68.3.4")
        );
        assert_eq!(
            a("10.200.0.0/16", "10.200.1.2").as_deref(),
            Some("127.64.1.2")
        );
        assert_eq!(a("10.96.0.0/12", "10.112.0.1"), None, "outside the CIDR");
        assert_eq!(a("10.0.0.0/8", "10.255.0.1"), None, "beyond the room");
        assert_eq!(a("nonsense", "10.96.0.1"), None);
    }

    fn port(name: &str, ip: &str, protocol: &str, eps: &[(&str, u16)]) -> ServicePortInfo {
        ServicePortInfo {
            name: name.into(),
            cluster_ip: ip.parse().unwrap(),
            protocol: protocol.into(),
            port: 8080,
            node_port: None,
            affinity_seconds: None,
            endpoints: eps.iter().map(|(i, p)| (i.parse().unwrap(), *p)).collect(),
        }
    }

    #[test]
    fn listeners_from_service_ports() {
        let mut sticky = port("shop/web:", "10.96.0.20", "tcp", &[("10.1.0.5", 80)]);
        sticky.affinity_seconds = Some(30);
        let ports = vec![
            port(
                "shop/api:",
                "10.96.0.10",
                "tcp",
                &[("10.1.0.2", 9000), ("10.1.0.3", 9000)],
            ),
            port("shop/empty:", "10.96.0.11", "tcp", &[]),
            port("shop/dns:", "10.96.0.12", "udp", &[("10.1.0.4", 53)]),
            port("other/far:", "192.168.0.1", "tcp", &[("10.1.0.4", 80)]),
            sticky,
        ];
        let got = listeners("10.96.0.0/12", &ports);
        let want = BTreeMap::from([
            (
                "127.64.0.10:8080".parse().unwrap(),
                Backends {
                    name: "shop/api:".into(),
                    endpoints: vec![
                        "10.1.0.2:9000".parse().unwrap(),
                        "10.1.0.3:9000".parse().unwrap(),
                    ],
                    affinity: None,
                },
            ),
            (
                "127.64.0.20:8080".parse().unwrap(),
                Backends {
                    name: "shop/web:".into(),
                    endpoints: vec!["10.1.0.5:80".parse().unwrap()],
                    affinity: Some(Duration::from_secs(30)),
                },
            ),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn client_ip_affinity_puts_the_sticky_endpoint_first() {
        let eps: Vec<SocketAddr> = (1..=5)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect();
        let mut b = Backends {
            name: "x".into(),
            endpoints: eps.clone(),
            affinity: Some(Duration::from_secs(60)),
        };
        let map = Mutex::new(HashMap::new());
        let client: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        map.lock().unwrap().insert(client, (eps[3], Instant::now()));
        for _ in 0..20 {
            let order = choose(&b, client, &map);
            assert_eq!(order[0], eps[3]);
            assert_eq!(order.len(), 5);
        }
        // Gone from the endpoints: any order, every endpoint once.
        b.endpoints.remove(3);
        let order = choose(&b, client, &map);
        assert_eq!(order.len(), 4);
        assert!(!order.contains(&eps[3]));
        // No affinity: random spread over every endpoint.
        b.affinity = None;
        let firsts: std::collections::BTreeSet<_> =
            (0..200).map(|_| choose(&b, client, &map)[0]).collect();
        assert_eq!(firsts.len(), 4);
    }
}
