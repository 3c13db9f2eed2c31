//! Helpers for end-to-end tests: start the real `navarch` binary and find what it wrote.

pub mod hosts;
pub mod images;
pub mod kubectl;
pub mod runc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The `navarch` binary built alongside the tests (`target/<profile>/navarch`).
pub fn navarch_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NAVARCH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/navarch
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    profile_dir.join("navarch")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A `navarch up` process on loopback with its own data directory; stopped on drop.
pub struct Navarch {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub grpc: String,
    /// The Kubernetes HTTPS API (`https://127.0.0.1:port`).
    pub api: String,
    /// The telemetry listener (`http://127.0.0.1:port`: `/metrics`, `/readyz`, …).
    pub telemetry: String,
    /// The admin kubeconfig `navarch up` wrote.
    pub kubeconfig: PathBuf,
    pub token: String,
    pub ca_file: PathBuf,
    /// `up` or `server`, its environment and flags: what [`Self::restart`] runs again.
    command: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Navarch {
    /// Starts `navarch up` in a fresh temporary data directory.
    pub fn up() -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut n = Self::up_in(&dir)?;
        n._tmp = Some(tmp);
        Ok(n)
    }

    /// [`Self::up`] with extra environment variables for the process.
    pub fn up_with_env(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut n = Self::up_in_with_env(&dir, env)?;
        n._tmp = Some(tmp);
        Ok(n)
    }

    /// Starts `navarch up` on `data_dir` (kept), waiting until it has written its
    /// connection details.
    pub fn up_in(data_dir: &Path) -> anyhow::Result<Self> {
        Self::up_in_with_env(data_dir, &[])
    }

    fn up_in_with_env(data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        // Simulated containers: these tests drive the API; real containers (runc, CNI,
        // host network state) are exercised by the agent's tests and [`Self::up_with_args`].
        Self::up_in_with(data_dir, env, &["--runtime", "hollow"])
    }

    /// `navarch up` in a fresh temporary data directory with `args` (e.g. `--runtime runc`)
    /// instead of the hollow runtime.
    pub fn up_with_args(args: &[&str]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut n = Self::up_in_with(&dir, &[], args)?;
        n._tmp = Some(tmp);
        Ok(n)
    }

    /// `navarch server` (the control plane without a node) in a fresh temporary data
    /// directory with `args`.
    pub fn server_with_args(args: &[&str]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut n = Self::start_in(&dir, "server", &[], args)?;
        n._tmp = Some(tmp);
        Ok(n)
    }

    fn up_in_with(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Self> {
        Self::start_in(data_dir, "up", env, args)
    }

    fn start_in(
        data_dir: &Path,
        command: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut n = Self {
            child: None,
            data_dir: data_dir.to_path_buf(),
            grpc: String::new(),
            api: String::new(),
            telemetry: String::new(),
            kubeconfig: PathBuf::new(),
            token: String::new(),
            ca_file: PathBuf::new(),
            command: command.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            _tmp: None,
        };
        n.spawn(None)?;
        Ok(n)
    }

    /// Starts the process and waits until it has written its connection details. gRPC, API
    /// and telemetry listen on loopback ports of its choosing unless the flags say otherwise,
    /// or on `pinned` (which win over the flags).
    fn spawn(&mut self, pinned: Option<[String; 3]>) -> anyhow::Result<()> {
        let connection = self.data_dir.join("connection.json");
        let _ = std::fs::remove_file(&connection);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .context("log file")?;
        let flags = ["--grpc-listen", "--api-listen", "--telemetry-listen"];
        let listen = |addrs: &[String; 3]| {
            flags
                .iter()
                .zip(addrs)
                .flat_map(|(f, a)| [f.to_string(), a.clone()])
                .collect::<Vec<_>>()
        };
        let (before, after) = match &pinned {
            None => (listen(&["127.0.0.1:0"; 3].map(String::from)), vec![]),
            Some(addrs) => (vec![], listen(addrs)),
        };
        let child = Command::new(navarch_bin())
            .args([self.command.as_str(), "--data-dir"])
            .arg(&self.data_dir)
            .args(before)
            .args(&self.args)
            .args(after)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", navarch_bin().display()))?;
        self.child = Some(child);
        let command = self.command.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&connection)
                && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
            {
                let data_dir = &self.data_dir;
                self.grpc = json["grpc"].as_str().unwrap_or_default().to_string();
                self.api = json["api"].as_str().unwrap_or_default().to_string();
                self.telemetry = json["telemetry"].as_str().unwrap_or_default().to_string();
                self.kubeconfig =
                    data_dir.join(json["kubeconfig"].as_str().unwrap_or("kubeconfig"));
                self.token = std::fs::read_to_string(
                    data_dir.join(json["token_file"].as_str().unwrap_or("admin.token")),
                )?
                .trim()
                .to_string();
                self.ca_file = data_dir.join(json["ca_file"].as_str().unwrap_or("pki/ca.crt"));
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "navarch {command} exited early with {status}: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "navarch {command} did not start within 30 s: {}",
            self.log()
        )
    }

