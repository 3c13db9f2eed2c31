//! pods/exec over SPDY/3.1 (`X-Stream-Protocol-Version: v4.channel.k8s.io`), as the kubelet
//! serves it: the client opens one stream per channel (header `streamtype`: error, stdin,
//! stdout, stderr, resize), each gets a SYN_REPLY; stdin ends with the client's FIN, resizes
//! are JSON objects one after another, and at the end the Status goes on the error stream
//! and every stream is finished.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use super::{Exec, ExecOptions, input, resize_input};
use crate::resources::Call;
use crate::spdy::{Frame, FrameReader, FrameWriter, RST_PROTOCOL_ERROR};

/// Protocols served, in the order kubectl offers them (the client's order wins).
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// How long the client has to open its streams (the kubelet's stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client may take to close after the final Status.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

fn kind(headers: &[(String, String)]) -> Option<Kind> {
    let t = headers.iter().find(|(k, _)| k == "streamtype")?;
    Some(match t.1.as_str() {
        "error" => Kind::Error,
        "stdin" => Kind::Stdin,
        "stdout" => Kind::Stdout,
        "stderr" => Kind::Stderr,
        "resize" => Kind::Resize,
        _ => return None,
    })
}

/// The protocol both sides speak: the first of the client's that is served.
fn negotiate(headers: &http::HeaderMap) -> Result<&'static str, ApiError> {
    let offered: Vec<String> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    offered
        .iter()
        .find_map(|o| PROTOCOLS.iter().find(|p| **p == o))
        .copied()
        .ok_or_else(|| {
            ApiError::forbidden(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {PROTOCOLS:?}"
            ))
        })
}

