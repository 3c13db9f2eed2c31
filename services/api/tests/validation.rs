//! Validation as the gateway runs it: decode, default, validate. The classic mistakes come out
//! with Kubernetes' own field paths and messages, every field at fault is reported, and every
//! manifest of `tests/corpus` is valid.

use navarch_api::codec::{self, FieldValidation};
use navarch_api::kinds::{self, KindInfo};
use navarch_api::{ApiError, defaults, validation};
use prost_reflect::DynamicMessage;

/// Decodes one YAML document and applies defaults, as the gateway does before validating.
fn object(yaml: &str) -> (&'static KindInfo, DynamicMessage) {
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
    (info, message)
}

fn create_errors(yaml: &str) -> Vec<String> {
    let (info, obj) = object(yaml);
    validation::validate(info, &obj, None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn update_errors(old: &str, new: &str) -> Vec<String> {
    let (info, old) = object(old);
    let (_, new) = object(new);
    validation::validate(info, &new, Some(&old))
        .iter()
        .map(ToString::to_string)
        .collect()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports: [{containerPort: 80, name: http}]
"#;

fn with(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "{from}");
    base.replacen(from, to, 1)
}

#[test]
fn a_good_deployment_is_valid() {
    assert_eq!(create_errors(DEPLOYMENT), Vec::<String>::new());
}

#[test]
fn selector_that_does_not_match_the_template() {
    let yaml = with(DEPLOYMENT, "labels: {app: web}", "labels: {app: api}");
    assert_eq!(
        create_errors(&yaml),
        vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"
        ]
    );
}

#[test]
fn missing_image() {
    let yaml = with(DEPLOYMENT, "        image: nginx:1.27\n", "");
    assert_eq!(
        create_errors(&yaml),
        vec!["spec.template.spec.containers[0].image: Required value"]
    );
}

#[test]
fn bad_name() {
    let yaml = with(DEPLOYMENT, "name: web,", "name: My_App,");
    assert_eq!(
        create_errors(&yaml),
        vec![
            "metadata.name: Invalid value: \"My_App\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
}

#[test]
fn duplicate_container_name() {
    let yaml = with(
        DEPLOYMENT,
        "      - name: app\n",
        "      - name: app\n        image: busybox\n      - name: app\n",
    );
    assert_eq!(
        create_errors(&yaml),
        vec!["spec.template.spec.containers[1].name: Duplicate value: \"app\""]
    );
}

#[test]
fn negative_replicas() {
    let yaml = with(DEPLOYMENT, "replicas: 2", "replicas: -1");
    assert_eq!(
        create_errors(&yaml),
        vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
}

#[test]
fn every_field_at_fault_is_reported_and_the_error_reads_like_kubernetes() {
    let yaml = with(
        &with(
            &with(DEPLOYMENT, "replicas: 2", "replicas: -1"),
            "labels: {app: web}",
            "labels: {app: api}",
        ),
        "        image: nginx:1.27\n",
        "",
    );
    let (info, obj) = object(&yaml);
    let causes = validation::validate(info, &obj, None);
    let e = ApiError::invalid(info.group, info.kind, "web", causes);
    assert_eq!(
        e.message,
        "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`, spec.template.spec.containers[0].image: Required value]"
    );
    assert_eq!(e.code(), 422);
}

#[test]
fn workload_selector_rules() {
    let no_selector = with(DEPLOYMENT, "  selector: {matchLabels: {app: web}}\n", "");
    assert_eq!(
        create_errors(&no_selector),
        vec![
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
        ]
    );
    let empty = with(
        DEPLOYMENT,
        "selector: {matchLabels: {app: web}}",
        "selector: {}",
    );
    assert_eq!(
        create_errors(&empty),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        ]
    );
    let expression = with(
        DEPLOYMENT,
        "selector: {matchLabels: {app: web}}",
        "selector: {matchExpressions: [{key: app, operator: In}]}",
    );
    assert_eq!(
        create_errors(&expression),
        vec![
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"In\", Values:[]string(nil)}}}: invalid label selector"
        ]
    );
}

#[test]
fn deployment_strategy_and_deadlines() {
    let yaml = with(
        DEPLOYMENT,
        "  replicas: 2\n",
        "  replicas: 2\n  minReadySeconds: 700\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n",
    );
    assert_eq!(
        create_errors(&yaml),
        vec![
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"
        ]
    );
    let yaml = with(
        DEPLOYMENT,
        "  replicas: 2\n",
        "  replicas: 2\n  strategy: {type: Canary}\n",
    );
    assert_eq!(
        create_errors(&yaml),
        vec![
            "spec.strategy: Unsupported value: \"Canary\": supported values: \"Recreate\", \"RollingUpdate\""
        ]
    );
    let yaml = with(
        DEPLOYMENT,
        "  replicas: 2\n",
        "  replicas: 2\n  strategy: {rollingUpdate: {maxUnavailable: 150%}}\n",
    );
    assert_eq!(
        create_errors(&yaml),
        vec![
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%"
        ]
    );
    let yaml = with(
        DEPLOYMENT,
        "      containers:\n",
        "      restartPolicy: Never\n      containers:\n",
    );
    assert_eq!(
        create_errors(&yaml),
        vec![
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        ]
    );
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  containers:
  - name: app
    image: nginx:1.27
"#;

fn pod_with(containers: &str) -> String {
    with(
        POD,
        "  containers:\n  - name: app\n    image: nginx:1.27\n",
        containers,
    )
}

#[test]
fn pod_spec_mistakes() {
    let cases: &[(&str, &[&str])] = &[
        ("  containers: []\n", &["spec.containers: Required value"]),
        (
            "  containers:\n  - name: App\n    image: x\n",
            &[
                "spec.containers[0].name: Invalid value: \"App\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            "  initContainers:\n  - {name: app, image: x}\n  containers:\n  - {name: app, image: x}\n",
            &["spec.initContainers[0].name: Duplicate value: \"app\""],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    ports: [{containerPort: 70000, name: http}, {containerPort: 81, name: http, protocol: HTTP}]\n",
            &[
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    ports: [{containerPort: 80, name: a-very-long-port-name}]\n",
            &[
                "spec.containers[0].ports[0].name: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters",
            ],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    volumeMounts: [{name: data, mountPath: /data}, {name: data, mountPath: ''}]\n",
            &[
                "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
                "spec.containers[0].volumeMounts[1].name: Not found: \"data\"",
                "spec.containers[0].volumeMounts[1].mountPath: Required value",
            ],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    resources: {requests: {cpu: '2'}, limits: {cpu: '1', memory: -1Gi}}\n",
            &[
                "spec.containers[0].resources.limits[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0",
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                // Pods copy limits into missing requests before validation, as Kubernetes does.
                "spec.containers[0].resources.requests[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0",
            ],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    resources: {limits: {gpu: '1'}}\n",
            &[
                "spec.containers[0].resources.limits[gpu]: Invalid value: gpu: must be a standard resource type or fully qualified",
                "spec.containers[0].resources.limits[gpu]: Invalid value: gpu: must be a standard resource for containers",
                "spec.containers[0].resources.requests[gpu]: Invalid value: gpu: must be a standard resource type or fully qualified",
                "spec.containers[0].resources.requests[gpu]: Invalid value: gpu: must be a standard resource for containers",
            ],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    env:\n    - {name: 'A=B', value: x}\n    - name: B\n      valueFrom: {fieldRef: {fieldPath: metadata.name}, secretKeyRef: {name: s, key: k}}\n",
            &[
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].env[1].valueFrom: Invalid value: \"\": may not have more than one field specified at a time",
            ],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    env: [{name: N, valueFrom: {fieldRef: {fieldPath: spec.restartPolicy}}}]\n",
            &[
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.restartPolicy\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
            ],
        ),
        (
            "  containers:\n  - name: app\n    image: x\n    livenessProbe: {successThreshold: 2, initialDelaySeconds: -1}\n    readinessProbe: {exec: {command: [x]}, tcpSocket: {port: 80}}\n",
            &[
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            ],
        ),
        (
            "  initContainers:\n  - {name: init, image: x, readinessProbe: {exec: {command: [x]}}}\n  - {name: sidecar, image: x, restartPolicy: Always, readinessProbe: {exec: {command: [x]}}}\n  containers:\n  - {name: app, image: x}\n",
            &[
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ],
        ),
        (
            "  restartPolicy: Sometimes\n  dnsPolicy: Google\n  containers:\n  - {name: app, image: x}\n",
            &[
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ],
        ),
        (
            "  terminationGracePeriodSeconds: -5\n  containers:\n  - {name: app, image: x}\n",
            &[
                "spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0",
            ],
        ),
        (
            "  tolerations:\n  - {key: k, operator: Exists, value: v}\n  - {operator: Equal, value: v}\n  - {key: k, operator: Equal, effect: Sometimes}\n  containers:\n  - {name: app, image: x}\n",
            &[
                "spec.tolerations[0].operator: Invalid value: core.Toleration{Key:\"k\", Operator:\"Exists\", Value:\"v\", Effect:\"\", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'",
                "spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                "spec.tolerations[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            ],
        ),
        (
            "  volumes:\n  - name: a\n    emptyDir: {}\n    configMap: {name: c}\n  - {name: b, emptyDir: {}}\n  - name: b\n    secret: {}\n  - {name: Bad_Name}\n  containers:\n  - {name: app, image: x}\n",
            &[
                "spec.volumes[0].configMap: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[2].secret.secretName: Required value",
                "spec.volumes[2].name: Duplicate value: \"b\"",
                "spec.volumes[3].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            "  securityContext: {runAsUser: -1}\n  containers:\n  - name: app\n    image: x\n    securityContext: {privileged: true, allowPrivilegeEscalation: false}\n",
            &[
                "spec.containers[0].securityContext: Invalid value: {\"allowPrivilegeEscalation\":false,\"privileged\":true}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
            ],
        ),
    ];
    for (containers, expected) in cases {
        assert_eq!(
            create_errors(&pod_with(containers)),
            *expected,
            "{containers}"
        );
    }
}

#[test]
fn pods_accept_sidecars_and_the_usual_spec() {
    let yaml = pod_with(
        "  initContainers:\n  - name: proxy\n    image: envoy\n    restartPolicy: Always\n    readinessProbe: {httpGet: {port: 9901, path: /ready}}\n  containers:\n  - name: app\n    image: x\n    ports: [{containerPort: 8080, name: http}]\n    livenessProbe: {httpGet: {port: http}}\n    env: [{name: POD, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}]\n    volumeMounts: [{name: cfg, mountPath: /etc/app}]\n  volumes:\n  - {name: cfg, configMap: {name: app, items: [{key: a, path: a.yaml}]}}\n",
    );
    assert_eq!(create_errors(&yaml), Vec::<String>::new());
}

#[test]
fn pod_updates_may_only_change_images_and_a_few_fields() {
    let old = POD;
    assert_eq!(
        update_errors(old, &with(old, "nginx:1.27", "nginx:1.28")),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(
            old,
            &with(
                old,
                "  containers:",
                "  activeDeadlineSeconds: 60\n  containers:"
            )
        ),
        Vec::<String>::new()
    );
    let errs = update_errors(
        old,
        &with(
            old,
            "  containers:",
            "  restartPolicy: Never\n  containers:",
        ),
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
        ),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains("- \trestartPolicy: \"Always\",\n+ \trestartPolicy: \"Never\","),
        "{}",
        errs[0]
    );
    let errs = update_errors(
        old,
        &with(
            old,
            "    image: nginx:1.27\n",
            "    image: nginx:1.27\n  - {name: more, image: x}\n",
        ),
    );
    assert_eq!(
        errs,
        vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );
    let errs = update_errors(
        &with(old, "name: web,", "name: web, uid: u1,"),
        &with(old, "name: web,", "name: web2, uid: u2,"),
    );
    assert_eq!(
        errs,
        vec![
            "metadata.name: Invalid value: \"web2\": field is immutable",
            "metadata.uid: Invalid value: \"u2\": field is immutable"
        ]
    );
    let tolerations = with(
        old,
        "  containers:",
        "  tolerations: [{key: a, operator: Exists}]\n  containers:",
    );
    let more = with(
        old,
        "  containers:",
        "  tolerations: [{key: a, operator: Exists}, {key: b, operator: Exists}]\n  containers:",
    );
    assert_eq!(update_errors(&tolerations, &more), Vec::<String>::new());
    assert_eq!(
        update_errors(&more, &tolerations),
        vec![
            "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
        ]
    );
}

#[test]
fn apps_selectors_are_immutable() {
    let new = with(
        &with(
            DEPLOYMENT,
            "matchLabels: {app: web}",
            "matchLabels: {app: web2}",
        ),
        "labels: {app: web}",
        "labels: {app: web2}",
    );
    assert_eq!(
        update_errors(DEPLOYMENT, &new),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        ]
    );
    assert_eq!(
        update_errors(DEPLOYMENT, &with(DEPLOYMENT, "replicas: 2", "replicas: 5")),
        Vec::<String>::new()
    );
}

const STATEFUL_SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: postgres:16
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

#[test]
fn stateful_sets() {
    assert_eq!(create_errors(STATEFUL_SET), Vec::<String>::new());
    assert_eq!(
        update_errors(
            STATEFUL_SET,
            &with(STATEFUL_SET, "postgres:16", "postgres:17")
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(
            STATEFUL_SET,
            &with(STATEFUL_SET, "serviceName: db", "serviceName: db2")
        ),
        vec![
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
    let bad = with(
        &with(
            STATEFUL_SET,
            "name: db, namespace",
            "name: db.primary, namespace",
        ),
        "accessModes: [ReadWriteOnce]",
        "accessModes: []",
    );
    assert_eq!(
        create_errors(&bad),
        vec![
            "metadata.name: Invalid value: \"db.primary\": must not contain dots",
            "spec.volumeClaimTemplates[0].spec.accessModes: Required value: at least 1 access mode is required"
        ]
    );
}

#[test]
fn daemon_set_update_strategy() {
    let yaml = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 0}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: agent}]
"#;
    assert_eq!(
        create_errors(yaml),
        vec![
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
        ]
    );
}

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: perl}]
"#;

#[test]
fn jobs() {
    assert_eq!(create_errors(JOB), Vec::<String>::new());
    assert_eq!(
        create_errors(&with(JOB, "      restartPolicy: Never\n", "")),
        vec![
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
        ]
    );
    assert_eq!(
        create_errors(&with(
            JOB,
            "spec:\n  template",
            "spec:\n  parallelism: -1\n  backoffLimit: -2\n  template"
        )),
        vec![
            "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
            "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0"
        ]
    );
    assert_eq!(
        create_errors(&with(
            JOB,
            "spec:\n  template",
            "spec:\n  completionMode: Indexed\n  parallelism: 2\n  template"
        )),
        vec!["spec.completions: Required value: when completion mode is Indexed"]
    );
    let selected = with(
        JOB,
        "spec:\n  template:\n",
        "spec:\n  manualSelector: true\n  selector: {matchLabels: {job: pi}}\n  template:\n    metadata: {labels: {job: other}}\n",
    );
    assert_eq!(
        create_errors(&selected),
        vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"job\":\"other\"}: `selector` does not match template `labels`"
        ]
    );
    let errs = update_errors(JOB, &with(JOB, "image: perl", "image: perl:5"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec.template: Invalid value: {"),
        "{}",
        errs[0]
    );
    assert!(errs[0].ends_with(": field is immutable"), "{}", errs[0]);
    let suspended = with(
        JOB,
        "spec:\n  template",
        "spec:\n  suspend: true\n  template",
    );
    let relabelled = with(
        &suspended,
        "    spec:\n      restartPolicy",
        "    metadata: {labels: {queue: a}}\n    spec:\n      nodeSelector: {pool: b}\n      restartPolicy",
    );
    assert_eq!(update_errors(&suspended, &relabelled), Vec::<String>::new());
}

#[test]
fn cron_jobs() {
    let yaml = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: default}
spec:
  schedule: "61 * * * *"
  timeZone: Mars/Olympus Mons
  concurrencyPolicy: Sometimes
  jobTemplate:
    spec:
      selector: {matchLabels: {a: b}}
      template:
        spec:
          containers: [{name: b, image: b}]
"#;
    assert_eq!(
        create_errors(yaml),
        vec![
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            "spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated",
            "spec.timeZone: Invalid value: \"Mars/Olympus Mons\": unknown time zone Mars/Olympus Mons",
        ]
    );
    let long = with(yaml, "name: backup,", &format!("name: {},", "b".repeat(53)));
    assert!(create_errors(&long).contains(&"metadata.name: Invalid value: \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\": must be no more than 52 characters".to_string()));
}

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"#;

#[test]
fn services() {
    assert_eq!(create_errors(SERVICE), Vec::<String>::new());
    assert_eq!(
        create_errors(&with(
            SERVICE,
            "  ports: [{port: 80, targetPort: http}]\n",
            ""
        )),
        vec!["spec.ports: Required value"]
    );
    assert_eq!(
        create_errors(&with(SERVICE, "name: web,", "name: 1web,")),
        vec![
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
    assert_eq!(
        create_errors(&with(
            SERVICE,
            "[{port: 80, targetPort: http}]",
            "[{port: 80}, {port: 0, targetPort: not_a_name, name: b}, {port: 80, protocol: TCP, name: c, nodePort: 30080}]"
        )),
        vec![
            "spec.ports[0].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: \"not_a_name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            "spec.ports[2]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
        ]
    );
    assert_eq!(
        create_errors(&with(
            SERVICE,
            "  selector:",
            "  type: NodePort\n  clusterIP: 10.0.0.300\n  sessionAffinity: Sticky\n  selector:"
        )),
        vec![
            "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            "spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ]
    );
    assert_eq!(
        create_errors(
            &with(SERVICE, "  selector:", "  type: NodePort\n  selector:")
                .replace("targetPort: http}", "targetPort: http, nodePort: 80}")
        ),
        vec![
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        ]
    );
    let external = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default}\nspec: {type: ExternalName}\n";
    assert_eq!(
        create_errors(external),
        vec!["spec.externalName: Required value"]
    );
    let headless = with(
        SERVICE,
        "  ports: [{port: 80, targetPort: http}]\n",
        "  clusterIP: None\n",
    );
    assert_eq!(create_errors(&headless), Vec::<String>::new());
}

#[test]
fn service_cluster_ip_is_immutable_once_set() {
    let old = with(
        SERVICE,
        "  selector:",
        "  clusterIP: 10.96.0.10\n  selector:",
    );
    assert_eq!(update_errors(&old, &old), Vec::<String>::new());
    assert_eq!(
        update_errors(
            &old,
            &with(
                SERVICE,
                "  selector:",
                "  clusterIP: 10.96.0.11\n  selector:"
            )
        ),
        vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"
        ]
    );
    let external = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: ExternalName, externalName: db.example.com}\n";
    assert_eq!(update_errors(&old, external), Vec::<String>::new());
}

#[test]
fn config_maps_and_secrets() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: default}\ndata: {'bad key': x, good.yaml: y}\nbinaryData: {good.yaml: eQ==}\n";
    assert_eq!(
        create_errors(cm),
        vec![
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "data[good.yaml]: Invalid value: \"good.yaml\": duplicate of key present in binaryData",
        ]
    );
    let frozen = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: default}\nimmutable: true\ndata: {a: b}\n";
    assert_eq!(
        update_errors(
            frozen,
            &frozen.replace("immutable: true\ndata: {a: b}", "data: {a: c}")
        ),
        vec![
            "immutable: Forbidden: field is immutable when `immutable` is set",
            "data: Forbidden: field is immutable when `immutable` is set"
        ]
    );
    let tls = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n";
    assert_eq!(create_errors(tls), vec!["data[tls.key]: Required value"]);
    let token = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\ntype: kubernetes.io/service-account-token\n";
    assert_eq!(
        create_errors(token),
        vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    );
    let docker = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\ntype: kubernetes.io/dockerconfigjson\nstringData: {.dockerconfigjson: '{}'}\n";
    assert_eq!(create_errors(docker), Vec::<String>::new());
    let opaque = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\nstringData: {a: b}\n";
    assert_eq!(
        update_errors(
            opaque,
            &opaque.replace("stringData", "type: example.com/custom\nstringData")
        ),
        vec!["type: Invalid value: \"example.com/custom\": field is immutable"]
    );
}

