//! The HorizontalPodAutoscaler loop (`pkg/controller/podautoscaler/horizontal.go`): every
//! sync period, for each HPA, read the target's `scale` subresource, the pods its selector
//! picks and their usage from the resource metrics API (`metrics.k8s.io` PodMetrics), compute
//! the replica count per metric with [`algorithm`], take the largest, stabilize and
//! rate-limit it, write it through `scale`, and keep the HPA's status (currentReplicas,
//! desiredReplicas, currentMetrics, lastScaleTime) and conditions (AbleToScale, ScalingActive,
//! ScalingLimited) as Kubernetes words them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use navarch_api::ApiError;
use navarch_api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use navarch_api::core::v1::Pod;
use navarch_api::kinds;
use navarch_api::meta::v1::Quantity as QuantityPb;
use navarch_api::metrics::v1beta1::PodMetrics;
use navarch_api::quantity::Quantity;
use navarch_api::selectors::LabelSelector;
use navarch_gateway::client::ListParams;
use navarch_runtime::{Action, Event, EventType, Informer, KubeObject, ObjectKey, WorkQueue};

use super::algorithm::{self, Behavior, CalcError, PodSample, ScaleEvent, Stabilizer, Target};
use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::util::{self, fmt_time, parse_time};

pub const NAME: &str = "horizontalpodautoscaling";

/// What the loop remembers of each HPA between syncs (as Kubernetes keeps it in memory).
#[derive(Default)]
struct History {
    stabilizer: Stabilizer,
    up: Vec<ScaleEvent>,
    down: Vec<ScaleEvent>,
}

struct Ctx {
    shared: Arc<Shared>,
    hpas: Arc<Informer<HorizontalPodAutoscaler>>,
    pods: Arc<Informer<Pod>>,
    history: Mutex<HashMap<ObjectKey, History>>,
}

pub(crate) fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        hpas: shared.factory.informer(),
        pods: shared.factory.informer(),
        history: Mutex::new(HashMap::new()),
    });
    let q = queue.clone();
    ctx.hpas
        .add_handler(move |ev: &Event<HorizontalPodAutoscaler>| {
            q.add(ObjectKey::of(ev.object().as_ref()))
        });
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
    .linked(kinds::of::<HorizontalPodAutoscaler>().expect("HPAs are served"))
}

/// A pod's metric as the replica calculation needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodMetric {
    /// Millicores (cpu) or bytes (memory), summed over the pod's containers.
    pub usage: i64,
    pub timestamp: Option<Timestamp>,
    pub window: std::time::Duration,
}

/// Readiness tunables (`--horizontal-pod-autoscaler-cpu-initialization-period`,
/// `--horizontal-pod-autoscaler-initial-readiness-delay`).
#[derive(Clone, Copy, Debug)]
pub struct Readiness {
    pub cpu_initialization_period: std::time::Duration,
    pub initial_readiness_delay: std::time::Duration,
}

/// How one pod counts (`groupPods`): `None` when ignored (deleting or failed); otherwise its
/// sample, with `ready: false` for pods whose CPU usage must not drive a scale-up yet (pending,
/// not ready within the initialization period, or never ready since start).
pub fn pod_sample(
    pod: &Pod,
    metric: Option<&PodMetric>,
    resource: &str,
    readiness: Readiness,
    now: Timestamp,
) -> Option<PodSample> {
    let meta = pod.metadata.as_ref()?;
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if meta.deletion_timestamp.is_some() || phase == "Failed" || phase == "Succeeded" {
        return None;
    }
    let request = pod_request(pod, resource);
    let usage = metric.map(|m| m.usage);
    if phase == "Pending" {
        return Some(PodSample {
            usage,
            request,
            ready: false,
        });
    }
    let ready = if resource != "cpu" {
        true
    } else {
        let condition = status
            .conditions
            .iter()
            .find(|c| c.r#type.as_deref() == Some("Ready"));
        let start = parse_time(status.start_time.as_deref());
        match (condition, start, metric) {
            (None, _, _) | (_, None, _) => false,
            (Some(c), Some(start), m) => {
                let is_true = c.status.as_deref() == Some("True");
                let transition = parse_time(c.last_transition_time.as_deref()).unwrap_or(start);
                let within_init = util::seconds_between(start, now)
                    < readiness.cpu_initialization_period.as_secs_f64();
                if within_init {
                    // Ready, and the sample was taken after it became ready.
                    let sampled_after_ready = m
                        .and_then(|m| m.timestamp.map(|t| (t, m.window)))
                        .map(|(t, w)| util::seconds_between(transition, t) >= w.as_secs_f64())
                        .unwrap_or(true);
                    is_true && sampled_after_ready
                } else {
                    // Unready only if it never became ready after starting.
                    is_true
                        || util::seconds_between(start, transition)
                            >= readiness.initial_readiness_delay.as_secs_f64()
                }
            }
        }
    };
    Some(PodSample {
        usage,
        request,
        ready,
    })
}

/// The pod's request for `resource` (millicores for cpu, bytes otherwise), summed over its
/// app containers; 0 when a container has none.
pub fn pod_request(pod: &Pod, resource: &str) -> i64 {
    let Some(spec) = &pod.spec else { return 0 };
    let mut total = 0;
    for c in &spec.containers {
        let q = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.get(resource))
            .and_then(|q| q.value.parse::<Quantity>().ok());
        match q {
            Some(q) => total += quantity_in(&q, resource),
            None => return 0,
        }
    }
    total
}

