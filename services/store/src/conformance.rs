//! The conformance suite every engine passes: one function per semantic, each given a fresh,
//! empty store, panicking on a violation. Run all of them against an engine with
//! [`conformance_tests!`](crate::conformance_tests).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    Compare, EventKind, KeyValue, ListRequest, Revision, Store, StoreError, StoreExt, Txn,
    TxnOutcome, WatchEvent, WatchStream,
};

/// Every step of a conformance test gets this long.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The watch buffer [`slow_watcher_is_cut_off_and_resumes`] needs its store opened with.
pub const SMALL_WATCH_BUFFER: usize = 16;

/// Generates one `#[tokio::test]` per conformance function. `$fixture` is a closure taking a
/// watch buffer size (`None` = the engine's default) and returning `(Arc<dyn Store>, guard)`;
/// the guard (a temp dir, say) lives as long as the test.
#[macro_export]
macro_rules! conformance_tests {
    (@each $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = ($fixture)(None);
                $crate::conformance::run($crate::conformance::$name(store)).await;
            }
        )*
    };
    ($fixture:expr) => {
        $crate::conformance_tests!(@each $fixture;
            create_get_update_delete,
            txn_compares_and_multiple_ops,
            txn_rejects_malformed,
            concurrent_conflicting_updates_exactly_one_wins,
            concurrent_creates_exactly_one_wins,
            list_pagination_and_prefix,
            list_pages_stable_while_writing,
            get_and_list_at_old_revisions,
            future_revisions_rejected,
            watch_events_and_prev,
            watch_at_head_waits_for_next_write,
            watch_ordering_under_concurrent_writers,
            watch_catch_up_then_live,
            watch_hand_off_under_continuous_writes,
            compaction_expires_old_revisions,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn slow_watcher_is_cut_off_and_resumes() {
            let (store, _guard) = ($fixture)(Some($crate::conformance::SMALL_WATCH_BUFFER));
            $crate::conformance::run($crate::conformance::slow_watcher_is_cut_off_and_resumes(
                store,
            ))
            .await;
        }
    };
}

/// Runs a whole conformance test under an overall timeout.
pub async fn run(test: impl Future<Output = ()>) {
    tokio::time::timeout(STEP_TIMEOUT * 6, test)
        .await
        .expect("conformance test timed out");
}

async fn within<F: Future>(step: F) -> F::Output {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .expect("store step timed out")
}

fn val(text: impl Into<String>) -> Bytes {
    Bytes::from(text.into())
}

async fn next_event(watch: &mut WatchStream) -> WatchEvent {
    within(watch.next())
        .await
        .expect("watch stream ended")
        .expect("watch stream failed")
}

/// Reads events until one has `revision`, the last write the caller made.
async fn events_through(watch: &mut WatchStream, revision: Revision) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    loop {
        let event = next_event(watch).await;
        let done = event.revision() >= revision;
        events.push(event);
        if done {
            return events;
        }
    }
}

async fn list_all(store: &dyn Store, prefix: &str, revision: Revision) -> Vec<KeyValue> {
    let page = within(store.list(ListRequest {
        prefix: prefix.into(),
        revision,
        ..Default::default()
    }))
    .await
    .expect("list");
    assert!(!page.more, "an unlimited list has no more");
    page.kvs
}

