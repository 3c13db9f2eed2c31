//! The scheduling queue (kube-scheduler's `PriorityQueue`): pods wait in
//! - the active queue, highest priority first, then first come first served;
//! - back-off, after a failed attempt (1 s doubling to 10 s per pod) before the next one;
//! - the unschedulable set, after an attempt that found no node, until something changes in
//!   the cluster that could make them fit (then they go back, through back-off), or 5 minutes
//!   pass.
//!
//! A cluster change that happens while a pod is being scheduled is not lost: a pod whose attempt
//! started before the latest change goes to back-off, not to the unschedulable set.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use navarch_runtime::ObjectKey;
use tokio::time::Instant;

use crate::pod_info::PodInfo;

/// How long an unschedulable pod waits for a cluster change before it is tried anyway.
pub const MAX_UNSCHEDULABLE_WAIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Active,
    Backoff,
    Unschedulable,
    /// Handed out for a scheduling attempt (and possibly binding).
    InFlight,
}

#[derive(Debug)]
struct Entry {
    info: Arc<PodInfo>,
    at: Where,
    /// Failed attempts so far (drives the back-off).
    attempts: u32,
    /// The heap entry that is current for this pod.
    seq: u64,
    /// When the pod may be tried again.
    backoff_until: Instant,
    unschedulable_since: Instant,
    /// The cluster-change counter when the current attempt started.
    attempt_cycle: u64,
    /// The pod changed while being scheduled.
    updated_in_flight: bool,
    /// When the pod entered the queue (scheduling latency is measured from here).
    first_seen: Instant,
}

/// A pod handed out for scheduling.
#[derive(Clone, Debug)]
pub struct Popped {
    pub info: Arc<PodInfo>,
    /// Pass back to [`SchedulingQueue::unschedulable`].
    pub cycle: u64,
    pub first_seen: Instant,
    pub attempts: u32,
}

/// How many pods are where (the pending-pods metric).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
}

/// Pods waiting to be scheduled.
#[derive(Debug)]
pub struct SchedulingQueue {
    pods: HashMap<ObjectKey, Entry>,
    active: BinaryHeap<(i32, Reverse<u64>, ObjectKey)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, ObjectKey)>>,
    unschedulable: HashSet<ObjectKey>,
    seq: u64,
    cycle: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// Kept as pods move (the metric is read on every batch).
    counts: QueueCounts,
}

impl QueueCounts {
    fn of(&mut self, at: Where) -> &mut usize {
        match at {
            Where::Active => &mut self.active,
            Where::Backoff => &mut self.backoff,
            Where::Unschedulable => &mut self.unschedulable,
            Where::InFlight => &mut self.in_flight,
        }
    }

    /// Counts an entry's move from where it is to `to`.
    fn moved(&mut self, e: &mut Entry, to: Where) {
        *self.of(e.at) -= 1;
        *self.of(to) += 1;
        e.at = to;
    }
}

impl SchedulingQueue {
    /// A queue with kube-scheduler's back-off (1 s initial, 10 s max).
    pub fn new() -> Self {
        Self::with_backoff(Duration::from_secs(1), Duration::from_secs(10))
    }

