//! The front half of the data path against a real broker (Apache Kafka) and the registry fixture:
//! `spillway produce` → Kafka source (consumer group, explicit positions) → Avro decoding
//! into Arrow, with exact values; schema evolution across writers; a registry outage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use rdkafka::Message;
use spillway_api::KafkaSource as KafkaSpec;
use spillway_e2e as support;
use spillway_e2e::registry::RegistryFixture;
use spillway_worker::format::ValueDecoder;
use spillway_worker::secrets::MapSecrets;
use spillway_worker::source::{Accept, Assignment, KafkaSource, Positions, TopicPartition, config};
use spillway_worker::tools::generate::HsuTestGenerator;

fn produce(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .arg("produce")
        .args(["--bootstrap", &support::kafka_bootstrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("produced"));
}

fn kafka_spec(topic: &str) -> KafkaSpec {
    serde_yaml::from_str(&format!(
        "{{bootstrapServers: '{}', topics: [{topic}]}}",
        support::kafka_bootstrap()
    ))
    .unwrap()
}

fn format_spec(yaml: &str) -> spillway_api::AvroFormat {
    serde_yaml::from_str(yaml).unwrap()
}

/// The consumer config of a test: a unique group, short session timeouts (fast joins).
fn test_config(spec: &KafkaSpec) -> BTreeMap<String, String> {
    let mut cfg =
        config::consumer_config(spec, &support::unique("g"), "test", &MapSecrets::default())
            .unwrap();
    cfg.insert("max.poll.interval.ms".into(), "10000".into());
    cfg.insert("session.timeout.ms".into(), "10000".into());
    cfg
}

/// A Confluent decoder for a format with a registry.
async fn registry_decoder(yaml: &str) -> ValueDecoder<(i32, i64)> {
    let format = format_spec(yaml);
    let client = spillway_worker::format::registry_client(
        &spillway_api::FormatSpec::avro(format.clone()),
        &MapSecrets::default(),
    )
    .unwrap();
    ValueDecoder::avro(&format, std::path::Path::new("."), client)
        .await
        .unwrap()
}

/// Consumes `n` records through the source, decoding each with `decoder`; returns the
/// batch, the (partition, offset) of each row, and the bad-record reasons.
async fn consume(
    topic: &str,
    n: usize,
    decoder: &mut ValueDecoder<(i32, i64)>,
) -> (RecordBatch, Vec<(i32, i64)>, Vec<&'static str>) {
    let spec = kafka_spec(topic);
    let cfg = test_config(&spec);
    let (source, mut assignments) = KafkaSource::subscribe(&spec, &cfg).unwrap();
    let mut positions = Positions::default();
    let mut bad = Vec::new();
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen < n {
        tokio::select! {
            Some(a) = assignments.recv() => match a {
                Assignment::Assigned(tps) => {
                    let report = source.position(&tps, &BTreeMap::new()).await.unwrap();
                    positions.start(&report.next);
                }
                Assignment::Revoked(tps) => positions.stop(&tps),
            },
            msg = source.recv_record() => {
                let msg = msg.unwrap();
                match positions.accept(msg.topic(), msg.partition(), msg.offset()) {
                    Accept::Keep => {}
                    Accept::Gap { .. } => positions.advance(msg.topic(), msg.partition(), msg.offset()),
                    Accept::Drop | Accept::NotPositioned => continue,
                }
                seen += 1;
                if let Err(b) = decoder.push(msg.payload(), (msg.partition(), msg.offset())).await.unwrap() {
                    bad.push(b.reason());
                }
            },
            _ = tokio::time::sleep_until(deadline) => panic!("only {seen} of {n} records within 120s"),
        }
    }
    let (batch, meta) = decoder
        .finish()
        .unwrap()
        .unwrap_or_else(|| panic!("no rows"));
    (batch, meta, bad)
}

fn rows(batch: &RecordBatch) -> Vec<(String, String, f64, i64)> {
    let user = batch.column_by_name("user").unwrap().as_string::<i32>();
    let event = batch.column_by_name("event").unwrap().as_string::<i32>();
    let amount = batch
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<Float64Type>();
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|i| {
            (
                user.value(i).to_string(),
                event.value(i).to_string(),
                amount.value(i),
                ts.value(i),
            )
        })
        .collect()
}

fn expected(seed: u64, n: usize) -> Vec<(String, String, f64, i64)> {
    let mut g = HsuTestGenerator::new(seed);
    (0..n)
        .map(|_| g.next_event())
        .map(|e| (e.user, e.event.to_string(), e.amount, e.ts))
        .collect()
}

