use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Float64Type, Int32Type, Int64Type, IntervalMonthDayNanoType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, Value};

use super::{
    ProtoDecoder, ProtoFileOutline, ProtoPlan, compile_proto, message_at, split_message_indexes,
};

const SHOP: &str = r#"
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/duration.proto";

message Order {
  int64 order_id = 1;
  string customer_id = 2;
  double amount = 3;
  Status status = 4;
  google.protobuf.Timestamp order_timestamp = 5;
  optional string note = 6;
  repeated Line lines = 7;
  map<string, int32> attrs = 8;
  repeated int32 codes = 9;
  google.protobuf.Int64Value coupon = 10;
  sint32 delta = 11;
  uint64 big = 12;
  google.protobuf.Duration wait = 13;
  map<int32, Line> by_n = 14;
  oneof pay { string card = 15; int32 points = 16; }

  message Line { string sku = 1; int32 n = 2; }
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
}

message Other { string x = 1; message Inner { int32 y = 1; } }
"#;

fn pool() -> DescriptorPool {
    compile_proto("shop.proto", SHOP, &[]).unwrap()
}

fn decoder(name: &str) -> (DescriptorPool, ProtoDecoder) {
    let pool = pool();
    let plan = ProtoPlan::from_pool(&pool, name).unwrap();
    (pool, ProtoDecoder::new(Arc::new(plan)))
}

fn msg(pool: &DescriptorPool, name: &str, fields: &[(&str, Value)]) -> DynamicMessage {
    let mut m = DynamicMessage::new(pool.get_message_by_name(name).unwrap());
    for (k, v) in fields {
        m.set_field_by_name(k, v.clone());
    }
    m
}

fn full_order(pool: &DescriptorPool) -> DynamicMessage {
    let line = |sku: &str, n: i32| {
        Value::Message(msg(
            pool,
            "shop.Order.Line",
            &[("sku", Value::String(sku.into())), ("n", Value::I32(n))],
        ))
    };
    let ts = msg(
        pool,
        "google.protobuf.Timestamp",
        &[
            ("seconds", Value::I64(1_766_880_000)),
            ("nanos", Value::I32(123_456_789)),
        ],
    );
    let wait = msg(
        pool,
        "google.protobuf.Duration",
        &[("seconds", Value::I64(90)), ("nanos", Value::I32(5))],
    );
    let coupon = msg(
        pool,
        "google.protobuf.Int64Value",
        &[("value", Value::I64(77))],
    );
    msg(
        pool,
        "shop.Order",
        &[
            ("order_id", Value::I64(42)),
            ("customer_id", Value::String("cust-0007".into())),
            ("amount", Value::F64(19.99)),
            ("status", Value::EnumNumber(2)),
            ("order_timestamp", Value::Message(ts)),
            ("note", Value::String("gift".into())),
            ("lines", Value::List(vec![line("A-1", 2), line("B-2", 1)])),
            (
                "attrs",
                Value::Map(HashMap::from([(MapKey::String("k".into()), Value::I32(5))])),
            ),
            ("codes", Value::List(vec![Value::I32(-1), Value::I32(300)])),
            ("coupon", Value::Message(coupon)),
            ("delta", Value::I32(-3)),
            ("big", Value::U64(u64::MAX)),
            ("wait", Value::Message(wait)),
            (
                "by_n",
                Value::Map(HashMap::from([(MapKey::I32(-4), line("C-3", 9))])),
            ),
            ("points", Value::I32(12)),
        ],
    )
}

fn one_row(dec: &mut ProtoDecoder, body: &[u8]) -> RecordBatch {
    dec.push(body).unwrap();
    dec.finish().unwrap()
}

