//! The patch engine against the request shapes kubectl and controllers send.

// `ApiError` is over 128 bytes; see `src/patch/mod.rs`.
#![allow(clippy::result_large_err)]

use navarch_api::kinds::{self, KindInfo};
use navarch_api::patch::{
    PatchOptions, PatchType, apply_patch, record_subresource_update, record_update,
};
use navarch_api::{ApiError, Reason};
use serde_json::{Value, json};

const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T11:00:00Z";
const T2: &str = "2024-05-01T12:00:00Z";

fn deployment_kind() -> &'static KindInfo {
    kinds::by_kind("apps/v1", "Deployment").unwrap()
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "default", "uid": "0d7e", "resourceVersion": "7",
            "labels": {"app": "web", "tier": "frontend"},
            "finalizers": ["a", "b"]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.25",
                        "args": ["--a", "--b"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]
                    }],
                    "tolerations": [{"key": "k1", "operator": "Exists"}]
                }
            }
        }
    })
}

fn patch(
    kind: &KindInfo,
    current: &Value,
    patch_type: PatchType,
    body: &Value,
) -> Result<Value, ApiError> {
    apply_patch(
        kind,
        current,
        patch_type,
        body.to_string().as_bytes(),
        &PatchOptions {
            now: T0.into(),
            ..Default::default()
        },
    )
}

fn smp(current: &Value, body: Value) -> Value {
    patch(deployment_kind(), current, PatchType::StrategicMerge, &body)
        .unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

fn ssa(
    current: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    let opts = PatchOptions {
        field_manager: manager.into(),
        force,
        now: now.into(),
        subresource: None,
    };
    apply_patch(
        deployment_kind(),
        current,
        PatchType::Apply,
        config.to_string().as_bytes(),
        &opts,
    )
}

fn containers(obj: &Value) -> &Vec<Value> {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect()
}

/// The managedFields entry of `manager` with `operation`.
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn owns(obj: &Value, manager: &str, operation: &str, pointer: &str) -> bool {
    entry(obj, manager, operation)
        .and_then(|e| e["fieldsV1"].pointer(pointer))
        .is_some()
}

// ---------------------------------------------------------------------------------------------
// Content types and options

#[test]
fn content_types() {
    let cases = [
        ("application/merge-patch+json", Some(PatchType::Merge)),
        ("application/json-patch+json", Some(PatchType::Json)),
        (
            "application/strategic-merge-patch+json",
            Some(PatchType::StrategicMerge),
        ),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        (
            "application/merge-patch+json; charset=utf-8",
            Some(PatchType::Merge),
        ),
        ("application/apply-patch+json", None),
        ("application/json", None),
        ("", None),
    ];
    for (ct, want) in cases {
        assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
    }
    for t in PatchType::ALL {
        assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
    }
    let e = PatchType::unsupported();
    assert_eq!((e.reason, e.code()), (Reason::UnsupportedMediaType, 415));
    assert!(
        e.message.contains("application/apply-patch+yaml"),
        "{}",
        e.message
    );
}

#[test]
fn patch_options_are_validated_like_kubernetes() {
    let d = deployment();
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let e = ssa(&d, &body, "", false, T0).unwrap_err();
    assert_eq!(e.reason, Reason::Invalid);
    assert_eq!(
        e.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );

    let opts = PatchOptions {
        force: true,
        ..Default::default()
    };
    let e = apply_patch(deployment_kind(), &d, PatchType::Merge, b"{}", &opts).unwrap_err();
    assert_eq!(
        e.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );

    let e = ssa(&d, &body, &"m".repeat(129), false, T0).unwrap_err();
    assert_eq!(e.reason, Reason::Invalid, "{}", e.message);
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch (RFC 7386)

#[test]
fn merge_patch() {
    let d = deployment();
    let kind = deployment_kind();
    let out = patch(kind, &d, PatchType::Merge, &json!({
        "metadata": {"labels": {"tier": null, "new": "x"}},
        "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "only", "image": "busybox"}]}}}
    }))
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "x"}));
    assert_eq!(out["spec"]["replicas"], 5);
    // Lists are replaced whole.
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["only"]
    );
    assert_eq!(out["spec"]["selector"], d["spec"]["selector"]);

    for bad in [json!([1]), json!("x"), json!(3)] {
        let e = patch(kind, &d, PatchType::Merge, &bad).unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (Reason::BadRequest, "Invalid JSON Patch"),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JSON patch (RFC 6902)

#[test]
fn json_patch_operations() {
    let d = deployment();
    let kind = deployment_kind();
    let out = patch(
        kind,
        &d,
        PatchType::Json,
        &json!([
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/team", "value": "core"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/env/1"},
            {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--c"},
            {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/annotations"},
            {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/layer"}
        ]),
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "team": "core", "layer": "frontend"})
    );
    assert_eq!(out["metadata"]["annotations"], "web");
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"][0]["env"]),
        ["A"]
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["--a", "--b", "--c"])
    );
}

