use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::i256;
use arrow_schema::{DataType, TimeUnit};

use super::decoder::{unscaled, utc_rfc3339_nanos};
use super::{JsonDecoder, JsonMode, JsonPlan};
use crate::DecodePlan;

const ORDER: &str = r#"{"type":"record","name":"Order","fields":[
  {"name":"order_id","type":"long"},
  {"name":"customer_id","type":"string"},
  {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
  {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED"]}},
  {"name":"order_timestamp","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"qty","type":"int","default":1},
  {"name":"day","type":["null",{"type":"int","logicalType":"date"}],"default":null},
  {"name":"score","type":["null","double"],"default":null},
  {"name":"lines","type":["null",{"type":"array","items":{"type":"record","name":"Line","fields":[
     {"name":"sku","type":"string"},{"name":"n","type":"int"}]}}],"default":null},
  {"name":"attrs","type":["null",{"type":"map","values":"string"}],"default":null}]}"#;

fn decoder(schema: &str, mode: JsonMode) -> JsonDecoder {
    JsonDecoder::new(Arc::new(JsonPlan::from_schema(schema).unwrap()), mode)
}

fn decode(d: &mut JsonDecoder, values: &[&str]) -> Vec<bool> {
    values
        .iter()
        .map(|v| d.push(v.as_bytes()).is_ok())
        .collect()
}

#[test]
fn a_row_schema_gives_the_arrow_schema_avro_decoding_gives() {
    let json = JsonPlan::from_schema(ORDER).unwrap();
    let avro = DecodePlan::from_json(ORDER, None).unwrap();
    assert_eq!(json.arrow_schema(), avro.arrow_schema());
}

#[test]
fn values_land_in_their_typed_columns() {
    let mut d = decoder(ORDER, JsonMode::FailFast);
    let ok = decode(
        &mut d,
        &[
            r#"{"order_id":1,"customer_id":"c1","amount":12.34,"status":"NEW",
                "order_timestamp":"2026-03-04T05:06:07.5+01:00","day":"2026-03-04","score":1,
                "lines":[{"sku":"a","n":2},{"n":3,"sku":"b","extra":true}],"attrs":{"k":"v"}}"#,
            r#"{"order_id":2,"customer_id":"c2","amount":"0.005","status":"PAID",
                "order_timestamp":1772600767000000,"note":"x","qty":5,"unknown":{"a":[1,2]}}"#,
        ],
    );
    assert_eq!(ok, [true, true]);
    let b = d.finish().unwrap();
    assert_eq!(b.num_rows(), 2);
    let col = |n: &str| b.column_by_name(n).unwrap().clone();
    assert_eq!(
        col("order_id").as_primitive::<Int64Type>().values(),
        &[1, 2]
    );
    // 0.005 rounds half up to 0.01
    assert_eq!(
        col("amount").as_primitive::<Decimal128Type>().values(),
        &[1234, 1]
    );
    assert_eq!(col("status").as_string::<i32>().value(1), "PAID");
    let ts = col("order_timestamp");
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_772_597_167_500_000); // 04:06:07.5Z
    assert_eq!(ts.value(1), 1_772_600_767_000_000);
    assert_eq!(col("qty").as_primitive::<Int32Type>().values(), &[1, 5]);
    assert_eq!(col("day").as_primitive::<Date32Type>().value(0), 20_516);
    assert!(col("day").is_null(1));
    assert_eq!(col("score").as_primitive::<Float64Type>().value(0), 1.0);
    assert!(col("note").is_null(0));
    let lines = col("lines");
    let lines = lines.as_list::<i32>();
    assert_eq!(lines.value_length(0), 2);
    assert!(lines.is_null(1));
    let first = lines.value(0);
    let sku = first.as_struct().column_by_name("sku").unwrap().clone();
    assert_eq!(sku.as_string::<i32>().value(1), "b");
    assert_eq!(col("attrs").as_map().value_length(0), 1);
}

#[test]
fn permissive_nulls_a_field_that_does_not_fit_failfast_fails_the_record() {
    let bad = r#"{"order_id":3,"customer_id":"c","amount":1,"status":"NEW","order_timestamp":0,"score":"high","day":"soon"}"#;
    let mut p = decoder(ORDER, JsonMode::Permissive);
    assert_eq!(decode(&mut p, &[bad]), [true]);
    let b = p.finish().unwrap();
    assert!(b.column_by_name("score").unwrap().is_null(0));
    assert!(b.column_by_name("day").unwrap().is_null(0));
    let mut f = decoder(ORDER, JsonMode::FailFast);
    let err = f.push(bad.as_bytes()).unwrap_err().to_string();
    assert!(
        err.contains("field day") || err.contains("field score"),
        "{err}"
    );
    // a required field that does not fit fails the record under both modes
    let required =
        r#"{"order_id":"x","customer_id":"c","amount":1,"status":"NEW","order_timestamp":0}"#;
    assert!(p.push(required.as_bytes()).is_err());
    let unknown_symbol =
        r#"{"order_id":1,"customer_id":"c","amount":1,"status":"LOST","order_timestamp":0}"#;
    assert!(p.push(unknown_symbol.as_bytes()).is_err());
}

