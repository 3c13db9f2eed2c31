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
use tokio::sync::{Semaphore, mpsc};

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

/// An open request: where its answers go, the tunnel (epoch) it went down, and how many
/// more inputs it may send before the agent acknowledges some.
struct Pending {
    answers: mpsc::Sender<Answer>,
    epoch: u64,
    credits: Arc<Semaphore>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Node>,
    pending: HashMap<u64, Pending>,
}

/// The tunnels open to this gateway.
#[derive(Default, Clone)]
pub struct Tunnels {
    state: Arc<Mutex<State>>,
    ids: Arc<AtomicU64>,
}

/// How many answer chunks may wait for a slow client before the agent is held back.
const ANSWER_BUFFER: usize = 64;

/// How many inputs of one exec (stdin chunks, its end, resizes) may be on their way to the
/// agent unconsumed; the agent buffers that many per exec and acknowledges each one it
/// consumed, so a command that does not read its stdin holds back only its own client.
pub const INPUT_WINDOW: usize = 16;

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
            .filter(|(_, p)| p.epoch == epoch)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(p) = st.pending.remove(&id) {
                p.credits.close();
                let _ = p.answers.try_send(Answer::End(Err(ApiError::new(
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
        if let Some(pb::tunnel_up::Msg::InputAck(n)) = up.msg {
            if let Some(p) = self.lock().pending.get(&id) {
                // Never more than the window, whatever the agent claims.
                let room = INPUT_WINDOW.saturating_sub(p.credits.available_permits());
                p.credits.add_permits((n as usize).min(room));
            }
            return;
        }
        let (tx, end) = {
            let mut st = self.lock();
            let end = matches!(up.msg, Some(pb::tunnel_up::Msg::End(_)));
            let tx = if end {
                st.pending.remove(&id).map(|p| {
                    p.credits.close();
                    p.answers
                })
            } else {
                st.pending.get(&id).map(|p| p.answers.clone())
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
            Some(pb::tunnel_up::Msg::Hello(_) | pb::tunnel_up::Msg::InputAck(_)) | None => return,
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
        let credits = Arc::new(Semaphore::new(INPUT_WINDOW));
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
            st.pending.insert(
                id,
                Pending {
                    answers: tx,
                    epoch,
                    credits: credits.clone(),
                },
            );
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
            input: InputSender { id, down, credits },
        })
    }
}

/// Sends a request's input (an exec's stdin, its end, resizes) down its tunnel, at most
/// [`INPUT_WINDOW`] unacknowledged.
#[derive(Clone)]
pub struct InputSender {
    id: u64,
    down: mpsc::Sender<pb::TunnelDown>,
    credits: Arc<Semaphore>,
}

impl InputSender {
    /// Waits for room, then sends; fails once the request has ended or its tunnel is gone.
    pub async fn send(&self, input: pb::ExecInput) -> Result<(), ApiError> {
        let gone = || ApiError::new(Reason::ServiceUnavailable, "the exec has ended");
        self.credits.acquire().await.map_err(|_| gone())?.forget();
        self.down
            .send(pb::TunnelDown {
                request_id: self.id,
                msg: Some(pb::tunnel_down::Msg::Input(input)),
            })
            .await
            .map_err(|_| gone())
    }
}

/// One request in flight on a tunnel.
pub struct Request {
    tunnels: Tunnels,
    node: String,
    id: u64,
    pub answers: mpsc::Receiver<Answer>,
    input: InputSender,
}

impl Request {
    /// Where this request's input goes (only execs read any).
    pub fn input(&self) -> InputSender {
        self.input.clone()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.input.credits.close();
        if self.tunnels.lock().pending.remove(&self.id).is_some() {
            self.tunnels.cancel(&self.node, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stdin(b: &[u8]) -> pb::ExecInput {
        pb::ExecInput {
            msg: Some(pb::exec_input::Msg::Stdin(b.to_vec())),
        }
    }

    #[tokio::test]
    async fn exec_input_waits_for_the_agents_acknowledgements() {
        let tunnels = Tunnels::default();
        let (down_tx, mut down) = mpsc::channel(INPUT_WINDOW * 4);
        tunnels.open("n1", down_tx);
        let request = tunnels
            .send(
                "n1",
                pb::tunnel_down::Msg::Exec(pb::PodExecRequest::default()),
            )
            .await
            .unwrap();
        let first = down.recv().await.unwrap();
        assert!(matches!(first.msg, Some(pb::tunnel_down::Msg::Exec(_))));
        let input = request.input();
        for _ in 0..INPUT_WINDOW {
            input.send(stdin(b"x")).await.unwrap();
        }
        // The window is full: the next one waits for an acknowledgement.
        let blocked = tokio::time::timeout(Duration::from_millis(100), input.send(stdin(b"y")));
        assert!(blocked.await.is_err());
        let ack = |n| pb::TunnelUp {
            request_id: first.request_id,
            msg: Some(pb::tunnel_up::Msg::InputAck(n)),
        };
        // Acknowledging more than was sent gives no more than the window.
        tunnels.answer("n1", ack(1000)).await;
        for _ in 0..INPUT_WINDOW {
            tokio::time::timeout(Duration::from_secs(5), input.send(stdin(b"z")))
                .await
                .unwrap()
                .unwrap();
        }
        let over = tokio::time::timeout(Duration::from_millis(100), input.send(stdin(b"w")));
        assert!(over.await.is_err(), "the window never grows past its size");
        let mut inputs = 0;
        while let Ok(m) = down.try_recv() {
            assert_eq!(m.request_id, first.request_id);
            assert!(matches!(m.msg, Some(pb::tunnel_down::Msg::Input(_))));
            inputs += 1;
        }
        assert_eq!(inputs, 2 * INPUT_WINDOW);
        // Once the exec is over, input fails instead of waiting.
        drop(request);
        assert!(input.send(stdin(b"late")).await.is_err());
        let cancel = down.recv().await.unwrap();
        assert!(matches!(
            cancel.msg,
            Some(pb::tunnel_down::Msg::Cancel(true))
        ));
    }
}