#[test]
fn every_kind_of_field_lands_in_its_typed_column() {
    let (pool, mut dec) = decoder("shop.Order");
    let b = one_row(&mut dec, &full_order(&pool).encode_to_vec());
    let col = |n: &str| b.column_by_name(n).unwrap().clone();
    assert_eq!(col("order_id").as_primitive::<Int64Type>().value(0), 42);
    assert_eq!(col("customer_id").as_string::<i32>().value(0), "cust-0007");
    assert_eq!(col("amount").as_primitive::<Float64Type>().value(0), 19.99);
    assert_eq!(col("status").as_string::<i32>().value(0), "SHIPPED");
    let ts = col("order_timestamp");
    assert_eq!(
        ts.data_type(),
        &DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        ts.as_primitive::<TimestampMicrosecondType>().value(0),
        1_766_880_000_123_456
    );
    assert_eq!(col("note").as_string::<i32>().value(0), "gift");
    let lines = col("lines");
    let lines = lines.as_list::<i32>().value(0);
    let lines = lines.as_struct();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines.column(0).as_string::<i32>().value(1), "B-2");
    assert_eq!(lines.column(1).as_primitive::<Int32Type>().value(0), 2);
    let attrs = col("attrs");
    let attrs = attrs.as_map();
    assert_eq!(attrs.keys().as_string::<i32>().value(0), "k");
    assert_eq!(attrs.values().as_primitive::<Int32Type>().value(0), 5);
    let codes = col("codes");
    let codes = codes.as_list::<i32>().value(0);
    assert_eq!(codes.as_primitive::<Int32Type>().values(), &[-1, 300]);
    assert_eq!(col("coupon").as_primitive::<Int64Type>().value(0), 77);
    assert_eq!(col("delta").as_primitive::<Int32Type>().value(0), -3);
    let big = col("big");
    assert_eq!(big.data_type(), &DataType::Decimal128(20, 0));
    assert_eq!(
        big.as_primitive::<Decimal128Type>().value(0),
        i128::from(u64::MAX)
    );
    let wait = col("wait")
        .as_primitive::<IntervalMonthDayNanoType>()
        .value(0);
    assert_eq!(wait.nanoseconds, 90_000_000_005);
    let by_n = col("by_n");
    assert_eq!(by_n.as_map().keys().as_string::<i32>().value(0), "-4");
    assert!(col("card").is_null(0));
    assert_eq!(col("points").as_primitive::<Int32Type>().value(0), 12);
}

#[test]
fn absent_fields_are_defaults_or_null_by_presence() {
    let (_, mut dec) = decoder("shop.Order");
    let b = one_row(&mut dec, &[]);
    let col = |n: &str| b.column_by_name(n).unwrap().clone();
    assert_eq!(col("order_id").as_primitive::<Int64Type>().value(0), 0);
    assert_eq!(col("customer_id").as_string::<i32>().value(0), "");
    assert_eq!(col("status").as_string::<i32>().value(0), "NEW");
    for n in [
        "note",
        "order_timestamp",
        "coupon",
        "wait",
        "card",
        "points",
    ] {
        assert!(col(n).is_null(0), "{n}");
    }
    assert_eq!(col("lines").as_list::<i32>().value(0).len(), 0);
    let schema = dec.schema();
    assert!(!schema.field_with_name("order_id").unwrap().is_nullable());
    assert!(schema.field_with_name("note").unwrap().is_nullable());
}

#[test]
fn unknown_fields_are_skipped_and_repeats_merge_as_protobuf_does() {
    let (pool, mut dec) = decoder("shop.Order");
    // a newer writer: field 99 (varint), 98 (bytes), 97 (fixed32), 96 (a group)
    let mut body = full_order(&pool).encode_to_vec();
    body.extend_from_slice(&[0x98, 0x06, 0x05]);
    body.extend_from_slice(&[0x92, 0x06, 0x02, b'h', b'i']);
    body.extend_from_slice(&[0x8d, 0x06, 1, 2, 3, 4]);
    body.extend_from_slice(&[0x83, 0x06, 0x08, 0x01, 0x84, 0x06]);
    // a second occurrence: order_id wins, lines append, timestamp nanos merge
    let later = msg(
        &pool,
        "shop.Order",
        &[
            ("order_id", Value::I64(43)),
            (
                "lines",
                Value::List(vec![Value::Message(msg(
                    &pool,
                    "shop.Order.Line",
                    &[("sku", Value::String("D-4".into()))],
                ))]),
            ),
        ],
    );
    body.extend(later.encode_to_vec());
    let b = one_row(&mut dec, &body);
    let expect =
        DynamicMessage::decode(pool.get_message_by_name("shop.Order").unwrap(), &body[..]).unwrap();
    assert_eq!(
        b.column_by_name("order_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        expect
            .get_field_by_name("order_id")
            .unwrap()
            .as_i64()
            .unwrap()
    );
    let lines = b.column_by_name("lines").unwrap().as_list::<i32>().value(0);
    assert_eq!(lines.len(), 3);
    assert_eq!(
        b.column_by_name("customer_id")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "cust-0007"
    );
}

#[test]
fn a_malformed_body_appends_nothing_and_the_decoder_goes_on() {
    let (pool, mut dec) = decoder("shop.Order");
    let good = full_order(&pool).encode_to_vec();
    dec.push(&good).unwrap();
    for bad in [
        &good[..good.len() - 1],
        &[0x0a, 0xff][..],
        &[0x00, 0x01][..],
        &[0x0c][..],
        &[0x13, 0x08][..],
        &[0x12, 0x02, 0xff, 0xfe][..],
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ][..],
    ] {
        let e = dec.push(bad).unwrap_err();
        assert!(matches!(e, crate::DecodeError::Protobuf { .. }), "{e}");
    }
    dec.push(&good).unwrap();
    let b = dec.finish().unwrap();
    assert_eq!(b.num_rows(), 2);
    assert_eq!(
        b.column_by_name("lines")
            .unwrap()
            .as_list::<i32>()
            .value(1)
            .len(),
        2
    );
}

