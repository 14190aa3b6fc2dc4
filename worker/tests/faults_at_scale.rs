//! The fault suites at scale, against Apache Kafka, moto (S3) and the registry fixture; every
//! table read back by our code and by Python (`deltalake`, a plain `pyarrow.dataset` scan):
//! every (partition, offset) exactly once and the values those of the records produced.
//!
//! - `spillway run` SIGKILLed at random moments and restarted (Delta and Parquet on S3);
//! - scaling 1 → 3 → 1 workers while a producer writes (workers join; two leave by SIGTERM);
//! - a zombie: a worker SIGSTOPped past its session timeout, its partitions taken over,
//!   then SIGCONTed (its late commits are fenced);
//! - the schema registry unreachable mid-run: no dead letter, the worker stays in its group
//!   (`max.poll.interval.ms` 10 s), then catches up.
//!
//! Scale: `SPILLWAY_FAULT_SCALE=full` (`bash e2e/scripts/faults.sh`) runs 1,000,000 records
//! on 8 partitions, 20 kills, 3 scaling rounds and a 60 s outage; otherwise (the test suite)
//! the same suites with 100,000 records on 8 partitions, 5 kills, 1 round, a 15 s outage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::faults::{
    Digest, Kind, Reaped, count_in, delta_counts, kill_repeatedly, kill_test_manifest,
    parquet_pairs, python_read, signal, spawn_run, wait_for, wait_for_progress,
};
use common::manifest::{Manifest, s3_storage};
use serde_json::json;
use spillway_e2e as support;
use spillway_e2e::registry::RegistryFixture;

/// How big the suites are.
#[derive(Debug, Clone, Copy)]
struct Scale {
    records: u64,
    partitions: i32,
    kills: usize,
    rounds: usize,
    outage: Duration,
}

fn scale() -> Scale {
    let s = if std::env::var("SPILLWAY_FAULT_SCALE").as_deref() == Ok("full") {
        Scale {
            records: 1_000_000,
            partitions: 8,
            kills: 20,
            rounds: 3,
            outage: Duration::from_secs(60),
        }
    } else {
        Scale {
            records: 100_000,
            partitions: 8,
            kills: 5,
            rounds: 1,
            outage: Duration::from_secs(15),
        }
    };
    eprintln!("fault scale: {s:?}");
    s
}

/// A run's places: the sink and checkpoint on moto under a fresh prefix, logs locally.
struct Place {
    topic: String,
    data: String,
    checkpoint: String,
    dir: PathBuf,
}

