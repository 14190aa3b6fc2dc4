//! Kubernetes Events about a pipeline: pure rules deciding which to publish, and a
//! best-effort publisher (an Event that cannot be written is logged, never an error).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use spillway_api::{StreamingPipelineSpec, StreamingPipelineStatus};
use tracing::warn;

use crate::status::{self, READY};

/// Why an Event was published; the name is the Event's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
pub enum Reason {
    /// The worker Deployment was created (or re-created after a deletion).
    Created,
    /// The workers were scaled.
    Scaled,
    /// `suspend: true` scaled the workers to zero.
    Suspended,
    /// The workers were scaled up from zero.
    Resumed,
    /// The spec is invalid; nothing was applied.
    InvalidSpec,
    /// A reconciliation failed; it is retried with backoff.
    ReconcileFailed,
    /// A worker reported a fatal error.
    WorkerFailed,
    /// A worker reported data loss.
    DataLoss,
    /// A worker reported a schema error.
    SchemaError,
    /// Children the pipeline no longer needs were deleted.
    OrphansDeleted,
    /// An object under a child's name is not the pipeline's; nothing was applied.
    ChildNotOwned,
    /// The Job of an `availableNow` pipeline failed.
    JobFailed,
    /// The Job of an `availableNow` pipeline completed.
    Completed,
}

impl Reason {
    /// The reason's name.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// One Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Warning (else Normal).
    pub warning: bool,
    /// The reason.
    pub reason: Reason,
    /// The human-readable note.
    pub note: String,
}

impl Notice {
    fn normal(reason: Reason, note: String) -> Self {
        Self {
            warning: false,
            reason,
            note,
        }
    }
}

/// The Event of an `availableNow` pipeline's Job: created (also anew after a change of
/// the pipeline file), suspended or resumed.
pub fn job_lifecycle(
    before: Option<&k8s_openapi::api::batch::v1::Job>,
    spec: &StreamingPipelineSpec,
    name: &str,
) -> Vec<Notice> {
    let suspend = spec.effective_replicas() == 0;
    let Some(j) = before else {
        return vec![Notice::normal(
            Reason::Created,
            format!(
                "created worker job {name} with parallelism {}",
                spec.replicas.max(1)
            ),
        )];
    };
    match (
        j.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false),
        suspend,
    ) {
        (false, true) => vec![Notice::normal(
            Reason::Suspended,
            format!("suspended: job {name} stopped its workers"),
        )],
        (true, false) => vec![Notice::normal(
            Reason::Resumed,
            format!("resumed: job {name} runs its workers again"),
        )],
        _ => vec![],
    }
}

/// Lifecycle Events from the Deployment as found (`before`) and the spec just applied.
pub fn lifecycle(
    before: Option<&Deployment>,
    spec: &StreamingPipelineSpec,
    name: &str,
) -> Vec<Notice> {
    let desired = spec.effective_replicas();
    let Some(d) = before else {
        return vec![Notice::normal(
            Reason::Created,
            format!("created worker deployment {name} with {desired} replicas"),
        )];
    };
    let prev = d.spec.replicas.unwrap_or(1);
    let n = if prev == desired {
        return vec![];
    } else if desired == 0 && spec.suspend {
        Notice::normal(
            Reason::Suspended,
            format!("suspended: scaled workers from {prev} to 0"),
        )
    } else if prev == 0 {
        Notice::normal(
            Reason::Resumed,
            format!("resumed: scaled workers from 0 to {desired}"),
        )
    } else {
        Notice::normal(
            Reason::Scaled,
            format!("scaled workers from {prev} to {desired}"),
        )
    };
    vec![n]
}

/// Warning Events for problems that are new in `after`: an invalid spec, a worker's fatal
/// error, data loss or schema error. A problem already reported with the same message is
/// not reported again.
pub fn problems(
    before: Option<&StreamingPipelineStatus>,
    after: &StreamingPipelineStatus,
) -> Vec<Notice> {
    let Some(ready) = status::find(Some(after), READY) else {
        return vec![];
    };
    let reason = match ready.reason.as_str() {
        status::INVALID_SPEC => Reason::InvalidSpec,
        "WorkerFailed" => Reason::WorkerFailed,
        status::DATA_LOSS => Reason::DataLoss,
        status::SCHEMA_ERROR => Reason::SchemaError,
        status::CHILD_NOT_OWNED => Reason::ChildNotOwned,
        "JobFailed" => Reason::JobFailed,
        "Completed" => Reason::Completed,
        _ => return vec![],
    };
    let old = status::find(before, READY);
    if old.is_some_and(|o| o.reason == ready.reason && o.message == ready.message) {
        return vec![];
    }
    vec![Notice {
        warning: reason != Reason::Completed,
        reason,
        note: ready.message.clone(),
    }]
}

/// The most an Event note may hold.
const MAX_NOTE: usize = 1024;

/// Publishes `n` about `regarding`; failures are logged.
pub async fn publish(recorder: &Recorder, regarding: &ObjectReference, n: &Notice) {
    let mut note = n.note.clone();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let event = Event {
        type_: if n.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: n.reason.name().into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        warn!(reason = n.reason.name(), error = %e, "failed to publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::pipeline;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    fn dep(replicas: i32) -> Deployment {
        Deployment {
            spec: DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle_events() {
        type Edit = fn(&mut StreamingPipelineSpec);
        let cases: &[(Option<i32>, Edit, Option<Reason>)] = &[
            (None, |_| {}, Some(Reason::Created)),
            (Some(1), |_| {}, None),
            (Some(1), |s| s.replicas = 3, Some(Reason::Scaled)),
            (Some(3), |s| s.suspend = true, Some(Reason::Suspended)),
            (Some(0), |s| s.replicas = 2, Some(Reason::Resumed)),
            (Some(2), |s| s.replicas = 0, Some(Reason::Scaled)),
            (Some(0), |s| s.suspend = true, None),
        ];
        for (before, edit, want) in cases {
            let mut spec = pipeline().spec;
            edit(&mut spec);
            let d = before.map(dep);
            let got: Vec<Reason> = lifecycle(d.as_ref(), &spec, "p")
                .into_iter()
                .map(|n| n.reason)
                .collect();
            assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{before:?}");
        }
    }

    fn with_ready(reason: &str, message: &str) -> StreamingPipelineStatus {
        StreamingPipelineStatus {
            conditions: vec![Condition {
                type_: READY.into(),
                status: "False".into(),
                reason: reason.into(),
                message: message.into(),
                observed_generation: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn problem_events_fire_on_change_only() {
        let invalid = with_ready("InvalidSpec", "spec.replicas: must be 0 or more");
        let n = problems(None, &invalid);
        assert_eq!(n.len(), 1);
        assert!(n[0].warning);
        assert_eq!(n[0].reason, Reason::InvalidSpec);
        assert!(n[0].note.contains("spec.replicas"));
        assert!(problems(Some(&invalid), &invalid).is_empty());
        let other = with_ready(
            "InvalidSpec",
            "spec.sink: exactly one of delta or parquet must be set",
        );
        assert_eq!(problems(Some(&invalid), &other).len(), 1);
        let lost = with_ready("DataLoss", "a: OffsetOutOfRange: t/0");
        assert_eq!(problems(Some(&invalid), &lost)[0].reason, Reason::DataLoss);
        assert!(problems(None, &with_ready("WorkersNotReady", "0 of 1")).is_empty());
    }
}
