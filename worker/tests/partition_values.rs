//! Partition values that are awkward as directory names, against Apache Kafka, read back with
//! Python `deltalake` and `pyarrow.dataset` (Hive partitioning): `/`, `=`, `%` and control
//! characters are escaped (Hive's way for Parquet, the Delta protocol's for Delta) and come
//! back as they were; a value whose escaped `column=value` segment is longer than 255 bytes
//! is a bad record (`PartitionValueUnwritable`, here a dead letter carrying the row as
//! JSON), not a write that fails on every batch and every replay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use apache_avro::types::Value;
use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;

/// The users (the partition column), in offset order.
fn users() -> Vec<String> {
    vec![
        "plain".into(),
        "a/b".into(),
        "tab\there\u{1}".into(),
        "50%=half".into(),
        "x".repeat(300),
        // 200 bytes: a Hive directory as is; 600 escaped the Delta way.
        "é".repeat(100),
        "*{[]^ ok".into(),
    ]
}

fn record(user: &str, i: i64) -> Vec<u8> {
    let schema =
        apache_avro::Schema::parse_str(spillway_worker::tools::generate::HSUTEST_SCHEMA).unwrap();
    let fields = vec![
        ("user".to_string(), Value::String(user.to_string())),
        ("event".to_string(), Value::String("click".into())),
        ("amount".to_string(), Value::Double(i as f64)),
        ("ts".to_string(), Value::Long(1_700_000_000_000 + i)),
    ];
    apache_avro::to_avro_datum(&schema, Value::Record(fields)).unwrap()
}

/// `sink` is `delta` or `parquet`.
fn manifest(topic: &str, dir: &std::path::Path, sink: &str) -> String {
    let data = dir.join("data").display().to_string();
    let dead = dir.join("dlq").display().to_string();
    Manifest::hsutest(topic)
        .metadata_columns(&["offset"])
        .sink(json!({sink: {"uri": data, "partitionBy": ["user"]}}))
        .checkpoint(dir.join("c"))
        .available_now()
        .set(
            "/spec/errors",
            json!({"onBadRecord": "deadLetter", "deadLetter": {"delta": {"uri": dead}}}),
        )
        .yaml()
}

const READ: &str = r#"
import json, os, sys, deltalake, pyarrow.dataset as ds
kind, data, dlq = sys.argv[1:4]
if kind == "delta":
    t = deltalake.DeltaTable(data).to_pyarrow_table(columns=["user", "_offset"])
else:
    t = ds.dataset(data, format="parquet", partitioning="hive").to_table(columns=["user", "_offset"])
d = deltalake.DeltaTable(dlq).to_pyarrow_table(columns=["offset", "error_class", "value"])
print(json.dumps({
    "rows": sorted(zip(t.column("_offset").to_pylist(), t.column("user").to_pylist())),
    "dead": sorted(zip(d.column("offset").to_pylist(), d.column("error_class").to_pylist(),
                       [json.loads(v)["user"] for v in d.column("value").to_pylist()])),
}), flush=True)
os._exit(0)
"#;

#[derive(serde::Deserialize)]
struct ReadBack {
    rows: Vec<(i64, String)>,
    dead: Vec<(i64, String, String)>,
}

async fn case(sink: &str, unwritable: &[i64]) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique(&format!("pvalues-{sink}"));
    let dir = std::env::temp_dir().join(support::unique(&format!("pvalues-{sink}")));
    let users = users();
    let records: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (None, record(u, i as i64)))
        .collect();
    common::send_in_order(&topic, &records).await;
    let text = manifest(&topic, &dir, sink);
    let summary = common::run_available_now(&text).await.unwrap();
    assert_eq!(summary.skipped, unwritable.len() as i64, "{summary:?}");
    assert_eq!(summary.rows, (users.len() - unwritable.len()) as i64);
    // A replay of the same range changes nothing.
    let again = common::run_available_now(&text).await.unwrap();
    assert_eq!((again.rows, again.skipped), (0, 0));

    let got: ReadBack = common::python_json(
        READ,
        &[
            sink,
            &dir.join("data").display().to_string(),
            &dir.join("dlq").display().to_string(),
        ],
    );
    let want: Vec<(i64, String)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (i as i64, u.clone()))
        .filter(|(i, _)| !unwritable.contains(i))
        .collect();
    assert_eq!(got.rows, want, "every writable value back as it was");
    let dead: BTreeMap<i64, (String, String)> =
        got.dead.into_iter().map(|(o, c, u)| (o, (c, u))).collect();
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), unwritable);
    for (o, (class, user)) in &dead {
        assert_eq!(class, "PartitionValueUnwritable");
        assert_eq!(user, &users[*o as usize], "the dead letter carries the row");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_escapes_like_hive_and_a_value_too_long_is_a_dead_letter() {
    case("parquet", &[4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_escapes_like_the_protocol_and_a_value_too_long_is_a_dead_letter() {
    case("delta", &[4, 5]).await;
}
