//! The Deployment loop (`pkg/controller/deployment`): owns ReplicaSets named
//! `<deployment>-<pod-template-hash>`, one per template revision; rolls from the old ones to
//! the new one honouring maxSurge/maxUnavailable (RollingUpdate) or all at once (Recreate);
//! keeps `deployment.kubernetes.io/revision` annotations and revisionHistoryLimit old
//! ReplicaSets (what `kubectl rollout undo` goes back to); scales proportionally; reports the
//! Progressing/Available conditions `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use navarch_api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use navarch_api::core::v1::{Pod, PodTemplateSpec};
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, Reason};
use navarch_runtime::{Action, Event, EventType, Informer, KubeObject, ObjectKey, WorkQueue};

use crate::context::{ControlLoop, Runner, Shared, boxed};
use crate::pods;
use crate::util::{self, controller_of_kind, controller_ref, fmt_time, int_or_percent, parse_time};

pub const NAME: &str = "deployment";

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

const NEW_RS_REASON: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
const PAUSED_REASON: &str = "DeploymentPaused";
const RESUMED_REASON: &str = "DeploymentResumed";

struct Ctx {
    shared: Arc<Shared>,
    deployments: Arc<Informer<Deployment>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue<ObjectKey>,
}

pub fn build(shared: &Arc<Shared>) -> Arc<dyn ControlLoop> {
    let queue = WorkQueue::new(NAME);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        deployments: shared.factory.informer(),
        replicasets: shared.factory.informer(),
        pods: shared.factory.informer(),
        queue: queue.clone(),
    });
    let q = queue.clone();
    ctx.deployments
        .add_handler(move |ev: &Event<Deployment>| q.add(ObjectKey::of(ev.object().as_ref())));
    let weak = Arc::downgrade(&ctx);
    ctx.replicasets
        .add_handler(move |ev: &Event<ReplicaSet>| on_replicaset(&weak, ev));
    let weak = Arc::downgrade(&ctx);
    ctx.pods.add_handler(move |ev: &Event<Pod>| {
        if let (Event::Deleted(pod), Some(ctx)) = (ev, weak.upgrade())
            && let Some(rs) = controller_of_kind(pod.meta(), "ReplicaSet").and_then(|r| {
                ctx.replicasets
                    .cache()
                    .get_named(util::namespace(pod.meta()), r.name.as_deref()?)
            })
            && let Some(d) = ctx.owner(rs.as_ref())
        {
            ctx.queue.add(ObjectKey::of(d.as_ref()));
        }
    });
    shared.requeue_on_clock_jumps(&queue, ctx.deployments.cache());
    Runner::new(NAME, queue, ctx, shared.clone(), |k, c| {
        boxed(reconcile(k, c))
    })
    .linked(navarch_api::kinds::of::<navarch_api::apps::v1::Deployment>().expect("a served kind"))
}

impl Ctx {
    fn owner(&self, rs: &ReplicaSet) -> Option<Arc<Deployment>> {
        let r = controller_of_kind(rs.meta(), "Deployment")?;
        let d = self
            .deployments
            .cache()
            .get_named(util::namespace(rs.meta()), r.name.as_deref()?)?;
        (d.meta().uid == r.uid).then_some(d)
    }

    fn matching(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        self.deployments
            .cache()
            .in_namespace(util::namespace(rs.meta()))
            .into_iter()
            .filter(|d| {
                util::selector(d.spec.as_ref().and_then(|s| s.selector.as_ref()))
                    .is_some_and(|s| s.matches(&rs.meta().labels))
            })
            .collect()
    }
}

fn on_replicaset(ctx: &Weak<Ctx>, ev: &Event<ReplicaSet>) {
    let Some(ctx) = ctx.upgrade() else { return };
    let mut owners = Vec::new();
    if let Event::Updated { old, .. } = ev {
        owners.extend(ctx.owner(old));
    }
    let rs = ev.object();
    match ctx.owner(rs) {
        Some(d) => owners.push(d),
        None if navarch_runtime::object::controller_of(rs.meta()).is_none()
            && !matches!(ev, Event::Deleted(_)) =>
        {
            owners.extend(ctx.matching(rs))
        }
        None => {}
    }
    for d in owners {
        ctx.queue.add(ObjectKey::of(d.as_ref()));
    }
}

