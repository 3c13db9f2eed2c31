//! Encryption at rest: values of chosen resources (Secrets by default) are sealed with
//! AES-GCM before they reach the store and opened when they come back (reads, lists,
//! watches, transaction outcomes), so the data directory (or TiKV) never holds them in
//! plaintext. Configured like kube-apiserver's `--encryption-provider-config`
//! (`EncryptionConfiguration`, `aesgcm` and `identity` providers): the first provider seals
//! new writes, every provider opens; rotating a key is adding a new first key, restarting,
//! and rewriting the objects (each write re-seals with the first key).
//!
//! Stored form: `k8s:enc:aesgcm:v1:<key name>:` + 12-byte nonce + ciphertext + tag; the
//! storage key is the additional data, so a sealed value cannot be moved to another key.
//! Values without the prefix are plaintext written before encryption was turned on.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use navarch_store::{
    KeyValue, ListPage, ListRequest, Op, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream,
};
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

const PREFIX: &str = "k8s:enc:aesgcm:v1:";

/// Why an encryption configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("encryption configuration: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    aesgcm: Option<KeysConfig>,
    identity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KeysConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// One resource's providers: the key new writes are sealed with (`None`: identity, written
/// in plaintext) and every key that opens.
struct Rule {
    /// Storage-key prefix of the resource (`/registry/core/secrets/`).
    prefix: String,
    write: Option<String>,
}

