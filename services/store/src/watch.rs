//! Watch streams shared by the engines: catch-up from the engine's event log, then a gap-free,
//! duplicate-free hand-off to the live broadcast that the engine's writer feeds after each
//! durable commit.
//!
//! Slow watchers: the live broadcast keeps the last `buffer` revisions. A watcher that falls
//! further behind than that gets [`StoreError::WatchLagged`] as its last item, carrying the
//! revision up to which it has seen everything; it watches again with that as `after`.
//! Catch-up from the log is read in chunks and needs no buffer, so a watcher that starts far
//! behind does not lag.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::stream;
use tokio::sync::broadcast;

use crate::{Revision, StoreError, WatchEvent, WatchStream};

/// How many revisions one catch-up read covers.
const CATCH_UP_CHUNK: i64 = 512;

/// The changes of one revision, in op order.
#[derive(Debug)]
pub(crate) struct RevisionEvents {
    pub revision: Revision,
    pub events: Vec<WatchEvent>,
}

/// Revisions read from an engine's log.
pub(crate) struct LogChunk {
    /// Revisions in order, each with only the events under the requested prefix.
    pub revisions: Vec<RevisionEvents>,
    /// The last revision this chunk covers; every change up to it is in `revisions`.
    pub scanned_to: Revision,
    /// The current revision of the snapshot the chunk was read from.
    pub head: Revision,
}

/// What an engine gives the watch machinery.
pub(crate) trait LogSource: Send + Sync + 'static {
    /// Reads from one consistent snapshot the changes under `prefix` in revisions
    /// `after + 1 ..= after + max`, capped at the snapshot's head. `Expired` if `after` is
    /// below the snapshot's compacted revision. May block.
    fn read_log(&self, prefix: &str, after: Revision, max: i64) -> Result<LogChunk, StoreError>;

    /// A receiver of every revision committed after this call; `None` once the store is closed.
    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<RevisionEvents>>>;

    /// The latest committed revision.
    fn current_revision(&self) -> Revision;
}

/// A watch stream of everything under `prefix` after `after`.
pub(crate) fn watch_stream<S: LogSource>(
    source: Arc<S>,
    prefix: &str,
    after: Revision,
) -> WatchStream {
    let state = WatchState {
        source,
        prefix: prefix.to_owned(),
        pos: after,
        live: None,
        pending: VecDeque::new(),
        done: false,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    }))
}

struct WatchState<S> {
    source: Arc<S>,
    prefix: String,
    /// Every change up to this revision has been queued or delivered.
    pos: Revision,
    /// Live receiver; subscribed shortly before catch-up ends.
    live: Option<Live>,
    pending: VecDeque<WatchEvent>,
    done: bool,
}

struct Live {
    rx: broadcast::Receiver<Arc<RevisionEvents>>,
    /// Whether catch-up has reached a snapshot taken after subscribing, so every later
    /// revision arrives through `rx`.
    caught_up: bool,
}

impl<S: LogSource> WatchState<S> {
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Err(error) = self.fill().await {
                self.done = true;
                return Some(Err(error));
            }
        }
    }

    /// Queues the next revisions' events, from the log or the broadcast.
    async fn fill(&mut self) -> Result<(), StoreError> {
        match &mut self.live {
            Some(live) if live.caught_up => {
                let changes = match live.rx.recv().await {
                    Ok(changes) => changes,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            code = "store.watch_lagged",
                            prefix = %self.prefix,
                            resume_after = self.pos,
                            missed,
                            "watcher fell behind; ending its stream"
                        );
                        return Err(StoreError::WatchLagged {
                            resume_after: self.pos,
                        });
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(StoreError::Unavailable("store closed".into()));
                    }
                };
                if changes.revision <= self.pos {
                    return Ok(()); // already delivered by catch-up
                }
                if changes.revision != self.pos + 1 {
                    return Err(StoreError::Internal(format!(
                        "watch gap: after revision {} came {}",
                        self.pos, changes.revision
                    )));
                }
                self.pos = changes.revision;
                let prefix = &self.prefix;
                self.pending.extend(
                    changes
                        .events
                        .iter()
                        .filter(|event| event.kv.key.starts_with(prefix.as_str()))
                        .cloned(),
                );
                Ok(())
            }
            _ => self.catch_up().await,
        }
    }

    /// Reads the next chunk of the log. Subscribes to the live broadcast before the read that
    /// is expected to reach the head: anything committed after that read's snapshot is then
    /// surely broadcast to us, and anything before it is in the snapshot.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        if self.live.is_none() && self.source.current_revision() - self.pos <= CATCH_UP_CHUNK {
            let rx = self
                .source
                .subscribe()
                .ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
            self.live = Some(Live {
                rx,
                caught_up: false,
            });
        }
        let source = self.source.clone();
        let prefix = self.prefix.clone();
        let after = self.pos;
        let chunk =
            tokio::task::spawn_blocking(move || source.read_log(&prefix, after, CATCH_UP_CHUNK))
                .await
                .map_err(|error| {
                    StoreError::Internal(format!("watch catch-up task failed: {error}"))
                })??;
        for changes in chunk.revisions {
            self.pending.extend(changes.events);
        }
        self.pos = chunk.scanned_to;
        if let Some(live) = &mut self.live {
            live.caught_up = chunk.scanned_to >= chunk.head;
        }
        Ok(())
    }
}

/// Checks a watch's start: `after` must lie between the compacted and the current revision.
pub(crate) fn check_after(
    after: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<(), StoreError> {
    if after < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "negative revision {after}"
        )));
    }
    if after < compacted {
        return Err(StoreError::Expired {
            requested: after,
            compacted,
        });
    }
    if after > current {
        return Err(StoreError::FutureRevision {
            requested: after,
            current,
        });
    }
    Ok(())
}
