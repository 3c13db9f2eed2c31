//! Workloads: Deployment, ReplicaSet, DaemonSet, StatefulSet, ControllerRevision
//! (`pkg/apis/apps/validation`) and Job, CronJob (`pkg/apis/batch/validation`).
//!
//! On update, `spec.selector` of the apps/v1 kinds is immutable, as Kubernetes' registry
//! strategies enforce for apps/v1.

use prost_reflect::{DynamicMessage, Value};

use super::cron;
use super::meta::{NameRule, validate_annotations, validate_label_selector, validate_labels};
use super::names::{is_qualified_name, is_valid_percent};
use super::pod::{SpecContext, template_labels, validate_pod_template_spec, validate_pvc_spec};
use super::{
    Errs, Path, each, forbidden, go_map, go_selector, go_selector_opt, immutable, invalid,
    invalid_str, nonnegative, not_supported, or_default, q, required, s, validate_meta,
};
use crate::FieldError;
use crate::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy,
    ReplicaSet, StatefulSet, StatefulSetSpec,
};
use crate::batch::v1::{CronJob, Job, JobSpec, JobTemplateSpec, PodFailurePolicy};
use crate::core::v1::PodTemplateSpec;
use crate::meta::v1::{IntOrString, LabelSelector, int_or_string};
use crate::selectors;

// ---- shared ---------------------------------------------------------------------------------

/// The `selector` / template-labels rules shared by the apps kinds. `word` names the kind in
/// Kubernetes' "empty selector is invalid for …" message.
fn validate_selector_and_template(
    selector: &Option<LabelSelector>,
    template: &Option<PodTemplateSpec>,
    word: &str,
    spec_path: &Path,
    require: bool,
    errs: &mut Errs,
) {
    let selector_path = spec_path.child("selector");
    match selector {
        None => {
            if require {
                errs.push(required(&selector_path, ""));
            }
        }
        Some(sel) => {
            validate_label_selector(sel, &selector_path, errs);
            if sel.match_labels.is_empty() && sel.match_expressions.is_empty() {
                errs.push(invalid(
                    &selector_path,
                    go_selector(sel),
                    format!("empty selector is invalid for {word}"),
                ));
            }
        }
    }
    let labels = template_labels(template);
    let matches = match selector {
        // A missing selector selects nothing, so it cannot match the template.
        None => false,
        Some(sel) => match selectors::LabelSelector::from_meta(sel) {
            Ok(parsed) => parsed.is_empty() || parsed.matches(&labels),
            Err(_) => {
                errs.push(invalid(
                    &selector_path,
                    go_selector(sel),
                    "invalid label selector",
                ));
                true
            }
        },
    };
    if !matches {
        errs.push(invalid(
            &spec_path
                .child("template")
                .child("metadata")
                .child("labels"),
            go_map(&labels),
            "`selector` does not match template `labels`",
        ));
    }
}

