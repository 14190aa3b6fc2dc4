//! Protobuf values on Apache Kafka, read back by Python `deltalake`: raw messages with a
//! descriptor set file, and Confluent-framed messages whose `.proto` schema comes from the
//! registry (with a newer writer version that adds a field, a record of another message
//! type on the topic, and an unknown id).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::manifest::Manifest;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, Value};
use serde_json::json;
use spillway_e2e as support;
use spillway_worker::decode::protobuf::compile_proto;

const SHOP_V1: &str = r#"syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";

message Order {
  int64 order_id = 1;
  string customer_id = 2;
  double amount = 3;
  Status status = 4;
  google.protobuf.Timestamp order_timestamp = 5;
  repeated Line lines = 6;
  map<string, string> attrs = 7;
  optional string note = 8;
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
  message Line { string sku = 1; int32 qty = 2; }
}

message Refund { int64 order_id = 1; }
"#;

/// v2 adds field 9 (a reader of v1 skips it).
fn shop_v2() -> String {
    SHOP_V1.replace(
        "optional string note = 8;",
        "optional string note = 8;\n  string channel = 9;",
    )
}

fn order(pool: &DescriptorPool, i: i64) -> DynamicMessage {
    let get = |n: &str| pool.get_message_by_name(n).unwrap();
    let mut ts = DynamicMessage::new(get("google.protobuf.Timestamp"));
    ts.set_field_by_name("seconds", Value::I64(1_766_880_000 + i * 60));
    ts.set_field_by_name("nanos", Value::I32(250_000_000));
    let lines = (0..i % 3)
        .map(|k| {
            let mut l = DynamicMessage::new(get("shop.v1.Order.Line"));
            l.set_field_by_name("sku", Value::String(format!("SKU-{k}")));
            l.set_field_by_name("qty", Value::I32(k as i32 + 1));
            Value::Message(l)
        })
        .collect();
    let mut m = DynamicMessage::new(get("shop.v1.Order"));
    m.set_field_by_name("order_id", Value::I64(i));
    m.set_field_by_name("customer_id", Value::String(format!("cust-{:03}", i % 97)));
    m.set_field_by_name("amount", Value::F64(i as f64 / 4.0));
    m.set_field_by_name("status", Value::EnumNumber((i % 3) as i32));
    m.set_field_by_name("order_timestamp", Value::Message(ts));
    m.set_field_by_name("lines", Value::List(lines));
    m.set_field_by_name(
        "attrs",
        Value::Map([(MapKey::String("src".into()), Value::String("web".into()))].into()),
    );
    if i % 5 == 0 {
        m.set_field_by_name("note", Value::String(format!("note {i}")));
    }
    m
}

/// Reads the table: rows, distinct order ids, the column types, and the row of order 10.
fn read_back(table: &std::path::Path) -> (usize, BTreeSet<i64>, Vec<String>, serde_json::Value) {
    let (rows, ids, types, ten): (usize, Vec<i64>, Vec<String>, serde_json::Value) =
        common::python_json(
            r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()
rows = t.to_pylist()
ten = [r for r in rows if r["order_id"] == 10]
ten = ten[0] if ten else None
if ten:
    ten["order_timestamp"] = ten["order_timestamp"].isoformat()
    ten["attrs"] = dict(ten["attrs"])
print(json.dumps([t.num_rows, t.column("order_id").to_pylist(), [f"{f.name}:{f.type}" for f in t.schema], ten]), flush=True)
os._exit(0)
"#,
            &[&table.display().to_string()],
        );
    (rows, ids.into_iter().collect(), types, ten)
}