/// Create, get, update and delete, with their conflicts and revisions.
pub async fn create_get_update_delete(store: Arc<dyn Store>) {
    assert_eq!(store.current_revision(), 0, "a new store is at revision 0");
    assert_eq!(within(store.get("a", 0)).await.unwrap(), None);

    let created = within(store.create("a", val("1"))).await.unwrap();
    assert_eq!(
        created.create_revision, 1,
        "the first write gets revision 1"
    );
    assert_eq!(created.mod_revision, 1);
    assert_eq!(store.current_revision(), 1);
    assert_eq!(
        within(store.get("a", 0)).await.unwrap(),
        Some(created.clone())
    );

    let again = within(store.create("a", val("x"))).await;
    assert_eq!(again, Err(StoreError::AlreadyExists { key: "a".into() }));
    assert_eq!(
        store.current_revision(),
        1,
        "a failed create takes no revision"
    );

    let updated = within(store.update("a", val("2"), None)).await.unwrap();
    assert_eq!(
        (updated.create_revision, updated.mod_revision),
        (1, 2),
        "update keeps the create revision"
    );

    let stale = within(store.update("a", val("3"), Some(1))).await;
    assert_eq!(
        stale,
        Err(StoreError::Conflict {
            key: "a".into(),
            expected: 1,
            actual: 2
        })
    );
    let updated = within(store.update("a", val("3"), Some(2))).await.unwrap();
    assert_eq!(updated.mod_revision, 3);
    assert_eq!(updated.value, val("3"));

    let stale = within(store.delete("a", Some(2))).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { actual: 3, .. })),
        "{stale:?}"
    );
    let deleted = within(store.delete("a", Some(3))).await.unwrap();
    assert_eq!(deleted.revision, 4);
    assert_eq!(deleted.prev, updated);
    assert_eq!(within(store.get("a", 0)).await.unwrap(), None);
    assert_eq!(store.current_revision(), 4);

    let missing = within(store.update("a", val("x"), None)).await;
    assert_eq!(missing, Err(StoreError::NotFound { key: "a".into() }));
    let missing = within(store.update("a", val("x"), Some(3))).await;
    assert_eq!(missing, Err(StoreError::NotFound { key: "a".into() }));
    let missing = within(store.delete("a", None)).await;
    assert_eq!(missing, Err(StoreError::NotFound { key: "a".into() }));

    let recreated = within(store.create("a", val("new"))).await.unwrap();
    assert_eq!((recreated.create_revision, recreated.mod_revision), (5, 5));
    assert_eq!(within(store.put("a", val("put"))).await.unwrap(), 6);
    let kv = within(store.get("a", 0)).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.value),
        (5, 6, val("put"))
    );
}

/// A txn checks every compare against the current state and applies all ops at one revision.
pub async fn txn_compares_and_multiple_ops(store: Arc<dyn Store>) {
    let a = within(store.create("a", val("a1"))).await.unwrap();
    let c = within(store.create("c", val("c1"))).await.unwrap();

    // One failing compare fails the txn and reports every compared key.
    let failed = Txn::new()
        .when("a", Compare::Exists)
        .when("b", Compare::Exists)
        .when("c", Compare::ModRevision(c.mod_revision))
        .put("a", val("never"));
    let outcome = within(store.txn(failed)).await.unwrap();
    assert_eq!(
        outcome,
        TxnOutcome::Failed {
            current: vec![Some(a.clone()), None, Some(c.clone())]
        }
    );
    assert_eq!(store.current_revision(), 2);

    let txn = Txn::new()
        .when("a", Compare::ModRevision(a.mod_revision))
        .when("b", Compare::Absent)
        .put("a", val("a2"))
        .put("b", val("b1"))
        .delete("c")
        .delete("never-existed");
    let outcome = within(store.txn(txn)).await.unwrap();
    assert_eq!(
        outcome,
        TxnOutcome::Committed {
            revision: 3,
            prev: vec![Some(a.clone()), None, Some(c.clone()), None]
        }
    );
    let kvs = list_all(&*store, "", 0).await;
    let summary: Vec<_> = kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.create_revision, kv.mod_revision))
        .collect();
    assert_eq!(summary, vec![("a", 1, 3), ("b", 3, 3)]);

    // A txn that changes nothing takes no revision.
    let noop = Txn::new()
        .when("a", Compare::Exists)
        .delete("never-existed");
    let outcome = within(store.txn(noop)).await.unwrap();
    assert_eq!(
        outcome,
        TxnOutcome::Committed {
            revision: 3,
            prev: vec![None]
        }
    );
    let outcome = within(store.txn(Txn::new())).await.unwrap();
    assert!(outcome.is_committed());
    assert_eq!(store.current_revision(), 3);

    // Compares see the previous txn's writes.
    let outcome = within(store.txn(Txn::new().when("c", Compare::Absent).put("c", val("c2"))))
        .await
        .unwrap();
    assert!(outcome.is_committed());
    let c2 = within(store.get("c", 0)).await.unwrap().unwrap();
    assert_eq!((c2.create_revision, c2.mod_revision), (4, 4));
}

