//! A sink knows which pipeline owns it: a renamed pipeline (new group id, so new Delta
//! `txn` app ids) pointed at an existing table, or a Parquet dataset rerun with a new
//! `checkpoint.uri`, is refused with a clear error instead of ingesting the topic twice.
//! The owner itself resumes. Against Apache Kafka, read back with Python `deltalake`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::manifest::Manifest;
use spillway_e2e as support;
use spillway_worker::engine::EngineError;

/// The pipeline `name` of `topic`, without its sink.
fn manifest(name: &str, topic: &str, checkpoint: &Path) -> Manifest {
    Manifest::hsutest(topic)
        .name(name)
        .checkpoint(checkpoint)
        .available_now()
}

fn rows_in_delta(table: &Path) -> u64 {
    common::python_json(
        "import os, sys, json\nfrom deltalake import DeltaTable\nprint(json.dumps(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows), flush=True)\nos._exit(0)",
        &[&table.display().to_string()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_pipeline_is_refused_by_the_table_of_the_old_one() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("owned-delta");
    common::produce(&support::kafka_bootstrap(), &topic, 500, 1, &[]);
    let dir = std::env::temp_dir().join(support::unique("owned-delta"));
    let table = dir.join("t");

    let first = manifest(&topic, &topic, &dir.join("c"))
        .delta(&table)
        .yaml();
    assert_eq!(common::run_available_now(&first).await.unwrap().rows, 500);
    // Renamed: another group id, another checkpoint, the same table.
    let renamed = manifest(&format!("{topic}-renamed"), &topic, &dir.join("c2"))
        .delta(&table)
        .yaml();
    let err = common::run_available_now(&renamed).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, EngineError::Sink(_)) && text.contains("is written by the pipeline"),
        "{text}"
    );
    assert!(text.contains("set source.kafka.groupId"), "{text}");
    assert_eq!(rows_in_delta(&table), 500, "nothing ingested twice");
    // The owner resumes (nothing new to read).
    assert_eq!(common::run_available_now(&first).await.unwrap().rows, 0);
    assert_eq!(rows_in_delta(&table), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_dataset_refuses_a_new_checkpoint() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("owned-parquet");
    common::produce(&support::kafka_bootstrap(), &topic, 500, 2, &[]);
    let dir = std::env::temp_dir().join(support::unique("owned-parquet"));
    let data = dir.join("d");

    let first = manifest(&topic, &topic, &dir.join("c"))
        .parquet(&data)
        .yaml();
    assert_eq!(common::run_available_now(&first).await.unwrap().rows, 500);
    let moved = manifest(&topic, &topic, &dir.join("c-new"))
        .parquet(&data)
        .yaml();
    let text = common::run_available_now(&moved)
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("belongs to the checkpoint"), "{text}");
    let rows: u64 = common::python_json(
        "import os, sys, json\nimport pyarrow.dataset as ds\nprint(json.dumps(ds.dataset(sys.argv[1], format='parquet').count_rows()), flush=True)\nos._exit(0)",
        &[&data.display().to_string()],
    );
    assert_eq!(rows, 500, "a naive pyarrow scan sees every row once");
}