    pub fn with_backoff(initial: Duration, max: Duration) -> Self {
        Self {
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: HashSet::new(),
            seq: 0,
            cycle: 0,
            initial_backoff: initial,
            max_backoff: max,
            counts: QueueCounts::default(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: &ObjectKey) {
        let seq = self.next_seq();
        if let Some(e) = self.pods.get_mut(key) {
            self.counts.moved(e, Where::Active);
            e.seq = seq;
            self.active
                .push((e.info.priority, Reverse(seq), key.clone()));
        }
    }

    fn push_backoff(&mut self, key: &ObjectKey) {
        let seq = self.next_seq();
        if let Some(e) = self.pods.get_mut(key) {
            self.counts.moved(e, Where::Backoff);
            e.seq = seq;
            self.backoff
                .push(Reverse((e.backoff_until, seq, key.clone())));
        }
    }

    /// Sends a waiting pod to the active queue, or to back-off if its back-off is not over.
    fn requeue(&mut self, key: &ObjectKey, now: Instant) {
        let Some(e) = self.pods.get(key) else { return };
        if e.backoff_until > now {
            self.push_backoff(key);
        } else {
            self.push_active(key);
        }
    }

    /// A new pending pod, or a change to one. A pod waiting as unschedulable is tried again
    /// when its spec or labels changed (`changed`).
    pub fn add(&mut self, info: Arc<PodInfo>, changed: bool, now: Instant) {
        let key = info.key.clone();
        match self.pods.get_mut(&key) {
            None => {
                self.counts.active += 1;
                self.pods.insert(
                    key.clone(),
                    Entry {
                        info,
                        at: Where::Active,
                        attempts: 0,
                        seq: 0,
                        backoff_until: now,
                        unschedulable_since: now,
                        attempt_cycle: 0,
                        updated_in_flight: false,
                        first_seen: now,
                    },
                );
                self.push_active(&key);
            }
            Some(e) => {
                let priority_changed = e.info.priority != info.priority;
                e.info = info;
                match e.at {
                    Where::InFlight => e.updated_in_flight |= changed,
                    Where::Unschedulable if changed => {
                        self.unschedulable.remove(&key);
                        self.requeue(&key, now);
                    }
                    Where::Active if priority_changed => self.push_active(&key),
                    _ => {}
                }
            }
        }
    }

    /// Forgets a pod (deleted, bound, or no longer ours).
    pub fn remove(&mut self, key: &ObjectKey) {
        if let Some(e) = self.pods.remove(key) {
            *self.counts.of(e.at) -= 1;
            self.unschedulable.remove(key);
        }
    }

    /// Whether the queue holds the pod (in any state).
    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.pods.contains_key(key)
    }

    /// Moves pods whose back-off is over into the active queue, and pods unschedulable for
    /// too long back into play.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((due, seq, key))) = self.backoff.peek().cloned() {
            if due > now {
                break;
            }
            self.backoff.pop();
            if self
                .pods
                .get(&key)
                .is_some_and(|e| e.seq == seq && e.at == Where::Backoff)
            {
                self.push_active(&key);
            }
        }
        let stale: Vec<ObjectKey> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.pods.get(*k).is_some_and(|e| {
                    now.duration_since(e.unschedulable_since) >= MAX_UNSCHEDULABLE_WAIT
                })
            })
            .cloned()
            .collect();
        for key in stale {
            self.unschedulable.remove(&key);
            self.requeue(&key, now);
        }
    }

    /// The next pod to schedule, highest priority first.
    pub fn pop(&mut self) -> Option<Popped> {
        while let Some((_, Reverse(seq), key)) = self.active.pop() {
            let cycle = self.cycle;
            let Some(e) = self.pods.get_mut(&key) else {
                continue;
            };
            if e.seq != seq || e.at != Where::Active {
                continue;
            }
            self.counts.moved(e, Where::InFlight);
            e.attempt_cycle = cycle;
            e.updated_in_flight = false;
            return Some(Popped {
                info: e.info.clone(),
                cycle,
                first_seen: e.first_seen,
                attempts: e.attempts,
            });
        }
        None
    }

    /// The attempt found no node. The pod waits for a cluster change — unless one happened
    /// during the attempt, or the pod itself changed, then it only backs off.
    pub fn unschedulable(&mut self, key: &ObjectKey, now: Instant) {
        let cycle = self.cycle;
        let (initial, max) = (self.initial_backoff, self.max_backoff);
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        if e.at != Where::InFlight {
            return;
        }
        e.attempts += 1;
        e.backoff_until = now + backoff_duration(initial, max, e.attempts);
        if e.attempt_cycle < cycle || e.updated_in_flight {
            self.push_backoff(key);
        } else {
            self.counts.moved(e, Where::Unschedulable);
            e.unschedulable_since = now;
            self.unschedulable.insert(key.clone());
        }
    }

    /// The attempt failed for another reason (binding failed): back off, then retry.
    pub fn retry(&mut self, key: &ObjectKey, now: Instant) {
        let (initial, max) = (self.initial_backoff, self.max_backoff);
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.backoff_until = now + backoff_duration(initial, max, e.attempts);
        self.unschedulable.remove(key);
        self.push_backoff(key);
    }

    /// Something changed that could make unschedulable pods fit (a node was added or freed):
    /// every unschedulable pod goes back into play (through back-off).
    pub fn cluster_changed(&mut self, now: Instant) {
        self.cycle += 1;
        let keys: Vec<ObjectKey> = self.unschedulable.drain().collect();
        for key in keys {
            self.requeue(&key, now);
        }
    }

    /// When the earliest back-off ends.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    pub fn counts(&self) -> QueueCounts {
        self.counts
    }

    /// Pods in the queue, in any state.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