#[test]
fn metadata_rules() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {'a/b/c': x, ok: '-bad-'}\n  annotations: {'Example.com/Key': ok}\n  finalizers: [cleanup]\n  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: r}]\n";
    assert_eq!(
        create_errors(cm),
        vec![
            "metadata.namespace: Required value",
            "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
            "metadata.labels: Invalid value: \"-bad-\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty",
            "metadata.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified",
        ]
    );
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team.a, namespace: x}\n";
    assert_eq!(
        create_errors(ns),
        vec![
            "metadata.name: Invalid value: \"team.a\": must not contain dots",
            "metadata.namespace: Forbidden: not allowed on this type"
        ]
    );
    let generated =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: cfg-, namespace: default}\n";
    assert_eq!(create_errors(generated), Vec::<String>::new());
}

#[test]
fn rbac() {
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: 'system:reader', namespace: default}\nrules:\n- {apiGroups: [''], resources: [pods], verbs: []}\n- {nonResourceURLs: [/healthz], verbs: [get]}\n";
    assert_eq!(
        create_errors(role),
        vec![
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
        ]
    );
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\nsubjects:\n- {kind: ServiceAccount, name: sa}\n- {kind: Robot, name: x}\n";
    assert_eq!(
        create_errors(binding),
        vec![
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "subjects[0].namespace: Required value",
            "subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
        ]
    );
    let good = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: default}\nroleRef: {kind: ClusterRole, name: view}\nsubjects: [{kind: User, name: jane}]\n";
    assert_eq!(create_errors(good), Vec::<String>::new());
    assert_eq!(
        update_errors(good, &good.replace("name: view", "name: edit")),
        vec![
            "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
        ]
    );
}