#[test]
fn json_patch_failures_are_kubernetes_errors() {
    let d = deployment();
    let kind = deployment_kind();
    // A failed test or a path that does not resolve: 422 with the apiserver's generic message.
    for body in [
        json!([{"op": "test", "path": "/spec/replicas", "value": 9}, {"op": "replace", "path": "/spec/replicas", "value": 1}]),
        json!([{"op": "remove", "path": "/spec/nothing"}]),
        json!([{"op": "replace", "path": "/spec/template/spec/containers/7/image", "value": "x"}]),
    ] {
        let e = patch(kind, &d, PatchType::Json, &body).unwrap_err();
        assert_eq!(e.reason, Reason::Invalid, "{body}");
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.message,
            "the server rejected our request due to an error in our request"
        );
        assert_eq!(e.causes[0].field, "patch");
    }
    // Undecodable patches: 400.
    for body in [
        json!({"op": "add"}),
        json!([{"op": "frobnicate", "path": "/a"}]),
        json!([{"path": "/a"}]),
        json!([{"op": "add", "path": "/a"}]),
    ] {
        let e = patch(kind, &d, PatchType::Json, &body).unwrap_err();
        assert_eq!(e.reason, Reason::BadRequest, "{body}: {}", e.message);
    }
    let many = Value::Array(vec![
        json!({"op": "test", "path": "/kind", "value": "Deployment"});
        10_001
    ]);
    let e = patch(kind, &d, PatchType::Json, &many).unwrap_err();
    assert_eq!((e.reason, e.code()), (Reason::RequestEntityTooLarge, 413));
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: the shapes `kubectl patch`, `kubectl edit` and client-side
// `kubectl apply` (3-way, from last-applied-configuration) send.

#[test]
fn smp_changes_image_keeping_the_rest_of_the_container() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"image": "nginx:1.26", "name": "nginx"}]
        }}}}),
    );
    let c = &containers(&out)[0];
    assert_eq!(c["image"], "nginx:1.26");
    assert_eq!(names(&c["env"]), ["A", "B"]);
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
}

#[test]
fn smp_adds_a_container_in_the_applied_order() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "init-helper"}, {"name": "nginx"}],
            "containers": [{"image": "busybox", "name": "init-helper"}]
        }}}}),
    );
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["init-helper", "nginx"]
    );
    // Without an order directive the patch's items come first (`mergeSortedSlice`).
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"image": "busybox", "name": "sidecar"}]}}}}),
    );
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["sidecar", "nginx"]
    );
}

#[test]
fn smp_removes_an_env_var_as_kubectl_apply_does() {
    let last_applied = r#"{"apiVersion":"apps/v1","kind":"Deployment"}"#;
    let out = smp(
        &deployment(),
        json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
            "spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}], "name": "nginx"}]
            }}}
        }),
    );
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        containers(&out)[0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        last_applied
    );
}

#[test]
fn smp_orders_merged_lists() {
    // `$setElementOrder` wins over the patch's order, which wins over the live order.
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{
            "name": "nginx",
            "$setElementOrder/env": [{"name": "C"}, {"name": "A"}, {"name": "B"}],
            "env": [{"name": "C", "value": "3"}]
        }]}}}}),
    );
    assert_eq!(names(&containers(&out)[0]["env"]), ["C", "A", "B"]);
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{
            "name": "nginx",
            "env": [{"name": "B", "value": "two"}, {"name": "A", "value": "one"}]
        }]}}}}),
    );
    assert_eq!(
        containers(&out)[0]["env"],
        json!([{"name": "B", "value": "two"}, {"name": "A", "value": "one"}])
    );
    let e = patch(
        deployment_kind(),
        &deployment(),
        PatchType::StrategicMerge,
        &json!({"spec": {"template": {"spec": {"containers": [{
            "name": "nginx",
            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
            "env": [{"name": "B", "value": "x"}, {"name": "A", "value": "y"}]
        }]}}}}),
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::BadRequest, "{}", e.message);
}

