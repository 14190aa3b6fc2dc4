//! Fault tests' helpers: the kill-test manifest, `spillway run` as a child process, seeded
//! kill moments, waiting on a worker's log, and the readers that prove exactly once — ours
//! (DataFusion for Delta, the commit markers for Parquet) and Python's (`deltalake`, a
//! plain `pyarrow.dataset` scan).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use spillway_e2e as support;
use spillway_worker::sink::parquet::ParquetSink;

use super::manifest::Manifest;

/// A small, seeded generator for the kill moments (the seed is printed for reruns).
pub struct Lcg(u64);

impl Lcg {
    pub fn from_env() -> Self {
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
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Duration::from_millis(lo + (self.0 >> 33) % (hi - lo))
    }
}

/// The kill tests' pipeline `name` of `topic`: batches of at most 4000 records and short
/// consumer-group timeouts (a killed worker's partitions move within seconds); the sink,
/// checkpoint and trigger are the test's.
pub fn kill_test_manifest(name: &str, topic: &str) -> Manifest {
    Manifest::hsutest(topic)
        .name(name)
        .kafka("maxRecordsPerBatch", 4000)
        .kafka(
            "properties",
            serde_json::json!({
                "session.timeout.ms": "6000",
                "max.poll.interval.ms": "10000",
                "heartbeat.interval.ms": "1000",
            }),
        )
        .metadata_columns(&["partition", "offset"])
}

/// A child process this test started, killed (SIGKILL) and reaped when dropped, so a
/// failing test leaves no worker or producer behind.
pub struct Reaped(pub Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `spillway run -f manifest`, its log to `log`.
pub fn spawn_run(manifest: &Path, log: &Path) -> Reaped {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["run", "--http", "127.0.0.1:0", "-f"])
        .arg(manifest)
        .envs(super::S3_SECRETS)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Reaped)
        .unwrap()
}

pub fn s3_python_opts() -> serde_json::Value {
    serde_json::json!({
        "AWS_ENDPOINT_URL": support::s3_endpoint(),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    })
}

/// A table as the Python packages see it: `deltalake` for Delta, a plain
/// `pyarrow.dataset` scan of the directory (Hive partitioning) for Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct PythonRead {
    /// Rows.
    pub rows: u64,
    /// Distinct (partition, offset) pairs.
    pub distinct: u64,
    /// The HsuTestEvent values, summed: see [`Digest`].
    pub digest: Digest,
}

/// Order-free sums over HsuTestEvent rows (`ts`; the amount in cents; a mix of `ts`, the
/// amount, the user and the event of each row), equal only if the values are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Digest(pub i64, pub i64, pub i64);

impl Digest {
    /// The digest of the first `n` events of `seed`, as `spillway produce` writes them.
    pub fn of_generated(seed: u64, n: u64) -> Self {
        let mut g = spillway_worker::tools::generate::HsuTestGenerator::new(seed);
        let mut d = Self::default();
        for _ in 0..n {
            d.add(&g.next_event());
        }
        d
    }

    /// Adds one event.
    pub fn add(&mut self, e: &spillway_worker::tools::generate::HsuTestEvent) {
        let cents = (e.amount * 100.0).round() as i64;
        let user: i64 = e.user[5..].parse().unwrap_or(-1);
        let event = spillway_worker::tools::generate::EVENTS
            .iter()
            .position(|x| *x == e.event)
            .map_or(-1, |i| i as i64);
        self.0 += e.ts;
        self.1 += cents;
        self.2 += (e.ts % 1000) * cents + user * 8 + event;
    }
}

/// `(rows, distinct (partition, offset))` as the Python packages see the table.
pub fn python_counts(kind: &str, uri: &str) -> (u64, u64) {
    let r = python_read(kind, uri);
    (r.rows, r.distinct)
}

/// Reads an HsuTestEvent table with the Python packages.
pub fn python_read(kind: &str, uri: &str) -> PythonRead {
    let script = r#"
import json, os, sys
import pyarrow as pa, pyarrow.compute as pc
kind, uri, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cols = ["_partition", "_offset", "user", "event", "amount", "ts"]
if kind == "delta":
    import deltalake
    t = deltalake.DeltaTable(uri, storage_options=opts if uri.startswith("s3://") else None).to_pyarrow_table(columns=cols)
else:
    import pyarrow.dataset as ds, pyarrow.fs as pafs
    fs, path = None, uri
    if uri.startswith("s3://"):
        endpoint = opts["AWS_ENDPOINT_URL"].split("://", 1)[1]
        fs = pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1", endpoint_override=endpoint, scheme="http")
        path = uri[len("s3://"):]
    t = ds.dataset(path, format="parquet", partitioning="hive", filesystem=fs).to_table(columns=cols)
pairs = set(zip(t.column("_partition").to_pylist(), t.column("_offset").to_pylist()))
events = pa.array(["click", "view", "purchase", "add_to_cart", "login", "logout", "search", "share"])
ts = pc.cast(t.column("ts"), pa.int64())
cents = pc.cast(pc.round(pc.multiply(t.column("amount"), 100)), pa.int64())
user = pc.cast(pc.utf8_slice_codeunits(pc.cast(t.column("user"), pa.string()), 5), pa.int64())
event = pc.cast(pc.index_in(pc.cast(t.column("event"), pa.string()), value_set=events), pa.int64())
mix = pc.add(pc.add(pc.multiply(pc.subtract(ts, pc.multiply(pc.divide(ts, 1000), 1000)), cents), pc.multiply(user, 8)), event)
s = lambda a: (pc.sum(a).as_py() or 0) if t.num_rows else 0
print(json.dumps({"rows": t.num_rows, "distinct": len(pairs), "digest": [s(ts), s(cents), s(mix)]}), flush=True)
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

pub fn s3_options() -> std::collections::HashMap<String, String> {
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
pub async fn delta_counts(uri: &str) -> (u64, u64) {
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
pub async fn parquet_pairs(uri: &str, checkpoint: &str) -> (u64, BTreeSet<(i32, i64)>) {
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
        let path = spillway_worker::storage::join(&root, &f.path);
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

pub fn storage_url(uri: &str) -> url::Url {
    spillway_worker::storage::url(uri, Path::new("/")).unwrap()
}

/// Every one of the `n` offsets exactly once in the sink, by our reading and by Python's.
pub async fn assert_exactly_once(kind: &Kind, data: &str, checkpoint: &str, n: u64) {
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

/// The sink of a kill test, on moto S3 under `prefix`.
pub enum Kind {
    /// A Delta table.
    Delta,
    /// A Parquet dataset.
    Parquet,
}

/// Waits until `log` has `count` lines saying `what`.
pub fn wait_for(log: &Path, what: &str, count: usize, timeout: Duration) {
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

pub fn count_in(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(what)
        .count()
}

/// Runs `spillway run` and SIGKILLs it at `kills` random moments, restarting each time.
pub fn kill_repeatedly(manifest: &Path, dir: &Path, kills: usize) {
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

pub fn committed_batches(dir: &Path, kills: usize) -> usize {
    (0..kills)
        .map(|k| {
            std::fs::read_to_string(dir.join(format!("run-{k}.log")))
                .unwrap_or_default()
                .matches("batch committed")
                .count()
        })
        .sum()
}

pub fn wait_for_progress(log: &Path, batches: usize, timeout: Duration) {
    wait_for(log, "batch committed", batches, timeout);
}

/// Sends a signal (`STOP`, `CONT`, `TERM`) to a child process this test started, by PID.
pub fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {}", child.id());
}
