//! Every manifest in `tests/corpus/` survives YAML → protobuf → JSON unchanged in meaning:
//! the object model knows every field (decoded with fieldValidation=Strict), presence of zero
//! values and empty objects is kept, and quantities keep their value.

use navarch_api::Quantity;
use navarch_api::codec::{self, FieldValidation};
use navarch_api::kinds;
use prost::Message;
use serde_json::Value;

/// Drops what Kubernetes treats as absent (nulls, empty lists) so both sides compare by meaning.
fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| normalize(i).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn same(path: &str, a: &Value, b: &Value, problems: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                match (x.get(k), y.get(k)) {
                    (Some(a), Some(b)) => same(&format!("{path}.{k}"), a, b, problems),
                    (a, b) => problems.push(format!("{path}.{k}: {a:?} vs {b:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                same(&format!("{path}[{i}]"), a, b, problems);
            }
        }
        _ if a == b => {}
        _ => {
            let text = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let as_quantity = |v: &Value| text(v).and_then(|s| s.parse::<Quantity>().ok());
            match (as_quantity(a), as_quantity(b)) {
                (Some(x), Some(y)) if x == y => {}
                _ => problems.push(format!("{path}: {a} vs {b}")),
            }
        }
    }
}

#[test]
fn corpus_round_trips_through_protobuf() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 30, "corpus has {} files", files.len());
    let mut documents = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, doc) in codec::yaml_documents(&text)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            documents += 1;
            let name = format!("{}#{i}", file.file_name().unwrap().to_string_lossy());
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            let kind = doc["kind"].as_str().unwrap_or_default();
            let Some(info) = kinds::by_kind(api_version, kind) else {
                failures.push(format!("{name}: kind {api_version}/{kind} not served"));
                continue;
            };
            let decoded = match codec::from_json(&info.descriptor(), &doc, FieldValidation::Strict)
            {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            };
            // Through the protobuf wire form, as the store keeps it.
            let bytes = decoded.message.encode_to_vec();
            let back =
                prost_reflect::DynamicMessage::decode(info.descriptor(), bytes.as_slice()).unwrap();
            let json = codec::to_json(&back);
            let mut problems = Vec::new();
            same(
                "",
                &normalize(&doc).unwrap(),
                &normalize(&json).unwrap(),
                &mut problems,
            );
            if !problems.is_empty() {
                failures.push(format!("{name}: {}", problems.join("; ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {documents} documents failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(documents >= 40);
}
