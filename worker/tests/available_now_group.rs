//! `availableNow` with more workers than partitions: a worker that holds no partition (or
//! loses one to another worker) does not end until every partition of the topic reached its
//! end in the sink, whoever wrote it — it never reports success with the topic partly
//! written. Two in-process workers on a one-partition topic, against Apache Kafka.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::manifest::Manifest;
use spillway_e2e as support;

fn rows(table: &std::path::Path) -> u64 {
    common::python_json(
        "import os, sys, json\nfrom deltalake import DeltaTable\nprint(json.dumps(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows), flush=True)\nos._exit(0)",
        &[&table.display().to_string()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_ends_before_every_partition_is_in_the_sink() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("an-group");
    common::produce(&bootstrap, &topic, 30_000, 3, &["--partitions", "1"]);
    let dir = std::env::temp_dir().join(support::unique("an-group"));
    let table = dir.join("t");
    let text = Manifest::hsutest(&topic)
        .kafka("maxRecordsPerBatch", 5000)
        .delta(&table)
        .checkpoint(dir.join("c"))
        .available_now()
        .yaml();
    let (a, b) = (text.clone(), text);
    let mut workers = tokio::task::JoinSet::new();
    workers.spawn(async move { common::run_available_now(&a).await.unwrap() });
    workers.spawn(async move { common::run_available_now(&b).await.unwrap() });
    let mut total = 0;
    while let Some(done) = workers.join_next().await {
        // Whichever worker ends, the whole topic is in the table by then.
        assert_eq!(
            rows(&table),
            30_000,
            "a worker ended before the topic was written"
        );
        total += done.unwrap().rows;
    }
    assert_eq!(
        total, 30_000,
        "every record written once, by one of the two"
    );
}
