//! I/O: the Kafka consumer-group source — subscription, assignment hand-off to the loop,
//! explicit positioning from the sink's positions, data-loss detection, group commits.
//!
//! Positions: the sink is the source of truth. librdkafka assigns partitions in the
//! rebalance callback, which pauses them and hands the assignment to the loop; the loop
//! reads the sink's next offsets and calls [`KafkaSource::position`], which seeks each
//! partition (sink offset, else `startingOffsets`), checks it against the partition's low
//! watermark (data loss), and resumes it. [`Positions::accept`] then drops anything
//! before the expected offset and flags gaps for a low-watermark check.

pub mod config;
mod positions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use spillway_api::{KafkaSource as KafkaSpec, OnDataLoss, StartingOffsets};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub use positions::{Accept, Positions};

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
    /// Partitions newly assigned (paused until positioned).
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
    /// A partition never accepted the seek to its position.
    #[error("failed to seek {tp}")]
    Seek {
        /// Partition.
        tp: TopicPartition,
    },
    /// A blocking librdkafka call could not be run.
    #[error("source task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The rebalance callbacks: never panic, pause new partitions, tell the loop.
struct SourceContext {
    tx: mpsc::UnboundedSender<Assignment>,
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

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let _ = self.tx.send(Assignment::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // Nothing is fetched until the loop has positioned the partition.
                if let Err(e) = consumer.pause(tpl) {
                    warn!(error = %e, "failed to pause newly assigned partitions");
                }
                let _ = self.tx.send(Assignment::Assigned(partitions(tpl)));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }
}

/// Outcome of positioning partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionReport {
    /// The next offset expected per partition.
    pub next: BTreeMap<TopicPartition, i64>,
    /// Offsets lost to retention and skipped (`onDataLoss: skip`).
    pub lost: i64,
}

/// The Kafka source of one worker.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SourceContext>>,
    spec: KafkaSpec,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("bootstrap", &self.spec.bootstrap_servers)
            .finish()
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
        let mut cc = ClientConfig::new();
        for (k, v) in config {
            cc.set(k, v);
        }
        let consumer: StreamConsumer<SourceContext> =
            cc.create_with_context(SourceContext { tx })?;
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
        };
        Ok((source, rx))
    }

    /// The next message (cancel-safe).
    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, SourceError> {
        Ok(self.consumer.recv().await?)
    }

    /// A description of the source in Spark's style: `KafkaV2[Subscribe[a,b]]`.
    pub fn description(&self) -> String {
        match (&self.spec.topics, &self.spec.topic_pattern) {
            (Some(t), _) => format!("KafkaV2[Subscribe[{}]]", t.join(",")),
            (None, Some(p)) => format!("KafkaV2[SubscribePattern[{p}]]"),
            (None, None) => "KafkaV2[]".into(),
        }
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

    /// Seeks newly assigned partitions to the sink's next offsets (or `startingOffsets`
    /// where the sink has none), checks for data loss, and resumes them.
    pub async fn position(
        &self,
        assigned: &[TopicPartition],
        sink_next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<PositionReport, SourceError> {
        let mut report = PositionReport::default();
        let by_time = self.offsets_for_timestamp(assigned, sink_next).await?;
        for tp in assigned {
            let (low, high) = self.watermarks(tp).await?;
            let wanted = match sink_next.get(tp) {
                Some(o) => *o,
                None => match self.spec.starting_offsets {
                    StartingOffsets::Earliest => low,
                    StartingOffsets::Latest => high,
                    StartingOffsets::Timestamp => by_time.get(tp).copied().unwrap_or(high),
                    StartingOffsets::Offsets => self
                        .spec
                        .starting_partition_offsets
                        .as_ref()
                        .and_then(|m| m.get(&tp.topic))
                        .and_then(|p| p.get(&tp.partition.to_string()))
                        .map_or(low, |o| match *o {
                            -2 => low,
                            -1 => high,
                            o => o,
                        }),
                },
            };
            let target = if wanted < low {
                match self.spec.on_data_loss {
                    OnDataLoss::Fail => {
                        return Err(SourceError::DataLoss {
                            tp: tp.clone(),
                            from: wanted,
                            to: low,
                        });
                    }
                    OnDataLoss::Skip => {
                        warn!(%tp, from = wanted, to = low, "data loss: skipping offsets deleted by retention");
                        report.lost += low - wanted;
                        low
                    }
                }
            } else {
                wanted.min(high)
            };
            self.seek(tp, target).await?;
            debug!(%tp, target, low, high, "positioned partition");
            report.next.insert(tp.clone(), target);
        }
        let mut tpl = TopicPartitionList::new();
        for tp in assigned {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        self.consumer.resume(&tpl)?;
        Ok(report)
    }

    async fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<(), SourceError> {
        let mut last = None;
        // A partition assigned a moment ago may not accept a seek yet: retry briefly.
        for attempt in 0..50u32 {
            let c = self.consumer.clone();
            let (topic, partition) = (tp.topic.clone(), tp.partition);
            let r = tokio::task::spawn_blocking(move || {
                c.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                )
            })
            .await?;
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    debug!(%tp, attempt, error = %e, "seek not accepted yet");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last.map_or_else(|| SourceError::Seek { tp: tp.clone() }, SourceError::Kafka))
    }

    async fn offsets_for_timestamp(
        &self,
        assigned: &[TopicPartition],
        sink_next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>, SourceError> {
        let mut out = BTreeMap::new();
        if self.spec.starting_offsets != StartingOffsets::Timestamp {
            return Ok(out);
        }
        let ts = self.spec.starting_timestamp.clone().unwrap_or_default();
        let millis = ts
            .parse::<jiff::Timestamp>()
            .map_err(|_| SourceError::Timestamp(ts.clone()))?
            .as_millisecond();
        let mut tpl = TopicPartitionList::new();
        for tp in assigned.iter().filter(|tp| !sink_next.contains_key(tp)) {
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
