//! Offsets deleted from Kafka before the pipeline read them are data loss, on Apache Kafka
//! with DeleteRecords (the admin API moves a partition's log start):
//! - mid-stream, between two batches of one running pipeline: `onDataLoss: fail` stops with
//!   the exact lost range and the `DataLoss` condition; `skip` counts the lost offsets and
//!   goes on;
//! - at assignment, when the table's next offset is below the log start after a restart.
//!
//! Every table is read back with Python `deltalake`: each surviving offset exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
mod common;

use common::manifest::Manifest;
use common::{Finished, Streaming};
use spillway_e2e as support;
use spillway_worker::engine::EngineError;
use spillway_worker::serve::progress::WorkerConditionType;
use spillway_worker::source::SourceError;

/// The pipeline, without its trigger.
fn manifest(topic: &str, dir: &Path, on_data_loss: &str) -> Manifest {
    Manifest::hsutest(topic)
        .kafka("onDataLoss", on_data_loss)
        .kafka("maxRecordsPerBatch", 100_000)
        .metadata_columns(&["partition", "offset"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
}

/// A fresh one-partition topic and a directory for the table and checkpoint.
async fn setup(name: &str) -> (String, std::path::PathBuf) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique(name);
    common::create_topic(&topic, 1, &[]).await;
    let dir = std::env::temp_dir().join(support::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    (topic, dir)
}

fn produce(topic: &str, count: u64, seed: u64) {
    common::produce(&support::kafka_bootstrap(), topic, count, seed, &[]);
}

/// Partition 0's offsets in the `[from, to)` ranges — the table must hold each exactly
/// once, nothing else.
fn offsets(ranges: &[(i64, i64)]) -> BTreeSet<(i32, i64)> {
    ranges
        .iter()
        .flat_map(|&(from, to)| from..to)
        .map(|o| (0, o))
        .collect()
}

fn assert_table(dir: &Path, want: &BTreeSet<(i32, i64)>) {
    let (rows, pairs) = common::python_pairs(&dir.join("t").display().to_string());
    assert_eq!(rows, want.len() as u64, "rows");
    assert_eq!(&pairs, want, "every surviving offset exactly once");
}

fn assert_data_loss(f: &Finished, topic: &str, from: i64, to: i64) {
    match &f.result {
        Err(EngineError::Source(SourceError::DataLoss {
            tp,
            from: f0,
            to: t0,
        })) => {
            assert_eq!(
                (tp.topic.as_str(), tp.partition, *f0, *t0),
                (topic, 0, from, to)
            );
        }
        other => panic!("expected data loss {from}..{to}, got {other:?}"),
    }
    let message =
        format!("data loss at {topic}/0: offsets {from}..{to} were deleted before they were read");
    let condition = f
        .progress
        .conditions
        .iter()
        .find(|c| c.kind() == Some(WorkerConditionType::DataLoss))
        .unwrap_or_else(|| panic!("no DataLoss condition: {:?}", f.progress.conditions));
    assert_eq!(condition.reason, "DataLoss");
    assert_eq!(condition.message, message);
}

/// A running pipeline has committed offsets 0..1000 and waits at 1000. 1,000 more records
/// are written in a transaction it cannot read yet (`read_committed`), so it cannot fetch
/// them before 1000..1500 are deleted; then the transaction commits (its marker is offset
/// 2000). The pipeline's next fetch at 1000 is below the log start: its next record is 1500.
async fn delete_between_two_batches(topic: &str, run: &mut Streaming) {
    produce(topic, 1_000, 1);
    run.wait_rows(1_000, Duration::from_secs(120)).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("transactional.id", support::unique("loss-txn"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    let mut g = spillway_worker::tools::generate::HsuTestGenerator::new(2);
    for _ in 0..1_000 {
        let mut body = Vec::new();
        g.next_event().encode(&mut body);
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&body).partition(0),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    assert_eq!(common::watermarks(topic, 0), (0, 2_000));
    common::delete_records(topic, 0, 1_500).await;
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    common::wait_for_last_stable_offset(topic, 0, 2_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_deleted_between_two_batches_stop_the_pipeline_with_the_lost_range() {
    let (topic, dir) = setup("loss-fail").await;
    let mut run = Streaming::start(&manifest(&topic, &dir, "fail").interval("200ms").yaml());
    delete_between_two_batches(&topic, &mut run).await;
    let finished = run.ended(Duration::from_secs(120)).await;
    assert_data_loss(&finished, &topic, 1_000, 1_500);
    assert_table(&dir, &offsets(&[(0, 1_000)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_deleted_between_two_batches_are_skipped_and_counted() {
    let (topic, dir) = setup("loss-skip").await;
    let mut run = Streaming::start(&manifest(&topic, &dir, "skip").interval("200ms").yaml());
    delete_between_two_batches(&topic, &mut run).await;
    run.wait_rows(1_500, Duration::from_secs(120)).await;
    let finished = run.stop().await;
    let summary = finished.result.unwrap();
    assert_eq!((summary.rows, summary.lost_offsets), (1_500, 500));
    let lost: Vec<&str> = finished
        .reports
        .iter()
        .filter_map(|r| {
            r.sources[0]
                .metrics
                .get("numOffsetsLost")
                .map(String::as_str)
        })
        .collect();
    assert_eq!(lost, ["500"], "one batch reports the lost offsets");
    assert_table(&dir, &offsets(&[(0, 1_000), (1_500, 2_000)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_below_the_log_start_is_data_loss_when_partitions_are_assigned() {
    let (topic, dir) = setup("loss-restart").await;
    let text = |policy| manifest(&topic, &dir, policy).available_now().yaml();
    produce(&topic, 1_000, 1);
    let first = common::run_available_now(&text("fail")).await.unwrap();
    assert_eq!(first.rows, 1_000);

    // While the pipeline is stopped, 1,000 more records arrive and 1000..1500 are deleted.
    produce(&topic, 1_000, 2);
    common::delete_records(&topic, 0, 1_500).await;

    // onDataLoss: fail — the run stops when positioning the partition, with the range.
    let failed = common::finish_available_now(&text("fail")).await;
    assert_data_loss(&failed, &topic, 1_000, 1_500);
    assert_table(&dir, &offsets(&[(0, 1_000)]));

    // onDataLoss: skip — the run starts at the log start and counts the lost offsets.
    let skipped = common::run_available_now(&text("skip")).await.unwrap();
    assert_eq!((skipped.rows, skipped.lost_offsets), (500, 500));
    assert_table(&dir, &offsets(&[(0, 1_000), (1_500, 2_000)]));

    // The table's positions moved past the loss: a strict run finds nothing missing.
    let again = common::run_available_now(&text("fail")).await.unwrap();
    assert_eq!((again.rows, again.lost_offsets), (0, 0));
}
