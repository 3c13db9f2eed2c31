//! Which objects a list or watch returns: namespace, label selector, field selector.

use navarch_api::kinds::KindInfo;
use std::collections::BTreeMap;

use navarch_api::selectors::{self, FieldSelector, LabelSelector};
use navarch_api::stored::StoredView;
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
        self.is_everything() || self.matches_attrs(&Attrs::of(obj))
    }

    /// [`Filter::matches`] for an object of `kind` read from its encoding, not decoded.
    pub fn matches_stored(&self, kind: &'static KindInfo, bytes: &[u8]) -> bool {
        if !std::ptr::eq(kind, self.kind) && kind.storage_prefix() != self.kind.storage_prefix() {
            return false;
        }
        self.is_everything() || self.matches_attrs(&Attrs::of_stored(kind, bytes))
    }

    /// No namespace, labels or fields to check: every object of the kind passes.
    pub fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none() && self.namespace.is_empty()
    }

    /// Whether an object of the filter's kind with these attributes passes.
    pub fn matches_attrs(&self, attrs: &Attrs) -> bool {
        if !self.namespace.is_empty() && attrs.namespace != self.namespace {
            return false;
        }
        if let Some(l) = &self.labels
            && !l.matches(&attrs.labels)
        {
            return false;
        }
        if let Some(f) = &self.fields
            && !f.matches_values(|field| attrs.field(field))
        {
            return false;
        }
        true
    }
}

/// What filters look at in an object (Kubernetes' `GetAttrs`): its namespace, labels and the
/// values of every field its kind can be selected on. Computed once per change in the watch
/// cache, however many watchers filter it.
#[derive(Debug, Default)]
pub struct Attrs {
    namespace: String,
    labels: BTreeMap<String, String>,
    fields: Vec<(&'static str, String)>,
}

impl Attrs {
    pub fn of(obj: &Object) -> Self {
        Self {
            namespace: obj.namespace(),
            labels: obj.labels(),
            fields: FieldSelector::supported_fields(obj.kind)
                .iter()
                .map(|f| (*f, selectors::field_value(obj.kind, obj, f)))
                .collect(),
        }
    }

    /// [`Attrs::of`] an object of `kind` read from its encoding, not decoded.
    pub fn of_stored(kind: &'static KindInfo, bytes: &[u8]) -> Self {
        let view = StoredView::new(kind, bytes);
        Self {
            namespace: view.namespace(),
            labels: view.labels(),
            fields: FieldSelector::supported_fields(kind)
                .iter()
                .map(|f| (*f, selectors::field_value(kind, &view, f)))
                .collect(),
        }
    }

    fn field(&self, field: &str) -> &str {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map_or("", |(_, v)| v.as_str())
    }
}
