//! `mode: merge` (the movie-ratings job) against Apache Kafka, read back with Python `deltalake`:
//! duplicates and updates of one `event_id` end as one row with the latest values, events
//! more than 5 days behind the newest are discarded, and a re-run applies nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use apache_avro::types::Value;
use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;

const SCHEMA: &str = r#"{"type":"record","name":"MovieRating","fields":[{"name":"event_id","type":"string"},{"name":"user_id","type":"long"},{"name":"movie_id","type":"long"},{"name":"rating","type":"double"},{"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;

/// 2026-11-20T00:00:00Z
const BASE: i64 = 1_795_132_800_000;
const HOUR: i64 = 3_600_000;

/// A rating's Avro body.
fn rating(id: &str, rating: f64, t: i64) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(SCHEMA).unwrap();
    let record = Value::Record(vec![
        ("event_id".into(), Value::String(id.to_string())),
        ("user_id".into(), Value::Long(7)),
        ("movie_id".into(), Value::Long(42)),
        ("rating".into(), Value::Double(rating)),
        ("event_time".into(), Value::TimestampMillis(t)),
    ]);
    apache_avro::to_avro_datum(&schema, record).unwrap()
}

async fn send(topic: &str, events: &[(&str, f64, i64)]) {
    let records: Vec<_> = events
        .iter()
        .map(|(id, r, t)| (Some(id.to_string()), rating(id, *r, *t)))
        .collect();
    common::send_in_order(topic, &records).await;
}

/// The movie-ratings pipeline, `availableNow`.
fn manifest(topic: &str, dir: &std::path::Path) -> Manifest {
    Manifest::new(topic)
        .raw_avro(SCHEMA)
        .set(
            "/spec/transform/sql",
            "SELECT *, CAST(event_time AS DATE) AS event_date FROM batch",
        )
        .metadata_columns(&["offset"])
        .set(
            "/spec/eventTime",
            json!({"column": "event_time", "allowedLateness": "120h"}),
        )
        .sink(json!({"delta": {
            "uri": dir.join("t").display().to_string(),
            "mode": "merge",
            "partitionBy": ["event_date"],
            "merge": {"keys": ["event_id"], "orderBy": "event_time"},
        }}))
        .checkpoint(dir.join("c"))
        .available_now()
}

/// event_id → (rating, event_time ms), read with the Python deltalake package.
fn table_rows(dir: &std::path::Path) -> Vec<(String, f64, i64)> {
    let script = r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["event_id", "rating", "event_time"])
rows = sorted(zip(t.column("event_id").to_pylist(), t.column("rating").to_pylist(),
                  [int(x.timestamp() * 1000) for x in t.column("event_time").to_pylist()]))
