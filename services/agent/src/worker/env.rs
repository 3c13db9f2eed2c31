//! A container's environment as the kubelet builds it: `envFrom`, then `env` (values,
//! fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef), with `$(VAR)` expansion, and
//! `$(VAR)` expansion of command and args.

use std::collections::BTreeMap;

use navarch_api::core::v1::{Container, Pod};
use navarch_api::{ApiError, Reason};

use crate::api::PodApi;

/// Why the environment could not be built (`CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'('
                && let Some(end) = input[i + 2..].find(')')
            {
                let name = &input[i + 2..i + 2 + end];
                if let Some(v) = vars.get(name) {
                    out.push_str(v);
                } else {
                    out.push_str(&input[i..i + 3 + end]);
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Result<String, EnvError> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let keyed = |prefix: &str, map: &BTreeMap<String, String>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.get(key).cloned().unwrap_or_default())
    };
    Ok(match path {
        "metadata.name" => meta.name.unwrap_or_default(),
        "metadata.namespace" => meta.namespace.unwrap_or_default(),
        "metadata.uid" => meta.uid.unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.into(),
        "status.hostIP" | "status.hostIPs" => host_ip.into(),
        _ => keyed("metadata.labels['", &meta.labels)
            .or_else(|| keyed("metadata.annotations['", &meta.annotations))
            .ok_or_else(|| EnvError(format!("unsupported fieldRef {path:?}")))?,
    })
}

fn optional_missing(e: &ApiError, optional: Option<bool>) -> bool {
    e.reason == Reason::NotFound && optional == Some(true)
}

/// The environment for `container` of `pod`, in order, with later names overriding earlier.
pub async fn container_env(
    api: &dyn PodApi,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod
        .metadata
        .as_ref()
        .and_then(|m| m.namespace.clone())
        .unwrap_or_default();
    let mut order: Vec<String> = vec![];
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let set = |order: &mut Vec<String>, vars: &mut BTreeMap<String, String>, k: String, v| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for from in &container.env_from {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let name = r.name.clone().unwrap_or_default();
            match api.config_map(&ns, &name).await {
                Ok(cm) => {
                    for (k, v) in cm.data {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                Err(e) if optional_missing(&e, r.optional) => {}
                Err(e) => return Err(EnvError(format!("configmap \"{name}\" not found: {e}"))),
            }
        }
        if let Some(r) = &from.secret_ref {
            let name = r.name.clone().unwrap_or_default();
            match api.secret(&ns, &name).await {
                Ok(s) => {
                    for (k, v) in s.data {
                        set(
                            &mut order,
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                    for (k, v) in s.string_data {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                Err(e) if optional_missing(&e, r.optional) => {}
                Err(e) => return Err(EnvError(format!("secret \"{name}\" not found: {e}"))),
            }
        }
    }
    for env in &container.env {
        let name = env.name.clone().unwrap_or_default();
        let value = if let Some(src) = &env.value_from {
            if let Some(f) = &src.field_ref {
                field_value(
                    pod,
                    f.field_path.as_deref().unwrap_or_default(),
                    pod_ip,
                    host_ip,
                )?
            } else if let Some(r) = &src.config_map_key_ref {
                let (cm, key) = (
                    r.name.clone().unwrap_or_default(),
                    r.key.clone().unwrap_or_default(),
                );
                match api.config_map(&ns, &cm).await {
                    Ok(obj) => match obj.data.get(&key) {
                        Some(v) => v.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError(format!(
                                "couldn't find key {key} in ConfigMap {ns}/{cm}"
                            )));
                        }
                    },
                    Err(e) if optional_missing(&e, r.optional) => continue,
                    Err(_) => return Err(EnvError(format!("configmap \"{cm}\" not found"))),
                }
            } else if let Some(r) = &src.secret_key_ref {
                let (s, key) = (
                    r.name.clone().unwrap_or_default(),
                    r.key.clone().unwrap_or_default(),
                );
                match api.secret(&ns, &s).await {
                    Ok(obj) => match obj.data.get(&key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None => match obj.string_data.get(&key) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(EnvError(format!(
                                    "couldn't find key {key} in Secret {ns}/{s}"
                                )));
                            }
                        },
                    },
                    Err(e) if optional_missing(&e, r.optional) => continue,
                    Err(_) => return Err(EnvError(format!("secret \"{s}\" not found"))),
                }
            } else if let Some(r) = &src.resource_field_ref {
                let res = container.resources.clone().unwrap_or_default();
                let what = r.resource.clone().unwrap_or_default();
                let key = what
                    .trim_start_matches("limits.")
                    .trim_start_matches("requests.");
                let map = if what.starts_with("requests.") {
                    &res.requests
                } else {
                    &res.limits
                };
                map.get(key).map(|q| q.value.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        } else {
            expand(env.value.as_deref().unwrap_or_default(), &vars)
        };
        set(&mut order, &mut vars, name, value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakePodApi;
    use navarch_api::core::v1::{
        ConfigMap, ConfigMapKeySelector, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec,
    };
    use navarch_api::meta::v1::ObjectMeta;

    #[test]
    fn expansion_follows_kubernetes() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("héllo $(A)", &vars), "héllo x");
    }

    #[tokio::test]
    async fn env_from_fields_and_config_maps() {
        let api = FakePodApi::default();
        api.add_config_map(ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some("cfg".into()),
                ..Default::default()
            }),
            data: [("color".to_string(), "blue".to_string())].into(),
            ..Default::default()
        });
        let pod = Pod {
            metadata: Some(ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = |name: &str, value: Option<&str>, from: Option<EnvVarSource>| EnvVar {
            name: Some(name.into()),
            value: value.map(Into::into),
            value_from: from,
        };
        let c = Container {
            env: vec![
                env(
                    "POD",
                    None,
                    Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: Some("metadata.name".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                ),
                env(
                    "COLOR",
                    None,
                    Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: Some("cfg".into()),
                            key: Some("color".into()),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                ),
                env("GREETING", Some("hi $(POD) on $(COLOR)"), None),
            ],
            ..Default::default()
        };
        let got = container_env(&api, &pod, &c, "10.0.0.1", "192.168.0.1")
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("POD".to_string(), "p".to_string()),
                ("COLOR".to_string(), "blue".to_string()),
                ("GREETING".to_string(), "hi p on blue".to_string()),
            ]
        );
    }
}
