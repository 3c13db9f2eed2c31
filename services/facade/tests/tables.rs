//! Server-side printing: the Tables `kubectl get` prints, cell for cell as kube-apiserver's
//! printers produce them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use navarch_api::kinds::{KINDS, KindInfo};
use navarch_facade::tables::{
    IncludeObject, SCALE, TableFormat, TableOptions, TableRequest, TableVersion, WatchTables,
    column_definitions, is_table_request, table, table_for_object, table_request,
};
use serde_json::{Value, json};

/// 2024-06-01T12:00:00Z: the clock every test prints at.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_717_243_200)
}

fn opts() -> TableOptions {
    TableOptions {
        now: now(),
        ..TableOptions::default()
    }
}

fn kind(group: &str, kind: &str) -> &'static KindInfo {
    KINDS
        .iter()
        .find(|k| k.group == group && k.kind == kind)
        .unwrap_or_else(|| panic!("no kind {group}/{kind}"))
}

/// The cells of the one row `obj` prints as.
fn cells(group: &str, k: &str, obj: Value) -> Value {
    let t = table(kind(group, k), &[obj], json!({}), &opts());
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    rows[0]["cells"].clone()
}

/// Some of the cells.
fn slice(cells: Value, range: impl std::slice::SliceIndex<[Value], Output = [Value]>) -> Value {
    Value::Array(cells.as_array().unwrap()[range].to_vec())
}

/// The column names, `*` marking priority 1 (wide) columns.
fn column_names(group: &str, k: &str) -> Vec<String> {
    column_definitions(kind(group, k))
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap();
            match c["priority"].as_i64().unwrap() {
                0 => name.to_string(),
                _ => format!("{name}*"),
            }
        })
        .collect()
}

fn meta(name: &str, created: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": "u-1", "resourceVersion": "41",
           "creationTimestamp": created})
}

fn running(restarts: i64, last_finished: Option<&str>) -> Value {
    let mut status = json!({
        "name": "app", "ready": true, "started": true, "restartCount": restarts,
        "image": "nginx:1.25", "imageID": "", "containerID": "containerd://1",
        "state": {"running": {"startedAt": "2024-06-01T11:50:01Z"}},
        "lastState": {},
    });
    if let Some(finished) = last_finished {
        status["lastState"] = json!({"terminated": {
            "exitCode": 137, "reason": "OOMKilled",
            "startedAt": "2024-06-01T11:00:00Z", "finishedAt": finished,
        }});
    }
    status
}

#[test]
fn running_pod_with_restarts() {
    let mut sidecar = running(3, Some("2024-06-01T11:50:00Z"));
    sidecar["name"] = json!("sidecar");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta("web-7d4b9c-x2x8q", "2024-06-01T09:00:00Z"),
        "spec": {
            "nodeName": "worker-1",
            "containers": [{"name": "app", "image": "nginx:1.25"},
                           {"name": "sidecar", "image": "envoy:1.30"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "podIP": "10.244.1.7",
            "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
            "containerStatuses": [running(1, Some("2024-06-01T10:00:00Z")), sidecar],
        },
    });
    assert_eq!(
        cells("", "Pod", pod),
        json!([
            "web-7d4b9c-x2x8q",
            "2/2",
            "Running",
            "4 (10m ago)",
            "3h",
            "10.244.1.7",
            "worker-1",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn crash_looping_pod() {
    let pod = json!({
        "metadata": meta("api-0", "2024-05-30T09:00:00Z"),
        "spec": {"nodeName": "worker-2", "containers": [{"name": "api", "image": "api:2"}]},
        "status": {
            "phase": "Running",
            "podIPs": [{"ip": "10.244.2.9"}],
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": "api", "ready": false, "started": false, "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off 5m0s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                             "finishedAt": "2024-06-01T11:59:15Z"}},
            }],
        },
    });
    let c = cells("", "Pod", pod);
    assert_eq!(
        slice(c.clone(), ..5),
        json!(["api-0", "0/1", "CrashLoopBackOff", "7 (45s ago)", "2d3h"])
    );
}