/// Empty keys and a key written twice in one txn are rejected without a write.
pub async fn txn_rejects_malformed(store: Arc<dyn Store>) {
    let twice = Txn::new().put("a", val("1")).delete("a");
    assert!(matches!(
        within(store.txn(twice)).await,
        Err(StoreError::InvalidArgument(_))
    ));
    let empty = Txn::new().put("", val("1"));
    assert!(matches!(
        within(store.txn(empty)).await,
        Err(StoreError::InvalidArgument(_))
    ));
    let empty = Txn::new().when("", Compare::Absent).put("a", val("1"));
    assert!(matches!(
        within(store.txn(empty)).await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert_eq!(store.current_revision(), 0);
}

/// Many writers update one key with the same expected revision: exactly one wins each round.
pub async fn concurrent_conflicting_updates_exactly_one_wins(store: Arc<dyn Store>) {
    let mut revision = within(store.create("contended", val("0")))
        .await
        .unwrap()
        .mod_revision;
    for round in 0..5 {
        let mut tasks = Vec::new();
        for writer in 0..32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .update(
                        "contended",
                        val(format!("{round}-{writer}")),
                        Some(revision),
                    )
                    .await
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match within(task).await.unwrap() {
                Ok(kv) => winners.push(kv),
                Err(StoreError::Conflict { actual, .. }) => assert!(actual > revision),
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one update wins");
        let winner = winners.pop().unwrap();
        assert_eq!(winner.mod_revision, revision + 1);
        assert_eq!(
            within(store.get("contended", 0)).await.unwrap(),
            Some(winner.clone())
        );
        revision = winner.mod_revision;
    }
}

/// Many writers create one key: exactly one wins, the others see `AlreadyExists`.
pub async fn concurrent_creates_exactly_one_wins(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.create("once", val(format!("{writer}"))).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match within(task).await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.current_revision(), 1);
}

/// Lists are sorted, bounded by prefix, paginated with limit and start_after.
pub async fn list_pagination_and_prefix(store: Arc<dyn Store>) {
    for key in ["b/3", "a/1", "b/1", "b/2", "c/1", "b/4", "b/5", "b", "b0"] {
        within(store.create(key, val(key))).await.unwrap();
    }
    within(store.delete("b/4", None)).await.unwrap();

    let keys = |kvs: &[KeyValue]| kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let all = list_all(&*store, "b/", 0).await;
    assert_eq!(keys(&all), ["b/1", "b/2", "b/3", "b/5"]);
    let everything = list_all(&*store, "", 0).await;
    assert_eq!(
        keys(&everything),
        ["a/1", "b", "b/1", "b/2", "b/3", "b/5", "b0", "c/1"]
    );

    let mut pages = Vec::new();
    let mut request = ListRequest {
        prefix: "b/".into(),
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = within(store.list(request.clone())).await.unwrap();
        assert_eq!(page.revision, store.current_revision());
        pages.push((keys(&page.kvs), page.more));
        if !page.more {
            break;
        }
        request.start_after = page.kvs.last().map(|kv| kv.key.clone());
        request.revision = page.revision;
    }
    assert_eq!(
        pages,
        vec![
            (vec!["b/1".to_string(), "b/2".into()], true),
            (vec!["b/3".to_string(), "b/5".into()], false),
        ]
    );

    let after = within(store.list(ListRequest {
        prefix: "b/".into(),
        start_after: Some("b/2".into()),
        limit: 1,
        revision: 0,
    }))
    .await
    .unwrap();
    assert_eq!(
        (keys(&after.kvs), after.more),
        (vec!["b/3".to_string()], true)
    );
    let before_prefix = within(store.list(ListRequest {
        prefix: "b/".into(),
        start_after: Some("a".into()),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(keys(&before_prefix.kvs), keys(&all));
    let past_prefix = within(store.list(ListRequest {
        prefix: "b/".into(),
        start_after: Some("b/5".into()),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert!(past_prefix.kvs.is_empty() && !past_prefix.more);
    assert!(list_all(&*store, "zzz", 0).await.is_empty());
}

/// Pages read at the first page's revision are one consistent snapshot, whatever is written
/// between them.
pub async fn list_pages_stable_while_writing(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create(&format!("pods/{i:03}"), val(format!("v0-{i}")))
                .await
        }));
    }
    for task in tasks {
        within(task).await.unwrap().unwrap();
    }
    let expected = list_all(&*store, "pods/", 0).await;
    assert_eq!(expected.len(), 100);

    let writers = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..5 {
                let mut tasks = Vec::new();
                for i in (round..100).step_by(7) {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        let key = format!("pods/{i:03}");
                        match i % 3 {
                            0 => store.delete(&key, None).await.map(|_| ()),
                            1 => store
                                .put(&key, val(format!("v{round}-{i}")))
                                .await
                                .map(|_| ()),
                            _ => store
                                .create(&format!("pods/{i:03}-new{round}"), val("new"))
                                .await
                                .map(|_| ()),
                        }
                    }));
                }
                for task in tasks {
                    within(task).await.expect("join").expect("write");
                }
            }
        })
    };

    let mut seen = Vec::new();
    let mut request = ListRequest {
        prefix: "pods/".into(),
        limit: 7,
        ..Default::default()
    };
    let mut snapshot = 0;
    loop {
        let page = within(store.list(request.clone())).await.unwrap();
        if snapshot == 0 {
            snapshot = page.revision;
        }
        assert_eq!(
            page.revision, snapshot,
            "every page reads the first page's revision"
        );
        seen.extend(page.kvs.iter().cloned());
        if !page.more {
            break;
        }
        request.revision = snapshot;
        request.start_after = page.kvs.last().map(|kv| kv.key.clone());
        tokio::task::yield_now().await;
    }
    within(writers).await.unwrap();
    let at_snapshot = list_all(&*store, "pods/", snapshot).await;
    assert_eq!(
        seen, at_snapshot,
        "pages equal one unpaginated list at the snapshot"
    );
    if snapshot == 100 {
        assert_eq!(seen, expected);
    }
    assert!(
        store.current_revision() > 100,
        "the writers wrote meanwhile"
    );
}

