//! Exactly once under failure, against Apache Kafka and moto: `spillway run` SIGKILLed at
//! random moments and restarted (Delta on S3, Parquet), two workers in one consumer group
//! with one SIGKILLed mid-way (its partitions move to the other after the session
//! timeout), and a zombie writer fenced by the new owner. Every table is read
//! back with our code and with the Python `deltalake` / `pyarrow` packages: every
//! (partition, offset) exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::faults::{
    Kind, assert_exactly_once, committed_batches, count_in, delta_counts, kill_repeatedly,
    kill_test_manifest, spawn_run, wait_for, wait_for_progress,
};
use common::manifest::s3_storage;
use serde_json::json;
use spillway_e2e as support;
use spillway_worker::source::TopicPartition;

const PARTITIONS: i32 = 4;

/// `count` HsuTestEvents over 4 partitions.
fn produce(topic: &str, count: u64, seed: u64) {
    let partitions = PARTITIONS.to_string();
    common::produce(
        &support::kafka_bootstrap(),
        topic,
        count,
        seed,
        &["--partitions", &partitions],
    );
}

/// The rest, in-process with `availableNow`: what the killed runs left is finished.
async fn finish(text: &str) -> spillway_worker::engine::RunSummary {
    common::run_available_now(text).await.unwrap()
}

