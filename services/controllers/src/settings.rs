//! The controller-manager's tunables (kube-controller-manager's flags), with Kubernetes'
//! defaults; tests shorten the timings.

use std::time::Duration;

/// Tunables shared by the loops.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Concurrent reconciles per loop (`--concurrent-*-syncs`).
    pub workers: usize,
    /// First delay before a crashed loop is restarted; doubles per consecutive crash.
    pub restart_backoff: Duration,
    /// Longest delay before a crashed loop is restarted.
    pub restart_backoff_max: Duration,
    /// A node whose Lease (or Ready heartbeat) is older than this is `Ready=Unknown`
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked (`--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// How long pods tolerate the `not-ready` NoExecute taint when they do not say (the
    /// `DefaultTolerationSeconds` admission plugin's 300 s,
    /// `--default-not-ready-toleration-seconds`).
    pub default_not_ready_toleration_seconds: i64,
    /// The same for the `unreachable` taint (`--default-unreachable-toleration-seconds`).
    pub default_unreachable_toleration_seconds: i64,
    /// First delay before a Job recreates a pod after a failure; doubles per failure.
    pub job_backoff: Duration,
    /// Longest delay before a Job recreates a failed pod.
    pub job_backoff_max: Duration,
    /// Range node pod CIDRs are cut from (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    /// How long an unobserved create/delete blocks its owner (expectations).
    pub expectations_timeout: Duration,
    /// How often each HPA is evaluated (`--horizontal-pod-autoscaler-sync-period`).
    pub hpa_sync_period: Duration,
    /// How far back a scale-down looks for higher recommendations when the HPA's behavior
    /// does not say (`--horizontal-pod-autoscaler-downscale-stabilization`).
    pub hpa_downscale_stabilization: Duration,
    /// Usage ratios this close to 1 change nothing (`--horizontal-pod-autoscaler-tolerance`).
    pub hpa_tolerance: f64,
    /// After a pod starts, how long its CPU counts only once it is ready
    /// (`--horizontal-pod-autoscaler-cpu-initialization-period`).
    pub hpa_cpu_initialization_period: Duration,
    /// How long after start a not-ready pod is still taken as "becoming ready"
    /// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
    pub hpa_initial_readiness_delay: Duration,
    /// The cluster CA (PEM) published in every namespace as the `kube-root-ca.crt`
    /// ConfigMap (`--root-ca-file`); empty publishes nothing.
    pub root_ca_pem: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            workers: 4,
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(30),
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            job_backoff: Duration::from_secs(10),
            job_backoff_max: Duration::from_secs(360),
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            expectations_timeout: Duration::from_secs(300),
            hpa_sync_period: Duration::from_secs(15),
            hpa_downscale_stabilization: Duration::from_secs(300),
            hpa_tolerance: 0.1,
            hpa_cpu_initialization_period: Duration::from_secs(300),
            hpa_initial_readiness_delay: Duration::from_secs(30),
            root_ca_pem: String::new(),
        }
    }
}
