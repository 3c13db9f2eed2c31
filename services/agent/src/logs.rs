//! Container logs (`kubectl logs`) and commands (`kubectl exec`), served through the
//! node's tunnel to the gateway (`AgentTunnel`): the gateway authorizes `pods/log` or
//! `pods/exec`, sends the request down, and the agent streams the answer back.
//!
//! Logs are what the container wrote to stdout and stderr, one file per attempt,
//! `<log-root>/<ns>_<pod>_<uid>/<container>/<restart>.log` (the kubelet's layout), so
//! `previous` is the file before the newest. Lines carry no timestamps of their own.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use navarch_api::gateway::v1 as pb;
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use navarch_gateway::tunnel::INPUT_WINDOW;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::runtime::{ContainerRunState, ContainerRuntime, ExecSession, ExecSpec, TerminalSize};
use crate::worker::record::RecordStore;

const CHUNK: usize = 32 * 1024;
/// How often a followed log is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// What log requests need from the node.
#[derive(Clone)]
pub struct LogSource {
    pub log_root: PathBuf,
    pub records: RecordStore,
    pub runtime: Arc<dyn ContainerRuntime>,
}

fn waiting(req: &pb::PodLogsRequest) -> ApiError {
    ApiError::bad_request(format!(
        "container \"{}\" in pod \"{}\" is waiting to start: ContainerCreating",
        req.container, req.name
    ))
}

/// The attempts of a container that have a log, oldest first.
fn attempts(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let n = path
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((n, path))
        })
        .collect();
    out.sort();
    out
}

/// The file a request reads: the newest attempt, or the one before for `previous`.
fn log_file(root: &Path, req: &pb::PodLogsRequest) -> Result<(PathBuf, PathBuf), ApiError> {
    let dir = root
        .join(format!("{}_{}_{}", req.namespace, req.name, req.uid))
        .join(&req.container);
    let all = attempts(&dir);
    let pick = if req.previous {
        all.len().checked_sub(2).map(|i| all[i].1.clone())
    } else {
        all.last().map(|(_, p)| p.clone())
    };
    match pick {
        Some(p) => Ok((dir, p)),
        None if req.previous => Err(ApiError::bad_request(format!(
            "previous terminated container \"{}\" in pod \"{}\" not found",
            req.container, req.name
        ))),
        None => Err(waiting(req)),
    }
}

/// Where reading starts so that only the last `lines` lines come out.
fn tail_offset(file: &mut std::fs::File, lines: u64) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if lines == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut newlines = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    // A final newline ends the last line; it does not start another.
    let mut skip_last = true;
    while pos > 0 {
        let n = (pos as usize).min(buf.len());
        pos -= n as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..n])?;
        for i in (0..n).rev() {
            if buf[i] == b'\n' {
                if skip_last && pos + i as u64 == len - 1 {
                    skip_last = false;
                    continue;
                }
                newlines += 1;
                if newlines == lines {
                    return Ok(pos + i as u64 + 1);
                }
            }
            skip_last = false;
        }
    }
    Ok(0)
}

/// The longest an exec may run.
const EXEC_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long an exec with a terminal waits for the client's terminal size before it starts.
const INITIAL_SIZE_WAIT: Duration = Duration::from_secs(2);
/// After the command exited, its output is read until it ends or is quiet this long (a
/// process it left in the background may hold the output open).
const EXEC_DRAIN_IDLE: Duration = Duration::from_millis(500);

/// A terminal size from the wire; sizes that do not fit a terminal are ignored.
fn terminal_size(s: &pb::TerminalSize) -> Option<TerminalSize> {
    Some(TerminalSize {
        width: u16::try_from(s.width).ok()?,
        height: u16::try_from(s.height).ok()?,
    })
}

impl LogSource {
    /// The runtime's id of the container a request names, if it has one.
    fn container_id(&self, uid: &str, container: &str) -> Option<String> {
        self.records
            .load(uid)?
            .containers
            .iter()
            .chain(&self.records.load(uid)?.init_containers)
            .find(|c| c.name == container)
            .and_then(|c| c.id.clone())
    }

