//! I/O: the Delta sink's own MERGE of a batch with one row per key — copy-on-write, as
//! delta-rs's MERGE, with the same result, but reading only what decides it.
//!
//! delta-rs's MERGE joins the batch with every candidate file through DataFusion and
//! rewrites each file with a match. Here the candidate files (those at or above the
//! watermark's partition floor) are probed by their key (and `orderBy`) columns alone, in
//! one hash lookup per stored row; only files holding a row to update are read whole and
//! written again without it. New rows go to files of their own, so a later batch that
//! updates a stored row rewrites only the files of rewritten rows, not every insert since.
//! Removes, adds and the `txn` actions are one commit. Tables this does not cover (column
//! mapping, change data feed, constraints, generated columns, deletion vectors in a file it
//! would read, a batch with new columns) go through delta-rs's MERGE: [`merge`] returns
//! `None` for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{Schema, SchemaRef};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, LogicalFileView, Transaction};
use deltalake::logstore::parquet_reader::ParquetObjectReader;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use super::delta::MergeSettings;

/// Files probed at once.
const READ_CONCURRENCY: usize = 4;

/// What one MERGE did, in Delta's metric names' terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertMetrics {
    /// Rows of the batch no stored row matched.
    pub inserted: u64,
    /// Stored rows replaced by a newer version.
    pub updated: u64,
    /// Stored rows written again unchanged (they shared a file with an updated one).
    pub copied: u64,
    /// Files probed (at or above the floor).
    pub files_scanned: u64,
    /// Files not read (below the floor).
    pub files_skipped: u64,
    /// Files added.
    pub files_added: u64,
    /// Files removed (rewritten).
    pub files_removed: u64,
    /// Milliseconds probing the candidates' keys.
    pub probe_ms: u64,
    /// Milliseconds reading and writing files.
    pub write_ms: u64,
}

/// The MERGE's inputs besides the table.
#[derive(Debug)]
pub struct Upsert<'a> {
    /// Keys and ordering column.
    pub settings: &'a MergeSettings,
    /// `(partition column, lowest value)`: only files at or above it can match.
    pub floor: Option<&'a (String, String)>,
    /// The batch, one row per key.
    pub batch: &'a RecordBatch,
    /// The positions to record in the same commit.
    pub txns: Vec<Transaction>,
    /// The full MERGE predicate (for the commit's operation parameters).
    pub predicate: String,
}

/// Merges `u.batch` into `table`: the table after the commit and what it did, or `None`
/// when the table or the batch needs delta-rs's MERGE (see the module).
pub async fn merge(
    table: &DeltaTable,
    u: Upsert<'_>,
) -> Result<Option<(DeltaTable, UpsertMetrics)>, DeltaTableError> {
    let Some(target) = Target::eligible(table, u.batch)? else {
        return Ok(None);
    };
    let started = Instant::now();
    let mut metrics = UpsertMetrics::default();
    let state = table.snapshot()?;
    let log = state.log_data();
    let candidates: Vec<LogicalFileView> = log.iter().filter(|v| at_or_above(v, u.floor)).collect();
    // A deletion vector hides rows of its file: only delta-rs's MERGE reads them right.
    if candidates
        .iter()
        .any(|v| v.deletion_vector_descriptor().is_some())
    {
        return Ok(None);
    }
    metrics.files_scanned = candidates.len() as u64;
    metrics.files_skipped = (log.num_files() - candidates.len()) as u64;
    let probe = Probe::new(&target, u.settings, u.batch)?;
    let store = table.object_store();
    let probed: Vec<FileMatches> = futures::stream::iter(candidates)
        .map(|view| probe.file(&target, store.clone(), view))
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    metrics.probe_ms = started.elapsed().as_millis() as u64;

    let written = Instant::now();
    let mut actions = rewrite(table, &target, store, u.batch, &probed, &mut metrics).await?;
    metrics.write_ms = written.elapsed().as_millis() as u64;
    actions.extend(u.txns.into_iter().map(Action::Txn));
    let operation = DeltaOperation::Merge {
        // What was read, for conflict checks: the partitions at or above the floor.
        predicate: u
            .floor
            .map(|(c, f)| format!("{} >= '{}'", quote(c), f.replace('\'', "''"))),
        merge_predicate: Some(u.predicate),
        matched_predicates: vec![MergePredicate {
            action_type: "update".into(),
            predicate: u.settings.order_by.as_deref().map(newer_predicate),
        }],
        not_matched_predicates: vec![MergePredicate {
            action_type: "insert".into(),
            predicate: None,
        }],
        not_matched_by_source_predicates: vec![],
    };
    CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(Some(state), table.log_store(), operation)
        .await?;
    let mut after = table.clone();
    after.update_state().await?;
    Ok(Some((after, metrics)))
}

