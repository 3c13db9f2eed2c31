//! ControllerRevisions (`pkg/controller/history`): the template history of DaemonSets and
//! StatefulSets. Each distinct pod template is one revision named `<owner>-<hash>`, labelled
//! `controller-revision-hash`, with a growing `revision` number; re-applying an old template
//! re-numbers its revision instead of making a new one.

use std::collections::HashSet;
use std::sync::Arc;

use navarch_api::apps::v1::ControllerRevision;
use navarch_api::core::v1::PodTemplateSpec;
use navarch_api::meta::v1::{ObjectMeta, RawJson};
use navarch_api::{ApiError, Object, Reason};
use navarch_gateway::Client;
use navarch_runtime::{KubeObject, ObjectKey};

use crate::util::{self, controller_ref};

pub const HASH_LABEL: &str = "controller-revision-hash";

/// What a sync of the history found.
pub struct Revisions {
    /// The revision of the owner's current template.
    pub current: ControllerRevision,
    /// Every revision the owner has (including `current`), oldest first.
    pub all: Vec<ControllerRevision>,
}

/// The revision data for an owner: `{"spec":{"template":…,"$patch":"replace"}}`, in the
/// Kubernetes JSON form.
pub fn revision_data<T: KubeObject>(owner: &T) -> Result<String, ApiError> {
    let json = Object::from_typed(owner)?.to_json();
    let mut template = json
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), "replace".into());
    }
    Ok(serde_json::json!({ "spec": { "template": template } }).to_string())
}

fn data_of(rev: &ControllerRevision) -> &str {
    rev.data.as_ref().map(|d| d.json.as_str()).unwrap_or("")
}

fn same_data(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The hash naming a template's revision (and labelling its pods).
pub fn hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    util::template_hash(template, collision_count)
}

/// Finds or creates the revision of `owner`'s current template among `existing` (the
/// owner's revisions), making it the newest. `Err(Conflict)` on a hash collision: the caller
/// bumps `status.collisionCount` and retries.
pub async fn sync<T: KubeObject>(
    client: &Client,
    owner: &T,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
    mut existing: Vec<Arc<ControllerRevision>>,
) -> Result<Revisions, ApiError> {
    existing.sort_by_key(|r| (r.revision.unwrap_or(0), r.meta().creation_timestamp.clone()));
    let data = revision_data(owner)?;
    let max = existing
        .iter()
        .map(|r| r.revision.unwrap_or(0))
        .max()
        .unwrap_or(0);
    let key = ObjectKey::of(owner);
    let mut all: Vec<ControllerRevision> = existing.iter().map(|r| (**r).clone()).collect();
    if let Some(i) = all.iter().rposition(|r| same_data(data_of(r), &data)) {
        if all[i].revision.unwrap_or(0) < max {
            let mut updated = all[i].clone();
            updated.revision = Some(max + 1);
            let k = ObjectKey::of(&updated);
            all[i] = client.update(&k.namespace, &k.name, &updated).await?;
        }
        let current = all[i].clone();
        return Ok(Revisions { current, all });
    }
    let hash = hash(template, collision_count);
    let mut labels = template
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let name = format!("{}-{}", key.name, hash);
    let revision = ControllerRevision {
        metadata: Some(ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(key.namespace.clone()),
            labels,
            owner_references: vec![controller_ref(owner)],
            ..Default::default()
        }),
        data: Some(RawJson { json: data.clone() }),
        revision: Some(max + 1),
        ..Default::default()
    };
    let created = match client.create(&key.namespace, &revision).await {
        Ok(c) => c,
        Err(e) if e.reason == Reason::AlreadyExists => {
            let found: ControllerRevision = client.get(&key.namespace, &name).await?;
            if !util::is_controlled_by(found.meta(), util::uid(owner.meta()))
                || !same_data(data_of(&found), &data)
            {
                return Err(ApiError::conflict(
                    "controllerrevisions.apps",
                    &name,
                    "hash collision",
                ));
            }
            let mut found = found;
            if found.revision.unwrap_or(0) <= max {
                found.revision = Some(max + 1);
                found = client.update(&key.namespace, &name, &found).await?;
            }
            found
        }
        Err(e) => return Err(e),
    };
    all.push(created.clone());
    Ok(Revisions {
        current: created,
        all,
    })
}

/// Deletes the oldest revisions beyond `limit`, never one in `keep` (by name) or the newest.
pub async fn truncate(
    client: &Client,
    revisions: &[ControllerRevision],
    limit: i32,
    keep: &HashSet<String>,
) -> Result<(), ApiError> {
    let mut old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !keep.contains(util::name(r.meta())))
        .collect();
    let surplus = old.len() as i64 - i64::from(limit.max(0));
    if surplus <= 0 {
        return Ok(());
    }
    old.sort_by_key(|r| r.revision.unwrap_or(0));
    for r in old.into_iter().take(surplus as usize) {
        util::delete_object(client, r, "").await?;
    }
    Ok(())
}
