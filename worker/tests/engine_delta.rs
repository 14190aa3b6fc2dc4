//! The engine end to end against Apache Kafka: Kafka → Avro → Delta (local path and moto S3),
//! `availableNow` stopping at the end offsets seen at start, a restart that resumes from
//! the table's `txn` versions without re-reading, and the table read back by an
//! independent reader (the Python `deltalake` package).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
mod common;

use common::manifest::{Manifest, s3_storage};
use serde_json::json;
use spillway_e2e as support;

fn produce(topic: &str, count: u64, seed: u64, partitions: Option<i32>) {
    let p = partitions.map(|p| p.to_string());
    let extra: Vec<&str> = p
        .iter()
        .flat_map(|p| ["--partitions", p.as_str()])
        .collect();
    common::produce(&support::kafka_bootstrap(), topic, count, seed, &extra);
}

/// An `availableNow` pipeline of `topic` into the Delta table at `table`.
fn manifest(topic: &str, table: &str, checkpoint: &str) -> Manifest {
    Manifest::hsutest(topic)
        .kafka("maxRecordsPerBatch", 7000)
        .metadata_columns(&["topic", "partition", "offset", "timestamp"])
        .delta(table)
        .checkpoint(checkpoint)
        .available_now()
}

async fn run_available_now(text: &str) -> spillway_worker::engine::RunSummary {
    common::run_available_now(text).await.unwrap()
}

