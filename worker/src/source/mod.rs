//! I/O: the Kafka consumer-group source — subscription, assignment hand-off to the loop,
//! explicit positioning from the sink's positions, data-loss detection, group commits.
//!
//! Positions: the sink is the source of truth. The rebalance callback hands each
//! assignment to the loop without assigning; the loop reads the sink's next offsets and
//! calls [`KafkaSource::position`], which places each partition (sink offset, else
//! `startingOffsets`), checks it against the partition's low watermark (data loss) and
//! assigns the partitions once, at those offsets. [`Positions::accept`] then drops anything
//! before the expected offset and flags gaps for a low-watermark check. Records are read
//! `read_committed`: aborted records and transaction markers never reach the loop, and the
//! consumer's position ([`KafkaSource::consumed`]) moves past the markers.

pub mod config;
mod positions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use spillway_api::{EndingOffsets, KafkaSource as KafkaSpec, OnDataLoss, StartingOffsets};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub use positions::{Accept, Positions, end_reached, stalled};

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// An assignment change, handed from the rebalance callback to the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// The partitions now assigned (eager protocol: the whole assignment).
    Assigned(Vec<TopicPartition>),
    /// Partitions taken away.
    Revoked(Vec<TopicPartition>),
}

/// Errors of the source.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum SourceError {
    /// librdkafka refused the configuration or failed.
    #[error("kafka error: {0}")]
    Kafka(#[from] KafkaError),
    /// A secret reference could not be resolved.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// Offsets the pipeline still needed were deleted from Kafka (`onDataLoss: fail`).
    #[error("data loss at {tp}: offsets {from}..{to} were deleted before they were read")]
    DataLoss {
        /// Partition.
        tp: TopicPartition,
        /// First lost offset.
        from: i64,
        /// First available offset.
        to: i64,
    },
    /// `startingTimestamp` is not an RFC 3339 time.
    #[error("invalid startingTimestamp {0:?}")]
    Timestamp(String),
    /// A blocking librdkafka call could not be run.
    #[error("source task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The rebalance callbacks: never panic, tell the loop.
struct SourceContext {
    tx: mpsc::UnboundedSender<Assignment>,
    /// Rebalance callbacks so far: a pause knows whether the assignment changed under it.
    rebalances: Arc<AtomicU64>,
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

impl ClientContext for SourceContext {
    /// librdkafka's global errors, as rdkafka logs them, but for the end of a partition:
    /// with `enable.partition.eof` that is how the loop learns a partition is drained
    /// (`Received::EndOfPartition`), not an error.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!(%reason, "partition end reached");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for SourceContext {
    /// Eager protocol only (incremental rebalancing is refused by validation): every
    /// assignment is the whole assignment. An assignment is not applied here: the loop reads
    /// the sink's positions and assigns once, at those offsets ([`KafkaSource::position`]),
    /// so nothing is fetched from the group's committed offsets first. librdkafka keeps the
    /// member's heartbeats going while it waits for that assign call. A revocation
    /// unassigns at once, so nothing more is fetched for partitions that move.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let _ = self.tx.send(Assignment::Assigned(partitions(tpl)));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let _ = self.tx.send(Assignment::Revoked(partitions(tpl)));
                unassign(consumer);
            }
            other => {
                warn!(error = ?other, "rebalance error: partitions unassigned");
                let _ = self.tx.send(Assignment::Revoked(partitions(tpl)));
                unassign(consumer);
            }
        }
    }
}

fn unassign(consumer: &BaseConsumer<SourceContext>) {
    if let Err(e) = consumer.unassign() {
        warn!(error = %e, "unassign after a revocation failed");
    }
}

/// Pure: consumer errors librdkafka recovers from by itself. `PollExceeded` is what a
/// worker that was stopped (SIGSTOP, a long GC-like pause of the node) past
/// `max.poll.interval.ms` meets when it runs again: librdkafka has left the group and
/// rejoins at the next poll, and the rebalance that follows revokes and re-assigns (the open
/// batch is abandoned or fenced, never committed twice). The others are a broker or the
/// group coordinator out for a while.
pub fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::PollExceeded
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::IllegalGeneration
    )
}

