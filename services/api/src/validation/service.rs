//! Services, Endpoints and EndpointSlices (`ValidateService`, `ValidateEndpoints`,
//! `pkg/apis/discovery/validation`).

use std::collections::HashSet;
use std::net::IpAddr;

use super::meta::{NameRule, validate_labels};
use super::names::{
    INVALID_CIDR, INVALID_IP, is_dns1123_label, is_dns1123_subdomain,
    is_fully_qualified_domain_name, is_qualified_name, is_valid_cidr, is_valid_ip,
    is_valid_label_value, is_valid_port_num, name_is_dns_subdomain,
};
use super::pod::{validate_port_num_or_name, validate_protocol};
use super::{
    Errs, Path, duplicate, duplicate_str, each, forbidden, invalid, invalid_str, not_supported,
    or_default, q, required, s, too_many, validate_meta,
};
use crate::FieldError;
use crate::core::v1::{EndpointAddress, Endpoints, Service, ServicePort, ServiceSpec};
use crate::discovery::v1::EndpointSlice;

/// The default NodePort range (`--service-node-port-range`).
pub const NODE_PORT_RANGE: (i32, i32) = (30000, 32767);
const KUBELET_PORT: i32 = 10250;

fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_i_ps.len() == 1 && spec.cluster_i_ps[0] == "None"
}

