//! What the patch engine needs to know about a field: how its lists merge.
//!
//! Kubernetes keeps this in Go struct tags (`patchStrategy`/`patchMergeKey`, read by strategic
//! merge patch) and in OpenAPI extensions (`x-kubernetes-list-type`, `-list-map-keys`,
//! `-map-type`, `-struct-type`, read by server-side apply). Our protos carry neither, so the
//! [`LIST_RULES`] table restates them for the served kinds, keyed by (message, field). The shape
//! of everything else (objects, maps, scalars) comes from the descriptor pool.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::kinds::KindInfo;

/// How strategic merge patch treats a list (`patchStrategy` / `patchMergeKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Smp {
    /// No strategy: the patch's list replaces the whole list.
    Replace,
    /// `patchStrategy:"merge"` on a list of objects, merged by this key.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of scalars: a set union.
    MergePrimitives,
}

/// One key field of an associative list, with its schema default (`protocol: TCP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListKey {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ssa {
    /// Replaced and owned as a whole.
    Atomic,
    /// A set of scalars; each value owned separately (`v:<value>`).
    Set,
    /// Items identified by these keys; each item owned separately (`k:{...}`).
    Map(&'static [ListKey]),
}

/// The merge rules of one list field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRule {
    pub smp: Smp,
    pub ssa: Ssa,
}

const ATOMIC: ListRule = ListRule {
    smp: Smp::Replace,
    ssa: Ssa::Atomic,
};

const fn key(name: &'static str) -> ListKey {
    ListKey {
        name,
        default: None,
    }
}

const fn merge_by(smp_key: &'static str, ssa_keys: &'static [ListKey]) -> ListRule {
    ListRule {
        smp: Smp::MergeByKey(smp_key),
        ssa: Ssa::Map(ssa_keys),
    }
}

const PROTOCOL: ListKey = ListKey {
    name: "protocol",
    default: Some("TCP"),
};
const NAME: &[ListKey] = &[key("name")];
const TYPE: &[ListKey] = &[key("type")];
const IP: &[ListKey] = &[key("ip")];
const UID: &[ListKey] = &[key("uid")];
const MOUNT_PATH: &[ListKey] = &[key("mountPath")];
const DEVICE_PATH: &[ListKey] = &[key("devicePath")];
const CONTAINER_PORT: &[ListKey] = &[key("containerPort"), PROTOCOL];
const SERVICE_PORT: &[ListKey] = &[key("port"), PROTOCOL];
const TOPOLOGY: &[ListKey] = &[key("topologyKey"), key("whenUnsatisfiable")];

const BY_NAME: ListRule = merge_by("name", NAME);
const CONDITIONS: ListRule = merge_by("type", TYPE);
const BY_IP: ListRule = merge_by("ip", IP);
const CONTAINER_PORTS: ListRule = merge_by("containerPort", CONTAINER_PORT);
const VOLUME_MOUNTS: ListRule = merge_by("mountPath", MOUNT_PATH);
const VOLUME_DEVICES: ListRule = merge_by("devicePath", DEVICE_PATH);
/// A set for server-side apply, replaced by strategic merge patch.
const SET: ListRule = ListRule {
    smp: Smp::Replace,
    ssa: Ssa::Set,
};
const MERGED_SET: ListRule = ListRule {
    smp: Smp::MergePrimitives,
    ssa: Ssa::Set,
};

