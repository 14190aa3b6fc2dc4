//! Exactly once under failure, against Apache Kafka and moto: `spillway run` SIGKILLed at
//! random moments and restarted (Delta on S3, Parquet), two workers in one consumer group
//! with one SIGKILLed mid-way (its partitions move to the other after the session
//! timeout), and a zombie writer fenced by the new owner. Every table is read
//! back with our code and with the Python `deltalake` / `pyarrow` packages: every
//! (partition, offset) exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
mod common;

use spillway_e2e as support;
use spillway_worker::sink::parquet::ParquetSink;
use spillway_worker::source::TopicPartition;

const PARTITIONS: i32 = 4;

/// A small, seeded generator for the kill moments (the seed is printed for reruns).
struct Lcg(u64);

impl Lcg {
    fn from_env() -> Self {
        let seed = std::env::var("SPILLWAY_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("kill moments from SPILLWAY_CRASH_SEED={seed}");
        Self(seed)
    }
    /// Uniform in `[lo, hi)` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Duration::from_millis(lo + (self.0 >> 33) % (hi - lo))
    }
}

/// `count` HsuTestEvents over 4 partitions.
fn produce(topic: &str, count: u64, seed: u64) {
    let partitions = PARTITIONS.to_string();
    common::produce(
        &support::kafka_bootstrap(),
        topic,
        count,
        seed,
        &["--partitions", &partitions],
    );
}

/// The pipeline; `sink` is the YAML of `spec.sink`, `trigger` of `spec.trigger`.
fn manifest_text(
    name: &str,
    topic: &str,
    sink: &str,
    checkpoint: &str,
    trigger: &str,
    storage: &str,
) -> String {
    format!(
        r#"apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {{name: {name}}}
spec:
  source:
    kafka:
      bootstrapServers: "{bootstrap}"
      topics: [{topic}]
      maxRecordsPerBatch: 4000
      properties: {{session.timeout.ms: "6000", max.poll.interval.ms: "10000", heartbeat.interval.ms: "1000"}}
  format:
    avro:
      encoding: raw
      writerSchema:
        inline: '{schema}'
  transform:
    metadataColumns: [partition, offset]
  sink: {sink}
  checkpoint:
    uri: "{checkpoint}"
  trigger: {trigger}
{storage}"#,
        bootstrap = support::kafka_bootstrap(),
        schema = spillway_worker::generate::HSUTEST_SCHEMA,
    )
}

fn spawn_run(manifest: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["run", "--http", "127.0.0.1:0", "-f"])
        .arg(manifest)
        .envs(common::S3_SECRETS)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The rest, in-process with `availableNow`: what the killed runs left is finished.
async fn finish(text: &str) -> spillway_worker::engine::RunSummary {
    common::run_available_now(text).await.unwrap()
}

fn s3_python_opts() -> serde_json::Value {
    serde_json::json!({
        "AWS_ENDPOINT_URL": support::s3_endpoint(),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    })
}

