//! The garbage collector (`pkg/controller/garbagecollector`), over the informer caches of
//! every kind that owns or is owned:
//!
//! - an object all of whose owners are gone is deleted (background cascade), with the
//!   propagation its own finalizers ask for;
//! - an owner deleted with `propagationPolicy=Foreground` carries the `foregroundDeletion`
//!   finalizer: its dependents are deleted, and the finalizer is removed (so the gateway
//!   removes the owner) once no dependent with `blockOwnerDeletion` is left;
//! - an owner deleted with `propagationPolicy=Orphan` carries the `orphan` finalizer: its
//!   dependents lose their owner references, then the finalizer is removed.
//!
//! An owner missing from the cache is looked up live before anything is deleted, so a slow
//! informer never causes a wrong deletion.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use navarch_api::kinds::KindInfo;
use navarch_api::meta::v1::{ObjectMeta, OwnerReference};
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use navarch_runtime::{Action, Event, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::util;

pub const NAME: &str = "garbage-collector";

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object of one kind (the index into the collector's kinds).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GcKey {
    kind: usize,
    key: ObjectKey,
}

type MetaFn = Box<dyn FnOnce(&mut ObjectMeta) + Send>;

/// What the collector does with objects of one kind, whatever their type.
trait Kind: Send + Sync {
    fn info(&self) -> &'static KindInfo;
    fn meta(&self, key: &ObjectKey) -> Option<ObjectMeta>;
    /// Metadata of the cached objects with an owner reference to `uid`.
    fn dependents(&self, uid: &str) -> Vec<ObjectMeta>;
    fn get_live<'a>(
        &'a self,
        client: &'a Client,
        key: &'a ObjectKey,
    ) -> BoxFuture<'a, Result<Option<ObjectMeta>, ApiError>>;
    /// Changes the metadata of the cached object (guarded by its resourceVersion).
    fn update_meta<'a>(
        &'a self,
        client: &'a Client,
        key: &'a ObjectKey,
        f: MetaFn,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    fn delete<'a>(
        &'a self,
        client: &'a Client,
        key: &'a ObjectKey,
        uid: &'a str,
        policy: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

struct Typed<T> {
    informer: Arc<Informer<T>>,
}

impl<T: KubeObject> Kind for Typed<T> {
    fn info(&self) -> &'static KindInfo {
        T::kind()
    }

    fn meta(&self, key: &ObjectKey) -> Option<ObjectMeta> {
        self.informer.cache().get(key).map(|o| o.meta().clone())
    }

    fn dependents(&self, uid: &str) -> Vec<ObjectMeta> {
        self.informer
            .cache()
            .owned_by(uid)
            .iter()
            .map(|o| o.meta().clone())
            .collect()
    }

    fn get_live<'a>(
        &'a self,
        client: &'a Client,
        key: &'a ObjectKey,
    ) -> BoxFuture<'a, Result<Option<ObjectMeta>, ApiError>> {
        async move {
            match client.get::<T>(&key.namespace, &key.name).await {
                Ok(o) => Ok(Some(o.meta().clone())),
                Err(e) if e.reason == Reason::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }

    fn update_meta<'a>(
        &'a self,
        client: &'a Client,
        key: &'a ObjectKey,
        f: MetaFn,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        async move {
            let Some(obj) = self.informer.cache().get(key) else {
                return Ok(());
            };
            match util::update_meta(client, obj.as_ref(), f).await {
                Ok(_) => Ok(()),
                Err(e) if e.reason == Reason::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        client: &'a Client,
        key: &'a ObjectKey,
        uid: &'a str,
        policy: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        async move {
            let params = navarch_gateway::client::DeleteParams {
                precondition_uid: uid.to_string(),
                propagation_policy: policy.to_string(),
                ..Default::default()
            };
            match client
                .delete_with::<T>(&key.namespace, &key.name, &params)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if matches!(e.reason, Reason::NotFound | Reason::Conflict) => Ok(()),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }
}

struct Ctx {
    shared: Arc<Shared>,
    kinds: Vec<Arc<dyn Kind>>,
    queue: WorkQueue<GcKey>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    use navarch_api::{apps, autoscaling, batch, coordination, core, discovery, policy, rbac};
    fn typed<T: KubeObject>(shared: &Shared) -> Arc<dyn Kind> {
        Arc::new(Typed::<T> {
            informer: shared.factory.informer(),
        })
    }
    let kinds = vec![
        typed::<core::v1::Pod>(shared),
        typed::<apps::v1::ReplicaSet>(shared),
        typed::<apps::v1::Deployment>(shared),
        typed::<apps::v1::DaemonSet>(shared),
        typed::<apps::v1::StatefulSet>(shared),
        typed::<apps::v1::ControllerRevision>(shared),
        typed::<batch::v1::Job>(shared),
        typed::<batch::v1::CronJob>(shared),
        typed::<core::v1::Service>(shared),
        typed::<core::v1::Endpoints>(shared),
        typed::<discovery::v1::EndpointSlice>(shared),
        typed::<core::v1::ConfigMap>(shared),
        typed::<core::v1::Secret>(shared),
        typed::<core::v1::ServiceAccount>(shared),
        typed::<core::v1::PersistentVolumeClaim>(shared),
        typed::<coordination::v1::Lease>(shared),
        typed::<core::v1::Node>(shared),
        typed::<autoscaling::v2::HorizontalPodAutoscaler>(shared),
        typed::<policy::v1::PodDisruptionBudget>(shared),
        typed::<rbac::v1::Role>(shared),
        typed::<rbac::v1::RoleBinding>(shared),
    ];
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        kinds,
        queue: queue.clone(),
    });
    register(&ctx, shared);
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
}

