//! Selectable field values read from the protobuf form (as the gateway's watch cache does,
//! once per change) are the ones read from the Kubernetes JSON form.

use navarch_api::Object;
use navarch_api::codec::FieldValidation;
use navarch_api::kinds;
use navarch_api::selectors::{FieldSelector, FieldSource, field_value};
use navarch_api::stored::StoredView;
use serde_json::json;

fn object(kind: &str, api_version: &str, json: serde_json::Value) -> Object {
    let kind = kinds::by_kind(api_version, kind).expect("served kind");
    Object::from_json(kind, &json, FieldValidation::Strict)
        .expect("valid object")
        .0
}

#[test]
fn every_selectable_field_reads_the_same_from_protobuf_and_json() {
    let cases = [
        object(
            "Pod",
            "v1",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                         "serviceAccountName": "sa", "containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": "Running", "podIP": "10.0.0.9",
                           "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}], "nominatedNodeName": "n2"}
            }),
        ),
        // Unset fields: hostNetwork defaults to "false", podIP to "".
        object(
            "Pod",
            "v1",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
                   "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        ),
        object(
            "Pod",
            "v1",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "host"},
                   "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]},
                   "status": {"podIP": "10.1.1.1"}}),
        ),
        object(
            "Node",
            "v1",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                   "spec": {"unschedulable": true}}),
        ),
        object(
            "Event",
            "v1",
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
                   "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d", "uid": "u"},
                   "reason": "Started", "type": "Normal", "reportingComponent": "kubelet"}),
        ),
        object(
            "ReplicaSet",
            "apps/v1",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "d"},
                   "spec": {"selector": {"matchLabels": {"a": "b"}},
                            "template": {"metadata": {"labels": {"a": "b"}},
                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}},
                   "status": {"replicas": 3}}),
        ),
    ];
    for obj in &cases {
        let json = obj.to_json();
        // The stored form (no resourceVersion) followed by the tail reads are served with.
        let mut stored = obj.clone();
        stored.set_resource_version(None);
        let wire = Object::stored_encoding(obj.kind, &stored.encode(), 7);
        let view = StoredView::new(obj.kind, &wire);
        for field in FieldSelector::supported_fields(obj.kind) {
            assert_eq!(
                field_value(obj.kind, obj, field),
                field_value(obj.kind, &json, field),
                "{} {field}",
                obj.name()
            );
            assert_eq!(
                field_value(obj.kind, &view, field),
                field_value(obj.kind, obj, field),
                "{} {field} (from the encoding)",
                obj.name()
            );
        }
        assert_eq!(view.labels(), obj.labels(), "{}", obj.name());
        assert_eq!(view.namespace(), obj.namespace(), "{}", obj.name());
        assert_eq!(
            view.lookup("metadata.resourceVersion").as_deref(),
            Some("7")
        );
        assert_eq!(view.lookup("kind").as_deref(), Some(obj.kind.kind));
    }
    // Nested messages and list items, beyond the selectable fields.
    let wire = cases[0].encode();
    let pod = StoredView::new(cases[0].kind, &wire);
    for path in [
        "spec",
        "status.podIPs.1.ip",
        "status.podIPs.2.ip",
        "spec.containers.0.name",
        "spec.containers",
        "metadata.labels",
        "nope",
        "status.phase.x",
    ] {
        assert_eq!(pod.lookup(path), cases[0].lookup(path), "{path}");
    }
    let pod = &cases[0];
    assert_eq!(field_value(pod.kind, pod, "status.podIP"), "10.0.0.7");
    assert_eq!(field_value(pod.kind, pod, "spec.hostNetwork"), "false");
    assert_eq!(
        field_value(cases[2].kind, &cases[2], "spec.hostNetwork"),
        "true"
    );
    assert_eq!(
        field_value(cases[2].kind, &cases[2], "status.podIP"),
        "10.1.1.1"
    );
    assert_eq!(field_value(cases[4].kind, &cases[4], "source"), "kubelet");
    assert_eq!(
        field_value(cases[5].kind, &cases[5], "status.replicas"),
        "3"
    );
    assert_eq!(
        pod.labels(),
        [("app".to_string(), "web".to_string())].into()
    );
    let selector = FieldSelector::parse_for("status.phase!=Failed,spec.nodeName=n1", pod.kind)
        .expect("valid selector");
    assert!(selector.matches(pod.kind, pod));
    assert!(!selector.matches(cases[1].kind, &cases[1]));
}