/// Writes the files of a MERGE: each file with a row to update again without it, beside the
/// updated rows, and the inserted rows in files of their own. The adds and removes.
async fn rewrite(
    table: &DeltaTable,
    target: &Target,
    store: Arc<dyn ObjectStore>,
    batch: &RecordBatch,
    probed: &[FileMatches],
    metrics: &mut UpsertMetrics,
) -> Result<Vec<Action>, DeltaTableError> {
    let mut matched = vec![false; batch.num_rows()];
    let mut writer = RecordBatchWriter::for_table(table)?;
    let mut removes = Vec::new();
    let mut updates: Vec<u32> = Vec::new();
    for file in probed {
        for &s in &file.matched {
            matched[s as usize] = true;
        }
        if file.updated.is_empty() {
            continue;
        }
        // The stored rows stay but the updated ones, which the batch's versions replace.
        let whole = target
            .read(store.clone(), &file.view, &target.all_columns())
            .await?;
        let mut keep = vec![true; whole.num_rows()];
        for &(t, s) in &file.updated {
            keep[t as usize] = false;
            updates.push(s);
        }
        let kept = arrow_select::filter::filter_record_batch(&whole, &BooleanArray::from(keep))?;
        metrics.updated += file.updated.len() as u64;
        metrics.copied += kept.num_rows() as u64;
        if kept.num_rows() > 0 {
            writer.write(kept).await?;
        }
        removes.push(Action::Remove(file.view.remove_action(true)));
    }
    let inserts: Vec<u32> = (0..batch.num_rows() as u32)
        .filter(|&i| !matched[i as usize])
        .collect();
    metrics.inserted = inserts.len() as u64;
    // Updates beside the rewritten rows; new rows in files of their own (see the module).
    let mut adds = Vec::new();
    for rows in [updates, inserts] {
        if !rows.is_empty() {
            let taken = arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))?;
            writer.write(taken).await?;
        }
        adds.extend(writer.flush().await?);
    }
    metrics.files_added = adds.len() as u64;
    metrics.files_removed = removes.len() as u64;
    Ok(adds.into_iter().map(Action::Add).chain(removes).collect())
}

/// `source.o > target.o OR (target.o IS NULL AND source.o IS NOT NULL)`: when a batch row
/// replaces a stored one.
pub fn newer_predicate(order_by: &str) -> String {
    format!(
        "source.{q} > target.{q} OR (target.{q} IS NULL AND source.{q} IS NOT NULL)",
        q = quote(order_by)
    )
}

/// A SQL identifier, double-quoted.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether a file's partition value of the floor's column is at or above it (a null is
/// not, as in SQL). ISO dates compare as strings.
fn at_or_above(view: &LogicalFileView, floor: Option<&(String, String)>) -> bool {
    let Some((column, lowest)) = floor else {
        return true;
    };
    matches!(view.partition_values_map().get(column), Some(Some(v)) if v.as_str() >= lowest.as_str())
}

/// The table as this MERGE reads it.
struct Target {
    /// The table's Arrow schema (partition columns included).
    schema: SchemaRef,
    partition_columns: Vec<String>,
}

