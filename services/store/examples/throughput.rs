//! Durable write throughput of the embedded engine with many concurrent clients:
//! `cargo run -p navarch-store --release --example throughput -- [clients] [seconds] [dir]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use navarch_store::{StoreExt, open_embedded};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = match args.next() {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            std::env::temp_dir().join(format!("navarch-store-throughput-{}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&dir).expect("create the store directory");
    let store = open_embedded(&dir).expect("open the store");
    let writes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let value = Bytes::from(vec![b'x'; 1024]);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (store, writes, value) = (store.clone(), writes.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("bench/{client}");
            let mut revision = store
                .create(&key, value.clone())
                .await
                .expect("create")
                .mod_revision;
            while Instant::now() < deadline {
                revision = store
                    .update(&key, value.clone(), Some(revision))
                    .await
                    .expect("update")
                    .mod_revision;
                writes.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let total = writes.load(Ordering::Relaxed);
    println!(
        "{clients} clients, {seconds}s, 1 KiB values: {total} durable writes, {:.0} writes/s",
        total as f64 / seconds as f64
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
