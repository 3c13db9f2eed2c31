//! Recording core/v1 Events about objects (what `kubectl describe` shows), off the hot path.
//!
//! [`EventRecorder::record`] never waits: events go into a bounded buffer written by a few
//! background writers, and are dropped (and counted) when the buffer is full, as client-go's
//! broadcaster does, so a storm of events never slows the loop that records them.

use std::sync::Arc;

use futures::StreamExt;
use navarch_api::core::v1::{Event, EventSource, ObjectReference};
use navarch_api::meta::v1::ObjectMeta;
use navarch_gateway::Client;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::object::KubeObject;

/// Events waiting to be written; more are dropped.
const BUFFER: usize = 1024;
/// Concurrent event writes.
const WRITERS: usize = 4;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// A reference to `obj` for an event's `involvedObject`.
pub fn object_reference<T: KubeObject>(obj: &T) -> ObjectReference {
    let kind = T::kind();
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(kind.api_version()),
        kind: Some(kind.kind.to_string()),
        namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// Writes Events in the background for one component (`default-scheduler`, a controller).
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Event>,
    component: Arc<str>,
    instance: Arc<str>,
    dropped: Counter<u64>,
    _writer: Arc<WriterTask>,
}

struct WriterTask(JoinHandle<()>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EventRecorder {
    /// A recorder for `component` (the event's `source.component` and `reportingComponent`)
    /// running as `instance` (`reportingInstance`, e.g. the host name).
    pub fn new(client: Client, component: &str, instance: &str) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(BUFFER);
        let writer = tokio::spawn(async move {
            futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
                .for_each_concurrent(WRITERS, |event| {
                    let client = client.clone();
                    async move {
                        let namespace = event
                            .metadata
                            .as_ref()
                            .and_then(|m| m.namespace.clone())
                            .unwrap_or_default();
                        if let Err(e) = client.create(&namespace, &event).await {
                            tracing::debug!(error = %e, reason = ?event.reason, "writing an event failed");
                        }
                    }
                })
                .await
        });
        let dropped = navarch_telemetry::meter("navarch-runtime")
            .u64_counter("navarch.events.dropped")
            .with_unit("{event}")
            .with_description("Events not written because the recorder's buffer was full")
            .build();
        Self {
            tx,
            component: component.into(),
            instance: instance.into(),
            dropped,
            _writer: Arc::new(WriterTask(writer)),
        }
    }

    /// Records an event about `object` (see [`object_reference`]).
    pub fn record(
        &self,
        object: ObjectReference,
        event_type: EventType,
        reason: &str,
        action: &str,
        message: impl Into<String>,
    ) {
        let now = jiff::Timestamp::now();
        let seconds = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
        let namespace = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: Some(ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..Default::default()
            }),
            involved_object: Some(object),
            reason: Some(reason.to_string()),
            message: Some(message.into()),
            r#type: Some(event_type.as_str().to_string()),
            action: Some(action.to_string()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.instance.to_string()),
            first_timestamp: Some(seconds.clone()),
            last_timestamp: Some(seconds),
            event_time: Some(crate::leader_election::micro_time_now()),
            count: Some(1),
            ..Default::default()
        };
        if self.tx.try_send(event).is_err() {
            self.dropped
                .add(1, &[KeyValue::new("component", self.component.to_string())]);
        }
    }
}
