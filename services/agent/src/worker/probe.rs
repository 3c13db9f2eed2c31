//! Liveness, readiness and startup probes (exec, httpGet, tcpSocket) for one container
//! instance, each in its own task, with the kubelet's thresholds and defaults.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use navarch_api::core::v1::{Container, HttpGetAction, Probe};
use navarch_api::meta::v1::int_or_string::Value as IntOrStr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::status::ProbeView;
use crate::runtime::ContainerRuntime;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Startup => "startup",
        }
    }
}

#[derive(Debug, Default)]
struct Results {
    started: bool,
    ready: bool,
    /// Set when liveness or startup failed past the threshold: the container must restart.
    failed: Option<String>,
}

/// The probes of one running container instance; aborted on drop.
pub struct Probes {
    pub container_id: String,
    results: Arc<Mutex<Results>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Probes {
    /// Starts the container's probes. `host` is where httpGet/tcpSocket connect by default.
    pub fn start(
        runtime: Arc<dyn ContainerRuntime>,
        container_id: &str,
        spec: &Container,
        host: String,
        wake: Arc<Notify>,
    ) -> Self {
        let results = Arc::new(Mutex::new(Results {
            started: spec.startup_probe.is_none(),
            ready: spec.readiness_probe.is_none(),
            failed: None,
        }));
        let mut tasks = vec![];
        for (kind, probe) in [
            (ProbeKind::Startup, &spec.startup_probe),
            (ProbeKind::Readiness, &spec.readiness_probe),
            (ProbeKind::Liveness, &spec.liveness_probe),
        ] {
            let Some(probe) = probe.clone() else { continue };
            let ctx = ProbeTask {
                kind,
                probe,
                container: spec.clone(),
                container_id: container_id.to_string(),
                host: host.clone(),
                runtime: runtime.clone(),
                results: results.clone(),
                wake: wake.clone(),
            };
            tasks.push(tokio::spawn(ctx.run()));
        }
        Self {
            container_id: container_id.into(),
            results,
            tasks,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Results> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view(&self) -> ProbeView {
        let r = self.lock();
        ProbeView {
            ready: r.started && r.ready,
            started: r.started,
        }
    }

    /// Whether a liveness or startup failure is waiting to be acted on.
    pub fn has_failure(&self) -> bool {
        self.lock().failed.is_some()
    }

    /// Why the container must be restarted (liveness or startup failure), once.
    pub fn take_failure(&self) -> Option<String> {
        self.lock().failed.take()
    }
}

struct ProbeTask {
    kind: ProbeKind,
    probe: Probe,
    container: Container,
    container_id: String,
    host: String,
    runtime: Arc<dyn ContainerRuntime>,
    results: Arc<Mutex<Results>>,
    wake: Arc<Notify>,
}

impl ProbeTask {
    fn started(&self) -> bool {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .started
    }

    async fn run(self) {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let initial = secs(self.probe.initial_delay_seconds, 0);
        let period = secs(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = secs(self.probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(initial).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            if self.kind != ProbeKind::Startup && !self.started() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let outcome = match tokio::time::timeout(timeout, self.once(timeout)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timeout after {}s", timeout.as_secs())),
            };
            match &outcome {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                }
                Err(why) => {
                    failures += 1;
                    successes = 0;
                    tracing::debug!(
                        probe = self.kind.as_str(),
                        container = %self.container_id,
                        failures,
                        error = %why,
                        "probe failed"
                    );
                }
            }
            let mut changed = false;
            {
                let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
                match self.kind {
                    ProbeKind::Startup => {
                        if successes >= 1 && !r.started {
                            r.started = true;
                            changed = true;
                        } else if failures >= failure_threshold && r.failed.is_none() {
                            r.failed = Some(format!(
                                "Startup probe failed: {}",
                                outcome.clone().err().unwrap_or_default()
                            ));
                            changed = true;
                        }
                    }
                    ProbeKind::Readiness => {
                        if successes >= success_threshold && !r.ready {
                            r.ready = true;
                            changed = true;
                        } else if failures >= failure_threshold && r.ready {
                            r.ready = false;
                            changed = true;
                        }
                    }
                    ProbeKind::Liveness => {
                        if failures >= failure_threshold && r.failed.is_none() {
                            r.failed = Some(format!(
                                "Liveness probe failed: {}",
                                outcome.clone().err().unwrap_or_default()
                            ));
                            changed = true;
                        }
                    }
                }
                if self.kind == ProbeKind::Startup && r.started {
                    drop(r);
                    self.wake.notify_one();
                    return;
                }
            }
            if changed {
                tracing::info!(
                    probe = self.kind.as_str(),
                    container = %self.container_id,
                    ok = outcome.is_ok(),
                    "probe result changed"
                );
                self.wake.notify_one();
                if self.kind == ProbeKind::Liveness && failures >= failure_threshold {
                    return;
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    async fn once(&self, timeout: Duration) -> Result<(), String> {
        if let Some(exec) = &self.probe.exec {
            let out = self
                .runtime
                .exec_sync(&self.container_id, &exec.command, timeout)
                .await
                .map_err(|e| e.to_string())?;
            return if out.exit_code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "command {:?} exited with {}: {}",
                    exec.command,
                    out.exit_code,
                    String::from_utf8_lossy(&out.stdout).trim()
                ))
            };
        }
        if (self.probe.http_get.is_some() || self.probe.tcp_socket.is_some())
            && self.runtime.simulates_network()
        {
            return Ok(());
        }
        if let Some(http) = &self.probe.http_get {
            let host = http
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or(self.host.clone());
            let port = resolve_port(
                &self.container,
                http.port.as_ref().and_then(|p| p.value.clone()),
            )?;
            return http_get(&host, port, http).await;
        }
        if let Some(tcp) = &self.probe.tcp_socket {
            let host = tcp
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or(self.host.clone());
            let port = resolve_port(
                &self.container,
                tcp.port.as_ref().and_then(|p| p.value.clone()),
            )?;
            return tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
        }
        if self.probe.grpc.is_some() {
            return Err("grpc probes are not supported by this agent".into());
        }
        Err("probe has no handler".into())
    }
}

/// A port number, or a named container port.
pub fn resolve_port(container: &Container, port: Option<IntOrStr>) -> Result<u16, String> {
    match port {
        Some(IntOrStr::IntVal(p)) if (1..=65535).contains(&p) => Ok(p as u16),
        Some(IntOrStr::StrVal(name)) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| p.container_port)
                .map(|p| p as u16)
                .ok_or_else(|| format!("port {name:?} not found in the container's ports"))
        }
        other => Err(format!("invalid port {other:?}")),
    }
}

/// The kubelet's HTTP probe: a GET; 200–399 is success.
async fn http_get(host: &str, port: u16, action: &HttpGetAction) -> Result<(), String> {
    if action.scheme.as_deref() == Some("HTTPS") {
        return Err("HTTPS probes are not supported by this agent".into());
    }
    let path = action
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or("/".into());
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": dial tcp: {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in &action.http_headers {
        req.push_str(&format!(
            "{}: {}\r\n",
            h.name.clone().unwrap_or_default(),
            h.value.clone().unwrap_or_default()
        ));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256];
    let mut got = 0;
    while got < buf.len() {
        let n = stream
            .read(&mut buf[got..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response: {:?}", line.lines().next()))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use navarch_api::core::v1::ContainerPort;

    #[test]
    fn ports_resolve_by_number_and_name() {
        let c = Container {
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port: Some(8080),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(resolve_port(&c, Some(IntOrStr::IntVal(80))), Ok(80));
        assert_eq!(
            resolve_port(&c, Some(IntOrStr::StrVal("http".into()))),
            Ok(8080)
        );
        assert!(resolve_port(&c, Some(IntOrStr::StrVal("nope".into()))).is_err());
        assert!(resolve_port(&c, None).is_err());
    }

    #[tokio::test]
    async fn http_probe_reads_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for code in [200, 500] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let action = HttpGetAction {
            path: Some("/healthz".into()),
            ..Default::default()
        };
        let t = Duration::from_secs(10);
        assert_eq!(
            tokio::time::timeout(t, http_get("127.0.0.1", port, &action))
                .await
                .unwrap(),
            Ok(())
        );
        let err = tokio::time::timeout(t, http_get("127.0.0.1", port, &action))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.contains("500"), "{err}");
        tokio::time::timeout(t, server).await.unwrap().unwrap();
    }
}
