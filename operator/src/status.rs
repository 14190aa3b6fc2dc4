//! Pure: computes a pipeline's status — phase, conditions, progress, lag, last error — from
//! what was applied and what the workers report; unchanged parts keep their timestamps, so
//! an unchanged world yields an equal status and no write.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use spillway_api::validate::Problems;
use spillway_api::{
    LastError, MaintenanceRun, MaintenanceStatus, Phase, StreamingPipelineSpec,
    StreamingPipelineStatus,
};

use crate::dereference::Worker;
use crate::merge::{Merged, PodCondition};
use spillway_api::report::WorkerConditionType;

/// Condition type: the workers run and commit.
pub const READY: &str = "Ready";
/// Condition type: the Deployment is rolling out or scaling.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something is wrong (see its reason).
pub const DEGRADED: &str = "Degraded";
/// Condition type: a worker reported data loss.
pub const DATA_LOSS: &str = "DataLoss";
/// Condition type: a worker reported a schema error.
pub const SCHEMA_ERROR: &str = "SchemaError";
/// Reason of an invalid spec.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Reason of a child name taken by an object the pipeline does not own.
pub const CHILD_NOT_OWNED: &str = "ChildNotOwned";

/// Everything the status is computed from.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// `metadata.generation` of the pipeline.
    pub generation: Option<i64>,
    /// The pipeline's spec.
    pub spec: &'a StreamingPipelineSpec,
    /// The spec's problems, when invalid.
    pub invalid: Option<&'a Problems>,
    /// The worker Deployment: as applied, or as found when the spec is invalid.
    pub deployment: Option<&'a Deployment>,
    /// The worker Job of a bounded pipeline: as applied, or as found.
    pub job: Option<&'a Job>,
    /// Why the children were not applied: an object under a child's name is not the
    /// pipeline's (the apply error's message).
    pub not_owned: Option<&'a str>,
    /// The ready workers and their `/progress` answers.
    pub workers: &'a [Worker],
    /// The merge of the answers.
    pub merged: &'a Merged,
    /// `status.selector`.
    pub selector: &'a str,
    /// Now, for transition times.
    pub now: Timestamp,
}

/// The verdict: phase and the reason and message of the Ready condition.
#[derive(Clone, Debug, PartialEq)]
struct Verdict {
    phase: Phase,
    reason: &'static str,
    message: String,
}

/// Computes the status; `previous` keeps transition times, last progress and last error.
pub fn compute(
    o: &Observation<'_>,
    previous: Option<&StreamingPipelineStatus>,
) -> StreamingPipelineStatus {
    let desired = o.spec.effective_replicas();
    let (replicas, ready) = counts(o);
    let progressing = o.invalid.is_none()
        && o.not_owned.is_none()
        && match (o.job, o.deployment) {
            (Some(j), _) => job_finished(j).is_none() && replicas == 0 && desired > 0,
            (None, Some(d)) => !rolled_out(d, desired),
            (None, None) => desired > 0,
        };
    let v = verdict(o, desired, ready, progressing);

    let prev_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let cond = |type_: &str, status: bool, reason: &str, message: String| {
        condition(prev_conditions, o, type_, status, reason, message)
    };
    let mut conditions = vec![cond(
        READY,
        matches!(v.phase, Phase::Running | Phase::Completed),
        v.reason,
        v.message.clone(),
    )];
    conditions.push(if o.invalid.is_some() {
        cond(
            PROGRESSING,
            false,
            INVALID_SPEC,
            "the spec is invalid: nothing is applied".into(),
        )
    } else if o.not_owned.is_some() {
        cond(
            PROGRESSING,
            false,
            CHILD_NOT_OWNED,
            "a child's name is taken: nothing is applied".into(),
        )
    } else if let Some(finished) = o.job.and_then(job_finished) {
        cond(PROGRESSING, false, finished, "the Job has finished".into())
    } else if progressing {
        cond(
            PROGRESSING,
            true,
            "RollingOut",
            rollout_message(o.deployment, desired),
        )
    } else if desired == 0 {
        cond(PROGRESSING, false, "ScaledToZero", "no worker runs".into())
    } else {
        cond(
            PROGRESSING,
            false,
            "RolledOut",
            format!("{desired} workers up to date"),
        )
    });
    conditions.push(match v.phase {
        Phase::Degraded | Phase::Failed => cond(DEGRADED, true, v.reason, v.message.clone()),
        _ => cond(DEGRADED, false, "AsExpected", String::new()),
    });
    for (type_, kind) in [
        (DATA_LOSS, WorkerConditionType::DataLoss),
        (SCHEMA_ERROR, WorkerConditionType::SchemaError),
    ] {
        let reported: Vec<&PodCondition> = o.merged.of(kind).collect();
        if let Some(first) = reported.first() {
            conditions.push(cond(type_, true, &first.reason, pod_messages(&reported)));
        } else if prev_conditions.iter().any(|c| c.type_ == type_) {
            conditions.push(cond(type_, false, "NotReported", String::new()));
        }
    }

    let answered = o.workers.iter().any(|w| w.report.is_ok());
    let last_error = match v.phase {
        Phase::Degraded | Phase::Failed => {
            let same = previous
                .and_then(|p| p.last_error.as_ref())
                .filter(|e| e.reason == v.reason && e.message == v.message);
            Some(same.cloned().unwrap_or_else(|| LastError {
                reason: v.reason.into(),
                message: v.message.clone(),
                time: Some(o.now.to_string()),
            }))
        }
        _ => previous.and_then(|p| p.last_error.clone()),
    };
    StreamingPipelineStatus {
        phase: Some(v.phase),
        observed_generation: o.generation,
        replicas,
        ready_replicas: ready,
        selector: Some(o.selector.to_string()),
        conditions,
        progress: o
            .merged
            .progress
            .clone()
            .or_else(|| previous.and_then(|p| p.progress.clone())),
        lag: if answered {
            o.merged.lag
        } else {
            previous.and_then(|p| p.lag)
        },
        last_error,
        maintenance: previous.and_then(|p| p.maintenance.clone()),
    }
}

