//! The sink, idle or writing one batch on a task of its own: the loop fetches and decodes
//! the next batch meanwhile (on the runtime's other thread), and hands it over only once
//! the one in flight has landed — at most one batch is written at a time, in order, so each
//! commit still expects the positions the previous one recorded.

use std::collections::BTreeMap;

use tokio::task::JoinHandle;

use super::EngineError;
use crate::sink::{Committed, Sink, SinkBatch, SinkError};
use crate::source::{TopicPartition, WatermarkHandle};

/// A batch that landed, handed back to the loop.
pub(super) struct Landed<T> {
    /// What the loop kept of it.
    pub kept: T,
    /// How the write went.
    pub result: Result<Committed, SinkError>,
    /// The partitions' high watermarks right after a commit, for the report (queried on
    /// the task: each query waits behind the consumer's fetch).
    pub latest: BTreeMap<TopicPartition, i64>,
}

/// What the writing task gives back.
struct Written {
    sink: Sink,
    result: Result<Committed, SinkError>,
    latest: BTreeMap<TopicPartition, i64>,
}

/// The sink and the batch in flight, if any (`T`: what the loop keeps of it for its report).
pub(super) struct Writer<T> {
    idle: Option<Sink>,
    writing: Option<(JoinHandle<Written>, T)>,
    watermarks: Option<WatermarkHandle>,
}

impl<T> Writer<T> {
    pub fn new(sink: Sink) -> Self {
        Self {
            idle: Some(sink),
            writing: None,
            watermarks: None,
        }
    }

    /// Queries the high watermarks of a committed batch's partitions on its task.
    pub fn with_watermarks(mut self, handle: WatermarkHandle) -> Self {
        self.watermarks = Some(handle);
        self
    }

    /// Whether a batch is in flight.
    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The idle sink. The loop waits for the batch in flight ([`Writer::landed`]) before it
    /// asks; `SinkBusy` only if it did not.
    pub fn sink(&mut self) -> Result<&mut Sink, EngineError> {
        self.idle.as_mut().ok_or(EngineError::SinkBusy)
    }

    /// Starts writing `batch` on its own task.
    pub fn start(&mut self, batch: SinkBatch, kept: T) -> Result<(), EngineError> {
        let mut sink = self.idle.take().ok_or(EngineError::SinkBusy)?;
        let watermarks = self.watermarks.clone();
        let task = tokio::spawn(async move {
            let tps: Vec<TopicPartition> = batch.ranges.next.keys().cloned().collect();
            let result = sink.write(batch).await;
            let latest = match (&result, watermarks) {
                (Ok(_), Some(w)) => w.high(&tps).await,
                _ => BTreeMap::new(),
            };
            Written {
                sink,
                result,
                latest,
            }
        });
        self.writing = Some((task, kept));
        Ok(())
    }

    /// The batch in flight once it landed (cancel-safe: dropped before, it stays in flight);
    /// `None` if there is none.
    pub async fn landed(&mut self) -> Result<Option<Landed<T>>, EngineError> {
        let Some((task, _)) = self.writing.as_mut() else {
            return Ok(None);
        };
        let joined = task.await;
        let Some((_, kept)) = self.writing.take() else {
            return Ok(None);
        };
        let Written {
            sink,
            result,
            latest,
        } = joined?;
        self.idle = Some(sink);
        Ok(Some(Landed {
            kept,
            result,
            latest,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::sink::OffsetRanges;
    use crate::sink::delta::DeltaSink;
    use crate::source::TopicPartition;

    fn batch(from: i64, to: i64, expected: Option<i64>) -> SinkBatch {
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let schema = Arc::new(Schema::new(vec![Field::new(
            "_offset",
            DataType::Int64,
            false,
        )]));
        let rows = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(from..to))],
        )
        .unwrap();
        SinkBatch {
            rows: Some(rows),
            ranges: OffsetRanges {
                start: BTreeMap::from([(tp.clone(), from)]),
                next: BTreeMap::from([(tp.clone(), to)]),
                expected: BTreeMap::from([(tp, expected)]),
            },
            watermark_ms: None,
        }
    }

    #[tokio::test]
    async fn one_batch_in_flight_then_the_sink_is_back_in_order() {
        let dir = std::env::temp_dir().join(format!("spillway-writer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = url::Url::from_directory_path(&dir).unwrap();
        let sink = DeltaSink::open(&url, Default::default(), "g", vec![])
            .await
            .unwrap();
        let mut w: Writer<&str> = Writer::new(Sink::Delta(Box::new(sink)));
        assert!(w.landed().await.unwrap().is_none(), "nothing in flight");
        w.start(batch(0, 10, None), "first").unwrap();
        assert!(w.is_writing());
        assert!(matches!(w.sink(), Err(EngineError::SinkBusy)));
        assert!(matches!(
            w.start(batch(10, 20, Some(10)), "second"),
            Err(EngineError::SinkBusy)
        ));
        let landed = w.landed().await.unwrap().unwrap();
        assert_eq!(landed.kept, "first");
        assert!(landed.latest.is_empty(), "no watermark handle");
        let c = landed.result.unwrap();
        assert_eq!((c.version, c.rows), (0, 10));
        assert!(!w.is_writing());
        // The next batch expects what the first recorded; a stale expectation is fenced.
        w.start(batch(10, 20, Some(10)), "second").unwrap();
        let second = w.landed().await.unwrap().unwrap();
        assert_eq!(second.result.unwrap().version, 1);
        w.start(batch(10, 20, Some(10)), "stale").unwrap();
        let stale = w.landed().await.unwrap().unwrap();
        assert!(stale.result.unwrap_err().is_fenced());
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let at = w
            .sink()
            .unwrap()
            .positions(std::slice::from_ref(&tp))
            .await
            .unwrap();
        assert_eq!(at[&tp], 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
