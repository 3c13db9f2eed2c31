//! What the agent remembers about a pod, written to `<data-dir>/pods/<uid>.json` after every
//! change, so a restarted agent re-adopts running containers instead of restarting them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::backoff::BackoffEntry;
use super::state::PodLifecycle;
use crate::runtime::{ContainerStatus, ImageRef, SandboxStatus};

/// A container's last termination, as shown in `lastState.terminated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminated {
    pub container_id: String,
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl Terminated {
    /// From the runtime's view of an exited container.
    pub fn from_status(scheme: &str, st: &ContainerStatus) -> Self {
        let exit_code = st.exit_code.unwrap_or(137);
        Terminated {
            container_id: format!("{scheme}://{}", st.id),
            exit_code,
            reason: st
                .reason
                .clone()
                .unwrap_or_else(|| crate::runtime::exit_reason(exit_code).into()),
            message: st.message.clone(),
            started_at: st.started_at.clone(),
            finished_at: st.finished_at.clone(),
        }
    }
}

/// Why a container is waiting (`state.waiting`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
}

/// One container of the pod (init or app), across its restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    /// The current instance, if one was created.
    pub id: Option<String>,
    pub image: Option<ImageRef>,
    pub restart_count: i32,
    /// The previous instance's end (`lastState`).
    pub last_terminated: Option<Terminated>,
    /// Why no instance runs now (`ErrImagePull`, `CrashLoopBackOff`, …).
    pub waiting: Option<Waiting>,
    /// Crash-loop back-off.
    pub backoff: BackoffEntry,
    /// Image pull / create failure back-off, and when the last failure happened (unix ms).
    pub failure_backoff: BackoffEntry,
    pub last_failure_ms: i64,
    /// The final status of an instance that was removed (terminal pods, deleted pods).
    pub final_state: Option<Terminated>,
}

impl ContainerRecord {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// Everything the agent keeps about one pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub lifecycle: PodLifecycle,
    pub sandbox: Option<SandboxStatus>,
    pub sandbox_attempt: u32,
    /// When the agent accepted the pod (`status.startTime`).
    pub start_time: Option<String>,
    pub init_containers: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    /// Set once the agent removed the API object (or saw it gone).
    pub api_deleted: bool,
}

impl PodRecord {
    pub fn new(uid: &str, namespace: &str, name: &str) -> Self {
        Self {
            uid: uid.into(),
            namespace: namespace.into(),
            name: name.into(),
            lifecycle: PodLifecycle::Pending,
            sandbox: None,
            sandbox_attempt: 0,
            start_time: None,
            init_containers: vec![],
            containers: vec![],
            api_deleted: false,
        }
    }

    /// The record of container `name` (init or app), if any.
    pub fn container_mut(&mut self, init: bool, name: &str) -> &mut ContainerRecord {
        let list = if init {
            &mut self.init_containers
        } else {
            &mut self.containers
        };
        if let Some(i) = list.iter().position(|c| c.name == name) {
            &mut list[i]
        } else {
            list.push(ContainerRecord::new(name));
            list.last_mut().expect("just pushed")
        }
    }

    pub fn container(&self, init: bool, name: &str) -> Option<&ContainerRecord> {
        let list = if init {
            &self.init_containers
        } else {
            &self.containers
        };
        list.iter().find(|c| c.name == name)
    }
}

/// Where pod records live: a directory (real nodes) or memory (hollow nodes).
#[derive(Clone, Debug)]
pub enum RecordStore {
    Dir(PathBuf),
    Memory(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, PodRecord>>>),
}

impl RecordStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(RecordStore::Dir(dir.into()))
    }

    /// Records kept in memory only (they do not survive the process).
    pub fn memory() -> Self {
        RecordStore::Memory(Default::default())
    }

    fn path(dir: &Path, uid: &str) -> PathBuf {
        dir.join(format!("{uid}.json"))
    }

    /// Writes atomically (temp file + rename).
    pub fn save(&self, record: &PodRecord) -> std::io::Result<()> {
        match self {
            RecordStore::Dir(dir) => {
                let path = Self::path(dir, &record.uid);
                let tmp = path.with_extension("json.tmp");
                std::fs::write(
                    &tmp,
                    serde_json::to_vec(record).map_err(std::io::Error::other)?,
                )?;
                std::fs::rename(tmp, path)
            }
            RecordStore::Memory(m) => {
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(record.uid.clone(), record.clone());
                Ok(())
            }
        }
    }

    pub fn remove(&self, uid: &str) -> std::io::Result<()> {
        match self {
            RecordStore::Dir(dir) => match std::fs::remove_file(Self::path(dir, uid)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            RecordStore::Memory(m) => {
                m.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
                Ok(())
            }
        }
    }

    /// The record of pod `uid`, if there is one (and it reads).
    pub fn load(&self, uid: &str) -> Option<PodRecord> {
        match self {
            RecordStore::Dir(dir) => std::fs::read(Self::path(dir, uid))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
            RecordStore::Memory(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(uid)
                .cloned(),
        }
    }

    /// Every saved record (unreadable ones are skipped with a warning).
    pub fn load_all(&self) -> Vec<PodRecord> {
        let dir = match self {
            RecordStore::Dir(dir) => dir,
            RecordStore::Memory(m) => {
                return m
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned()
                    .collect();
            }
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return vec![];
        };
        let mut out = vec![];
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<PodRecord>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => out.push(r),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "skipping unreadable pod record")
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        let mut r = PodRecord::new("u1", "default", "web");
        r.lifecycle = PodLifecycle::Running;
        r.container_mut(false, "c").restart_count = 3;
        store.save(&r).unwrap();
        assert_eq!(store.load_all(), vec![r.clone()]);
        store.remove("u1").unwrap();
        store.remove("u1").unwrap();
        assert!(store.load_all().is_empty());
    }
}