#[test]
fn autoscalers_leases_priority_classes_events() {
    let hpa = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h, namespace: default}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment}\n  minReplicas: 5\n  maxReplicas: 2\n  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization}}}]\n";
    assert_eq!(
        create_errors(hpa),
        vec![
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
            "spec.scaleTargetRef.name: Required value",
            "spec.metrics[0].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization",
        ]
    );
    let lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: l, namespace: default}\nspec: {leaseDurationSeconds: 0}\n";
    assert_eq!(
        create_errors(lease),
        vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
    let pc = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: top}\nvalue: 2000000000\npreemptionPolicy: Always\n";
    assert_eq!(
        create_errors(pc),
        vec![
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000",
            "preemptionPolicy: Unsupported value: \"Always\": supported values: \"PreemptLowerPriority\", \"Never\"",
        ]
    );
    let event = "apiVersion: v1\nkind: Event\nmetadata: {name: e, namespace: default}\ninvolvedObject: {kind: Pod, name: p, namespace: other}\n";
    assert_eq!(
        create_errors(event),
        vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    );
    let orphan = "apiVersion: v1\nkind: Event\nmetadata: {name: e, namespace: default}\n";
    assert_eq!(
        create_errors(orphan),
        vec!["involvedObject: Required value"]
    );
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec:\n  podCIDR: 10.244.0.0/33\n  taints: [{key: k, effect: NoSchedule}, {key: k, effect: NoSchedule}, {key: j, effect: Never}]\n";
    assert_eq!(
        create_errors(node),
        vec![
            "spec.taints[1]: Duplicate value: core.Taint{Key:\"k\", Value:\"\", Effect:\"NoSchedule\"}: taints must be unique by key and effect pair",
            "spec.taints[2].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            "spec.podCIDR: Invalid value: \"10.244.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ]
    );
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: default}\naddressType: IPv4\nendpoints: [{addresses: ['127.0.0.1']}, {addresses: []}]\nports: [{port: 80, protocol: QUIC}]\n";
    assert_eq!(
        create_errors(slice),
        vec![
            "endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "endpoints[1].addresses: Required value: must contain at least 1 address",
            "ports[0].protocol: Unsupported value: \"QUIC\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ]
    );
}

