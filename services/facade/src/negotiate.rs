//! Content negotiation as kube-apiserver does it (`handlers/negotiation`): the `Accept` header
//! picks JSON or YAML and, for reads, a conversion to a Table or to PartialObjectMetadata;
//! `Content-Type` picks how a body is decoded.
//!
//! Like kube-apiserver, a request whose `Accept` names nothing we produce (only protobuf, or
//! only aggregated discovery) is answered in JSON with `Content-Type: application/json`;
//! client-go decodes by the response's content type, so that is what it expects.

use navarch_api::{ApiError, Reason};

/// The encoding of a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml => "application/yaml",
        }
    }
}

/// A conversion of the served object that the client asked for with `;as=…;g=…;v=…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    None,
    /// `as=Table;g=meta.k8s.io;v=v1` (or v1beta1).
    Table {
        v1beta1: bool,
    },
    /// `as=PartialObjectMetadata` / `as=PartialObjectMetadataList`.
    Metadata {
        v1beta1: bool,
    },
}

/// What to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    pub format: Format,
    pub conversion: Conversion,
    /// `;pretty=1` on the accepted media type.
    pub pretty: bool,
}

impl Output {
    pub const JSON: Output = Output {
        format: Format::Json,
        conversion: Conversion::None,
        pretty: false,
    };
}

/// One clause of an `Accept` header.
#[derive(Clone, Debug, PartialEq)]
struct Clause {
    kind: String,
    sub: String,
    q: f32,
    params: Vec<(String, String)>,
}

fn parse_accept(header: &str) -> Vec<Clause> {
    let mut out = Vec::new();
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let media = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media.is_empty() {
            continue;
        }
        let (kind, sub) = match media.split_once('/') {
            Some((t, s)) => (t.to_string(), s.to_string()),
            None if media == "*" => ("*".to_string(), "*".to_string()),
            None => continue,
        };
        let mut q = 1.0f32;
        let mut params = Vec::new();
        for p in pieces {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            if k == "q" {
                q = v.parse().unwrap_or(0.0);
            } else {
                params.push((k.to_string(), v.to_string()));
            }
        }
        out.push(Clause {
            kind,
            sub,
            q,
            params,
        });
    }
    // goautoneg's order: higher q first, then concrete types before wildcards; stable.
    out.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((a.kind == "*").cmp(&(b.kind == "*")))
            .then((a.sub == "*").cmp(&(b.sub == "*")))
    });
    out
}

/// Picks the output for a request. `conversions` says whether Table/metadata conversions are
/// allowed (reads of a resource); `stream` whether this is a watch.
pub fn negotiate(accept: Option<&str>, conversions: bool, stream: bool) -> Output {
    let header = accept.unwrap_or_default().trim();
    if header.is_empty() {
        return Output::JSON;
    }
    for clause in parse_accept(header) {
        if clause.q <= 0.0 {
            continue;
        }
        let format = match (clause.kind.as_str(), clause.sub.as_str()) {
            ("application", "json") | ("application", "*") | ("*", "*") => Format::Json,
            ("application", "yaml") if !stream => Format::Yaml,
            _ => continue,
        };
        if let Some(out) = accept_params(&clause.params, format, conversions, stream) {
            return out;
        }
    }
    Output::JSON
}

/// The options a clause asks for, or `None` when this server cannot honour them (the clause
/// is then skipped, as in kube-apiserver's `acceptMediaTypeOptions`).
fn accept_params(
    params: &[(String, String)],
    format: Format,
    conversions: bool,
    stream: bool,
) -> Option<Output> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut out = Output {
        format,
        conversion: Conversion::None,
        pretty: get("pretty") == Some("1"),
    };
    if let Some(s) = get("stream")
        && !s.is_empty()
        && (s != "watch" || !stream || format != Format::Json)
    {
        return None;
    }
    if get("sv").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let as_kind = get("as");
    let group = get("g");
    let version = get("v");
    if as_kind.is_none() && group.is_none() && version.is_none() {
        return Some(out);
    }
    if !conversions || group != Some("meta.k8s.io") {
        return None;
    }
    let v1beta1 = match version {
        Some("v1") => false,
        Some("v1beta1") => true,
        _ => return None,
    };
    out.conversion = match as_kind {
        Some("Table") => Conversion::Table { v1beta1 },
        Some("PartialObjectMetadata") | Some("PartialObjectMetadataList") => {
            Conversion::Metadata { v1beta1 }
        }
        _ => return None,
    };
    Some(out)
}

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    /// `application/vnd.kubernetes.protobuf`, which kubectl's typed clients send (kubectl 1.33
    /// `create namespace`, `create configmap`): translated to JSON by
    /// [`navarch_api::k8s_wire`].
    KubeProtobuf,
}

