//! Authentication and authorization: the first two stages of every request.
//!
//! Authentication turns request credentials into a [`UserInfo`] or rejects the request as
//! Unauthorized (anonymous requests are rejected). Authorization decides whether that user
//! may perform the verb on the resource: [`crate::rbac::Rbac`] in a cluster, [`MastersOnly`]
//! in tests that need no policy (members of `system:masters` may do everything, others
//! nothing). Every authenticated user is also in `system:authenticated`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use navarch_api::ApiError;

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (Kubernetes' `user.extra`): for service-account tokens bound to a
    /// pod, `authentication.kubernetes.io/pod-name`, `…/pod-uid`, `…/credential-id`.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Identifies the caller of a request from its bearer token.
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(Some(user))` when the token is known, `Ok(None)` when this method does not apply.
    fn authenticate(&self, token: &str) -> Option<UserInfo>;
}

/// Static bearer tokens, in the format of Kubernetes' `--token-auth-file`: one CSV line per
/// token, `token,user,uid,"group1,group2"` (groups optional).
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

/// A malformed token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("token file line {line}: {reason}")]
    Parse { line: usize, reason: String },
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            let err = |reason: &str| TokenFileError::Parse {
                line: i + 1,
                reason: reason.into(),
            };
            if fields.len() < 3 {
                return Err(err("expected at least token,user,uid"));
            }
            if fields[0].is_empty() || fields[1].is_empty() {
                return Err(err("token and user must not be empty"));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let user = UserInfo {
                name: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
                extra: Default::default(),
            };
            if tokens.insert(fields[0].clone(), user).is_some() {
                return Err(err("duplicate token"));
            }
        }
        Ok(Self { tokens })
    }

    /// Adds a token (for tests and the generated admin token).
    pub fn insert(&mut self, token: impl Into<String>, user: UserInfo) {
        self.tokens.insert(token.into(), user);
    }

    /// Renders the file format.
    pub fn line(token: &str, user: &UserInfo) -> String {
        format!(
            "{token},{},{},\"{}\"\n",
            user.name,
            user.uid,
            user.groups.join(",")
        )
    }
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

impl Authenticator for TokenFile {
    fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// The API facade's user: the front proxy, which forwards its callers' client certificates
/// (it is never itself the identity of a request it forwards).
pub const FRONT_PROXY_USER: &str = "system:navarch:facade";

/// gRPC metadata carrying a caller's client certificate (base64 DER), believed only from the
/// [`FRONT_PROXY_USER`].
pub const FORWARDED_CERT: &str = "navarch-client-certificate";

/// The user a client certificate names: CN is the name, each O a group (as Kubernetes).
pub fn certificate_user(der: &[u8]) -> Result<UserInfo, ApiError> {
    let subject = navarch_pki::subject(der).map_err(|reason| {
        tracing::debug!(reason, "client certificate refused");
        ApiError::unauthorized()
    })?;
    // Checked at every request, not only at the handshake: a connection outlives its
    // certificate only until the next call.
    if subject.not_after <= jiff::Timestamp::now().as_second() {
        tracing::info!(user = %subject.common_name, "expired client certificate refused");
        return Err(ApiError::unauthorized());
    }
    Ok(UserInfo {
        name: subject.common_name,
        uid: String::new(),
        groups: subject.organizations,
        ..Default::default()
    })
}

/// Tries the client certificate first (as kube-apiserver), then each token method in turn.
#[derive(Clone, Default)]
pub struct AuthChain {
    methods: Vec<Arc<dyn Authenticator>>,
    forwarded: Option<navarch_pki::ClientVerifier>,
}

impl AuthChain {
    pub fn new(methods: Vec<Arc<dyn Authenticator>>) -> Self {
        Self {
            methods,
            forwarded: None,
        }
    }

    /// Believe client certificates the front proxy forwards once `verifier` accepts them.
    pub fn with_forwarded_certificates(mut self, verifier: navarch_pki::ClientVerifier) -> Self {
        self.forwarded = Some(verifier);
        self
    }

    /// Authenticates a call: `peer` is the TLS client certificate of the connection (DER,
    /// verified by the handshake), `forwarded` the [`FORWARDED_CERT`] metadata, `header` the
    /// `authorization` metadata.
    pub fn authenticate(
        &self,
        peer: Option<&[u8]>,
        forwarded: Option<&str>,
        header: Option<&str>,
    ) -> Result<UserInfo, ApiError> {
        let mut user = match peer.map(certificate_user).transpose()? {
            Some(proxy) if proxy.name == FRONT_PROXY_USER => match forwarded {
                Some(cert) => self.forwarded_user(cert)?,
                None => self.token_user(header)?,
            },
            Some(user) => user,
            None => self.token_user(header)?,
        };
        if !user.in_group(crate::rbac::AUTHENTICATED) {
            user.groups.push(crate::rbac::AUTHENTICATED.into());
        }
        Ok(user)
    }

    fn forwarded_user(&self, cert: &str) -> Result<UserInfo, ApiError> {
        use base64::Engine as _;
        let verifier = self.forwarded.as_ref().ok_or_else(ApiError::unauthorized)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(cert)
            .map_err(|_| ApiError::unauthorized())?;
        verifier.verify(&der).map_err(|reason| {
            tracing::info!(reason, "forwarded client certificate refused");
            ApiError::unauthorized()
        })?;
        certificate_user(&der)
    }

    /// Authenticates the `authorization` header value (`Bearer <token>`) alone.
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<UserInfo, ApiError> {
        self.authenticate(None, None, header)
    }

    fn token_user(&self, header: Option<&str>) -> Result<UserInfo, ApiError> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        self.methods
            .iter()
            .find_map(|m| m.authenticate(token))
            .ok_or_else(ApiError::unauthorized)
    }
}

/// What a request wants to do, for authorization (Kubernetes' request attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub verb: &'static str,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// Decides whether a user may do what a request asks.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError>;

    /// Whether `user` may do `req` (access reviews; non-resource paths such as `/metrics`).
    fn allows(&self, user: &UserInfo, req: &crate::rbac::Request<'_>) -> bool {
        match *req {
            crate::rbac::Request::Resource {
                verb,
                group,
                resource,
                namespace,
                name,
            } => {
                let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
                self.authorize(
                    user,
                    &Attributes {
                        verb: static_verb(verb),
                        group: group.to_string(),
                        resource: resource.to_string(),
                        subresource: subresource.to_string(),
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                    },
                )
                .is_ok()
            }
            crate::rbac::Request::NonResource { .. } => user.in_group("system:masters"),
        }
    }

    /// The rules `user` holds in `namespace` (SelfSubjectRulesReview), and whether the list
    /// is complete.
    fn rules(
        &self,
        user: &UserInfo,
        _namespace: &str,
    ) -> (Vec<navarch_api::rbac::v1::PolicyRule>, bool) {
        if user.in_group("system:masters") {
            return (crate::rbac::superuser_rules(), true);
        }
        (Vec::new(), false)
    }
}

/// The verbs Kubernetes authorizes, as the `&'static str` [`Attributes`] carries.
pub fn static_verb(verb: &str) -> &'static str {
    const VERBS: &[&str] = &[
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "bind",
        "escalate",
        "impersonate",
        "use",
        "approve",
        "sign",
        "proxy",
        "*",
    ];
    VERBS
        .iter()
        .find(|v| **v == verb)
        .copied()
        .unwrap_or("unknown")
}

