//! Running the real `kubectl` against a `navarch up`, with a kubeconfig and a HOME of its own
//! (so discovery caches never leak between tests), every run bounded in time.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// kubectl releases installed beside the dispatcher.
pub const KUBECTL_OLDEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
pub const KUBECTL_NEWEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
/// The dispatcher: reads the server's `/version` and runs the matching release.
pub const KUBECTL_DISPATCHER: &str = "/usr/bin/kubectl";

/// How long one kubectl run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// One kubectl binary bound to one cluster.
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

/// What a run printed.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// `bin` with a copy of `kubeconfig` (so a test may change contexts freely).
    pub fn new(bin: &str, kubeconfig: &Path) -> anyhow::Result<Self> {
        let home = tempfile::tempdir()?;
        let own = home.path().join("kubeconfig");
        std::fs::copy(kubeconfig, &own)?;
        Ok(Self {
            bin: PathBuf::from(bin),
            kubeconfig: own,
            home,
        })
    }

    /// A directory for the test's files.
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// Writes `text` into the test's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    /// The command, with the test's kubeconfig, HOME and cache.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs kubectl with `args` (and `stdin`), at most [`RUN_TIMEOUT`].
    pub fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("kubectl starts");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("writing stdin");
        }
        let out = wait_output(child, RUN_TIMEOUT)
            .unwrap_or_else(|| panic!("kubectl {args:?} did not finish within {RUN_TIMEOUT:?}"));
        let took = started.elapsed();
        if took > Duration::from_secs(1) {
            eprintln!("slow: kubectl {args:?} took {took:?}");
        }
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[])
    }

    /// Runs and requires success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(
            r.ok,
            "{} {args:?} failed:\nstdout: {}\nstderr: {}",
            self.bin.display(),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Runs and requires failure; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(
            !r.ok,
            "{} {args:?} succeeded but should fail:\nstdout: {}\nstderr: {}",
            self.bin.display(),
            r.stdout,
            r.stderr
        );
        r.stderr
    }

    /// Starts a long-running kubectl (`get -w`), its stdout piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("kubectl starts")
    }
}

/// Waits for a child with a deadline, collecting its output; kills it on timeout.
pub fn wait_output(mut child: Child, timeout: Duration) -> Option<Output> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// The lines a child prints on stdout, read in the background.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    /// Starts reading `child`'s piped stdout.
    pub fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { rx }
    }

    /// Reads lines until `pred` matches one or `timeout` passes; returns whether it matched
    /// and everything read.
    pub fn until(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if pred(&line) {
                        return (true, seen);
                    }
                }
                Err(_) => break,
            }
        }
        (false, seen)
    }
}
