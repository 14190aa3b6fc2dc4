//! Helpers shared by the worker's integration tests (each test file uses some of them).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use spillway_api::StreamingQueryProgress;
use spillway_worker::engine::{self, EngineError, RunOptions, RunSummary};
use spillway_worker::secrets::MapSecrets;
use spillway_worker::serve::progress::{ProgressState, WorkerProgress};
use tokio_util::sync::CancellationToken;

pub mod faults;
pub mod manifest;

/// The credentials the test manifests reference (`{name: s3, key: id|key}`, see
/// [`manifest::s3_storage`]), for moto.
pub const S3_SECRETS: [(&str, &str); 2] = [
    ("SPILLWAY_SECRET_S3_ID", "test"),
    ("SPILLWAY_SECRET_S3_KEY", "test"),
];

/// The options of an in-process run: the test secrets, short consumer-group timeouts (so a
/// previous member that died is replaced quickly), and `on_batch`.
fn options(on_batch: engine::BatchCallback) -> RunOptions {
    RunOptions {
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
    }
}

fn load(text: &str) -> spillway_worker::manifest::LoadedPipeline {
    spillway_worker::manifest::load_str(text, Path::new("test.yaml"), &std::env::temp_dir())
        .unwrap()
}

/// What an in-process run did: its result, its batch reports and the progress document
/// (conditions) it left.
pub struct Finished {
    /// The run's result.
    pub result: Result<RunSummary, EngineError>,
    /// Every batch report, in order.
    pub reports: Vec<StreamingQueryProgress>,
    /// The `/progress` document at the end.
    pub progress: WorkerProgress,
}

/// Runs an `availableNow` manifest in-process to its end (at most 300 s).
pub async fn run_available_now(text: &str) -> Result<RunSummary, EngineError> {
    finish_available_now(text).await.result
}

/// [`run_available_now`], with the batch reports.
pub async fn run_available_now_reports(
    text: &str,
) -> Result<(RunSummary, Vec<StreamingQueryProgress>), EngineError> {
    let f = finish_available_now(text).await;
    f.result.map(|s| (s, f.reports))
}

/// [`run_available_now`], with everything it left behind.
pub async fn finish_available_now(text: &str) -> Finished {
    let run = Streaming::start(text);
    let result = tokio::time::timeout(Duration::from_secs(300), run.handle)
        .await
        .expect("the availableNow run did not finish")
        .unwrap();
    Finished {
        result,
        reports: run.reports.lock().map(|v| v.clone()).unwrap_or_default(),
        progress: run.progress.snapshot(),
    }
}

/// An in-process run of a manifest (any trigger), stopped by [`Streaming::stop`].
pub struct Streaming {
    shutdown: CancellationToken,
    progress: ProgressState,
    reports: Arc<std::sync::Mutex<Vec<StreamingQueryProgress>>>,
    rows: tokio::sync::watch::Receiver<i64>,
    handle: tokio::task::JoinHandle<Result<RunSummary, EngineError>>,
}

impl Streaming {
    /// Starts the run on the runtime.
    pub fn start(text: &str) -> Self {
        // The engine's logs on the test's output, for a rerun: `RUST_LOG=info`.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rows) = tokio::sync::watch::channel(0i64);
        let sink = reports.clone();
        let on_batch: engine::BatchCallback = Arc::new(move |r| {
            if let Ok(mut v) = sink.lock() {
                v.push(r.clone());
            }
            tx.send_modify(|n| *n += r.sink.num_output_rows);
        });
        let loaded = load(text);
        let (shutdown, progress) = (CancellationToken::new(), ProgressState::default());
        let (token, state) = (shutdown.clone(), progress.clone());
        let handle =
            tokio::spawn(
                async move { engine::run(&loaded, options(on_batch), state, token).await },
            );
        Self {
            shutdown,
            progress,
            reports,
            rows,
            handle,
        }
    }

    /// Waits until the run has committed at least `rows` rows (at most `timeout`).
    pub async fn wait_rows(&mut self, rows: i64, timeout: Duration) {
        let reached = tokio::time::timeout(timeout, self.rows.wait_for(|n| *n >= rows))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(
            reached,
            "fewer than {rows} rows committed within {timeout:?}: {}",
            *self.rows.borrow()
        );
    }

