//! `mode: merge` keeps the right version: rows of one batch with several writer schemas
//! are deduplicated in Kafka order (the decoder groups rows by writer schema, and used to
//! hand them over grouped), and a null `orderBy` is older than any value. Against Apache
//! Kafka and the registry fixture, read back with Python `deltalake`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use apache_avro::types::Value;
use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;
use spillway_e2e::registry::RegistryFixture;

const V1: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"double"}]}"#;
const V2: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"double"},{"name":"unit","type":"string","default":"C"}]}"#;
const WITH_TS: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"double"},{"name":"ts","type":["null","long"],"default":null}]}"#;

fn datum(schema: &str, fields: Vec<(&str, Value)>) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let fields = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    apache_avro::to_avro_datum(&schema, Value::Record(fields)).unwrap()
}

fn confluent(id: u32, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(body);
    out
}

/// A merge pipeline with `avro` as `spec.format.avro` and `merge` as the sink's `merge`.
fn manifest(
    topic: &str,
    avro: serde_json::Value,
    merge: serde_json::Value,
    dir: &std::path::Path,
) -> String {
    Manifest::new(topic)
        .avro(avro)
        .sink(json!({"delta": {
            "uri": dir.join("t").display().to_string(),
            "mode": "merge",
            "merge": merge,
        }}))
        .checkpoint(dir.join("c"))
        .available_now()
        .yaml()
}

/// (sensor, value) rows of the table, sorted.
fn rows(dir: &std::path::Path) -> Vec<(String, f64)> {
    common::python_json(
        r#"
import json, os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1]).to_pyarrow_table()
print(json.dumps(sorted(zip(t.column("sensor").to_pylist(), t.column("value").to_pylist()))), flush=True)
os._exit(0)
"#,
        &[&dir.join("t").display().to_string()],
    )
}

async fn topic(prefix: &str) -> String {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique(prefix);
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), &topic, 1)
        .await
        .unwrap();
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_record_wins_across_writer_schemas_in_one_batch() {
    let topic = topic("merge-order").await;
    let registry = RegistryFixture::start().await.unwrap();
    let id1 = registry.register(&format!("{topic}-value"), V1);
    let id2 = registry.register(&format!("{topic}-value"), V2);
    let reading = |schema: &str, sensor: &str, value: f64, unit: bool| {
        let mut f = vec![
            ("sensor", Value::String(sensor.into())),
            ("value", Value::Double(value)),
        ];
        if unit {
            f.push(("unit", Value::String("K".into())));
        }
        datum(schema, f)
    };
    // s1: 1.0 (v1), 2.0 (v2), 3.0 (v1) — Kafka order says 3.0; grouped by writer it was 2.0.
    // s2: 1.0 (v2), 2.0 (v1).
    let records = [
        confluent(id1, reading(V1, "s1", 1.0, false)),
        confluent(id2, reading(V2, "s2", 1.0, true)),
        confluent(id2, reading(V2, "s1", 2.0, true)),
        confluent(id1, reading(V1, "s2", 2.0, false)),
        confluent(id1, reading(V1, "s1", 3.0, false)),
    ];
    let records: Vec<_> = records.into_iter().map(|r| (None, r)).collect();
    common::send_in_order(&topic, &records).await;
    let dir = std::env::temp_dir().join(support::unique("merge-order"));
    let avro = json!({
        "encoding": "confluent",
        "schemaRegistry": {"url": registry.url},
        "readerSchema": {"inline": V1},
    });
    let text = manifest(&topic, avro, json!({"keys": ["sensor"]}), &dir);
    // Five records in, one row per key out.
    assert_eq!(common::run_available_now(&text).await.unwrap().rows, 2);
    assert_eq!(rows(&dir), vec![("s1".into(), 3.0), ("s2".into(), 2.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_order_by_is_older_than_any_value() {
    let topic = topic("merge-null").await;
    let dir = std::env::temp_dir().join(support::unique("merge-null"));
    let avro = json!({"encoding": "raw", "writerSchema": {"inline": WITH_TS}});
    let text = manifest(
        &topic,
        avro,
        json!({"keys": ["sensor"], "orderBy": "ts"}),
        &dir,
    );
    let reading = |sensor: &str, value: f64, ts: Option<i64>| {
        let ts = match ts {
            Some(t) => Value::Union(1, Box::new(Value::Long(t))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        (
            None,
            datum(
                WITH_TS,
                vec![
                    ("sensor", Value::String(sensor.into())),
                    ("value", Value::Double(value)),
                    ("ts", ts),
                ],
            ),
        )
    };
    // Batch 1 creates the table: s1 with a null ts, s2 with ts 5.
    common::send_in_order(
        &topic,
        &[reading("s1", 1.0, None), reading("s2", 1.0, Some(5))],
    )
    .await;
    assert_eq!(common::run_available_now(&text).await.unwrap().rows, 2);
    // Batch 2: a value replaces the stored null; a null does not replace a value.
    common::send_in_order(
        &topic,
        &[reading("s1", 2.0, Some(1)), reading("s2", 2.0, None)],
    )
    .await;
    common::run_available_now(&text).await.unwrap();
    assert_eq!(rows(&dir), vec![("s1".into(), 2.0), ("s2".into(), 1.0)]);
    // Batch 3: an older value does not replace a newer one.
    common::send_in_order(&topic, &[reading("s1", 3.0, Some(0))]).await;
    common::run_available_now(&text).await.unwrap();
    assert_eq!(
        rows(&dir),
        vec![("s1".into(), 2.0), ("s2".into(), 1.0)],
        "0 < 1: older"
    );
}
