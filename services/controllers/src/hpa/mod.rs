//! The HorizontalPodAutoscaler. [`algorithm`] holds Kubernetes' arithmetic as pure functions:
//! the replica calculation (tolerance, unready pods, missing metrics), the stabilization
//! windows, and the scaling policies with min/max. [`controller`] is the loop that feeds it
//! from the resource metrics API (`metrics.k8s.io`, served by the gateway from the agents'
//! usage reports) and writes the result through the target's `scale` subresource.

pub mod algorithm;
pub mod controller;

pub use controller::NAME;
pub(crate) use controller::build;
