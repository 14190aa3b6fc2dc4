//! Sinks: where committed micro-batches land.
//!
//! - [`delta`]: I/O: Delta tables with per-partition `txn` actions (exactly once).
//! - [`parquet`]: I/O: Hive-style Parquet datasets with a write-ahead log and commit
//!   markers in the checkpoint (exactly once).
//! - [`merge`]: compute: one row per key within a batch (`mode: merge`).
//! - [`owner`]: I/O: the file naming the pipeline that owns a sink.
//! - [`partition_path`]: pure: partition values as directory names, and which cannot be.

pub mod delta;
pub mod merge;
pub mod owner;
pub mod parquet;
pub mod partition_path;

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

    /// The upsert settings of a Delta sink in `mode: merge`.
    pub fn merge_settings(&self) -> Option<&delta::MergeSettings> {
        match self {
            Self::Delta(s) => s.merge_settings(),
            Self::Parquet(_) => None,
        }
    }

    /// See [`DeltaSink::set_merge_floor`].
    pub fn set_merge_floor(&mut self, floor: Option<(String, String)>) {
        if let Self::Delta(s) = self {
            s.set_merge_floor(floor);
        }
    }

    /// The partition columns of a Delta sink (none for Parquet: its merge is not a thing).
    pub fn partition_columns(&self) -> &[String] {
        match self {
            Self::Delta(s) => s.partition_columns(),
            Self::Parquet(_) => &[],
        }
    }

    /// The partition columns and how their values are escaped into directory names.
    pub fn partition_layout(&self) -> (&[String], partition_path::Escaping) {
        match self {
            Self::Delta(s) => (s.partition_columns(), partition_path::Escaping::Delta),
            Self::Parquet(s) => (s.partition_by(), partition_path::Escaping::Hive),
        }
    }

    /// See [`DeltaSink::take_merge_metrics`].
    pub fn take_merge_metrics(&mut self) -> BTreeMap<String, String> {
        match self {
            Self::Delta(s) => s.take_merge_metrics(),
            Self::Parquet(_) => BTreeMap::new(),
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

    /// Commits a batch (possibly without rows) for the offset ranges `start..next`, if
    /// the sink still records `expected` for its partitions. Returns the new version.
    pub async fn commit(
        &mut self,
        batch: Option<RecordBatch>,
        start: &BTreeMap<TopicPartition, i64>,
        expected: &BTreeMap<TopicPartition, Option<i64>>,
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<i64, SinkError> {
        Ok(match self {
            Self::Delta(s) => s.commit(batch, expected, next).await?,
            Self::Parquet(s) => s.commit(batch, start, expected, next).await?,
        })
    }
}
