//! ConfigMaps, Secrets and ServiceAccounts.

use super::meta::NameRule;
use super::names::is_config_map_key;
use super::{
    Errs, Path, each, forbidden, immutable_str, invalid, or_default, required, s, validate_meta,
};
use crate::FieldError;
use crate::core::v1::{ConfigMap, Secret, ServiceAccount};

/// ConfigMaps and Secrets hold at most 1 MiB.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Validates a ConfigMap; with `immutable: true` its data can no longer change.
pub fn validate_config_map(cm: &ConfigMap, old: Option<&ConfigMap>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old
        && old.immutable == Some(true)
    {
        immutable_when_set(cm.immutable, &mut errs);
        if cm.data != old.data {
            errs.push(forbidden(
                &Path::new("data"),
                "field is immutable when `immutable` is set",
            ));
        }
        if cm.binary_data != old.binary_data {
            errs.push(forbidden(
                &Path::new("binaryData"),
                "field is immutable when `immutable` is set",
            ));
        }
    }
    validate_meta(
        &cm.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let mut total = 0;
    for (key, value) in &cm.data {
        let p = Path::new("data").key(key);
        each(&mut errs, &p, key, is_config_map_key(key));
        if cm.binary_data.contains_key(key) {
            errs.push(super::invalid_str(
                &p,
                key,
                "duplicate of key present in binaryData",
            ));
        }
        total += value.len();
    }
    for (key, value) in &cm.binary_data {
        each(
            &mut errs,
            &Path::new("binaryData").key(key),
            key,
            is_config_map_key(key),
        );
        total += value.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

fn immutable_when_set(immutable: Option<bool>, errs: &mut Errs) {
    if immutable != Some(true) {
        errs.push(forbidden(
            &Path::new("immutable"),
            "field is immutable when `immutable` is set",
        ));
    }
}

/// Validates a Secret: keys, size, the keys its type requires; `type` never changes and an
/// immutable Secret's data cannot either.
pub fn validate_secret(secret: &Secret, old: Option<&Secret>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        immutable_str(
            &mut errs,
            &Path::new("type"),
            s(&secret.r#type),
            s(&old.r#type),
        );
        if old.immutable == Some(true) {
            immutable_when_set(secret.immutable, &mut errs);
            if secret.data != old.data || !secret.string_data.is_empty() {
                errs.push(forbidden(
                    &Path::new("data"),
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    validate_meta(
        &secret.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let data_path = Path::new("data");
    let mut total = 0;
    for (key, value) in &secret.data {
        each(&mut errs, &data_path.key(key), key, is_config_map_key(key));
        total += value.len();
    }
    for (key, value) in &secret.string_data {
        if !secret.data.contains_key(key) {
            each(
                &mut errs,
                &Path::new("stringData").key(key),
                key,
                is_config_map_key(key),
            );
        }
        total += value.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has = |key: &str| secret.data.contains_key(key) || secret.string_data.contains_key(key);
    let bytes = |key: &str| -> Option<Vec<u8>> {
        secret
            .data
            .get(key)
            .cloned()
            .or_else(|| secret.string_data.get(key).map(|v| v.as_bytes().to_vec()))
    };
    match s(&secret.r#type) {
        "kubernetes.io/service-account-token" => {
            let annotations = or_default(&secret.metadata);
            let name = annotations
                .annotations
                .get("kubernetes.io/service-account.name")
                .map_or("", String::as_str);
            if name.is_empty() {
                errs.push(required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => {
            validate_json_key(".dockercfg", bytes(".dockercfg"), &data_path, &mut errs)
        }
        "kubernetes.io/dockerconfigjson" => validate_json_key(
            ".dockerconfigjson",
            bytes(".dockerconfigjson"),
            &data_path,
            &mut errs,
        ),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required(&data_path.key("username"), ""));
            errs.push(required(&data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if bytes("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            errs.push(required(&data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(required(&data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

fn validate_json_key(key: &str, value: Option<Vec<u8>>, data_path: &Path, errs: &mut Errs) {
    let Some(value) = value else {
        errs.push(required(&data_path.key(key), ""));
        return;
    };
    match serde_json::from_slice::<serde_json::Value>(&value) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => errs.push(invalid(
            &data_path.key(key),
            "\"<secret contents redacted>\"",
            "must be a JSON object",
        )),
        Err(e) => errs.push(invalid(
            &data_path.key(key),
            "\"<secret contents redacted>\"",
            e.to_string(),
        )),
    }
}

/// Validates a ServiceAccount (metadata only).
pub fn validate_service_account(
    sa: &ServiceAccount,
    old: Option<&ServiceAccount>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &sa.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    errs
}
