//! The reconcile function — dereference (I/O) → validate (pure) → build (pure) → apply (I/O)
//! → status (pure, written only when changed) — and the error policy.

use std::sync::Arc;
use std::time::Instant;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use spillway_api::manifest::{API_VERSION, KIND};
use spillway_api::{LastError, StreamingPipeline, StreamingPipelineStatus};
use tracing::{debug, info, instrument, warn};

use crate::context::Context;
use crate::events::{self, Notice, Reason};
use crate::merge::merge;
use crate::status::{self, Observation};
use crate::{apply, build, dereference, validate};
use spillway_api::report::WorkerProgress;

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum Error {
    /// The pipeline has no namespace (it is a namespaced resource: a malformed object).
    #[error("streaming pipeline {0} has no namespace")]
    MissingNamespace(String),
    /// Reading the cluster failed.
    #[error(transparent)]
    Dereference(#[from] dereference::Error),
    /// Building the children failed.
    #[error(transparent)]
    Build(#[from] build::Error),
    /// Applying the children failed.
    #[error(transparent)]
    Apply(#[from] apply::Error),
    /// Writing the status failed.
    #[error("failed to write the status of {namespace}/{name}: {source}")]
    StatusWriteFailed {
        /// Pipeline namespace.
        namespace: String,
        /// Pipeline name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The static name of the failure (metric label, Event reason): the innermost variant.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Dereference(e) => e.reason(),
            Self::Build(e) => e.reason(),
            Self::Apply(e) => e.reason(),
            other => other.into(),
        }
    }

    /// Whether only a change of the pipeline can help (no timed retry).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::MissingNamespace(_) | Self::Build(_) => true,
            Self::Apply(e) => e.is_permanent(),
            Self::Dereference(_) | Self::StatusWriteFailed { .. } => false,
        }
    }
}

/// The metric label of a reconciliation that applied the children.
pub const SUCCESS: &str = "Success";

fn key(p: &StreamingPipeline) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// Reconciles one pipeline: publishes a `ReconcileFailed` Event on error and counts the
/// result and duration in the metrics.
#[instrument(skip_all, fields(namespace = p.namespace().unwrap_or_default(), pipeline = %p.name_any()))]
pub async fn reconcile(p: Arc<StreamingPipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = run(&p, &ctx).await;
    match &result {
        Ok((_, label)) => {
            ctx.metrics.reconciled(label, started.elapsed());
            ctx.succeeded(&key(&p));
        }
        Err(e) => {
            ctx.metrics.reconciled(e.reason(), started.elapsed());
            warn!(reason = e.reason(), error = %e, "reconcile failed");
            let notice = Notice {
                warning: true,
                reason: Reason::ReconcileFailed,
                note: format!("{}: {e}", e.reason()),
            };
            events::publish(&ctx.recorder, &p.object_ref(&()), &notice).await;
            record_failure(&ctx, &p, e).await;
        }
    }
    result.map(|(action, _)| action)
}

/// Best effort: puts a failure into `status.lastError` (other fields unchanged), unless
/// writing the status is what failed or the same error is already there.
async fn record_failure(ctx: &Context, p: &StreamingPipeline, e: &Error) {
    let Some(namespace) = p.namespace() else {
        return;
    };
    if matches!(e, Error::StatusWriteFailed { .. }) {
        return;
    }
    let message = e.to_string();
    let mut status = p.status.clone().unwrap_or_default();
    if status
        .last_error
        .as_ref()
        .is_some_and(|l| l.reason == e.reason() && l.message == message)
    {
        return;
    }
    status.last_error = Some(LastError {
        reason: e.reason().into(),
        message,
        time: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
    });
    if let Err(w) = write_status(ctx, p, &namespace, status).await {
        debug!(error = %w, "could not record the failure in the status");
    }
}

/// Retries transient failures with a per-pipeline exponential backoff; permanent ones wait
/// for a change of the pipeline.
pub fn error_policy(p: Arc<StreamingPipeline>, e: &Error, ctx: Arc<Context>) -> Action {
    if e.is_permanent() {
        Action::await_change()
    } else {
        Action::requeue(ctx.retry_after(&key(&p)))
    }
}