/// Pod template rules of the always-running workloads: restartPolicy Always, no deadline.
fn validate_long_running_template(
    template: &Option<PodTemplateSpec>,
    ctx: SpecContext<'_>,
    kind: &str,
    spec_path: &Path,
    errs: &mut Errs,
) {
    let template_path = spec_path.child("template");
    validate_pod_template_spec(&or_default(template), ctx, &template_path, errs);
    let spec = template.as_ref().and_then(|t| t.spec.as_ref());
    let restart_policy = spec.map_or("", |s| s.restart_policy.as_deref().unwrap_or(""));
    if restart_policy != "Always" {
        errs.push(not_supported(
            &template_path.child("spec").child("restartPolicy"),
            restart_policy,
            &["Always"],
        ));
    }
    if spec.is_some_and(|s| s.active_deadline_seconds.is_some()) {
        errs.push(forbidden(
            &template_path.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// An int-or-string read the way `intstr` does: a missing value is the int 0.
enum IntOrPercent<'a> {
    Int(i32),
    Str(&'a str),
}

fn int_or_percent(v: &Option<IntOrString>) -> IntOrPercent<'_> {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(int_or_string::Value::StrVal(s)) => IntOrPercent::Str(s),
        Some(int_or_string::Value::IntVal(i)) => IntOrPercent::Int(*i),
        None => IntOrPercent::Int(0),
    }
}

impl IntOrPercent<'_> {
    /// `intstr.IntOrString.String()`: unquoted.
    fn render(&self) -> String {
        match self {
            IntOrPercent::Int(i) => i.to_string(),
            IntOrPercent::Str(s) => (*s).to_string(),
        }
    }

    /// `getIntOrPercentValue`.
    fn value(&self) -> i64 {
        match self {
            IntOrPercent::Int(i) => i64::from(*i),
            IntOrPercent::Str(s) => s.strip_suffix('%').unwrap_or(s).parse().unwrap_or(0),
        }
    }

    fn percent(&self) -> Option<i64> {
        match self {
            IntOrPercent::Str(s) if is_valid_percent(s).is_empty() => {
                s.strip_suffix('%').and_then(|v| v.parse().ok())
            }
            _ => None,
        }
    }
}

/// `ValidatePositiveIntOrPercent`.
fn validate_positive_int_or_percent(v: &IntOrPercent<'_>, path: &Path, errs: &mut Errs) {
    match v {
        IntOrPercent::Str(s) => {
            for msg in is_valid_percent(s) {
                errs.push(invalid(path, v.render(), msg));
            }
        }
        IntOrPercent::Int(i) => nonnegative(errs, path, i64::from(*i)),
    }
}

/// `IsNotMoreThan100Percent`.
fn validate_not_more_than_100_percent(v: &IntOrPercent<'_>, path: &Path, errs: &mut Errs) {
    if v.percent().is_some_and(|p| p > 100) {
        errs.push(invalid(path, v.render(), "must not be greater than 100%"));
    }
}

fn nonnegative_opt(errs: &mut Errs, path: &Path, value: Option<i32>) {
    if let Some(v) = value {
        nonnegative(errs, path, i64::from(v));
    }
}

/// apps/v1 selectors cannot change.
fn selector_immutable(new: &Option<LabelSelector>, old: &Option<LabelSelector>, errs: &mut Errs) {
    immutable(errs, &Path::new("spec").child("selector"), new, old, || {
        go_selector_opt(new)
    });
}

// ---- Deployment -----------------------------------------------------------------------------

/// Validates a Deployment on create, or on update against `old`.
pub fn validate_deployment(d: &Deployment, old: Option<&Deployment>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &d.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&d.spec);
    let path = Path::new("spec");
    nonnegative_opt(&mut errs, &path.child("replicas"), spec.replicas);
    validate_selector_and_template(
        &spec.selector,
        &spec.template,
        "deployment",
        &path,
        true,
        &mut errs,
    );
    validate_long_running_template(
        &spec.template,
        SpecContext::default(),
        "ReplicaSet",
        &path,
        &mut errs,
    );
    validate_deployment_strategy(
        &or_default(&spec.strategy),
        &path.child("strategy"),
        &mut errs,
    );
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    nonnegative(
        &mut errs,
        &path.child("minReadySeconds"),
        i64::from(min_ready),
    );
    nonnegative_opt(
        &mut errs,
        &path.child("revisionHistoryLimit"),
        spec.revision_history_limit,
    );
    if let Some(deadline) = spec.progress_deadline_seconds {
        nonnegative(
            &mut errs,
            &path.child("progressDeadlineSeconds"),
            i64::from(deadline),
        );
        if deadline <= min_ready {
            errs.push(invalid(
                &path.child("progressDeadlineSeconds"),
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        selector_immutable(&spec.selector, &or_default(&old.spec).selector, &mut errs);
    }
    errs
}

fn validate_deployment_strategy(strategy: &DeploymentStrategy, path: &Path, errs: &mut Errs) {
    match s(&strategy.r#type) {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(required(
                &path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let rp = path.child("rollingUpdate");
                let (unavailable, surge) = (
                    int_or_percent(&ru.max_unavailable),
                    int_or_percent(&ru.max_surge),
                );
                validate_positive_int_or_percent(&unavailable, &rp.child("maxUnavailable"), errs);
                validate_positive_int_or_percent(&surge, &rp.child("maxSurge"), errs);
                if unavailable.value() == 0 && surge.value() == 0 {
                    errs.push(invalid(
                        &rp.child("maxUnavailable"),
                        unavailable.render(),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                validate_not_more_than_100_percent(&unavailable, &rp.child("maxUnavailable"), errs);
            }
        },
        other => errs.push(not_supported(path, other, &["Recreate", "RollingUpdate"])),
    }
}

// ---- ReplicaSet -------------------------------------------------------------------------------

/// Validates a ReplicaSet on create, or on update against `old`.
pub fn validate_replica_set(rs: &ReplicaSet, old: Option<&ReplicaSet>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &rs.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&rs.spec);
    let path = Path::new("spec");
    nonnegative_opt(&mut errs, &path.child("replicas"), spec.replicas);
    nonnegative_opt(
        &mut errs,
        &path.child("minReadySeconds"),
        spec.min_ready_seconds,
    );
    // Kubernetes' message says "deployment" for ReplicaSets too.
    validate_selector_and_template(
        &spec.selector,
        &spec.template,
        "deployment",
        &path,
        true,
        &mut errs,
    );
    validate_long_running_template(
        &spec.template,
        SpecContext::default(),
        "ReplicaSet",
        &path,
        &mut errs,
    );
    if let Some(old) = old {
        selector_immutable(&spec.selector, &or_default(&old.spec).selector, &mut errs);
    }
    errs
}

// ---- DaemonSet --------------------------------------------------------------------------------

/// Validates a DaemonSet on create, or on update against `old`.
pub fn validate_daemon_set(ds: &DaemonSet, old: Option<&DaemonSet>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &ds.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&ds.spec);
    let path = Path::new("spec");
    validate_selector_and_template(
        &spec.selector,
        &spec.template,
        "daemonset",
        &path,
        true,
        &mut errs,
    );
    validate_long_running_template(
        &spec.template,
        SpecContext::default(),
        "DaemonSet",
        &path,
        &mut errs,
    );
    nonnegative_opt(
        &mut errs,
        &path.child("minReadySeconds"),
        spec.min_ready_seconds,
    );
    validate_daemon_set_strategy(
        &or_default(&spec.update_strategy),
        &path.child("updateStrategy"),
        &mut errs,
    );
    nonnegative_opt(
        &mut errs,
        &path.child("revisionHistoryLimit"),
        spec.revision_history_limit,
    );
    if let Some(old) = old {
        selector_immutable(&spec.selector, &or_default(&old.spec).selector, &mut errs);
    }
    errs
}

fn validate_daemon_set_strategy(strategy: &DaemonSetUpdateStrategy, path: &Path, errs: &mut Errs) {
    match s(&strategy.r#type) {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = &strategy.rolling_update else {
                errs.push(required(&path.child("rollingUpdate"), ""));
                return;
            };
            let rp = path.child("rollingUpdate");
            let (unavailable, surge) = (
                int_or_percent(&ru.max_unavailable),
                int_or_percent(&ru.max_surge),
            );
            validate_positive_int_or_percent(&unavailable, &rp.child("maxUnavailable"), errs);
            validate_positive_int_or_percent(&surge, &rp.child("maxSurge"), errs);
            validate_not_more_than_100_percent(&unavailable, &rp.child("maxUnavailable"), errs);
            validate_not_more_than_100_percent(&surge, &rp.child("maxSurge"), errs);
            match (unavailable.value() != 0, surge.value() != 0) {
                (true, true) => errs.push(invalid(
                    &rp.child("maxSurge"),
                    surge.render(),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => errs.push(required(
                    &rp.child("maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                )),
                _ => {}
            }
        }
        other => errs.push(not_supported(path, other, &["RollingUpdate", "OnDelete"])),
    }
}

// ---- StatefulSet ------------------------------------------------------------------------------

/// Validates a StatefulSet on create, or on update against `old`.
pub fn validate_stateful_set(ss: &StatefulSet, old: Option<&StatefulSet>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &ss.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsLabel,
        &mut errs,
    );
    let spec = or_default(&ss.spec);
    let path = Path::new("spec");
    match s(&spec.pod_management_policy) {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(required(&path.child("podManagementPolicy"), "")),
        other => errs.push(invalid_str(
            &path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = or_default(&spec.update_strategy);
    let strategy_path = path.child("updateStrategy");
    match s(&strategy.r#type) {
        "" => errs.push(required(&strategy_path, "")),
        "OnDelete" => {
            if strategy.rolling_update.is_some() {
                errs.push(invalid(
                    &strategy_path.child("rollingUpdate"),
                    "{...}",
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = &strategy.rolling_update {
                let rp = strategy_path.child("rollingUpdate");
                nonnegative(
                    &mut errs,
                    &rp.child("partition"),
                    i64::from(ru.partition.unwrap_or(0)),
                );
                if ru.max_unavailable.is_some() {
                    let v = int_or_percent(&ru.max_unavailable);
                    validate_positive_int_or_percent(&v, &rp.child("maxUnavailable"), &mut errs);
                    if v.value() == 0 {
                        errs.push(invalid(
                            &rp.child("maxUnavailable"),
                            v.render(),
                            "cannot be 0",
                        ));
                    }
                    validate_not_more_than_100_percent(&v, &rp.child("maxUnavailable"), &mut errs);
                }
            }
        }
        other => errs.push(invalid(
            &strategy_path,
            q(other),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        let pp = path.child("persistentVolumeClaimRetentionPolicy");
        for (field, value) in [
            ("whenDeleted", &policy.when_deleted),
            ("whenScaled", &policy.when_scaled),
        ] {
            let value = s(value);
            if value != "Retain" && value != "Delete" {
                errs.push(not_supported(
                    &pp.child(field),
                    value,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    nonnegative_opt(&mut errs, &path.child("replicas"), spec.replicas);
    nonnegative_opt(
        &mut errs,
        &path.child("minReadySeconds"),
        spec.min_ready_seconds,
    );
    if let Some(ordinals) = &spec.ordinals {
        nonnegative(
            &mut errs,
            &path.child("ordinals.start"),
            i64::from(ordinals.start.unwrap_or(0)),
        );
    }
    validate_selector_and_template(
        &spec.selector,
        &spec.template,
        "statefulset",
        &path,
        true,
        &mut errs,
    );
    let claim_names: Vec<String> = spec
        .volume_claim_templates
        .iter()
        .filter_map(|t| t.metadata.as_ref().and_then(|m| m.name.clone()))
        .collect();
    let ctx = SpecContext {
        is_pod: false,
        claim_templates: &claim_names,
    };
    validate_long_running_template(&spec.template, ctx, "StatefulSet", &path, &mut errs);
    for (i, claim) in spec.volume_claim_templates.iter().enumerate() {
        let cp = path.child("volumeClaimTemplates").index(i);
        let meta = or_default(&claim.metadata);
        validate_labels(
            &meta.labels,
            &cp.child("metadata").child("labels"),
            &mut errs,
        );
        validate_annotations(
            &meta.annotations,
            &cp.child("metadata").child("annotations"),
            &mut errs,
        );
        validate_pvc_spec(&or_default(&claim.spec), &cp.child("spec"), &mut errs);
    }
    nonnegative_opt(
        &mut errs,
        &path.child("revisionHistoryLimit"),
        spec.revision_history_limit,
    );
    if let Some(old) = old {
        validate_stateful_set_update(&spec, &or_default(&old.spec), &mut errs);
    }
    errs
}

fn validate_stateful_set_update(new: &StatefulSetSpec, old: &StatefulSetSpec, errs: &mut Errs) {
    let mut clone = new.clone();
    clone.replicas = old.replicas;
    clone.template.clone_from(&old.template);
    clone.update_strategy.clone_from(&old.update_strategy);
    clone.min_ready_seconds = old.min_ready_seconds;
    clone.ordinals.clone_from(&old.ordinals);
    clone
        .persistent_volume_claim_retention_policy
        .clone_from(&old.persistent_volume_claim_retention_policy);
    if clone != *old {
        errs.push(forbidden(
            &Path::new("spec"),
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}

// ---- ControllerRevision -----------------------------------------------------------------------

/// Validates a ControllerRevision; its data and revision never change.
pub fn validate_controller_revision(
    rev: &ControllerRevision,
    old: Option<&ControllerRevision>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &rev.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    if rev.data.is_none() {
        errs.push(required(&Path::new("data"), "data is mandatory"));
    }
    nonnegative(&mut errs, &Path::new("revision"), rev.revision.unwrap_or(0));
    if let Some(old) = old {
        let json = |r: &ControllerRevision| {
            r.data.as_ref().map(|d| {
                serde_json::from_str::<serde_json::Value>(&d.json)
                    .unwrap_or(serde_json::Value::Null)
            })
        };
        let (new_data, old_data) = (json(rev), json(old));
        immutable(&mut errs, &Path::new("data"), &new_data, &old_data, || {
            new_data
                .as_ref()
                .map_or_else(|| "null".to_string(), ToString::to_string)
        });
    }
    errs
}

// ---- Job --------------------------------------------------------------------------------------

const MAX_PARALLELISM_FOR_INDEXED_JOB: i32 = 100_000;
const MAX_COMPLETIONS_FOR_INDEXED_JOB: i32 = 100_000;

/// Validates a Job on create, or on update against `old`. A missing `spec.selector` is fine:
/// the gateway generates it (`manualSelector` unset); a present one must match the template.
pub fn validate_job(job: &Job, old: Option<&Job>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &job.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    let spec = or_default(&job.spec);
    let path = Path::new("spec");
    validate_job_spec(&spec, &path, &mut errs);
    if let Some(selector) = &spec.selector {
        validate_label_selector(selector, &path.child("selector"), &mut errs);
        if let Ok(parsed) = selectors::LabelSelector::from_meta(selector) {
            let labels = template_labels(&spec.template);
            if !parsed.matches(&labels) {
                errs.push(invalid(
                    &path.child("template").child("metadata").child("labels"),
                    go_map(&labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if let Some(old) = old {
        validate_job_update(&spec, &or_default(&old.spec), old, &mut errs);
    }
    errs
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

/// `validateJobSpec`: the rules shared by Jobs and CronJob job templates.
fn validate_job_spec(spec: &JobSpec, path: &Path, errs: &mut Errs) {
    if let Some(parallelism) = spec.parallelism {
        nonnegative(errs, &path.child("parallelism"), i64::from(parallelism));
        if is_indexed(spec) && parallelism > MAX_PARALLELISM_FOR_INDEXED_JOB {
            errs.push(invalid(
                &path.child("parallelism"),
                parallelism,
                format!("must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"),
            ));
        }
    }
    nonnegative_opt(errs, &path.child("completions"), spec.completions);
    if let Some(deadline) = spec.active_deadline_seconds {
        nonnegative(errs, &path.child("activeDeadlineSeconds"), deadline);
    }
    nonnegative_opt(errs, &path.child("backoffLimit"), spec.backoff_limit);
    nonnegative_opt(
        errs,
        &path.child("ttlSecondsAfterFinished"),
        spec.ttl_seconds_after_finished,
    );
    if let Some(per_index) = spec.backoff_limit_per_index {
        nonnegative(
            errs,
            &path.child("backoffLimitPerIndex"),
            i64::from(per_index),
        );
        if !is_indexed(spec) {
            errs.push(forbidden(
                &path.child("backoffLimitPerIndex"),
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(max_failed) = spec.max_failed_indexes {
        nonnegative(errs, &path.child("maxFailedIndexes"), i64::from(max_failed));
        if spec.backoff_limit_per_index.is_none() {
            errs.push(required(
                &path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(mode) = &spec.completion_mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(not_supported(
                &path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" {
            match spec.completions {
                None => errs.push(required(&path.child("completions"), "when completion mode is Indexed")),
                Some(c) if c > MAX_COMPLETIONS_FOR_INDEXED_JOB => errs.push(invalid(
                    &path.child("completions"),
                    c,
                    format!("must be less than or equal to {MAX_COMPLETIONS_FOR_INDEXED_JOB} when completion mode is Indexed"),
                )),
                Some(c) => {
                    if let Some(max_failed) = spec.max_failed_indexes
                        && max_failed > c
                    {
                        errs.push(invalid(&path.child("maxFailedIndexes"), max_failed, "must be less than or equal to completions"));
                    }
                }
            }
        }
    }
    if let Some(managed_by) = spec.managed_by.as_deref() {
        each(
            errs,
            &path.child("managedBy"),
            managed_by,
            is_qualified_name(managed_by),
        );
    }
    if let Some(policy) = &spec.pod_failure_policy {
        validate_pod_failure_policy(spec, policy, &path.child("podFailurePolicy"), errs);
    }
    if let Some(replacement) = &spec.pod_replacement_policy {
        let rp = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() {
            if replacement != "Failed" {
                errs.push(not_supported(&rp, replacement, &["Failed"]));
            }
        } else if replacement != "Failed" && replacement != "TerminatingOrFailed" {
            errs.push(not_supported(
                &rp,
                replacement,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let template_path = path.child("template");
    validate_pod_template_spec(
        &or_default(&spec.template),
        SpecContext::default(),
        &template_path,
        errs,
    );
    let restart_policy = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map_or("", |s| s.restart_policy.as_deref().unwrap_or(""));
    let restart_path = template_path.child("spec").child("restartPolicy");
    match restart_policy {
        "Always" | "" => errs.push(required(
            &restart_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {
            if spec.pod_failure_policy.is_some() && restart_policy != "Never" {
                errs.push(invalid_str(
                    &restart_path,
                    restart_policy,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(not_supported(&restart_path, other, &["OnFailure", "Never"])),
    }
}

fn validate_pod_failure_policy(
    spec: &JobSpec,
    policy: &PodFailurePolicy,
    path: &Path,
    errs: &mut Errs,
) {
    const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
    let rules_path = path.child("rules");
    if policy.rules.len() > 20 {
        errs.push(super::too_many(&rules_path, policy.rules.len(), 20));
    }
    let template_spec = spec.template.as_ref().and_then(|t| t.spec.as_ref());
    let containers: Vec<&str> = template_spec
        .map(|s| {
            s.containers
                .iter()
                .chain(&s.init_containers)
                .map(|c| c.name.as_deref().unwrap_or(""))
                .collect()
        })
        .unwrap_or_default();
    for (i, rule) in policy.rules.iter().enumerate() {
        let rp = rules_path.index(i);
        let action = s(&rule.action);
        if action.is_empty() {
            errs.push(required(
                &rp.child("action"),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            ));
        } else if action == "FailIndex" {
            if spec.backoff_limit_per_index.is_none() {
                errs.push(invalid_str(
                    &rp.child("action"),
                    action,
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
        } else if !ACTIONS.contains(&action) {
            errs.push(not_supported(&rp.child("action"), action, &ACTIONS));
        }
        if let Some(on_exit) = &rule.on_exit_codes {
            let ep = rp.child("onExitCodes");
            let operator = s(&on_exit.operator);
            match operator {
                "In" | "NotIn" => {}
                "" => errs.push(required(
                    &ep.child("operator"),
                    "valid values: [\"In\" \"NotIn\"]",
                )),
                other => errs.push(not_supported(
                    &ep.child("operator"),
                    other,
                    &["In", "NotIn"],
                )),
            }
            if let Some(name) = &on_exit.container_name
                && !containers.contains(&name.as_str())
            {
                errs.push(invalid_str(
                    &ep.child("containerName"),
                    name,
                    "must be one of the container or initContainer names in the pod template",
                ));
            }
            let values_path = ep.child("values");
            let values = &on_exit.values;
            if values.is_empty() {
                errs.push(invalid(
                    &values_path,
                    "[]int32(nil)",
                    "at least one value is required",
                ));
            } else if values.len() > 255 {
                errs.push(super::too_many(&values_path, values.len(), 255));
            } else {
                let mut seen = std::collections::HashSet::new();
                for (j, v) in values.iter().enumerate() {
                    if operator == "In" && *v == 0 {
                        errs.push(invalid(
                            &values_path.index(j),
                            v,
                            "must not be 0 for the In operator",
                        ));
                    }
                    if !seen.insert(*v) {
                        errs.push(super::duplicate(&values_path.index(j), v));
                    }
                }
                if values.windows(2).any(|w| w[0] > w[1]) {
                    errs.push(invalid(
                        &values_path,
                        format!("{values:?}"),
                        "must be ordered",
                    ));
                }
            }
        }
        for (j, pattern) in rule.on_pod_conditions.iter().enumerate() {
            let pp = rp.child("onPodConditions").index(j);
            let status = s(&pattern.status);
            if !["True", "False", "Unknown"].contains(&status) {
                errs.push(not_supported(
                    &pp.child("status"),
                    status,
                    &["False", "True", "Unknown"],
                ));
            }
            let kind = s(&pattern.r#type);
            each(errs, &pp.child("type"), kind, is_qualified_name(kind));
        }
        match (
            rule.on_exit_codes.is_some(),
            !rule.on_pod_conditions.is_empty(),
        ) {
            (true, true) => errs.push(FieldError {
                kind: crate::errors::FieldErrorType::Invalid,
                field: rp.to_string(),
                value: None,
                detail: "specifying both OnExitCodes and OnPodConditions is not supported".into(),
            }),
            (false, false) => errs.push(FieldError {
                kind: crate::errors::FieldErrorType::Invalid,
                field: rp.to_string(),
                value: None,
                detail: "specifying one of OnExitCodes and OnPodConditions is required".into(),
            }),
            _ => {}
        }
    }
}

fn validate_job_update(new: &JobSpec, old: &JobSpec, old_job: &Job, errs: &mut Errs) {
    let path = Path::new("spec");
    if is_indexed(new) && is_indexed(old) {
        if new.completions != old.completions && new.completions != new.parallelism {
            errs.push(invalid(
                &path.child("completions"),
                new.completions
                    .map_or_else(|| "null".to_string(), |c| c.to_string()),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    } else {
        immutable(
            errs,
            &path.child("completions"),
            &new.completions,
            &old.completions,
            || {
                new.completions
                    .map_or_else(|| "null".to_string(), |c| c.to_string())
            },
        );
    }
    immutable(
        errs,
        &path.child("selector"),
        &new.selector,
        &old.selector,
        || go_selector_opt(&new.selector),
    );
    immutable(
        errs,
        &path.child("completionMode"),
        &new.completion_mode,
        &old.completion_mode,
        || q(s(&new.completion_mode)),
    );
    immutable(
        errs,
        &path.child("podFailurePolicy"),
        &new.pod_failure_policy,
        &old.pod_failure_policy,
        || {
            new.pod_failure_policy.as_ref().map_or_else(
                || "null".to_string(),
                |p| crate::codec::encode_json(p).to_string(),
            )
        },
    );
    immutable(
        errs,
        &path.child("backoffLimitPerIndex"),
        &new.backoff_limit_per_index,
        &old.backoff_limit_per_index,
        || {
            new.backoff_limit_per_index
                .map_or_else(|| "null".to_string(), |c| c.to_string())
        },
    );
    immutable(
        errs,
        &path.child("managedBy"),
        &new.managed_by,
        &old.managed_by,
        || q(s(&new.managed_by)),
    );
    // A suspended Job that never started may change its scheduling directives and metadata.
    let not_started = old_job
        .status
        .as_ref()
        .is_none_or(|s| s.start_time.is_none());
    let mut template = or_default(&new.template).into_owned();
    let old_template = or_default(&old.template).into_owned();
    if old.suspend == Some(true) && not_started {
        let mut munged = old_template.clone();
        let (new_meta, new_spec) = (
            or_default(&template.metadata).into_owned(),
            or_default(&template.spec).into_owned(),
        );
        let meta = munged.metadata.get_or_insert_with(Default::default);
        meta.labels = new_meta.labels;
        meta.annotations = new_meta.annotations;
        let spec = munged.spec.get_or_insert_with(Default::default);
        spec.node_selector = new_spec.node_selector;
        spec.tolerations = new_spec.tolerations;
        spec.affinity = new_spec.affinity;
        spec.scheduling_gates = new_spec.scheduling_gates;
        if munged == template {
            template = old_template.clone();
        }
    }
    immutable(
        errs,
        &path.child("template"),
        &template,
        &old_template,
        || crate::codec::encode_json(&template).to_string(),
    );
}

// ---- CronJob ----------------------------------------------------------------------------------

/// Validates a CronJob on create, or on update against `old`.
pub fn validate_cron_job(cj: &CronJob, old: Option<&CronJob>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(
        &cj.metadata,
        old.map(|o| &o.metadata),
        true,
        NameRule::DnsSubdomain,
        &mut errs,
    );
    if old.is_none() {
        let name = cj.metadata.as_ref().map_or("", |m| s(&m.name));
        if name.len() > 52 {
            errs.push(invalid_str(
                &Path::new("metadata").child("name"),
                name,
                "must be no more than 52 characters",
            ));
        }
    }
    let spec = or_default(&cj.spec);
    let path = Path::new("spec");
    let schedule = s(&spec.schedule);
    if schedule.is_empty() {
        errs.push(required(&path.child("schedule"), ""));
    } else {
        if let Err(e) = cron::parse_schedule(schedule) {
            errs.push(invalid_str(&path.child("schedule"), schedule, e));
        }
        if schedule.contains("TZ") {
            errs.push(invalid_str(
                &path.child("schedule"),
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        nonnegative(&mut errs, &path.child("startingDeadlineSeconds"), deadline);
    }
    match s(&spec.concurrency_policy) {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required(&path.child("concurrencyPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    validate_job_template(
        &or_default(&spec.job_template),
        &path.child("jobTemplate"),
        &mut errs,
    );
    nonnegative_opt(
        &mut errs,
        &path.child("successfulJobsHistoryLimit"),
        spec.successful_jobs_history_limit,
    );
    nonnegative_opt(
        &mut errs,
        &path.child("failedJobsHistoryLimit"),
        spec.failed_jobs_history_limit,
    );
    if let Some(tz) = &spec.time_zone {
        cron::validate_time_zone(tz, &path.child("timeZone"), &mut errs);
    }
    errs
}

fn validate_job_template(template: &JobTemplateSpec, path: &Path, errs: &mut Errs) {
    let meta = or_default(&template.metadata);
    validate_labels(&meta.labels, &path.child("metadata").child("labels"), errs);
    validate_annotations(
        &meta.annotations,
        &path.child("metadata").child("annotations"),
        errs,
    );
    let spec = or_default(&template.spec);
    let spec_path = path.child("spec");
    validate_job_spec(&spec, &spec_path, errs);
    if let Some(selector) = &spec.selector {
        errs.push(invalid(
            &spec_path.child("selector"),
            go_selector(selector),
            "`selector` will be auto-generated",
        ));
    }
    if spec.manual_selector == Some(true) {
        errs.push(FieldError {
            kind: crate::errors::FieldErrorType::NotSupported,
            field: spec_path.child("manualSelector").to_string(),
            value: Some("true".into()),
            detail: "supported values: \"nil\", \"false\"".into(),
        });
    }
}

// ---- status -------------------------------------------------------------------------------

/// Status counts of the apps and batch kinds are never negative.
pub(crate) fn validate_counts_status(obj: &DynamicMessage, errs: &mut Errs) {
    let Some(status) = obj.get_field_by_name("status") else {
        return;
    };
    let Some(status) = status.as_message() else {
        return;
    };
    let path = Path::new("status");
    let mut fields: Vec<_> = status.fields().collect();
    fields.sort_by_key(|(f, _)| f.number());
    for (field, value) in fields {
        let n = match value {
            Value::I32(v) => i64::from(*v),
            Value::I64(v) => *v,
            _ => continue,
        };
        nonnegative(errs, &path.child(field.name()), n);
    }
}
