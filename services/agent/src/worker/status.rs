//! Pod status exactly as the kubelet reports it (`pkg/kubelet/kubelet_pods.go` `getPhase`,
//! `pkg/kubelet/status/generate.go`), computed from the pod's record, what the runtime
//! observes and the probe results. A pure function: no I/O.

use std::collections::HashMap;

use navarch_api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIp, Pod, PodCondition, PodIp,
    PodSpec, PodStatus,
};

use super::record::{ContainerRecord, PodRecord, Terminated};
use super::state::PodLifecycle;
use crate::runtime::{ContainerRunState, ContainerStatus};

/// Readiness and startup as the probes last saw them, per container name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeView {
    pub ready: bool,
    pub started: bool,
}

/// Inputs that do not come from the record.
pub struct StatusInputs<'a> {
    /// Runtime status of each current container instance, by id.
    pub observed: &'a HashMap<String, ContainerStatus>,
    pub probes: &'a HashMap<String, ProbeView>,
    pub host_ips: &'a [String],
    /// `containerID` scheme (the runtime's name).
    pub scheme: &'a str,
    pub now: &'a str,
}

const POD_SCHEDULED: &str = "PodScheduled";
const READY_TO_START: &str = "PodReadyToStartContainers";
const INITIALIZED: &str = "Initialized";
const CONTAINERS_READY: &str = "ContainersReady";
const READY: &str = "Ready";

/// Go's `fmt.Sprint([]string{…})`: `[a b]`.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

fn terminated_state(t: &Terminated) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(t.container_id.clone()),
            exit_code: Some(t.exit_code),
            finished_at: t.finished_at.clone(),
            message: t.message.clone(),
            reason: Some(t.reason.clone()),
            signal: None,
            started_at: t.started_at.clone(),
        }),
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

fn container_status(
    spec: &Container,
    rec: Option<&ContainerRecord>,
    inputs: &StatusInputs<'_>,
    default_waiting: &str,
) -> ApiContainerStatus {
    let name = spec.name.clone().unwrap_or_default();
    let empty = ContainerRecord::new(&name);
    let rec = rec.unwrap_or(&empty);
    let observed = rec.id.as_ref().and_then(|id| inputs.observed.get(id));
    let probe = inputs.probes.get(&name).copied().unwrap_or_default();
    let mut ready = false;
    let mut started = false;
    let (state, last) = match (&rec.waiting, observed) {
        (Some(w), obs) => {
            let last = match obs {
                Some(o) if o.state == ContainerRunState::Exited => {
                    Some(Terminated::from_status(inputs.scheme, o))
                }
                _ => rec.last_terminated.clone(),
            };
            (waiting_state(&w.reason, w.message.clone()), last)
        }
        (None, Some(o)) => match o.state {
            ContainerRunState::Running => {
                ready = probe.ready;
                started = probe.started;
                (
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: o.started_at.clone(),
                        }),
                        ..Default::default()
                    },
                    rec.last_terminated.clone(),
                )
            }
            ContainerRunState::Exited => (
                terminated_state(&Terminated::from_status(inputs.scheme, o)),
                rec.last_terminated.clone(),
            ),
            ContainerRunState::Created | ContainerRunState::Unknown => (
                waiting_state("ContainerCreating", None),
                rec.last_terminated.clone(),
            ),
        },
        (None, None) => match &rec.final_state {
            Some(t) => (terminated_state(t), rec.last_terminated.clone()),
            None => (
                waiting_state(default_waiting, None),
                rec.last_terminated.clone(),
            ),
        },
    };
    let container_id = match (&rec.id, observed) {
        (Some(id), Some(_)) => Some(format!("{}://{id}", inputs.scheme)),
        _ => rec.final_state.as_ref().map(|t| t.container_id.clone()),
    };
    ApiContainerStatus {
        name: Some(name),
        image: Some(
            rec.image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_else(|| spec.image.clone().unwrap_or_default()),
        ),
        image_id: Some(rec.image.as_ref().map(|i| i.id.clone()).unwrap_or_default()),
        container_id,
        ready: Some(ready),
        started: Some(started),
        restart_count: Some(rec.restart_count),
        state: Some(state),
        last_state: Some(last.as_ref().map(terminated_state).unwrap_or_default()),
        ..Default::default()
    }
}