pub async fn serve(call: &Call<'_>, o: ExecOptions) -> Result<Response, ApiError> {
    let protocol = negotiate(&call.parts.headers)?;
    let upgrade = call
        .parts
        .extensions
        .get::<hyper::upgrade::OnUpgrade>()
        .cloned()
        .ok_or_else(|| {
            ApiError::bad_request("pods/exec over SPDY needs an HTTP/1.1 connection upgrade")
        })?;
    let exec = super::start(call, o).await?;
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => relay(TokioIo::new(io), exec).await,
            Err(error) => tracing::debug!(%error, "pods/exec SPDY upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The streams the client opened, by kind.
#[derive(Clone, Debug, Default)]
struct Streams(HashMap<u32, Kind>);

impl Streams {
    fn id(&self, k: Kind) -> Option<u32> {
        self.0.iter().find(|(_, v)| **v == k).map(|(id, _)| *id)
    }

    /// Whether every stream the output needs is open.
    fn ready(&self, o: &ExecOptions) -> bool {
        self.id(Kind::Error).is_some()
            && (!o.stdout || self.id(Kind::Stdout).is_some())
            && (!o.stderr || self.id(Kind::Stderr).is_some())
    }
}

async fn relay<IO>(io: IO, mut exec: Exec)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (read, mut write) = tokio::io::split(io);
    // One writer owns the outgoing header compression, so frames go out in order.
    let (out, mut frames) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let mut encoder = FrameWriter::new();
        while let Some(f) = frames.recv().await {
            if write.write_all(&encoder.encode(&f)).await.is_err() {
                return;
            }
            if frames.is_empty() && write.flush().await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let (streams_tx, mut streams) = watch::channel(Streams::default());
    let client_input = exec.input.clone();
    let from_client = {
        let out = out.clone();
        async move {
            let mut reader = FrameReader::new(read);
            let mut resize_buf = Vec::new();
            loop {
                let frame = match reader.next().await {
                    Ok(Some(f)) => f,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::debug!(%error, "pods/exec SPDY connection failed");
                        return;
                    }
                };
                let send = |i: pb::ExecInput| {
                    let client_input = client_input.clone();
                    async move {
                        let _ = client_input
                            .send(pb::PodExecClientMessage {
                                msg: Some(pb::pod_exec_client_message::Msg::Input(i)),
                            })
                            .await;
                    }
                };
                match frame {
                    Frame::SynStream {
                        stream_id, headers, ..
                    } => {
                        let Some(k) = kind(&headers) else {
                            let _ = out
                                .send(Frame::RstStream {
                                    stream_id,
                                    status: RST_PROTOCOL_ERROR,
                                })
                                .await;
                            continue;
                        };
                        streams_tx.send_modify(|s| {
                            s.0.insert(stream_id, k);
                        });
                        let reply = Frame::SynReply {
                            stream_id,
                            fin: false,
                            headers: vec![],
                        };
                        if out.send(reply).await.is_err() {
                            return;
                        }
                    }
                    Frame::Data {
                        stream_id,
                        fin,
                        data,
                    } => match stream_kind(&streams_tx, stream_id) {
                        Some(Kind::Stdin) => {
                            if !data.is_empty() {
                                send(input(pb::exec_input::Msg::Stdin(data))).await;
                            }
                            if fin {
                                send(input(pb::exec_input::Msg::StdinClose(true))).await;
                            }
                        }
                        Some(Kind::Resize) => {
                            resize_buf.extend_from_slice(&data);
                            for size in take_resizes(&mut resize_buf) {
                                send(size).await;
                            }
                        }
                        _ => {}
                    },
                    Frame::RstStream { stream_id, .. }
                        if stream_kind(&streams_tx, stream_id) == Some(Kind::Stdin) =>
                    {
                        send(input(pb::exec_input::Msg::StdinClose(true))).await;
                    }
                    Frame::Ping(id) => {
                        let _ = out.send(Frame::Ping(id)).await;
                    }
                    Frame::GoAway { .. } => return,
                    _ => {}
                }
            }
        }
    };
    let to_client = async {
        let ready = tokio::time::timeout(
            STREAM_CREATION_TIMEOUT,
            streams.wait_for(|s| s.ready(&exec.options)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !ready {
            tracing::debug!("pods/exec over SPDY: the client did not open its streams");
            return;
        }
        let status = loop {
            match exec.next().await {
                Ok((stream, data)) => {
                    let k = if stream == 2 {
                        Kind::Stderr
                    } else {
                        Kind::Stdout
                    };
                    let id = streams.borrow().id(k);
                    let Some(stream_id) = id else {
                        continue;
                    };
                    let frame = Frame::Data {
                        stream_id,
                        fin: false,
                        data,
                    };
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
                Err(status) => break status,
            }
        };
        // Every stream ends; the error stream last, with the Status.
        let open: Streams = streams.borrow().clone();
        let mut ids: Vec<(u32, Kind)> = open.0.into_iter().collect();
        ids.sort_by_key(|(id, _)| *id);
        for (stream_id, k) in &ids {
            if *k != Kind::Error {
                let _ = out
                    .send(Frame::Data {
                        stream_id: *stream_id,
                        fin: true,
                        data: vec![],
                    })
                    .await;
            }
        }
        if let Some(stream_id) = open_error(&ids) {
            let _ = out
                .send(Frame::Data {
                    stream_id,
                    fin: true,
                    data: status.to_string().into_bytes(),
                })
                .await;
        }
    };
    tokio::pin!(from_client);
    tokio::select! {
        // The client went away first: dropping the exec stops the command.
        () = &mut from_client => {}
        () = to_client => {
            // Let the client read everything and close.
            let _ = tokio::time::timeout(CLOSE_WAIT, from_client).await;
        }
    }
    drop(out);
    let _ = writer.await;
}

fn stream_kind(streams: &watch::Sender<Streams>, id: u32) -> Option<Kind> {
    streams.borrow().0.get(&id).copied()
}

fn open_error(ids: &[(u32, Kind)]) -> Option<u32> {
    ids.iter()
        .find(|(_, k)| *k == Kind::Error)
        .map(|(id, _)| *id)
}

/// The complete resize messages at the start of `buf` (JSON objects one after another),
/// leaving an incomplete one for later.
fn take_resizes(buf: &mut Vec<u8>) -> Vec<pb::ExecInput> {
    let mut out = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(v)) => {
                used = it.byte_offset();
                if let Some(i) = serde_json::to_vec(&v).ok().and_then(|b| resize_input(&b)) {
                    out.push(i);
                }
            }
            Some(Err(e)) if e.is_eof() => break,
            // Not JSON: drop what there is.
            Some(Err(_)) => {
                used = buf.len();
                break;
            }
            None => {
                used = buf.len();
                break;
            }
        }
    }
    buf.drain(..used);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_negotiation_follows_the_client() {
        let mut h = http::HeaderMap::new();
        for v in ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"] {
            h.append("X-Stream-Protocol-Version", v.parse().unwrap());
        }
        assert_eq!(negotiate(&h).unwrap(), "v4.channel.k8s.io");
        let mut h = http::HeaderMap::new();
        h.append(
            "X-Stream-Protocol-Version",
            "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), "v5.channel.k8s.io");
        let mut h = http::HeaderMap::new();
        h.append(
            "X-Stream-Protocol-Version",
            "v2.channel.k8s.io".parse().unwrap(),
        );
        assert!(negotiate(&h).is_err());
        assert!(negotiate(&http::HeaderMap::new()).is_err());
    }

    #[test]
    fn resize_messages_split_across_frames() {
        let mut buf = br#"{"Width":80,"Height":24}
{"Width":100,"#
            .to_vec();
        assert_eq!(take_resizes(&mut buf).len(), 1);
        buf.extend_from_slice(b"\"Height\":30}\n");
        let sizes = take_resizes(&mut buf);
        assert_eq!(
            sizes[0].msg,
            Some(pb::exec_input::Msg::Resize(pb::TerminalSize {
                width: 100,
                height: 30
            }))
        );
        assert!(buf.iter().all(u8::is_ascii_whitespace), "{buf:?}");
        let mut junk = b"]]]".to_vec();
        assert!(take_resizes(&mut junk).is_empty());
        assert!(junk.is_empty());
    }

    #[test]
    fn stream_kinds_from_headers() {
        let h = |v: &str| vec![("streamtype".to_string(), v.to_string())];
        assert_eq!(kind(&h("stdin")), Some(Kind::Stdin));
        assert_eq!(kind(&h("error")), Some(Kind::Error));
        assert_eq!(kind(&h("data")), None);
        assert_eq!(kind(&[]), None);
    }
}