#[test]
fn pending_pods() {
    let unscheduled = json!({
        "metadata": meta("batch-x", "2024-06-01T11:59:00Z"),
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]},
    });
    assert_eq!(
        cells("", "Pod", unscheduled),
        json!([
            "batch-x", "0/1", "Pending", "0", "60s", "<none>", "<none>", "<none>", "<none>"
        ])
    );

    let pulling = json!({
        "metadata": meta("bad-image", "2024-06-01T11:58:00Z"),
        "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "nope:1"}]},
        "status": {"phase": "Pending", "containerStatuses": [{
            "name": "c", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull"}}}]},
    });
    assert_eq!(
        slice(cells("", "Pod", pulling), ..5),
        json!(["bad-image", "0/1", "ErrImagePull", "0", "2m"])
    );

    let gated = json!({
        "metadata": meta("gated", "2024-06-01T11:00:00Z"),
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]},
    });
    assert_eq!(cells("", "Pod", gated)[2], "SchedulingGated");
}

#[test]
fn terminating_pods() {
    let mut pod = json!({
        "metadata": meta("old", "2024-06-01T10:00:00Z"),
        "spec": {"nodeName": "worker-1", "containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": "Running", "containerStatuses": [running(0, None)]},
    });
    pod["metadata"]["deletionTimestamp"] = json!("2024-06-01T12:00:30Z");
    assert_eq!(
        slice(cells("", "Pod", pod.clone()), ..4),
        json!(["old", "1/1", "Terminating", "0"])
    );

    pod["status"]["reason"] = json!("NodeLost");
    assert_eq!(cells("", "Pod", pod.clone())[2], "Unknown");

    // A finished pod being deleted keeps its terminal status.
    pod["status"] = json!({"phase": "Succeeded", "containerStatuses": [{
        "name": "app", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
    assert_eq!(cells("", "Pod", pod)[2], "Completed");
}

#[test]
fn init_container_pods() {
    let base = |init_statuses: Value, statuses: Value, conditions: Value| {
        json!({
            "metadata": meta("init-demo", "2024-06-01T11:57:00Z"),
            "spec": {
                "initContainers": [{"name": "migrate", "image": "m"}, {"name": "warm", "image": "w"}],
                "containers": [{"name": "app", "image": "a"}],
            },
            "status": {"phase": "Pending", "conditions": conditions,
                       "initContainerStatuses": init_statuses, "containerStatuses": statuses},
        })
    };
    let done = json!({"name": "migrate", "ready": true, "restartCount": 0,
                      "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let app_waiting = json!([{"name": "app", "ready": false, "restartCount": 0,
                              "state": {"waiting": {"reason": "PodInitializing"}}}]);

    // Second init container running: Init:1/2.
    let second_running = json!({"name": "warm", "ready": false, "restartCount": 0,
                                "state": {"running": {"startedAt": "2024-06-01T11:58:00Z"}}});
    let pod = base(
        json!([done, second_running]),
        app_waiting.clone(),
        json!([]),
    );
    assert_eq!(
        slice(cells("", "Pod", pod), ..5),
        json!(["init-demo", "0/1", "Init:1/2", "0", "3m"])
    );

    // First init container not started yet: Init:0/2.
    let pending = json!({"name": "migrate", "ready": false, "restartCount": 0,
                         "state": {"waiting": {"reason": "PodInitializing"}}});
    let pod = base(json!([pending]), app_waiting.clone(), json!([]));
    assert_eq!(cells("", "Pod", pod)[2], "Init:0/2");

    // A crash-looping init container; its restarts count while initializing.
    let looping = json!({"name": "warm", "ready": false, "restartCount": 4,
                         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                         "lastState": {"terminated": {"exitCode": 1,
                                                      "finishedAt": "2024-06-01T11:59:00Z"}}});
    let pod = base(json!([done, looping]), app_waiting.clone(), json!([]));
    assert_eq!(
        slice(cells("", "Pod", pod), ..4),
        json!(["init-demo", "0/1", "Init:CrashLoopBackOff", "4 (60s ago)"])
    );

    // Failed init container with and without a reason.
    let failed = json!({"name": "warm", "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 2, "reason": "Error"}}});
    let pod = base(json!([done, failed]), app_waiting.clone(), json!([]));
    assert_eq!(cells("", "Pod", pod)[2], "Init:Error");
    let killed = json!({"name": "warm", "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 137, "signal": 9}}});
    let pod = base(json!([done, killed]), app_waiting.clone(), json!([]));
    assert_eq!(cells("", "Pod", pod)[2], "Init:Signal:9");

    // All init containers done, the app container still being created.
    let warm_done = json!({"name": "warm", "ready": true, "restartCount": 0,
                           "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let pod = base(
        json!([done, warm_done]),
        app_waiting,
        json!([{"type": "Initialized", "status": "True"}]),
    );
    assert_eq!(cells("", "Pod", pod)[2], "PodInitializing");
}

#[test]
fn sidecar_containers_count_as_containers() {
    let pod = json!({
        "metadata": meta("with-sidecar", "2024-06-01T11:00:00Z"),
        "spec": {
            "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "a"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"},
                           {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{
                "name": "proxy", "ready": true, "started": true, "restartCount": 2,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-06-01T11:30:00Z"}},
            }],
            "containerStatuses": [running(0, None)],
        },
    });
    assert_eq!(
        slice(cells("", "Pod", pod), ..4),
        json!(["with-sidecar", "2/2", "Running", "2 (30m ago)"])
    );
}

#[test]
fn completed_pod_has_a_completed_row_condition() {
    let pod = json!({
        "metadata": meta("job-abc", "2024-06-01T11:00:00Z"),
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "c", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
    });
    let t = table(kind("", "Pod"), &[pod], json!({}), &opts());
    let row = &t["rows"][0];
    assert_eq!(
        slice(row["cells"].clone(), ..4),
        json!(["job-abc", "0/1", "Completed", "0"])
    );
    assert_eq!(
        row["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                "message": "The pod has completed successfully."}])
    );
}

#[test]
fn deployment_mid_rollout() {
    let deploy = json!({
        "metadata": meta("web", "2024-05-25T12:00:00Z"),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"},
                {"name": "exporter", "image": "nginx-exporter:1"}]}},
        },
        "status": {"replicas": 4, "updatedReplicas": 1, "readyReplicas": 2,
                   "availableReplicas": 2, "unavailableReplicas": 2},
    });
    assert_eq!(
        cells("apps", "Deployment", deploy),
        json!([
            "web",
            "2/3",
            1,
            2,
            "7d",
            "nginx,exporter",
            "nginx:1.27,nginx-exporter:1",
            "app=web"
        ])
    );
}

#[test]
fn workload_tables() {
    let template = json!({"spec": {"containers": [{"name": "c", "image": "img:1"}]}});
    let rs = json!({
        "metadata": meta("web-7d4b9c", "2024-06-01T11:00:00Z"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}},
                 "template": template},
        "status": {"replicas": 3, "readyReplicas": 1},
    });
    assert_eq!(
        cells("apps", "ReplicaSet", rs),
        json!([
            "web-7d4b9c",
            3,
            3,
            1,
            "60m",
            "c",
            "img:1",
            "app=web,pod-template-hash=7d4b9c"
        ])
    );

    let ds = json!({
        "metadata": meta("node-exporter", "2024-06-01T04:00:00Z"),
        "spec": {"selector": {"matchLabels": {"app": "ne"}},
                 "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                       "containers": [{"name": "ne", "image": "ne:1"}]}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 3, "numberAvailable": 2},
    });
    assert_eq!(
        cells("apps", "DaemonSet", ds),
        json!([
            "node-exporter",
            3,
            3,
            2,
            3,
            2,
            "kubernetes.io/os=linux",
            "8h",
            "ne",
            "ne:1",
            "app=ne"
        ])
    );

    let sts = json!({
        "metadata": meta("db", "2024-06-01T11:59:58Z"),
        "spec": {"replicas": 3, "template": template},
        "status": {"replicas": 1, "readyReplicas": 1},
    });
    assert_eq!(
        cells("apps", "StatefulSet", sts),
        json!(["db", "1/3", "2s", "c", "img:1"])
    );

    let cj = json!({
        "metadata": meta("nightly", "2024-05-01T12:00:00Z"),
        "spec": {"schedule": "0 3 * * *", "suspend": false,
                 "jobTemplate": {"spec": {"template": template}}},
        "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2024-06-01T03:00:00Z"},
    });
    assert_eq!(
        cells("batch", "CronJob", cj),
        json!([
            "nightly",
            "0 3 * * *",
            "<none>",
            "False",
            1,
            "9h",
            "31d",
            "c",
            "img:1",
            "<none>"
        ])
    );
}

#[test]
fn jobs() {
    let job = |spec: Value, status: Value| {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-9"}});
        spec["template"] = json!({"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}});
        json!({"metadata": meta("pi", "2024-06-01T11:00:00Z"), "spec": spec, "status": status})
    };
    let completed = job(
        json!({"completions": 1, "parallelism": 1}),
        json!({"succeeded": 1, "startTime": "2024-06-01T11:00:00Z",
               "completionTime": "2024-06-01T11:00:42Z",
               "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                              {"type": "Complete", "status": "True"}]}),
    );
    assert_eq!(
        cells("batch", "Job", completed),
        json!([
            "pi",
            "Complete",
            "1/1",
            "42s",
            "60m",
            "pi",
            "perl:5.34",
            "batch.kubernetes.io/controller-uid=u-9"
        ])
    );

    let running = job(
        json!({"completions": 5, "parallelism": 2}),
        json!({"succeeded": 2, "active": 2, "startTime": "2024-06-01T11:56:40Z"}),
    );
    assert_eq!(
        slice(cells("batch", "Job", running), 1..4),
        json!(["Running", "2/5", "3m20s"])
    );

    let work_queue = job(json!({"parallelism": 3}), json!({}));
    assert_eq!(
        slice(cells("batch", "Job", work_queue), 1..4),
        json!(["Running", "0/1 of 3", ""])
    );

    let failed = job(
        json!({"completions": 1}),
        json!({"failed": 6, "startTime": "2024-06-01T11:00:00Z",
               "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    );
    assert_eq!(
        slice(cells("batch", "Job", failed), 1..4),
        json!(["Failed", "0/1", "60m"])
    );

    let suspended = job(
        json!({"completions": 1, "suspend": true}),
        json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
    );
    assert_eq!(cells("batch", "Job", suspended)[1], "Suspended");
}

#[test]
fn services() {
    let svc = |spec: Value, status: Value| json!({"metadata": meta("web", "2024-06-01T11:55:00Z"), "spec": spec, "status": status});
    let node_port = svc(
        json!({"type": "NodePort", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
               "selector": {"app": "web", "tier": "front"},
               "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                         {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"}]}),
        json!({}),
    );
    assert_eq!(
        cells("", "Service", node_port),
        json!([
            "web",
            "NodePort",
            "10.96.12.7",
            "<none>",
            "80:30080/TCP,53:30053/UDP",
            "5m",
            "app=web,tier=front"
        ])
    );

    let headless = svc(
        json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
        json!({}),
    );
    assert_eq!(
        slice(cells("", "Service", headless), 1..5),
        json!(["ClusterIP", "None", "<none>", "<none>"])
    );

    let pending_lb = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"],
               "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
        json!({"loadBalancer": {}}),
    );
    assert_eq!(
        slice(cells("", "Service", pending_lb), 1..5),
        json!(["LoadBalancer", "10.96.0.20", "<pending>", "443:31443/TCP"])
    );

    let lb = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"], "externalIPs": ["192.0.2.9"],
               "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "lb.example.com"}]}}),
    );
    assert_eq!(
        cells("", "Service", lb)[3],
        "203.0.113.5,lb.example.com,192.0.2.9"
    );

    let external_name = svc(
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
        json!({}),
    );
    assert_eq!(
        slice(cells("", "Service", external_name), 1..6),
        json!(["ExternalName", "<none>", "db.example.com", "<none>", "5m"])
    );
}

#[test]
fn nodes() {
    let node = |name: &str, labels: Value, unschedulable: bool, ready: Option<&str>| {
        let conditions = match ready {
            Some(s) => json!([{"type": "MemoryPressure", "status": "False"},
                              {"type": "Ready", "status": s}]),
            None => json!([]),
        };
        json!({
            "metadata": {"name": name, "labels": labels, "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "conditions": conditions,
                "addresses": [{"type": "Hostname", "address": name},
                              {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64",
                             "containerRuntimeVersion": "containerd://1.7.13"},
            },
        })
    };
    let cp = node(
        "cp-1",
        json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "cp-1"}),
        false,
        Some("True"),
    );
    assert_eq!(
        cells("", "Node", cp),
        json!([
            "cp-1",
            "Ready",
            "control-plane",
            "61d",
            "v1.33.1",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-18-amd64",
            "containerd://1.7.13"
        ])
    );

    let cordoned = node(
        "worker-1",
        json!({"kubernetes.io/os": "linux"}),
        true,
        Some("True"),
    );
    assert_eq!(
        slice(cells("", "Node", cordoned), ..3),
        json!(["worker-1", "Ready,SchedulingDisabled", "<none>"])
    );

    let not_ready = node(
        "worker-2",
        json!({"node-role.kubernetes.io/worker": "", "kubernetes.io/role": "gpu"}),
        false,
        Some("Unknown"),
    );
    assert_eq!(
        slice(cells("", "Node", not_ready), 1..3),
        json!(["NotReady", "gpu,worker"])
    );

    let mut new_node = node("worker-3", json!({}), true, None);
    new_node["status"]["nodeInfo"] = json!({});
    assert_eq!(
        slice(cells("", "Node", new_node), 1..),
        json!([
            "Unknown,SchedulingDisabled",
            "<none>",
            "61d",
            "",
            "192.168.1.10",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
}

#[test]
fn config_and_identity_tables() {
    let cm = json!({"metadata": meta("settings", "2024-06-01T11:59:15Z"),
                    "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(cells("", "ConfigMap", cm), json!(["settings", 3, "45s"]));

    let secret = json!({"metadata": meta("tls", "2024-06-01T11:00:00Z"),
                        "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(
        cells("", "Secret", secret),
        json!(["tls", "kubernetes.io/tls", 2, "60m"])
    );

    let sa = json!({"metadata": meta("default", "2024-06-01T11:00:00Z")});
    assert_eq!(
        cells("", "ServiceAccount", sa),
        json!(["default", 0, "60m"])
    );

    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2019-06-03T12:00:00Z"},
                    "status": {"phase": "Active"}});
    assert_eq!(
        cells("", "Namespace", ns),
        json!(["kube-system", "Active", "5y"])
    );

    let lease = json!({"metadata": meta("kube-scheduler", "2024-06-01T11:00:00Z"),
                       "spec": {"holderIdentity": "cp-1_4f1c"}});
    assert_eq!(
        cells("coordination.k8s.io", "Lease", lease),
        json!(["kube-scheduler", "cp-1_4f1c", "60m"])
    );

    let pc = json!({"metadata": {"name": "system-cluster-critical", "creationTimestamp": "2024-06-01T11:00:00Z"},
                    "value": 2000000000, "globalDefault": false,
                    "preemptionPolicy": "PreemptLowerPriority"});
    assert_eq!(
        cells("scheduling.k8s.io", "PriorityClass", pc),
        json!([
            "system-cluster-critical",
            2000000000,
            false,
            "60m",
            "PreemptLowerPriority"
        ])
    );

    let rb = json!({
        "metadata": meta("read-pods", "2024-06-01T11:00:00Z"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [
            {"kind": "User", "name": "jane"}, {"kind": "User", "name": "joe"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
        ],
    });
    assert_eq!(
        cells("rbac.authorization.k8s.io", "RoleBinding", rb),
        json!([
            "read-pods",
            "Role/pod-reader",
            "60m",
            "jane, joe",
            "devs",
            "tools/ci"
        ])
    );

    let crb = json!({
        "metadata": {"name": "cluster-admin", "creationTimestamp": "2024-06-01T11:00:00Z"},
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "system:masters"}],
    });
    assert_eq!(
        cells("rbac.authorization.k8s.io", "ClusterRoleBinding", crb),
        json!([
            "cluster-admin",
            "ClusterRole/cluster-admin",
            "60m",
            "",
            "system:masters",
            ""
        ])
    );
}

#[test]
fn roles_get_the_default_table() {
    assert_eq!(
        column_names("rbac.authorization.k8s.io", "Role"),
        ["Name", "Created At"]
    );
    assert_eq!(
        column_names("rbac.authorization.k8s.io", "ClusterRole"),
        ["Name", "Created At"]
    );
    assert_eq!(column_names("", "LimitRange"), ["Name", "Created At"]);
    let role = json!({"metadata": meta("pod-reader", "2024-05-31T22:30:00.5+02:00"), "rules": []});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "Role", role),
        json!(["pod-reader", "2024-05-31T20:30:00Z"])
    );
    let defs = column_definitions(kind("", "LimitRange"));
    assert_eq!(defs[1]["type"], "date");
}

#[test]
fn network_and_storage_tables() {
    let ep = json!({
        "metadata": meta("web", "2024-06-01T11:00:00Z"),
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
             "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]},
            {"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 8080}]},
        ],
    });
    assert_eq!(
        cells("", "Endpoints", ep),
        json!([
            "web",
            "10.0.0.1:8080,10.0.0.2:8080,10.0.0.1:9090 + 2 more...",
            "60m"
        ])
    );
    let empty = json!({"metadata": meta("none", "2024-06-01T11:00:00Z")});
    assert_eq!(cells("", "Endpoints", empty)[1], "<none>");

    let endpoint_slice = json!({
        "metadata": meta("web-abc12", "2024-06-01T11:00:00Z"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "grpc"}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
    });
    assert_eq!(
        cells("discovery.k8s.io", "EndpointSlice", endpoint_slice),
        json!(["web-abc12", "IPv4", "8080,grpc", "10.0.0.1,10.0.0.2", "60m"])
    );
    let bare = json!({"metadata": meta("bare", "2024-06-01T11:00:00Z"), "addressType": "IPv6"});
    assert_eq!(
        slice(cells("discovery.k8s.io", "EndpointSlice", bare), 2..4),
        json!(["<unset>", "<unset>"])
    );

    let bound = json!({
        "metadata": meta("data-db-0", "2024-06-01T11:00:00Z"),
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                 "volumeName": "pvc-123", "volumeMode": "Filesystem",
                 "resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                   "capacity": {"storage": "10Gi"}},
    });
    assert_eq!(
        cells("", "PersistentVolumeClaim", bound),
        json!([
            "data-db-0",
            "Bound",
            "pvc-123",
            "10Gi",
            "RWO,ROX",
            "standard",
            "<unset>",
            "60m",
            "Filesystem"
        ])
    );
    let pending = json!({
        "metadata": meta("claim", "2024-06-01T11:00:00Z"),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"},
    });
    assert_eq!(
        slice(cells("", "PersistentVolumeClaim", pending), 1..),
        json!(["Pending", "", "", "", "", "<unset>", "60m", "<unset>"])
    );

    let pdb = json!({"metadata": meta("web", "2024-06-01T11:00:00Z"),
                     "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        cells("policy", "PodDisruptionBudget", pdb),
        json!(["web", "50%", "N/A", 1, "60m"])
    );
}

#[test]
fn autoscaling_quota_and_revisions() {
    let hpa = json!({
        "metadata": meta("web", "2024-06-01T11:00:00Z"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory",
                    "target": {"type": "AverageValue", "averageValue": "512Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "rps"},
                    "target": {"type": "AverageValue", "averageValue": "100"}}},
            ],
        },
        "status": {
            "currentReplicas": 3, "desiredReplicas": 3,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": 42, "averageValue": "210m"}}}],
        },
    });
    assert_eq!(
        cells("autoscaling", "HorizontalPodAutoscaler", hpa),
        json!([
            "web",
            "Deployment/web",
            "cpu: 42%/80%, memory: <unknown>/512Mi + 1 more...",
            "2",
            10,
            3,
            "60m"
        ])
    );

    let quota = json!({
        "metadata": meta("compute", "2024-06-01T11:00:00Z"),
        "status": {"hard": {"requests.cpu": "4", "limits.memory": "8Gi", "pods": "10",
                            "limits.cpu": "8"},
                   "used": {"requests.cpu": "500m", "limits.memory": "1Gi", "pods": "3"}},
    });
    assert_eq!(
        cells("", "ResourceQuota", quota),
        json!([
            "compute",
            "pods: 3/10, requests.cpu: 500m/4",
            "limits.cpu: 0/8, limits.memory: 1Gi/8Gi",
            "60m"
        ])
    );

    let rev = json!({
        "metadata": {"name": "ne-5d8f", "namespace": "kube-system",
                     "creationTimestamp": "2024-06-01T11:00:00Z",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                          "name": "node-exporter", "uid": "u", "controller": true}]},
        "revision": 2,
    });
    assert_eq!(
        cells("apps", "ControllerRevision", rev),
        json!(["ne-5d8f", "daemonset.apps/node-exporter", 2, "60m"])
    );
}

#[test]
fn scale_subresource() {
    let scale = json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                       "metadata": meta("web", "2024-06-01T11:00:00Z"),
                       "spec": {"replicas": 5}, "status": {"replicas": 3, "selector": "app=web"}});
    let t = table_for_object(&SCALE, &scale, &opts());
    assert_eq!(t["rows"][0]["cells"], json!(["web", 5, 3, "60m"]));
    assert_eq!(t["columnDefinitions"][0]["format"], "");
    assert_eq!(t["columnDefinitions"][1]["name"], "Desired");
}

#[test]
fn events() {
    assert_eq!(
        column_names("", "Event"),
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject*",
            "Source*",
            "Message",
            "First Seen*",
            "Count*",
            "Name*"
        ]
    );
    let ev = json!({
        "metadata": meta("web-1.17d", "2024-06-01T11:00:00Z"),
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default",
                           "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "type": "Warning",
        "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "worker-1"},
        "firstTimestamp": "2024-06-01T11:00:00Z", "lastTimestamp": "2024-06-01T11:59:30Z",
        "count": 12,
    });
    assert_eq!(
        cells("", "Event", ev),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web-1",
            "spec.containers{app}",
            "kubelet, worker-1",
            "Back-off restarting failed container",
            "60m",
            12,
            "web-1.17d"
        ])
    );

    // An events.k8s.io-style event: eventTime and series, no count or timestamps.
    let new_style = json!({
        "metadata": meta("sched.1", "2024-06-01T11:00:00Z"),
        "involvedObject": {"kind": "Pod", "name": "batch-x"},
        "reason": "FailedScheduling", "type": "Warning", "message": "0/3 nodes are available",
        "eventTime": "2024-06-01T11:50:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2024-06-01T11:58:00.000000Z"},
        "reportingComponent": "default-scheduler", "reportingInstance": "",
        "source": {},
    });
    let c = cells("", "Event", new_style);
    assert_eq!(c[0], "2m");
    assert_eq!(c[5], "default-scheduler");
    assert_eq!(c[7], "10m");
    assert_eq!(c[8], 4);
}

