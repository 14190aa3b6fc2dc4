//! The micro-batch loop: source → decode → (metadata columns, transform) → sink → progress.
//!
//! [`run`] resolves the manifest once ([`plan::Plan`]), opens the stages and hands them to an
//! `Engine`, whose loop is one `tokio::select!` over shutdown, assignment changes, the batch
//! in flight, the trigger and the consumer; each arm calls one method. A closed batch is
//! sealed here (decoded rows, metadata columns, `transform.sql`, the partition-value guard,
//! the event-time watermark) and written by the sink on a task of its own
//! ([`writer::Writer`]), while the loop reads and decodes the next one.
//!
//! - [`plan`]: pure: the manifest resolved once.
//! - [`batch`]: pure: the open batch, its offset ranges and report metrics.
//! - [`positioning`]: I/O: where partitions start, a bounded run's end, stall re-seeks.
//! - [`waiting`]: I/O: decoding while the schema registry is out (partitions paused).
//! - [`writer`]: the sink and the batch in flight.
//! - [`metadata`], [`partition_guard`], [`transform`], [`dead_letter`]: the stages.

mod batch;
pub mod dead_letter;
pub mod metadata;
pub mod partition_guard;
mod plan;
mod positioning;
pub mod transform;
mod waiting;
mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use spillway_api::{
    EventTimeStats, OnBadRecord, OnDataLoss, SinkProgress, SourceProgress, StreamingQueryProgress,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::format::{FormatError, ValueDecoder};
use crate::manifest::LoadedPipeline;
use crate::secrets::SecretSource;
use crate::serve::metrics::WorkerMetrics;
use crate::serve::progress::{ProgressState, WorkerConditionType};
use crate::sink::delta::{DeltaSink, DeltaSinkError};
use crate::sink::parquet::ParquetSink;
use crate::sink::partition_path::Escaping;
use crate::sink::{Committed, Sink, SinkBatch, SinkError};
use crate::source::{
    Accept, Assignment, KafkaSource, Positions, Received, SourceError, TopicPartition, config,
};
use crate::storage::{self, StorageError};
use batch::{Pending, handle_bad, offsets, sink_metrics, source_metrics};
use dead_letter::{DeadLetters, DeadRecord};
use metadata::RowMeta;
use plan::Plan;
use positioning::{
    STALL_AFTER, TopicEnds, all_drained, reached_end, resolve_start, topic_ends, unstick,
};
use writer::{Landed, Writer};

/// Errors that stop a pipeline.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum EngineError {
    /// The source failed (including data loss with `onDataLoss: fail`).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Decoding setup or the registry failed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Storage settings are unusable.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A secret is missing.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// `transform.sql` failed.
    #[error(transparent)]
    Transform(#[from] transform::TransformError),
    /// Building the batch failed.
    #[error("failed to build the batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A bad record with `onBadRecord: fail`.
    #[error("bad record at {tp}@{offset} ({reason}): {message}")]
    BadRecord {
        /// Partition.
        tp: TopicPartition,
        /// Offset.
        offset: i64,
        /// Static reason.
        reason: &'static str,
        /// Detail.
        message: String,
    },
    /// Writing dead letters failed.
    #[error(transparent)]
    DeadLetter(#[from] dead_letter::DeadLetterError),
    /// The sink was asked for while a batch was in flight, or its task panicked (a bug).
    #[error("the sink is busy writing a batch (internal error)")]
    SinkBusy,
    /// A blocking or writing task failed.
    #[error("engine task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A part of the spec this build does not run yet.
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
}

impl EngineError {
    /// The worker condition this error sets, with its reason: `DataLoss` for offsets deleted
    /// before they were read (`onDataLoss: fail`); `SchemaError` for a schema that cannot be
    /// read, or a record whose writer schema is unknown or cannot be read as the reader
    /// schema (`onBadRecord: fail`); else `Failed`, with the error's variant as reason.
    pub fn condition(&self) -> (WorkerConditionType, &'static str) {
        match self {
            Self::Source(SourceError::DataLoss { .. }) => {
                (WorkerConditionType::DataLoss, "DataLoss")
            }
            Self::BadRecord {
                reason: "SchemaIncompatible" | "UnknownSchemaId",
                ..
            }
            | Self::Format(FormatError::Schema { .. } | FormatError::SchemaSource { .. }) => {
                (WorkerConditionType::SchemaError, "SchemaError")
            }
            e => (WorkerConditionType::Failed, e.into()),
        }
    }
}

impl From<DeltaSinkError> for EngineError {
    fn from(e: DeltaSinkError) -> Self {
        Self::Sink(e.into())
    }
}

/// Called with each committed batch's report.
pub type BatchCallback = Arc<dyn Fn(&StreamingQueryProgress) + Send + Sync>;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Where secret references resolve.
    pub secrets: Arc<dyn SecretSource>,
    /// Extra consumer properties (tests lower session timeouts).
    pub consumer_overrides: BTreeMap<String, String>,
    /// Called with each batch's report.
    pub on_batch: Option<BatchCallback>,
    /// Where the worker's metrics are recorded.
    pub metrics: Option<Arc<WorkerMetrics>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions").finish()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Batches committed.
    pub batches: i64,
    /// Rows committed.
    pub rows: i64,
    /// Bad records skipped.
    pub skipped: i64,
    /// Records of a type the pipeline does not read (`recordNames`), skipped.
    pub other_record_types: i64,
    /// Table version at the end.
    pub table_version: Option<i64>,
    /// Offsets deleted by retention before they were read (`onDataLoss: skip`).
    pub lost_offsets: i64,
    /// Rows older than the event-time watermark, dropped.
    pub dropped_by_watermark: i64,
    /// Assignments received: one per rebalance that gave this worker its partitions.
    pub assignments: i64,
}

/// Runs a pipeline until shutdown (or, bounded, until every partition's end offset is
/// committed). Data loss with `onDataLoss: fail` — found when partitions are
/// positioned or at a gap mid-stream — also sets the `DataLoss` condition, and a schema
/// failure the `SchemaError` condition ([`EngineError::condition`]).
pub async fn run(
    loaded: &LoadedPipeline,
    opts: RunOptions,
    progress: ProgressState,
    shutdown: CancellationToken,
) -> Result<RunSummary, EngineError> {
    let result = async {
        let (engine, source, mut assignments) =
            Engine::open(loaded, opts, progress.clone()).await?;
        engine.run(&source, &mut assignments, &shutdown).await
    }
    .await;
    if let Err(e) = &result
        && let (kind @ (WorkerConditionType::DataLoss | WorkerConditionType::SchemaError), reason) =
            e.condition()
    {
        progress.condition(kind, reason, &e.to_string());
    }
    result
}

/// What one turn of the loop asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing more.
    Continue,
    /// Close the open batch (trigger, or a bound reached).
    Close,
    /// A partition's end was reached (a bounded run checks whether all are).
    AtEnd,
    /// Shutdown: close the open batch and stop.
    Stop,
    /// Shutdown while the open batch cannot be closed (its last record not decoded): stop.
    Abandon,
}