/// Members of `system:masters` may do everything; everyone else is forbidden.
#[derive(Clone, Copy, Debug, Default)]
pub struct MastersOnly;

impl Authorizer for MastersOnly {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        if user.in_group("system:masters") {
            return Ok(());
        }
        Err(forbidden(user, attrs))
    }
}

/// Kubernetes' Forbidden message: `pods "x" is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace "ns"`.
pub fn forbidden(user: &UserInfo, a: &Attributes) -> ApiError {
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let subject = if a.name.is_empty() {
        resource.clone()
    } else {
        format!("{resource} \"{}\"", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    ApiError::forbidden(format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    ))
    .on(&a.group, &a.resource, &a.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_parses_kubernetes_format() {
        let file =
            TokenFile::parse("# comment\nabc,admin,1,\"system:masters,dev\"\nxyz,bob,2\n").unwrap();
        let admin = file.authenticate("abc").unwrap();
        assert_eq!(admin.name, "admin");
        assert_eq!(admin.groups, vec!["system:masters", "dev"]);
        assert!(file.authenticate("xyz").unwrap().groups.is_empty());
        assert!(file.authenticate("nope").is_none());
        assert!(TokenFile::parse("onlytoken\n").is_err());
        assert!(TokenFile::parse("a,u,1\na,v,2\n").is_err());
    }

    #[test]
    fn anonymous_and_unknown_tokens_are_unauthorized() {
        let mut file = TokenFile::default();
        file.insert(
            "t",
            UserInfo {
                name: "u".into(),
                ..Default::default()
            },
        );
        let chain = AuthChain::new(vec![Arc::new(file)]);
        assert_eq!(
            chain.authenticate_header(Some("Bearer t")).unwrap().name,
            "u"
        );
        for h in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Basic dTpw"),
            Some("Bearer wrong"),
        ] {
            assert_eq!(
                chain.authenticate_header(h).unwrap_err().code(),
                401,
                "{h:?}"
            );
        }
    }

    #[test]
    fn only_masters_are_authorized() {
        let attrs = Attributes {
            verb: "get",
            group: String::new(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "default".into(),
            name: "x".into(),
        };
        let admin = UserInfo {
            name: "a".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        let bob = UserInfo {
            name: "bob".into(),
            ..Default::default()
        };
        assert!(MastersOnly.authorize(&admin, &attrs).is_ok());
        let e = MastersOnly.authorize(&bob, &attrs).unwrap_err();
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.message,
            "pods \"x\" is forbidden: User \"bob\" cannot get resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }
}
