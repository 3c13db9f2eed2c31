//! The proxy loop: informers over Services and EndpointSlices, and a sync after every change
//! (batched for [`ProxyConfig::min_sync_period`], so endpoint changes reach the kernel well
//! within a second), plus a periodic resync that puts back anything someone else removed.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use navarch_api::core::v1::Service;
use navarch_api::discovery::v1::EndpointSlice;
use navarch_gateway::Client;
use navarch_runtime::{Informer, Scope};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::iptables::Iptables;
use crate::rules::{self, RulesConfig};

/// How the proxy runs.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub rules: RulesConfig,
    /// Program this network namespace instead of the current one (tests).
    pub netns: Option<String>,
    /// How long a change waits for more changes before a sync.
    pub min_sync_period: Duration,
    /// A full check this often even without changes.
    pub resync_period: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            rules: RulesConfig::default(),
            netns: None,
            min_sync_period: Duration::from_millis(20),
            resync_period: Duration::from_secs(30),
        }
    }
}

/// A running proxy.
pub struct Proxy {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    synced: Arc<Notify>,
}

impl Proxy {
    /// Starts watching and programming.
    pub fn start(client: Client, config: ProxyConfig) -> Self {
        let (tx, rx) = oneshot::channel();
        let synced = Arc::new(Notify::new());
        let task = tokio::spawn(run(client, config, rx, synced.clone()));
        Self {
            shutdown: Some(tx),
            task,
            synced,
        }
    }

    /// Waits for the next successful sync.
    pub async fn synced(&self) {
        self.synced.notified().await;
    }

    /// Stops, removing every rule and chain the proxy made.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "proxy task failed");
        }
    }
}

async fn run(
    client: Client,
    config: ProxyConfig,
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
    let mut iptables = Iptables::new(config.rules.prefix.clone());
    if let Some(ns) = &config.netns {
        iptables = iptables.in_netns(ns);
    }
    tokio::select! {
        _ = async { services.wait_synced().await; slices.wait_synced().await } => {}
        _ = &mut shutdown => {
            services.stop();
            slices.stop();
            return;
        }
    }
    // Endpoint addresses the last applied rules sent traffic to.
    let mut endpoints: BTreeSet<Ipv4Addr> = BTreeSet::new();
    loop {
        let started = Instant::now();
        let svcs = services.cache().list();
        let eps = slices.cache().list();
        let svc_refs: Vec<&Service> = svcs.iter().map(AsRef::as_ref).collect();
        let ep_refs: Vec<&EndpointSlice> = eps.iter().map(AsRef::as_ref).collect();
        let ports = rules::service_ports(&svc_refs, &ep_refs);
        let chains = rules::chains(&config.rules, &ports);
        let retry = match iptables.sync(&chains).await {
            Ok(stats) => {
                if stats.bytes > 0 {
                    tracing::info!(
                        service_ports = ports.len(),
                        chains = chains.len(),
                        chains_written = stats.chains_written,
                        chains_deleted = stats.chains_deleted,
                        bytes = stats.bytes,
                        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "proxy rules synced"
                    );
                }
                synced.notify_waiters();
                let now: BTreeSet<Ipv4Addr> = ports
                    .iter()
                    .flat_map(|p| p.endpoints.iter().map(|(ip, _)| *ip))
                    .collect();
                let gone: Vec<Ipv4Addr> = endpoints.difference(&now).copied().collect();
                if !gone.is_empty() {
                    iptables.clear_flows_to(&gone).await;
                    tracing::debug!(endpoints = ?gone, "cleared flows to removed endpoints");
                }
                endpoints = now;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "proxy rule sync failed; retrying");
                Some(Duration::from_secs(1))
            }
        };
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(config.min_sync_period).await,
            _ = tokio::time::sleep(retry.unwrap_or(config.resync_period)) => {}
            _ = &mut shutdown => break,
        }
    }
    services.stop();
    slices.stop();
    match iptables.cleanup().await {
        Ok(()) => tracing::info!(prefix = %config.rules.prefix, "proxy rules removed"),
        Err(e) => tracing::warn!(error = %e, "removing proxy rules"),
    }
}