#[test]
fn column_definitions_include_wide_columns() {
    assert_eq!(
        column_names("", "Pod"),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP*",
            "Node*",
            "Nominated Node*",
            "Readiness Gates*"
        ]
    );
    assert_eq!(
        column_names("apps", "Deployment"),
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers*",
            "Images*",
            "Selector*"
        ]
    );
    assert_eq!(
        column_names("apps", "ReplicaSet"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Age",
            "Containers*",
            "Images*",
            "Selector*"
        ]
    );
    assert_eq!(
        column_names("apps", "DaemonSet"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
            "Containers*",
            "Images*",
            "Selector*"
        ]
    );
    assert_eq!(
        column_names("apps", "StatefulSet"),
        ["Name", "Ready", "Age", "Containers*", "Images*"]
    );
    assert_eq!(
        column_names("batch", "Job"),
        [
            "Name",
            "Status",
            "Completions",
            "Duration",
            "Age",
            "Containers*",
            "Images*",
            "Selector*"
        ]
    );
    assert_eq!(
        column_names("batch", "CronJob"),
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age",
            "Containers*",
            "Images*",
            "Selector*"
        ]
    );
    assert_eq!(
        column_names("", "Service"),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector*"
        ]
    );
    assert_eq!(
        column_names("", "Node"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP*",
            "External-IP*",
            "OS-Image*",
            "Kernel-Version*",
            "Container-Runtime*"
        ]
    );
    assert_eq!(
        column_names("", "PersistentVolumeClaim"),
        [
            "Name",
            "Status",
            "Volume",
            "Capacity",
            "Access Modes",
            "StorageClass",
            "VolumeAttributesClass",
            "Age",
            "VolumeMode*"
        ]
    );
    assert_eq!(
        column_names("rbac.authorization.k8s.io", "RoleBinding"),
        [
            "Name",
            "Role",
            "Age",
            "Users*",
            "Groups*",
            "ServiceAccounts*"
        ]
    );
    assert_eq!(
        column_names("autoscaling", "HorizontalPodAutoscaler"),
        [
            "Name",
            "Reference",
            "Targets",
            "MinPods",
            "MaxPods",
            "Replicas",
            "Age"
        ]
    );
    assert_eq!(
        column_names("scheduling.k8s.io", "PriorityClass"),
        ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    );

    // Every kind's table has as many cells per row as columns, starting with its name.
    for k in KINDS {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-06-01T11:00:00Z"}});
        let t = table(k, &[obj], json!({}), &opts());
        let defs = t["columnDefinitions"].as_array().unwrap();
        let row = t["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(defs.len(), row.len(), "{}", k.kind);
        let name_col = defs.iter().position(|d| d["format"] == "name").unwrap();
        assert_eq!(row[name_col], "x", "{}", k.kind);
        if k.kind != "Event" {
            assert_eq!(name_col, 0, "{}", k.kind);
        }
        for d in defs {
            let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["name", "type", "format", "description", "priority"]);
        }
    }
}