/// get and list read any past revision that is not compacted.
pub async fn get_and_list_at_old_revisions(store: Arc<dyn Store>) {
    let mut states: Vec<BTreeMap<String, Bytes>> = vec![BTreeMap::new()];
    let mut state = BTreeMap::new();
    for step in 0..30 {
        let key = format!("k/{}", step % 4);
        if step % 5 == 4 {
            within(store.delete(&key, None)).await.unwrap();
            state.remove(&key);
        } else {
            let value = val(format!("v{step}"));
            within(store.put(&key, value.clone())).await.unwrap();
            state.insert(key, value);
        }
        states.push(state.clone());
    }
    for (revision, expected) in states.iter().enumerate().skip(1) {
        let revision = revision as Revision;
        let listed: BTreeMap<_, _> = list_all(&*store, "k/", revision)
            .await
            .into_iter()
            .map(|kv| {
                assert!(kv.mod_revision <= revision);
                (kv.key, kv.value)
            })
            .collect();
        assert_eq!(&listed, expected, "state at revision {revision}");
        for i in 0..4 {
            let key = format!("k/{i}");
            let got = within(store.get(&key, revision)).await.unwrap();
            assert_eq!(got.map(|kv| kv.value), expected.get(&key).cloned());
        }
    }
}

/// Reads and watches at revisions that have not happened yet are refused.
pub async fn future_revisions_rejected(store: Arc<dyn Store>) {
    within(store.put("a", val("1"))).await.unwrap();
    let future = StoreError::FutureRevision {
        requested: 2,
        current: 1,
    };
    assert_eq!(within(store.get("a", 2)).await, Err(future.clone()));
    let list = within(store.list(ListRequest {
        revision: 2,
        ..Default::default()
    }))
    .await;
    assert_eq!(list, Err(future.clone()));
    assert!(matches!(
        within(store.watch("", 2)).await,
        Err(StoreError::FutureRevision { .. })
    ));
    assert!(matches!(
        within(store.compact(2)).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

/// A watch reports puts and deletes with their previous values, only under its prefix, a
/// multi-op txn's events at one revision in op order.
pub async fn watch_events_and_prev(store: Arc<dyn Store>) {
    within(store.create("other/x", val("x"))).await.unwrap();
    let mut watch = within(store.watch("pods/", store.current_revision()))
        .await
        .unwrap();

    let a1 = within(store.create("pods/a", val("1"))).await.unwrap();
    within(store.create("other/y", val("y"))).await.unwrap();
    let a2 = within(store.update("pods/a", val("2"), None))
        .await
        .unwrap();
    let txn = Txn::new()
        .put("pods/c", val("c"))
        .put("other/z", val("z"))
        .delete("pods/a")
        .put("pods/b", val("b"));
    let TxnOutcome::Committed { revision, .. } = within(store.txn(txn)).await.unwrap() else {
        panic!("txn without compares failed");
    };

    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kind, &event.kv, &event.prev),
        (EventKind::Put, &a1, &None)
    );
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kind, &event.kv, &event.prev),
        (EventKind::Put, &a2, &Some(a1.clone()))
    );
    let events = [
        next_event(&mut watch).await,
        next_event(&mut watch).await,
        next_event(&mut watch).await,
    ];
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.kv.key.as_str(), e.revision()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, "pods/c", revision),
            (EventKind::Delete, "pods/a", revision),
            (EventKind::Put, "pods/b", revision),
        ]
    );
    assert_eq!(
        events[1].kv.value,
        Bytes::new(),
        "a delete event has no value"
    );
    assert_eq!(
        events[1].prev,
        Some(a2),
        "a delete event carries the deleted value"
    );
    assert_eq!(events[0].kv.create_revision, revision);
}