/// Adds a handler to the informer of each kind (typed, so one function per type).
fn register(ctx: &Arc<Ctx>, shared: &Shared) {
    use navarch_api::{apps, autoscaling, batch, coordination, core, discovery, policy, rbac};
    fn add<T: KubeObject>(ctx: &Arc<Ctx>, shared: &Shared) {
        let weak = Arc::downgrade(ctx);
        let index = ctx
            .kinds
            .iter()
            .position(|k| k.info() == T::kind())
            .expect("registered kinds are in the table");
        shared
            .factory
            .informer::<T>()
            .add_handler(move |ev: &Event<T>| on_event(&weak, index, ev));
    }
    add::<core::v1::Pod>(ctx, shared);
    add::<apps::v1::ReplicaSet>(ctx, shared);
    add::<apps::v1::Deployment>(ctx, shared);
    add::<apps::v1::DaemonSet>(ctx, shared);
    add::<apps::v1::StatefulSet>(ctx, shared);
    add::<apps::v1::ControllerRevision>(ctx, shared);
    add::<batch::v1::Job>(ctx, shared);
    add::<batch::v1::CronJob>(ctx, shared);
    add::<core::v1::Service>(ctx, shared);
    add::<core::v1::Endpoints>(ctx, shared);
    add::<discovery::v1::EndpointSlice>(ctx, shared);
    add::<core::v1::ConfigMap>(ctx, shared);
    add::<core::v1::Secret>(ctx, shared);
    add::<core::v1::ServiceAccount>(ctx, shared);
    add::<core::v1::PersistentVolumeClaim>(ctx, shared);
    add::<coordination::v1::Lease>(ctx, shared);
    add::<core::v1::Node>(ctx, shared);
    add::<autoscaling::v2::HorizontalPodAutoscaler>(ctx, shared);
    add::<policy::v1::PodDisruptionBudget>(ctx, shared);
    add::<rbac::v1::Role>(ctx, shared);
    add::<rbac::v1::RoleBinding>(ctx, shared);
}

fn needs_attention(meta: &ObjectMeta) -> bool {
    !meta.owner_references.is_empty()
        || (meta.deletion_timestamp.is_some()
            && meta
                .finalizers
                .iter()
                .any(|f| f == ORPHAN || f == FOREGROUND))
}

