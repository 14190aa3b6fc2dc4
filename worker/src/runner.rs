//! I/O: `spillway run` and `spillway demo` — wire a pipeline to signals, the HTTP server
//! and metrics, run the engine, and report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::engine::{self, BatchCallback, EngineError, RunOptions, RunSummary};
use crate::http::{self, HttpState};
use crate::manifest::LoadedPipeline;
use crate::metrics::WorkerMetrics;
use crate::progress::ProgressState;
use crate::secrets::EnvSecrets;

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

/// Runs a loaded pipeline with its HTTP server; `on_batch` sees each report.
pub async fn run_pipeline(
    loaded: &LoadedPipeline,
    http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    consumer_overrides: std::collections::BTreeMap<String, String>,
    print: Option<BatchCallback>,
) -> Result<RunSummary, EngineError> {
    let name = loaded.pipeline.metadata.name.clone().unwrap_or_default();
    let mut registry = Registry::default();
    let metrics = Arc::new(WorkerMetrics::register(&mut registry));
    let progress = ProgressState::default();
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = http_addr {
        let state = HttpState {
            progress: progress.clone(),
            registry: Arc::new(registry),
            ready: ready.clone(),
        };
        match http::serve(addr, state, shutdown.clone()).await {
            Ok(bound) => tracing::info!(%bound, "serving /progress, /metrics, /healthz, /readyz"),
            Err(e) => tracing::warn!(%addr, error = %e, "http server not started"),
        }
    }
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let opts = RunOptions {
        secrets: Arc::new(EnvSecrets),
        consumer_overrides,
        on_batch: print,
        metrics: Some(metrics.clone()),
    };
    let result = engine::run(loaded, opts, progress.clone(), shutdown).await;
    if let Err(e) = &result {
        metrics.batch_outcome(&name, "failed");
        progress.condition("Failed", e.into(), &e.to_string());
    }
    result
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
  trigger:
    interval: 1s
  errors:
    onBadRecord: skip
"#,
        schema = crate::generate::HSUTEST_SCHEMA,
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
        .sql("SELECT count(*) AS rows, count(DISTINCT \"user\") AS users FROM hsutest")
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

/// Keeps a mock cluster alive while the demo runs.
pub async fn produce_into(
    bootstrap: String,
    count: u64,
    rps: u64,
) -> Result<crate::produce::ProduceSummary, crate::produce::ProduceError> {
    let opts = crate::produce::ProduceOptions {
        bootstrap,
        topic: "hsudemo".into(),
        rps,
        count,
        seed: 42,
        key_by_user: true,
        encoding: crate::produce::Encoding::Raw,
        schema_registry: None,
        schema: None,
        partitions: None,
        properties: vec![],
    };
    crate::produce::produce(&opts, |_, _, _| {}).await
}

/// Sleeps for `d` or forever.
pub async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending::<()>().await,
    }
}
