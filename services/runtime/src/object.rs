//! Uniform access to the metadata of the generated kinds, and the key that names an object.

use std::fmt;
use std::sync::LazyLock;

use navarch_api::meta::v1::{ObjectMeta, OwnerReference};
use navarch_gateway::client::Resource;

/// A served kind whose metadata the runtime can read: every generated kind implements it.
pub trait KubeObject: Resource {
    /// The object's metadata (an empty one when the object has none).
    fn meta(&self) -> &ObjectMeta;
    /// The object's metadata, created if missing.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// The node a pod is bound to (`spec.nodeName`); `None` for every other kind.
    fn node_name(&self) -> Option<&str> {
        None
    }
}

static EMPTY_META: LazyLock<ObjectMeta> = LazyLock::new(ObjectMeta::default);

macro_rules! kube_object {
    ($($ty:ty),* $(,)?) => {$(
        impl KubeObject for $ty {
            fn meta(&self) -> &ObjectMeta {
                self.metadata.as_ref().unwrap_or(&EMPTY_META)
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                self.metadata.get_or_insert_with(Default::default)
            }
        }
    )*};
}

kube_object!(
    navarch_api::core::v1::Namespace,
    navarch_api::core::v1::Node,
    navarch_api::core::v1::Service,
    navarch_api::core::v1::Endpoints,
    navarch_api::core::v1::ConfigMap,
    navarch_api::core::v1::Secret,
    navarch_api::core::v1::Event,
    navarch_api::core::v1::ServiceAccount,
    navarch_api::core::v1::PersistentVolumeClaim,
    navarch_api::core::v1::PodTemplate,
    navarch_api::core::v1::LimitRange,
    navarch_api::core::v1::ResourceQuota,
    navarch_api::apps::v1::Deployment,
    navarch_api::apps::v1::ReplicaSet,
    navarch_api::apps::v1::DaemonSet,
    navarch_api::apps::v1::StatefulSet,
    navarch_api::apps::v1::ControllerRevision,
    navarch_api::batch::v1::Job,
    navarch_api::batch::v1::CronJob,
    navarch_api::coordination::v1::Lease,
    navarch_api::discovery::v1::EndpointSlice,
    navarch_api::autoscaling::v2::HorizontalPodAutoscaler,
    navarch_api::rbac::v1::Role,
    navarch_api::rbac::v1::ClusterRole,
    navarch_api::rbac::v1::RoleBinding,
    navarch_api::rbac::v1::ClusterRoleBinding,
    navarch_api::scheduling::v1::PriorityClass,
    navarch_api::policy::v1::PodDisruptionBudget,
);

impl KubeObject for navarch_api::core::v1::Pod {
    fn meta(&self) -> &ObjectMeta {
        self.metadata.as_ref().unwrap_or(&EMPTY_META)
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.metadata.get_or_insert_with(Default::default)
    }
    fn node_name(&self) -> Option<&str> {
        self.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

/// Names one object: `namespace/name`, or just `name` for cluster-scoped kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of `obj`.
    pub fn of<T: KubeObject>(obj: &T) -> Self {
        let meta = obj.meta();
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// Parses `namespace/name` or `name`.
    pub fn parse(key: &str) -> Self {
        match key.split_once('/') {
            Some((ns, name)) => Self::new(ns, name),
            None => Self::new("", key),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The object's resourceVersion ("" when unset).
pub fn resource_version<T: KubeObject>(obj: &T) -> &str {
    obj.meta().resource_version.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use navarch_api::core::v1::{Pod, PodSpec};

    use super::*;

    #[test]
    fn keys_format_and_parse() {
        let k = ObjectKey::new("default", "web");
        assert_eq!(k.to_string(), "default/web");
        assert_eq!(ObjectKey::parse("default/web"), k);
        assert_eq!(ObjectKey::parse("node-1"), ObjectKey::new("", "node-1"));
        assert_eq!(ObjectKey::new("", "node-1").to_string(), "node-1");
    }

    #[test]
    fn pods_expose_their_node() {
        let mut pod = Pod::default();
        assert_eq!(pod.node_name(), None);
        assert_eq!(pod.meta().name, None);
        pod.meta_mut().name = Some("p".into());
        pod.spec = Some(PodSpec {
            node_name: Some("n1".into()),
            ..Default::default()
        });
        assert_eq!(pod.node_name(), Some("n1"));
        assert_eq!(ObjectKey::of(&pod), ObjectKey::new("", "p"));
    }
}
