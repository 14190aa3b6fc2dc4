//! Where partitions start and end: the start of a new assignment (the sink's positions, else
//! the start the checkpoint recorded), a bounded run's end offsets (`availableNow`,
//! `endingOffsets`) and whether the whole topic is drained, and the re-seek of a fetcher
//! that stalled.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::EngineError;
use crate::checkpoint::Checkpoint;
use crate::sink::Sink;
use crate::source::{KafkaSource, Positions, SourceError, TopicPartition, end_reached, stalled};

/// A bounded run: whether every partition this worker holds reached its end offset. The consumer's position
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

/// A bounded run's end offset of every partition of the topics, and which partitions
/// hold nothing to read.
#[derive(Debug, Default)]
pub(super) struct TopicEnds {
    pub ends: BTreeMap<TopicPartition, i64>,
    pub empty: std::collections::BTreeSet<TopicPartition>,
    /// `ends` by topic name and partition, for the per-record check.
    by_topic: std::collections::HashMap<String, std::collections::HashMap<i32, i64>>,
}

impl TopicEnds {
    /// The end of `partition` of `topic`, if the run knows it.
    pub fn end_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.by_topic.get(topic)?.get(&partition).copied()
    }
}

/// The ends of every partition of `topics` (explicit topics; with a pattern, the topics of
/// the first assignment), not only of the partitions this worker holds, seen at the first
/// assignment: `availableNow`'s high watermarks, or `endingOffsets` resolved and kept in the
/// checkpoint (the first worker's resolution holds for all, and for re-runs).
pub(super) async fn topic_ends(
    source: &KafkaSource,
    checkpoint: &Checkpoint,
    persist: bool,
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
    let all = source.partitions(&names).await?;
    let mut lows = BTreeMap::new();
    let mut highs = BTreeMap::new();
    for tp in &all {
        let (low, high) = source.watermarks(tp).await?;
        lows.insert(tp.clone(), low);
        highs.insert(tp.clone(), high);
    }
    let mut out = TopicEnds::default();
    for (tp, resolved) in source.end_offsets(&all, &highs).await? {
        let end = if persist {
            checkpoint
                .end_offset(&tp.topic, tp.partition, resolved)
                .await?
        } else {
            resolved
        };
        if lows.get(&tp).is_some_and(|low| end <= *low) {
            out.empty.insert(tp.clone());
        }
        out.by_topic
            .entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition, end);
        out.ends.insert(tp, end);
    }
    info!(ends = ?out.ends.iter().map(|(tp, e)| format!("{tp}:{e}")).collect::<Vec<_>>(), "bounded run: end offsets");
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

/// Re-seeks, at their next offsets, the held partitions that have records waiting (or whose
/// high watermark cannot be read) although nothing was received for [`STALL_AFTER`].
/// librdkafka can leave a partition's fetcher stuck without an error (confluentinc/librdkafka#4492: `validate-epoch-wait`); a seek
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
    let mut stuck = stalled(next, &source.consumed()?, &high);
    // A partition whose high watermark cannot be read now (its broker connection may be
    // the stuck part) is re-sought too: a seek at the next offset moves nothing.
    let unknown: BTreeMap<TopicPartition, i64> = next
        .iter()
        .filter(|(tp, _)| !high.contains_key(*tp))
        .map(|(tp, n)| (tp.clone(), *n))
        .collect();
    if !unknown.is_empty() {
        warn!(partitions = ?unknown.keys().map(ToString::to_string).collect::<Vec<_>>(), "high watermarks could not be read while nothing arrives");
        stuck.extend(unknown);
    }
    if stuck.is_empty() {
        debug!(
            partitions = held.len(),
            "nothing received and nothing waiting"
        );
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
