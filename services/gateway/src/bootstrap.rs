//! Node bootstrap, as kubeadm's bootstrap tokens: a short-lived join token
//! `<id>.<secret>` is a Secret `bootstrap-token-<id>` in `kube-system` (type
//! `bootstrap.kubernetes.io/token`); it authenticates as `system:bootstrap:<id>` in group
//! `system:bootstrappers`, whose only right is to ask for a node credential
//! (`RequestNodeCredential`): a client certificate `CN=system:node:<name>,
//! O=system:nodes` signed by the cluster CA for a key the agent keeps. The agent then
//! authenticates with that certificate and renews it with itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use navarch_api::core::v1::Secret;
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, Object};

use crate::auth::{Authenticator, UserInfo};

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const NAMESPACE: &str = "kube-system";
/// Every bootstrap token's group.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The group of the tokens `navarch token create` makes (kubeadm's
/// `system:bootstrappers:kubeadm:default-node-token`).
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:navarch:default-node-token";
/// How long a node certificate is valid; agents renew at 80%.
pub const NODE_CERT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

#[derive(Clone, Debug)]
struct Entry {
    secret: String,
    expires: Option<jiff::Timestamp>,
    groups: Vec<String>,
}

/// The bootstrap tokens in effect, followed from the stored Secrets.
#[derive(Default)]
pub struct BootstrapTokens {
    tokens: RwLock<HashMap<String, Entry>>,
}

/// `(id, secret)` when `token` has the bootstrap token form `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A new random token `<id>.<secret>`.
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let id = pick(6);
    format!("{id}.{}", pick(16))
}

/// The Secret that makes `token` a join token until `expires`.
pub fn secret_for(token: &str, expires: jiff::Timestamp, description: &str) -> Option<Secret> {
    let (id, secret) = parse(token)?;
    let data = [
        ("token-id", id.to_string()),
        ("token-secret", secret.to_string()),
        (
            "expiration",
            expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
        ("usage-bootstrap-authentication", "true".into()),
        ("auth-extra-groups", DEFAULT_NODE_TOKEN_GROUP.into()),
        ("description", description.into()),
    ];
    Some(Secret {
        metadata: Some(ObjectMeta {
            name: Some(format!("{SECRET_PREFIX}{id}")),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }),
        r#type: Some(SECRET_TYPE.into()),
        data: data
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes()))
            .collect(),
        ..Default::default()
    })
}

impl BootstrapTokens {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn entry(obj: &Object) -> Option<(String, Entry)> {
        if obj.namespace() != NAMESPACE {
            return None;
        }
        let secret: Secret = obj.to_typed().ok()?;
        if secret.r#type.as_deref() != Some(SECRET_TYPE) {
            return None;
        }
        let text = |k: &str| {
            secret
                .data
                .get(k)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default()
        };
        if text("usage-bootstrap-authentication") != "true" {
            return None;
        }
        let id = text("token-id");
        if secret.metadata.as_ref()?.name.as_deref()? != format!("{SECRET_PREFIX}{id}") {
            return None;
        }
        let groups = text("auth-extra-groups")
            .split(',')
            .map(str::trim)
            .filter(|g| g.starts_with("system:bootstrappers:"))
            .map(String::from)
            .collect();
        let expires = match text("expiration") {
            e if e.is_empty() => None,
            e => Some(e.parse().ok()?),
        };
        Some((
            id,
            Entry {
                secret: text("token-secret"),
                expires,
                groups,
            },
        ))
    }

    fn apply(&self, obj: &Object, deleted: bool) {
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        let id = obj
            .name()
            .strip_prefix(SECRET_PREFIX)
            .unwrap_or_default()
            .to_string();
        match Self::entry(obj) {
            Some((id, entry)) if !deleted => {
                tokens.insert(id, entry);
            }
            _ => {
                tokens.remove(&id);
            }
        }
    }

    /// Follows the bootstrap token Secrets (abort the task on shutdown).
    pub fn spawn_sync(
        self: &Arc<Self>,
        registry: Arc<crate::registry::Registry>,
    ) -> tokio::task::JoinHandle<()> {
        let kind = <Secret as crate::client::Resource>::kind();
        let (reset, apply) = (self.clone(), self.clone());
        crate::watch_cache::follow(
            registry,
            vec![kind],
            "bootstrap tokens",
            move |objects| {
                let fresh: HashMap<_, _> = objects.iter().filter_map(Self::entry).collect();
                *reset.tokens.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            },
            move |obj, deleted| apply.apply(obj, deleted),
        )
    }
}

impl Authenticator for BootstrapTokens {
    fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let (id, secret) = parse(token)?;
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let entry = tokens.get(id)?;
        // Constant time: the secret is compared whole, not byte by byte until a mismatch.
        if !constant_time_eq(entry.secret.as_bytes(), secret.as_bytes()) {
            return None;
        }
        if entry.expires.is_some_and(|t| t <= jiff::Timestamp::now()) {
            tracing::info!(token_id = id, "expired join token refused");
            return None;
        }
        let mut groups = vec![BOOTSTRAPPERS.to_string()];
        groups.extend(entry.groups.iter().cloned());
        Some(UserInfo {
            name: format!("system:bootstrap:{id}"),
            uid: String::new(),
            groups,
            ..Default::default()
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who may get which node certificate: a bootstrapper any node's (as kubeadm's
/// auto-approval of bootstrap CSRs), a node only its own (renewal).
pub fn node_name_for(user: &UserInfo, asked: &str) -> Result<String, ApiError> {
    let name = asked
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "a node credential is for CN=system:node:<name>, not {asked:?}"
            ))
        })?;
    if user.in_group("system:nodes") && user.name != asked {
        return Err(ApiError::forbidden(format!(
            "node {:?} may only renew its own credential, not {asked:?}",
            user.name
        )));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_form_is_checked() {
        let t = generate();
        assert!(parse(&t).is_some(), "{t}");
        for bad in [
            "abcdef",
            "abcdef.",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef0",
            "",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_stored_token_authenticates_until_it_expires_or_is_deleted() {
        let tokens = BootstrapTokens::new();
        let t = generate();
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
        let obj = Object::from_typed(&secret_for(&t, later, "test").unwrap()).unwrap();
        tokens.apply(&obj, false);
        let user = tokens.authenticate(&t).unwrap();
        assert!(user.name.starts_with("system:bootstrap:"));
        assert_eq!(user.groups, vec![BOOTSTRAPPERS, DEFAULT_NODE_TOKEN_GROUP]);
        let (id, _) = parse(&t).unwrap();
        assert!(
            tokens
                .authenticate(&format!("{id}.0000000000000000"))
                .is_none()
        );
        tokens.apply(&obj, true);
        assert!(tokens.authenticate(&t).is_none());
        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
        let expired = Object::from_typed(&secret_for(&t, past, "test").unwrap()).unwrap();
        tokens.apply(&expired, false);
        assert!(tokens.authenticate(&t).is_none());
    }
}