fn on_event<T: KubeObject>(ctx: &Weak<Ctx>, kind: usize, ev: &Event<T>) {
    let Some(ctx) = ctx.upgrade() else { return };
    let meta = ev.object().meta();
    let key = GcKey {
        kind,
        key: ObjectKey::of(ev.object().as_ref()),
    };
    match ev {
        Event::Added(_) => {
            if needs_attention(meta) {
                ctx.queue.add(key);
            }
        }
        Event::Updated { old, new } => {
            let (o, n) = (old.meta(), new.meta());
            let changed = o.owner_references != n.owner_references
                || o.deletion_timestamp != n.deletion_timestamp
                || o.finalizers != n.finalizers;
            if changed && needs_attention(n) {
                ctx.queue.add(key);
            }
            if changed && n.deletion_timestamp.is_some() {
                ctx.enqueue_owners(n);
            }
        }
        Event::Deleted(_) => {
            // Its dependents may be orphans now; a foreground owner may stop waiting.
            let uid = util::uid(meta);
            if !uid.is_empty() {
                for (i, k) in ctx.kinds.iter().enumerate() {
                    for dep in k.dependents(uid) {
                        ctx.queue.add(GcKey {
                            kind: i,
                            key: ObjectKey::new(
                                dep.namespace.clone().unwrap_or_default(),
                                dep.name.clone().unwrap_or_default(),
                            ),
                        });
                    }
                }
            }
            ctx.enqueue_owners(meta);
        }
    }
}

impl Ctx {
    /// The index of the kind an owner reference names.
    fn resolve(&self, r: &OwnerReference) -> Option<usize> {
        let api_version = r.api_version.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("");
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.kinds
            .iter()
            .position(|k| k.info().kind == kind && k.info().api_version() == api_version)
            .or_else(|| {
                self.kinds
                    .iter()
                    .position(|k| k.info().kind == kind && k.info().group == group)
            })
    }

    fn owner_key(&self, kind: usize, r: &OwnerReference, dependent_ns: &str) -> ObjectKey {
        let ns = if self.kinds[kind].info().namespaced {
            dependent_ns
        } else {
            ""
        };
        ObjectKey::new(ns, r.name.clone().unwrap_or_default())
    }

    fn enqueue_owners(&self, meta: &ObjectMeta) {
        for r in &meta.owner_references {
            if let Some(kind) = self.resolve(r) {
                self.queue.add(GcKey {
                    kind,
                    key: self.owner_key(kind, r, util::namespace(meta)),
                });
            }
        }
    }

    /// Every cached dependent of `uid`, with its kind.
    fn dependents(&self, uid: &str) -> Vec<(usize, ObjectMeta)> {
        self.kinds
            .iter()
            .enumerate()
            .flat_map(|(i, k)| k.dependents(uid).into_iter().map(move |m| (i, m)))
            .collect()
    }
}

fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

