//! Several gateways (distributed engine instances) over one in-memory transactional backend
//! with TiKV's conflict semantics: the multi-gateway logic of issue 8, proven without TiKV.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use navarch_store::{
    DistributedOptions, DistributedStore, EventKind, ListRequest, MemoryKv, Revision, Store,
    StoreError, StoreExt, Txn, TxnOutcome, WatchEvent, WatchStream,
};

const STEP: Duration = Duration::from_secs(20);

async fn within<F: Future>(step: F) -> F::Output {
    tokio::time::timeout(STEP, step)
        .await
        .expect("step timed out")
}

fn gateway(kv: &MemoryKv, name: &str) -> Arc<DistributedStore> {
    let options = DistributedOptions {
        instance: name.into(),
        poll_interval: Duration::from_millis(5),
        lease_ttl: Duration::from_secs(1),
        log_grace: 0,
        ..Default::default()
    };
    Arc::new(DistributedStore::new(Arc::new(kv.clone()), options).expect("start gateway"))
}

async fn next_event(watch: &mut WatchStream) -> WatchEvent {
    within(watch.next())
        .await
        .expect("watch ended")
        .expect("watch failed")
}

async fn events_through(watch: &mut WatchStream, revision: Revision) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    while events
        .last()
        .is_none_or(|event: &WatchEvent| event.revision() < revision)
    {
        events.push(next_event(watch).await);
    }
    events
}

/// Increments a counter key with read-modify-write and expected revisions, retrying on
/// Conflict: a lost update would show as a final count below the number of increments.
async fn increment(store: &dyn Store, key: &str) -> Revision {
    loop {
        let current = store.get(key, 0).await.expect("get counter");
        let (count, expected) = match &current {
            Some(kv) => (
                std::str::from_utf8(&kv.value)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                Some(kv.mod_revision),
            ),
            None => (0, None),
        };
        let next = Bytes::from((count + 1).to_string());
        let result = match expected {
            Some(revision) => store.update(key, next, Some(revision)).await,
            None => store.create(key, next).await,
        };
        match result {
            Ok(kv) => return kv.mod_revision,
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => continue,
            Err(other) => panic!("increment failed: {other}"),
        }
    }
}

/// Concurrent writers on three gateways: no lost update, no duplicate revision, and every
/// watcher on every gateway sees every change exactly once, in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_three_gateways_agree() {
    const WRITERS: usize = 6;
    const WRITES: usize = 25;
    const INCREMENTS: usize = 10;
    let kv = MemoryKv::new();
    let gateways: Vec<_> = (0..3).map(|i| gateway(&kv, &format!("gw-{i}"))).collect();
    let mut watches = Vec::new();
    for gw in &gateways {
        watches.push(within(gw.watch("", 0)).await.unwrap());
    }

    let mut tasks = Vec::new();
    for (g, gw) in gateways.iter().enumerate() {
        for writer in 0..WRITERS {
            let gw = gw.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..WRITES {
                    let key = format!("w/{g}/{writer}/{}", i % 4);
                    let value = Bytes::from(format!("{g}-{writer}-{i}"));
                    let revision = gw.put(&key, value.clone()).await.expect("put");
                    acked.push((revision, key, value));
                    if i % (WRITES / INCREMENTS) == 0 && i / (WRITES / INCREMENTS) < INCREMENTS {
                        let revision = increment(&*gw, "counter").await;
                        acked.push((revision, "counter".into(), Bytes::new()));
                    }
                }
                acked
            }));
        }
    }
    let mut acked = BTreeMap::new();
    for task in tasks {
        for (revision, key, value) in within(task).await.unwrap() {
            assert!(
                acked.insert(revision, (key, value)).is_none(),
                "revision {revision} given twice"
            );
        }
    }
    let total = 3 * WRITERS * (WRITES + INCREMENTS);
    assert_eq!(acked.len(), total);
    let last = *acked.keys().last().unwrap();
    assert_eq!(last, total as Revision, "revisions are contiguous");

    let counter = within(gateways[2].get("counter", 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counter.value,
        Bytes::from((3 * WRITERS * INCREMENTS).to_string()),
        "no lost update across gateways"
    );

    let mut sequences = Vec::new();
    for watch in &mut watches {
        let events = events_through(watch, last).await;
        let summary: Vec<_> = events
            .iter()
            .map(|e| (e.revision(), e.kv.key.clone(), e.kv.value.clone()))
            .collect();
        for (index, (revision, key, value)) in summary.iter().enumerate() {
            assert_eq!(*revision, index as Revision + 1, "no gap, no repeat");
            let (acked_key, acked_value) = &acked[revision];
            assert_eq!(key, acked_key);
            if key != "counter" {
                assert_eq!(value, acked_value);
            }
        }
        sequences.push(summary);
    }
    assert!(
        sequences.windows(2).all(|pair| pair[0] == pair[1]),
        "every gateway's watchers see the identical sequence"
    );
    for gw in &gateways {
        assert_eq!(gw.current_revision(), last);
    }
}

