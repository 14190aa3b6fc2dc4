//! Reconcile scenarios against a mocked API server (tower-test), one per path. Each
//! scenario lists the calls the reconciler must make, in order; a call that never comes
//! fails the scenario by timeout, an unexpected one fails the reconciliation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixtures;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fixtures::*;
use http::Method;
use kube::runtime::controller::Action;
use serde_json::json;
use spillway_api::report::{QueryStatus, WorkerProgress};
use spillway_api::{
    Phase, SinkProgress, SourceProgress, StreamingPipelineStatus, StreamingQueryProgress,
};
use spillway_operator::reconcile::{error_policy, reconcile};

fn cond<'a>(
    s: &'a StreamingPipelineStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition in {:?}", s.conditions))
}

#[tokio::test]
async fn new_pipeline_applies_children_and_writes_status() {
    let (ctx, mut api) = context();
    let p = pipeline(1);
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
        let applied = api
            .apply_children(Some(deployment_status(0, 0)), true)
            .await;
        api.no_orphans().await;
        api.event_with("Normal", "Created").await;
        let status = api.status(&pp).await;
        (applied, status)
    });
    let action = reconcile(Arc::new(p), ctx.clone()).await.unwrap();
    let (applied, status) = finish(script).await;

    assert_eq!(action, Action::requeue(ctx.settings.progress_interval));
    // ConfigMap: the pipeline file, owned by the pipeline
    let yaml = applied.configmap["data"]["pipeline.yaml"].as_str().unwrap();
    let file = spillway_api::manifest::parse(yaml).unwrap();
    assert_eq!(
        file.spec.source.kafka.topics,
        Some(vec!["hsudemo".to_string()])
    );
    for child in [
        &applied.configmap,
        &applied.deployment,
        &applied.service,
        applied.pdb.as_ref().unwrap(),
    ] {
        let owner = &child["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], UID);
        assert_eq!(owner["controller"], true);
        assert_eq!(
            child["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "spillway-operator"
        );
    }
    // Deployment: replicas, hash, restricted profile
    assert_eq!(applied.replicas(), 2);
    assert_eq!(applied.config_hash().len(), 16);
    let pod = &applied.deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    // Status
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.selector.as_deref(),
        Some(
            "app.kubernetes.io/instance=events,app.kubernetes.io/managed-by=spillway-operator,app.kubernetes.io/name=spillway-worker"
        )
    );
    assert_eq!(cond(&status, "Ready").status, "False");
    assert_eq!(cond(&status, "Progressing").status, "True");
    assert_eq!(cond(&status, "Degraded").status, "False");
}

/// Reconciles `p` whose Deployment exists with 2 replicas, none ready; returns the applied
/// children and the status written.
async fn reconcile_existing(
    p: spillway_api::StreamingPipeline,
) -> (Applied, StreamingPipelineStatus) {
    let (ctx, mut api) = context();
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(Some(deployment(2, 0))).await;
        let applied = api
            .apply_children(Some(deployment_status(2, 0)), true)
            .await;
        api.no_orphans().await;
        let status = api.status(&pp).await;
        (applied, status)
    });
    reconcile(Arc::new(p), ctx).await.unwrap();
    finish(script).await
}

#[tokio::test]
async fn spec_change_rolls_the_pods_with_a_new_config_hash() {
    let (before, _) = reconcile_existing(pipeline(1)).await;
    let mut changed = pipeline(2);
    changed.spec.source.kafka.max_records_per_batch = 1000;
    let (after, status) = reconcile_existing(changed).await;
    assert_ne!(before.config_hash(), after.config_hash());
    assert_eq!(status.observed_generation, Some(2));
    let file = after.configmap["data"]["pipeline.yaml"].as_str().unwrap();
    assert!(file.contains("maxRecordsPerBatch: 1000"), "{file}");
    // the same spec yields the same hash
    let (again, _) = reconcile_existing(pipeline(1)).await;
    assert_eq!(before.config_hash(), again.config_hash());
}

