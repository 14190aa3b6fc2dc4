//! The seeds' orders example end to end on Apache Kafka: JSON orders written by `spillway
//! produce --format json`, run with the sample manifest itself
//! (`config/samples/orders-json-parquet.yaml`: a JSON Schema, `PERMISSIVE`, year/month/day
//! derived in SQL, non-positive amounts dropped, Parquet partitioned by year/month/day), and
//! read back with `pyarrow.dataset` (Hive partitioning): every kept order exactly once, at
//! the offsets it was written to, in the directory of its own order day.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::manifest::Manifest;
use serde_json::{Value, json};
use spillway_e2e as support;
use spillway_worker::tools::generate::OrderGenerator;

const SAMPLE: &str = include_str!("../../config/samples/orders-json-parquet.yaml");

/// order_id, partition, offset, [year, month, day] from the path, and from the order's time
type OrderRow = (i64, i32, i64, [i32; 3], [i32; 3]);

/// Order ids of the first `count` orders of `seed` whose amount is positive.
fn positive_orders(seed: u64, count: usize) -> BTreeSet<i64> {
    let mut g = OrderGenerator::new(seed);
    let mut kept = BTreeSet::new();
    for _ in 0..count {
        let mut text = Vec::new();
        g.next_json(&mut text);
        let order: Value = serde_json::from_slice(&text).unwrap();
        if order["amount"].as_f64().unwrap() > 0.0 {
            kept.insert(order["order_id"].as_i64().unwrap());
        }
    }
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_orders_land_once_each_in_the_directory_of_their_day() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("orders-json");
    let (count, seed) = (4000, 11);
    common::produce(
        &bootstrap,
        &topic,
        count,
        seed,
        &["--format", "json", "--partitions", "3"],
    );
    // after the orders, on partition 0: text that is not JSON and an order without its
    // (required) time — bad records, dead letters — and one whose amount is no number,
    // null by PERMISSIVE and so dropped by `amount > 0`
    let ts = "2026-01-02T03:04:05Z";
    common::send_in_order(
        &topic,
        &[
            (None, b"not json {".to_vec()),
            (
                None,
                json!({"order_id": 900_001, "customer_id": "c", "amount": 5, "status": "NEW"})
                    .to_string()
                    .into_bytes(),
            ),
            (
                None,
                json!({"order_id": 900_002, "customer_id": "c", "amount": "lots", "status": "NEW", "order_timestamp": ts})
                    .to_string()
                    .into_bytes(),
            ),
        ],
    )
    .await;
    let dir = std::env::temp_dir().join(support::unique("orders-json"));
    let text = Manifest::from_yaml(SAMPLE)
        .name(&topic)
        .remove("/metadata/namespace")
        .kafka("bootstrapServers", bootstrap.as_str())
        .kafka("topics", json!([topic]))
        .kafka("maxRecordsPerBatch", 700)
        .set(
            "/spec/sink/parquet/uri",
            dir.join("orders").display().to_string(),
        )
        .checkpoint(dir.join("c"))
        .remove("/spec/storage")
        .available_now()
        .set(
            "/spec/errors/deadLetter",
            json!({"delta": {"uri": dir.join("dlq").display().to_string()}}),
        )
        .yaml();
    let summary = common::run_available_now(&text).await.unwrap();
    let want = positive_orders(seed, count as usize);
    assert!(
        want.len() > 3800 && want.len() < count as usize,
        "{}",
        want.len()
    );
    assert_eq!(summary.rows, want.len() as i64);

    let rows: Vec<OrderRow> = common::python_json(
        r#"
import json, os, sys, pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
c = lambda n: t.column(n).to_pylist()
print(json.dumps([[i, p, o, [y, m, d], [w.year, w.month, w.day]] for i, p, o, y, m, d, w in
    zip(c("order_id"), c("_partition"), c("_offset"), c("year"), c("month"), c("day"), c("order_timestamp"))]), flush=True)
os._exit(0)
"#,
        &[&dir.join("orders").display().to_string()],
    );
    let ids: BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(rows.len(), want.len(), "no order twice");
    assert_eq!(ids, want, "every order with a positive amount, no other");
    let offsets: BTreeSet<(i32, i64)> = rows.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(offsets.len(), rows.len(), "every offset once");
    for (id, _, _, path, time) in &rows {
        assert_eq!(path, time, "order {id} is in the directory of its own day");
    }
    let days: BTreeSet<[i32; 3]> = rows.iter().map(|r| r.3).collect();
    assert!(
        days.iter().any(|d| d[0] == 2025) && days.iter().any(|d| d[0] == 2026),
        "the orders cross a year: {days:?}"
    );
    // every offset of the topic is accounted for: kept, dropped by the filter, or dead
    let dead: (usize, Vec<String>) = common::python_json(
        "import json, os, sys, deltalake\nt = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()\nprint(json.dumps([t.num_rows, t.column('error_class').to_pylist()]), flush=True)\nos._exit(0)\n",
        &[&dir.join("dlq").display().to_string()],
    );
    assert_eq!(
        dead,
        (2, vec!["Decode".to_string(), "Decode".to_string()]),
        "the text that is not JSON and the order without its time"
    );
    let total: i64 = (0..3).map(|p| common::watermarks(&topic, p).1).sum();
    assert_eq!(total, count as i64 + 3);
    let dropped = count as usize - want.len() + 1; // the non-positive ones and "lots"
    assert_eq!(rows.len() + dropped + dead.0, total as usize);
}

