//! The ClusterRole aggregation loop (`clusterrole-aggregation`, as kube-controller-manager's):
//! a ClusterRole with an `aggregationRule` gets, as its rules, the rules of every other
//! ClusterRole whose labels match one of its selectors (`admin`, `edit`, `view` are built
//! from the `system:aggregate-to-*` roles and from any role a user labels to join them).

use std::sync::Arc;

use navarch_api::ApiError;
use navarch_api::rbac::v1::{ClusterRole, PolicyRule};
use navarch_api::selectors::LabelSelector;
use navarch_runtime::{Action, Event, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};

pub const NAME: &str = "clusterrole-aggregation";

struct Ctx {
    shared: Arc<Shared>,
    roles: Arc<Informer<ClusterRole>>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        roles: shared.factory.informer(),
    });
    // Any role's change may change what an aggregated role collects: requeue them all.
    let q = queue.clone();
    let cache = ctx.roles.cache().clone();
    ctx.roles.add_handler(move |_: &Event<ClusterRole>| {
        for role in cache.list() {
            if role.aggregation_rule.is_some() {
                q.add(ObjectKey::of(role.as_ref()));
            }
        }
    });
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
}

/// The rules `role` aggregates from `all`, each once, in a stable order.
fn aggregate(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let name = role.meta().name.clone();
    let selectors: Vec<LabelSelector> = role
        .aggregation_rule
        .as_ref()
        .map(|a| {
            a.cluster_role_selectors
                .iter()
                .filter_map(|s| LabelSelector::from_meta(s).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|r| r.meta().name != name)
        .filter(|r| {
            let labels = r.meta().labels.clone().into_iter().collect();
            selectors.iter().any(|s| s.matches(&labels))
        })
        .collect();
    sources.sort_by_key(|r| r.meta().name.clone());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for source in sources {
        for rule in &source.rules {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    rules
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let Some(role) = ctx.roles.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    if role.aggregation_rule.is_none() {
        return Ok(Action::await_change());
    }
    let rules = aggregate(&role, &ctx.roles.cache().list());
    if rules == role.rules {
        return Ok(Action::await_change());
    }
    let mut next = (*role).clone();
    next.rules = rules;
    ctx.shared.client.update("", &key.name, &next).await?;
    Ok(Action::await_change())
}
