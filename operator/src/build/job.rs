//! Pure: the Job of an `availableNow` pipeline — the workers' pod template, run to
//! completion and never restarted: a worker that fails has failed for a reason a restart
//! does not cure (it waits out outages itself), and its termination message says why.

use k8s_openapi::api::batch::v1::{Job, JobSpec};

use super::child_meta;
use super::deployment::build_pod_template;
use crate::validate::ValidPipeline;

/// The Job, named after the pipeline: `parallelism` workers in one consumer group, no
/// retries (`backoffLimit: 0`, `restartPolicy: Never`), suspended while the pipeline is
/// suspended or scaled to zero. The pod template is immutable in a Job, so a changed
/// pipeline file means a new Job (see `apply`).
pub fn build_job(v: &ValidPipeline, config_hash: &str) -> Job {
    let replicas = v.spec.effective_replicas();
    Job {
        metadata: child_meta(v, v.name.clone()),
        spec: Some(JobSpec {
            parallelism: Some(v.spec.replicas.max(1)),
            backoff_limit: Some(0),
            suspend: Some(replicas == 0),
            template: build_pod_template(v, config_hash, Some("Never")),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::CONFIG_HASH_ANNOTATION;
    use crate::validate::{tests::pipeline, validate};
    use spillway_api::TriggerSpec;

    #[test]
    fn runs_once_without_retries_and_suspends_with_the_pipeline() {
        let mut p = pipeline();
        p.spec.trigger = Some(TriggerSpec {
            available_now: Some(true),
            ..Default::default()
        });
        p.spec.replicas = 2;
        let mut v = validate(&p).unwrap();
        let job = build_job(&v, "h1");
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.parallelism, Some(2));
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.suspend, Some(false));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let meta = spec.template.metadata.as_ref().unwrap();
        assert_eq!(
            meta.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
            "h1"
        );
        crate::build::deployment::tests::assert_restricted(pod);
        v.spec.suspend = true;
        let spec = build_job(&v, "h1").spec.unwrap();
        assert_eq!(spec.suspend, Some(true));
        assert_eq!(spec.parallelism, Some(2));
    }

    #[test]
    fn a_pipeline_with_ending_offsets_runs_as_a_job_without_a_budget() {
        let mut p = pipeline();
        p.spec.source.kafka.ending_offsets = Some(spillway_api::EndingOffsets::Latest);
        let v = validate(&p).unwrap();
        let children =
            crate::build::build_children(&v, &crate::config::Settings::default()).unwrap();
        assert!(children.workload.job().is_some());
        assert!(children.pdb.is_none());
        // Without it, the same pipeline streams in a Deployment.
        let v = validate(&pipeline()).unwrap();
        let children =
            crate::build::build_children(&v, &crate::config::Settings::default()).unwrap();
        assert!(children.workload.deployment().is_some());
    }
}
