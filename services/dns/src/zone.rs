//! The cluster zone as a pure function of Services and EndpointSlices, answered like
//! CoreDNS's `kubernetes` plugin:
//!
//! - `<svc>.<ns>.svc.<domain>` A/AAAA → the ClusterIP; headless → the ready endpoints' IPs;
//!   ExternalName → a CNAME to the external name;
//! - `<hostname>.<svc>.<ns>.svc.<domain>` → that endpoint (StatefulSet pods under their
//!   governing headless Service);
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV → the named port (on the service name, or
//!   one record per endpoint for headless services), and SRV on the service name lists them all;
//! - `<a-b-c-d>.<ns>.pod.<domain>` A → `a.b.c.d` (the plugin's `pods insecure` mode);
//! - PTR for ClusterIPs and for headless endpoints with hostnames;
//! - a name under the domain that does not exist → NXDOMAIN, a name that exists without
//!   records of the asked type → NOERROR and no answers (both with the zone's SOA, so
//!   resolvers cache the negative answer for the TTL).
//!
//! [`Zone::answer`] returns `None` for names outside the zone: those are forwarded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use navarch_api::core::v1::Service;
use navarch_api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the zone depends on besides the objects.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// TTL of every answer, and of negative answers (CoreDNS's default: 5 s).
    pub ttl: u32,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            domain: "cluster.local".into(),
            ttl: 5,
        }
    }
}

/// The answer to one question in the zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The SOA for negative answers.
    pub authority: Vec<Record>,
}

/// Every record of the zone, indexed by lower-case name and type.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    ttl: u32,
    records: HashMap<(Name, RecordType), Vec<Record>>,
    /// Every name that exists (has records, or has names under it).
    names: HashSet<Name>,
    soa: Record,
    services: usize,
}

fn name(s: &str) -> Option<Name> {
    let mut n = Name::from_str(s).ok()?.to_lowercase();
    n.set_fqdn(true);
    Some(n)
}

/// A DNS label we can use: Kubernetes names are DNS-1123 labels already; anything else is
/// skipped rather than mis-encoded.
fn label_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && !s.contains('.')
}

fn ip_of(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

fn address(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, rdata)
}

fn reverse(ip: IpAddr) -> Option<Name> {
    let text = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    };
    name(&text)
}

/// A ready endpoint of a service: its IPs and hostname.
#[derive(Debug)]
struct Endpoint {
    ips: Vec<IpAddr>,
    hostname: Option<String>,
}