    /// Starts the stopped (or killed) process again on the same data directory, flags and
    /// addresses, as an operator restarting the service would: clients keep their URLs.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "navarch is still running");
        let authority = |url: &str| url.split_once("://").map_or(url, |(_, a)| a).to_string();
        let pinned = [
            authority(&self.grpc),
            authority(&self.api),
            authority(&self.telemetry),
        ];
        self.spawn(Some(pinned))
    }

    /// What the process logged so far.
    /// A kubeconfig like the admin's (written by `navarch up`, with a client certificate) that
    /// authenticates with the bearer `token` instead: a client certificate would win over a
    /// `--token` flag, as in kube-apiserver.
    pub fn kubeconfig_for(&self, token: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("the admin kubeconfig");
        let mut config: serde_json::Value = serde_yaml::from_str(&text).expect("a YAML kubeconfig");
        config["users"][0]["user"] = serde_json::json!({ "token": token });
        let path = self
            .data_dir
            .join(format!("kubeconfig-{}", &token[..token.len().min(8)]));
        std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML")).expect("writing");
        path
    }

    /// `navarch token create --ttl TTL` against this control plane: a join token.
    pub fn create_join_token(&self, ttl: &str) -> String {
        let out = Command::new(navarch_bin())
            .args(["token", "create", "--ttl", ttl, "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .expect("running navarch token create");
        assert!(
            out.status.success(),
            "navarch token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// The gateway's `host:port`.
    pub fn grpc_authority(&self) -> String {
        self.grpc.trim_start_matches("https://").to_string()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill()?;
        bail!(
            "navarch did not stop within 15 s after SIGTERM: {}",
            self.log()
        )
    }

    /// Kills the process with SIGKILL (crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Navarch {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        kill_processes_under(&self.data_dir);
    }
}

/// Kills what still runs from `dir` (named in its command line, or its working directory):
/// process-runtime containers outlive their agent (as they would on a real machine), a test's
/// must not outlive the test.
pub fn kill_processes_under(dir: &Path) {
    let needle = dir.to_string_lossy().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        // A container's command rarely names the dir; its working directory (its sandbox,
        // perhaps deleted by now) does.
        let cwd = std::fs::read_link(p.path().join("cwd")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(&needle) || cwd.starts_with(dir);
        if pid != std::process::id() as i32 && ours {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("a positive pid"),
                rustix::process::Signal::KILL,
            );
        }
    }
}

pub use navarch_telemetry::health::http_get;

/// An HTTPS `GET path` to `url` (`https://host:port`) verified against the PEM CA at `ca`,
/// with `token` as bearer credentials when given: the status code and the body.
pub fn https_get(
    url: &str,
    ca: &Path,
    token: Option<&str>,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let authority = url.trim_start_matches("https://");
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let tcp = std::net::TcpStream::connect(authority)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut raw = Vec::new();
    // The server may close without a TLS close_notify; what arrived is the answer.
    let _ = tls.read_to_end(&mut raw);
    let out = String::from_utf8_lossy(&raw);
    let (head, body) = out.split_once("\r\n\r\n").context("no HTTP answer")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        code,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether the tests run as root (real containers, iptables, network namespaces).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether `bin` is on `PATH`.
pub fn has(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `check` until it gives a value; panics naming `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