// ---------------------------------------------------------------------------------------
// Small pure helpers (deploymentutil).

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status(rs: &ReplicaSet) -> navarch_api::apps::v1::ReplicaSetStatus {
    rs.status.clone().unwrap_or_default()
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.r#type.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// `(maxSurge, maxUnavailable)` resolved against the replicas (`ResolveFenceposts`).
fn fenceposts(d: &Deployment) -> (i32, i32) {
    let desired = replicas(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = int_or_percent(ru.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = int_or_percent(ru.and_then(|r| r.max_unavailable.as_ref()), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.meta()
        .annotations
        .get(REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.meta().annotations.get(key).and_then(|v| v.parse().ok())
}

/// Templates equal apart from the `pod-template-hash` label (`EqualIgnoreHash`).
fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut() {
            m.labels.remove(HASH_LABEL);
        }
        let meta = t.metadata.get_or_insert_with(Default::default);
        if meta == &ObjectMeta::default() {
            t.metadata = None;
        }
        t
    };
    strip(a) == strip(b)
}

fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    a.meta()
        .creation_timestamp
        .cmp(&b.meta().creation_timestamp)
        .then_with(|| a.meta().name.cmp(&b.meta().name))
}

/// The new ReplicaSet: the oldest one whose template is the Deployment's (`FindNewReplicaSet`).
fn find_new(d: &Deployment, all: &[ReplicaSet]) -> Option<usize> {
    let want = template(d);
    let mut idx: Vec<usize> = (0..all.len()).collect();
    idx.sort_by(|&a, &b| by_creation(&all[a], &all[b]));
    idx.into_iter().find(|&i| {
        all[i]
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &want))
    })
}

fn condition<'a>(status: &'a DeploymentStatus, kind: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some(kind))
}

fn new_condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &str,
) -> DeploymentCondition {
    DeploymentCondition {
        r#type: Some(kind.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.into()),
        last_transition_time: Some(now.into()),
    }
}

/// `SetDeploymentCondition`: no change for the same status and reason; keeps the transition
/// time when only the reason changes.
fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(status, c.r#type.as_deref().unwrap_or("")) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    status.conditions.retain(|x| x.r#type != c.r#type);
    status.conditions.push(c);
}

fn remove_condition(status: &mut DeploymentStatus, kind: &str) {
    status
        .conditions
        .retain(|c| c.r#type.as_deref() != Some(kind));
}

fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|s| s != i32::MAX)
}

/// All replicas updated, counted and available, and the status is current.
fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.meta().generation.unwrap_or(0)
}

fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: jiff::Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = condition(status, "Progressing") else {
        return false;
    };
    if cond.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON) {
        return false;
    }
    if cond.reason.as_deref() == Some(TIMED_OUT_REASON) {
        return true;
    }
    let deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    parse_time(cond.last_update_time.as_deref())
        .is_some_and(|from| util::seconds_between(from, now) > f64::from(deadline))
}

/// Replica counts of RSs, conservatively: what the spec asks or what still exists.
fn pod_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| rs_replicas(rs).max(rs_status(rs).replicas.unwrap_or(0)))
        .sum()
}

fn spec_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

/// Available pods, conservatively: a ReplicaSet scaled down has at most `spec.replicas`.
fn available_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| {
            rs_status(rs)
                .available_replicas
                .unwrap_or(0)
                .min(rs_replicas(rs))
        })
        .sum()
}

// ---------------------------------------------------------------------------------------

/// One sync of one Deployment: its latest copy and its ReplicaSets, mutated as writes land.
struct Sync<'a> {
    ctx: &'a Ctx,
    d: Deployment,
    key: ObjectKey,
    /// Status conditions and counters being prepared (written once at the end).
    status: DeploymentStatus,
    rss: Vec<ReplicaSet>,
}

