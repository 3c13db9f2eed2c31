//! Kubernetes' v1 defaults, checked field by field on the Kubernetes JSON form.

use navarch_api::codec::{self, FieldValidation};
use navarch_api::{defaults, kinds};
use serde_json::{Value, json};

/// Decodes a YAML document, applies defaults and returns its Kubernetes JSON.
fn defaulted(yaml: &str) -> Value {
    let json = codec::yaml_to_json(yaml).unwrap();
    let info = kinds::by_kind(
        json["apiVersion"].as_str().unwrap(),
        json["kind"].as_str().unwrap(),
    )
    .unwrap();
    let mut message = codec::from_json(&info.descriptor(), &json, FieldValidation::Strict)
        .unwrap()
        .message;
    defaults::apply_defaults(info, &mut message);
    codec::to_json(&message)
}

/// Checks `(JSON pointer, expected value)` pairs; `Value::Null` means "absent".
fn check(yaml: &str, table: &[(&str, Value)]) {
    let out = defaulted(yaml);
    for (pointer, expected) in table {
        let actual = out.pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(
            &actual,
            expected,
            "{pointer} in {}",
            serde_json::to_string_pretty(&out).unwrap()
        );
    }
}

#[test]
fn pod() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: default}
spec:
  hostNetwork: true
  containers:
  - name: app
    image: nginx
    ports: [{containerPort: 80}]
    env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
    resources: {limits: {cpu: 500m, memory: 128Mi}}
    livenessProbe: {httpGet: {port: 80}}
    readinessProbe: {grpc: {port: 9090}, periodSeconds: 5}
    lifecycle: {preStop: {httpGet: {port: 80}}}
  - name: pinned
    image: nginx:1.27
    imagePullPolicy: Never
  volumes:
  - {name: cfg, configMap: {name: c}}
  - {name: sec, secret: {secretName: s}}
  - {name: scratch}
  - {name: host, hostPath: {path: /var/log}}
  - name: proj
    projected:
      sources:
      - serviceAccountToken: {path: token}
      - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
"#;
    check(
        yaml,
        &[
            ("/spec/restartPolicy", json!("Always")),
            ("/spec/dnsPolicy", json!("ClusterFirst")),
            ("/spec/schedulerName", json!("default-scheduler")),
            ("/spec/terminationGracePeriodSeconds", json!(30)),
            ("/spec/securityContext", json!({})),
            ("/spec/enableServiceLinks", json!(true)),
            (
                "/spec/containers/0/terminationMessagePath",
                json!("/dev/termination-log"),
            ),
            ("/spec/containers/0/terminationMessagePolicy", json!("File")),
            ("/spec/containers/0/imagePullPolicy", json!("Always")),
            ("/spec/containers/1/imagePullPolicy", json!("Never")),
            (
                "/spec/containers/0/ports/0",
                json!({"containerPort": 80, "hostPort": 80, "protocol": "TCP"}),
            ),
            (
                "/spec/containers/0/env/0/valueFrom/fieldRef/apiVersion",
                json!("v1"),
            ),
            (
                "/spec/containers/0/resources/requests",
                json!({"cpu": "500m", "memory": "128Mi"}),
            ),
            (
                "/spec/containers/0/livenessProbe",
                json!({"failureThreshold": 3, "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                       "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1}),
            ),
            ("/spec/containers/0/readinessProbe/periodSeconds", json!(5)),
            (
                "/spec/containers/0/readinessProbe/grpc",
                json!({"port": 9090, "service": ""}),
            ),
            (
                "/spec/containers/0/lifecycle/preStop/httpGet",
                json!({"path": "/", "port": 80, "scheme": "HTTP"}),
            ),
            ("/spec/volumes/0/configMap/defaultMode", json!(420)),
            ("/spec/volumes/1/secret/defaultMode", json!(420)),
            ("/spec/volumes/2/emptyDir", json!({})),
            ("/spec/volumes/3/hostPath/type", json!("")),
            ("/spec/volumes/4/projected/defaultMode", json!(420)),
            (
                "/spec/volumes/4/projected/sources/0/serviceAccountToken/expirationSeconds",
                json!(3600),
            ),
            (
                "/spec/volumes/4/projected/sources/1/downwardAPI/items/0/fieldRef/apiVersion",
                json!("v1"),
            ),
        ],
    );
}

