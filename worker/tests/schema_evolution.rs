//! Schema evolution against Apache Kafka and the registry fixture, read back with Python
//! `deltalake`: with `schemaEvolution: addColumns` a v2 writer that adds a field adds a
//! nullable column to the table in one commit, v1 rows carry null and v2 rows their
//! values, even within one batch; without it the v2 records are bad records
//! (`SchemaIncompatible`) and follow the policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use apache_avro::types::Value;
use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;
use spillway_e2e::registry::RegistryFixture;

const V1: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"double"}]}"#;
const V2: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"double"},{"name":"unit","type":"string"}]}"#;

fn confluent(id: u32, schema: &str, i: i64, unit: Option<&str>) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let mut fields = vec![
        ("sensor".to_string(), Value::String(format!("s{i}"))),
        ("value".to_string(), Value::Double(i as f64)),
    ];
    if let Some(u) = unit {
        fields.push(("unit".to_string(), Value::String(u.to_string())));
    }
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(&schema, Value::Record(fields)).unwrap());
    out
}

async fn send(topic: &str, payloads: &[Vec<u8>]) {
    let records: Vec<_> = payloads.iter().map(|p| (None, p.clone())).collect();
    common::send_in_order(topic, &records).await;
}

/// A topic with V1 and V2 registered under its subject: (registry, topic, ids, table dir).
async fn setup(prefix: &str) -> (RegistryFixture, String, (u32, u32), std::path::PathBuf) {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let registry = RegistryFixture::start().await.unwrap();
    let topic = support::unique(prefix);
    spillway_worker::tools::produce::ensure_topic(&support::kafka_bootstrap(), &topic, 1)
        .await
        .unwrap();
    let ids = (
        registry.register(&format!("{topic}-value"), V1),
        registry.register(&format!("{topic}-value"), V2),
    );
    let dir = std::env::temp_dir().join(support::unique(prefix));
    (registry, topic, ids, dir)
}

fn manifest(topic: &str, registry: &str, dir: &std::path::Path, evolution: &str) -> String {
    Manifest::new(topic)
        .avro(json!({"encoding": "confluent", "schemaRegistry": {"url": registry}}))
        .metadata_columns(&["offset"])
        .delta(dir.join("t"))
        .set("/spec/sink/delta/schemaEvolution", evolution)
        .checkpoint(dir.join("c"))
        .available_now()
        .set("/spec/errors", json!({"onBadRecord": "skip"}))
        .yaml()
}

/// Columns at version 0, columns now, and the rows (offset, unit) now.
type TableView = (Vec<String>, Vec<String>, Vec<(i64, Option<String>)>);

fn table(dir: &std::path::Path) -> TableView {
    let script = r#"
import json, os, sys, deltalake
uri = sys.argv[1]
first = [f.name for f in deltalake.DeltaTable(uri, version=0).schema().fields]
dt = deltalake.DeltaTable(uri)
now = [f.name for f in dt.schema().fields]
t = dt.to_pyarrow_table()
units = t.column("unit").to_pylist() if "unit" in now else [None] * t.num_rows
rows = sorted(zip(t.column("_offset").to_pylist(), units))
print(json.dumps([first, now, rows]), flush=True)
os._exit(0)
"#;
    common::python_json(script, &[&dir.join("t").display().to_string()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_columns_adds_the_new_field_as_a_nullable_column() {
    let (registry, topic, (id1, id2), dir) = setup("evolve").await;
    let text = manifest(&topic, &registry.url, &dir, "addColumns");

    // Offsets 0-2: v1 only; the table is created without `unit`.
    send(
        &topic,
        &(0..3)
            .map(|i| confluent(id1, V1, i, None))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(common::run_available_now(&text).await.unwrap().rows, 3);

    // Offsets 3-6 in one batch: v1, v2, v1, v2 — the column arrives mid-batch.
    send(
        &topic,
        &[
            confluent(id1, V1, 3, None),
            confluent(id2, V2, 4, Some("kPa")),
            confluent(id1, V1, 5, None),
            confluent(id2, V2, 6, Some("bar")),
        ],
    )
    .await;
    let second = common::run_available_now(&text).await.unwrap();
    assert_eq!((second.rows, second.batches, second.skipped), (4, 1, 0));

    let (first, now, rows) = table(&dir);
    assert_eq!(first, ["sensor", "value", "_offset"]);
    // Delta appends a new column after the existing ones.
    assert_eq!(now, ["sensor", "value", "_offset", "unit"]);
    let unit = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        [
            (0, None),
            (1, None),
            (2, None),
            (3, None),
            (4, unit("kPa")),
            (5, None),
            (6, unit("bar")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_evolution_a_writer_with_new_fields_is_a_bad_record() {
    let (registry, topic, (id1, id2), dir) = setup("no-evolve").await;
    send(
        &topic,
        &[
            confluent(id1, V1, 0, None),
            confluent(id2, V2, 1, Some("kPa")),
            confluent(id1, V1, 2, None),
        ],
    )
    .await;
    let run = common::run_available_now(&manifest(&topic, &registry.url, &dir, "none"))
        .await
        .unwrap();
    assert_eq!(
        (run.rows, run.skipped),
        (2, 1),
        "the v2 record is SchemaIncompatible"
    );
    let (_, now, rows) = table(&dir);
    assert_eq!(now, ["sensor", "value", "_offset"]);
    assert_eq!(rows, [(0, None), (2, None)]);

    // `spillway validate --check-registry`: the subject's latest schema (v2) adds `unit`.
    let check = |evolution: &'static str| {
        let file = dir.join(format!("{evolution}.yaml"));
        std::fs::write(&file, manifest(&topic, &registry.url, &dir, evolution)).unwrap();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway"))
                .args(["validate", "--check-registry", "-f"])
                .arg(&file)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
            )
        })
    };
    let (ok, text) = check("none").await.unwrap();
    assert!(!ok, "{text}");
    assert!(
        text.contains("adds columns [\"unit\"]") && text.contains("addColumns"),
        "{text}"
    );
    let (ok, text) = check("addColumns").await.unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("is compatible: it adds columns"), "{text}");
    // A v3 that narrows `value` to an int fits in no mode.
    registry.register(
        &format!("{topic}-value"),
        r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"int"}]}"#,
    );
    let (ok, text) = check("addColumns").await.unwrap();
    assert!(!ok, "{text}");
    assert!(
        text.contains("incompatible") && text.contains("value: table Float64 vs schema Int32"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_meets_a_newer_writer_first_keeps_the_tables_schema() {
    let (registry, topic, (id1, id2), dir) = setup("reader-kept").await;
    let text = manifest(&topic, &registry.url, &dir, "none");
    send(
        &topic,
        &(0..3)
            .map(|i| confluent(id1, V1, i, None))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(common::run_available_now(&text).await.unwrap().rows, 3);
    // The next process meets only v2 records: the reader is still the table's (v1, kept in
    // the checkpoint), so they are bad records by the policy — not a batch with a column
    // the table lacks, whose append would fail at every restart.
    send(
        &topic,
        &(3..6)
            .map(|i| confluent(id2, V2, i, Some("kPa")))
            .collect::<Vec<_>>(),
    )
    .await;
    let run = common::run_available_now(&text).await.unwrap();
    assert_eq!((run.rows, run.skipped), (0, 3));
    let (_, now, rows) = table(&dir);
    assert_eq!(now, ["sensor", "value", "_offset"]);
    assert_eq!(rows, [(0, None), (1, None), (2, None)]);
}
