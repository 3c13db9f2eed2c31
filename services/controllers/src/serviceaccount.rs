//! The service-account loop: every active namespace has a `default` ServiceAccount.

use std::sync::{Arc, Weak};

use navarch_api::ApiError;
use navarch_api::Reason;
use navarch_api::core::v1::{Namespace, ServiceAccount};
use navarch_api::meta::v1::ObjectMeta;
use navarch_runtime::{Action, Event, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};

pub const NAME: &str = "serviceaccount";

struct Ctx {
    shared: Arc<Shared>,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        namespaces: shared.factory.informer(),
        accounts: shared.factory.informer(),
    });
    let q = queue.clone();
    ctx.namespaces
        .add_handler(move |ev: &Event<Namespace>| q.add(ObjectKey::of(ev.object().as_ref())));
    let q = queue.clone();
    let weak: Weak<Ctx> = Arc::downgrade(&ctx);
    ctx.accounts.add_handler(move |ev: &Event<ServiceAccount>| {
        if matches!(ev, Event::Deleted(_)) && weak.upgrade().is_some() {
            let ns = ev.object().meta().namespace.clone().unwrap_or_default();
            q.add(ObjectKey::new("", ns));
        }
    });
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let Some(ns) = ctx.namespaces.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    if ns.meta().deletion_timestamp.is_some()
        || ctx
            .accounts
            .cache()
            .get_named(&key.name, "default")
            .is_some()
    {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: Some(ObjectMeta {
            name: Some("default".into()),
            namespace: Some(key.name.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    match ctx.shared.client.create(&key.name, &sa).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e)
            if matches!(
                e.reason,
                Reason::AlreadyExists | Reason::Forbidden | Reason::NotFound
            ) =>
        {
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}
