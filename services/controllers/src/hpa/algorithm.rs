//! The HorizontalPodAutoscaler's arithmetic, as pure functions, after Kubernetes'
//! `pkg/controller/podautoscaler` (`replica_calculator.go` and the behavior code of
//! `horizontal.go`):
//!
//! 1. [`resource_replicas`]: from per-pod usage and requests, the replica count that brings
//!    utilization to the target: `ceil(ready pods × usage ratio)`, nothing within the 10 %
//!    tolerance; pods without metrics count as 100 % on a scale-down and 0 % on a scale-up,
//!    not-yet-ready pods as 0 % on a scale-up, and if filling them in flips or cancels the
//!    direction, nothing changes.
//! 2. [`Stabilizer`]: the stabilization windows — a scale-down goes only as low as the highest
//!    recommendation of the window (default 300 s), a scale-up only as high as the lowest.
//! 3. [`rate_limit`]: the scaling policies (Pods / Percent per period, `selectPolicy`
//!    Max / Min / Disabled) against the scale events of the recent past, then `minReplicas` /
//!    `maxReplicas`; it says which limit applied (the `ScalingLimited` condition).

use std::time::Duration;

use navarch_api::autoscaling::v2::{HorizontalPodAutoscalerBehavior, HpaScalingRules};

/// Kubernetes' default `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;

/// One pod as the replica calculation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSample {
    /// Current usage (millicores for CPU, bytes for memory); `None`: no metrics yet.
    pub usage: Option<i64>,
    /// The pod's request for the resource (sum over its containers).
    pub request: i64,
    /// Ready, and past its initialization period (only CPU treats unready pods specially).
    pub ready: bool,
}

/// What the metric is compared with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests (`averageUtilization`).
    Utilization(i32),
    /// Absolute usage per pod (`averageValue`, in the metric's unit).
    AverageValue(i64),
}

/// The outcome of a replica calculation.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub replicas: i32,
    /// Current average utilization in percent of requests (for `Utilization` targets).
    pub utilization: Option<i32>,
    /// Current average usage per pod with metrics.
    pub average_value: i64,
}

/// Why no recommendation could be made (the `ScalingActive=False` condition).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("no metrics returned from resource metrics API")]
    NoMetrics,
    #[error("missing request for resource on {0} pod(s)")]
    MissingRequests(usize),
}

/// `ceil(x)` of a ratio times a count, as Kubernetes computes it.
fn ceil_times(ratio: f64, count: usize) -> i32 {
    (ratio * count as f64).ceil() as i32
}