    /// Starts the command an exec asks for in its (running) container.
    pub async fn start_exec(&self, req: &pb::PodExecRequest) -> Result<ExecSession, ApiError> {
        let not_running = || {
            ApiError::bad_request(format!(
                "unable to upgrade connection: container not found (\"{}\")",
                req.container
            ))
        };
        let id = self
            .container_id(&req.uid, &req.container)
            .ok_or_else(not_running)?;
        let running = matches!(
            self.runtime.container_status(&id).await.map(|s| s.state),
            Ok(ContainerRunState::Running)
        );
        if !running {
            return Err(not_running());
        }
        let spec = ExecSpec {
            command: req.command.clone(),
            stdin: req.stdin,
            tty: req.tty,
            size: req.size.as_ref().and_then(terminal_size),
        };
        self.runtime
            .exec(&id, &spec)
            .await
            .map_err(|e| ApiError::internal(format!("exec in container {}: {e}", req.container)))
    }

    /// Whether the container this log belongs to still runs (a followed log ends when it
    /// stops, as with the kubelet).
    async fn running(&self, req: &pb::PodLogsRequest) -> bool {
        let Some(record) = self.records.load(&req.uid) else {
            return false;
        };
        let id = record
            .containers
            .iter()
            .chain(&record.init_containers)
            .find(|c| c.name == req.container)
            .and_then(|c| c.id.clone());
        match id {
            Some(id) => matches!(
                self.runtime.container_status(&id).await.map(|s| s.state),
                Ok(ContainerRunState::Running | ContainerRunState::Created)
            ),
            None => false,
        }
    }

    /// Streams the log `req` asks for into `out` (chunks), until done or `out` closes.
    pub async fn serve(
        &self,
        req: &pb::PodLogsRequest,
        out: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), ApiError> {
        let (dir, path) = log_file(&self.log_root, req)?;
        let io = |e: std::io::Error| ApiError::internal(format!("reading the log: {e}"));
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let mut pos = match req.tail_lines {
            Some(n) => tail_offset(&mut file, n.max(0) as u64).map_err(io)?,
            None => 0,
        };
        let mut budget = req.limit_bytes.map(|n| n.max(0) as u64);
        let newest = attempts(&dir).last().map(|(n, _)| *n);
        let mut buf = vec![0u8; CHUNK];
        loop {
            file.seek(SeekFrom::Start(pos)).map_err(io)?;
            loop {
                let want = budget.map_or(CHUNK, |b| (b as usize).min(CHUNK));
                if want == 0 {
                    return Ok(());
                }
                let n = file.read(&mut buf[..want]).map_err(io)?;
                if n == 0 {
                    break;
                }
                pos += n as u64;
                if let Some(b) = &mut budget {
                    *b -= n as u64;
                }
                if out.send(buf[..n].to_vec()).await.is_err() {
                    return Ok(());
                }
            }
            if !req.follow || req.previous {
                return Ok(());
            }
            // Followed: wait for more, until the container stops (then drain what it
            // wrote last) or a newer attempt starts.
            let stopped =
                !self.running(req).await || attempts(&dir).last().map(|(n, _)| *n) != newest;
            if stopped {
                let len = file.metadata().map_err(io)?.len();
                if len <= pos {
                    return Ok(());
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = out.closed() => return Ok(()),
            }
        }
    }
}

/// Keeps the node's tunnel to the gateway open (reconnecting with back-off) and serves
/// the requests that come down it, each in its own task, until `stop`.
pub fn spawn_tunnel(
    client: Client,
    node_name: String,
    source: LogSource,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            let served = tokio::select! {
                r = run_tunnel(&client, &node_name, &source) => r,
                _ = stop.changed() => return,
            };
            match served {
                Ok(()) => delay = Duration::from_millis(200),
                Err(error) => {
                    tracing::debug!(node = %node_name, %error, "agent tunnel failed; retrying");
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
        }
    })
}