#[test]
fn smp_scalars_labels_and_atomic_lists() {
    let out = smp(
        &deployment(),
        json!({
            "metadata": {"labels": {"tier": null, "track": "stable"}},
            "spec": {"replicas": 0, "template": {"spec": {
                "containers": [{"name": "nginx", "args": ["--z"]}],
                "tolerations": [{"key": "k2", "operator": "Exists"}]
            }}}
        }),
    );
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "track": "stable"})
    );
    assert_eq!(out["spec"]["replicas"], 0);
    // args and tolerations have no patch strategy: replaced.
    assert_eq!(containers(&out)[0]["args"], json!(["--z"]));
    assert_eq!(
        out["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "k2", "operator": "Exists"}])
    );
}

#[test]
fn smp_directives() {
    let d = deployment();
    // `$patch: replace` in a list: the rest of the patch list is the list.
    let out = smp(
        &d,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "solo", "image": "x"}, {"$patch": "replace"}]}}}}),
    );
    assert_eq!(
        containers(&out),
        &vec![json!({"name": "solo", "image": "x"})]
    );
    // `$patch: replace` in a map: the patch map is the map.
    let out = smp(
        &d,
        json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    // `$patch: delete` in a map empties it.
    let out = smp(&d, json!({"spec": {"strategy": {"$patch": "delete"}}}));
    assert_eq!(out["spec"]["strategy"], json!({}));
    // `$retainKeys` clears the keys it does not list (kubectl sends it for strategy/volumes).
    let out = smp(
        &d,
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    );
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let e = patch(
        deployment_kind(),
        &d,
        PatchType::StrategicMerge,
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
    )
    .unwrap_err();
    assert_eq!(
        (e.reason, e.message.as_str()),
        (Reason::BadRequest, "invalid patch format of retainKeys")
    );
    // Primitive merge lists: union, `$deleteFromPrimitiveList`, `$setElementOrder`.
    let out = smp(&d, json!({"metadata": {"finalizers": ["b", "c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = smp(
        &d,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "$setElementOrder/finalizers": ["b"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    let out = smp(
        &d,
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "b", "a"]));
    // Deleting a whole list.
    let out = smp(&d, json!({"metadata": {"finalizers": null}}));
    assert!(out["metadata"].get("finalizers").is_none());
    // Deleting an item from a list the object lacks leaves no directive behind.
    let out = smp(
        &d,
        json!({"spec": {"template": {"spec": {"initContainers": [{"name": "x", "$patch": "delete"}]}}}}),
    );
    assert_eq!(out["spec"]["template"]["spec"]["initContainers"], json!([]));
}

/// Cases from Kubernetes' `strategicpatch/patch_test.go`, moved onto real fields: the
/// `mergingList` (merge key `name`) is a ServiceAccount's `secrets` (`value` → `namespace`,
/// `other` → `kind`), the `mergingIntList` is `metadata.finalizers`.
#[test]
fn smp_upstream_cases() {
    let kind = kinds::by_kind("v1", "ServiceAccount").unwrap();
    let sa = |secrets: Value, finalizers: Value| json!({"metadata": {"name": "sa", "finalizers": finalizers}, "secrets": secrets});
    let n = |name: &str| json!({"name": name});
    let cases: Vec<(&str, Value, Value, Result<Value, &str>)> = vec![
        (
            "preserve the order from the patch in a merging list",
            sa(
                json!([n("1"), {"name": "2", "namespace": "b"}, n("3")]),
                json!([]),
            ),
            json!({"secrets": [{"name": "3", "namespace": "c"}, {"name": "1", "namespace": "a"}, {"name": "2", "kind": "x"}]}),
            Ok(
                json!([{"name": "3", "namespace": "c"}, {"name": "1", "namespace": "a"}, {"name": "2", "namespace": "b", "kind": "x"}]),
            ),
        ),
        (
            "preserve the order from the patch in a merging list 2",
            sa(
                json!([n("1"), {"name": "2", "namespace": "b"}, n("3")]),
                json!([]),
            ),
            json!({"secrets": [{"name": "3", "namespace": "c"}, {"name": "1", "namespace": "a"}]}),
            Ok(
                json!([{"name": "2", "namespace": "b"}, {"name": "3", "namespace": "c"}, {"name": "1", "namespace": "a"}]),
            ),
        ),
        (
            "$setElementOrder contains item that is not present in the list to be merged",
            sa(json!([n("1"), n("3")]), json!([])),
            json!({"$setElementOrder/secrets": [n("3"), n("2"), n("1")], "secrets": [{"name": "3", "namespace": "3"}, {"name": "1", "namespace": "1"}]}),
            Ok(json!([{"name": "3", "namespace": "3"}, {"name": "1", "namespace": "1"}])),
        ),
        (
            "merge lists of maps",
            sa(
                json!([{"name": "1", "kind": "a"}, {"name": "2", "namespace": "2", "kind": "b"}]),
                json!([]),
            ),
            json!({"$setElementOrder/secrets": [n("4"), n("1"), n("2"), n("3")], "secrets": [{"name": "4", "namespace": "4"}, {"name": "3", "namespace": "3"}]}),
            Ok(
                json!([{"name": "4", "namespace": "4"}, {"name": "1", "kind": "a"}, {"name": "2", "namespace": "2", "kind": "b"}, {"name": "3", "namespace": "3"}]),
            ),
        ),
        (
            "should check if order in $setElementOrder and patch list match",
            sa(json!([n("1"), n("3"), n("2")]), json!([])),
            json!({"$setElementOrder/secrets": [n("1"), n("2"), n("3")], "secrets": [{"name": "3", "namespace": "3"}, {"name": "1", "namespace": "1"}]}),
            Err("doesn't match"),
        ),
        (
            "delete all duplicate entries in a merging list",
            sa(
                json!([n("1"), n("1"), {"name": "2", "namespace": "a"}, n("3"), n("3")]),
                json!([]),
            ),
            json!({"secrets": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]}),
            Ok(json!([{"name": "2", "namespace": "a"}])),
        ),
        (
            "delete all items from merging list",
            sa(json!([n("1"), n("2")]), json!([])),
            json!({"secrets": [{"$patch": "replace"}]}),
            Ok(json!([])),
        ),
    ];
    for (name, original, body, want) in cases {
        let got = patch(kind, &original, PatchType::StrategicMerge, &body);
        match want {
            Ok(want) => assert_eq!(
                got.unwrap_or_else(|e| panic!("{name}: {e:?}"))["secrets"],
                want,
                "{name}"
            ),
            Err(fragment) => assert!(got.unwrap_err().message.contains(fragment), "{name}"),
        }
    }
    let int_cases = [
        (
            "unique scalars when merging lists",
            json!(["1", "2"]),
            json!({"finalizers": ["2", "3"]}),
            json!(["1", "2", "3"]),
        ),
        (
            "preserve the order from the patch in a merging int list",
            json!(["1", "2", "3"]),
            json!({"finalizers": ["3", "1", "2"]}),
            json!(["3", "1", "2"]),
        ),
        (
            "preserve the order from the patch in a merging int list 2",
            json!(["1", "2", "3"]),
            json!({"finalizers": ["3", "1"]}),
            json!(["2", "3", "1"]),
        ),
        (
            "$setElementOrder contains item that is not present in the int list",
            json!(["1", "3"]),
            json!({"$setElementOrder/finalizers": ["3", "2", "1"]}),
            json!(["3", "1"]),
        ),
        (
            "add and delete items in lists of scalars",
            json!(["1", "2", "3"]),
            json!({"$setElementOrder/finalizers": ["1", "2", "4"], "$deleteFromPrimitiveList/finalizers": ["3"], "finalizers": ["4"]}),
            json!(["1", "2", "4"]),
        ),
    ];
    for (name, original, body, want) in int_cases {
        let got = patch(
            kind,
            &sa(json!([]), original),
            PatchType::StrategicMerge,
            &json!({"metadata": body}),
        )
        .unwrap();
        assert_eq!(got["metadata"]["finalizers"], want, "{name}");
    }
}

#[test]
fn smp_switches_a_volume_source_with_retain_keys() {
    let mut d = deployment();
    d["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "cache", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]);
    let out = smp(
        &d,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/volumes": [{"name": "cache"}, {"name": "data"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "data"}]
        }}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "cache", "emptyDir": {}}, {"name": "data", "configMap": {"name": "cm"}}])
    );
}