/// Worker pods and ready ones, of the Deployment or the Job.
fn counts(o: &Observation<'_>) -> (i32, i32) {
    if let Some(s) = o.job.and_then(|j| j.status.as_ref()) {
        return (s.active.unwrap_or(0), s.ready.unwrap_or(0));
    }
    let s = o.deployment.and_then(|d| d.status.as_ref());
    (
        s.and_then(|s| s.replicas).unwrap_or(0),
        s.and_then(|s| s.ready_replicas).unwrap_or(0),
    )
}

/// `Complete` or `Failed` when the Job has finished (its condition of that type is true).
pub fn job_finished(j: &Job) -> Option<&'static str> {
    let conditions = j.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is("Complete") {
        Some("Complete")
    } else if is("Failed") {
        Some("Failed")
    } else {
        None
    }
}

/// The message of the Job's `Failed` condition.
fn job_failure(j: &Job) -> String {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"))
        .map(|c| {
            format!(
                "the Job failed: {}: {}",
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "the Job failed".into())
}

fn verdict(o: &Observation<'_>, desired: i32, ready: i32, progressing: bool) -> Verdict {
    let v = |phase, reason, message: String| Verdict {
        phase,
        reason,
        message,
    };
    let first = |kind| o.merged.of(kind).collect::<Vec<_>>();
    let unreachable: Vec<&Worker> = o.workers.iter().filter(|w| w.report.is_err()).collect();
    if let Some(problems) = o.invalid {
        return v(Phase::Failed, INVALID_SPEC, problems.to_string());
    }
    if let Some(why) = o.not_owned {
        return v(Phase::Failed, CHILD_NOT_OWNED, why.to_string());
    }
    let failed = first(WorkerConditionType::Failed);
    if !failed.is_empty() {
        return v(Phase::Failed, "WorkerFailed", pod_messages(&failed));
    }
    let lost = first(WorkerConditionType::DataLoss);
    if !lost.is_empty() {
        return v(Phase::Failed, DATA_LOSS, pod_messages(&lost));
    }
    if desired == 0 {
        return if o.spec.suspend {
            v(
                Phase::Suspended,
                "Suspended",
                "spec.suspend is true: no worker runs".into(),
            )
        } else {
            v(
                Phase::Suspended,
                "ScaledToZero",
                "spec.replicas is 0: no worker runs".into(),
            )
        };
    }
    let answers: Vec<_> = o
        .workers
        .iter()
        .filter_map(|w| w.report.as_ref().ok())
        .collect();
    match o.job.and_then(job_finished) {
        Some("Complete") => {
            return v(
                Phase::Completed,
                "Completed",
                "the bounded run committed its end offsets".into(),
            );
        }
        Some(_) => {
            return v(
                Phase::Failed,
                "JobFailed",
                o.job.map(job_failure).unwrap_or_default(),
            );
        }
        None => {}
    }
    let completed = o.spec.is_bounded()
        && !o.workers.is_empty()
        && unreachable.is_empty()
        && answers.iter().all(|r| {
            r.conditions
                .iter()
                .any(|c| c.kind() == Some(WorkerConditionType::Completed))
        });
    if completed {
        return v(
            Phase::Completed,
            "Completed",
            "the bounded run committed its end offsets".into(),
        );
    }
    if ready == 0 {
        return v(
            Phase::Pending,
            "WorkersNotReady",
            format!("0 of {desired} workers ready"),
        );
    }
    let schema = first(WorkerConditionType::SchemaError);
    if !schema.is_empty() {
        return v(Phase::Degraded, SCHEMA_ERROR, pod_messages(&schema));
    }
    if let Some(w) = unreachable.first() {
        let pods: Vec<&str> = unreachable.iter().map(|w| w.pod.as_str()).collect();
        let why = w.report.as_ref().err().cloned().unwrap_or_default();
        return v(
            Phase::Degraded,
            "WorkerUnreachable",
            format!("no progress from {}: {why}", pods.join(", ")),
        );
    }
    if ready < desired && !progressing {
        return v(
            Phase::Degraded,
            "WorkersNotReady",
            format!("{ready} of {desired} workers ready"),
        );
    }
    v(
        Phase::Running,
        "WorkersReady",
        format!("{ready} of {desired} workers ready"),
    )
}

/// `pod: reason: message` of each report, joined by `; `.
fn pod_messages(cs: &[&PodCondition]) -> String {
    cs.iter()
        .map(|c| format!("{}: {}: {}", c.pod, c.reason, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the Deployment's controller has seen its latest spec and every pod is updated,
/// with none left over (pods that later fail readiness do not make it roll out again).
pub fn rolled_out(d: &Deployment, desired: i32) -> bool {
    let Some(s) = d.status.as_ref() else {
        return desired == 0;
    };
    let seen = match (s.observed_generation, d.metadata.generation) {
        (Some(observed), Some(generation)) => observed >= generation,
        (None, Some(_)) => false,
        _ => true,
    };
    seen && s.updated_replicas.unwrap_or(0) == desired && s.replicas.unwrap_or(0) == desired
}

fn rollout_message(d: Option<&Deployment>, desired: i32) -> String {
    let s = d.and_then(|d| d.status.as_ref());
    let n = |f: fn(&k8s_openapi::api::apps::v1::DeploymentStatus) -> Option<i32>| {
        s.and_then(f).unwrap_or(0)
    };
    format!(
        "{} of {desired} workers updated, {} available",
        n(|s| s.updated_replicas),
        n(|s| s.available_replicas)
    )
}

/// A condition keeping the previous transition time when its status did not change.
fn condition(
    previous: &[Condition],
    o: &Observation<'_>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(o.now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: o.generation,
        last_transition_time: since,
    }
}

/// The condition of a type, if present.
pub fn find<'a>(s: Option<&'a StreamingPipelineStatus>, type_: &str) -> Option<&'a Condition> {
    s.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

/// The last maintenance runs, from the CronJobs' status: the last successful run, or a
/// failed one when a later scheduled run has finished without success.
pub fn maintenance(cronjobs: &[CronJob]) -> Option<MaintenanceStatus> {
    if cronjobs.is_empty() {
        return None;
    }
    let run = |action: &str| -> Option<MaintenanceRun> {
        let job = cronjobs.iter().find(|j| {
            j.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with(&format!("-{action}")))
        })?;
        let st = job.status.as_ref()?;
        let success = st.last_successful_time.as_ref().map(|t| t.0);
        let scheduled = st.last_schedule_time.as_ref().map(|t| t.0);
        let running = st.active.as_ref().is_some_and(|a| !a.is_empty());
        match (scheduled, success) {
            (Some(s), Some(ok)) if s > ok && !running => Some(MaintenanceRun {
                time: s.to_string(),
                result: "Failed".into(),
                table_version: None,
            }),
            (Some(s), None) if !running => Some(MaintenanceRun {
                time: s.to_string(),
                result: "Failed".into(),
                table_version: None,
            }),
            (_, Some(ok)) => Some(MaintenanceRun {
                time: ok.to_string(),
                result: "Succeeded".into(),
                table_version: None,
            }),
            _ => None,
        }
    };
    Some(MaintenanceStatus {
        last_optimize: run(crate::build::OPTIMIZE),
        last_vacuum: run(crate::build::VACUUM),
    })
}