/// Lists that are not atomic, by (message without the `navarch.api.` prefix, JSON field).
/// Every other list is atomic for both patch kinds (`args`, `command`, `envFrom`,
/// `tolerations`, `taints`, `subsets`, RBAC `rules`, ...). Where Kubernetes' two sources
/// disagree, both are kept: container ports merge by `containerPort` in a strategic merge
/// patch but are keyed by `containerPort` and `protocol` for apply.
#[rustfmt::skip]
pub static LIST_RULES: &[(&str, &str, ListRule)] = &[
    ("meta.v1.ObjectMeta", "finalizers", MERGED_SET),
    ("meta.v1.ObjectMeta", "ownerReferences", merge_by("uid", UID)),
    // Pods. `volumes` and `resourceClaims` are "merge,retainKeys": retainKeys only shapes
    // the client's diff (the server applies `$retainKeys` wherever it appears).
    ("core.v1.PodSpec", "containers", BY_NAME),
    ("core.v1.PodSpec", "initContainers", BY_NAME),
    ("core.v1.PodSpec", "ephemeralContainers", BY_NAME),
    ("core.v1.PodSpec", "volumes", BY_NAME),
    ("core.v1.PodSpec", "imagePullSecrets", BY_NAME),
    ("core.v1.PodSpec", "hostAliases", BY_IP),
    ("core.v1.PodSpec", "resourceClaims", BY_NAME),
    ("core.v1.PodSpec", "schedulingGates", BY_NAME),
    ("core.v1.PodSpec", "topologySpreadConstraints", merge_by("topologyKey", TOPOLOGY)),
    ("core.v1.Container", "env", BY_NAME),
    ("core.v1.Container", "ports", CONTAINER_PORTS),
    ("core.v1.Container", "volumeMounts", VOLUME_MOUNTS),
    ("core.v1.Container", "volumeDevices", VOLUME_DEVICES),
    ("core.v1.EphemeralContainer", "env", BY_NAME),
    ("core.v1.EphemeralContainer", "ports", CONTAINER_PORTS),
    ("core.v1.EphemeralContainer", "volumeMounts", VOLUME_MOUNTS),
    ("core.v1.EphemeralContainer", "volumeDevices", VOLUME_DEVICES),
    ("core.v1.ResourceRequirements", "claims", ListRule { smp: Smp::Replace, ssa: Ssa::Map(NAME) }),
    ("core.v1.PodStatus", "conditions", CONDITIONS),
    ("core.v1.PodStatus", "podIPs", BY_IP),
    ("core.v1.PodStatus", "hostIPs", BY_IP),
    ("core.v1.PodStatus", "resourceClaimStatuses", BY_NAME),
    ("core.v1.ContainerStatus", "volumeMounts", VOLUME_MOUNTS),
    ("core.v1.ContainerStatus", "allocatedResourcesStatus", BY_NAME),
    // Services, nodes, namespaces, claims, service accounts.
    ("core.v1.ServiceSpec", "ports", merge_by("port", SERVICE_PORT)),
    ("core.v1.ServiceStatus", "conditions", CONDITIONS),
    ("core.v1.NodeSpec", "podCIDRs", MERGED_SET),
    ("core.v1.NodeStatus", "conditions", CONDITIONS),
    ("core.v1.NodeStatus", "addresses", CONDITIONS),
    ("core.v1.NamespaceStatus", "conditions", CONDITIONS),
    ("core.v1.PersistentVolumeClaimStatus", "conditions", CONDITIONS),
    ("core.v1.ServiceAccount", "secrets", BY_NAME),
    // Workloads.
    ("apps.v1.DeploymentStatus", "conditions", CONDITIONS),
    ("apps.v1.ReplicaSetStatus", "conditions", CONDITIONS),
    ("apps.v1.DaemonSetStatus", "conditions", CONDITIONS),
    ("apps.v1.StatefulSetStatus", "conditions", CONDITIONS),
    ("batch.v1.JobStatus", "conditions", ListRule { smp: Smp::MergeByKey("type"), ssa: Ssa::Atomic }),
    ("batch.v1.UncountedTerminatedPods", "succeeded", SET),
    ("batch.v1.UncountedTerminatedPods", "failed", SET),
    ("batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", SET),
    ("autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", CONDITIONS),
    ("policy.v1.PodDisruptionBudgetStatus", "conditions", CONDITIONS),
    ("discovery.v1.Endpoint", "addresses", SET),
];

/// Maps replaced as a whole by server-side apply (`x-kubernetes-map-type: atomic`).
pub static ATOMIC_MAPS: &[(&str, &str)] = &[
    ("core.v1.PodSpec", "nodeSelector"),
    ("core.v1.ServiceSpec", "selector"),
];

/// Structs replaced as a whole by server-side apply (`+structType=atomic`).
pub static ATOMIC_STRUCTS: &[&str] = &[
    "meta.v1.LabelSelector",
    "core.v1.LocalObjectReference",
    "core.v1.ObjectReference",
    "core.v1.TypedLocalObjectReference",
    "core.v1.ConfigMapKeySelector",
    "core.v1.SecretKeySelector",
    "core.v1.ObjectFieldSelector",
    "core.v1.ResourceFieldSelector",
    "core.v1.NodeSelector",
    "core.v1.NodeSelectorTerm",
];

/// Messages whose JSON form is a scalar or free-form value.
const SCALAR_MESSAGES: &[&str] = &["meta.v1.Quantity", "meta.v1.IntOrString", "meta.v1.RawJson"];
const STRING_LIST: &str = "meta.v1.StringList";

fn short_name(desc: &MessageDescriptor) -> &str {
    desc.full_name()
        .strip_prefix("navarch.api.")
        .unwrap_or(desc.full_name())
}