#[test]
fn smp_merges_service_ports_by_port() {
    let kind = kinds::by_kind("v1", "Service").unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]
    }});
    let out = patch(kind, &svc, PatchType::StrategicMerge, &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "$patch": "delete"}]}})).unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": 9090}])
    );
}

#[test]
fn smp_rejects_malformed_patches() {
    let d = deployment();
    let kind = deployment_kind();
    let cases = [
        (
            json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
            Reason::BadRequest,
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "$patch": "bogus"}]}}}}),
            Reason::BadRequest,
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "$patch": "merge"}]}}}}),
            Reason::BadRequest,
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [1, 2]}}}}),
            Reason::BadRequest,
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [[1]]}}}}),
            Reason::Invalid,
        ),
        (
            json!({"metadata": {"$patch": "explode"}}),
            Reason::BadRequest,
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            Reason::BadRequest,
        ),
        (
            json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
            Reason::BadRequest,
        ),
        (
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            Reason::BadRequest,
        ),
        (json!([1, 2]), Reason::BadRequest),
        (json!("x"), Reason::BadRequest),
    ];
    for (body, reason) in cases {
        let e = patch(kind, &d, PatchType::StrategicMerge, &body).unwrap_err();
        assert_eq!(e.reason, reason, "{body}: {}", e.message);
    }
}