async fn run(p: &StreamingPipeline, ctx: &Context) -> Result<(Action, &'static str), Error> {
    let name = p.name_any();
    let namespace = p
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let regarding = p.object_ref(&());
    let previous = p.status.as_ref();
    let selector = build::selector_string(&name);

    // dereference
    let observed = dereference::observe(
        &ctx.client,
        &ctx.http,
        ctx.settings.progress_timeout,
        &namespace,
        &name,
    )
    .await?;
    let reports: Vec<(&str, &WorkerProgress)> = observed
        .workers
        .iter()
        .filter_map(|w| w.report.as_ref().ok().map(|r| (w.pod.as_str(), r)))
        .collect();
    let mut merged = merge(&reports);
    merged.add_terminated(&observed.terminated);
    let observation = |invalid, not_owned, deployment, job| Observation {
        generation: p.meta().generation,
        spec: &p.spec,
        invalid,
        not_owned,
        deployment,
        job,
        workers: &observed.workers,
        merged: &merged,
        selector: &selector,
        now: k8s_openapi::jiff::Timestamp::now(),
    };

    // validate
    let valid = match validate::validate(p) {
        Ok(v) => v,
        Err(problems) => {
            info!(%problems, "invalid spec: children left as they are");
            let status = status::compute(
                &observation(
                    Some(&problems),
                    None,
                    observed.deployment.as_ref(),
                    observed.job.as_ref(),
                ),
                previous,
            );
            for n in events::problems(previous, &status) {
                events::publish(&ctx.recorder, &regarding, &n).await;
            }
            finish(ctx, p, &namespace, status).await?;
            return Ok((Action::await_change(), status::INVALID_SPEC));
        }
    };

    // build
    let children = build::build_children(&valid, &ctx.settings)?;

    // apply
    let workload = match apply::apply_children(&ctx.client, &children, &valid.owner.uid).await {
        Ok(w) => w,
        Err(e @ apply::Error::NotOwned { .. }) => {
            let why = e.to_string();
            info!(error = %why, "a child's name is taken: nothing applied");
            let status = status::compute(
                &observation(
                    None,
                    Some(&why),
                    observed.deployment.as_ref(),
                    observed.job.as_ref(),
                ),
                previous,
            );
            for n in events::problems(previous, &status) {
                events::publish(&ctx.recorder, &regarding, &n).await;
            }
            finish(ctx, p, &namespace, status).await?;
            // The other object is not watched: look again later.
            return Ok((
                Action::requeue(ctx.settings.progress_interval),
                status::CHILD_NOT_OWNED,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let cronjobs = apply::apply_cronjobs(&ctx.client, &children, &valid.owner.uid).await?;
    let mut notices = match &children.workload {
        build::Workload::Deployment(_) => {
            events::lifecycle(observed.deployment.as_ref(), &valid.spec, &name)
        }
        build::Workload::Job(_) => events::job_lifecycle(observed.job.as_ref(), &valid.spec, &name),
    };
    let spec_changed = previous.and_then(|s| s.observed_generation) != valid.generation;
    if spec_changed || (observed.deployment.is_none() && observed.job.is_none()) {
        let deleted =
            apply::delete_orphans(&ctx.client, &namespace, &name, &valid.owner.uid, &children)
                .await?;
        if !deleted.is_empty() {
            notices.push(Notice {
                warning: false,
                reason: Reason::OrphansDeleted,
                note: format!("deleted {}", deleted.join(", ")),
            });
        }
    }

    // status
    let mut status = status::compute(
        &observation(None, None, workload.deployment(), workload.job()),
        previous,
    );
    status.maintenance = status::maintenance(&cronjobs);
    notices.extend(events::problems(previous, &status));
    for n in &notices {
        events::publish(&ctx.recorder, &regarding, n).await;
    }
    finish(ctx, p, &namespace, status).await?;
    let finished = workload.job().and_then(status::job_finished).is_some();
    let action = if valid.spec.effective_replicas() == 0 || finished {
        Action::await_change()
    } else {
        Action::requeue(ctx.settings.progress_interval)
    };
    Ok((action, SUCCESS))
}

/// Records the phase and conditions in the metrics and writes the status when it changed.
async fn finish(
    ctx: &Context,
    p: &StreamingPipeline,
    namespace: &str,
    status: StreamingPipelineStatus,
) -> Result<(), Error> {
    ctx.metrics.set_status(namespace, &p.name_any(), &status);
    write_status(ctx, p, namespace, status).await
}

/// Writes the status (server-side apply on the status subresource) when it changed.
async fn write_status(
    ctx: &Context,
    p: &StreamingPipeline,
    namespace: &str,
    status: StreamingPipelineStatus,
) -> Result<(), Error> {
    if p.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = p.name_any();
    let patch = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    });
    Api::<StreamingPipeline>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            &name,
            &PatchParams::apply(build::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::StatusWriteFailed {
            namespace: namespace.into(),
            name,
            source,
        })?;
    Ok(())
}
