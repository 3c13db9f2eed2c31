//! `pods/exec` (`kubectl exec`): over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`;
//! kubectl 1.30 and newer) or SPDY/3.1 (`v4.channel.k8s.io`; kubectl up to 1.29, and newer
//! ones falling back). Either way the streams are stdin, stdout, stderr, the final Status
//! (error) and terminal resizes. The gateway authorizes the exec and relays it to the node;
//! stdin, its end and resizes go down, the command's output comes back, and how it exited
//! goes to the client as the kubelet reports it.

mod spdy;
mod websocket;

use axum::response::Response;
use navarch_api::ApiError;
use navarch_api::gateway::v1 as pb;
use serde_json::json;
use tokio::sync::mpsc;

use crate::gateway;
use crate::query::parse_bool;
use crate::resources::Call;

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
    // As the kubelet: a terminal carries stderr on stdout.
    if o.tty {
        o.stderr = false;
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

/// The Status for an exec that failed while it ran (the node went away, …).
fn failure_status(status: tonic::Status) -> serde_json::Value {
    let e = gateway::error(status);
    json!({
        "metadata": {},
        "status": "Failure",
        "message": e.message,
        "reason": e.reason.as_str(),
        "code": e.code(),
    })
}

/// A terminal size as clients send it on the resize stream.
#[derive(serde::Deserialize)]
struct ResizeMessage {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

fn resize_input(json: &[u8]) -> Option<pb::ExecInput> {
    let r: ResizeMessage = serde_json::from_slice(json).ok()?;
    Some(input(pb::exec_input::Msg::Resize(pb::TerminalSize {
        width: r.width.into(),
        height: r.height.into(),
    })))
}

fn input(msg: pb::exec_input::Msg) -> pb::ExecInput {
    pb::ExecInput { msg: Some(msg) }
}

/// A running exec: where the client's input goes, and what comes back.
struct Exec {
    input: mpsc::Sender<pb::PodExecClientMessage>,
    output: tonic::Streaming<pb::ExecChunk>,
    options: ExecOptions,
}

impl Exec {
    /// The next output: `Ok((stream, data))` with stream 1 (stdout) or 2 (stderr), or the
    /// final Status once the command ended.
    async fn next(&mut self) -> Result<(u8, Vec<u8>), serde_json::Value> {
        loop {
            match self.output.message().await {
                Ok(Some(chunk)) => {
                    if let Some(code) = chunk.exit_code {
                        return Err(exit_status(&self.options.command, code));
                    }
                    let wanted = match chunk.stream {
                        1 => self.options.stdout,
                        2 => self.options.stderr,
                        _ => false,
                    };
                    if wanted {
                        return Ok((chunk.stream as u8, chunk.data));
                    }
                }
                Ok(None) => return Err(exit_status(&self.options.command, 0)),
                Err(status) => return Err(failure_status(status)),
            }
        }
    }
}

fn exec_request(call: &Call<'_>, o: &ExecOptions, validate_only: bool) -> pb::PodExecRequest {
    let t = &call.target;
    pb::PodExecRequest {
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        container: o.container.clone(),
        command: o.command.clone(),
        tty: o.tty,
        uid: String::new(),
        validate_only,
        stdin: o.stdin,
        size: None,
    }
}

/// Starts the exec through the gateway. Errors found before the command runs (no such
/// container, not allowed) answer the upgrade request itself, as kube-apiserver does.
async fn start(call: &Call<'_>, options: ExecOptions) -> Result<Exec, ApiError> {
    let (tx, rx) = mpsc::channel(16);
    let first = pb::PodExecClientMessage {
        msg: Some(pb::pod_exec_client_message::Msg::Request(exec_request(
            call, &options, false,
        ))),
    };
    tx.send(first)
        .await
        .map_err(|_| ApiError::internal("exec input closed"))?;
    let output = call
        .gateway
        .clone()
        .pod_exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(gateway::error)?
        .into_inner();
    tracing::debug!(
        namespace = %call.target.namespace,
        pod = %call.target.name,
        command = ?options.command,
        stdin = options.stdin,
        tty = options.tty,
        "exec started"
    );
    Ok(Exec {
        input: tx,
        output,
        options,
    })
}

/// `GET` (WebSocket) or `POST` (SPDY) on pods/exec.
pub async fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let o = options(call.parts.uri.query())?;
    let upgrade = call
        .parts
        .headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if upgrade.eq_ignore_ascii_case("websocket") {
        return websocket::serve(call, o).await;
    }
    if upgrade.to_ascii_lowercase().starts_with("spdy/") {
        return spdy::serve(call, o).await;
    }
    // Not an upgrade: check the request anyway, so that a wrong container or a missing pod
    // gets the error it would get over a stream.
    validate(call, &o).await?;
    Err(ApiError::bad_request(
        "pods/exec needs a connection upgrade: WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) or SPDY/3.1",
    ))
}

/// Only checks that the exec could run.
async fn validate(call: &Call<'_>, o: &ExecOptions) -> Result<(), ApiError> {
    let first = pb::PodExecClientMessage {
        msg: Some(pb::pod_exec_client_message::Msg::Request(exec_request(
            call, o, true,
        ))),
    };
    let mut output = call
        .gateway
        .clone()
        .pod_exec(futures::stream::iter([first]))
        .await
        .map_err(gateway::error)?
        .into_inner();
    // The answer ends at once; an error may still come as its status.
    output.message().await.map_err(gateway::error)?;
    Ok(())
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
        let t = options(Some(
            "command=sh&stdin=true&stdout=true&stderr=true&tty=true",
        ))
        .unwrap();
        assert!(t.tty && t.stdin && t.stdout && !t.stderr, "{t:?}");
        let s = exit_status(&o.command, 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&o.command, 0)["status"], "Success");
    }

    #[test]
    fn resize_messages_as_kubectl_sends_them() {
        let i = resize_input(br#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!(
            i.msg,
            Some(pb::exec_input::Msg::Resize(pb::TerminalSize {
                width: 80,
                height: 24
            }))
        );
        assert!(resize_input(b"{\"Width\":-1}").is_none());
        assert!(resize_input(b"not json").is_none());
    }
}
