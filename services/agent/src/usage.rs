//! Resource usage reports: every metrics interval the agent reads the cumulative CPU time and
//! the memory working set of each running container (from its cgroup, through the runtime)
//! and of the node (`/proc`), turns CPU time into a rate over the interval, and sends the
//! result to the gateway (`ReportResourceUsage`), which serves it as `metrics.k8s.io`
//! NodeMetrics and PodMetrics (`kubectl top`, the HorizontalPodAutoscaler). This is the
//! kubelet's resource metrics endpoint and metrics-server's scrape in one push.
//!
//! A container needs two samples before it has a rate, so a pod shows up one interval after
//! its containers start; a pod is reported only when all of its running containers have a
//! rate (as metrics-server drops pods with incomplete metrics).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use navarch_api::core::v1::Node;
use navarch_api::gateway::v1::ResourceUsageReport;
use navarch_api::meta::v1::{ObjectMeta, Quantity};
use navarch_api::metrics::v1beta1::{ContainerMetrics, NodeMetrics, PodMetrics};
use navarch_gateway::Client;
use tokio::sync::watch;

use crate::runtime::ContainerRuntime;
use crate::worker::record::RecordStore;
use crate::worker::state::PodLifecycle;

/// Pod UID → the pod's labels (kept by the pod manager).
pub type PodLabels = Arc<RwLock<HashMap<String, BTreeMap<String, String>>>>;

/// One cumulative CPU reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuSample {
    pub at: Instant,
    pub cpu_nanos: u64,
}

/// The CPU rate between two readings, in nanocores (`None` when time did not move or the
/// counter went backwards, e.g. a restarted container reusing an ID).
pub fn nanocores(prev: CpuSample, now: CpuSample) -> Option<u64> {
    let dt = now.at.checked_duration_since(prev.at)?.as_nanos();
    if dt == 0 || now.cpu_nanos < prev.cpu_nanos {
        return None;
    }
    Some(((now.cpu_nanos - prev.cpu_nanos) as u128 * 1_000_000_000 / dt) as u64)
}

/// A Go duration string for a window (`10s`, `10.013s`), as metrics-server writes it.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", s.trim_end_matches('0'))
    }
}

/// `cpu` in nanocores and `memory` in KiB, the units metrics-server reports.
pub fn usage_map(nanocores: u64, memory_bytes: u64) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        (
            "cpu".to_string(),
            Quantity {
                value: format!("{nanocores}n"),
            },
        ),
        (
            "memory".to_string(),
            Quantity {
                value: format!("{}Ki", memory_bytes / 1024),
            },
        ),
    ])
}

/// Busy CPU time of the whole machine (ns) from the first line of `/proc/stat`: everything
/// but idle and iowait.
pub fn parse_proc_stat_busy(text: &str, ticks_per_second: u64) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy * 1_000_000_000 / ticks_per_second.max(1))
}

/// The machine's memory working set (bytes) from `/proc/meminfo`: total minus available.
pub fn parse_meminfo_working_set(text: &str) -> Option<u64> {
    let kib = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((kib("MemTotal:")? - kib("MemAvailable:")?) * 1024)
}

