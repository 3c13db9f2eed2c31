//! RBAC (issue 9), driven by real kubectl (oldest and newest): the default roles, Role and
//! RoleBinding grants, `kubectl auth can-i` (SelfSubjectAccessReview and
//! SelfSubjectRulesReview), `kubectl auth whoami` (SelfSubjectReview), escalation
//! prevention, ClusterRole aggregation, and `/metrics` for `system:monitoring` only.

use std::time::Duration;

use navarch_e2e::kubectl::{KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl};
use navarch_e2e::{Navarch, eventually};

/// `navarch up` whose token file also knows jane (group `dev`) and a Prometheus scraper.
fn cluster() -> (Navarch, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "admin-token\n").unwrap();
    std::fs::write(
        dir.path().join("tokens.csv"),
        "admin-token,admin,admin,\"system:masters\"\njane-token,jane,jane-uid,\"dev\"\nprom-token,prometheus,prom,\"system:monitoring\"\n",
    )
    .unwrap();
    let n = Navarch::up_in(dir.path()).unwrap();
    (n, dir)
}

fn as_user<'a>(token: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    all
}

#[test]
fn roles_and_bindings_grant_exactly_what_they_say() {
    let (n, _dir) = cluster();
    for bin in [KUBECTL_OLDEST, KUBECTL_NEWEST] {
        let admin = Kubectl::new(bin, &n.kubeconfig).unwrap();
        let anyone = Kubectl::new(bin, &n.kubeconfig_for(&n.token)).unwrap();
        let jane = |args: &[&str]| anyone.run(&as_user("jane-token", args));
        let ns = if bin == KUBECTL_OLDEST {
            "team-a"
        } else {
            "team-b"
        };
        admin.ok(&["create", "namespace", ns]);

        // The default policy is there, as on any Kubernetes cluster.
        let roles = admin.ok(&["get", "clusterroles", "-o", "name"]);
        for role in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:basic-user",
            "system:kube-scheduler",
        ] {
            assert!(
                roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}\n")),
                "{role}"
            );
        }

        // Nothing granted yet: forbidden, with Kubernetes' message.
        let denied = jane(&["get", "pods", "-n", ns]);
        assert!(!denied.ok);
        assert!(
            denied.stderr.contains(&format!(
                "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"{ns}\""
            )),
            "{}",
            denied.stderr
        );
        assert_eq!(
            jane(&["auth", "can-i", "list", "pods", "-n", ns])
                .stdout
                .trim(),
            "no"
        );

        // view in one namespace: reads there, nothing else.
        admin.ok(&[
            "create",
            "rolebinding",
            "jane-view",
            "--clusterrole=view",
            "--user=jane",
            "-n",
            ns,
        ]);
        eventually("view takes effect", Duration::from_secs(10), || {
            jane(&["get", "pods", "-n", ns]).ok.then_some(())
        });
        assert_eq!(
            jane(&["auth", "can-i", "list", "deployments.apps", "-n", ns])
                .stdout
                .trim(),
            "yes"
        );
        assert_eq!(
            jane(&["auth", "can-i", "create", "deployments.apps", "-n", ns])
                .stdout
                .trim(),
            "no"
        );
        assert_eq!(
            jane(&["auth", "can-i", "list", "pods", "-n", "default"])
                .stdout
                .trim(),
            "no"
        );
        assert_eq!(
            jane(&["auth", "can-i", "get", "secrets", "-n", ns])
                .stdout
                .trim(),
            "no"
        );
        assert!(!jane(&["create", "configmap", "c", "-n", ns]).ok);

        // A Role with resourceNames: that one object only.
        admin.ok(&["create", "configmap", "app-config", "-n", ns]);
        admin.ok(&["create", "configmap", "other", "-n", ns]);
        admin.ok(&[
            "create",
            "role",
            "one-cm",
            "--verb=get,update,patch",
            "--resource=configmaps",
            "--resource-name=app-config",
            "-n",
            ns,
        ]);
        admin.ok(&[
            "create",
            "rolebinding",
            "jane-cm",
            "--role=one-cm",
            "--group=dev",
            "-n",
            ns,
        ]);
        eventually("role takes effect", Duration::from_secs(10), || {
            jane(&["auth", "can-i", "update", "configmaps/app-config", "-n", ns])
                .stdout
                .trim()
                .eq("yes")
                .then_some(())
        });
        assert_eq!(
            jane(&["auth", "can-i", "update", "configmaps/other", "-n", ns])
                .stdout
                .trim(),
            "no"
        );
        assert!(jane(&["label", "configmap", "app-config", "x=y", "-n", ns]).ok);
        assert!(!jane(&["label", "configmap", "other", "x=y", "-n", ns]).ok);

        // can-i --list shows the rules.
        let list = jane(&["auth", "can-i", "--list", "-n", ns]).stdout;
        assert!(
            list.contains("configmaps") && list.contains("[app-config]"),
            "{list}"
        );
    }
    // whoami: kubectl 1.27 asks authentication.k8s.io/v1beta1, the newest v1.
    for bin in [KUBECTL_OLDEST, KUBECTL_NEWEST] {
        let anyone = Kubectl::new(bin, &n.kubeconfig_for(&n.token)).unwrap();
        let me = anyone.ok(&as_user(
            "jane-token",
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ],
        ));
        assert_eq!(me, "jane [\"dev\",\"system:authenticated\"]", "{bin}");
    }
}

