//! Tests: writer → reader schema resolution (fields, promotions, enums, unions, defaults).

use apache_avro::types::Value;
use arrow_array::*;

use super::test_util::*;

fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"v","fields":[{fields}]}}"#)
}

#[test]
fn v1_to_v2_added_removed_reordered_promoted() {
    let v1 = rec(
        r#"{"name":"id","type":"int"},{"name":"name","type":"string"},{"name":"old","type":{"type":"array","items":"string"}}"#,
    );
    let v2 = rec(
        r#"{"name":"name","type":"string"},{"name":"id","type":"long"},
        {"name":"added","type":"int","default":42},
        {"name":"city","type":["null","string"],"default":null},
        {"name":"tags","type":{"type":"array","items":"string"},"default":["a","b"]},
        {"name":"inner","type":{"type":"record","name":"In","fields":[{"name":"z","type":"double"}]},"default":{"z":1.5}}"#,
    );
    let s = avro_schema(&v1);
    let body = |id: i32, name: &str| {
        datum(
            &s,
            Value::Record(vec![
                ("id".into(), Value::Int(id)),
                ("name".into(), Value::String(name.into())),
                (
                    "old".into(),
                    Value::Array(vec![Value::String("gone".into())]),
                ),
            ]),
        )
    };
    let batch = decode_all(&v1, Some(&v2), &[body(1, "a"), body(-7, "b")]);
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["name", "id", "added", "city", "tags", "inner"]);
    assert_array(&col(&batch, "name"), &StringArray::from(vec!["a", "b"]));
    assert_array(&col(&batch, "id"), &Int64Array::from(vec![1, -7]));
    assert_array(&col(&batch, "added"), &Int32Array::from(vec![42, 42]));
    assert_array(
        &col(&batch, "city"),
        &StringArray::from(vec![None::<&str>, None]),
    );
    let tags = col(&batch, "tags");
    assert_array(
        &downcast::<ListArray>(&tags).value(1),
        &StringArray::from(vec!["a", "b"]),
    );
    let inner = col(&batch, "inner");
    assert_array(
        downcast::<StructArray>(&inner).column(0),
        &Float64Array::from(vec![1.5, 1.5]),
    );
}