/// A write acknowledged by gateway A is read at once by gateway B and reaches B's watchers;
/// a conflict between gateways is detected, never overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_gateway_is_seen_and_conflicts_are_detected_on_another() {
    let kv = MemoryKv::new();
    let (a, b) = (gateway(&kv, "a"), gateway(&kv, "b"));
    let mut watch_b = within(b.watch("pods/", 0)).await.unwrap();

    let created = within(a.create("pods/x", Bytes::from("1"))).await.unwrap();
    assert_eq!(
        within(b.get("pods/x", 0)).await.unwrap(),
        Some(created.clone()),
        "read on B right after A's ack"
    );
    assert_eq!(next_event(&mut watch_b).await.kv, created);
    assert_eq!(
        within(b.create("pods/x", Bytes::from("2"))).await,
        Err(StoreError::AlreadyExists {
            key: "pods/x".into()
        })
    );

    for round in 0..10 {
        let current = within(a.get("pods/x", 0)).await.unwrap().unwrap();
        let (ra, rb) = tokio::join!(
            a.update(
                "pods/x",
                Bytes::from(format!("a{round}")),
                Some(current.mod_revision)
            ),
            b.update(
                "pods/x",
                Bytes::from(format!("b{round}")),
                Some(current.mod_revision)
            ),
        );
        let winners = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one gateway wins ({ra:?}, {rb:?})"
        );
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(
            matches!(loser, Err(StoreError::Conflict { .. })),
            "{loser:?}"
        );
    }

    // A txn's compare failure on one gateway is the same `Failed` outcome as anywhere.
    let stale = Txn::new()
        .when(
            "pods/x",
            navarch_store::Compare::ModRevision(created.mod_revision),
        )
        .put("pods/x", Bytes::from("stale"));
    assert!(matches!(
        within(b.txn(stale)).await.unwrap(),
        TxnOutcome::Failed { .. }
    ));
    let list = within(b.list(ListRequest {
        prefix: "pods/".into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(list.kvs.len(), 1);
    assert_eq!(
        list.revision,
        a.current_revision().max(b.current_revision())
    );
}

/// A gateway killed while a batch is in flight: every acknowledged write survives, the
/// interrupted batch is invisible as a whole, and the log agrees with the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_batch_loses_no_acknowledged_write_and_leaves_no_half_batch() {
    let kv = MemoryKv::new();
    let (a, b) = (gateway(&kv, "a"), gateway(&kv, "b"));
    kv.set_commit_delay(Duration::from_millis(40));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the writes over several batches.
            tokio::time::sleep(Duration::from_millis(i as u64)).await;
            let txn = Txn::new()
                .put(format!("pair/{i}/a"), Bytes::from(i.to_string()))
                .put(format!("pair/{i}/b"), Bytes::from(i.to_string()));
            (i, a.txn(txn).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(70)).await;
    a.kill();
    kv.set_commit_delay(Duration::ZERO);

    let mut acknowledged = HashSet::new();
    let mut failed = 0;
    for task in tasks {
        match within(task).await.unwrap() {
            (i, Ok(outcome)) => {
                assert!(outcome.is_committed());
                acknowledged.insert(i);
            }
            (_, Err(StoreError::Unavailable(_))) => failed += 1,
            (_, Err(other)) => panic!("unexpected {other}"),
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "some batches committed before the kill"
    );
    assert!(failed > 0, "the kill interrupted some writes");
    assert!(matches!(
        within(a.put("after", Bytes::new())).await,
        Err(StoreError::Unavailable(_))
    ));

    let kvs = within(b.list(ListRequest {
        prefix: "pair/".into(),
        ..Default::default()
    }))
    .await
    .unwrap()
    .kvs;
    let mut present: BTreeMap<String, Vec<Revision>> = BTreeMap::new();
    for kv in &kvs {
        let i = kv.key.split('/').nth(1).unwrap().to_owned();
        present.entry(i).or_default().push(kv.mod_revision);
    }
    for (i, revisions) in &present {
        assert_eq!(revisions.len(), 2, "pair {i}: both halves or neither");
        assert_eq!(revisions[0], revisions[1], "pair {i}: one revision");
    }
    for i in &acknowledged {
        assert!(
            present.contains_key(&i.to_string()),
            "acknowledged pair {i} lost"
        );
    }
    // The log holds exactly the committed writes.
    let mut watch = within(b.watch("pair/", 0)).await.unwrap();
    let mut events = Vec::new();
    while events.len() < kvs.len() {
        events.push(next_event(&mut watch).await);
    }
    let extra = tokio::time::timeout(Duration::from_millis(50), watch.next()).await;
    assert!(
        extra.is_err(),
        "the log holds nothing beyond the data: {extra:?}"
    );
    assert!(events.iter().all(|e| e.kind == EventKind::Put));
}

/// Compaction requested on one gateway expires reads and watches on every gateway; the
/// history is cleaned by the lease holder only, and another gateway takes over the lease
/// when the holder dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_expired_across_gateways_with_one_cleaner() {
    let kv = MemoryKv::new();
    let (a, b, c) = (gateway(&kv, "a"), gateway(&kv, "b"), gateway(&kv, "c"));
    for i in 1..=10 {
        within(a.put("k", Bytes::from(i.to_string())))
            .await
            .unwrap();
    }
    let mut live_on_c = within(c.watch("", 8)).await.unwrap();
    assert_eq!(next_event(&mut live_on_c).await.revision(), 9);

    within(b.compact(5)).await.unwrap();
    let expired = StoreError::Expired {
        requested: 4,
        compacted: 5,
    };
    assert_eq!(within(a.get("k", 4)).await, Err(expired.clone()));
    assert_eq!(
        a.compacted_revision(),
        5,
        "A learns the compaction from the store"
    );
    assert!(matches!(
        within(c.watch("", 3)).await,
        Err(StoreError::Expired { .. })
    ));
    assert_eq!(
        within(c.get("k", 5)).await.unwrap().unwrap().value,
        Bytes::from("5")
    );
    assert_eq!(within(b.cleaned_revisions()).await.unwrap(), (5, 5));

    // A is not the lease holder: its compaction moves the mark, the holder cleans.
    within(a.compact(8)).await.unwrap();
    assert_eq!(
        within(b.get("k", 7)).await.map(|_| ()),
        Err(StoreError::Expired {
            requested: 7,
            compacted: 8
        })
    );
    assert_eq!(within(a.cleaned_revisions()).await.unwrap(), (5, 5));
    assert!(within(b.hold_compaction_lease()).await.unwrap());
    assert!(!within(a.hold_compaction_lease()).await.unwrap());
    within(b.compact(8)).await.unwrap();
    assert_eq!(within(a.cleaned_revisions()).await.unwrap(), (8, 8));

    // The holder dies; once its lease expires another gateway cleans.
    b.kill();
    drop(b);
    within(a.put("k", Bytes::from("11"))).await.unwrap();
    within(c.compact(10)).await.unwrap();
    assert_eq!(within(a.cleaned_revisions()).await.unwrap(), (8, 8));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    within(c.compact(10)).await.unwrap();
    assert_eq!(within(a.cleaned_revisions()).await.unwrap(), (10, 10));

    // Only the latest version at the compacted revision and later ones remain.
    let history: Vec<_> = kv
        .dump()
        .into_keys()
        .filter(|key| key.starts_with(b"nv/default/h/") || key.starts_with(b"nv/default/l/"))
        .collect();
    assert_eq!(history.len(), 3, "h/k@10, h/k@11 and l/11: {history:?}");
    assert_eq!(
        within(a.get("k", 10)).await.unwrap().unwrap().value,
        Bytes::from("10")
    );

    // A watcher started before the compactions is not disturbed.
    let revisions: Vec<_> = events_through(&mut live_on_c, 11)
        .await
        .iter()
        .map(|e| e.revision())
        .collect();
    assert_eq!(revisions, vec![10, 11]);
}

/// The backend goes away: calls fail fast with Unavailable; when it returns, writes work
/// again and a watcher that was open keeps receiving, without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_and_recovers() {
    let kv = MemoryKv::new();
    let (a, b) = (gateway(&kv, "a"), gateway(&kv, "b"));
    let first = within(a.put("x", Bytes::from("1"))).await.unwrap();
    let mut watch = within(b.watch("", first)).await.unwrap();

    kv.set_unavailable(true);
    let started = std::time::Instant::now();
    assert!(matches!(
        within(a.put("x", Bytes::from("2"))).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        within(b.get("x", 0)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
    tokio::time::sleep(Duration::from_millis(30)).await;

    kv.set_unavailable(false);
    let second = within(a.put("x", Bytes::from("3"))).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.revision(), event.kv.value),
        (second, Bytes::from("3"))
    );
    assert_eq!(second, first + 1, "the failed write took no revision");
}

/// Two clusters share one backend under different prefixes without seeing each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_clusters() {
    let kv = MemoryKv::new();
    let options = |prefix: &str| DistributedOptions {
        prefix: prefix.into(),
        ..Default::default()
    };
    let one = DistributedStore::new(Arc::new(kv.clone()), options("one")).unwrap();
    let two = DistributedStore::new(Arc::new(kv.clone()), options("two")).unwrap();
    within(one.put("a", Bytes::from("1"))).await.unwrap();
    assert_eq!(within(two.get("a", 0)).await.unwrap(), None);
    assert_eq!(within(two.put("a", Bytes::from("2"))).await.unwrap(), 1);
    assert!(DistributedStore::new(Arc::new(kv), options("a/b")).is_err());
}
