//! OCI images: pulled from registries with `oci-client`, blobs verified by digest and kept in
//! a content-addressed store (`blobs/sha256/<hex>`), layers unpacked once per image into a
//! rootfs (OCI whiteouts applied), which containers then use as the lower layer of an
//! overlay.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::runtime::{ImageRef, PullAuth, PullPolicy, Result, RuntimeError};

/// What a container needs from an image's config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// A pulled, unpacked image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalImage {
    pub reference: ImageRef,
    /// Manifest digest.
    pub digest: String,
    pub config: ImageConfig,
    /// The unpacked rootfs (read-only lower layer for containers).
    pub rootfs: PathBuf,
}

/// The node's image store.
pub struct ImageStore {
    root: PathBuf,
    insecure: Vec<String>,
    /// One pull at a time per reference.
    pulls: Mutex<HashMap<String, std::sync::Arc<Mutex<()>>>>,
}

fn sha256_hex(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn pull_err(image: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::ImagePull {
        image: image.into(),
        message: e.to_string(),
    }
}

/// Whether `registry` (`host[:port]`) is on a loopback address: plain HTTP, as Docker does.
fn is_loopback_registry(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl ImageStore {
    pub fn open(root: &Path, insecure: Vec<String>) -> std::io::Result<Self> {
        for d in ["blobs/sha256", "images", "rootfs", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(Self {
            root: root.into(),
            insecure,
            pulls: Mutex::new(HashMap::new()),
        })
    }

    fn index_path(&self, reference: &str) -> PathBuf {
        let key = hex::encode(Sha256::digest(reference.as_bytes()));
        self.root.join("images").join(format!("{key}.json"))
    }

    /// The image as last pulled under this reference, if present.
    pub fn local(&self, reference: &str) -> Option<LocalImage> {
        let r: Reference = reference.parse().ok()?;
        let bytes = std::fs::read(self.index_path(&r.whole())).ok()?;
        let img: LocalImage = serde_json::from_slice(&bytes).ok()?;
        img.rootfs.join(".navarch-complete").exists().then_some(img)
    }

    fn client(&self, reference: &Reference) -> Client {
        navarch_pki::ensure_crypto_provider();
        let registry = reference.resolve_registry().to_string();
        let plain = is_loopback_registry(reference.registry())
            || self.insecure.iter().any(|r| r == reference.registry());
        Client::new(ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![registry, reference.registry().to_string()])
            } else {
                ClientProtocol::Https
            },
            ..Default::default()
        })
    }

    /// Pulls `image` per `policy` and unpacks it (once per manifest).
    pub async fn pull(
        &self,
        image: &str,
        policy: PullPolicy,
        auth: Option<&PullAuth>,
    ) -> Result<LocalImage> {
        let reference: Reference = image.parse().map_err(|e| pull_err(image, e))?;
        let whole = reference.whole();
        let lock = {
            let mut pulls = self.pulls.lock().await;
            pulls.entry(whole.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let present = self.local(image);
        match (policy, &present) {
            (PullPolicy::Never, None) => return Err(RuntimeError::ImageNeverPull(image.into())),
            (PullPolicy::Never | PullPolicy::IfNotPresent, Some(img)) => return Ok(img.clone()),
            _ => {}
        }
        let auth = match auth {
            Some(a) => RegistryAuth::Basic(a.username.clone(), a.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let client = self.client(&reference);
        let started = std::time::Instant::now();
        let (manifest, digest, config) = client
            .pull_manifest_and_config(&reference, &auth)
            .await
            .map_err(|e| pull_err(image, e))?;
        if let Some(img) = &present
            && img.digest == digest
        {
            return Ok(img.clone());
        }
        for layer in &manifest.layers {
            self.fetch_blob(&client, &reference, image, layer).await?;
        }
        let config = parse_config(&config).map_err(|e| pull_err(image, e))?;
        let rootfs = self.unpack(&manifest, &digest).await?;
        let repo = format!("{}/{}", reference.registry(), reference.repository());
        let local = LocalImage {
            reference: ImageRef {
                image: whole.clone(),
                id: format!("{repo}@{digest}"),
            },
            digest: digest.clone(),
            config,
            rootfs,
        };
        let path = self.index_path(&whole);
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&local).map_err(RuntimeError::other)?,
        )?;
        std::fs::rename(tmp, path)?;
        tracing::info!(image = %whole, %digest, layers = manifest.layers.len(), elapsed_ms = started.elapsed().as_millis() as u64, "image pulled");
        Ok(local)
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root.join("blobs/sha256").join(hex)
    }

    async fn fetch_blob(
        &self,
        client: &Client,
        reference: &Reference,
        image: &str,
        layer: &oci_client::manifest::OciDescriptor,
    ) -> Result<()> {
        let path = self.blob_path(&layer.digest);
        if path.exists() {
            return Ok(());
        }
        if !layer.digest.starts_with("sha256:") {
            return Err(pull_err(
                image,
                format!("unsupported digest {}", layer.digest),
            ));
        }
        let tmp = self
            .root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let mut file = tokio::fs::File::create(&tmp).await?;
        let r = client.pull_blob(reference, layer, &mut file).await;
        drop(file);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(pull_err(image, e));
        }
        // Verify again from disk: what is stored is what the digest names.
        let got = {
            let tmp = tmp.clone();
            tokio::task::spawn_blocking(move || sha256_hex(&tmp))
                .await
                .map_err(RuntimeError::other)??
        };
        if format!("sha256:{got}") != layer.digest {
            let _ = std::fs::remove_file(&tmp);
            return Err(pull_err(
                image,
                format!(
                    "layer digest mismatch: expected {}, got sha256:{got}",
                    layer.digest
                ),
            ));
        }
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Unpacks the layers in order into `rootfs/<manifest-hex>` (once).
    async fn unpack(&self, manifest: &OciImageManifest, digest: &str) -> Result<PathBuf> {
        let dir = self
            .root
            .join("rootfs")
            .join(digest.trim_start_matches("sha256:"));
        if dir.join(".navarch-complete").exists() {
            return Ok(dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let layers: Vec<PathBuf> = manifest
            .layers
            .iter()
            .map(|l| self.blob_path(&l.digest))
            .collect();
        let target = dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for layer in layers {
                apply_layer(&layer, &target)?;
            }
            std::fs::write(target.join(".navarch-complete"), b"")
        })
        .await
        .map_err(RuntimeError::other)?
        .map_err(|e| {
            RuntimeError::Other(format!(
                "unpacking image: {e}: {:?}",
                std::error::Error::source(&e)
            ))
        })?;
        Ok(dir)
    }
}

fn parse_config(raw: &str) -> std::result::Result<ImageConfig, String> {
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let c = v.get("config").cloned().unwrap_or_default();
    let list = |k: &str| -> Vec<String> {
        c.get(k)
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let s = |k: &str| {
        c.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok(ImageConfig {
        entrypoint: list("Entrypoint"),
        cmd: list("Cmd"),
        env: list("Env"),
        working_dir: s("WorkingDir"),
        user: s("User"),
    })
}

fn open_layer(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut f = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = std::fs::File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Applies one layer (tar, maybe gzipped) onto `root`: first its whiteouts (remove what lower
/// layers put there), then its files.
pub fn apply_layer(layer: &Path, root: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(open_layer(layer)?);
    for entry in archive.entries()? {
        let entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            continue;
        }
        let parent = root.join(path.parent().unwrap_or(Path::new("")));
        if name == OPAQUE {
            if let Ok(children) = std::fs::read_dir(&parent) {
                for c in children.flatten() {
                    remove_any(&c.path())?;
                }
            }
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            remove_any(&parent.join(hidden))?;
        }
    }
    let mut archive = tar::Archive::new(open_layer(layer)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(WHITEOUT_PREFIX) {
            continue;
        }
        // A directory replacing a file (or the reverse) between layers.
        let dest = root.join(&path);
        if let Ok(meta) = std::fs::symlink_metadata(&dest) {
            let is_dir = entry.header().entry_type().is_dir();
            let both_dirs = meta.is_dir() && is_dir;
            if !both_dirs && (meta.is_dir() != is_dir || meta.file_type().is_symlink()) {
                remove_any(&dest)?;
            }
        }
        entry.unpack_in(root)?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, files: &[(&str, Option<&str>)]) -> PathBuf {
        let path = dir.join(name);
        let f = std::fs::File::create(&path).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (p, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            match content {
                Some(c) => {
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    h.set_entry_type(tar::EntryType::Regular);
                    b.append_data(&mut h, p, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, p, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn whiteouts_remove_lower_files_and_opaque_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        let l1 = layer(
            dir.path(),
            "l1",
            &[
                ("etc/", None),
                ("etc/keep", Some("1")),
                ("etc/gone", Some("1")),
                ("data/", None),
                ("data/old", Some("1")),
            ],
        );
        let l2 = layer(
            dir.path(),
            "l2",
            &[
                ("etc/.wh.gone", Some("")),
                ("data/new", Some("2")),
                ("data/.wh..wh..opq", Some("")),
                ("etc/keep", Some("2")),
            ],
        );
        apply_layer(&l1, &root).unwrap();
        apply_layer(&l2, &root).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/keep")).unwrap(), "2");
        assert!(!root.join("etc/gone").exists());
        assert!(
            !root.join("data/old").exists(),
            "opaque dir hides lower files"
        );
        assert_eq!(std::fs::read_to_string(root.join("data/new")).unwrap(), "2");
        assert!(!root.join("data/.wh..wh..opq").exists());
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("docker.io"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
    }

    #[test]
    fn image_config_fields() {
        let c = parse_config(
            r#"{"config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],"Env":["A=1"],"WorkingDir":"/w","User":"1000"}}"#,
        )
        .unwrap();
        assert_eq!(c.entrypoint, vec!["/bin/sh"]);
        assert_eq!(c.cmd, vec!["-c", "x"]);
        assert_eq!(c.env, vec!["A=1"]);
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.user, "1000");
    }
}
