//! Every worker metric (`spillway_*`, not `spillway_operator_*`) that the shipped Grafana
//! dashboard (`config/grafana/spillway-pipelines.json`) and Prometheus alerts
//! (`config/prometheus/spillway-rules.yaml`) use is exported by a running worker: `spillway
//! demo` runs a few batches, then its `/metrics` is scraped.
//!
//! A name counts as exported when it is a sample name, or its family is declared with a
//! type that has that suffix (`_total`; `_bucket`/`_sum`/`_count`) — a labelled family
//! without a series yet (no dead letters in the demo) is still exported.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spillway_e2e::observability::{Exposition, OPERATOR_PREFIX, referenced_metrics, repo_root};

/// Kills the demo when the test ends, however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_metrics_a_running_worker_exports() {
    let used: Vec<String> = referenced_metrics(&repo_root())
        .unwrap()
        .into_iter()
        .filter(|n| !n.starts_with(OPERATOR_PREFIX))
        .collect();
    assert!(
        used.len() >= 10,
        "the dashboard and rules use worker metrics: {used:?}"
    );

    let dir = std::env::temp_dir().join(format!("spillway-contract-test-{}", std::process::id()));
    let port = spillway_e2e::free_port().unwrap();
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args([
                "demo",
                "--duration",
                "60s",
                "--count",
                "200000",
                "--rps",
                "10000",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--dir",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // A few committed batches (the demo's trigger is 1s).
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut batch_id = -1;
    while Instant::now() < deadline && batch_id < 3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(r) = client.get(format!("{base}/progress")).send().await else {
            continue;
        };
        let progress: serde_json::Value = r.json().await.unwrap_or_default();
        batch_id = progress["latest"]["batchId"].as_i64().unwrap_or(-1);
    }
    assert!(
        batch_id >= 3,
        "the demo committed no 4 batches in 45s (latest batchId {batch_id})"
    );
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exposition = Exposition::parse(&text);

    let missing = exposition.missing(&used);
    let declared_only: Vec<&String> = used
        .iter()
        .filter(|n| exposition.serves(n) && !exposition.has_samples(n))
        .collect();
    if !declared_only.is_empty() {
        println!("declared, no series yet in the demo: {declared_only:?}");
    }
    assert!(
        missing.is_empty(),
        "the dashboard or the alerts use worker metrics that `spillway demo` does not export: {missing:?}\n--- /metrics ---\n{text}"
    );
    // The core throughput series have samples, with the pipeline label the queries group by.
    for n in [
        "spillway_input_records_total",
        "spillway_output_rows_total",
        "spillway_batch_stage_duration_seconds_bucket",
    ] {
        assert!(exposition.has_samples(n), "{n} has no series:\n{text}");
    }
    assert!(
        text.contains("spillway_output_rows_total{pipeline=\"demo\""),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