#[tokio::test]
async fn scaling_keeps_the_config_hash_and_publishes_scaled() {
    let (before, _) = reconcile_existing(pipeline(1)).await;
    let (ctx, mut api) = context();
    let mut p = pipeline(2);
    p.spec.replicas = 4;
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(Some(deployment(2, 0))).await;
        let applied = api
            .apply_children(Some(deployment_status(2, 0)), true)
            .await;
        api.no_orphans().await;
        let e = api.event_with("Normal", "Scaled").await;
        api.status(&pp).await;
        (applied, e)
    });
    reconcile(Arc::new(p), ctx).await.unwrap();
    let (applied, event) = finish(script).await;
    assert_eq!(applied.replicas(), 4);
    assert_eq!(applied.config_hash(), before.config_hash());
    assert_eq!(event["note"], "scaled workers from 2 to 4");
}

#[tokio::test]
async fn suspend_scales_to_zero_and_removes_the_budget() {
    let (ctx, mut api) = context();
    let mut p = pipeline(2);
    p.spec.suspend = true;
    p.status = Some(StreamingPipelineStatus {
        phase: Some(Phase::Running),
        observed_generation: Some(1),
        ..Default::default()
    });
    let pp = p.clone();
    let script = tokio::spawn(async move {
        // two ready workers, not reachable: no pod has an IP yet in this scenario
        api.get_deployment(Some(deployment(2, 2))).await;
        api.list_pods(vec![]).await;
        let applied = api
            .apply_children(Some(deployment_status(0, 0)), false)
            .await;
        api.list(
            &configmaps(),
            vec![owned("ConfigMap", "v1", "events-pipeline")],
        )
        .await;
        api.list(&deployments(), vec![owned("Deployment", "apps/v1", NAME)])
            .await;
        api.list(&jobs(), vec![]).await;
        api.list(&services(), vec![owned("Service", "v1", NAME)])
            .await;
        api.list(
            &pdbs(),
            vec![owned("PodDisruptionBudget", "policy/v1", NAME)],
        )
        .await;
        api.delete(&format!("{}/{NAME}", pdbs())).await;
        api.list(&network_policies(), vec![]).await;
        api.list(&cronjobs(), vec![]).await;
        api.event_with("Normal", "Suspended").await;
        let orphans = api.event_with("Normal", "OrphansDeleted").await;
        let status = api.status(&pp).await;
        (applied, orphans, status)
    });
    let action = reconcile(Arc::new(p), ctx).await.unwrap();
    let (applied, orphans, status) = finish(script).await;
    assert_eq!(action, Action::await_change());
    assert_eq!(applied.replicas(), 0);
    assert!(applied.pdb.is_none());
    assert_eq!(orphans["note"], "deleted PodDisruptionBudget/events");
    assert_eq!(status.phase, Some(Phase::Suspended));
    assert_eq!(cond(&status, "Ready").reason, "Suspended");
}

#[tokio::test]
async fn resume_scales_back_up() {
    let (ctx, mut api) = context();
    let p = pipeline(3);
    let mut p = p;
    p.status = Some(StreamingPipelineStatus {
        phase: Some(Phase::Suspended),
        observed_generation: Some(2),
        ..Default::default()
    });
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(Some(deployment(0, 0))).await;
        let applied = api
            .apply_children(Some(deployment_status(0, 0)), true)
            .await;
        api.no_orphans().await;
        api.event_with("Normal", "Resumed").await;
        let status = api.status(&pp).await;
        (applied, status)
    });
    let action = reconcile(Arc::new(p), ctx.clone()).await.unwrap();
    let (applied, status) = finish(script).await;
    assert_eq!(action, Action::requeue(ctx.settings.progress_interval));
    assert_eq!(applied.replicas(), 2);
    assert!(applied.pdb.is_some());
    assert_eq!(status.phase, Some(Phase::Pending));
}