impl Target {
    /// The table, if this MERGE covers it and the batch (see the module).
    fn eligible(table: &DeltaTable, batch: &RecordBatch) -> Result<Option<Self>, DeltaTableError> {
        let state = table.snapshot()?;
        let config = state.table_config();
        let metadata = state.metadata();
        let generated_or_invariant = state.schema().fields().any(|f| {
            f.metadata().keys().any(|k| {
                k.starts_with("delta.generationExpression") || k.starts_with("delta.invariants")
            })
        });
        let configuration = metadata.configuration();
        if configuration
            .get("delta.columnMapping.mode")
            .is_some_and(|m| m != "none")
            || config.enable_change_data_feed.unwrap_or(false)
            || configuration
                .keys()
                .any(|k| k.starts_with("delta.constraints."))
            || generated_or_invariant
        {
            return Ok(None);
        }
        let schema = state.snapshot().arrow_schema();
        if batch
            .schema()
            .fields()
            .iter()
            .any(|f| schema.field_with_name(f.name()).is_err())
        {
            return Ok(None);
        }
        Ok(Some(Self {
            schema,
            partition_columns: metadata.partition_columns().to_vec(),
        }))
    }

    fn all_columns(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The `columns` of one data file, as the table's types, in the file's row order:
    /// partition columns from the file's partition values, columns the file predates null.
    async fn read(
        &self,
        store: Arc<dyn ObjectStore>,
        view: &LogicalFileView,
        columns: &[String],
    ) -> Result<RecordBatch, DeltaTableError> {
        let path = object_store::path::Path::parse(view.path().as_ref())
            .map_err(|e| DeltaTableError::Generic(format!("data file path: {e}")))?;
        let reader = ParquetObjectReader::new(store, path).with_file_size(view.size() as u64);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let file_schema = builder.schema().clone();
        let roots: Vec<usize> = columns
            .iter()
            .filter_map(|c| file_schema.index_of(c).ok())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let batches: Vec<RecordBatch> = builder
            .with_projection(mask)
            .with_batch_size(65_536)
            .build()?
            .try_collect()
            .await?;
        let read_schema = match batches.first() {
            Some(b) => b.schema(),
            None => Arc::new(file_schema.project(&[])?),
        };
        let rows = arrow_select::concat::concat_batches(&read_schema, &batches)?;
        let n = rows.num_rows();
        let partition_values = view.partition_values_map();
        let mut fields = Vec::with_capacity(columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
        for c in columns {
            let field = self.schema.field_with_name(c)?;
            let array = if self.partition_columns.contains(c) {
                let value = partition_values.get(c).cloned().flatten();
                let strings = StringArray::from(vec![value; n]);
                arrow_cast::cast(&strings, field.data_type())?
            } else if let Some(a) = rows.column_by_name(c) {
                if a.data_type() == field.data_type() {
                    a.clone()
                } else {
                    arrow_cast::cast(a, field.data_type())?
                }
            } else {
                arrow_array::new_null_array(field.data_type(), n)
            };
            fields.push(field.clone().with_nullable(true));
            arrays.push(array);
        }
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }
}

/// The batch's keys, hashed, and its ordering column, as the table's types.
struct Probe {
    columns: Vec<String>,
    keys: RowConverter,
    order: Option<RowConverter>,
    /// Key → batch row (rows with a null key match nothing, as `=` in SQL).
    by_key: HashMap<Box<[u8]>, u32>,
    batch_order: Option<Rows>,
}

/// What probing one file found.
struct FileMatches {
    view: LogicalFileView,
    /// Batch rows a stored row of this file matched.
    matched: Vec<u32>,
    /// `(stored row, batch row)` for each stored row the batch's version replaces.
    updated: Vec<(u32, u32)>,
}

impl Probe {
    fn new(
        target: &Target,
        settings: &MergeSettings,
        batch: &RecordBatch,
    ) -> Result<Self, DeltaTableError> {
        let as_table = |name: &str| -> Result<ArrayRef, DeltaTableError> {
            let column = batch.column_by_name(name).ok_or_else(|| {
                DeltaTableError::Generic(format!("merge column {name:?} not in the batch"))
            })?;
            let to = target.schema.field_with_name(name)?.data_type();
            Ok(if column.data_type() == to {
                column.clone()
            } else {
                arrow_cast::cast(column, to)?
            })
        };
        let key_arrays = settings
            .keys
            .iter()
            .map(|k| as_table(k))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = RowConverter::new(
            key_arrays
                .iter()
                .map(|a| SortField::new(a.data_type().clone()))
                .collect(),
        )?;
        let rows = keys.convert_columns(&key_arrays)?;
        let mut by_key = HashMap::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if key_arrays.iter().all(|a| a.is_valid(i)) {
                by_key.insert(Box::from(rows.row(i).as_ref()), i as u32);
            }
        }
        let (order, batch_order) = match &settings.order_by {
            Some(o) => {
                let a = as_table(o)?;
                // Ascending, nulls first: "newer" is "greater", and a null is older than
                // any value — the SQL predicate of [`newer_predicate`] exactly.
                let converter = RowConverter::new(vec![SortField::new(a.data_type().clone())])?;
                let rows = converter.convert_columns(&[a])?;
                (Some(converter), Some(rows))
            }
            None => (None, None),
        };
        let mut columns = settings.keys.clone();
        columns.extend(settings.order_by.iter().cloned());
        Ok(Self {
            columns,
            keys,
            order,
            by_key,
            batch_order,
        })
    }

    /// Reads a file's key and ordering columns and finds its matches.
    async fn file(
        &self,
        target: &Target,
        store: Arc<dyn ObjectStore>,
        view: LogicalFileView,
    ) -> Result<FileMatches, DeltaTableError> {
        let stored = target.read(store, &view, &self.columns).await?;
        let n_keys = self.columns.len() - usize::from(self.order.is_some());
        let key_arrays: Vec<ArrayRef> = stored.columns()[..n_keys].to_vec();
        let rows = self.keys.convert_columns(&key_arrays)?;
        let stored_order = match &self.order {
            Some(c) => Some(c.convert_columns(&stored.columns()[n_keys..])?),
            None => None,
        };
        let mut matched = Vec::new();
        let mut updated = Vec::new();
        for t in 0..stored.num_rows() {
            if key_arrays.iter().any(|a| a.is_null(t)) {
                continue;
            }
            let Some(&s) = self.by_key.get(rows.row(t).as_ref()) else {
                continue;
            };
            matched.push(s);
            let newer = match (&self.batch_order, &stored_order) {
                (Some(b), Some(st)) => b.row(s as usize) > st.row(t),
                _ => true,
            };
            if newer {
                updated.push((t as u32, s));
            }
        }
        Ok(FileMatches {
            view,
            matched,
            updated,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_array::{Date32Array, Int64Array};
    use arrow_schema::{DataType, Field};

    use super::*;
    use crate::sink::delta::DeltaSink;
    use crate::source::TopicPartition;

    fn batch(rows: &[(Option<&str>, Option<i64>, i64, i32)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("t", DataType::Int64, true),
            Field::new("v", DataType::Int64, false),
            Field::new("day", DataType::Date32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Date32Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    async fn sink(dir: &std::path::Path, delta_rs: bool) -> DeltaSink {
        let url = url::Url::from_directory_path(dir).unwrap();
        DeltaSink::open(&url, Default::default(), "t", vec!["day".into()])
            .await
            .unwrap()
            .with_merge(MergeSettings {
                keys: vec!["id".into()],
                order_by: Some("t".into()),
            })
            .with_delta_rs_merge(delta_rs)
    }

    fn at(next: i64, expected: Option<i64>) -> crate::sink::OffsetRanges {
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        crate::sink::OffsetRanges {
            start: BTreeMap::new(),
            next: [(tp.clone(), next)].into(),
            expected: [(tp, expected)].into(),
        }
    }

    async fn rows(sink: &DeltaSink) -> Vec<(Option<String>, Option<i64>, i64, i32)> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Date32Type, Int64Type};
        use deltalake::datafusion::prelude::SessionContext;
        let ctx = SessionContext::new();
        let table = sink.table().clone();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("SELECT id, t, v, day FROM t ORDER BY v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            // DataFusion may read strings as views.
            let id = arrow_cast::cast(b.column(0), &DataType::Utf8).unwrap();
            for r in 0..b.num_rows() {
                let t = b.column(1).as_primitive::<Int64Type>();
                out.push((
                    id.is_valid(r)
                        .then(|| id.as_string::<i32>().value(r).to_string()),
                    t.is_valid(r).then(|| t.value(r)),
                    b.column(2).as_primitive::<Int64Type>().value(r),
                    b.column(3).as_primitive::<Date32Type>().value(r),
                ));
            }
        }
        out
    }

    /// Both MERGEs, on the cases a key join has: a stored duplicate key, a stored null
    /// `orderBy`, an older version arriving, null keys, a new key, a floor.
    #[tokio::test]
    async fn leaves_what_delta_rs_merge_leaves() {
        let stored = batch(&[
            (Some("a"), Some(5), 1, 10),
            (Some("b"), Some(5), 2, 10),
            (Some("b"), Some(7), 3, 11),
            (Some("c"), None, 4, 11),
            (None, Some(1), 5, 10),
            (Some("e"), Some(9), 6, 11),
            (Some("g"), Some(1), 7, 1),
        ]);
        let arriving = batch(&[
            (Some("a"), Some(6), 10, 12),
            (Some("b"), Some(6), 11, 12),
            (Some("c"), Some(1), 12, 11),
            (Some("e"), Some(8), 13, 11),
            (None, Some(2), 14, 10),
            (Some("f"), Some(1), 15, 12),
            (Some("g"), Some(2), 16, 12),
        ]);
        let mut results = Vec::new();
        for delta_rs in [false, true] {
            let dir = std::env::temp_dir().join(format!("upsert-{}", uuid::Uuid::new_v4()));
            let mut s = sink(&dir, delta_rs).await;
            // Two files in day 10 and 11 each: duplicates of `b` in two of them.
            for (i, part) in [stored.slice(0, 3), stored.slice(3, 4)]
                .into_iter()
                .enumerate()
            {
                let r = at(i as i64 + 1, (i > 0).then_some(i as i64));
                s.commit(Some(part), &r.expected, &r.next).await.unwrap();
            }
            // The floor (day 10 = 1970-01-11) keeps `g` (day 1) out of reach: its newer
            // version is inserted beside it, as the floor documents.
            let r = at(3, Some(2));
            let committed = s
                .write(crate::sink::SinkBatch {
                    rows: Some(arriving.clone()),
                    ranges: r,
                    watermark_ms: Some(10 * 86_400_000),
                })
                .await
                .unwrap();
            if !delta_rs {
                // This module's MERGE: a, b@5 and c updated; e copied beside c; the null
                // key, f and g inserted; four files probed, g's below the floor not read,
                // b@7's (matched, not newer) not rewritten.
                let m = |k: &str| committed.metrics[k].clone();
                let got = [
                    "numTargetRowsUpdated",
                    "numTargetRowsCopied",
                    "numTargetRowsInserted",
                    "numTargetFilesScanned",
                    "numTargetFilesSkipped",
                    "numTargetFilesRemoved",
                ]
                .map(m);
                assert_eq!(got, ["3", "1", "3", "4", "1", "2"]);
            }
            results.push(rows(&s).await);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let s = |x: &str| Some(x.to_string());
        let expected = vec![
            (s("b"), Some(7), 3, 11),
            (s("g"), Some(1), 7, 1),
            (s("a"), Some(6), 10, 12),
            (s("b"), Some(6), 11, 12),
            (s("c"), Some(1), 12, 11),
            (None, Some(1), 5, 10),
            (s("e"), Some(9), 6, 11),
            (None, Some(2), 14, 10),
            (s("f"), Some(1), 15, 12),
            (s("g"), Some(2), 16, 12),
        ];
        let mut want = expected;
        want.sort_by_key(|r| r.2);
        assert_eq!(results[0], want);
        assert_eq!(results[1], want);
    }
}
