//! The micro-batch loop: source → decode → (metadata columns) → sink → commit → progress.
//!
//! One readable function driven by `tokio::select!` over shutdown, assignment changes, the
//! trigger and the consumer. Stages do their work; the loop records progress.

pub mod dead_letter;
pub mod metadata;
pub mod partition_guard;
pub mod transform;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Message, Timestamp};
use spillway_api::{
    MetadataColumn, OnBadRecord, OnDataLoss, SinkProgress, SourceProgress, StreamingQueryProgress,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::format::{BadRecord, FormatError, ValueDecoder};
use crate::manifest::LoadedPipeline;
use crate::secrets::SecretSource;
use crate::serve::metrics::WorkerMetrics;
use crate::serve::progress::{ProgressState, WorkerConditionType};
use crate::sink::delta::{DeltaSink, DeltaSinkError};
use crate::sink::parquet::ParquetSink;
use crate::sink::{Sink, SinkError};
use crate::source::{
    Accept, Assignment, KafkaSource, Positions, Received, SourceError, TopicPartition, config,
    end_reached,
};
use crate::storage::{self, StorageError};
use dead_letter::{DeadLetters, DeadRecord};
use metadata::RowMeta;

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
    /// Table version at the end.
    pub table_version: Option<i64>,
    /// Offsets deleted by retention before they were read (`onDataLoss: skip`).
    pub lost_offsets: i64,
    /// Rows older than the event-time watermark, dropped.
    pub dropped_by_watermark: i64,
    /// Assignments received: one per rebalance that gave this worker its partitions.
    pub assignments: i64,
}

/// The open micro-batch.
#[derive(Default)]
struct Pending {
    start: BTreeMap<TopicPartition, i64>,
    next: BTreeMap<TopicPartition, i64>,
    records: i64,
    /// Key and value bytes of the records so far (`maxBytesPerBatch`).
    bytes: i64,
    bad: i64,
    opened: Option<Instant>,
    decode: Duration,
    dead: Vec<DeadRecord>,
    /// Bad records by reason.
    reasons: BTreeMap<&'static str, i64>,
    /// Offsets lost to retention since the last batch.
    lost: i64,
}

impl Pending {
    /// Notes a record; allocates only for a partition new to this batch (hot path).
    fn record(&mut self, topic: &str, partition: i32, offset: i64) {
        match self
            .next
            .iter_mut()
            .find(|(tp, _)| tp.partition == partition && tp.topic == topic)
        {
            Some((_, next)) => *next = offset + 1,
            None => {
                let tp = TopicPartition {
                    topic: topic.to_string(),
                    partition,
                };
                self.start.insert(tp.clone(), offset);
                self.next.insert(tp, offset + 1);
            }
        }
        self.records += 1;
        self.opened.get_or_insert_with(Instant::now);
    }

    /// Whether a record of `bytes` would take a batch that has records past `cap`: the batch
    /// closes first. A record larger than `cap` thus goes through in a batch of its own.
    fn overflows(&self, bytes: i64, cap: i64) -> bool {
        self.records > 0 && self.bytes + bytes > cap
    }
}

fn offsets(m: &BTreeMap<TopicPartition, i64>) -> spillway_api::TopicOffsets {
    let mut out = spillway_api::TopicOffsets::new();
    for (tp, o) in m {
        out.entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition.to_string(), *o);
    }
    out
}

/// Runs a pipeline until shutdown (or, with `availableNow`, until the end offsets seen at
/// start are committed). Data loss with `onDataLoss: fail` — found when partitions are
/// positioned or at a gap mid-stream — also sets the `DataLoss` condition, and a schema
/// failure the `SchemaError` condition ([`EngineError::condition`]).
pub async fn run(
    loaded: &LoadedPipeline,
    opts: RunOptions,
    progress: ProgressState,
    shutdown: CancellationToken,
) -> Result<RunSummary, EngineError> {
    let result = run_loop(loaded, opts, progress.clone(), shutdown).await;
    if let Err(e) = &result
        && let (kind @ (WorkerConditionType::DataLoss | WorkerConditionType::SchemaError), reason) =
            e.condition()
    {
        progress.condition(kind, reason, &e.to_string());
    }
    result
}

