//! Table tests of the status computation.

use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use spillway_api::validate::Problem;
use spillway_api::{StreamingQueryProgress, TriggerSpec};

use super::*;
use crate::merge::merge;
use crate::validate::tests::pipeline;
use spillway_api::report::{WorkerCondition, WorkerProgress};

/// A Deployment at `generation`, whose controller observed `observed`, with `n` pods of
/// which `ready` are ready (all updated and available when rolled out).
fn dep(generation: i64, observed: i64, n: i32, ready: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(generation),
            ..Default::default()
        },
        status: Some(DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(n),
            updated_replicas: Some(n),
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ok(pod: &str, conditions: &[&str]) -> Worker {
    Worker {
        pod: pod.into(),
        report: Ok(WorkerProgress {
            latest: Some(StreamingQueryProgress {
                batch_id: 1,
                num_input_rows: 5,
                ..Default::default()
            }),
            conditions: conditions
                .iter()
                .map(|t| WorkerCondition {
                    type_: (*t).into(),
                    reason: "Why".into(),
                    message: "what".into(),
                })
                .collect(),
            lag: Some(3),
            ..Default::default()
        }),
    }
}

fn down(pod: &str) -> Worker {
    Worker {
        pod: pod.into(),
        report: Err("connection refused".into()),
    }
}

fn run(
    spec: &StreamingPipelineSpec,
    invalid: Option<&Problems>,
    d: Option<&Deployment>,
    workers: &[Worker],
    previous: Option<&StreamingPipelineStatus>,
    now: Timestamp,
) -> StreamingPipelineStatus {
    let reports: Vec<(&str, &WorkerProgress)> = workers
        .iter()
        .filter_map(|w| w.report.as_ref().ok().map(|r| (w.pod.as_str(), r)))
        .collect();
    let merged = merge(&reports);
    let o = Observation {
        generation: Some(2),
        spec,
        invalid,
        not_owned: None,
        deployment: d,
        job: None,
        workers,
        merged: &merged,
        selector: "sel",
        now,
    };
    compute(&o, previous)
}

fn cond<'a>(s: &'a StreamingPipelineStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn phases_and_ready_reasons() {
    let problems = Problems(vec![Problem {
        path: "spec.replicas".into(),
        message: "must be 0 or more".into(),
    }]);
    type Edit = fn(&mut StreamingPipelineSpec);
    let none: Edit = |_| {};
    let two: Edit = |s| s.replicas = 2;
    let suspend: Edit = |s| s.suspend = true;
    let zero: Edit = |s| s.replicas = 0;
    let drain: Edit = |s| {
        s.trigger = Some(TriggerSpec {
            available_now: Some(true),
            ..Default::default()
        })
    };
    type Case<'a> = (
        &'a str,
        Edit,
        bool,
        Option<Deployment>,
        Vec<Worker>,
        Phase,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "new",
            none,
            false,
            None,
            vec![],
            Phase::Pending,
            "WorkersNotReady",
        ),
        (
            "starting",
            none,
            false,
            Some(dep(1, 1, 1, 0)),
            vec![],
            Phase::Pending,
            "WorkersNotReady",
        ),
        (
            "running",
            none,
            false,
            Some(dep(1, 1, 1, 1)),
            vec![ok("a", &[])],
            Phase::Running,
            "WorkersReady",
        ),
        (
            "invalid",
            none,
            true,
            Some(dep(1, 1, 1, 1)),
            vec![ok("a", &[])],
            Phase::Failed,
            INVALID_SPEC,
        ),
        (
            "suspended",
            suspend,
            false,
            Some(dep(1, 1, 0, 0)),
            vec![],
            Phase::Suspended,
            "Suspended",
        ),
        (
            "zero",
            zero,
            false,
            Some(dep(1, 1, 0, 0)),
            vec![],
            Phase::Suspended,
            "ScaledToZero",
        ),
        (
            "unreachable",
            two,
            false,
            Some(dep(1, 1, 2, 2)),
            vec![ok("a", &[]), down("b")],
            Phase::Degraded,
            "WorkerUnreachable",
        ),
        (
            "one short",
            two,
            false,
            Some(dep(1, 1, 2, 1)),
            vec![ok("a", &[])],
            Phase::Degraded,
            "WorkersNotReady",
        ),
        (
            "rolling",
            two,
            false,
            Some(dep(2, 1, 2, 1)),
            vec![ok("a", &[])],
            Phase::Running,
            "WorkersReady",
        ),
        (
            "schema",
            none,
            false,
            Some(dep(1, 1, 1, 1)),
            vec![ok("a", &["SchemaError"])],
            Phase::Degraded,
            SCHEMA_ERROR,
        ),
        (
            "data loss",
            none,
            false,
            Some(dep(1, 1, 1, 1)),
            vec![ok("a", &["DataLoss"])],
            Phase::Failed,
            DATA_LOSS,
        ),
        (
            "failed",
            none,
            false,
            Some(dep(1, 1, 1, 1)),
            vec![ok("a", &["Failed", "DataLoss"])],
            Phase::Failed,
            "WorkerFailed",
        ),
        (
            "completed",
            drain,
            false,
            Some(dep(1, 1, 1, 1)),
            vec![ok("a", &["Completed"])],
            Phase::Completed,
            "Completed",
        ),
        (
            "draining",
            drain,
            false,
            Some(dep(1, 1, 1, 1)),
            vec![ok("a", &[])],
            Phase::Running,
            "WorkersReady",
        ),
    ];
    for (name, edit, invalid, d, workers, phase, reason) in cases {
        let mut spec = pipeline().spec;
        edit(&mut spec);
        let s = run(
            &spec,
            invalid.then_some(&problems),
            d.as_ref(),
            &workers,
            None,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s.phase, Some(phase), "{name}");
        let ready = cond(&s, READY);
        assert_eq!(ready.reason, reason, "{name}");
        let want_ready = matches!(phase, Phase::Running | Phase::Completed);
        assert_eq!(ready.status == "True", want_ready, "{name}");
        let degraded = cond(&s, DEGRADED);
        assert_eq!(
            degraded.status == "True",
            matches!(phase, Phase::Degraded | Phase::Failed),
            "{name}"
        );
        assert_eq!(s.observed_generation, Some(2), "{name}");
        assert_eq!(s.selector.as_deref(), Some("sel"), "{name}");
    }
}