#[tokio::test]
async fn invalid_spec_changes_no_child_and_waits_for_a_change() {
    let (ctx, mut api) = context();
    let mut p = pipeline(1);
    p.spec.source.kafka.topics = Some(vec!["not a topic".into()]);
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
        let event = api.event_with("Warning", "InvalidSpec").await;
        let status = api.status(&pp).await;
        (api, event, status)
    });
    let action = reconcile(Arc::new(p.clone()), ctx.clone()).await.unwrap();
    let (mut api, event, status) = finish(script).await;
    assert_eq!(action, Action::await_change());
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("spec.source.kafka.topics[0]"),
        "{event}"
    );
    assert_eq!(status.phase, Some(Phase::Failed));
    let ready = cond(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready.message.contains("spec.source.kafka.topics[0]"),
        "{}",
        ready.message
    );
    assert_eq!(status.last_error.as_ref().unwrap().reason, "InvalidSpec");

    // Reconciled again (e.g. after a restart) with that status: no write, no Event.
    p.status = Some(status);
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
    });
    let action = reconcile(Arc::new(p), ctx).await.unwrap();
    finish(script).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_deleted_deployment_is_recreated() {
    let (ctx, mut api) = context();
    let mut p = pipeline(1);
    p.status = Some(StreamingPipelineStatus {
        phase: Some(Phase::Running),
        observed_generation: Some(1),
        replicas: 2,
        ready_replicas: 2,
        ..Default::default()
    });
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
        let applied = api
            .apply_children(Some(deployment_status(0, 0)), true)
            .await;
        api.no_orphans().await;
        api.event_with("Normal", "Created").await;
        let status = api.status(&pp).await;
        (applied, status)
    });
    reconcile(Arc::new(p), ctx).await.unwrap();
    let (applied, status) = finish(script).await;
    assert_eq!(applied.replicas(), 2);
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!((status.replicas, status.ready_replicas), (0, 0));
}

fn offsets(topic: &str, parts: &[(&str, i64)]) -> BTreeMap<String, BTreeMap<String, i64>> {
    BTreeMap::from([(
        topic.to_string(),
        parts.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
    )])
}

fn report(batch: i64, rows: i64, rate: f64, parts: &[(&str, i64)], lag: i64) -> WorkerProgress {
    let latest = StreamingQueryProgress {
        id: "q".into(),
        run_id: format!("run-{batch}"),
        name: Some(NAME.into()),
        batch_id: batch,
        timestamp: format!("2025-06-01T00:00:{batch:02}Z"),
        num_input_rows: rows,
        input_rows_per_second: rate,
        processed_rows_per_second: rate,
        sources: vec![SourceProgress {
            description: "KafkaV2[Subscribe[hsudemo]]".into(),
            end_offset: offsets("hsudemo", parts),
            num_input_rows: rows,
            input_rows_per_second: rate,
            processed_rows_per_second: rate,
            ..Default::default()
        }],
        sink: SinkProgress {
            description: "DeltaSink[s3://lake/tables/events]".into(),
            num_output_rows: rows,
            ..Default::default()
        },
        ..Default::default()
    };
    WorkerProgress {
        latest: Some(latest.clone()),
        recent: vec![latest],
        status: QueryStatus {
            message: "Waiting for next trigger".into(),
            ..Default::default()
        },
        conditions: vec![],
        lag: Some(lag),
    }
}

/// A running pipeline (status at generation 1) whose two ready pods listen on `ports`.
async fn reconcile_running(ports: [u16; 2]) -> StreamingPipelineStatus {
    let (ctx, mut api) = context();
    let mut p = pipeline(1);
    p.status = Some(StreamingPipelineStatus {
        phase: Some(Phase::Running),
        observed_generation: Some(1),
        ..Default::default()
    });
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(Some(deployment(2, 2))).await;
        api.list_pods(vec![pod("events-a", ports[0]), pod("events-b", ports[1])])
            .await;
        api.apply_children(Some(deployment_status(2, 2)), true)
            .await;
        api.status(&pp).await
    });
    let action = reconcile(Arc::new(p), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(ctx.settings.progress_interval));
    finish(script).await
}

#[tokio::test]
async fn progress_is_merged_from_two_workers() {
    let a = worker(report(7, 100, 10.0, &[("0", 500), ("1", 400)], 5)).await;
    let b = worker(report(9, 50, 2.5, &[("2", 300)], 7)).await;
    let status = reconcile_running([a.port(), b.port()]).await;
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(cond(&status, "Ready").status, "True");
    assert_eq!(status.lag, Some(12));
    let progress = status.progress.unwrap();
    assert_eq!(progress.num_input_rows, 150);
    assert_eq!(progress.processed_rows_per_second, 12.5);
    assert_eq!(progress.batch_id, 9);
    assert_eq!(
        progress.sources[0].end_offset,
        offsets("hsudemo", &[("0", 500), ("1", 400), ("2", 300)])
    );
    assert_eq!(progress.sink.metrics["batchId.events-a"], "7");
    assert_eq!(progress.sink.metrics["batchId.events-b"], "9");
}

