//! Server-side apply and `metadata.managedFields` bookkeeping (a readable subset of
//! sigs.k8s.io/structured-merge-diff's `merge.Updater`).
//!
//! Each managedFields entry is a manager identity (name, operation, and for `Update` the
//! apiVersion; plus the subresource) owning a [`FieldSet`]. An apply merges the applied
//! configuration into the live object, prunes the fields this manager applied last time but
//! not now (unless someone else owns them), and fails with a conflict when it changes a field
//! another manager owns (unless forced, which takes the field over). Any other write records
//! the fields it changed for its manager and takes them from everyone else.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use super::bad_request;
use super::fieldset::{FieldSet, Path, PathElement, canonical_json};
use super::schema::{ListRule, Schema, Ssa};
use crate::errors::{ApiError, FieldError, FieldErrorType, Reason};
use crate::kinds::{self, KindInfo};

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";
const FIELDS_V1: &str = "FieldsV1";
/// The manager Kubernetes gives the fields of an object that has no managedFields when it is
/// first applied to.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Metadata fields nobody owns (`stripmeta.go`), plus the deletion markers the server sets.
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// One managedFields entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: String,
    fields: FieldSet,
}

impl Entry {
    /// Whether this entry is the one an operation by `manager` writes to. Appliers keep one
    /// entry whatever the apiVersion; updaters one per apiVersion.
    fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == APPLY || self.api_version == api_version)
    }

    /// How conflict messages name the manager (`printManager`).
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn sort_key(&self) -> (&str, &str, &str, &str, &str) {
        (
            &self.operation,
            self.time.as_deref().unwrap_or(""),
            &self.manager,
            &self.api_version,
            &self.subresource,
        )
    }

    fn to_json(&self) -> Json {
        let mut map = Map::new();
        map.insert("manager".into(), Json::String(self.manager.clone()));
        map.insert("operation".into(), Json::String(self.operation.clone()));
        map.insert("apiVersion".into(), Json::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            map.insert("time".into(), Json::String(time.clone()));
        }
        map.insert("fieldsType".into(), Json::String(FIELDS_V1.into()));
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            map.insert("subresource".into(), Json::String(self.subresource.clone()));
        }
        Json::Object(map)
    }

    fn from_json(json: &Json) -> Result<Entry, String> {
        let text = |name: &str| {
            json.get(name)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let fields_type = text("fieldsType");
        if !fields_type.is_empty() && fields_type != FIELDS_V1 {
            return Err(format!("unsupported fieldsType {fields_type:?}"));
        }
        let fields = match json.get("fieldsV1") {
            None | Some(Json::Null) => FieldSet::new(),
            Some(v1) => FieldSet::from_fields_v1(v1)?,
        };
        let operation = text("operation");
        if operation != APPLY && operation != UPDATE {
            return Err(format!("unknown operation {operation:?}"));
        }
        Ok(Entry {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            time: json.get("time").and_then(Json::as_str).map(str::to_string),
            subresource: text("subresource"),
            fields,
        })
    }
}

fn managed_fields(object: &Json) -> Option<&Vec<Json>> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
}

/// Decodes an object's managedFields; entries owning nothing are dropped.
fn decode_entries(object: &Json) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for json in managed_fields(object)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let entry = Entry::from_json(json)?;
        if !entry.fields.is_empty() {
            out.push(entry);
        }
    }
    Ok(out)
}

/// `managedFields: [{}]` (only empty entries): the documented way to clear managedFields.
fn is_reset(object: &Json) -> bool {
    managed_fields(object).is_some_and(|list| {
        !list.is_empty()
            && list
                .iter()
                .all(|e| e.as_object().is_some_and(Map::is_empty))
    })
}

fn without_managed_fields(object: &Json) -> Json {
    let mut object = object.clone();
    if let Some(Json::Object(meta)) = object.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    object
}

