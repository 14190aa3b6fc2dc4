//! Pure: the expected next offset of every positioned partition, what to do with a record
//! given it (keep, drop as already committed, or check a gap for data loss), and whether an
//! `availableNow` run reached its end offsets.

use std::collections::BTreeMap;

use super::TopicPartition;

/// What to do with a received record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// The expected next record: process it.
    Keep,
    /// Before the expected offset (fetched before a seek, or already in the sink): drop it.
    Drop,
    /// After the expected offset: offsets in between are missing. Compaction and
    /// transaction markers make such gaps legitimately; the caller checks the partition's
    /// low watermark to tell data loss apart, then calls [`Positions::advance`].
    Gap {
        /// The offset that was expected.
        expected: i64,
    },
    /// A partition that is not (or no longer) positioned: drop it.
    NotPositioned,
}

/// Expected next offsets of the positioned partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    next: BTreeMap<TopicPartition, i64>,
}

impl Positions {
    /// Starts tracking partitions at the given next offsets.
    pub fn start(&mut self, next: &BTreeMap<TopicPartition, i64>) {
        self.next.extend(next.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// Stops tracking partitions (revoked).
    pub fn stop(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.next.remove(tp);
        }
    }

    /// Classifies a record; on `Keep` the expected offset moves past it.
    pub fn accept(&mut self, topic: &str, partition: i32, offset: i64) -> Accept {
        let Some(next) = self
            .next
            .iter_mut()
            .find(|(tp, _)| tp.partition == partition && tp.topic == topic)
            .map(|(_, n)| n)
        else {
            return Accept::NotPositioned;
        };
        if offset == *next {
            *next = offset + 1;
            Accept::Keep
        } else if offset < *next {
            Accept::Drop
        } else {
            Accept::Gap { expected: *next }
        }
    }

    /// Accepts a record after a gap was judged (legitimate or skipped data loss).
    pub fn advance(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(n) = self
            .next
            .iter_mut()
            .find(|(tp, _)| tp.partition == partition && tp.topic == topic)
        {
            *n.1 = offset + 1;
        }
    }

    /// The tracked partitions and their next offsets.
    pub fn next_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.next
    }

    /// Whether a partition is positioned.
    pub fn is_positioned(&self, tp: &TopicPartition) -> bool {
        self.next.contains_key(tp)
    }
}

/// Whether every partition of `end` reached its end offset: by the loop's next offset, or
/// by the consumer's position, which moves past transaction markers (a topic written by a
/// transactional producer ends with a marker no record is read at). A partition the loop
/// no longer tracks (revoked) is someone else's to finish.
pub fn end_reached(
    end: &BTreeMap<TopicPartition, i64>,
    next: &BTreeMap<TopicPartition, i64>,
    consumed: &BTreeMap<TopicPartition, i64>,
) -> bool {
    end.iter().all(|(tp, e)| match next.get(tp) {
        None => true,
        Some(n) => (*n).max(consumed.get(tp).copied().unwrap_or(i64::MIN)) >= *e,
    })
}

/// The partitions with records waiting that the consumer has not moved into: the loop's
/// next offset (or the consumer's position, past transaction markers) is below the
/// partition's high watermark. What a worker that received nothing for a while re-seeks, at
/// its next offset ([`crate::engine`]'s stall check).
pub fn stalled(
    next: &BTreeMap<TopicPartition, i64>,
    consumed: &BTreeMap<TopicPartition, i64>,
    high: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    next.iter()
        .filter(|(tp, n)| {
            let at = (**n).max(consumed.get(*tp).copied().unwrap_or(i64::MIN));
            high.get(*tp).is_some_and(|h| *h > at)
        })
        .map(|(tp, n)| (tp.clone(), *n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_partitions_are_those_behind_their_high_watermark() {
        let tp = |p| TopicPartition {
            topic: "t".into(),
            partition: p,
        };
        let next = BTreeMap::from([(tp(0), 10), (tp(1), 10), (tp(2), 10), (tp(3), 10)]);
        // 0: records waiting; 1: drained; 2: only a transaction marker left (the consumer
        // moved past it); 3: no watermark known.
        let consumed = BTreeMap::from([(tp(2), 11)]);
        let high = BTreeMap::from([(tp(0), 15), (tp(1), 10), (tp(2), 11)]);
        assert_eq!(
            stalled(&next, &consumed, &high),
            BTreeMap::from([(tp(0), 10)])
        );
        assert!(stalled(&BTreeMap::new(), &consumed, &high).is_empty());
    }

    #[test]
    fn keep_drop_gap_and_revocation() {
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let mut p = Positions::default();
        assert_eq!(p.accept("t", 0, 0), Accept::NotPositioned);
        p.start(&[(tp.clone(), 10)].into());
        assert_eq!(p.accept("t", 0, 9), Accept::Drop);
        assert_eq!(p.accept("t", 0, 10), Accept::Keep);
        assert_eq!(p.accept("t", 0, 11), Accept::Keep);
        assert_eq!(p.accept("t", 0, 11), Accept::Drop);
        assert_eq!(p.accept("t", 0, 15), Accept::Gap { expected: 12 });
        p.advance("t", 0, 15);
        assert_eq!(p.accept("t", 0, 16), Accept::Keep);
        assert_eq!(p.next_offsets()[&tp], 17);
        p.stop(std::slice::from_ref(&tp));
        assert_eq!(p.accept("t", 0, 17), Accept::NotPositioned);
    }

    #[test]
    fn end_reached_by_records_or_by_the_position_past_markers() {
        let tp = |p| TopicPartition {
            topic: "t".into(),
            partition: p,
        };
        let end: BTreeMap<_, _> = [(tp(0), 10), (tp(1), 5)].into();
        let none = BTreeMap::new();
        type Case = (&'static str, Vec<(i32, i64)>, Vec<(i32, i64)>, bool);
        let cases: Vec<Case> = vec![
            (
                "records read to the end",
                vec![(0, 10), (1, 5)],
                vec![],
                true,
            ),
            ("one partition short", vec![(0, 9), (1, 5)], vec![], false),
            // The last record is at 8 and a commit marker at 9: the position says 10.
            (
                "marker at the end",
                vec![(0, 9), (1, 5)],
                vec![(0, 10)],
                true,
            ),
            (
                "position not there yet",
                vec![(0, 9), (1, 5)],
                vec![(0, 9)],
                false,
            ),
            ("a revoked partition", vec![(0, 10)], vec![], true),
            (
                "an empty partition",
                vec![(0, 10), (1, 5)],
                vec![(1, 0)],
                true,
            ),
        ];
        for (case, next, consumed, want) in cases {
            let next = next.into_iter().map(|(p, o)| (tp(p), o)).collect();
            let consumed: BTreeMap<_, _> = consumed.into_iter().map(|(p, o)| (tp(p), o)).collect();
            assert_eq!(end_reached(&end, &next, &consumed), want, "{case}");
        }
        assert!(end_reached(&BTreeMap::new(), &none, &none));
    }
}