/// 200,000 records over 4 partitions; `spillway run` SIGKILLed at 6 random moments and
/// restarted; the rest finished by an `availableNow` run. Every offset exactly once.
async fn sigkill_case(kind: Kind, seed: u64) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    support::require("moto (s3)", &support::host_port(&support::s3_endpoint())).unwrap();
    let name = match kind {
        Kind::Delta => "kill-delta",
        Kind::Parquet => "kill-parquet",
    };
    let topic = support::unique(name);
    let n = 200_000;
    produce(&topic, n, seed);
    let prefix = format!("s3://{}/{}", support::s3_bucket(), support::unique(name));
    let data = format!("{prefix}/data");
    let sink = match kind {
        Kind::Delta => json!({"delta": {"uri": data}}),
        Kind::Parquet => json!({"parquet": {"uri": data, "partitionBy": ["event"]}}),
    };
    let checkpoint = format!("{prefix}/checkpoint");
    let dir = std::env::temp_dir().join(support::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("pipeline.yaml");
    let pipeline = kill_test_manifest(&topic, &topic)
        .sink(sink)
        .checkpoint(&checkpoint)
        .storage(s3_storage());
    std::fs::write(&manifest, pipeline.clone().interval("500ms").yaml()).unwrap();

    let kills = 6;
    let d2 = dir.clone();
    tokio::task::spawn_blocking(move || kill_repeatedly(&manifest, &d2, kills))
        .await
        .unwrap();
    assert!(
        committed_batches(&dir, kills) > 0,
        "the killed runs committed batches"
    );
    if let Kind::Delta = kind {
        let (rows, distinct) = delta_counts(&data).await;
        assert_eq!(rows, distinct, "no duplicate right after the kills");
    }

    let rest = finish(&pipeline.available_now().yaml()).await;
    assert!(
        (rest.rows as u64) < n,
        "the killed runs committed part of the stream: the final run wrote {}",
        rest.rows
    );
    assert_exactly_once(&kind, &data, &checkpoint, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_delta_on_s3_every_offset_exactly_once() {
    sigkill_case(Kind::Delta, 21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_parquet_on_s3_every_offset_exactly_once() {
    sigkill_case(Kind::Parquet, 22).await;
}

/// Two workers in one group, on one table; one is SIGKILLed mid-way: it leaves nothing
/// behind but its open batch, and the broker notices it only when its session times out
/// (`session.timeout.ms` 6 s); then the other is assigned every partition and goes on. The
/// rest is finished by an `availableNow` run. Every offset exactly once.
async fn two_workers_case(kind: Kind, seed: u64) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("two-workers");
    let n = 60_000;
    produce(&topic, n, seed);
    let dir = std::env::temp_dir().join(support::unique("two-workers"));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data").display().to_string();
    let checkpoint = dir.join("checkpoint").display().to_string();
    let sink = match kind {
        Kind::Delta => json!({"delta": {"uri": data}}),
        Kind::Parquet => json!({"parquet": {"uri": data}}),
    };
    let manifest = dir.join("pipeline.yaml");
    // Small batches, so both workers are mid-stream when one is killed.
    let pipeline = kill_test_manifest(&topic, &topic)
        .kafka("maxRecordsPerBatch", 500)
        .sink(sink)
        .checkpoint(&checkpoint);
    std::fs::write(&manifest, pipeline.clone().interval("200ms").yaml()).unwrap();

    let (m, d) = (manifest.clone(), dir.clone());
    tokio::task::spawn_blocking(move || {
        let (a_log, b_log) = (d.join("a.log"), d.join("b.log"));
        let mut a = spawn_run(&m, &a_log);
        let mut b = spawn_run(&m, &b_log);
        wait_for_progress(&a_log, 3, Duration::from_secs(90));
        wait_for_progress(&b_log, 3, Duration::from_secs(90));
        let all = "partitions assigned and positioned partitions=4";
        let before = count_in(&b_log, all);
        a.kill().unwrap(); // SIGKILL: no leave-group, no commit of the open batch
        let killed = std::time::Instant::now();
        let status = a.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        wait_for(&b_log, all, before + 1, Duration::from_secs(120));
        eprintln!(
            "the killed worker's partitions moved after {:?}",
            killed.elapsed()
        );
        let committed = count_in(&b_log, "batch committed");
        wait_for_progress(&b_log, committed + 5, Duration::from_secs(120));
        b.kill().unwrap();
        let _ = b.wait();
    })
    .await
    .unwrap();

    finish(&pipeline.available_now().yaml()).await;
    assert_exactly_once(&kind, &data, &checkpoint, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_group_one_sigkilled_midway_parquet() {
    two_workers_case(Kind::Parquet, 23).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_group_one_sigkilled_midway_delta() {
    two_workers_case(Kind::Delta, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_delta_writer_is_fenced_by_the_new_owner() {
    use spillway_worker::sink::delta::{DeltaSink, DeltaSinkError};
    let dir = std::env::temp_dir().join(support::unique("zombie"));
    std::fs::create_dir_all(dir.join("t")).unwrap();
    let url = url::Url::from_directory_path(dir.join("t")).unwrap();
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "_offset",
        arrow_schema::DataType::Int64,
        false,
    )]));
    let rows = |from: i64, to: i64| {
        arrow_array::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow_array::Int64Array::from_iter_values(
                from..to,
            ))],
        )
        .unwrap()
    };
    let mut old = DeltaSink::open(&url, Default::default(), "g", vec![])
        .await
        .unwrap();
    old.commit(
        Some(rows(0, 10)),
        &[(tp.clone(), None)].into(),
        &[(tp.clone(), 10)].into(),
    )
    .await
    .unwrap();
    // The partition moves to a new owner, which resumes at 10 and commits.
    let mut new = DeltaSink::open(&url, Default::default(), "g", vec![])
        .await
        .unwrap();
    assert_eq!(
        new.positions(std::slice::from_ref(&tp)).await.unwrap()[&tp],
        10
    );
    new.commit(
        Some(rows(10, 20)),
        &[(tp.clone(), Some(10))].into(),
        &[(tp.clone(), 20)].into(),
    )
    .await
    .unwrap();
    // The old owner, unaware, tries to commit the same range: fenced, nothing written.
    let err = old
        .commit(
            Some(rows(10, 20)),
            &[(tp.clone(), Some(10))].into(),
            &[(tp.clone(), 20)].into(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DeltaSinkError::Fenced { .. }), "{err}");
    let uri = url.to_string();
    assert_eq!(python_counts_offsets(&uri), (20, 20));
}

/// (rows, distinct offsets) of a local Delta table with only an `_offset` column.
fn python_counts_offsets(uri: &str) -> (u64, u64) {
    let script = r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["_offset"])
print(json.dumps([t.num_rows, len(set(t.column("_offset").to_pylist()))]), flush=True)
os._exit(0)
"#;
    let out = Command::new(support::python())
        .args(["-c", script, uri])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