/// The replicas that bring the pods' usage to `target` (`GetResourceReplicas` /
/// `GetRawResourceReplicas`). `cpu`: unready pods count as 0 % on a scale-up (for memory they
/// count with their usage, as in Kubernetes).
pub fn resource_replicas(
    current_replicas: i32,
    pods: &[PodSample],
    target: Target,
    cpu: bool,
    tolerance: f64,
) -> Result<Recommendation, CalcError> {
    if pods.is_empty() || pods.iter().all(|p| p.usage.is_none()) {
        return Err(CalcError::NoMetrics);
    }
    let mut counted = Vec::new(); // (usage, request) of pods with metrics, ready or not unready-CPU
    let mut unready = Vec::new();
    let mut missing = Vec::new();
    for p in pods {
        match p.usage {
            None => missing.push(p),
            Some(_) if cpu && !p.ready => unready.push(p),
            Some(u) => counted.push((u, p.request)),
        }
    }
    if counted.is_empty() {
        // Only unready pods have metrics: nothing to base a scale-up on.
        return Err(CalcError::NoMetrics);
    }
    let ratio_of = |samples: &[(i64, i64)]| -> Result<(f64, Option<i32>, i64), CalcError> {
        let usage: i64 = samples.iter().map(|(u, _)| *u).sum();
        let average = usage / samples.len() as i64;
        match target {
            Target::Utilization(pct) => {
                let missing_requests = samples.iter().filter(|(_, r)| *r <= 0).count();
                if missing_requests > 0 {
                    return Err(CalcError::MissingRequests(missing_requests));
                }
                let requests: i64 = samples.iter().map(|(_, r)| *r).sum();
                let utilization = usage as f64 * 100.0 / requests as f64;
                Ok((
                    utilization / f64::from(pct.max(1)),
                    Some(utilization as i32),
                    average,
                ))
            }
            Target::AverageValue(value) => {
                Ok((average as f64 / value.max(1) as f64, None, average))
            }
        }
    };
    let (ratio, utilization, average_value) = ratio_of(&counted)?;
    let within = |r: f64| (1.0 - r).abs() <= tolerance;
    let result = |replicas| Recommendation {
        replicas,
        utilization,
        average_value,
    };
    if missing.is_empty() && unready.is_empty() {
        if within(ratio) {
            return Ok(result(current_replicas));
        }
        return Ok(result(ceil_times(ratio, counted.len())));
    }
    // Fill in the pods we could not count, the way that argues against the move.
    let mut filled = counted.clone();
    // On a scale-down a pod without metrics counts as using all of its request (or the
    // target, for targets above 100 %); for average-value targets, as using the target.
    let full = |p: &PodSample| match target {
        Target::Utilization(pct) => p.request * i64::from(pct.max(100)) / 100,
        Target::AverageValue(v) => v,
    };
    if ratio < 1.0 {
        filled.extend(missing.iter().map(|p| (full(p), p.request)));
    } else if ratio > 1.0 {
        filled.extend(missing.iter().map(|p| (0, p.request)));
    }
    if ratio > 1.0 {
        filled.extend(unready.iter().map(|p| (0, p.request)));
    }
    let (new_ratio, _, _) = ratio_of(&filled)?;
    if within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok(result(current_replicas));
    }
    let replicas = ceil_times(new_ratio, filled.len());
    if (new_ratio < 1.0 && replicas > current_replicas)
        || (new_ratio > 1.0 && replicas < current_replicas)
    {
        return Ok(result(current_replicas));
    }
    Ok(result(replicas))
}

/// How one direction may change (autoscaling/v2 `HPAScalingRules`, defaults filled in).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// The tolerance for this direction (`tolerance`, Kubernetes 1.33+); default [`TOLERANCE`].
    pub tolerance: f64,
    pub stabilization: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// At most this many pods per period.
    Pods { value: i32, period: Duration },
    /// At most this percentage of the replicas at the period's start per period.
    Percent { value: i32, period: Duration },
}

impl Policy {
    fn period(&self) -> Duration {
        match *self {
            Policy::Pods { period, .. } | Policy::Percent { period, .. } => period,
        }
    }
}

/// Both directions.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

impl Default for Behavior {
    /// Kubernetes' defaults: up at once by max(4 pods, 100 %) per 15 s; down by up to 100 %
    /// per 15 s after a 300 s stabilization window.
    fn default() -> Self {
        let s15 = Duration::from_secs(15);
        Self {
            scale_up: Rules {
                tolerance: TOLERANCE,
                stabilization: Duration::ZERO,
                select: Select::Max,
                policies: vec![
                    Policy::Pods {
                        value: 4,
                        period: s15,
                    },
                    Policy::Percent {
                        value: 100,
                        period: s15,
                    },
                ],
            },
            scale_down: Rules {
                tolerance: TOLERANCE,
                stabilization: Duration::from_secs(300),
                select: Select::Max,
                policies: vec![Policy::Percent {
                    value: 100,
                    period: s15,
                }],
            },
        }
    }
}

impl Behavior {
    /// The tolerance that applies to a usage ratio: the scale-up one above 1, else scale-down's.
    pub fn tolerance_for(&self, ratio: f64) -> f64 {
        if ratio > 1.0 {
            self.scale_up.tolerance
        } else {
            self.scale_down.tolerance
        }
    }

