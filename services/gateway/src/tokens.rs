//! Service-account tokens: signed JWTs (ES256) in Kubernetes' format, bound to a
//! ServiceAccount and optionally to a Pod, with an expiry. Issued through the TokenRequest
//! subresource (`kubectl create token`, the agent's projected `serviceAccountToken`
//! volumes); checked by [`TokenIssuer`] as an [`Authenticator`] (signature, expiry,
//! issuer, audience) and then against the store (the ServiceAccount and Pod still exist
//! with the UIDs the token names: deleting either revokes its tokens).

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use navarch_api::core::v1::{Pod, ServiceAccount};
use navarch_api::{ApiError, FieldError, Reason};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::auth::{Authenticator, UserInfo};
use crate::registry::Registry;

/// The issuer (`iss`) of the tokens, and their default audience: the API's in-cluster name.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Kubernetes' default TokenRequest lifetime.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a TokenRequest may ask for (as Kubernetes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest lifetime issued (Kubernetes' `--service-account-max-token-expiration` is
/// unbounded by default; a day keeps leaked tokens short-lived).
pub const MAX_EXPIRATION_SECONDS: i64 = 48 * 3600;

/// The groups every service account is in.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
const USER_PREFIX: &str = "system:serviceaccount:";
/// `user.extra` keys Kubernetes sets for bound tokens.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
}

/// The claims of a service-account token (Kubernetes' layout).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// Signs and verifies service-account tokens with the cluster's signing key.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenIssuer {
    /// From the signing key's PEMs (PKCS#8 private, SPKI public; ECDSA P-256).
    pub fn new(key: &navarch_pki::SigningKey) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        Ok(Self {
            encoding: EncodingKey::from_ec_pem(key.private_pem.as_bytes())?,
            decoding: DecodingKey::from_ec_pem(key.public_pem.as_bytes())?,
            validation,
        })
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("signing a token: {e}")))
    }

    /// The claims of `token` when its signature, issuer, audience and times are valid. Any
    /// input is safe: garbage is `None`.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Some(data.claims),
            Err(e) => {
                tracing::debug!(error = %e, "service-account token refused");
                None
            }
        }
    }
}

impl Authenticator for TokenIssuer {
    fn authenticate(&self, token: &str) -> Option<UserInfo> {
        // JWTs have three dot-separated parts; anything else is another method's token.
        if token.split('.').count() != 3 {
            return None;
        }
        let claims = self.verify(token)?;
        let k = &claims.kubernetes;
        if claims.sub != format!("{USER_PREFIX}{}:{}", k.namespace, k.serviceaccount.name) {
            return None;
        }
        let mut extra = BTreeMap::new();
        extra.insert(
            EXTRA_CREDENTIAL_ID.to_string(),
            vec![format!("JTI={}", claims.jti)],
        );
        if let Some(pod) = &k.pod {
            extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
            extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
        }
        Some(UserInfo {
            name: claims.sub.clone(),
            uid: k.serviceaccount.uid.clone(),
            groups: vec![
                ALL_SERVICE_ACCOUNTS.to_string(),
                format!("{ALL_SERVICE_ACCOUNTS}:{}", k.namespace),
            ],
            extra,
        })
    }
}

/// Whether `user` was authenticated by a service-account token (and must be checked
/// against the store).
fn from_token(user: &UserInfo) -> Option<(&str, &str)> {
    let jti = user.extra.get(EXTRA_CREDENTIAL_ID)?.first()?;
    if !jti.starts_with("JTI=") {
        return None;
    }
    user.name.strip_prefix(USER_PREFIX)?.split_once(':')
}

