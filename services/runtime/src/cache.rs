//! The local cache an informer fills: objects by key, plus indexes kept up to date on every
//! change so that lookups by namespace, owner, node or any custom index are map reads.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use navarch_api::selectors::LabelSelector;

use crate::object::{KubeObject, ObjectKey};

/// The values an object has for one index (an object may be under several: all its owners).
pub type IndexFn<T> = Arc<dyn Fn(&T) -> Vec<String> + Send + Sync>;

/// Index of objects by `metadata.namespace`.
pub const BY_NAMESPACE: &str = "namespace";
/// Index of objects by the uid of each of their `ownerReferences`.
pub const BY_OWNER: &str = "owner";
/// Index of pods by `spec.nodeName` (other kinds are never in it).
pub const BY_NODE: &str = "node";

/// A read-mostly, indexed map of the objects of one kind. Readers get `Arc`s: cheap to hold,
/// never mutated in place (a change replaces the `Arc`).
pub struct Cache<T> {
    inner: RwLock<Inner<T>>,
}

struct Inner<T> {
    objects: HashMap<ObjectKey, Arc<T>>,
    indexers: Vec<(&'static str, IndexFn<T>)>,
    indexes: HashMap<&'static str, HashMap<String, HashSet<ObjectKey>>>,
}

impl<T: KubeObject> Cache<T> {
    /// An empty cache with the built-in indexes ([`BY_NAMESPACE`], [`BY_OWNER`], [`BY_NODE`]).
    pub fn new() -> Self {
        let indexers: Vec<(&'static str, IndexFn<T>)> = vec![
            (
                BY_NAMESPACE,
                Arc::new(|o: &T| o.meta().namespace.iter().cloned().collect()),
            ),
            (
                BY_OWNER,
                Arc::new(|o: &T| {
                    o.meta()
                        .owner_references
                        .iter()
                        .filter_map(|r| r.uid.clone())
                        .collect()
                }),
            ),
            (
                BY_NODE,
                Arc::new(|o: &T| o.node_name().map(str::to_string).into_iter().collect()),
            ),
        ];
        let indexes = indexers
            .iter()
            .map(|(name, _)| (*name, HashMap::new()))
            .collect();
        Self {
            inner: RwLock::new(Inner {
                objects: HashMap::new(),
                indexers,
                indexes,
            }),
        }
    }

