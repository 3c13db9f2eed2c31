//! Test images for real containers: a local `docker-registry` on 127.0.0.1 and a one-layer
//! busybox image (from Debian's `busybox-static`) pushed to it, as a user's CI would.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::Digest;

/// A `docker-registry` serving `127.0.0.1:<port>` from a directory; killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing its blobs under `dir/registry`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = crate::free_port()?;
        let storage = dir.join("registry");
        std::fs::create_dir_all(&storage)?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
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
            port,
            dir: dir.to_path_buf(),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(registry);
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                bail!("docker-registry exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        registry.stop();
        bail!("docker-registry did not listen on 127.0.0.1:{port} within 10 s")
    }

    /// `127.0.0.1:<port>/<name>`.
    pub fn image(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
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

fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// The image config's `architecture` for this machine (Go's names, as registries use).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// A one-layer OCI image with busybox (`sh`, `httpd`, `nc`, `wget`, …), `PATH=/bin`, and
/// `/www/index.html` saying "hello from navarch", pushed to `reference` over plain HTTP.
pub async fn push_busybox(reference: &str) -> anyhow::Result<()> {
    push_busybox_with(reference, &[]).await
}

/// A file to add to a test image: its path in the image and its contents.
pub type ImageFile = (String, Vec<u8>);

/// The dynamically linked program `bin` as `/bin/<name>` in an image, with the shared
/// libraries `ldd` says it loads (at the same paths), and an `nsswitch.conf` sending host
/// lookups to `/etc/hosts` then DNS, as on a Debian system.
pub fn program_files(bin: &Path, name: &str) -> anyhow::Result<Vec<ImageFile>> {
    let mut files = vec![(
        format!("bin/{name}"),
        std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?,
    )];
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux… (0x…)`.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            files.push((path.trim_start_matches('/').to_string(), bytes));
        }
    }
    files.push(("etc/nsswitch.conf".into(), b"hosts: files dns\n".to_vec()));
    Ok(files)
}

/// [`push_busybox`] with `extra` files added (directories are created as needed).
pub async fn push_busybox_with(reference: &str, extra: &[ImageFile]) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, path, std::io::empty())
    };
    for d in ["bin", "etc", "www", "tmp", "proc", "sys", "dev"] {
        dir(&mut tar, d)?;
    }
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (apt-get install busybox-static)")?;
    let mut h = header();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", busybox.as_slice())?;
    for tool in [
        "sh", "httpd", "echo", "sleep", "cat", "ls", "dd", "head", "true", "false", "nc", "wget",
        "hostname", "nslookup", "touch", "rm", "[", "test",
    ] {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{tool}"), "busybox")?;
    }
    let mut made: std::collections::BTreeSet<String> = ["bin", "etc", "www", "tmp"]
        .into_iter()
        .map(String::from)
        .collect();
    for (path, bytes) in extra {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            if made.insert(parent.clone()) {
                dir(&mut tar, &parent)?;
            }
        }
        let mut h = header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, path, bytes.as_slice())?;
    }
    let page = b"hello from navarch\n";
    let mut h = header();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(page.len() as u64);
    tar.append_data(&mut h, "www/index.html", &page[..])?;
    let layer = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&layer)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer)?;
    let gz = gz.finish()?;
    let config = serde_json::json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r: oci_client::Reference = reference
        .parse()
        .with_context(|| format!("image reference {reference:?}"))?;
    tokio::time::timeout(
        Duration::from_secs(60),
        client.push(
            &r,
            &[oci_client::client::ImageLayer::oci_v1_gzip(gz, None)],
            oci_client::client::Config::oci_v1(serde_json::to_vec(&config)?, None),
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        ),
    )
    .await
    .context("pushing to the local registry timed out")?
    .with_context(|| format!("pushing {reference}"))?;
    Ok(())
}