#[test]
fn a_failed_record_leaves_nothing_behind() {
    let good = [
        r#"{"order_id":1,"customer_id":"a","amount":1.5,"status":"NEW","order_timestamp":0,"lines":[{"sku":"s","n":1}]}"#,
        r#"{"order_id":2,"customer_id":"b","amount":2,"status":"PAID","order_timestamp":1,"attrs":{"x":"y"}}"#,
    ];
    let bad = [
        "not json",
        "[1,2]",
        "null",
        r#"{"order_id":9}"#,
        r#"{"order_id":9,"customer_id":"z","amount":1,"status":"NEW","order_timestamp":0,"lines":[{"sku":"s","n":1},{"sku":"t","n":"two"}]}"#,
        r#"{"order_id":9,"customer_id":"z","amount":123456789012,"status":"NEW","order_timestamp":0}"#,
        r#"{"order_id":9,"customer_id":"z","amount":1,"status":"NEW","order_timestamp":0} trailing"#,
        r#"{"order_id":9,"customer_id":"z","amount":1,"status":"NEW","order_timestamp":0,"attrs":{"a":"b","c":1}"#,
    ];
    let mut mixed = decoder(ORDER, JsonMode::FailFast);
    assert_eq!(decode(&mut mixed, &[good[0]]), [true]);
    for b in bad {
        assert!(mixed.push(b.as_bytes()).is_err(), "{b}");
    }
    assert_eq!(decode(&mut mixed, &[good[1]]), [true]);
    let mut clean = decoder(ORDER, JsonMode::FailFast);
    assert_eq!(decode(&mut clean, &good), [true, true]);
    let (a, b): (RecordBatch, RecordBatch) = (mixed.finish().unwrap(), clean.finish().unwrap());
    assert_eq!(a, b);
}

#[test]
fn a_json_schema_reads_like_the_avro_schema_it_describes() {
    let schema = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"Order",
      "type":"object","required":["order_id","amount","order_timestamp"],"properties":{
        "order_id":{"type":"integer"},
        "amount":{"type":"number","format":"decimal","precision":10,"scale":2},
        "status":{"type":"string"},
        "order_timestamp":{"type":"string","format":"date-time"},
        "day":{"type":["string","null"],"format":"date"}}}"#;
    let plan = JsonPlan::from_schema(schema).unwrap();
    let s = plan.arrow_schema();
    let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["order_id", "amount", "status", "order_timestamp", "day"]
    );
    assert_eq!(s.field(0).data_type(), &DataType::Int64);
    assert!(!s.field(0).is_nullable());
    assert_eq!(s.field(1).data_type(), &DataType::Decimal128(10, 2));
    assert!(s.field(2).is_nullable());
    assert_eq!(
        s.field(3).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(s.field(4).data_type(), &DataType::Date32);
    let mut d = JsonDecoder::new(Arc::new(plan), JsonMode::FailFast);
    d.push(br#"{"order_id":7,"amount":"9.99","order_timestamp":"2026-01-01T00:00:00Z"}"#)
        .unwrap();
    assert!(d.push(br#"{"order_id":8,"amount":1}"#).is_err());
    assert_eq!(d.finish().unwrap().num_rows(), 1);
}

#[test]
fn decimal_text_is_exact_and_rounds_half_up() {
    let cases: [(&str, i8, Option<i128>); 12] = [
        ("12.34", 2, Some(1234)),
        ("-12.345", 2, Some(-1235)),
        ("12.344", 2, Some(1234)),
        ("1e2", 2, Some(10_000)),
        ("1.5E-1", 2, Some(15)),
        ("0.004", 2, Some(0)),
        ("0.005", 2, Some(1)),
        ("0.0000001", 2, Some(0)),
        ("7", 0, Some(7)),
        ("", 2, None),
        ("1.2.3", 2, None),
        ("12a", 2, None),
    ];
    for (text, scale, want) in cases {
        assert_eq!(
            unscaled(text, scale),
            want.map(i256::from_i128),
            "{text} at {scale}"
        );
    }
    // past 38 digits the arithmetic goes wide, with the same rounding
    let big = format!("{}5.5", "9".repeat(44));
    let want = i256::from_string(&format!("{}6", "9".repeat(44))).unwrap();
    assert_eq!(unscaled(&big, 0), Some(want));
    let just_over = format!("{}.45", "1".repeat(38));
    let want = i256::from_string(&format!("{}5", "1".repeat(38))).unwrap();
    assert_eq!(unscaled(&just_over, 1), Some(want));
}

#[test]
fn schemas_without_a_json_reading_are_refused() {
    for schema in [
        r#"{"type":"record","name":"R","fields":[{"name":"u","type":["int","string"]}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"d","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"}}]}"#,
        r#"{"type":"string"}"#,
        r#"{"type":"object","properties":{"order-id":{"type":"integer"}}}"#,
        "not json",
    ] {
        assert!(JsonPlan::from_schema(schema).is_err(), "{schema}");
    }
}

proptest::proptest! {
    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono(
        secs in -62_135_596_800i64..253_402_300_799,
        nanos in 0u32..1_000_000_000,
        digits in 0usize..10,
        zone in 0usize..3,
    ) {
        let t = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
        let mut text = t.format("%Y-%m-%dT%H:%M:%S").to_string();
        if digits > 0 {
            let f = format!("{nanos:09}");
            text.push('.');
            text.push_str(&f[..digits]);
        }
        text.push_str(["Z", "+00:00", "+01:00"][zone]);
        let chrono_nanos = chrono::DateTime::parse_from_rfc3339(&text)
            .unwrap()
            .timestamp_nanos_opt();
        match utc_rfc3339_nanos(text.as_bytes()) {
            Some(fast) => proptest::prop_assert_eq!(Some(fast), chrono_nanos, "{}", text),
            None => proptest::prop_assert!(zone == 2 || chrono_nanos.is_none(), "{}", text),
        }
    }
}

#[test]
fn the_fast_timestamp_path_refuses_what_is_not_a_date() {
    for bad in [
        "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00.1234567890Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
    ] {
        assert_eq!(utc_rfc3339_nanos(bad.as_bytes()), None, "{bad}");
    }
    assert_eq!(
        utc_rfc3339_nanos(b"1970-01-01T00:00:01.5Z"),
        Some(1_500_000_000)
    );
}