    /// Waits for the run to end by itself (at most `timeout`), as after a failure.
    pub async fn ended(self, timeout: Duration) -> Finished {
        let result = tokio::time::timeout(timeout, self.handle)
            .await
            .expect("the run did not end")
            .unwrap();
        Finished {
            result,
            reports: self.reports.lock().map(|v| v.clone()).unwrap_or_default(),
            progress: self.progress.snapshot(),
        }
    }

    /// Requests shutdown and waits for the run to end (at most 120 s).
    pub async fn stop(self) -> Finished {
        self.shutdown.cancel();
        self.ended(Duration::from_secs(120)).await
    }
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

/// Sends `(key, payload)` records to partition 0 of `topic`, in order (idempotent producer).
pub async fn send_in_order(topic: &str, records: &[(Option<String>, Vec<u8>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", spillway_e2e::kafka_bootstrap())
        .set("enable.idempotence", "true")
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

/// An Avro record of `schema` in the Confluent wire format under schema id `id`.
pub fn confluent_avro(
    id: u32,
    schema: &str,
    fields: Vec<(&str, apache_avro::types::Value)>,
) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let record = apache_avro::types::Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    );
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(&schema, record).unwrap());
    out
}

/// A Kafka admin client for the test broker.
pub fn admin() -> AdminClient<DefaultClientContext> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", spillway_e2e::kafka_bootstrap())
        .create()
        .unwrap()
}

/// Creates `topic` with `partitions` and the topic configuration `config` (e.g.
/// `cleanup.policy`), and waits for its partition leaders.
pub async fn create_topic(topic: &str, partitions: i32, config: &[(&str, &str)]) {
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        new = new.set(k, v);
    }
    spillway_worker::tools::produce::create_topic(&spillway_e2e::kafka_bootstrap(), new)
        .await
        .unwrap();
}

/// Low and high watermarks of a partition — the high one is the log end, open transactions
/// included (`read_uncommitted`) — asked again on transient errors (a leader that is not
/// known yet) for up to 30 s.
pub fn watermarks(topic: &str, partition: i32) -> (i64, i64) {
    watermarks_at(topic, partition, "read_uncommitted")
}

/// The partition's last stable offset: the high watermark as a `read_committed` consumer
/// sees it (below the first offset of a transaction still open or not yet marked).
pub fn last_stable_offset(topic: &str, partition: i32) -> i64 {
    watermarks_at(topic, partition, "read_committed").1
}

fn watermarks_at(topic: &str, partition: i32, isolation: &str) -> (i64, i64) {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", spillway_e2e::kafka_bootstrap())
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match c.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(w) => return w,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("watermarks of {topic}/{partition}: {e}; asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("watermarks of {topic}/{partition}: {e}"),
        }
    }
}

/// Waits (at most 30 s) until the partition's last stable offset is `offset`: the
/// transaction coordinator writes commit and abort markers after the producer's call
/// returned.
pub fn wait_for_last_stable_offset(topic: &str, partition: i32, offset: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while last_stable_offset(topic, partition) != offset {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}/{partition}: last stable offset {} after 30 s, not {offset}",
            last_stable_offset(topic, partition)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// DeleteRecords: the records of `topic/partition` before `before` are deleted, and the
/// partition's log start (low watermark) moves to `before`.
pub async fn delete_records(topic: &str, partition: i32, before: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(before))
        .unwrap();
    let done = admin()
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .unwrap();
    for e in done.elements() {
        assert!(e.error().is_ok(), "delete records: {:?}", e.error());
    }
    assert_eq!(
        watermarks(topic, partition).0,
        before,
        "the log start moved"
    );
}

/// The distinct `(partition, offset)` pairs of a local Delta table and its row count, read
/// with Python `deltalake`.
pub fn python_pairs(table: &str) -> (u64, BTreeSet<(i32, i64)>) {
    let script = r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["_partition", "_offset"])
print(json.dumps([t.num_rows, sorted(set(zip(t.column("_partition").to_pylist(), t.column("_offset").to_pylist())))]), flush=True)
os._exit(0)
"#;
    let (rows, pairs): (u64, Vec<(i32, i64)>) = python_json(script, &[table]);
    (rows, pairs.into_iter().collect())
}
