//! I/O: `spillway run` and `spillway demo` — wire a pipeline to signals, the HTTP server
//! and metrics, run the engine, and report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::engine::{self, BatchCallback, EngineError, RunOptions, RunSummary};
use crate::manifest::LoadedPipeline;
use crate::secrets::EnvSecrets;
use crate::serve::http::{self, HttpState};
use crate::serve::metrics::WorkerMetrics;
use crate::serve::progress::{ProgressState, WorkerCondition, WorkerConditionType};

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested: committing or abandoning the open batch");
        token.cancel();
    });
}

/// Where a run serves and reports, besides its stdout.
#[derive(Debug, Clone, Default)]
pub struct Serve {
    /// Address of the `/progress`, `/metrics`, `/healthz`, `/readyz` server; none serves.
    pub http: Option<SocketAddr>,
    /// A file the final state is written to as one line of JSON (a
    /// [`spillway_api::report::WorkerCondition`]), as a Kubernetes container's termination
    /// message: `Completed` after an `availableNow` run, `DataLoss` or `Failed` with the
    /// reason when the run failed. Nothing is written after a stop by signal.
    pub termination_log: Option<PathBuf>,
}

/// Why a run could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP server could not listen (the pod's probes and the operator would never
    /// reach the worker, so the run does not start).
    #[error("failed to serve http on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The pipeline failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Runs a loaded pipeline with its HTTP server; `on_batch` sees each report.
pub async fn run_pipeline(
    loaded: &LoadedPipeline,
    serve: &Serve,
    shutdown: CancellationToken,
    consumer_overrides: std::collections::BTreeMap<String, String>,
    print: Option<BatchCallback>,
) -> Result<RunSummary, RunError> {
    let name = loaded.pipeline.metadata.name.clone().unwrap_or_default();
    let mut registry = Registry::default();
    let metrics = Arc::new(WorkerMetrics::register(&mut registry));
    let progress = ProgressState::default();
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = serve.http {
        let state = HttpState {
            progress: progress.clone(),
            registry: Arc::new(registry),
            ready: ready.clone(),
        };
        let bound = http::serve(addr, state, shutdown.clone())
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        tracing::info!(%bound, "serving /progress, /metrics, /healthz, /readyz");
    }
    ready.store(true, Ordering::Relaxed);
    let opts = RunOptions {
        secrets: Arc::new(EnvSecrets),
        consumer_overrides,
        on_batch: print,
        metrics: Some(metrics.clone()),
    };
    let bounded = loaded.pipeline.spec.is_bounded();
    let result = engine::run(loaded, opts, progress.clone(), shutdown.clone()).await;
    let last = match &result {
        Err(e) => {
            metrics.batch_outcome(&name, "failed");
            let (kind, reason) = e.condition();
            progress.condition(WorkerConditionType::Failed, reason, &e.to_string());
            Some(WorkerCondition::new(kind, reason, &e.to_string()))
        }
        Ok(s) if bounded && !shutdown.is_cancelled() => {
            let message = format!(
                "the bounded run committed its end offsets: {} batches, {} rows",
                s.batches, s.rows
            );
            progress.condition(WorkerConditionType::Completed, "Completed", &message);
            Some(WorkerCondition::new(
                WorkerConditionType::Completed,
                "Completed",
                &message,
            ))
        }
        Ok(_) => None,
    };
    if let (Some(path), Some(c)) = (&serve.termination_log, last)
        && let Err(e) = std::fs::write(path, c.to_termination_message())
    {
        tracing::warn!(path = %path.display(), error = %e, "could not write the termination message");
    }
    Ok(result?)
}

/// One line per batch, for terminals.
pub fn batch_line(r: &spillway_api::StreamingQueryProgress) -> String {
    format!(
        "batch {:>4}: {:>8} rows in {:>5} ms ({:>10.0} rows/s), table version {}",
        r.batch_id,
        r.sink.num_output_rows,
        r.duration_ms.get("triggerExecution").copied().unwrap_or(0),
        r.processed_rows_per_second,
        r.sink.table_version.map_or("-".into(), |v| v.to_string())
    )
}

/// The demo pipeline: HsuTestEvent raw Avro from `bootstrap` into a local Delta table.
pub fn demo_manifest(bootstrap: &str, dir: &Path) -> String {
    format!(
        r#"apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {{name: demo}}
spec:
  source:
    kafka:
      bootstrapServers: "{bootstrap}"
      topics: [hsudemo]
      maxRecordsPerBatch: 100000
  format:
    avro:
      encoding: raw
      writerSchema:
        inline: '{schema}'
  transform:
    metadataColumns: [partition, offset, timestamp]
  sink:
    delta:
      uri: "{table}"
  checkpoint:
    uri: "{checkpoint}"
  eventTime:
    column: ts
    allowedLateness: 1m
  trigger:
    interval: 1s
  errors:
    onBadRecord: skip
"#,
        schema = crate::tools::generate::HSUTEST_SCHEMA,
        table = dir.join("hsutest").display(),
        checkpoint = dir.join("_checkpoint").display(),
    )
}