    /// The spec's `behavior`, each unset part taken from the defaults.
    pub fn from_spec(spec: Option<&HorizontalPodAutoscalerBehavior>) -> Self {
        let defaults = Self::default();
        let Some(spec) = spec else {
            return defaults;
        };
        Self {
            scale_up: rules(spec.scale_up.as_ref(), defaults.scale_up),
            scale_down: rules(spec.scale_down.as_ref(), defaults.scale_down),
        }
    }
}

fn rules(spec: Option<&HpaScalingRules>, default: Rules) -> Rules {
    let Some(spec) = spec else {
        return default;
    };
    let policies: Vec<Policy> = spec
        .policies
        .iter()
        .filter_map(|p| {
            let value = p.value?;
            let period = Duration::from_secs(u64::try_from(p.period_seconds?).ok()?);
            match p.r#type.as_deref()? {
                "Pods" => Some(Policy::Pods { value, period }),
                "Percent" => Some(Policy::Percent { value, period }),
                _ => None,
            }
        })
        .collect();
    let tolerance = spec
        .tolerance
        .as_ref()
        .and_then(|q| q.value.parse::<navarch_api::quantity::Quantity>().ok())
        .map(|q| q.nanos() as f64 / 1e9)
        .filter(|t| *t >= 0.0)
        .unwrap_or(default.tolerance);
    Rules {
        tolerance,
        stabilization: spec
            .stabilization_window_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(default.stabilization),
        select: match spec.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            Some("Max") => Select::Max,
            _ => default.select,
        },
        policies: if policies.is_empty() {
            default.policies
        } else {
            policies
        },
    }
}

/// Recommendations of the recent past, for the stabilization windows (per HPA).
#[derive(Clone, Debug, Default)]
pub struct Stabilizer {
    /// (seconds since an arbitrary epoch, recommendation)
    history: Vec<(f64, i32)>,
}

impl Stabilizer {
    /// Records `desired` at `now` and returns the stabilized recommendation
    /// (`stabilizeRecommendationWithBehaviors`): never above the lowest recommendation of the
    /// scale-up window, never below the highest of the scale-down window, starting from
    /// `current`.
    pub fn stabilize(&mut self, now: f64, current: i32, desired: i32, behavior: &Behavior) -> i32 {
        let up_cutoff = now - behavior.scale_up.stabilization.as_secs_f64();
        let down_cutoff = now - behavior.scale_down.stabilization.as_secs_f64();
        let mut up = desired;
        let mut down = desired;
        for &(at, rec) in &self.history {
            if at > up_cutoff {
                up = up.min(rec);
            }
            if at > down_cutoff {
                down = down.max(rec);
            }
        }
        let keep = now
            - behavior
                .scale_up
                .stabilization
                .max(behavior.scale_down.stabilization)
                .as_secs_f64();
        self.history.retain(|&(at, _)| at > keep);
        self.history.push((now, desired));
        current.max(up).min(down)
    }
}

/// A scale change that happened (`replicas` added or removed) at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleEvent {
    pub at: f64,
    pub change: i32,
}

/// Which limit shaped the result (`ScalingLimited`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    None,
    ScaleUpLimit,
    ScaleDownLimit,
    TooFewReplicas,
    TooManyReplicas,
}

impl Limit {
    /// The condition's reason and message, as Kubernetes words them.
    pub fn condition(&self) -> (&'static str, &'static str) {
        match self {
            Limit::None => (
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
            ),
            Limit::ScaleUpLimit => (
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            ),
            Limit::ScaleDownLimit => (
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            ),
            Limit::TooFewReplicas => (
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            ),
            Limit::TooManyReplicas => (
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            ),
        }
    }
}