/// The encryption configuration in effect.
pub struct Encryption {
    rules: Vec<Rule>,
    keys: HashMap<String, LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field(
                "resources",
                &self.rules.iter().map(|r| &r.prefix).collect::<Vec<_>>(),
            )
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Encryption {
    pub fn load(path: &Path) -> Result<Self, EncryptionError> {
        let text = std::fs::read_to_string(path).map_err(|source| EncryptionError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses an `EncryptionConfiguration` (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, EncryptionError> {
        use base64::Engine as _;
        let invalid = |m: String| EncryptionError::Invalid(m);
        let config: Config = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if config.kind != "EncryptionConfiguration" {
            return Err(invalid(format!(
                "kind must be EncryptionConfiguration, got {:?}",
                config.kind
            )));
        }
        let mut rules = Vec::new();
        let mut keys = HashMap::new();
        for (i, r) in config.resources.iter().enumerate() {
            if r.providers.is_empty() {
                return Err(invalid(format!("resources[{i}].providers: Required value")));
            }
            let mut write = None;
            for (j, p) in r.providers.iter().enumerate() {
                let at = format!("resources[{i}].providers[{j}]");
                match (&p.aesgcm, &p.identity) {
                    (Some(aes), None) => {
                        if aes.keys.is_empty() {
                            return Err(invalid(format!("{at}.aesgcm.keys: Required value")));
                        }
                        for (n, k) in aes.keys.iter().enumerate() {
                            let raw = base64::engine::general_purpose::STANDARD
                                .decode(k.secret.trim())
                                .map_err(|e| {
                                    invalid(format!("{at}.aesgcm.keys[{n}].secret: {e}"))
                                })?;
                            let algorithm = match raw.len() {
                                16 => &AES_128_GCM,
                                32 => &AES_256_GCM,
                                other => {
                                    return Err(invalid(format!(
                                        "{at}.aesgcm.keys[{n}].secret: Invalid value: {other} bytes: key must be 16 or 32 bytes"
                                    )));
                                }
                            };
                            if k.name.is_empty() || k.name.contains(':') {
                                return Err(invalid(format!(
                                    "{at}.aesgcm.keys[{n}].name: Invalid value: {:?}: must be non-empty and contain no ':'",
                                    k.name
                                )));
                            }
                            let key = UnboundKey::new(algorithm, &raw)
                                .map_err(|_| invalid(format!("{at}.aesgcm.keys[{n}]: bad key")))?;
                            keys.insert(k.name.clone(), LessSafeKey::new(key));
                            if j == 0 && n == 0 {
                                write = Some(k.name.clone());
                            }
                        }
                    }
                    (None, Some(_)) => {}
                    _ => {
                        return Err(invalid(format!(
                            "{at}: exactly one of aesgcm or identity is required"
                        )));
                    }
                }
            }
            for resource in &r.resources {
                let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
                let group = if group.is_empty() { "core" } else { group };
                rules.push(Rule {
                    prefix: format!("/registry/{group}/{plural}/"),
                    write: write.clone(),
                });
            }
        }
        Ok(Self {
            rules,
            keys,
            random: SystemRandom::new(),
        })
    }

    /// A configuration sealing Secrets with one new random AES-256 key, as YAML.
    pub fn generate() -> String {
        use base64::Engine as _;
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system random source works");
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n        secret: {}\n  - identity: {{}}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| key.starts_with(&r.prefix))
    }

    /// The stored form of `value` at `key`.
    pub fn seal(&self, key: &str, value: Bytes) -> Result<Bytes, StoreError> {
        let Some(name) = self.rule(key).and_then(|r| r.write.as_ref()) else {
            return Ok(value);
        };
        let sealer = &self.keys[name];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| StoreError::Internal("no random nonce".into()))?;
        let mut data = value.to_vec();
        sealer
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut data,
            )
            .map_err(|_| StoreError::Internal(format!("encrypting {key}")))?;
        let mut out = Vec::with_capacity(PREFIX.len() + name.len() + 1 + NONCE_LEN + data.len());
        out.extend_from_slice(PREFIX.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out.into())
    }

    /// The plaintext of a stored value (unchanged when it was not sealed).
    pub fn open(&self, key: &str, stored: Bytes) -> Result<Bytes, StoreError> {
        let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
            return Ok(stored);
        };
        let colon = rest.iter().position(|b| *b == b':').ok_or_else(|| {
            StoreError::Corrupt(format!("{key}: sealed value without a key name"))
        })?;
        let name = String::from_utf8_lossy(&rest[..colon]).to_string();
        let opener = self.keys.get(&name).ok_or_else(|| {
            StoreError::Internal(format!(
                "{key} is sealed with key {name:?}, which the encryption configuration does not have"
            ))
        })?;
        let sealed = &rest[colon + 1..];
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Corrupt(format!(
                "{key}: sealed value too short"
            )));
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| StoreError::Corrupt(format!("{key}: bad nonce")))?;
        let mut data = data.to_vec();
        let plain = opener
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut data)
            .map_err(|_| {
                StoreError::Corrupt(format!("{key}: decryption with key {name:?} failed"))
            })?;
        Ok(Bytes::copy_from_slice(plain))
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        if !kv.value.is_empty() {
            kv.value = self.open(&kv.key, std::mem::take(&mut kv.value))?;
        }
        Ok(kv)
    }

    fn open_all(&self, kvs: Vec<Option<KeyValue>>) -> Result<Vec<Option<KeyValue>>, StoreError> {
        kvs.into_iter()
            .map(|kv| kv.map(|kv| self.open_kv(kv)).transpose())
            .collect()
    }
}

/// The store with [`Encryption`] applied.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    encryption: Arc<Encryption>,
}

impl EncryptedStore {
    pub fn wrap(inner: Arc<dyn Store>, encryption: Arc<Encryption>) -> Arc<dyn Store> {
        Arc::new(Self { inner, encryption })
    }
}

#[async_trait]
impl Store for EncryptedStore {
    async fn txn(&self, mut txn: Txn) -> Result<TxnOutcome, StoreError> {
        for op in &mut txn.ops {
            if let Op::Put { key, value } = op {
                *value = self.encryption.seal(key, std::mem::take(value))?;
            }
        }
        Ok(match self.inner.txn(txn).await? {
            TxnOutcome::Committed { revision, prev } => TxnOutcome::Committed {
                revision,
                prev: self.encryption.open_all(prev)?,
            },
            TxnOutcome::Failed { current } => TxnOutcome::Failed {
                current: self.encryption.open_all(current)?,
            },
        })
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        self.inner
            .get(key, revision)
            .await?
            .map(|kv| self.encryption.open_kv(kv))
            .transpose()
    }

