//! I/O: `spillway maintain optimize|vacuum` — Delta table maintenance from a pipeline
//! manifest (the same command the operator's CronJobs run).
//!
//! - optimize: bin-packing compaction to a target file size. It only rewrites files, so it
//!   commits alongside the pipeline's appends (delta-rs's conflict checker lets a
//!   compaction and concurrent blind appends both commit); a conflict with another
//!   rewrite (e.g. a merge touching the same files) is retried on a fresh snapshot.
//! - vacuum: deletes files no longer referenced by the table and older than the retention
//!   (default 7 days; shorter only with `--allow-short-retention`, as Delta itself
//!   requires).

use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::{DeltaTable, DeltaTableError};
use tracing::{info, warn};

use crate::manifest::LoadedPipeline;
use crate::secrets::SecretSource;
use crate::storage::{self, StorageError};

/// Errors of a maintenance run.
#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    /// The pipeline does not write a Delta table.
    #[error("maintenance needs a Delta sink (spec.sink.delta); this pipeline writes {0}")]
    NotDelta(&'static str),
    /// Storage settings are unusable.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// delta-rs failed.
    #[error("delta table {uri}: {source}")]
    Delta {
        /// Table URI.
        uri: String,
        /// The error.
        #[source]
        source: Box<DeltaTableError>,
    },
    /// A duration or size is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// What a maintenance run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Compaction: files removed and added, and the table version after.
    Optimized {
        /// Small files rewritten.
        removed: u64,
        /// Compacted files written.
        added: u64,
        /// Table version after the run.
        version: Option<i64>,
    },
    /// Vacuum: files deleted.
    Vacuumed {
        /// Files deleted.
        deleted: usize,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Optimized {
                removed,
                added,
                version,
            } => write!(
                f,
                "optimize: {removed} files compacted into {added}, table version {}",
                version.map_or("-".into(), |v| v.to_string())
            ),
            Self::Vacuumed { deleted } => write!(f, "vacuum: {deleted} unreferenced files deleted"),
        }
    }
}

async fn open(
    loaded: &LoadedPipeline,
    secrets: &dyn SecretSource,
) -> Result<(DeltaTable, String), MaintainError> {
    let spec = &loaded.pipeline.spec;
    let Some(delta) = &spec.sink.delta else {
        return Err(MaintainError::NotDelta("a Parquet dataset"));
    };
    let options = storage::options(spec.storage.as_ref(), secrets)?;
    let url = storage::url(&delta.uri, &loaded.base_dir)?;
    deltalake::aws::register_handlers(None);
    let uri = url.to_string();
    let table = deltalake::open_table_with_storage_options(url, options)
        .await
        .map_err(|e| MaintainError::Delta {
            uri: uri.clone(),
            source: Box::new(e),
        })?;
    Ok((table, uri))
}

/// Compacts small files to `target_file_size` bytes (the spec's, unless given).
pub async fn optimize(
    loaded: &LoadedPipeline,
    secrets: &dyn SecretSource,
    target_file_size: Option<u64>,
) -> Result<Outcome, MaintainError> {
    let target = target_file_size
        .or_else(|| {
            loaded
                .pipeline
                .spec
                .maintenance
                .as_ref()
                .and_then(|m| m.optimize.as_ref())
                .map(|o| o.target_file_size as u64)
        })
        .unwrap_or(spillway_api::defaults::TARGET_FILE_SIZE as u64);
    let target = NonZeroU64::new(target)
        .ok_or_else(|| MaintainError::Invalid("the target file size must be positive".into()))?;
    let mut last = None;
    let mut uri = String::new();
    for attempt in 0..5u32 {
        // A fresh snapshot each attempt: the pipeline keeps appending meanwhile.
        let (table, u) = open(loaded, secrets).await?;
        uri = u;
        match table.optimize().with_target_size(target).await {
            Ok((table, metrics)) => {
                let outcome = Outcome::Optimized {
                    removed: metrics.num_files_removed,
                    added: metrics.num_files_added,
                    version: table.version().map(|v| v as i64),
                };
                info!(table = %uri, %outcome, "optimized");
                return Ok(outcome);
            }
            Err(DeltaTableError::Transaction { source }) => {
                warn!(table = %uri, attempt, error = %source, "optimize conflicted with another commit, retrying");
                last = Some(DeltaTableError::Transaction { source });
            }
            Err(e) => {
                return Err(MaintainError::Delta {
                    uri,
                    source: Box::new(e),
                });
            }
        }
    }
    Err(MaintainError::Delta {
        uri,
        source: Box::new(last.unwrap_or_else(|| DeltaTableError::Generic("optimize".into()))),
    })
}

/// Deletes unreferenced files older than the retention (the spec's, unless given).
pub async fn vacuum(
    loaded: &LoadedPipeline,
    secrets: &dyn SecretSource,
    retention: Option<Duration>,
    allow_short_retention: bool,
    dry_run: bool,
) -> Result<Outcome, MaintainError> {
    let spec_vacuum = loaded
        .pipeline
        .spec
        .maintenance
        .as_ref()
        .and_then(|m| m.vacuum.as_ref());
    let retention = match retention {
        Some(r) => r,
        None => {
            let text = spec_vacuum.map_or(spillway_api::defaults::VACUUM_RETENTION, |v| {
                v.retention.as_str()
            });
            spillway_api::validate::parse_duration(text)
                .ok_or_else(|| MaintainError::Invalid(format!("invalid retention {text:?}")))?
        }
    };
    let allow_short = allow_short_retention || spec_vacuum.is_some_and(|v| v.allow_short_retention);
    let week = Duration::from_secs(7 * 24 * 3600);
    if retention < week && !allow_short {
        return Err(MaintainError::Invalid(format!(
            "a retention of {retention:?} is below 7 days: readers of older table versions may fail; pass --allow-short-retention (or set vacuum.allowShortRetention) to do it anyway"
        )));
    }
    let (table, uri) = open(loaded, secrets).await?;
    let retention =
        chrono::Duration::from_std(retention).map_err(|e| MaintainError::Invalid(e.to_string()))?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(!allow_short)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| MaintainError::Delta {
            uri: uri.clone(),
            source: Box::new(e),
        })?;
    let outcome = Outcome::Vacuumed {
        deleted: metrics.files_deleted.len(),
    };
    info!(table = %uri, %outcome, dry_run, "vacuumed");
    Ok(outcome)
}
