//! Resource amounts as the scheduler compares them, and a pod's requests computed as
//! Kubernetes does (`resourcehelper.PodRequests`): app containers and sidecars summed, regular
//! init containers taken at their peak, pod-level requests when set, overhead added.

use std::collections::BTreeMap;

use navarch_api::Quantity;
use navarch_api::core::v1::{Container, PodSpec};
use navarch_api::meta::v1::Quantity as WireQuantity;

/// CPU assumed for a container without a CPU request when scoring (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request when scoring (200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources a pod requests or a node offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Pod slots (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended resources and hugepages (`nvidia.com/gpu`, `hugepages-2Mi`), sorted by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Parses a resource list (`{"cpu": "500m", "memory": "1Gi"}`); unparsable amounts are
    /// ignored (validation rejects them before they are stored).
    pub fn from_list(list: &BTreeMap<String, WireQuantity>) -> Self {
        let mut r = Self::default();
        for (name, q) in list {
            let Ok(q) = q.value.parse::<Quantity>() else {
                tracing::debug!(resource = %name, value = %q.value, "ignoring an unparsable quantity");
                continue;
            };
            r.set(
                name,
                if name == "cpu" {
                    q.milli_value()
                } else {
                    q.value()
                },
            );
        }
        r
    }

    /// The amount of the named resource.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.pods,
            other => self
                .scalar
                .binary_search_by(|(n, _)| n.as_str().cmp(other))
                .map_or(0, |i| self.scalar[i].1),
        }
    }

    /// Sets the named resource.
    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            "cpu" => self.milli_cpu = value,
            "memory" => self.memory = value,
            "ephemeral-storage" => self.ephemeral_storage = value,
            "pods" => self.pods = value,
            other => match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(other)) {
                Ok(i) => self.scalar[i].1 = value,
                Err(i) => self.scalar.insert(i, (other.to_string(), value)),
            },
        }
    }

    fn combine(&mut self, other: &Self, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        self.pods = f(self.pods, other.pods);
        // A scalar only `self` has is combined with 0, which leaves it as it is for every
        // operation here (amounts are never negative).
        for (name, v) in &other.scalar {
            let mine = self.get(name);
            self.set(name, f(mine, *v));
        }
    }

    pub fn add(&mut self, other: &Self) {
        self.combine(other, |a, b| a.saturating_add(b));
    }

    pub fn sub(&mut self, other: &Self) {
        self.combine(other, |a, b| a.saturating_sub(b));
    }

    /// Each resource to the larger of the two.
    pub fn max_with(&mut self, other: &Self) {
        self.combine(other, i64::max);
    }

    /// Whether nothing is requested.
    pub fn is_empty(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A container's requests, with `defaults` (cpu, memory) filled in when missing.
fn container_requests(c: &Container, defaults: Option<(i64, i64)>) -> Resources {
    let mut r = c
        .resources
        .as_ref()
        .map(|res| Resources::from_list(&res.requests))
        .unwrap_or_default();
    if let Some((cpu, memory)) = defaults {
        let has = |name: &str| {
            c.resources
                .as_ref()
                .is_some_and(|res| res.requests.contains_key(name))
        };
        if !has("cpu") {
            r.milli_cpu = cpu;
        }
        if !has("memory") {
            r.memory = memory;
        }
    }
    r
}

fn requests_with(spec: &PodSpec, defaults: Option<(i64, i64)>) -> Resources {
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, defaults));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in &spec.init_containers {
        let mut r = container_requests(c, defaults);
        if is_sidecar(c) {
            // A sidecar runs on beside everything after it: it adds to the pod's total, and
            // every later init container runs next to all sidecars started before it.
            reqs.add(&r);
            sidecars.add(&r);
            r = sidecars.clone();
        } else {
            r.add(&sidecars);
        }
        init_peak.max_with(&r);
    }
    reqs.max_with(&init_peak);
    // Pod-level requests (PodLevelResources) replace the container sums they name.
    if let Some(pod_level) = spec.resources.as_ref().filter(|r| !r.requests.is_empty()) {
        let pod_level = Resources::from_list(&pod_level.requests);
        for name in ["cpu", "memory"] {
            if spec
                .resources
                .as_ref()
                .is_some_and(|r| r.requests.contains_key(name))
            {
                reqs.set(name, pod_level.get(name));
            }
        }
    }
    reqs.add(&Resources::from_list(&spec.overhead));
    reqs
}

/// What a pod requests: `max(sum(app containers and sidecars), peak(init containers))` plus
/// overhead.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    requests_with(spec, None)
}