#[test]
fn no_patch_type_panics_on_garbage() {
    let kind = deployment_kind();
    let bodies: [&[u8]; 10] = [
        b"",
        b"{",
        b"\xff\xfe",
        b"null",
        b"[{\"op\":\"add\",\"path\":\"\",\"value\":1}]",
        b"{\"spec\": {\"template\": {\"spec\": {\"containers\": {\"name\": 1}}}}}",
        b"{\"metadata\": {\"finalizers\": [{}, 1, \"x\"]}}",
        b"{\"$setElementOrder/\": [], \"$deleteFromPrimitiveList/\": [1]}",
        b"apiVersion: apps/v1\nkind: Deployment\nspec: [1, 2\n",
        b"- a\n- b\n",
    ];
    let currents = [deployment(), Value::Null, json!({})];
    for t in PatchType::ALL {
        for body in bodies {
            for current in &currents {
                let opts = PatchOptions {
                    field_manager: "m".into(),
                    now: T0.into(),
                    ..Default::default()
                };
                if let Err(e) = apply_patch(kind, current, t, body, &opts) {
                    assert!(
                        matches!(e.code(), 400 | 422),
                        "{t:?} {:?}: {e:?}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-side apply

fn config(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}
            }
        }
    })
}

/// Stands in for the gateway storing the object (which sets system metadata).
fn stored(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("0d7e");
    obj["metadata"]["resourceVersion"] = json!("8");
    obj
}

#[test]
fn apply_creates_and_records_fields_v1() {
    let out = ssa(&Value::Null, &config(3), "kubectl", false, T0).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(out["metadata"]["name"], "web");
    let managed = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(
        managed[0],
        json!({
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                    }
                }
            }
        })
    );
    // The same from YAML, and from `{}` as "absent".
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n  labels:\n    app: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:1.25\n";
    let opts = PatchOptions {
        field_manager: "kubectl".into(),
        now: T0.into(),
        ..Default::default()
    };
    let from_yaml = apply_patch(
        deployment_kind(),
        &json!({}),
        PatchType::Apply,
        yaml.as_bytes(),
        &opts,
    )
    .unwrap();
    assert_eq!(from_yaml, out);
}

