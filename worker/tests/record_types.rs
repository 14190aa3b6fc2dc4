//! Several Avro record types on one topic (TopicRecordNameStrategy) on Apache Kafka, read
//! back by Python `deltalake`: a pipeline that keeps one type writes a table of that type;
//! one that keeps two writes their union with a `_record_name` column. Records of other
//! types are skipped and counted, never bad records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use apache_avro::types::Value as Avro;
use common::manifest::Manifest;
use serde_json::{Value, json};
use spillway_e2e as support;

const CREATED_V1: &str = r#"{"type":"record","name":"OrderCreated","namespace":"shop","fields":[
  {"name":"order_id","type":"long"},{"name":"customer","type":"string"},{"name":"amount","type":"double"}]}"#;
/// v2 adds a field with a default: the subject's latest, so the readers have it.
const CREATED_V2: &str = r#"{"type":"record","name":"OrderCreated","namespace":"shop","fields":[
  {"name":"order_id","type":"long"},{"name":"customer","type":"string"},{"name":"amount","type":"double"},
  {"name":"coupon","type":["null","string"],"default":null}]}"#;
const CANCELLED: &str = r#"{"type":"record","name":"OrderCancelled","namespace":"shop","fields":[
  {"name":"order_id","type":"long"},{"name":"reason","type":"string"}]}"#;
const HEARTBEAT: &str = r#"{"type":"record","name":"Heartbeat","namespace":"ops","fields":[{"name":"ts","type":"long"}]}"#;

fn framed(id: u32, schema: &str, fields: Vec<(&str, Avro)>) -> Vec<u8> {
    common::confluent_avro(id, schema, fields)
}

/// What was written: (order id, record name, customer, reason, coupon) per order event.
type Event = (
    i64,
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A row of the union table: order id, `_record_name`, customer, reason, coupon.
type UnionRow = (i64, String, Option<String>, Option<String>, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_topic_of_several_record_types_feeds_a_table_per_type_or_their_union() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let registry = spillway_e2e::registry::RegistryFixture::start()
        .await
        .unwrap();
    let topic = support::unique("order-events");
    let created_v1 = registry.register(&format!("{topic}-shop.OrderCreated"), CREATED_V1);
    let created_v2 = registry.register(&format!("{topic}-shop.OrderCreated"), CREATED_V2);
    let cancelled = registry.register(&format!("{topic}-shop.OrderCancelled"), CANCELLED);
    let heartbeat = registry.register(&format!("{topic}-ops.Heartbeat"), HEARTBEAT);

    let mut records = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    for i in 0..600i64 {
        let customer = format!("c{}", i % 13);
        match i % 4 {
            0 => {
                records.push(framed(
                    created_v1,
                    CREATED_V1,
                    vec![
                        ("order_id", Avro::Long(i)),
                        ("customer", Avro::String(customer.clone())),
                        ("amount", Avro::Double(i as f64)),
                    ],
                ));
                events.push((i, "shop.OrderCreated", Some(customer), None, None));
            }
            1 => {
                let coupon = format!("cp{i}");
                records.push(framed(
                    created_v2,
                    CREATED_V2,
                    vec![
                        ("order_id", Avro::Long(i)),
                        ("customer", Avro::String(customer.clone())),
                        ("amount", Avro::Double(i as f64)),
                        (
                            "coupon",
                            Avro::Union(1, Box::new(Avro::String(coupon.clone()))),
                        ),
                    ],
                ));
                events.push((i, "shop.OrderCreated", Some(customer), None, Some(coupon)));
            }
            2 => {
                records.push(framed(
                    cancelled,
                    CANCELLED,
                    vec![
                        ("order_id", Avro::Long(i - 2)),
                        ("reason", Avro::String("changed mind".into())),
                    ],
                ));
                events.push((
                    i - 2,
                    "shop.OrderCancelled",
                    None,
                    Some("changed mind".into()),
                    None,
                ));
            }
            _ => records.push(framed(heartbeat, HEARTBEAT, vec![("ts", Avro::Long(i))])),
        }
    }
    let records: Vec<(Option<String>, Vec<u8>)> = records.into_iter().map(|r| (None, r)).collect();
    common::send_in_order(&topic, &records).await;
    let heartbeats = 150;

    let dir = std::env::temp_dir().join(support::unique("order-events"));
    let pipeline = |name: &str, names: Value| {
        Manifest::new(&topic)
            .name(name)
            .avro(json!({
                "encoding": "confluent",
                "schemaRegistry": {"url": registry.url},
                "recordNames": names,
            }))
            .metadata_columns(&["offset"])
            .delta(dir.join(name))
            .checkpoint(dir.join(format!("{name}-c")))
            .available_now()
            .yaml()
    };

    // a table of one type: the created orders, with v2's coupon column
    let created = common::run_available_now(&pipeline("created", json!(["shop.OrderCreated"])))
        .await
        .unwrap();
    assert_eq!(created.rows, 300);
    assert_eq!(
        created.other_record_types, 300,
        "the cancellations and heartbeats"
    );
    assert_eq!(created.skipped, 0, "other types are not bad records");
    let (columns, ids, coupons): (Vec<String>, Vec<i64>, usize) = common::python_json(
        "import json, os, sys, deltalake\nt = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()\nprint(json.dumps([t.schema.names, sorted(t.column('order_id').to_pylist()), sum(1 for c in t.column('coupon').to_pylist() if c)]), flush=True)\nos._exit(0)\n",
        &[&dir.join("created").display().to_string()],
    );
    assert_eq!(
        columns,
        ["order_id", "customer", "amount", "coupon", "_offset"]
    );
    let want: Vec<i64> = (0..600).filter(|i| i % 4 < 2).collect();
    assert_eq!(ids, want);
    assert_eq!(coupons, 150);

    // one table of two types: the union of their fields and the type of each row
    let both = common::run_available_now(&pipeline(
        "orders",
        json!(["shop.OrderCreated", "shop.OrderCancelled"]),
    ))
    .await
    .unwrap();
    assert_eq!(both.rows, 450);
    assert_eq!(both.other_record_types, heartbeats);
    let (columns, rows): (Vec<String>, Vec<UnionRow>) = common::python_json(
        r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table().sort_by("_offset")
c = lambda n: t.column(n).to_pylist()
print(json.dumps([t.schema.names, list(zip(c("order_id"), c("_record_name"), c("customer"), c("reason"), c("coupon")))]), flush=True)
os._exit(0)
"#,
        &[&dir.join("orders").display().to_string()],
    );
    assert_eq!(
        columns,
        [
            "order_id",
            "customer",
            "amount",
            "coupon",
            "reason",
            "_record_name",
            "_offset"
        ]
    );
    let got: Vec<Event> = rows
        .into_iter()
        .map(|(id, name, customer, reason, coupon)| {
            let name = if name == "shop.OrderCreated" {
                "shop.OrderCreated"
            } else {
                assert_eq!(name, "shop.OrderCancelled");
                "shop.OrderCancelled"
            };
            (id, name, customer, reason, coupon)
        })
        .collect();
    assert_eq!(
        got, events,
        "every event once, in Kafka order, with its type's fields"
    );
}