/// Replicas changed within `period` before `now`.
fn changed_in(period: Duration, events: &[ScaleEvent], now: f64) -> i32 {
    let cutoff = now - period.as_secs_f64();
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// The most replicas the scale-up policies allow now.
fn scale_up_limit(current: i32, up: &[ScaleEvent], rules: &Rules, now: f64) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current - changed_in(p.period(), up, now);
        match *p {
            Policy::Pods { value, .. } => start + value,
            Policy::Percent { value, .. } => {
                (f64::from(start) * (1.0 + f64::from(value) / 100.0)).ceil() as i32
            }
        }
    });
    match rules.select {
        Select::Disabled => current,
        Select::Min => proposals.min().unwrap_or(current),
        Select::Max => proposals.max().unwrap_or(current),
    }
}

/// The fewest replicas the scale-down policies allow now.
fn scale_down_limit(current: i32, down: &[ScaleEvent], rules: &Rules, now: f64) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current + changed_in(p.period(), down, now);
        match *p {
            Policy::Pods { value, .. } => start - value,
            Policy::Percent { value, .. } => {
                (f64::from(start) * (1.0 - f64::from(value) / 100.0)) as i32
            }
        }
    });
    match rules.select {
        Select::Disabled => current,
        // The least change: the highest floor.
        Select::Min => proposals.max().unwrap_or(current),
        Select::Max => proposals.min().unwrap_or(current),
    }
}

