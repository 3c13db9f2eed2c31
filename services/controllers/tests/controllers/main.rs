//! The control loops against a real gateway (in-process, memory store), with a fake kubelet
//! marking pods ready. One test binary; nextest runs each test in its own process.

mod autoscaling;
mod batch;
mod common;
mod deployments;
mod lifecycle;
mod nodes;
mod services;
