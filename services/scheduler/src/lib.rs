//! The scheduler: assigns each pending pod (no `spec.nodeName`, `spec.schedulerName` ours) to a
//! node, and binds it through the gateway's `pods/binding` subresource.
//!
//! - [`framework`]: the algorithm, a pure function of a pod and a [`snapshot::Snapshot`]:
//!   filter plugins, then weighted score plugins (one module each under [`plugins`]);
//! - [`queue`]: the scheduling queue (priority order, back-off, waiting for cluster changes);
//! - [`scheduler`]: informers, the scheduling loop with its assumed-pod cache, bindings,
//!   Unschedulable conditions and events, leader election;
//! - [`supervised`]: the scheduler as a supervised actor ([`start`]), as `navarch` runs it.

pub mod framework;
pub mod metrics;
pub mod node_info;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scheduler;
pub mod snapshot;
pub mod supervised;

pub use framework::{Decision, FitError, Registry, schedule};
pub use scheduler::{Faults, SchedulerConfig, run};
pub use snapshot::Snapshot;
pub use supervised::{RunningScheduler, start};
