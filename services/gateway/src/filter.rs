//! Which objects a list or watch returns: namespace, label selector, field selector.

use navarch_api::kinds::KindInfo;
use navarch_api::selectors::{FieldSelector, LabelSelector};
use navarch_api::{ApiError, Object};

/// A compiled list/watch filter.
pub struct Filter {
    kind: &'static KindInfo,
    namespace: String,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    pub fn new(
        kind: &'static KindInfo,
        namespace: &str,
        labels: &str,
        fields: &str,
    ) -> Result<Self, ApiError> {
        let labels = if labels.trim().is_empty() {
            None
        } else {
            Some(LabelSelector::parse(labels)?)
        };
        let fields = if fields.trim().is_empty() {
            None
        } else {
            Some(FieldSelector::parse_for(fields, kind)?)
        };
        Ok(Self {
            kind,
            namespace: if kind.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            labels,
            fields,
        })
    }

    /// Whether `obj` passes the filter.
    pub fn matches(&self, obj: &Object) -> bool {
        if !std::ptr::eq(obj.kind, self.kind)
            && obj.kind.storage_prefix() != self.kind.storage_prefix()
        {
            return false;
        }
        if self.labels.is_none() && self.fields.is_none() && self.namespace.is_empty() {
            return true;
        }
        let meta = obj.meta();
        if !self.namespace.is_empty() && meta.namespace.as_deref() != Some(self.namespace.as_str())
        {
            return false;
        }
        if let Some(l) = &self.labels
            && !l.matches(&meta.labels)
        {
            return false;
        }
        if let Some(f) = &self.fields
            && !f.matches(self.kind, &obj.to_json())
        {
            return false;
        }
        true
    }
}