#[test]
fn invalid_spec_message_names_the_field() {
    let problems = Problems(vec![Problem {
        path: "spec.source.kafka.topics[0]".into(),
        message: "invalid topic name".into(),
    }]);
    let spec = pipeline().spec;
    let s = run(
        &spec,
        Some(&problems),
        None,
        &[],
        None,
        Timestamp::UNIX_EPOCH,
    );
    let ready = cond(&s, READY);
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("spec.source.kafka.topics[0]"),
        "{}",
        ready.message
    );
    assert_eq!(cond(&s, PROGRESSING).reason, INVALID_SPEC);
    let e = s.last_error.unwrap();
    assert_eq!(e.reason, INVALID_SPEC);
    assert!(e.message.contains("spec.source.kafka.topics[0]"));
}

#[test]
fn replicas_progress_and_lag_come_from_the_world() {
    let mut spec = pipeline().spec;
    spec.replicas = 2;
    let d = dep(1, 1, 2, 2);
    let s = run(
        &spec,
        None,
        Some(&d),
        &[ok("a", &[]), ok("b", &[])],
        None,
        Timestamp::UNIX_EPOCH,
    );
    assert_eq!((s.replicas, s.ready_replicas), (2, 2));
    assert_eq!(s.lag, Some(6));
    assert_eq!(s.progress.as_ref().unwrap().num_input_rows, 10);
    assert_eq!(cond(&s, PROGRESSING).status, "False");
}

