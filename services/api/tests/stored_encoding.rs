//! The gateway answers reads in protobuf from the stored bytes plus an appended tail
//! (apiVersion, kind, resourceVersion) instead of decoding and encoding each object: the
//! result decodes to the same object, dynamically and into the generated types.

use navarch_api::Object;
use navarch_api::codec::FieldValidation;
use navarch_api::kinds;
use prost::Message as _;
use serde_json::json;

#[test]
fn stored_bytes_plus_the_tail_decode_to_the_object_read_back() {
    let cases = [
        (
            "Pod",
            "v1",
            json!({
                "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                             "uid": "u-1", "creationTimestamp": "2026-12-07T10:00:00Z"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": "Running"}
            }),
        ),
        // No metadata at all: the tail brings it.
        ("ConfigMap", "v1", json!({"data": {"k": "v"}})),
        // Stored with type meta already: the tail's copy wins, the same value.
        (
            "Deployment",
            "apps/v1",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"replicas": 3}}),
        ),
    ];
    for (kind, api_version, json) in cases {
        let info = kinds::by_kind(api_version, kind).expect("served kind");
        let (obj, _) = Object::from_json(info, &json, FieldValidation::Strict).expect("valid");
        // What the registry stores: everything but resourceVersion.
        let mut stored = obj.clone();
        stored.set_resource_version(None);
        let stored = stored.encode();

        let mut read_back = Object::decode(info, &stored).unwrap();
        read_back.set_type_meta();
        read_back.set_resource_version(Some(42));

        let wire = Object::stored_encoding(info, &stored, 42);
        let decoded = Object::decode(info, &wire).unwrap();
        assert_eq!(decoded.to_json(), read_back.to_json(), "{kind}");
        assert_eq!(
            decoded.to_json()["metadata"]["resourceVersion"],
            "42",
            "{kind}"
        );
        assert_eq!(decoded.to_json()["kind"], kind);
        if kind == "Pod" {
            let typed = navarch_api::core::v1::Pod::decode(wire.as_slice()).unwrap();
            let meta = typed.metadata.unwrap();
            assert_eq!(meta.resource_version.as_deref(), Some("42"));
            assert_eq!(meta.labels["app"], "web");
            assert_eq!(meta.uid.as_deref(), Some("u-1"));
            assert_eq!(typed.spec.unwrap().node_name.as_deref(), Some("n1"));
        }
    }
}

/// The hand-written tail is byte for byte what encoding a message with just apiVersion, kind
/// and metadata.resourceVersion gives, for every served kind.
#[test]
fn the_tail_is_the_encoding_of_type_meta_and_resource_version_for_every_kind() {
    for info in kinds::KINDS {
        for revision in [1, 42, i64::MAX] {
            let mut tail = Object::new(info);
            tail.set_type_meta();
            tail.set_resource_version(Some(revision));
            assert_eq!(
                Object::stored_encoding(info, &[], revision),
                tail.encode(),
                "{} {revision}",
                info.kind
            );
        }
    }
}
