//! A topic written by transactional producers, on Apache Kafka: committed and aborted
//! transactions interleaved in the same partitions. The worker reads `read_committed`: the
//! table holds exactly the committed records; the offsets that aborted records and the
//! commit/abort markers occupy are gaps, not data loss; and `availableNow` ends at the end
//! of the topic although its last offsets are markers no record is ever read at — also
//! when a restart resumes right before such a marker.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
mod common;

use common::manifest::Manifest;
use spillway_e2e as support;

const PARTITIONS: i32 = 2;
const ROUNDS: usize = 6;
const PER_ROUND: usize = 200;
const CHUNK: usize = 20;

fn manifest_text(topic: &str, dir: &std::path::Path) -> String {
    Manifest::hsutest(topic)
        .kafka("onDataLoss", "fail")
        .kafka("maxRecordsPerBatch", 500)
        .metadata_columns(&["partition", "offset"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
        .available_now()
        .yaml()
}

fn transactional(id: &str) -> FutureProducer {
    let p: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("transactional.id", support::unique(id))
        .set("linger.ms", "0")
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p
}

/// Sends `PER_ROUND` records alternately from `a` and `b`, in chunks of `CHUNK` (each chunk
/// acknowledged before the next), over the partitions, so their records interleave in every
/// partition; returns the (partition, offset) of each producer's records.
async fn interleaved_round(
    topic: &str,
    a: &FutureProducer,
    b: &FutureProducer,
    seed: u64,
) -> [BTreeSet<(i32, i64)>; 2] {
    let mut g = spillway_worker::tools::generate::HsuTestGenerator::new(seed);
    let mut sent = [BTreeSet::new(), BTreeSet::new()];
    for chunk in 0..PER_ROUND / CHUNK {
        let (who, producer) = if chunk % 2 == 0 { (0, a) } else { (1, b) };
        let bodies: Vec<Vec<u8>> = (0..CHUNK)
            .map(|_| {
                let mut body = Vec::new();
                g.next_event().encode(&mut body);
                body
            })
            .collect();
        let sends = bodies.iter().enumerate().map(|(i, body)| {
            let partition = i as i32 % PARTITIONS;
            producer.send(
                FutureRecord::<(), _>::to(topic)
                    .payload(body)
                    .partition(partition),
                Duration::from_secs(30),
            )
        });
        for at in futures::future::join_all(sends).await {
            let at = at.map_err(|(e, _)| e).unwrap();
            sent[who].insert((at.partition, at.offset));
        }
    }
    sent
}

/// Rounds of two concurrent transactions, one committed and one aborted (which one
/// alternates); the last round's abort marker ends every partition. Returns the committed
/// records' (partition, offset).
async fn write_transactions(topic: &str) -> BTreeSet<(i32, i64)> {
    let (a, b) = (transactional("txn-a"), transactional("txn-b"));
    let mut committed = BTreeSet::new();
    for round in 0..ROUNDS {
        a.begin_transaction().unwrap();
        b.begin_transaction().unwrap();
        let [sent_a, sent_b] = interleaved_round(topic, &a, &b, round as u64).await;
        let (commit, abort, kept) = if round % 2 == 0 {
            (&a, &b, sent_a)
        } else {
            (&b, &a, sent_b)
        };
        commit.commit_transaction(Duration::from_secs(30)).unwrap();
        abort.abort_transaction(Duration::from_secs(30)).unwrap();
        committed.extend(kept);
    }
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_committed_transactions_land_and_available_now_ends_at_a_marker() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("txn");
    common::create_topic(&topic, PARTITIONS, &[]).await;
    let committed = write_transactions(&topic).await;
    assert_eq!(committed.len(), ROUNDS * PER_ROUND / 2);
    // Each partition holds its records and two markers per round (both producers wrote to
    // it), and ends with markers: its last offsets hold no record.
    let high = (ROUNDS * PER_ROUND) as i64 / i64::from(PARTITIONS) + 2 * ROUNDS as i64;
    for p in 0..PARTITIONS {
        common::wait_for_last_stable_offset(&topic, p, high);
        assert_eq!(common::watermarks(&topic, p), (0, high));
        let last = committed
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .max();
        assert!(
            last.is_some_and(|o| o + 2 < high),
            "{p}: {last:?} vs {high}"
        );
    }
    let dir = std::env::temp_dir().join(support::unique("txn"));
    let text = manifest_text(&topic, &dir);

    // Bounded well below the helper's own limit: the run must not wait for a marker.
    let summary = tokio::time::timeout(Duration::from_secs(90), common::run_available_now(&text))
        .await
        .expect("availableNow did not end at the end of a transactional topic")
        .unwrap();
    assert_eq!(summary.rows, committed.len() as i64);
    assert_eq!(
        summary.lost_offsets, 0,
        "transaction gaps are not data loss"
    );
    let (rows, pairs) = common::python_pairs(&dir.join("t").display().to_string());
    assert_eq!(rows, committed.len() as u64);
    assert_eq!(pairs, committed, "exactly the committed records");

    // A restart positions each partition at the offset after its last committed record,
    // a marker: nothing to read, and the run still ends.
    let again = tokio::time::timeout(Duration::from_secs(90), common::run_available_now(&text))
        .await
        .expect("a restart before the final markers did not end")
        .unwrap();
    assert_eq!((again.rows, again.lost_offsets), (0, 0));
}
