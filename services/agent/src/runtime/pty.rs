//! Pseudo-terminals for `kubectl exec -t`: a pty pair whose master the agent reads and
//! writes without blocking (tokio `AsyncFd`), and whose window size it sets (TIOCSWINSZ).

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::TerminalSize;

/// The master side of a pty; the reader and writer halves share it.
#[derive(Clone)]
pub struct PtyMaster(Arc<AsyncFd<OwnedFd>>);

/// A new pty pair: the master, and the slave to give the command as its stdio. `raw` turns
/// the slave's line discipline off (for a runtime that puts a terminal of its own behind it).
pub fn open(size: Option<TerminalSize>, raw: bool) -> io::Result<(PtyMaster, OwnedFd)> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    // NOCTTY: the pty must never become the agent's own controlling terminal.
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if raw {
        let mut t = rustix::termios::tcgetattr(&slave)?;
        t.make_raw();
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t)?;
    }
    if let Some(size) = size {
        rustix::termios::tcsetwinsize(&master, winsize(size))?;
    }
    rustix::io::ioctl_fionbio(&master, true)?;
    // `AsyncFd::new` is deprecated for types whose descriptor may change or close under
    // it; an `OwnedFd` owned by the `AsyncFd` stays open and the same for its whole life.
    #[allow(deprecated)]
    let master = AsyncFd::new(master)?;
    Ok((PtyMaster(Arc::new(master)), slave))
}

fn winsize(s: TerminalSize) -> Winsize {
    Winsize {
        ws_row: s.height,
        ws_col: s.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtyMaster {
    /// Sets the terminal's size; the kernel tells the terminal's foreground processes
    /// (SIGWINCH).
    pub fn resize(&self, size: TerminalSize) -> io::Result<()> {
        rustix::termios::tcsetwinsize(self.0.get_ref(), winsize(size))?;
        Ok(())
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *unfilled)?)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Every slave descriptor is closed (the command and its children exited):
                // the end of the output.
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), data)?)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A terminal has no half-close: the command reads end of file only when it exits.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_pty_carries_bytes_both_ways_and_has_the_size_set() {
        let size = TerminalSize {
            width: 100,
            height: 30,
        };
        let (mut master, slave) = open(Some(size), false).unwrap();
        let got = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((got.ws_col, got.ws_row), (100, 30));
        master
            .resize(TerminalSize {
                width: 120,
                height: 40,
            })
            .unwrap();
        let got = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((got.ws_col, got.ws_row), (120, 40));
        // Written to the master: read by the slave (cooked: a line at a time).
        master.write_all(b"hi\n").await.unwrap();
        let mut buf = [0u8; 16];
        let slave = std::fs::File::from(slave);
        let n = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut s = &slave;
            let n = s.read(&mut buf).unwrap();
            (buf[..n].to_vec(), slave)
        })
        .await
        .unwrap();
        assert_eq!(n.0, b"hi\n");
        // The slave closed: the master reads the echo, then the end.
        drop(n.1);
        let mut out = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            master.read_to_end(&mut out),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(out, b"hi\r\n", "the echo, with the line discipline's CR");
    }
}
