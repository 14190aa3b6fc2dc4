//! `startingOffsets: latest` is resolved once per partition and kept in the checkpoint
//! (as Spark's offset log does): a restart before the first commit starts where the first
//! run did, never at a later `latest` that would skip what arrived meanwhile. Against
//! Apache Kafka, read back with Python `deltalake`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::manifest::Manifest;
use spillway_e2e as support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_resolved_once_and_kept_across_a_restart_before_the_first_commit() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("latest-kept");
    // 100 records before the pipeline exists: `latest` skips them.
    common::produce(&bootstrap, &topic, 100, 1, &[]);
    let dir = std::env::temp_dir().join(support::unique("latest-kept"));
    let text = Manifest::hsutest(&topic)
        .kafka("startingOffsets", "latest")
        .metadata_columns(&["offset"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
        .available_now()
        .yaml();
    // The first run starts at 100, finds nothing to read and commits nothing (a new table
    // cannot record positions without rows) — like a worker that dies before its first
    // commit.
    let first = common::run_available_now(&text).await.unwrap();
    assert_eq!(first.rows, 0);
    // 50 records arrive; the restart starts at the recorded 100, not at `latest` = 150.
    common::produce(&bootstrap, &topic, 50, 2, &[]);
    let second = common::run_available_now(&text).await.unwrap();
    assert_eq!(
        second.rows, 50,
        "what arrived after the first start is read"
    );
    let offsets: Vec<i64> = common::python_json(
        "import os, sys, json\nfrom deltalake import DeltaTable\nprint(json.dumps(sorted(DeltaTable(sys.argv[1]).to_pyarrow_table().column('_offset').to_pylist())), flush=True)\nos._exit(0)",
        &[&dir.join("t").display().to_string()],
    );
    assert_eq!(offsets, (100..150).collect::<Vec<i64>>());
}