#[tokio::test]
async fn a_worker_that_does_not_answer_degrades_the_pipeline() {
    let a = worker(report(7, 100, 10.0, &[("0", 500)], 5)).await;
    let silent = closed_port().await;
    let status = reconcile_running([a.port(), silent]).await;
    assert_eq!(status.phase, Some(Phase::Degraded));
    let degraded = cond(&status, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "WorkerUnreachable")
    );
    assert!(
        degraded.message.contains("events-b"),
        "{}",
        degraded.message
    );
    assert_eq!(status.last_error.unwrap().reason, "WorkerUnreachable");
    // what the answering worker reported still counts
    assert_eq!(status.progress.unwrap().num_input_rows, 100);
    assert_eq!(status.lag, Some(5));
}

#[tokio::test]
async fn a_failed_apply_publishes_an_event_and_backs_off() {
    let (ctx, mut api) = context();
    let p = Arc::new(pipeline(1));
    let pp = (*p).clone();
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
        api.fail(
            Method::PATCH,
            &format!("{}/{NAME}-pipeline", configmaps()),
            500,
            "InternalError",
        )
        .await;
        let event = api.event_with("Warning", "ReconcileFailed").await;
        let status = api.status(&pp).await;
        (event, status)
    });
    let err = reconcile(p.clone(), ctx.clone()).await.unwrap_err();
    let (event, status) = finish(script).await;
    let last = status.last_error.unwrap();
    assert_eq!(last.reason, "ApplyFailed");
    assert!(last.message.contains("events-pipeline"), "{}", last.message);
    assert_eq!(err.reason(), "ApplyFailed");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .starts_with("ApplyFailed: failed to apply ConfigMap analytics/events-pipeline")
    );
    assert!(!err.is_permanent());
    let first = error_policy(p.clone(), &err, ctx.clone());
    let second = error_policy(p.clone(), &err, ctx.clone());
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
}

#[tokio::test]
async fn an_object_the_api_server_rejects_waits_for_a_change() {
    let (ctx, mut api) = context();
    let p = Arc::new(pipeline(1));
    let pp = (*p).clone();
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
        api.apply(&format!("{}/{NAME}-pipeline", configmaps()), None)
            .await;
        api.fail(
            Method::PATCH,
            &format!("{}/{NAME}", deployments()),
            422,
            "Invalid",
        )
        .await;
        api.event_with("Warning", "ReconcileFailed").await;
        api.status(&pp).await
    });
    let err = reconcile(p.clone(), ctx.clone()).await.unwrap_err();
    let status = finish(script).await;
    assert_eq!(status.last_error.unwrap().reason, "ApplyFailed");
    assert!(err.is_permanent());
    assert_eq!(error_policy(p, &err, ctx), Action::await_change());
}

#[tokio::test]
async fn maintenance_schedules_become_cronjobs_and_their_last_runs_show_in_status() {
    let (ctx, mut api) = context();
    let mut p = pipeline(1);
    p.spec.maintenance = Some(
        serde_yaml::from_str(
            "{optimize: {schedule: '15 * * * *'}, vacuum: {schedule: '30 3 * * *'}}",
        )
        .unwrap(),
    );
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
        api.apply_children(Some(deployment_status(0, 0)), true)
            .await;
        let optimize = api
            .apply(
                &format!("{}/{NAME}-optimize", cronjobs()),
                Some(json!({
                    "lastScheduleTime": "2026-11-22T01:15:00Z",
                    "lastSuccessfulTime": "2026-11-22T01:16:30Z"
                })),
            )
            .await;
        let vacuum = api
            .apply(&format!("{}/{NAME}-vacuum", cronjobs()), None)
            .await;
        api.no_orphans().await;
        api.event_with("Normal", "Created").await;
        let status = api.status(&pp).await;
        (optimize, vacuum, status)
    });
    reconcile(Arc::new(p), ctx.clone()).await.unwrap();
    let (optimize, vacuum, status) = finish(script).await;

    assert_eq!(optimize["spec"]["schedule"], "15 * * * *");
    assert_eq!(vacuum["spec"]["schedule"], "30 3 * * *");
    let pod = &optimize["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["args"],
        json!(["maintain", "optimize", "-f", "/etc/spillway/pipeline.yaml"])
    );
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        optimize["metadata"]["ownerReferences"][0]["kind"],
        "StreamingPipeline"
    );
    let m = status.maintenance.unwrap();
    let o = m.last_optimize.unwrap();
    assert_eq!(
        (o.time.as_str(), o.result.as_str()),
        ("2026-11-22T01:16:30Z", "Succeeded")
    );
    assert!(m.last_vacuum.is_none(), "never ran");
}

