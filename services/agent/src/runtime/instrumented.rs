//! A runtime wrapper that times every CRI-shaped operation (`navarch.agent.runtime.*`) and
//! image pulls (`navarch.agent.image.pull.duration`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use opentelemetry::KeyValue;

use super::{
    ContainerConfig, ContainerRuntime, ContainerStats, ContainerStatus, ExecOutput, ExecSession,
    ExecSpec, ImageRef, PullAuth, PullPolicy, Result, SandboxConfig, SandboxStatus,
};
use crate::metrics::{METRICS, runtime_operation};

/// Delegates to the inner runtime, recording each call's latency and failures.
pub struct Instrumented(pub Arc<dyn ContainerRuntime>);

async fn timed<T>(operation: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let out = f.await;
    runtime_operation(operation, started.elapsed().as_secs_f64(), out.is_ok());
    out
}

#[async_trait]
impl ContainerRuntime for Instrumented {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn version(&self) -> String {
        self.0.version()
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        timed("run_pod_sandbox", self.0.run_pod_sandbox(config)).await
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        timed("stop_pod_sandbox", self.0.stop_pod_sandbox(id)).await
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        timed("remove_pod_sandbox", self.0.remove_pod_sandbox(id)).await
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        timed("pod_sandbox_status", self.0.pod_sandbox_status(id)).await
    }

    async fn pull_image(
        &self,
        image: &str,
        policy: PullPolicy,
        auth: Option<&PullAuth>,
    ) -> Result<ImageRef> {
        let started = Instant::now();
        let out = timed("pull_image", self.0.pull_image(image, policy, auth)).await;
        let result = if out.is_ok() { "success" } else { "failure" };
        METRICS.image_pull.record(
            started.elapsed().as_secs_f64(),
            &[KeyValue::new("result", result)],
        );
        out
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        timed(
            "create_container",
            self.0.create_container(sandbox_id, config),
        )
        .await
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        timed("start_container", self.0.start_container(id)).await
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        timed("stop_container", self.0.stop_container(id, timeout)).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        timed("remove_container", self.0.remove_container(id)).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        timed("container_status", self.0.container_status(id)).await
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        timed("exec_sync", self.0.exec_sync(id, cmd, timeout)).await
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        timed("exec", self.0.exec(id, spec)).await
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        timed("container_stats", self.0.container_stats(id)).await
    }

    fn update_pod_cidr(&self, cidr: &str) {
        self.0.update_pod_cidr(cidr);
    }

    fn probe_host(&self, sandbox: &SandboxStatus) -> String {
        self.0.probe_host(sandbox)
    }

    fn simulates_network(&self) -> bool {
        self.0.simulates_network()
    }
}