/// The merge rules of the list `field` of `message` (atomic unless [`LIST_RULES`] says otherwise).
pub fn list_rule(message: &str, field: &str) -> ListRule {
    LIST_RULES
        .iter()
        .find(|(m, f, _)| *m == message && *f == field)
        .map(|(_, _, r)| *r)
        .unwrap_or(ATOMIC)
}

/// The shape of the value at some position in an object.
#[derive(Clone, Debug)]
pub(crate) enum Schema {
    /// A message: a JSON object with known fields.
    Struct {
        desc: MessageDescriptor,
        atomic: bool,
    },
    /// A proto map: a JSON object with free keys.
    Map { values: Box<Schema>, atomic: bool },
    /// A JSON array.
    List { items: Box<Schema>, rule: ListRule },
    /// A scalar, or a value that is only ever replaced whole.
    Scalar,
    /// A field the schema does not know (merged like JSON merge patch, owned whole).
    Unknown,
}

impl Schema {
    /// The schema of a whole object of `kind`.
    pub(crate) fn root(kind: &KindInfo) -> Schema {
        Schema::Struct {
            desc: kind.descriptor(),
            atomic: false,
        }
    }

    fn of_kind(kind: Kind) -> Schema {
        match kind {
            Kind::Message(desc) => Schema::of_message(desc),
            _ => Schema::Scalar,
        }
    }

    fn of_message(desc: MessageDescriptor) -> Schema {
        let name = short_name(&desc);
        if SCALAR_MESSAGES.contains(&name) {
            return Schema::Scalar;
        }
        if name == STRING_LIST {
            return Schema::List {
                items: Box::new(Schema::Scalar),
                rule: ATOMIC,
            };
        }
        let atomic = ATOMIC_STRUCTS.contains(&name);
        Schema::Struct { desc, atomic }
    }

    fn of_field(parent: &MessageDescriptor, field: &FieldDescriptor) -> Schema {
        let parent_name = short_name(parent);
        if field.is_map() {
            let values = match field.kind() {
                Kind::Message(entry) => Schema::of_kind(entry.map_entry_value_field().kind()),
                _ => Schema::Scalar,
            };
            let atomic = ATOMIC_MAPS.contains(&(parent_name, field.name()));
            return Schema::Map {
                values: Box::new(values),
                atomic,
            };
        }
        if field.is_list() {
            return Schema::List {
                items: Box::new(Schema::of_kind(field.kind())),
                rule: list_rule(parent_name, field.name()),
            };
        }
        Schema::of_kind(field.kind())
    }

    /// The schema of the member `name` of an object of this schema.
    pub(crate) fn field(&self, name: &str) -> Schema {
        match self {
            Schema::Struct { desc, .. } => match desc.get_field_by_name(name) {
                Some(field) => Schema::of_field(desc, &field),
                None => Schema::Unknown,
            },
            Schema::Map { values, .. } => (**values).clone(),
            _ => Schema::Unknown,
        }
    }

    /// The schema of the items of a list of this schema.
    pub(crate) fn items(&self) -> Schema {
        match self {
            Schema::List { items, .. } => (**items).clone(),
            _ => Schema::Unknown,
        }
    }

    /// The list rule, for a list schema.
    pub(crate) fn list_rule(&self) -> Option<ListRule> {
        match self {
            Schema::List { rule, .. } => Some(*rule),
            _ => None,
        }
    }

