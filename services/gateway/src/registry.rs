//! The verbs over any kind, after authentication and authorization: default → validate →
//! admit → persist, with the object semantics Kubernetes users rely on (server-set metadata,
//! generation, status as a subresource, optimistic concurrency, graceful deletion).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use navarch_api::codec::FieldValidation;
use navarch_api::kinds::{self, KindInfo};
use navarch_api::meta::v1::ObjectMeta;
use navarch_api::{ApiError, FieldError, Object, Reason};
use navarch_store::{Compare, KeyValue, ListRequest, Revision, Store, StoreError, Txn, TxnOutcome};
use prost_reflect::Value;
use rand::Rng;

use crate::admission;
use crate::allocator::{Plan, Resource, ServiceAllocator, ServiceNetwork};
use crate::filter::Filter;
use crate::watch_cache::WatchCache;

/// How many times a patch is retried when the object changes underneath it.
const PATCH_RETRIES: usize = 8;
/// Largest page a list reads from the store at once.
const STORE_PAGE: usize = 500;

/// Converts a store error at the edge between store and API.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Expired {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        other if other.retryable() => {
            ApiError::unavailable(format!("storage is unavailable: {other}"))
        }
        other => ApiError::internal(format!("storage error [{}]: {other}", other.code())),
    }
}

/// Options of every write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    /// Who writes (for admission checks that depend on the author, like RBAC escalation);
    /// `None` for the gateway's own writes.
    pub user: Option<crate::auth::UserInfo>,
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
    pub resource_version_match: String,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ListResult {
    /// Empty from [`Registry::list_stored`].
    pub items: Vec<Object>,
    /// Each item's stored bytes and revision (see [`Object::stored_encoding`]), in order.
    pub stored: Vec<(Bytes, Revision)>,
    pub resource_version: Revision,
    pub continue_token: String,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: String,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
    pub dry_run: bool,
}

/// The object store as the API sees it.
pub struct Registry {
    store: Arc<dyn Store>,
    cache: Arc<WatchCache>,
    services: ServiceAllocator,
    /// The RBAC authorizer, when RBAC is on: its escalation check is an admission step.
    rbac: std::sync::OnceLock<Arc<crate::rbac::Rbac>>,
    service_account_tokens: std::sync::atomic::AtomicBool,
}

/// `/registry/<group>/<plural>/<namespace>/<name>` (no namespace segment when cluster-scoped).
pub fn object_key(kind: &KindInfo, namespace: &str, name: &str) -> String {
    if kind.namespaced {
        format!("{}{namespace}/{name}", kind.storage_prefix())
    } else {
        format!("{}{name}", kind.storage_prefix())
    }
}