#[test]
fn each_promotion() {
    let cases: Vec<(&str, Value, &str, ArrayRef)> = vec![
        (
            "int",
            Value::Int(-3),
            "long",
            std::sync::Arc::new(Int64Array::from(vec![-3])),
        ),
        (
            "int",
            Value::Int(-3),
            "float",
            std::sync::Arc::new(Float32Array::from(vec![-3.0])),
        ),
        (
            "int",
            Value::Int(-3),
            "double",
            std::sync::Arc::new(Float64Array::from(vec![-3.0])),
        ),
        (
            "long",
            Value::Long(1 << 40),
            "float",
            std::sync::Arc::new(Float32Array::from(vec![(1i64 << 40) as f32])),
        ),
        (
            "long",
            Value::Long(1 << 40),
            "double",
            std::sync::Arc::new(Float64Array::from(vec![(1i64 << 40) as f64])),
        ),
        (
            "float",
            Value::Float(0.1),
            "double",
            std::sync::Arc::new(Float64Array::from(vec![f64::from(0.1f32)])),
        ),
        (
            "string",
            Value::String("hé".into()),
            "bytes",
            std::sync::Arc::new(BinaryArray::from(vec!["hé".as_bytes()])),
        ),
        (
            "bytes",
            Value::Bytes(b"ok".to_vec()),
            "string",
            std::sync::Arc::new(StringArray::from(vec!["ok"])),
        ),
        (
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            Value::TimestampMillis(5),
            "long",
            std::sync::Arc::new(Int64Array::from(vec![5])),
        ),
        (
            "int",
            Value::Int(9),
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            std::sync::Arc::new(TimestampMillisecondArray::from(vec![9]).with_timezone("UTC")),
        ),
    ];
    for (w, v, r, want) in cases {
        let (ws, rs) = (
            rec(&format!(r#"{{"name":"a","type":{}}}"#, quote(w))),
            rec(&format!(r#"{{"name":"a","type":{}}}"#, quote(r))),
        );
        let body = datum(&avro_schema(&ws), Value::Record(vec![("a".into(), v)]));
        let batch = decode_all(&ws, Some(&rs), &[body]);
        assert_array(&col(&batch, "a"), &want);
    }
}

fn quote(t: &str) -> String {
    if t.starts_with('{') || t.starts_with('[') {
        t.to_string()
    } else {
        format!("\"{t}\"")
    }
}

#[test]
fn enum_symbols_map_by_name_with_reader_default() {
    let w = rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}"#);
    let r = rec(
        r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["C","A","OTHER"],"default":"OTHER"}}"#,
    );
    let s = avro_schema(&w);
    let bodies: Vec<Vec<u8>> = ["A", "B", "C"]
        .iter()
        .enumerate()
        .map(|(i, sym)| {
            datum(
                &s,
                Value::Record(vec![("e".into(), Value::Enum(i as u32, sym.to_string()))]),
            )
        })
        .collect();
    let batch = decode_all(&w, Some(&r), &bodies);
    assert_array(
        &col(&batch, "e"),
        &StringArray::from(vec!["A", "OTHER", "C"]),
    );

    // without a reader default an unknown symbol is a data error, not a plan error
    let r = rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["C","A"]}}"#);
    let mut d = decoder(&w, Some(&r));
    assert_eq!(err_name(d.push(&bodies[1])), "unknown_enum_symbol");
    assert_eq!(err_name(d.push(&bodies[0])), "ok");
    assert_array(&col(&finish(&mut d), "e"), &StringArray::from(vec!["A"]));
}