/// Reads the table with the Python deltalake package: (rows, distinct (partition, offset)).
fn python_counts(uri: &str, storage: &[(&str, &str)]) -> (u64, u64) {
    let opts: serde_json::Map<String, serde_json::Value> = storage
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let script = r#"
import json, os, sys, deltalake
dt = deltalake.DeltaTable(sys.argv[1], storage_options=json.loads(sys.argv[2]) or None)
t = dt.to_pyarrow_table(columns=["_partition", "_offset"])
pairs = set(zip(t.column("_partition").to_pylist(), t.column("_offset").to_pylist()))
print(json.dumps([t.num_rows, len(pairs)]), flush=True)
# deltalake 1.x aborts in its runtime teardown at interpreter exit; the answer is printed.
os._exit(0)
"#;
    let out = Command::new(support::python())
        .args([
            "-c",
            script,
            uri,
            &serde_json::Value::Object(opts).to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python deltalake failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: (u64, u64) = serde_json::from_slice(&out.stdout).unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_now_into_a_local_table_then_resume_without_rereading() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("engine");
    let dir = std::env::temp_dir().join(support::unique("engine-table"));
    let table = dir.join("t");
    let checkpoint = dir.join("c");
    produce(&topic, 20_000, 1, Some(4));
    let text = manifest(
        &topic,
        &table.display().to_string(),
        &checkpoint.display().to_string(),
    )
    .yaml();
    let first = run_available_now(&text).await;
    assert_eq!(first.rows, 20_000);
    assert!(
        first.batches >= 3,
        "maxRecordsPerBatch 7000 closes batches: {first:?}"
    );
    assert_eq!(
        python_counts(&table.display().to_string(), &[]),
        (20_000, 20_000)
    );

    // New records: the restarted pipeline reads only them.
    produce(&topic, 5_000, 2, None);
    let second = run_available_now(&text).await;
    assert_eq!(second.rows, 5_000, "resumed from the table's txn versions");
    assert_eq!(
        python_counts(&table.display().to_string(), &[]),
        (25_000, 25_000)
    );

    // Nothing new: a third run commits nothing and still stops.
    let third = run_available_now(&text).await;
    assert_eq!(third.rows, 0);
    assert_eq!(
        python_counts(&table.display().to_string(), &[]),
        (25_000, 25_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_now_into_a_table_on_s3() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    support::require("moto (s3)", &support::host_port(&support::s3_endpoint())).unwrap();
    let topic = support::unique("engine-s3");
    let prefix = format!("s3://{}/{}", support::s3_bucket(), support::unique("lake"));
    let table = format!("{prefix}/table");
    produce(&topic, 10_000, 5, Some(2));
    let text = manifest(&topic, &table, &format!("{prefix}/checkpoint"))
        .storage(s3_storage())
        .yaml();
    let summary = run_available_now(&text).await;
    assert_eq!(summary.rows, 10_000);
    let endpoint = support::s3_endpoint();
    let opts = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_S3_ALLOW_UNSAFE_RENAME", "true"),
    ];
    assert_eq!(python_counts(&table, &opts), (10_000, 10_000));
}

/// 1000 raw records on one partition, every 10th malformed.
async fn produce_with_bad(topic: &str) {
    use spillway_worker::tools::generate::HsuTestGenerator;
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), topic, 1)
        .await
        .unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .create()
        .unwrap();
    let mut g = HsuTestGenerator::new(3);
    for i in 0..1000u32 {
        let mut body = Vec::new();
        g.next_event().encode(&mut body);
        if i % 10 == 7 {
            body.truncate(3);
        }
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(topic)
                    .payload(&body)
                    .key(&key)
                    .partition(0),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_a_kafka_dead_letter_topic_with_their_reason() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("dlq-src");
    let dlq = format!("{topic}-dlq");
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), &dlq, 1)
        .await
        .unwrap();
    produce_with_bad(&topic).await;
    let dir = std::env::temp_dir().join(support::unique("dlq"));
    let text = manifest(
        &topic,
        &dir.join("t").display().to_string(),
        &dir.join("c").display().to_string(),
    )
    .set(
        "/spec/errors",
        json!({"onBadRecord": "deadLetter", "deadLetter": {"kafka": {"topic": dlq}}}),
    )
    .yaml();
    let summary = run_available_now(&text).await;
    assert_eq!(summary.rows, 900, "the 900 good records");
    assert_eq!(summary.skipped, 100);
    assert_eq!(
        python_counts(&dir.join("t").display().to_string(), &[]),
        (900, 900)
    );

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("group.id", support::unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "10000")
        .create()
        .unwrap();
    consumer.subscribe(&[&dlq]).unwrap();
    let mut offsets = Vec::new();
    while offsets.len() < 100 {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("dead letters missing")
            .unwrap();
        let h = m.headers().unwrap();
        let header = |name: &str| {
            h.iter()
                .find(|x| x.key == name)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap()
        };
        assert_eq!(header("spillway.source.topic"), topic);
        assert_eq!(header("spillway.error.class"), "Decode");
        assert!(
            header("spillway.error.message").contains("invalid length"),
            "{}",
            header("spillway.error.message")
        );
        let offset: i64 = header("spillway.source.offset").parse().unwrap();
        assert_eq!(m.key(), Some(format!("k{offset}").as_bytes()));
        assert_eq!(m.payload().map(<[u8]>::len), Some(3), "the raw bytes");
        offsets.push(offset);
    }
    offsets.sort();
    assert_eq!(offsets, (0..100).map(|i| i * 10 + 7).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_a_delta_dead_letter_table() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("dlq-delta");
    produce_with_bad(&topic).await;
    let dir = std::env::temp_dir().join(support::unique("dlq-delta"));
    let dlq = dir.join("dead-letters");
    let text = manifest(
        &topic,
        &dir.join("t").display().to_string(),
        &dir.join("c").display().to_string(),
    )
    .set(
        "/spec/errors",
        json!({
            "onBadRecord": "deadLetter",
            "deadLetter": {"delta": {"uri": dlq.display().to_string()}},
        }),
    )
    .yaml();
    let summary = run_available_now(&text).await;
    assert_eq!((summary.rows, summary.skipped), (900, 100));
    let script = "import json, os, sys, deltalake\nt = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()\nprint(json.dumps([t.num_rows, sorted(set(t.column('offset').to_pylist())), sorted(set(t.column('error_class').to_pylist()))]), flush=True)\nos._exit(0)\n";
    let out = Command::new(support::python())
        .args(["-c", script])
        .arg(&dlq)
        .output()
        .unwrap();
    let (rows, offsets, classes): (u64, Vec<i64>, Vec<String>) =
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(rows, 100);
    assert_eq!(offsets, (0..100).map(|i| i * 10 + 7).collect::<Vec<i64>>());
    assert_eq!(classes, ["Decode"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_sql_filters_and_derives_partition_columns() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("sql");
    let dir = std::env::temp_dir().join(support::unique("sql-table"));
    let table = dir.join("t").display().to_string();
    produce(&topic, 10_000, 31, Some(2));
    // What the query must keep, from the same deterministic generator.
    let events: Vec<_> = {
        let mut g = spillway_worker::tools::generate::HsuTestGenerator::new(31);
        (0..10_000).map(|_| g.next_event()).collect()
    };
    let kept: Vec<_> = events.iter().filter(|e| e.amount >= 500.0).collect();
    let cents: i64 = kept.iter().map(|e| (e.amount * 100.0).round() as i64).sum();

    let text = manifest(&topic, &table, &dir.join("c").display().to_string())
        .set(
            "/spec/transform/sql",
            "SELECT \"user\", upper(event) AS event_upper, CAST(round(amount * 100) AS BIGINT) AS cents,\n       \
             CAST(to_timestamp_millis(ts) AS DATE) AS day, _partition, _offset\n\
             FROM batch WHERE amount >= 500",
        )
        .set("/spec/sink/delta/partitionBy", json!(["event_upper"]))
        .yaml();
    let summary = run_available_now(&text).await;
    assert_eq!(summary.rows, kept.len() as i64);

    let script = r#"
import json, os, sys, deltalake
dt = deltalake.DeltaTable(sys.argv[1])
t = dt.to_pyarrow_table()
print(json.dumps({
  "rows": t.num_rows,
  "cents": sum(t.column("cents").to_pylist()),
  "events": sorted(set(t.column("event_upper").to_pylist())),
  "columns": sorted(t.column_names),
  "partition_columns": dt.metadata().partition_columns,
  "day": str(t.column("day").type),
}), flush=True)
os._exit(0)
"#;
    let out = Command::new(support::python())
        .args(["-c", script, &table])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], kept.len());
    assert_eq!(v["cents"], cents);
    let mut want_events: Vec<String> = kept.iter().map(|e| e.event.to_uppercase()).collect();
    want_events.sort();
    want_events.dedup();
    assert_eq!(v["events"], serde_json::json!(want_events));
    assert_eq!(
        v["columns"],
        serde_json::json!([
            "_offset",
            "_partition",
            "cents",
            "day",
            "event_upper",
            "user"
        ])
    );
    assert_eq!(v["partition_columns"], serde_json::json!(["event_upper"]));
    assert_eq!(v["day"], "date32[day]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_behind_the_watermark_are_dropped_and_the_watermark_survives_a_restart() {
    use spillway_worker::tools::generate::HsuTestEvent;
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("watermark");
    let dir = std::env::temp_dir().join(support::unique("watermark"));
    let table = dir.join("t").display().to_string();
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), &topic, 1)
        .await
        .unwrap();
    // 2026-01-01T00:00:00Z
    let base = 1_767_225_600_000i64;
    let send = |stamps: &[i64]| {
        let records: Vec<_> = stamps
            .iter()
            .map(|ts| {
                let mut body = Vec::new();
                HsuTestEvent {
                    user: "user-0001".into(),
                    event: "click",
                    amount: 1.0,
                    ts: *ts,
                }
                .encode(&mut body);
                (None, body)
            })
            .collect();
        let topic = topic.clone();
        async move { common::send_in_order(&topic, &records).await }
    };
    send(&(0..20).map(|i| base + i * 1_000).collect::<Vec<_>>()).await;
    let text = manifest(&topic, &table, &dir.join("c").display().to_string())
        .set(
            "/spec/eventTime",
            json!({"column": "ts", "allowedLateness": "10s"}),
        )
        .yaml();
    let first = run_available_now(&text).await;
    assert_eq!((first.rows, first.dropped_by_watermark), (20, 0));

    // The watermark is now 00:00:19 - 10s = 00:00:09, and a restart must remember it:
    // 3 records older than that are dropped, 4 at or after it are kept.
    send(&[
        base,
        base + 5_000,
        base + 8_999,
        base + 9_000,
        base + 12_000,
        base + 30_000,
        base + 31_000,
    ])
    .await;
    let second = run_available_now(&text).await;
    assert_eq!((second.rows, second.dropped_by_watermark), (4, 3));
    assert_eq!(python_counts(&table, &[]).0, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_only_bad_records_still_moves_the_positions() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("all-bad");
    let dir = std::env::temp_dir().join(support::unique("all-bad"));
    let table = dir.join("t").display().to_string();
    produce(&topic, 100, 61, Some(1));
    let text = manifest(&topic, &table, &dir.join("c").display().to_string())
        .set("/spec/errors", json!({"onBadRecord": "skip"}))
        .yaml();
    assert_eq!(run_available_now(&text).await.rows, 100);

    // Only malformed records: nothing to write, but the table's txn versions move.
    common::send_in_order(&topic, &vec![(None, vec![0xff_u8, 0x01]); 5]).await;
    let bad = run_available_now(&text).await;
    assert_eq!((bad.rows, bad.skipped, bad.batches), (0, 5, 1));
    assert_eq!(bad.table_version, Some(1), "a commit of txn actions only");
    let again = run_available_now(&text).await;
    assert_eq!((again.batches, again.skipped), (0, 0), "nothing read twice");
    assert_eq!(python_counts(&table, &[]), (100, 100));
}
