//! A schema-registry outage longer than `max.poll.interval.ms` (10 s in these runs), against
//! Apache Kafka and the registry fixture: the worker pauses its partitions and keeps polling,
//! so it stays in its consumer group (one assignment in the whole run), writes nothing to
//! the dead letters and, once the registry answers, commits every offset exactly once
//! (read back with Python `deltalake`). A shutdown during the outage ends the run at once,
//! without committing the open batch; the next run finishes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;
use spillway_e2e::registry::RegistryFixture;

/// `n` HsuTestEvents in the Confluent wire format on 2 partitions, their schema in the
/// fixture: (registry, topic, run directory).
async fn setup(prefix: &str, n: u64) -> (RegistryFixture, String, std::path::PathBuf) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let registry = RegistryFixture::start().await.unwrap();
    let topic = support::unique(prefix);
    let (url, t) = (registry.url.clone(), topic.clone());
    tokio::task::spawn_blocking(move || {
        common::produce(
            &support::kafka_bootstrap(),
            &t,
            n,
            5,
            &[
                "--partitions",
                "2",
                "--encoding",
                "confluent",
                "--schema-registry",
                &url,
            ],
        );
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(support::unique(prefix));
    (registry, topic, dir)
}

fn manifest(topic: &str, registry: &str, dir: &std::path::Path) -> String {
    let dead = dir.join("dlq").display().to_string();
    Manifest::new(topic)
        .avro(json!({
            "encoding": "confluent",
            "schemaRegistry": {"url": registry, "timeout": "2s"},
        }))
        .metadata_columns(&["partition", "offset"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
        .available_now()
        .set(
            "/spec/errors",
            json!({"onBadRecord": "deadLetter", "deadLetter": {"delta": {"uri": dead}}}),
        )
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_poll_interval_keeps_the_group_and_loses_nothing() {
    let n = 20_000;
    let (registry, topic, dir) = setup("outage", n).await;
    // 25 s of 503s: two and a half times `max.poll.interval.ms`.
    registry.down_for(Duration::from_secs(25));
    let finished = common::finish_available_now(&manifest(&topic, &registry.url, &dir)).await;
    let summary = finished.result.unwrap();
    let (_, failed) = registry.counts();
    assert!(
        failed >= 5,
        "the outage was seen: {failed} requests refused"
    );
    assert_eq!(
        summary.assignments, 1,
        "the worker never left its group: one assignment in the whole run"
    );
    assert_eq!(summary.skipped, 0, "nothing was a bad record");
    assert_eq!(summary.rows, n as i64);
    assert!(
        !dir.join("dlq").join("_delta_log").exists(),
        "no dead letter was written"
    );
    let (rows, pairs) = common::python_pairs(dir.join("t").to_str().unwrap());
    assert_eq!(
        (rows, pairs.len() as u64),
        (n, n),
        "every offset exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_an_outage_stops_at_once_and_the_next_run_finishes() {
    let n = 5_000;
    let (registry, topic, dir) = setup("outage-stop", n).await;
    registry.down_for(Duration::from_secs(600));
    let text = manifest(&topic, &registry.url, &dir);
    let run = common::Streaming::start(&text);
    // Until the worker has asked the registry a few times (it is waiting on it).
    let deadline = Instant::now() + Duration::from_secs(60);
    while registry.counts().1 < 3 {
        assert!(
            Instant::now() < deadline,
            "the worker never asked the registry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let asked = Instant::now();
    let stopped = run.stop().await;
    let took = asked.elapsed();
    let summary = stopped.result.unwrap();
    // Kubernetes' default grace period is 30 s; the wait itself ends at once.
    assert!(
        took < Duration::from_secs(30),
        "shutdown honoured within the grace period: {took:?}"
    );
    assert_eq!(
        summary.rows, 0,
        "nothing was committed past the undecoded record"
    );
    registry.down_for(Duration::ZERO);
    let again = common::run_available_now(&text).await.unwrap();
    assert_eq!(again.rows, n as i64);
    let (rows, pairs) = common::python_pairs(dir.join("t").to_str().unwrap());
    assert_eq!(
        (rows, pairs.len() as u64),
        (n, n),
        "every offset exactly once"
    );
}