impl Zone {
    /// The zone for these objects.
    pub fn build(cfg: &ZoneConfig, services: &[&Service], slices: &[&EndpointSlice]) -> Self {
        let origin = name(&cfg.domain).unwrap_or_else(Name::root);
        let ttl = cfg.ttl;
        let soa = Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(
                name(&format!("ns.dns.{}", cfg.domain)).unwrap_or_else(Name::root),
                name(&format!("hostmaster.{}", cfg.domain)).unwrap_or_else(Name::root),
                1,
                7200,
                1800,
                86400,
                ttl,
            )),
        );
        let mut zone = Zone {
            origin,
            ttl,
            records: HashMap::new(),
            names: HashSet::new(),
            soa,
            services: 0,
        };
        zone.add_name(&zone.origin.clone());
        let mut endpoints: BTreeMap<(String, String), Vec<(&EndpointSlice, Endpoint)>> =
            BTreeMap::new();
        for s in slices {
            let meta = s.metadata.clone().unwrap_or_default();
            let Some(svc) = meta.labels.get(SERVICE_NAME_LABEL) else {
                continue;
            };
            let entry = endpoints
                .entry((meta.namespace.clone().unwrap_or_default(), svc.clone()))
                .or_default();
            for ep in &s.endpoints {
                if ep.conditions.unwrap_or_default().ready == Some(false) {
                    continue;
                }
                let ips: Vec<IpAddr> = ep.addresses.iter().filter_map(|a| ip_of(a)).collect();
                if !ips.is_empty() {
                    entry.push((
                        s,
                        Endpoint {
                            ips,
                            hostname: ep.hostname.clone().filter(|h| label_ok(h)),
                        },
                    ));
                }
            }
        }
        for svc in services {
            let meta = svc.metadata.clone().unwrap_or_default();
            let spec = svc.spec.clone().unwrap_or_default();
            let (ns, svc_name) = (
                meta.namespace.unwrap_or_default(),
                meta.name.unwrap_or_default(),
            );
            if !label_ok(&ns) || !label_ok(&svc_name) {
                continue;
            }
            let Some(ns_name) = name(&format!("{ns}.svc.{}", cfg.domain)) else {
                continue;
            };
            let Some(owner) = name(&format!("{svc_name}.{ns}.svc.{}", cfg.domain)) else {
                continue;
            };
            zone.services += 1;
            zone.add_name(&ns_name);
            zone.add_name(&owner);
            if spec.r#type.as_deref() == Some("ExternalName") {
                if let Some(target) = spec.external_name.as_deref().and_then(name) {
                    zone.add(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::CNAME(CNAME(target)),
                    ));
                }
                continue;
            }
            let cluster_ips: Vec<IpAddr> = if spec.cluster_i_ps.is_empty() {
                spec.cluster_ip.iter().filter_map(|ip| ip_of(ip)).collect()
            } else {
                spec.cluster_i_ps
                    .iter()
                    .filter_map(|ip| ip_of(ip))
                    .collect()
            };
            let headless = cluster_ips.is_empty();
            let eps = endpoints
                .remove(&(ns.clone(), svc_name.clone()))
                .unwrap_or_default();
            // Endpoint names: the hostname, else the first address with dashes.
            let ep_names: Vec<Option<Name>> = eps
                .iter()
                .map(|(_, e)| {
                    let label = e
                        .hostname
                        .clone()
                        .unwrap_or_else(|| e.ips[0].to_string().replace(['.', ':'], "-"));
                    name(&format!("{label}.{svc_name}.{ns}.svc.{}", cfg.domain))
                })
                .collect();
            if headless {
                for ((_, e), n) in eps.iter().zip(&ep_names) {
                    for ip in &e.ips {
                        zone.add(address(&owner, ttl, *ip));
                        if let Some(n) = n {
                            zone.add(address(n, ttl, *ip));
                            if e.hostname.is_some()
                                && let Some(r) = reverse(*ip)
                            {
                                zone.add(Record::from_rdata(r, ttl, RData::PTR(PTR(n.clone()))));
                            }
                        }
                    }
                    if let Some(n) = n {
                        zone.add_name(n);
                    }
                }
            } else {
                for ip in &cluster_ips {
                    zone.add(address(&owner, ttl, *ip));
                    if let Some(r) = reverse(*ip) {
                        zone.add(Record::from_rdata(r, ttl, RData::PTR(PTR(owner.clone()))));
                    }
                }
            }
            // SRV for named ports.
            for port in &spec.ports {
                let (Some(port_name), Some(number)) = (
                    port.name.as_deref().filter(|n| label_ok(n)),
                    port.port.and_then(|p| u16::try_from(p).ok()),
                ) else {
                    continue;
                };
                let proto = port
                    .protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .to_ascii_lowercase();
                let Some(srv_owner) = name(&format!(
                    "_{port_name}._{proto}.{svc_name}.{ns}.svc.{}",
                    cfg.domain
                )) else {
                    continue;
                };
                zone.add_name(&srv_owner);
                let mut srvs = Vec::new();
                if headless {
                    for ((slice, _), n) in eps.iter().zip(&ep_names) {
                        let Some(n) = n else { continue };
                        let target_port = slice
                            .ports
                            .iter()
                            .find(|p| p.name.as_deref() == Some(port_name))
                            .and_then(|p| p.port)
                            .and_then(|p| u16::try_from(p).ok())
                            .unwrap_or(number);
                        srvs.push(SRV::new(0, 100, target_port, n.clone()));
                    }
                } else {
                    srvs.push(SRV::new(0, 100, number, owner.clone()));
                }
                for srv in srvs {
                    zone.add(Record::from_rdata(
                        srv_owner.clone(),
                        ttl,
                        RData::SRV(srv.clone()),
                    ));
                    zone.add(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)));
                }
            }
        }
        zone
    }

    fn add_name(&mut self, n: &Name) {
        let mut n = n.clone();
        while self.origin.zone_of(&n) && self.names.insert(n.clone()) {
            n = n.base_name();
        }
    }

    fn add(&mut self, r: Record) {
        let key = (r.name().clone(), r.record_type());
        if r.record_type() != RecordType::PTR {
            self.add_name(r.name());
        }
        let list = self.records.entry(key).or_default();
        if !list.contains(&r) {
            list.push(r);
        }
    }

    /// How many services the zone holds.
    pub fn services(&self) -> usize {
        self.services
    }

    /// The answer for `(qname, qtype)`, or `None` when the name is not ours (forward it).
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Option<Answer> {
        let qname = {
            let mut n = qname.to_lowercase();
            n.set_fqdn(true);
            n
        };
        if !self.origin.zone_of(&qname) {
            // Reverse lookups of our addresses are ours; other reverse names are not.
            let ptrs = self.records.get(&(qname.clone(), RecordType::PTR))?;
            return Some(self.found(
                if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                    ptrs.clone()
                } else {
                    vec![]
                },
                vec![],
            ));
        }
        if let Some(a) = self.pod_answer(&qname, qtype) {
            return Some(a);
        }
        if qname == self.origin && qtype == RecordType::SOA {
            return Some(self.found(vec![self.soa.clone()], vec![]));
        }
        if !self.names.contains(&qname) {
            return Some(self.nxdomain());
        }
        let get = |t: RecordType| {
            self.records
                .get(&(qname.clone(), t))
                .cloned()
                .unwrap_or_default()
        };
        // A CNAME answers every type.
        let cname = get(RecordType::CNAME);
        if !cname.is_empty() {
            return Some(self.found(cname, vec![]));
        }
        let answers = match qtype {
            RecordType::ANY => [RecordType::A, RecordType::AAAA, RecordType::SRV]
                .into_iter()
                .flat_map(get)
                .collect(),
            t => get(t),
        };
        // SRV targets' addresses, as CoreDNS adds them.
        let mut additionals = Vec::new();
        for r in &answers {
            if let RData::SRV(srv) = r.data() {
                for t in [RecordType::A, RecordType::AAAA] {
                    if let Some(rs) = self.records.get(&(srv.target().clone(), t)) {
                        for a in rs {
                            if !additionals.contains(a) {
                                additionals.push(a.clone());
                            }
                        }
                    }
                }
            }
        }
        Some(self.found(answers, additionals))
    }

    fn found(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        let authority = if answers.is_empty() {
            vec![self.soa.clone()]
        } else {
            vec![]
        };
        Answer {
            code: ResponseCode::NoError,
            answers,
            additionals,
            authority,
        }
    }

    /// `a-b-c-d.<ns>.pod.<domain>`.
    fn pod_answer(&self, qname: &Name, qtype: RecordType) -> Option<Answer> {
        let labels: Vec<String> = qname
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let zone_labels = self.origin.num_labels() as usize;
        if labels.len() < zone_labels + 1 || labels[labels.len() - zone_labels - 1] != "pod" {
            return None;
        }
        if labels.len() != zone_labels + 3 {
            // `pod.<domain>` and `<ns>.pod.<domain>` exist; anything deeper does not.
            return Some(if labels.len() < zone_labels + 3 {
                self.found(vec![], vec![])
            } else {
                self.nxdomain()
            });
        }
        let Ok(ip) = labels[0].replace('-', ".").parse::<Ipv4Addr>() else {
            return Some(self.nxdomain());
        };
        Some(self.found(
            if matches!(qtype, RecordType::A | RecordType::ANY) {
                vec![address(qname, self.ttl, IpAddr::V4(ip))]
            } else {
                vec![]
            },
            vec![],
        ))
    }

    fn nxdomain(&self) -> Answer {
        Answer {
            code: ResponseCode::NXDomain,
            answers: vec![],
            additionals: vec![],
            authority: vec![self.soa.clone()],
        }
    }
}

#[cfg(test)]
mod tests;
