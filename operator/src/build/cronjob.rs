//! Pure: the maintenance CronJobs of `spec.maintenance` (Delta sinks) — `spillway maintain
//! optimize|vacuum` in the worker's pod template (same image, secrets, pipeline file and
//! restricted security context), one CronJob per action.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{CONFIG_DIR, PIPELINE_FILE, build_deployment, child_meta};
use crate::validate::ValidPipeline;

/// The maintenance actions, as named in CronJob names and `spillway maintain`.
pub const OPTIMIZE: &str = "optimize";
/// See [`OPTIMIZE`].
pub const VACUUM: &str = "vacuum";

/// Name of a pipeline's CronJob for `action`.
pub fn cronjob_name(pipeline: &str, action: &str) -> String {
    format!("{pipeline}-{action}")
}

/// The CronJobs of a pipeline's maintenance schedules (none for a Parquet sink, or when
/// suspended: maintenance of a suspended pipeline's table is the user's call).
pub fn build_cronjobs(v: &ValidPipeline, config_hash: &str) -> Vec<CronJob> {
    let Some(m) = &v.spec.maintenance else {
        return vec![];
    };
    if v.spec.sink.delta.is_none() || v.spec.suspend {
        return vec![];
    }
    let mut out = vec![];
    if let Some(o) = &m.optimize {
        out.push(cronjob(v, config_hash, OPTIMIZE, &o.schedule));
    }
    if let Some(vac) = &m.vacuum {
        out.push(cronjob(v, config_hash, VACUUM, &vac.schedule));
    }
    out
}

fn cronjob(v: &ValidPipeline, config_hash: &str, action: &str, schedule: &str) -> CronJob {
    // The worker's pod template, turned into a one-shot maintenance pod.
    let mut template: PodTemplateSpec = build_deployment(v, config_hash).spec.template;
    if let Some(pod) = template.spec.as_mut() {
        pod.restart_policy = Some("Never".into());
        pod.termination_grace_period_seconds = Some(30);
        for c in &mut pod.containers {
            c.args = Some(vec![
                "maintain".to_string(),
                action.to_string(),
                "-f".to_string(),
                format!("{CONFIG_DIR}/{PIPELINE_FILE}"),
            ]);
            c.ports = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
        }
    }
    if let Some(meta) = template.metadata.as_mut() {
        // Not selected by the Deployment, the Service or the PodMonitor: it is no worker.
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(super::NAME_LABEL);
            labels.insert(super::NAME_LABEL.into(), MAINTENANCE_APP.into());
        }
    }
    let mut meta: ObjectMeta = child_meta(v, cronjob_name(&v.name, action));
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(super::NAME_LABEL.into(), MAINTENANCE_APP.into());
    }
    CronJob {
        metadata: meta,
        spec: CronJobSpec {
            schedule: schedule.to_string(),
            time_zone: Some("Etc/UTC".into()),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(3),
            starting_deadline_seconds: Some(3600),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    active_deadline_seconds: Some(6 * 3600),
                    ttl_seconds_after_finished: Some(24 * 3600),
                    template,
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `app.kubernetes.io/name` of the maintenance CronJobs and their pods.
pub const MAINTENANCE_APP: &str = "spillway-maintenance";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{tests::pipeline, validate};

    fn with_maintenance() -> spillway_api::StreamingPipeline {
        let mut p = pipeline();
        p.spec.maintenance = Some(
            serde_yaml::from_str(
                "{optimize: {schedule: '15 * * * *'}, vacuum: {schedule: '30 3 * * *', retention: 240h}}",
            )
            .unwrap(),
        );
        p
    }

    #[test]
    fn one_cronjob_per_action_running_spillway_maintain_in_the_worker_pod() {
        let v = validate(&with_maintenance()).unwrap();
        let jobs = build_cronjobs(&v, "h");
        let names: Vec<_> = jobs
            .iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["events-optimize", "events-vacuum"]);
        let spec = &jobs[1].spec;
        assert_eq!(spec.schedule, "30 3 * * *");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = spec
            .job_template
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_ref().unwrap(),
            &["maintain", "vacuum", "-f", "/etc/spillway/pipeline.yaml"]
        );
        assert!(c.readiness_probe.is_none() && c.ports.is_none());
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let labels = jobs[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels[super::super::NAME_LABEL], MAINTENANCE_APP);
        assert_eq!(labels[super::super::INSTANCE_LABEL], "events");
        assert_eq!(
            jobs[0].metadata.owner_references.as_ref().unwrap()[0].uid,
            "0000-1111"
        );
    }

    #[test]
    fn no_cronjobs_without_maintenance_or_when_suspended() {
        let v = validate(&pipeline()).unwrap();
        assert!(build_cronjobs(&v, "h").is_empty());
        let mut p = with_maintenance();
        p.spec.suspend = true;
        let v = validate(&p).unwrap();
        assert!(build_cronjobs(&v, "h").is_empty());
    }
}