/// A watch from the current revision first reads an empty log range, then waits. (Regression:
/// the memory engine's empty catch-up range panicked.)
pub async fn watch_at_head_waits_for_next_write(store: Arc<dyn Store>) {
    let mut watch = within(store.watch("", 0)).await.unwrap();
    let idle = tokio::time::timeout(Duration::from_millis(50), watch.next()).await;
    assert!(idle.is_err(), "nothing to report yet: {idle:?}");
    let revision = within(store.put("a", val("1"))).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), revision);

    let mut watch = within(store.watch("", revision)).await.unwrap();
    let idle = tokio::time::timeout(Duration::from_millis(50), watch.next()).await;
    assert!(idle.is_err(), "nothing to report yet: {idle:?}");
    let revision = within(store.put("a", val("2"))).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!((event.revision(), event.kv.value), (revision, val("2")));
}

/// Many concurrent writers: a watcher sees every committed write exactly once, in strictly
/// increasing revision order, matching what each writer was told.
pub async fn watch_ordering_under_concurrent_writers(store: Arc<dyn Store>) {
    const WRITERS: usize = 16;
    const WRITES: usize = 40;
    let start = store.current_revision();
    let mut watch = within(store.watch("w/", start)).await.unwrap();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..WRITES {
                let key = format!("w/{writer}/{}", i % 3);
                let value = val(format!("{writer}-{i}"));
                let revision = store.put(&key, value.clone()).await.expect("put");
                acked.push((revision, key, value));
            }
            acked
        }));
    }
    let mut acked = BTreeMap::new();
    for task in tasks {
        for (revision, key, value) in within(task).await.unwrap() {
            assert!(
                acked.insert(revision, (key, value)).is_none(),
                "revision given twice"
            );
        }
    }
    let last = *acked.keys().last().unwrap();
    assert_eq!(acked.len(), WRITERS * WRITES);
    assert_eq!(
        last - start,
        (WRITERS * WRITES) as Revision,
        "no revision skipped"
    );

    let events = events_through(&mut watch, last).await;
    assert_eq!(events.len(), acked.len(), "every write seen exactly once");
    let mut previous = start;
    let mut latest: HashMap<String, KeyValue> = HashMap::new();
    for event in events {
        assert_eq!(event.revision(), previous + 1, "strictly ordered, no gap");
        previous = event.revision();
        let (key, value) = &acked[&event.revision()];
        assert_eq!((&event.kv.key, &event.kv.value), (key, value));
        assert_eq!(
            event.prev,
            latest.get(key).cloned(),
            "prev is the previous write"
        );
        latest.insert(key.clone(), event.kv);
    }
}

