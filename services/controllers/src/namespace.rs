//! The namespace loop (`pkg/controller/namespace`): a namespace being deleted (status
//! Terminating, deletionTimestamp set by the gateway) has all its content deleted, kind by
//! kind; once nothing is left the namespace itself is removed.

use std::sync::Arc;
use std::time::Duration;

use navarch_api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
use navarch_api::gateway::v1 as pb;
use navarch_api::kinds::{KINDS, KindInfo};
use navarch_api::{ApiError, Reason};
use navarch_runtime::{Action, Event, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::util::fmt_time;

pub const NAME: &str = "namespace";

struct Ctx {
    shared: Arc<Shared>,
    namespaces: Arc<Informer<Namespace>>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        namespaces: shared.factory.informer(),
    });
    let q = queue.clone();
    ctx.namespaces.add_handler(move |ev: &Event<Namespace>| {
        if ev.object().meta().deletion_timestamp.is_some() {
            q.add(ObjectKey::of(ev.object().as_ref()));
        }
    });
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
}

fn resource(kind: &KindInfo) -> Option<pb::Resource> {
    Some(pb::Resource {
        group: kind.group.into(),
        version: kind.version.into(),
        resource: kind.plural.into(),
        subresource: String::new(),
    })
}

/// The namespaced kinds that are stored (each group/kind once).
fn content_kinds() -> Vec<&'static KindInfo> {
    let mut seen = std::collections::HashSet::new();
    KINDS
        .iter()
        .filter(|k| k.namespaced && !k.virtual_kind)
        .filter(|k| seen.insert((k.group, k.kind)))
        .collect()
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let Some(ns) = ctx.namespaces.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    if ns.meta().deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = key.name.clone();
    let mut raw = ctx.shared.client.raw();
    let mut remaining: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for kind in content_kinds() {
        let list = pb::ListRequest {
            resource: resource(kind),
            namespace: name.clone(),
            ..Default::default()
        };
        let delete = pb::DeleteCollectionRequest {
            list: Some(list.clone()),
            options: Some(pb::DeleteRequest {
                resource: resource(kind),
                namespace: name.clone(),
                ..Default::default()
            }),
        };
        if let Err(status) = raw.delete_collection(delete).await {
            let e = ApiError::from_grpc(&status);
            if !matches!(e.reason, Reason::NotFound | Reason::MethodNotAllowed) {
                failures.push(format!("{}: {}", kind.group_resource(), e.message));
            }
        }
        let left = raw
            .list(pb::ListRequest { limit: 1, ..list })
            .await
            .map(|r| !r.into_inner().items.is_empty());
        match left {
            Ok(true) => remaining.push(kind.group_resource()),
            Ok(false) => {}
            Err(status) => failures.push(format!(
                "{}: {}",
                kind.group_resource(),
                ApiError::from_grpc(&status).message
            )),
        }
    }
    if remaining.is_empty() && failures.is_empty() {
        // Empty now: deleting it again removes it.
        match ctx.shared.client.delete::<Namespace>("", &name).await {
            Ok(_) => {}
            Err(e) if e.reason == Reason::NotFound => {}
            Err(e) => return Err(e),
        }
        tracing::info!(namespace = %name, "namespace content deleted; namespace removed");
        return Ok(Action::await_change());
    }
    set_conditions(&ctx, &ns, &remaining, &failures).await;
    // Content with finalizers or grace periods goes away on its own schedule: look again soon.
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// Records what is left (`NamespaceContentRemaining`, `NamespaceDeletionContentFailure`).
async fn set_conditions(ctx: &Ctx, ns: &Namespace, remaining: &[String], failures: &[String]) {
    let now = fmt_time(ctx.shared.now());
    let cond = |kind: &str, on: bool, reason: &str, message: String| NamespaceCondition {
        r#type: Some(kind.into()),
        status: Some(if on { "True" } else { "False" }.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now.clone()),
    };
    let mut status = ns.status.clone().unwrap_or_default();
    let wanted = vec![
        if remaining.is_empty() {
            cond(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            cond(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", remaining.join(", ")),
            )
        },
        if failures.is_empty() {
            cond(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            cond(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    failures.len(),
                    failures.join("; ")
                ),
            )
        },
    ];
    let mut changed = false;
    for mut c in wanted {
        match status.conditions.iter_mut().find(|x| x.r#type == c.r#type) {
            Some(cur)
                if cur.status == c.status && cur.reason == c.reason && cur.message == c.message => {
            }
            Some(cur) => {
                if cur.status == c.status {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                *cur = c;
                changed = true;
            }
            None => {
                status.conditions.push(c);
                changed = true;
            }
        }
    }
    if !changed {
        return;
    }
    let mut updated = ns.clone();
    updated.status = Some(NamespaceStatus {
        phase: Some("Terminating".into()),
        ..status
    });
    let name = updated.meta().name.clone().unwrap_or_default();
    if let Err(e) = ctx.shared.client.update_status("", &name, &updated).await {
        tracing::debug!(namespace = %name, error = %e, "recording namespace deletion progress failed");
    }
}
