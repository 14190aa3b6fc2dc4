//! I/O: the Delta sink — appends a batch and, in the same commit, one `txn` action per
//! Kafka partition (app id from the consumer group and the partition, version = the next
//! offset), so the table itself records how far each partition has landed.

use std::collections::{BTreeMap, HashMap};

use arrow_array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use tracing::{info, warn};
use url::Url;

use super::upsert::quote;
use super::{Committed, SinkBatch};
use crate::source::TopicPartition;

/// Errors of the Delta sink.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum DeltaSinkError {
    /// delta-rs failed.
    #[error("delta table {uri}: {source}")]
    Delta {
        /// Table URI.
        uri: String,
        /// The error.
        #[source]
        source: Box<DeltaTableError>,
    },
    /// Keeping one row per key before a MERGE failed.
    #[error("merge into delta table {uri}: keeping one row per key failed: {source}")]
    Dedup {
        /// Table URI.
        uri: String,
        /// The error.
        #[source]
        source: Box<arrow_schema::ArrowError>,
    },
    /// Another writer committed these partitions meanwhile: this worker no longer owns
    /// them (a zombie or a rebalance). The batch is abandoned, nothing is duplicated.
    #[error(
        "partition positions moved in {uri} while the batch was written (another writer owns them)"
    )]
    Fenced {
        /// Table URI.
        uri: String,
    },
    /// The table records another pipeline (consumer group) as its writer: this one's
    /// positions are not in it, so writing would ingest the topic a second time.
    #[error(
        "delta table {uri} is written by the pipeline with group id {owner:?}, not {ours:?}: set source.kafka.groupId: {owner} to resume that pipeline, or write to a new table"
    )]
    OwnedByAnother {
        /// Table URI.
        uri: String,
        /// The group id the table's owner file records.
        owner: String,
        /// This pipeline's group id.
        ours: String,
    },
    /// The table's owner file could not be read or written.
    #[error("delta table {uri}: {source}")]
    Owner {
        /// Table URI.
        uri: String,
        /// Why.
        #[source]
        source: super::owner::OwnerError,
    },
}

/// Upsert settings (`sink.delta.mode: merge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSettings {
    /// Columns identifying a row.
    pub keys: Vec<String>,
    /// Column ordering versions of a row (Kafka order when absent).
    pub order_by: Option<String>,
}

/// A Delta table written by one pipeline.
pub struct DeltaSink {
    table: DeltaTable,
    uri: String,
    app_prefix: String,
    partition_by: Vec<String>,
    merge: Option<MergeSettings>,
    add_columns: bool,
    /// `(partition column, lowest value)`: the merge scans only those partitions.
    merge_floor: Option<(String, String)>,
    /// Metrics of the last MERGE (Delta's names), for the batch report.
    merge_metrics: BTreeMap<String, String>,
    /// Table properties of a table this sink creates (e.g. `delta.logRetentionDuration`).
    table_properties: BTreeMap<String, String>,
    /// MERGE through delta-rs's `merge` even where [`super::upsert`] covers the table.
    delta_rs_merge: bool,
    /// The keys of the files earlier MERGEs read or wrote.
    key_cache: super::upsert::KeyCache,
}

impl std::fmt::Debug for DeltaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaSink").field("uri", &self.uri).finish()
    }
}