/// CPU (millicores) and memory requests with 100m / 200Mi assumed for containers that request
/// none, used to score so that many request-less pods do not pile onto one node.
pub fn pod_non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let r = requests_with(
        spec,
        Some((DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)),
    );
    (r.milli_cpu, r.memory)
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::ResourceRequirements;

    use super::*;

    fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, WireQuantity> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    WireQuantity {
                        value: v.to_string(),
                    },
                )
            })
            .collect()
    }

    fn container(cpu: Option<&str>, memory: Option<&str>, sidecar: bool) -> Container {
        let mut requests = Vec::new();
        if let Some(c) = cpu {
            requests.push(("cpu", c));
        }
        if let Some(m) = memory {
            requests.push(("memory", m));
        }
        Container {
            resources: Some(ResourceRequirements {
                requests: list(&requests),
                ..Default::default()
            }),
            restart_policy: sidecar.then(|| "Always".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn parses_resource_lists() {
        let r = Resources::from_list(&list(&[
            ("cpu", "1500m"),
            ("memory", "1Gi"),
            ("pods", "110"),
            ("nvidia.com/gpu", "2"),
            ("ephemeral-storage", "10G"),
            ("bad", "not-a-quantity"),
        ]));
        assert_eq!(r.milli_cpu, 1500);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.pods, 110);
        assert_eq!(r.ephemeral_storage, 10_000_000_000);
        assert_eq!(r.get("nvidia.com/gpu"), 2);
        assert_eq!(r.get("bad"), 0);
        assert_eq!(
            Resources::from_list(&list(&[("cpu", "0.1")])).milli_cpu,
            100
        );
    }

    #[test]
    fn table_of_pod_requests() {
        // (name, app containers, init containers, overhead, want cpu, want memory)
        type C = (Option<&'static str>, Option<&'static str>, bool);
        type Case<'a> = (
            &'a str,
            &'a [C],
            &'a [C],
            &'a [(&'a str, &'a str)],
            i64,
            i64,
        );
        let cases: &[Case] = &[
            ("nothing requested", &[(None, None, false)], &[], &[], 0, 0),
            (
                "app containers add up",
                &[
                    (Some("100m"), Some("64Mi"), false),
                    (Some("200m"), None, false),
                ],
                &[],
                &[],
                300,
                64 << 20,
            ),
            (
                "an init container bigger than the app wins",
                &[(Some("100m"), Some("64Mi"), false)],
                &[(Some("1"), Some("32Mi"), false)],
                &[],
                1000,
                64 << 20,
            ),
            (
                "init containers are not summed",
                &[(Some("100m"), None, false)],
                &[(Some("500m"), None, false), (Some("400m"), None, false)],
                &[],
                500,
                0,
            ),
            (
                "a sidecar adds to the app and to later init containers",
                &[(Some("100m"), None, false)],
                &[(Some("200m"), None, true), (Some("500m"), None, false)],
                &[],
                // max(app 100 + sidecar 200, init 500 + sidecar 200)
                700,
                0,
            ),
            (
                "an init container before the sidecar runs without it",
                &[(Some("100m"), None, false)],
                &[(Some("250m"), None, false), (Some("200m"), None, true)],
                &[],
                300,
                0,
            ),
            (
                "overhead is added",
                &[(Some("100m"), Some("10Mi"), false)],
                &[],
                &[("cpu", "250m"), ("memory", "120Mi")],
                350,
                130 << 20,
            ),
        ];
        for (name, app, init, overhead, cpu, memory) in cases {
            let spec = PodSpec {
                containers: app.iter().map(|(c, m, s)| container(*c, *m, *s)).collect(),
                init_containers: init.iter().map(|(c, m, s)| container(*c, *m, *s)).collect(),
                overhead: list(overhead),
                ..Default::default()
            };
            let r = pod_requests(&spec);
            assert_eq!((r.milli_cpu, r.memory), (*cpu, *memory), "{name}");
        }
    }

    #[test]
    fn non_zero_requests_fill_in_defaults_per_container() {
        let spec = PodSpec {
            containers: vec![
                container(None, None, false),
                container(Some("300m"), None, false),
            ],
            ..Default::default()
        };
        assert_eq!(
            pod_non_zero_requests(&spec),
            (100 + 300, 2 * DEFAULT_MEMORY_REQUEST)
        );
        assert_eq!(pod_requests(&spec).milli_cpu, 300);
    }

    #[test]
    fn pod_level_requests_replace_container_sums() {
        let spec = PodSpec {
            containers: vec![container(Some("100m"), Some("1Gi"), false)],
            resources: Some(ResourceRequirements {
                requests: list(&[("cpu", "2")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!((r.milli_cpu, r.memory), (2000, 1 << 30));
    }

    #[test]
    fn arithmetic_covers_extended_resources() {
        let mut a = Resources::from_list(&list(&[("cpu", "1"), ("example.com/foo", "3")]));
        let b = Resources::from_list(&list(&[("cpu", "2"), ("example.com/bar", "1")]));
        a.add(&b);
        assert_eq!(
            (
                a.milli_cpu,
                a.get("example.com/foo"),
                a.get("example.com/bar")
            ),
            (3000, 3, 1)
        );
        a.sub(&b);
        assert_eq!(
            (
                a.milli_cpu,
                a.get("example.com/foo"),
                a.get("example.com/bar")
            ),
            (1000, 3, 0)
        );
        let mut m = Resources::from_list(&list(&[("cpu", "1")]));
        m.max_with(&Resources::from_list(&list(&[
            ("cpu", "500m"),
            ("memory", "1Mi"),
        ])));
        assert_eq!((m.milli_cpu, m.memory), (1000, 1 << 20));
        assert!(Resources::default().is_empty());
    }
}
