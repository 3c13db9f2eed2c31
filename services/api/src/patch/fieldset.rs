//! Sets of field paths, as recorded in `metadata.managedFields` (`fieldsType: FieldsV1`).
//!
//! A path is a list of [`PathElement`]s. A [`FieldSet`] is a tree of them whose nodes are
//! *members* when the path itself is in the set. The FieldsV1 JSON form writes a member node
//! that also has children as `".": {}`, field names as `f:<name>`, associative-list items as
//! `k:<key object as JSON>`, set values as `v:<value as JSON>` and positions as `i:<index>`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value as Json};

/// One step of a path. The derived order (fields, then keys, then values, then indices) is the
/// order structured-merge-diff writes FieldsV1 in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    Field(String),
    /// The key fields of an associative-list item, as a JSON object with sorted keys.
    Key(String),
    /// An item of a set, as JSON.
    Value(String),
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(key) => format!("k:{key}"),
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Result<Self, String> {
        let (prefix, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid path element {s:?}"))?;
        let canonical = |text: &str| -> Result<String, String> {
            let value: Json = serde_json::from_str(text)
                .map_err(|e| format!("invalid path element {s:?}: {e}"))?;
            Ok(canonical_json(&value))
        };
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => Ok(PathElement::Key(canonical(rest)?)),
            "v" => Ok(PathElement::Value(canonical(rest)?)),
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid path element {s:?}")),
            _ => Err(format!("invalid path element {s:?}")),
        }
    }
}

/// JSON with object keys sorted (recursively), so equal values encode equally.
pub(crate) fn canonical_json(value: &Json) -> String {
    fn sorted(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// A path, printed as structured-merge-diff prints it in conflict messages:
/// `.spec.template.spec.containers[name="nginx"].image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path(pub Vec<PathElement>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for element in &self.0 {
            match element {
                PathElement::Field(name) => write!(f, ".{name}")?,
                PathElement::Key(key) => {
                    let parts = match serde_json::from_str::<Json>(key) {
                        Ok(Json::Object(map)) => map
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>(),
                        _ => vec![key.clone()],
                    };
                    write!(f, "[{}]", parts.join(","))?;
                }
                PathElement::Value(value) => write!(f, "[={value}]")?,
                PathElement::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A set of paths, as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Adds `path` (the empty path is the root itself).
    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether this node itself is in the set.
    pub(crate) fn is_member(&self) -> bool {
        self.member
    }

    /// The direct children of this node.
    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    pub(crate) fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (element, theirs) in &other.children {
            let merged = match out.children.get(element) {
                Some(ours) => ours.union(theirs),
                None => theirs.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, ours) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => ours.difference(theirs),
                None => ours.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, ours) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = ours.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Removes `path` and everything below it.
    pub(crate) fn remove_subtree(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => *self = FieldSet::new(),
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove_subtree(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Removes `path` itself, keeping what is below it.
    pub(crate) fn remove_member(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = false,
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove_member(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// This set without the members that have part of `keep` below them: removing such a
    /// field or item from an object would take `keep`'s paths with it.
    pub(crate) fn without_ancestors_of(&self, keep: &FieldSet) -> FieldSet {
        self.protect(Some(keep))
    }

    fn protect(&self, keep: Option<&FieldSet>) -> FieldSet {
        let keeps_below = keep.is_some_and(|k| !k.children.is_empty());
        let mut out = FieldSet {
            member: self.member && !keeps_below,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = child.protect(keep.and_then(|k| k.children.get(element)));
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    /// Every path in the set, in FieldsV1 order.
    pub(crate) fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        if self.member {
            out.push(Path(prefix.clone()));
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON form.
    pub(crate) fn to_fields_v1(&self) -> Json {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Json::Object(Map::new()));
        }
        for (element, child) in &self.children {
            map.insert(element.encode(), child.to_fields_v1());
        }
        Json::Object(map)
    }

    /// Parses the FieldsV1 JSON form.
    pub(crate) fn from_fields_v1(json: &Json) -> Result<FieldSet, String> {
        let Json::Object(map) = json else {
            return Err("FieldsV1 must be a JSON object".into());
        };
        let mut set = FieldSet::new();
        for (key, value) in map {
            if key == "." {
                set.member = true;
                continue;
            }
            let element = PathElement::decode(key)?;
            let mut child = FieldSet::from_fields_v1(value)?;
            if child.children.is_empty() {
                // A leaf (`"f:replicas": {}`) is a member.
                child.member = true;
            }
            set.children.insert(element, child);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    impl FieldSet {
        fn at(&self, path: &[PathElement]) -> Option<&FieldSet> {
            match path.split_first() {
                None => Some(self),
                Some((first, rest)) => self.children.get(first)?.at(rest),
            }
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let v1 = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}},
                "f:finalizers": {"v:\"a\"": {}}
            }
        });
        let set = FieldSet::from_fields_v1(&v1).unwrap();
        let nginx = PathElement::Key(r#"{"name":"nginx"}"#.into());
        assert!(
            set.at(&[field("spec"), field("replicas")])
                .unwrap()
                .is_member()
        );
        let item = set
            .at(&[
                field("spec"),
                field("template"),
                field("spec"),
                field("containers"),
                nginx,
            ])
            .unwrap();
        assert!(item.is_member());
        assert_eq!(set.to_fields_v1(), v1);
        let printed: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
        assert!(
            printed.contains(&r#".spec.template.spec.containers[name="nginx"].image"#.to_string()),
            "{printed:?}"
        );
        assert!(printed.contains(&r#".spec.finalizers[="a"]"#.to_string()));
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[field("spec"), field("replicas")]);
        a.insert(&[field("spec"), field("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[field("spec"), field("replicas")]);
        assert_eq!(a.intersection(&b), b);
        let diff = a.difference(&b);
        assert_eq!(
            diff.paths(),
            vec![Path(vec![field("spec"), field("paused")])]
        );
        assert_eq!(diff.union(&b), a);
        assert!(a.difference(&a).is_empty());
        a.remove_subtree(&[field("spec")]);
        assert!(a.is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:{": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 3})).is_err());
    }
}