/// `initial * 2^(attempts - 1)`, capped at `max`.
fn backoff_duration(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    initial.saturating_mul(1 << exp).min(max)
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(pod(name, "", "")), priority))
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    fn drain(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|p| p.info.key.name.clone())
            .collect()
    }

    #[test]
    fn higher_priority_first_then_first_come() {
        let mut q = SchedulingQueue::new();
        let now = Instant::now();
        q.add(info("low-1", 0), false, now);
        q.add(info("high", 1000), false, now);
        q.add(info("low-2", 0), false, now);
        q.add(info("mid", 10), false, now);
        q.add(info("low-1", 0), false, now); // a re-add keeps its place
        assert_eq!(drain(&mut q), ["high", "mid", "low-1", "low-2"]);
        assert_eq!(q.counts().in_flight, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_cluster_change_then_back_off() {
        let mut q = SchedulingQueue::new();
        q.add(info("p", 0), false, Instant::now());
        let popped = q.pop().unwrap();
        assert_eq!(popped.cycle, 0);
        q.unschedulable(&key("p"), Instant::now());
        assert_eq!(q.counts().unschedulable, 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        q.flush(Instant::now());
        assert!(q.pop().is_none(), "no hot loop: nothing changed");

        // A node appears: the pod is tried again at once (its 1 s back-off is long over).
        q.cluster_changed(Instant::now());
        assert_eq!(drain(&mut q), ["p"]);
        q.unschedulable(&key("p"), Instant::now());
        // Fails again; another change right away: now it must back off 2 s first.
        q.cluster_changed(Instant::now());
        assert!(q.pop().is_none());
        assert_eq!(q.counts().backoff, 1);
        tokio::time::sleep(Duration::from_millis(1999)).await;
        q.flush(Instant::now());
        assert!(q.pop().is_none());
        tokio::time::sleep(Duration::from_millis(2)).await;
        q.flush(Instant::now());
        assert_eq!(drain(&mut q), ["p"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_the_attempt_is_not_lost() {
        let mut q = SchedulingQueue::new();
        q.add(info("p", 0), false, Instant::now());
        q.pop().unwrap();
        q.cluster_changed(Instant::now()); // e.g. a pod was deleted meanwhile
        q.unschedulable(&key("p"), Instant::now());
        assert_eq!(
            q.counts().backoff,
            1,
            "backs off instead of waiting for another change"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.flush(Instant::now());
        assert_eq!(drain(&mut q), ["p"]);
    }

    #[test]
    fn table_of_backoff_durations() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(10));
        for (attempts, secs) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (30, 10)] {
            assert_eq!(
                backoff_duration(initial, max, attempts),
                Duration::from_secs(secs),
                "{attempts}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn updates_and_removals() {
        let mut q = SchedulingQueue::new();
        let now = Instant::now();
        q.add(info("p", 0), false, now);
        q.pop().unwrap();
        q.unschedulable(&key("p"), now);
        // A status-only update leaves it waiting; a spec change brings it back (after back-off).
        q.add(info("p", 0), false, now);
        assert_eq!(q.counts().unschedulable, 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        q.add(info("p", 0), true, Instant::now());
        assert_eq!(drain(&mut q), ["p"]);
        q.retry(&key("p"), Instant::now());
        assert_eq!(q.counts().backoff, 1);
        q.remove(&key("p"));
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(20)).await;
        q.flush(Instant::now());
        assert!(q.pop().is_none(), "a removed pod's back-off entry is stale");
        // Pods wait at most 5 minutes for a change.
        q.add(info("q", 0), false, Instant::now());
        q.pop().unwrap();
        q.unschedulable(&key("q"), Instant::now());
        tokio::time::sleep(MAX_UNSCHEDULABLE_WAIT).await;
        q.flush(Instant::now());
        assert_eq!(drain(&mut q), ["q"]);
    }

    /// The counts kept as pods move agree with counting the entries, whatever the moves.
    #[tokio::test(start_paused = true)]
    async fn counts_follow_every_move() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut q = SchedulingQueue::new();
        for step in 0..5000 {
            let name = format!("p{}", rng.random_range(0..20));
            let now = Instant::now();
            match rng.random_range(0..8) {
                0 | 1 => q.add(info(&name, rng.random_range(0..3)), rng.random(), now),
                2 => {
                    q.pop();
                }
                3 => q.unschedulable(&key(&name), now),
                4 => q.retry(&key(&name), now),
                5 => q.remove(&key(&name)),
                6 => q.cluster_changed(now),
                _ => {
                    tokio::time::advance(Duration::from_millis(rng.random_range(0..3000))).await;
                    q.flush(Instant::now());
                }
            }
            let mut recount = QueueCounts::default();
            for e in q.pods.values() {
                *recount.of(e.at) += 1;
            }
            assert_eq!(q.counts(), recount, "after step {step}");
        }
    }
}
