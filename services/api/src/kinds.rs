//! The kinds Navarch serves: their group/version, REST names, scope and subresources.
//!
//! One table drives the gateway (which kinds exist, where they are stored, which are
//! namespaced) and the facade (discovery documents, short names, categories).

use prost_reflect::MessageDescriptor;

use crate::codec;

/// Everything the API needs to know about one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural, lower-case REST name ("deployments").
    pub plural: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Whether the kind has a `status` subresource (status only writable through it).
    pub status: bool,
    /// Whether the kind has a `scale` subresource.
    pub scale: bool,
    /// Full protobuf message name.
    pub message: &'static str,
    /// Served but never stored (reviews, bindings): create-only virtual kinds.
    pub virtual_kind: bool,
}

impl KindInfo {
    /// A review (SelfSubjectAccessReview, SelfSubjectReview, …): only `create`, answered in
    /// the returned object's status, never stored.
    pub fn create_only(&self) -> bool {
        self.virtual_kind && matches!(self.group, "authorization.k8s.io" | "authentication.k8s.io")
    }

    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The descriptor of the kind's message.
    pub fn descriptor(&self) -> MessageDescriptor {
        codec::pool()
            .get_message_by_name(self.message)
            .expect("kind messages are compiled in")
    }

    /// The descriptor of the kind's `List` message.
    pub fn list_descriptor(&self) -> Option<MessageDescriptor> {
        codec::pool().get_message_by_name(&format!("{}List", self.message))
    }

    /// `deployments.apps` / `pods`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Storage key prefix for this kind: `/registry/<group>/<plural>/`. Kinds of one resource
    /// served at several versions share storage (autoscaling v1 and v2 HPAs).
    pub fn storage_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }
}

macro_rules! kinds {
    ($( $group:literal $version:literal $kind:ident $plural:literal $ns:literal [$($short:literal),*] [$($cat:literal),*] status=$status:literal scale=$scale:literal $msg:literal $virt:literal; )*) => {
        /// Every kind served, in discovery order.
        pub static KINDS: &[KindInfo] = &[$(KindInfo {
            group: $group,
            version: $version,
            kind: stringify!($kind),
            plural: $plural,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            status: $status,
            scale: $scale,
            message: $msg,
            virtual_kind: $virt,
        }),*];
    };
}

