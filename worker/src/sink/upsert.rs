//! I/O: the Delta sink's own MERGE of a batch with one row per key — copy-on-write, as
//! delta-rs's MERGE, with the same result, but reading only what decides it.
//!
//! delta-rs's MERGE joins the batch with every candidate file through DataFusion and
//! rewrites each file with a match. Here the candidate files (those at or above the
//! watermark's partition floor) are probed by their key (and `orderBy`) columns alone, in
//! one hash lookup per stored row; only files holding a row to update are read whole and
//! written again without it. New rows go to files of their own, so a later batch that
//! updates a stored row rewrites only the files of rewritten rows, not every insert since.
//! Removes, adds and the `txn` actions are one commit. Files are probed, and written, on
//! tasks of their own (both cores). A data file never changes, so the keys a MERGE read of
//! a file, or wrote into one, are kept for the next batches ([`KeyCache`]): in steady state
//! the probe reads nothing. Tables this does not cover (column mapping, change data feed,
//! constraints, generated columns, deletion vectors in a file it would read, a batch with
//! new columns) go through delta-rs's MERGE: [`merge`] returns `None` for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow_buffer::NullBuffer;
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{DataType, Schema, SchemaRef};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, LogicalFileView, Transaction};
use deltalake::logstore::parquet_reader::ParquetObjectReader;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use super::delta::MergeSettings;

/// Files probed, or written, at once.
const CONCURRENCY: usize = 4;

/// Bytes of keys a [`KeyCache`] holds at most; the files past it are read each batch.
const KEY_CACHE_BYTES: usize = 128 << 20;

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
    /// Files probed by the keys kept from an earlier batch, without reading them.
    pub files_cached: u64,
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

/// The key and ordering columns of data files, by path, as earlier MERGEs read or wrote
/// them. Holds only files at or above the floor, and at most [`KEY_CACHE_BYTES`].
#[derive(Debug, Default)]
pub struct KeyCache {
    /// The columns and types the keys were encoded as: other ones empty the cache.
    fields: Vec<(String, DataType)>,
    files: HashMap<String, Arc<StoredKeys>>,
    bytes: usize,
}

impl KeyCache {
    /// Keeps the files of `live` only, and empties the cache if `fields` differ.
    fn prepare(&mut self, fields: Vec<(String, DataType)>, live: &HashSet<String>) {
        if self.fields != fields {
            *self = Self {
                fields,
                ..Self::default()
            };
        }
        let bytes = &mut self.bytes;
        self.files.retain(|path, keys| {
            let keep = live.contains(path);
            if !keep {
                *bytes -= keys.size();
            }
            keep
        });
    }

    fn insert(&mut self, path: String, keys: Arc<StoredKeys>) {
        let size = keys.size();
        if self.files.contains_key(&path) || self.bytes + size > KEY_CACHE_BYTES {
            return;
        }
        self.bytes += size;
        self.files.insert(path, keys);
    }
}

/// Merges `u.batch` into `table`: the table after the commit and what it did, or `None`
/// when the table or the batch needs delta-rs's MERGE (see the module). `cache` holds the
/// keys of files read or written by earlier MERGEs of this table.
pub async fn merge(
    table: &DeltaTable,
    u: Upsert<'_>,
    cache: &mut KeyCache,
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
    let live: HashSet<String> = candidates.iter().map(|v| v.path().into_owned()).collect();
    cache.prepare(probe.fields.clone(), &live);
    let shared = Arc::new(Shared {
        target,
        probe,
        store: table.object_store(),
    });
    let jobs: Vec<_> = candidates
        .into_iter()
        .map(|view| {
            let cached = cache.files.get(view.path().as_ref()).cloned();
            (view, cached)
        })
        .collect();
    let probed: Vec<FileMatches> = futures::stream::iter(jobs)
        .map(|(view, cached)| spawned(tokio::spawn(probe_file(shared.clone(), view, cached))))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    for file in &probed {
        match &file.read {
            Some(keys) => cache.insert(file.view.path().into_owned(), keys.clone()),
            None => metrics.files_cached += 1,
        }
    }
    metrics.probe_ms = started.elapsed().as_millis() as u64;

    let written = Instant::now();
    let mut actions = rewrite(table, &shared, u.batch, probed, &mut metrics, cache).await?;
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
    let commit = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(Some(state), table.log_store(), operation)
        .await?;
    // The commit's own state, not the log read again.
    let mut after = table.clone();
    after.state = Some(commit.snapshot);
    Ok(Some((after, metrics)))
}

/// A task's result, its failure (a panic included) an error of the MERGE.
async fn spawned<T>(
    task: tokio::task::JoinHandle<Result<T, DeltaTableError>>,
) -> Result<T, DeltaTableError> {
    task.await
        .map_err(|e| DeltaTableError::Generic(format!("merge task: {e}")))?
}