fn externally_accessible(spec: &ServiceSpec) -> bool {
    let t = s(&spec.r#type);
    t == "LoadBalancer" || t == "NodePort" || (t == "ClusterIP" && !spec.external_i_ps.is_empty())
}

/// Validates a Service on create, or on update against `old`.
pub fn validate_service(svc: &Service, old: Option<&Service>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = or_default(&svc.spec);
    validate_meta(
        &svc.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::Dns1035Label,
        &mut errs,
    );
    if let Some(old) = old {
        validate_service_update(&spec, &or_default(&old.spec), &mut errs);
    }
    let path = Path::new("spec");
    let kind = s(&spec.r#type);
    let headless = is_headless(&spec);
    if spec.ports.is_empty() && !headless && kind != "ExternalName" {
        errs.push(required(&path.child("ports"), ""));
    }
    match kind {
        "LoadBalancer" => {
            for (i, port) in spec.ports.iter().enumerate() {
                if port.port == Some(KUBELET_PORT) {
                    errs.push(invalid(
                        &path.child("ports").index(i),
                        KUBELET_PORT,
                        format!("may not expose port {KUBELET_PORT} externally since it is used by kubelet"),
                    ));
                }
            }
            if headless {
                errs.push(invalid_str(
                    &path.child("clusterIPs").index(0),
                    "None",
                    "may not be set to 'None' for LoadBalancer services",
                ));
            }
        }
        "NodePort" if headless => {
            errs.push(invalid_str(
                &path.child("clusterIPs").index(0),
                "None",
                "may not be set to 'None' for NodePort services",
            ));
        }
        "ExternalName" => {
            if !spec.cluster_i_ps.is_empty() {
                errs.push(forbidden(
                    &path.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if !spec.ip_families.is_empty() {
                errs.push(forbidden(
                    &path.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(forbidden(
                    &path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let name = s(&spec.external_name);
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(required(&path.child("externalName"), ""));
            } else {
                each(
                    &mut errs,
                    &path.child("externalName"),
                    cname,
                    is_dns1123_subdomain(cname),
                );
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        validate_service_port(
            port,
            spec.ports.len() > 1,
            &mut names,
            &path.child("ports").index(i),
            &mut errs,
        );
    }
    validate_labels(&spec.selector, &path.child("selector"), &mut errs);
    match s(&spec.session_affinity) {
        "" => errs.push(required(&path.child("sessionAffinity"), "")),
        "ClientIP" => match spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
        {
            None => errs.push(required(
                &path.child("sessionAffinityConfig"),
                "when session affinity type is ClientIP",
            )),
            Some(ip) => match ip.timeout_seconds {
                None => errs.push(required(
                    &path
                        .child("sessionAffinityConfig")
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    "when session affinity type is ClientIP",
                )),
                Some(t) if t <= 0 || t > 86400 => errs.push(invalid(
                    &path
                        .child("sessionAffinityConfig")
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    t,
                    "must be greater than 0 and less than 86400",
                )),
                Some(_) => {}
            },
        },
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(forbidden(
                    &path.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(not_supported(
            &path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    validate_cluster_ips(&spec, &path, &mut errs);
    for (i, ip) in spec.external_i_ps.iter().enumerate() {
        let p = path.child("externalIPs").index(i);
        if is_valid_ip(ip) {
            validate_non_special_ip(ip, &p, &mut errs);
        } else {
            errs.push(invalid_str(&p, ip, INVALID_IP));
        }
    }
    match kind {
        "" => errs.push(required(&path.child("type"), "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    let mut node_ports = HashSet::new();
    let mut ports = HashSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p = path.child("ports").index(i);
        let node_port = port.node_port.unwrap_or(0);
        if node_port != 0 {
            if kind == "ClusterIP" {
                errs.push(forbidden(
                    &p.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if (kind == "NodePort" || kind == "LoadBalancer")
                && !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port)
            {
                errs.push(invalid(
                    &p.child("nodePort"),
                    node_port,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            }
            if !node_ports.insert((s(&port.protocol).to_string(), node_port)) {
                errs.push(duplicate(&p.child("nodePort"), node_port));
            }
        }
        let key = (s(&port.protocol).to_string(), port.port.unwrap_or(0));
        if !ports.insert(key.clone()) {
            errs.push(duplicate(
                &p,
                format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    q(&key.0),
                    key.1
                ),
            ));
        }
    }
    if !spec.load_balancer_source_ranges.is_empty() {
        let p = path.child("loadBalancerSourceRanges");
        if kind != "LoadBalancer" {
            errs.push(forbidden(
                &p,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, range) in spec.load_balancer_source_ranges.iter().enumerate() {
            let range = range.trim();
            if !is_valid_cidr(range) {
                errs.push(invalid_str(&p.index(i), range, INVALID_CIDR));
            }
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && kind != "LoadBalancer" {
        errs.push(forbidden(
            &path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if kind == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        errs.push(required(&path.child("allocateLoadBalancerNodePorts"), ""));
    }
    if let Some(class) = &spec.load_balancer_class {
        if kind == "LoadBalancer" {
            each(
                &mut errs,
                &path.child("loadBalancerClass"),
                class,
                is_qualified_name(class),
            );
        } else {
            errs.push(forbidden(
                &path.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let external_policy = s(&spec.external_traffic_policy);
    if !externally_accessible(&spec) {
        if !external_policy.is_empty() {
            errs.push(invalid_str(
                &path.child("externalTrafficPolicy"),
                external_policy,
                "may only be set for externally-accessible services",
            ));
        }
    } else if external_policy.is_empty() {
        errs.push(required(&path.child("externalTrafficPolicy"), ""));
    } else if external_policy != "Cluster" && external_policy != "Local" {
        errs.push(not_supported(
            &path.child("externalTrafficPolicy"),
            external_policy,
            &["Cluster", "Local"],
        ));
    }
    let health_port = spec.health_check_node_port.unwrap_or(0);
    let needs_health_check = kind == "LoadBalancer" && external_policy == "Local";
    if !needs_health_check && health_port != 0 {
        errs.push(invalid(
            &path.child("healthCheckNodePort"),
            health_port,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    } else if needs_health_check && health_port != 0 {
        for msg in is_valid_port_num(i64::from(health_port)) {
            errs.push(invalid(
                &path.child("healthCheckNodePort"),
                health_port,
                msg,
            ));
        }
    }
    match &spec.internal_traffic_policy {
        None => {
            if ["NodePort", "LoadBalancer", "ClusterIP"].contains(&kind) {
                errs.push(required(&path.child("internalTrafficPolicy"), ""));
            }
        }
        Some(policy) if policy != "Cluster" && policy != "Local" => {
            errs.push(not_supported(
                &path.child("internalTrafficPolicy"),
                policy,
                &["Cluster", "Local"],
            ));
        }
        Some(_) => {}
    }
    if let Some(distribution) = &spec.traffic_distribution {
        const SUPPORTED: [&str; 3] = ["PreferClose", "PreferSameZone", "PreferSameNode"];
        if !SUPPORTED.contains(&distribution.as_str()) {
            errs.push(not_supported(
                &path.child("trafficDistribution"),
                distribution,
                &SUPPORTED,
            ));
        }
    }
    errs
}

fn validate_service_port(
    port: &ServicePort,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &Path,
    errs: &mut Errs,
) {
    let name = s(&port.name);
    if require_name && name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else if !name.is_empty() {
        each(errs, &path.child("name"), name, is_dns1123_label(name));
        if !names.insert(name.to_string()) {
            errs.push(duplicate_str(&path.child("name"), name));
        }
    }
    let number = port.port.unwrap_or(0);
    for msg in is_valid_port_num(i64::from(number)) {
        errs.push(invalid(&path.child("port"), number, msg));
    }
    validate_protocol(s(&port.protocol), &path.child("protocol"), errs);
    validate_port_num_or_name(&port.target_port, &path.child("targetPort"), errs);
    if let Some(app) = &port.app_protocol {
        each(
            errs,
            &path.child("appProtocol"),
            app,
            is_qualified_name(app),
        );
    }
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips(spec: &ServiceSpec, path: &Path, errs: &mut Errs) {
    if s(&spec.r#type) == "ExternalName" {
        return;
    }
    let ips_path = path.child("clusterIPs");
    let cluster_ip = s(&spec.cluster_ip);
    let ips = &spec.cluster_i_ps;
    let rendered = || super::go_strings(ips);
    if !cluster_ip.is_empty() {
        match ips.first() {
            None => errs.push(required(&ips_path, "")),
            Some(first) if first != cluster_ip => errs.push(invalid(
                &ips_path,
                rendered(),
                "first value must match `clusterIP`",
            )),
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(invalid(
            &ips_path,
            rendered(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = HashSet::new();
    for (i, family) in spec.ip_families.iter().enumerate() {
        let p = path.child("ipFamilies").index(i);
        if family != "IPv4" && family != "IPv6" {
            errs.push(not_supported(&p, family, &["IPv4", "IPv6"]));
        }
        if !seen.insert(family) {
            errs.push(duplicate_str(&p, family));
        }
    }
    if let Some(policy) = &spec.ip_family_policy
        && !["SingleStack", "PreferDualStack", "RequireDualStack"].contains(&policy.as_str())
    {
        errs.push(not_supported(
            &path.child("ipFamilyPolicy"),
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut bad = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad = true;
                errs.push(invalid(
                    &ips_path,
                    rendered(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if !is_valid_ip(ip) {
            bad = true;
            errs.push(invalid_str(&ips_path.index(i), ip, INVALID_IP));
        }
    }
    if ips.len() > 2 {
        errs.push(invalid(
            &ips_path,
            rendered(),
            "may only hold up to 2 values",
        ));
    }
    if bad {
        return;
    }
    if ips.len() > 1 {
        let v6: Vec<bool> = ips
            .iter()
            .map(|ip| ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6()))
            .collect();
        if v6.len() != 2 || v6[0] == v6[1] {
            errs.push(invalid(
                &ips_path,
                rendered(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(spec) {
        for (i, (ip, family)) in ips.iter().zip(&spec.ip_families).enumerate() {
            let v6 = ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6());
            if family == "IPv4" && v6 {
                errs.push(invalid_str(
                    &ips_path.index(i),
                    ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if family == "IPv6" && !v6 {
                errs.push(invalid_str(
                    &ips_path.index(i),
                    ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

/// Cluster IPs may be added or the secondary released, but never changed, except to or from
/// ExternalName.
fn validate_service_update(new: &ServiceSpec, old: &ServiceSpec, errs: &mut Errs) {
    let path = Path::new("spec");
    if s(&new.r#type) == "ExternalName" || s(&old.r#type) == "ExternalName" {
        return;
    }
    let (new_ips, old_ips) = (&new.cluster_i_ps, &old.cluster_i_ps);
    let rendered = || super::go_strings(new_ips);
    if !(is_headless(new) && is_headless(old)) {
        let ips_path = path.child("clusterIPs");
        if new_ips.len() == old_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    errs.push(invalid(
                        &ips_path.index(i),
                        rendered(),
                        "may not change once set",
                    ));
                }
            }
        } else if old_ips.len() > new_ips.len() {
            if new_ips.is_empty() {
                errs.push(invalid(
                    &ips_path.index(0),
                    rendered(),
                    "primary clusterIP can not be unset",
                ));
            }
            if !old_ips.is_empty() && !new_ips.is_empty() && new_ips[0] != old_ips[0] {
                errs.push(invalid(
                    &ips_path.index(0),
                    rendered(),
                    "may not change once set",
                ));
            }
            if new_ips.len() == 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
                errs.push(invalid(
                    &path.child("ipFamilyPolicy"),
                    new.ip_family_policy
                        .as_deref()
                        .map_or_else(|| "null".to_string(), q),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(invalid(
                &ips_path.index(0),
                rendered(),
                "may not change once set",
            ));
        }
    }
    if is_headless(new) == is_headless(old) && !is_headless(new) {
        let (new_f, old_f) = (&new.ip_families, &old.ip_families);
        let families_path = path.child("ipFamilies").index(0);
        if new_f.len() == old_f.len() {
            if new_f != old_f {
                errs.push(invalid(
                    &families_path,
                    super::go_strings(new_f),
                    "may not change once set",
                ));
            }
        } else if old_f.len() > new_f.len() {
            if !new_f.is_empty() && new_f[0] != old_f[0] {
                errs.push(invalid(
                    &families_path,
                    super::go_strings(new_f),
                    "may not change once set",
                ));
            }
            if new_f.len() == 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
                errs.push(invalid(
                    &path.child("ipFamilyPolicy"),
                    new.ip_family_policy
                        .as_deref()
                        .map_or_else(|| "null".to_string(), q),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                ));
            }
        } else if !old_f.is_empty() && new_f[0] != old_f[0] {
            errs.push(invalid(
                &families_path,
                super::go_strings(new_f),
                "may not change once set",
            ));
        }
    }
    if s(&new.r#type) == "LoadBalancer"
        && s(&old.r#type) == "LoadBalancer"
        && new.load_balancer_class != old.load_balancer_class
    {
        errs.push(invalid(
            &path.child("loadBalancerClass"),
            new.load_balancer_class
                .as_deref()
                .map_or_else(|| "null".to_string(), q),
            "may not change once set",
        ));
    }
    let needs_health = |spec: &ServiceSpec| {
        s(&spec.r#type) == "LoadBalancer" && s(&spec.external_traffic_policy) == "Local"
    };
    if needs_health(new)
        && needs_health(old)
        && new.health_check_node_port != old.health_check_node_port
    {
        errs.push(forbidden(
            &path.child("healthCheckNodePort"),
            "field is immutable",
        ));
    }
}

/// `ValidateNonSpecialIP`: no unspecified, loopback or link-local addresses.
pub(crate) fn validate_non_special_ip(ip: &str, path: &Path, errs: &mut Errs) {
    let Ok(addr) = ip.parse::<IpAddr>() else {
        errs.push(invalid_str(path, ip, "must be a valid IP address"));
        return;
    };
    if addr.is_unspecified() {
        errs.push(invalid_str(
            path,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let (link_local_unicast, link_local_multicast) = match addr {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => {
            let seg = v6.segments()[0];
            ((seg & 0xffc0) == 0xfe80, (seg & 0xff0f) == 0xff02)
        }
    };
    if link_local_unicast {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

// ---- Endpoints ----------------------------------------------------------------------------

/// Validates an Endpoints object.
pub fn validate_endpoints(ep: &Endpoints, old: Option<&Endpoints>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &ep.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let path = Path::new("subsets");
    for (i, subset) in ep.subsets.iter().enumerate() {
        let p = path.index(i);
        if subset.addresses.is_empty() && subset.not_ready_addresses.is_empty() {
            errs.push(required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, addr) in subset.addresses.iter().enumerate() {
            validate_endpoint_address(addr, &p.child("addresses").index(j), &mut errs);
        }
        for (j, addr) in subset.not_ready_addresses.iter().enumerate() {
            validate_endpoint_address(addr, &p.child("notReadyAddresses").index(j), &mut errs);
        }
        for (j, port) in subset.ports.iter().enumerate() {
            let pp = p.child("ports").index(j);
            let name = s(&port.name);
            if subset.ports.len() > 1 && name.is_empty() {
                errs.push(required(&pp.child("name"), ""));
            } else if !name.is_empty() {
                each(&mut errs, &pp.child("name"), name, is_dns1123_label(name));
            }
            let number = port.port.unwrap_or(0);
            for msg in is_valid_port_num(i64::from(number)) {
                errs.push(invalid(&pp.child("port"), number, msg));
            }
            validate_protocol(s(&port.protocol), &pp.child("protocol"), &mut errs);
            if let Some(app) = &port.app_protocol {
                each(
                    &mut errs,
                    &pp.child("appProtocol"),
                    app,
                    is_qualified_name(app),
                );
            }
        }
    }
    errs
}

fn validate_endpoint_address(addr: &EndpointAddress, path: &Path, errs: &mut Errs) {
    let ip = s(&addr.ip);
    if !is_valid_ip(ip) {
        errs.push(invalid_str(&path.child("ip"), ip, INVALID_IP));
    }
    let hostname = s(&addr.hostname);
    if !hostname.is_empty() {
        each(
            errs,
            &path.child("hostname"),
            hostname,
            is_dns1123_label(hostname),
        );
    }
    if let Some(node) = &addr.node_name {
        each(
            errs,
            &path.child("nodeName"),
            node,
            name_is_dns_subdomain(node, false),
        );
    }
    validate_non_special_ip(ip, &path.child("ip"), errs);
}

// ---- EndpointSlice --------------------------------------------------------------------------

/// Validates an EndpointSlice; `addressType` cannot change.
pub fn validate_endpoint_slice(
    slice: &EndpointSlice,
    old: Option<&EndpointSlice>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &slice.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let address_type = s(&slice.address_type);
    match address_type {
        "IPv4" | "IPv6" | "FQDN" => {}
        "" => errs.push(required(&Path::new("addressType"), "")),
        other => errs.push(not_supported(
            &Path::new("addressType"),
            other,
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    let endpoints_path = Path::new("endpoints");
    if slice.endpoints.len() > 1000 {
        errs.push(too_many(&endpoints_path, slice.endpoints.len(), 1000));
    } else {
        for (i, endpoint) in slice.endpoints.iter().enumerate() {
            let p = endpoints_path.index(i);
            let addresses = p.child("addresses");
            if endpoint.addresses.is_empty() {
                errs.push(required(&addresses, "must contain at least 1 address"));
            } else if endpoint.addresses.len() > 100 {
                errs.push(too_many(&addresses, endpoint.addresses.len(), 100));
            }
            for (j, address) in endpoint.addresses.iter().enumerate() {
                let ap = addresses.index(j);
                match address_type {
                    "IPv4" | "IPv6" => {
                        let family_ok = address
                            .parse::<IpAddr>()
                            .is_ok_and(|a| a.is_ipv6() == (address_type == "IPv6"));
                        if !family_ok {
                            let example = if address_type == "IPv4" {
                                "10.9.8.7"
                            } else {
                                "2001:db8::ffff"
                            };
                            errs.push(invalid_str(
                                &ap,
                                address,
                                format!("must be a valid {address_type} address, (e.g. {example})"),
                            ));
                        } else {
                            validate_non_special_ip(address, &ap, &mut errs);
                        }
                    }
                    "FQDN" => each(
                        &mut errs,
                        &ap,
                        address,
                        is_fully_qualified_domain_name(address),
                    ),
                    _ => {}
                }
            }
            if let Some(node) = &endpoint.node_name {
                each(
                    &mut errs,
                    &p.child("nodeName"),
                    node,
                    name_is_dns_subdomain(node, false),
                );
            }
            let topology = p.child("deprecatedTopology");
            if endpoint.deprecated_topology.len() > 16 {
                errs.push(too_many(&topology, endpoint.deprecated_topology.len(), 16));
            }
            validate_labels(&endpoint.deprecated_topology, &topology, &mut errs);
            if let Some(zone) = &endpoint.zone {
                // Checked as the value of the topology.kubernetes.io/zone label.
                each(
                    &mut errs,
                    &p.child("zone"),
                    zone,
                    is_valid_label_value(zone),
                );
            }
            if let Some(hostname) = &endpoint.hostname {
                each(
                    &mut errs,
                    &p.child("hostname"),
                    hostname,
                    is_dns1123_label(hostname),
                );
            }
        }
    }
    let ports_path = Path::new("ports");
    let mut names = HashSet::new();
    for (i, port) in slice.ports.iter().enumerate() {
        let p = ports_path.index(i);
        let name = s(&port.name);
        if !name.is_empty() {
            each(&mut errs, &p.child("name"), name, is_dns1123_label(name));
        }
        if !names.insert(name) {
            errs.push(duplicate_str(&p.child("name"), name));
        }
        match &port.protocol {
            None => errs.push(required(&p.child("protocol"), "")),
            Some(protocol) => validate_protocol(protocol, &p.child("protocol"), &mut errs),
        }
        if let Some(app) = &port.app_protocol {
            each(
                &mut errs,
                &p.child("appProtocol"),
                app,
                is_qualified_name(app),
            );
        }
    }
    if let Some(old) = old {
        super::immutable_str(
            &mut errs,
            &Path::new("addressType"),
            address_type,
            s(&old.address_type),
        );
    }
    errs
}
