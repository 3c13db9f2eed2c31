//! The resource metrics API (`metrics.k8s.io/v1beta1`), served from memory as metrics-server
//! does: each agent reports its node's and pods' usage every metrics interval
//! (`ReportResourceUsage`), the latest report of each node is kept, and `NodeMetrics` /
//! `PodMetrics` are answered from those reports. Nothing is written to the store per sample;
//! a node that stops reporting drops out once its report is older than the expiry.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use navarch_api::ApiError;
use navarch_api::kinds::KindInfo;
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::metrics::v1beta1::{NodeMetrics, PodMetrics};
use navarch_api::{Object, kinds};

use crate::filter::Filter;

/// How long a node's report is served after it arrived (metrics-server keeps a scrape for
/// about two resolutions; agents report every 10 s by default).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(60);

struct NodeReport {
    received: Instant,
    node: NodeMetrics,
    pods: Vec<PodMetrics>,
}

/// The latest usage report of every node.
pub struct ResourceMetrics {
    reports: RwLock<HashMap<String, NodeReport>>,
    expiry: Duration,
}

impl Default for ResourceMetrics {
    fn default() -> Self {
        Self::new(DEFAULT_EXPIRY)
    }
}

fn name_of(meta: Option<&ObjectMeta>) -> &str {
    meta.and_then(|m| m.name.as_deref()).unwrap_or_default()
}

fn namespace_of(meta: Option<&ObjectMeta>) -> &str {
    meta.and_then(|m| m.namespace.as_deref())
        .unwrap_or_default()
}

fn node_kind() -> &'static KindInfo {
    kinds::of::<NodeMetrics>().expect("NodeMetrics is a served kind")
}

fn pod_kind() -> &'static KindInfo {
    kinds::of::<PodMetrics>().expect("PodMetrics is a served kind")
}

impl ResourceMetrics {
    pub fn new(expiry: Duration) -> Self {
        Self {
            reports: RwLock::new(HashMap::new()),
            expiry,
        }
    }

    /// Replaces `node`'s report. The objects get their type meta and a creation timestamp
    /// (metrics-server sets it to the time of the request; the report time is as good).
    pub fn report(&self, node: String, mut usage: NodeMetrics, mut pods: Vec<PodMetrics>) {
        let stamp = usage.timestamp.clone();
        let fill = |meta: &mut Option<ObjectMeta>| {
            let m = meta.get_or_insert_with(Default::default);
            m.creation_timestamp = stamp.clone();
        };
        usage.api_version = Some("metrics.k8s.io/v1beta1".into());
        usage.kind = Some("NodeMetrics".into());
        fill(&mut usage.metadata);
        if let Some(m) = usage.metadata.as_mut() {
            m.name = Some(node.clone());
            m.namespace = None;
        }
        for p in &mut pods {
            p.api_version = Some("metrics.k8s.io/v1beta1".into());
            p.kind = Some("PodMetrics".into());
            fill(&mut p.metadata);
        }
        let mut reports = self.reports.write().unwrap_or_else(|e| e.into_inner());
        reports.insert(
            node,
            NodeReport {
                received: Instant::now(),
                node: usage,
                pods,
            },
        );
    }

