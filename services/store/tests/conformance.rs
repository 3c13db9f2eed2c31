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