async fn reconcile(key: GcKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let kind = ctx.kinds[key.kind].clone();
    let Some(meta) = kind.meta(&key.key) else {
        return Ok(Action::await_change());
    };
    let client = &ctx.shared.client;
    let uid = util::uid(&meta).to_string();
    if meta.deletion_timestamp.is_some() {
        if meta.finalizers.iter().any(|f| f == ORPHAN) {
            return orphan_dependents(&ctx, &key, &meta).await;
        }
        if meta.finalizers.iter().any(|f| f == FOREGROUND) {
            return delete_dependents_in_foreground(&ctx, &key, &meta).await;
        }
        return Ok(Action::await_change());
    }
    if meta.owner_references.is_empty() {
        return Ok(Action::await_change());
    }
    let mut solid = 0;
    let mut dangling = Vec::new();
    let mut waiting = Vec::new();
    for r in &meta.owner_references {
        let Some(owner_kind) = ctx.resolve(r) else {
            // A kind we cannot look up: assume the owner exists.
            solid += 1;
            continue;
        };
        let owner_key = ctx.owner_key(owner_kind, r, &key.key.namespace);
        let owners = &ctx.kinds[owner_kind];
        let cached = owners.meta(&owner_key).filter(|m| m.uid == r.uid);
        let owner = match cached {
            Some(m) => Some(m),
            None => owners
                .get_live(client, &owner_key)
                .await?
                .filter(|m| m.uid == r.uid),
        };
        match owner {
            None => dangling.push(r.uid.clone().unwrap_or_default()),
            Some(o)
                if o.deletion_timestamp.is_some()
                    && o.finalizers.iter().any(|f| f == FOREGROUND) =>
            {
                waiting.push(r.uid.clone().unwrap_or_default())
            }
            Some(_) => solid += 1,
        }
    }
    if solid > 0 {
        if dangling.is_empty() && waiting.is_empty() {
            return Ok(Action::await_change());
        }
        let drop: Vec<String> = dangling.into_iter().chain(waiting).collect();
        tracing::debug!(object = %key.key, kind = kind.info().kind, owners = ?drop, "removing owner references to gone owners");
        kind.update_meta(
            client,
            &key.key,
            Box::new(move |m| {
                m.owner_references
                    .retain(|r| !drop.contains(&r.uid.clone().unwrap_or_default()))
            }),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let has_dependents = !ctx.dependents(&uid).is_empty();
    let policy = if !waiting.is_empty() && has_dependents {
        "Foreground"
    } else if meta.finalizers.iter().any(|f| f == ORPHAN) {
        "Orphan"
    } else if meta.finalizers.iter().any(|f| f == FOREGROUND) {
        "Foreground"
    } else {
        "Background"
    };
    tracing::debug!(object = %key.key, kind = kind.info().kind, policy, "collecting an object whose owners are gone");
    kind.delete(client, &key.key, &uid, policy).await?;
    Ok(Action::await_change())
}

async fn orphan_dependents(ctx: &Ctx, key: &GcKey, meta: &ObjectMeta) -> Result<Action, ApiError> {
    let uid = util::uid(meta).to_string();
    for (kind, dep) in ctx.dependents(&uid) {
        let owner = uid.clone();
        ctx.kinds[kind]
            .update_meta(
                &ctx.shared.client,
                &key_of(&dep),
                Box::new(move |m| {
                    m.owner_references
                        .retain(|r| r.uid.as_deref() != Some(&owner))
                }),
            )
            .await?;
    }
    ctx.kinds[key.kind]
        .update_meta(
            &ctx.shared.client,
            &key.key,
            Box::new(|m| m.finalizers.retain(|f| f != ORPHAN)),
        )
        .await?;
    Ok(Action::await_change())
}

async fn delete_dependents_in_foreground(
    ctx: &Ctx,
    key: &GcKey,
    meta: &ObjectMeta,
) -> Result<Action, ApiError> {
    let uid = util::uid(meta).to_string();
    let dependents = ctx.dependents(&uid);
    let mut blocking = 0;
    for (kind, dep) in &dependents {
        let blocks = dep.owner_references.iter().any(|r| {
            r.uid.as_deref() == Some(uid.as_str()) && r.block_owner_deletion == Some(true)
        });
        if blocks {
            blocking += 1;
        }
        if dep.deletion_timestamp.is_some() {
            continue;
        }
        // Dependents of a foreground deletion go in the foreground too when they own things.
        let policy = if ctx.dependents(util::uid(dep)).is_empty() {
            "Background"
        } else {
            "Foreground"
        };
        ctx.kinds[*kind]
            .delete(&ctx.shared.client, &key_of(dep), util::uid(dep), policy)
            .await?;
    }
    if blocking > 0 {
        // The dependents' deletions requeue us; look again in a while regardless.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    ctx.kinds[key.kind]
        .update_meta(
            &ctx.shared.client,
            &key.key,
            Box::new(|m| m.finalizers.retain(|f| f != FOREGROUND)),
        )
        .await?;
    Ok(Action::await_change())
}