/// Writes the entries (sorted as Kubernetes sorts them) into the object's metadata.
fn store_entries(object: &mut Json, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let Json::Object(root) = object else { return };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Json::Object(Map::new()));
    let Json::Object(meta) = meta else { return };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Json::Array(entries.iter().map(Entry::to_json).collect()),
        );
    }
}

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

/// Removes the paths nobody owns: type and system metadata, and whatever the subresource does
/// not write (status through the main resource, spec through `status`).
fn strip_unowned(set: &mut FieldSet, kind: &KindInfo, subresource: &str) {
    set.remove_subtree(&[field("apiVersion")]);
    set.remove_subtree(&[field("kind")]);
    set.remove_member(&[field("metadata")]);
    for name in UNOWNED_METADATA {
        set.remove_subtree(&[field("metadata"), field(name)]);
    }
    match subresource {
        "" if kind.status => set.remove_subtree(&[field("status")]),
        "status" => set.remove_subtree(&[field("spec")]),
        _ => {}
    }
}

/// The path element of a list item, or `None` when the list is atomic or the item lacks a key.
fn item_element(rule: ListRule, item: &Json) -> Option<PathElement> {
    match rule.ssa {
        Ssa::Atomic => None,
        Ssa::Set => Some(PathElement::Value(canonical_json(item))),
        Ssa::Map(keys) => {
            let obj = item.as_object()?;
            let mut key = Map::new();
            let mut names: Vec<_> = keys.iter().collect();
            names.sort_by_key(|k| k.name);
            for k in names {
                let value = match obj.get(k.name) {
                    Some(v) if !v.is_null() && !v.is_array() && !v.is_object() => v.clone(),
                    _ => Json::String(k.default?.to_string()),
                };
                key.insert(k.name.to_string(), value);
            }
            Some(PathElement::Key(canonical_json(&Json::Object(key))))
        }
    }
}

/// The list rule when server-side apply merges the list item by item.
fn granular_list(schema: &Schema) -> Option<ListRule> {
    schema.list_rule().filter(|r| r.ssa != Ssa::Atomic)
}

/// Adds every path of `value` (at `path`) to `out`: leaves, list items, and empty objects and
/// lists (structured-merge-diff's `ToFieldSet`).
fn collect(schema: &Schema, value: &Json, path: &mut Vec<PathElement>, out: &mut FieldSet) {
    match value {
        Json::Null => {}
        Json::Object(map) if schema.is_granular_object() && !map.is_empty() => {
            for (k, v) in map {
                path.push(field(k));
                collect(&schema.field(k), v, path, out);
                path.pop();
            }
        }
        Json::Array(items) if !items.is_empty() && granular_list(schema).is_some() => {
            let rule = granular_list(schema).expect("checked");
            let item_schema = schema.items();
            for item in items {
                let Some(element) = item_element(rule, item) else {
                    continue;
                };
                path.push(element);
                out.insert(path);
                if rule.ssa != Ssa::Set {
                    collect(&item_schema, item, path, out);
                }
                path.pop();
            }
        }
        _ => out.insert(path),
    }
}

/// The paths of `value`.
fn field_set(schema: &Schema, value: &Json) -> FieldSet {
    let mut out = FieldSet::new();
    collect(schema, value, &mut Vec::new(), &mut out);
    out
}

/// What changed between two versions of an object.
#[derive(Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    fn strip_unowned(&mut self, kind: &KindInfo, subresource: &str) {
        strip_unowned(&mut self.added, kind, subresource);
        strip_unowned(&mut self.modified, kind, subresource);
        strip_unowned(&mut self.removed, kind, subresource);
    }
}

/// The items of a granular list, by path element (first occurrence wins).
fn index_items(rule: ListRule, items: &[Json]) -> Vec<(PathElement, &Json)> {
    let mut seen = HashSet::new();
    items
        .iter()
        .filter_map(|item| item_element(rule, item).map(|e| (e, item)))
        .filter(|(e, _)| seen.insert(e.clone()))
        .collect()
}

