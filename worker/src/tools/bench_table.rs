//! I/O: `spillway bench log`, no Kafka needed: makes C streaming commits (one `txn`
//! action each, as an idle pipeline's batches do) and measures how long the table then
//! takes to open, with the checkpoints delta-rs writes as it goes (every
//! `delta.checkpointInterval`, 100).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::sink::delta::{DeltaSink, DeltaSinkError};
use crate::source::TopicPartition;

/// Errors of the table benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum TableBenchError {
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] DeltaSinkError),
    /// delta-rs failed.
    #[error(transparent)]
    Delta(#[from] deltalake::DeltaTableError),
    /// Building a batch failed.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The directory is not a valid URL.
    #[error("invalid directory {0}")]
    Dir(String),
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("rating", DataType::Float64, false),
        Field::new("event_time", DataType::Int64, false),
    ]))
}

/// Rows with keys `ids`, event time `t`.
fn rows(ids: impl Iterator<Item = u64>, t: i64) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let ids: Vec<u64> = ids.collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("event-{i:012}")),
            )),
            Arc::new(Int64Array::from_iter_values(
                ids.iter().map(|i| (*i % 100_000) as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| (*i % 10) as f64 / 2.0),
            )),
            Arc::new(Int64Array::from_iter_values(ids.iter().map(|_| t))),
        ],
    )
}

/// The `file://` URL of `dir`, created if absent.
pub(crate) fn dir_url(dir: &std::path::Path) -> Result<url::Url, TableBenchError> {
    std::fs::create_dir_all(dir)?;
    let abs = std::fs::canonicalize(dir)?;
    url::Url::from_directory_path(&abs).map_err(|_| TableBenchError::Dir(abs.display().to_string()))
}

fn new_dir(dir: Option<PathBuf>, what: &str) -> PathBuf {
    dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("spillway-bench-{what}-{}", uuid::Uuid::new_v4()))
    })
}

/// What `spillway bench log` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LogReport {
    /// Commits made, and how long they took.
    pub commits: (u64, Duration),
    /// Checkpoint files in `_delta_log`.
    pub checkpoints: usize,
    /// Time to open the table (latest version), best of 3.
    pub open: Duration,
    /// The version opened.
    pub version: i64,
}

/// Makes `commits` txn-only commits, then opens the table. With `log_retention` (a Delta
/// interval such as `interval 10 seconds`), the table is created with that
/// `delta.logRetentionDuration`, so each checkpoint also removes older log files.
pub async fn log(
    dir: Option<PathBuf>,
    commits: u64,
    log_retention: Option<String>,
) -> Result<LogReport, TableBenchError> {
    let dir = new_dir(dir, "log");
    let url = dir_url(&dir)?;
    let tp = TopicPartition {
        topic: "bench".into(),
        partition: 0,
    };
    let mut sink = DeltaSink::open(&url, Default::default(), "bench", vec![])
        .await?
        .with_table_properties(
            log_retention
                .map(|r| ("delta.logRetentionDuration".to_string(), r))
                .into_iter()
                .collect(),
        );
    let started = Instant::now();
    // The first commit creates the table (a batch with rows); the rest carry only `txn`.
    sink.commit(
        Some(rows(0..1, 1)?),
        &[(tp.clone(), None)].into(),
        &[(tp.clone(), 1)].into(),
    )
    .await?;
    for v in 1..commits as i64 {
        let expected: BTreeMap<TopicPartition, Option<i64>> = [(tp.clone(), Some(v))].into();
        sink.commit(None, &expected, &[(tp.clone(), v + 1)].into())
            .await?;
    }
    let made = started.elapsed();
    let checkpoints = std::fs::read_dir(dir.join("_delta_log"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".checkpoint."))
        .count();
    let mut best = Duration::MAX;
    let mut version = -1;
    for _ in 0..3 {
        let t = Instant::now();
        let table = deltalake::open_table(url.clone()).await?;
        best = best.min(t.elapsed());
        version = table.version().map_or(-1, |v| v as i64);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(LogReport {
        commits: (commits, made),
        checkpoints,
        open: best,
        version,
    })
}

/// The printed log report.
pub fn format_log(r: &LogReport) -> String {
    format!(
        "spillway bench log: {} streaming commits in {:.1}s ({:.0} commits/s), {} checkpoints written\n\
         opening the table at version {} took {:.1} ms (best of 3)\n",
        r.commits.0,
        r.commits.1.as_secs_f64(),
        r.commits.0 as f64 / r.commits.1.as_secs_f64().max(1e-9),
        r.checkpoints,
        r.version,
        r.open.as_secs_f64() * 1000.0,
    )
}
