//! Tests: every Avro type and logical type written by apache-avro decodes to exact Arrow values.

#![allow(clippy::panic)] // test code: a failed expectation panics

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Uuid};
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_buffer::{IntervalMonthDayNano, i256};
use arrow_schema::{DataType, TimeUnit};

use super::test_util::*;

const ALL: &str = r#"{"type":"record","name":"All","namespace":"t","fields":[
 {"name":"n","type":"null"},
 {"name":"b","type":"boolean"},
 {"name":"i","type":"int"},
 {"name":"l","type":"long"},
 {"name":"f","type":"float"},
 {"name":"d","type":"double"},
 {"name":"by","type":"bytes"},
 {"name":"s","type":"string"},
 {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},
 {"name":"fx","type":{"type":"fixed","name":"F3","size":3}},
 {"name":"arr","type":{"type":"array","items":"long"}},
 {"name":"m","type":{"type":"map","values":"string"}},
 {"name":"opt","type":["null","string"]},
 {"name":"u","type":["null","int","string"]},
 {"name":"rec","type":{"type":"record","name":"Inner","fields":[
   {"name":"x","type":"int"},{"name":"tags","type":{"type":"array","items":"string"}}]}},
 {"name":"orec","type":["null","Inner"]},
 {"name":"date","type":{"type":"int","logicalType":"date"}},
 {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
 {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
 {"name":"tsm","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"tsn","type":{"type":"long","logicalType":"timestamp-nanos"}},
 {"name":"ltm","type":{"type":"long","logicalType":"local-timestamp-millis"}},
 {"name":"ltu","type":{"type":"long","logicalType":"local-timestamp-micros"}},
 {"name":"ltn","type":{"type":"long","logicalType":"local-timestamp-nanos"}},
 {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
 {"name":"decf","type":{"type":"fixed","name":"D8","size":8,"logicalType":"decimal","precision":18,"scale":4}},
 {"name":"dec256","type":{"type":"bytes","logicalType":"decimal","precision":50,"scale":5}},
 {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
 {"name":"dur","type":{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}}
]}"#;

const UUID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn row(k: i64) -> Value {
    let uuid = Uuid::parse_str(UUID).unwrap_or_default();
    let mut m = HashMap::new();
    if k == 0 {
        m.insert("a".to_string(), Value::String("x".into()));
    }
    let big = {
        let mut b = vec![0xffu8; 20];
        b[19] = 0x38; // -200
        if k == 1 {
            b = vec![0x7f; 20];
        }
        b
    };
    Value::Record(vec![
        ("n".into(), Value::Null),
        ("b".into(), Value::Boolean(k == 0)),
        ("i".into(), Value::Int(if k == 0 { -5 } else { i32::MAX })),
        (
            "l".into(),
            Value::Long(if k == 0 { 1 << 40 } else { i64::MIN }),
        ),
        ("f".into(), Value::Float(1.5)),
        ("d".into(), Value::Double(-2.25)),
        (
            "by".into(),
            Value::Bytes(if k == 0 { vec![0, 255] } else { vec![] }),
        ),
        (
            "s".into(),
            Value::String(if k == 0 {
                "héllo".into()
            } else {
                String::new()
            }),
        ),
        (
            "e".into(),
            if k == 0 {
                Value::Enum(2, "BLUE".into())
            } else {
                Value::Enum(0, "RED".into())
            },
        ),
        ("fx".into(), Value::Fixed(3, vec![1, 2, 3 + k as u8])),
        (
            "arr".into(),
            Value::Array(if k == 0 {
                vec![Value::Long(1), Value::Long(-2)]
            } else {
                vec![]
            }),
        ),
        ("m".into(), Value::Map(m)),
        (
            "opt".into(),
            if k == 0 {
                Value::Union(1, Box::new(Value::String("o".into())))
            } else {
                Value::Union(0, Box::new(Value::Null))
            },
        ),
        (
            "u".into(),
            if k == 0 {
                Value::Union(1, Box::new(Value::Int(7)))
            } else {
                Value::Union(2, Box::new(Value::String("z".into())))
            },
        ),
        (
            "rec".into(),
            Value::Record(vec![
                ("x".into(), Value::Int(1)),
                ("tags".into(), Value::Array(vec![Value::String("t".into())])),
            ]),
        ),
        (
            "orec".into(),
            if k == 0 {
                Value::Union(0, Box::new(Value::Null))
            } else {
                Value::Union(
                    1,
                    Box::new(Value::Record(vec![
                        ("x".into(), Value::Int(9)),
                        ("tags".into(), Value::Array(vec![])),
                    ])),
                )
            },
        ),
        ("date".into(), Value::Date(19_000 + k as i32)),
        ("tm".into(), Value::TimeMillis(1234)),
        ("tu".into(), Value::TimeMicros(5678)),
        ("tsm".into(), Value::TimestampMillis(1_700_000_000_000 + k)),
        ("tsu".into(), Value::TimestampMicros(-1)),
        (
            "tsn".into(),
            Value::TimestampNanos(1_700_000_000_000_000_001),
        ),
        ("ltm".into(), Value::LocalTimestampMillis(1)),
        ("ltu".into(), Value::LocalTimestampMicros(2)),
        ("ltn".into(), Value::LocalTimestampNanos(3)),
        (
            "dec".into(),
            Value::Decimal(Decimal::from(if k == 0 {
                vec![0x30, 0x39]
            } else {
                vec![0xcf, 0xc7]
            })),
        ),
        (
            "decf".into(),
            Value::Decimal(Decimal::from((-123_456_789i64).to_be_bytes())),
        ),
        ("dec256".into(), Value::Decimal(Decimal::from(big))),
        ("uuid".into(), Value::Uuid(uuid)),
        (
            "dur".into(),
            Value::Duration(Duration::new(
                Months::new(1),
                Days::new(2),
                Millis::new(3 + k as u32),
            )),
        ),
    ])
}

#[test]
fn every_type_round_trips_exactly() {
    let schema = avro_schema(ALL);
    let bodies = [datum(&schema, row(0)), datum(&schema, row(1))];
    let batch = decode_all(ALL, None, &bodies);
    assert_eq!(batch.num_rows(), 2);
    let c = |n: &str| col(&batch, n);

    assert_array(&c("n"), &NullArray::new(2));
    assert_array(&c("b"), &BooleanArray::from(vec![true, false]));
    assert_array(&c("i"), &Int32Array::from(vec![-5, i32::MAX]));
    assert_array(&c("l"), &Int64Array::from(vec![1 << 40, i64::MIN]));
    assert_array(&c("f"), &Float32Array::from(vec![1.5, 1.5]));
    assert_array(&c("d"), &Float64Array::from(vec![-2.25, -2.25]));
    assert_array(&c("by"), &BinaryArray::from(vec![&[0u8, 255][..], &[][..]]));
    assert_array(&c("s"), &StringArray::from(vec!["héllo", ""]));
    assert_array(&c("e"), &StringArray::from(vec!["BLUE", "RED"]));
    let fx = FixedSizeBinaryArray::try_from_iter(vec![vec![1u8, 2, 3], vec![1, 2, 4]].into_iter());
    assert_array(&c("fx"), &fx.unwrap_or_else(|e| panic!("{e}")));

    let arr = c("arr");
    let arr = downcast::<ListArray>(&arr);
    assert_eq!(arr.value_offsets(), &[0, 2, 2]);
    assert_array(&arr.value(0), &Int64Array::from(vec![1, -2]));

    let m = c("m");
    let m = downcast::<MapArray>(&m);
    assert_eq!(m.value_offsets(), &[0, 1, 1]);
    assert_array(m.keys(), &StringArray::from(vec!["a"]));
    assert_array(m.values(), &StringArray::from(vec!["x"]));

    assert_array(&c("opt"), &StringArray::from(vec![Some("o"), None]));
    let u = c("u");
    let u = downcast::<UnionArray>(&u);
    assert_eq!((u.type_id(0), u.type_id(1)), (1, 2));
    assert_array(&u.value(0), &Int32Array::from(vec![7]));
    assert_array(&u.value(1), &StringArray::from(vec!["z"]));

    let rec = c("rec");
    let rec = downcast::<StructArray>(&rec);
    assert_array(rec.column(0), &Int32Array::from(vec![1, 1]));
    let orec = c("orec");
    let orec = downcast::<StructArray>(&orec);
    assert!(orec.is_null(0) && orec.is_valid(1));
    assert_eq!(downcast::<Int32Array>(orec.column(0)).value(1), 9);

    assert_array(&c("date"), &Date32Array::from(vec![19_000, 19_001]));
    assert_array(&c("tm"), &Time32MillisecondArray::from(vec![1234, 1234]));
    assert_array(&c("tu"), &Time64MicrosecondArray::from(vec![5678, 5678]));
    let utc = Some("UTC");
    assert_array(
        &c("tsm"),
        &TimestampMillisecondArray::from(vec![1_700_000_000_000, 1_700_000_000_001])
            .with_timezone_opt(utc),
    );
    assert_array(
        &c("tsu"),
        &TimestampMicrosecondArray::from(vec![-1, -1]).with_timezone_opt(utc),
    );
    assert_array(
        &c("tsn"),
        &TimestampNanosecondArray::from(vec![1_700_000_000_000_000_001; 2]).with_timezone_opt(utc),
    );
    assert_array(&c("ltm"), &TimestampMillisecondArray::from(vec![1, 1]));
    assert_array(&c("ltu"), &TimestampMicrosecondArray::from(vec![2, 2]));
    assert_array(&c("ltn"), &TimestampNanosecondArray::from(vec![3, 3]));
    let dec = Decimal128Array::from(vec![12345, -12345]).with_precision_and_scale(10, 2);
    assert_array(&c("dec"), &dec.unwrap_or_else(|e| panic!("{e}")));
    let decf = Decimal128Array::from(vec![-123_456_789; 2]).with_precision_and_scale(18, 4);
    assert_array(&c("decf"), &decf.unwrap_or_else(|e| panic!("{e}")));
    let mut pos = [0x7fu8; 32];
    pos[..12].fill(0);
    let dec256 = Decimal256Array::from(vec![i256::from_i128(-200), i256::from_be_bytes(pos)])
        .with_precision_and_scale(50, 5);
    assert_array(&c("dec256"), &dec256.unwrap_or_else(|e| panic!("{e}")));
    assert_array(&c("uuid"), &StringArray::from(vec![UUID, UUID]));
    let dur = |ms: i64| IntervalMonthDayNano::new(1, 2, ms * 1_000_000);
    assert_array(
        &c("dur"),
        &IntervalMonthDayNanoArray::from(vec![dur(3), dur(4)]),
    );

    let schema = batch.schema();
    assert_eq!(
        schema
            .field_with_name("tsu")
            .map(|f| f.data_type().clone())
            .ok(),
        Some(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into())
        ))
    );
    assert!(schema.field_with_name("opt").is_ok_and(|f| f.is_nullable()));
    assert!(schema.field_with_name("s").is_ok_and(|f| !f.is_nullable()));
}

#[test]
fn fixed_uuid_decodes_to_canonical_string() {
    // apache-avro 0.21 cannot write a fixed(16) uuid, so the body is written by hand
    let schema = r#"{"type":"record","name":"R","fields":[{"name":"u","type":{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}}]}"#;
    let uuid = Uuid::parse_str(UUID).unwrap_or_default();
    let batch = decode_all(schema, None, &[uuid.as_bytes().to_vec()]);
    assert_array(&col(&batch, "u"), &StringArray::from(vec![UUID]));
}

#[test]
fn non_record_root_is_one_value_column() {
    let schema = r#"{"type":"array","items":"int"}"#;
    let body = datum(
        &avro_schema(schema),
        Value::Array(vec![Value::Int(3), Value::Int(4)]),
    );
    let batch = decode_all(schema, None, &[body]);
    let v = col(&batch, "value");
    let expected =
        ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(3), Some(4)])]);
    assert_array(&downcast::<ListArray>(&v).value(0), &expected.value(0));
}