#[test]
fn reapply_without_a_field_removes_it() {
    let live = stored(ssa(&Value::Null, &config(3), "kubectl", false, T0).unwrap());
    let mut cfg = config(3);
    cfg["spec"].as_object_mut().unwrap().remove("replicas");
    cfg["metadata"]["labels"]["team"] = json!("core");
    cfg["spec"]["template"]["spec"]["containers"] = json!([{"name": "app", "image": "app:1"}]);
    let out = ssa(&live, &cfg, "kubectl", false, T1).unwrap();
    assert!(out["spec"].get("replicas").is_none(), "{out}");
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["app"]
    );
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "team": "core"})
    );
    assert_eq!(out["metadata"]["uid"], "0d7e");
    assert!(!owns(&out, "kubectl", "Apply", "/f:spec/f:replicas"));
    assert!(owns(
        &out,
        "kubectl",
        "Apply",
        "/f:metadata/f:labels/f:team"
    ));
    assert_eq!(entry(&out, "kubectl", "Apply").unwrap()["time"], T1);
}

#[test]
fn two_appliers_conflict_unless_forced() {
    let live = stored(ssa(&Value::Null, &config(3), "alice", false, T0).unwrap());
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let e = ssa(&live, &bob, "bob", false, T1).unwrap_err();
    assert_eq!((e.reason, e.code()), (Reason::Conflict, 409));
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );
    assert_eq!(e.causes.len(), 1);
    assert_eq!(e.causes[0].field, ".spec.replicas");
    assert_eq!(e.causes[0].detail, "conflict with \"alice\"");

    // The same value is no conflict: both own it.
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let out = ssa(&live, &same, "bob", false, T1).unwrap();
    assert!(owns(&out, "alice", "Apply", "/f:spec/f:replicas"));
    assert!(owns(&out, "bob", "Apply", "/f:spec/f:replicas"));

    // Forced: the value changes hands.
    let out = stored(ssa(&live, &bob, "bob", true, T1).unwrap());
    assert_eq!(out["spec"]["replicas"], 5);
    assert!(!owns(&out, "alice", "Apply", "/f:spec/f:replicas"));
    assert!(owns(&out, "alice", "Apply", "/f:spec/f:selector"));
    assert!(owns(&out, "bob", "Apply", "/f:spec/f:replicas"));
    // Now alice re-applying her old value conflicts with bob.
    let e = ssa(&out, &config(3), "alice", false, T2).unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"bob\": .spec.replicas"
    );
    // And alice dropping replicas does not remove bob's.
    let mut cfg = config(3);
    cfg["spec"].as_object_mut().unwrap().remove("replicas");
    let out = ssa(&out, &cfg, "alice", false, T2).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
}

#[test]
fn apply_after_an_update_by_another_manager_conflicts() {
    // `kubectl create` then `kubectl apply --server-side`: the creator owns everything.
    let created = record_update(
        deployment_kind(),
        &Value::Null,
        &stored(config(2)),
        "kubectl-client-side-apply",
        T0,
    );
    let mine = entry(&created, "kubectl-client-side-apply", "Update").unwrap();
    assert_eq!(mine["apiVersion"], "apps/v1");
    assert_eq!(mine["time"], T0);
    assert!(
        mine["fieldsV1"].pointer("/f:metadata/f:name").is_none(),
        "system metadata is unowned"
    );
    assert!(mine["fieldsV1"].pointer("/f:metadata/f:uid").is_none());
    assert!(owns(
        &created,
        "kubectl-client-side-apply",
        "Update",
        "/f:spec/f:replicas"
    ));
    let e = ssa(&created, &config(4), "kubectl", false, T1).unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );

    // `kubectl scale` / `kubectl edit` after an apply: the editor takes the changed field.
    let applied = stored(ssa(&Value::Null, &config(2), "kubectl", false, T0).unwrap());
    let mut edited = applied.clone();
    edited["spec"]["replicas"] = json!(10);
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    let edited = record_update(deployment_kind(), &applied, &edited, "kubectl-edit", T1);
    assert!(owns(
        &edited,
        "kubectl-edit",
        "Update",
        "/f:spec/f:replicas"
    ));
    assert!(!owns(&edited, "kubectl", "Apply", "/f:spec/f:replicas"));
    assert!(owns(&edited, "kubectl", "Apply", "/f:spec/f:selector"));
    let e = ssa(&edited, &config(2), "kubectl", false, T2).unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    assert_eq!(e.causes.len(), 2);
    // Forced, the applier takes both back and the editor's entry disappears.
    let out = ssa(&edited, &config(2), "kubectl", true, T2).unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    assert!(entry(&out, "kubectl-edit", "Update").is_none());
}