/// (rows, distinct (partition, offset)) as the Python packages see the table: `deltalake`
/// for Delta, a plain `pyarrow.dataset` scan of the directory (Hive partitioning) for
/// Parquet.
fn python_counts(kind: &str, uri: &str) -> (u64, u64) {
    let script = r#"
import json, os, sys
kind, uri, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if kind == "delta":
    import deltalake
    t = deltalake.DeltaTable(uri, storage_options=opts if uri.startswith("s3://") else None).to_pyarrow_table(columns=["_partition", "_offset"])
else:
    import pyarrow.dataset as ds, pyarrow.fs as pafs
    fs, path = None, uri
    if uri.startswith("s3://"):
        endpoint = opts["AWS_ENDPOINT_URL"].split("://", 1)[1]
        fs = pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1", endpoint_override=endpoint, scheme="http")
        path = uri[len("s3://"):]
    t = ds.dataset(path, format="parquet", partitioning="hive", filesystem=fs).to_table(columns=["_partition", "_offset"])
pairs = set(zip(t.column("_partition").to_pylist(), t.column("_offset").to_pylist()))
print(json.dumps([t.num_rows, len(pairs)]), flush=True)
os._exit(0)
"#;
    let out = Command::new(support::python())
        .args(["-c", script, kind, uri, &s3_python_opts().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s3_options() -> std::collections::HashMap<String, String> {
    [
        ("aws_endpoint", support::s3_endpoint()),
        ("aws_region", "us-east-1".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_allow_http", "true".into()),
        ("aws_virtual_hosted_style_request", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Our reading of a Delta table: (rows, distinct (partition, offset)) through DataFusion.
async fn delta_counts(uri: &str) -> (u64, u64) {
    use deltalake::datafusion::prelude::SessionContext;
    deltalake::aws::register_handlers(None);
    let url = storage_url(uri);
    let table = deltalake::DeltaTable::try_from_url_with_storage_options(url, s3_options())
        .await
        .unwrap();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx
        .sql("SELECT count(*) AS n, count(DISTINCT CAST(_partition AS BIGINT) * 10000000000 + _offset) AS d FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = batches[0].column(0).as_primitive::<Int64Type>().value(0) as u64;
    let d = batches[0].column(1).as_primitive::<Int64Type>().value(0) as u64;
    (n, d)
}

/// Our reading of a Parquet dataset: the files of every commit marker, decoded.
async fn parquet_pairs(uri: &str, checkpoint: &str) -> (u64, BTreeSet<(i32, i64)>) {
    use object_store::ObjectStoreExt;
    let url = storage_url(uri);
    let sink = ParquetSink::open(
        &url,
        &storage_url(checkpoint),
        &s3_options(),
        vec![],
        spillway_api::ParquetCompression::Zstd,
        "reader",
    )
    .await
    .unwrap();
    let (store, root) = object_store::parse_url_opts(&url, s3_options().iter()).unwrap();
    let mut rows = 0u64;
    let mut pairs = BTreeSet::new();
    for f in sink.committed_files().await.unwrap() {
        let path = object_store::path::Path::from(format!(
            "{}/{}",
            root.as_ref().trim_end_matches('/'),
            f.path
        ));
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8192).unwrap();
        for b in reader {
            let b = b.unwrap();
            let p = b
                .column_by_name("_partition")
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone();
            let o = b
                .column_by_name("_offset")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            rows += b.num_rows() as u64;
            for i in 0..p.len() {
                pairs.insert((p.value(i), o.value(i)));
            }
        }
    }
    (rows, pairs)
}

fn storage_url(uri: &str) -> url::Url {
    spillway_worker::storage::url(uri, Path::new("/")).unwrap()
}

/// Every one of the `n` offsets exactly once in the sink, by our reading and by Python's.
async fn assert_exactly_once(kind: &Kind, data: &str, checkpoint: &str, n: u64) {
    match kind {
        Kind::Delta => {
            assert_eq!(delta_counts(data).await, (n, n));
            assert_eq!(python_counts("delta", data), (n, n));
        }
        Kind::Parquet => {
            let (rows, pairs) = parquet_pairs(data, checkpoint).await;
            assert_eq!((rows, pairs.len() as u64), (n, n));
            // A plain directory scan sees exactly the committed files: nothing partial or
            // orphaned is left behind.
            assert_eq!(python_counts("parquet", data), (n, n));
        }
    }
}

/// Runs `spillway run` and SIGKILLs it at `kills` random moments, restarting each time.
fn kill_repeatedly(manifest: &Path, dir: &Path, kills: usize) {
    let mut rng = Lcg::from_env();
    for k in 0..kills {
        let log = dir.join(format!("run-{k}.log"));
        let mut child = spawn_run(manifest, &log);
        // A random moment once the worker owns partitions: while it reads, decodes,
        // writes files or commits.
        wait_for(&log, "partitions assigned", 1, Duration::from_secs(60));
        std::thread::sleep(rng.millis(1_000, 8_000));
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the worker exited by itself ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
    }
}

fn committed_batches(dir: &Path, kills: usize) -> usize {
    (0..kills)
        .map(|k| {
            std::fs::read_to_string(dir.join(format!("run-{k}.log")))
                .unwrap_or_default()
                .matches("batch committed")
                .count()
        })
        .sum()
}

/// The sink of a kill test, on moto S3 under `prefix`.
enum Kind {
    Delta,
    Parquet,
}

/// 200,000 records over 4 partitions; `spillway run` SIGKILLed at 6 random moments and
/// restarted; the rest finished by an `availableNow` run. Every offset exactly once.
async fn sigkill_case(kind: Kind, seed: u64) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    support::require("moto (s3)", &support::host_port(&support::s3_endpoint())).unwrap();
    let name = match kind {
        Kind::Delta => "kill-delta",
        Kind::Parquet => "kill-parquet",
    };
    let topic = support::unique(name);
    let n = 200_000;
    produce(&topic, n, seed);
    let prefix = format!("s3://{}/{}", support::s3_bucket(), support::unique(name));
    let data = format!("{prefix}/data");
    let sink = match kind {
        Kind::Delta => format!("{{delta: {{uri: \"{data}\"}}}}"),
        Kind::Parquet => format!("{{parquet: {{uri: \"{data}\", partitionBy: [event]}}}}"),
    };
    let checkpoint = format!("{prefix}/checkpoint");
    let dir = std::env::temp_dir().join(support::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("pipeline.yaml");
    let storage = common::s3_storage_yaml();
    let text = |trigger: &str| manifest_text(&topic, &topic, &sink, &checkpoint, trigger, &storage);
    std::fs::write(&manifest, text("{interval: 500ms}")).unwrap();

    let kills = 6;
    let d2 = dir.clone();
    tokio::task::spawn_blocking(move || kill_repeatedly(&manifest, &d2, kills))
        .await
        .unwrap();
    assert!(
        committed_batches(&dir, kills) > 0,
        "the killed runs committed batches"
    );
    if let Kind::Delta = kind {
        let (rows, distinct) = delta_counts(&data).await;
        assert_eq!(rows, distinct, "no duplicate right after the kills");
    }

    let rest = finish(&text("{availableNow: true}")).await;
    assert!(
        (rest.rows as u64) < n,
        "the killed runs committed part of the stream: the final run wrote {}",
        rest.rows
    );
    assert_exactly_once(&kind, &data, &checkpoint, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_delta_on_s3_every_offset_exactly_once() {
    sigkill_case(Kind::Delta, 21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_parquet_on_s3_every_offset_exactly_once() {
    sigkill_case(Kind::Parquet, 22).await;
}

fn wait_for_progress(log: &Path, batches: usize, timeout: Duration) {
    wait_for(log, "batch committed", batches, timeout);
}

/// Waits until `log` has `count` lines saying `what`.
fn wait_for(log: &Path, what: &str, count: usize, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(what).count() >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no {count} × {what:?} within {timeout:?}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn count_in(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(what)
        .count()
}

/// Two workers in one group, on one table; one is SIGKILLed mid-way: it leaves nothing
/// behind but its open batch, and the broker notices it only when its session times out
/// (`session.timeout.ms` 6 s); then the other is assigned every partition and goes on. The
/// rest is finished by an `availableNow` run. Every offset exactly once.
async fn two_workers_case(kind: Kind, seed: u64) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("two-workers");
    let n = 60_000;
    produce(&topic, n, seed);
    let dir = std::env::temp_dir().join(support::unique("two-workers"));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data").display().to_string();
    let checkpoint = dir.join("checkpoint").display().to_string();
    let sink = match kind {
        Kind::Delta => format!("{{delta: {{uri: \"{data}\"}}}}"),
        Kind::Parquet => format!("{{parquet: {{uri: \"{data}\"}}}}"),
    };
    let manifest = dir.join("pipeline.yaml");
    // Small batches, so both workers are mid-stream when one is killed.
    let text = manifest_text(&topic, &topic, &sink, &checkpoint, "{interval: 200ms}", "")
        .replace("maxRecordsPerBatch: 4000", "maxRecordsPerBatch: 500");
    std::fs::write(&manifest, &text).unwrap();

    let (m, d) = (manifest.clone(), dir.clone());
    tokio::task::spawn_blocking(move || {
        let (a_log, b_log) = (d.join("a.log"), d.join("b.log"));
        let mut a = spawn_run(&m, &a_log);
        let mut b = spawn_run(&m, &b_log);
        wait_for_progress(&a_log, 3, Duration::from_secs(90));
        wait_for_progress(&b_log, 3, Duration::from_secs(90));
        let all = "partitions assigned and positioned partitions=4";
        let before = count_in(&b_log, all);
        a.kill().unwrap(); // SIGKILL: no leave-group, no commit of the open batch
        let killed = std::time::Instant::now();
        let status = a.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        wait_for(&b_log, all, before + 1, Duration::from_secs(120));
        eprintln!(
            "the killed worker's partitions moved after {:?}",
            killed.elapsed()
        );
        let committed = count_in(&b_log, "batch committed");
        wait_for_progress(&b_log, committed + 5, Duration::from_secs(120));
        b.kill().unwrap();
        let _ = b.wait();
    })
    .await
    .unwrap();

    finish(&text.replace("{interval: 200ms}", "{availableNow: true}")).await;
    assert_exactly_once(&kind, &data, &checkpoint, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_group_one_sigkilled_midway_parquet() {
    two_workers_case(Kind::Parquet, 23).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_group_one_sigkilled_midway_delta() {
    two_workers_case(Kind::Delta, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_delta_writer_is_fenced_by_the_new_owner() {
    use spillway_worker::sink::delta::{DeltaSink, DeltaSinkError};
    let dir = std::env::temp_dir().join(support::unique("zombie"));
    std::fs::create_dir_all(dir.join("t")).unwrap();
    let url = url::Url::from_directory_path(dir.join("t")).unwrap();
    let tp = TopicPartition {
        topic: "t".into(),
        partition: 0,
    };
    let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "_offset",
        arrow_schema::DataType::Int64,
        false,
    )]));
    let rows = |from: i64, to: i64| {
        arrow_array::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow_array::Int64Array::from_iter_values(
                from..to,
            ))],
        )
        .unwrap()
    };
    let mut old = DeltaSink::open(&url, Default::default(), "g", vec![])
        .await
        .unwrap();
    old.commit(
        Some(rows(0, 10)),
        &[(tp.clone(), None)].into(),
        &[(tp.clone(), 10)].into(),
    )
    .await
    .unwrap();
    // The partition moves to a new owner, which resumes at 10 and commits.
    let mut new = DeltaSink::open(&url, Default::default(), "g", vec![])
        .await
        .unwrap();
    assert_eq!(
        new.positions(std::slice::from_ref(&tp)).await.unwrap()[&tp],
        10
    );
    new.commit(
        Some(rows(10, 20)),
        &[(tp.clone(), Some(10))].into(),
        &[(tp.clone(), 20)].into(),
    )
    .await
    .unwrap();
    // The old owner, unaware, tries to commit the same range: fenced, nothing written.
    let err = old
        .commit(
            Some(rows(10, 20)),
            &[(tp.clone(), Some(10))].into(),
            &[(tp.clone(), 20)].into(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DeltaSinkError::Fenced { .. }), "{err}");
    let uri = url.to_string();
    assert_eq!(python_counts_offsets(&uri), (20, 20));
}

/// (rows, distinct offsets) of a local Delta table with only an `_offset` column.
fn python_counts_offsets(uri: &str) -> (u64, u64) {
    let script = r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["_offset"])
print(json.dumps([t.num_rows, len(set(t.column("_offset").to_pylist()))]), flush=True)
os._exit(0)
"#;
    let out = Command::new(support::python())
        .args(["-c", script, uri])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