print(json.dumps(rows), flush=True)
os._exit(0)
"#;
    common::python_json(script, &[&dir.join("t").display().to_string()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_keeps_the_latest_row_per_key_and_discards_late_events() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("ratings");
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), &topic, 1)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(support::unique("ratings"));
    let text = manifest(&topic, &dir).yaml();

    // First batch: e1 is updated within the batch; the table is created by it.
    send(
        &topic,
        &[
            ("e1", 3.0, BASE),
            ("e2", 4.0, BASE + HOUR),
            ("e1", 5.0, BASE + 2 * HOUR),
            ("e3", 1.0, BASE),
        ],
    )
    .await;
    let first = common::run_available_now(&text).await.unwrap();
    assert_eq!(first.rows, 3, "one row per event_id");
    assert_eq!(
        table_rows(&dir),
        [
            ("e1".to_string(), 5.0, BASE + 2 * HOUR),
            ("e2".to_string(), 4.0, BASE + HOUR),
            ("e3".to_string(), 1.0, BASE),
        ]
    );

    // Second batch: a newer e2 updates, an older e1 does not, an exact duplicate of e3
    // changes nothing, e4 is new, and e5 is 6 days older than the newest event: dropped.
    send(
        &topic,
        &[
            ("e2", 2.0, BASE + 3 * HOUR),
            ("e1", 1.0, BASE + HOUR),
            ("e3", 1.0, BASE),
            ("e4", 4.5, BASE + 24 * HOUR),
            ("e5", 2.5, BASE + 24 * HOUR - 6 * 24 * HOUR),
        ],
    )
    .await;
    let second = common::run_available_now(&text).await.unwrap();
    assert_eq!(second.dropped_by_watermark, 1);
    let want = [
        ("e1".to_string(), 5.0, BASE + 2 * HOUR),
        ("e2".to_string(), 2.0, BASE + 3 * HOUR),
        ("e3".to_string(), 1.0, BASE),
        ("e4".to_string(), 4.5, BASE + 24 * HOUR),
    ];
    assert_eq!(table_rows(&dir), want);

    // A re-run reads nothing again (the table's txn versions) and applies nothing twice.
    let third = common::run_available_now(&text).await.unwrap();
    assert_eq!((third.batches, third.rows), (0, 0));
    assert_eq!(table_rows(&dir), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_scans_only_the_dates_at_or_after_the_watermark() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("ratings-prune");
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), &topic, 1)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(support::unique("ratings-prune"));
    let text = manifest(&topic, &dir).yaml();
    const DAY: i64 = 24 * HOUR;
    // Ten days of events, one partition (event_date) each.
    let ids: Vec<String> = (0..10).map(|d| format!("d{d}")).collect();
    let first: Vec<(&str, f64, i64)> = ids
        .iter()
        .enumerate()
        .map(|(d, id)| (id.as_str(), 1.0, BASE + d as i64 * DAY))
        .collect();
    send(&topic, &first).await;
    common::run_available_now(&text).await.unwrap();

    // The watermark is now day 9 - 5 days = day 4: an update of day 8 scans days 4..9 only.
    send(&topic, &[("d8", 5.0, BASE + 8 * DAY + HOUR)]).await;
    let (_, reports) = common::run_available_now_reports(&text).await.unwrap();
    let m = &reports.last().unwrap().sink.metrics;
    assert_eq!(m["numTargetRowsUpdated"], "1", "{m:?}");
    let skipped: u64 = m["numTargetFilesSkipped"].parse().unwrap();
    let scanned: u64 = m["numTargetFilesScanned"].parse().unwrap();
    assert!(skipped >= 4, "days 0-3 are not scanned: {m:?}");
    assert!(scanned <= 6, "{m:?}");
    let rows = table_rows(&dir);
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[8], ("d8".to_string(), 5.0, BASE + 8 * DAY + HOUR));
}

async fn send_many(topic: &str, events: &[(String, f64, i64)]) {
    let records: Vec<_> = events
        .iter()
        .map(|(id, r, t)| (Some(id.clone()), rating(id, *r, *t)))
        .collect();
    common::send_in_order(topic, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_pipeline_killed_mid_stream_never_applies_an_old_batch_again() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("ratings-kill");
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), &topic, 1)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(support::unique("ratings-kill"));
    std::fs::create_dir_all(&dir).unwrap();
    // 300 keys, each rated 40 times in turn: the last rating of key k is (k + 39) % 10.
    // Without orderBy the later record wins, so a replayed older batch would show.
    let keys = 300;
    let rounds = 40;
    let events: Vec<(String, f64, i64)> = (0..rounds)
        .flat_map(|r| (0..keys).map(move |k| (format!("k{k}"), ((k + r) % 10) as f64, BASE)))
        .collect();
    send_many(&topic, &events).await;
    let streaming = manifest(&topic, &dir)
        .remove("/spec/sink/delta/merge/orderBy")
        .remove("/spec/eventTime")
        .interval("300ms")
        .kafka("maxRecordsPerBatch", 700)
        .kafka(
            "properties",
            json!({"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}),
        );
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, streaming.yaml()).unwrap();

    let (f, d) = (file.clone(), dir.clone());
    tokio::task::spawn_blocking(move || {
        for k in 0..3 {
            let log = d.join(format!("run-{k}.log"));
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spillway"))
                .args(["run", "--http", "127.0.0.1:0", "-f"])
                .arg(&f)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("merged batch")
            {
                assert!(std::time::Instant::now() < deadline, "no merge within 60s");
                std::thread::sleep(Duration::from_millis(100));
            }
            // Mid-stream, at a moment that differs run to run.
            std::thread::sleep(Duration::from_millis(300 + 700 * k));
            child.kill().unwrap(); // SIGKILL
            let _ = child.wait();
        }
    })
    .await
    .unwrap();

    let rest = common::run_available_now(&streaming.available_now().yaml())
        .await
        .unwrap();
    assert!(
        (rest.rows as u64) < (keys * rounds) as u64,
        "the killed runs merged part of the stream"
    );
    let rows = table_rows(&dir);
    assert_eq!(rows.len(), keys as usize, "one row per key");
    for (id, rating, _) in rows {
        let k: i64 = id[1..].parse().unwrap();
        assert_eq!(
            rating,
            ((k + rounds - 1) % 10) as f64,
            "{id}: the last rating"
        );
    }
}