#[test]
fn deployment_and_its_template() {
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: "nginx:1.27", resources: {limits: {cpu: "1"}}}
"#;
    check(
        yaml,
        &[
            ("/spec/replicas", json!(1)),
            (
                "/spec/strategy",
                json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
            ("/spec/progressDeadlineSeconds", json!(600)),
            ("/spec/template/spec/restartPolicy", json!("Always")),
            (
                "/spec/template/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            // Pod-only defaults stay out of templates, as in Kubernetes.
            ("/spec/template/spec/enableServiceLinks", Value::Null),
            (
                "/spec/template/spec/containers/0/resources/requests",
                Value::Null,
            ),
        ],
    );
    let recreate = yaml.replace(
        "  selector:",
        "  strategy: {type: Recreate}\n  replicas: 0\n  selector:",
    );
    check(
        &recreate,
        &[
            ("/spec/strategy", json!({"type": "Recreate"})),
            ("/spec/replicas", json!(0)),
        ],
    );
}

#[test]
fn replica_set_daemon_set_stateful_set() {
    let template = "  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: a, image: a}]\n";
    check(
        &format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: a, namespace: d}}\nspec:\n{template}"
        ),
        &[
            ("/spec/replicas", json!(1)),
            ("/spec/template/spec/dnsPolicy", json!("ClusterFirst")),
        ],
    );
    check(
        &format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: a, namespace: d}}\nspec:\n{template}"
        ),
        &[
            (
                "/spec/updateStrategy",
                json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
        ],
    );
    let sts = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: a, namespace: d}}\nspec:\n{template}  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n"
    );
    check(
        &sts,
        &[
            ("/spec/replicas", json!(1)),
            ("/spec/podManagementPolicy", json!("OrderedReady")),
            (
                "/spec/updateStrategy",
                json!({"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"}),
            ),
            (
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
            (
                "/spec/volumeClaimTemplates/0/spec/volumeMode",
                json!("Filesystem"),
            ),
            (
                "/spec/volumeClaimTemplates/0/status/phase",
                json!("Pending"),
            ),
        ],
    );
    let on_delete = sts.replace(
        "spec:\n  selector",
        "spec:\n  updateStrategy: {type: OnDelete}\n  selector",
    );
    check(
        &on_delete,
        &[("/spec/updateStrategy", json!({"type": "OnDelete"}))],
    );
}

#[test]
fn jobs_and_cron_jobs() {
    let job = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: default}
spec:
  template:
    metadata: {labels: {app: pi}}
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: perl}]
"#;
    check(
        job,
        &[
            ("/spec/completions", json!(1)),
            ("/spec/parallelism", json!(1)),
            ("/spec/backoffLimit", json!(6)),
            ("/spec/completionMode", json!("NonIndexed")),
            ("/spec/suspend", json!(false)),
            ("/spec/podReplacementPolicy", json!("TerminatingOrFailed")),
            ("/spec/manualSelector", Value::Null),
            ("/metadata/labels", json!({"app": "pi"})),
            (
                "/spec/template/spec/terminationGracePeriodSeconds",
                json!(30),
            ),
        ],
    );
    let parallel = job.replace("spec:\n  template", "spec:\n  parallelism: 3\n  backoffLimitPerIndex: 1\n  podFailurePolicy: {rules: [{action: Ignore, onPodConditions: [{type: DisruptionTarget}]}]}\n  template");
    check(
        &parallel,
        &[
            ("/spec/completions", Value::Null),
            ("/spec/parallelism", json!(3)),
            ("/spec/backoffLimit", json!(2147483647)),
            ("/spec/podReplacementPolicy", json!("Failed")),
            (
                "/spec/podFailurePolicy/rules/0/onPodConditions/0/status",
                json!("True"),
            ),
        ],
    );
    let cron = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: c, namespace: default}
spec:
  schedule: "@hourly"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox}]
"#;
    check(
        cron,
        &[
            ("/spec/concurrencyPolicy", json!("Allow")),
            ("/spec/suspend", json!(false)),
            ("/spec/successfulJobsHistoryLimit", json!(3)),
            ("/spec/failedJobsHistoryLimit", json!(1)),
            (
                "/spec/jobTemplate/spec/template/spec/dnsPolicy",
                json!("ClusterFirst"),
            ),
            (
                "/spec/jobTemplate/spec/template/spec/containers/0/imagePullPolicy",
                json!("Always"),
            ),
            // Job defaults are applied when the Job is created, not in the template.
            ("/spec/jobTemplate/spec/backoffLimit", Value::Null),
        ],
    );
}

#[test]
fn services() {
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: d}\nspec:\n  selector: {app: a}\n  ports: [{port: 80}, {port: 443, targetPort: https, protocol: TCP}]\n";
    check(
        svc,
        &[
            ("/spec/type", json!("ClusterIP")),
            ("/spec/sessionAffinity", json!("None")),
            (
                "/spec/ports/0",
                json!({"port": 80, "protocol": "TCP", "targetPort": 80}),
            ),
            ("/spec/ports/1/targetPort", json!("https")),
            ("/spec/internalTrafficPolicy", json!("Cluster")),
            ("/spec/ipFamilyPolicy", json!("SingleStack")),
            ("/spec/ipFamilies", json!(["IPv4"])),
            ("/spec/externalTrafficPolicy", Value::Null),
            ("/spec/clusterIPs", Value::Null),
        ],
    );
    check(
        &svc.replace(
            "spec:\n",
            "spec:\n  type: LoadBalancer\n  clusterIP: fd00::10\n  sessionAffinity: ClientIP\n",
        ),
        &[
            ("/spec/externalTrafficPolicy", json!("Cluster")),
            ("/spec/allocateLoadBalancerNodePorts", json!(true)),
            ("/spec/clusterIPs", json!(["fd00::10"])),
            ("/spec/ipFamilies", json!(["IPv6"])),
            (
                "/spec/sessionAffinityConfig",
                json!({"clientIP": {"timeoutSeconds": 10800}}),
            ),
        ],
    );
    check(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: d}\nspec: {type: ExternalName, externalName: db.example.com}\n",
        &[
            ("/spec/ipFamilies", Value::Null),
            ("/spec/ipFamilyPolicy", Value::Null),
            ("/spec/internalTrafficPolicy", Value::Null),
            ("/spec/sessionAffinity", json!("None")),
        ],
    );
}