#[test]
fn unknown_enum_numbers_are_kept_as_digits() {
    let (_, mut dec) = decoder("shop.Order");
    let b = one_row(&mut dec, &[0x20, 0x07]);
    assert_eq!(
        b.column_by_name("status")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "7"
    );
}

#[test]
fn what_cannot_be_a_column_is_refused() {
    let pool = compile_proto(
        "r.proto",
        "syntax = \"proto3\"; message Node { Node next = 1; int32 v = 2; }",
        &[],
    )
    .unwrap();
    let e = ProtoPlan::from_pool(&pool, "Node").unwrap_err().to_string();
    assert!(e.contains("recursive"), "{e}");
    let e = ProtoPlan::from_pool(&pool, "Missing")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such message"), "{e}");
    let e = compile_proto("x.proto", "syntax = \"proto3\"; message {", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.proto"), "{e}");
}

#[test]
fn descriptor_sets_and_imports_compile() {
    let set = pool().encode_to_vec();
    let plan = ProtoPlan::from_descriptor_set(&set, "shop.Order").unwrap();
    assert_eq!(plan.message_name(), "shop.Order");
    let lib = (
        "lib/line.proto".to_string(),
        "syntax = \"proto3\"; package lib; message L { int32 n = 1; }".to_string(),
    );
    let pool = compile_proto(
        "main.proto",
        "syntax = \"proto3\"; import \"lib/line.proto\"; message M { lib.L l = 1; }",
        &[lib],
    )
    .unwrap();
    assert!(ProtoPlan::from_pool(&pool, "M").is_ok());
}

#[test]
fn confluent_message_indexes() {
    let mut ix = Vec::new();
    assert_eq!(
        split_message_indexes(&[0, 9, 9], &mut ix),
        Ok(&[9u8, 9][..])
    );
    assert_eq!(ix, [0]);
    // [1, 0]: count 2, then 1 and 0, zig-zag encoded
    assert_eq!(
        split_message_indexes(&[4, 2, 0, 7], &mut ix),
        Ok(&[7u8][..])
    );
    assert_eq!(ix, [1, 0]);
    assert!(split_message_indexes(&[0x80], &mut ix).is_err());
    assert!(split_message_indexes(&[3], &mut ix).is_err());
    let pool = pool();
    assert_eq!(
        message_at(&pool, "shop.proto", &[0]).as_deref(),
        Some("shop.Order")
    );
    assert_eq!(
        message_at(&pool, "shop.proto", &[1, 0]).as_deref(),
        Some("shop.Other.Inner")
    );
    assert_eq!(message_at(&pool, "shop.proto", &[5]), None);
    let outline = ProtoFileOutline::parse(SHOP).unwrap();
    assert!(outline.names(&[0], "shop.Order"));
    assert!(outline.names(&[1, 0], "shop.Other.Inner"));
    assert!(!outline.names(&[1], "shop.Order"));
    assert!(!outline.names(&[0], "shop.OrderX"));
    assert!(!outline.names(&[0], "other.Order"));
    assert!(!outline.names(&[1, 0], "shop.Other"));
    assert!(!outline.names(&[9], "shop.Order"));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_failures_append_nothing(
        bodies in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 1..20)
    ) {
        let (_, mut dec) = decoder("shop.Order");
        let mut ok = 0;
        for b in &bodies {
            if dec.push(b).is_ok() {
                ok += 1;
            }
        }
        let batch = dec.finish().unwrap();
        proptest::prop_assert_eq!(batch.num_rows(), ok);
    }
}
