//! Strategic merge patch (`application/strategic-merge-patch+json`), as the apiserver applies
//! it (`k8s.io/apimachinery/pkg/util/strategicpatch`, `mergeMap` with `MergeParallelList` and
//! `IgnoreUnmatchedNulls`).
//!
//! Objects merge key by key and `null` deletes a key; lists merge as their field's
//! [`Smp`] says (by merge key, as a set of scalars, or replaced whole). Directives:
//! `$patch: replace|delete` in maps, `$patch: delete|replace` items in merged lists,
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and `$retainKeys`.
//!
//! One deliberate difference: a value added where the original has none is merged into an
//! empty value rather than copied verbatim, so directives and `null`s inside it are applied
//! instead of leaking into the object.

use serde_json::{Map, Value as Json};

use super::schema::{Schema, Smp};
use super::{bad_request, unprocessable};
use crate::errors::ApiError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

type Result<T> = std::result::Result<T, ApiError>;

/// Applies `patch` to `original`, both JSON objects, under `schema`.
pub(crate) fn merge_map(
    mut original: Map<String, Json>,
    mut patch: Map<String, Json>,
    schema: &Schema,
) -> Result<Map<String, Json>> {
    if let Some(directive) = patch.get(DIRECTIVE).cloned() {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                merge_map(Map::new(), patch, schema)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_request(format!(
                "unknown patch type: {directive} in map: {}",
                Json::Object(patch)
            ))),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(field) if !field.is_empty() => (field.to_string(), true),
                _ => return Err(bad_request("invalid patch format of primitive list")),
            },
            None => (key, false),
        };
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let child = schema.field(&key);
        let Some(current) = original.get_mut(&key) else {
            if !delete_list {
                original.insert(key, fresh(patch_value, &child)?);
            }
            continue;
        };
        match (current.take(), patch_value) {
            (Json::Object(o), Json::Object(p)) => *current = Json::Object(merge_map(o, p, &child)?),
            (Json::Array(o), Json::Array(p)) => {
                *current = Json::Array(merge_list_field(o, p, &child, delete_list)?)
            }
            (o, p) => {
                // Different types (or scalars): the patch value wins, except for a deletion list,
                // which only ever removes.
                *current = if delete_list { o } else { fresh(p, &child)? };
            }
        }
    }
    Ok(original)
}

/// A patch value for a key the original lacks: merged into an empty value of its type.
fn fresh(value: Json, schema: &Schema) -> Result<Json> {
    Ok(match value {
        Json::Object(p) => Json::Object(merge_map(Map::new(), p, schema)?),
        Json::Array(p) => Json::Array(merge_list_field(Vec::new(), p, schema, false)?),
        other => other,
    })
}

/// `$retainKeys: [...]`: drops keys of the original that are not listed; every key the patch
/// sets must be listed.
fn apply_retain_keys(
    original: &mut Map<String, Json>,
    patch: &mut Map<String, Json>,
) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || bad_request("invalid patch format of retainKeys");
    let Json::Array(list) = retain else {
        return Err(bad());
    };
    let keep: Vec<&str> = list.iter().filter_map(Json::as_str).collect();
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep.contains(&key.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|key, _| keep.contains(&key.as_str()));
    Ok(())
}

/// The merge key of a list field, if it merges lists of objects.
fn merge_key(schema: &Schema) -> Option<&'static str> {
    match schema.list_rule().map(|r| r.smp) {
        Some(Smp::MergeByKey(key)) => Some(key),
        _ => None,
    }
}