/// What the MERGE's tasks share.
struct Shared {
    target: Target,
    probe: Probe,
    store: Arc<dyn ObjectStore>,
}

/// Writes the files of a MERGE, each on a task of its own: each file with a row to update
/// again without it, the updated rows in a file of their own beside, and the inserted rows
/// in another. The adds and removes; the keys of the files written go into `cache`.
async fn rewrite(
    table: &DeltaTable,
    shared: &Arc<Shared>,
    batch: &RecordBatch,
    probed: Vec<FileMatches>,
    metrics: &mut UpsertMetrics,
    cache: &mut KeyCache,
) -> Result<Vec<Action>, DeltaTableError> {
    let mut matched = vec![false; batch.num_rows()];
    let mut updates: Vec<u32> = Vec::new();
    let mut jobs = Vec::new();
    for file in probed {
        for &s in &file.matched {
            matched[s as usize] = true;
        }
        if !file.updated.is_empty() {
            updates.extend(&file.updated);
            jobs.push(Job::File(file));
        }
    }
    let inserts: Vec<u32> = (0..batch.num_rows() as u32)
        .filter(|&i| !matched[i as usize])
        .collect();
    metrics.inserted = inserts.len() as u64;
    // Updates and new rows in files of their own (see the module), one partition each, so
    // that each file's keys are known.
    for rows in [updates, inserts] {
        for part in shared.target.by_partition(batch, rows)? {
            jobs.push(Job::Rows(arrow_select::take::take_record_batch(
                batch,
                &UInt32Array::from(part),
            )?));
        }
    }
    let writers = jobs
        .into_iter()
        .map(|job| Ok((job, RecordBatchWriter::for_table(table)?)))
        .collect::<Result<Vec<_>, DeltaTableError>>()?;
    let done: Vec<Written> = futures::stream::iter(writers)
        .map(|(job, writer)| spawned(tokio::spawn(write_job(shared.clone(), job, writer))))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut actions = Vec::new();
    for w in done {
        metrics.updated += w.updated;
        metrics.copied += w.copied;
        metrics.files_added += w.adds.len() as u64;
        // A file's keys are known when it holds exactly the rows written.
        if let ([add], Some(keys)) = (w.adds.as_slice(), w.keys) {
            cache.insert(add.path.clone(), keys);
        }
        actions.extend(w.adds.into_iter().map(Action::Add));
        if let Some(remove) = w.remove {
            metrics.files_removed += 1;
            actions.push(remove);
        }
    }
    Ok(actions)
}

/// One file a MERGE writes.
enum Job {
    /// A stored file with rows to update, written again without them.
    File(FileMatches),
    /// Rows of the batch.
    Rows(RecordBatch),
}

/// What writing one [`Job`] did.
struct Written {
    adds: Vec<Add>,
    remove: Option<Action>,
    /// The keys of the rows written.
    keys: Option<Arc<StoredKeys>>,
    updated: u64,
    copied: u64,
}

