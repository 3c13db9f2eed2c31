//! Expectations (Kubernetes' `ControllerExpectations`): a controller that just asked for N
//! creations or deletions records that, and does not act on the same owner again until its
//! informer has observed them — so a ReplicaSet whose creates are still in flight does not
//! create twice. An expectation that is never observed stops blocking after 5 minutes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an unobserved expectation blocks its owner (Kubernetes' `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: i64,
    /// The keys of objects whose deletion is expected (when tracked by key).
    deleting: HashSet<String>,
    set_at: Instant,
}

/// Pending creations and deletions per owner key (`namespace/name` of the controller object).
#[derive(Debug)]
pub struct Expectations {
    ttl: Duration,
    owners: Mutex<HashMap<String, Expectation>>,
}

impl Default for Expectations {
    fn default() -> Self {
        Self::new()
    }
}

impl Expectations {
    pub fn new() -> Self {
        Self::with_timeout(EXPECTATIONS_TIMEOUT)
    }

    /// Expectations that expire after `ttl` instead of 5 minutes (tests).
    pub fn with_timeout(ttl: Duration) -> Self {
        Self {
            ttl,
            owners: Mutex::new(HashMap::new()),
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectation>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces `owner`'s expectations: `adds` creations and `deletes` deletions to observe.
    pub fn expect(&self, owner: &str, adds: i64, deletes: i64) {
        self.owners().insert(
            owner.to_string(),
            Expectation {
                adds,
                deletes,
                deleting: HashSet::new(),
                set_at: Instant::now(),
            },
        );
    }

    /// Expects `n` creations (and no deletions).
    pub fn expect_creations(&self, owner: &str, n: i64) {
        self.expect(owner, n, 0);
    }

    /// Expects `n` deletions (and no creations).
    pub fn expect_deletions(&self, owner: &str, n: i64) {
        self.expect(owner, 0, n);
    }

    /// Expects the deletion of these objects (by key); only their deletions count, so a
    /// deletion someone else made is not mistaken for ours (`UIDTrackingControllerExpectations`).
    pub fn expect_deletions_of(&self, owner: &str, keys: impl IntoIterator<Item = String>) {
        let deleting: HashSet<String> = keys.into_iter().collect();
        self.owners().insert(
            owner.to_string(),
            Expectation {
                adds: 0,
                deletes: deleting.len() as i64,
                deleting,
                set_at: Instant::now(),
            },
        );
    }

    /// Adds to existing expectations (creating them if absent).
    pub fn raise(&self, owner: &str, adds: i64, deletes: i64) {
        let mut owners = self.owners();
        let e = owners
            .entry(owner.to_string())
            .or_insert_with(|| Expectation {
                adds: 0,
                deletes: 0,
                deleting: HashSet::new(),
                set_at: Instant::now(),
            });
        e.adds += adds;
        e.deletes += deletes;
    }

    /// An informer saw one of `owner`'s creations (or a create call failed, so it never will).
    pub fn creation_observed(&self, owner: &str) {
        if let Some(e) = self.owners().get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// An informer saw one of `owner`'s deletions (or a delete call failed).
    pub fn deletion_observed(&self, owner: &str) {
        if let Some(e) = self.owners().get_mut(owner) {
            e.deletes -= 1;
        }
    }

    /// An informer saw the object `key` deleted: counts only if its deletion was expected with
    /// [`Expectations::expect_deletions_of`].
    pub fn deletion_of_observed(&self, owner: &str, key: &str) {
        if let Some(e) = self.owners().get_mut(owner)
            && e.deleting.remove(key)
        {
            e.deletes -= 1;
        }
    }

    /// Whether `owner` may act: nothing expected, everything observed, or the expectation is
    /// older than the timeout.
    pub fn satisfied(&self, owner: &str) -> bool {
        match self.owners().get(owner) {
            None => true,
            Some(e) if e.adds <= 0 && e.deletes <= 0 => true,
            Some(e) => {
                let expired = e.set_at.elapsed() > self.ttl;
                if expired {
                    tracing::info!(
                        owner,
                        adds = e.adds,
                        deletes = e.deletes,
                        "expectations expired"
                    );
                }
                expired
            }
        }
    }

    /// What is still expected: `(adds, deletes)`.
    pub fn pending(&self, owner: &str) -> Option<(i64, i64)> {
        self.owners().get(owner).map(|e| (e.adds, e.deletes))
    }

    /// Forgets `owner` (it was deleted).
    pub fn forget(&self, owner: &str) {
        self.owners().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_expectations() {
        // (setup, observations, satisfied afterwards)
        type Step = fn(&Expectations);
        let cases: &[(&str, Step, bool)] = &[
            ("nothing recorded", |_| {}, true),
            ("creations pending", |e| e.expect_creations("rs", 2), false),
            (
                "creations partly observed",
                |e| {
                    e.expect_creations("rs", 2);
                    e.creation_observed("rs");
                },
                false,
            ),
            (
                "creations all observed",
                |e| {
                    e.expect_creations("rs", 2);
                    e.creation_observed("rs");
                    e.creation_observed("rs");
                },
                true,
            ),
            (
                "raised after set",
                |e| {
                    e.expect_creations("rs", 1);
                    e.creation_observed("rs");
                    e.raise("rs", 0, 1);
                },
                false,
            ),
            (
                "deletions by key ignore other deletions",
                |e| {
                    e.expect_deletions_of("rs", ["ns/a".to_string(), "ns/b".to_string()]);
                    e.deletion_of_observed("rs", "ns/a");
                    e.deletion_of_observed("rs", "ns/zzz");
                },
                false,
            ),
            (
                "deletions by key all observed",
                |e| {
                    e.expect_deletions_of("rs", ["ns/a".to_string(), "ns/b".to_string()]);
                    e.deletion_of_observed("rs", "ns/a");
                    e.deletion_of_observed("rs", "ns/b");
                    e.deletion_of_observed("rs", "ns/b");
                },
                true,
            ),
            (
                "counted deletions",
                |e| {
                    e.expect_deletions("rs", 1);
                    e.deletion_observed("rs");
                },
                true,
            ),
            (
                "forgotten",
                |e| {
                    e.expect_creations("rs", 5);
                    e.forget("rs");
                },
                true,
            ),
        ];
        for (name, setup, want) in cases {
            let e = Expectations::new();
            setup(&e);
            assert_eq!(e.satisfied("rs"), *want, "{name}");
            assert!(
                e.satisfied("other-owner"),
                "{name}: other owners are not blocked"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unobserved_expectations_expire() {
        let e = Expectations::new();
        e.expect_creations("rs", 3);
        tokio::time::sleep(Duration::from_secs(299)).await;
        assert!(!e.satisfied("rs"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(e.satisfied("rs"), "expired after 5 minutes");
        assert_eq!(e.pending("rs"), Some((3, 0)));
    }
}
