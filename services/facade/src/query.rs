//! The query parameters of Kubernetes requests (ListOptions, CreateOptions, UpdateOptions,
//! PatchOptions, DeleteOptions, TableOptions), parsed and checked once.

use navarch_api::ApiError;

/// Every query parameter the facade understands. Unknown parameters are ignored, as
/// kube-apiserver does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
    pub resource_version_match: String,
    pub timeout_seconds: Option<i64>,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: bool,
    pub dry_run: Vec<String>,
    pub field_validation: String,
    pub field_manager: String,
    pub force: bool,
    pub pretty: Option<bool>,
    /// TableOptions.includeObject: None, Metadata (default) or Object.
    pub include_object: String,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: String,
    pub orphan_dependents: Option<bool>,
}

/// Go's `strconv.ParseBool`, which kube-apiserver uses for boolean parameters.
pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        // `?watch` with no value means true, as for kube-apiserver.
        "" => Ok(true),
        _ => Err(ApiError::bad_request(format!(
            "invalid value {value:?} for {name}: expected a boolean"
        ))),
    }
}

pub(crate) fn parse_int(name: &str, value: &str) -> Result<i64, ApiError> {
    value.parse::<i64>().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid value {value:?} for {name}: expected an integer"
        ))
    })
}

impl Query {
    /// Parses a raw query string (`a=b&c=d`, percent-encoded).
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Query::default();
        let Some(raw) = raw else { return Ok(q) };
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let v = v.as_ref();
            match k.as_ref() {
                "labelSelector" => q.label_selector = v.to_string(),
                "fieldSelector" => q.field_selector = v.to_string(),
                "limit" => q.limit = parse_int("limit", v)?.max(0),
                "continue" => q.continue_token = v.to_string(),
                "resourceVersion" => q.resource_version = v.to_string(),
                "resourceVersionMatch" => q.resource_version_match = v.to_string(),
                "timeoutSeconds" => q.timeout_seconds = Some(parse_int("timeoutSeconds", v)?),
                "watch" => q.watch = parse_bool("watch", v)?,
                "allowWatchBookmarks" => {
                    q.allow_watch_bookmarks = parse_bool("allowWatchBookmarks", v)?
                }
                "sendInitialEvents" => q.send_initial_events = parse_bool("sendInitialEvents", v)?,
                "dryRun" => {
                    if v != "All" {
                        return Err(ApiError::invalid(
                            "",
                            "",
                            "",
                            vec![navarch_api::FieldError::not_supported(
                                "dryRun",
                                v,
                                &["All"],
                            )],
                        ));
                    }
                    q.dry_run.push(v.to_string());
                }
                "fieldValidation" => {
                    if !matches!(v, "" | "Strict" | "Warn" | "Ignore") {
                        return Err(ApiError::bad_request(format!(
                            "fieldValidation parameter unsupported: {v:?}; supported values: Ignore, Warn, Strict"
                        )));
                    }
                    q.field_validation = v.to_string();
                }
                "fieldManager" => q.field_manager = v.to_string(),
                "force" => q.force = parse_bool("force", v)?,
                "pretty" => q.pretty = Some(parse_bool("pretty", v)?),
                "includeObject" => {
                    if !matches!(v, "" | "None" | "Metadata" | "Object") {
                        return Err(ApiError::bad_request(format!(
                            "includeObject: Unsupported value: {v:?}: supported values: \"None\", \"Metadata\", \"Object\""
                        )));
                    }
                    q.include_object = v.to_string();
                }
                "gracePeriodSeconds" => {
                    q.grace_period_seconds = Some(parse_int("gracePeriodSeconds", v)?)
                }
                "propagationPolicy" => q.propagation_policy = v.to_string(),
                "orphanDependents" => {
                    q.orphan_dependents = Some(parse_bool("orphanDependents", v)?)
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// The propagation policy, also from the deprecated `orphanDependents`.
    pub fn propagation(&self) -> String {
        if !self.propagation_policy.is_empty() {
            return self.propagation_policy.clone();
        }
        match self.orphan_dependents {
            Some(true) => "Orphan".into(),
            Some(false) => "Background".into(),
            None => String::new(),
        }
    }
}

/// DeleteOptions from a request body (JSON or YAML), merged over the query's: a body value
/// wins, as in kube-apiserver.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: String,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
    pub dry_run: Vec<String>,
}

impl DeleteOptions {
    /// Builds the options from the query and an optional body.
    pub fn from_request(q: &Query, body: Option<&serde_json::Value>) -> Result<Self, ApiError> {
        let mut o = DeleteOptions {
            grace_period_seconds: q.grace_period_seconds,
            propagation_policy: q.propagation(),
            dry_run: q.dry_run.clone(),
            ..Default::default()
        };
        let Some(body) = body else { return Ok(o) };
        if body.is_null() {
            return Ok(o);
        }
        let Some(map) = body.as_object() else {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        };
        if let Some(k) = map.get("kind").and_then(|k| k.as_str())
            && k != "DeleteOptions"
        {
            return Err(ApiError::bad_request(format!(
                "expected a DeleteOptions body, got kind {k:?}"
            )));
        }
        if let Some(v) = map.get("gracePeriodSeconds").filter(|v| !v.is_null()) {
            o.grace_period_seconds = Some(v.as_i64().ok_or_else(|| {
                ApiError::bad_request("DeleteOptions.gracePeriodSeconds: expected an integer")
            })?);
        }
        if let Some(v) = map.get("propagationPolicy").and_then(|v| v.as_str()) {
            o.propagation_policy = v.to_string();
        } else if let Some(orphan) = map.get("orphanDependents").and_then(|v| v.as_bool()) {
            o.propagation_policy = if orphan { "Orphan" } else { "Background" }.into();
        }
        if let Some(p) = map.get("preconditions").and_then(|v| v.as_object()) {
            o.precondition_uid = p
                .get("uid")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            o.precondition_resource_version = p
                .get("resourceVersion")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
        }
        if let Some(d) = map.get("dryRun").and_then(|v| v.as_array()) {
            for v in d {
                let v = v.as_str().unwrap_or_default();
                if v != "All" {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {v:?}: supported values: \"All\""
                    )));
                }
                if !o.dry_run.iter().any(|x| x == v) {
                    o.dry_run.push(v.to_string());
                }
            }
        }
        let p = o.propagation_policy.as_str();
        if !matches!(p, "" | "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                vec![navarch_api::FieldError::not_supported(
                    "propagationPolicy",
                    p,
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_list_and_write_options() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&fieldSelector=metadata.name%3Dx&limit=500&continue=abc&watch=true&allowWatchBookmarks=1&timeoutSeconds=30&dryRun=All&fieldValidation=Strict&fieldManager=kubectl&force=true",
        ))
        .unwrap();
        assert_eq!(q.label_selector, "app=web");
        assert_eq!(q.field_selector, "metadata.name=x");
        assert_eq!(q.limit, 500);
        assert!(q.watch && q.allow_watch_bookmarks && q.force);
        assert_eq!(q.timeout_seconds, Some(30));
        assert_eq!(q.dry_run, vec!["All"]);
        assert_eq!(q.field_validation, "Strict");
        assert_eq!(q.field_manager, "kubectl");
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(Query::parse(Some("limit=x")).unwrap_err().code(), 400);
        assert_eq!(Query::parse(Some("watch=maybe")).unwrap_err().code(), 400);
        assert_eq!(
            Query::parse(Some("fieldValidation=Loud"))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(Query::parse(Some("dryRun=Some")).unwrap_err().code(), 422);
    }

    #[test]
    fn delete_options_body_wins_over_query() {
        let q = Query::parse(Some("propagationPolicy=Orphan&gracePeriodSeconds=5")).unwrap();
        let o = DeleteOptions::from_request(
            &q,
            Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
                "preconditions": {"uid": "u1", "resourceVersion": "7"}, "dryRun": ["All"]})),
        )
        .unwrap();
        assert_eq!(o.propagation_policy, "Foreground");
        assert_eq!(o.grace_period_seconds, Some(5));
        assert_eq!(o.precondition_uid, "u1");
        assert_eq!(o.precondition_resource_version, "7");
        assert_eq!(o.dry_run, vec!["All"]);
        let o = DeleteOptions::from_request(
            &Query::parse(Some("orphanDependents=false")).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(o.propagation_policy, "Background");
        assert!(
            DeleteOptions::from_request(&q, Some(&json!({"propagationPolicy": "Sideways"})))
                .is_err()
        );
    }
}