fn compare(
    schema: &Schema,
    old: Option<&Json>,
    new: Option<&Json>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let old = old.filter(|v| !v.is_null());
    let new = new.filter(|v| !v.is_null());
    let (old, new) = match (old, new) {
        (None, None) => return,
        (None, Some(n)) => return collect(schema, n, path, &mut out.added),
        (Some(o), None) => return collect(schema, o, path, &mut out.removed),
        (Some(o), Some(n)) => (o, n),
    };
    match (old, new) {
        (Json::Object(o), Json::Object(n))
            if schema.is_granular_object() && !(o.is_empty() && n.is_empty()) =>
        {
            let keys: Vec<&String> = o
                .keys()
                .chain(n.keys().filter(|k| !o.contains_key(*k)))
                .collect();
            for k in keys {
                path.push(field(k));
                compare(&schema.field(k), o.get(k), n.get(k), path, out);
                path.pop();
            }
        }
        (Json::Array(o), Json::Array(n))
            if granular_list(schema).is_some() && !(o.is_empty() && n.is_empty()) =>
        {
            let rule = granular_list(schema).expect("checked");
            let item_schema = schema.items();
            let old_items = index_items(rule, o);
            let new_items: HashMap<PathElement, &Json> = index_items(rule, n).into_iter().collect();
            let old_map: HashMap<&PathElement, &Json> =
                old_items.iter().map(|(e, v)| (e, *v)).collect();
            for (element, old_item) in &old_items {
                path.push(element.clone());
                match new_items.get(element) {
                    None => {
                        out.removed.insert(path);
                        collect(&item_schema, old_item, path, &mut out.removed);
                    }
                    Some(new_item) if rule.ssa != Ssa::Set => {
                        compare(&item_schema, Some(old_item), Some(new_item), path, out)
                    }
                    Some(_) => {}
                }
                path.pop();
            }
            for (element, new_item) in index_items(rule, n) {
                if old_map.contains_key(&element) {
                    continue;
                }
                path.push(element);
                out.added.insert(path);
                if rule.ssa != Ssa::Set {
                    collect(&item_schema, new_item, path, &mut out.added);
                }
                path.pop();
            }
        }
        (o, n) => {
            if o != n {
                out.modified.insert(path);
            }
        }
    }
}

fn diff(schema: &Schema, old: &Json, new: &Json) -> Comparison {
    let mut out = Comparison::default();
    compare(schema, Some(old), Some(new), &mut Vec::new(), &mut out);
    out
}

/// Merges an applied configuration into the live value (structured-merge-diff's `Merge`):
/// granular objects key by key, granular lists item by item, everything else replaced.
fn merge(schema: &Schema, live: Option<&Json>, config: &Json) -> Json {
    let Some(live) = live.filter(|v| !v.is_null()) else {
        return config.clone();
    };
    match (live, config) {
        (Json::Object(l), Json::Object(c)) if schema.is_granular_object() => {
            let mut out = l.clone();
            for (k, v) in c {
                let merged = merge(&schema.field(k), l.get(k), v);
                out.insert(k.clone(), merged);
            }
            Json::Object(out)
        }
        (Json::Array(l), Json::Array(c)) if granular_list(schema).is_some() => Json::Array(
            merge_lists(schema, granular_list(schema).expect("checked"), l, c),
        ),
        _ => config.clone(),
    }
}

