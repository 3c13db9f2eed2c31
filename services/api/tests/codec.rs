use navarch_api::codec::{self, FieldValidation};
use navarch_api::core::v1::{ConfigMap, Pod};
use serde_json::json;

#[test]
fn yaml_11_octal_file_modes_are_read_as_kubernetes_does() {
    let json = codec::yaml_to_json("metadata: {name: p}\nspec:\n  volumes:\n  - name: v\n    configMap: {name: c, defaultMode: 0644}\n").unwrap();
    let (pod, _) = codec::decode_json::<Pod>(&json, FieldValidation::Strict).unwrap();
    let mode = pod.spec.unwrap().volumes[0]
        .config_map
        .as_ref()
        .unwrap()
        .default_mode;
    assert_eq!(mode, Some(0o644));
}

#[test]
fn pod_round_trip_keeps_presence_and_forms() {
    let input = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "x"}},
        "spec": {
            "containers": [{"name": "c", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "resources": {"requests": {"cpu": 0.5, "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 0},
                "livenessProbe": {"tcpSocket": {"port": 8080}}}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 30
        }
    });
    let (pod, unknown) = codec::decode_json::<Pod>(&input, FieldValidation::Strict).unwrap();
    assert!(unknown.is_empty());
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    let out = codec::encode_json(&pod);
    assert_eq!(
        out["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    assert_eq!(
        out["spec"]["containers"][0]["readinessProbe"]["periodSeconds"],
        0
    );
    assert_eq!(
        out["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"],
        "http"
    );
    assert_eq!(
        out["spec"]["containers"][0]["livenessProbe"]["tcpSocket"]["port"],
        8080
    );
    assert_eq!(out["spec"]["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(out["spec"]["terminationGracePeriodSeconds"], 30);
}

#[test]
fn unknown_fields_per_validation_mode() {
    let input = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "bogus": 1}, "data": {"k": "v"}, "extra": true});
    let err = codec::decode_json::<ConfigMap>(&input, FieldValidation::Strict).unwrap_err();
    let fields: Vec<_> = err.problems.iter().map(|p| p.field().to_string()).collect();
    assert_eq!(fields, vec!["metadata.bogus", "extra"]);
    let (_, warnings) = codec::decode_json::<ConfigMap>(&input, FieldValidation::Warn).unwrap();
    assert_eq!(warnings, vec!["metadata.bogus", "extra"]);
    let (_, warnings) = codec::decode_json::<ConfigMap>(&input, FieldValidation::Ignore).unwrap();
    assert!(warnings.is_empty());
}

#[test]
fn type_errors_name_the_field() {
    let input = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}});
    let err = codec::decode_json::<Pod>(&input, FieldValidation::Strict).unwrap_err();
    assert_eq!(
        err.problems[0].field(),
        "spec.containers[0].ports[0].containerPort"
    );
    assert!(err.to_string().contains("expected 32-bit integer"), "{err}");
}

/// Map fields (labels, selectors) encode in no fixed order: a re-encoded object with the same
/// spec is the same spec (a spurious difference bumped `metadata.generation` on every write,
/// and controllers chased the Deployment for hundreds of generations).
#[test]
fn same_spec_ignores_map_order_and_metadata() {
    let kind = navarch_api::kinds::by_resource("apps", "v1", "deployments").unwrap();
    let labels: serde_json::Map<String, serde_json::Value> = (0..8)
        .map(|i| {
            (
                format!("label-{i}.example.com/key"),
                json!(format!("value-{i}")),
            )
        })
        .collect();
    let doc = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
        }
    });
    let (first, _) = navarch_api::Object::from_json(kind, &doc, FieldValidation::Strict).unwrap();
    let mut copy = first.clone();
    for _ in 0..20 {
        copy = navarch_api::Object::decode(kind, &copy.encode()).unwrap();
        copy.update_meta(|m| m.generation = Some(7));
        assert!(first.same_spec(&copy));
    }
    let mut scaled = doc.clone();
    scaled["spec"]["replicas"] = json!(3);
    let (scaled, _) =
        navarch_api::Object::from_json(kind, &scaled, FieldValidation::Strict).unwrap();
    assert!(!first.same_spec(&scaled));
}