fn sorted(mut v: Vec<(String, String, f64, i64)>) -> Vec<(String, String, f64, i64)> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_records_decode_with_exact_values() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("raw");
    let n = 20_000;
    produce(&[
        "--topic",
        &topic,
        "--count",
        &n.to_string(),
        "--seed",
        "7",
        "--partitions",
        "4",
        "--key-by-user",
    ]);
    let format = format_spec(&format!(
        "{{encoding: raw, writerSchema: {{inline: '{}'}}}}",
        spillway_worker::tools::generate::HSUTEST_SCHEMA
    ));
    let mut decoder = ValueDecoder::avro(&format, std::path::Path::new("."), None)
        .await
        .unwrap();
    let (batch, meta, bad) = consume(&topic, n, &mut decoder).await;
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(batch.num_rows(), n);
    assert_eq!(sorted(rows(&batch)), sorted(expected(7, n)));
    let partitions: std::collections::BTreeSet<i32> = meta.iter().map(|m| m.0).collect();
    assert_eq!(
        partitions.len(),
        4,
        "keyed records spread over the 4 partitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_records_decode_through_the_registry_even_during_an_outage() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let registry = RegistryFixture::start().await.unwrap();
    let topic = support::unique("confluent");
    let n = 5_000;
    let (url, t) = (registry.url.clone(), topic.clone());
    tokio::task::spawn_blocking(move || {
        produce(&[
            "--topic",
            &t,
            "--count",
            &n.to_string(),
            "--seed",
            "11",
            "--partitions",
            "2",
            "--encoding",
            "confluent",
            "--schema-registry",
            &url,
        ]);
    })
    .await
    .unwrap();
    // The registry now answers 503 to the next 4 requests: the decoder waits, loses nothing.
    registry.fail_next(4);
    let mut decoder = registry_decoder(&format!(
        "{{encoding: confluent, schemaRegistry: {{url: '{}', timeout: 2s}}}}",
        registry.url
    ))
    .await;
    let (batch, _, bad) = consume(&topic, n, &mut decoder).await;
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(sorted(rows(&batch)), sorted(expected(11, n)));
    let (requests, failed) = registry.counts();
    assert_eq!(failed, 4, "the outage was seen");
    assert!(
        requests >= 6,
        "register + 4 failures + the successful lookup: {requests}"
    );
}

const V1: &str = r#"{"type":"record","name":"HsuTestEvent","fields":[{"name":"user","type":"string"},{"name":"event","type":"string"},{"name":"amount","type":"double"},{"name":"ts","type":"long"}]}"#;
const V2: &str = r#"{"type":"record","name":"HsuTestEvent","fields":[{"name":"user","type":"string"},{"name":"event","type":"string"},{"name":"amount","type":"double"},{"name":"ts","type":"long"},{"name":"country","type":"string","default":"unknown"}]}"#;

fn confluent(id: u32, schema: &str, fields: Vec<(&str, apache_avro::types::Value)>) -> Vec<u8> {
    common::confluent_avro(id, schema, fields)
}

async fn send_all(topic: &str, partitions: i32, payloads: &[Vec<u8>]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), topic, partitions)
        .await
        .unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .create()
        .unwrap();
    for (i, p) in payloads.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(topic).payload(p).key(&key).partition(0),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_writers_interleaved_decode_under_the_v2_reader() {
    use apache_avro::types::Value;
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let registry = RegistryFixture::start().await.unwrap();
    let topic = support::unique("evolve");
    let subject = format!("{topic}-value");
    let (id1, id2) = (
        registry.register(&subject, V1),
        registry.register(&subject, V2),
    );
    let base = |i: i64| {
        vec![
            ("user", Value::String(format!("user-{i}"))),
            ("event", Value::String("click".into())),
            ("amount", Value::Double(i as f64 / 4.0)),
            ("ts", Value::Long(1_000 + i)),
        ]
    };
    let payloads: Vec<Vec<u8>> = (0..100i64)
        .map(|i| {
            if i % 2 == 0 {
                confluent(id1, V1, base(i))
            } else {
                let mut f = base(i);
                f.push(("country", Value::String(format!("c{i}"))));
                confluent(id2, V2, f)
            }
        })
        .collect();
    send_all(&topic, 1, &payloads).await;
    let mut decoder = registry_decoder(&format!(
        "{{encoding: confluent, schemaRegistry: {{url: '{}'}}, readerSchema: {{registry: {{subject: '{subject}', version: latest}}}}}}",
        registry.url
    ))
    .await;
    let (batch, meta, bad) = consume(&topic, 100, &mut decoder).await;
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(batch.num_columns(), 5, "the v2 reader schema");
    let country = batch.column_by_name("country").unwrap().as_string::<i32>();
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut by_offset: Vec<(i64, i64, String)> = (0..batch.num_rows())
        .map(|r| (meta[r].1, ts.value(r), country.value(r).to_string()))
        .collect();
    by_offset.sort();
    for (offset, ts, country) in by_offset {
        assert_eq!(ts, 1_000 + offset);
        let want = if offset % 2 == 0 {
            "unknown".to_string()
        } else {
            format!("c{offset}")
        };
        assert_eq!(country, want, "offset {offset}");
    }
}