#[test]
fn scale_subresource_updates_are_tagged() {
    let applied = stored(ssa(&Value::Null, &config(2), "kubectl", false, T0).unwrap());
    let mut scaled = applied.clone();
    scaled["spec"]["replicas"] = json!(6);
    let scaled =
        record_subresource_update(deployment_kind(), &applied, &scaled, "kubectl", "scale", T1);
    let e = entry(&scaled, "kubectl", "Update").unwrap();
    assert_eq!(e["subresource"], "scale");
    let e = ssa(&scaled, &config(2), "kubectl", false, T2).unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn pruning_never_drops_fields_others_own() {
    let live = stored(ssa(&Value::Null, &config(3), "alice", false, T0).unwrap());
    // bob adds a sidecar and a label; alice also claims the label.
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "core"}},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy"}]}}}});
    let live = stored(ssa(&live, &bob, "bob", false, T1).unwrap());
    assert_eq!(
        names(&live["spec"]["template"]["spec"]["containers"]),
        ["nginx", "sidecar"]
    );
    let mut alice = config(3);
    alice["metadata"]["labels"]["team"] = json!("core");
    let live = stored(ssa(&live, &alice, "alice", false, T1).unwrap());
    // alice drops the label and her container's image; bob's label and container stay.
    let mut alice = config(3);
    alice["spec"]["template"]["spec"]["containers"] = json!([{"name": "nginx"}]);
    let out = ssa(&live, &alice, "alice", false, T2).unwrap();
    assert_eq!(out["metadata"]["labels"]["team"], "core");
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["nginx", "sidecar"]
    );
    assert!(containers(&out)[0].get("image").is_none());
    // A field an updater also changed stays when the applier drops it.
    let mut edited = out.clone();
    edited["spec"]["paused"] = json!(true);
    let edited = stored(record_update(
        deployment_kind(),
        &out,
        &edited,
        "kubectl-edit",
        T2,
    ));
    let mut alice = config(3);
    alice["spec"]["paused"] = json!(true);
    let live = stored(ssa(&edited, &alice, "alice", false, T2).unwrap());
    alice["spec"].as_object_mut().unwrap().remove("paused");
    let out = ssa(&live, &alice, "alice", false, T2).unwrap();
    assert_eq!(out["spec"]["paused"], true);
}