#[test]
fn an_unchanged_world_gives_an_equal_status() {
    let spec = pipeline().spec;
    let d = dep(1, 1, 1, 1);
    let t1 = Timestamp::from_second(1_000).unwrap();
    let t2 = Timestamp::from_second(2_000).unwrap();
    for workers in [
        vec![ok("a", &[])],
        vec![down("a")],
        vec![ok("a", &["DataLoss"])],
    ] {
        let first = run(&spec, None, Some(&d), &workers, None, t1);
        let second = run(&spec, None, Some(&d), &workers, Some(&first), t2);
        assert_eq!(first, second);
    }
}

#[test]
fn transitions_move_the_time_and_keep_the_last_error() {
    let spec = pipeline().spec;
    let d = dep(1, 1, 1, 1);
    let t1 = Timestamp::from_second(1_000).unwrap();
    let t2 = Timestamp::from_second(2_000).unwrap();
    let broken = run(&spec, None, Some(&d), &[down("a")], None, t1);
    assert_eq!(
        broken.last_error.as_ref().unwrap().reason,
        "WorkerUnreachable"
    );
    let healed = run(&spec, None, Some(&d), &[ok("a", &[])], Some(&broken), t2);
    assert_eq!(healed.phase, Some(Phase::Running));
    assert_eq!(cond(&healed, READY).last_transition_time, Time(t2));
    assert_eq!(healed.last_error, broken.last_error);
    // progress and lag survive an interval without answers
    let silent = run(&spec, None, Some(&d), &[down("a")], Some(&healed), t2);
    assert_eq!(silent.progress, healed.progress);
    assert_eq!(silent.lag, Some(3));
}

#[test]
fn worker_conditions_appear_and_then_turn_false() {
    let spec = pipeline().spec;
    let d = dep(1, 1, 1, 1);
    let t = Timestamp::UNIX_EPOCH;
    let lost = run(
        &spec,
        None,
        Some(&d),
        &[ok("a", &["DataLoss", "SchemaError"])],
        None,
        t,
    );
    assert_eq!(cond(&lost, DATA_LOSS).status, "True");
    assert_eq!(cond(&lost, DATA_LOSS).message, "a: Why: what");
    assert_eq!(cond(&lost, SCHEMA_ERROR).status, "True");
    let healthy = run(&spec, None, Some(&d), &[ok("a", &[])], Some(&lost), t);
    assert_eq!(cond(&healthy, DATA_LOSS).status, "False");
    assert_eq!(cond(&healthy, DATA_LOSS).reason, "NotReported");
    let fresh = run(&spec, None, Some(&d), &[ok("a", &[])], None, t);
    assert!(fresh.conditions.iter().all(|c| c.type_ != DATA_LOSS));
}

#[test]
fn maintenance_runs_come_from_the_cronjobs_status() {
    use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus};
    let job = |name: &str, scheduled: Option<&str>, ok: Option<&str>| CronJob {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(CronJobStatus {
            last_schedule_time: scheduled.map(|t| Time(t.parse().unwrap())),
            last_successful_time: ok.map(|t| Time(t.parse().unwrap())),
            active: None,
        }),
        ..Default::default()
    };
    assert_eq!(super::maintenance(&[]), None);
    let m = super::maintenance(&[
        job(
            "p-optimize",
            Some("2026-11-22T01:15:00Z"),
            Some("2026-11-22T01:16:30Z"),
        ),
        job(
            "p-vacuum",
            Some("2026-11-22T03:30:00Z"),
            Some("2026-11-21T03:31:00Z"),
        ),
    ])
    .unwrap();
    let o = m.last_optimize.unwrap();
    assert_eq!(
        (o.time.as_str(), o.result.as_str()),
        ("2026-11-22T01:16:30Z", "Succeeded")
    );
    let v = m.last_vacuum.unwrap();
    assert_eq!(
        (v.time.as_str(), v.result.as_str()),
        ("2026-11-22T03:30:00Z", "Failed")
    );
}