    /// Runs `f` over the reports younger than the expiry.
    fn fresh<R>(&self, f: impl FnOnce(Box<dyn Iterator<Item = &NodeReport> + '_>) -> R) -> R {
        let reports = self.reports.read().unwrap_or_else(|e| e.into_inner());
        let expiry = self.expiry;
        f(Box::new(
            reports
                .values()
                .filter(move |r| r.received.elapsed() <= expiry),
        ))
    }

    /// The NodeMetrics or PodMetrics named `name` (in `namespace`, for pods).
    pub fn get(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Object, ApiError> {
        let found = if std::ptr::eq(kind, node_kind()) {
            self.fresh(|mut it| {
                it.find(|r| name_of(r.node.metadata.as_ref()) == name)
                    .map(|r| Object::from_typed(&r.node))
            })
        } else {
            self.fresh(|it| {
                it.flat_map(|r| r.pods.iter())
                    .find(|p| {
                        name_of(p.metadata.as_ref()) == name
                            && namespace_of(p.metadata.as_ref()) == namespace
                    })
                    .map(Object::from_typed)
            })
        };
        match found {
            Some(obj) => obj,
            None => Err(ApiError::not_found(&kind.group_resource(), name)),
        }
    }

    /// Every NodeMetrics or PodMetrics passing `filter`, sorted by namespace and name.
    pub fn list(&self, kind: &'static KindInfo, filter: &Filter) -> Result<Vec<Object>, ApiError> {
        let objects: Vec<Object> = if std::ptr::eq(kind, node_kind()) {
            self.fresh(|it| {
                it.map(|r| Object::from_typed(&r.node))
                    .collect::<Result<_, _>>()
            })?
        } else {
            debug_assert!(std::ptr::eq(kind, pod_kind()));
            self.fresh(|it| {
                it.flat_map(|r| r.pods.iter())
                    .map(Object::from_typed)
                    .collect::<Result<_, _>>()
            })?
        };
        let mut out: Vec<Object> = objects.into_iter().filter(|o| filter.matches(o)).collect();
        out.sort_by_key(|o| (o.namespace(), o.name()));
        Ok(out)
    }
}

/// Whether `kind` is one of the metrics.k8s.io kinds this module serves.
pub fn serves(kind: &KindInfo) -> bool {
    kind.group == "metrics.k8s.io"
}

#[cfg(test)]
mod tests {
    use super::*;
    use navarch_api::meta::v1::Quantity;
    use navarch_api::metrics::v1beta1::ContainerMetrics;

    fn usage(cpu: &str, mem: &str) -> std::collections::BTreeMap<String, Quantity> {
        [("cpu", cpu), ("memory", mem)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity { value: v.into() }))
            .collect()
    }

    fn pod(ns: &str, name: &str, app: &str) -> PodMetrics {
        PodMetrics {
            metadata: Some(ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            }),
            timestamp: Some("2026-12-06T10:00:00Z".into()),
            window: Some("10s".into()),
            containers: vec![ContainerMetrics {
                name: Some("c".into()),
                usage: usage("5m", "1Mi"),
            }],
            ..Default::default()
        }
    }

    fn node(name: &str) -> NodeMetrics {
        NodeMetrics {
            metadata: Some(ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            }),
            timestamp: Some("2026-12-06T10:00:00Z".into()),
            window: Some("10s".into()),
            usage: usage("250m", "100Mi"),
            ..Default::default()
        }
    }

    #[test]
    fn serves_the_latest_report_per_node_filtered_by_namespace_and_labels() {
        let m = ResourceMetrics::default();
        m.report("a".into(), node("a"), vec![pod("ns1", "p1", "web")]);
        m.report(
            "b".into(),
            node("b"),
            vec![pod("ns1", "p2", "db"), pod("ns2", "p3", "web")],
        );
        // A newer report replaces the node's pods.
        m.report(
            "a".into(),
            node("a"),
            vec![pod("ns1", "p1", "web"), pod("ns1", "p4", "web")],
        );
        let nodes = m
            .list(node_kind(), &Filter::new(node_kind(), "", "", "").unwrap())
            .unwrap();
        assert_eq!(
            nodes.iter().map(Object::name).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(nodes[0].to_json()["kind"], "NodeMetrics");
        assert_eq!(nodes[0].to_json()["usage"]["cpu"], "250m");
        assert_eq!(
            nodes[0].to_json()["metadata"]["creationTimestamp"],
            "2026-12-06T10:00:00Z"
        );
        let web = m
            .list(
                pod_kind(),
                &Filter::new(pod_kind(), "ns1", "app=web", "").unwrap(),
            )
            .unwrap();
        assert_eq!(
            web.iter().map(Object::name).collect::<Vec<_>>(),
            ["p1", "p4"]
        );
        let all = m
            .list(pod_kind(), &Filter::new(pod_kind(), "", "", "").unwrap())
            .unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(m.get(pod_kind(), "ns2", "p3").unwrap().name(), "p3");
        let missing = m.get(pod_kind(), "ns1", "p3").unwrap_err();
        assert_eq!(missing.code(), 404);
        assert_eq!(m.get(node_kind(), "", "b").unwrap().name(), "b");
    }

    #[test]
    fn a_node_that_stops_reporting_drops_out() {
        let m = ResourceMetrics::new(Duration::from_millis(50));
        m.report("a".into(), node("a"), vec![pod("ns1", "p1", "web")]);
        assert!(m.get(node_kind(), "", "a").is_ok());
        std::thread::sleep(Duration::from_millis(80));
        assert!(m.get(node_kind(), "", "a").is_err());
        let f = Filter::new(pod_kind(), "", "", "").unwrap();
        assert!(m.list(pod_kind(), &f).unwrap().is_empty());
    }
}
