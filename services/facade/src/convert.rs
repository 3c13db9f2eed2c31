//! The conversions a client can ask for in `Accept`: a server-side Table (what `kubectl get`
//! prints, see [`crate::tables`]) or PartialObjectMetadata (metadata-only clients).

use navarch_api::ApiError;
use navarch_api::kinds::KindInfo;
use serde_json::{Value as Json, json};

use crate::negotiate::Conversion;
use crate::query::Query;
use crate::tables::{self, IncludeObject, TableOptions, TableVersion};

fn meta_api_version(v1beta1: bool) -> &'static str {
    if v1beta1 {
        "meta.k8s.io/v1beta1"
    } else {
        "meta.k8s.io/v1"
    }
}

/// An object's PartialObjectMetadata.
pub fn partial_metadata(obj: &Json, v1beta1: bool) -> Json {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": meta_api_version(v1beta1),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Table options from the query (`includeObject`) and the version asked for.
pub fn table_options(q: &Query, v1beta1: bool) -> Result<TableOptions, ApiError> {
    Ok(TableOptions {
        include_object: IncludeObject::parse(&q.include_object)?,
        version: if v1beta1 {
            TableVersion::V1Beta1
        } else {
            TableVersion::V1
        },
        ..Default::default()
    })
}

/// Converts one object.
pub fn single(
    kind: &'static KindInfo,
    obj: Json,
    conversion: Conversion,
    q: &Query,
) -> Result<Json, ApiError> {
    Ok(match conversion {
        Conversion::None => obj,
        Conversion::Metadata { v1beta1 } => partial_metadata(&obj, v1beta1),
        Conversion::Table { v1beta1 } => {
            tables::table_for_object(kind, &obj, &table_options(q, v1beta1)?)
        }
    })
}

/// Converts a list (`meta` is the list's metadata).
pub fn list(
    kind: &'static KindInfo,
    items: Vec<Json>,
    meta: Json,
    conversion: Conversion,
    q: &Query,
) -> Result<Json, ApiError> {
    Ok(match conversion {
        Conversion::None => json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.kind),
            "metadata": meta,
            "items": items,
        }),
        Conversion::Metadata { v1beta1 } => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": meta_api_version(v1beta1),
            "metadata": meta,
            "items": items.iter().map(|o| partial_metadata(o, v1beta1)).collect::<Vec<_>>(),
        }),
        Conversion::Table { v1beta1 } => {
            tables::table(kind, &items, meta, &table_options(q, v1beta1)?)
        }
    })
}