fn assert_typed_columns(types: &[String], ten: &serde_json::Value) {
    for want in [
        "order_id:int64",
        "customer_id:string",
        "amount:double",
        "status:string",
        "order_timestamp:timestamp[us, tz=UTC]",
        "note:string",
    ] {
        assert!(types.iter().any(|t| t == want), "{want} in {types:?}");
    }
    assert!(
        types.iter().any(|t| t.starts_with("lines:list<")),
        "{types:?}"
    );
    assert!(
        types.iter().any(|t| t.starts_with("attrs:map<")),
        "{types:?}"
    );
    assert_eq!(
        *ten,
        json!({
            "order_id": 10, "customer_id": "cust-010", "amount": 2.5, "status": "PAID",
            "order_timestamp": "2025-12-28T00:10:00.250000+00:00",
            "lines": [{"sku": "SKU-0", "qty": 1}],
            "attrs": {"src": "web"}, "note": "note 10",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protobuf_with_a_descriptor_set_lands_typed_once_each() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("orders-proto-raw");
    let pool = compile_proto("shop.proto", SHOP_V1, &[]).unwrap();
    let count = 1200;
    let mut records: Vec<(Option<String>, Vec<u8>)> = (1..=count)
        .map(|i| (None, order(&pool, i).encode_to_vec()))
        .collect();
    records.push((None, vec![0x0a, 0xff, 0xff])); // not a message: a bad record
    common::send_in_order(&topic, &records).await;

    let dir = std::env::temp_dir().join(support::unique("orders-proto-raw"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("shop.pb"), pool.encode_to_vec()).unwrap();
    let table = dir.join("t");
    let text = Manifest::new(&topic)
        .set(
            "/spec/format/protobuf",
            json!({
                "encoding": "raw",
                "messageType": "shop.v1.Order",
                "descriptorSet": {"file": dir.join("shop.pb").display().to_string()},
            }),
        )
        .kafka("maxRecordsPerBatch", 500)
        .delta(&table)
        .checkpoint(dir.join("c"))
        .set("/spec/errors", json!({"onBadRecord": "skip"}))
        .available_now()
        .yaml();
    let summary = common::run_available_now(&text).await.unwrap();
    assert_eq!(summary.rows, count);
    assert_eq!(summary.skipped, 1, "the body that is not a message");
    let (rows, ids, types, ten) = read_back(&table);
    assert_eq!(rows, count as usize, "no order twice");
    assert_eq!(ids, (1..=count).collect::<BTreeSet<_>>(), "every order");
    assert_typed_columns(&types, &ten);
    // a re-run of the caught-up pipeline changes nothing
    let again = common::run_available_now(&text).await.unwrap();
    assert_eq!(again.rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_protobuf_reads_newer_writers_and_refuses_other_messages() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let registry = spillway_e2e::registry::RegistryFixture::start()
        .await
        .unwrap();
    let topic = support::unique("orders-proto-confluent");
    let subject = format!("{topic}-value");
    let v1 = registry.register(&subject, SHOP_V1);
    let v2 = registry.register(&subject, &shop_v2());
    assert_ne!(v1, v2);
    let pool_v1 = compile_proto("shop.proto", SHOP_V1, &[]).unwrap();
    let pool_v2 = compile_proto("shop.proto", &shop_v2(), &[]).unwrap();
    let frame = |id: u32, indexes: &[u8], body: Vec<u8>| {
        let mut v = vec![0];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(indexes);
        v.extend(body);
        v
    };
    let count = 900;
    let mut records: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    for i in 1..=count {
        let body = if i % 2 == 0 {
            // a v2 writer: the same order with field 9 set
            let mut m = DynamicMessage::decode(
                pool_v2.get_message_by_name("shop.v1.Order").unwrap(),
                order(&pool_v1, i).encode_to_vec().as_slice(),
            )
            .unwrap();
            m.set_field_by_name("channel", Value::String("app".into()));
            frame(v2, &[0], m.encode_to_vec())
        } else {
            frame(v1, &[0], order(&pool_v1, i).encode_to_vec())
        };
        records.push((None, body));
    }
    // a Refund (message index [1]) on the same topic, an unknown id, an unframed value
    records.push((None, frame(v1, &[2, 2], vec![0x08, 0x01])));
    records.push((None, frame(9999, &[0], vec![0x08, 0x01])));
    records.push((None, vec![0x08, 0x01]));
    common::send_in_order(&topic, &records).await;

    let dir = std::env::temp_dir().join(support::unique("orders-proto-confluent"));
    let table = dir.join("t");
    let text = Manifest::new(&topic)
        .set(
            "/spec/format/protobuf",
            json!({
                "encoding": "confluent",
                "messageType": "shop.v1.Order",
                "schema": {"registry": {"subject": subject, "version": "1"}},
                "schemaRegistry": {"url": registry.url},
            }),
        )
        .delta(&table)
        .checkpoint(dir.join("c"))
        .set(
            "/spec/errors",
            json!({"onBadRecord": "deadLetter", "deadLetter": {"delta": {"uri": dir.join("dlq").display().to_string()}}}),
        )
        .available_now()
        .yaml();
    let summary = common::run_available_now(&text).await.unwrap();
    assert_eq!(summary.rows, count);
    let (rows, ids, types, ten) = read_back(&table);
    assert_eq!(rows, count as usize);
    assert_eq!(ids, (1..=count).collect::<BTreeSet<_>>());
    assert!(
        !types.iter().any(|t| t.starts_with("channel")),
        "the reader (version 1) has no channel column: {types:?}"
    );
    assert_typed_columns(&types, &ten);
    let dead: Vec<String> = common::python_json(
        "import json, os, sys, deltalake\nt = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()\nprint(json.dumps(sorted(t.column('error_class').to_pylist())), flush=True)\nos._exit(0)\n",
        &[&dir.join("dlq").display().to_string()],
    );
    assert_eq!(
        dead,
        ["SchemaIncompatible", "UnknownSchemaId", "Wire"],
        "the Refund, the unknown id and the unframed value"
    );
}
