//! A compacted topic on Apache Kafka (`cleanup.policy=compact`, small segments, a low
//! dirty ratio): the log cleaner really removes superseded records before the pipeline
//! reads, so the offsets have gaps. Gaps above the log start are not data loss: the
//! pipeline (with `onDataLoss: fail`) writes every surviving offset exactly once, and the
//! table holds the latest value of every key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
mod common;

use common::manifest::Manifest;
use spillway_e2e as support;

const KEYS: usize = 100;
const ROUNDS: usize = 10;

fn manifest_text(topic: &str, dir: &std::path::Path) -> String {
    Manifest::hsutest(topic)
        .kafka("onDataLoss", "fail")
        .metadata_columns(&["partition", "offset", "key"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
        .available_now()
        .yaml()
}

/// Round `r` writes keys `10r..100`, so key `k`'s last write is in round `k / 10`: after
/// compaction ten records of every round survive, with gaps between them. Each round goes
/// to a new segment (`segment.ms=100`, and the next round starts after that); a last
/// record (key `end`) closes the last round's segment, so every round can be cleaned.
/// Returns the offset of every key's last write.
async fn write_rounds(topic: &str) -> BTreeMap<String, i64> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let mut g = spillway_worker::tools::generate::HsuTestGenerator::new(7);
    let mut latest = BTreeMap::new();
    let rounds = (0..ROUNDS).map(|r| {
        (r * 10..KEYS)
            .map(|k| format!("k{k:03}"))
            .collect::<Vec<_>>()
    });
    let last = std::iter::once(vec!["end".to_string()]);
    for (round, keys) in rounds.chain(last).enumerate() {
        if round > 0 {
            // Broker time, not synchronisation: a segment rolls when the next record
            // arrives after it is older than segment.ms.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for key in keys {
            let mut body = Vec::new();
            g.next_event().encode(&mut body);
            let at = producer
                .send(
                    FutureRecord::to(topic)
                        .key(&key)
                        .payload(&body)
                        .partition(0),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            latest.insert(key, at.offset);
        }
    }
    latest
}

/// The offsets a plain reader finds in partition 0, up to the high watermark.
fn surviving(topic: &str, high: i64) -> BTreeSet<i64> {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("group.id", support::unique("compaction-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut seen: BTreeSet<i64> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last().is_none_or(|o| o + 1 < high) {
        assert!(Instant::now() < deadline, "the reader did not reach {high}");
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            seen.insert(m.unwrap().offset());
        }
    }
    seen
}

/// Waits (at most 120 s) until the log cleaner has removed every superseded record.
fn wait_for_compaction(topic: &str, want: &BTreeSet<i64>, high: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = surviving(topic, high);
        if &now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted within 120 s: {} of {} records left",
            now.len(),
            high
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_lands_every_surviving_offset_once_and_gaps_are_not_data_loss() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("compacted");
    let config = [
        ("cleanup.policy", "compact"),
        ("segment.ms", "100"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("min.compaction.lag.ms", "0"),
        ("delete.retention.ms", "100"),
    ];
    common::create_topic(&topic, 1, &config).await;
    let latest = write_rounds(&topic).await;
    let written: usize = (0..ROUNDS).map(|r| KEYS - r * 10).sum::<usize>() + 1;
    let (low, high) = common::watermarks(&topic, 0);
    assert_eq!((low, high), (0, written as i64));
    let want: BTreeSet<i64> = latest.values().copied().collect();
    assert_eq!(want.len(), KEYS + 1);
    let (t, h) = (topic.clone(), high);
    let w = want.clone();
    tokio::task::spawn_blocking(move || wait_for_compaction(&t, &w, h))
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(support::unique("compacted"));
    let summary = common::run_available_now(&manifest_text(&topic, &dir))
        .await
        .unwrap();
    assert_eq!(summary.lost_offsets, 0, "compaction gaps are not data loss");
    assert_eq!(summary.rows, want.len() as i64);

    let script = r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["_key", "_offset"])
keys = [bytes(k).decode() for k in t.column("_key").to_pylist()]
print(json.dumps([t.num_rows, sorted(zip(keys, t.column("_offset").to_pylist()))]), flush=True)
os._exit(0)
"#;
    let (rows, pairs): (u64, Vec<(String, i64)>) =
        common::python_json(script, &[&dir.join("t").display().to_string()]);
    assert_eq!(rows, want.len() as u64, "every surviving offset once");
    let table: BTreeMap<String, i64> = pairs.into_iter().collect();
    assert_eq!(
        table, latest,
        "the latest value of every key, at its offset"
    );
    // The cleaner changed nothing while the pipeline read.
    assert_eq!(surviving(&topic, high), want);
}
