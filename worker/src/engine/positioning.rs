//! Where partitions start and end: the start of a new assignment (the sink's positions, else
//! the start the checkpoint recorded), `availableNow`'s end offsets and whether the whole
//! topic is drained, and the re-seek of a fetcher that stalled.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::warn;

use super::EngineError;
use crate::checkpoint::Checkpoint;
use crate::sink::Sink;
use crate::source::{KafkaSource, Positions, SourceError, TopicPartition, end_reached, stalled};

/// `availableNow`: whether every partition reached its end offset. The consumer's position
/// (which moves past transaction markers the loop never sees) is asked only when
/// `ask_consumer` — at a partition's end or a trigger — not for every record.
pub(super) fn reached_end(
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

/// `availableNow`: the end offset of every partition of the topics, seen at the first
/// assignment, and which partitions held nothing then.
#[derive(Debug, Default)]
pub(super) struct TopicEnds {
    pub ends: BTreeMap<TopicPartition, i64>,
    pub empty: std::collections::BTreeSet<TopicPartition>,
}

/// The ends of every partition of `topics` (explicit topics; with a pattern, the topics of
/// the first assignment), not only of the partitions this worker holds.
pub(super) async fn topic_ends(
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
pub(super) async fn all_drained(
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
pub(super) async fn resolve_start(
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

/// How long a worker may hold partitions with records waiting and receive nothing before
/// it re-seeks them ([`unstick`]).
pub(super) const STALL_AFTER: Duration = Duration::from_secs(20);

/// Re-seeks, at their next offsets, the held partitions that have records waiting although
/// nothing was received for [`STALL_AFTER`]. librdkafka can leave a partition's fetcher
/// stuck without an error (confluentinc/librdkafka#4492: `validate-epoch-wait`); a seek
/// restarts it, and moves nothing (records fetched before it are dropped by librdkafka,
/// any later duplicate by [`Positions::accept`]).
pub(super) async fn unstick(
    source: &KafkaSource,
    positions: &Positions,
) -> Result<(), EngineError> {
    let next = positions.next_offsets();
    if next.is_empty() {
        return Ok(());
    }
    let held: Vec<TopicPartition> = next.keys().cloned().collect();
    let high = source.watermark_handle().high(&held).await;
    let stuck = stalled(next, &source.consumed()?, &high);
    if stuck.is_empty() {
        return Ok(());
    }
    warn!(
        partitions = ?stuck.keys().map(ToString::to_string).collect::<Vec<_>>(),
        after_secs = STALL_AFTER.as_secs(),
        "no record received from partitions with records waiting: re-seeking them"
    );
    let unmoved = source.seek(&stuck).await?;
    if !unmoved.is_empty() {
        warn!(partitions = ?unmoved, "partitions being revoked were not repositioned");
    }
    Ok(())
}