fn quantity_in(q: &Quantity, resource: &str) -> i64 {
    if resource == "cpu" {
        q.milli_value()
    } else {
        q.value()
    }
}

/// Sums a PodMetrics' containers for `resource`.
pub fn pod_metric(m: &PodMetrics, resource: &str) -> Option<PodMetric> {
    let mut usage = 0;
    for c in &m.containers {
        let q = c.usage.get(resource)?.value.parse::<Quantity>().ok()?;
        usage += quantity_in(&q, resource);
    }
    Some(PodMetric {
        usage,
        timestamp: parse_time(m.timestamp.as_deref()),
        window: m
            .window
            .as_deref()
            .and_then(|w| w.parse::<jiff::SignedDuration>().ok())
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .unwrap_or_default(),
    })
}

/// A `type: Resource` metric, as the loop understands it.
#[derive(Debug)]
struct ResourceMetric {
    name: String,
    target: Target,
}

fn resource_metric(spec: &MetricSpec) -> Result<ResourceMetric, String> {
    let source = match spec.r#type.as_deref() {
        Some("Resource") => spec.resource.as_ref(),
        Some(other) => {
            return Err(format!(
                "the HPA was unable to compute the replica count: metric type {other} is not supported (only Resource metrics are)"
            ));
        }
        None => None,
    }
    .ok_or_else(|| "a Resource metric needs `resource`".to_string())?;
    let name = source.name.clone().unwrap_or_default();
    let target = source.target.clone().unwrap_or_default();
    let target = match target.r#type.as_deref() {
        Some("Utilization") => Target::Utilization(target.average_utilization.unwrap_or(0)),
        Some("AverageValue") => {
            let q = target
                .average_value
                .as_ref()
                .and_then(|q| q.value.parse::<Quantity>().ok())
                .ok_or_else(|| "an AverageValue target needs averageValue".to_string())?;
            Target::AverageValue(quantity_in(&q, &name))
        }
        other => {
            return Err(format!(
                "unsupported target type {other:?} for a Resource metric"
            ));
        }
    };
    Ok(ResourceMetric { name, target })
}

fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    kind: &str,
    value: bool,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) {
    let value = if value { "True" } else { "False" };
    let message = message.into();
    if let Some(c) = status
        .conditions
        .iter_mut()
        .find(|c| c.r#type.as_deref() == Some(kind))
    {
        if c.status.as_deref() != Some(value) {
            c.last_transition_time = Some(fmt_time(now));
        }
        c.status = Some(value.into());
        c.reason = Some(reason.into());
        c.message = Some(message);
        return;
    }
    status.conditions.push(HorizontalPodAutoscalerCondition {
        r#type: Some(kind.into()),
        status: Some(value.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(fmt_time(now)),
        ..Default::default()
    });
}

fn quantity(value: String) -> Option<QuantityPb> {
    Some(QuantityPb { value })
}

/// A usage as Kubernetes prints it: CPU in millicores (`250m`, `0`), memory in bytes.
fn format_usage(value: i64, resource: &str) -> String {
    if resource == "cpu" && value != 0 {
        format!("{value}m")
    } else {
        value.to_string()
    }
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let period = ctx.shared.settings.hpa_sync_period;
    let Some(hpa) = ctx.hpas.cache().get(&key) else {
        ctx.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        return Ok(Action::await_change());
    };
    let now = ctx.shared.now();
    let old_status = hpa.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    status.observed_generation = hpa.meta().generation;
    let outcome = autoscale(&ctx, &key, &hpa, &mut status, now).await;
    // In the order Kubernetes lists them.
    status.conditions.sort_by_key(|c| {
        ["AbleToScale", "ScalingActive", "ScalingLimited"]
            .iter()
            .position(|t| c.r#type.as_deref() == Some(*t))
    });
    if let Err(message) = &outcome {
        tracing::debug!(hpa = %key, %message, "autoscaling did not complete");
    }
    if status != old_status {
        let mut updated = (*hpa).clone();
        updated.status = Some(status);
        match ctx
            .shared
            .client
            .update_status(&key.namespace, &key.name, &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if e.reason == navarch_api::Reason::Conflict => {
                return Ok(Action::requeue(std::time::Duration::from_millis(100)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Action::requeue(period))
}

/// One pass over an HPA; `status` gets the result. `Err` carries what went wrong (already in
/// the conditions and an event).
async fn autoscale(
    ctx: &Ctx,
    key: &ObjectKey,
    hpa: &HorizontalPodAutoscaler,
    status: &mut HorizontalPodAutoscalerStatus,
    now: Timestamp,
) -> Result<(), String> {
    let spec = hpa.spec.clone().unwrap_or_default();
    let target = spec.scale_target_ref.clone().unwrap_or_default();
    let target_kind = target.kind.clone().unwrap_or_default();
    let target_name = target.name.clone().unwrap_or_default();
    let reference = format!("{target_kind}/{target_name}");
    let fail =
        |status: &mut HorizontalPodAutoscalerStatus, kind: &str, reason: &str, message: String| {
            set_condition(status, kind, false, reason, message.clone(), now);
            ctx.shared
                .event(hpa, EventType::Warning, reason, message.clone());
            Err(message)
        };
    let Some(kind) = kinds::by_kind(
        target.api_version.as_deref().unwrap_or_default(),
        &target_kind,
    )
    .filter(|k| k.scale) else {
        return fail(
            status,
            "AbleToScale",
            "FailedGetScale",
            format!(
                "the HPA controller was unable to get the target's current scale: no scale subresource for {reference}"
            ),
        );
    };
    let scale = match ctx
        .shared
        .client
        .get_scale(kind, &key.namespace, &target_name)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            return fail(
                status,
                "AbleToScale",
                "FailedGetScale",
                format!(
                    "the HPA controller was unable to get the target's current scale: {}",
                    e.message
                ),
            );
        }
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    status.current_replicas = Some(scale.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas.unwrap_or(min).max(min);
    let behavior = behavior(ctx, &spec);

    let (desired, reason) = if current == 0 && min != 0 {
        set_condition(
            status,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
        status.desired_replicas = Some(0);
        status.current_metrics.clear();
        set_condition(
            status,
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            now,
        );
        return Ok(());
    } else if current > max {
        (
            max,
            "Current number of replicas above Spec.MaxReplicas".to_string(),
        )
    } else if current < min {
        (
            min,
            "Current number of replicas below Spec.MinReplicas".to_string(),
        )
    } else {
        let (proposal, metric_reason) = match compute_replicas(
            ctx,
            key,
            &spec.metrics,
            current,
            &selector,
            status,
            now,
            &behavior,
        )
        .await
        {
            Ok(v) => v,
            Err(message) => {
                return fail(status, "ScalingActive", "FailedGetResourceMetric", message);
            }
        };
        set_condition(
            status,
            "ScalingActive",
            true,
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from the metrics",
            now,
        );
        let at = now.as_second() as f64 + f64::from(now.subsec_nanosecond()) / 1e9;
        let mut histories = ctx.history.lock().unwrap_or_else(|e| e.into_inner());
        let history = histories.entry(key.clone()).or_default();
        let stabilized = history
            .stabilizer
            .stabilize(at, current, proposal, &behavior);
        let horizon = at - 3600.0;
        history.up.retain(|e| e.at > horizon);
        history.down.retain(|e| e.at > horizon);
        let (desired, limit) = algorithm::rate_limit(
            current,
            stabilized,
            min,
            max,
            &behavior,
            &history.up,
            &history.down,
            at,
        );
        let (limit_reason, limit_message) = limit.condition();
        set_condition(
            status,
            "ScalingLimited",
            limit != algorithm::Limit::None,
            limit_reason,
            limit_message,
            now,
        );
        if desired > current {
            history.up.push(ScaleEvent {
                at,
                change: desired - current,
            });
        } else if desired < current {
            history.down.push(ScaleEvent {
                at,
                change: current - desired,
            });
        }
        (desired, metric_reason)
    };
    status.desired_replicas = Some(desired);
    if desired == current {
        set_condition(
            status,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
            now,
        );
        return Ok(());
    }
    let mut rescaled = scale.clone();
    rescaled.spec.get_or_insert_with(Default::default).replicas = Some(desired);
    match ctx
        .shared
        .client
        .update_scale(kind, &key.namespace, &rescaled)
        .await
    {
        Ok(_) => {
            tracing::info!(hpa = %key, target = %reference, from = current, to = desired, %reason, "rescaled");
            ctx.shared.event(
                hpa,
                EventType::Normal,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            );
            status.last_scale_time = Some(fmt_time(now));
            set_condition(
                status,
                "AbleToScale",
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
                now,
            );
            Ok(())
        }
        Err(e) => fail(
            status,
            "AbleToScale",
            "FailedUpdateScale",
            format!(
                "the HPA controller was unable to update the target scale: {}",
                e.message
            ),
        ),
    }
}

/// The spec's behavior, the scale-down stabilization window defaulting to the
/// controller-manager's `--horizontal-pod-autoscaler-downscale-stabilization`.
fn behavior(
    ctx: &Ctx,
    spec: &navarch_api::autoscaling::v2::HorizontalPodAutoscalerSpec,
) -> Behavior {
    let mut b = Behavior::from_spec(spec.behavior.as_ref());
    let explicit = spec
        .behavior
        .as_ref()
        .and_then(|b| b.scale_down.as_ref())
        .and_then(|r| r.stabilization_window_seconds)
        .is_some();
    if !explicit {
        b.scale_down.stabilization = ctx.shared.settings.hpa_downscale_stabilization;
    }
    // `--horizontal-pod-autoscaler-tolerance` where the spec sets none.
    let rules = |r: Option<&navarch_api::autoscaling::v2::HpaScalingRules>| {
        r.and_then(|r| r.tolerance.as_ref()).is_some()
    };
    let behavior_spec = spec.behavior.as_ref();
    if !rules(behavior_spec.and_then(|b| b.scale_up.as_ref())) {
        b.scale_up.tolerance = ctx.shared.settings.hpa_tolerance;
    }
    if !rules(behavior_spec.and_then(|b| b.scale_down.as_ref())) {
        b.scale_down.tolerance = ctx.shared.settings.hpa_tolerance;
    }
    b
}

/// The largest recommendation over the metrics, and why (for the event).
#[allow(clippy::too_many_arguments)]
async fn compute_replicas(
    ctx: &Ctx,
    key: &ObjectKey,
    metrics: &[MetricSpec],
    current: i32,
    selector: &str,
    status: &mut HorizontalPodAutoscalerStatus,
    now: Timestamp,
    behavior: &Behavior,
) -> Result<(i32, String), String> {
    let selector_parsed = LabelSelector::parse(selector)
        .map_err(|e| format!("invalid selector {selector:?}: {}", e.message))?;
    if selector.trim().is_empty() {
        return Err("the target's scale has no selector".into());
    }
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .cache()
        .in_namespace(&key.namespace)
        .into_iter()
        .filter(|p| selector_parsed.matches(&p.meta().labels))
        .collect();
    let usage = ctx
        .shared
        .client
        .list::<PodMetrics>(
            &key.namespace,
            &ListParams {
                label_selector: selector.to_string(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            format!(
                "unable to get metrics for resource: unable to fetch metrics from resource metrics API: {}",
                e.message
            )
        })?;
    let by_name: BTreeMap<String, &PodMetrics> = usage
        .items
        .iter()
        .map(|m| {
            let name = m.metadata.as_ref().and_then(|m| m.name.clone());
            (name.unwrap_or_default(), m)
        })
        .collect();
    let readiness = Readiness {
        cpu_initialization_period: ctx.shared.settings.hpa_cpu_initialization_period,
        initial_readiness_delay: ctx.shared.settings.hpa_initial_readiness_delay,
    };
    let mut best: Option<(i32, String)> = None;
    let mut current_metrics = Vec::new();
    let mut errors = Vec::new();
    for spec in metrics {
        let metric = match resource_metric(spec) {
            Ok(m) => m,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let samples: Vec<PodSample> = pods
            .iter()
            .filter_map(|p| {
                let m = by_name
                    .get(util::name(p.meta()))
                    .and_then(|m| pod_metric(m, &metric.name));
                pod_sample(p, m.as_ref(), &metric.name, readiness, now)
            })
            .collect();
        let tolerance = behavior
            .scale_up
            .tolerance
            .min(behavior.scale_down.tolerance);
        let rec = match algorithm::resource_replicas(
            current,
            &samples,
            metric.target,
            metric.name == "cpu",
            tolerance,
        ) {
            Ok(r) => r,
            Err(CalcError::NoMetrics) => {
                errors.push(format!(
                    "unable to get metrics for resource {}: no metrics returned from resource metrics API",
                    metric.name
                ));
                continue;
            }
            Err(e) => {
                errors.push(format!("failed to get {} utilization: {e}", metric.name));
                continue;
            }
        };
        current_metrics.push(MetricStatus {
            r#type: Some("Resource".into()),
            resource: Some(ResourceMetricStatus {
                name: Some(metric.name.clone()),
                current: Some(MetricValueStatus {
                    average_utilization: rec.utilization,
                    average_value: quantity(format_usage(rec.average_value, &metric.name)),
                    value: None,
                }),
            }),
            ..Default::default()
        });
        let why = match metric.target {
            Target::Utilization(_) => format!(
                "{} resource utilization (percentage of request) {} target",
                metric.name,
                if rec.replicas > current {
                    "above"
                } else {
                    "below"
                }
            ),
            Target::AverageValue(_) => format!(
                "{} resource {} target",
                metric.name,
                if rec.replicas > current {
                    "above"
                } else {
                    "below"
                }
            ),
        };
        if best.as_ref().is_none_or(|(r, _)| rec.replicas > *r) {
            best = Some((rec.replicas, why));
        }
    }
    status.current_metrics = current_metrics;
    match best {
        Some((replicas, why)) if errors.is_empty() || replicas > current => {
            let why = if replicas < current {
                "All metrics below target".to_string()
            } else {
                why
            };
            Ok((replicas, why))
        }
        // A failing metric blocks a scale-down (Kubernetes scales up only).
        Some(_) => Err(errors.join("; ")),
        None => Err(if errors.is_empty() {
            "the HPA has no metrics to compute a replica count from".into()
        } else {
            errors.join("; ")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use navarch_api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use navarch_api::meta::v1::ObjectMeta;
    use navarch_api::metrics::v1beta1::ContainerMetrics;
    use std::time::Duration;

    const READINESS: Readiness = Readiness {
        cpu_initialization_period: Duration::from_secs(300),
        initial_readiness_delay: Duration::from_secs(30),
    };

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(phase: &str, ready: Option<(&str, &str)>, start: &str, cpu: &[&str]) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: cpu
                    .iter()
                    .map(|c| Container {
                        resources: Some(ResourceRequirements {
                            requests: if c.is_empty() {
                                Default::default()
                            } else {
                                [("cpu".to_string(), QuantityPb { value: (*c).into() })].into()
                            },
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                start_time: Some(start.into()),
                conditions: ready
                    .map(|(status, at)| PodCondition {
                        r#type: Some("Ready".into()),
                        status: Some(status.into()),
                        last_transition_time: Some(at.into()),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn metric(usage: i64, at: &str) -> PodMetric {
        PodMetric {
            usage,
            timestamp: Some(ts(at)),
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn pods_are_grouped_as_kubernetes_does() {
        let now = ts("2026-01-01T00:10:00Z");
        let m = metric(50, "2026-01-01T00:09:55Z");
        let sample = |p: &Pod, r: &str| pod_sample(p, Some(&m), r, READINESS, now);
        // Ready long ago: counted.
        let ready = pod(
            "Running",
            Some(("True", "2026-01-01T00:00:10Z")),
            "2026-01-01T00:00:00Z",
            &["100m"],
        );
        assert_eq!(
            sample(&ready, "cpu"),
            Some(PodSample {
                usage: Some(50),
                request: 100,
                ready: true
            })
        );
        // Deleting and finished pods are ignored.
        let mut deleting = ready.clone();
        deleting.metadata.as_mut().unwrap().deletion_timestamp =
            Some("2026-01-01T00:09:00Z".into());
        assert_eq!(sample(&deleting, "cpu"), None);
        let failed = pod("Failed", None, "2026-01-01T00:00:00Z", &["100m"]);
        assert_eq!(sample(&failed, "cpu"), None);
        // Pending: unready for every resource.
        let pending = pod("Pending", None, "2026-01-01T00:09:00Z", &["100m"]);
        assert!(!sample(&pending, "cpu").unwrap().ready);
        assert!(!sample(&pending, "memory").unwrap().ready);
        // Within the CPU initialization period: ready only if the sample came after readiness.
        let young = pod(
            "Running",
            Some(("True", "2026-01-01T00:09:50Z")),
            "2026-01-01T00:09:00Z",
            &["100m"],
        );
        assert!(
            !sample(&young, "cpu").unwrap().ready,
            "sampled during the readiness transition"
        );
        let young_ok = pod(
            "Running",
            Some(("True", "2026-01-01T00:09:30Z")),
            "2026-01-01T00:09:00Z",
            &["100m"],
        );
        assert!(sample(&young_ok, "cpu").unwrap().ready);
        let young_unready = pod(
            "Running",
            Some(("False", "2026-01-01T00:09:10Z")),
            "2026-01-01T00:09:00Z",
            &["100m"],
        );
        assert!(!sample(&young_unready, "cpu").unwrap().ready);
        // Memory does not care about readiness.
        assert!(sample(&young_unready, "memory").unwrap().ready);
        // Past the initialization period: unready only if it never became ready after start.
        let never = pod(
            "Running",
            Some(("False", "2026-01-01T00:00:05Z")),
            "2026-01-01T00:00:00Z",
            &["100m"],
        );
        assert!(!sample(&never, "cpu").unwrap().ready);
        let went_unready = pod(
            "Running",
            Some(("False", "2026-01-01T00:05:00Z")),
            "2026-01-01T00:00:00Z",
            &["100m"],
        );
        assert!(sample(&went_unready, "cpu").unwrap().ready);
        // No metrics: usage None, still a pod.
        assert_eq!(
            pod_sample(&ready, None, "cpu", READINESS, now)
                .unwrap()
                .usage,
            None
        );
    }

    #[test]
    fn requests_and_usage_are_summed_over_containers() {
        let two = pod("Running", None, "2026-01-01T00:00:00Z", &["100m", "0.5"]);
        assert_eq!(pod_request(&two, "cpu"), 600);
        let missing = pod("Running", None, "2026-01-01T00:00:00Z", &["100m", ""]);
        assert_eq!(pod_request(&missing, "cpu"), 0);
        let m = PodMetrics {
            timestamp: Some("2026-01-01T00:00:00Z".into()),
            window: Some("10.5s".into()),
            containers: ["250000000n", "5m"]
                .iter()
                .map(|c| ContainerMetrics {
                    name: Some("c".into()),
                    usage: [
                        ("cpu".to_string(), QuantityPb { value: (*c).into() }),
                        (
                            "memory".to_string(),
                            QuantityPb {
                                value: "1Mi".into(),
                            },
                        ),
                    ]
                    .into(),
                })
                .collect(),
            ..Default::default()
        };
        let cpu = pod_metric(&m, "cpu").unwrap();
        assert_eq!(cpu.usage, 255);
        assert_eq!(cpu.window, Duration::from_millis(10_500));
        assert_eq!(pod_metric(&m, "memory").unwrap().usage, 2 * 1024 * 1024);
        assert_eq!(pod_metric(&m, "ephemeral-storage"), None);
    }

    #[test]
    fn only_resource_metrics_with_known_targets_are_understood() {
        let spec = |t: &str, util: Option<i32>, value: Option<&str>| MetricSpec {
            r#type: Some(t.into()),
            resource: Some(navarch_api::autoscaling::v2::ResourceMetricSource {
                name: Some("memory".into()),
                target: Some(navarch_api::autoscaling::v2::MetricTarget {
                    r#type: Some(
                        if util.is_some() {
                            "Utilization"
                        } else {
                            "AverageValue"
                        }
                        .into(),
                    ),
                    average_utilization: util,
                    average_value: value.map(|v| QuantityPb { value: v.into() }),
                    value: None,
                }),
            }),
            ..Default::default()
        };
        assert!(matches!(
            resource_metric(&spec("Resource", Some(60), None))
                .unwrap()
                .target,
            Target::Utilization(60)
        ));
        assert!(matches!(
            resource_metric(&spec("Resource", None, Some("100Mi"))).unwrap().target,
            Target::AverageValue(v) if v == 100 * 1024 * 1024
        ));
        assert!(
            resource_metric(&spec("External", Some(1), None))
                .unwrap_err()
                .contains("External is not supported")
        );
        assert_eq!(format_usage(0, "cpu"), "0");
        assert_eq!(format_usage(250, "cpu"), "250m");
    }
}