fn place(name: &str) -> Place {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    support::require("moto (s3)", &support::host_port(&support::s3_endpoint())).unwrap();
    let prefix = format!("s3://{}/{}", support::s3_bucket(), support::unique(name));
    let dir = std::env::temp_dir().join(support::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    Place {
        topic: support::unique(name),
        data: format!("{prefix}/data"),
        checkpoint: format!("{prefix}/checkpoint"),
        dir,
    }
}

fn sink(kind: &Kind, data: &str) -> serde_json::Value {
    match kind {
        Kind::Delta => json!({"delta": {"uri": data}}),
        Kind::Parquet => json!({"parquet": {"uri": data, "partitionBy": ["event"]}}),
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Delta => "delta",
        Kind::Parquet => "parquet",
    }
}

/// The manifest of `place` with a trigger every `every` and batches of at most `batch`
/// records, written to `pipeline.yaml` too.
fn manifest(p: &Place, kind: &Kind, every: &str, batch: u64) -> (PathBuf, Manifest) {
    let pipeline = kill_test_manifest(&p.topic, &p.topic)
        .kafka("maxRecordsPerBatch", batch)
        .sink(sink(kind, &p.data))
        .checkpoint(&p.checkpoint)
        .interval(every)
        .storage(s3_storage());
    let path = p.dir.join("pipeline.yaml");
    std::fs::write(&path, pipeline.yaml()).unwrap();
    (path, pipeline)
}

/// `spillway produce` of `n` HsuTestEvents of `seed` on `partitions`, at `rps` records per
/// second (0: as fast as it can), as a child process.
fn spawn_producer(topic: &str, n: u64, seed: u64, partitions: i32, rps: u64, log: &Path) -> Reaped {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args([
            "produce",
            "--bootstrap",
            &support::kafka_bootstrap(),
            "--topic",
            topic,
        ])
        .args(["--count", &n.to_string(), "--seed", &seed.to_string()])
        .args([
            "--partitions",
            &partitions.to_string(),
            "--rps",
            &rps.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .map(Reaped)
        .unwrap()
}

/// The rest finished by an `availableNow` run; then every offset exactly once, by our
/// reading and Python's, with the values of the `n` records of `seed`.
async fn finish_and_verify(p: &Place, kind: &Kind, pipeline: &Manifest, n: u64, seed: u64) {
    // Large batches: what the faulted runs left can be most of the topic.
    let available_now = pipeline
        .clone()
        .available_now()
        .kafka("maxRecordsPerBatch", 100_000)
        .yaml();
    common::run_available_now(&available_now).await.unwrap();
    match kind {
        Kind::Delta => assert_eq!(delta_counts(&p.data).await, (n, n), "our reading"),
        Kind::Parquet => {
            let (rows, pairs) = parquet_pairs(&p.data, &p.checkpoint).await;
            assert_eq!((rows, pairs.len() as u64), (n, n), "our reading");
        }
    }
    let read = python_read(kind_name(kind), &p.data);
    assert_eq!((read.rows, read.distinct), (n, n), "Python's reading");
    assert_eq!(
        read.digest,
        Digest::of_generated(seed, n),
        "the values are those produced"
    );
}

/// Creates the topic before any worker subscribes.
async fn ensure_topic(topic: &str, partitions: i32) {
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), topic, partitions)
        .await
        .unwrap();
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn sigkill_case(kind: Kind, seed: u64) {
    let s = scale();
    let p = place(&format!("scale-kill-{}", kind_name(&kind)));
    let log = p.dir.join("produce.log");
    let mut producer = spawn_producer(&p.topic, s.records, seed, s.partitions, 0, &log);
    assert!(producer.wait().unwrap().success(), "produce failed");
    let (path, pipeline) = manifest(&p, &kind, "500ms", 4000);
    let (dir, kills) = (p.dir.clone(), s.kills);
    blocking(move || kill_repeatedly(&path, &dir, kills)).await;
    finish_and_verify(&p, &kind, &pipeline, s.records, seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_at_scale_delta_on_s3() {
    sigkill_case(Kind::Delta, 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_at_scale_parquet_on_s3() {
    sigkill_case(Kind::Parquet, 32).await;
}

/// Waits until `log` says its worker holds all `partitions` once more than `before` times.
fn wait_holding_all(log: &Path, partitions: i32, before: usize) {
    let all = format!("partitions assigned and positioned partitions={partitions}");
    wait_for(log, &all, before + 1, Duration::from_secs(180));
}

fn holding_all(log: &Path, partitions: i32) -> usize {
    count_in(
        log,
        &format!("partitions assigned and positioned partitions={partitions}"),
    )
}

/// SIGTERM (a scale-down) and the exit status.
fn stop(mut child: Reaped) -> std::process::ExitStatus {
    signal(&child, "TERM");
    child.wait().unwrap()
}

async fn scaling_case(kind: Kind, seed: u64) {
    let s = scale();
    let p = place(&format!("scale-131-{}", kind_name(&kind)));
    ensure_topic(&p.topic, s.partitions).await;
    let (path, pipeline) = manifest(&p, &kind, "300ms", 1000);
    // The producer writes through every round (≈ 25 s each).
    let rps = s.records / (25 * s.rounds as u64);
    let plog = p.dir.join("produce.log");
    let producer = spawn_producer(&p.topic, s.records, seed, s.partitions, rps, &plog);
    let (dir, rounds, parts) = (p.dir.clone(), s.rounds, s.partitions);
    blocking(move || {
        let mut producer = producer;
        let a_log = dir.join("a.log");
        let a = spawn_run(&path, &a_log);
        wait_holding_all(&a_log, parts, 0);
        for r in 0..rounds {
            let done = count_in(&a_log, "batch committed");
            wait_for_progress(&a_log, done + 3, Duration::from_secs(120));
            // 1 → 3: two workers join; every worker gets a share and commits.
            let (b_log, c_log) = (dir.join(format!("b{r}.log")), dir.join(format!("c{r}.log")));
            let (b, c) = (spawn_run(&path, &b_log), spawn_run(&path, &c_log));
            wait_for_progress(&b_log, 2, Duration::from_secs(180));
            wait_for_progress(&c_log, 2, Duration::from_secs(180));
            let before = holding_all(&a_log, parts);
            // 3 → 1: both leave; the first worker takes every partition back.
            assert!(stop(b).success(), "a scaled-down worker exits 0");
            assert!(stop(c).success(), "a scaled-down worker exits 0");
            wait_holding_all(&a_log, parts, before);
            eprintln!("round {r}: 1 → 3 → 1 done");
        }
        assert!(producer.wait().unwrap().success(), "produce failed");
        assert!(stop(a).success());
    })
    .await;
    finish_and_verify(&p, &kind, &pipeline, s.records, seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_1_3_1_while_producing_delta_on_s3() {
    scaling_case(Kind::Delta, 33).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_1_3_1_while_producing_parquet_on_s3() {
    scaling_case(Kind::Parquet, 34).await;
}

async fn zombie_case(kind: Kind, seed: u64) {
    let s = scale();
    let p = place(&format!("scale-zombie-{}", kind_name(&kind)));
    ensure_topic(&p.topic, s.partitions).await;
    let plog = p.dir.join("produce.log");
    // Produced while the workers run, so both are mid-stream when one freezes.
    let rps = s.records / 60;
    let producer = spawn_producer(&p.topic, s.records, seed, s.partitions, rps, &plog);
    let (path, pipeline) = manifest(&p, &kind, "200ms", 500);
    let (dir, parts) = (p.dir.clone(), s.partitions);
    blocking(move || {
        let mut producer = producer;
        let (a_log, b_log) = (dir.join("a.log"), dir.join("b.log"));
        let a = spawn_run(&path, &a_log);
        let b = spawn_run(&path, &b_log);
        wait_for_progress(&a_log, 3, Duration::from_secs(120));
        wait_for_progress(&b_log, 3, Duration::from_secs(120));
        let before = holding_all(&b_log, parts);
        let frozen = Instant::now();
        signal(&a, "STOP");
        // Past `session.timeout.ms` (6 s) the group gives every partition to `b`.
        wait_holding_all(&b_log, parts, before);
        let committed = count_in(&b_log, "batch committed");
        wait_for_progress(&b_log, committed + 3, Duration::from_secs(120));
        eprintln!("zombie frozen for {:?}", frozen.elapsed());
        signal(&a, "CONT");
        // The zombie wakes up with its old batch and assignment: fenced, it rejoins.
        let a_done = count_in(&a_log, "batch committed");
        wait_for_progress(&a_log, a_done + 2, Duration::from_secs(180));
        eprintln!(
            "zombie batches abandoned: {}",
            count_in(&a_log, "batch abandoned")
        );
        assert!(producer.wait().unwrap().success(), "produce failed");
        assert!(stop(a).success());
        assert!(stop(b).success());
    })
    .await;
    finish_and_verify(&p, &kind, &pipeline, s.records, seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_zombie_worker_delta_on_s3() {
    zombie_case(Kind::Delta, 35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_zombie_worker_parquet_on_s3() {
    zombie_case(Kind::Parquet, 36).await;
}

/// HsuTestEvent under a new schema id (the same fields, documented): a writer the worker has
/// not met, registered while the registry is up; its records arrive while it is down.
const V2: &str = r#"{"type":"record","name":"HsuTestEvent","doc":"v2","fields":[{"name":"user","type":"string"},{"name":"event","type":"string"},{"name":"amount","type":"double"},{"name":"ts","type":"long"}]}"#;

/// Records `from..to` of `seed` in the Confluent wire format with schema id `id`.
async fn send_v2(topic: &str, id: u32, seed: u64, from: u64, to: u64, partitions: i32) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut g = spillway_worker::tools::generate::HsuTestGenerator::new(seed);
    for _ in 0..from {
        g.next_event();
    }
    let mut pending = Vec::new();
    for i in from..to {
        let mut value = vec![0];
        value.extend_from_slice(&id.to_be_bytes());
        g.next_event().encode(&mut value);
        let producer = producer.clone();
        let (topic, partition) = (topic.to_string(), (i % partitions as u64) as i32);
        pending.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .payload(&value)
                        .partition(partition),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e.to_string())
        }));
        if pending.len() >= 10_000 {
            for p in pending.drain(..) {
                p.await.unwrap().unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_unreachable_mid_run_no_dead_letter_then_it_catches_up() {
    let s = scale();
    let p = place("scale-outage");
    let registry = RegistryFixture::start().await.unwrap();
    let (n, half, seed) = (s.records, s.records / 2, 37);
    let url = registry.url.clone();
    let (topic, parts) = (p.topic.clone(), s.partitions);
    blocking(move || {
        common::produce(
            &support::kafka_bootstrap(),
            &topic,
            half,
            seed,
            &[
                "--partitions",
                &parts.to_string(),
                "--encoding",
                "confluent",
                "--schema-registry",
                &url,
            ],
        );
    })
    .await;
    let v2 = registry.register(&format!("{}-value", p.topic), V2);
    let (_, pipeline) = manifest(&p, &Kind::Delta, "500ms", 4000);
    let pipeline = pipeline
        .avro(json!({
            "encoding": "confluent",
            "schemaRegistry": {"url": registry.url, "timeout": "2s"},
        }))
        .set(
            "/spec/errors",
            json!({
                "onBadRecord": "deadLetter",
                "deadLetter": {"delta": {"uri": format!("{}-dlq", p.data)}},
            }),
        );
    let mut run = common::Streaming::start(&pipeline.yaml());
    run.wait_rows(half as i64, Duration::from_secs(300)).await;
    // Down from now on; the newer writer's records need the registry.
    registry.down_for(s.outage);
    let down = Instant::now();
    send_v2(&p.topic, v2, seed, half, n, s.partitions).await;
    run.wait_rows(n as i64, s.outage + Duration::from_secs(300))
        .await;
    eprintln!("caught up {:?} after the outage began", down.elapsed());
    assert!(
        down.elapsed() >= s.outage,
        "the rows after the outage's start waited for the registry"
    );
    let finished = run.stop().await;
    let summary = finished.result.unwrap();
    assert!(registry.counts().1 > 0, "the outage was seen");
    assert_eq!(
        summary.assignments, 1,
        "the worker stayed in its group through the outage"
    );
    assert_eq!(summary.skipped, 0, "no bad record");
    let dead: i64 = finished
        .reports
        .iter()
        .filter_map(|r| r.sink.metrics.get("numDeadLetters"))
        .map(|v| v.parse::<i64>().unwrap())
        .sum();
    assert_eq!(dead, 0, "no dead letter");
    finish_and_verify(&p, &Kind::Delta, &pipeline, n, seed).await;
}
