//! What pod workers need from the cluster, behind a trait: the gateway client in production,
//! a recording fake in unit tests.

use std::sync::Mutex;

use async_trait::async_trait;
use navarch_api::core::v1::{ConfigMap, Pod, PodStatus, Secret, Service};
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use navarch_gateway::client::DeleteParams;

/// The pod-facing calls of the agent.
#[async_trait]
pub trait PodApi: Send + Sync + 'static {
    /// Writes `status` on `pod` (the newest copy the worker has); returns the updated pod.
    /// Ok(None) when the pod is gone or was replaced by another with the same name.
    async fn update_status(&self, pod: &Pod, status: PodStatus) -> Result<Option<Pod>, ApiError>;
    /// Finishes a graceful delete: grace period 0, only if the UID still matches.
    async fn delete_final(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError>;
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError>;
    /// The Services of `namespace` (for the containers' service environment variables).
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError>;
    /// A service-account token bound to a pod (projected `serviceAccountToken` volumes).
    async fn service_account_token(&self, want: &TokenFor) -> Result<String, ApiError>;
}

/// What a projected `serviceAccountToken` source asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenFor {
    pub namespace: String,
    pub account: String,
    /// Empty: the API server.
    pub audience: String,
    pub seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

/// Remembers tokens per pod and source, asking for a new one once 80% of the old one's
/// lifetime has passed (as the kubelet's token manager), so volume refreshes do not mint a
/// token each time.
pub struct TokenCache<A> {
    inner: A,
    tokens: Mutex<
        std::collections::HashMap<TokenFor, (String, std::time::Instant, std::time::Instant)>,
    >,
}

impl<A> TokenCache<A> {
    pub fn new(inner: A) -> Self {
        Self {
            inner,
            tokens: Mutex::default(),
        }
    }
}

#[async_trait]
impl<A: PodApi> PodApi for TokenCache<A> {
    async fn update_status(&self, pod: &Pod, status: PodStatus) -> Result<Option<Pod>, ApiError> {
        self.inner.update_status(pod, status).await
    }

    async fn delete_final(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        self.inner.delete_final(namespace, name, uid).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError> {
        self.inner.secret(namespace, name).await
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError> {
        self.inner.config_map(namespace, name).await
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        self.inner.services(namespace).await
    }

    async fn service_account_token(&self, want: &TokenFor) -> Result<String, ApiError> {
        let now = std::time::Instant::now();
        {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((token, refresh_at, _)) = tokens.get(want)
                && now < *refresh_at
            {
                return Ok(token.clone());
            }
        }
        let token = self.inner.service_account_token(want).await?;
        let lifetime = std::time::Duration::from_secs(want.seconds.max(1) as u64);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, _, expires)| *expires > now);
        tokens.insert(
            want.clone(),
            (token.clone(), now + lifetime.mul_f64(0.8), now + lifetime),
        );
        Ok(token)
    }
}

fn meta(pod: &Pod) -> (String, String, String) {
    let m = pod.metadata.clone().unwrap_or_default();
    (
        m.namespace.unwrap_or_default(),
        m.name.unwrap_or_default(),
        m.uid.unwrap_or_default(),
    )
}

#[async_trait]
impl PodApi for Client {
    async fn update_status(&self, pod: &Pod, status: PodStatus) -> Result<Option<Pod>, ApiError> {
        let (ns, name, uid) = meta(pod);
        let mut body = pod.clone();
        body.status = Some(status.clone());
        for _ in 0..5 {
            match Client::update_status(self, &ns, &name, &body).await {
                Ok(p) => return Ok(Some(p)),
                Err(e) if e.reason == Reason::NotFound => return Ok(None),
                Err(e) if e.reason == Reason::Conflict => {
                    let latest: Pod = match self.get(&ns, &name).await {
                        Ok(p) => p,
                        Err(e) if e.reason == Reason::NotFound => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    if latest.metadata.as_ref().and_then(|m| m.uid.as_deref()) != Some(&uid) {
                        return Ok(None);
                    }
                    body = latest;
                    body.status = Some(status.clone());
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict("pods", &name, "status kept conflicting"))
    }

    async fn service_account_token(&self, want: &TokenFor) -> Result<String, ApiError> {
        let audiences: Vec<String> = (!want.audience.is_empty())
            .then(|| want.audience.clone())
            .into_iter()
            .collect();
        let (token, _) = self
            .request_token(
                &want.namespace,
                &want.account,
                &audiences,
                want.seconds,
                Some((&want.pod_name, &want.pod_uid)),
            )
            .await?;
        Ok(token)
    }

    async fn delete_final(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_uid: uid.into(),
            ..Default::default()
        };
        match self.delete_with::<Pod>(namespace, name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == Reason::NotFound => Ok(()),
            // Another pod with the same name: ours is gone already.
            Err(e) if e.reason == Reason::Conflict => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError> {
        self.get(namespace, name).await
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError> {
        self.get(namespace, name).await
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        Ok(self
            .list::<Service>(namespace, &Default::default())
            .await?
            .items)
    }
}

/// A recording fake: keeps the last status per pod, counts deletes, serves given objects.
#[derive(Default)]
pub struct FakePodApi {
    state: Mutex<FakeApiState>,
}

#[derive(Default)]
struct FakeApiState {
    statuses: Vec<(String, PodStatus)>,
    deleted: Vec<String>,
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
    services: Vec<Service>,
}

impl FakePodApi {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeApiState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every status written, oldest first, as (pod name, status).
    pub fn statuses(&self) -> Vec<(String, PodStatus)> {
        self.lock().statuses.clone()
    }

    pub fn last_status(&self, name: &str) -> Option<PodStatus> {
        self.lock()
            .statuses
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }

    pub fn deleted(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }

    pub fn add_config_map(&self, cm: ConfigMap) {
        self.lock().config_maps.push(cm);
    }

    pub fn add_secret(&self, s: Secret) {
        self.lock().secrets.push(s);
    }

    pub fn add_service(&self, s: Service) {
        self.lock().services.push(s);
    }
}

#[async_trait]
impl PodApi for FakePodApi {
    async fn update_status(&self, pod: &Pod, status: PodStatus) -> Result<Option<Pod>, ApiError> {
        let (_, name, _) = meta(pod);
        self.lock().statuses.push((name, status.clone()));
        let mut p = pod.clone();
        p.status = Some(status);
        Ok(Some(p))
    }

    async fn delete_final(&self, _namespace: &str, name: &str, _uid: &str) -> Result<(), ApiError> {
        self.lock().deleted.push(name.into());
        Ok(())
    }

    async fn secret(&self, _namespace: &str, name: &str) -> Result<Secret, ApiError> {
        self.lock()
            .secrets
            .iter()
            .find(|s| s.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some(name))
            .cloned()
            .ok_or_else(|| ApiError::not_found("secrets", name))
    }

    async fn config_map(&self, _namespace: &str, name: &str) -> Result<ConfigMap, ApiError> {
        self.lock()
            .config_maps
            .iter()
            .find(|s| s.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some(name))
            .cloned()
            .ok_or_else(|| ApiError::not_found("configmaps", name))
    }

    async fn service_account_token(&self, want: &TokenFor) -> Result<String, ApiError> {
        Ok(format!(
            "token-for-{}-{}-{}",
            want.namespace, want.account, want.pod_name
        ))
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        Ok(self
            .lock()
            .services
            .iter()
            .filter(|s| s.metadata.as_ref().and_then(|m| m.namespace.as_deref()) == Some(namespace))
            .cloned()
            .collect())
    }
}