    /// Adds (or replaces) the index `name`, computed at once for the objects already cached
    /// and kept up to date from then on. Query it with [`Cache::by_index`].
    pub fn add_index(&self, name: &'static str, f: IndexFn<T>) {
        let mut inner = self.write();
        let mut index: HashMap<String, HashSet<ObjectKey>> = HashMap::new();
        for (key, obj) in &inner.objects {
            for v in f(obj) {
                index.entry(v).or_default().insert(key.clone());
            }
        }
        inner.indexers.retain(|(n, _)| *n != name);
        inner.indexers.push((name, f));
        inner.indexes.insert(name, index);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<T>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<T>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The object named `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<T>> {
        self.read().objects.get(key).cloned()
    }

    /// The object `namespace/name` ("" namespace for cluster-scoped kinds).
    pub fn get_named(&self, namespace: &str, name: &str) -> Option<Arc<T>> {
        self.get(&ObjectKey::new(namespace, name))
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.read().objects.values().cloned().collect()
    }

    /// Every key.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().objects.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects whose index `index` has `value`. Unknown indexes are empty.
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<T>> {
        let inner = self.read();
        let Some(keys) = inner.indexes.get(index).and_then(|i| i.get(value)) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| inner.objects.get(k).cloned())
            .collect()
    }

    /// The objects in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<T>> {
        self.by_index(BY_NAMESPACE, namespace)
    }

    /// The objects with an owner reference to `uid`.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<T>> {
        self.by_index(BY_OWNER, uid)
    }

    /// The pods bound to `node`.
    pub fn on_node(&self, node: &str) -> Vec<Arc<T>> {
        self.by_index(BY_NODE, node)
    }

    /// The objects (in `namespace`, or everywhere) whose labels match `selector`.
    pub fn select(&self, namespace: Option<&str>, selector: &LabelSelector) -> Vec<Arc<T>> {
        let candidates = match namespace {
            Some(ns) => self.in_namespace(ns),
            None => self.list(),
        };
        candidates
            .into_iter()
            .filter(|o| selector.matches(&o.meta().labels))
            .collect()
    }

    /// Inserts or replaces an object; returns the one it replaced.
    pub(crate) fn upsert(&self, obj: Arc<T>) -> Option<Arc<T>> {
        let key = ObjectKey::of(obj.as_ref());
        let mut inner = self.write();
        let old = inner.objects.insert(key.clone(), obj.clone());
        reindex(&mut inner, &key, old.as_deref(), Some(&obj));
        old
    }

    /// Removes an object; returns it if it was there.
    pub(crate) fn remove(&self, key: &ObjectKey) -> Option<Arc<T>> {
        let mut inner = self.write();
        let old = inner.objects.remove(key)?;
        reindex(&mut inner, key, Some(&old), None);
        Some(old)
    }
}

impl<T: KubeObject> Default for Cache<T> {
    fn default() -> Self {
        Self::new()
    }
}

fn reindex<T>(inner: &mut Inner<T>, key: &ObjectKey, old: Option<&T>, new: Option<&T>) {
    let Inner {
        indexers, indexes, ..
    } = inner;
    for (name, f) in indexers.iter() {
        let before = old.map(|o| f(o)).unwrap_or_default();
        let after = new.map(|o| f(o)).unwrap_or_default();
        if before == after {
            continue;
        }
        let index = indexes.entry(name).or_default();
        for v in before.iter().filter(|v| !after.contains(v)) {
            if let Some(set) = index.get_mut(v) {
                set.remove(key);
                if set.is_empty() {
                    index.remove(v);
                }
            }
        }
        for v in after.into_iter().filter(|v| !before.contains(v)) {
            index.entry(v).or_default().insert(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{Pod, PodSpec};
    use navarch_api::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn pod(ns: &str, name: &str, node: &str, owner: &str, app: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: Some(ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: [("app".to_string(), app.to_string())].into(),
                owner_references: vec![OwnerReference {
                    uid: Some(owner.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn names(mut v: Vec<Arc<Pod>>) -> Vec<String> {
        v.sort_by_key(|p| ObjectKey::of(p.as_ref()));
        v.iter()
            .map(|p| ObjectKey::of(p.as_ref()).to_string())
            .collect()
    }

    #[test]
    fn indexes_follow_every_change() {
        let by_app: IndexFn<Pod> =
            Arc::new(|p: &Pod| p.meta().labels.get("app").cloned().into_iter().collect());
        let cache = Cache::new();
        cache.upsert(pod("a", "p1", "n1", "rs1", "web"));
        cache.upsert(pod("a", "p2", "", "rs1", "web"));
        // A custom index added after objects arrived covers them too.
        cache.add_index("app", by_app);
        cache.upsert(pod("b", "p3", "n1", "rs2", "db"));

        assert_eq!(names(cache.in_namespace("a")), ["a/p1", "a/p2"]);
        assert_eq!(names(cache.owned_by("rs1")), ["a/p1", "a/p2"]);
        assert_eq!(names(cache.on_node("n1")), ["a/p1", "b/p3"]);
        assert_eq!(names(cache.by_index("app", "db")), ["b/p3"]);
        let web = LabelSelector::parse("app=web").unwrap();
        assert_eq!(names(cache.select(None, &web)), ["a/p1", "a/p2"]);
        assert_eq!(names(cache.select(Some("b"), &web)), Vec::<String>::new());

        // Binding p2 moves it into the node index; replacing p1's owner moves it.
        cache.upsert(pod("a", "p2", "n2", "rs1", "web"));
        cache.upsert(pod("a", "p1", "n1", "rs9", "web"));
        assert_eq!(names(cache.on_node("n2")), ["a/p2"]);
        assert_eq!(names(cache.owned_by("rs1")), ["a/p2"]);
        assert_eq!(names(cache.owned_by("rs9")), ["a/p1"]);

        let removed = cache.remove(&ObjectKey::new("b", "p3")).unwrap();
        assert_eq!(removed.meta().name.as_deref(), Some("p3"));
        assert!(cache.by_index("app", "db").is_empty());
        assert!(cache.in_namespace("b").is_empty());
        assert_eq!(cache.len(), 2);
        assert!(cache.by_index("no-such-index", "x").is_empty());
    }
}