/// `availableNow`: whether every partition reached its end offset. The consumer's position
/// (which moves past transaction markers the loop never sees) is asked only when
/// `ask_consumer` — at a partition's end or a trigger — not for every record.
fn reached_end(
    source: &KafkaSource,
    end: &BTreeMap<TopicPartition, i64>,
    positions: &Positions,
    ask_consumer: bool,
) -> Result<bool, SourceError> {
    let next = positions.next_offsets();
    if end_reached(end, next, &BTreeMap::new()) {
        return Ok(true);
    }
    Ok(ask_consumer && end_reached(end, next, &source.consumed()?))
}

async fn run_loop(
    loaded: &LoadedPipeline,
    opts: RunOptions,
    progress: ProgressState,
    shutdown: CancellationToken,
) -> Result<RunSummary, EngineError> {
    let p = &loaded.pipeline;
    let spec = &p.spec;
    let name = p.metadata.name.clone().unwrap_or_default();
    let namespace = p
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let kafka = &spec.source.kafka;
    let group = kafka.effective_group_id(&namespace, &name);
    let sql = spec
        .transform
        .as_ref()
        .and_then(|t| t.sql.as_deref())
        .map(transform::SqlTransform::new);
    let policy = spec
        .errors
        .as_ref()
        .map_or(OnBadRecord::Fail, |e| e.on_bad_record);
    let cols: Vec<MetadataColumn> = spec
        .transform
        .as_ref()
        .map(|t| t.metadata_columns.clone())
        .unwrap_or_default();
    let want_key = cols.contains(&MetadataColumn::Key);
    let want_headers = cols.contains(&MetadataColumn::Headers);
    let trigger = spec.effective_trigger();
    let available_now = trigger.is_available_now();
    // A zero interval is refused by validation; never let one reach `tokio::time::interval`.
    let interval = spillway_api::validate::parse_duration(trigger.effective_interval())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(10));
    let max_records = kafka.max_records_per_batch;
    let max_bytes = kafka.max_bytes_per_batch;

    let store_opts = storage::options(spec.storage.as_ref(), opts.secrets.as_ref())?;
    let checkpoint_url = storage::url(&spec.checkpoint.uri, &loaded.base_dir)?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut sink = match (&spec.sink.delta, &spec.sink.parquet) {
        (Some(d), _) => Sink::Delta(Box::new({
            let sink = DeltaSink::open(
                &storage::url(&d.uri, &loaded.base_dir)?,
                store_opts.clone(),
                &group,
                d.partition_by.clone(),
            )
            .await?
            .with_add_columns(d.schema_evolution == spillway_api::SchemaEvolution::AddColumns);
            match (d.mode, &d.merge) {
                (spillway_api::DeltaMode::Merge, Some(m)) => {
                    sink.with_merge(crate::sink::delta::MergeSettings {
                        keys: m.keys.clone(),
                        order_by: m.order_by.clone(),
                    })
                }
                _ => sink,
            }
        })),
        (None, Some(pq)) => Sink::Parquet(Box::new(
            ParquetSink::open(
                &storage::url(&pq.uri, &loaded.base_dir)?,
                &checkpoint_url,
                &store_opts,
                pq.partition_by.clone(),
                pq.compression,
                &run_id,
            )
            .await
            .map_err(SinkError::from)?,
        )),
        (None, None) => return Err(EngineError::Unsupported("a sink without delta or parquet")),
    };
    let mut dead_letters = match (
        policy,
        spec.errors.as_ref().and_then(|e| e.dead_letter.as_ref()),
    ) {
        (OnBadRecord::DeadLetter, Some(d)) => Some(match (&d.kafka, &d.delta) {
            (Some(k), _) => {
                let mut cc = rdkafka::ClientConfig::new();
                let mut security = BTreeMap::new();
                config::security(kafka, opts.secrets.as_ref(), &mut security)?;
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
                    DeltaSink::open(&url, store_opts.clone(), &format!("{group}-dlq"), vec![])
                        .await?,
                ))
            }
            (None, None) => {
                return Err(EngineError::Unsupported(
                    "a dead-letter destination without kafka or delta",
                ));
            }
        }),
        _ => None,
    };
    let checkpoint = Checkpoint::open(&checkpoint_url, &store_opts)?;
    let id = checkpoint.query_id().await?;
    let mut batch_id = checkpoint.next_batch_id().await?;

    let registry = crate::format::registry_client(&spec.format.avro, opts.secrets.as_ref())?;
    let add_columns = spec
        .sink
        .delta
        .as_ref()
        .is_some_and(|d| d.schema_evolution == spillway_api::SchemaEvolution::AddColumns);
    // Without `readerSchema`, the reader an earlier run adopted (the table's schema).
    let mut decoder: ValueDecoder<RowMeta> =
        ValueDecoder::new(&spec.format.avro, &loaded.base_dir, registry)
            .await?
            .with_schema_evolution(add_columns)
            .with_adopted_reader(checkpoint.reader_schema().await?);
    let mut cfg = config::consumer_config(
        kafka,
        &group,
        &format!("spillway-{name}"),
        opts.secrets.as_ref(),
    )?;
    cfg.extend(opts.consumer_overrides.clone());
    let (source, mut assignments) = KafkaSource::subscribe(kafka, &cfg)?;
    info!(pipeline = %name, group = %group, query_id = %id, run_id = %run_id, "pipeline started");
    let metrics = opts.metrics.clone();
    if let Some(m) = &metrics {
        m.started(
            &name,
            if available_now {
                0.0
            } else {
                interval.as_secs_f64()
            },
        );
    }
    let event_time = spec.event_time.as_ref().map(|e| {
        (
            e.column.clone(),
            spillway_api::validate::parse_duration(&e.allowed_lateness)
                .unwrap_or_default()
                .min(spillway_api::validate::MAX_ALLOWED_LATENESS),
        )
    });
    // The watermark survives restarts: the last report in the checkpoint carries it.
    let mut max_event_ms: Option<i64> = match (&event_time, checkpoint.last_progress().await?) {
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
    progress.status("Waiting for data to arrive", false, false);

    let mut positions = Positions::default();
    let mut committed: BTreeMap<TopicPartition, Option<i64>> = BTreeMap::new();
    let mut end: Option<TopicEnds> = None;
    let mut topics: Vec<String> = Vec::new();
    let mut pending = Pending::default();
    let mut summary = RunSummary::default();
    let mut last_batch_at = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;

    'poll: loop {
        let mut close = false;
        let mut stop = false;
        let mut at_end = false;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => { close = true; stop = true; }
            Some(a) = assignments.recv() => match a {
                Assignment::Assigned(tps) => {
                    summary.assignments += 1;
                    sink.claim(&tps).await?;
                    let sink_next = sink.positions(&tps).await?;
                    let report = resolve_start(&source, &checkpoint, &tps, &sink_next).await?;
                    source.assign_at(&report.next)?;
                    if report.lost > 0 {
                        summary.lost_offsets += report.lost;
                        pending.lost += report.lost;
                        if let Some(m) = &metrics { m.data_loss(&name, report.lost); }
                    }
                    positions = Positions::default();
                    positions.start(&report.next);
                    committed = tps.iter().map(|tp| (tp.clone(), sink_next.get(tp).copied())).collect();
                    if available_now && end.is_none() {
                        end = Some(topic_ends(&source, kafka.topics.as_deref(), &tps).await?);
                    }
                    info!(partitions = tps.len(), "partitions assigned and positioned");
                }
                Assignment::Revoked(tps) => {
                    positions.stop(&tps);
                    // The open batch may hold revoked partitions: abandon it (the sink still
                    // records their old positions, so they are read again by their new owner).
                    let _ = decoder.finish()?;
                    pending = Pending::default();
                }
            },
            _ = tick.tick() => { close = true; }
            received = source.recv() => match received? {
                Received::EndOfPartition { .. } => { at_end = true; }
                Received::Record(msg) => 'record: {
                    let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
                    match positions.accept(topic, partition, offset) {
                        Accept::Keep => {}
                        Accept::Drop | Accept::NotPositioned => continue 'poll,
                        Accept::Gap { expected } => {
                            let tp = TopicPartition { topic: topic.to_string(), partition };
                            // Lost: up to the log start, or up to this record if the
                            // log start moved past it since it was fetched.
                            let low = source.watermarks(&tp).await?.0.min(offset);
                            if low > expected {
                                if kafka.on_data_loss == OnDataLoss::Fail {
                                    return Err(SourceError::DataLoss { tp, from: expected, to: low }.into());
                                }
                                warn!(%tp, from = expected, to = low, "data loss: skipped offsets deleted by retention");
                                summary.lost_offsets += low - expected;
                                pending.lost += low - expected;
                                if let Some(m) = &metrics { m.data_loss(&name, low - expected); }
                            }
                            positions.advance(topic, partition, offset);
                        }
                    }
                    let bytes = (msg.payload_len() + msg.key_len()) as i64;
                    if pending.overflows(bytes, max_bytes) {
                        // Close the batch without this record and read it again from the
                        // broker for the next one (a seek drops what was fetched past it).
                        let tp = TopicPartition { topic: topic.to_string(), partition };
                        positions.stop(std::slice::from_ref(&tp));
                        let at = BTreeMap::from([(tp, offset)]);
                        if source.seek(&at).await?.is_empty() {
                            positions.start(&at);
                        } else {
                            warn!(?at, "a partition being revoked was not repositioned");
                        }
                        close = true;
                        break 'record;
                    }
                    let topic_idx = match topics.iter().position(|t| t == topic) {
                        Some(i) => i,
                        None => { topics.push(topic.to_string()); topics.len() - 1 }
                    };
                    pending.record(topic, partition, offset);
                    pending.bytes += bytes;
                    if pending.records == 1 {
                        progress.status("Waiting for next trigger", true, false);
                    }
                    let meta = RowMeta {
                        topic: topic_idx as u16,
                        partition,
                        offset,
                        timestamp: match msg.timestamp() {
                            Timestamp::CreateTime(t) => Some((t, false)),
                            Timestamp::LogAppendTime(t) => Some((t, true)),
                            Timestamp::NotAvailable => None,
                        },
                        key: if want_key { msg.key().map(<[u8]>::to_vec) } else { None },
                        headers: if want_headers {
                            // Not rdkafka's accessor: it panics on a name that is not UTF-8.
                            Some(spillway_kafka_headers::headers(&msg))
                        } else { None },
                    };
                    let started = Instant::now();
                    let waited = decode_waiting(
                        &mut decoder, msg.payload(), meta, &source, positions.next_offsets(), &shutdown,
                    ).await?;
                    let Some(outcome) = waited else {
                        // Stopped while the registry was out: the open batch, this record
                        // included, is abandoned (nothing past the sink's positions is lost).
                        let _ = decoder.finish()?;
                        break 'poll;
                    };
                    pending.decode += started.elapsed();
                    if let Err(bad) = outcome {
                        let tp = TopicPartition { topic: topic.to_string(), partition };
                        handle_bad(policy, &tp, offset, (bad.reason(), &bad.to_string()), &mut pending)?;
                        if dead_letters.is_some() {
                            pending.dead.push(DeadRecord {
                                tp: tp.clone(),
                                offset,
                                key: msg.key().map(<[u8]>::to_vec),
                                value: msg.payload().map(<[u8]>::to_vec),
                                class: bad.reason(),
                                message: bad.to_string(),
                            });
                        }
                    }
                    if pending.records >= max_records || pending.bytes >= max_bytes {
                        close = true;
                    }
                }
            },
        }
        let done = match (&end, available_now) {
            (Some(e), true) => reached_end(&source, &e.ends, &positions, at_end || close)?,
            _ => false,
        };
        if (close || done) && !pending.next.is_empty() {
            progress.status("Processing new data", true, true);
            let report = commit(
                &mut sink,
                dead_letters.as_mut(),
                &mut decoder,
                &source,
                &checkpoint,
                &mut pending,
                &committed,
                &topics,
                &Stages {
                    cols: &cols,
                    sql: sql.as_ref(),
                    policy,
                },
                (&id, &run_id, &name, batch_id),
                last_batch_at,
                event_time
                    .as_ref()
                    .map(|(c, l)| (c.as_str(), *l, &mut max_event_ms)),
            )
            .await;
            match report {
                Ok(r) => {
                    // Version -1: no rows and no table yet, so nothing was recorded.
                    if r.0.sink.table_version.is_none_or(|v| v >= 0) {
                        for (tp, o) in &r.1 {
                            committed.insert(tp.clone(), Some(*o));
                        }
                    }
                    let r = r.0;
                    summary.batches += 1;
                    summary.rows += r.sink.num_output_rows;
                    summary.dropped_by_watermark += r.num_rows_dropped_by_watermark;
                    summary.table_version = r.sink.table_version;
                    last_batch_at = Instant::now();
                    batch_id += 1;
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
                    if let Some(m) = &metrics {
                        m.observe(&name, &r);
                    }
                    if let Some(cb) = &opts.on_batch {
                        cb(&r);
                    }
                    progress.report(r, lag);
                }
                Err(EngineError::Sink(e)) if e.is_fenced() => {
                    warn!(
                        "another writer owns some partitions: batch abandoned, positions re-read"
                    );
                    if let Some(m) = &metrics {
                        m.batch_outcome(&name, "abandoned");
                    }
                    let tps: Vec<TopicPartition> = committed.keys().cloned().collect();
                    let sink_next = sink.positions(&tps).await?;
                    let mut report = resolve_start(&source, &checkpoint, &tps, &sink_next).await?;
                    // A seek, never a re-assign: a zombie's group is often revoking its
                    // partitions right now (see `KafkaSource::resume`).
                    for tp in source.seek(&report.next).await? {
                        report.next.remove(&tp);
                    }
                    positions = Positions::default();
                    positions.start(&report.next);
                    committed = tps
                        .iter()
                        .map(|tp| (tp.clone(), sink_next.get(tp).copied()))
                        .collect();
                }
                Err(e) => return Err(e),
            }
            summary.skipped += pending.bad;
            pending = Pending::default();
            progress.status("Waiting for data to arrive", false, false);
        }
        if stop {
            break;
        }
        if done {
            // This worker's partitions are drained; the run is done only when every
            // partition of the topics is, whoever holds it.
            // The partitions this worker holds now, drained (`done`).
            let owned: Vec<TopicPartition> = positions.next_offsets().keys().cloned().collect();
            if let Some(e) = &end
                && all_drained(&mut sink, &checkpoint, e, &owned).await?
            {
                break;
            }
            progress.status(
                "Waiting for the other workers to drain their partitions",
                false,
                false,
            );
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    info!(pipeline = %name, batches = summary.batches, rows = summary.rows, "pipeline stopped");
    Ok(summary)
}

