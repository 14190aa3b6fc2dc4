//! Helpers shared by the worker's integration tests (each test file uses some of them).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use spillway_worker::engine::{self, EngineError, RunOptions, RunSummary};
use spillway_worker::manifest;
use spillway_worker::progress::ProgressState;
use spillway_worker::secrets::MapSecrets;
use tokio_util::sync::CancellationToken;

/// The credentials the test manifests reference (`{name: s3, key: id|key}`), for moto.
pub const S3_SECRETS: [(&str, &str); 2] = [
    ("SPILLWAY_SECRET_S3_ID", "test"),
    ("SPILLWAY_SECRET_S3_KEY", "test"),
];

/// `spec.storage` for moto, credentials by reference.
pub fn s3_storage_yaml() -> String {
    format!(
        "  storage:\n    region: us-east-1\n    endpoint: \"{}\"\n    allowHttp: true\n    pathStyle: true\n    credentialsSecretRef:\n      accessKeyId: {{name: s3, key: id}}\n      secretAccessKey: {{name: s3, key: key}}\n",
        spillway_e2e::s3_endpoint()
    )
}

/// Runs an `availableNow` manifest in-process to its end (at most 300 s), with short
/// consumer-group timeouts so a previous member that died is replaced quickly.
pub async fn run_available_now(text: &str) -> Result<RunSummary, EngineError> {
    run_available_now_reports(text).await.map(|(s, _)| s)
}

/// [`run_available_now`], with the batch reports.
pub async fn run_available_now_reports(
    text: &str,
) -> Result<(RunSummary, Vec<spillway_api::StreamingQueryProgress>), EngineError> {
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = reports.clone();
    let on_batch: engine::BatchCallback = Arc::new(move |r| {
        if let Ok(mut v) = sink.lock() {
            v.push(r.clone());
        }
    });
    let loaded = manifest::load_str(text, Path::new("test.yaml"), &std::env::temp_dir()).unwrap();
    let opts = RunOptions {
        secrets: Arc::new(MapSecrets(
            S3_SECRETS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )),
        consumer_overrides: BTreeMap::from([
            ("session.timeout.ms".to_string(), "10000".to_string()),
            ("max.poll.interval.ms".to_string(), "10000".to_string()),
        ]),
        on_batch: Some(on_batch),
        metrics: None,
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(300),
        engine::run(
            &loaded,
            opts,
            ProgressState::default(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the availableNow run did not finish")?;
    let reports = reports.lock().map(|v| v.clone()).unwrap_or_default();
    Ok((summary, reports))
}

/// `spillway produce` of `count` HsuTestEvents (seeded) into `topic` at `bootstrap`, with
/// extra arguments (e.g. `--partitions 4`, `-X batch.num.messages=1`).
pub fn produce(bootstrap: &str, topic: &str, count: u64, seed: u64, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["produce", "--bootstrap", bootstrap, "--topic", topic])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a Python script with the suite's interpreter (the venv with `deltalake` and
/// `pyarrow`) and parses the JSON it prints.
pub fn python_json<T: serde::de::DeserializeOwned>(script: &str, args: &[&str]) -> T {
    let out = Command::new(spillway_e2e::python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Sends `(key, payload)` records to partition 0 of `topic`, one record per Kafka batch
/// (tansu 0.6 needs that for restarts in the middle of the stream), in order.
pub async fn send_in_order(topic: &str, records: &[(Option<String>, Vec<u8>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", spillway_e2e::kafka_bootstrap())
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .unwrap();
    let sends = records.iter().map(|(key, payload)| {
        let producer = producer.clone();
        async move {
            let mut record = FutureRecord::<String, _>::to(topic)
                .payload(payload)
                .partition(0);
            if let Some(k) = key {
                record = record.key(k);
            }
            producer
                .send(record, Duration::from_secs(60))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    futures::future::join_all(sends).await;
}