#[test]
fn table_envelope_and_include_object() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": meta("p", "2024-06-01T11:00:00Z"),
                     "spec": {"containers": [{"name": "c", "image": "x"}]},
                     "status": {"phase": "Pending"}});
    let list_meta = json!({"resourceVersion": "1234", "continue": "tok", "remainingItemCount": 7});
    let t = table(
        kind("", "Pod"),
        std::slice::from_ref(&pod),
        list_meta,
        &opts(),
    );
    let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "kind",
            "apiVersion",
            "metadata",
            "columnDefinitions",
            "rows"
        ]
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "1234", "continue": "tok", "remainingItemCount": 7})
    );
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
               "metadata": pod["metadata"]})
    );

    let full = TableOptions {
        include_object: IncludeObject::Object,
        ..opts()
    };
    let mut bare = pod.clone();
    bare.as_object_mut().unwrap().remove("apiVersion");
    bare.as_object_mut().unwrap().remove("kind");
    let t = table(kind("", "Pod"), &[bare], json!({}), &full);
    assert_eq!(t["rows"][0]["object"], pod);
    assert_eq!(t["metadata"], json!({}));

    let none = TableOptions {
        include_object: IncludeObject::None,
        ..opts()
    };
    let t = table(
        kind("", "Pod"),
        std::slice::from_ref(&pod),
        json!({}),
        &none,
    );
    assert_eq!(t["rows"][0]["object"], Value::Null);

    let empty = table(
        kind("", "Pod"),
        &[],
        json!({"resourceVersion": "9"}),
        &opts(),
    );
    assert_eq!(empty["rows"], json!([]));

    let single = table_for_object(kind("", "Pod"), &pod, &opts());
    assert_eq!(single["metadata"], json!({"resourceVersion": "41"}));

    let beta = TableOptions {
        version: TableVersion::V1Beta1,
        ..opts()
    };
    let t = table_for_object(kind("", "Pod"), &pod, &beta);
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");

    assert_eq!(IncludeObject::parse("").unwrap(), IncludeObject::Metadata);
    assert_eq!(
        IncludeObject::parse("Object").unwrap(),
        IncludeObject::Object
    );
    assert_eq!(IncludeObject::parse("None").unwrap(), IncludeObject::None);
    assert!(IncludeObject::parse("object").is_err());
}

