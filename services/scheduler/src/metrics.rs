//! The scheduler's instruments (Prometheus names after the exporter's renaming in comments).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};

use crate::queue::QueueCounts;

#[derive(Clone)]
pub struct SchedulerMetrics {
    /// `navarch_scheduler_schedule_attempts_total{result}`: scheduled, unschedulable, error.
    attempts: Counter<u64>,
    /// `navarch_scheduler_scheduling_algorithm_duration_seconds`: filter + score of one pod.
    algorithm: Histogram<f64>,
    /// `navarch_scheduler_binding_duration_seconds`: the Binding call.
    binding: Histogram<f64>,
    /// `navarch_scheduler_pod_scheduling_duration_seconds`: first seen → binding persisted.
    e2e: Histogram<f64>,
    /// `navarch_scheduler_pending_pods{queue}`: active, backoff, unschedulable, in_flight.
    pending: Gauge<u64>,
    /// `navarch_scheduler_preemption_attempts_total`: preemptions carried out.
    preemptions: Counter<u64>,
    /// `navarch_scheduler_preemption_victims_total`: pods evicted by them.
    victims: Counter<u64>,
}

impl SchedulerMetrics {
    pub fn new() -> Self {
        let meter = navarch_telemetry::meter("navarch-scheduler");
        let metrics = Self {
            attempts: meter
                .u64_counter("navarch.scheduler.schedule_attempts")
                .with_unit("{attempt}")
                .with_description("Scheduling attempts by result")
                .build(),
            algorithm: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.scheduler.scheduling.algorithm.duration",
                "Time to filter and score the nodes for one pod",
            ),
            binding: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.scheduler.binding.duration",
                "Time of the Binding call",
            ),
            e2e: navarch_telemetry::seconds_histogram(
                &meter,
                "navarch.scheduler.pod.scheduling.duration",
                "Time from a pod entering the scheduling queue to its persisted binding",
            ),
            pending: meter
                .u64_gauge("navarch.scheduler.pending_pods")
                .with_unit("{pod}")
                .with_description("Pods waiting in the scheduling queue, by sub-queue")
                .build(),
            preemptions: meter
                .u64_counter("navarch.scheduler.preemption.attempts")
                .with_unit("{attempt}")
                .with_description("Preemptions carried out for pods that fit nowhere")
                .build(),
            victims: meter
                .u64_counter("navarch.scheduler.preemption.victims")
                .with_unit("{pod}")
                .with_description("Lower-priority pods evicted by preemptions")
                .build(),
        };
        // Every result's series exists from the start (error-ratio alerts compare to zero).
        for result in ["scheduled", "unschedulable", "error"] {
            metrics.attempts.add(0, &[KeyValue::new("result", result)]);
        }
        metrics
    }

    pub fn attempt(&self, result: &'static str, algorithm_seconds: f64) {
        let attrs = [KeyValue::new("result", result)];
        self.attempts.add(1, &attrs);
        self.algorithm.record(algorithm_seconds, &attrs);
    }

    pub fn preemption(&self, victims: usize) {
        self.preemptions.add(1, &[]);
        self.victims.add(victims as u64, &[]);
    }

    pub fn bound(&self, binding_seconds: f64, e2e_seconds: f64) {
        self.binding.record(binding_seconds, &[]);
        self.e2e.record(e2e_seconds, &[]);
    }

    pub fn pending(&self, counts: QueueCounts) {
        for (queue, n) in [
            ("active", counts.active),
            ("backoff", counts.backoff),
            ("unschedulable", counts.unschedulable),
            ("in_flight", counts.in_flight),
        ] {
            self.pending
                .record(n as u64, &[KeyValue::new("queue", queue)]);
        }
    }
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
