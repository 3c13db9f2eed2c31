//! The conformance suite against every engine.

use std::sync::Arc;

use navarch_store::{EmbeddedOptions, MemoryStore, Store};

mod memory {
    use super::*;

    navarch_store::conformance_tests!(|watch_buffer: Option<usize>| {
        let store = match watch_buffer {
            Some(buffer) => MemoryStore::with_watch_buffer(buffer),
            None => MemoryStore::new(),
        };
        (Arc::new(store) as Arc<dyn Store>, ())
    });
}

mod embedded {
    use super::*;

    navarch_store::conformance_tests!(|watch_buffer: Option<usize>| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = EmbeddedOptions::default();
        if let Some(buffer) = watch_buffer {
            options.watch_buffer = buffer;
        }
        let store = navarch_store::open_embedded_with(dir.path(), options).expect("open store");
        (store, dir)
    });
}

/// The distributed engine over the in-memory transactional backend: the same semantics as
/// over TiKV, without a server.
mod distributed_memory {
    use super::*;
    use navarch_store::{DistributedOptions, DistributedStore, MemoryKv};

    navarch_store::conformance_tests!(|watch_buffer: Option<usize>| {
        let mut options = DistributedOptions::default();
        if let Some(buffer) = watch_buffer {
            options.watch_buffer = buffer;
        }
        let store = DistributedStore::new(Arc::new(MemoryKv::new()), options).expect("start");
        (Arc::new(store) as Arc<dyn Store>, ())
    });
}

/// The distributed engine on a real TiKV cluster. Ignored unless asked for; run with
/// `NAVARCH_TIKV_PD_ENDPOINTS=pd1:2379 cargo nextest run -p navarch-store --features tikv
/// --run-ignored all distributed_tikv` (`NAVARCH_TIKV_PD` works too). Each test uses a fresh
/// `--store-prefix`, so the cluster needs no cleaning between runs.
#[cfg(feature = "tikv")]
mod distributed_tikv {
    use super::*;
    use navarch_store::distributed::tikv::TikvKv;
    use navarch_store::{DistributedOptions, DistributedStore};

    fn endpoints() -> Option<Vec<String>> {
        let value = std::env::var("NAVARCH_TIKV_PD_ENDPOINTS")
            .or_else(|_| std::env::var("NAVARCH_TIKV_PD"))
            .ok()?;
        Some(value.split(',').map(|s| s.trim().to_owned()).collect())
    }

    fn open(watch_buffer: Option<usize>, name: &str) -> Option<Arc<dyn Store>> {
        let Some(endpoints) = endpoints() else {
            println!("skipped: set NAVARCH_TIKV_PD_ENDPOINTS=host:2379 to run against TiKV");
            return None;
        };
        let kv = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(TikvKv::connect(endpoints))
        })
        .expect("connect to TiKV");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mut options = DistributedOptions {
            prefix: format!("conformance-{name}-{nanos}"),
            ..Default::default()
        };
        if let Some(buffer) = watch_buffer {
            options.watch_buffer = buffer;
        }
        Some(Arc::new(
            DistributedStore::new(Arc::new(kv), options).expect("start"),
        ))
    }

    macro_rules! tikv_conformance {
        ($($name:ident $(= $buffer:expr)?),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs NAVARCH_TIKV_PD_ENDPOINTS"]
                async fn $name() {
                    #[allow(unused_mut, unused_assignments)]
                    let mut buffer = None;
                    $(buffer = Some($buffer);)?
                    if let Some(store) = open(buffer, stringify!($name)) {
                        navarch_store::conformance::run(
                            navarch_store::conformance::$name(store),
                        )
                        .await;
                    }
                }
            )*
        };
    }

    tikv_conformance!(
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
        slow_watcher_is_cut_off_and_resumes = navarch_store::conformance::SMALL_WATCH_BUFFER,
    );
}
