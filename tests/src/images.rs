//! Test images for real containers: a local `docker-registry` on 127.0.0.1 and a one-layer
//! busybox image (from Debian's `busybox-static`) pushed to it, as a user's CI would.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// A `docker-registry` serving `<ip>:<port>` from a directory; killed on drop.
pub struct Registry {
    child: Child,
    pub ip: String,
    pub port: u16,
    pub dir: PathBuf,
}

impl Registry {
    /// Starts a registry on 127.0.0.1 storing its blobs under `dir/registry`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_on(dir, "127.0.0.1")
    }

    /// [`Self::start`] listening on `ip` (an address of this machine), for nodes in other
    /// network namespaces (they pull with `--insecure-registry <ip>:<port>`).
    pub fn start_on(dir: &Path, ip: &str) -> anyhow::Result<Self> {
        let port = crate::free_port()?;
        let storage = dir.join("registry");
        std::fs::create_dir_all(&storage)?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\n",
                storage.display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log"))?)
            .spawn()
            .context("starting docker-registry (apt-get install docker-registry)")?;
        let mut registry = Self {
            child,
            ip: ip.to_string(),
            port,
            dir: dir.to_path_buf(),
        };
        for _ in 0..200 {
            if TcpStream::connect((ip, port)).is_ok() {
                return Ok(registry);
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                bail!("docker-registry exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        registry.stop();
        bail!("docker-registry did not listen on {ip}:{port} within 10 s")
    }

    /// `<ip>:<port>`: the registry's host, for `--insecure-registry`.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `<ip>:<port>/<name>`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub use navarch_agent::image_build::{ImageFile, program_files};
use navarch_agent::image_build::{LayerBuilder, push};

/// A one-layer OCI image with busybox (`sh`, `httpd`, `nc`, `wget`, …), `PATH=/bin`, and
/// `/www/index.html` saying "hello from navarch", pushed to `reference` over plain HTTP.
pub async fn push_busybox(reference: &str) -> anyhow::Result<()> {
    push_busybox_with(reference, &[]).await
}

/// [`push_busybox`] with `extra` files added (directories are created as needed).
pub async fn push_busybox_with(reference: &str, extra: &[ImageFile]) -> anyhow::Result<()> {
    let mut layer = LayerBuilder::new();
    for d in ["bin", "etc", "www", "tmp", "proc", "sys", "dev"] {
        layer.dir(d)?;
    }
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (apt-get install busybox-static)")?;
    layer.file(&ImageFile::executable("bin/busybox", busybox))?;
    for tool in [
        "sh", "httpd", "echo", "sleep", "cat", "ls", "dd", "head", "true", "false", "nc", "wget",
        "hostname", "nslookup", "touch", "rm", "[", "test", "tty", "stty",
    ] {
        layer.symlink(&format!("bin/{tool}"), "busybox")?;
    }
    for file in extra {
        layer.file(file)?;
    }
    layer.file(&ImageFile::plain(
        "www/index.html",
        b"hello from navarch\n".to_vec(),
    ))?;
    push(
        reference,
        layer.finish()?,
        serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}),
        serde_json::json!({}),
        true,
    )
    .await
    .with_context(|| format!("pushing {reference}"))?;
    Ok(())
}
