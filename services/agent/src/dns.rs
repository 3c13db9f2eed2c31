//! A pod's `/etc/resolv.conf`, as the kubelet decides it (`pkg/kubelet/network/dns`): from
//! `dnsPolicy`, `hostNetwork`, `dnsConfig`, the cluster DNS and the node's own resolver.

use navarch_api::core::v1::PodSpec;

/// The resolver configuration a pod's containers see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    /// `name` or `name:value`, as on an `options` line.
    pub options: Vec<String>,
}

/// The kubelet's limits: the resolver reads three nameservers; Kubernetes allows 32 search
/// domains.
const MAX_SERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

impl ResolvConf {
    /// Parses `resolv.conf` text (the node's own), keeping what pods inherit.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.servers.extend(words.next().map(str::to_string)),
                // The last `search` (or `domain`) line wins, as in the resolver.
                Some("search") | Some("domain") => {
                    out.searches = words.map(str::to_string).collect()
                }
                Some("options") => out.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        out
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for s in &self.servers {
            text.push_str(&format!("nameserver {s}\n"));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// The cluster DNS the node's pods use: its servers (empty when there is none) and domain.
#[derive(Clone, Debug, Default)]
pub struct ClusterDnsView<'a> {
    pub servers: &'a [String],
    pub domain: &'a str,
}

/// `resolv.conf` for a pod in `namespace` with `spec`, given the cluster DNS and the
/// node's resolver (`host`). ClusterFirst with no cluster DNS falls back to the node's, as
/// the kubelet does; `hostNetwork` pods take the node's unless ClusterFirstWithHostNet.
pub fn pod_resolv_conf(
    spec: &PodSpec,
    namespace: &str,
    cluster: &ClusterDnsView,
    host: &ResolvConf,
) -> ResolvConf {
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let use_cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" | "" => !host_network,
        _ => false,
    } && !cluster.servers.is_empty();
    let mut conf = match policy {
        "None" => ResolvConf::default(),
        _ if use_cluster => {
            let d = cluster.domain;
            let mut searches = if d.is_empty() {
                vec![]
            } else {
                vec![
                    format!("{namespace}.svc.{d}"),
                    format!("svc.{d}"),
                    d.to_string(),
                ]
            };
            searches.extend(host.searches.iter().cloned());
            ResolvConf {
                servers: cluster.servers.to_vec(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => host.clone(),
    };
    if let Some(extra) = &spec.dns_config {
        conf.servers.extend(extra.nameservers.iter().cloned());
        conf.searches.extend(extra.searches.iter().cloned());
        for o in &extra.options {
            let name = o.name.clone().unwrap_or_default();
            if name.is_empty() {
                continue;
            }
            let option = match o.value.as_deref().filter(|v| !v.is_empty()) {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            };
            // A pod's option overrides the one of the same name it inherited.
            conf.options
                .retain(|have| have.split(':').next() != Some(name.as_str()));
            conf.options.push(option);
        }
    }
    dedup(&mut conf.servers);
    dedup(&mut conf.searches);
    conf.servers.truncate(MAX_SERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    conf
}

/// The pod bridge's gateway in `cidr`: its first address, as host-local gives the bridge
/// plugin's `isGateway` (`10.244.1.0/24` → `10.244.1.1`).
pub fn pod_gateway(cidr: &str) -> Option<std::net::IpAddr> {
    use std::net::IpAddr;
    let (ip, len) = cidr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match ip.parse().ok()? {
        IpAddr::V4(v4) if len < 31 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Some(IpAddr::V4((u32::from(v4) & mask).wrapping_add(1).into()))
        }
        IpAddr::V6(v6) if len < 127 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            Some(IpAddr::V6((u128::from(v6) & mask).wrapping_add(1).into()))
        }
        _ => None,
    }
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use navarch_api::core::v1::{PodDnsConfig, PodDnsConfigOption};

    fn spec(policy: &str, host_network: bool) -> PodSpec {
        PodSpec {
            dns_policy: Some(policy.into()),
            host_network: Some(host_network),
            ..Default::default()
        }
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gateway_of_a_pod_cidr() {
        assert_eq!(
            pod_gateway("10.244.1.0/24").unwrap().to_string(),
            "10.244.1.1"
        );
        assert_eq!(
            pod_gateway("10.244.1.7/16").unwrap().to_string(),
            "10.244.0.1"
        );
        assert_eq!(
            pod_gateway("fd00:10:244::/64").unwrap().to_string(),
            "fd00:10:244::1"
        );
        assert_eq!(pod_gateway("10.0.0.0/31"), None);
        assert_eq!(pod_gateway("nonsense"), None);
    }

    #[test]
    fn policies() {
        let host = ResolvConf::parse(
            "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54 ; second\nsearch corp.example\noptions edns0 ndots:1\n",
        );
        assert_eq!(host.servers, strings(&["192.0.2.53", "192.0.2.54"]));
        let servers = strings(&["10.244.0.1"]);
        let cluster = ClusterDnsView {
            servers: &servers,
            domain: "cluster.local",
        };
        let none = ClusterDnsView {
            servers: &[],
            domain: "cluster.local",
        };
        let clustered = ResolvConf {
            servers: servers.clone(),
            searches: strings(&[
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
            ]),
            options: strings(&["ndots:5"]),
        };
        let table: Vec<(&str, PodSpec, &ClusterDnsView, ResolvConf)> = vec![
            (
                "default policy",
                PodSpec::default(),
                &cluster,
                clustered.clone(),
            ),
            (
                "ClusterFirst",
                spec("ClusterFirst", false),
                &cluster,
                clustered.clone(),
            ),
            (
                "hostNetwork",
                spec("ClusterFirst", true),
                &cluster,
                host.clone(),
            ),
            (
                "ClusterFirstWithHostNet",
                spec("ClusterFirstWithHostNet", true),
                &cluster,
                clustered.clone(),
            ),
            ("Default", spec("Default", false), &cluster, host.clone()),
            (
                "no cluster DNS",
                spec("ClusterFirst", false),
                &none,
                host.clone(),
            ),
            ("None", spec("None", false), &cluster, ResolvConf::default()),
        ];
        for (what, spec, cluster, want) in table {
            assert_eq!(
                pod_resolv_conf(&spec, "shop", cluster, &host),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn dns_config_is_merged() {
        let host = ResolvConf::default();
        let servers = strings(&["10.244.0.1"]);
        let cluster = ClusterDnsView {
            servers: &servers,
            domain: "cluster.local",
        };
        let mut s = spec("ClusterFirst", false);
        s.dns_config = Some(PodDnsConfig {
            nameservers: strings(&["10.244.0.1", "192.0.2.1", "192.0.2.2", "192.0.2.3"]),
            searches: strings(&["svc.cluster.local", "extra.example"]),
            options: vec![
                PodDnsConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDnsConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ],
        });
        let got = pod_resolv_conf(&s, "web", &cluster, &host);
        assert_eq!(
            got.servers,
            strings(&["10.244.0.1", "192.0.2.1", "192.0.2.2"])
        );
        assert_eq!(
            got.searches,
            strings(&[
                "web.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "extra.example"
            ])
        );
        assert_eq!(got.options, strings(&["ndots:2", "edns0"]));
        assert_eq!(
            got.render(),
            "search web.svc.cluster.local svc.cluster.local cluster.local extra.example\nnameserver 10.244.0.1\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions ndots:2 edns0\n"
        );

        let mut s = spec("None", false);
        s.dns_config = Some(PodDnsConfig {
            nameservers: strings(&["192.0.2.9"]),
            ..Default::default()
        });
        assert_eq!(
            pod_resolv_conf(&s, "web", &cluster, &host).render(),
            "nameserver 192.0.2.9\n"
        );
    }
}