#[test]
fn union_to_non_union_and_back() {
    // writer union → reader plain type: matching branches decode, the others are data errors
    let w = rec(r#"{"name":"a","type":["null","int"]}"#);
    let r = rec(r#"{"name":"a","type":"long"}"#);
    let s = avro_schema(&w);
    let some = datum(
        &s,
        Value::Record(vec![("a".into(), Value::Union(1, Box::new(Value::Int(5))))]),
    );
    let none = datum(
        &s,
        Value::Record(vec![("a".into(), Value::Union(0, Box::new(Value::Null)))]),
    );
    let mut d = decoder(&w, Some(&r));
    assert_eq!(err_name(d.push(&some)), "ok");
    assert_eq!(err_name(d.push(&none)), "unresolved_union_branch");
    assert_array(&col(&finish(&mut d), "a"), &Int64Array::from(vec![5]));

    // plain writer → nullable reader
    let w2 = rec(r#"{"name":"a","type":"int"}"#);
    let body = datum(
        &avro_schema(&w2),
        Value::Record(vec![("a".into(), Value::Int(3))]),
    );
    let batch = decode_all(
        &w2,
        Some(&rec(r#"{"name":"a","type":["null","long"]}"#)),
        std::slice::from_ref(&body),
    );
    assert_array(&col(&batch, "a"), &Int64Array::from(vec![Some(3)]));

    // plain writer → multi-branch reader union picks the matching branch
    let batch = decode_all(
        &w2,
        Some(&rec(r#"{"name":"a","type":["string","null","int"]}"#)),
        &[body],
    );
    let u = col(&batch, "a");
    let u = downcast::<UnionArray>(&u);
    assert_eq!(u.type_id(0), 2);
    assert_array(&u.value(0), &Int32Array::from(vec![3]));

    // writer union → reader union with branches reordered
    let w3 = rec(r#"{"name":"a","type":["string","null"]}"#);
    let s3 = avro_schema(&w3);
    let bodies = [
        datum(
            &s3,
            Value::Record(vec![(
                "a".into(),
                Value::Union(0, Box::new(Value::String("x".into()))),
            )]),
        ),
        datum(
            &s3,
            Value::Record(vec![("a".into(), Value::Union(1, Box::new(Value::Null)))]),
        ),
    ];
    let batch = decode_all(
        &w3,
        Some(&rec(r#"{"name":"a","type":["null","string"]}"#)),
        &bodies,
    );
    assert_array(&col(&batch, "a"), &StringArray::from(vec![Some("x"), None]));
}

#[test]
fn named_union_branches_match_by_name() {
    let a = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
    let b = r#"{"type":"record","name":"B","fields":[{"name":"x","type":"int"}]}"#;
    let w = rec(&format!(r#"{{"name":"u","type":[{a},{b}]}}"#));
    let r = rec(&format!(r#"{{"name":"u","type":[{b},{a}]}}"#));
    let s = avro_schema(&w);
    let body = datum(
        &s,
        Value::Record(vec![(
            "u".into(),
            Value::Union(
                1,
                Box::new(Value::Record(vec![("x".into(), Value::Int(4))])),
            ),
        )]),
    );
    let batch = decode_all(&w, Some(&r), &[body]);
    let u = col(&batch, "u");
    assert_eq!(
        downcast::<UnionArray>(&u).type_id(0),
        0,
        "writer B lands in reader branch B"
    );
}

#[test]
fn field_aliases_and_defaults_of_logical_types() {
    let w = rec(r#"{"name":"old_name","type":"string"}"#);
    let r = rec(
        r#"{"name":"new_name","aliases":["old_name"],"type":"string"},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"},"default":7},
        {"name":"kind","type":{"type":"enum","name":"K","symbols":["X","Y"]},"default":"Y"},
        {"name":"u","type":["int","string"],"default":1}"#,
    );
    let body = datum(
        &avro_schema(&w),
        Value::Record(vec![("old_name".into(), Value::String("v".into()))]),
    );
    let batch = decode_all(&w, Some(&r), &[body]);
    assert_array(&col(&batch, "new_name"), &StringArray::from(vec!["v"]));
    assert_array(
        &col(&batch, "ts"),
        &TimestampMicrosecondArray::from(vec![7]).with_timezone("UTC"),
    );
    assert_array(&col(&batch, "kind"), &StringArray::from(vec!["Y"]));
    let u = col(&batch, "u");
    assert_array(
        &downcast::<UnionArray>(&u).value(0),
        &Int32Array::from(vec![1]),
    );
}

#[test]
fn matches_apache_avro_resolution_on_nested_data() {
    // the same writer/reader pair through apache-avro's resolver gives the same values
    let w = rec(
        r#"{"name":"m","type":{"type":"map","values":{"type":"array","items":"int"}}},{"name":"gone","type":"string"}"#,
    );
    let r = rec(r#"{"name":"m","type":{"type":"map","values":{"type":"array","items":"double"}}}"#);
    let (ws, rs) = (avro_schema(&w), avro_schema(&r));
    let m = std::collections::HashMap::from([(
        "k".to_string(),
        Value::Array(vec![Value::Int(1), Value::Int(2)]),
    )]);
    let body = datum(
        &ws,
        Value::Record(vec![
            ("m".into(), Value::Map(m)),
            ("gone".into(), Value::String("g".into())),
        ]),
    );
    let theirs = apache_avro::from_avro_datum(&ws, &mut &body[..], Some(&rs)).ok();
    let want = Value::Record(vec![(
        "m".into(),
        Value::Map(std::collections::HashMap::from([(
            "k".to_string(),
            Value::Array(vec![Value::Double(1.0), Value::Double(2.0)]),
        )])),
    )]);
    assert_eq!(theirs, Some(want));
    let batch = decode_all(&w, Some(&r), &[body]);
    let m = col(&batch, "m");
    let values = downcast::<MapArray>(&m).values().clone();
    assert_array(
        &downcast::<ListArray>(&values).value(0),
        &Float64Array::from(vec![1.0, 2.0]),
    );
}