    /// Whether server-side apply merges inside values of this schema (maps and structs that are
    /// not atomic; unknown fields too, as free-form objects).
    pub(crate) fn is_granular_object(&self) -> bool {
        match self {
            Schema::Struct { atomic, .. } | Schema::Map { atomic, .. } => !atomic,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;

    fn at(kind: &KindInfo, path: &[&str]) -> Schema {
        let mut s = Schema::root(kind);
        for p in path {
            s = if *p == "[]" { s.items() } else { s.field(p) };
        }
        s
    }

    #[test]
    fn every_rule_names_a_real_list_field() {
        for (message, field, _) in LIST_RULES {
            let desc = crate::codec::pool()
                .get_message_by_name(&format!("navarch.api.{message}"))
                .unwrap_or_else(|| panic!("{message} exists"));
            let f = desc
                .get_field_by_name(field)
                .unwrap_or_else(|| panic!("{message}.{field} exists"));
            assert!(f.is_list(), "{message}.{field} is a list");
        }
        for (message, field) in ATOMIC_MAPS {
            let desc = crate::codec::pool()
                .get_message_by_name(&format!("navarch.api.{message}"))
                .unwrap();
            assert!(
                desc.get_field_by_name(field).unwrap().is_map(),
                "{message}.{field} is a map"
            );
        }
        for message in ATOMIC_STRUCTS {
            assert!(
                crate::codec::pool()
                    .get_message_by_name(&format!("navarch.api.{message}"))
                    .is_some(),
                "{message}"
            );
        }
    }

    /// The merge rules of the lists kubectl users touch most, by kind and JSON path.
    #[test]
    #[rustfmt::skip]
    fn merge_rules_of_common_lists() {
        const POD: &str = "spec.template.spec";
        const CONTAINER: &str = "spec.template.spec.containers.[]";
        let replace = ATOMIC;
        let cases = [
            ("apps/v1", "Deployment", format!("{POD}.containers"), BY_NAME),
            ("apps/v1", "Deployment", format!("{POD}.initContainers"), BY_NAME),
            ("apps/v1", "Deployment", format!("{POD}.ephemeralContainers"), BY_NAME),
            ("apps/v1", "Deployment", format!("{POD}.volumes"), BY_NAME),
            ("apps/v1", "Deployment", format!("{POD}.imagePullSecrets"), BY_NAME),
            ("apps/v1", "Deployment", format!("{POD}.hostAliases"), BY_IP),
            ("apps/v1", "Deployment", format!("{POD}.resourceClaims"), BY_NAME),
            ("apps/v1", "Deployment", format!("{POD}.topologySpreadConstraints"), merge_by("topologyKey", TOPOLOGY)),
            ("apps/v1", "Deployment", format!("{POD}.tolerations"), replace),
            ("apps/v1", "Deployment", format!("{CONTAINER}.env"), BY_NAME),
            ("apps/v1", "Deployment", format!("{CONTAINER}.envFrom"), replace),
            ("apps/v1", "Deployment", format!("{CONTAINER}.args"), replace),
            ("apps/v1", "Deployment", format!("{CONTAINER}.command"), replace),
            ("apps/v1", "Deployment", format!("{CONTAINER}.volumeMounts"), VOLUME_MOUNTS),
            ("apps/v1", "Deployment", format!("{CONTAINER}.volumeDevices"), VOLUME_DEVICES),
            ("apps/v1", "Deployment", format!("{CONTAINER}.ports"), CONTAINER_PORTS),
            ("apps/v1", "Deployment", "status.conditions".into(), CONDITIONS),
            ("apps/v1", "Deployment", "metadata.finalizers".into(), MERGED_SET),
            ("apps/v1", "Deployment", "metadata.ownerReferences".into(), merge_by("uid", UID)),
            ("v1", "Pod", "status.conditions".into(), CONDITIONS),
            ("v1", "Service", "spec.ports".into(), merge_by("port", SERVICE_PORT)),
            ("v1", "Node", "spec.taints".into(), replace),
            ("v1", "Node", "spec.podCIDRs".into(), MERGED_SET),
            ("v1", "Endpoints", "subsets".into(), replace),
            ("batch/v1", "Job", "status.conditions".into(), ListRule { smp: Smp::MergeByKey("type"), ssa: Ssa::Atomic }),
            ("rbac.authorization.k8s.io/v1", "Role", "rules".into(), replace),
        ];
        for (api_version, kind, path, rule) in cases {
            let path: Vec<&str> = path.split('.').collect();
            let schema = at(kinds::by_kind(api_version, kind).unwrap(), &path);
            assert_eq!(schema.list_rule(), Some(rule), "{kind} {path:?}");
        }
    }

    #[test]
    fn walks_descriptors() {
        let deploy = kinds::by_kind("apps/v1", "Deployment").unwrap();
        let containers = at(deploy, &["spec", "template", "spec", "containers"]);
        assert_eq!(containers.list_rule().unwrap().smp, Smp::MergeByKey("name"));
        let env = at(
            deploy,
            &["spec", "template", "spec", "containers", "[]", "env"],
        );
        assert_eq!(env.list_rule().unwrap().smp, Smp::MergeByKey("name"));
        let args = at(
            deploy,
            &["spec", "template", "spec", "containers", "[]", "args"],
        );
        assert_eq!(args.list_rule().unwrap(), ATOMIC);
        assert!(!at(deploy, &["spec", "selector"]).is_granular_object());
        assert!(at(deploy, &["metadata", "labels"]).is_granular_object());
        assert!(matches!(
            at(
                deploy,
                &[
                    "spec",
                    "template",
                    "spec",
                    "containers",
                    "[]",
                    "resources",
                    "limits",
                    "cpu"
                ]
            ),
            Schema::Scalar
        ));
        assert!(matches!(at(deploy, &["spec", "nope"]), Schema::Unknown));
        let svc = kinds::by_kind("v1", "Service").unwrap();
        assert_eq!(
            at(svc, &["spec", "ports"]).list_rule().unwrap().smp,
            Smp::MergeByKey("port")
        );
    }
}
