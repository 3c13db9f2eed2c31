//! The DNS server: UDP and TCP on the configured addresses, the cluster zone from
//! [`SharedZone`] (kept current by informers over Services and EndpointSlices), everything
//! else relayed to the upstream resolvers.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use navarch_api::core::v1::Service;
use navarch_api::discovery::v1::EndpointSlice;
use navarch_gateway::Client;
use navarch_runtime::{Informer, Scope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::zone::{Zone, ZoneConfig};

/// How the server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Addresses to answer on (UDP and TCP). They may not exist yet (the pod bridge's
    /// gateway appears with the first pod): sockets are bound with `IP_FREEBIND`.
    pub listen: Vec<SocketAddr>,
    /// Where names outside the zone go, tried in order.
    pub upstreams: Vec<SocketAddr>,
    pub zone: ZoneConfig,
    /// How long one upstream gets to answer.
    pub forward_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![],
            upstreams: vec![],
            zone: ZoneConfig::default(),
            forward_timeout: Duration::from_secs(2),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The zone the server answers from, swapped whole on every change.
#[derive(Clone)]
pub struct SharedZone(Arc<RwLock<Arc<Zone>>>);

impl SharedZone {
    pub fn new(zone: Zone) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(zone))))
    }

    pub fn get(&self) -> Arc<Zone> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, zone: Zone) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(zone);
    }
}

/// The nameservers of a `resolv.conf`, on port 53, leaving out `exclude` (our own
/// addresses: forwarding to ourselves would loop).
pub fn upstreams_from_resolv_conf(text: &str, exclude: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.split('%').next()?.parse().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| !exclude.contains(a))
        .collect()
}

/// A running server.
pub struct DnsServer {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    zone: SharedZone,
    synced: Arc<Notify>,
}

impl DnsServer {
    /// Serves the cluster zone from informers over `client`.
    pub async fn start(client: Client, config: DnsConfig) -> Result<Self, DnsError> {
        let zone = SharedZone::new(Zone::build(&config.zone, &[], &[]));
        let mut server = Self::serve(zone.clone(), config.clone()).await?;
        let (stop, synced) = (server.stop.subscribe(), server.synced.clone());
        server.tasks.push(tokio::spawn(sync_zone(
            client,
            config.zone,
            zone,
            stop,
            synced,
        )));
        Ok(server)
    }

    /// Serves a zone someone else keeps (tests, benchmarks).
    pub async fn serve(zone: SharedZone, config: DnsConfig) -> Result<Self, DnsError> {
        let (stop, _) = watch::channel(false);
        let config = Arc::new(config);
        let mut tasks = Vec::new();
        for addr in &config.listen {
            let bind = |e| DnsError::Bind {
                addr: *addr,
                source: e,
            };
            let udp = Arc::new(udp_socket(*addr).map_err(bind)?);
            let tcp = tcp_listener(*addr).map_err(bind)?;
            let loops = std::thread::available_parallelism().map_or(2, |n| n.get());
            for _ in 0..loops {
                tasks.push(tokio::spawn(serve_udp(
                    udp.clone(),
                    zone.clone(),
                    config.clone(),
                    stop.subscribe(),
                )));
            }
            tasks.push(tokio::spawn(serve_tcp(
                tcp,
                zone.clone(),
                config.clone(),
                stop.subscribe(),
            )));
            tracing::info!(%addr, upstreams = ?config.upstreams, domain = %config.zone.domain, "cluster DNS listening");
        }
        Ok(Self {
            stop,
            tasks,
            zone,
            synced: Arc::new(Notify::new()),
        })
    }

    /// The zone being served.
    pub fn zone(&self) -> &SharedZone {
        &self.zone
    }

    /// Waits for the next zone rebuild from the informers.
    pub async fn synced(&self) {
        self.synced.notified().await;
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn socket(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_freebind_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket(addr, socket2::Type::DGRAM)?;
    UdpSocket::from_std(s.into())
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = socket(addr, socket2::Type::STREAM)?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

async fn sync_zone(
    client: Client,
    cfg: ZoneConfig,
    zone: SharedZone,
    mut stop: watch::Receiver<bool>,
    synced: Arc<Notify>,
) {
    let services = Informer::<Service>::new(client.clone(), Scope::all());
    let slices = Informer::<EndpointSlice>::new(client, Scope::all());
    let changed = Arc::new(Notify::new());
    let c = changed.clone();
    services.add_handler(move |_| c.notify_one());
    let c = changed.clone();
    slices.add_handler(move |_| c.notify_one());
    tokio::select! {
        _ = async { services.wait_synced().await; slices.wait_synced().await } => {}
        _ = stop.changed() => {
            services.stop();
            slices.stop();
            return;
        }
    }
    loop {
        let svcs = services.cache().list();
        let eps = slices.cache().list();
        let s: Vec<&Service> = svcs.iter().map(AsRef::as_ref).collect();
        let e: Vec<&EndpointSlice> = eps.iter().map(AsRef::as_ref).collect();
        let z = Zone::build(&cfg, &s, &e);
        tracing::debug!(services = z.services(), "cluster DNS zone rebuilt");
        zone.set(z);
        synced.notify_waiters();
        tokio::select! {
            // Changes arriving together make one rebuild.
            _ = changed.notified() => tokio::time::sleep(Duration::from_millis(10)).await,
            _ = stop.changed() => break,
        }
    }
    services.stop();
    slices.stop();
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    zone: SharedZone,
    config: Arc<DnsConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "dns udp receive");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let packet = buf[..len].to_vec();
        match local_answer(&zone, &packet, false) {
            Reply::Now(bytes) => {
                let _ = socket.send_to(&bytes, peer).await;
            }
            Reply::Forward => {
                let (socket, config) = (socket.clone(), config.clone());
                tokio::spawn(async move {
                    let reply = forward_udp(&config, &packet).await;
                    let _ = socket.send_to(&reply, peer).await;
                });
            }
            Reply::Drop => {}
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    zone: SharedZone,
    config: Arc<DnsConfig>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "dns tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let (zone, config) = (zone.clone(), config.clone());
        tokio::spawn(async move {
            let _ = serve_tcp_conn(stream, zone, config).await;
        });
    }
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await? as usize;
    let mut msg = vec![0; len];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

async fn write_frame(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    let mut frame = Vec::with_capacity(msg.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&msg[..len as usize]);
    stream.write_all(&frame).await
}

async fn serve_tcp_conn(
    mut stream: TcpStream,
    zone: SharedZone,
    config: Arc<DnsConfig>,
) -> std::io::Result<()> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let reply = match local_answer(&zone, &msg, true) {
            Reply::Now(bytes) => bytes,
            Reply::Forward => forward_tcp(&config, &msg).await,
            Reply::Drop => return Ok(()),
        };
        write_frame(&mut stream, &reply).await?;
    }
}

/// What to do with one query.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Send these bytes back.
    Now(Vec<u8>),
    /// Not ours: ask upstream.
    Forward,
    /// Not a query we can parse: say nothing (as servers do with garbage).
    Drop,
}