async fn run_tunnel(client: &Client, node: &str, source: &LogSource) -> Result<(), ApiError> {
    let (up_tx, up_rx) = mpsc::channel::<pb::TunnelUp>(64);
    up_tx
        .send(pb::TunnelUp {
            request_id: 0,
            msg: Some(pb::tunnel_up::Msg::Hello(pb::TunnelHello {
                node_name: node.to_string(),
            })),
        })
        .await
        .map_err(|_| ApiError::internal("tunnel closed"))?;
    let mut down = client
        .agent_tunnel(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await?;
    tracing::info!(node, "agent tunnel open");
    let mut serving: HashMap<u64, JoinHandle<()>> = HashMap::new();
    // Where the input of each running exec goes; the gateway sends at most
    // INPUT_WINDOW unacknowledged, so this never fills.
    let mut inputs: HashMap<u64, mpsc::Sender<pb::ExecInput>> = HashMap::new();
    let result = loop {
        let msg = match down.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(status) => {
                break Err(ApiError::new(
                    Reason::ServiceUnavailable,
                    status.message().to_string(),
                ));
            }
        };
        serving.retain(|_, t| !t.is_finished());
        inputs.retain(|id, _| serving.contains_key(id));
        let id = msg.request_id;
        match msg.msg {
            Some(pb::tunnel_down::Msg::Logs(req)) => {
                let up = up_tx.clone();
                let source = source.clone();
                serving.insert(id, tokio::spawn(serve_one(source, id, req, up)));
            }
            Some(pb::tunnel_down::Msg::Exec(req)) => {
                let up = up_tx.clone();
                let source = source.clone();
                let (tx, rx) = mpsc::channel(INPUT_WINDOW);
                inputs.insert(id, tx);
                serving.insert(id, tokio::spawn(exec_one(source, id, req, rx, up)));
            }
            Some(pb::tunnel_down::Msg::Input(input)) => {
                if let Some(tx) = inputs.get(&id)
                    && tx.try_send(input).is_err()
                {
                    tracing::warn!(request = id, "exec input beyond its window dropped");
                }
            }
            Some(pb::tunnel_down::Msg::Cancel(_)) => {
                inputs.remove(&id);
                if let Some(t) = serving.remove(&id) {
                    t.abort();
                }
            }
            None => {}
        }
    };
    for (_, t) in serving {
        t.abort();
    }
    result
}

async fn serve_one(
    source: LogSource,
    id: u64,
    req: pb::PodLogsRequest,
    up: mpsc::Sender<pb::TunnelUp>,
) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let forward = {
        let up = up.clone();
        async move {
            while let Some(data) = rx.recv().await {
                let msg = pb::TunnelUp {
                    request_id: id,
                    msg: Some(pb::tunnel_up::Msg::Data(data)),
                };
                if up.send(msg).await.is_err() {
                    return;
                }
            }
        }
    };
    let serve = async {
        let r = source.serve(&req, &tx).await;
        drop(tx);
        r
    };
    let (result, ()) = tokio::join!(serve, forward);
    let end = match result {
        Ok(()) => pb::TunnelEnd::default(),
        Err(e) => pb::TunnelEnd {
            error: e.message.clone(),
            reason: e.reason.as_str().to_string(),
            exit_code: None,
        },
    };
    let _ = up
        .send(pb::TunnelUp {
            request_id: id,
            msg: Some(pb::tunnel_up::Msg::End(end)),
        })
        .await;
}

async fn exec_one(
    source: LogSource,
    id: u64,
    mut req: pb::PodExecRequest,
    mut input: mpsc::Receiver<pb::ExecInput>,
    up: mpsc::Sender<pb::TunnelUp>,
) {
    // Clients send the terminal's size right after they connect: a command started before
    // it would find a terminal of 0x0, so it waits a moment for it. Input that came first
    // is fed once the command runs.
    let mut early = Vec::new();
    if req.tty && req.size.is_none() {
        let deadline = tokio::time::sleep(INITIAL_SIZE_WAIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                m = input.recv() => match m {
                    Some(pb::ExecInput { msg: Some(pb::exec_input::Msg::Resize(size)) }) => {
                        req.size = Some(size);
                        // Acknowledged with the rest once the command runs.
                        early.push(pb::ExecInput { msg: None });
                        break;
                    }
                    Some(other) => early.push(other),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
    }
    let result = match source.start_exec(&req).await {
        Ok(session) => {
            tracing::debug!(request = id, pod = %req.name, container = %req.container, tty = req.tty, "exec started");
            tokio::time::timeout(EXEC_TIMEOUT, relay_exec(id, session, early, input, &up))
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        Reason::Timeout,
                        format!("the command ran longer than {}s", EXEC_TIMEOUT.as_secs()),
                    ))
                })
        }
        Err(e) => Err(e),
    };
    let end = match result {
        Ok(code) => pb::TunnelEnd {
            exit_code: Some(code),
            ..Default::default()
        },
        Err(e) => pb::TunnelEnd {
            error: e.message.clone(),
            reason: e.reason.as_str().to_string(),
            exit_code: None,
        },
    };
    let _ = up
        .send(pb::TunnelUp {
            request_id: id,
            msg: Some(pb::tunnel_up::Msg::End(end)),
        })
        .await;
}