/// Merges granular lists, keeping the live order for live items and placing the applied
/// items in the applied order (a port of structured-merge-diff's `visitListItems`).
fn merge_lists(schema: &Schema, rule: ListRule, live: &[Json], config: &[Json]) -> Vec<Json> {
    let items = schema.items();
    let lhs: Vec<(Option<PathElement>, &Json)> =
        live.iter().map(|v| (item_element(rule, v), v)).collect();
    let rhs: Vec<(Option<PathElement>, &Json)> =
        config.iter().map(|v| (item_element(rule, v), v)).collect();
    let mut observed_lhs: HashMap<&PathElement, &Json> = HashMap::new();
    for (e, v) in &lhs {
        if let Some(e) = e {
            observed_lhs.entry(e).or_insert(v);
        }
    }
    let observed_rhs: HashSet<&PathElement> = rhs.iter().filter_map(|(e, _)| e.as_ref()).collect();
    let mut shared = rhs
        .iter()
        .filter_map(|(e, _)| e.as_ref())
        .filter(|e| observed_lhs.contains_key(e));
    let mut next_shared = shared.next();
    let merge_item = |element: &PathElement, config_item: &Json| -> Json {
        if rule.ssa == Ssa::Set {
            return config_item.clone();
        }
        merge(&items, observed_lhs.get(element).copied(), config_item)
    };

    let mut out = Vec::with_capacity(live.len() + config.len());
    let mut merged_rhs: HashSet<&PathElement> = HashSet::new();
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            if let (Some(l), Some(r)) = (&lhs[li].0, &rhs[ri].0)
                && l == r
            {
                merged_rhs.insert(r);
                out.push(merge_item(r, rhs[ri].1));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if let Some(l) = &lhs[li].0
                && observed_rhs.contains(l)
                && next_shared.is_some_and(|n| n != l)
            {
                // A shared item, but not the next one in the applied order.
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            match &lhs[li].0 {
                Some(l) if observed_rhs.contains(l) => {
                    if merged_rhs.contains(l) {
                        li += 1;
                        continue;
                    }
                }
                _ => {
                    out.push(lhs[li].1.clone());
                    li += 1;
                    continue;
                }
            }
        }
        if ri < rhs.len() {
            if let Some(r) = &rhs[ri].0 {
                merged_rhs.insert(r);
                out.push(merge_item(r, rhs[ri].1));
                if next_shared == Some(r) {
                    next_shared = shared.next();
                }
            }
            ri += 1;
        }
    }
    out
}

/// Removes the paths in `set` from `value`: a member path removes the field or item, otherwise
/// the walk goes on below it.
fn remove_paths(schema: &Schema, value: &mut Json, set: &FieldSet) {
    for (element, child) in set.children() {
        match (element, &mut *value) {
            (PathElement::Field(name), Json::Object(map)) => {
                if child.is_member() {
                    map.shift_remove(name);
                } else if let Some(v) = map.get_mut(name) {
                    remove_paths(&schema.field(name), v, child);
                }
            }
            (PathElement::Key(_) | PathElement::Value(_), Json::Array(items)) => {
                let Some(rule) = granular_list(schema) else {
                    continue;
                };
                let Some(i) = items
                    .iter()
                    .position(|item| item_element(rule, item).as_ref() == Some(element))
                else {
                    continue;
                };
                if child.is_member() {
                    items.remove(i);
                } else {
                    remove_paths(&schema.items(), &mut items[i], child);
                }
            }
            _ => {}
        }
    }
}

