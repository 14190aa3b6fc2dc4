//! Bounded runs (`endingOffsets`): a run reads exactly its range — per-partition offsets, a
//! timestamp, or the end at the first start — commits it exactly once and ends; the ends
//! are kept in the checkpoint, so running the same pipeline again changes nothing even
//! after more records arrived. Against Apache Kafka, read back with Python `deltalake`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;

/// `(partition, offset)` of every row of the Delta table at `uri`, sorted.
fn rows(uri: &std::path::Path) -> Vec<(i32, i64)> {
    common::python_json(
        "import os, sys, json\nfrom deltalake import DeltaTable\nt = DeltaTable(sys.argv[1]).to_pyarrow_table()\nprint(json.dumps(sorted(zip(t.column('_partition').to_pylist(), t.column('_offset').to_pylist()))), flush=True)\nos._exit(0)",
        &[&uri.display().to_string()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_end_offsets_are_read_exactly_and_a_rerun_changes_nothing() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("ending-offsets");
    common::produce(&bootstrap, &topic, 100, 1, &["--partitions", "1"]);
    let dir = std::env::temp_dir().join(support::unique("ending-offsets"));
    let text = Manifest::hsutest(&topic)
        .kafka("startingOffsets", "offsets")
        .kafka(
            "startingPartitionOffsets",
            json!({ topic.as_str(): {"0": 10} }),
        )
        .kafka("endingOffsets", "offsets")
        .kafka(
            "endingPartitionOffsets",
            json!({ topic.as_str(): {"0": 60} }),
        )
        .kafka("maxRecordsPerBatch", 20)
        .metadata_columns(&["partition", "offset"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
        .yaml();
    let first = common::run_available_now(&text).await.unwrap();
    assert_eq!(first.rows, 50, "offsets 10..60, none past the end");
    let want: Vec<(i32, i64)> = (10..60).map(|o| (0, o)).collect();
    assert_eq!(rows(&dir.join("t")), want);
    // More records arrive; the same bounded run again reads nothing.
    common::produce(&bootstrap, &topic, 30, 2, &[]);
    let again = common::run_available_now(&text).await.unwrap();
    assert_eq!(again.rows, 0);
    assert_eq!(rows(&dir.join("t")), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_the_end_at_the_first_start_and_kept_for_a_rerun() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("ending-latest");
    common::produce(&bootstrap, &topic, 300, 3, &["--partitions", "3"]);
    let dir = std::env::temp_dir().join(support::unique("ending-latest"));
    let manifest = |table: &str, checkpoint: &str| {
        Manifest::hsutest(&topic)
            .kafka("endingOffsets", "latest")
            .metadata_columns(&["partition", "offset"])
            .delta(dir.join(table))
            .checkpoint(dir.join(checkpoint))
            .yaml()
    };
    let text = manifest("t", "c");
    let first = common::run_available_now(&text).await.unwrap();
    assert_eq!(first.rows, 300);
    let before = rows(&dir.join("t"));
    assert_eq!(before.len(), 300);
    common::produce(&bootstrap, &topic, 90, 4, &[]);
    let again = common::run_available_now(&text).await.unwrap();
    assert_eq!(again.rows, 0, "the ends resolved by the first run hold");
    assert_eq!(rows(&dir.join("t")), before);
    // A new checkpoint and table: a new run, whose end is today's latest.
    let text = manifest("t2", "c2");
    let fresh = common::run_available_now(&text).await.unwrap();
    assert_eq!(fresh.rows, 390);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_ends_before_the_first_record_at_that_time() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("ending-time");
    common::produce(&bootstrap, &topic, 120, 5, &["--partitions", "2"]);
    // The end: the next whole second after the first records; the rest after it.
    let now = jiff::Timestamp::now();
    let end = jiff::Timestamp::from_second(now.as_second() + 1).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(
        (end.as_millisecond() - now.as_millisecond()) as u64 + 200,
    ))
    .await;
    common::produce(&bootstrap, &topic, 80, 6, &[]);
    let dir = std::env::temp_dir().join(support::unique("ending-time"));
    let text = Manifest::hsutest(&topic)
        .kafka("endingOffsets", "timestamp")
        .kafka("endingTimestamp", end.to_string())
        .metadata_columns(&["partition", "offset", "timestamp"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
        .yaml();
    let run = common::run_available_now(&text).await.unwrap();
    assert_eq!(run.rows, 120, "only the records before {end}");
    assert_eq!(rows(&dir.join("t")).len(), 120);
}