#[tokio::test]
async fn a_child_name_taken_by_another_object_is_left_alone() {
    let (ctx, mut api) = context();
    let p = Arc::new(pipeline(1));
    let pp = (*p).clone();
    let script = tokio::spawn(async move {
        api.get_deployment(None).await;
        // Someone else's ConfigMap under the pipeline's ConfigMap name: read, never patched.
        let foreign = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{NAME}-pipeline"), "namespace": NS, "uid": "other"},
            "data": {"theirs": "yes"}});
        api.get(&format!("{}/{NAME}-pipeline", configmaps()), &foreign)
            .await;
        let event = api.event_with("Warning", "ChildNotOwned").await;
        let status = api.status(&pp).await;
        (event, status)
    });
    let action = reconcile(p, ctx.clone()).await.unwrap();
    let (event, status) = finish(script).await;
    assert_eq!(action, Action::requeue(ctx.settings.progress_interval));
    assert_eq!(status.phase, Some(Phase::Failed));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "ChildNotOwned");
    assert!(
        ready
            .message
            .contains("ConfigMap analytics/events-pipeline exists and is not owned"),
        "{}",
        ready.message
    );
    assert!(event["note"].as_str().unwrap().contains("left alone"));
}

/// An `availableNow` pipeline whose Job the controller manager reports `Complete`.
#[tokio::test]
async fn an_available_now_pipeline_runs_as_a_job_to_completed() {
    let (ctx, mut api) = context();
    let mut p = pipeline(1);
    p.spec.trigger = Some(spillway_api::TriggerSpec {
        available_now: Some(true),
        ..Default::default()
    });
    p.status = Some(StreamingPipelineStatus {
        observed_generation: Some(1),
        ..Default::default()
    });
    let pp = p.clone();
    let script = tokio::spawn(async move {
        api.get_missing(&format!("{}/{NAME}", deployments())).await;
        // The Job exists (of this pipeline file) and is complete; its pod succeeded.
        let valid = spillway_operator::validate::validate(&pp).unwrap();
        let hash = spillway_operator::build::build_children(&valid, &Default::default())
            .unwrap()
            .config_hash;
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": NAME, "namespace": NS, "uid": "job-uid",
                         "ownerReferences": [{"apiVersion": "spillway.dev/v1alpha1", "kind": "StreamingPipeline",
                                              "name": NAME, "uid": UID, "controller": true}]},
            "spec": {"template": {"metadata": {"annotations": {"spillway.dev/config-hash": hash}},
                                  "spec": {"containers": [{"name": "worker"}]}}},
            "status": {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]}});
        api.get(&format!("{}/{NAME}", jobs()), &job).await;
        let done = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "events-x", "namespace": NS,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": NAME,
                                              "uid": "job-uid", "controller": true}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "worker", "ready": false,
                "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 0,
                "message": "{\"type\":\"Completed\",\"reason\":\"Completed\",\"message\":\"done\"}"}}}]}});
        api.list_pods(vec![done]).await;
        api.apply(&format!("{}/{NAME}-pipeline", configmaps()), None)
            .await;
        let body = api
            .apply_existing(
                &format!("{}/{NAME}", jobs()),
                &job,
                Some(job["status"].clone()),
            )
            .await;
        api.apply(&format!("{}/{NAME}", services()), None).await;
        let event = api.event_with("Normal", "Completed").await;
        let status = api.status(&pp).await;
        (body, event, status)
    });
    let action = reconcile(Arc::new(p), ctx).await.unwrap();
    let (job, event, status) = finish(script).await;
    assert_eq!(action, Action::await_change());
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(status.phase, Some(Phase::Completed));
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("committed its end offsets")
    );
}
