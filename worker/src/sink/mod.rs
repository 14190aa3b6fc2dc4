//! Sinks: where committed micro-batches land.
//!
//! - [`delta`]: I/O: Delta tables with per-partition `txn` actions (exactly once).
//! - [`parquet`]: I/O: Hive-style Parquet datasets with a write-ahead log and commit
//!   markers in the checkpoint (exactly once).
//! - [`merge`]: compute: one row per key within a batch (`mode: merge`).
//! - [`upsert`]: I/O: the Delta sink's MERGE of that batch into the table (a key probe,
//!   copy-on-write; delta-rs's `merge` for tables it does not cover).
//! - [`owner`]: I/O: the file naming the pipeline that owns a sink.
//! - [`partition_path`]: pure: partition values as directory names, and which cannot be.

pub mod delta;
pub mod merge;
pub mod owner;
pub mod parquet;
pub mod partition_path;
pub mod upsert;

use std::collections::BTreeMap;

use arrow_array::RecordBatch;

use crate::source::TopicPartition;
use delta::{DeltaSink, DeltaSinkError};
use parquet::{ParquetSink, ParquetSinkError};

/// Errors of a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The Delta sink failed.
    #[error(transparent)]
    Delta(#[from] DeltaSinkError),
    /// The Parquet sink failed.
    #[error(transparent)]
    Parquet(#[from] ParquetSinkError),
}

impl SinkError {
    /// Whether another writer owns some of the batch's partitions now: the batch is
    /// abandoned and positions are re-read, which is not a failure.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            Self::Delta(DeltaSinkError::Fenced { .. })
                | Self::Parquet(ParquetSinkError::Fenced { .. })
        )
    }
}

/// The pipeline's sink.
#[derive(Debug)]
pub enum Sink {
    /// A Delta table.
    Delta(Box<DeltaSink>),
    /// A Parquet dataset.
    Parquet(Box<ParquetSink>),
}

impl Sink {
    /// `DeltaSink[uri]` or `ParquetSink[uri]`.
    pub fn description(&self) -> String {
        match self {
            Self::Delta(s) => s.description(),
            Self::Parquet(s) => s.description(),
        }
    }

    /// The table (or dataset) version after the last commit.
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::Delta(s) => s.version(),
            Self::Parquet(s) => s.version(),
        }
    }

    /// The partition columns and how their values are escaped into directory names.
    pub fn partition_layout(&self) -> (&[String], partition_path::Escaping) {
        match self {
            Self::Delta(s) => (s.partition_columns(), partition_path::Escaping::Delta),
            Self::Parquet(s) => (s.partition_by(), partition_path::Escaping::Hive),
        }
    }

    /// The next offset the sink records for each partition.
    pub async fn positions(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, SinkError> {
        Ok(match self {
            Self::Delta(s) => s.positions(tps).await?,
            Self::Parquet(s) => s.positions(tps).await?,
        })
    }

    /// Takes ownership of newly assigned partitions (the Parquet sink fences their
    /// previous owner and rolls back its unfinished batches; Delta's `txn` needs nothing).
    pub async fn claim(&mut self, tps: &[TopicPartition]) -> Result<(), SinkError> {
        match self {
            Self::Delta(_) => Ok(()),
            Self::Parquet(s) => Ok(s.claim(tps).await?),
        }
    }

    /// Writes a batch (possibly without rows) for its offset ranges, if the sink still
    /// records `expected` for their partitions ([`SinkError::is_fenced`] otherwise). Each
    /// sink does its own specifics: Delta's merge (one row per key, the watermark's date
    /// floor) or append with `txn`; Parquet's write-ahead log and commit marker.
    pub async fn write(&mut self, batch: SinkBatch) -> Result<Committed, SinkError> {
        Ok(match self {
            Self::Delta(s) => s.write(batch).await?,
            Self::Parquet(s) => {
                let n = batch.rows.as_ref().map_or(0, |b| b.num_rows() as i64);
                let r = &batch.ranges;
                let version = s.commit(batch.rows, &r.start, &r.expected, &r.next).await?;
                Committed {
                    version,
                    rows: n,
                    metrics: BTreeMap::new(),
                }
            }
        })
    }
}

/// The offsets a batch covers, per partition: `start..next`, and the next offset the sink
/// must still record for it (`None`: nothing yet) — else another writer owns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetRanges {
    /// First offset of the batch.
    pub start: BTreeMap<TopicPartition, i64>,
    /// The offset after the batch's last record.
    pub next: BTreeMap<TopicPartition, i64>,
    /// What the sink must record before this commit.
    pub expected: BTreeMap<TopicPartition, Option<i64>>,
}

/// One batch for [`Sink::write`].
#[derive(Debug)]
pub struct SinkBatch {
    /// Its rows, after every stage (`None`: no rows, the positions still move).
    pub rows: Option<RecordBatch>,
    /// Its offset ranges.
    pub ranges: OffsetRanges,
    /// The event-time watermark before this batch, in milliseconds (a merge's date floor).
    pub watermark_ms: Option<i64>,
}

/// What [`Sink::write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The table (or dataset) version written; -1 when nothing could be recorded (no rows
    /// and no table yet).
    pub version: i64,
    /// Rows written (after a merge's one-row-per-key).
    pub rows: i64,
    /// The sink's metrics of this write (a MERGE's).
    pub metrics: BTreeMap<String, String>,
}
