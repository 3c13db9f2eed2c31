//! The HorizontalPodAutoscaler's decision logic. [`algorithm`] holds Kubernetes' arithmetic as
//! pure functions: the replica calculation (tolerance, unready pods, missing metrics), the
//! stabilization windows, and the scaling policies with min/max. The control loop that feeds
//! it needs the resource metrics API (`metrics.k8s.io`), which is not served yet; until then
//! no loop is registered, so HPAs are stored and served but nothing acts on them.

pub mod algorithm;