/// The key prefix for a list or watch in `namespace` ("" = all).
pub fn list_prefix(kind: &KindInfo, namespace: &str) -> String {
    if kind.namespaced && !namespace.is_empty() {
        format!("{}{namespace}/", kind.storage_prefix())
    } else {
        kind.storage_prefix()
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

pub(crate) fn random_suffix() -> String {
    // Kubernetes' alphabet for generated names: no vowels, no confusable characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Decodes a stored value, setting resourceVersion from the store's revision.
pub fn from_kv(kind: &'static KindInfo, kv: &KeyValue) -> Result<Object, ApiError> {
    object_at(kind, &kv.value, kv.mod_revision)
}

/// The object stored as `value` at `revision`.
fn object_at(
    kind: &'static KindInfo,
    value: &[u8],
    revision: Revision,
) -> Result<Object, ApiError> {
    let mut obj = Object::decode(kind, value)?;
    obj.set_type_meta();
    obj.set_resource_version(Some(revision));
    Ok(obj)
}

/// The bytes stored for an object: everything but resourceVersion (the store's revision is
/// the source of truth).
fn to_stored(obj: &Object) -> Bytes {
    let mut o = obj.clone();
    o.set_resource_version(None);
    Bytes::from(o.encode())
}

fn has_spec(kind: &KindInfo) -> bool {
    kind.descriptor().get_field_by_name("spec").is_some()
}

/// Continue tokens: the revision of the first page and the last key returned.
fn encode_continue(revision: Revision, last_key: &str) -> String {
    use base64::Engine as _;
    let json = serde_json::json!({"v": "navarch.k8s.io/v1", "rv": revision, "start": last_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    use base64::Engine as _;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = json["rv"].as_i64().ok_or_else(bad)?;
    let start = json["start"].as_str().ok_or_else(bad)?.to_string();
    Ok((rv, start))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, cache: Arc<WatchCache>) -> Self {
        Self::with_service_network(store, cache, ServiceNetwork::default())
    }

    /// A registry that gives Services addresses from `network`.
    pub fn with_service_network(
        store: Arc<dyn Store>,
        cache: Arc<WatchCache>,
        network: ServiceNetwork,
    ) -> Self {
        Self {
            store,
            cache,
            services: ServiceAllocator::new(network),
            rbac: std::sync::OnceLock::new(),
            service_account_tokens: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Turns on the ServiceAccount admission that mounts an API token into every pod
    /// (when the gateway issues service-account tokens).
    pub fn mount_service_account_tokens(&self) {
        self.service_account_tokens
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn mounts_service_account_tokens(&self) -> bool {
        self.service_account_tokens
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns on RBAC escalation prevention for writes of RBAC objects.
    pub fn set_rbac(&self, rbac: Arc<crate::rbac::Rbac>) {
        let _ = self.rbac.set(rbac);
    }

    pub(crate) fn rbac(&self) -> Option<&Arc<crate::rbac::Rbac>> {
        self.rbac.get()
    }

    /// The Service address allocator.
    pub fn service_allocator(&self) -> &ServiceAllocator {
        &self.services
    }

    /// Records the allocations of Services that have none (see [`ServiceAllocator::repair`]).
    pub async fn repair_service_allocations(&self) -> Result<(), ApiError> {
        let kind = kinds::of::<navarch_api::core::v1::Service>()
            .ok_or_else(|| ApiError::internal("Service is not a served kind"))?;
        let services = self.list(kind, "", &ListOptions::default()).await?;
        self.services.repair(&self.store, &services.items).await
    }

    pub fn cache(&self) -> &Arc<WatchCache> {
        &self.cache
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn read(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(Object, KeyValue)>, ApiError> {
        let key = object_key(kind, namespace, name);
        match self.store.get(&key, 0).await.map_err(store_error)? {
            Some(kv) => Ok(Some((from_kv(kind, &kv)?, kv))),
            None => Ok(None),
        }
    }

    /// Get one object.
    pub async fn get(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Object, ApiError> {
        check_scope(kind, namespace)?;
        self.read(kind, namespace, name)
            .await?
            .map(|(o, _)| o)
            .ok_or_else(|| ApiError::not_found(&kind.group_resource(), name))
    }

    /// List objects, filtered by selectors, a page at a time.
    pub async fn list(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let page = self.list_stored(kind, namespace, opts).await?;
        let items = page
            .stored
            .iter()
            .map(|(value, revision)| object_at(kind, value, *revision))
            .collect::<Result<_, _>>()?;
        Ok(ListResult { items, ..page })
    }

    /// [`Registry::list`] without decoding the items: only their stored bytes (filtered on
    /// the encoding), for replies that send them as they are.
    pub async fn list_stored(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let filter = Filter::new(kind, namespace, &opts.label_selector, &opts.field_selector)?;
        let (mut revision, mut start_after) = if opts.continue_token.is_empty() {
            let rv = match (
                opts.resource_version.as_str(),
                opts.resource_version_match.as_str(),
            ) {
                (rv, "Exact") if !rv.is_empty() && rv != "0" => {
                    rv.parse::<Revision>().map_err(|_| {
                        ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                    })?
                }
                (_, "" | "NotOlderThan" | "Exact") => 0,
                (_, other) => {
                    return Err(ApiError::bad_request(format!(
                        "unsupported resourceVersionMatch {other:?}"
                    )));
                }
            };
            (rv, None)
        } else {
            let (rv, start) = decode_continue(&opts.continue_token)?;
            (rv, Some(start))
        };
        let limit = usize::try_from(opts.limit).unwrap_or(0);
        let prefix = list_prefix(kind, namespace);
        let mut stored = Vec::new();
        loop {
            let want = if limit == 0 {
                STORE_PAGE
            } else {
                (limit - stored.len()).clamp(1, STORE_PAGE)
            };
            let page = self
                .store
                .list(ListRequest {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: want,
                    revision,
                })
                .await
                .map_err(store_error)?;
            revision = page.revision;
            let last_key = page.kvs.last().map(|kv| kv.key.clone());
            for kv in &page.kvs {
                if filter.matches_stored(kind, &kv.value) {
                    stored.push((kv.value.clone(), kv.mod_revision));
                }
            }
            if !page.more {
                return Ok(ListResult {
                    items: Vec::new(),
                    stored,
                    resource_version: revision,
                    continue_token: String::new(),
                });
            }
            start_after = last_key;
            if limit > 0 && stored.len() >= limit {
                let token = encode_continue(revision, start_after.as_deref().unwrap_or_default());
                return Ok(ListResult {
                    items: Vec::new(),
                    stored,
                    resource_version: revision,
                    continue_token: token,
                });
            }
        }
    }

    /// Create an object.
    pub async fn create(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        obj: Object,
        opts: &WriteOptions,
    ) -> Result<Object, ApiError> {
        self.create_stored(kind, namespace, obj, opts)
            .await
            .map(|(created, _)| created)
    }

    /// [`Registry::create`], also giving the bytes stored and their revision (`None` for a
    /// dry run), for a reply that sends them as they are.
    pub async fn create_stored(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        mut obj: Object,
        opts: &WriteOptions,
    ) -> Result<(Object, Option<(Bytes, Revision)>), ApiError> {
        check_scope(kind, namespace)?;
        let mut meta = obj.meta();
        if kind.namespaced {
            match meta.namespace.as_deref() {
                None | Some("") => meta.namespace = Some(namespace.to_string()),
                Some(ns) if ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
        } else {
            meta.namespace = None;
        }
        let generate = meta.name.as_deref().unwrap_or_default().is_empty()
            && !meta.generate_name.as_deref().unwrap_or_default().is_empty();
        let now = now_rfc3339();
        meta.uid = Some(uuid::Uuid::new_v4().to_string());
        meta.creation_timestamp = Some(now.clone());
        meta.resource_version = None;
        meta.deletion_timestamp = None;
        meta.deletion_grace_period_seconds = None;
        meta.generation = has_spec(kind).then_some(1);
        obj.set_meta(&meta);
        prepare_status_for_create(&mut obj);
        if kind.kind == "Job" {
            generate_job_selector(&mut obj)?;
        }
        navarch_api::defaults::apply_defaults(kind, &mut obj.message);
        let name_hint = meta.name.clone().unwrap_or_default();
        if generate {
            // Validate with a placeholder name; the real one is chosen at persist time.
            obj.update_meta(|m| {
                m.name = Some(format!(
                    "{}{}",
                    m.generate_name.clone().unwrap_or_default(),
                    "xxxxx"
                ))
            });
        }
        admission::mutate_create(self, kind, &mut obj).await?;
        validate(kind, &obj, None, &name_hint)?;
        admission::admit_create(self, kind, &obj).await?;
        admission::admit_write(self, &obj, opts)?;
        if !opts.field_manager.is_empty() {
            record_manager(&mut obj, None, &opts.field_manager, &now);
        }
        // Services allocate addresses per attempt, from the object as it was.
        let unallocated = (kind.kind == "Service").then(|| obj.clone());
        let mut taken = HashSet::new();
        let mut attempt = 0;
        loop {
            if generate {
                let prefix = meta.generate_name.clone().unwrap_or_default();
                obj.update_meta(|m| m.name = Some(format!("{prefix}{}", random_suffix())));
            }
            let name = obj.name();
            let key = object_key(kind, namespace, &name);
            let plan = if let Some(unallocated) = unallocated.as_ref().filter(|_| !opts.dry_run) {
                let mut fresh = unallocated.clone();
                fresh.update_meta(|m| m.name = Some(name.clone()));
                let plan = self
                    .services
                    .plan(&self.store, &mut fresh, None, &taken)
                    .await?;
                obj = fresh;
                plan
            } else {
                Plan::default()
            };
            if opts.dry_run {
                return Ok((obj, None));
            }
            let value = to_stored(&obj);
            let txn = plan.apply_to(
                Txn::new()
                    .when(&key, Compare::Absent)
                    .put(&key, value.clone()),
                &ServiceAllocator::owner_record(&obj),
            );
            let outcome = self.store.txn(txn).await.map_err(store_error)?;
            match outcome {
                TxnOutcome::Committed { revision, .. } => {
                    obj.set_resource_version(Some(revision));
                    tracing::debug!(kind = kind.kind, namespace, name, revision, "created");
                    return Ok((obj, Some((value, revision))));
                }
                TxnOutcome::Failed { ref current }
                    if current.first().is_some_and(Option::is_none) =>
                {
                    // The name was free: an address this create wanted was taken meanwhile.
                    let Some(claim) = plan.taken(&outcome, 1) else {
                        return Err(ApiError::internal("service allocation failed"));
                    };
                    if claim.requested_at.is_some() {
                        return Err(ServiceAllocator::already_allocated(&obj, claim));
                    }
                    taken.insert(claim.resource);
                    attempt += 1;
                    if attempt >= 64 {
                        return Err(ApiError::internal(
                            "could not allocate a service address: too much contention",
                        ));
                    }
                }
                TxnOutcome::Failed { .. } if generate && attempt < 7 => attempt += 1,
                TxnOutcome::Failed { .. } if generate => {
                    return Err(ApiError::internal("could not generate a unique name"));
                }
                TxnOutcome::Failed { .. } => {
                    return Err(ApiError::already_exists(&kind.group_resource(), &name));
                }
            }
        }
    }

    /// Replace an object (spec and metadata; status is kept for kinds with a status
    /// subresource). With `status_only`, only the status of `obj` is taken.
    pub async fn update(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
        obj: Object,
        opts: &WriteOptions,
        status_only: bool,
    ) -> Result<Object, ApiError> {
        check_scope(kind, namespace)?;
        if status_only && !kind.status {
            return Err(ApiError::not_found(&kind.group_resource(), name).on(
                kind.group,
                kind.plural,
                name,
            ));
        }
        let body_name = obj.name();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = obj.namespace();
        if kind.namespaced && !body_ns.is_empty() && body_ns != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let (current, kv) = self
            .read(kind, namespace, name)
            .await?
            .ok_or_else(|| ApiError::not_found(&kind.group_resource(), name))?;
        let expected = obj.resource_version()?;
        if expected != 0 && expected != kv.mod_revision {
            return Err(ApiError::conflict(
                &kind.group_resource(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let merged = merge_for_update(kind, &current, obj, status_only);
        self.write_update(kind, namespace, name, current, kv, merged, opts)
            .await
    }

    /// Validates and persists `merged` over `current` (read at `kv`), with the update rules.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
        current: Object,
        kv: KeyValue,
        mut merged: Object,
        opts: &WriteOptions,
    ) -> Result<Object, ApiError> {
        navarch_api::defaults::apply_defaults(kind, &mut merged.message);
        if has_spec(kind) && !merged.same_spec(&current) {
            let generation = current.meta().generation.unwrap_or(0) + 1;
            merged.update_meta(|m| m.generation = Some(generation));
        }
        validate(kind, &merged, Some(&current), name)?;
        admission::admit_write(self, &merged, opts)?;
        if !opts.field_manager.is_empty() {
            record_manager(
                &mut merged,
                Some(&current),
                &opts.field_manager,
                &now_rfc3339(),
            );
        }
        merged.set_resource_version(Some(kv.mod_revision));
        if merged == current {
            return Ok(current);
        }
        if opts.dry_run {
            return Ok(merged);
        }
        let key = object_key(kind, namespace, name);
        let meta = merged.meta();
        let finalized = meta.deletion_timestamp.is_some() && meta.finalizers.is_empty();
        let is_service = kind.kind == "Service";
        let mut taken = HashSet::new();
        let unallocated = merged.clone();
        let (merged, outcome, plan) = loop {
            let mut merged = unallocated.clone();
            let plan = match (is_service, finalized) {
                (true, true) => released(&current)?,
                (true, false) => {
                    self.services
                        .plan(&self.store, &mut merged, Some(&current), &taken)
                        .await?
                }
                (false, _) => Plan::default(),
            };
            let txn = if finalized {
                Txn::new()
                    .when(&key, Compare::ModRevision(kv.mod_revision))
                    .delete(&key)
            } else {
                Txn::new()
                    .when(&key, Compare::ModRevision(kv.mod_revision))
                    .put(&key, to_stored(&merged))
            };
            let txn = plan.apply_to(txn, &ServiceAllocator::owner_record(&merged));
            let outcome = self.store.txn(txn).await.map_err(store_error)?;
            if let TxnOutcome::Failed { current: now } = &outcome
                && now
                    .first()
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.mod_revision == kv.mod_revision)
                && let Some(claim) = plan.taken(&outcome, 1)
            {
                if claim.requested_at.is_some() {
                    return Err(ServiceAllocator::already_allocated(&merged, claim));
                }
                if taken.len() >= 64 {
                    return Err(ApiError::internal(
                        "could not allocate a service address: too much contention",
                    ));
                }
                taken.insert(claim.resource);
                continue;
            }
            break (merged, outcome, plan);
        };
        let mut merged = merged;
        if !plan.claims.is_empty() || !plan.releases.is_empty() {
            tracing::debug!(
                namespace,
                name,
                claims = plan.claims.len(),
                releases = plan.releases.len(),
                "service allocations changed"
            );
        }
        match outcome {
            TxnOutcome::Committed { revision, .. } => {
                merged.set_resource_version(Some(revision));
                tracing::debug!(
                    kind = kind.kind,
                    namespace,
                    name,
                    revision,
                    finalized,
                    "updated"
                );
                Ok(merged)
            }
            TxnOutcome::Failed { current } => {
                Err(if current.first().is_some_and(Option::is_none) {
                    ApiError::not_found(&kind.group_resource(), name)
                } else {
                    ApiError::conflict(
                        &kind.group_resource(),
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    )
                })
            }
        }
    }

    /// Patch an object (all four Kubernetes patch types), atomically: the patch is applied to
    /// the current object and written with that object's revision as a precondition, retrying
    /// when the object changed in between.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
        patch_type: &str,
        patch: &[u8],
        opts: &WriteOptions,
        force: bool,
        status_only: bool,
    ) -> Result<Object, ApiError> {
        use navarch_api::patch::{PatchOptions, PatchType};
        check_scope(kind, namespace)?;
        let ptype = PatchType::from_content_type(patch_type).ok_or_else(|| {
            ApiError::new(Reason::UnsupportedMediaType, format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {patch_type:?})"))
        })?;
        if matches!(ptype, PatchType::Apply) && opts.field_manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let patch_opts = PatchOptions {
            field_manager: opts.field_manager.clone(),
            force,
            now: now_rfc3339(),
            subresource: status_only.then(|| "status".to_string()),
        };
        for _ in 0..PATCH_RETRIES {
            let Some((current, kv)) = self.read(kind, namespace, name).await? else {
                if matches!(ptype, PatchType::Apply) && !status_only {
                    // Server-side apply creates what does not exist.
                    let patched = navarch_api::patch::apply_patch(
                        kind,
                        &serde_json::Value::Null,
                        ptype,
                        patch,
                        &patch_opts,
                    )?;
                    let (obj, _) = Object::from_json(kind, &patched, opts.field_validation)?;
                    if obj.name() != name {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            obj.name()
                        )));
                    }
                    let create_opts = WriteOptions {
                        field_manager: String::new(),
                        ..opts.clone()
                    };
                    return match self.create(kind, namespace, obj, &create_opts).await {
                        Err(e) if e.reason == Reason::AlreadyExists => continue,
                        other => other,
                    };
                }
                return Err(ApiError::not_found(&kind.group_resource(), name));
            };
            let current_json = current.to_json();
            let patched =
                navarch_api::patch::apply_patch(kind, &current_json, ptype, patch, &patch_opts)?;
            let (mut obj, _) = Object::from_json(kind, &patched, opts.field_validation)?;
            // The patch may not move the object or claim another's identity.
            obj.update_meta(|m| {
                if m.resource_version.as_deref().unwrap_or_default().is_empty() {
                    m.resource_version = Some(kv.mod_revision.to_string());
                }
            });
            if obj.resource_version()? != kv.mod_revision {
                return Err(ApiError::conflict(
                    &kind.group_resource(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            if obj.name() != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    obj.name()
                )));
            }
            let merged = merge_for_update(kind, &current, obj, status_only);
            // Apply records its own managed fields; other patches are recorded as updates.
            let write_opts = if matches!(ptype, PatchType::Apply) {
                WriteOptions {
                    field_manager: String::new(),
                    ..opts.clone()
                }
            } else {
                opts.clone()
            };
            match self
                .write_update(kind, namespace, name, current, kv, merged, &write_opts)
                .await
            {
                Err(e) if e.reason == Reason::Conflict => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(
            &kind.group_resource(),
            name,
            "the object kept changing while the patch was applied",
        ))
    }

    /// A system write that is not a user update (pod binding): `change` edits the current
    /// object, which is then written with its revision as precondition (retrying on conflict),
    /// without the update strategy's immutability rules. It works on the kind's generated type
    /// `T`, not the dynamic form (one decode and one encode: bindings are a hot path), and
    /// returns the revision written (0 for a dry run).
    pub async fn guaranteed_update<T: prost::Message + Default>(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
        dry_run: bool,
        change: impl Fn(&mut T) -> Result<(), ApiError>,
    ) -> Result<Revision, ApiError> {
        let key = object_key(kind, namespace, name);
        for _ in 0..PATCH_RETRIES {
            let kv = self
                .store
                .get(&key, 0)
                .await
                .map_err(store_error)?
                .ok_or_else(|| ApiError::not_found(&kind.group_resource(), name))?;
            let mut typed = T::decode(kv.value.as_ref())
                .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kind.kind)))?;
            change(&mut typed)?;
            if dry_run {
                return Ok(0);
            }
            let txn = Txn::new()
                .when(&key, Compare::ModRevision(kv.mod_revision))
                .put(&key, Bytes::from(typed.encode_to_vec()));
            if let TxnOutcome::Committed { revision, .. } =
                self.store.txn(txn).await.map_err(store_error)?
            {
                return Ok(revision);
            }
        }
        Err(ApiError::conflict(
            &kind.group_resource(),
            name,
            "the object kept changing",
        ))
    }

    /// Delete an object: immediately, or gracefully (deletionTimestamp set, object kept) when
    /// it has finalizers, a propagation policy that needs one, or is a running pod.
    pub async fn delete(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Object, ApiError> {
        check_scope(kind, namespace)?;
        for _ in 0..PATCH_RETRIES {
            let (current, kv) = self
                .read(kind, namespace, name)
                .await?
                .ok_or_else(|| ApiError::not_found(&kind.group_resource(), name))?;
            let meta = current.meta();
            if !opts.precondition_uid.is_empty()
                && meta.uid.as_deref() != Some(opts.precondition_uid.as_str())
            {
                return Err(ApiError::conflict(
                    &kind.group_resource(),
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                        opts.precondition_uid,
                        meta.uid.clone().unwrap_or_default()
                    ),
                ));
            }
            if !opts.precondition_resource_version.is_empty()
                && opts.precondition_resource_version != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    &kind.group_resource(),
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {}",
                        opts.precondition_resource_version, kv.mod_revision
                    ),
                ));
            }
            let mut graceful = graceful_deletion(kind, &current, opts)?;
            if kind.kind == "Namespace"
                && meta.finalizers.is_empty()
                && opts.propagation_policy != "Foreground"
                && opts.propagation_policy != "Orphan"
                && self.namespace_is_empty(name).await?
            {
                graceful = None;
            }
            let key = object_key(kind, namespace, name);
            let outcome = match graceful {
                Some(updated) => {
                    if updated == current || opts.dry_run {
                        return Ok(updated);
                    }
                    let txn = Txn::new()
                        .when(&key, Compare::ModRevision(kv.mod_revision))
                        .put(&key, to_stored(&updated));
                    let outcome = self.store.txn(txn).await.map_err(store_error)?;
                    if let TxnOutcome::Committed { revision, .. } = outcome {
                        let mut updated = updated;
                        updated.set_resource_version(Some(revision));
                        tracing::debug!(
                            kind = kind.kind,
                            namespace,
                            name,
                            revision,
                            "deletion started"
                        );
                        return Ok(updated);
                    }
                    outcome
                }
                None => {
                    if opts.dry_run {
                        return Ok(current);
                    }
                    let mut txn = Txn::new()
                        .when(&key, Compare::ModRevision(kv.mod_revision))
                        .delete(&key);
                    if kind.kind == "Service" {
                        txn = released(&current)?.apply_to(txn, &[]);
                    }
                    let outcome = self.store.txn(txn).await.map_err(store_error)?;
                    if let TxnOutcome::Committed { revision, .. } = outcome {
                        let mut gone = current;
                        gone.set_resource_version(Some(revision));
                        tracing::debug!(kind = kind.kind, namespace, name, revision, "deleted");
                        return Ok(gone);
                    }
                    outcome
                }
            };
            debug_assert!(!outcome.is_committed());
        }
        Err(ApiError::conflict(
            &kind.group_resource(),
            name,
            "the object kept changing while it was deleted",
        ))
    }

    /// Delete every object a list would return.
    pub async fn delete_collection(
        &self,
        kind: &'static KindInfo,
        namespace: &str,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Object>, ApiError> {
        let items = self
            .list(
                kind,
                namespace,
                &ListOptions {
                    limit: 0,
                    continue_token: String::new(),
                    ..list.clone()
                },
            )
            .await?;
        let mut out = Vec::with_capacity(items.items.len());
        for obj in items.items {
            match self.delete(kind, &obj.namespace(), &obj.name(), opts).await {
                Ok(o) => out.push(o),
                Err(e) if e.reason == Reason::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Creates the namespaces every cluster has, if missing.
    pub async fn ensure_system_namespaces(&self) -> Result<(), ApiError> {
        let kind = kinds::by_resource("", "v1", "namespaces").expect("namespaces are served");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if self.read(kind, "", name).await?.is_some() {
                continue;
            }
            let mut ns = Object::new(kind);
            ns.set_type_meta();
            ns.set_meta(&ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            });
            match self.create(kind, "", ns, &WriteOptions::default()).await {
                Ok(_) => tracing::info!(namespace = name, "created system namespace"),
                Err(e) if e.reason == Reason::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether no namespaced object of any kind is left in `namespace`.
    pub async fn namespace_is_empty(&self, namespace: &str) -> Result<bool, ApiError> {
        for kind in kinds::KINDS.iter().filter(|k| k.namespaced) {
            let page = self
                .store
                .list(ListRequest {
                    prefix: list_prefix(kind, namespace),
                    start_after: None,
                    limit: 1,
                    revision: 0,
                })
                .await
                .map_err(store_error)?;
            if !page.kvs.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether a namespace exists and is not terminating (for admission).
    pub async fn namespace_phase(&self, name: &str) -> Result<Option<String>, ApiError> {
        if let Some(terminating) = self.cache.namespace(name) {
            return Ok(Some(if terminating {
                "Terminating".into()
            } else {
                "Active".into()
            }));
        }
        let kind = kinds::by_resource("", "v1", "namespaces").expect("namespaces are served");
        let Some((ns, _)) = self.read(kind, "", name).await? else {
            return Ok(None);
        };
        let terminating = ns.meta().deletion_timestamp.is_some();
        Ok(Some(if terminating {
            "Terminating".into()
        } else {
            "Active".into()
        }))
    }

    /// Waits until the watch cache has caught up with the store's current revision, so a
    /// watch started right after a write sees it.
    pub async fn sync_cache(&self) {
        self.cache
            .wait_for(self.store.current_revision(), Duration::from_secs(5))
            .await;
    }
}

fn check_scope(kind: &KindInfo, namespace: &str) -> Result<(), ApiError> {
    if !kind.namespaced && !namespace.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} is not namespaced; no namespace may be given",
            kind.plural
        )));
    }
    Ok(())
}

fn validate(
    kind: &KindInfo,
    obj: &Object,
    old: Option<&Object>,
    name: &str,
) -> Result<(), ApiError> {
    let errors: Vec<FieldError> =
        navarch_api::validation::validate(kind, &obj.message, old.map(|o| &o.message));
    if errors.is_empty() {
        return Ok(());
    }
    let name = if name.is_empty() {
        obj.name()
    } else {
        name.to_string()
    };
    Err(ApiError::invalid(kind.group, kind.kind, &name, errors))
}

/// A Job without `manualSelector: true` gets a selector on its own uid, and its template the
/// matching labels, as Kubernetes' job strategy does on create.
fn generate_job_selector(obj: &mut Object) -> Result<(), ApiError> {
    let mut json = obj.to_json();
    if json
        .pointer("/spec/manualSelector")
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        return Ok(());
    }
    let uid = json
        .pointer("/metadata/uid")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = json
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(spec) = json
        .get_mut("spec")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return Ok(());
    };
    if spec.get("selector").is_some_and(|s| !s.is_null()) {
        return Err(ApiError::invalid(
            "batch",
            "Job",
            &name,
            vec![FieldError::invalid(
                "spec.selector",
                "",
                "`selector` will be auto-generated",
            )],
        ));
    }
    spec.insert(
        "selector".into(),
        serde_json::json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec
        .entry("template")
        .or_insert_with(|| serde_json::json!({}));
    let labels = template
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| serde_json::json!({})))
        .and_then(|m| m.as_object_mut())
        .map(|m| m.entry("labels").or_insert_with(|| serde_json::json!({})));
    if let Some(serde_json::Value::Object(labels)) = labels {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.insert(k.into(), serde_json::Value::String(v.clone()));
        }
    }
    *obj = Object::from_json(obj.kind, &json, FieldValidation::Ignore)?.0;
    Ok(())
}

/// The plan of a Service's deletion: release everything it holds.
fn released(service: &Object) -> Result<Plan, ApiError> {
    let spec = service
        .to_typed::<navarch_api::core::v1::Service>()?
        .spec
        .unwrap_or_default();
    Ok(Plan {
        claims: Vec::new(),
        releases: crate::allocator::held(&spec)
            .into_iter()
            .collect::<Vec<Resource>>(),
    })
}

/// Service fields the cluster allocated (IPs, node ports) survive an update that omits them,
/// as Kubernetes' service registry keeps them.
fn keep_service_allocations(current: &Object, merged: &mut Object) {
    let cur = current.to_json();
    let mut new = merged.to_json();
    let (Some(cur_spec), Some(new_spec)) = (
        cur.get("spec"),
        new.get_mut("spec")
            .and_then(serde_json::Value::as_object_mut),
    ) else {
        return;
    };
    let type_changed =
        cur_spec.get("type") != new_spec.get("type") && new_spec.get("type").is_some();
    for field in [
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "healthCheckNodePort",
    ] {
        if !new_spec.contains_key(field)
            && !type_changed
            && let Some(v) = cur_spec.get(field)
        {
            new_spec.insert(field.into(), v.clone());
        }
    }
    // Node ports are kept only while both the old and the new type use them
    // (`patchAllocatedValues`); moving to ClusterIP drops them.
    let node_port_type = |t: Option<&serde_json::Value>| {
        matches!(
            t.and_then(serde_json::Value::as_str),
            Some("NodePort" | "LoadBalancer")
        )
    };
    let keep_node_ports = node_port_type(cur_spec.get("type"))
        && node_port_type(new_spec.get("type").or(cur_spec.get("type")));
    if keep_node_ports
        && let (Some(serde_json::Value::Array(cur_ports)), Some(serde_json::Value::Array(ports))) =
            (cur_spec.get("ports"), new_spec.get_mut("ports"))
    {
        for p in ports.iter_mut() {
            if p.get("nodePort").is_none()
                && let Some(cp) = cur_ports.iter().find(|cp| {
                    cp.get("port") == p.get("port")
                        && cp.get("protocol") == p.get("protocol").or(cp.get("protocol"))
                })
                && let Some(np) = cp.get("nodePort")
            {
                p["nodePort"] = np.clone();
            }
        }
    }
    if let Ok((o, _)) = Object::from_json(merged.kind, &new, FieldValidation::Ignore) {
        *merged = o;
    }
}

/// Status on create: Kubernetes resets it, except where the creator legitimately reports it.
fn prepare_status_for_create(obj: &mut Object) {
    match obj.kind.kind {
        // Nodes register with their capacity and conditions.
        "Node" => {}
        "Pod" => set_status_json(obj, serde_json::json!({"phase": "Pending"})),
        "Namespace" => set_status_json(obj, serde_json::json!({"phase": "Active"})),
        _ if obj.kind.status => obj.set_field("status", None),
        _ => {}
    }
}

fn set_status_json(obj: &mut Object, status: serde_json::Value) {
    let Some(field) = obj.kind.descriptor().get_field_by_name("status") else {
        return;
    };
    let prost_reflect::Kind::Message(desc) = field.kind() else {
        return;
    };
    if let Ok(d) = navarch_api::codec::from_json(&desc, &status, FieldValidation::Ignore) {
        obj.set_field("status", Some(Value::Message(d.message)));
    }
}

/// The object to write for an update: the new object with what the caller may not change
/// taken from the current one.
fn merge_for_update(kind: &KindInfo, current: &Object, new: Object, status_only: bool) -> Object {
    let mut merged = if status_only {
        let mut m = current.clone();
        m.set_field("status", new.field("status"));
        m
    } else {
        let mut m = new;
        if kind.status {
            m.set_field("status", current.field("status"));
        }
        m
    };
    let cur = current.meta();
    let keep_managed = !status_only;
    merged.update_meta(|m| {
        m.name = cur.name.clone();
        m.namespace = cur.namespace.clone();
        m.uid = cur.uid.clone();
        m.creation_timestamp = cur.creation_timestamp.clone();
        m.deletion_timestamp = cur.deletion_timestamp.clone();
        m.deletion_grace_period_seconds = cur.deletion_grace_period_seconds;
        m.generation = cur.generation;
        m.generate_name = cur.generate_name.clone().or(m.generate_name.take());
        if keep_managed && m.managed_fields.is_empty() {
            m.managed_fields = cur.managed_fields.clone();
        }
        // A deleting object may only lose finalizers, not gain new ones... except the
        // propagation finalizers the gateway itself sets.
    });
    merged.set_type_meta();
    if kind.kind == "Service" && !status_only {
        keep_service_allocations(current, &mut merged);
    }
    merged
}

/// Records a non-apply write by `manager` in managedFields.
fn record_manager(obj: &mut Object, old: Option<&Object>, manager: &str, now: &str) {
    let old_json = old.map(Object::to_json).unwrap_or(serde_json::Value::Null);
    let updated =
        navarch_api::patch::record_update(obj.kind, &old_json, &obj.to_json(), manager, now);
    if let Ok((o, _)) = Object::from_json(obj.kind, &updated, FieldValidation::Ignore) {
        let managed = o.meta().managed_fields;
        obj.update_meta(|m| m.managed_fields = managed);
    }
}

/// Decides how a delete proceeds: `Some(object to write)` when the object stays for now with
/// a deletionTimestamp, `None` when it is removed at once.
fn graceful_deletion(
    kind: &KindInfo,
    current: &Object,
    opts: &DeleteOptions,
) -> Result<Option<Object>, ApiError> {
    let meta = current.meta();
    let mut finalizers = meta.finalizers.clone();
    match opts.propagation_policy.as_str() {
        "" | "Background" => {}
        "Foreground" => {
            if !finalizers.iter().any(|f| f == "foregroundDeletion") {
                finalizers.push("foregroundDeletion".into());
            }
        }
        "Orphan" => {
            if !finalizers.iter().any(|f| f == "orphan") {
                finalizers.push("orphan".into());
            }
        }
        other => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![FieldError::not_supported(
                    "propagationPolicy",
                    other,
                    &["Foreground", "Background", "Orphan"],
                )],
            ));
        }
    }
    if let Some(g) = opts.grace_period_seconds
        && g < 0
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            vec![FieldError::invalid(
                "gracePeriodSeconds",
                g,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let pod_grace = pod_grace_period(kind, current, opts);
    // Namespaces with content are finalized by the namespace controller.
    let namespace_finalizer = kind.kind == "Namespace";
    if finalizers.is_empty() && pod_grace.is_none() && !namespace_finalizer {
        return Ok(None);
    }
    let mut updated = current.clone();
    let now = jiff::Timestamp::now();
    let grace = pod_grace.unwrap_or(0);
    updated.update_meta(|m| {
        m.finalizers = finalizers;
        if m.deletion_timestamp.is_none()
            || pod_grace.is_some_and(|g| Some(g) < m.deletion_grace_period_seconds)
        {
            let at = now
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now);
            m.deletion_timestamp = Some(at.round(jiff::Unit::Second).unwrap_or(at).to_string());
            m.deletion_grace_period_seconds = Some(grace);
        }
    });
    if namespace_finalizer {
        set_status_json(&mut updated, serde_json::json!({"phase": "Terminating"}));
    }
    Ok(Some(updated))
}

/// A scheduled, non-terminal pod is deleted gracefully (its node agent stops it, then
/// finishes the delete); `None` means delete at once.
fn pod_grace_period(kind: &KindInfo, pod: &Object, opts: &DeleteOptions) -> Option<i64> {
    if kind.kind != "Pod" {
        return None;
    }
    let json = pod.to_json();
    let node = json
        .pointer("/spec/nodeName")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let phase = json
        .pointer("/status/phase")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
        return None;
    }
    let default = json
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(30);
    let grace = opts.grace_period_seconds.unwrap_or(default);
    (grace > 0).then_some(grace)
}