/// What the loop keeps of a batch in flight, for its report.
struct Kept {
    batch_id: i64,
    pending: Pending,
    transform: Duration,
    dropped: i64,
    event_time: Option<EventTimeStats>,
    write_started: Instant,
}

/// A batch held to the event-time watermark.
struct Watermarked {
    batch: Option<RecordBatch>,
    /// Rows dropped, older than the watermark.
    dropped: i64,
    /// The watermark the rows were held to (that of the batches before).
    watermark_ms: Option<i64>,
    /// The report's event-time stats.
    stats: Option<EventTimeStats>,
}

/// One worker's pipeline: the stages and the loop's state. The source stays outside (a
/// received record borrows it while the engine changes).
struct Engine {
    plan: Plan,
    query_id: String,
    run_id: String,
    decoder: ValueDecoder<RowMeta>,
    writer: Writer<Kept>,
    sink_description: String,
    /// The sink's partition columns and escaping (rows that cannot be written are bad).
    layout: (Vec<String>, Escaping),
    dead_letters: Option<DeadLetters>,
    checkpoint: Checkpoint,
    progress: ProgressState,
    metrics: Option<Arc<WorkerMetrics>>,
    on_batch: Option<BatchCallback>,
    /// The expected next offset of every held partition.
    positions: Positions,
    /// The positions the sink recorded, as last committed or read.
    committed: BTreeMap<TopicPartition, Option<i64>>,
    /// A bounded run: the end offsets, from the first assignment.
    end: Option<TopicEnds>,
    /// Topics seen so far (rows carry an index into it).
    topics: Vec<String>,
    pending: Pending,
    summary: RunSummary,
    batch_id: i64,
    last_batch_at: Instant,
    /// The largest event time seen (the watermark plus the allowed lateness).
    max_event_ms: Option<i64>,
    /// Records received (kept or dropped); the last stall check's time, count of received
    /// records and of batches.
    received: u64,
    stall_check: (Instant, u64, i64),
}