/// Applies the scaling policies and `min`/`max` to a stabilized recommendation
/// (`convertDesiredReplicasWithBehaviorRate`). `up`/`down`: the scale events of the recent
/// past (`change` as a positive count in both lists).
pub fn rate_limit(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    behavior: &Behavior,
    up: &[ScaleEvent],
    down: &[ScaleEvent],
    now: f64,
) -> (i32, Limit) {
    let (mut result, mut limit) = (desired, Limit::None);
    if desired > current {
        let ceiling = scale_up_limit(current, up, &behavior.scale_up, now).max(current);
        if ceiling < max && desired > ceiling {
            (result, limit) = (ceiling, Limit::ScaleUpLimit);
        } else if desired > max {
            (result, limit) = (max, Limit::TooManyReplicas);
        }
    } else if desired < current {
        let floor = scale_down_limit(current, down, &behavior.scale_down, now).min(current);
        if floor > min && desired < floor {
            (result, limit) = (floor, Limit::ScaleDownLimit);
        } else if desired < min {
            (result, limit) = (min, Limit::TooFewReplicas);
        }
    }
    if result < min {
        (result, limit) = (min, Limit::TooFewReplicas);
    } else if result > max {
        (result, limit) = (max, Limit::TooManyReplicas);
    }
    (result, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(usage: i64, request: i64) -> PodSample {
        PodSample {
            usage: Some(usage),
            request,
            ready: true,
        }
    }

    fn unready(usage: i64, request: i64) -> PodSample {
        PodSample {
            usage: Some(usage),
            request,
            ready: false,
        }
    }

    fn missing(request: i64) -> PodSample {
        PodSample {
            usage: None,
            request,
            ready: true,
        }
    }

    #[test]
    fn table_of_replica_calculations() {
        // (case, current, pods, target, want replicas)
        let cases: Vec<(&str, i32, Vec<PodSample>, Target, i32)> = vec![
            (
                "docs example: 200m used of a 100m target → double",
                1,
                vec![ready(200, 100)],
                Target::Utilization(100),
                2,
            ),
            (
                "3 pods at 90 % of requests, target 30 % → 9",
                3,
                vec![ready(90, 100), ready(90, 100), ready(90, 100)],
                Target::Utilization(30),
                9,
            ),
            (
                "within tolerance (ratio 1.08): keep",
                4,
                vec![ready(54, 100); 4],
                Target::Utilization(50),
                4,
            ),
            (
                "just outside tolerance (ratio 1.2): ceil(4 × 1.2) = 5",
                4,
                vec![ready(60, 100); 4],
                Target::Utilization(50),
                5,
            ),
            (
                "scale down: 4 pods at 10 % of a 50 % target → 1",
                4,
                vec![ready(10, 100); 4],
                Target::Utilization(50),
                1,
            ),
            (
                "missing metrics on scale-up count as 0 %: 2 at 100 %, 2 missing, target 50 % → 4",
                4,
                vec![ready(100, 100), ready(100, 100), missing(100), missing(100)],
                Target::Utilization(50),
                4,
            ),
            (
                "missing metrics on scale-up count as 0 %: 2 at 150 %, 2 missing → ceil(4×1.5)=6",
                4,
                vec![ready(150, 100), ready(150, 100), missing(100), missing(100)],
                Target::Utilization(50),
                6,
            ),
            (
                "missing metrics on scale-down count as 100 %: no flip to scale-up → keep",
                4,
                vec![ready(10, 100), ready(10, 100), missing(100), missing(100)],
                Target::Utilization(50),
                4,
            ),
            (
                "missing on scale-down, still down: 3 at 0 %, 1 missing (100 %) at target 80 %",
                4,
                vec![ready(0, 100), ready(0, 100), ready(0, 100), missing(100)],
                Target::Utilization(80),
                2,
            ),
            (
                "unready CPU pods count as 0 % on scale-up, not with their 900 %: 4, not 11",
                2,
                vec![ready(200, 100), unready(900, 100)],
                Target::Utilization(50),
                4,
            ),
            (
                "unready pods are ignored on scale-down",
                3,
                vec![ready(10, 100), ready(10, 100), unready(500, 100)],
                Target::Utilization(50),
                1,
            ),
            (
                "average value: 3 pods at 300 (target 100) → 9",
                3,
                vec![ready(300, 0); 3],
                Target::AverageValue(100),
                9,
            ),
        ];
        for (name, current, pods, target, want) in cases {
            let got = resource_replicas(current, &pods, target, true, TOLERANCE)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.replicas, want, "{name}");
        }
    }

    #[test]
    fn no_metrics_and_missing_requests_are_errors() {
        assert_eq!(
            resource_replicas(2, &[missing(100)], Target::Utilization(50), true, TOLERANCE),
            Err(CalcError::NoMetrics)
        );
        assert_eq!(
            resource_replicas(2, &[ready(10, 0)], Target::Utilization(50), true, TOLERANCE),
            Err(CalcError::MissingRequests(1))
        );
        let r =
            resource_replicas(2, &[ready(25, 100)], Target::Utilization(50), true, 0.1).unwrap();
        assert_eq!(r.utilization, Some(25));
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let b = Behavior::default();
        let mut s = Stabilizer::default();
        // High load at t=0 recommends 8; load gone at t=15 recommends 2.
        assert_eq!(s.stabilize(0.0, 4, 8, &b), 8);
        assert_eq!(s.stabilize(15.0, 8, 2, &b), 8, "the window remembers 8");
        assert_eq!(s.stabilize(200.0, 8, 2, &b), 8);
        // 300 s after the last recommendation of 8, it may fall.
        assert_eq!(s.stabilize(301.0, 8, 2, &b), 2);
        // Scale-up has no window by default: at once.
        assert_eq!(s.stabilize(302.0, 2, 6, &b), 6);
    }

    #[test]
    fn scale_up_window_takes_the_lowest_recommendation() {
        let mut b = Behavior::default();
        b.scale_up.stabilization = Duration::from_secs(60);
        let mut s = Stabilizer::default();
        assert_eq!(s.stabilize(0.0, 2, 3, &b), 3);
        assert_eq!(s.stabilize(10.0, 3, 10, &b), 3, "3 is still in the window");
        assert_eq!(s.stabilize(61.0, 3, 10, &b), 10);
    }

    #[test]
    fn table_of_rate_limits() {
        let b = Behavior::default();
        let s15 = Duration::from_secs(15);
        let one_pod_per_minute = Behavior {
            scale_up: Rules {
                tolerance: TOLERANCE,
                stabilization: Duration::ZERO,
                select: Select::Max,
                policies: vec![Policy::Pods {
                    value: 1,
                    period: Duration::from_secs(60),
                }],
            },
            ..Behavior::default()
        };
        let disabled_down = Behavior {
            scale_down: Rules {
                tolerance: TOLERANCE,
                stabilization: Duration::ZERO,
                select: Select::Disabled,
                policies: vec![Policy::Percent {
                    value: 100,
                    period: s15,
                }],
            },
            ..Behavior::default()
        };
        let ev = |at: f64, change: i32| ScaleEvent { at, change };
        // (case, current, desired, min, max, behavior, up events, down events, want)
        type Case<'a> = (
            &'a str,
            i32,
            i32,
            i32,
            i32,
            &'a Behavior,
            Vec<ScaleEvent>,
            Vec<ScaleEvent>,
            (i32, Limit),
        );
        let cases: Vec<Case> = vec![
            (
                "within range",
                3,
                5,
                1,
                10,
                &b,
                vec![],
                vec![],
                (5, Limit::None),
            ),
            (
                "default up: max(4 pods, 100 %) from 1 → 5",
                1,
                20,
                1,
                50,
                &b,
                vec![],
                vec![],
                (5, Limit::ScaleUpLimit),
            ),
            (
                "default up: 100 % from 10 → 20",
                10,
                40,
                1,
                50,
                &b,
                vec![],
                vec![],
                (20, Limit::ScaleUpLimit),
            ),
            (
                "the period's earlier scale-up counts: 10 (was 6 15 s ago) → at most 12",
                10,
                40,
                1,
                50,
                &b,
                vec![ev(95.0, 4)],
                vec![],
                (12, Limit::ScaleUpLimit),
            ),
            (
                "max caps",
                3,
                6,
                1,
                5,
                &b,
                vec![],
                vec![],
                (5, Limit::TooManyReplicas),
            ),
            (
                "min floors",
                3,
                0,
                2,
                5,
                &b,
                vec![],
                vec![],
                (2, Limit::TooFewReplicas),
            ),
            (
                "one pod per minute",
                3,
                9,
                1,
                10,
                &one_pod_per_minute,
                vec![],
                vec![],
                (4, Limit::ScaleUpLimit),
            ),
            (
                "one pod per minute, used already",
                4,
                9,
                1,
                10,
                &one_pod_per_minute,
                vec![ev(70.0, 1)],
                vec![],
                (4, Limit::ScaleUpLimit),
            ),
            (
                "scale-down disabled",
                6,
                2,
                1,
                10,
                &disabled_down,
                vec![],
                vec![],
                (6, Limit::ScaleDownLimit),
            ),
        ];
        for (name, current, desired, min, max, behavior, up, down, want) in cases {
            assert_eq!(
                rate_limit(current, desired, min, max, behavior, &up, &down, 100.0),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn spec_behavior_fills_defaults() {
        use navarch_api::autoscaling::v2::HpaScalingPolicy;
        let spec = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HpaScalingRules {
                stabilization_window_seconds: Some(5),
                select_policy: Some("Min".into()),
                policies: vec![HpaScalingPolicy {
                    r#type: Some("Pods".into()),
                    value: Some(1),
                    period_seconds: Some(30),
                }],
                tolerance: Some(navarch_api::meta::v1::Quantity {
                    value: "50m".into(),
                }),
            }),
            scale_up: None,
        };
        let b = Behavior::from_spec(Some(&spec));
        assert_eq!(b.scale_up, Behavior::default().scale_up);
        assert_eq!(b.scale_down.stabilization, Duration::from_secs(5));
        assert_eq!(b.scale_down.tolerance, 0.05);
        assert_eq!(b.tolerance_for(0.5), 0.05);
        assert_eq!(b.tolerance_for(1.5), TOLERANCE);
        assert_eq!(b.scale_down.select, Select::Min);
        assert_eq!(
            b.scale_down.policies,
            vec![Policy::Pods {
                value: 1,
                period: Duration::from_secs(30)
            }]
        );
    }
}