async fn write_job(
    shared: Arc<Shared>,
    job: Job,
    mut writer: RecordBatchWriter,
) -> Result<Written, DeltaTableError> {
    let (rows, remove, updated) = match job {
        Job::Rows(rows) => (rows, None, 0),
        Job::File(file) => {
            let whole = shared
                .target
                .read(
                    shared.store.clone(),
                    &file.view,
                    &shared.target.all_columns(),
                )
                .await?;
            // The rows decided again on the file as read, in its order: the probe (maybe
            // from kept keys) said which batch rows replace stored ones, as a multiset.
            let keys = shared.probe.keys_of(&shared.target, &whole)?;
            let (_, replaced) = shared.probe.matches(&keys);
            let mut decided: Vec<u32> = replaced.iter().map(|&(_, s)| s).collect();
            let mut expected = file.updated.clone();
            decided.sort_unstable();
            expected.sort_unstable();
            if decided != expected {
                return Err(DeltaTableError::Generic(format!(
                    "merge: the kept keys of {} are not the file's",
                    file.view.path()
                )));
            }
            let mut keep = vec![true; whole.num_rows()];
            for &(t, _) in &replaced {
                keep[t as usize] = false;
            }
            let kept =
                arrow_select::filter::filter_record_batch(&whole, &BooleanArray::from(keep))?;
            let remove = Action::Remove(file.view.remove_action(true));
            (kept, Some(remove), replaced.len() as u64)
        }
    };
    let copied = if remove.is_some() {
        rows.num_rows() as u64
    } else {
        0
    };
    let keys = if rows.num_rows() > 0 {
        let keys = shared.probe.keys_of(&shared.target, &rows)?;
        writer.write(rows).await?;
        Some(Arc::new(keys))
    } else {
        None
    };
    Ok(Written {
        adds: writer.flush().await?,
        remove,
        keys,
        updated,
        copied,
    })
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

    /// `rows` of `batch` grouped by their partition values, in order.
    fn by_partition(
        &self,
        batch: &RecordBatch,
        rows: Vec<u32>,
    ) -> Result<Vec<Vec<u32>>, DeltaTableError> {
        if self.partition_columns.is_empty() || rows.is_empty() {
            return Ok(if rows.is_empty() { vec![] } else { vec![rows] });
        }
        let (_, _, values) = self.rows(batch, &self.partition_columns)?;
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        for r in rows {
            let group = *index
                .entry(values.row(r as usize).data())
                .or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
            groups[group].push(r);
        }
        Ok(groups)
    }

    /// Columns `names` of `batch` as the table's types, a converter of them to rows, and
    /// their rows.
    fn rows(
        &self,
        batch: &RecordBatch,
        names: &[String],
    ) -> Result<(Vec<ArrayRef>, RowConverter, Rows), DeltaTableError> {
        let columns = names
            .iter()
            .map(|c| self.column(batch, c))
            .collect::<Result<Vec<_>, _>>()?;
        let converter = RowConverter::new(
            columns
                .iter()
                .map(|a| SortField::new(a.data_type().clone()))
                .collect(),
        )?;
        let rows = converter.convert_columns(&columns)?;
        Ok((columns, converter, rows))
    }

    /// Column `name` of `batch` as the table's type.
    fn column(&self, batch: &RecordBatch, name: &str) -> Result<ArrayRef, DeltaTableError> {
        let column = batch.column_by_name(name).ok_or_else(|| {
            DeltaTableError::Generic(format!("merge column {name:?} not in the batch"))
        })?;
        let to = self.schema.field_with_name(name)?.data_type();
        Ok(if column.data_type() == to {
            column.clone()
        } else {
            arrow_cast::cast(column, to)?
        })
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
    /// The key columns, then the ordering column, with the table's types.
    fields: Vec<(String, DataType)>,
    keys: RowConverter,
    order: Option<RowConverter>,
    /// Key → batch row (rows with a null key match nothing, as `=` in SQL).
    by_key: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    batch_order: Option<Rows>,
}

/// The key and ordering values of one file's rows, in an order of their own (a file's
/// rows are decided again on the file itself before it is rewritten).
#[derive(Debug)]
pub struct StoredKeys {
    keys: Rows,
    order: Option<Rows>,
    /// Rows with a null in their key, which match nothing.
    null_keys: Option<NullBuffer>,
}

impl StoredKeys {
    fn size(&self) -> usize {
        self.keys.size() + self.order.as_ref().map_or(0, Rows::size)
    }
}

/// What probing one file found.
struct FileMatches {
    view: LogicalFileView,
    /// Batch rows a stored row of this file matched.
    matched: Vec<u32>,
    /// The batch row of each stored row its version replaces.
    updated: Vec<u32>,
    /// The file's keys, when they were read (not kept from an earlier batch).
    read: Option<Arc<StoredKeys>>,
}

impl Probe {
    fn new(
        target: &Target,
        settings: &MergeSettings,
        batch: &RecordBatch,
    ) -> Result<Self, DeltaTableError> {
        let (key_arrays, keys, rows) = target.rows(batch, &settings.keys)?;
        let mut by_key = HashMap::with_capacity_and_hasher(batch.num_rows(), Default::default());
        for i in 0..batch.num_rows() {
            if key_arrays.iter().all(|a| a.is_valid(i)) {
                by_key.insert(Box::from(rows.row(i).as_ref()), i as u32);
            }
        }
        let mut fields: Vec<(String, DataType)> = settings
            .keys
            .iter()
            .cloned()
            .zip(key_arrays.iter().map(|a| a.data_type().clone()))
            .collect();
        let (order, batch_order) = match &settings.order_by {
            Some(o) => {
                let a = target.column(batch, o)?;
                fields.push((o.clone(), a.data_type().clone()));
                // Ascending, nulls first: "newer" is "greater", and a null is older than
                // any value — the SQL predicate of [`newer_predicate`] exactly.
                let converter = RowConverter::new(vec![SortField::new(a.data_type().clone())])?;
                let rows = converter.convert_columns(&[a])?;
                (Some(converter), Some(rows))
            }
            None => (None, None),
        };
        Ok(Self {
            fields,
            keys,
            order,
            by_key,
            batch_order,
        })
    }

    fn n_keys(&self) -> usize {
        self.fields.len() - usize::from(self.order.is_some())
    }

    /// The key and ordering values of `stored`'s rows (columns by name, cast to the table's
    /// types).
    fn keys_of(
        &self,
        target: &Target,
        stored: &RecordBatch,
    ) -> Result<StoredKeys, DeltaTableError> {
        let arrays = self
            .fields
            .iter()
            .map(|(name, _)| target.column(stored, name))
            .collect::<Result<Vec<_>, _>>()?;
        let (key_arrays, order_array) = arrays.split_at(self.n_keys());
        let null_keys = key_arrays
            .iter()
            .fold(None, |nulls: Option<NullBuffer>, a| {
                NullBuffer::union(nulls.as_ref(), a.logical_nulls().as_ref())
            });
        Ok(StoredKeys {
            keys: self.keys.convert_columns(key_arrays)?,
            order: match &self.order {
                Some(c) => Some(c.convert_columns(order_array)?),
                None => None,
            },
            null_keys,
        })
    }

    /// The batch rows the stored rows match, and `(stored row, batch row)` for each stored
    /// row the batch's version replaces.
    fn matches(&self, stored: &StoredKeys) -> (Vec<u32>, Vec<(u32, u32)>) {
        let mut matched = Vec::new();
        let mut updated = Vec::new();
        for t in 0..stored.keys.num_rows() {
            if stored.null_keys.as_ref().is_some_and(|n| n.is_null(t)) {
                continue;
            }
            let Some(&s) = self.by_key.get(stored.keys.row(t).as_ref()) else {
                continue;
            };
            matched.push(s);
            let newer = match (&self.batch_order, &stored.order) {
                (Some(b), Some(st)) => b.row(s as usize) > st.row(t),
                _ => true,
            };
            if newer {
                updated.push((t as u32, s));
            }
        }
        (matched, updated)
    }
}

/// Probes one file by its kept keys, or reads its key and ordering columns.
async fn probe_file(
    shared: Arc<Shared>,
    view: LogicalFileView,
    cached: Option<Arc<StoredKeys>>,
) -> Result<FileMatches, DeltaTableError> {
    let (keys, read) = match cached {
        Some(keys) => (keys, false),
        None => {
            let columns: Vec<String> = shared.probe.fields.iter().map(|(n, _)| n.clone()).collect();
            let stored = shared
                .target
                .read(shared.store.clone(), &view, &columns)
                .await?;
            (
                Arc::new(shared.probe.keys_of(&shared.target, &stored)?),
                true,
            )
        }
    };
    let (matched, updated) = shared.probe.matches(&keys);
    Ok(FileMatches {
        view,
        matched,
        updated: updated.into_iter().map(|(_, s)| s).collect(),
        read: read.then_some(keys),
    })
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
    /// `orderBy`, an older version arriving, null keys, a new key, a floor; then a second
    /// batch on what the first wrote.
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
            // A second MERGE: `b`'s two stored versions both replaced, `e`'s older version
            // matched but not newer, `g`'s stored row above the floor replaced. This module's
            // MERGE probes every file by the keys the first one read or wrote.
            let again = batch(&[
                (Some("a"), Some(7), 20, 12),
                (Some("b"), Some(8), 21, 13),
                (Some("e"), Some(5), 22, 11),
                (Some("h"), Some(1), 23, 12),
                (Some("g"), Some(3), 24, 12),
            ]);
            let r = at(4, Some(3));
            let committed = s
                .write(crate::sink::SinkBatch {
                    rows: Some(again),
                    ranges: r,
                    watermark_ms: Some(10 * 86_400_000),
                })
                .await
                .unwrap();
            if !delta_rs {
                let m = |k: &str| committed.metrics[k].clone();
                assert_eq!(m("numTargetRowsUpdated"), "4");
                assert_eq!(m("numTargetRowsInserted"), "1");
                assert_eq!(
                    m("numTargetFilesKeysCached"),
                    m("numTargetFilesScanned"),
                    "{:?}",
                    committed.metrics
                );
            }
            results.push(rows(&s).await);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let s = |x: &str| Some(x.to_string());
        let expected = vec![
            (s("g"), Some(1), 7, 1),
            (s("c"), Some(1), 12, 11),
            (None, Some(1), 5, 10),
            (s("e"), Some(9), 6, 11),
            (None, Some(2), 14, 10),
            (s("f"), Some(1), 15, 12),
            (s("a"), Some(7), 20, 12),
            (s("b"), Some(8), 21, 13),
            (s("b"), Some(8), 21, 13),
            (s("h"), Some(1), 23, 12),
            (s("g"), Some(3), 24, 12),
        ];
        let mut want = expected;
        want.sort_by_key(|r| r.2);
        assert_eq!(results[0], want);
        assert_eq!(results[1], want);
    }
}