impl Engine {
    /// Opens the sink, dead letters, checkpoint, decoder and source of a pipeline.
    async fn open(
        loaded: &LoadedPipeline,
        opts: RunOptions,
        progress: ProgressState,
    ) -> Result<(Self, KafkaSource, UnboundedReceiver<Assignment>), EngineError> {
        let plan = Plan::new(loaded);
        let spec = &loaded.pipeline.spec;
        let kafka = &spec.source.kafka;
        let store_opts = storage::options(spec.storage.as_ref(), opts.secrets.as_ref())?;
        let checkpoint_url = storage::url(&spec.checkpoint.uri, &loaded.base_dir)?;
        let run_id = uuid::Uuid::new_v4().to_string();
        let sink = open_sink(loaded, &plan, &store_opts, &checkpoint_url, &run_id).await?;
        let dead_letters =
            open_dead_letters(loaded, &plan, opts.secrets.as_ref(), &store_opts).await?;
        let checkpoint = Checkpoint::open(&checkpoint_url, &store_opts)?;
        let query_id = checkpoint.query_id().await?;
        let batch_id = checkpoint.next_batch_id().await?;
        let registry = crate::format::registry_client(&spec.format, opts.secrets.as_ref())?;
        let add_columns = spec
            .sink
            .delta
            .as_ref()
            .is_some_and(|d| d.schema_evolution == spillway_api::SchemaEvolution::AddColumns);
        // Without `readerSchema`, the reader an earlier run adopted (the table's schema).
        let topic = match spec.source.kafka.topics.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        };
        let decoder = ValueDecoder::new(&spec.format, topic, &loaded.base_dir, registry)
            .await?
            .with_schema_evolution(add_columns)
            .with_adopted_reader(checkpoint.reader_schema().await?);
        // The watermark survives restarts: the last report in the checkpoint carries it.
        let max_event_ms = match (&plan.event_time, checkpoint.last_progress().await?) {
            (Some((_, lateness)), Some(last)) => last
                .event_time
                .and_then(|e| e.watermark)
                .and_then(|w| w.parse::<jiff::Timestamp>().ok())
                .map(|w| {
                    w.as_millisecond()
                        .saturating_add(lateness.as_millis() as i64)
                }),
            _ => None,
        };
        let mut cfg = config::consumer_config(
            kafka,
            &plan.group,
            &format!("spillway-{}", plan.name),
            opts.secrets.as_ref(),
        )?;
        cfg.extend(opts.consumer_overrides.clone());
        let (source, assignments) = KafkaSource::subscribe(kafka, &cfg)?;
        info!(pipeline = %plan.name, group = %plan.group, query_id = %query_id, run_id = %run_id, "pipeline started");
        if let Some(m) = &opts.metrics {
            let interval = if plan.bounded {
                0.0
            } else {
                plan.interval.as_secs_f64()
            };
            m.started(&plan.name, interval);
        }
        progress.status("Waiting for data to arrive", false, false);
        let (partition_by, escaping) = sink.partition_layout();
        let layout = (partition_by.to_vec(), escaping);
        let engine = Self {
            query_id,
            run_id,
            decoder,
            sink_description: sink.description(),
            layout,
            writer: Writer::new(sink).with_watermarks(source.watermark_handle()),
            dead_letters,
            checkpoint,
            progress,
            metrics: opts.metrics,
            on_batch: opts.on_batch,
            positions: Positions::default(),
            committed: BTreeMap::new(),
            end: None,
            topics: Vec::new(),
            pending: Pending::default(),
            summary: RunSummary::default(),
            batch_id,
            last_batch_at: Instant::now(),
            max_event_ms,
            received: 0,
            stall_check: (Instant::now(), 0, 0),
            plan,
        };
        Ok((engine, source, assignments))
    }

    /// The loop: until shutdown, or a bounded run's end; the batch in flight lands first.
    async fn run(
        mut self,
        source: &KafkaSource,
        assignments: &mut UnboundedReceiver<Assignment>,
        shutdown: &CancellationToken,
    ) -> Result<RunSummary, EngineError> {
        let mut tick = tokio::time::interval(self.plan.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Step::Stop,
                Some(a) = assignments.recv() => self.on_assignment(source, a).await?,
                landed = self.writer.landed(), if self.writer.is_writing() => {
                    self.on_landed(source, landed?).await?
                }
                _ = tick.tick() => self.on_tick(source).await?,
                got = source.recv() => match got? {
                    Received::EndOfPartition { .. } => Step::AtEnd,
                    Received::Record(msg) => self.on_record(source, msg, shutdown).await?,
                },
            };
            if self.after(source, step, shutdown).await? {
                break;
            }
        }
        let landed = self.writer.landed().await?;
        self.on_landed(source, landed).await?;
        info!(pipeline = %self.plan.name, batches = self.summary.batches, rows = self.summary.rows, "pipeline stopped");
        Ok(self.summary)
    }

    /// After each turn: closes the open batch when asked (or at a bounded run's end), and
    /// says whether to stop.
    async fn after(
        &mut self,
        source: &KafkaSource,
        step: Step,
        shutdown: &CancellationToken,
    ) -> Result<bool, EngineError> {
        let (close, at_end) = match step {
            Step::Continue => (false, false),
            Step::Close | Step::Stop => (true, false),
            Step::AtEnd => (false, true),
            Step::Abandon => return Ok(true),
        };
        let done = match (&self.end, self.plan.bounded) {
            (Some(e), true) => reached_end(source, &e.ends, &self.positions, at_end || close)?,
            _ => false,
        };
        if (close || done) && !self.pending.next.is_empty() {
            self.close(source).await?;
        }
        if step == Step::Stop {
            return Ok(true);
        }
        if done {
            // This worker's partitions are drained; the run is done only when every
            // partition of the topics is, whoever holds it.
            let landed = self.writer.landed().await?;
            self.on_landed(source, landed).await?;
            let owned: Vec<TopicPartition> =
                self.positions.next_offsets().keys().cloned().collect();
            if let Some(e) = &self.end
                && all_drained(self.writer.sink()?, &self.checkpoint, e, &owned).await?
            {
                return Ok(true);
            }
            self.progress.status(
                "Waiting for the other workers to drain their partitions",
                false,
                false,
            );
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(true),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        Ok(false)
    }

    async fn on_assignment(
        &mut self,
        source: &KafkaSource,
        assignment: Assignment,
    ) -> Result<Step, EngineError> {
        match assignment {
            Assignment::Assigned(tps) => self.on_assigned(source, &tps).await?,
            Assignment::Revoked(tps) => {
                info!(partitions = tps.len(), "partitions revoked");
                self.positions.stop(&tps);
                // The open batch may hold revoked partitions: abandon it (the sink still
                // records their old positions, so they are read again by their new owner).
                // A batch in flight lands or is fenced.
                let _ = self.decoder.finish()?;
                self.pending = Pending::default();
            }
        }
        Ok(Step::Continue)
    }

    /// A new assignment: the batch in flight lands, then the partitions are claimed and
    /// assigned at the sink's positions (else where the checkpoint recorded their start).
    async fn on_assigned(
        &mut self,
        source: &KafkaSource,
        tps: &[TopicPartition],
    ) -> Result<(), EngineError> {
        let landed = self.writer.landed().await?;
        self.on_landed(source, landed).await?;
        self.summary.assignments += 1;
        let sink = self.writer.sink()?;
        sink.claim(tps).await?;
        let sink_next = sink.positions(tps).await?;
        let report = resolve_start(source, &self.checkpoint, tps, &sink_next).await?;
        source.assign_at(&report.next)?;
        if report.lost > 0 {
            self.summary.lost_offsets += report.lost;
            self.pending.lost += report.lost;
            if let Some(m) = &self.metrics {
                m.data_loss(&self.plan.name, report.lost);
            }
        }
        self.positioned(tps, &report.next, &sink_next);
        if self.plan.bounded && self.end.is_none() {
            self.end = Some(
                topic_ends(
                    source,
                    &self.checkpoint,
                    self.plan.ending_offsets,
                    self.plan.topics.as_deref(),
                    tps,
                )
                .await?,
            );
        }
        info!(partitions = tps.len(), "partitions assigned and positioned");
        Ok(())
    }

    /// The held partitions are now `tps`, expected at `next`; the sink records `sink_next`.
    fn positioned(
        &mut self,
        tps: &[TopicPartition],
        next: &BTreeMap<TopicPartition, i64>,
        sink_next: &BTreeMap<TopicPartition, i64>,
    ) {
        self.positions = Positions::default();
        self.positions.start(next);
        self.committed = tps
            .iter()
            .map(|tp| (tp.clone(), sink_next.get(tp).copied()))
            .collect();
    }

    /// The trigger: close the open batch; re-seek partitions that stalled.
    async fn on_tick(&mut self, source: &KafkaSource) -> Result<Step, EngineError> {
        if self.stall_check.0.elapsed() >= STALL_AFTER {
            if self.received == self.stall_check.1 {
                unstick(source, &self.positions).await?;
            } else if self.summary.batches == self.stall_check.2 && self.pending.records == 0 {
                // Records arrive but none is kept: say what the loop expects.
                warn!(
                    received = self.received - self.stall_check.1,
                    expected = ?self.positions.next_offsets().iter().map(|(tp, o)| format!("{tp}@{o}")).collect::<Vec<_>>(),
                    "records received but none kept"
                );
            }
            self.stall_check = (Instant::now(), self.received, self.summary.batches);
        }
        Ok(Step::Close)
    }

    /// A record: checked against the partition's position (dropped, or a gap judged for
    /// data loss), decoded into the open batch (a bad one handled by `onBadRecord`).
    async fn on_record(
        &mut self,
        source: &KafkaSource,
        msg: BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Step, EngineError> {
        self.received += 1;
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        if let Some(end) = self.end.as_ref().and_then(|e| e.end_of(topic, partition))
            && offset >= end
        {
            // A bounded run reads up to its end offsets, never past them.
            return Ok(Step::AtEnd);
        }
        match self.positions.accept(topic, partition, offset) {
            Accept::Keep => {}
            Accept::Drop | Accept::NotPositioned => return Ok(Step::Continue),
            Accept::Gap { expected } => {
                self.gap(source, topic, partition, offset, expected).await?
            }
        }
        let bytes = (msg.payload_len() + msg.key_len()) as i64;
        if self.pending.overflows(bytes, self.plan.max_bytes) {
            self.reread_later(source, topic, partition, offset).await?;
            return Ok(Step::Close);
        }
        let topic_idx = match self.topics.iter().position(|t| t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        };
        self.pending.record(topic, partition, offset);
        self.pending.bytes += bytes;
        if self.pending.records == 1 {
            self.progress
                .status("Waiting for next trigger", true, false);
        }
        let meta = self.row_meta(&msg, topic_idx as u16);
        let started = Instant::now();
        let waited = waiting::decode_waiting(
            &mut self.decoder,
            msg.payload(),
            meta,
            source,
            self.positions.next_offsets(),
            shutdown,
        )
        .await?;
        let Some(outcome) = waited else {
            // Stopped while the registry was out: the open batch, this record included, is
            // abandoned (nothing past the sink's positions is lost).
            let _ = self.decoder.finish()?;
            self.pending = Pending::default();
            return Ok(Step::Abandon);
        };
        self.pending.decode += started.elapsed();
        if let Err(crate::format::BadRecord::OtherRecordType { .. }) = &outcome {
            self.pending.other_types += 1;
        } else if let Err(bad) = outcome {
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            let (reason, message) = (bad.reason(), bad.to_string());
            handle_bad(
                self.plan.policy,
                &tp,
                offset,
                (reason, &message),
                &mut self.pending,
            )?;
            if self.dead_letters.is_some() {
                self.pending.dead.push(DeadRecord {
                    tp,
                    offset,
                    key: msg.key().map(<[u8]>::to_vec),
                    value: msg.payload().map(<[u8]>::to_vec),
                    class: reason,
                    message,
                });
            }
        }
        if self.pending.records >= self.plan.max_records
            || self.pending.bytes >= self.plan.max_bytes
        {
            return Ok(Step::Close);
        }
        Ok(Step::Continue)
    }

    /// The open batch closes without this record, which is read again from the broker for
    /// the next one (a seek drops what was fetched past it).
    async fn reread_later(
        &mut self,
        source: &KafkaSource,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), EngineError> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        self.positions.stop(std::slice::from_ref(&tp));
        let at = BTreeMap::from([(tp, offset)]);
        if source.seek(&at).await?.is_empty() {
            self.positions.start(&at);
        } else {
            warn!(?at, "a partition being revoked was not repositioned");
        }
        Ok(())
    }

    /// A record's Kafka metadata, with the key and headers only when a column needs them.
    fn row_meta(&self, msg: &BorrowedMessage<'_>, topic: u16) -> RowMeta {
        RowMeta {
            topic,
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: match msg.timestamp() {
                Timestamp::CreateTime(t) => Some((t, false)),
                Timestamp::LogAppendTime(t) => Some((t, true)),
                Timestamp::NotAvailable => None,
            },
            key: if self.plan.want_key {
                msg.key().map(<[u8]>::to_vec)
            } else {
                None
            },
            // Not rdkafka's accessor: it panics on a name that is not UTF-8.
            headers: self
                .plan
                .want_headers
                .then(|| spillway_kafka_headers::headers(msg)),
        }
    }

    /// A record past the expected offset: lost to retention up to the log start (or up to
    /// this record if the log start moved past it since it was fetched), else a legitimate
    /// gap (compaction, transaction markers).
    async fn gap(
        &mut self,
        source: &KafkaSource,
        topic: &str,
        partition: i32,
        offset: i64,
        expected: i64,
    ) -> Result<(), EngineError> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        let low = source.watermarks(&tp).await?.0.min(offset);
        if low > expected {
            if self.plan.on_data_loss == OnDataLoss::Fail {
                return Err(SourceError::DataLoss {
                    tp,
                    from: expected,
                    to: low,
                }
                .into());
            }
            warn!(%tp, from = expected, to = low, "data loss: skipped offsets deleted by retention");
            self.summary.lost_offsets += low - expected;
            self.pending.lost += low - expected;
            if let Some(m) = &self.metrics {
                m.data_loss(&self.plan.name, low - expected);
            }
        }
        self.positions.advance(topic, partition, offset);
        Ok(())
    }

    /// Closes the open batch: the one in flight lands first (one at a time, in order), then
    /// this one is sealed and handed to the sink.
    async fn close(&mut self, source: &KafkaSource) -> Result<(), EngineError> {
        if self.writer.is_writing() {
            let landed = self.writer.landed().await?;
            self.on_landed(source, landed).await?;
            if self.pending.next.is_empty() {
                // The one in flight was fenced: this one, which followed it, is abandoned.
                return Ok(());
            }
        }
        self.progress.status("Processing new data", true, true);
        let (batch, kept) = self.seal().await?;
        self.writer.start(batch, kept)
    }

    /// The open batch through the stages: decoded rows, metadata columns, `transform.sql`,
    /// rows whose partition directory cannot be written (bad records, not a failed write),
    /// the event-time watermark; its dead letters made durable before it is committed.
    async fn seal(&mut self) -> Result<(SinkBatch, Kept), EngineError> {
        let mut pending = std::mem::take(&mut self.pending);
        // The reader adopted without `readerSchema` is kept before the batch decoded with
        // it commits: after a restart it stays the reader, whatever writer comes first.
        if let Some(reader) = self.decoder.take_changed_adopted_reader() {
            self.checkpoint.write_reader_schema(&reader).await?;
        }
        let (batch, meta) = match self.decoder.finish()? {
            Some((b, meta)) => (
                Some(metadata::with_metadata(
                    b,
                    &meta,
                    &self.topics,
                    &self.plan.cols,
                )?),
                meta,
            ),
            None => (None, Vec::new()),
        };
        let transform_started = Instant::now();
        let batch = match (batch, &self.plan.sql) {
            (Some(b), Some(t)) => Some(t.apply(b).await?),
            (b, _) => b,
        };
        let transform = transform_started.elapsed();
        let batch = match batch {
            Some(b) => {
                let rows_meta = self.plan.sql.is_none().then_some(meta.as_slice());
                let layout = (self.layout.0.as_slice(), self.layout.1);
                let (kept, unwritable) =
                    partition_guard::take_unwritable(b, rows_meta, &self.topics, layout)?;
                for d in unwritable {
                    handle_bad(
                        self.plan.policy,
                        &d.tp,
                        d.offset,
                        (d.class, &d.message),
                        &mut pending,
                    )?;
                    if self.dead_letters.is_some() {
                        pending.dead.push(d);
                    }
                }
                Some(kept)
            }
            None => None,
        };
        let Watermarked {
            batch,
            dropped,
            watermark_ms,
            stats: event_time,
        } = self.event_time(batch)?;
        if let Some(d) = &mut self.dead_letters {
            // Dead letters are durable before the batch that skips them commits.
            d.write(&pending.dead, &pending.next).await?;
        }
        let ranges = pending.ranges(&self.committed);
        let kept = Kept {
            batch_id: self.batch_id,
            pending,
            transform,
            dropped,
            event_time,
            write_started: Instant::now(),
        };
        let batch = SinkBatch {
            rows: batch,
            ranges,
            watermark_ms,
        };
        Ok((batch, kept))
    }

    /// Event time: rows older than the watermark of the batches before this one are dropped
    /// (Spark's semantics); then this batch's maximum moves the watermark.
    fn event_time(&mut self, batch: Option<RecordBatch>) -> Result<Watermarked, EngineError> {
        let Some((column, lateness)) = &self.plan.event_time else {
            return Ok(Watermarked {
                batch,
                dropped: 0,
                watermark_ms: None,
                stats: None,
            });
        };
        let lateness = lateness.as_millis() as i64;
        let watermark = self.max_event_ms.map(|m| m.saturating_sub(lateness));
        let (batch, dropped) = match (batch, watermark) {
            (Some(b), Some(wm)) => {
                let (kept, n) = metadata::drop_before(&b, column, wm)?;
                (Some(kept), n)
            }
            (b, _) => (b, 0),
        };
        let stats = match &batch {
            Some(b) => metadata::event_time_millis(b, column)?,
            None => None,
        };
        if let Some((_, max, _)) = stats {
            self.max_event_ms = Some(self.max_event_ms.map_or(max, |m| m.max(max)));
        }
        let after = self.max_event_ms.map(|m| m.saturating_sub(lateness));
        Ok(Watermarked {
            batch,
            dropped,
            watermark_ms: watermark,
            stats: Some(metadata::event_time_stats(stats, after)),
        })
    }

    /// A batch landed: reported when committed; when another writer owns some of its
    /// partitions (fenced), it and the open batch after it are abandoned and the
    /// partitions re-read from the sink.
    async fn on_landed(
        &mut self,
        source: &KafkaSource,
        landed: Option<Landed<Kept>>,
    ) -> Result<Step, EngineError> {
        let Some(Landed {
            kept,
            result,
            latest,
        }) = landed
        else {
            return Ok(Step::Continue);
        };
        self.summary.skipped += kept.pending.bad;
        self.summary.other_record_types += kept.pending.other_types;
        match result {
            Ok(c) => {
                // Version -1: no rows and no table yet, so nothing was recorded.
                if c.version >= 0 {
                    for (tp, o) in &kept.pending.next {
                        self.committed.insert(tp.clone(), Some(*o));
                    }
                }
                let r = self.report(source, kept, c, latest).await?;
                self.record_report(r);
            }
            Err(e) if e.is_fenced() => {
                warn!("another writer owns some partitions: batch abandoned, positions re-read");
                if let Some(m) = &self.metrics {
                    m.batch_outcome(&self.plan.name, "abandoned");
                }
                self.reposition(source).await?;
            }
            Err(e) => return Err(e.into()),
        }
        if self.pending.records > 0 {
            self.progress
                .status("Waiting for next trigger", true, false);
        } else {
            self.progress
                .status("Waiting for data to arrive", false, false);
        }
        Ok(Step::Continue)
    }

    /// After a fenced batch: the open batch is abandoned and the held partitions are moved,
    /// by a seek (never a re-assign: a zombie's group is often revoking them right now),
    /// to where the sink records them.
    async fn reposition(&mut self, source: &KafkaSource) -> Result<(), EngineError> {
        let _ = self.decoder.finish()?;
        self.pending = Pending::default();
        let tps: Vec<TopicPartition> = self.committed.keys().cloned().collect();
        let sink_next = self.writer.sink()?.positions(&tps).await?;
        let mut report = resolve_start(source, &self.checkpoint, &tps, &sink_next).await?;
        for tp in source.seek(&report.next).await? {
            report.next.remove(&tp);
        }
        self.positioned(&tps, &report.next, &sink_next);
        Ok(())
    }

    /// The report of a committed batch, as Spark's `StreamingQueryProgress`, kept in the
    /// checkpoint; the group's offsets are committed too (for lag tools).
    async fn report(
        &mut self,
        source: &KafkaSource,
        kept: Kept,
        c: Committed,
        latest: BTreeMap<TopicPartition, i64>,
    ) -> Result<StreamingQueryProgress, EngineError> {
        let Kept {
            batch_id,
            pending,
            transform,
            dropped,
            event_time,
            write_started,
        } = kept;
        let write = write_started.elapsed();
        let commit_started = Instant::now();
        if let Err(e) = source.commit_group(&pending.next) {
            warn!(error = %e, "offset commit to the consumer group failed (the sink stays the source of truth)");
        }
        let triggered = pending.opened.unwrap_or(write_started);
        let total = triggered.elapsed();
        let secs = total.as_secs_f64().max(1e-6);
        let since_last = self.last_batch_at.elapsed().as_secs_f64().max(1e-6);
        let duration_ms = BTreeMap::from([
            ("decode".to_string(), pending.decode.as_millis() as i64),
            (
                "fetch".to_string(),
                total
                    .saturating_sub(pending.decode + transform + write)
                    .as_millis() as i64,
            ),
            ("transform".to_string(), transform.as_millis() as i64),
            ("write".to_string(), write.as_millis() as i64),
        ]);
        let mut metrics = sink_metrics(&pending);
        metrics.extend(c.metrics);
        let mut report = StreamingQueryProgress {
            id: self.query_id.clone(),
            run_id: self.run_id.clone(),
            name: Some(self.plan.name.clone()),
            batch_id,
            timestamp: jiff::Timestamp::now().to_string(),
            num_input_rows: pending.records,
            input_rows_per_second: pending.records as f64 / since_last,
            processed_rows_per_second: pending.records as f64 / secs,
            duration_ms,
            sources: vec![SourceProgress {
                description: source.description(),
                start_offset: offsets(&pending.start),
                end_offset: offsets(&pending.next),
                latest_offset: offsets(&latest),
                num_input_rows: pending.records,
                input_rows_per_second: pending.records as f64 / since_last,
                processed_rows_per_second: pending.records as f64 / secs,
                metrics: source_metrics(&pending, &latest),
            }],
            sink: SinkProgress {
                description: self.sink_description.clone(),
                num_output_rows: c.rows,
                table_version: Some(c.version),
                metrics,
            },
            event_time,
            num_rows_dropped_by_watermark: dropped,
        };
        self.checkpoint.write_progress(&report).await?;
        report
            .duration_ms
            .insert("commit".into(), commit_started.elapsed().as_millis() as i64);
        report.duration_ms.insert(
            "triggerExecution".into(),
            triggered.elapsed().as_millis() as i64,
        );
        info!(
            batch_id,
            rows = c.rows,
            records = pending.records,
            bad = pending.bad,
            version = c.version,
            "batch committed"
        );
        Ok(report)
    }

    /// A committed batch's report into the summary, metrics, callback and `/progress`.
    fn record_report(&mut self, r: StreamingQueryProgress) {
        self.summary.batches += 1;
        self.summary.rows += r.sink.num_output_rows;
        self.summary.dropped_by_watermark += r.num_rows_dropped_by_watermark;
        self.summary.table_version = r.sink.table_version;
        self.last_batch_at = Instant::now();
        self.batch_id += 1;
        let lag = r.sources.first().map(|s| {
            s.latest_offset
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |(p, h)| (t, p, h)))
                .map(|(t, p, h)| {
                    h - s
                        .end_offset
                        .get(t)
                        .and_then(|x| x.get(p))
                        .copied()
                        .unwrap_or(*h)
                })
                .filter(|l| *l > 0)
                .sum::<i64>()
        });
        if let Some(m) = &self.metrics {
            m.observe(&self.plan.name, &r);
        }
        if let Some(cb) = &self.on_batch {
            cb(&r);
        }
        self.progress.report(r, lag);
    }
}