/// Refuses a token whose ServiceAccount (or bound Pod) was deleted or replaced since it was
/// issued: 401, as kube-apiserver.
pub async fn check_still_bound(registry: &Registry, user: &UserInfo) -> Result<(), ApiError> {
    let Some((namespace, name)) = from_token(user) else {
        return Ok(());
    };
    let revoked = |what: String| {
        tracing::info!(user = %user.name, what, "service-account token refused");
        ApiError::unauthorized()
    };
    let sa_kind = <ServiceAccount as crate::client::Resource>::kind();
    let sa: ServiceAccount = match registry.get(sa_kind, namespace, name).await {
        Ok(obj) => obj.to_typed()?,
        Err(e) if e.reason == Reason::NotFound => {
            return Err(revoked(format!(
                "serviceaccount {namespace}/{name} is gone"
            )));
        }
        Err(e) => return Err(e),
    };
    let uid = sa.metadata.and_then(|m| m.uid).unwrap_or_default();
    if uid != user.uid {
        return Err(revoked(format!(
            "serviceaccount {namespace}/{name} was replaced"
        )));
    }
    if let (Some(pod), Some(pod_uid)) = (
        user.extra.get(EXTRA_POD_NAME).and_then(|v| v.first()),
        user.extra.get(EXTRA_POD_UID).and_then(|v| v.first()),
    ) {
        let pod_kind = <Pod as crate::client::Resource>::kind();
        let current = match registry.get(pod_kind, namespace, pod).await {
            Ok(obj) => obj.meta().uid.clone().unwrap_or_default(),
            Err(e) if e.reason == Reason::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        if &current != pod_uid {
            return Err(revoked(format!("pod {namespace}/{pod} is gone")));
        }
    }
    Ok(())
}

/// Answers a TokenRequest (`serviceaccounts/token`) for `namespace/name`: the request as
/// sent, with `status.token` and `status.expirationTimestamp`.
pub async fn request(
    registry: &Registry,
    issuer: &TokenIssuer,
    namespace: &str,
    name: &str,
    mut body: Json,
) -> Result<Json, ApiError> {
    let invalid = |errors: Vec<FieldError>| {
        ApiError::invalid("authentication.k8s.io", "TokenRequest", name, errors)
    };
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = spec
        .get("expirationSeconds")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(vec![FieldError::invalid(
            "spec.expirationSeconds",
            seconds,
            "may not specify a duration less than 10 minutes",
        )]));
    }
    let seconds = seconds.min(MAX_EXPIRATION_SECONDS);
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(ISSUER.to_string());
    }
    let sa_kind = <ServiceAccount as crate::client::Resource>::kind();
    let sa = registry.get(sa_kind, namespace, name).await?;
    let sa_uid = sa.meta().uid.clone().unwrap_or_default();
    let pod = match spec.get("boundObjectRef").filter(|r| !r.is_null()) {
        None => None,
        Some(bound) => {
            let kind = bound.get("kind").and_then(Json::as_str).unwrap_or_default();
            if kind != "Pod" {
                return Err(invalid(vec![FieldError::not_supported(
                    "spec.boundObjectRef.kind",
                    kind,
                    &["Pod"],
                )]));
            }
            let pod_name = bound.get("name").and_then(Json::as_str).unwrap_or_default();
            let pod_kind = <Pod as crate::client::Resource>::kind();
            let pod: Pod = registry
                .get(pod_kind, namespace, pod_name)
                .await?
                .to_typed()?;
            let meta = pod.metadata.clone().unwrap_or_default();
            let uid = meta.uid.unwrap_or_default();
            if let Some(want) = bound
                .get("uid")
                .and_then(Json::as_str)
                .filter(|u| !u.is_empty())
                && want != uid
            {
                return Err(ApiError::conflict(
                    "pods",
                    pod_name,
                    &format!(
                        "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                ));
            }
            let account = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into());
            if account != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                )));
            }
            Some(Ref {
                name: pod_name.to_string(),
                uid,
            })
        }
    };
    let now = jiff::Timestamp::now();
    let iat = now.as_second();
    let claims = Claims {
        iss: ISSUER.to_string(),
        sub: format!("{USER_PREFIX}{namespace}:{name}"),
        aud: audiences.clone(),
        exp: iat + seconds,
        iat,
        nbf: iat,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: KubernetesClaims {
            namespace: namespace.to_string(),
            serviceaccount: Ref {
                name: name.to_string(),
                uid: sa_uid,
            },
            pod,
        },
    };
    let token = issuer.sign(&claims)?;
    let expires =
        jiff::Timestamp::from_second(claims.exp).map_err(|e| ApiError::internal(e.to_string()))?;
    tracing::info!(
        namespace,
        serviceaccount = name,
        expiration_seconds = seconds,
        bound_pod = claims.kubernetes.pod.as_ref().map(|p| p.name.as_str()),
        "issued service-account token"
    );
    body["apiVersion"] = json!("authentication.k8s.io/v1");
    body["kind"] = json!("TokenRequest");
    let meta = body
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    if let Some(meta) = meta.filter(|m| m.is_object()) {
        meta["name"] = json!(name);
        meta["namespace"] = json!(namespace);
        meta["creationTimestamp"] = json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    body["spec"] = spec;
    body["spec"]["audiences"] = json!(audiences);
    body["spec"]["expirationSeconds"] = json!(seconds);
    body["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let dir = tempfile::tempdir().unwrap();
        let pki = navarch_pki::ClusterPki::load_or_create(dir.path(), &[]).unwrap();
        TokenIssuer::new(&pki.signing_key().unwrap()).unwrap()
    }

    fn claims(exp_in: i64, aud: &str) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud: vec![aud.into()],
            exp: now + exp_in,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "ns".into(),
                serviceaccount: Ref {
                    name: "sa".into(),
                    uid: "u1".into(),
                },
                pod: None,
            },
        }
    }

    #[test]
    fn a_valid_token_names_its_service_account() {
        let i = issuer();
        let user = i
            .authenticate(&i.sign(&claims(600, ISSUER)).unwrap())
            .unwrap();
        assert_eq!(user.name, "system:serviceaccount:ns:sa");
        assert_eq!(user.uid, "u1");
        assert_eq!(
            user.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:ns"]
        );
        assert_eq!(from_token(&user), Some(("ns", "sa")));
    }

    #[test]
    fn expired_tampered_foreign_and_wrong_audience_tokens_are_refused() {
        let i = issuer();
        // Past the 60 s leeway.
        assert!(
            i.authenticate(&i.sign(&claims(-120, ISSUER)).unwrap())
                .is_none()
        );
        assert!(
            i.authenticate(&i.sign(&claims(600, "https://elsewhere")).unwrap())
                .is_none()
        );
        let good = i.sign(&claims(600, ISSUER)).unwrap();
        let (head, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        use base64::Engine as _;
        let mut forged = claims(600, ISSUER);
        forged.kubernetes.serviceaccount.name = "admin".into();
        forged.sub = "system:serviceaccount:ns:admin".into();
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).unwrap());
        assert!(i.authenticate(&format!("{head}.{body}.{sig}")).is_none());
        // Signed by another cluster's key.
        assert!(issuer().authenticate(&good).is_none());
        // An unsigned token ("alg": "none").
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(i.authenticate(&format!("{none}.{body}.")).is_none());
    }

    #[test]
    fn a_subject_that_disagrees_with_the_claims_is_refused() {
        let i = issuer();
        let mut c = claims(600, ISSUER);
        c.sub = "system:serviceaccount:kube-system:admin".into();
        assert!(i.authenticate(&i.sign(&c).unwrap()).is_none());
    }
}