/// A watch from an old revision replays the log, then follows live writes, with no gap and
/// no duplicate at the hand-off, even while writers are busy.
pub async fn watch_catch_up_then_live(store: Arc<dyn Store>) {
    async fn write_many(store: &Arc<dyn Store>, from: usize, count: usize) -> Revision {
        let mut tasks = Vec::new();
        for writer in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut last = 0;
                for i in (from + writer..from + count).step_by(16) {
                    last = store
                        .put(&format!("h/{}", i % 50), val(format!("{i}")))
                        .await
                        .expect("put");
                }
                last
            }));
        }
        let mut last = 0;
        for task in tasks {
            last = last.max(within(task).await.unwrap());
        }
        last
    }

    // More history than one catch-up chunk.
    let history_end = write_many(&store, 0, 1300).await;
    assert_eq!(history_end, 1300);
    for after in [0, 650, 1299] {
        let mut watch = within(store.watch("h/", after)).await.unwrap();
        let live = {
            let store = store.clone();
            tokio::spawn(async move { write_many(&store, 0, 64).await })
        };
        let first = next_event(&mut watch).await;
        assert_eq!(
            first.revision(),
            after + 1,
            "watch starts right after `after`"
        );
        let live_end = within(live).await.unwrap();
        let rest = events_through(&mut watch, live_end).await;
        let mut expected = after + 1;
        for event in std::iter::once(first).chain(rest) {
            assert_eq!(event.revision(), expected, "no gap, no duplicate");
            expected += 1;
        }
        assert_eq!(expected, live_end + 1);
    }
}