fn is_running(s: &ApiContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

fn terminated(s: &ApiContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn last_terminated(s: &ApiContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn is_waiting(s: &ApiContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

fn find<'a>(list: &'a [ApiContainerStatus], name: &str) -> Option<&'a ApiContainerStatus> {
    list.iter().find(|s| s.name.as_deref() == Some(name))
}

/// Whether any app container ever started (`HasAnyRegularContainerStarted`).
fn any_regular_started(spec: &PodSpec, statuses: &[ApiContainerStatus]) -> bool {
    spec.containers.iter().any(|c| {
        find(statuses, c.name.as_deref().unwrap_or_default()).is_some_and(|s| {
            is_running(s) || terminated(s).is_some() || last_terminated(s).is_some()
        })
    })
}

/// The kubelet's `getPhase`.
pub fn phase(
    spec: &PodSpec,
    init: &[ApiContainerStatus],
    app: &[ApiContainerStatus],
    pod_is_terminal: bool,
) -> &'static str {
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in &spec.init_containers {
        let Some(s) = find(init, c.name.as_deref().unwrap_or_default()) else {
            pending_init += 1;
            continue;
        };
        if is_running(s) {
            pending_init += 1;
        } else if let Some(t) = terminated(s) {
            if t.exit_code.unwrap_or(0) != 0 {
                failed_init += 1;
            }
        } else if is_waiting(s) {
            match last_terminated(s) {
                Some(t) if t.exit_code.unwrap_or(0) != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in &spec.containers {
        let Some(s) = find(app, c.name.as_deref().unwrap_or_default()) else {
            unknown += 1;
            continue;
        };
        if is_running(s) {
            running += 1;
        } else if let Some(t) = terminated(s) {
            stopped += 1;
            if t.exit_code.unwrap_or(0) == 0 {
                succeeded += 1;
            }
        } else if is_waiting(s) {
            if last_terminated(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if (pending_init > 0 && !any_regular_started(spec, app)) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        r#type: Some(kind.into()),
        status: Some(if ok { "True" } else { "False" }.into()),
        reason: reason.map(Into::into),
        message,
        ..Default::default()
    }
}

fn containers_ready(spec: &PodSpec, app: &[ApiContainerStatus], phase: &str) -> PodCondition {
    let mut unknown = vec![];
    let mut unready = vec![];
    for c in &spec.containers {
        let name = c.name.clone().unwrap_or_default();
        match find(app, &name) {
            Some(s) if s.ready == Some(true) => {}
            Some(_) => unready.push(name),
            None => unknown.push(name),
        }
    }
    if unknown.is_empty() && phase == "Succeeded" {
        return condition(CONTAINERS_READY, false, Some("PodCompleted"), None);
    }
    if phase == "Failed" {
        return condition(CONTAINERS_READY, false, Some("PodFailed"), None);
    }
    let mut msgs = vec![];
    if !unknown.is_empty() {
        msgs.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        msgs.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if msgs.is_empty() {
        condition(CONTAINERS_READY, true, None, None)
    } else {
        condition(
            CONTAINERS_READY,
            false,
            Some("ContainersNotReady"),
            Some(msgs.join(", ")),
        )
    }
}

fn pod_ready(
    spec: &PodSpec,
    containers_ready: &PodCondition,
    old: &[PodCondition],
) -> PodCondition {
    if containers_ready.status.as_deref() != Some("True") {
        let mut c = containers_ready.clone();
        c.r#type = Some(READY.into());
        return c;
    }
    let mut missing = vec![];
    for gate in &spec.readiness_gates {
        let t = gate.condition_type.clone().unwrap_or_default();
        match old.iter().find(|c| c.r#type.as_deref() == Some(t.as_str())) {
            Some(c) if c.status.as_deref() == Some("True") => {}
            Some(_) => missing.push(format!(
                "the status of pod readiness gate \"{t}\" is not \"True\", but False"
            )),
            None => missing.push(format!(
                "corresponding condition of pod readiness gate \"{t}\" does not exist."
            )),
        }
    }
    if missing.is_empty() {
        condition(READY, true, None, None)
    } else {
        condition(
            READY,
            false,
            Some("ReadinessGatesNotReady"),
            Some(missing.join(", ")),
        )
    }
}

fn initialized(
    spec: &PodSpec,
    init: &[ApiContainerStatus],
    app: &[ApiContainerStatus],
    phase: &str,
) -> PodCondition {
    let mut unknown = vec![];
    let mut incomplete = vec![];
    for c in &spec.init_containers {
        let name = c.name.clone().unwrap_or_default();
        match find(init, &name) {
            Some(s) if terminated(s).is_some_and(|t| t.exit_code == Some(0)) => {}
            Some(_) => incomplete.push(name),
            None => unknown.push(name),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition(INITIALIZED, true, Some("PodCompleted"), None);
    }
    if any_regular_started(spec, app) {
        return condition(INITIALIZED, true, None, None);
    }
    let mut msgs = vec![];
    if !unknown.is_empty() {
        msgs.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        msgs.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if msgs.is_empty() {
        condition(INITIALIZED, true, None, None)
    } else {
        condition(
            INITIALIZED,
            false,
            Some("ContainersNotInitialized"),
            Some(msgs.join(", ")),
        )
    }
}

/// Kubernetes' QoS class of a pod.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in spec.init_containers.iter().chain(&spec.containers) {
        let res = c.resources.clone().unwrap_or_default();
        if !res.requests.is_empty() || !res.limits.is_empty() {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let limit = res.limits.get(r).map(|q| q.value.clone());
            let request = res
                .requests
                .get(r)
                .map(|q| q.value.clone())
                .or(limit.clone());
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The full status the agent reports for `pod`.
pub fn pod_status(pod: &Pod, record: &PodRecord, inputs: &StatusInputs<'_>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let initializing = matches!(
        record.lifecycle,
        PodLifecycle::Pending | PodLifecycle::Initializing
    ) && !spec.init_containers.is_empty();
    let app_default = if initializing {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let init: Vec<_> = spec
        .init_containers
        .iter()
        .map(|c| {
            container_status(
                c,
                record.container(true, c.name.as_deref().unwrap_or_default()),
                inputs,
                "PodInitializing",
            )
        })
        .collect();
    let app: Vec<_> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                c,
                record.container(false, c.name.as_deref().unwrap_or_default()),
                inputs,
                app_default,
            )
        })
        .collect();
    let terminal =
        record.lifecycle == PodLifecycle::Terminated || record.lifecycle == PodLifecycle::Completed;
    let phase = phase(&spec, &init, &app, terminal);

    let sandbox_ready = record.sandbox.as_ref().is_some_and(|s| s.ready);
    let containers_ready = containers_ready(&spec, &app, phase);
    let ready = pod_ready(&spec, &containers_ready, &old.conditions);
    let mut conditions = vec![
        condition(READY_TO_START, sandbox_ready, None, None),
        initialized(&spec, &init, &app, phase),
        ready,
        containers_ready,
    ];
    match old
        .conditions
        .iter()
        .find(|c| c.r#type.as_deref() == Some(POD_SCHEDULED))
    {
        Some(c) => conditions.push(c.clone()),
        None => {
            let mut c = condition(POD_SCHEDULED, true, None, None);
            c.last_transition_time = record.start_time.clone();
            conditions.push(c);
        }
    }
    let ours = [
        READY_TO_START,
        INITIALIZED,
        CONTAINERS_READY,
        READY,
        POD_SCHEDULED,
    ];
    for c in &old.conditions {
        if !ours.contains(&c.r#type.as_deref().unwrap_or_default()) {
            conditions.push(c.clone());
        }
    }
    for c in &mut conditions {
        if c.last_transition_time.is_some() {
            continue;
        }
        let prev = old.conditions.iter().find(|o| o.r#type == c.r#type);
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(inputs.now.to_string()),
        };
    }

    let mut pod_ips: Vec<String> = record
        .sandbox
        .as_ref()
        .map(|s| s.ips.clone())
        .unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    if (pod_ips.is_empty() || host_network) && record.sandbox.is_some() {
        pod_ips = inputs.host_ips.to_vec();
    }
    // A terminal pod keeps the addresses it had.
    if pod_ips.is_empty() && terminal {
        pod_ips = old.pod_i_ps.iter().filter_map(|p| p.ip.clone()).collect();
    }
    PodStatus {
        phase: Some(phase.into()),
        conditions,
        host_ip: inputs.host_ips.first().cloned(),
        host_i_ps: inputs
            .host_ips
            .iter()
            .map(|ip| HostIp {
                ip: Some(ip.clone()),
            })
            .collect(),
        pod_ip: pod_ips.first().cloned(),
        pod_i_ps: pod_ips
            .iter()
            .map(|ip| PodIp {
                ip: Some(ip.clone()),
            })
            .collect(),
        start_time: record.start_time.clone(),
        init_container_statuses: init,
        container_statuses: app,
        qos_class: Some(
            old.qos_class
                .clone()
                .unwrap_or_else(|| qos_class(&spec).into()),
        ),
        nominated_node_name: old.nominated_node_name.clone(),
        observed_generation: pod.metadata.as_ref().and_then(|m| m.generation),
        ..Default::default()
    }
}

/// Go's `time.Duration.String()` for whole milliseconds (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let frac = ms % 1000;
    let s = if frac == 0 {
        format!("{}s", secs % 60)
    } else {
        let f = format!("{:03}", frac);
        format!("{}.{}s", secs % 60, f.trim_end_matches('0'))
    };
    let (m, h) = ((secs / 60) % 60, secs / 3600);
    if h > 0 {
        format!("{h}h{m}m{s}")
    } else if m > 0 {
        format!("{m}m{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ImageRef, SandboxStatus};
    use crate::worker::record::Waiting;
    use navarch_api::meta::v1::ObjectMeta;

    fn pod(init: &[&str], app: &[&str], policy: &str) -> Pod {
        let c = |n: &&str| Container {
            name: Some(n.to_string()),
            image: Some("busybox".into()),
            ..Default::default()
        };
        Pod {
            metadata: Some(ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                uid: Some("u".into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                init_containers: init.iter().map(c).collect(),
                containers: app.iter().map(c).collect(),
                restart_policy: Some(policy.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(id: &str) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            state: ContainerRunState::Running,
            started_at: Some("2025-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    fn exited(id: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            state: ContainerRunState::Exited,
            exit_code: Some(code),
            reason: Some(crate::runtime::exit_reason(code).into()),
            started_at: Some("2025-01-01T00:00:00Z".into()),
            finished_at: Some("2025-01-01T00:00:01Z".into()),
            ..Default::default()
        }
    }

    struct Case {
        record: PodRecord,
        observed: HashMap<String, ContainerStatus>,
        probes: HashMap<String, ProbeView>,
    }

    impl Case {
        fn new(lifecycle: PodLifecycle) -> Self {
            let mut record = PodRecord::new("u", "default", "p");
            record.lifecycle = lifecycle;
            record.start_time = Some("2025-01-01T00:00:00Z".into());
            record.sandbox = Some(SandboxStatus {
                id: "sb".into(),
                ready: true,
                ips: vec!["10.88.0.5".into()],
            });
            Self {
                record,
                observed: HashMap::new(),
                probes: HashMap::new(),
            }
        }
        fn with(mut self, init: bool, name: &str, st: Option<ContainerStatus>) -> Self {
            let rec = self.record.container_mut(init, name);
            rec.image = Some(ImageRef {
                image: "docker.io/library/busybox:latest".into(),
                id: "docker.io/library/busybox@sha256:aa".into(),
            });
            if let Some(st) = st {
                rec.id = Some(st.id.clone());
                self.observed.insert(st.id.clone(), st);
            }
            self
        }
        fn ready(mut self, name: &str) -> Self {
            self.probes.insert(
                name.into(),
                ProbeView {
                    ready: true,
                    started: true,
                },
            );
            self
        }
        fn status(&self, pod: &Pod) -> PodStatus {
            pod_status(
                pod,
                &self.record,
                &StatusInputs {
                    observed: &self.observed,
                    probes: &self.probes,
                    host_ips: &["192.168.1.10".to_string()],
                    scheme: "runc",
                    now: "2025-01-01T00:00:05Z",
                },
            )
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .iter()
            .find(|c| c.r#type.as_deref() == Some(t))
            .unwrap()
    }

    #[test]
    fn running_and_ready() {
        let p = pod(&[], &["web"], "Always");
        let s = Case::new(PodLifecycle::Running)
            .with(false, "web", Some(running("c1")))
            .ready("web")
            .status(&p);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
        assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
        assert_eq!(cond(&s, "Ready").status.as_deref(), Some("True"));
        assert_eq!(cond(&s, "PodScheduled").status.as_deref(), Some("True"));
        let c = &s.container_statuses[0];
        assert_eq!(c.container_id.as_deref(), Some("runc://c1"));
        assert_eq!(c.ready, Some(true));
        assert_eq!(c.started, Some(true));
        assert_eq!(
            c.image_id.as_deref(),
            Some("docker.io/library/busybox@sha256:aa")
        );
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn not_ready_lists_containers_like_go() {
        let p = pod(&[], &["a", "b"], "Always");
        let s = Case::new(PodLifecycle::Running)
            .with(false, "a", Some(running("c1")))
            .with(false, "b", Some(running("c2")))
            .status(&p);
        let c = cond(&s, "ContainersReady");
        assert_eq!(c.status.as_deref(), Some("False"));
        assert_eq!(c.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            c.message.as_deref(),
            Some("containers with unready status: [a b]")
        );
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
    }

    #[test]
    fn pending_while_creating_and_initializing() {
        let p = pod(&["init"], &["web"], "Always");
        let s = Case::new(PodLifecycle::Initializing)
            .with(true, "init", Some(running("i1")))
            .status(&p);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        let web = &s.container_statuses[0];
        assert_eq!(
            web.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        let p = pod(&[], &["crash"], "Always");
        let mut case = Case::new(PodLifecycle::Running).with(false, "crash", Some(exited("c3", 1)));
        let rec = case.record.container_mut(false, "crash");
        rec.restart_count = 2;
        rec.waiting = Some(Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some("back-off 20s restarting failed container=crash pod=p_default(u)".into()),
        });
        let s = case.status(&p);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let c = &s.container_statuses[0];
        assert_eq!(c.restart_count, Some(2));
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, Some(1));
        assert_eq!(last.reason.as_deref(), Some("Error"));
    }

    #[test]
    fn terminal_phases() {
        let p = pod(&[], &["job"], "Never");
        let ok = Case::new(PodLifecycle::Completed)
            .with(false, "job", Some(exited("c1", 0)))
            .status(&p);
        assert_eq!(ok.phase.as_deref(), Some("Succeeded"));
        let t = ok.container_statuses[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("Completed"));
        assert_eq!(cond(&ok, "Ready").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(
            cond(&ok, "Initialized").reason.as_deref(),
            Some("PodCompleted")
        );

        let bad = Case::new(PodLifecycle::Completed)
            .with(false, "job", Some(exited("c1", 2)))
            .status(&p);
        assert_eq!(bad.phase.as_deref(), Some("Failed"));
        assert_eq!(cond(&bad, "Ready").reason.as_deref(), Some("PodFailed"));

        // OnFailure with a failed container that will restart: Running.
        let p = pod(&[], &["job"], "OnFailure");
        let s = Case::new(PodLifecycle::Running)
            .with(false, "job", Some(exited("c1", 2)))
            .status(&p);
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn failed_init_with_never_fails_the_pod() {
        let p = pod(&["init"], &["web"], "Never");
        let s = Case::new(PodLifecycle::Completed)
            .with(true, "init", Some(exited("i1", 3)))
            .status(&p);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn image_pull_errors_are_waiting_reasons() {
        let p = pod(&[], &["web"], "Always");
        let mut case = Case::new(PodLifecycle::Running);
        case.record.container_mut(false, "web").waiting = Some(Waiting {
            reason: "ImagePullBackOff".into(),
            message: Some("Back-off pulling image \"busybox\"".into()),
        });
        let s = case.status(&p);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let w = s.container_statuses[0]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .clone()
            .unwrap();
        assert_eq!(w.reason.as_deref(), Some("ImagePullBackOff"));
    }

    #[test]
    fn transition_times_are_kept_while_status_holds() {
        let p = pod(&[], &["web"], "Always");
        let case = Case::new(PodLifecycle::Running)
            .with(false, "web", Some(running("c1")))
            .ready("web");
        let first = case.status(&p);
        let mut p2 = p.clone();
        let mut old = first.clone();
        for c in &mut old.conditions {
            c.last_transition_time = Some("2020-01-01T00:00:00Z".into());
        }
        p2.status = Some(old);
        let second = case.status(&p2);
        assert_eq!(
            cond(&second, "Ready").last_transition_time.as_deref(),
            Some("2020-01-01T00:00:00Z")
        );
    }

    #[test]
    fn qos_classes() {
        use navarch_api::core::v1::ResourceRequirements;
        use navarch_api::meta::v1::Quantity;
        let q = |v: &str| Quantity { value: v.into() };
        let mut p = pod(&[], &["a"], "Always").spec.unwrap();
        assert_eq!(qos_class(&p), "BestEffort");
        p.containers[0].resources = Some(ResourceRequirements {
            limits: [("cpu".into(), q("1")), ("memory".into(), q("1Gi"))].into(),
            ..Default::default()
        });
        assert_eq!(qos_class(&p), "Guaranteed");
        p.containers[0].resources = Some(ResourceRequirements {
            requests: [("cpu".into(), q("100m"))].into(),
            ..Default::default()
        });
        assert_eq!(qos_class(&p), "Burstable");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(10_000), "10s");
        assert_eq!(go_duration(80_000), "1m20s");
        assert_eq!(go_duration(300_000), "5m0s");
        assert_eq!(go_duration(1_500), "1.5s");
        assert_eq!(go_duration(200), "200ms");
    }
}