/// `$setElementOrder/<list>`: merges the list (if the patch has it) and orders the result:
/// the directive's order first, then the patch's, then the original's.
fn apply_set_element_order(
    original: &mut Map<String, Json>,
    patch: &mut Map<String, Json>,
    schema: &Schema,
) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let bad = || bad_request("invalid patch format of setElementOrder list");
        let order = match patch.shift_remove(&directive) {
            Some(Json::Array(order)) => order,
            _ => return Err(bad()),
        };
        let field = match directive[SET_ELEMENT_ORDER.len()..].strip_prefix('/') {
            Some(field) if !field.is_empty() => field.to_string(),
            _ => return Err(bad()),
        };
        if patch.get(&field).is_some_and(Json::is_null) {
            // The whole list is deleted.
            original.shift_remove(&field);
            patch.shift_remove(&field);
            continue;
        }
        let original_list = match original.get(&field) {
            None | Some(Json::Null) => None,
            Some(Json::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_arg("list", other)),
        };
        let patch_list = match patch.shift_remove(&field) {
            None => None,
            Some(Json::Array(list)) => Some(list),
            Some(other) => return Err(bad_arg("list", &other)),
        };
        let child = schema.field(&field);
        let key = merge_key(&child);
        validate_with_order(patch_list.as_deref().unwrap_or_default(), &order, key)?;
        let merged = match (&original_list, patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => merge_list_field(Vec::new(), p, &child, false)?,
            (Some(o), Some(p)) => merge_list_field(o.clone(), p, &child, false)?,
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, key);
        let both = normalize_order(
            in_order,
            server_only,
            &order,
            original_list.as_deref().unwrap_or_default(),
            key,
        );
        original.insert(field, Json::Array(both));
    }
    Ok(())
}