#[test]
fn negative_block_counts_with_byte_sizes_decode() {
    // Java writers may emit array blocks as (-count, byte size, items...)
    let schema = r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"int"}}]}"#;
    let body = vec![3, 2, 2, 4, 0]; // count -2, 2 bytes, items 1 and 2, end
    let batch = decode_all(schema, None, &[body]);
    let a = col(&batch, "a");
    assert_array(
        &downcast::<ListArray>(&a).value(0),
        &Int32Array::from(vec![1, 2]),
    );
}

#[test]
fn batches_reset_after_finish() {
    let schema = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"m","type":{"type":"map","values":["null","int"]}}]}"#;
    let s = avro_schema(schema);
    let body = |t: &str| {
        let m = HashMap::from([("k".to_string(), Value::Union(1, Box::new(Value::Int(1))))]);
        datum(
            &s,
            Value::Record(vec![
                ("s".into(), Value::String(t.into())),
                ("m".into(), Value::Map(m)),
            ]),
        )
    };
    let mut d = decoder(schema, None);
    assert!(d.push(&body("a")).is_ok() && d.push(&body("b")).is_ok());
    assert_eq!(finish(&mut d).num_rows(), 2);
    assert!(d.is_empty());
    assert!(d.push(&body("c")).is_ok());
    let batch = finish(&mut d);
    assert_array(&col(&batch, "s"), &StringArray::from(vec!["c"]));
    assert_eq!(finish(&mut d).num_rows(), 0);
    let _: Arc<dyn Array> = col(&batch, "m");
}