/// Where the demo writes when no directory is given.
pub fn default_demo_dir() -> PathBuf {
    std::env::temp_dir().join(format!("spillway-demo-{}", std::process::id()))
}

/// The demo's closing summary: rows, version, files and a few rows, read back with
/// DataFusion over the Delta table.
pub async fn table_summary(table_dir: &Path) -> Result<String, deltalake::DeltaTableError> {
    use deltalake::datafusion::prelude::SessionContext;
    let url = crate::storage::url(&table_dir.display().to_string(), Path::new("."))
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
    let table = deltalake::DeltaTable::try_from_url(url).await?;
    let files = table.get_file_uris()?.count();
    let version = table.version().map_or(-1, |v| v as i64);
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("hsutest", table.table_provider().await?)
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
    let batches = ctx
        .sql("SELECT count(*) AS rows, \
         (SELECT count(*) FROM (SELECT DISTINCT _partition, _offset FROM hsutest)) AS distinct_offsets, \
         count(DISTINCT \"user\") AS users FROM hsutest")
        .await
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?
        .collect()
        .await
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
    let sample = ctx
        .sql("SELECT \"user\", event, amount, ts, _partition, _offset FROM hsutest ORDER BY _partition, _offset LIMIT 5")
        .await
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?
        .collect()
        .await
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
    let fmt = arrow_cast_display;
    Ok(format!(
        "table {}: version {version}, {files} data files\n{}\n{}",
        table_dir.display(),
        fmt(&batches),
        fmt(&sample)
    ))
}

fn arrow_cast_display(batches: &[arrow_array::RecordBatch]) -> String {
    deltalake::arrow::util::pretty::pretty_format_batches(batches)
        .map_or_else(|e| e.to_string(), |t| t.to_string())
}

/// What the demo produced and committed so far (cheap to clone, shared by the producer,
/// the batch printer and the stopper).
#[derive(Debug, Clone, Default)]
pub struct DemoTally(Arc<DemoCounts>);

#[derive(Debug, Default)]
struct DemoCounts {
    produced: std::sync::atomic::AtomicU64,
    producer_done: AtomicBool,
    committed: std::sync::atomic::AtomicI64,
}

impl DemoTally {
    /// Rows a batch committed.
    pub fn committed(&self, rows: i64) {
        self.0.committed.fetch_add(rows, Ordering::Relaxed);
    }

    /// Whether the producer is done and every record it produced is committed.
    pub fn all_committed(&self) -> bool {
        self.0.producer_done.load(Ordering::Relaxed)
            && self.0.committed.load(Ordering::Relaxed)
                >= i64::try_from(self.0.produced.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    }

    /// The closing line: how many of the produced records were committed, and what became
    /// of the rest.
    pub fn verdict(&self, s: &RunSummary, limit: Duration) -> String {
        let produced = self.0.produced.load(Ordering::Relaxed);
        let version = s.table_version.map_or("-".into(), |v| v.to_string());
        let left = i64::try_from(produced).unwrap_or(i64::MAX) - s.rows;
        if left <= 0 {
            format!(
                "demo finished: {} rows committed in {} batches (table version {version}): all \
                 {produced} produced records, each once",
                s.rows, s.batches
            )
        } else {
            format!(
                "demo stopped after {}s: {} rows committed in {} batches (table version \
                 {version}) of {produced} produced records; the other {left} were still in \
                 Kafka, not lost: a run against a real broker goes on from the table's \
                 offsets (try --duration 60s)",
                limit.as_secs(),
                s.rows,
                s.batches
            )
        }
    }
}

/// Stops the demo once every produced record is committed, or after `limit`.
pub async fn stop_demo(tally: DemoTally, limit: Duration, stop: CancellationToken) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if tally.all_committed() || tokio::time::Instant::now() >= deadline {
            stop.cancel();
            return;
        }
    }
}

/// Produces the demo's records into the mock cluster, counting them in `tally`.
pub async fn produce_into(
    bootstrap: String,
    count: u64,
    rps: u64,
    tally: DemoTally,
) -> Result<crate::tools::produce::ProduceSummary, crate::tools::produce::ProduceError> {
    let opts = crate::tools::produce::ProduceOptions {
        bootstrap,
        topic: "hsudemo".into(),
        rps,
        count,
        seed: 42,
        key_by_user: true,
        format: crate::tools::produce::ValueFormat::Avro,
        encoding: crate::tools::produce::Encoding::Raw,
        schema_registry: None,
        schema: None,
        partitions: None,
        properties: vec![],
    };
    let counts = tally.0.clone();
    let result = crate::tools::produce::produce(&opts, |n, _, _| {
        counts.produced.store(n, Ordering::Relaxed);
    })
    .await;
    tally.0.producer_done.store(true, Ordering::Relaxed);
    result
}