/// Checks that the patch list's items appear in the same relative order as in the
/// `$setElementOrder` list (deletions aside).
fn validate_with_order(patch: &[Json], order: &[Json], key: Option<&str>) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Json> = patch
        .iter()
        .filter(|item| key.is_none() || !is_delete(item))
        .collect();
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if same_item(kept[p], &order[o], key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() {
        return Err(bad_request(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            Json::Array(patch.to_vec()),
            Json::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn same_item(a: &Json, b: &Json, key: Option<&str>) -> Result<bool> {
    let Some(key) = key else { return Ok(a == b) };
    let (Some(ka), Some(kb)) = (key_of(a, key)?, key_of(b, key)?) else {
        return Err(no_merge_key(if a.get(key).is_none() { a } else { b }, key));
    };
    Ok(ka == kb)
}

fn key_of<'a>(item: &'a Json, key: &str) -> Result<Option<&'a Json>> {
    match item {
        Json::Object(map) => Ok(map.get(key)),
        other => Err(bad_arg("map", other)),
    }
}

fn is_delete(item: &Json) -> bool {
    item.get(DIRECTIVE).and_then(Json::as_str) == Some("delete")
}

/// Merges the patch's list into the original's for one field, as its strategy says.
fn merge_list_field(
    original: Vec<Json>,
    patch: Vec<Json>,
    schema: &Schema,
    delete_list: bool,
) -> Result<Vec<Json>> {
    let strategy = schema.list_rule().map(|r| r.smp).unwrap_or(Smp::Replace);
    if strategy == Smp::Replace && !delete_list {
        return Ok(patch);
    }
    merge_list(
        original,
        patch,
        &schema.items(),
        merge_key(schema),
        delete_list,
    )
}

#[derive(PartialEq, Eq)]
enum ElementKind {
    Object,
    Scalar,
}

fn element_kind(lists: &[&[Json]]) -> Result<Option<ElementKind>> {
    let mut kind: Option<(ElementKind, std::mem::Discriminant<Json>)> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        if item.is_array() {
            return Err(unprocessable("lists of lists are not supported"));
        }
        let this = std::mem::discriminant(item);
        match &kind {
            None => {
                let k = if item.is_object() {
                    ElementKind::Object
                } else {
                    ElementKind::Scalar
                };
                kind = Some((k, this));
            }
            Some((_, seen)) if *seen != this => {
                return Err(bad_request(format!(
                    "list element types are not identical: {}",
                    lists
                        .iter()
                        .map(|l| Json::Array(l.to_vec()).to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )));
            }
            Some(_) => {}
        }
    }
    Ok(kind.map(|(k, _)| k))
}

fn merge_list(
    original: Vec<Json>,
    patch: Vec<Json>,
    items: &Schema,
    key: Option<&str>,
    delete_list: bool,
) -> Result<Vec<Json>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let Some(kind) = element_kind(&[&original, &patch])? else {
        return Ok(original);
    };
    if kind == ElementKind::Scalar {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Json> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None);
        return Ok(normalize_order(
            in_patch,
            server_only,
            &patch,
            &original,
            None,
        ));
    }
    let Some(key) = key else {
        return Err(bad_request("cannot merge lists without merge key"));
    };
    let (original, patch) = apply_list_directives(original, patch, key)?;
    let mut merged = original.clone();
    for item in &patch {
        let Json::Object(item_map) = item else {
            return Err(bad_arg("map", item));
        };
        let Some(value) = item_map.get(key) else {
            return Err(no_merge_key(item, key));
        };
        match position(&merged, key, value) {
            Some(i) => match &mut merged[i] {
                Json::Object(current) => {
                    let current = std::mem::take(current);
                    merged[i] = Json::Object(merge_map(current, item_map.clone(), items)?);
                }
                other => return Err(bad_arg("map", other)),
            },
            None => merged.push(Json::Object(merge_map(
                Map::new(),
                item_map.clone(),
                items,
            )?)),
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, Some(key));
    Ok(normalize_order(
        in_patch,
        server_only,
        &patch,
        &original,
        Some(key),
    ))
}

/// Handles `$patch` items of a merged list of objects: `delete` removes the original items with
/// that key, `replace` makes the rest of the patch list the whole list.
fn apply_list_directives(
    mut original: Vec<Json>,
    patch: Vec<Json>,
    key: &str,
) -> Result<(Vec<Json>, Vec<Json>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Json::Object(map) = &item else {
            return Err(bad_arg("map", &item));
        };
        let Some(directive) = map.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = map.get(key) else {
                    return Err(no_merge_key(&item, key));
                };
                original.retain(|o| o.get(key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(bad_request(
                    "merging lists cannot yet be specified in the patch",
                ));
            }
            _ => {
                return Err(bad_request(format!(
                    "unknown patch type: {directive} in map: {item}"
                )));
            }
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

fn position(list: &[Json], key: &str, value: &Json) -> Option<usize> {
    list.iter().position(|item| item.get(key) == Some(value))
}

/// Where `item` sits in `list`: by merge key for objects, by value for scalars.
fn index_in(list: &[Json], item: &Json, key: Option<&str>) -> Option<usize> {
    match key {
        Some(key) => {
            let value = item.get(key)?;
            position(list, key, value)
        }
        None => list.iter().position(|v| v == item),
    }
}

/// Splits `merged` into the items present in `by` and the others, keeping their order.
fn partition(merged: Vec<Json>, by: &[Json], key: Option<&str>) -> (Vec<Json>, Vec<Json>) {
    merged
        .into_iter()
        .partition(|item| index_in(by, item, key).is_some())
}

/// Orders the patch's items as in the patch, the server-only items as in the original, then
/// interleaves them, keeping each group's order (`normalizeElementOrder`).
fn normalize_order(
    patch_items: Vec<Json>,
    server_only: Vec<Json>,
    patch_order: &[Json],
    server_order: &[Json],
    key: Option<&str>,
) -> Vec<Json> {
    let patch_items = sort_by_order(patch_items, patch_order, key);
    let server_only = sort_by_order(server_only, server_order, key);
    merge_sorted(server_only, patch_items, server_order, key)
}

fn sort_by_order(mut items: Vec<Json>, order: &[Json], key: Option<&str>) -> Vec<Json> {
    let deletions: Vec<Json> = if key.is_some() {
        let (deletes, kept): (Vec<Json>, Vec<Json>) = items.into_iter().partition(is_delete);
        items = kept;
        deletes
    } else {
        Vec::new()
    };
    items.sort_by_key(|item| index_in(order, item, key).unwrap_or(usize::MAX));
    items.extend(deletions);
    items
}

/// Inserts each item of `left` (server-only) among `right` (patch items): before the first
/// right item that comes after it in the original list (`mergeSortedSlice`).
fn merge_sorted(
    left: Vec<Json>,
    right: Vec<Json>,
    server_order: &[Json],
    key: Option<&str>,
) -> Vec<Json> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let l_first = match (
                    index_in(server_order, l, key),
                    index_in(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                };
                if l_first {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
        }
    }
    out
}

fn kind_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "nil",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "list",
        Json::Object(_) => "map",
    }
}

fn bad_arg(expected: &str, actual: &Json) -> ApiError {
    bad_request(format!(
        "expected a {expected}, but received a {}",
        kind_name(actual)
    ))
}

fn no_merge_key(item: &Json, key: &str) -> ApiError {
    bad_request(format!(
        "map: {item} does not contain declared merge key: {key}"
    ))
}
