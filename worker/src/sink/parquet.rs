//! I/O: the Parquet sink — a plain Hive-style Parquet dataset that any Parquet reader can
//! scan, committed exactly once with a write-ahead log and commit markers in the checkpoint.
//!
//! Layout (see `docs/exactly-once.md`):
//! - `<dataset>/[col=value/…]part-<hash>-<n>.parquet`: data files of committed batches
//!   only. `<hash>` is derived from the writer's run id and the batch's offset ranges, so a
//!   file name is never reused.
//! - `<dataset>/_spillway_staging/<run>/[col=value/…]part-….parquet`: a batch's files
//!   before its commit marker exists; copied to their place once it does (a `_` directory,
//!   which Spark, Hive and pyarrow skip: a plain directory scan never sees a batch that did
//!   not commit, also not one a fenced zombie writes after the new owner's recovery).
//! - `<dataset>/_spillway_manifest/<version>.json`: the files each commit added (readers
//!   that want only committed files read these; `_` directories are skipped by Spark and
//!   pyarrow when they scan the dataset).
//! - `<checkpoint>/parquet/wal/<run>-<seq>.json`: written before any data file, naming the
//!   files about to be written.
//! - `<checkpoint>/parquet/commits/<version>.json`: the commit marker, created
//!   put-if-absent, holding the files added and the full partition state: each Kafka
//!   partition's next offset and its owner (the run id that claimed it).
//!
//! A batch commits only if its writer still owns every partition of the batch at the
//! positions it started from. A new owner first claims its partitions with a marker of
//! its own — after that a zombie can no longer commit — and then rolls back what the
//! write-ahead log names but no marker committed, so no orphan file stays behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::Schema;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use spillway_api::ParquetCompression;
use tracing::{info, warn};
use url::Url;

use super::partition_path::hive_value;
use crate::source::TopicPartition;

/// Errors of the Parquet sink.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum ParquetSinkError {
    /// The object store failed.
    #[error("parquet sink {uri}: {source}")]
    Store {
        /// Dataset or checkpoint URI.
        uri: String,
        /// The error.
        #[source]
        source: object_store::Error,
    },
    /// Encoding a file failed.
    #[error("parquet sink {uri}: encoding a file failed: {message}")]
    Encode {
        /// Dataset URI.
        uri: String,
        /// Why.
        message: String,
    },
    /// A marker or log entry could not be read.
    #[error("parquet sink {uri}: {file} is corrupt: {message}")]
    Corrupt {
        /// Checkpoint URI.
        uri: String,
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// Another writer owns some of the batch's partitions now (a rebalance or a zombie):
    /// the batch is rolled back and abandoned, nothing is duplicated.
    #[error(
        "partition ownership moved in {uri} while the batch was written (another writer owns them)"
    )]
    Fenced {
        /// Dataset URI.
        uri: String,
    },
    /// The dataset was written with another checkpoint, whose positions this one lacks:
    /// writing would duplicate every row.
    #[error(
        "parquet dataset {uri} belongs to the checkpoint {owner}, not {checkpoint}: point checkpoint.uri back at it to resume, or write to a new dataset"
    )]
    OwnedByAnother {
        /// Dataset URI.
        uri: String,
        /// The checkpoint the dataset records.
        owner: String,
        /// This pipeline's checkpoint.
        checkpoint: String,
    },
}

/// One Kafka partition's state in a commit marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionState {
    /// Next offset to read.
    next: Option<i64>,
    /// Run id of the writer that owns the partition.
    owner: String,
}

/// A data file a commit added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// A commit marker (also the reader manifest entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Commit {
    version: i64,
    writer: String,
    files: Vec<DataFile>,
    /// topic → partition → state, for every partition ever committed or claimed.
    partitions: BTreeMap<String, BTreeMap<i32, PartitionState>>,
}

impl Commit {
    fn get(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.partitions.get(&tp.topic)?.get(&tp.partition)
    }

    fn set(&mut self, tp: &TopicPartition, s: PartitionState) {
        self.partitions
            .entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition, s);
    }
}

/// A write-ahead entry: the files a batch is about to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WalEntry {
    writer: String,
    /// The committed version the batch started from.
    base_version: i64,
    files: Vec<String>,
    partitions: Vec<(String, i32)>,
}

/// Where a writer's files wait for their commit marker, relative to the dataset root.
const STAGING: &str = "_spillway_staging";

