//! The node IPAM loop (`pkg/controller/nodeipam`, range allocator): every node gets a
//! `spec.podCIDR` cut from the cluster CIDR; a range is free again once its node is gone;
//! no two nodes ever share one (a single worker allocates, remembering what it handed out
//! until its cache shows it).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use navarch_api::core::v1::Node;
use navarch_api::{ApiError, Reason};
use navarch_runtime::{Action, Event, EventType, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::util;

pub const NAME: &str = "node-ipam";

struct Ctx {
    shared: Arc<Shared>,
    nodes: Arc<Informer<Node>>,
    /// Ranges handed out but maybe not in the cache yet: node name → CIDR.
    pending: Mutex<HashMap<String, String>>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        nodes: shared.factory.informer(),
        pending: Mutex::new(HashMap::new()),
    });
    let q = queue.clone();
    ctx.nodes.add_handler(move |ev: &Event<Node>| {
        if !matches!(ev, Event::Deleted(_)) {
            q.add(ObjectKey::of(ev.object().as_ref()));
        }
    });
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
    .single_worker()
}

/// An IPv4 CIDR as (network address, prefix length).
pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, len))
}

fn format_cidr(net: u32, len: u8) -> String {
    format!("{}/{len}", Ipv4Addr::from(net))
}

/// The first `/mask` range of `cluster` not in `used`.
pub fn first_free(cluster: (u32, u8), mask: u8, used: &[(u32, u8)]) -> Option<String> {
    let (base, len) = cluster;
    if mask < len || mask > 32 {
        return None;
    }
    let count = 1u64 << (mask - len);
    let size = 1u64 << (32 - mask);
    (0..count)
        .map(|i| (base as u64 + i * size) as u32)
        .find(|net| {
            used.iter().all(|(u, ulen)| {
                // Overlap: either range contains the other's network address.
                let l = (*ulen).min(mask);
                let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                (u & m) != (net & m)
            })
        })
        .map(|net| format_cidr(net, mask))
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let Some(node) = ctx.nodes.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    let has = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty());
    let nodes = ctx.nodes.cache().list();
    let mut pending = ctx
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // Forget hand-outs the cache has caught up with, or whose node is gone.
    pending.retain(|name, cidr| {
        nodes.iter().any(|n| {
            util::name(n.meta()) == name
                && n.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) != Some(cidr.as_str())
        })
    });
    *ctx.pending.lock().unwrap_or_else(|e| e.into_inner()) = pending.clone();
    if has || node.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let settings = &ctx.shared.settings;
    let Some(cluster) = parse_cidr(&settings.cluster_cidr) else {
        tracing::error!(cidr = %settings.cluster_cidr, "invalid cluster CIDR; not allocating pod CIDRs");
        return Ok(Action::await_change());
    };
    let used: Vec<(u32, u8)> = nodes
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref().and_then(parse_cidr))
        .chain(pending.values().filter_map(|c| parse_cidr(c)))
        .collect();
    let Some(cidr) = first_free(cluster, settings.node_cidr_mask_size, &used) else {
        ctx.shared.event(
            node.as_ref(),
            EventType::Warning,
            "CIDRNotAvailable",
            format!("Node {} status is now: CIDRNotAvailable", key.name),
        );
        return Ok(Action::requeue(std::time::Duration::from_secs(30)));
    };
    let mut updated = (*node).clone();
    let spec = updated.spec.get_or_insert_with(Default::default);
    spec.pod_cidr = Some(cidr.clone());
    spec.pod_cid_rs = vec![cidr.clone()];
    match ctx.shared.client.update("", &key.name, &updated).await {
        Ok(_) => {
            ctx.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.name.clone(), cidr.clone());
            ctx.shared.event(
                node.as_ref(),
                EventType::Normal,
                "CIDRAssignmentSucceeded",
                format!("Node {} got pod CIDR {cidr}", key.name),
            );
            Ok(Action::await_change())
        }
        Err(e) if e.reason == Reason::NotFound => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_cut_in_order_and_never_overlap() {
        let cluster = parse_cidr("10.244.0.0/16").unwrap();
        assert_eq!(
            first_free(cluster, 24, &[]).as_deref(),
            Some("10.244.0.0/24")
        );
        let used = [
            parse_cidr("10.244.0.0/24").unwrap(),
            parse_cidr("10.244.2.0/24").unwrap(),
        ];
        assert_eq!(
            first_free(cluster, 24, &used).as_deref(),
            Some("10.244.1.0/24")
        );
        // A wider range in use blocks everything inside it.
        let used = [parse_cidr("10.244.0.0/23").unwrap()];
        assert_eq!(
            first_free(cluster, 24, &used).as_deref(),
            Some("10.244.2.0/24")
        );
        let tiny = parse_cidr("10.0.0.0/30").unwrap();
        let used = [
            parse_cidr("10.0.0.0/31").unwrap(),
            parse_cidr("10.0.0.2/31").unwrap(),
        ];
        assert_eq!(first_free(tiny, 31, &used), None);
    }
}