#[test]
fn escalation_is_refused_and_aggregation_follows_labels() {
    let (n, _dir) = cluster();
    let admin = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let anyone = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig_for(&n.token)).unwrap();
    let jane = |args: &[&str]| anyone.run(&as_user("jane-token", args));
    admin.ok(&["create", "namespace", "dev"]);
    admin.ok(&[
        "create",
        "rolebinding",
        "jane-admin",
        "--clusterrole=admin",
        "--user=jane",
        "-n",
        "dev",
    ]);
    eventually("admin takes effect", Duration::from_secs(10), || {
        jane(&["auth", "can-i", "create", "roles", "-n", "dev"])
            .stdout
            .trim()
            .eq("yes")
            .then_some(())
    });
    // Within what she holds: fine.
    let ok = jane(&[
        "create",
        "role",
        "readers",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "dev",
    ]);
    assert!(ok.ok, "{}", ok.stderr);
    let ok = jane(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "dev",
    ]);
    assert!(ok.ok, "{}", ok.stderr);
    // More than she holds: refused, saying what.
    let refused = jane(&[
        "create",
        "role",
        "nodes",
        "--verb=*",
        "--resource=nodes",
        "-n",
        "dev",
    ]);
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("Resources:[\"nodes\"]"),
        "{}",
        refused.stderr
    );
    let refused = jane(&[
        "create",
        "rolebinding",
        "me-root",
        "--clusterrole=cluster-admin",
        "--user=jane",
        "-n",
        "dev",
    ]);
    assert!(
        !refused.ok && refused.stderr.contains("not currently held"),
        "{}",
        refused.stderr
    );
    // Patching a role she may edit into one she could not create is refused too.
    let refused = jane(&[
        "patch",
        "role",
        "readers",
        "-n",
        "dev",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes"],"verbs":["delete"]}}]"#,
    ]);
    assert!(
        !refused.ok && refused.stderr.contains("not currently held"),
        "{}",
        refused.stderr
    );

    // A ClusterRole labelled to join `view` is aggregated into it, and view's holders get it.
    admin.ok(&[
        "create",
        "clusterrole",
        "widgets-view",
        "--verb=get,list",
        "--resource=leases.coordination.k8s.io",
    ]);
    admin.ok(&[
        "label",
        "clusterrole",
        "widgets-view",
        "rbac.authorization.k8s.io/aggregate-to-view=true",
    ]);
    eventually(
        "view aggregates widgets-view",
        Duration::from_secs(15),
        || {
            admin
                .ok(&[
                    "get",
                    "clusterrole",
                    "view",
                    "-o",
                    "jsonpath={.rules[*].resources}",
                ])
                .contains("leases")
                .then_some(())
        },
    );
    admin.ok(&[
        "create",
        "rolebinding",
        "jane-view",
        "--clusterrole=view",
        "--user=jane",
        "-n",
        "default",
    ]);
    eventually(
        "the aggregated rule reaches jane",
        Duration::from_secs(10),
        || {
            jane(&[
                "auth",
                "can-i",
                "list",
                "leases.coordination.k8s.io",
                "-n",
                "default",
            ])
            .stdout
            .trim()
            .eq("yes")
            .then_some(())
        },
    );
}

#[test]
fn metrics_are_for_the_monitoring_group_and_masters() {
    let (n, _dir) = cluster();
    let k = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig).unwrap();
    let anyone = Kubectl::new(KUBECTL_NEWEST, &n.kubeconfig_for(&n.token)).unwrap();
    let prom = anyone.run(&as_user("prom-token", &["get", "--raw", "/metrics"]));
    assert!(
        prom.ok && prom.stdout.contains("navarch_api_requests_total"),
        "{}",
        prom.stderr
    );
    let jane = anyone.run(&as_user("jane-token", &["get", "--raw", "/metrics"]));
    assert!(
        !jane.ok && jane.stderr.contains("Forbidden"),
        "{}",
        jane.stderr
    );
    assert!(
        k.ok(&["get", "--raw", "/metrics"])
            .contains("navarch_api_requests_total")
    );
    // Discovery and health for every authenticated user (system:discovery, public-info-viewer).
    let readyz = anyone.run(&as_user("jane-token", &["get", "--raw", "/readyz?verbose"]));
    assert!(
        readyz.ok && readyz.stdout.contains("[+]rbac ok"),
        "{}",
        readyz.stderr
    );
    assert!(anyone.run(&as_user("jane-token", &["api-resources"])).ok);
}
