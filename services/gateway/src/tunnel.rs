//! Node tunnels: every agent keeps one `AgentTunnel` stream open to a gateway, and requests
//! for its node (a container's log) go down it and come back as data chunks. Nobody dials
//! the nodes, so agents need no listening port, serving certificate or open firewall, and
//! they are authenticated and authorized like any other client when they open the tunnel.
//!
//! A tunnel lives in the gateway the agent connected to; with several gateways on one
//! store, a request reaching another gateway finds no tunnel and gets ServiceUnavailable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use navarch_api::gateway::v1 as pb;
use navarch_api::{ApiError, Reason};
use tokio::sync::mpsc;

/// What an agent answered for one request: data, then at most one end.
pub enum Answer {
    Data(Vec<u8>),
    Stderr(Vec<u8>),
    /// Done; an exec's exit code.
    End(Result<Option<i32>, ApiError>),
}

struct Node {
    /// Which tunnel this is (an agent that reconnects replaces its older one).
    epoch: u64,
    down: mpsc::Sender<pb::TunnelDown>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Node>,
    /// Open requests: where their answers go, and the tunnel (epoch) they went down.
    pending: HashMap<u64, (mpsc::Sender<Answer>, u64)>,
}

/// The tunnels open to this gateway.
#[derive(Default, Clone)]
pub struct Tunnels {
    state: Arc<Mutex<State>>,
    ids: Arc<AtomicU64>,
}

/// How many answer chunks may wait for a slow client before the agent is held back.
const ANSWER_BUFFER: usize = 64;

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the tunnel of `node`; the returned epoch identifies it for
    /// [`Self::answer`] and [`Self::close`].
    pub fn open(&self, node: &str, down: mpsc::Sender<pb::TunnelDown>) -> u64 {
        let epoch = self.ids.fetch_add(1, Ordering::Relaxed);
        if self
            .lock()
            .nodes
            .insert(node.to_string(), Node { epoch, down })
            .is_some()
        {
            tracing::info!(node, "agent tunnel replaced by a newer one");
        } else {
            tracing::info!(node, "agent tunnel opened");
        }
        epoch
    }

    /// The tunnel `epoch` of `node` is gone: its open requests fail.
    pub fn close(&self, node: &str, epoch: u64) {
        let mut st = self.lock();
        if st.nodes.get(node).is_some_and(|n| n.epoch == epoch) {
            st.nodes.remove(node);
            tracing::info!(node, "agent tunnel closed");
        }
        let lost: Vec<u64> = st
            .pending
            .iter()
            .filter(|(_, (_, e))| *e == epoch)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some((tx, _)) = st.pending.remove(&id) {
                let _ = tx.try_send(Answer::End(Err(ApiError::new(
                    Reason::ServiceUnavailable,
                    format!("the connection to node {node} was lost"),
                ))));
            }
        }
    }

    /// An answer chunk from an agent. Data for a request whose client is gone makes the
    /// agent stop (`cancel`).
    pub async fn answer(&self, node: &str, up: pb::TunnelUp) {
        let id = up.request_id;
        let (tx, end) = {
            let mut st = self.lock();
            let end = matches!(up.msg, Some(pb::tunnel_up::Msg::End(_)));
            let tx = if end {
                st.pending.remove(&id).map(|(tx, _)| tx)
            } else {
                st.pending.get(&id).map(|(tx, _)| tx.clone())
            };
            (tx, end)
        };
        let Some(tx) = tx else {
            if !end {
                self.cancel(node, id);
            }
            return;
        };
        let answer = match up.msg {
            Some(pb::tunnel_up::Msg::Data(d)) => Answer::Data(d),
            Some(pb::tunnel_up::Msg::Stderr(d)) => Answer::Stderr(d),
            Some(pb::tunnel_up::Msg::End(e)) if e.error.is_empty() => Answer::End(Ok(e.exit_code)),
            Some(pb::tunnel_up::Msg::End(e)) => Answer::End(Err(ApiError::new(
                Reason::parse(&e.reason).unwrap_or(Reason::InternalError),
                e.error,
            ))),
            Some(pb::tunnel_up::Msg::Hello(_)) | None => return,
        };
        if tx.send(answer).await.is_err() && !end {
            self.lock().pending.remove(&id);
            self.cancel(node, id);
        }
    }

    fn cancel(&self, node: &str, id: u64) {
        if let Some(n) = self.lock().nodes.get(node) {
            let _ = n.down.try_send(pb::TunnelDown {
                request_id: id,
                msg: Some(pb::tunnel_down::Msg::Cancel(true)),
            });
        }
    }

    /// Sends `msg` (logs or exec) to `node`'s agent; the answers arrive on the returned
    /// channel. Dropping the [`Request`] cancels it on the agent.
    pub async fn send(&self, node: &str, msg: pb::tunnel_down::Msg) -> Result<Request, ApiError> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(ANSWER_BUFFER);
        let down = {
            let mut st = self.lock();
            let (down, epoch) = st
                .nodes
                .get(node)
                .map(|n| (n.down.clone(), n.epoch))
                .ok_or_else(|| {
                    ApiError::new(
                        Reason::ServiceUnavailable,
                        format!("node {node:?} has no open agent connection to this gateway"),
                    )
                })?;
            st.pending.insert(id, (tx, epoch));
            down
        };
        let sent = down
            .send(pb::TunnelDown {
                request_id: id,
                msg: Some(msg),
            })
            .await;
        if sent.is_err() {
            self.lock().pending.remove(&id);
            return Err(ApiError::new(
                Reason::ServiceUnavailable,
                format!("the connection to node {node} was lost"),
            ));
        }
        Ok(Request {
            tunnels: self.clone(),
            node: node.to_string(),
            id,
            answers: rx,
        })
    }
}

/// One request in flight on a tunnel.
pub struct Request {
    tunnels: Tunnels,
    node: String,
    id: u64,
    pub answers: mpsc::Receiver<Answer>,
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.tunnels.lock().pending.remove(&self.id).is_some() {
            self.tunnels.cancel(&self.node, self.id);
        }
    }
}