/// The pipeline's sink: a Delta table (append or merge) or a Parquet dataset.
async fn open_sink(
    loaded: &LoadedPipeline,
    plan: &Plan,
    store_opts: &std::collections::HashMap<String, String>,
    checkpoint_url: &url::Url,
    run_id: &str,
) -> Result<Sink, EngineError> {
    let spec = &loaded.pipeline.spec;
    Ok(match (&spec.sink.delta, &spec.sink.parquet) {
        (Some(d), _) => {
            let sink = DeltaSink::open(
                &storage::url(&d.uri, &loaded.base_dir)?,
                store_opts.clone(),
                &plan.group,
                d.partition_by.clone(),
            )
            .await?
            .with_add_columns(d.schema_evolution == spillway_api::SchemaEvolution::AddColumns);
            Sink::Delta(Box::new(match (d.mode, &d.merge) {
                (spillway_api::DeltaMode::Merge, Some(m)) => {
                    sink.with_merge(crate::sink::delta::MergeSettings {
                        keys: m.keys.clone(),
                        order_by: m.order_by.clone(),
                    })
                }
                _ => sink,
            }))
        }
        (None, Some(pq)) => Sink::Parquet(Box::new(
            ParquetSink::open(
                &storage::url(&pq.uri, &loaded.base_dir)?,
                checkpoint_url,
                store_opts,
                pq.partition_by.clone(),
                pq.compression,
                run_id,
            )
            .await
            .map_err(SinkError::from)?,
        )),
        (None, None) => return Err(EngineError::Unsupported("a sink without delta or parquet")),
    })
}