/// A Parquet dataset written by one pipeline.
pub struct ParquetSink {
    data: Arc<dyn ObjectStore>,
    data_root: Path,
    uri: String,
    ckpt: Arc<dyn ObjectStore>,
    ckpt_root: Path,
    ckpt_uri: String,
    partition_by: Vec<String>,
    props: WriterProperties,
    run_id: String,
    state: Commit,
    wal_seq: u64,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("uri", &self.uri)
            .finish()
    }
}

fn join(root: &Path, rel: &str) -> Path {
    crate::storage::join(root, rel)
}

/// FNV-1a: a stable, dependency-free hash for file names (not for security).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Pure: the file-name stem of a batch, from its writer and offset ranges.
pub fn file_stem(
    run_id: &str,
    start: &BTreeMap<TopicPartition, i64>,
    next: &BTreeMap<TopicPartition, i64>,
) -> String {
    let mut ranges = String::new();
    for (tp, n) in next {
        let s = start.get(tp).copied().unwrap_or(*n);
        ranges.push_str(&format!("{}:{}:{s}-{n};", tp.topic, tp.partition));
    }
    format!(
        "part-{:016x}",
        fnv1a(&[run_id.as_bytes(), ranges.as_bytes()])
    )
}

/// Pure: splits `batch` by the values of `partition_by`: (directory, rows without the
/// partition columns), in first-seen order.
pub fn split_by_partition(
    batch: &RecordBatch,
    partition_by: &[String],
) -> Result<Vec<(String, RecordBatch)>, arrow_schema::ArrowError> {
    if partition_by.is_empty() {
        return Ok(vec![(String::new(), batch.clone())]);
    }
    let schema = batch.schema();
    let mut formatters = Vec::with_capacity(partition_by.len());
    let mut keep = Vec::new();
    let opts = arrow_cast::display::FormatOptions::default();
    for col in partition_by {
        let idx = schema.index_of(col)?;
        formatters.push((
            col.as_str(),
            batch.column(idx).clone(),
            arrow_cast::display::ArrayFormatter::try_new(batch.column(idx).as_ref(), &opts)?,
        ));
    }
    for (i, f) in schema.fields().iter().enumerate() {
        if !partition_by.iter().any(|p| p == f.name()) {
            keep.push(i);
        }
    }
    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for row in 0..batch.num_rows() {
        let mut dir = String::new();
        for (name, array, fmt) in &formatters {
            let v = if array.is_null(row) {
                None
            } else {
                Some(fmt.value(row).to_string())
            };
            dir.push_str(&format!("{name}={}/", hive_value(v.as_deref())));
        }
        let at = *index.entry(dir.clone()).or_insert_with(|| {
            groups.push((dir, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(row as u32);
    }
    let projected = batch.project(&keep)?;
    let mut out = Vec::with_capacity(groups.len());
    for (dir, rows) in groups {
        let idx = UInt32Array::from(rows);
        let cols: Vec<ArrayRef> = projected
            .columns()
            .iter()
            .map(|c| arrow_select::take::take(c.as_ref(), &idx, None))
            .collect::<Result<_, _>>()?;
        out.push((dir, RecordBatch::try_new(projected.schema(), cols)?));
    }
    Ok(out)
}

impl ParquetSink {
    /// The Hive partition columns.
    pub fn partition_by(&self) -> &[String] {
        &self.partition_by
    }

    /// Opens the dataset at `url` with its state under the checkpoint at `checkpoint`.
    pub async fn open(
        url: &Url,
        checkpoint: &Url,
        options: &std::collections::HashMap<String, String>,
        partition_by: Vec<String>,
        compression: ParquetCompression,
        run_id: &str,
    ) -> Result<Self, ParquetSinkError> {
        let uri = url.to_string();
        let ckpt_uri = checkpoint.to_string();
        let (data, data_root) = crate::storage::object_store(url, options).map_err(|source| {
            ParquetSinkError::Store {
                uri: uri.clone(),
                source,
            }
        })?;
        let (ckpt, ckpt_root) =
            crate::storage::object_store(checkpoint, options).map_err(|source| {
                ParquetSinkError::Store {
                    uri: ckpt_uri.clone(),
                    source,
                }
            })?;
        let compression = match compression {
            ParquetCompression::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default())
            }
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Uncompressed => Compression::UNCOMPRESSED,
        };
        let mut sink = Self {
            data,
            data_root,
            uri,
            ckpt,
            ckpt_root: join(&ckpt_root, "parquet"),
            ckpt_uri,
            partition_by,
            props: WriterProperties::builder()
                .set_compression(compression)
                .build(),
            run_id: run_id.to_string(),
            state: Commit {
                version: -1,
                ..Commit::default()
            },
            wal_seq: 0,
        };
        sink.claim_dataset().await?;
        sink.refresh().await?;
        Ok(sink)
    }

    /// Records this checkpoint as the dataset's owner, or refuses a dataset another
    /// checkpoint owns: its positions live there, so writing here would duplicate.
    async fn claim_dataset(&self) -> Result<(), ParquetSinkError> {
        use super::owner::{OwnerError, claim};
        match claim(self.data.as_ref(), &self.data_root, &self.ckpt_uri).await {
            Ok(None) => Ok(()),
            Ok(Some(owner)) => Err(ParquetSinkError::OwnedByAnother {
                uri: self.uri.clone(),
                owner,
                checkpoint: self.ckpt_uri.clone(),
            }),
            Err(OwnerError::Store(e)) => Err(self.data_err(e)),
            Err(OwnerError::Corrupt(message)) => Err(ParquetSinkError::Corrupt {
                uri: self.uri.clone(),
                file: super::owner::OWNER_FILE.into(),
                message,
            }),
        }
    }

    /// `ParquetSink[uri]`.
    pub fn description(&self) -> String {
        format!("ParquetSink[{}]", self.uri.trim_end_matches('/'))
    }

    /// The last committed version (-1 before the first commit).
    pub fn version(&self) -> Option<i64> {
        (self.state.version >= 0).then_some(self.state.version)
    }

    fn ckpt_err(&self, source: object_store::Error) -> ParquetSinkError {
        ParquetSinkError::Store {
            uri: self.ckpt_uri.clone(),
            source,
        }
    }

    fn data_err(&self, source: object_store::Error) -> ParquetSinkError {
        ParquetSinkError::Store {
            uri: self.uri.clone(),
            source,
        }
    }

    fn marker(&self, version: i64) -> Path {
        join(&self.ckpt_root, &format!("commits/{version:020}.json"))
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, ParquetSinkError> {
        let bytes = match self.ckpt.get(path).await {
            Ok(r) => r.bytes().await.map_err(|e| self.ckpt_err(e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.ckpt_err(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ParquetSinkError::Corrupt {
                uri: self.ckpt_uri.clone(),
                file: path.to_string(),
                message: e.to_string(),
            })
    }

    /// Loads commit markers newer than the one held.
    async fn refresh(&mut self) -> Result<(), ParquetSinkError> {
        let prefix = join(&self.ckpt_root, "commits");
        let offset = self.marker(self.state.version.max(0));
        let listed: Vec<_> = if self.state.version < 0 {
            self.ckpt.list(Some(&prefix)).try_collect().await
        } else {
            self.ckpt
                .list_with_offset(Some(&prefix), &offset)
                .try_collect()
                .await
        }
        .map_err(|e| self.ckpt_err(e))?;
        let latest = listed
            .iter()
            .filter_map(|o| {
                o.location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse::<i64>()
                    .ok()
            })
            .max();
        if let Some(v) = latest.filter(|v| *v > self.state.version) {
            let path = self.marker(v);
            if let Some(c) = self.read_json::<Commit>(&path).await? {
                self.state = c;
            }
        }
        Ok(())
    }

    /// Reloads the state and returns the next offset recorded for each partition.
    pub async fn positions(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ParquetSinkError> {
        self.refresh().await?;
        Ok(tps
            .iter()
            .filter_map(|tp| Some((tp.clone(), self.state.get(tp)?.next?)))
            .collect())
    }

    /// Creates marker `state.version + 1` for `next`; `Ok(false)` when another writer took
    /// that version first.
    async fn put_marker(&self, next: &Commit) -> Result<bool, ParquetSinkError> {
        let body = serde_json::to_vec(next).map_err(|e| ParquetSinkError::Encode {
            uri: self.uri.clone(),
            message: e.to_string(),
        })?;
        match self
            .ckpt
            .put_opts(
                &self.marker(next.version),
                PutPayload::from(body),
                PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.ckpt_err(e)),
        }
    }

    /// Takes ownership of `tps` (a commit of its own, so that a previous owner can no
    /// longer commit them), then rolls back batches their previous owners left half done.
    pub async fn claim(&mut self, tps: &[TopicPartition]) -> Result<(), ParquetSinkError> {
        loop {
            self.refresh().await?;
            let mut next = self.state.clone();
            let mut changed = false;
            for tp in tps {
                let cur = self.state.get(tp).cloned();
                if cur.as_ref().is_none_or(|c| c.owner != self.run_id) {
                    next.set(
                        tp,
                        PartitionState {
                            next: cur.and_then(|c| c.next),
                            owner: self.run_id.clone(),
                        },
                    );
                    changed = true;
                }
            }
            if !changed {
                break;
            }
            next.version = self.state.version + 1;
            next.writer = self.run_id.clone();
            next.files = Vec::new();
            if self.put_marker(&next).await? {
                self.state = next;
                break;
            }
        }
        self.recover().await
    }

    /// Rolls back or completes write-ahead entries whose writer can no longer commit.
    async fn recover(&mut self) -> Result<(), ParquetSinkError> {
        let prefix = join(&self.ckpt_root, "wal");
        let entries: Vec<_> = self
            .ckpt
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.ckpt_err(e))?;
        for meta in entries {
            let Some(entry) = self.read_json::<WalEntry>(&meta.location).await? else {
                continue;
            };
            if entry.writer == self.run_id {
                continue;
            }
            // The writer can still commit only while it owns every partition of the batch.
            let writer_can_commit = entry.partitions.iter().all(|(t, p)| {
                self.state
                    .get(&TopicPartition {
                        topic: t.clone(),
                        partition: *p,
                    })
                    .is_some_and(|s| s.owner == entry.writer)
            });
            if writer_can_commit {
                continue;
            }
            let committed = self.committed_by(&entry).await?;
            if let Some(c) = committed {
                self.publish(&c).await?;
                info!(dataset = %self.uri, version = c.version, "completed an interrupted commit");
            } else {
                self.discard(&entry).await?;
                warn!(dataset = %self.uri, files = entry.files.len(), writer = %entry.writer, "rolled back an uncommitted batch");
            }
            match self.ckpt.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.ckpt_err(e)),
            }
        }
        Ok(())
    }

    /// The marker that committed `entry`'s files, if any (searched after its base version).
    async fn committed_by(&self, entry: &WalEntry) -> Result<Option<Commit>, ParquetSinkError> {
        let Some(first) = entry.files.first() else {
            return Ok(None);
        };
        for v in (entry.base_version + 1)..=self.state.version {
            if let Some(c) = self.read_json::<Commit>(&self.marker(v)).await?
                && c.writer == entry.writer
                && c.files.iter().any(|f| &f.path == first)
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Where `writer` stages the file that lands at `path` (relative to the dataset root).
    fn staged(&self, writer: &str, path: &str) -> Path {
        join(&self.data_root, &format!("{STAGING}/{writer}/{path}"))
    }

    /// Deletes `path`; a file already gone is fine.
    async fn delete_data(&self, path: &Path) -> Result<(), ParquetSinkError> {
        match self.data.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.data_err(e)),
        }
    }

    /// Removes what an uncommitted batch wrote: its staged files (and, for a batch of a
    /// version before staging, files in place).
    async fn discard(&self, entry: &WalEntry) -> Result<(), ParquetSinkError> {
        for f in &entry.files {
            self.delete_data(&self.staged(&entry.writer, f)).await?;
            self.delete_data(&join(&self.data_root, f)).await?;
        }
        Ok(())
    }

    /// Puts a committed batch's files in place (copied from staging, then the staged copy
    /// removed) and writes its reader manifest entry. Idempotent: a file already in place
    /// whose staged copy is gone was published before (by its writer or a recovery).
    async fn publish(&self, c: &Commit) -> Result<(), ParquetSinkError> {
        for f in &c.files {
            let staged = self.staged(&c.writer, &f.path);
            let target = join(&self.data_root, &f.path);
            match self.data.copy(&staged, &target).await {
                Ok(()) => self.delete_data(&staged).await?,
                Err(object_store::Error::NotFound { .. }) => {
                    if let Err(e) = self.data.head(&target).await {
                        return Err(self.data_err(e));
                    }
                }
                Err(e) => return Err(self.data_err(e)),
            }
        }
        self.write_manifest(c).await
    }

    /// Writes the reader manifest entry of a commit (idempotent).
    async fn write_manifest(&self, c: &Commit) -> Result<(), ParquetSinkError> {
        #[derive(Serialize)]
        struct Manifest<'a> {
            version: i64,
            files: &'a [DataFile],
        }
        let body = serde_json::to_vec(&Manifest {
            version: c.version,
            files: &c.files,
        })
        .map_err(|e| ParquetSinkError::Encode {
            uri: self.uri.clone(),
            message: e.to_string(),
        })?;
        let path = join(
            &self.data_root,
            &format!("_spillway_manifest/{:020}.json", c.version),
        );
        self.data
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| self.data_err(e))?;
        Ok(())
    }

    fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>, ParquetSinkError> {
        let err = |e: &dyn std::fmt::Display| ParquetSinkError::Encode {
            uri: self.uri.clone(),
            message: e.to_string(),
        };
        let mut buf = Vec::new();
        let schema: Arc<Schema> = batch.schema();
        let mut w = ArrowWriter::try_new(&mut buf, schema, Some(self.props.clone()))
            .map_err(|e| err(&e))?;
        w.write(batch).map_err(|e| err(&e))?;
        w.close().map_err(|e| err(&e))?;
        Ok(buf)
    }

    fn fenced(&self, expected: &BTreeMap<TopicPartition, Option<i64>>) -> bool {
        expected.iter().any(|(tp, want)| {
            self.state
                .get(tp)
                .is_none_or(|s| s.owner != self.run_id || s.next != *want)
        })
    }

    /// Commits `batch` for the partitions' offset ranges `start..next`, if this writer
    /// still owns them at `expected`. Returns the new version.
    pub async fn commit(
        &mut self,
        batch: Option<RecordBatch>,
        start: &BTreeMap<TopicPartition, i64>,
        expected: &BTreeMap<TopicPartition, Option<i64>>,
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<i64, ParquetSinkError> {
        self.refresh().await?;
        if self.fenced(expected) {
            return Err(ParquetSinkError::Fenced {
                uri: self.uri.clone(),
            });
        }
        let (entry, wal, added) = self.stage(batch.as_ref(), start, next).await?;
        // The commit marker, put-if-absent; on a lost race re-check ownership and retry.
        loop {
            if self.fenced(expected) {
                self.roll_back(&entry, &wal).await?;
                return Err(ParquetSinkError::Fenced {
                    uri: self.uri.clone(),
                });
            }
            let mut c = self.state.clone();
            c.version = self.state.version + 1;
            c.writer = self.run_id.clone();
            c.files = added.clone();
            for (tp, o) in next {
                c.set(
                    tp,
                    PartitionState {
                        next: Some(*o),
                        owner: self.run_id.clone(),
                    },
                );
            }
            if self.put_marker(&c).await? {
                self.state = c;
                break;
            }
            self.refresh().await?;
        }
        self.publish(&self.state).await?;
        if !entry.files.is_empty() {
            match self.ckpt.delete(&wal).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.ckpt_err(e)),
            }
        }
        info!(dataset = %self.uri, version = self.state.version, files = self.state.files.len(), "committed batch");
        Ok(self.state.version)
    }

    /// Encodes `batch`, records the files in a write-ahead entry and writes them to this
    /// writer's staging area (not yet visible to a directory scan). Returns the entry, its
    /// path and the files.
    async fn stage(
        &mut self,
        batch: Option<&RecordBatch>,
        start: &BTreeMap<TopicPartition, i64>,
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(WalEntry, Path, Vec<DataFile>), ParquetSinkError> {
        // Plan and encode the files.
        let stem = file_stem(&self.run_id, start, next);
        let mut files: Vec<(DataFile, Vec<u8>)> = Vec::new();
        if let Some(b) = batch.filter(|b| b.num_rows() > 0) {
            let parts = split_by_partition(b, &self.partition_by).map_err(|e| {
                ParquetSinkError::Encode {
                    uri: self.uri.clone(),
                    message: e.to_string(),
                }
            })?;
            for (i, (dir, rows)) in parts.into_iter().enumerate() {
                let bytes = self.encode(&rows)?;
                files.push((
                    DataFile {
                        path: format!("{dir}{stem}-{i:05}.parquet"),
                        rows: rows.num_rows() as u64,
                        bytes: bytes.len() as u64,
                    },
                    bytes,
                ));
            }
        }
        // Write-ahead entry, then the data files.
        self.wal_seq += 1;
        let wal = join(
            &self.ckpt_root,
            &format!("wal/{}-{:020}.json", self.run_id, self.wal_seq),
        );
        let entry = WalEntry {
            writer: self.run_id.clone(),
            base_version: self.state.version,
            files: files.iter().map(|(f, _)| f.path.clone()).collect(),
            partitions: next
                .keys()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect(),
        };
        if !files.is_empty() {
            let body = serde_json::to_vec(&entry).map_err(|e| ParquetSinkError::Encode {
                uri: self.uri.clone(),
                message: e.to_string(),
            })?;
            self.ckpt
                .put(&wal, PutPayload::from(body))
                .await
                .map_err(|e| self.ckpt_err(e))?;
        }
        for (f, bytes) in &mut files {
            self.data
                .put(
                    &self.staged(&self.run_id, &f.path),
                    PutPayload::from(std::mem::take(bytes)),
                )
                .await
                .map_err(|e| self.data_err(e))?;
        }
        Ok((entry, wal, files.into_iter().map(|(f, _)| f).collect()))
    }

    async fn roll_back(&self, entry: &WalEntry, wal: &Path) -> Result<(), ParquetSinkError> {
        self.discard(entry).await?;
        match self.ckpt.delete(wal).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.ckpt_err(e)),
        }
    }

    /// The files of every committed version, in order (what a manifest-aware reader reads).
    pub async fn committed_files(&self) -> Result<Vec<DataFile>, ParquetSinkError> {
        let mut out = Vec::new();
        for v in 0..=self.state.version {
            if let Some(c) = self.read_json::<Commit>(&self.marker(v)).await? {
                out.extend(c.files);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field};

    fn tp(p: i32) -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition: p,
        }
    }

    #[test]
    fn file_stems_differ_by_writer_and_range_and_are_stable() {
        let start: BTreeMap<_, _> = [(tp(0), 10), (tp(1), 5)].into();
        let next: BTreeMap<_, _> = [(tp(0), 20), (tp(1), 9)].into();
        let a = file_stem("run-a", &start, &next);
        assert_eq!(a, file_stem("run-a", &start, &next));
        assert_ne!(a, file_stem("run-b", &start, &next));
        let other: BTreeMap<_, _> = [(tp(0), 21), (tp(1), 9)].into();
        assert_ne!(a, file_stem("run-a", &start, &other));
        assert!(a.starts_with("part-") && a.len() == 21);
    }

    #[test]
    fn hive_values_escape_like_hive() {
        assert_eq!(hive_value(Some("2026-11-22")), "2026-11-22");
        assert_eq!(hive_value(Some("a/b=c")), "a%2Fb%3Dc");
        assert_eq!(hive_value(None), "__HIVE_DEFAULT_PARTITION__");
    }

    #[test]
    fn split_groups_rows_and_drops_partition_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Utf8, true),
            Field::new("v", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("x"),
                    None,
                    Some("x"),
                    Some("y"),
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let parts = split_by_partition(&b, &["day".into()]).unwrap();
        let dirs: Vec<(&str, usize)> = parts
            .iter()
            .map(|(d, b)| (d.as_str(), b.num_rows()))
            .collect();
        assert_eq!(
            dirs,
            [
                ("day=x/", 2),
                ("day=__HIVE_DEFAULT_PARTITION__/", 1),
                ("day=y/", 1)
            ]
        );
        assert_eq!(parts[0].1.num_columns(), 1);
        let v = parts[0]
            .1
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(v.values(), &[1, 3]);
    }

    async fn sink(dir: &std::path::Path, run: &str) -> ParquetSink {
        let data = Url::from_directory_path(dir.join("data")).unwrap();
        let ckpt = Url::from_directory_path(dir.join("ckpt")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("ckpt")).unwrap();
        ParquetSink::open(
            &data,
            &ckpt,
            &Default::default(),
            vec![],
            ParquetCompression::Zstd,
            run,
        )
        .await
        .unwrap()
    }

    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    fn parquet_files(dir: &std::path::Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir.join("data"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn files_a_zombie_writes_after_the_new_owners_recovery_stay_invisible() {
        let dir = tempdir();
        let mut a = sink(&dir, "run-a").await;
        a.claim(&[tp(0)]).await.unwrap();
        // `b` takes the partition over and recovers before the zombie `a` writes anything.
        let mut b = sink(&dir, "run-b").await;
        b.claim(&[tp(0)]).await.unwrap();
        // `a` still believes it owns the partition: it writes its batch's files and is
        // killed before it could notice the fence.
        let (entry, _, files) = a
            .stage(Some(&rows(4)), &[(tp(0), 0)].into(), &[(tp(0), 4)].into())
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
        drop(a);
        assert!(
            parquet_files(&dir).is_empty(),
            "a plain scan sees nothing of it"
        );
        let staged = dir
            .join("data/_spillway_staging/run-a")
            .join(&entry.files[0]);
        assert!(staged.exists());
        // The owner commits; the next claim removes the zombie's leftovers.
        b.commit(
            Some(rows(2)),
            &[(tp(0), 0)].into(),
            &[(tp(0), None)].into(),
            &[(tp(0), 2)].into(),
        )
        .await
        .unwrap();
        assert_eq!(parquet_files(&dir).len(), 1, "only b's committed file");
        let mut c = sink(&dir, "run-c").await;
        c.claim(&[tp(0)]).await.unwrap();
        assert!(!staged.exists(), "the zombie's staged file was rolled back");
        assert_eq!(parquet_files(&dir).len(), 1);
    }

    #[tokio::test]
    async fn a_dataset_refuses_a_second_checkpoint_instead_of_duplicating() {
        let dir = tempdir();
        let first = sink(&dir, "run-a").await;
        drop(first);
        // The same checkpoint again (a restart): resumes.
        sink(&dir, "run-b").await;
        let data = Url::from_directory_path(dir.join("data")).unwrap();
        let other = Url::from_directory_path(dir.join("other-ckpt")).unwrap();
        std::fs::create_dir_all(dir.join("other-ckpt")).unwrap();
        let err = ParquetSink::open(
            &data,
            &other,
            &Default::default(),
            vec![],
            ParquetCompression::Zstd,
            "run-c",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ParquetSinkError::OwnedByAnother { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("point checkpoint.uri back"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_new_owner_fences_the_old_one_and_rolls_back_its_files() {
        let dir = tempdir();
        let mut a = sink(&dir, "run-a").await;
        a.claim(&[tp(0)]).await.unwrap();
        let v = a
            .commit(
                Some(rows(3)),
                &[(tp(0), 0)].into(),
                &[(tp(0), None)].into(),
                &[(tp(0), 3)].into(),
            )
            .await
            .unwrap();
        assert_eq!(v, 1, "claim is version 0, the batch version 1");

        // `a` writes files for its next batch but dies before its marker (simulated by a
        // WAL entry and a staged file left behind).
        let orphan = "part-0000000000000000-00000.parquet";
        let staged = dir.join("data/_spillway_staging/run-a").join(orphan);
        std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
        std::fs::write(&staged, b"partial").unwrap();
        let entry = WalEntry {
            writer: "run-a".into(),
            base_version: 1,
            files: vec![orphan.into()],
            partitions: vec![("t".into(), 0)],
        };
        std::fs::create_dir_all(dir.join("ckpt/parquet/wal")).unwrap();
        std::fs::write(
            dir.join("ckpt/parquet/wal/run-a-1.json"),
            serde_json::to_vec(&entry).unwrap(),
        )
        .unwrap();

        let mut b = sink(&dir, "run-b").await;
        assert_eq!(b.positions(&[tp(0)]).await.unwrap()[&tp(0)], 3);
        b.claim(&[tp(0)]).await.unwrap();
        assert_eq!(
            parquet_files(&dir).len(),
            1,
            "only the committed batch is in place"
        );
        assert!(!staged.exists(), "the orphan was rolled back");
        assert!(!dir.join("ckpt/parquet/wal/run-a-1.json").exists());

        // The zombie `a` can no longer commit, and leaves nothing behind.
        let err = a
            .commit(
                Some(rows(2)),
                &[(tp(0), 3)].into(),
                &[(tp(0), Some(3))].into(),
                &[(tp(0), 5)].into(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ParquetSinkError::Fenced { .. }), "{err}");
        assert_eq!(parquet_files(&dir).len(), 1);

        // The owner continues; an all-bad batch (no rows) still moves the position.
        b.commit(
            None,
            &[(tp(0), 3)].into(),
            &[(tp(0), Some(3))].into(),
            &[(tp(0), 7)].into(),
        )
        .await
        .unwrap();
        assert_eq!(b.positions(&[tp(0)]).await.unwrap()[&tp(0)], 7);
        let files = b.committed_files().await.unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].rows, 3);
        assert!(dir.join("data/_spillway_manifest").is_dir());
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("spillway-parquet-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