/// Answers `packet` from the zone: the reply, or [`Reply::Forward`] for names outside it.
pub fn local_answer(zone: &SharedZone, packet: &[u8], tcp: bool) -> Reply {
    let Ok(request) = Message::from_vec(packet) else {
        return Reply::Drop;
    };
    if request.message_type() != MessageType::Query {
        return Reply::Drop;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .add_queries(request.queries().iter().cloned());
    if let Some(edns) = request.extensions() {
        let mut e = Edns::new();
        e.set_max_payload(edns.max_payload().max(512));
        response.set_edns(e);
    }
    let [query] = request.queries() else {
        response.set_response_code(ResponseCode::FormErr);
        return encode(response, tcp, request.max_payload());
    };
    if request.op_code() != OpCode::Query {
        response.set_response_code(ResponseCode::NotImp);
        return encode(response, tcp, request.max_payload());
    }
    let Some(answer) = zone.get().answer(query.name(), query.query_type()) else {
        return Reply::Forward;
    };
    response
        .set_authoritative(true)
        .set_response_code(answer.code)
        .add_answers(answer.answers)
        .add_additionals(answer.additionals)
        .add_name_servers(answer.authority);
    encode(response, tcp, request.max_payload())
}

/// The response's bytes; over UDP, cut to the header and question with TC set when it does
/// not fit, so the client retries over TCP.
fn encode(mut response: Message, tcp: bool, max_payload: u16) -> Reply {
    let Ok(bytes) = response.to_vec() else {
        return Reply::Drop;
    };
    if tcp || bytes.len() <= usize::from(max_payload.max(512)) {
        return Reply::Now(bytes);
    }
    response.take_answers();
    response.take_additionals();
    response.take_name_servers();
    response.set_truncated(true);
    response.to_vec().map_or(Reply::Drop, Reply::Now)
}

/// A SERVFAIL for `packet` (no upstream answered).
fn servfail(packet: &[u8]) -> Vec<u8> {
    let Ok(request) = Message::from_vec(packet) else {
        return vec![];
    };
    let mut m = Message::error_msg(request.id(), request.op_code(), ResponseCode::ServFail);
    m.add_queries(request.queries().iter().cloned());
    m.set_recursion_desired(request.recursion_desired());
    m.set_recursion_available(true);
    m.to_vec().unwrap_or_default()
}

fn same_id(a: &[u8], b: &[u8]) -> bool {
    a.len() >= 2 && b.len() >= 2 && a[..2] == b[..2]
}

async fn forward_udp(config: &DnsConfig, packet: &[u8]) -> Vec<u8> {
    for upstream in &config.upstreams {
        let attempt = async {
            let bind: SocketAddr = if upstream.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let s = UdpSocket::bind(bind).await.ok()?;
            s.connect(upstream).await.ok()?;
            s.send(packet).await.ok()?;
            let mut buf = vec![0u8; 65535];
            loop {
                let n = s.recv(&mut buf).await.ok()?;
                if same_id(packet, &buf[..n]) {
                    return Some(buf[..n].to_vec());
                }
            }
        };
        match tokio::time::timeout(config.forward_timeout, attempt).await {
            Ok(Some(reply)) => return reply,
            _ => tracing::debug!(%upstream, "upstream resolver did not answer"),
        }
    }
    servfail(packet)
}

async fn forward_tcp(config: &DnsConfig, packet: &[u8]) -> Vec<u8> {
    for upstream in &config.upstreams {
        let attempt = async {
            let mut s = TcpStream::connect(upstream).await.ok()?;
            write_frame(&mut s, packet).await.ok()?;
            read_frame(&mut s).await.ok()
        };
        if let Ok(Some(reply)) = tokio::time::timeout(config.forward_timeout, attempt).await {
            return reply;
        }
    }
    servfail(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_leave_out_our_own_address() {
        let text = "search example.org\nnameserver 10.244.0.1\nnameserver 192.0.2.53\n# nameserver 1.1.1.1\nnameserver fe80::1%eth0\noptions ndots:1\n";
        let ours: SocketAddr = "10.244.0.1:53".parse().unwrap();
        assert_eq!(
            upstreams_from_resolv_conf(text, &[ours]),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
