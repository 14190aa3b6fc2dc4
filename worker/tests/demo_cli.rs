//! `spillway demo` as the README runs it: an in-process Kafka, the generator and a local
//! Delta table, with `/progress`, `/metrics`, `/healthz` served while it runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_commits_every_record_and_serves_progress_and_metrics() {
    let dir = std::env::temp_dir().join(format!("spillway-demo-test-{}", std::process::id()));
    let port = spillway_e2e::free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args([
            "demo",
            "--duration",
            // An upper bound: the demo ends once every produced record is committed.
            "90s",
            "--count",
            "300000",
            "--rps",
            "50000",
            "--http",
            &format!("127.0.0.1:{port}"),
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut progress = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/progress")).send().await {
            progress = r.json().await.unwrap();
            if !progress["latest"].is_null() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let latest = &progress["latest"];
    assert!(
        !latest.is_null(),
        "no progress report while running: {progress}"
    );
    for field in [
        "id",
        "runId",
        "batchId",
        "timestamp",
        "numInputRows",
        "inputRowsPerSecond",
        "processedRowsPerSecond",
        "durationMs",
        "sources",
        "sink",
    ] {
        assert!(!latest[field].is_null(), "progress lacks {field}: {latest}");
    }
    assert_eq!(
        latest["sources"][0]["description"],
        "KafkaV2[Subscribe[hsudemo]]"
    );
    assert!(
        latest["sink"]["description"]
            .as_str()
            .unwrap()
            .starts_with("DeltaSink[")
    );
    assert!(progress["status"]["message"].is_string());
    // eventTime: ts (epoch milliseconds) gives Spark's eventTime statistics.
    let et = &latest["eventTime"];
    assert!(et["max"].as_str().unwrap().ends_with('Z'), "{latest}");
    assert!(et["watermark"].is_string(), "{latest}");
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "spillway_input_records_total",
        "spillway_output_rows_total",
        "spillway_batches_total",
        "spillway_table_version",
        "spillway_batch_stage_duration_seconds_bucket",
        "spillway_batch_duration_seconds_count",
        "spillway_lag_records{pipeline=\"demo\",topic=\"hsudemo\",partition=",
        "spillway_committed_offset{pipeline=\"demo\",topic=\"hsudemo\",partition=",
        "spillway_event_time_max_seconds{pipeline=\"demo\"}",
        "spillway_watermark_seconds{pipeline=\"demo\"}",
        "spillway_last_commit_timestamp_seconds{pipeline=\"demo\"}",
        "spillway_trigger_interval_seconds{pipeline=\"demo\"} 1.0",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }

    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo finished"), "{stdout}");
    // A healthy run on a new table logs no error (the kernel used to log "No files in log
    // segment" for a table that does not exist yet).
    let logs = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!logs.contains(" ERROR "), "{logs}");
    assert!(
        stdout.contains("300000 rows committed"),
        "every produced record lands once: {stdout}"
    );
    assert!(
        stdout.contains("| 300000 "),
        "the summary reads the table back: {stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