/// The body format of a create or update (`Content-Type`; JSON when absent).
pub fn body_format(content_type: Option<&str>) -> Result<BodyFormat, ApiError> {
    let media = media_type(content_type.unwrap_or_default());
    match media.as_str() {
        "" | "application/json" => Ok(BodyFormat::Json),
        "application/yaml" => Ok(BodyFormat::Yaml),
        navarch_api::k8s_wire::CONTENT_TYPE => Ok(BodyFormat::KubeProtobuf),
        _ => Err(unsupported_media_type(
            &media,
            &[
                "application/json",
                "application/yaml",
                navarch_api::k8s_wire::CONTENT_TYPE,
            ],
        )),
    }
}

/// A create/update body as the gateway takes it: `(content type, bytes)`, JSON or YAML as
/// sent, Kubernetes protobuf translated to JSON.
pub fn gateway_body(format: BodyFormat, body: &[u8]) -> Result<(&'static str, Vec<u8>), ApiError> {
    Ok(match format {
        BodyFormat::Json => ("application/json", body.to_vec()),
        BodyFormat::Yaml => ("application/yaml", body.to_vec()),
        BodyFormat::KubeProtobuf => {
            let (_, _, json) = navarch_api::k8s_wire::decode(body)?;
            (
                "application/json",
                serde_json::to_vec(&json).map_err(|e| ApiError::internal(e.to_string()))?,
            )
        }
    })
}

/// The patch types the gateway applies.
pub const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// The patch type of a PATCH (`Content-Type`, required).
pub fn patch_type(content_type: Option<&str>) -> Result<&'static str, ApiError> {
    let media = media_type(content_type.unwrap_or_default());
    PATCH_TYPES
        .iter()
        .copied()
        .find(|t| *t == media)
        .ok_or_else(|| unsupported_media_type(&media, PATCH_TYPES))
}

/// The bare media type, lower-cased, without parameters.
fn media_type(header: &str) -> String {
    header
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn unsupported_media_type(media: &str, supported: &[&str]) -> ApiError {
    ApiError::new(
        Reason::UnsupportedMediaType,
        format!(
            "the body of the request was in an unknown format ({media:?}) - accepted media types include: {}",
            supported.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn kubectl_get_gets_a_table_on_reads_only() {
        assert_eq!(
            negotiate(Some(KUBECTL_GET), true, false).conversion,
            Conversion::Table { v1beta1: false }
        );
        assert_eq!(negotiate(Some(KUBECTL_GET), false, false), Output::JSON);
    }

    #[test]
    fn plain_and_fallbacks() {
        assert_eq!(negotiate(None, true, false), Output::JSON);
        assert_eq!(negotiate(Some("*/*"), true, false), Output::JSON);
        assert_eq!(
            negotiate(Some("application/yaml"), true, false).format,
            Format::Yaml
        );
        // Only protobuf: JSON, as kube-apiserver falls back to its first serializer.
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), true, false),
            Output::JSON
        );
        // Aggregated discovery first, plain JSON second.
        let discovery = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(discovery), true, false), Output::JSON);
        assert_eq!(
            negotiate(Some("application/yaml;q=0.5,application/json"), true, false).format,
            Format::Json
        );
        assert!(negotiate(Some("application/json;pretty=1"), true, false).pretty);
    }

    #[test]
    fn metadata_only_clients() {
        let h = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            negotiate(Some(h), true, false).conversion,
            Conversion::Metadata { v1beta1: false }
        );
    }

    #[test]
    fn body_and_patch_types() {
        assert_eq!(body_format(None).unwrap(), BodyFormat::Json);
        assert_eq!(
            body_format(Some("application/json; charset=utf-8")).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            body_format(Some("application/yaml")).unwrap(),
            BodyFormat::Yaml
        );
        assert_eq!(body_format(Some("text/plain")).unwrap_err().code(), 415);
        assert_eq!(
            body_format(Some("application/vnd.kubernetes.protobuf")).unwrap(),
            BodyFormat::KubeProtobuf
        );
        assert_eq!(
            patch_type(Some("application/strategic-merge-patch+json")).unwrap(),
            "application/strategic-merge-patch+json"
        );
        assert_eq!(
            patch_type(Some("application/json")).unwrap_err().code(),
            415
        );
        assert_eq!(patch_type(None).unwrap_err().code(), 415);
    }
}
