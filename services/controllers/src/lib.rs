//! The controller-manager: Navarch's control loops, each one supervised actix actor.
//!
//! Every loop keeps informers (shared through one [`navarch_runtime::InformerFactory`] per
//! leadership term), turns changes into keys on its own de-duplicating, rate-limited work
//! queue, and runs an idempotent `reconcile(key)` that reads the informer caches and writes
//! through the gateway client. The supervisor tree (see [`manager`]) restarts a loop whose
//! reconcile panicked, with back-off, without touching the others; only the instance holding
//! the `kube-system/navarch-controller-manager` Lease runs loops.
//!
//! ```no_run
//! # async fn demo(client: navarch_gateway::Client) {
//! use navarch_controllers::{ControllerManager, ManagerConfig};
//! let manager = ControllerManager::start(ManagerConfig::new(client, "host-1"));
//! // … later
//! manager.shutdown().await;
//! # }
//! ```

pub mod clock;
pub mod cron;
pub mod hpa;
pub mod manager;
pub mod settings;

mod clusterrole;
mod context;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod gc;
mod history;
mod job;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod pods;
mod replicaset;
mod serviceaccount;
mod statefulset;
mod util;

pub use clock::{Clock, FakeClock, SystemClock};
pub use manager::{ControllerManager, Faults, ManagerConfig};
pub use settings::Settings;

/// Every control loop, in the order they start (the `--controllers` names).
pub const CONTROLLERS: &[&str] = &[
    replicaset::NAME,
    deployment::NAME,
    gc::NAME,
    namespace::NAME,
    job::NAME,
    cronjob::NAME,
    daemonset::NAME,
    statefulset::NAME,
    nodelifecycle::NAME,
    endpoints::ENDPOINTS,
    endpoints::ENDPOINT_SLICES,
    serviceaccount::NAME,
    clusterrole::NAME,
    nodeipam::NAME,
];