#[test]
fn apply_keys_sets_and_atomic_values() {
    let mut cfg = config(1);
    cfg["metadata"]["finalizers"] = json!(["x"]);
    cfg["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    cfg["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--v=2"]);
    cfg["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    let out = ssa(&Value::Null, &cfg, "m", false, T0).unwrap();
    let fields = &entry(&out, "m", "Apply").unwrap()["fieldsV1"];
    let nginx = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(
        nginx["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
    assert_eq!(nginx["f:args"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:tolerations"],
        json!({})
    );
    assert_eq!(fields["f:metadata"]["f:finalizers"], json!({"v:\"x\"": {}}));
    // Another applier adds a finalizer and an env var: merged in, not replaced.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": ["y"]},
        "spec": {"template": {"spec": {"containers": [{"name": "nginx", "env": [{"name": "E", "value": "1"}]}]}}}});
    let out2 = ssa(&stored(out), &other, "n", false, T1).unwrap();
    assert_eq!(out2["metadata"]["finalizers"], json!(["x", "y"]));
    let c = &containers(&out2)[0];
    assert_eq!(c["image"], "nginx:1.25");
    assert_eq!(c["env"], json!([{"name": "E", "value": "1"}]));
    // An atomic list owned by someone else conflicts as a whole.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"tolerations": [{"key": "z", "operator": "Exists"}]}}}});
    let e = ssa(&out2, &other, "o", false, T2).unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"m\": .spec.template.spec.tolerations"
    );
}

#[test]
fn apply_is_idempotent() {
    let live = stored(ssa(&Value::Null, &config(3), "kubectl", false, T0).unwrap());
    let again = ssa(&live, &config(3), "kubectl", false, T2).unwrap();
    assert_eq!(
        again, live,
        "a no-op apply changes nothing, not even the time"
    );
}

#[test]
fn first_apply_to_an_untracked_object() {
    let mut legacy = stored(config(2));
    legacy["metadata"]["labels"]["extra"] = json!("yes");
    let e = ssa(&legacy, &config(3), "kubectl", false, T1).unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let out = ssa(&legacy, &config(2), "kubectl", false, T1).unwrap();
    assert!(owns(
        &out,
        "before-first-apply",
        "Update",
        "/f:metadata/f:labels/f:extra"
    ));
    assert!(owns(&out, "kubectl", "Apply", "/f:spec/f:replicas"));
}

#[test]
fn apply_ignores_status_on_the_main_resource() {
    let mut cfg = config(1);
    cfg["status"] = json!({"replicas": 9});
    let out = ssa(&Value::Null, &cfg, "m", false, T0).unwrap();
    assert!(out.get("status").is_none());
    assert!(
        entry(&out, "m", "Apply").unwrap()["fieldsV1"]
            .get("f:status")
            .is_none()
    );
}

#[test]
fn apply_rejects_bad_configurations() {
    let kind = deployment_kind();
    let opts = PatchOptions {
        field_manager: "m".into(),
        now: T0.into(),
        ..Default::default()
    };
    let run = |body: &str| {
        apply_patch(kind, &Value::Null, PatchType::Apply, body.as_bytes(), &opts).unwrap_err()
    };
    let cases = [
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}"#,
            "invalid object type: /v1, Kind=Pod",
        ),
        (
            r#"{"kind":"Deployment","metadata":{"name":"web"}}"#,
            "invalid object type: /, Kind=Deployment",
        ),
        (
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","managedFields":[{"manager":"x"}]}}"#,
            "metadata.managedFields must be nil",
        ),
        (
            r#"{"apiVersion":"apps/v1","kind":"Deployment","spec":{"bogus":1}}"#,
            ".spec.bogus: field not declared in schema",
        ),
        (
            r#"{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}"#,
            ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)",
        ),
        (
            r#"{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"a"},{"name":"a"}]}}}}"#,
            ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]",
        ),
    ];
    for (body, message) in cases {
        let e = run(body);
        assert_eq!(
            (e.reason, e.message.as_str()),
            (Reason::BadRequest, message),
            "{body}"
        );
    }
    for body in ["", "[1, 2]", "key: [unclosed", "42"] {
        assert_eq!(run(body).reason, Reason::BadRequest, "{body:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Non-apply writes

#[test]
fn record_update_bookkeeping() {
    let kind = deployment_kind();
    let created = record_update(kind, &Value::Null, &stored(config(1)), "kubectl-create", T0);
    // An update that changes nothing leaves managedFields (and their times) alone.
    assert_eq!(
        record_update(kind, &created, &created, "kubectl-edit", T1),
        created
    );
    // A status write through the main resource is not recorded.
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 1});
    assert_eq!(
        record_update(kind, &created, &with_status, "x", T1)["metadata"]["managedFields"],
        created["metadata"]["managedFields"]
    );
    // Through the status subresource it is, tagged.
    let out = record_subresource_update(
        kind,
        &created,
        &with_status,
        "kube-controller-manager",
        "status",
        T1,
    );
    let e = entry(&out, "kube-controller-manager", "Update").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    // Removing a field removes it from its owner.
    let mut removed = created.clone();
    removed["spec"].as_object_mut().unwrap().remove("replicas");
    let out = record_update(kind, &created, &removed, "kubectl-edit", T1);
    assert!(!owns(
        &out,
        "kubectl-create",
        "Update",
        "/f:spec/f:replicas"
    ));
    assert!(
        entry(&out, "kubectl-edit", "Update").is_none(),
        "removing only is owning nothing"
    );
    // `managedFields: [{}]` resets them; the writer then owns only what it changed.
    let mut reset = created.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    reset["metadata"]["labels"]["x"] = json!("1");
    let out = record_update(kind, &created, &reset, "kubectl-patch", T1);
    let list = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:x": {}}}})
    );
    // Entries are sorted: Apply before Update, then by time.
    let applied = ssa(&stored(out), &config(1), "zed", true, T2).unwrap();
    let ops: Vec<&str> = applied["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["Apply", "Update"]);
}