/// How long a record may wait on the schema registry before the source is paused.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Decodes one record: at once when its writer schema is cached. While the registry is out
/// (the decoder retries until it answers), the assigned partitions are paused and the
/// consumer is kept polled, so the worker stays in its group past `max.poll.interval.ms`;
/// what the poll delivers meanwhile is dropped and fetched again from `next` on resume.
/// A shutdown during the wait ends it: `None`, the record not decoded.
async fn decode_waiting(
    decoder: &mut ValueDecoder<RowMeta>,
    value: Option<&[u8]>,
    meta: RowMeta,
    source: &KafkaSource,
    next: &BTreeMap<TopicPartition, i64>,
    shutdown: &CancellationToken,
) -> Result<Option<Result<(), BadRecord>>, EngineError> {
    let push = decoder.push(value, meta);
    tokio::pin!(push);
    // The usual case, without a timer: the push completes on its first poll.
    tokio::select! {
        biased;
        r = &mut push => return Ok(Some(r?)),
        () = std::future::ready(()) => {}
    }
    let pause_at = tokio::time::sleep(PAUSE_AFTER);
    tokio::pin!(pause_at);
    let mut paused = None;
    let mut dropped = 0u64;
    let outcome = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break None,
            r = &mut push => break Some(r),
            () = &mut pause_at, if paused.is_none() => {
                warn!("waiting for the schema registry: partitions paused, group membership kept");
                paused = Some(source.pause()?);
            }
            received = source.recv(), if paused.is_some() => {
                if let Received::Record(_) = received? {
                    dropped += 1;
                }
            }
        }
    };
    if let (Some(p), Some(_)) = (paused, &outcome) {
        source.resume(p, next).await?;
        info!(dropped, "schema registry answered: partitions resumed");
    }
    match outcome {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

/// A bad record (one that failed to decode, or a row that cannot be written) by
/// `onBadRecord`: the pipeline's error with `fail`, else counted by reason.
fn handle_bad(
    policy: OnBadRecord,
    tp: &TopicPartition,
    offset: i64,
    (reason, message): (&'static str, &str),
    pending: &mut Pending,
) -> Result<(), EngineError> {
    match policy {
        OnBadRecord::Fail => Err(EngineError::BadRecord {
            tp: tp.clone(),
            offset,
            reason,
            message: message.to_string(),
        }),
        OnBadRecord::Skip | OnBadRecord::DeadLetter => {
            warn!(%tp, offset, reason, dead_letter = policy == OnBadRecord::DeadLetter, "bad record");
            pending.bad += 1;
            *pending.reasons.entry(reason).or_default() += 1;
            Ok(())
        }
    }
}

/// `availableNow`: the end offset of every partition of the topics, seen at the first
/// assignment, and which partitions held nothing then.
#[derive(Debug, Default)]
struct TopicEnds {
    ends: BTreeMap<TopicPartition, i64>,
    empty: std::collections::BTreeSet<TopicPartition>,
}

/// The ends of every partition of `topics` (explicit topics; with a pattern, the topics of
/// the first assignment), not only of the partitions this worker holds.
async fn topic_ends(
    source: &KafkaSource,
    topics: Option<&[String]>,
    assigned: &[TopicPartition],
) -> Result<TopicEnds, EngineError> {
    let names: Vec<String> = match topics {
        Some(t) => t.to_vec(),
        None => assigned
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let mut out = TopicEnds::default();
    for tp in source.partitions(&names).await? {
        let (low, high) = source.watermarks(&tp).await?;
        if high <= low {
            out.empty.insert(tp.clone());
        }
        out.ends.insert(tp, high);
    }
    Ok(out)
}

/// Whether every partition reached its end in the sink (a commit, by this worker or any
/// other), or had nothing to read: empty at the start, started at or past its end, or held
/// by this worker, which drained it (past transaction markers it never commits).
async fn all_drained(
    sink: &mut Sink,
    checkpoint: &Checkpoint,
    ends: &TopicEnds,
    owned: &[TopicPartition],
) -> Result<bool, EngineError> {
    let all: Vec<TopicPartition> = ends.ends.keys().cloned().collect();
    let at = sink.positions(&all).await?;
    for (tp, end) in &ends.ends {
        if at.get(tp).is_some_and(|n| n >= end) || ends.empty.contains(tp) || owned.contains(tp) {
            continue;
        }
        match checkpoint.recorded_start(&tp.topic, tp.partition).await? {
            Some(start) if start >= *end => continue,
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Positions `tps` at the sink's next offsets; a partition the sink has no position for
/// yet starts where the checkpoint recorded (the first start resolved from
/// `startingOffsets`, kept put-if-absent), so a crash or a rebalance before the first commit
/// never re-resolves `latest` or a timestamp and skips what arrived meanwhile. Moves
/// nothing: the caller assigns or seeks there.
async fn resolve_start(
    source: &KafkaSource,
    checkpoint: &Checkpoint,
    tps: &[TopicPartition],
    sink_next: &BTreeMap<TopicPartition, i64>,
) -> Result<crate::source::PositionReport, EngineError> {
    let mut at = sink_next.clone();
    let mut fresh = Vec::new();
    for tp in tps.iter().filter(|tp| !sink_next.contains_key(*tp)) {
        match checkpoint.recorded_start(&tp.topic, tp.partition).await? {
            Some(o) => {
                at.insert(tp.clone(), o);
            }
            None => fresh.push(tp.clone()),
        }
    }
    let report = source.resolve(tps, &at).await?;
    let mut moved = false;
    for tp in &fresh {
        if let Some(&resolved) = report.next.get(tp) {
            let kept = checkpoint
                .start_offset(&tp.topic, tp.partition, resolved)
                .await?;
            if kept != resolved {
                // Another worker recorded its start first: start there too.
                at.insert(tp.clone(), kept);
                moved = true;
            }
        }
    }
    if moved {
        return Ok(source.resolve(tps, &at).await?);
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn commit(
    sink: &mut Sink,
    dead_letters: Option<&mut DeadLetters>,
    decoder: &mut ValueDecoder<RowMeta>,
    source: &KafkaSource,
    checkpoint: &Checkpoint,
    pending: &mut Pending,
    committed: &BTreeMap<TopicPartition, Option<i64>>,
    topics: &[String],
    stages: &Stages<'_>,
    ids: (&str, &str, &str, i64),
    last_batch_at: Instant,
    event_time: Option<(&str, Duration, &mut Option<i64>)>,
) -> Result<(StreamingQueryProgress, BTreeMap<TopicPartition, i64>), EngineError> {
    let Stages { cols, sql, policy } = *stages;
    let trigger_started = pending.opened.unwrap_or_else(Instant::now);
    // The reader adopted without `readerSchema` is kept before the batch decoded with it
    // commits: after a restart it stays the reader, whatever writer comes first.
    if let Some(reader) = decoder.take_changed_adopted_reader() {
        checkpoint.write_reader_schema(&reader).await?;
    }
    let (batch, meta) = match decoder.finish()? {
        Some((batch, meta)) => (
            Some(metadata::with_metadata(batch, &meta, topics, cols)?),
            meta,
        ),
        None => (None, Vec::new()),
    };
    let transform_started = Instant::now();
    let batch = match (batch, sql) {
        (Some(b), Some(t)) => Some(t.apply(b).await?),
        (b, _) => b,
    };
    let transform = transform_started.elapsed();
    // Rows whose partition directory cannot be written are bad records, not a failed write.
    let batch = match batch {
        Some(b) => {
            let rows_meta = sql.is_none().then_some(meta.as_slice());
            let (kept, unwritable) =
                partition_guard::take_unwritable(b, rows_meta, topics, sink.partition_layout())?;
            for d in unwritable {
                handle_bad(policy, &d.tp, d.offset, (d.class, &d.message), pending)?;
                if dead_letters.is_some() {
                    pending.dead.push(d);
                }
            }
            Some(kept)
        }
        None => None,
    };
    // Event time: rows older than the watermark of the batches before this one are
    // dropped (Spark's semantics); then this batch's maximum moves the watermark.
    let mut dropped = 0i64;
    let mut floor_ms: Option<i64> = None;
    let (batch, event_time) = match event_time {
        Some((column, lateness, max_seen)) => {
            let lateness = lateness.as_millis() as i64;
            let watermark = max_seen.map(|m| m.saturating_sub(lateness));
            floor_ms = watermark;
            let batch = match (batch, watermark) {
                (Some(b), Some(wm)) => {
                    let (kept, n) = metadata::drop_before(&b, column, wm)?;
                    dropped = n;
                    Some(kept)
                }
                (b, _) => b,
            };
            let stats = match &batch {
                Some(b) => metadata::event_time_millis(b, column)?,
                None => None,
            };
            if let Some((_, max, _)) = stats {
                *max_seen = Some(max_seen.map_or(max, |m| m.max(max)));
            }
            let watermark = max_seen.map(|m| m.saturating_sub(lateness));
            (batch, Some(metadata::event_time_stats(stats, watermark)))
        }
        None => (batch, None),
    };
    // Merge: one row per key within the batch (the latest by the ordering column, the
    // later offset on a tie) before the MERGE.
    let batch = match (sink.merge_settings(), batch) {
        (Some(m), Some(b)) if b.num_rows() > 0 => Some(
            crate::sink::merge::dedup(b, &m.keys, m.order_by.as_deref())
                .await
                .map_err(|e| transform::TransformError::Dedup(Box::new(e)))?,
        ),
        (_, b) => b,
    };
    // A merge into a table partitioned by a date scans only the dates at or after the
    // watermark's: older rows cannot be touched by rows the watermark lets through.
    let floor = match (sink.merge_settings(), floor_ms, batch.as_ref()) {
        (Some(_), Some(ms), Some(b)) => sink
            .partition_columns()
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
    sink.set_merge_floor(floor);
    let rows = batch.as_ref().map_or(0, |b| b.num_rows() as i64);
    let expected: BTreeMap<TopicPartition, Option<i64>> = pending
        .next
        .keys()
        .map(|tp| (tp.clone(), committed.get(tp).copied().flatten()))
        .collect();
    let write_started = Instant::now();
    if let Some(d) = dead_letters {
        // Dead letters are durable before the batch that skips them commits.
        d.write(&pending.dead, &pending.next).await?;
    }
    let version = sink
        .commit(batch, &pending.start, &expected, &pending.next)
        .await?;
    let write = write_started.elapsed();
    let commit_started = Instant::now();
    if let Err(e) = source.commit_group(&pending.next) {
        warn!(error = %e, "offset commit to the consumer group failed (the sink stays the source of truth)");
    }
    let mut latest = BTreeMap::new();
    for tp in pending.next.keys() {
        if let Ok((_, high)) = source.watermarks(tp).await {
            latest.insert(tp.clone(), high);
        }
    }
    let total = trigger_started.elapsed();
    let secs = total.as_secs_f64().max(1e-6);
    let since_last = last_batch_at.elapsed().as_secs_f64().max(1e-6);
    let (id, run_id, name, batch_id) = ids;
    let mut duration_ms = BTreeMap::new();
    duration_ms.insert("decode".into(), pending.decode.as_millis() as i64);
    duration_ms.insert(
        "fetch".into(),
        total
            .saturating_sub(pending.decode + transform + write)
            .as_millis() as i64,
    );
    duration_ms.insert("transform".into(), transform.as_millis() as i64);
    duration_ms.insert("write".into(), write.as_millis() as i64);
    let mut report = StreamingQueryProgress {
        id: id.into(),
        run_id: run_id.into(),
        name: Some(name.into()),
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
            metrics: source_metrics(pending, &latest),
        }],
        sink: SinkProgress {
            description: sink.description(),
            num_output_rows: rows,
            table_version: Some(version),
            metrics: {
                let mut m = sink_metrics(pending);
                m.extend(sink.take_merge_metrics());
                m
            },
        },
        event_time,
        num_rows_dropped_by_watermark: dropped,
    };
    checkpoint.write_progress(&report).await?;
    report
        .duration_ms
        .insert("commit".into(), commit_started.elapsed().as_millis() as i64);
    report.duration_ms.insert(
        "triggerExecution".into(),
        trigger_started.elapsed().as_millis() as i64,
    );
    info!(
        batch_id,
        rows,
        records = pending.records,
        bad = pending.bad,
        version,
        "batch committed"
    );
    Ok((report, pending.next.clone()))
}

/// What a batch goes through between decoding and the sink.
#[derive(Clone, Copy)]
struct Stages<'a> {
    /// The metadata columns added to each row.
    cols: &'a [MetadataColumn],
    /// `transform.sql`.
    sql: Option<&'a transform::SqlTransform>,
    /// `onBadRecord`, for rows that cannot be written.
    policy: OnBadRecord,
}

/// Spark's Kafka source metrics (offsets behind latest) and the offsets lost to retention.
fn source_metrics(
    pending: &Pending,
    latest: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<String, String> {
    let behind: Vec<i64> = pending
        .next
        .iter()
        .filter_map(|(tp, n)| Some((latest.get(tp)? - n).max(0)))
        .collect();
    let mut m = BTreeMap::new();
    if !behind.is_empty() {
        let sum: i64 = behind.iter().sum();
        m.insert(
            "minOffsetsBehindLatest".into(),
            behind.iter().min().copied().unwrap_or(0).to_string(),
        );
        m.insert(
            "maxOffsetsBehindLatest".into(),
            behind.iter().max().copied().unwrap_or(0).to_string(),
        );
        m.insert(
            "avgOffsetsBehindLatest".into(),
            format!("{:.1}", sum as f64 / behind.len() as f64),
        );
    }
    if pending.lost > 0 {
        m.insert("numOffsetsLost".into(), pending.lost.to_string());
    }
    m
}

/// Bad-record counts, in total and by reason (`badRecords.<Reason>`, and
/// `deadLetters.<Reason>` for those written to the dead-letter destination).
fn sink_metrics(pending: &Pending) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("numBadRecords".to_string(), pending.bad.to_string()),
        ("numDeadLetters".to_string(), pending.dead.len().to_string()),
    ]
    .into();
    for (reason, n) in &pending.reasons {
        m.insert(format!("badRecords.{reason}"), n.to_string());
    }
    let mut dead: BTreeMap<&str, i64> = BTreeMap::new();
    for d in &pending.dead {
        *dead.entry(d.class).or_default() += 1;
    }
    for (reason, n) in dead {
        m.insert(format!("deadLetters.{reason}"), n.to_string());
    }
    m
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