/// Confluent's JSON Schema framing: the orders are produced with their JSON Schema
/// registered as `<topic>-value`; the pipeline takes its row schema from that subject and
/// checks every record's id. A record with an id the registry does not know and one without
/// the framing are bad records; the columns have the schema's types in the Delta table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_framed_json_takes_its_row_schema_from_the_registry() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let registry = spillway_e2e::registry::RegistryFixture::start()
        .await
        .unwrap();
    let topic = support::unique("orders-confluent-json");
    let count = 1500;
    common::produce(
        &bootstrap,
        &topic,
        count,
        5,
        &[
            "--format",
            "json",
            "--encoding",
            "confluent",
            "--schema-registry",
            &registry.url,
            "--partitions",
            "2",
        ],
    );
    let mut unknown_id = vec![0, 0, 0, 0, 99];
    unknown_id.extend_from_slice(br#"{"order_id":1}"#);
    common::send_in_order(
        &topic,
        &[(None, unknown_id), (None, br#"{"order_id":2}"#.to_vec())],
    )
    .await;
    let dir = std::env::temp_dir().join(support::unique("orders-confluent-json"));
    let table = dir.join("t");
    let text = Manifest::new(&topic)
        .set(
            "/spec/format/json",
            json!({
                "encoding": "confluent",
                "schema": {"registry": {"subject": format!("{topic}-value")}},
                "mode": "FAILFAST",
                "schemaRegistry": {"url": registry.url},
            }),
        )
        .delta(&table)
        .checkpoint(dir.join("c"))
        .set("/spec/errors", json!({"onBadRecord": "skip"}))
        .available_now()
        .yaml();
    let summary = common::run_available_now(&text).await.unwrap();
    assert_eq!(summary.rows, count as i64);
    assert_eq!(summary.skipped, 2, "the unknown id and the unframed value");
    let (rows, ids, types): (usize, usize, Vec<String>) = common::python_json(
        "import json, os, sys, deltalake\nt = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()\nprint(json.dumps([t.num_rows, len(set(t.column('order_id').to_pylist())), [str(f.type) for f in t.schema]]), flush=True)\nos._exit(0)\n",
        &[&table.display().to_string()],
    );
    assert_eq!((rows, ids), (count as usize, count as usize));
    assert_eq!(
        types,
        [
            "int64",
            "string",
            "decimal128(10, 2)",
            "string",
            "timestamp[us, tz=UTC]"
        ]
    );
}
