//! An in-process gateway (memory store, plain HTTP/2 on 127.0.0.1:0) and helpers to wait
//! for pod states.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use navarch_api::core::v1::{Container, Pod, PodSpec, PodStatus};
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, Reason};
use navarch_gateway::auth::{AuthChain, TokenFile, UserInfo};
use navarch_gateway::{Client, GatewayConfig, MastersOnly, RunningGateway};

pub const T: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub gateway: Option<RunningGateway>,
    pub client: Client,
}

impl Cluster {
    pub async fn start() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "navarch_agent=info".into()),
            )
            .with_test_writer()
            .try_init();
        let mut tokens = TokenFile::default();
        tokens.insert(
            "admin-token",
            UserInfo {
                name: "admin".into(),
                uid: "1".into(),
                groups: vec!["system:masters".into()],
                extra: Default::default(),
            },
        );
        let gateway = tokio::time::timeout(
            T,
            navarch_gateway::start(GatewayConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                store: navarch_store::open_memory(),
                authenticator: AuthChain::new(vec![Arc::new(tokens)]),
                authorizer: Arc::new(MastersOnly),
                tls: None,
                tokens: None,
                audit: None,
                node_signer: None,
            }),
        )
        .await
        .unwrap()
        .unwrap();
        let url = format!("http://{}", gateway.addr);
        let client = tokio::time::timeout(T, Client::connect(&url, "", "admin-token"))
            .await
            .unwrap()
            .unwrap();
        Self {
            gateway: Some(gateway),
            client,
        }
    }

    pub async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            tokio::time::timeout(T, g.shutdown()).await.unwrap();
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `T` with `what`.
pub async fn eventually<V, F, Fut>(what: &str, mut check: F) -> V
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<V>>,
{
    match tokio::time::timeout(T, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub async fn get_pod(client: &Client, name: &str) -> Result<Pod, ApiError> {
    tokio::time::timeout(T, client.get::<Pod>("default", name))
        .await
        .expect("get in time")
}

/// Waits until the pod's status satisfies `check`; returns that status.
pub async fn wait_status(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    let mut last = None;
    let result = tokio::time::timeout(T, async {
        loop {
            if let Ok(p) = get_pod(client, name).await
                && let Some(s) = p.status
            {
                if check(&s) {
                    return s;
                }
                last = Some(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match result {
        Ok(s) => s,
        Err(_) => panic!("timed out waiting for pod {name} to be {what}; last status: {last:#?}"),
    }
}

pub async fn wait_gone(client: &Client, name: &str) {
    eventually(&format!("pod {name} removed"), || async {
        match get_pod(client, name).await {
            Err(e) if e.reason == Reason::NotFound => Some(()),
            _ => None,
        }
    })
    .await
}

pub fn condition(s: &PodStatus, t: &str) -> Option<String> {
    s.conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some(t))
        .and_then(|c| c.status.clone())
}

pub fn pod(name: &str, node: &str, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers,
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn waiting_reason(s: &PodStatus, i: usize) -> Option<String> {
    s.container_statuses
        .get(i)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}
