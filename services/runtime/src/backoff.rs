//! Back-off and rate limiting: the reconnect back-off of informers and leader election, and the
//! retry rate limiters of the work queue (client-go's `workqueue` rate limiters).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Exponential back-off with jitter for reconnecting (client-go's reflector uses 800 ms → 30 s).
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Each delay is stretched by a random factor in `[1, 1 + jitter]`.
    pub jitter: f64,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: 0.5,
            current: initial,
        }
    }

    /// The next delay; each call doubles the base up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let factor = 1.0 + rand::random::<f64>() * self.jitter;
        base.mul_f64(factor)
            .min(self.max.mul_f64(1.0 + self.jitter))
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(800), Duration::from_secs(30))
    }
}

/// Decides how long a key waits before it is retried.
pub trait RateLimiter<K>: Send + Sync {
    /// The delay for the next retry of `key` (each call counts as one more failure).
    fn when(&self, key: &K) -> Duration;
    /// Stops tracking `key` (it succeeded or was given up).
    fn forget(&self, key: &K);
    /// How many times `key` has been retried since it was last forgotten.
    fn retries(&self, key: &K) -> u32;
}

/// Per-key exponential back-off: `base * 2^failures`, capped at `max`.
pub struct ItemExponentialBackoff<K> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K> ItemExponentialBackoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

/// `base * 2^exp`, capped at `max` (and safe from overflow).
fn exponential(base: Duration, exp: u32, max: Duration) -> Duration {
    if exp >= 32 {
        return max;
    }
    base.checked_mul(1u32 << exp).map_or(max, |d| d.min(max))
}

impl<K: Hash + Eq + Clone + Send + Sync> RateLimiter<K> for ItemExponentialBackoff<K> {
    fn when(&self, key: &K) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.clone()).or_insert(0);
        let exp = *n;
        *n = n.saturating_add(1);
        exponential(self.base, exp, self.max)
    }

    fn forget(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn retries(&self, key: &K) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

/// An overall token bucket (`qps` tokens a second, up to `burst`), shared by all keys:
/// golang's `rate.Limiter.Reserve().Delay()`.
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Option<Instant>)>,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            qps,
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), None)),
        }
    }

    /// Reserves one token at `now`; returns how long the caller must wait for it.
    pub fn reserve_at(&self, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        if let Some(prev) = *last
            && now > prev
        {
            *tokens = (*tokens + now.duration_since(prev).as_secs_f64() * self.qps).min(self.burst);
        }
        if last.is_none_or(|prev| now > prev) {
            *last = Some(now);
        }
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.qps)
        }
    }
}

impl<K> RateLimiter<K> for TokenBucket {
    fn when(&self, _key: &K) -> Duration {
        self.reserve_at(Instant::now())
    }
    fn forget(&self, _key: &K) {}
    fn retries(&self, _key: &K) -> u32 {
        0
    }
}

/// The longest delay of several limiters (client-go's `MaxOfRateLimiter`).
pub struct MaxOf<K>(pub Vec<Box<dyn RateLimiter<K>>>);

impl<K> RateLimiter<K> for MaxOf<K> {
    fn when(&self, key: &K) -> Duration {
        self.0.iter().map(|l| l.when(key)).max().unwrap_or_default()
    }
    fn forget(&self, key: &K) {
        for l in &self.0 {
            l.forget(key);
        }
    }
    fn retries(&self, key: &K) -> u32 {
        self.0.iter().map(|l| l.retries(key)).max().unwrap_or(0)
    }
}

/// client-go's `DefaultControllerRateLimiter`: per key 5 ms doubling to 1000 s, and overall
/// 10 retries a second with bursts of 100.
pub fn default_rate_limiter<K: Hash + Eq + Clone + Send + Sync + 'static>() -> MaxOf<K> {
    MaxOf(vec![
        Box::new(ItemExponentialBackoff::new(
            Duration::from_millis(5),
            Duration::from_secs(1000),
        )),
        Box::new(TokenBucket::new(10.0, 100)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_key_backoff_doubles_to_its_cap() {
        let ms = Duration::from_millis;
        let cases: &[(u32, Duration)] = &[
            (0, ms(5)),
            (1, ms(10)),
            (2, ms(20)),
            (3, ms(40)),
            (10, ms(5120)),
            (17, ms(655_360)),
            (18, Duration::from_secs(1000)),
            (40, Duration::from_secs(1000)),
            (100, Duration::from_secs(1000)),
        ];
        for &(exp, want) in cases {
            assert_eq!(
                exponential(ms(5), exp, Duration::from_secs(1000)),
                want,
                "exp {exp}"
            );
        }

        let limiter = ItemExponentialBackoff::new(ms(5), Duration::from_secs(1000));
        let seq: Vec<Duration> = (0..5).map(|_| limiter.when(&"a")).collect();
        assert_eq!(seq, [ms(5), ms(10), ms(20), ms(40), ms(80)]);
        assert_eq!(limiter.retries(&"a"), 5);
        assert_eq!(limiter.when(&"b"), ms(5), "keys back off independently");
        limiter.forget(&"a");
        assert_eq!(limiter.retries(&"a"), 0);
        assert_eq!(limiter.when(&"a"), ms(5), "forget resets the key");
    }

    #[test]
    fn token_bucket_allows_its_burst_then_paces() {
        let bucket = TokenBucket::new(10.0, 3);
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..5).map(|_| bucket.reserve_at(t0)).collect();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(
            delays.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            [0, 0, 0, 100, 200]
        );
        // One second later, 10 tokens have refilled the debt of 2 and the burst of 3 (capped).
        let later = t0 + Duration::from_secs(1);
        assert_eq!(bucket.reserve_at(later), Duration::ZERO);
    }

    #[test]
    fn default_limiter_takes_the_longest_delay() {
        let limiter = default_rate_limiter::<String>();
        let key = "k".to_string();
        // The first 100 retries are within the bucket's burst: the per-key delay wins.
        assert_eq!(limiter.when(&key), Duration::from_millis(5));
        assert_eq!(limiter.when(&key), Duration::from_millis(10));
        assert_eq!(limiter.retries(&key), 2);
        limiter.forget(&key);
        assert_eq!(limiter.retries(&key), 0);
        // Past the burst, the overall bucket paces keys that would otherwise retry at once.
        let others: Vec<Duration> = (0..200).map(|i| limiter.when(&format!("o{i}"))).collect();
        assert!(others[..90].iter().all(|d| *d == Duration::from_millis(5)));
        assert!(others[150] > Duration::from_secs(4), "{:?}", others[150]);
    }

    #[test]
    fn reconnect_backoff_grows_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        b.jitter = 0.0;
        let seq: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seq, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
