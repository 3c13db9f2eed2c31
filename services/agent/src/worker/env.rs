//! A container's environment as the kubelet builds it: `envFrom`, then `env` (values,
//! fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef), with `$(VAR)` expansion, and
//! `$(VAR)` expansion of command and args; then the Services' variables
//! (`WEB_SERVICE_HOST`, docker-links `WEB_PORT_80_TCP…`) for names the pod did not set.

use std::collections::BTreeMap;

use navarch_api::core::v1::{Container, Pod, Service};
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

/// The Services a pod's containers learn about by environment, as the kubelet's
/// `getServiceEnvVarMap`: those of its namespace when `enableServiceLinks` (default true),
/// and always the API's own `kubernetes` Service from `default`. Headless and IP-less
/// Services give nothing.
pub fn service_env(
    pod_namespace: &str,
    links: bool,
    services: &[Service],
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let meta = svc.metadata.as_ref();
        let ns = meta
            .and_then(|m| m.namespace.as_deref())
            .unwrap_or_default();
        let name = meta.and_then(|m| m.name.as_deref()).unwrap_or_default();
        let ip = svc
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        if ns == pod_namespace && links {
            chosen.insert(name.to_string(), svc);
        } else if ns == "default" && name == "kubernetes" {
            chosen.entry(name.to_string()).or_insert(svc);
        }
    }
    let mut env = BTreeMap::new();
    for (name, svc) in chosen {
        let spec = svc.spec.clone().unwrap_or_default();
        let ip = spec.cluster_ip.unwrap_or_default();
        let prefix = name.to_uppercase().replace('-', "_");
        let Some(first) = spec.ports.first() else {
            continue;
        };
        env.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        env.insert(
            format!("{prefix}_SERVICE_PORT"),
            first.port.unwrap_or_default().to_string(),
        );
        let url = |p: &navarch_api::core::v1::ServicePort| {
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            (
                proto.clone(),
                format!("{proto}://{ip}:{}", p.port.unwrap_or_default()),
            )
        };
        env.insert(format!("{prefix}_PORT"), url(first).1);
        for p in &spec.ports {
            let port = p.port.unwrap_or_default();
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                env.insert(
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        port_name.to_uppercase().replace('-', "_")
                    ),
                    port.to_string(),
                );
            }
            let (proto, link) = url(p);
            let base = format!("{prefix}_PORT_{port}_{}", proto.to_uppercase());
            env.insert(format!("{base}_PROTO"), proto);
            env.insert(format!("{base}_PORT"), port.to_string());
            env.insert(format!("{base}_ADDR"), ip.clone());
            env.insert(base, link);
        }
    }
    env
}

pub(super) fn field_value(
    pod: &Pod,
    path: &str,
    pod_ip: &str,
    host_ip: &str,
) -> Result<String, EnvError> {
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
    service_address: Option<&crate::ServiceAddress>,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod
        .metadata
        .as_ref()
        .and_then(|m| m.namespace.clone())
        .unwrap_or_default();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services = if links {
        api.services(&ns)
            .await
            .map_err(|e| EnvError(format!("listing services for the environment: {e}")))?
    } else {
        Vec::new()
    };
    if ns != "default" || !links {
        // The API's own Service is in every pod's environment; without it in-cluster
        // clients cannot find the API. A failure here is not worth failing the pod for.
        services.extend(api.services("default").await.unwrap_or_default());
    }
    if let Some(rewrite) = service_address {
        for svc in &mut services {
            if let Some(ip) = svc.spec.as_mut().and_then(|s| s.cluster_ip.as_mut())
                && let Some(local) = rewrite(ip)
            {
                *ip = local;
            }
        }
    }
    let service_vars = service_env(&ns, links, &services);
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
            let mut visible = service_vars.clone();
            visible.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            expand(env.value.as_deref().unwrap_or_default(), &visible)
        };
        set(&mut order, &mut vars, name, value);
    }
    for (k, v) in service_vars {
        if let std::collections::btree_map::Entry::Vacant(slot) = vars.entry(k.clone()) {
            order.push(k);
            slot.insert(v);
        }
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

    fn service(ns: &str, name: &str, ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        use navarch_api::core::v1::{ServicePort, ServiceSpec};
        Service {
            metadata: Some(ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: (!n.is_empty()).then(|| n.to_string()),
                        port: Some(*p),
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_variables_follow_the_kubelet() {
        let services = [
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[("https", 443, "TCP")],
            ),
            service(
                "shop",
                "web-front",
                "10.96.0.20",
                &[("http", 80, "TCP"), ("dns", 53, "UDP")],
            ),
            service("shop", "headless", "None", &[("", 80, "TCP")]),
            service("other", "elsewhere", "10.96.0.30", &[("", 80, "TCP")]),
        ];
        let env = service_env("shop", true, &services);
        let want: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("WEB_FRONT_SERVICE_HOST", "10.96.0.20"),
            ("WEB_FRONT_SERVICE_PORT", "80"),
            ("WEB_FRONT_SERVICE_PORT_HTTP", "80"),
            ("WEB_FRONT_SERVICE_PORT_DNS", "53"),
            ("WEB_FRONT_PORT", "tcp://10.96.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP", "tcp://10.96.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_FRONT_PORT_80_TCP_PORT", "80"),
            ("WEB_FRONT_PORT_80_TCP_ADDR", "10.96.0.20"),
            ("WEB_FRONT_PORT_53_UDP", "udp://10.96.0.20:53"),
            ("WEB_FRONT_PORT_53_UDP_PROTO", "udp"),
            ("WEB_FRONT_PORT_53_UDP_PORT", "53"),
            ("WEB_FRONT_PORT_53_UDP_ADDR", "10.96.0.20"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
        // enableServiceLinks: false keeps only the API's own Service.
        let env = service_env("shop", false, &services);
        assert!(env.keys().all(|k| k.starts_with("KUBERNETES_")), "{env:?}");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
    }

    #[tokio::test]
    async fn the_pods_own_variables_win_and_may_refer_to_service_ones() {
        let api = FakePodApi::default();
        api.add_service(service(
            "default",
            "kubernetes",
            "10.96.0.1",
            &[("https", 443, "TCP")],
        ));
        let pod = Pod {
            metadata: Some(ObjectMeta {
                namespace: Some("default".into()),
                name: Some("p".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container {
            env: vec![
                EnvVar {
                    name: Some("KUBERNETES_SERVICE_PORT".into()),
                    value: Some("8443".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: Some("API".into()),
                    value: Some("https://$(KUBERNETES_SERVICE_HOST)".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let env: BTreeMap<_, _> = container_env(&api, &pod, &c, "10.0.0.2", "10.0.0.1", None)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "8443");
        assert_eq!(env["API"], "https://10.96.0.1");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
    }

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
        let got = container_env(&api, &pod, &c, "10.0.0.1", "192.168.0.1", None)
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
