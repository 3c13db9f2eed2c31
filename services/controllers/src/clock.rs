//! The time the loops read: the system clock, or a fake one tests move by hand (CronJob
//! schedules, Job deadlines and TTLs, node heartbeats, minReadySeconds).

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Changes whenever the time jumps (fake clocks); `None` for clocks that just run.
    fn jumps(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until moved; every move wakes the loops that read time.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<Timestamp>,
    jumps: watch::Sender<u64>,
}

impl FakeClock {
    pub fn new(now: Timestamp) -> Self {
        Self {
            now: Mutex::new(now),
            jumps: watch::channel(0).0,
        }
    }

    /// Sets the time.
    pub fn set(&self, now: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = now;
        self.jumps.send_modify(|n| *n += 1);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let now = self.now();
        self.set(now + jiff::SignedDuration::try_from(by).unwrap_or_default());
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn jumps(&self) -> Option<watch::Receiver<u64>> {
        Some(self.jumps.subscribe())
    }
}
