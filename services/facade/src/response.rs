//! Writing responses: JSON or YAML (pretty when asked), gzip for large bodies, warnings as
//! `Warning` headers, and every failure as a `kind: Status` body with its HTTP code. This is the
//! one place where an [`ApiError`] becomes an HTTP response.

use std::io::Write as _;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use navarch_api::ApiError;
use serde_json::Value as Json;

use crate::negotiate::{Format, Output};

/// Bodies at least this large are gzipped when the client accepts it (kube-apiserver's
/// `defaultGzipThresholdBytes`).
pub const GZIP_THRESHOLD_BYTES: usize = 128 * 1024;

/// How one request's answers are encoded.
#[derive(Clone, Copy, Debug)]
pub struct Responder {
    pub output: Output,
    pub pretty: bool,
    pub gzip: bool,
}

impl Responder {
    /// Plain JSON, no compression: for answers before negotiation.
    pub const PLAIN: Responder = Responder {
        output: Output::JSON,
        pretty: false,
        gzip: false,
    };

    /// Pretty printing follows kube-apiserver: `?pretty=true`, `;pretty=1`, or a human client
    /// (curl, Wget, a browser) when `pretty` is not given.
    pub fn new(output: Output, headers: &HeaderMap, pretty_param: Option<bool>) -> Self {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let human = agent.starts_with("curl")
            || agent.starts_with("Wget")
            || agent.starts_with("Mozilla/5.0");
        let pretty = output.pretty || pretty_param.unwrap_or(human);
        let gzip = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| {
                let mut parts = e.split(';');
                let name = parts.next().unwrap_or_default().trim();
                let q_zero =
                    parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
                name.eq_ignore_ascii_case("gzip") && !q_zero
            });
        Self {
            output,
            pretty,
            gzip,
        }
    }

    /// The same answer settings in plain JSON (a Status for a request that asked for a Table).
    pub fn json_only(self) -> Self {
        Self {
            output: Output {
                conversion: crate::negotiate::Conversion::None,
                format: Format::Json,
                ..self.output
            },
            ..self
        }
    }

    /// Encodes a JSON value in the negotiated format.
    pub fn encode(&self, value: &Json) -> Bytes {
        match self.output.format {
            Format::Yaml => Bytes::from(serde_yaml::to_string(value).unwrap_or_default()),
            Format::Json if self.pretty => {
                let mut v = serde_json::to_vec_pretty(value).unwrap_or_default();
                v.push(b'\n');
                Bytes::from(v)
            }
            Format::Json => {
                let mut v = serde_json::to_vec(value).unwrap_or_default();
                v.push(b'\n');
                Bytes::from(v)
            }
        }
    }

    /// A response with `value` in the negotiated format.
    pub fn value(&self, code: StatusCode, value: &Json) -> Response {
        self.bytes(code, self.encode(value))
    }

    /// A response from JSON already encoded (the gateway's answer), re-encoded only when YAML
    /// or pretty output is wanted.
    pub fn json_bytes(&self, code: StatusCode, json: Bytes) -> Response {
        if self.output.format == Format::Json && !self.pretty {
            return self.bytes(code, json);
        }
        match serde_json::from_slice::<Json>(&json) {
            Ok(v) => self.value(code, &v),
            Err(_) => self.bytes(code, json),
        }
    }

    /// A response with an encoded body, gzipped when large and accepted.
    pub fn bytes(&self, code: StatusCode, body: Bytes) -> Response {
        let mut builder = Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, self.output.format.content_type())
            .header(header::CACHE_CONTROL, "no-cache, private");
        let body = if self.gzip && body.len() >= GZIP_THRESHOLD_BYTES {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            match enc.write_all(&body).and_then(|()| enc.finish()) {
                Ok(zipped) => {
                    builder = builder
                        .header(header::CONTENT_ENCODING, "gzip")
                        .header(header::VARY, "Accept-Encoding");
                    Bytes::from(zipped)
                }
                Err(_) => body,
            }
        } else {
            body
        };
        builder
            .body(Body::from(body))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }

    /// The `kind: Status` answer for an error, with its HTTP code.
    pub fn error(&self, e: &ApiError) -> Response {
        let responder = self.json_only_unless_yaml();
        let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = responder.value(code, &status_json(e));
        if let Some(secs) = e.retry_after_seconds
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    fn json_only_unless_yaml(self) -> Self {
        Self {
            output: Output {
                conversion: crate::negotiate::Conversion::None,
                ..self.output
            },
            gzip: false,
            ..self
        }
    }
}