fn node_sample() -> Option<(CpuSample, u64)> {
    let ticks = rustix::param::clock_ticks_per_second();
    let cpu = parse_proc_stat_busy(&std::fs::read_to_string("/proc/stat").ok()?, ticks)?;
    let mem = parse_meminfo_working_set(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
    Some((
        CpuSample {
            at: Instant::now(),
            cpu_nanos: cpu,
        },
        mem,
    ))
}

/// Collects and reports this node's usage.
pub struct UsageReporter {
    pub client: Client,
    pub node_name: String,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub records: RecordStore,
    pub labels: PodLabels,
    pub interval: Duration,
}

impl UsageReporter {
    /// Reports every interval until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut containers: HashMap<String, CpuSample> = HashMap::new();
        let mut node: Option<CpuSample> = None;
        let mut last = Instant::now();
        loop {
            let now = Instant::now();
            let window = now.duration_since(last);
            last = now;
            let report = self.collect(&mut containers, &mut node, window).await;
            if let Some(report) = report {
                let pods = report.pods.len();
                match self.client.report_resource_usage(report).await {
                    Ok(()) => tracing::debug!(node = %self.node_name, pods, "usage reported"),
                    Err(error) => {
                        tracing::debug!(node = %self.node_name, %error, "usage report failed")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn collect(
        &self,
        containers: &mut HashMap<String, CpuSample>,
        node: &mut Option<CpuSample>,
        window: Duration,
    ) -> Option<ResourceUsageReport> {
        let timestamp = crate::runtime::now_rfc3339();
        let window = go_duration(window);
        let (node_cpu, node_mem) = node_sample()?;
        let node_rate = node.and_then(|prev| nanocores(prev, node_cpu));
        *node = Some(node_cpu);
        let mut seen = HashMap::new();
        let mut pods = Vec::new();
        let labels = self
            .labels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for record in self.records.load_all() {
            if !matches!(
                record.lifecycle,
                PodLifecycle::Running | PodLifecycle::Terminating
            ) {
                continue;
            }
            let mut metrics = Vec::new();
            let mut complete = true;
            for c in &record.containers {
                let Some(id) = &c.id else { continue };
                let Ok(stats) = self.runtime.container_stats(id).await else {
                    continue;
                };
                if stats.cpu_usage_nanos == 0 && stats.memory_working_set_bytes == 0 {
                    // Not running (exited, or not started yet).
                    continue;
                }
                let sample = CpuSample {
                    at: Instant::now(),
                    cpu_nanos: stats.cpu_usage_nanos,
                };
                let rate = containers.get(id).and_then(|prev| nanocores(*prev, sample));
                seen.insert(id.clone(), sample);
                match rate {
                    Some(rate) => metrics.push(ContainerMetrics {
                        name: Some(c.name.clone()),
                        usage: usage_map(rate, stats.memory_working_set_bytes),
                    }),
                    None => complete = false,
                }
            }
            if !complete || metrics.is_empty() {
                continue;
            }
            pods.push(PodMetrics {
                metadata: Some(ObjectMeta {
                    namespace: Some(record.namespace.clone()),
                    name: Some(record.name.clone()),
                    labels: labels.get(&record.uid).cloned().unwrap_or_default(),
                    ..Default::default()
                }),
                timestamp: Some(timestamp.clone()),
                window: Some(window.clone()),
                containers: metrics,
                ..Default::default()
            });
        }
        *containers = seen;
        let node_rate = node_rate?;
        let node_labels = match self.client.get::<Node>("", &self.node_name).await {
            Ok(n) => n.metadata.map(|m| m.labels).unwrap_or_default(),
            Err(_) => Default::default(),
        };
        Some(ResourceUsageReport {
            node: Some(NodeMetrics {
                metadata: Some(ObjectMeta {
                    name: Some(self.node_name.clone()),
                    labels: node_labels,
                    ..Default::default()
                }),
                timestamp: Some(timestamp),
                window: Some(window),
                usage: usage_map(node_rate, node_mem),
                ..Default::default()
            }),
            pods,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_is_nanoseconds_of_cpu_per_second() {
        let t0 = Instant::now();
        let a = CpuSample {
            at: t0,
            cpu_nanos: 1_000_000_000,
        };
        let b = CpuSample {
            at: t0 + Duration::from_secs(2),
            cpu_nanos: 2_000_000_000,
        };
        // One CPU-second over two seconds: half a core.
        assert_eq!(nanocores(a, b), Some(500_000_000));
        // A counter that went backwards (a new instance) has no rate.
        assert_eq!(nanocores(b, a), None);
        assert_eq!(nanocores(a, a), None);
    }

    #[test]
    fn windows_read_like_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(10_013)), "10.013s");
        assert_eq!(go_duration(Duration::from_millis(10_500)), "10.5s");
    }

    #[test]
    fn usage_is_in_nanocores_and_kibibytes() {
        let u = usage_map(123_456_789, 10 * 1024 * 1024);
        assert_eq!(u["cpu"].value, "123456789n");
        assert_eq!(u["memory"].value, "10240Ki");
    }

    #[test]
    fn node_usage_from_proc() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        // (100 + 5 + 50 + 3 + 2 + 0) ticks at 100 Hz = 1.6 s.
        assert_eq!(parse_proc_stat_busy(stat, 100), Some(1_600_000_000));
        let meminfo =
            "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(parse_meminfo_working_set(meminfo), Some(10_000 * 1024));
        assert_eq!(parse_meminfo_working_set("MemTotal: 1 kB\n"), None);
    }
}