/// Checks an applied configuration: list items need their keys, once each; fields must exist.
fn validate_config(
    schema: &Schema,
    value: &Json,
    path: &mut Vec<PathElement>,
) -> Result<(), String> {
    let here = |path: &[PathElement]| Path(path.to_vec()).to_string();
    match (schema, value) {
        (Schema::Unknown, _) => {
            return Err(format!("{}: field not declared in schema", here(path)));
        }
        (_, Json::Object(map)) if schema.is_granular_object() => {
            for (k, v) in map {
                path.push(field(k));
                validate_config(&schema.field(k), v, path)?;
                path.pop();
            }
        }
        (_, Json::Array(items)) => {
            let Some(rule) = granular_list(schema) else {
                return Ok(());
            };
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let Some(element) = item_element(rule, item) else {
                    let Ssa::Map(keys) = rule.ssa else {
                        unreachable!("sets always have an element")
                    };
                    let missing = keys
                        .iter()
                        .find(|k| k.default.is_none() && item.get(k.name).is_none_or(Json::is_null))
                        .map_or("", |k| k.name);
                    return Err(format!(
                        "{}: element {i}: associative list with keys has an element that omits key field {missing:?} (and doesn't have default value)",
                        here(path)
                    ));
                };
                if !seen.insert(element.clone()) {
                    path.push(element);
                    return Err(format!(
                        "{}: duplicate entries for key {}",
                        here(&path[..path.len() - 1]),
                        here(&path[path.len() - 1..])
                    ));
                }
                if rule.ssa != Ssa::Set {
                    path.push(element);
                    validate_config(&schema.items(), item, path)?;
                    path.pop();
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Drops `null`s: an applied `null` neither sets nor claims anything here.
fn without_nulls(value: &Json) -> Json {
    match value {
        Json::Object(map) => Json::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// The `Conflict` error for fields owned by other managers (`internal/conflict.go`).
fn conflict_error(conflicts: Vec<(&Entry, Vec<Path>)>) -> ApiError {
    let count: usize = conflicts.iter().map(|(_, paths)| paths.len()).sum();
    let message = if count == 1 {
        let (entry, paths) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            entry.describe(),
            paths[0]
        )
    } else {
        let mut lines = Vec::new();
        for (entry, paths) in &conflicts {
            lines.push(format!("conflicts with {}:", entry.describe()));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!("Apply failed with {count} conflicts: {}", lines.join("\n"))
    };
    let mut err = ApiError::new(Reason::Conflict, message);
    // Kubernetes' cause type is `FieldManagerConflict`; `FieldErrorType` has no such variant.
    err.causes = conflicts
        .iter()
        .flat_map(|(entry, paths)| {
            paths.iter().map(|p| FieldError {
                kind: FieldErrorType::Forbidden,
                field: p.to_string(),
                value: None,
                detail: format!("conflict with {}", entry.describe()),
            })
        })
        .collect();
    err
}

/// Server-side apply of `config` (already parsed) onto `current` (`Null` or `{}` when the
/// object does not exist yet).
pub(crate) fn apply(
    kind: &KindInfo,
    current: &Json,
    config: &Json,
    manager: &str,
    force: bool,
    subresource: &str,
    now: &str,
) -> Result<Json, ApiError> {
    let Json::Object(config_map) = config else {
        return Err(bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    };
    let api_version = config_map
        .get("apiVersion")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let config_kind = config_map
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or_default();
    if api_version != kind.api_version() || config_kind != kind.kind {
        let (group, version) = kinds::split_api_version(api_version);
        return Err(bad_request(format!(
            "invalid object type: {group}/{version}, Kind={config_kind}"
        )));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(bad_request("metadata.managedFields must be nil"));
    }
    let schema = Schema::root(kind);
    let mut config = without_nulls(config);
    if let Json::Object(map) = &mut config {
        match subresource {
            "" if kind.status => drop(map.shift_remove("status")),
            "status" => drop(map.shift_remove("spec")),
            _ => {}
        }
    }
    validate_config(&schema, &config, &mut Vec::new()).map_err(bad_request)?;

    let exists = current.as_object().is_some_and(|m| !m.is_empty());
    let live = if exists {
        without_managed_fields(current)
    } else {
        Json::Object(Map::new())
    };
    let mut entries = decode_entries(current)
        .map_err(|e| ApiError::internal(format!("failed to decode managed fields: {e}")))?;
    if exists && managed_fields(current).is_none_or(Vec::is_empty) {
        // Fields set before anyone applied belong to a stand-in manager, so the first apply
        // cannot silently take them over.
        let mut fields = field_set(&schema, &live);
        strip_unowned(&mut fields, kind, "");
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: UPDATE.into(),
            api_version: kind.api_version(),
            time: Some(now.to_string()),
            subresource: String::new(),
            fields,
        });
    }

    let mut merged = merge(&schema, Some(&live), &config);
    let mut applied = field_set(&schema, &config);
    strip_unowned(&mut applied, kind, subresource);

    let mine = entries
        .iter()
        .position(|e| e.is(manager, APPLY, "", subresource));
    let others = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .fold(FieldSet::new(), |acc, (_, e)| acc.union(&e.fields));
    if let Some(last) = mine.map(|i| &entries[i].fields) {
        // Prune what this manager applied before and no longer applies, keeping anything
        // another manager (or this apply) still owns, or owns something inside of.
        let keep = others.union(&applied);
        let to_remove = last.difference(&keep).without_ancestors_of(&keep);
        remove_paths(&schema, &mut merged, &to_remove);
    }

    let mut cmp = diff(&schema, &live, &merged);
    cmp.strip_unowned(kind, subresource);
    let changed = cmp.changed();
    let mut conflicts: Vec<(&Entry, Vec<Path>)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .map(|(_, e)| (e, e.fields.intersection(&changed).paths()))
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|(a, _), (b, _)| {
            (&a.manager, &a.operation, &a.api_version, &a.subresource).cmp(&(
                &b.manager,
                &b.operation,
                &b.api_version,
                &b.subresource,
            ))
        });
        return Err(conflict_error(conflicts));
    }

    let object_changed = !cmp.is_empty();
    let mut out_entries = Vec::with_capacity(entries.len() + 1);
    let mut previous = None;
    for (i, mut entry) in entries.into_iter().enumerate() {
        if Some(i) == mine {
            previous = Some(entry);
            continue;
        }
        entry.fields = entry.fields.difference(&changed).difference(&cmp.removed);
        out_entries.push(entry);
    }
    let time = match &previous {
        Some(p) if !object_changed && p.fields == applied => p.time.clone(),
        _ => Some(now.to_string()),
    };
    out_entries.push(Entry {
        manager: manager.to_string(),
        operation: APPLY.into(),
        api_version: kind.api_version(),
        time,
        subresource: subresource.to_string(),
        fields: applied,
    });
    store_entries(&mut merged, out_entries);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) by `manager` in `new`'s managedFields.
pub(crate) fn record_update(
    kind: &KindInfo,
    old: &Json,
    new: &Json,
    manager: &str,
    subresource: &str,
    now: &str,
) -> Json {
    if !new.is_object() {
        return new.clone();
    }
    let old = if old.is_object() {
        old.clone()
    } else {
        Json::Object(Map::new())
    };
    // A write may replace managedFields (not through a subresource); `[{}]` clears them.
    let mut entries = if !subresource.is_empty() {
        decode_entries(&old).unwrap_or_default()
    } else if is_reset(new) {
        Vec::new()
    } else {
        match decode_entries(new) {
            Ok(entries) if !entries.is_empty() => entries,
            _ => decode_entries(&old).unwrap_or_default(),
        }
    };
    let schema = Schema::root(kind);
    let mut cmp = diff(
        &schema,
        &without_managed_fields(&old),
        &without_managed_fields(new),
    );
    cmp.strip_unowned(kind, subresource);
    let mut out = new.clone();
    if !cmp.is_empty() {
        let changed = cmp.changed();
        let api_version = kind.api_version();
        let mut mine = FieldSet::new();
        for entry in &mut entries {
            entry.fields = entry.fields.difference(&changed).difference(&cmp.removed);
            if entry.is(manager, UPDATE, &api_version, subresource) {
                mine = std::mem::take(&mut entry.fields);
            }
        }
        entries.retain(|e| !e.fields.is_empty());
        entries.push(Entry {
            manager: manager.to_string(),
            operation: UPDATE.into(),
            api_version,
            time: Some(now.to_string()),
            subresource: subresource.to_string(),
            fields: mine.union(&changed),
        });
    }
    store_entries(&mut out, entries);
    out
}
