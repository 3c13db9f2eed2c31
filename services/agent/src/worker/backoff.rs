//! Kubernetes' restart back-off (`flowcontrol.Backoff` as the kubelet uses it): the first
//! restart is immediate, then 10 s, doubling up to 5 min; an entry untouched for twice the
//! maximum is forgotten. Times are wall-clock milliseconds so the entries survive a restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The policy: initial delay and cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// The kubelet's: 10 s doubling to 300 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// One container's back-off, persisted with the pod's record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffEntry {
    /// Current delay; 0 = no entry.
    pub delay_ms: u64,
    /// When the delay last grew (unix ms).
    pub last_update_ms: i64,
}

impl BackoffPolicy {
    fn expired(&self, entry: &BackoffEntry, now_ms: i64) -> bool {
        entry.delay_ms == 0 || now_ms - entry.last_update_ms > 2 * self.max.as_millis() as i64
    }

    /// Whether an event at `event_ms` (the container's exit) is still inside the back-off
    /// window at `now_ms`.
    pub fn in_backoff_since(&self, entry: &BackoffEntry, event_ms: i64, now_ms: i64) -> bool {
        if self.expired(entry, now_ms) {
            return false;
        }
        now_ms - event_ms < entry.delay_ms as i64
    }

    /// When the back-off window that started at `event_ms` ends.
    pub fn window_end_ms(&self, entry: &BackoffEntry, event_ms: i64) -> i64 {
        event_ms + entry.delay_ms as i64
    }

    /// Records a restart at `now_ms`: starts at the initial delay or doubles (capped).
    pub fn next(&self, entry: &mut BackoffEntry, now_ms: i64) {
        let max = self.max.as_millis() as u64;
        entry.delay_ms = if self.expired(entry, now_ms) {
            (self.initial.as_millis() as u64).min(max)
        } else {
            entry.delay_ms.saturating_mul(2).min(max)
        };
        entry.last_update_ms = now_ms;
    }
}

/// Current wall-clock time in unix milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// An RFC 3339 time as unix milliseconds (0 when unparsable).
pub fn rfc3339_ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    #[test]
    fn first_restart_is_immediate_then_doubles_to_the_cap() {
        let p = BackoffPolicy::default();
        let mut e = BackoffEntry::default();
        // First exit: no entry, restart at once.
        assert!(!p.in_backoff_since(&e, 0, 0));
        p.next(&mut e, 0);
        let mut delays = vec![e.delay_ms / 1000];
        let mut t = 0;
        for _ in 0..8 {
            // The container exits right after each restart: in back-off until the delay passed.
            let exit = t;
            assert!(p.in_backoff_since(&e, exit, exit + 1));
            assert!(p.in_backoff_since(&e, exit, exit + e.delay_ms as i64 - 1));
            assert!(!p.in_backoff_since(&e, exit, exit + e.delay_ms as i64));
            t = exit + e.delay_ms as i64;
            p.next(&mut e, t);
            delays.push(e.delay_ms / 1000);
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300, 300]);
    }

    #[test]
    fn forgotten_after_twice_the_max() {
        let p = BackoffPolicy::default();
        let mut e = BackoffEntry::default();
        p.next(&mut e, 0);
        p.next(&mut e, 10 * S);
        assert_eq!(e.delay_ms, 20_000);
        let later = 10 * S + 600 * S + 1;
        assert!(!p.in_backoff_since(&e, later - 1, later));
        p.next(&mut e, later);
        assert_eq!(e.delay_ms, 10_000, "starts over");
    }

    #[test]
    fn shortened_policy_for_tests() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        let mut e = BackoffEntry::default();
        let mut seen = vec![];
        for i in 0..5 {
            p.next(&mut e, i * 100);
            seen.push(e.delay_ms);
        }
        assert_eq!(seen, vec![100, 200, 400, 400, 400]);
    }

    #[test]
    fn times_parse() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:10Z"), 10_000);
        assert_eq!(rfc3339_ms("garbage"), 0);
    }
}