/// What the consumer delivered.
#[derive(Debug)]
pub enum Received<'a> {
    /// A record.
    Record(BorrowedMessage<'a>),
    /// The fetcher reached the end of a partition: its high watermark, or under
    /// `read_committed` its last stable offset (with `enable.partition.eof` only). Markers of
    /// transactions before that end have moved the consumer's position past them.
    EndOfPartition {
        /// The partition (librdkafka does not say which topic).
        partition: i32,
    },
}

/// Outcome of positioning partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionReport {
    /// The next offset expected per partition.
    pub next: BTreeMap<TopicPartition, i64>,
    /// Offsets lost to retention and skipped (`onDataLoss: skip`).
    pub lost: i64,
}

/// What decides where a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartInput {
    /// The sink's next offset, if the sink has committed this partition.
    pub sink_next: Option<i64>,
    /// `startingOffsets`.
    pub policy: StartingOffsets,
    /// The partition's entry in `startingPartitionOffsets` (-2 earliest, -1 latest).
    pub explicit: Option<i64>,
    /// The first offset at or after `startingTimestamp`, if any.
    pub by_time: Option<i64>,
    /// The partition's low watermark (first offset still on the broker).
    pub low: i64,
    /// The partition's high watermark (next offset to be written).
    pub high: i64,
}

/// Pure: the offset a partition starts at and how many offsets were lost, or the lost
/// range `(from, to)` when `onDataLoss: fail`. The sink's position wins over
/// `startingOffsets`; a wanted offset below the low watermark is data loss.
pub fn start_offset(s: &StartInput, on_data_loss: OnDataLoss) -> Result<(i64, i64), (i64, i64)> {
    let wanted = match s.sink_next {
        Some(o) => o,
        None => match s.policy {
            StartingOffsets::Earliest => s.low,
            StartingOffsets::Latest => s.high,
            StartingOffsets::Timestamp => s.by_time.unwrap_or(s.high),
            StartingOffsets::Offsets => match s.explicit {
                None | Some(-2) => s.low,
                Some(-1) => s.high,
                Some(o) => o,
            },
        },
    };
    if wanted < s.low {
        return match on_data_loss {
            OnDataLoss::Fail => Err((wanted, s.low)),
            OnDataLoss::Skip => Ok((s.low, s.low - wanted)),
        };
    }
    Ok((wanted.min(s.high), 0))
}

/// What decides where a partition ends in a bounded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndInput {
    /// `endingOffsets` (`None`: `availableNow`, the end seen at the start).
    pub policy: Option<EndingOffsets>,
    /// The partition's entry in `endingPartitionOffsets` (-1 latest).
    pub explicit: Option<i64>,
    /// The first offset at or after `endingTimestamp`, if any.
    pub by_time: Option<i64>,
    /// The partition's high watermark (next offset to be written).
    pub high: i64,
}

/// Pure: the first offset a bounded run does not read in a partition. `latest` (and
/// `availableNow`) is the high watermark; a timestamp with no record at or after it, an
/// unlisted partition and a negative explicit offset are too. An explicit offset past the
/// high watermark is kept: the run waits for those records.
pub fn end_offset(e: &EndInput) -> i64 {
    match e.policy {
        None | Some(EndingOffsets::Latest) => e.high,
        Some(EndingOffsets::Timestamp) => e.by_time.unwrap_or(e.high),
        Some(EndingOffsets::Offsets) => match e.explicit {
            Some(o) if o >= 0 => o,
            _ => e.high,
        },
    }
}

/// The Kafka source of one worker.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SourceContext>>,
    spec: KafkaSpec,
    timeout: Duration,
    rebalances: Arc<AtomicU64>,
}

/// A pause of every assigned partition ([`KafkaSource::pause`]), ended by
/// [`KafkaSource::resume`].
#[derive(Debug)]
#[must_use = "a paused source fetches nothing until it is resumed"]
pub struct Paused {
    rebalances: u64,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("bootstrap", &self.spec.bootstrap_servers)
            .finish()
    }
}

/// High-watermark queries on the source's consumer, from any task
/// ([`KafkaSource::watermark_handle`]).
#[derive(Clone)]
pub struct WatermarkHandle {
    consumer: Arc<StreamConsumer<SourceContext>>,
    timeout: Duration,
}