#[test]
fn status_updates_keep_identity_and_counts() {
    let (info, old) = object(DEPLOYMENT);
    let json = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "status": {"replicas": -1, "readyReplicas": 1}
    });
    let new = codec::from_json(&info.descriptor(), &json, FieldValidation::Strict)
        .unwrap()
        .message;
    let errs: Vec<String> = validation::validate_status_update(info, &new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        vec!["status.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
}

/// Regression guard for the corpus: every real-world manifest passes defaults + validation,
/// both as a create and as an update to itself, and defaulting is idempotent.
#[test]
fn every_corpus_manifest_is_valid_after_defaults() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut documents = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, doc) in codec::yaml_documents(&text)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            documents += 1;
            let name = format!("{}#{i}", file.file_name().unwrap().to_string_lossy());
            let info = kinds::by_kind(
                doc["apiVersion"].as_str().unwrap(),
                doc["kind"].as_str().unwrap(),
            )
            .unwrap();
            let mut doc = doc;
            // The gateway fills the namespace from the request path.
            if info.namespaced && doc["metadata"].get("namespace").is_none() {
                doc["metadata"]["namespace"] = "default".into();
            }
            let mut obj = codec::from_json(&info.descriptor(), &doc, FieldValidation::Strict)
                .unwrap()
                .message;
            defaults::apply_defaults(info, &mut obj);
            let mut again = obj.clone();
            defaults::apply_defaults(info, &mut again);
            if again != obj {
                failures.push(format!("{name}: defaulting is not idempotent"));
            }
            for e in validation::validate(info, &obj, None) {
                failures.push(format!("{name}: {e}"));
            }
            for e in validation::validate(info, &obj, Some(&obj)) {
                failures.push(format!("{name} (update): {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems in {documents} documents:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(documents >= 40);
}

#[test]
fn every_kind_validates_an_empty_object_without_panicking() {
    for info in kinds::KINDS {
        let mut obj = DynamicMessage::new(info.descriptor());
        defaults::apply_defaults(info, &mut obj);
        let errs = validation::validate(info, &obj, None);
        assert!(
            errs.iter().any(|e| e.field == "metadata.name"),
            "{}: {errs:?}",
            info.kind
        );
        validation::validate(info, &obj, Some(&obj));
        validation::validate_status_update(info, &obj, &obj);
    }
}