#[test]
fn secrets_namespaces_and_others() {
    check(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: d}\ndata: {a: YQ==}\nstringData: {b: bee}\n",
        &[
            ("/type", json!("Opaque")),
            ("/data", json!({"a": "YQ==", "b": "YmVl"})),
            ("/stringData", Value::Null),
        ],
    );
    check(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
        &[
            (
                "/metadata/labels",
                json!({"kubernetes.io/metadata.name": "team-a"}),
            ),
            ("/status", Value::Null),
        ],
    );
    check(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: e, namespace: d}\nsubsets: [{addresses: [{ip: 10.0.0.1}], ports: [{port: 80}]}]\n",
        &[("/subsets/0/ports/0/protocol", json!("TCP"))],
    );
    check(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, namespace: d}\naddressType: IPv4\nports: [{port: 80}]\n",
        &[(
            "/ports/0",
            json!({"name": "", "port": 80, "protocol": "TCP"}),
        )],
    );
    check(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: d}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: User, name: u}, {kind: ServiceAccount, name: sa}]\n",
        &[
            ("/roleRef/apiGroup", json!("rbac.authorization.k8s.io")),
            ("/subjects/0/apiGroup", json!("rbac.authorization.k8s.io")),
            ("/subjects/1/apiGroup", json!("")),
        ],
    );
    check(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: p}\nvalue: 10\n",
        &[("/preemptionPolicy", json!("PreemptLowerPriority"))],
    );
    check(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c, namespace: d}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
        &[
            ("/spec/volumeMode", json!("Filesystem")),
            ("/status/phase", json!("Pending")),
        ],
    );
}

#[test]
fn horizontal_pod_autoscalers() {
    let hpa = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h, namespace: d}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 5\n";
    check(
        hpa,
        &[
            ("/spec/minReplicas", json!(1)),
            (
                "/spec/metrics",
                json!([{"resource": {"name": "cpu", "target": {"averageUtilization": 80, "type": "Utilization"}}, "type": "Resource"}]),
            ),
            ("/spec/behavior", Value::Null),
        ],
    );
    check(
        &format!("{hpa}  behavior: {{scaleDown: {{stabilizationWindowSeconds: 60}}}}\n"),
        &[
            (
                "/spec/behavior/scaleDown/stabilizationWindowSeconds",
                json!(60),
            ),
            ("/spec/behavior/scaleDown/selectPolicy", json!("Max")),
            (
                "/spec/behavior/scaleDown/policies",
                json!([{"periodSeconds": 15, "type": "Percent", "value": 100}]),
            ),
            (
                "/spec/behavior/scaleUp/stabilizationWindowSeconds",
                json!(0),
            ),
            (
                "/spec/behavior/scaleUp/policies",
                json!([{"periodSeconds": 15, "type": "Pods", "value": 4}, {"periodSeconds": 15, "type": "Percent", "value": 100}]),
            ),
        ],
    );
    // autoscaling/v1 is not served, but its defaulting is kept for clients of the typed API.
    let mut v1 = navarch_api::autoscaling::v1::HorizontalPodAutoscaler::default();
    defaults::default_horizontal_pod_autoscaler_v1(&mut v1);
    assert_eq!(v1.spec.unwrap().min_replicas, Some(1));
}

#[test]
fn user_values_win_over_defaults() {
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 0
  revisionHistoryLimit: 0
  strategy: {rollingUpdate: {maxSurge: 1}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      restartPolicy: Always
      dnsPolicy: Default
      terminationGracePeriodSeconds: 0
      containers: [{name: app, image: "nginx:latest", imagePullPolicy: IfNotPresent, terminationMessagePolicy: FallbackToLogsOnError}]
"#;
    check(
        yaml,
        &[
            ("/spec/replicas", json!(0)),
            ("/spec/revisionHistoryLimit", json!(0)),
            (
                "/spec/strategy/rollingUpdate",
                json!({"maxSurge": 1, "maxUnavailable": "25%"}),
            ),
            ("/spec/template/spec/dnsPolicy", json!("Default")),
            (
                "/spec/template/spec/terminationGracePeriodSeconds",
                json!(0),
            ),
            (
                "/spec/template/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            (
                "/spec/template/spec/containers/0/terminationMessagePolicy",
                json!("FallbackToLogsOnError"),
            ),
        ],
    );
}
