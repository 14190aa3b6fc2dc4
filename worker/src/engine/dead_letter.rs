//! I/O: dead letters — bad records written, with their reason, to a Kafka topic (headers
//! carry the source coordinates) or a Delta table (the same fields as columns), before the
//! batch that skips them is committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::sink::delta::{DeltaSink, DeltaSinkError};
use crate::source::TopicPartition;

/// A record that could not be decoded, converted or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRecord {
    /// Source partition.
    pub tp: TopicPartition,
    /// Source offset.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Raw value.
    pub value: Option<Vec<u8>>,
    /// Static reason (error class).
    pub class: &'static str,
    /// Message.
    pub message: String,
}

/// Errors writing dead letters.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The Kafka topic refused a record.
    #[error("failed to write a dead letter to topic {topic}: {message}")]
    Kafka {
        /// Topic.
        topic: String,
        /// Why.
        message: String,
    },
    /// The Delta table failed.
    #[error(transparent)]
    Delta(#[from] DeltaSinkError),
    /// Building the batch failed.
    #[error("failed to build the dead-letter batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Where dead letters go.
pub enum DeadLetters {
    /// A Kafka topic.
    Kafka {
        /// Producer.
        producer: FutureProducer,
        /// Topic.
        topic: String,
    },
    /// A Delta table (exactly once, with its own `txn` versions).
    Delta(Box<DeltaSink>),
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kafka { topic, .. } => write!(f, "DeadLetters::Kafka({topic})"),
            Self::Delta(s) => write!(f, "DeadLetters::Delta({})", s.description()),
        }
    }
}

/// The Arrow schema of the dead-letter table.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("error_class", DataType::Utf8, false),
        Field::new("error_message", DataType::Utf8, false),
    ]))
}

fn batch(records: &[DeadRecord]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.tp.topic.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            records.iter().map(|r| r.tp.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.offset),
        )),
        Arc::new(BinaryArray::from_iter(
            records.iter().map(|r| r.key.as_deref()),
        )),
        Arc::new(BinaryArray::from_iter(
            records.iter().map(|r| r.value.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.class),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.message.as_str()),
        )),
    ];
    RecordBatch::try_new(schema(), cols)
}

impl DeadLetters {
    /// Writes the batch's dead letters; `next` are the batch's next offsets. A Delta
    /// destination skips partitions it already holds (a replay after a crash).
    pub async fn write(
        &mut self,
        records: &[DeadRecord],
        next: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), DeadLetterError> {
        if records.is_empty() {
            return Ok(());
        }
        match self {
            Self::Kafka { producer, topic } => {
                for r in records {
                    let partition = r.tp.partition.to_string();
                    let offset = r.offset.to_string();
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "spillway.source.topic",
                            value: Some(r.tp.topic.as_str()),
                        })
                        .insert(Header {
                            key: "spillway.source.partition",
                            value: Some(partition.as_str()),
                        })
                        .insert(Header {
                            key: "spillway.source.offset",
                            value: Some(offset.as_str()),
                        })
                        .insert(Header {
                            key: "spillway.error.class",
                            value: Some(r.class),
                        })
                        .insert(Header {
                            key: "spillway.error.message",
                            value: Some(r.message.as_str()),
                        });
                    let mut rec: FutureRecord<'_, [u8], [u8]> =
                        FutureRecord::to(topic.as_str()).headers(headers);
                    if let Some(k) = &r.key {
                        rec = rec.key(k.as_slice());
                    }
                    if let Some(v) = &r.value {
                        rec = rec.payload(v.as_slice());
                    }
                    producer
                        .send(rec, Duration::from_secs(30))
                        .await
                        .map_err(|(e, _)| DeadLetterError::Kafka {
                            topic: topic.clone(),
                            message: e.to_string(),
                        })?;
                }
                Ok(())
            }
            Self::Delta(sink) => {
                let tps: Vec<TopicPartition> = next.keys().cloned().collect();
                let held = sink.positions(&tps).await?;
                let fresh: Vec<DeadRecord> = records
                    .iter()
                    .filter(|r| held.get(&r.tp).is_none_or(|h| *h <= r.offset))
                    .cloned()
                    .collect();
                if fresh.is_empty() {
                    return Ok(());
                }
                let expected = tps
                    .iter()
                    .map(|tp| (tp.clone(), held.get(tp).copied()))
                    .collect();
                sink.commit(Some(batch(&fresh)?), &expected, next).await?;
                Ok(())
            }
        }
    }
}
