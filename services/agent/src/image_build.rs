//! Building and pushing one-layer OCI images without a container engine: the `navarch` image
//! (`navarch image push`) and the test images. The counterpart of the runc runtime's pulls.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sha2::Digest;

/// Why an image could not be built or pushed.
#[derive(Debug, thiserror::Error)]
pub enum ImageBuildError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("image reference {0:?} is invalid: {1}")]
    Reference(String, String),
    #[error("pushing {reference}: {reason}")]
    Push { reference: String, reason: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageBuildError {
    let what = what.into();
    move |source| ImageBuildError::Io { what, source }
}

/// A file for an image: its path in the image (no leading `/`), its mode and its bytes.
#[derive(Clone, Debug)]
pub struct ImageFile {
    pub path: String,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

impl ImageFile {
    /// An executable (0755).
    pub fn executable(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode: 0o755,
            bytes,
        }
    }

    /// A plain file (0644).
    pub fn plain(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode: 0o644,
            bytes,
        }
    }
}

/// One layer's tar, built in memory; parent directories are added as needed.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
            dirs: BTreeSet::new(),
        }
    }

    /// A directory (0755), and its parents.
    pub fn dir(&mut self, path: &str) -> std::io::Result<()> {
        let path = path.trim_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..=parts.len() {
            let dir = parts[..i].join("/");
            if self.dirs.insert(dir.clone()) {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                self.tar.append_data(&mut h, &dir, std::io::empty())?;
            }
        }
        Ok(())
    }

    fn parent(&mut self, path: &str) -> std::io::Result<()> {
        match path.rsplit_once('/') {
            Some((parent, _)) => self.dir(parent),
            None => Ok(()),
        }
    }

    /// A regular file.
    pub fn file(&mut self, file: &ImageFile) -> std::io::Result<()> {
        let path = file.path.trim_start_matches('/');
        self.parent(path)?;
        let mut h = header(tar::EntryType::Regular, file.mode, file.bytes.len() as u64);
        self.tar.append_data(&mut h, path, file.bytes.as_slice())
    }

    /// A symbolic link `path` → `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        self.parent(path)?;
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, path, target)
    }

    /// The gzipped layer and its `diff_id` (digest of the uncompressed tar).
    pub fn finish(self) -> std::io::Result<Layer> {
        let tar = self.tar.into_inner()?;
        let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar)?;
        Ok(Layer {
            gzip: gz.finish()?,
            diff_id,
        })
    }
}

/// A finished layer.
pub struct Layer {
    pub gzip: Vec<u8>,
    pub diff_id: String,
}

/// The OCI/Go name of this machine's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The program `bin` at `dest` in an image and, when it is dynamically linked, the shared
/// libraries `ldd` says it loads (at their own paths), with an `nsswitch.conf` sending host
/// lookups to `/etc/hosts` then DNS, as on a Debian system. A static binary comes alone.
pub fn program_files(bin: &Path, dest: &str) -> Result<Vec<ImageFile>, ImageBuildError> {
    let mut files = vec![ImageFile::executable(
        dest.trim_start_matches('/'),
        std::fs::read(bin).map_err(io(format!("reading {}", bin.display())))?,
    )];
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(io("running ldd"))?;
    // A static binary: ldd exits non-zero ("not a dynamic executable").
    if out.status.success() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux… (0x…)`.
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                let bytes = std::fs::read(path).map_err(io(format!("reading {path}")))?;
                files.push(ImageFile::executable(path.trim_start_matches('/'), bytes));
            }
        }
    }
    files.push(ImageFile::plain(
        "etc/nsswitch.conf",
        b"hosts: files dns\n".to_vec(),
    ));
    Ok(files)
}

/// Pushes a one-layer image with the image `config` (the OCI config's `config` object:
/// `Entrypoint`, `Cmd`, `Env`, …) to `reference`, over plain HTTP when `plain_http` (a
/// registry on loopback), anonymously. Returns the manifest URL the registry answered.
pub async fn push(
    reference: &str,
    layer: Layer,
    config: serde_json::Value,
    labels: serde_json::Value,
    plain_http: bool,
) -> Result<String, ImageBuildError> {
    let mut config = config;
    if let Some(c) = config.as_object_mut() {
        c.insert("Labels".into(), labels);
    }
    let image_config = serde_json::json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    });
    navarch_pki::ensure_crypto_provider();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: if plain_http {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        },
        ..Default::default()
    });
    let r: oci_client::Reference = reference.parse().map_err(|e: oci_client::ParseError| {
        ImageBuildError::Reference(reference.into(), e.to_string())
    })?;
    let push_error = |reason: String| ImageBuildError::Push {
        reference: reference.into(),
        reason,
    };
    let config_bytes = serde_json::to_vec(&image_config).map_err(|e| push_error(e.to_string()))?;
    let pushed = tokio::time::timeout(
        Duration::from_secs(300),
        client.push(
            &r,
            &[oci_client::client::ImageLayer::oci_v1_gzip(
                layer.gzip, None,
            )],
            oci_client::client::Config::oci_v1(config_bytes, None),
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        ),
    )
    .await
    .map_err(|_| push_error("timed out after 300 s".into()))?
    .map_err(|e| push_error(e.to_string()))?;
    Ok(pushed.manifest_url)
}
