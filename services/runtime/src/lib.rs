//! Shared machinery for every component that watches the cluster through the gateway
//! (controllers, scheduler, service proxy, DNS):
//!
//! - [`informer`]: list + watch of one kind into an indexed [`cache::Cache`], with change
//!   handlers, resync on Expired, and [`factory::InformerFactory`] to share one informer per kind;
//! - [`queue`]: the de-duplicating, per-key serialised, rate-limited [`queue::WorkQueue`];
//! - [`controller`]: the reconciler runner (`reconcile(key, ctx) -> Result<Action, E>`), with
//!   metrics;
//! - [`expectations`]: pending creations/deletions per owner (`ControllerExpectations`);
//! - [`leader_election`]: one active instance through a `coordination.k8s.io/v1` Lease;
//! - [`events`]: core/v1 Events written in the background;
//! - [`supervisor`]: the actix supervisor tree that restarts crashed loops (controllers,
//!   scheduler).
//!
//! A typical control loop:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use navarch_api::apps::v1::ReplicaSet;
//! # use navarch_runtime::{Action, Controller, InformerFactory, ObjectKey, WorkQueue, Event};
//! # async fn demo(client: navarch_gateway::Client) {
//! struct Ctx { replicasets: Arc<navarch_runtime::Informer<ReplicaSet>> }
//! async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, navarch_api::ApiError> {
//!     let Some(_rs) = ctx.replicasets.cache().get(&key) else { return Ok(Action::await_change()) };
//!     // … compare desired with observed, act through the client …
//!     Ok(Action::await_change())
//! }
//! let factory = InformerFactory::new(client);
//! let replicasets = factory.informer::<ReplicaSet>();
//! let queue = WorkQueue::<ObjectKey>::new("replicaset");
//! let q = queue.clone();
//! replicasets.add_handler(move |ev: &Event<ReplicaSet>| q.add(ObjectKey::of(ev.object().as_ref())));
//! factory.wait_synced(std::time::Duration::from_secs(60)).await.unwrap();
//! Controller::new("replicaset", queue)
//!     .workers(4)
//!     .run(reconcile, navarch_runtime::controller::backoff_on_error, Arc::new(Ctx { replicasets }))
//!     .await
//!     .unwrap();
//! # }
//! ```

pub mod backoff;
pub mod cache;
pub mod controller;
pub mod events;
pub mod expectations;
pub mod factory;
pub mod informer;
pub mod leader_election;
pub mod object;
pub mod queue;
pub mod supervisor;

pub use backoff::{Backoff, RateLimiter};
pub use cache::Cache;
pub use controller::{Action, Controller, ControllerError};
pub use events::{EventRecorder, EventType};
pub use expectations::Expectations;
pub use factory::InformerFactory;
pub use informer::{Event, Informer, InformerConfig, ListWatch, Scope};
pub use leader_election::{LeaderElectionConfig, LeaderElector, Leadership, Leading};
pub use object::{KubeObject, ObjectKey};
pub use queue::WorkQueue;
pub use supervisor::{Supervised, Supervisor, SupervisorConfig, SupervisorHandle};
