//! Interactive commands in containers (`kubectl exec -i`, `-t`): what the runtime is asked
//! for and the running command it hands back, with its stdin, output, terminal and exit.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Result, RuntimeError, pty};

/// A terminal's size in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// An exec as the client asks for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSpec {
    pub command: Vec<String>,
    /// The client sends input; otherwise the command's stdin is empty.
    pub stdin: bool,
    /// The command gets a terminal (stdin, stdout and stderr all on it).
    pub tty: bool,
    /// The terminal's size to start with.
    pub size: Option<TerminalSize>,
}

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;
pub type Resizer = Box<dyn Fn(TerminalSize) -> io::Result<()> + Send + Sync>;

/// A command running in a container.
pub struct ExecSession {
    /// Its stdin; `None` when it reads an empty one. Shutting it down is the end of file.
    pub stdin: Option<Writer>,
    /// Its stdout; with a terminal, the terminal (where stderr goes too).
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    /// Sets the terminal's size (with a terminal).
    pub resize: Option<Resizer>,
    /// Resolves to the exit code (128 + the signal that killed it). Dropping it stops the
    /// command (SIGHUP, SIGTERM, and SIGKILL after a grace period).
    pub exit: BoxFuture<'static, Result<i32>>,
}

impl ExecSession {
    /// A command that has already exited with `code` and printed nothing (simulated
    /// runtimes).
    pub fn exited(code: i32) -> Self {
        Self {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            exit: Box::pin(async move { Ok(code) }),
        }
    }
}

/// How a host process that runs an exec relates to the terminal it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalUse {
    /// The process is the command: the terminal is its own (cooked, controlling terminal
    /// set by the process, e.g. `setsid --ctty`).
    Own,
    /// The process (runc in the foreground) makes the container's terminal itself and
    /// relays it to this one, which is raw; it copies this one's size on SIGWINCH.
    Relayed,
}

/// How long a command whose client went away has to stop before it is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Owns an exec's process until it exited. Dropped before that (the client went away), it
/// asks the process to stop, SIGHUP then SIGTERM (to its process group when it leads one;
/// runc forwards them into the container), and kills it after [`CANCEL_GRACE`].
struct RunningChild(Option<tokio::process::Child>);

impl RunningChild {
    async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let Some(child) = self.0.as_mut() else {
            return Err(io::Error::other("the command was already waited for"));
        };
        let status = child.wait().await;
        self.0 = None;
        status
    }
}

impl Drop for RunningChild {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let Some(pid) = child.id().and_then(|p| Pid::from_raw(p as i32)) else {
            return;
        };
        let group = rustix::process::getpgid(Some(pid)).ok() == Some(pid);
        let signal = move |s| {
            let _ = if group {
                rustix::process::kill_process_group(pid, s)
            } else {
                rustix::process::kill_process(pid, s)
            };
        };
        signal(Signal::HUP);
        signal(Signal::TERM);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if tokio::time::timeout(CANCEL_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        signal(Signal::KILL);
                        let _ = child.kill().await;
                    }
                });
            }
            Err(_) => {
                signal(Signal::KILL);
                let _ = child.start_kill();
            }
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(137)
}

/// Starts `cmd` as an exec session: on a new pty with `spec.tty`, on pipes otherwise.
pub fn spawn(
    mut cmd: tokio::process::Command,
    spec: &ExecSpec,
    terminal: TerminalUse,
) -> Result<ExecSession> {
    let failed = |e: io::Error| RuntimeError::Other(format!("starting the command: {e}"));
    if !spec.tty {
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(failed)?;
        let stdin = child.stdin.take().map(|w| Box::pin(w) as Writer);
        let stdout = child.stdout.take().map(|r| Box::pin(r) as Reader);
        let stderr = child.stderr.take().map(|r| Box::pin(r) as Reader);
        let mut child = RunningChild(Some(child));
        return Ok(ExecSession {
            stdin,
            stdout,
            stderr,
            resize: None,
            exit: Box::pin(async move {
                let status = child.wait().await.map_err(RuntimeError::other)?;
                Ok(exit_code(status))
            }),
        });
    }
    let (master, slave) = pty::open(spec.size, terminal == TerminalUse::Relayed).map_err(failed)?;
    let clone = |fd: &std::os::fd::OwnedFd| fd.try_clone().map_err(failed);
    cmd.stdin(Stdio::from(clone(&slave)?))
        .stdout(Stdio::from(clone(&slave)?))
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().map_err(failed)?;
    // The command holds the only slave descriptors now, so the master reads the end of
    // the output once it (and whatever it started) is gone.
    drop(cmd);
    let pid = child.id().and_then(|p| Pid::from_raw(p as i32));
    let mut child = RunningChild(Some(child));
    let exited = Arc::new(AtomicBool::new(false));
    let resize: Resizer = {
        let master = master.clone();
        let exited = exited.clone();
        Box::new(move |size| {
            master.resize(size)?;
            // runc is not in the terminal's session: it is told directly.
            if terminal == TerminalUse::Relayed
                && !exited.load(Ordering::Acquire)
                && let Some(pid) = pid
            {
                rustix::process::kill_process(pid, Signal::WINCH)?;
            }
            Ok(())
        })
    };
    Ok(ExecSession {
        stdin: spec.stdin.then(|| Box::pin(master.clone()) as Writer),
        stdout: Some(Box::pin(master)),
        stderr: None,
        resize: Some(resize),
        exit: Box::pin(async move {
            let status = child.wait().await.map_err(RuntimeError::other);
            exited.store(true, Ordering::Release);
            Ok(exit_code(status?))
        }),
    })
}
