//! pods/exec over WebSocket: every binary message starts with its stream number (0 stdin,
//! 1 stdout, 2 stderr, 3 the final Status, 4 resize); with `v5.channel.k8s.io` the
//! message `[255, n]` closes stream n (the client's stdin ended).

use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;

use super::{Exec, ExecOptions, input, resize_input};
use crate::resources::Call;

const STDIN: u8 = 0;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// How long the client may take to close after the final Status.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(stream);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

/// What a client's binary message asks for, if anything.
fn client_input(msg: &[u8], v5: bool) -> Option<pb::ExecInput> {
    let (&stream, data) = msg.split_first()?;
    match stream {
        STDIN if !data.is_empty() => Some(input(pb::exec_input::Msg::Stdin(data.to_vec()))),
        RESIZE => resize_input(data),
        CLOSE if v5 && data.first() == Some(&STDIN) => {
            Some(input(pb::exec_input::Msg::StdinClose(true)))
        }
        _ => None,
    }
}

pub async fn serve(call: &Call<'_>, o: ExecOptions) -> Result<Response, ApiError> {
    // The upgrade needs the request's own parts (headers and the connection's upgrade).
    let mut builder = http::Request::builder()
        .method(call.parts.method.clone())
        .uri(call.parts.uri.clone());
    for (k, v) in &call.parts.headers {
        builder = builder.header(k, v);
    }
    let mut req = builder
        .body(Body::empty())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(up) = call.parts.extensions.get::<hyper::upgrade::OnUpgrade>() {
        req.extensions_mut().insert(up.clone());
    }
    let (mut parts, _) = req.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("pods/exec over WebSocket: {e}")))?;
    let exec = super::start(call, o).await?;
    Ok(upgrade
        .protocols([V5, V4])
        .on_upgrade(move |socket| relay(socket, exec))
        .into_response())
}

async fn relay(socket: WebSocket, mut exec: Exec) {
    let v5 = socket.protocol().and_then(|p| p.to_str().ok()) == Some(V5);
    let (mut tx, mut rx) = socket.split();
    let input = exec.input.clone();
    // The client's messages: input for the command, until it closes.
    let from_client = async move {
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b) => {
                    if let Some(i) = client_input(&b, v5) {
                        let _ = input
                            .send(pb::PodExecClientMessage {
                                msg: Some(pb::pod_exec_client_message::Msg::Input(i)),
                            })
                            .await;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    let to_client = async {
        let status = loop {
            match exec.next().await {
                Ok((stream, data)) => {
                    if tx.send(frame(stream, &data)).await.is_err() {
                        return;
                    }
                }
                Err(status) => break status,
            }
        };
        let _ = tx.send(frame(ERROR, status.to_string().as_bytes())).await;
        // A normal closure (1000): clients read it as the end of every stream.
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    };
    tokio::pin!(from_client);
    tokio::select! {
        // The client went away first: dropping the exec stops the command.
        () = &mut from_client => return,
        () = to_client => {}
    }
    // Let the client read everything before the connection goes.
    let _ = tokio::time::timeout(CLOSE_WAIT, from_client).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages() {
        let stdin = client_input(b"\x00hello", true).unwrap();
        assert_eq!(
            stdin.msg,
            Some(pb::exec_input::Msg::Stdin(b"hello".to_vec()))
        );
        assert!(client_input(b"\x00", true).is_none());
        assert_eq!(
            client_input(&[CLOSE, STDIN], true).unwrap().msg,
            Some(pb::exec_input::Msg::StdinClose(true))
        );
        assert!(
            client_input(&[CLOSE, STDIN], false).is_none(),
            "v4 has no close"
        );
        assert!(client_input(b"\x04{\"Width\":10,\"Height\":5}", true).is_some());
        assert!(client_input(b"", true).is_none());
        assert!(client_input(b"\x07junk", true).is_none());
    }
}