/// The dead-letter destination with `onBadRecord: deadLetter`: a Kafka topic or a Delta
/// table.
async fn open_dead_letters(
    loaded: &LoadedPipeline,
    plan: &Plan,
    secrets: &dyn SecretSource,
    store_opts: &std::collections::HashMap<String, String>,
) -> Result<Option<DeadLetters>, EngineError> {
    let spec = &loaded.pipeline.spec;
    let Some(d) = spec.errors.as_ref().and_then(|e| e.dead_letter.as_ref()) else {
        return Ok(None);
    };
    if plan.policy != OnBadRecord::DeadLetter {
        return Ok(None);
    }
    Ok(Some(match (&d.kafka, &d.delta) {
        (Some(k), _) => {
            let kafka = &spec.source.kafka;
            let mut cc = rdkafka::ClientConfig::new();
            let mut security = BTreeMap::new();
            config::security(kafka, secrets, &mut security)?;
            cc.set("bootstrap.servers", &kafka.bootstrap_servers)
                .set("message.timeout.ms", "30000");
            for (key, v) in &security {
                cc.set(key, v);
            }
            DeadLetters::Kafka {
                producer: cc.create().map_err(SourceError::from)?,
                topic: k.topic.clone(),
            }
        }
        (None, Some(t)) => {
            let url = storage::url(&t.uri, &loaded.base_dir)?;
            DeadLetters::Delta(Box::new(
                DeltaSink::open(
                    &url,
                    store_opts.clone(),
                    &format!("{}-dlq", plan.group),
                    vec![],
                )
                .await?,
            ))
        }
        (None, None) => {
            return Err(EngineError::Unsupported(
                "a dead-letter destination without kafka or delta",
            ));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_conditions_the_operator_reads() {
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let lost = EngineError::Source(SourceError::DataLoss {
            tp: tp.clone(),
            from: 0,
            to: 5,
        });
        assert_eq!(
            lost.condition(),
            (WorkerConditionType::DataLoss, "DataLoss")
        );
        let bad = |reason| EngineError::BadRecord {
            tp: tp.clone(),
            offset: 7,
            reason,
            message: "m".into(),
        };
        for reason in ["SchemaIncompatible", "UnknownSchemaId"] {
            assert_eq!(
                bad(reason).condition(),
                (WorkerConditionType::SchemaError, "SchemaError")
            );
        }
        assert_eq!(
            bad("Decode").condition(),
            (WorkerConditionType::Failed, "BadRecord")
        );
        let schema = EngineError::Format(FormatError::SchemaSource {
            what: "writer".into(),
            message: "no such file".into(),
        });
        assert_eq!(
            schema.condition(),
            (WorkerConditionType::SchemaError, "SchemaError")
        );
        assert_eq!(
            EngineError::Unsupported("x").condition(),
            (WorkerConditionType::Failed, "Unsupported")
        );
    }
}