/// Relays one running exec: the client's input to the command (each one acknowledged once
/// consumed), its output up the tunnel; ends with the exit code once it exited and its
/// output is read.
pub async fn relay_exec(
    id: u64,
    session: ExecSession,
    early: Vec<pb::ExecInput>,
    mut input: mpsc::Receiver<pb::ExecInput>,
    up: &mpsc::Sender<pb::TunnelUp>,
) -> Result<i32, ApiError> {
    let ExecSession {
        mut stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = session;
    let feed = async {
        let mut early = early.into_iter();
        loop {
            let i = match early.next() {
                Some(i) => i,
                None => match input.recv().await {
                    Some(i) => i,
                    None => break,
                },
            };
            match i.msg {
                Some(pb::exec_input::Msg::Stdin(data)) => {
                    // A command that closed its stdin gets no more.
                    if let Some(w) = &mut stdin
                        && w.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some(pb::exec_input::Msg::StdinClose(_)) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Some(pb::exec_input::Msg::Resize(s)) => {
                    if let (Some(resize), Some(size)) = (&resize, terminal_size(&s))
                        && let Err(error) = resize(size)
                    {
                        tracing::debug!(request = id, %error, "terminal resize failed");
                    }
                }
                None => {}
            }
            let ack = pb::TunnelUp {
                request_id: id,
                msg: Some(pb::tunnel_up::Msg::InputAck(1)),
            };
            if up.send(ack).await.is_err() {
                break;
            }
        }
        // The client is gone (the request is being cancelled): the command's stdin ends.
        drop(stdin);
        std::future::pending::<()>().await
    };
    let (exited_tx, exited) = watch::channel(false);
    let wait = async {
        let code = exit.await;
        let _ = exited_tx.send(true);
        code
    };
    let outputs = async {
        tokio::join!(
            pump(id, stdout, false, exited.clone(), up),
            pump(id, stderr, true, exited.clone(), up)
        )
    };
    let done = async { tokio::join!(wait, outputs).0 };
    tokio::select! {
        code = done => code.map_err(|e| ApiError::internal(format!("exec: {e}"))),
        () = feed => Err(ApiError::internal("exec input ended before the command")),
    }
}

/// Sends what `reader` yields up the tunnel (as stdout, or stderr), until it ends, or is
/// quiet for a while after the command exited.
async fn pump(
    id: u64,
    reader: Option<crate::runtime::exec::Reader>,
    is_stderr: bool,
    mut exited: watch::Receiver<bool>,
    up: &mpsc::Sender<pb::TunnelUp>,
) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; CHUNK];
    let mut after_exit = false;
    loop {
        let read = if after_exit {
            match tokio::time::timeout(EXEC_DRAIN_IDLE, reader.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                r = reader.read(&mut buf) => r,
                _ = exited.wait_for(|e| *e) => {
                    after_exit = true;
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) => return,
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(request = id, %error, "reading the command's output failed");
                return;
            }
        };
        let data = buf[..n].to_vec();
        let msg = if is_stderr {
            pb::tunnel_up::Msg::Stderr(data)
        } else {
            pb::tunnel_up::Msg::Data(data)
        };
        let up_msg = pb::TunnelUp {
            request_id: id,
            msg: Some(msg),
        };
        if up.send(up_msg).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::process::ProcessRuntime;
    use crate::runtime::{ContainerConfig, SandboxConfig};
    use std::io::Write;

    fn stdin(data: &[u8]) -> pb::ExecInput {
        pb::ExecInput {
            msg: Some(pb::exec_input::Msg::Stdin(data.to_vec())),
        }
    }

    /// What an exec sent up the tunnel: (stdout, stderr, inputs acknowledged).
    fn collect(msgs: &[pb::TunnelUp]) -> (String, String, u32) {
        let (mut out, mut err, mut acks) = (Vec::new(), Vec::new(), 0);
        for m in msgs {
            match &m.msg {
                Some(pb::tunnel_up::Msg::Data(d)) => out.extend_from_slice(d),
                Some(pb::tunnel_up::Msg::Stderr(d)) => err.extend_from_slice(d),
                Some(pb::tunnel_up::Msg::InputAck(n)) => acks += n,
                _ => {}
            }
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
            acks,
        )
    }

    #[tokio::test]
    async fn exec_relay_feeds_stdin_acknowledges_input_and_ends_with_the_exit_code() {
        let t = Duration::from_secs(20);
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        let sb = rt
            .run_pod_sandbox(&SandboxConfig {
                uid: "relay".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let id = rt
            .create_container(
                &sb.id,
                &ContainerConfig {
                    name: "c".into(),
                    command: vec!["sleep".into(), "1000".into()],
                    log_path: dir.path().join("c.log"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        let spec = ExecSpec {
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat; read x; echo err >&2; exit 3".into(),
            ],
            stdin: true,
            ..Default::default()
        };
        let session = rt.exec(&id, &spec).await.unwrap();
        let (in_tx, in_rx) = mpsc::channel(INPUT_WINDOW);
        let (up_tx, mut up_rx) = mpsc::channel(1024);
        in_tx.send(stdin(b"world\n")).await.unwrap();
        // A resize without a terminal is ignored (and still acknowledged).
        in_tx
            .send(pb::ExecInput {
                msg: Some(pb::exec_input::Msg::Resize(pb::TerminalSize {
                    width: 10,
                    height: 10,
                })),
            })
            .await
            .unwrap();
        in_tx
            .send(pb::ExecInput {
                msg: Some(pb::exec_input::Msg::StdinClose(true)),
            })
            .await
            .unwrap();
        let early = vec![stdin(b"hello ")];
        let code = tokio::time::timeout(t, relay_exec(7, session, early, in_rx, &up_tx))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, 3, "read x got the end of file after cat");
        drop(up_tx);
        let mut msgs = Vec::new();
        while let Some(m) = up_rx.recv().await {
            assert_eq!(m.request_id, 7);
            msgs.push(m);
        }
        assert_eq!(collect(&msgs), ("hello world\n".into(), "err\n".into(), 4));
        rt.remove_pod_sandbox(&sb.id).await.unwrap();
    }

    fn tail(text: &str, n: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        let off = tail_offset(&mut f, n).unwrap() as usize;
        text[off..].to_string()
    }

    #[test]
    fn tail_lines_counts_like_kubectl() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
        let long: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&long, 2), "line 99998\nline 99999\n");
    }

    #[test]
    fn previous_is_the_attempt_before_the_newest() {
        let root = tempfile::tempdir().unwrap();
        let req = pb::PodLogsRequest {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u1".into(),
            container: "c".into(),
            ..Default::default()
        };
        assert_eq!(
            log_file(root.path(), &req).unwrap_err().reason,
            Reason::BadRequest
        );
        let dir = root.path().join("default_p_u1/c");
        std::fs::create_dir_all(&dir).unwrap();
        for n in [0, 1, 10] {
            std::fs::write(dir.join(format!("{n}.log")), "x").unwrap();
        }
        assert!(log_file(root.path(), &req).unwrap().1.ends_with("10.log"));
        let prev = pb::PodLogsRequest {
            previous: true,
            ..req.clone()
        };
        assert!(log_file(root.path(), &prev).unwrap().1.ends_with("1.log"));
        std::fs::remove_file(dir.join("0.log")).unwrap();
        std::fs::remove_file(dir.join("1.log")).unwrap();
        let e = log_file(root.path(), &prev).unwrap_err();
        assert!(
            e.message.contains("previous terminated container \"c\""),
            "{}",
            e.message
        );
    }
}
