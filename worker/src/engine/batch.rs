//! Pure: the open micro-batch — its offset ranges, counts and bad records — and the
//! metrics its report carries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spillway_api::OnBadRecord;
use tracing::warn;

use super::EngineError;
use super::dead_letter::DeadRecord;
use crate::sink::OffsetRanges;
use crate::source::TopicPartition;

/// The open micro-batch.
#[derive(Default)]
pub(super) struct Pending {
    pub start: BTreeMap<TopicPartition, i64>,
    pub next: BTreeMap<TopicPartition, i64>,
    pub records: i64,
    /// Key and value bytes of the records so far (`maxBytesPerBatch`).
    pub bytes: i64,
    pub bad: i64,
    pub opened: Option<Instant>,
    pub decode: Duration,
    pub dead: Vec<DeadRecord>,
    /// Bad records by reason.
    pub reasons: BTreeMap<&'static str, i64>,
    /// Offsets lost to retention since the last batch.
    pub lost: i64,
    /// Records of a type the pipeline does not read (`recordNames`), skipped.
    pub other_types: i64,
}

impl Pending {
    /// Notes a record; allocates only for a partition new to this batch (hot path).
    pub fn record(&mut self, topic: &str, partition: i32, offset: i64) {
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
    pub fn overflows(&self, bytes: i64, cap: i64) -> bool {
        self.records > 0 && self.bytes + bytes > cap
    }

    /// The batch's offset ranges, with what the sink must still record for each partition
    /// (`committed`: the positions this worker last committed or read from the sink).
    pub fn ranges(&self, committed: &BTreeMap<TopicPartition, Option<i64>>) -> OffsetRanges {
        OffsetRanges {
            start: self.start.clone(),
            next: self.next.clone(),
            expected: self
                .next
                .keys()
                .map(|tp| (tp.clone(), committed.get(tp).copied().flatten()))
                .collect(),
        }
    }
}

pub(super) fn offsets(m: &BTreeMap<TopicPartition, i64>) -> spillway_api::TopicOffsets {
    let mut out = spillway_api::TopicOffsets::new();
    for (tp, o) in m {
        out.entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition.to_string(), *o);
    }
    out
}

/// Spark's Kafka source metrics (offsets behind latest) and the offsets lost to retention.
pub(super) fn source_metrics(
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
pub(super) fn sink_metrics(pending: &Pending) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("numBadRecords".to_string(), pending.bad.to_string()),
        ("numDeadLetters".to_string(), pending.dead.len().to_string()),
    ]
    .into();
    for (reason, n) in &pending.reasons {
        m.insert(format!("badRecords.{reason}"), n.to_string());
    }
    if pending.other_types > 0 {
        m.insert(
            "numOtherRecordTypes".to_string(),
            pending.other_types.to_string(),
        );
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

/// A bad record (one that failed to decode, or a row that cannot be written) by
/// `onBadRecord`: the pipeline's error with `fail`, else counted by reason.
pub(super) fn handle_bad(
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