/// Watches started while writers never pause, from the head and from a little behind it:
/// the hand-off from log to live happens mid-stream, and must lose or repeat nothing.
pub async fn watch_hand_off_under_continuous_writes(store: Arc<dyn Store>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (store, stop) = (store.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .put(&format!("c/{writer}"), val(format!("{i}")))
                    .await
                    .expect("put");
                i += 1;
            }
        }));
    }
    within(async {
        while store.current_revision() < 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    for attempt in 0..24 {
        let after = store.current_revision() - (attempt % 6) * 7;
        let mut watch = within(store.watch("c/", after)).await.unwrap();
        for expected in after + 1..=after + 40 {
            let event = next_event(&mut watch).await;
            assert_eq!(
                event.revision(),
                expected,
                "watch after {after}: no gap, no duplicate"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        within(writer).await.unwrap();
    }
}

/// After compaction, reads and watches below the compacted revision are `Expired`; at and
/// after it, everything is as before.
pub async fn compaction_expires_old_revisions(store: Arc<dyn Store>) {
    within(store.put("a", val("a1"))).await.unwrap(); // 1
    within(store.put("b", val("b1"))).await.unwrap(); // 2
    within(store.put("a", val("a2"))).await.unwrap(); // 3
    within(store.delete("b", None)).await.unwrap(); // 4
    within(store.put("c", val("c1"))).await.unwrap(); // 5
    within(store.put("a", val("a3"))).await.unwrap(); // 6
    let before: Vec<_> = list_all(&*store, "", 5).await;

    within(store.compact(5)).await.unwrap();
    assert_eq!(store.compacted_revision(), 5);
    let expired = StoreError::Expired {
        requested: 4,
        compacted: 5,
    };
    assert_eq!(within(store.get("a", 4)).await, Err(expired.clone()));
    let list = within(store.list(ListRequest {
        revision: 4,
        ..Default::default()
    }))
    .await;
    assert_eq!(list, Err(expired.clone()));
    assert!(matches!(
        within(store.watch("", 4)).await,
        Err(StoreError::Expired {
            requested: 4,
            compacted: 5
        })
    ));
    assert!(matches!(
        within(store.watch("", 0)).await,
        Err(StoreError::Expired { .. })
    ));

    assert_eq!(
        list_all(&*store, "", 5).await,
        before,
        "the state at 5 survives"
    );
    assert_eq!(
        within(store.get("a", 5)).await.unwrap().unwrap().value,
        val("a2")
    );
    assert_eq!(within(store.get("b", 5)).await.unwrap(), None);
    assert_eq!(
        within(store.get("a", 0)).await.unwrap().unwrap().value,
        val("a3")
    );

    let mut watch = within(store.watch("", 5)).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!((event.revision(), event.kv.value.clone()), (6, val("a3")));
    assert_eq!(event.prev.map(|kv| kv.value), Some(val("a2")));

    // Compacting again at or below is a no-op; later compactions keep going.
    within(store.compact(3)).await.unwrap();
    assert_eq!(store.compacted_revision(), 5);
    within(store.delete("c", None)).await.unwrap(); // 7
    within(store.put("b", val("b2"))).await.unwrap(); // 8
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, event.revision()), (EventKind::Delete, 7));
    within(store.compact(8)).await.unwrap();
    let kvs = list_all(&*store, "", 8).await;
    let summary: Vec<_> = kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision))
        .collect();
    assert_eq!(summary, vec![("a", 6), ("b", 8)]);
    assert_eq!(within(store.get("c", 0)).await.unwrap(), None);
    // The live watch is not disturbed by compaction.
    within(store.put("c", val("c2"))).await.unwrap(); // 9
    let event = next_event(&mut watch).await;
    assert_eq!((event.revision(), event.prev), (8, None));
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.revision(), event.prev, event.kv.create_revision),
        (9, None, 9)
    );
}

/// A live watcher that stops reading falls more than the buffer behind: its stream ends with
/// `WatchLagged`, and watching again from the revision it names misses nothing. The store
/// must have a watch buffer of [`SMALL_WATCH_BUFFER`].
pub async fn slow_watcher_is_cut_off_and_resumes(store: Arc<dyn Store>) {
    let mut watch = within(store.watch("", 0)).await.unwrap();
    within(store.put("k", val("0"))).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), 1);

    let writes = SMALL_WATCH_BUFFER as Revision * 4;
    for i in 1..=writes {
        within(store.put("k", val(format!("{i}")))).await.unwrap();
    }
    let mut delivered = 1;
    let resume_after = loop {
        match within(watch.next())
            .await
            .expect("stream ends with an error")
        {
            Ok(event) => {
                assert_eq!(event.revision(), delivered + 1);
                delivered = event.revision();
            }
            Err(StoreError::WatchLagged { resume_after }) => break resume_after,
            Err(other) => panic!("unexpected error {other}"),
        }
    };
    assert!(
        within(watch.next()).await.is_none(),
        "the stream ends after the error"
    );
    assert_eq!(
        resume_after, delivered,
        "resume after the last delivered revision"
    );

    let mut watch = within(store.watch("", resume_after)).await.unwrap();
    let rest = events_through(&mut watch, writes + 1).await;
    let revisions: Vec<_> = rest.iter().map(|e| e.revision()).collect();
    assert_eq!(
        revisions,
        (resume_after + 1..=writes + 1).collect::<Vec<_>>()
    );
}