/// The `meta.v1.Status` of an error, in Kubernetes JSON. Each cause's `message` is the
/// error's body without its field (`Required value`, `Invalid value: "x": …`), as
/// kube-apiserver writes it: clients print `field: message` themselves.
pub fn status_json(e: &ApiError) -> Json {
    let mut v = navarch_api::codec::encode_json(&e.to_status());
    if let Some(map) = v.as_object_mut() {
        map.entry("metadata")
            .or_insert_with(|| Json::Object(Default::default()));
    }
    if let Some(causes) = v
        .pointer_mut("/details/causes")
        .and_then(Json::as_array_mut)
    {
        for cause in causes {
            let field = cause["field"].as_str().unwrap_or_default().to_string();
            if field.is_empty() {
                continue;
            }
            if let Some(body) = cause["message"]
                .as_str()
                .and_then(|m| m.strip_prefix(&format!("{field}: ")))
                .map(str::to_string)
            {
                cause["message"] = Json::String(body);
            }
        }
    }
    v
}

/// The `meta.v1.Status` of a success (deletes of objects that are gone).
pub fn success_status(details: Json) -> Json {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

/// A `Warning` header value as kube-apiserver writes it (RFC 7234 warn-code 299, no agent):
/// `299 - "unknown field \"spec.foo\""`.
pub fn warning_header(text: &str) -> Option<HeaderValue> {
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                escaped.push('\\');
                escaped.push(c);
            }
            c if c.is_control() => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    HeaderValue::from_str(&format!("299 - \"{escaped}\"")).ok()
}

/// Adds the gateway's warnings to a response.
pub fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Some(v) = warning_header(w) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_headers_quote_like_kube_apiserver() {
        assert_eq!(
            warning_header("unknown field \"spec.foo\"").unwrap(),
            "299 - \"unknown field \\\"spec.foo\\\"\""
        );
    }

    #[test]
    fn errors_are_status_bodies_with_their_code() {
        let e = ApiError::not_found("deployments.apps", "web");
        let resp = Responder::PLAIN.error(&e);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = status_json(&e);
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["code"], 404);
        assert_eq!(body["details"]["name"], "web");
        assert_eq!(body["details"]["group"], "apps");
        assert_eq!(body["details"]["kind"], "deployments");
    }

    #[test]
    fn cause_messages_leave_the_field_to_the_client() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![navarch_api::FieldError::required("spec.selector", "")],
        );
        let body = status_json(&e);
        let cause = &body["details"]["causes"][0];
        assert_eq!(cause["field"], "spec.selector");
        assert_eq!(cause["message"], "Required value");
        assert_eq!(cause["reason"], "FieldValueRequired");
    }

    #[test]
    fn gzip_only_when_large_and_accepted() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let r = Responder::new(Output::JSON, &headers, None);
        assert!(r.gzip);
        let small = r.bytes(StatusCode::OK, Bytes::from_static(b"{}"));
        assert!(small.headers().get(header::CONTENT_ENCODING).is_none());
        let big = r.bytes(
            StatusCode::OK,
            Bytes::from(vec![b' '; GZIP_THRESHOLD_BYTES]),
        );
        assert_eq!(big.headers()[header::CONTENT_ENCODING], "gzip");
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!Responder::new(Output::JSON, &headers, None).gzip);
    }

    #[test]
    fn curl_gets_pretty_json_unless_it_says_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(header::USER_AGENT, HeaderValue::from_static("curl/8.5.0"));
        assert!(Responder::new(Output::JSON, &headers, None).pretty);
        assert!(!Responder::new(Output::JSON, &headers, Some(false)).pretty);
    }
}
