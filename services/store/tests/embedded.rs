//! Embedded-engine behaviour beyond the conformance suite: restart, file locking, and a
//! throughput sanity check (no timing assertion).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use navarch_store::{ListRequest, StoreError, StoreExt, open_embedded};

const STEP: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(step: F) -> F::Output {
    tokio::time::timeout(STEP, step)
        .await
        .expect("step timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_restores_revisions_history_and_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_embedded(dir.path()).unwrap();
        for i in 0..20 {
            within(store.put(&format!("k/{}", i % 5), Bytes::from(format!("v{i}"))))
                .await
                .unwrap();
        }
        within(store.delete("k/0", None)).await.unwrap(); // 21
        within(store.compact(10)).await.unwrap();
        assert_eq!(store.current_revision(), 21);
    }

    let store = open_embedded(dir.path()).unwrap();
    assert_eq!(
        store.current_revision(),
        21,
        "current revision survives a restart"
    );
    assert_eq!(
        store.compacted_revision(),
        10,
        "compacted revision survives a restart"
    );
    assert_eq!(within(store.get("k/0", 0)).await.unwrap(), None);
    let kv = within(store.get("k/4", 0)).await.unwrap().unwrap();
    assert_eq!((kv.value, kv.mod_revision), (Bytes::from("v19"), 20));
    assert_eq!(
        within(store.get("k/1", 10)).await.unwrap().unwrap().value,
        Bytes::from("v6")
    );
    assert!(matches!(
        within(store.list(ListRequest {
            revision: 9,
            ..Default::default()
        }))
        .await,
        Err(StoreError::Expired { .. })
    ));

    // The persisted log replays, then the watch goes live.
    let mut watch = within(store.watch("k/", 10)).await.unwrap();
    let revision = within(store.put("k/9", Bytes::from("after restart")))
        .await
        .unwrap();
    assert_eq!(revision, 22, "revisions continue after a restart");
    for expected in 11..=22 {
        let event = within(watch.next()).await.unwrap().unwrap();
        assert_eq!(event.revision(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_a_missing_directory_or_uses_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("data").join("store");
    let store = open_embedded(&nested).unwrap();
    within(store.put("k", Bytes::from("v"))).await.unwrap();
    drop(store);
    assert!(nested.join(navarch_store::embedded::FILE_NAME).is_file());
    assert_eq!(open_embedded(&nested).unwrap().current_revision(), 1);

    let file = dir.path().join("plain.redb");
    let store = open_embedded(&file).unwrap();
    within(store.put("k", Bytes::from("v"))).await.unwrap();
    drop(store);
    assert!(file.is_file());
    assert_eq!(open_embedded(&file).unwrap().current_revision(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_of_one_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_embedded(dir.path()).unwrap();
    let second = open_embedded(dir.path());
    assert!(
        matches!(second, Err(StoreError::Unavailable(_))),
        "the file is locked by the first store"
    );
    drop(store);
    open_embedded(dir.path()).expect("reopens once the first store is dropped");
}

/// Not a benchmark: many concurrent clients, each write durable; prints the rate so a human
/// can see group commit at work. Asserts only correctness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_throughput_sanity() {
    const CLIENTS: usize = 64;
    const WRITES: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let store = open_embedded(dir.path()).unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("bench/{client}");
            let mut revision = store
                .create(&key, Bytes::from("0"))
                .await
                .unwrap()
                .mod_revision;
            for i in 1..WRITES {
                revision = store
                    .update(&key, Bytes::from(format!("{i}")), Some(revision))
                    .await
                    .unwrap()
                    .mod_revision;
            }
        }));
    }
    for task in tasks {
        within(task).await.unwrap();
    }
    let elapsed = started.elapsed();
    let writes = CLIENTS * WRITES;
    assert_eq!(store.current_revision(), writes as i64);
    eprintln!(
        "{writes} durable writes from {CLIENTS} clients in {elapsed:?}: {:.0} writes/s (debug build)",
        writes as f64 / elapsed.as_secs_f64()
    );
}