kinds! {
    "" "v1" Namespace "namespaces" false ["ns"] [] status=true scale=false "navarch.api.core.v1.Namespace" false;
    "" "v1" Pod "pods" true ["po"] ["all"] status=true scale=false "navarch.api.core.v1.Pod" false;
    "" "v1" Node "nodes" false ["no"] [] status=true scale=false "navarch.api.core.v1.Node" false;
    "" "v1" Service "services" true ["svc"] ["all"] status=true scale=false "navarch.api.core.v1.Service" false;
    "" "v1" Endpoints "endpoints" true ["ep"] [] status=false scale=false "navarch.api.core.v1.Endpoints" false;
    "" "v1" ConfigMap "configmaps" true ["cm"] [] status=false scale=false "navarch.api.core.v1.ConfigMap" false;
    "" "v1" Secret "secrets" true [] [] status=false scale=false "navarch.api.core.v1.Secret" false;
    "" "v1" Event "events" true ["ev"] [] status=false scale=false "navarch.api.core.v1.Event" false;
    "" "v1" ServiceAccount "serviceaccounts" true ["sa"] [] status=false scale=false "navarch.api.core.v1.ServiceAccount" false;
    "" "v1" PersistentVolumeClaim "persistentvolumeclaims" true ["pvc"] [] status=true scale=false "navarch.api.core.v1.PersistentVolumeClaim" false;
    "" "v1" PodTemplate "podtemplates" true [] [] status=false scale=false "navarch.api.core.v1.PodTemplate" false;
    "" "v1" LimitRange "limitranges" true ["limits"] [] status=false scale=false "navarch.api.core.v1.LimitRange" false;
    "" "v1" ResourceQuota "resourcequotas" true ["quota"] [] status=true scale=false "navarch.api.core.v1.ResourceQuota" false;
    "apps" "v1" Deployment "deployments" true ["deploy"] ["all"] status=true scale=true "navarch.api.apps.v1.Deployment" false;
    "apps" "v1" ReplicaSet "replicasets" true ["rs"] ["all"] status=true scale=true "navarch.api.apps.v1.ReplicaSet" false;
    "apps" "v1" DaemonSet "daemonsets" true ["ds"] ["all"] status=true scale=false "navarch.api.apps.v1.DaemonSet" false;
    "apps" "v1" StatefulSet "statefulsets" true ["sts"] ["all"] status=true scale=true "navarch.api.apps.v1.StatefulSet" false;
    "apps" "v1" ControllerRevision "controllerrevisions" true [] [] status=false scale=false "navarch.api.apps.v1.ControllerRevision" false;
    "batch" "v1" Job "jobs" true [] ["all"] status=true scale=false "navarch.api.batch.v1.Job" false;
    "batch" "v1" CronJob "cronjobs" true ["cj"] ["all"] status=true scale=false "navarch.api.batch.v1.CronJob" false;
    "coordination.k8s.io" "v1" Lease "leases" true [] [] status=false scale=false "navarch.api.coordination.v1.Lease" false;
    "discovery.k8s.io" "v1" EndpointSlice "endpointslices" true [] [] status=false scale=false "navarch.api.discovery.v1.EndpointSlice" false;
    "autoscaling" "v2" HorizontalPodAutoscaler "horizontalpodautoscalers" true ["hpa"] ["all"] status=true scale=false "navarch.api.autoscaling.v2.HorizontalPodAutoscaler" false;
    "autoscaling" "v1" HorizontalPodAutoscaler "horizontalpodautoscalers" true ["hpa"] ["all"] status=true scale=false "navarch.api.autoscaling.v1.HorizontalPodAutoscaler" false;
    "rbac.authorization.k8s.io" "v1" Role "roles" true [] [] status=false scale=false "navarch.api.rbac.v1.Role" false;
    "rbac.authorization.k8s.io" "v1" ClusterRole "clusterroles" false [] [] status=false scale=false "navarch.api.rbac.v1.ClusterRole" false;
    "rbac.authorization.k8s.io" "v1" RoleBinding "rolebindings" true [] [] status=false scale=false "navarch.api.rbac.v1.RoleBinding" false;
    "rbac.authorization.k8s.io" "v1" ClusterRoleBinding "clusterrolebindings" false [] [] status=false scale=false "navarch.api.rbac.v1.ClusterRoleBinding" false;
    "scheduling.k8s.io" "v1" PriorityClass "priorityclasses" false ["pc"] [] status=false scale=false "navarch.api.scheduling.v1.PriorityClass" false;
    "policy" "v1" PodDisruptionBudget "poddisruptionbudgets" true ["pdb"] [] status=true scale=false "navarch.api.policy.v1.PodDisruptionBudget" false;
    "authorization.k8s.io" "v1" SelfSubjectAccessReview "selfsubjectaccessreviews" false [] [] status=false scale=false "navarch.api.authorization.v1.SelfSubjectAccessReview" true;
    "authorization.k8s.io" "v1" SelfSubjectRulesReview "selfsubjectrulesreviews" false [] [] status=false scale=false "navarch.api.authorization.v1.SelfSubjectRulesReview" true;
    "authorization.k8s.io" "v1" SubjectAccessReview "subjectaccessreviews" false [] [] status=false scale=false "navarch.api.authorization.v1.SubjectAccessReview" true;
    "authorization.k8s.io" "v1" LocalSubjectAccessReview "localsubjectaccessreviews" true [] [] status=false scale=false "navarch.api.authorization.v1.LocalSubjectAccessReview" true;
    "authentication.k8s.io" "v1" SelfSubjectReview "selfsubjectreviews" false [] [] status=false scale=false "navarch.api.authentication.v1.SelfSubjectReview" true;
    "authentication.k8s.io" "v1beta1" SelfSubjectReview "selfsubjectreviews" false [] [] status=false scale=false "navarch.api.authentication.v1.SelfSubjectReview" true;
    "metrics.k8s.io" "v1beta1" NodeMetrics "nodes" false [] [] status=false scale=false "navarch.api.metrics.v1beta1.NodeMetrics" true;
    "metrics.k8s.io" "v1beta1" PodMetrics "pods" true [] [] status=false scale=false "navarch.api.metrics.v1beta1.PodMetrics" true;
}

/// The kind served at `group/version` under the plural name `resource`.
pub fn by_resource(group: &str, version: &str, resource: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == resource)
}

/// The kind for an `apiVersion` and `kind` pair.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    let (group, version) = split_api_version(api_version);
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The kind whose protobuf message is `full_name`.
pub fn by_message(full_name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.message == full_name)
}

/// The kind of a generated type.
pub fn of<T: prost::Name>() -> Option<&'static KindInfo> {
    by_message(&T::full_name())
}

/// The kind stored under `key` (`/registry/<group>/<plural>/…`).
pub fn by_storage_key(key: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| key.starts_with(&k.storage_prefix()))
}

/// `apps/v1` → ("apps", "v1"); `v1` → ("", "v1").
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The singular REST name: the lower-cased kind.
pub fn singular(kind: &KindInfo) -> String {
    kind.kind.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_message_and_list() {
        for kind in KINDS {
            assert_eq!(kind.descriptor().name(), kind.kind, "{}", kind.message);
            if kind.create_only() {
                // Reviews: a request answered in its status, never stored, listed or watched.
                continue;
            }
            assert!(kind.list_descriptor().is_some(), "{}List", kind.message);
            assert!(kind.descriptor().get_field_by_name("metadata").is_some());
            assert_eq!(
                kind.descriptor().get_field_by_name("status").is_some(),
                kind.status,
                "{}",
                kind.kind
            );
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            by_resource("apps", "v1", "deployments").unwrap().kind,
            "Deployment"
        );
        assert_eq!(by_kind("v1", "Pod").unwrap().plural, "pods");
        assert!(by_kind("v1", "Deployment").is_none());
    }
}
