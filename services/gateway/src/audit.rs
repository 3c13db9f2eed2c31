//! The audit log: one JSON line per API request (Kubernetes' `audit.k8s.io/v1` Event at
//! stage `ResponseComplete`): who (user, groups), what (verb, resource, subresource,
//! namespace, name), the response code and the latency. Written by a background task so a
//! slow disk never holds a request; a full queue drops lines and counts them (the metric
//! `navarch.audit.dropped`) rather than blocking the API.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;
use serde_json::json;
use tokio::sync::mpsc;

use crate::auth::UserInfo;

/// How much each line records (Kubernetes' audit levels; `Request` and `RequestResponse`
/// bodies are not recorded: Secrets must never reach the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    None,
    Metadata,
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "None" => Ok(Self::None),
            "Metadata" => Ok(Self::Metadata),
            other => Err(format!(
                "unsupported audit level {other:?}: None or Metadata"
            )),
        }
    }
}

/// Lines waiting for the writer.
const QUEUE: usize = 16_384;

/// Where the lines go.
pub struct AuditLog {
    tx: mpsc::Sender<String>,
    level: Level,
    dropped: opentelemetry::metrics::Counter<u64>,
}

impl AuditLog {
    /// Appends to `path` (`-`: standard output), rotating to `<path>.1` past `max_bytes`.
    pub fn open(path: PathBuf, level: Level, max_bytes: u64) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let mut sink = Sink::open(path, max_bytes)?;
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Some(line) = rx.blocking_recv() {
                    sink.write(&line);
                    // Drain what queued meanwhile, then flush once.
                    while let Ok(line) = rx.try_recv() {
                        sink.write(&line);
                    }
                    sink.flush();
                }
            })?;
        let dropped = opentelemetry::global::meter("navarch-gateway")
            .u64_counter("navarch.audit.dropped")
            .with_description("Audit lines dropped because the writer fell behind")
            .build();
        dropped.add(0, &[]);
        Ok(Self { tx, level, dropped })
    }

    fn record(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.add(1, &[]);
        }
    }
}

struct Sink {
    path: PathBuf,
    out: Box<dyn Write + Send>,
    written: u64,
    max_bytes: u64,
}

impl Sink {
    fn open(path: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        let (out, written): (Box<dyn Write + Send>, u64) = if path.as_os_str() == "-" {
            (Box::new(std::io::stdout()), 0)
        } else {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let len = f.metadata()?.len();
            (Box::new(std::io::BufWriter::new(f)), len)
        };
        Ok(Self {
            path,
            out,
            written,
            max_bytes,
        })
    }

    fn write(&mut self, line: &str) {
        if self.max_bytes > 0 && self.written > self.max_bytes && self.path.as_os_str() != "-" {
            self.rotate();
        }
        match writeln!(self.out, "{line}") {
            Ok(()) => self.written += line.len() as u64 + 1,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "writing the audit log failed")
            }
        }
    }

    fn rotate(&mut self) {
        self.flush();
        let backup = PathBuf::from(format!("{}.1", self.path.display()));
        if let Err(e) = std::fs::rename(&self.path, &backup) {
            tracing::warn!(path = %self.path.display(), error = %e, "rotating the audit log failed");
            return;
        }
        match Self::open(self.path.clone(), self.max_bytes) {
            Ok(fresh) => *self = fresh,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "reopening the audit log failed")
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!(path = %self.path.display(), error = %e, "flushing the audit log failed");
        }
    }
}

/// What one request was about, gathered as it arrives and written when it ends.
pub struct Audit {
    received: jiff::Timestamp,
    user: Option<(String, Vec<String>)>,
    namespace: String,
    name: String,
    resource: pb::Resource,
}

impl Audit {
    pub fn new(
        user: &Result<UserInfo, ApiError>,
        namespace: &str,
        name: &str,
        resource: Option<&pb::Resource>,
    ) -> Self {
        Self {
            received: jiff::Timestamp::now(),
            user: user
                .as_ref()
                .ok()
                .map(|u| (u.name.clone(), u.groups.clone())),
            namespace: namespace.to_string(),
            name: name.to_string(),
            resource: resource.cloned().unwrap_or_default(),
        }
    }

    /// The name of the object, once the call has found out.
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }

    /// Writes the line for a request that ended with `code` after `started`.
    pub fn write(&self, log: &AuditLog, verb: &str, code: u16, started: Instant) {
        if log.level == Level::None {
            return;
        }
        let now = jiff::Timestamp::now();
        let r = &self.resource;
        let mut object = json!({
            "resource": r.resource,
            "apiGroup": r.group,
            "apiVersion": r.version,
        });
        for (field, value) in [
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("subresource", &r.subresource),
        ] {
            if !value.is_empty() {
                object[field] = json!(value);
            }
        }
        let user = match &self.user {
            Some((name, groups)) => json!({"username": name, "groups": groups}),
            None => json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}),
        };
        let line = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": "ResponseComplete",
            "verb": verb,
            "user": user,
            "objectRef": object,
            "responseStatus": {"code": code},
            "requestReceivedTimestamp": self.received.to_string(),
            "stageTimestamp": now.to_string(),
            "annotations": {
                "navarch.io/latency-ms": format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
            },
        });
        log.record(line.to_string());
    }
}
