//! The service-account loop: every active namespace has a `default` ServiceAccount, and
//! (kube-controller-manager's root-ca-cert-publisher) the `kube-root-ca.crt` ConfigMap with
//! the cluster CA that pods' API access volumes mount.

use std::sync::{Arc, Weak};

use navarch_api::ApiError;
use navarch_api::Reason;
use navarch_api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use navarch_api::meta::v1::ObjectMeta;
use navarch_runtime::{Action, Event, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};

pub const NAME: &str = "serviceaccount";

struct Ctx {
    shared: Arc<Shared>,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
    config_maps: Arc<Informer<ConfigMap>>,
}

/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA: &str = "kube-root-ca.crt";

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        namespaces: shared.factory.informer(),
        accounts: shared.factory.informer(),
        config_maps: shared.factory.informer(),
    });
    let q = queue.clone();
    ctx.config_maps.add_handler(move |ev: &Event<ConfigMap>| {
        let meta = ev.object().meta();
        if meta.name.as_deref() == Some(ROOT_CA) {
            q.add(ObjectKey::new(
                "",
                meta.namespace.clone().unwrap_or_default(),
            ));
        }
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
    if ns.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    publish_root_ca(&key.name, &ctx).await?;
    if ctx
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
    tolerate(ctx.shared.client.create(&key.name, &sa).await.map(|_| ()))?;
    Ok(Action::await_change())
}

/// Creates or corrects `kube-root-ca.crt` in `namespace`.
async fn publish_root_ca(namespace: &str, ctx: &Ctx) -> Result<(), ApiError> {
    let ca = &ctx.shared.settings.root_ca_pem;
    if ca.is_empty() {
        return Ok(());
    }
    let current = ctx.config_maps.cache().get_named(namespace, ROOT_CA);
    match current {
        Some(cm) if cm.data.get("ca.crt") == Some(ca) => Ok(()),
        Some(cm) => {
            let mut cm = (*cm).clone();
            cm.data.insert("ca.crt".into(), ca.clone());
            tolerate(
                ctx.shared
                    .client
                    .update(namespace, ROOT_CA, &cm)
                    .await
                    .map(|_| ()),
            )
        }
        None => {
            let cm = ConfigMap {
                metadata: Some(ObjectMeta {
                    name: Some(ROOT_CA.into()),
                    namespace: Some(namespace.to_string()),
                    annotations: [(
                        "kubernetes.io/description".to_string(),
                        "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
                    )]
                    .into(),
                    ..Default::default()
                }),
                data: [("ca.crt".to_string(), ca.clone())].into(),
                ..Default::default()
            };
            tolerate(ctx.shared.client.create(namespace, &cm).await.map(|_| ()))
        }
    }
}

/// A create or update that lost a race with someone else (or with the namespace's deletion)
/// is not an error: the informers bring the loop back if anything is still missing.
fn tolerate(result: Result<(), ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e)
            if matches!(
                e.reason,
                Reason::AlreadyExists | Reason::Forbidden | Reason::NotFound | Reason::Conflict
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}
