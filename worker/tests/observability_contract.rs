//! Every worker metric (`spillway_*`, not `spillway_operator_*`) that the shipped Grafana
//! dashboard (`config/grafana/spillway-pipelines.json`) and Prometheus alerts
//! (`config/prometheus/spillway-rules.yaml`) use is exported by a running worker, scraped from
//! its `/metrics`:
//! - `spillway demo` (no services): everything except the series that exist only once their
//!   event happened — bad records and dead letters (per reason), and event time and
//!   watermark (only with `spec.eventTime`); prometheus-client does not encode a labelled
//!   family that has no series yet;
//! - `spillway run` against the Kafka broker with poison records, a dead-letter table and
//!   `spec.eventTime`: every name, each with a series.
//!
//! A name counts as exported when it is a sample name, or its family is declared with a
//! type that has that suffix (`_total`; `_bucket`/`_sum`/`_count`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::manifest::Manifest;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use spillway_e2e::observability::{Exposition, OPERATOR_PREFIX, referenced_metrics, repo_root};

/// Series a run has only once their event happened (a bad record, `spec.eventTime`).
const CONDITIONAL: [&str; 4] = [
    "spillway_bad_records_total",
    "spillway_dead_letters_total",
    "spillway_event_time_max_seconds",
    "spillway_watermark_seconds",
];

/// The worker metrics the dashboard and the rules use.
fn used_worker_metrics() -> Vec<String> {
    let used: Vec<String> = referenced_metrics(&repo_root())
        .unwrap()
        .into_iter()
        .filter(|n| !n.starts_with(OPERATOR_PREFIX))
        .collect();
    assert!(
        used.len() >= 10,
        "the dashboard and rules use worker metrics: {used:?}"
    );
    used
}

async fn scrape(client: &reqwest::Client, port: u16) -> Option<String> {
    client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// Kills the spawned worker when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_exports_the_dashboards_and_alerts_metrics() {
    let used = used_worker_metrics();

    let dir = std::env::temp_dir().join(format!("spillway-contract-test-{}", std::process::id()));
    let port = spillway_e2e::free_port().unwrap();
    let _demo = Running(
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

    let missing: Vec<String> = exposition
        .missing(&used)
        .into_iter()
        .filter(|n| !CONDITIONAL.contains(&n.as_str()))
        .collect();
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

/// Produces HsuTestEvents into `topic` (one partition), every tenth one truncated.
async fn produce_with_poison(topic: &str) {
    use spillway_worker::tools::generate::HsuTestGenerator;
    let bootstrap = spillway_e2e::kafka_bootstrap();
    spillway_worker::tools::produce::ensure_topic(&bootstrap, topic, 1)
        .await
        .unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut g = HsuTestGenerator::new(11);
    for i in 0..500u32 {
        let mut body = Vec::new();
        g.next_event().encode(&mut body);
        if i % 10 == 7 {
            body.truncate(3);
        }
        producer
            .send(
                FutureRecord::<str, _>::to(topic)
                    .payload(&body)
                    .partition(0),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_dead_letters_and_event_time_exports_every_metric_used() {
    let used = used_worker_metrics();
    spillway_e2e::require("kafka", &spillway_e2e::kafka_bootstrap()).unwrap();
    let topic = spillway_e2e::unique("contract");
    produce_with_poison(&topic).await;

    let dir = std::env::temp_dir().join(spillway_e2e::unique("spillway-contract-run"));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("pipeline.yaml");
    let dead_letters = dir.join("dead-letters").display().to_string();
    std::fs::write(
        &manifest,
        Manifest::hsutest(&topic)
            .name("contract")
            .kafka("startingOffsets", "earliest")
            .kafka(
                "properties",
                json!({"session.timeout.ms": "10000", "max.poll.interval.ms": "10000"}),
            )
            .delta(dir.join("table"))
            .checkpoint(dir.join("checkpoint"))
            .interval("1s")
            .set(
                "/spec/eventTime",
                json!({"column": "ts", "allowedLateness": "1h"}),
            )
            .set(
                "/spec/errors",
                json!({
                    "onBadRecord": "deadLetter",
                    "deadLetter": {"delta": {"uri": dead_letters}},
                }),
            )
            .yaml(),
    )
    .unwrap();

    let port = spillway_e2e::free_port().unwrap();
    let _worker = Running(
        Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["run", "--http", &format!("127.0.0.1:{port}"), "-f"])
            .arg(&manifest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Until the poison records are dead-lettered and the watermark is known.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut text = String::new();
    let mut exposition = Exposition::default();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(t) = scrape(&client, port).await else {
            continue;
        };
        text = t;
        exposition = Exposition::parse(&text);
        if used.iter().all(|n| exposition.has_samples(n)) {
            break;
        }
    }
    let without_series: Vec<&String> = used.iter().filter(|n| !exposition.has_samples(n)).collect();
    assert!(
        without_series.is_empty(),
        "a worker with dead letters and an event-time column has no series of {without_series:?}\n--- /metrics ---\n{text}"
    );
    assert!(
        text.contains("spillway_dead_letters_total{pipeline=\"contract\",reason="),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