async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ApiError> {
    let Some(d) = ctx.deployments.cache().get(&key) else {
        return Ok(Action::await_change());
    };
    let spec = d.spec.clone().unwrap_or_default();
    let Some(selector) = util::selector(spec.selector.as_ref()) else {
        ctx.shared.event(
            d.as_ref(),
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        return Ok(Action::await_change());
    };
    let candidates = ctx.replicasets.cache().in_namespace(&key.namespace);
    // Before adopting orphans, re-read the Deployment: the cache may not show yet that it is
    // being deleted (with propagationPolicy=Orphan the GC is releasing these very orphans), as
    // Kubernetes' RecheckDeletionTimestamp does.
    let mut deleting = util::is_deleting(d.meta());
    let has_orphans = candidates.iter().any(|rs| {
        navarch_runtime::object::controller_of(rs.meta()).is_none()
            && selector.matches(&rs.meta().labels)
    });
    if has_orphans && !deleting {
        deleting = match ctx
            .shared
            .client
            .get::<Deployment>(&key.namespace, &key.name)
            .await
        {
            Ok(fresh) => {
                util::is_deleting(fresh.meta()) || util::uid(fresh.meta()) != util::uid(d.meta())
            }
            Err(e) if e.reason == Reason::NotFound => true,
            Err(e) => return Err(e),
        };
    }
    let claimed = pods::claim(
        &ctx.shared.client,
        &controller_ref(d.as_ref()),
        deleting,
        &selector,
        candidates,
    )
    .await?;
    let mut s = Sync {
        ctx: &ctx,
        status: d.status.clone().unwrap_or_default(),
        d: (*d).clone(),
        key,
        rss: claimed.iter().map(|rs| (**rs).clone()).collect(),
    };
    if util::is_deleting(d.meta()) {
        return s.sync_status_only().await;
    }
    s.check_paused_conditions();
    if spec.paused == Some(true) || s.is_scaling_event() {
        return s.sync().await;
    }
    if is_rolling(&d) {
        s.rollout_rolling().await
    } else {
        s.rollout_recreate().await
    }
}

impl Sync<'_> {
    fn now(&self) -> String {
        fmt_time(self.ctx.shared.now())
    }

    fn spec(&self) -> DeploymentSpec {
        self.d.spec.clone().unwrap_or_default()
    }

    fn check_paused_conditions(&mut self) {
        if !has_progress_deadline(&self.d) {
            return;
        }
        let cond = condition(&self.status, "Progressing");
        if cond.and_then(|c| c.reason.as_deref()) == Some(TIMED_OUT_REASON) {
            return;
        }
        let paused_recorded = cond.and_then(|c| c.reason.as_deref()) == Some(PAUSED_REASON);
        let paused = self.spec().paused == Some(true);
        let now = self.now();
        if paused && !paused_recorded {
            set_condition(
                &mut self.status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    PAUSED_REASON,
                    "Deployment is paused".into(),
                    &now,
                ),
            );
        } else if !paused && paused_recorded {
            set_condition(
                &mut self.status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    RESUMED_REASON,
                    "Deployment is resumed".into(),
                    &now,
                ),
            );
        }
    }

    /// Some active ReplicaSet was sized for a different replica count.
    fn is_scaling_event(&self) -> bool {
        let want = replicas(&self.d);
        self.rss
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| annotation_i32(rs, DESIRED_REPLICAS).is_some_and(|n| n != want))
    }

    fn new_index(&self) -> Option<usize> {
        find_new(&self.d, &self.rss)
    }

    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new_index().map(|i| &self.rss[i])
    }

    fn old_indexes(&self) -> Vec<usize> {
        let new = self.new_index();
        let mut idx: Vec<usize> = (0..self.rss.len()).filter(|i| Some(*i) != new).collect();
        idx.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        idx
    }

    fn all_refs(&self) -> Vec<&ReplicaSet> {
        self.rss.iter().collect()
    }

    /// Finds (and updates the annotations of) or creates the new ReplicaSet, and syncs the
    /// Deployment's revision annotation (`getAllReplicaSetsAndSyncRevision`).
    async fn sync_revision(&mut self, create: bool) -> Result<Option<usize>, ApiError> {
        let max_old = self
            .old_indexes()
            .iter()
            .map(|&i| revision(&self.rss[i]))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        let client = &self.ctx.shared.client;
        if let Some(i) = self.new_index() {
            let mut rs = self.rss[i].clone();
            let mut changed = self.set_new_rs_annotations(&mut rs, &new_revision, true);
            let min_ready = self.spec().min_ready_seconds;
            let spec = rs.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds != min_ready {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                let k = ObjectKey::of(&rs);
                self.rss[i] = client.update(&k.namespace, &k.name, &rs).await?;
            }
            let rev = self.rss[i]
                .meta()
                .annotations
                .get(REVISION)
                .cloned()
                .unwrap_or_default();
            if has_progress_deadline(&self.d) && condition(&self.status, "Progressing").is_none() {
                let msg = format!("Found new replica set {:?}", util::name(self.rss[i].meta()));
                let now = self.now();
                set_condition(
                    &mut self.status,
                    new_condition("Progressing", "True", FOUND_NEW_RS_REASON, msg, &now),
                );
            }
            self.set_deployment_revision(&rev).await?;
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collision = self.status.collision_count;
        let mut tmpl = template(&self.d);
        let hash = util::template_hash(&tmpl, collision);
        let meta = tmpl.metadata.get_or_insert_with(Default::default);
        meta.labels.insert(HASH_LABEL.into(), hash.clone());
        let mut selector = self.spec().selector.unwrap_or_default();
        selector
            .match_labels
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{}", self.key.name, hash);
        let mut rs = ReplicaSet {
            metadata: Some(ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.key.namespace.clone()),
                labels: meta.labels.clone(),
                owner_references: vec![controller_ref(&self.d)],
                ..Default::default()
            }),
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.spec().min_ready_seconds,
                selector: Some(selector),
                template: Some(tmpl.clone()),
            }),
            ..Default::default()
        };
        self.set_new_rs_annotations(&mut rs, &new_revision, false);
        let olds: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new_replicas = self.new_rs_new_replicas(&olds, None);
        rs.spec.get_or_insert_with(Default::default).replicas = Some(new_replicas);
        let created = match client.create(&self.key.namespace, &rs).await {
            Ok(created) => created,
            Err(e) if e.reason == Reason::AlreadyExists => {
                let existing: ReplicaSet = client.get(&self.key.namespace, &name).await?;
                let ours = util::is_controlled_by(existing.meta(), util::uid(self.d.meta()));
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &tmpl));
                if ours && same {
                    // Our own ReplicaSet, not yet in the cache.
                    self.rss.push(existing);
                    return Ok(Some(self.rss.len() - 1));
                }
                // A hash collision: bump collisionCount so the next name differs.
                self.status.collision_count = Some(collision.unwrap_or(0) + 1);
                self.write_status().await?;
                return Err(ApiError::conflict(
                    "replicasets.apps",
                    &name,
                    "hash collision; retrying with a new collisionCount",
                ));
            }
            Err(e) => {
                if has_progress_deadline(&self.d) {
                    let now = self.now();
                    set_condition(
                        &mut self.status,
                        new_condition(
                            "Progressing",
                            "False",
                            "ReplicaSetCreateError",
                            format!("Failed to create new replica set {name:?}: {}", e.message),
                            &now,
                        ),
                    );
                    let _ = self.write_status().await;
                }
                return Err(e);
            }
        };
        if new_replicas > 0 {
            self.ctx.shared.event(
                &self.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {new_replicas}"),
            );
        }
        if has_progress_deadline(&self.d) {
            let now = self.now();
            set_condition(
                &mut self.status,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_REASON,
                    format!("Created new replica set {name:?}"),
                    &now,
                ),
            );
        }
        self.rss.push(created);
        self.set_deployment_revision(&new_revision).await?;
        Ok(Some(self.rss.len() - 1))
    }

    /// `SetNewReplicaSetAnnotations`; returns whether anything changed.
    fn set_new_rs_annotations(
        &self,
        rs: &mut ReplicaSet,
        new_revision: &str,
        exists: bool,
    ) -> bool {
        const SKIP: &[&str] = &[
            "kubectl.kubernetes.io/last-applied-configuration",
            REVISION,
            REVISION_HISTORY,
            DESIRED_REPLICAS,
            MAX_REPLICAS,
            "deprecated.deployment.rollback.to",
        ];
        let mut changed = false;
        let d_annotations = self.d.meta().annotations.clone();
        let annotations = &mut rs.meta_mut().annotations;
        for (k, v) in d_annotations
            .iter()
            .filter(|(k, _)| !SKIP.contains(&k.as_str()))
        {
            if annotations.get(k) != Some(v) {
                annotations.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        let old = annotations.get(REVISION).cloned().unwrap_or_default();
        let old_n: i64 = old.parse().unwrap_or(0);
        let new_n: i64 = new_revision.parse().unwrap_or(0);
        if old_n < new_n {
            annotations.insert(REVISION.into(), new_revision.into());
            changed = true;
            if !old.is_empty() {
                let history = match annotations.get(REVISION_HISTORY) {
                    Some(h) if !h.is_empty() => format!("{h},{old}"),
                    _ => old,
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
        }
        if !exists {
            let want = replicas(&self.d);
            changed |= set_replicas_annotations(rs, want, want + max_surge(&self.d));
        }
        changed
    }

    /// Writes the revision annotation onto the Deployment if it changed.
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), ApiError> {
        if revision.is_empty()
            || self.d.meta().annotations.get(REVISION).map(String::as_str) == Some(revision)
        {
            return Ok(());
        }
        let mut d = self.d.clone();
        d.meta_mut()
            .annotations
            .insert(REVISION.into(), revision.into());
        self.d = self
            .ctx
            .shared
            .client
            .update(&self.key.namespace, &self.key.name, &d)
            .await?;
        Ok(())
    }

    /// How many replicas the new ReplicaSet should have now (`NewRSNewReplicas`).
    fn new_rs_new_replicas(&self, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> i32 {
        let want = replicas(&self.d);
        if !is_rolling(&self.d) {
            return want;
        }
        let new_replicas = new.map(rs_replicas).unwrap_or(0);
        let max_total = want + max_surge(&self.d);
        let current = pod_count(all);
        if current >= max_total {
            return new_replicas;
        }
        let up = (max_total - current).min(want - new_replicas).max(0);
        new_replicas + up
    }

    /// Scales one ReplicaSet and records it (`scaleReplicaSetAndRecordEvent`).
    async fn scale(&mut self, i: usize, to: i32) -> Result<bool, ApiError> {
        let rs = &self.rss[i];
        let from = rs_replicas(rs);
        let want = replicas(&self.d);
        let surge = max_surge(&self.d);
        let annotations_stale = annotation_i32(rs, DESIRED_REPLICAS) != Some(want)
            || annotation_i32(rs, MAX_REPLICAS) != Some(want + surge);
        if from == to && !annotations_stale {
            return Ok(false);
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(to);
        set_replicas_annotations(&mut copy, want, want + surge);
        let k = ObjectKey::of(&copy);
        self.rss[i] = self
            .ctx
            .shared
            .client
            .update(&k.namespace, &k.name, &copy)
            .await?;
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            self.ctx.shared.event(
                &self.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {verb} replica set {} from {from} to {to}", k.name),
            );
        }
        Ok(from != to)
    }

    // -- rollouts ------------------------------------------------------------------------

    async fn rollout_rolling(&mut self) -> Result<Action, ApiError> {
        let Some(new) = self.sync_revision(true).await? else {
            return self.sync_rollout_status().await;
        };
        if self.reconcile_new(new).await? {
            return self.sync_rollout_status().await;
        }
        if self.reconcile_old(new).await? {
            return self.sync_rollout_status().await;
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    async fn reconcile_new(&mut self, new: usize) -> Result<bool, ApiError> {
        let want = replicas(&self.d);
        let current = rs_replicas(&self.rss[new]);
        if current == want {
            return Ok(false);
        }
        if current > want {
            return self.scale(new, want).await;
        }
        let all = self.all_refs();
        let to = self.new_rs_new_replicas(&all, Some(&self.rss[new]));
        self.scale(new, to).await
    }

    async fn reconcile_old(&mut self, new: usize) -> Result<bool, ApiError> {
        let olds = self.old_indexes();
        let old_pods: i32 = olds.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = spec_count(&self.all_refs());
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_rs = &self.rss[new];
        let new_unavailable = rs_replicas(new_rs) - available_count(&[new_rs]);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy old replicas first: they would block the rollout.
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.rss[i];
            let spec = rs_replicas(rs);
            let available = available_count(&[rs]);
            if spec == 0 || spec == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(spec - available);
            self.scale(i, spec - down).await?;
            cleaned += down;
        }
        // Then available ones, down to the availability floor.
        let available = available_count(&self.all_refs());
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &olds {
                if scaled >= total {
                    break;
                }
                let spec = rs_replicas(&self.rss[i]);
                if spec == 0 {
                    continue;
                }
                let down = spec.min(total - scaled);
                self.scale(i, spec - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&mut self) -> Result<Action, ApiError> {
        let mut new = self.sync_revision(false).await?;
        let mut scaled_down = false;
        for i in self.old_indexes() {
            if rs_replicas(&self.rss[i]) > 0 {
                scaled_down |= self.scale(i, 0).await?;
            }
        }
        if scaled_down || self.old_pods_running(new) {
            return self.sync_rollout_status().await;
        }
        if new.is_none() {
            new = self.sync_revision(true).await?;
        }
        if let Some(i) = new {
            let want = replicas(&self.d);
            self.scale(i, want).await?;
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    fn old_pods_running(&self, new: Option<usize>) -> bool {
        let olds = self.old_indexes();
        if olds
            .iter()
            .any(|&i| rs_status(&self.rss[i]).replicas.unwrap_or(0) > 0)
        {
            return true;
        }
        let new_uid = new.map(|i| util::uid(self.rss[i].meta()).to_string());
        self.rss
            .iter()
            .filter(|rs| Some(util::uid(rs.meta()).to_string()) != new_uid)
            .flat_map(|rs| self.ctx.pods.cache().owned_by(util::uid(rs.meta())))
            .any(|p| !pods::is_terminal(&p))
    }

    /// Scaling without a rollout (also while paused).
    async fn sync(&mut self) -> Result<Action, ApiError> {
        let new = self.sync_revision(false).await?;
        self.scale_proportionally(new).await?;
        if self.spec().paused == Some(true) {
            self.cleanup().await?;
        }
        self.sync_status_only().await
    }

    async fn scale_proportionally(&mut self, new: Option<usize>) -> Result<(), ApiError> {
        let want = replicas(&self.d);
        let mut active: Vec<usize> = (0..self.rss.len())
            .filter(|&i| rs_replicas(&self.rss[i]) > 0)
            .collect();
        let target = match active.len() {
            0 => new.or_else(|| {
                let mut olds = self.old_indexes();
                olds.reverse();
                olds.first().copied()
            }),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = target {
            self.scale(i, want).await?;
            return Ok(());
        }
        if let Some(n) = new {
            let rs = &self.rss[n];
            let saturated = rs_replicas(rs) == want
                && annotation_i32(rs, DESIRED_REPLICAS) == Some(want)
                && rs_status(rs).available_replicas.unwrap_or(0) == want;
            if saturated {
                for i in self.old_indexes() {
                    if rs_replicas(&self.rss[i]) > 0 {
                        self.scale(i, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let current: i32 = active.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        let to_add = allowed - current;
        // Larger first; newer first on ties when growing, older first when shrinking.
        active.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rss[a], &self.rss[b]);
            rs_replicas(rb).cmp(&rs_replicas(ra)).then_with(|| {
                if to_add > 0 {
                    by_creation(rb, ra)
                } else {
                    by_creation(ra, rb)
                }
            })
        });
        let mut sizes: BTreeMap<usize, i32> = BTreeMap::new();
        let mut added = 0;
        for &i in &active {
            let rs = &self.rss[i];
            let size = rs_replicas(rs);
            if to_add != 0 {
                let proportion = self.proportion(rs, to_add, added);
                sizes.insert(i, size + proportion);
                added += proportion;
            } else {
                sizes.insert(i, size);
            }
        }
        if added != to_add
            && let Some(&first) = active.first()
        {
            let e = sizes.entry(first).or_default();
            *e = (*e + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale(i, size).await?;
        }
        Ok(())
    }

    /// `GetProportion`.
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        let size = rs_replicas(rs);
        if size == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let want = replicas(&self.d);
        let fraction = if want == 0 {
            -size
        } else {
            let deployment_replicas = want + max_surge(&self.d);
            let annotated = annotation_i32(rs, MAX_REPLICAS)
                .unwrap_or_else(|| self.status.replicas.unwrap_or(0))
                .max(1);
            ((f64::from(size) * f64::from(deployment_replicas)) / f64::from(annotated)).round()
                as i32
                - size
        };
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// Deletes old, empty ReplicaSets beyond revisionHistoryLimit, oldest revision first.
    async fn cleanup(&mut self) -> Result<(), ApiError> {
        let Some(limit) = self.spec().revision_history_limit else {
            return Ok(());
        };
        let mut cleanable: Vec<usize> = self
            .old_indexes()
            .into_iter()
            .filter(|&i| {
                let rs = &self.rss[i];
                rs.meta().deletion_timestamp.is_none()
                    && rs_replicas(rs) == 0
                    && rs_status(rs).replicas.unwrap_or(0) == 0
                    && rs_status(rs).observed_generation >= rs.meta().generation
            })
            .collect();
        let surplus = cleanable.len() as i64 - i64::from(limit.max(0));
        if surplus <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|&a, &b| {
            revision(&self.rss[a])
                .cmp(&revision(&self.rss[b]))
                .then_with(|| by_creation(&self.rss[a], &self.rss[b]))
        });
        for &i in cleanable.iter().take(surplus as usize) {
            util::delete_object(&self.ctx.shared.client, &self.rss[i], "").await?;
        }
        Ok(())
    }

    // -- status --------------------------------------------------------------------------

    fn calculate_status(&mut self) {
        let all = self.all_refs();
        let available: i32 = all
            .iter()
            .map(|rs| rs_status(rs).available_replicas.unwrap_or(0))
            .sum();
        let total = spec_count(&all);
        let new = self.new_rs();
        let status = DeploymentStatus {
            observed_generation: self.d.meta().generation,
            replicas: Some(
                all.iter()
                    .map(|rs| rs_status(rs).replicas.unwrap_or(0))
                    .sum(),
            ),
            updated_replicas: Some(
                new.map(|rs| rs_status(rs).replicas.unwrap_or(0))
                    .unwrap_or(0),
            ),
            ready_replicas: Some(
                all.iter()
                    .map(|rs| rs_status(rs).ready_replicas.unwrap_or(0))
                    .sum(),
            ),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.status.collision_count,
            terminating_replicas: self.status.terminating_replicas,
            conditions: self.status.conditions.clone(),
        };
        self.status = status;
        let now = self.now();
        if available >= replicas(&self.d) - max_unavailable(&self.d) {
            set_condition(
                &mut self.status,
                new_condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                    &now,
                ),
            );
        } else {
            set_condition(
                &mut self.status,
                new_condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                    &now,
                ),
            );
        }
    }

    fn replica_failure(&mut self) {
        let failure = self
            .new_rs()
            .into_iter()
            .chain(self.rss.iter())
            .find_map(|rs| {
                rs_status(rs).conditions.into_iter().find(|c| {
                    c.r#type.as_deref() == Some("ReplicaFailure")
                        && c.status.as_deref() == Some("True")
                })
            });
        match failure {
            Some(c) => {
                let now = self.now();
                set_condition(
                    &mut self.status,
                    new_condition(
                        "ReplicaFailure",
                        "True",
                        c.reason.as_deref().unwrap_or(""),
                        c.message.unwrap_or_default(),
                        &now,
                    ),
                )
            }
            None => remove_condition(&mut self.status, "ReplicaFailure"),
        }
    }

    async fn sync_status_only(&mut self) -> Result<Action, ApiError> {
        self.calculate_status();
        self.write_status().await?;
        Ok(Action::await_change())
    }

    /// `syncRolloutStatus`: counters, Available, and Progressing with its deadline.
    async fn sync_rollout_status(&mut self) -> Result<Action, ApiError> {
        self.calculate_status();
        let now_ts = self.ctx.shared.now();
        let now = fmt_time(now_ts);
        if !has_progress_deadline(&self.d) {
            remove_condition(&mut self.status, "Progressing");
        }
        let current = condition(&self.d.status.clone().unwrap_or_default(), "Progressing").cloned();
        let complete_before = self.status.replicas == self.status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE_REASON);
        let new_name = self.new_rs().map(|rs| util::name(rs.meta()).to_string());
        if has_progress_deadline(&self.d) && !complete_before {
            let status = self.status.clone();
            if deployment_complete(&self.d, &status) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                    None => format!(
                        "Deployment {:?} has successfully progressed.",
                        self.key.name
                    ),
                };
                set_condition(
                    &mut self.status,
                    new_condition("Progressing", "True", NEW_RS_AVAILABLE_REASON, msg, &now),
                );
            } else if deployment_progressing(&self.d, &status) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet {n:?} is progressing."),
                    None => format!("Deployment {:?} is progressing.", self.key.name),
                };
                let mut c = new_condition("Progressing", "True", RS_UPDATED_REASON, msg, &now);
                if let Some(cur) = &current
                    && cur.status.as_deref() == Some("True")
                {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut self.status, "Progressing");
                self.status.conditions.push(c);
            } else if deployment_timed_out(&self.d, &status, now_ts) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                    None => format!("Deployment {:?} has timed out progressing.", self.key.name),
                };
                set_condition(
                    &mut self.status,
                    new_condition("Progressing", "False", TIMED_OUT_REASON, msg, &now),
                );
            }
        }
        self.replica_failure();
        self.write_status().await?;
        // Look again when the progress deadline would pass (`requeueStuckDeployment`).
        if has_progress_deadline(&self.d)
            && !deployment_complete(&self.d, &self.status)
            && let Some(c) = condition(&self.status, "Progressing")
            && c.reason.as_deref() != Some(TIMED_OUT_REASON)
            && c.status.as_deref() == Some("True")
            && let Some(from) = parse_time(c.last_update_time.as_deref())
        {
            let deadline = self.spec().progress_deadline_seconds.unwrap_or(600);
            let left = f64::from(deadline) - util::seconds_between(from, now_ts) + 1.0;
            return Ok(Action::requeue(util::secs(left.max(1.0))));
        }
        Ok(Action::await_change())
    }

    async fn write_status(&mut self) -> Result<(), ApiError> {
        if self.d.status.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let mut d = self.d.clone();
        d.status = Some(self.status.clone());
        match self
            .ctx
            .shared
            .client
            .update_status(&self.key.namespace, &self.key.name, &d)
            .await
        {
            Ok(updated) => {
                self.d = updated;
                Ok(())
            }
            Err(e) if e.reason == Reason::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Sets the desired/max replicas annotations; returns whether they changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = &mut rs.meta_mut().annotations;
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if annotations.get(k) != Some(&v) {
            annotations.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use navarch_api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
    use navarch_api::meta::v1::IntOrString;
    use navarch_api::meta::v1::int_or_string::Value;

    use super::*;

    fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
        let ios = |s: &str| {
            Some(IntOrString {
                value: Some(match s.parse::<i32>() {
                    Ok(i) => Value::IntVal(i),
                    Err(_) => Value::StrVal(s.into()),
                }),
            })
        };
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    r#type: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: ios(surge),
                        max_unavailable: ios(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_resolve_like_kubernetes() {
        // (replicas, surge, unavailable) → (maxSurge, maxUnavailable)
        let cases = [
            (3, "25%", "25%", 1, 0),
            (10, "25%", "25%", 3, 2),
            (3, "0", "0", 0, 1),
            (3, "1", "5", 1, 3),
            (0, "25%", "25%", 0, 0),
        ];
        for (r, s, u, want_s, want_u) in cases {
            let d = deployment(r, s, u);
            assert_eq!(
                (max_surge(&d), max_unavailable(&d)),
                (want_s, want_u),
                "{r} {s} {u}"
            );
        }
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let mut a = PodTemplateSpec::default();
        let mut b = a.clone();
        b.metadata = Some(ObjectMeta {
            labels: [(HASH_LABEL.to_string(), "abc".to_string())].into(),
            ..Default::default()
        });
        assert!(equal_ignore_hash(&a, &b));
        a.metadata = Some(ObjectMeta {
            labels: [("app".to_string(), "x".to_string())].into(),
            ..Default::default()
        });
        assert!(!equal_ignore_hash(&a, &b));
    }
}