impl DeltaSink {
    /// Opens (or prepares to create) the table at `url`.
    pub async fn open(
        url: &Url,
        options: HashMap<String, String>,
        app_prefix: &str,
        partition_by: Vec<String>,
    ) -> Result<Self, DeltaSinkError> {
        deltalake::aws::register_handlers(None);
        let uri = url.to_string();
        let delta = |e: deltalake::DeltaTableError| DeltaSinkError::Delta {
            uri: uri.clone(),
            source: Box::new(e),
        };
        let mut table = deltalake::DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| b.with_storage_options(options).build())
            .map_err(delta)?;
        // A new table is not an error: only load what exists (loading a location without a
        // log makes the kernel log errors before delta-rs reports "not a table").
        if table
            .log_store()
            .is_delta_table_location()
            .await
            .map_err(delta)?
        {
            table.load().await.map_err(delta)?;
        }
        // The table's root, where its owner file lives (beside `_delta_log`).
        let store = table.log_store().object_store(None);
        let root = object_store::path::Path::default();
        match super::owner::claim(store.as_ref(), &root, app_prefix).await {
            Ok(None) => {}
            Ok(Some(owner)) => {
                return Err(DeltaSinkError::OwnedByAnother {
                    uri,
                    owner,
                    ours: app_prefix.to_string(),
                });
            }
            Err(source) => return Err(DeltaSinkError::Owner { uri, source }),
        }
        Ok(Self {
            table,
            uri,
            app_prefix: app_prefix.to_string(),
            partition_by,
            merge: None,
            add_columns: false,
            merge_floor: None,
            merge_metrics: BTreeMap::new(),
            table_properties: BTreeMap::new(),
            delta_rs_merge: false,
            key_cache: Default::default(),
        })
    }

    /// Lets a batch with new (nullable) columns add them to the table in its commit
    /// (`schemaEvolution: addColumns`).
    pub fn with_add_columns(mut self, on: bool) -> Self {
        self.add_columns = on;
        self
    }

    /// The table's partition columns (of a new table: the spec's).
    pub fn partition_columns(&self) -> &[String] {
        &self.partition_by
    }

    /// Table properties for the table, if this sink creates it.
    pub fn with_table_properties(mut self, properties: BTreeMap<String, String>) -> Self {
        self.table_properties = properties;
        self
    }

    /// Upserts by key instead of appending (`mode: merge`).
    pub fn with_merge(mut self, merge: MergeSettings) -> Self {
        self.merge = Some(merge);
        self
    }

    /// MERGEs through delta-rs's `merge` always (`spillway bench merge --delta-rs` and
    /// `--plain` compare it with the sink's own; the result is the same).
    pub fn with_delta_rs_merge(mut self, on: bool) -> Self {
        self.delta_rs_merge = on;
        self
    }

    /// `DeltaSink[uri]`, as Spark describes sinks.
    pub fn description(&self) -> String {
        format!("DeltaSink[{}]", self.uri.trim_end_matches('/'))
    }

    /// The txn app id of a partition.
    pub fn app_id(&self, tp: &TopicPartition) -> String {
        format!("{}-{}-{}", self.app_prefix, tp.topic, tp.partition)
    }

    /// The table version, if the table exists.
    pub fn version(&self) -> Option<i64> {
        self.table.version().map(|v| v as i64)
    }

    fn err(&self, source: DeltaTableError) -> DeltaSinkError {
        DeltaSinkError::Delta {
            uri: self.uri.clone(),
            source: Box::new(source),
        }
    }

    /// Reloads the table and returns the next offset recorded for each partition.
    pub async fn positions(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, DeltaSinkError> {
        let mut out = BTreeMap::new();
        // Until the table exists, look for a log before loading one: the kernel logs an
        // ERROR for a location without one, and a new table is not an error.
        if self.version().is_none()
            && !self
                .table
                .log_store()
                .is_delta_table_location()
                .await
                .map_err(|e| self.err(e))?
        {
            return Ok(out);
        }
        match self.table.update_state().await {
            Ok(()) | Err(DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(self.err(e)),
        }
        let Ok(state) = self.table.snapshot() else {
            return Ok(out);
        };
        let log_store = self.table.log_store();
        for tp in tps {
            let version = state
                .transaction_version(log_store.as_ref(), self.app_id(tp))
                .await
                .map_err(|e| self.err(e))?;
            if let Some(v) = version {
                out.insert(tp.clone(), v);
            }
        }
        Ok(out)
    }

    /// Writes one batch: in `mode: merge`, one row per key first (the latest by the
    /// ordering column, the later offset on a tie) and a MERGE that scans only the dates at
    /// or after the watermark's in a table partitioned by a date (older rows cannot be
    /// touched by rows the watermark lets through); else an append. See [`DeltaSink::commit`].
    pub async fn write(&mut self, batch: SinkBatch) -> Result<Committed, DeltaSinkError> {
        let SinkBatch {
            rows,
            ranges,
            watermark_ms,
        } = batch;
        let rows = match (&self.merge, rows) {
            (Some(m), Some(b)) if b.num_rows() > 0 => Some(
                super::merge::dedup(b, &m.keys, m.order_by.as_deref()).map_err(|e| {
                    DeltaSinkError::Dedup {
                        uri: self.uri.clone(),
                        source: Box::new(e),
                    }
                })?,
            ),
            (_, b) => b,
        };
        let floor = match (&self.merge, watermark_ms, &rows) {
            (Some(_), Some(ms), Some(b)) => self
                .partition_by
                .iter()
                .find(|c| {
                    b.schema()
                        .field_with_name(c)
                        .is_ok_and(|f| f.data_type() == &arrow_schema::DataType::Date32)
                })
                .and_then(|c| {
                    let day = jiff::Timestamp::from_millisecond(ms)
                        .ok()?
                        .strftime("%Y-%m-%d");
                    Some((c.clone(), day.to_string()))
                }),
            _ => None,
        };
        // The next MERGE scans only the partitions at or above the floor.
        self.merge_floor = floor;
        let n = rows.as_ref().map_or(0, |b| b.num_rows() as i64);
        let version = self.commit(rows, &ranges.expected, &ranges.next).await?;
        Ok(Committed {
            version,
            rows: n,
            // The last MERGE's metrics (none after an append).
            metrics: std::mem::take(&mut self.merge_metrics),
        })
    }

    /// Commits `batch` with the partitions' next offsets, if the table still records
    /// `expected` for them (otherwise another writer owns them: [`DeltaSinkError::Fenced`]).
    /// Returns the new table version.
    pub async fn commit(
        &mut self,
        batch: Option<RecordBatch>,
        expected: &BTreeMap<TopicPartition, Option<i64>>,
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<i64, DeltaSinkError> {
        for attempt in 0..5u32 {
            let tps: Vec<TopicPartition> = next.keys().cloned().collect();
            let current = self.positions(&tps).await?;
            for (tp, want) in expected {
                if current.get(tp).copied() != *want {
                    return Err(DeltaSinkError::Fenced {
                        uri: self.uri.clone(),
                    });
                }
            }
            let txns: Vec<Transaction> = next
                .iter()
                .map(|(tp, o)| {
                    Transaction::new_with_last_update(self.app_id(tp), *o, Some(now_millis()))
                })
                .collect();
            // Merge into an existing table, positions only when there are no rows, or append.
            let outcome = match (self.merge.clone(), &batch, self.version()) {
                (Some(m), Some(b), Some(_)) if b.num_rows() > 0 => {
                    self.merge_into(&m, b, txns).await
                }
                (_, b, _) if b.as_ref().is_none_or(|b| b.num_rows() == 0) => {
                    // Every record bad, filtered or late: the positions still move, in a
                    // commit of `txn` actions only.
                    self.commit_positions_only(txns).await
                }
                _ => self.append(batch.clone(), txns).await,
            };
            match outcome {
                Ok(version) => return Ok(version),
                Err(DeltaTableError::Transaction { source }) => {
                    warn!(table = %self.uri, attempt, error = %source, "delta commit conflict, re-checking positions");
                }
                Err(DeltaTableError::VersionAlreadyExists(v)) => {
                    warn!(table = %self.uri, attempt, version = v, "delta version taken, re-checking positions");
                }
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(DeltaSinkError::Fenced {
            uri: self.uri.clone(),
        })
    }

    /// An append of `batch` with the `txn` actions in the same commit.
    async fn append(
        &mut self,
        batch: Option<RecordBatch>,
        txns: Vec<Transaction>,
    ) -> Result<i64, DeltaTableError> {
        let mut write = self
            .table
            .clone()
            .write(batch.into_iter().collect::<Vec<_>>())
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default().with_application_transactions(txns),
            );
        if !self.partition_by.is_empty() {
            write = write.with_partition_columns(self.partition_by.clone());
        }
        if self.add_columns {
            write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Merge);
        }
        if self.version().is_none() && !self.table_properties.is_empty() {
            write = write.with_configuration(
                self.table_properties
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone()))),
            );
        }
        self.table = write.await?;
        let version = self.version().unwrap_or(0);
        info!(table = %self.uri, version, "committed batch");
        Ok(version)
    }

    /// A commit of `txn` actions only; `-1` (nothing recorded) while the table does not
    /// exist yet — it is created by the first batch with rows, whose schema it takes.
    async fn commit_positions_only(
        &mut self,
        txns: Vec<Transaction>,
    ) -> Result<i64, DeltaTableError> {
        use deltalake::kernel::Action;
        use deltalake::kernel::transaction::CommitBuilder;
        use deltalake::protocol::{DeltaOperation, OutputMode};
        let Ok(state) = self.table.snapshot() else {
            info!(table = %self.uri, "no rows and no table yet: positions not recorded");
            return Ok(-1);
        };
        let operation = DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id: self.app_prefix.clone(),
            epoch_id: 0,
        };
        // From CommitProperties, so the post-commit hook writes checkpoints like a write.
        let commit = CommitBuilder::from(CommitProperties::default())
            .with_actions(txns.into_iter().map(Action::Txn).collect())
            .build(Some(state), self.table.log_store(), operation)
            .await?;
        let version = commit.version() as i64;
        // The commit's own state, not the log read again.
        self.table.state = Some(commit.snapshot);
        info!(table = %self.uri, version, "committed positions (no rows)");
        Ok(version)
    }

    /// MERGE of a batch with one row per key: update a matched row when the incoming one is newer
    /// (or always, in Kafka order), insert when absent; the `txn` actions in the same commit.
    async fn merge_into(
        &mut self,
        m: &MergeSettings,
        batch: &RecordBatch,
        txns: Vec<Transaction>,
    ) -> Result<i64, DeltaTableError> {
        use deltalake::datafusion::prelude::SessionContext;
        let mut predicate = m
            .keys
            .iter()
            .map(|k| format!("target.{q} = source.{q}", q = quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        if let Some((column, floor)) = &self.merge_floor {
            predicate.push_str(&format!(
                " AND target.{} >= '{}'",
                quote(column),
                floor.replace('\'', "''")
            ));
        }
        if !self.delta_rs_merge {
            let upsert = super::upsert::Upsert {
                settings: m,
                floor: self.merge_floor.as_ref(),
                batch,
                txns: txns.clone(),
                predicate: predicate.clone(),
            };
            match super::upsert::merge(&self.table, upsert, &mut self.key_cache).await {
                Ok(Some((table, metrics))) => {
                    self.table = table;
                    return Ok(self.merged(metrics));
                }
                Ok(None) => {}
                Err(e) => {
                    // The next attempt reads every file again.
                    self.key_cache = Default::default();
                    return Err(e);
                }
            }
        }
        let ctx = SessionContext::new();
        let source = ctx.read_batch(batch.clone())?;
        let columns: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let (table, metrics) = self
            .table
            .clone()
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(self.add_columns)
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
            .when_matched_update(|mut u| {
                // Newer by `orderBy` replaces; a null `orderBy` is older than any value (a
                // stored null is replaced by any non-null version, a null never replaces
                // a value), and on a tie the stored row stays.
                if let Some(o) = &m.order_by {
                    u = u.predicate(super::upsert::newer_predicate(o));
                }
                for c in &columns {
                    u = u.update(c.as_str(), format!("source.{}", quote(c)));
                }
                u
            })?
            .when_not_matched_insert(|mut i| {
                for c in &columns {
                    i = i.set(c.as_str(), format!("source.{}", quote(c)));
                }
                i
            })?
            .await?;
        self.table = table;
        Ok(self.merged(super::upsert::UpsertMetrics {
            inserted: metrics.num_target_rows_inserted as u64,
            updated: metrics.num_target_rows_updated as u64,
            copied: metrics.num_target_rows_copied as u64,
            files_scanned: metrics.num_target_files_scanned as u64,
            files_cached: 0,
            files_skipped: metrics.num_target_files_skipped_during_scan as u64,
            files_added: metrics.num_target_files_added as u64,
            files_removed: metrics.num_target_files_removed as u64,
            probe_ms: metrics.scan_time_ms,
            write_ms: metrics.rewrite_time_ms,
        }))
    }

    /// Logs a MERGE and keeps its metrics for the batch report; the new version.
    fn merged(&mut self, m: super::upsert::UpsertMetrics) -> i64 {
        let version = self.version().unwrap_or(0);
        info!(
            table = %self.uri,
            version,
            inserted = m.inserted,
            updated = m.updated,
            copied = m.copied,
            files_scanned = m.files_scanned,
            files_skipped = m.files_skipped,
            files_cached = m.files_cached,
            scan_ms = m.probe_ms,
            rewrite_ms = m.write_ms,
            "merged batch"
        );
        self.merge_metrics = [
            ("numTargetRowsInserted", m.inserted),
            ("numTargetRowsUpdated", m.updated),
            ("numTargetRowsCopied", m.copied),
            ("numTargetFilesScanned", m.files_scanned),
            ("numTargetFilesSkipped", m.files_skipped),
            ("numTargetFilesKeysCached", m.files_cached),
            ("numTargetFilesAdded", m.files_added),
            ("numTargetFilesRemoved", m.files_removed),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        version
    }

    /// The table handle (for reads in tests and the demo summary).
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