#[test]
fn watch_events_carry_headers_once() {
    let pod = |rv: &str| {
        json!({"metadata": {"name": "p", "namespace": "default", "resourceVersion": rv,
                            "creationTimestamp": "2024-06-01T11:00:00Z"},
               "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Running"}})
    };
    let mut watch = WatchTables::new(kind("", "Pod"), opts());
    let first = watch.event_object(&pod("50"), now());
    assert_eq!(first["columnDefinitions"].as_array().unwrap().len(), 9);
    assert_eq!(first["metadata"]["resourceVersion"], "50");
    assert_eq!(first["rows"].as_array().unwrap().len(), 1);

    let later = now() + Duration::from_secs(60);
    let second = watch.event_object(&pod("51"), later);
    assert_eq!(second["columnDefinitions"], Value::Null);
    assert_eq!(second["rows"][0]["cells"][4], "61m");

    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                        "reason": "Expired", "message": "too old resource version"});
    assert_eq!(watch.event_object(&status, later), status);
}

/// The exact Accept headers kubectl sends for `get` (identical from 1.27 to 1.33) and for
/// `-o yaml`, plus older and unusual ones.
#[test]
fn table_negotiation() {
    let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,\
                   application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    assert!(is_table_request(kubectl));
    assert_eq!(
        table_request(kubectl),
        Some(TableRequest {
            version: TableVersion::V1,
            format: TableFormat::Json
        })
    );
    // kubectl before 1.15 preferred v1beta1.
    let old = "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json";
    assert_eq!(
        table_request(old),
        Some(TableRequest {
            version: TableVersion::V1Beta1,
            format: TableFormat::Json
        })
    );
    assert!(!is_table_request("application/json"));
    assert!(!is_table_request("application/json, */*"));
    assert!(!is_table_request(""));
    assert!(!is_table_request(
        "application/vnd.kubernetes.protobuf, application/json"
    ));
    // Preference order decides, not header order.
    assert!(!is_table_request(
        "application/json;as=Table;v=v1;g=meta.k8s.io;q=0.5, application/json"
    ));
    assert!(is_table_request(
        "application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io"
    ));
    // Unservable conversions are skipped.
    assert!(is_table_request(
        "application/json;as=Table;v=v2;g=meta.k8s.io, application/json;as=Table;v=v1;g=meta.k8s.io"
    ));
    assert!(!is_table_request(
        "application/json;as=Table;v=v1;g=apps, application/json"
    ));
    assert!(!is_table_request(
        "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io, \
         application/json;as=Table;v=v1;g=meta.k8s.io"
    ));
    // Protobuf Tables are not served; the next range wins.
    assert!(is_table_request(
        "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, \
         application/json;as=Table;v=v1;g=meta.k8s.io"
    ));
    assert_eq!(
        table_request("application/yaml;as=Table;v=v1;g=meta.k8s.io"),
        Some(TableRequest {
            version: TableVersion::V1,
            format: TableFormat::Yaml
        })
    );
}