/// A format whose registry needs basic auth, with the credentials as secret references
/// resolved the local way (`SPILLWAY_SECRET_<NAME>_<KEY>`).
async fn authenticated_decoder(url: &str, password: &str) -> ValueDecoder<(i32, i64)> {
    let format = format_spec(&format!(
        "{{encoding: confluent, schemaRegistry: {{url: '{url}', timeout: 2s, basicAuth: {{usernameSecretRef: {{name: registry, key: user}}, passwordSecretRef: {{name: registry, key: password}}}}}}}}"
    ));
    let secrets = MapSecrets(
        [
            (
                "SPILLWAY_SECRET_REGISTRY_USER".to_string(),
                "spillway".to_string(),
            ),
            (
                "SPILLWAY_SECRET_REGISTRY_PASSWORD".to_string(),
                password.to_string(),
            ),
        ]
        .into(),
    );
    let client = spillway_worker::format::registry_client(
        &spillway_api::FormatSpec::avro(format.clone()),
        &secrets,
    )
    .unwrap();
    ValueDecoder::avro(&format, std::path::Path::new("."), client)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_basic_auth_is_read_with_credentials_from_secret_references() {
    use apache_avro::types::Value;
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let registry = RegistryFixture::start_with_basic_auth("spillway", "s3cr3t-pw")
        .await
        .unwrap();
    let topic = support::unique("auth");
    let id = registry.register(&format!("{topic}-value"), V1);
    let payloads: Vec<Vec<u8>> = (0..20i64)
        .map(|i| {
            confluent(
                id,
                V1,
                vec![
                    ("user", Value::String(format!("user-{i}"))),
                    ("event", Value::String("view".into())),
                    ("amount", Value::Double(i as f64)),
                    ("ts", Value::Long(5_000 + i)),
                ],
            )
        })
        .collect();
    send_all(&topic, 1, &payloads).await;

    // The right credentials: every record decodes, and no request was refused.
    let mut decoder = authenticated_decoder(&registry.url, "s3cr3t-pw").await;
    let (batch, meta, bad) = consume(&topic, 20, &mut decoder).await;
    assert!(bad.is_empty(), "{bad:?}");
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<Int64Type>();
    for (r, (_, offset)) in meta.iter().enumerate() {
        assert_eq!(ts.value(r), 5_000 + offset);
    }
    assert_eq!(registry.unauthorized(), 0);

    // Wrong credentials: a configuration error that stops the pipeline — not a bad record
    // (nothing is dead-lettered) and not an outage (no endless retry) — and the error
    // does not carry the password.
    let mut wrong = authenticated_decoder(&registry.url, "wrong-pw").await;
    let err = wrong
        .push(Some(&payloads[0]), (0, 0))
        .await
        .expect_err("a refused credential is an error, not a decoded or bad record");
    let text = err.to_string();
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("wrong-pw") && !format!("{err:?}").contains("wrong-pw"));
    assert_eq!(registry.unauthorized(), 1, "refused once, not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_offsets_apply_where_the_sink_has_no_position() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("start");
    // Records in multi-record batches (the producer's defaults): a position inside a batch
    // reads back from exactly that offset.
    produce(&[
        "--topic",
        &topic,
        "--count",
        "51",
        "--seed",
        "3",
        "--partitions",
        "1",
    ]);
    let mut spec = kafka_spec(&topic);
    spec.starting_offsets = spillway_api::StartingOffsets::Offsets;
    spec.starting_partition_offsets =
        Some([(topic.clone(), [("0".to_string(), 20i64)].into())].into());
    let cfg = test_config(&spec);
    let (source, mut assignments) = KafkaSource::subscribe(&spec, &cfg).unwrap();
    let tp = TopicPartition {
        topic: topic.clone(),
        partition: 0,
    };
    // Rebalance callbacks run while the consumer is polled: poll until assigned.
    let tps = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            Some(Assignment::Assigned(tps)) = assignments.recv() => tps,
            m = source.recv_record() => panic!("unexpected record before positioning: {:?}", m.map(|m| m.offset())),
        }
    })
    .await
    .unwrap();
    assert_eq!(tps, vec![tp.clone()]);
    // No sink position: startingPartitionOffsets says 20.
    let marks = source.watermarks(&tp).await.unwrap();
    let report = source.position(&tps, &BTreeMap::new()).await.unwrap();
    assert_eq!(report.next[&tp], 20, "watermarks {marks:?}");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = tokio::time::timeout(Duration::from_secs(30), source.recv_record())
            .await
            .unwrap()
            .unwrap();
        seen.push(m.offset());
    }
    assert_eq!(seen, [20, 21, 22, 23], "watermarks {marks:?}");
    // The sink's position wins over startingOffsets.
    let report = source
        .position(&tps, &[(tp.clone(), 42)].into())
        .await
        .unwrap();
    assert_eq!(report.next[&tp], 42);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = tokio::time::timeout(Duration::from_secs(30), source.recv_record())
            .await
            .unwrap()
            .unwrap();
        seen.push(m.offset());
    }
    assert_eq!(seen, [42, 43, 44, 45]);
    let (low, high) = source.watermarks(&tp).await.unwrap();
    assert_eq!((low, high), (0, 51));
}