impl std::fmt::Debug for WatermarkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatermarkHandle").finish_non_exhaustive()
    }
}

impl WatermarkHandle {
    /// The high watermark of each partition, queried at once (each query waits behind the
    /// connection's fetch, up to `fetch.wait.max.ms`); a partition whose query failed is
    /// left out.
    pub async fn high(&self, tps: &[TopicPartition]) -> BTreeMap<TopicPartition, i64> {
        let queries = tps.iter().map(|tp| {
            let c = self.consumer.clone();
            let (tp, timeout) = (tp.clone(), self.timeout);
            tokio::task::spawn_blocking(move || {
                c.fetch_watermarks(&tp.topic, tp.partition, timeout)
                    .ok()
                    .map(|(_, high)| (tp, high))
            })
        });
        futures::future::join_all(queries)
            .await
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .collect()
    }
}

impl KafkaSource {
    /// Creates the consumer from a configuration (see [`config::consumer_config`]) and
    /// subscribes; assignment changes arrive on the returned receiver.
    pub fn subscribe(
        spec: &KafkaSpec,
        config: &BTreeMap<String, String>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Assignment>), SourceError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let rebalances = Arc::new(AtomicU64::new(0));
        let mut cc = ClientConfig::new();
        for (k, v) in config {
            cc.set(k, v);
        }
        let consumer: StreamConsumer<SourceContext> = cc.create_with_context(SourceContext {
            tx,
            rebalances: rebalances.clone(),
        })?;
        match (&spec.topics, &spec.topic_pattern) {
            (Some(topics), _) => {
                let t: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&t)?;
            }
            (None, Some(pattern)) => {
                let p = if pattern.starts_with('^') {
                    pattern.clone()
                } else {
                    format!("^{pattern}")
                };
                consumer.subscribe(&[p.as_str()])?;
            }
            (None, None) => {}
        }
        info!(config = ?config::loggable(config), "kafka source subscribed");
        let source = Self {
            consumer: Arc::new(consumer),
            spec: spec.clone(),
            timeout: Duration::from_secs(10),
            rebalances,
        };
        Ok((source, rx))
    }

    /// The next record or end-of-partition event (cancel-safe). Consumer errors librdkafka
    /// recovers from by itself (see [`transient`]) are logged and waited out.
    pub async fn recv(&self) -> Result<Received<'_>, SourceError> {
        loop {
            match self.consumer.recv().await {
                Ok(m) => return Ok(Received::Record(m)),
                Err(KafkaError::PartitionEOF(partition)) => {
                    return Ok(Received::EndOfPartition { partition });
                }
                Err(KafkaError::MessageConsumption(code)) if transient(code) => {
                    warn!(error = %code, "consumer error, recovered by librdkafka (a rebalance may follow)");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next record, skipping end-of-partition events (cancel-safe).
    pub async fn recv_record(&self) -> Result<BorrowedMessage<'_>, SourceError> {
        loop {
            if let Received::Record(m) = self.recv().await? {
                return Ok(m);
            }
        }
    }

    /// Stops fetching every assigned partition while the loop cannot take records (the
    /// registry is out), so polling the consumer — which keeps its group membership past
    /// `max.poll.interval.ms` — fetches nothing. Records fetched before the pause may still
    /// arrive; the caller drops them and [`KafkaSource::resume`] fetches them again.
    pub fn pause(&self) -> Result<Paused, SourceError> {
        let paused = Paused {
            rebalances: self.rebalances.load(Ordering::SeqCst),
        };
        self.consumer.pause(&self.consumer.assignment()?)?;
        Ok(paused)
    }

    /// Ends a pause: every assigned partition fetches again from `next` (the offset after
    /// the last record the loop took). If a rebalance happened during the pause, nothing is
    /// assigned here: the loop positions the new assignment as it arrives.
    pub async fn resume(
        &self,
        paused: Paused,
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), SourceError> {
        if self.rebalances.load(Ordering::SeqCst) != paused.rebalances {
            return Ok(());
        }
        // Where the loop has no position for a partition, the consumer's own position; a
        // partition with neither has fetched nothing, so the pause dropped nothing of it.
        let consumed = self.consumed()?;
        let assigned = self.consumer.assignment()?;
        let mut at = BTreeMap::new();
        for e in assigned.elements() {
            let tp = TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            };
            if let Some(o) = next.get(&tp).or_else(|| consumed.get(&tp)) {
                at.insert(tp, *o);
            }
        }
        // A seek, so what the pause dropped is fetched again. Not an assign: an assign
        // stops every fetcher, and a revocation arriving before those stops complete makes
        // librdkafka (≤ 2.15) stop a partition twice and abort (confluentinc/librdkafka#5573).
        let unmoved = self.seek(&at).await?;
        if !unmoved.is_empty() {
            // Only a partition being revoked cannot seek; its next assignment positions it.
            warn!(partitions = ?unmoved, "partitions being revoked were not repositioned");
        }
        self.consumer.resume(&assigned)?;
        Ok(())
    }

    /// Moves the fetch position of assigned partitions to `next` without changing the
    /// assignment; records fetched before the seek are discarded by librdkafka. Returns the
    /// partitions that could not seek (stopping or stopped: being revoked).
    pub async fn seek(
        &self,
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Vec<TopicPartition>, SourceError> {
        if next.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in next {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))?;
        }
        let c = self.consumer.clone();
        let timeout = self.timeout;
        let done = tokio::task::spawn_blocking(move || c.seek_partitions(tpl, timeout)).await??;
        Ok(done
            .elements()
            .iter()
            .filter(|e| e.error().is_err())
            .map(|e| TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            })
            .collect())
    }

    /// The consumer's position in each assigned partition: the offset after the last record
    /// or transaction marker it consumed (librdkafka moves it past commit and abort markers,
    /// which never reach the loop). Partitions without a position yet are left out.
    pub fn consumed(&self) -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
        let tpl = self.consumer.position()?;
        Ok(tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((
                    TopicPartition {
                        topic: e.topic().to_string(),
                        partition: e.partition(),
                    },
                    o,
                )),
                _ => None,
            })
            .collect())
    }

    /// A description of the source in Spark's style: `KafkaV2[Subscribe[a,b]]`.
    pub fn description(&self) -> String {
        match (&self.spec.topics, &self.spec.topic_pattern) {
            (Some(t), _) => format!("KafkaV2[Subscribe[{}]]", t.join(",")),
            (None, Some(p)) => format!("KafkaV2[SubscribePattern[{p}]]"),
            (None, None) => "KafkaV2[]".into(),
        }
    }

    /// Every partition of `topics`, from the cluster's metadata.
    pub async fn partitions(&self, topics: &[String]) -> Result<Vec<TopicPartition>, SourceError> {
        let consumer = self.consumer.clone();
        let topics = topics.to_vec();
        let timeout = self.timeout;
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for t in &topics {
                let md = consumer.fetch_metadata(Some(t), timeout)?;
                for topic in md.topics() {
                    for p in topic.partitions() {
                        out.push(TopicPartition {
                            topic: topic.name().to_string(),
                            partition: p.id(),
                        });
                    }
                }
            }
            Ok::<_, KafkaError>(out)
        })
        .await??;
        Ok(found)
    }

    /// Low and high watermarks of a partition.
    pub async fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64), SourceError> {
        let c = self.consumer.clone();
        let (topic, partition, timeout) = (tp.topic.clone(), tp.partition, self.timeout);
        Ok(
            tokio::task::spawn_blocking(move || c.fetch_watermarks(&topic, partition, timeout))
                .await??,
        )
    }

    /// A handle for high-watermark queries away from the loop (a batch's report, made on
    /// the sink's task).
    pub fn watermark_handle(&self) -> WatermarkHandle {
        WatermarkHandle {
            consumer: self.consumer.clone(),
            timeout: self.timeout,
        }
    }

    /// Where `assigned` partitions start: the sink's next offsets (or `startingOffsets`
    /// where the sink has none), checked for data loss. Moves nothing: the caller assigns
    /// ([`KafkaSource::assign_at`]) or seeks ([`KafkaSource::seek`]) there.
    pub async fn resolve(
        &self,
        assigned: &[TopicPartition],
        sink_next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<PositionReport, SourceError> {
        let mut report = PositionReport::default();
        let by_time = self.offsets_for_timestamp(assigned, sink_next).await?;
        for tp in assigned {
            let (low, high) = self.watermarks(tp).await?;
            let explicit = self
                .spec
                .starting_partition_offsets
                .as_ref()
                .and_then(|m| m.get(&tp.topic))
                .and_then(|p| p.get(&tp.partition.to_string()))
                .copied();
            let start = StartInput {
                sink_next: sink_next.get(tp).copied(),
                policy: self.spec.starting_offsets,
                explicit,
                by_time: by_time.get(tp).copied(),
                low,
                high,
            };
            let (target, lost) = match start_offset(&start, self.spec.on_data_loss) {
                Ok(x) => x,
                Err((from, to)) => {
                    return Err(SourceError::DataLoss {
                        tp: tp.clone(),
                        from,
                        to,
                    });
                }
            };
            if lost > 0 {
                warn!(%tp, from = target - lost, to = target, "data loss: skipping offsets deleted by retention");
                report.lost += lost;
            }
            debug!(%tp, target, low, high, "positioned partition");
            report.next.insert(tp.clone(), target);
        }
        Ok(report)
    }

    /// The one assign of a new assignment, at explicit offsets (eager protocol: `next`
    /// holds the whole assignment; the rebalance callback does not assign).
    pub fn assign_at(&self, next: &BTreeMap<TopicPartition, i64>) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in next {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))?;
        }
        self.consumer.assign(&tpl)?;
        Ok(())
    }

    /// Positions newly assigned partitions: [`KafkaSource::resolve`], then
    /// [`KafkaSource::assign_at`].
    pub async fn position(
        &self,
        assigned: &[TopicPartition],
        sink_next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<PositionReport, SourceError> {
        let report = self.resolve(assigned, sink_next).await?;
        self.assign_at(&report.next)?;
        Ok(report)
    }

    async fn offsets_for_timestamp(
        &self,
        assigned: &[TopicPartition],
        sink_next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
        if self.spec.starting_offsets != StartingOffsets::Timestamp {
            return Ok(BTreeMap::new());
        }
        let fresh: Vec<TopicPartition> = assigned
            .iter()
            .filter(|tp| !sink_next.contains_key(*tp))
            .cloned()
            .collect();
        let ts = self.spec.starting_timestamp.clone().unwrap_or_default();
        self.offsets_at_time(&ts, &fresh).await
    }

    /// The first offset at or after the RFC 3339 time `ts` in each of `tps` (none for a
    /// partition with no such record).
    async fn offsets_at_time(
        &self,
        ts: &str,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
        let mut out = BTreeMap::new();
        let millis = ts
            .parse::<jiff::Timestamp>()
            .map_err(|_| SourceError::Timestamp(ts.to_string()))?
            .as_millisecond();
        let mut tpl = TopicPartitionList::new();
        for tp in tps {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(millis))?;
        }
        if tpl.count() == 0 {
            return Ok(out);
        }
        let c = self.consumer.clone();
        let timeout = self.timeout;
        let found =
            tokio::task::spawn_blocking(move || c.offsets_for_times(tpl, timeout)).await??;
        for e in found.elements() {
            if let Offset::Offset(o) = e.offset() {
                out.insert(
                    TopicPartition {
                        topic: e.topic().to_string(),
                        partition: e.partition(),
                    },
                    o,
                );
            }
        }
        Ok(out)
    }

    /// Where each of `tps` ends for a bounded run: `endingOffsets` resolved against the
    /// partitions' high watermarks `high` (`availableNow`, or no `endingOffsets`: `high`).
    pub async fn end_offsets(
        &self,
        tps: &[TopicPartition],
        high: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
        let by_time = match (self.spec.ending_offsets, &self.spec.ending_timestamp) {
            (Some(EndingOffsets::Timestamp), Some(ts)) => self.offsets_at_time(ts, tps).await?,
            _ => BTreeMap::new(),
        };
        Ok(tps
            .iter()
            .filter_map(|tp| {
                let explicit = self
                    .spec
                    .ending_partition_offsets
                    .as_ref()
                    .and_then(|m| m.get(&tp.topic))
                    .and_then(|p| p.get(&tp.partition.to_string()))
                    .copied();
                let end = end_offset(&EndInput {
                    policy: self.spec.ending_offsets,
                    explicit,
                    by_time: by_time.get(tp).copied(),
                    high: *high.get(tp)?,
                });
                Some((tp.clone(), end))
            })
            .collect())
    }

    /// Commits the next offsets to the consumer group (for lag tools; the sink stays the
    /// source of truth), asynchronously.
    pub fn commit_group(&self, next: &BTreeMap<TopicPartition, i64>) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in next {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))?;
        }
        if tpl.count() > 0 {
            self.consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Async)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_woken_past_the_poll_interval_waits_for_its_rejoin() {
        assert!(transient(RDKafkaErrorCode::PollExceeded));
        assert!(transient(RDKafkaErrorCode::AllBrokersDown));
        assert!(!transient(RDKafkaErrorCode::UnknownTopicOrPartition));
        assert!(!transient(RDKafkaErrorCode::TopicAuthorizationFailed));
    }

    fn input(sink_next: Option<i64>, policy: StartingOffsets) -> StartInput {
        StartInput {
            sink_next,
            policy,
            explicit: None,
            by_time: None,
            low: 100,
            high: 200,
        }
    }

    #[test]
    fn end_offsets_table() {
        let e = |policy, explicit, by_time| {
            end_offset(&EndInput {
                policy,
                explicit,
                by_time,
                high: 100,
            })
        };
        assert_eq!(e(None, None, None), 100, "availableNow: the high watermark");
        assert_eq!(e(Some(EndingOffsets::Latest), Some(5), Some(7)), 100);
        assert_eq!(e(Some(EndingOffsets::Timestamp), None, Some(42)), 42);
        assert_eq!(
            e(Some(EndingOffsets::Timestamp), None, None),
            100,
            "nothing at or after the time: the end"
        );
        assert_eq!(e(Some(EndingOffsets::Offsets), Some(30), None), 30);
        assert_eq!(e(Some(EndingOffsets::Offsets), Some(0), None), 0);
        assert_eq!(
            e(Some(EndingOffsets::Offsets), Some(-1), None),
            100,
            "-1: latest"
        );
        assert_eq!(e(Some(EndingOffsets::Offsets), None, None), 100, "unlisted");
        assert_eq!(
            e(Some(EndingOffsets::Offsets), Some(250), None),
            250,
            "past the end: waited for"
        );
    }

    #[test]
    fn start_offsets_table() {
        use OnDataLoss::{Fail, Skip};
        use StartingOffsets::*;
        type Want = Result<(i64, i64), (i64, i64)>;
        let cases: &[(StartInput, OnDataLoss, Want)] = &[
            (input(None, Earliest), Fail, Ok((100, 0))),
            (input(None, Latest), Fail, Ok((200, 0))),
            (
                StartInput {
                    by_time: Some(150),
                    ..input(None, Timestamp)
                },
                Fail,
                Ok((150, 0)),
            ),
            (input(None, Timestamp), Fail, Ok((200, 0))),
            (
                StartInput {
                    explicit: Some(120),
                    ..input(None, Offsets)
                },
                Fail,
                Ok((120, 0)),
            ),
            (
                StartInput {
                    explicit: Some(-1),
                    ..input(None, Offsets)
                },
                Fail,
                Ok((200, 0)),
            ),
            (
                StartInput {
                    explicit: Some(-2),
                    ..input(None, Offsets)
                },
                Fail,
                Ok((100, 0)),
            ),
            (input(None, Offsets), Fail, Ok((100, 0))),
            // the sink's position wins over startingOffsets
            (input(Some(150), Latest), Fail, Ok((150, 0))),
            // positions beyond the end are clamped to the end
            (input(Some(250), Earliest), Fail, Ok((200, 0))),
            // data loss: the sink needs offset 40 but the broker starts at 100
            (input(Some(40), Earliest), Fail, Err((40, 100))),
            (input(Some(40), Earliest), Skip, Ok((100, 60))),
            (
                StartInput {
                    explicit: Some(10),
                    ..input(None, Offsets)
                },
                Fail,
                Err((10, 100)),
            ),
        ];
        for (i, (s, policy, want)) in cases.iter().enumerate() {
            assert_eq!(start_offset(s, *policy), *want, "case {i}: {s:?}");
        }
    }
}
