//! Leader election through a `coordination.k8s.io/v1` Lease (client-go's `leaderelection`).
//!
//! Candidates read the Lease and take it when it has no holder or its holder has not renewed
//! it for `leaseDurationSeconds` (measured on the candidate's own clock from when it last saw
//! the Lease change, so clock skew between machines does not matter). Every write carries the
//! resourceVersion it read, so two candidates racing for an expired Lease cannot both win. The
//! leader renews every retry period; if it cannot renew within the renew deadline (shorter than
//! the lease duration) or sees another holder, it stops leading — before anyone else may
//! start.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use navarch_api::coordination::v1::{Lease, LeaseSpec};
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, Reason};
use navarch_gateway::Client;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where the Lease lives, who we are, and the timings (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's `holderIdentity` (unique per process: host name plus a random suffix).
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates retry and the leader renews.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// An RFC 3339 time with microseconds, as Kubernetes writes `MicroTime`.
pub fn micro_time_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The last Lease this candidate read, and when it saw it change.
struct Observed {
    spec: Option<LeaseSpec>,
    resource_version: String,
    at: Instant,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    client: Client,
    config: LeaderElectionConfig,
    observed: Mutex<Observed>,
}

/// The outcome of [`LeaderElector::lead`].
#[derive(Debug, PartialEq, Eq)]
pub enum Leading<T> {
    /// The work finished while this candidate was leading.
    Finished(T),
    /// Leadership was lost; the work was cancelled and dropped.
    Lost,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> Arc<Self> {
        assert!(
            config.renew_deadline < config.lease_duration,
            "the renew deadline must be shorter than the lease duration"
        );
        Arc::new(Self {
            client,
            config,
            observed: Mutex::new(Observed {
                spec: None,
                resource_version: String::new(),
                at: Instant::now(),
            }),
        })
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The holder of the Lease when this candidate last read it.
    pub fn observed_leader(&self) -> Option<String> {
        self.observed()
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty())
    }

    fn lease_seconds(&self) -> i32 {
        self.config.lease_duration.as_secs().max(1) as i32
    }

    /// One attempt to take or renew the Lease; `Ok(true)` when this candidate holds it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, ApiError> {
        let me = self.config.identity.as_str();
        let now = micro_time_now();
        let current: Lease = match self
            .client
            .get(&self.config.namespace, &self.config.name)
            .await
        {
            Ok(lease) => lease,
            Err(e) if e.reason == Reason::NotFound => {
                let lease = Lease {
                    metadata: Some(ObjectMeta {
                        namespace: Some(self.config.namespace.clone()),
                        name: Some(self.config.name.clone()),
                        ..Default::default()
                    }),
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.to_string()),
                        lease_duration_seconds: Some(self.lease_seconds()),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                return match self.client.create(&self.config.namespace, &lease).await {
                    Ok(created) => {
                        self.observe(&created, true);
                        Ok(true)
                    }
                    Err(e) if e.reason == Reason::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let old = current.spec.clone().unwrap_or_default();
        self.observe(&current, false);
        let holder = old.holder_identity.as_deref().unwrap_or("");
        let held_by_other = !holder.is_empty() && holder != me;
        if held_by_other {
            let lease_for =
                Duration::from_secs(old.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            if self.observed().at + lease_for > Instant::now() {
                return Ok(false);
            }
        }
        let mut lease = current;
        let (acquire_time, transitions) = if holder == me {
            (old.acquire_time.clone(), old.lease_transitions.unwrap_or(0))
        } else {
            (Some(now.clone()), old.lease_transitions.unwrap_or(0) + 1)
        };
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time,
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..old
        });
        match self
            .client
            .update(&self.config.namespace, &self.config.name, &lease)
            .await
        {
            Ok(updated) => {
                if held_by_other || holder.is_empty() {
                    tracing::info!(
                        lease = %self.config.name,
                        identity = me,
                        previous = holder,
                        transitions,
                        "acquired leadership"
                    );
                }
                self.observe(&updated, true);
                Ok(true)
            }
            Err(e) if e.reason == Reason::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records a Lease read or written; the observation time moves only when it changed.
    fn observe(&self, lease: &Lease, force: bool) {
        let rv = lease
            .metadata
            .as_ref()
            .and_then(|m| m.resource_version.clone())
            .unwrap_or_default();
        let mut observed = self.observed();
        if force || observed.resource_version != rv || observed.spec != lease.spec {
            observed.spec = lease.spec.clone();
            observed.resource_version = rv;
            observed.at = Instant::now();
        }
    }

    /// Whether this candidate held the Lease the last time it looked.
    pub fn is_leader(&self) -> bool {
        self.observed_leader().as_deref() == Some(self.config.identity.as_str())
    }

    /// Waits until this candidate holds the Lease (retrying every retry period), then keeps
    /// renewing it in the background. The returned [`Leadership`] says when it is lost.
    pub async fn acquire(self: &Arc<Self>) -> Leadership {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    lease = %self.config.name,
                    error = %e,
                    "cannot read or write the leader election lease"
                ),
            }
            let jitter = self
                .config
                .retry_period
                .mul_f64(rand::random::<f64>() * 0.2);
            tokio::time::sleep(self.config.retry_period + jitter).await;
        }
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let renew = tokio::spawn(self.clone().renew(lost.clone(), stop.clone()));
        Leadership {
            elector: self.clone(),
            lost,
            stop,
            renew: Some(renew),
        }
    }

    /// Renews every retry period until stopped; cancels `lost` on failure to renew within the
    /// renew deadline or on seeing another holder.
    async fn renew(self: Arc<Self>, lost: CancellationToken, stop: CancellationToken) {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = stop.cancelled() => return,
            }
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => {
                    renewed = Instant::now();
                    continue;
                }
                Ok(Ok(false)) if !self.is_leader() => {
                    tracing::warn!(
                        lease = %self.config.name,
                        identity = %self.config.identity,
                        holder = ?self.observed_leader(),
                        "leadership lost: another candidate holds the lease"
                    );
                    lost.cancel();
                    return;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "renewing the lease failed")
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                tracing::warn!(
                    lease = %self.config.name,
                    identity = %self.config.identity,
                    deadline_ms = self.config.renew_deadline.as_millis() as u64,
                    "leadership lost: could not renew the lease in time"
                );
                lost.cancel();
                return;
            }
        }
    }

    /// Campaigns, then runs `work` while leading. `work` gets a token that is cancelled when
    /// leadership is lost; the work future is dropped right after. On return the Lease is
    /// released (if still held) so another candidate can take over at once.
    pub async fn lead<F, Fut>(self: &Arc<Self>, work: F) -> Leading<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future,
    {
        let leadership = self.acquire().await;
        let token = leadership.token();
        let outcome = tokio::select! {
            out = work(token) => Leading::Finished(out),
            _ = leadership.lost() => Leading::Lost,
        };
        leadership.release().await;
        outcome
    }

    /// Gives the Lease up: no holder, a 1 s duration (client-go's `ReleaseOnCancel`).
    async fn release_lease(&self) {
        if !self.is_leader() {
            return;
        }
        let Ok(mut lease) = self
            .client
            .get::<Lease>(&self.config.namespace, &self.config.name)
            .await
        else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = micro_time_now();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        match self
            .client
            .update(&self.config.namespace, &self.config.name, &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated, true);
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, "released leadership");
            }
            Err(e) => {
                tracing::warn!(lease = %self.config.name, error = %e, "releasing the lease failed")
            }
        }
    }
}

/// Held while leading; renewal runs in the background until [`Leadership::release`] or loss.
pub struct Leadership {
    elector: Arc<LeaderElector>,
    lost: CancellationToken,
    stop: CancellationToken,
    renew: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Whether leadership is still held.
    pub fn is_leading(&self) -> bool {
        !self.lost.is_cancelled()
    }

    /// Resolves when leadership is lost.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    /// A token cancelled when leadership is lost (hand child tokens to the work).
    pub fn token(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and gives the Lease up.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(task) = self.renew.take() {
            let _ = task.await;
        }
        if !self.lost.is_cancelled() {
            self.elector.release_lease().await;
        }
        self.lost.cancel();
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Dropped without release: stop renewing; the Lease expires on its own.
        self.stop.cancel();
        self.lost.cancel();
    }
}
