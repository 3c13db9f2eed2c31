//! Table tests of the pure rule generation: Services × EndpointSlices → chains and the
//! `iptables-restore` batch.

use navarch_api::core::v1::{
    ClientIpConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use navarch_api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use navarch_api::meta::v1::ObjectMeta;
use navarch_proxy::rules::{self, Chains, RulesConfig, Table};

fn svc(name: &str, ip: &str, ty: &str, node_port: Option<i32>) -> Service {
    Service {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            r#type: Some(ty.into()),
            cluster_ip: Some(ip.into()),
            ports: vec![ServicePort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(80),
                node_port,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(svc: &str, eps: &[(&str, Option<bool>)]) -> EndpointSlice {
    EndpointSlice {
        metadata: Some(ObjectMeta {
            name: Some(format!("{svc}-abc")),
            namespace: Some("ns".into()),
            labels: [(rules::SERVICE_NAME_LABEL.to_string(), svc.to_string())].into(),
            ..Default::default()
        }),
        address_type: Some("IPv4".into()),
        endpoints: eps
            .iter()
            .map(|(ip, ready)| Endpoint {
                addresses: vec![(*ip).into()],
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    serving: *ready,
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: vec![EndpointPort {
            name: Some("http".into()),
            protocol: Some("TCP".into()),
            port: Some(8080),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn cfg() -> RulesConfig {
    RulesConfig {
        prefix: "NAVARCH-".into(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        service_cidr: Some("10.96.0.0/12".into()),
        pod_cidr: Some("10.244.1.0/24".into()),
    }
}

fn build(services: &[Service], slices: &[EndpointSlice]) -> Chains {
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    rules::chains(&cfg(), &rules::service_ports(&s, &e))
}

fn nat(c: &Chains, name: &str) -> Vec<String> {
    c.get(&(Table::Nat, name.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no nat chain {name}: {:?}", c.keys()))
}

fn filter(c: &Chains, name: &str) -> Vec<String> {
    c.get(&(Table::Filter, name.to_string())).cloned().unwrap()
}

fn chains_named(c: &Chains, part: &str) -> Vec<String> {
    c.keys()
        .filter(|(_, n)| n.contains(part))
        .map(|(_, n)| n.clone())
        .collect()
}

#[test]
fn cluster_ip_spreads_evenly_over_ready_endpoints() {
    let c = build(
        &[svc("web", "10.96.0.10", "ClusterIP", None)],
        &[slice(
            "web",
            &[
                ("10.244.1.3", Some(true)),
                ("10.244.1.2", None),
                ("10.244.1.4", Some(true)),
                ("10.244.1.9", Some(false)),
            ],
        )],
    );
    let services = nat(&c, "NAVARCH-SERVICES");
    assert_eq!(services.len(), 2);
    let svc_chain = chains_named(&c, "-SVC-");
    assert_eq!(svc_chain.len(), 1);
    let svc_chain = &svc_chain[0];
    assert!(svc_chain.len() <= 28);
    assert!(services[0].starts_with("-d 10.96.0.10/32 -p tcp -m tcp --dport 80 "));
    assert!(services[0].ends_with(&format!("-j {svc_chain}")));
    assert!(
        services[1].contains("--dst-type LOCAL") && services[1].ends_with("-j NAVARCH-NODEPORTS")
    );
    let rules = nat(&c, svc_chain);
    // Off-cluster sources masqueraded, then 1/3, 1/2, rest over the three ready endpoints.
    assert_eq!(
        rules[0],
        "-d 10.96.0.10/32 -p tcp -m tcp --dport 80 ! -s 10.244.0.0/16 -j NAVARCH-MARK-MASQ"
    );
    assert!(rules[1].contains("--probability 0.3333333333 -j NAVARCH-SEP-"));
    assert!(rules[2].contains("--probability 0.5000000000 -j NAVARCH-SEP-"));
    assert!(rules[3].starts_with("-j NAVARCH-SEP-"));
    assert_eq!(rules.len(), 4);
    let seps = chains_named(&c, "-SEP-");
    assert_eq!(seps.len(), 3, "the not-ready endpoint gets no chain");
    let dnats: Vec<String> = seps.iter().map(|s| nat(&c, s)[1].clone()).collect();
    for ip in ["10.244.1.2", "10.244.1.3", "10.244.1.4"] {
        assert!(
            dnats
                .iter()
                .any(|d| d.ends_with(&format!("--to-destination {ip}:8080"))),
            "{ip}: {dnats:?}"
        );
        let sep = seps.iter().find(|s| nat(&c, s)[1].contains(ip)).unwrap();
        // Hairpin: a pod reaching itself through the Service is masqueraded.
        assert_eq!(nat(&c, sep)[0], format!("-s {ip}/32 -j NAVARCH-MARK-MASQ"));
    }
    // Nothing rejected but the rest of the service CIDR.
    let f = filter(&c, "NAVARCH-SERVICES");
    assert_eq!(f.len(), 1);
    assert!(f[0].starts_with("-d 10.96.0.0/12 ") && f[0].ends_with("-j REJECT"));
}

#[test]
fn no_endpoints_reject_and_node_ports() {
    let c = build(
        &[
            svc("empty", "10.96.0.11", "NodePort", Some(30001)),
            svc("np", "10.96.0.12", "NodePort", Some(30002)),
            svc("headless", "None", "ClusterIP", None),
            svc("ext", "", "ExternalName", None),
        ],
        &[
            slice("np", &[("10.244.2.2", Some(true))]),
            slice("empty", &[("10.244.2.7", Some(false))]),
        ],
    );
    let f = filter(&c, "NAVARCH-SERVICES");
    assert!(
        f[0].starts_with("-d 10.96.0.11/32 -p tcp -m tcp --dport 80 ")
            && f[0].ends_with("-j REJECT"),
        "{f:?}"
    );
    let ext = filter(&c, "NAVARCH-EXTERNAL-SERVICES");
    assert_eq!(ext.len(), 1);
    assert!(
        ext[0].contains("--dst-type LOCAL -p tcp -m tcp --dport 30001 ")
            && ext[0].ends_with("-j REJECT")
    );
    let np = nat(&c, "NAVARCH-NODEPORTS");
    let svc_chain = chains_named(&c, "-SVC-");
    assert_eq!(
        svc_chain.len(),
        1,
        "only np has endpoints; headless and ExternalName get nothing"
    );
    assert_eq!(np.len(), 2);
    assert!(
        np[0].starts_with("-p tcp -m tcp --dport 30002 ")
            && np[0].ends_with("-j NAVARCH-MARK-MASQ")
    );
    assert!(np[1].ends_with(&format!("-j {}", svc_chain[0])));
    // One endpoint: no statistic.
    assert_eq!(
        nat(&c, &svc_chain[0]).last().unwrap(),
        &format!("-j {}", chains_named(&c, "-SEP-")[0])
    );
}

#[test]
fn terminating_endpoints_serve_only_when_nothing_is_ready() {
    let mut s = slice("web", &[("10.244.1.2", Some(false))]);
    s.endpoints[0].conditions = Some(EndpointConditions {
        ready: Some(false),
        serving: Some(true),
        terminating: Some(true),
    });
    let c = build(&[svc("web", "10.96.0.10", "ClusterIP", None)], &[s.clone()]);
    assert_eq!(chains_named(&c, "-SEP-").len(), 1);
    let mut both = s;
    both.endpoints
        .push(slice("web", &[("10.244.1.3", Some(true))]).endpoints[0].clone());
    let c = build(&[svc("web", "10.96.0.10", "ClusterIP", None)], &[both]);
    let seps = chains_named(&c, "-SEP-");
    assert_eq!(seps.len(), 1);
    assert!(nat(&c, &seps[0])[1].ends_with("10.244.1.3:8080"));
}

#[test]
fn client_ip_affinity_uses_recent() {
    let mut s = svc("sticky", "10.96.0.20", "ClusterIP", None);
    let spec = s.spec.as_mut().unwrap();
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIpConfig {
            timeout_seconds: Some(600),
        }),
    });
    let c = build(
        &[s],
        &[slice(
            "sticky",
            &[("10.244.3.2", None), ("10.244.3.3", None)],
        )],
    );
    let svc_chain = &chains_named(&c, "-SVC-")[0];
    let rules = nat(&c, svc_chain);
    let seps = chains_named(&c, "-SEP-");
    for sep in &seps {
        assert!(
            rules
                .iter()
                .any(|r| r.starts_with(&format!("-m recent --name {sep} "))
                    && r.contains("--rcheck --seconds 600 --reap")
                    && r.ends_with(&format!("-j {sep}")))
        );
        assert!(nat(&c, sep)[1].contains(&format!(
            "-m recent --name {sep} --mask 255.255.255.255 --rsource --set"
        )));
    }
    // The recent checks come before the random spread.
    assert!(
        rules[1].contains("--rcheck")
            && rules[2].contains("--rcheck")
            && rules[3].contains("statistic")
    );
}

#[test]
fn restore_batches_hold_only_what_changed() {
    let services = [
        svc("web", "10.96.0.10", "ClusterIP", None),
        svc("api", "10.96.0.30", "ClusterIP", None),
    ];
    let a = build(
        &services,
        &[
            slice("web", &[("10.244.1.2", None), ("10.244.1.3", None)]),
            slice("api", &[("10.244.5.5", None)]),
        ],
    );
    let full = rules::restore_input(&Chains::new(), &a);
    assert!(full.starts_with("*nat\n:NAVARCH-"));
    assert_eq!(full.matches("COMMIT\n").count(), 2);
    assert!(full.contains("\n*filter\n"));
    assert!(
        rules::restore_input(&a, &a).is_empty(),
        "no change, no batch"
    );

    // One endpoint replaced: its SVC chain rewritten, the new SEP added, the old deleted.
    let b = build(
        &services,
        &[
            slice("web", &[("10.244.1.2", None), ("10.244.1.4", None)]),
            slice("api", &[("10.244.5.5", None)]),
        ],
    );
    let delta = rules::restore_input(&a, &b);
    let declared: Vec<&str> = delta.lines().filter(|l| l.starts_with(':')).collect();
    assert_eq!(declared.len(), 3, "{delta}");
    let deleted: Vec<&str> = delta.lines().filter(|l| l.starts_with("-X ")).collect();
    assert_eq!(deleted.len(), 1, "{delta}");
    assert!(
        !delta.contains("*filter"),
        "filter table untouched: {delta}"
    );
    assert!(!delta.contains("NAVARCH-SERVICES"), "{delta}");
    // The deleted chain is declared (flushed) before it is removed.
    let gone = deleted[0].trim_start_matches("-X ");
    assert!(delta.find(&format!(":{gone} ")).unwrap() < delta.find(deleted[0]).unwrap());

    // Names are stable: the same objects give the same chains in a new process.
    assert_eq!(
        a,
        build(
            &services,
            &[
                slice("web", &[("10.244.1.3", None), ("10.244.1.2", None)]),
                slice("api", &[("10.244.5.5", None)])
            ]
        )
    );
}

#[test]
fn jumps_cover_the_builtin_chains_once() {
    let j = rules::jumps("NAVARCH-");
    let hooks: Vec<(Table, &str)> = j.iter().map(|j| (j.table, j.chain)).collect();
    assert_eq!(
        hooks,
        vec![
            (Table::Nat, "PREROUTING"),
            (Table::Nat, "OUTPUT"),
            (Table::Nat, "POSTROUTING"),
            (Table::Nat, "POSTROUTING"),
            (Table::Filter, "INPUT"),
            (Table::Filter, "INPUT"),
            (Table::Filter, "FORWARD"),
            (Table::Filter, "FORWARD"),
            (Table::Filter, "OUTPUT"),
        ]
    );
    assert!(
        j.iter()
            .all(|j| j.args.last().unwrap().starts_with("NAVARCH-"))
    );
}

#[test]
fn pods_leaving_the_cluster_network_are_masqueraded_and_pod_to_pod_is_not() {
    let c = build(&[], &[]);
    let egress = nat(&c, "NAVARCH-POD-EGRESS");
    assert_eq!(egress.len(), 3, "{egress:?}");
    assert!(
        egress[0].starts_with("-s 10.244.1.0/24 -d 10.244.0.0/16 ")
            && egress[0].ends_with("-j RETURN")
    );
    assert!(egress[1].contains("-d 224.0.0.0/4") && egress[1].ends_with("-j RETURN"));
    assert!(egress[2].starts_with("-s 10.244.1.0/24 ") && egress[2].ends_with("-j MASQUERADE"));
    // Without a pod CIDR (no pods on this node yet) the chain exists and is empty.
    let none = rules::chains(
        &RulesConfig {
            pod_cidr: None,
            ..cfg()
        },
        &[],
    );
    assert!(nat(&none, "NAVARCH-POD-EGRESS").is_empty());
}
