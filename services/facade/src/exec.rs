//! `pods/exec` over WebSocket (`kubectl exec`, 1.30 and newer by default; 1.29 with
//! `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true`): the channel protocols `v5.channel.k8s.io` and
//! `v4.channel.k8s.io`, where every binary message starts with its stream number
//! (0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 resize). The gateway authorizes the
//! exec and relays it to the node; the command's output goes back on 1 and 2, and how it
//! exited on 3, as the kubelet reports it.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;
use serde_json::json;

use crate::gateway;
use crate::query::parse_bool;
use crate::resources::Call;

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

/// What the exec asks for, from the query string.
#[derive(Debug, Default, PartialEq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub container: String,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

pub fn options(raw: Option<&str>) -> Result<ExecOptions, ApiError> {
    let mut o = ExecOptions::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let v = v.as_ref();
        match k.as_ref() {
            "command" => o.command.push(v.to_string()),
            "container" => o.container = v.to_string(),
            "stdin" => o.stdin = parse_bool("stdin", v)?,
            "stdout" => o.stdout = parse_bool("stdout", v)?,
            "stderr" => o.stderr = parse_bool("stderr", v)?,
            "tty" => o.tty = parse_bool("tty", v)?,
            _ => {}
        }
    }
    if !(o.stdin || o.stdout || o.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    Ok(o)
}

/// The Status sent on the error stream when the command ends.
pub fn exit_status(command: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(stream);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

/// kubectl up to 1.29 (and newer ones falling back) POST an SPDY upgrade, which is not
/// served; the request is still checked first, so a wrong container or a missing pod gets
/// the same error as over WebSocket.
pub async fn refuse_spdy(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.target;
    let o = options(call.parts.uri.query())?;
    call.gateway
        .clone()
        .pod_exec(pb::PodExecRequest {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            container: o.container,
            command: o.command,
            tty: o.tty,
            uid: String::new(),
            validate_only: true,
        })
        .await
        .map_err(gateway::error)?;
    Err(ApiError::bad_request(
        "pods/exec over SPDY is not supported; it is served over WebSocket: use kubectl 1.30 or newer, or set KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true (kubectl 1.29)",
    ))
}

pub async fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.target;
    let o = options(call.parts.uri.query())?;
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
        .map_err(|_| {
            ApiError::bad_request(
                "pods/exec is served over WebSocket (v5.channel.k8s.io or v4.channel.k8s.io); \
                 SPDY is not supported: use kubectl 1.30 or newer, or set KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true",
            )
        })?;
    // Errors found before the command runs (no such container, not allowed) answer the
    // upgrade request itself, as kube-apiserver does.
    let output = call
        .gateway
        .clone()
        .pod_exec(pb::PodExecRequest {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            container: o.container.clone(),
            command: o.command.clone(),
            tty: o.tty,
            uid: String::new(),
            validate_only: false,
        })
        .await
        .map_err(gateway::error)?
        .into_inner();
    tracing::debug!(namespace = %t.namespace, pod = %t.name, command = ?o.command, "exec started");
    Ok(upgrade
        .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| relay(socket, output, o))
        .into_response())
}

async fn relay(mut socket: WebSocket, mut output: tonic::Streaming<pb::ExecChunk>, o: ExecOptions) {
    let status = loop {
        match output.next().await {
            Some(Ok(chunk)) => {
                if let Some(code) = chunk.exit_code {
                    break exit_status(&o.command, code);
                }
                let wanted = match chunk.stream {
                    1 => o.stdout.then_some(STDOUT),
                    2 => o.stderr.then_some(STDERR),
                    _ => None,
                };
                if let Some(stream) = wanted
                    && socket.send(frame(stream, &chunk.data)).await.is_err()
                {
                    return;
                }
            }
            Some(Err(status)) => {
                let e = gateway::error(status);
                break json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": e.message,
                    "reason": e.reason.as_str(),
                    "code": e.code(),
                });
            }
            None => break exit_status(&o.command, 0),
        }
    };
    let _ = socket
        .send(frame(ERROR, status.to_string().as_bytes()))
        .await;
    // A normal closure (1000): clients read it as the end of every stream.
    let _ = socket
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    // Let the client read everything before the connection goes.
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_options_and_exit_statuses() {
        let o = options(Some(
            "command=sh&command=-c&command=exit+3&container=c&stdout=true&stderr=1",
        ))
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert_eq!(o.container, "c");
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        assert!(options(Some("command=ls")).is_err());
        let s = exit_status(&o.command, 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&o.command, 0)["status"], "Success");
    }
}
