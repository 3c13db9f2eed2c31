//! One informer per kind and scope, shared by every loop in a process that watches it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use navarch_gateway::Client;

use crate::informer::{ClientListWatch, Informer, InformerConfig, Scope};
use crate::object::KubeObject;

/// Hands out shared informers: the first request for a kind and scope starts its informer,
/// later ones get the same one (one list, one watch, one cache).
pub struct InformerFactory {
    client: Client,
    config: InformerConfig,
    informers: Mutex<HashMap<(TypeId, Scope), Entry>>,
}

struct Entry {
    informer: Arc<dyn Any + Send + Sync>,
    control: Arc<dyn Control>,
}

/// What the factory does with an informer of any kind.
trait Control: Send + Sync {
    fn synced(self: Arc<Self>) -> futures::future::BoxFuture<'static, ()>;
    fn stop(&self);
}

impl<T: KubeObject> Control for Informer<T> {
    fn synced(self: Arc<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.wait_synced().await })
    }
    fn stop(&self) {
        Informer::stop(self);
    }
}

/// Why waiting for informers failed.
#[derive(Debug, thiserror::Error)]
#[error("informers did not sync within {0:?}")]
pub struct SyncTimeout(pub Duration);

impl InformerFactory {
    pub fn new(client: Client) -> Self {
        Self::with_config(client, InformerConfig::default())
    }

    /// A factory whose informers use `config`.
    pub fn with_config(client: Client, config: InformerConfig) -> Self {
        Self {
            client,
            config,
            informers: Mutex::new(HashMap::new()),
        }
    }

    /// The client informers use.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer for every object of `T`.
    pub fn informer<T: KubeObject>(&self) -> Arc<Informer<T>> {
        self.scoped(Scope::all())
    }

    /// The informer for the objects of `T` in `scope`.
    pub fn scoped<T: KubeObject>(&self, scope: Scope) -> Arc<Informer<T>> {
        let mut informers = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        let key = (TypeId::of::<T>(), scope.clone());
        if let Some(entry) = informers.get(&key)
            && let Ok(informer) = entry.informer.clone().downcast::<Informer<T>>()
        {
            return informer;
        }
        let informer = Arc::new(Informer::<T>::start(
            ClientListWatch::new(self.client.clone(), scope),
            self.config.clone(),
        ));
        informers.insert(
            key,
            Entry {
                informer: informer.clone(),
                control: informer.clone(),
            },
        );
        informer
    }

    /// Waits until every informer started so far has listed once.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), SyncTimeout> {
        let waits: Vec<_> = self
            .informers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|e| e.control.clone().synced())
            .collect();
        tokio::time::timeout(timeout, futures::future::join_all(waits))
            .await
            .map(|_| ())
            .map_err(|_| SyncTimeout(timeout))
    }

    /// Stops and forgets every informer (holders of an `Arc` keep a frozen cache).
    pub fn shutdown(&self) {
        let informers: Vec<Entry> = self
            .informers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, e)| e)
            .collect();
        for entry in informers {
            entry.control.stop();
        }
    }
}
