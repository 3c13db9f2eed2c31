//! Crash safety of the embedded engine: a child process (this test binary, re-executed)
//! writes as fast as it can from many concurrent writers and prints every acknowledged
//! write; it is `kill -9`ed mid-storm, and every acknowledged write must be there after the
//! store is reopened, with a gap-free, ordered log.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use navarch_store::{StoreExt, open_embedded};

/// Set in the child's environment: the store directory to write to.
const CHILD_DIR_ENV: &str = "NAVARCH_STORE_CRASH_CHILD_DIR";
const ACK: &str = "ACK|";
const WRITERS: usize = 64;
const KILL_AFTER_ACKS: usize = 600;

/// The child: writes until killed (or for at most a minute, should the parent vanish).
#[test]
#[ignore = "run by crash_keeps_every_acknowledged_write as its child process"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = open_embedded(&dir).expect("child opens the store");
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut revisions: BTreeMap<String, i64> = BTreeMap::new();
                for i in 0.. {
                    let key = format!("crash/{writer:02}/{}", i % 8);
                    let value = format!("{writer}-{i}");
                    let revision = match revisions.get(&key) {
                        None => store.create(&key, Bytes::from(value.clone())).await,
                        Some(&expected) => {
                            store
                                .update(&key, Bytes::from(value.clone()), Some(expected))
                                .await
                        }
                    }
                    .expect("write")
                    .mod_revision;
                    revisions.insert(key.clone(), revision);
                    // One write(2) per line, so a line is either whole or absent.
                    let line = format!("{ACK}{key}|{value}|{revision}\n");
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(line.as_bytes()).unwrap();
                    stdout.flush().unwrap();
                }
            }));
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks)).await;
    });
}

/// Kills the child on every exit path of the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Ack {
    key: String,
    value: String,
    revision: i64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let rest = &line[line.find(ACK)? + ACK.len()..];
    let mut fields = rest.split('|');
    let ack = Ack {
        key: fields.next()?.to_owned(),
        value: fields.next()?.to_owned(),
        revision: fields.next()?.trim().parse().ok()?,
    };
    Some(ack)
}

#[test]
fn crash_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["crash_child_writer", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (lines, acks) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = parse_ack(&line)
                && lines.send(ack).is_err()
            {
                break;
            }
        }
    });

    let mut acked = Vec::new();
    while acked.len() < KILL_AFTER_ACKS {
        let ack = acks
            .recv_timeout(Duration::from_secs(30))
            .expect("the child acknowledges writes");
        acked.push(ack);
    }
    child.0.kill().expect("kill -9 the child");
    child.0.wait().unwrap();
    // Every line the child finished printing before it died is still in the pipe.
    while let Ok(ack) = acks.recv_timeout(Duration::from_secs(10)) {
        acked.push(ack);
    }
    reader.join().unwrap();
    drop(child);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let step = Duration::from_secs(20);
        let store = open_embedded(dir.path()).expect("reopen after kill -9");
        let current = store.current_revision();
        let mut by_revision = BTreeMap::new();
        for ack in &acked {
            assert!(
                by_revision.insert(ack.revision, ack).is_none(),
                "revision {} acknowledged twice",
                ack.revision
            );
        }
        let (&last_acked, _) = by_revision.last_key_value().unwrap();
        assert!(
            current >= last_acked,
            "current {current} < acknowledged {last_acked}"
        );

        for ack in &acked {
            let kv = tokio::time::timeout(step, store.get(&ack.key, ack.revision))
                .await
                .unwrap()
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged write {} lost", ack.revision));
            assert_eq!(kv.mod_revision, ack.revision);
            assert_eq!(kv.value, Bytes::from(ack.value.clone()));
        }

        // The log: revisions 1..=current, each once, in order, agreeing with the acks.
        let mut watch = tokio::time::timeout(step, store.watch("", 0))
            .await
            .unwrap()
            .unwrap();
        let mut expected = 1;
        while expected <= current {
            let event = tokio::time::timeout(step, watch.next())
                .await
                .unwrap()
                .expect("log continues")
                .unwrap();
            assert_eq!(event.revision(), expected, "gap-free, ordered log");
            if let Some(ack) = by_revision.get(&expected) {
                assert_eq!(event.kv.key, ack.key);
                assert_eq!(event.kv.value, Bytes::from(ack.value.clone()));
            }
            expected += 1;
        }
        eprintln!(
            "child killed after {} acknowledged writes; store reopened at revision {current}",
            acked.len()
        );
    });
}