    async fn list(&self, req: ListRequest) -> Result<ListPage, StoreError> {
        let mut page = self.inner.list(req).await?;
        page.kvs = page
            .kvs
            .into_iter()
            .map(|kv| self.encryption.open_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok(page)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let encryption = self.encryption.clone();
        let stream = self.inner.watch(prefix, after).await?;
        Ok(Box::pin(stream.map(move |ev| {
            let mut ev = ev?;
            ev.kv = encryption.open_kv(ev.kv)?;
            ev.prev = ev.prev.map(|kv| encryption.open_kv(kv)).transpose()?;
            Ok(ev)
        })))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }

    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }
}

/// The encryption configuration in effect at startup: `path` when given, else
/// `default_path`, generated (one random key for Secrets) on first start.
pub fn load_or_generate(
    path: Option<&Path>,
    default_path: &Path,
) -> Result<Encryption, EncryptionError> {
    if let Some(path) = path {
        return Encryption::load(path);
    }
    if !default_path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| EncryptionError::Io {
            path: default_path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(default_path)
            .map_err(io)?;
        f.write_all(Encryption::generate().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        tracing::info!(path = %default_path.display(), "created the encryption configuration: Secrets are encrypted at rest");
    }
    Encryption::load(default_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/registry/core/secrets/ns/s";

    #[test]
    fn sealed_values_open_and_are_bound_to_their_key() {
        let e = Encryption::parse(&Encryption::generate()).unwrap();
        let sealed = e.seal(KEY, Bytes::from_static(b"hunter2")).unwrap();
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(e.open(KEY, sealed.clone()).unwrap(), "hunter2");
        // Moved to another key: refused.
        assert!(
            e.open("/registry/core/secrets/ns/other", sealed.clone())
                .is_err()
        );
        // Tampered: refused.
        let mut bad = sealed.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        assert!(e.open(KEY, bad.into()).is_err());
        // Other resources and old plaintext pass through.
        let cm = "/registry/core/configmaps/ns/c";
        assert_eq!(e.seal(cm, Bytes::from_static(b"x")).unwrap(), "x");
        assert_eq!(e.open(KEY, Bytes::from_static(b"plain")).unwrap(), "plain");
    }

    #[test]
    fn rotation_reads_old_keys_and_writes_with_the_first() {
        let old_text = Encryption::generate();
        let old = Encryption::parse(&old_text).unwrap();
        let sealed_old = old.seal(KEY, Bytes::from_static(b"v")).unwrap();
        let old_key_line = old_text
            .lines()
            .find(|l| l.contains("secret:"))
            .unwrap()
            .trim()
            .to_string();
        // key2 first (writes), key1 kept (reads what it sealed).
        let rotated = format!(
            "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key2\n        secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n      - name: key1\n        {old_key_line}\n"
        );
        let new = Encryption::parse(&rotated).unwrap();
        assert_eq!(new.open(KEY, sealed_old).unwrap(), "v");
        let resealed = new.seal(KEY, Bytes::from_static(b"v")).unwrap();
        assert!(resealed.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        // A configuration that lost key1 cannot read it, and says so.
        let other = Encryption::parse(&Encryption::generate()).unwrap();
        let sealed = old.seal(KEY, Bytes::from_static(b"v")).unwrap();
        assert!(other.open(KEY, sealed).is_err());
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        for (text, want) in [
            ("kind: Other\n", "kind must be EncryptionConfiguration"),
            (
                "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - {name: k, secret: c2hvcnQ=}\n",
                "key must be 16 or 32 bytes",
            ),
            (
                "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: []\n",
                "providers: Required value",
            ),
            (
                "kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - {}\n",
                "exactly one of aesgcm or identity",
            ),
        ] {
            let e = Encryption::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
