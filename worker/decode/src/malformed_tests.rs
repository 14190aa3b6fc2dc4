//! Tests: malformed bodies are classified, append nothing, and never cost their neighbours.

use apache_avro::types::Value;
use arrow_array::*;
use proptest::prelude::*;

use super::test_util::*;

const SCHEMA: &str = r#"{"type":"record","name":"M","fields":[
 {"name":"s","type":"string"},
 {"name":"b","type":"boolean"},
 {"name":"u","type":["null","long"]},
 {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
 {"name":"a","type":{"type":"array","items":"int"}},
 {"name":"l","type":"long"}]}"#;

/// The body of {s: "ok", b: true, u: 3, e: B, a: [1], l: 5} from its field encodings.
fn body(s: &[u8], b: &[u8], u: &[u8], e: &[u8], a: &[u8], l: &[u8]) -> Vec<u8> {
    [s, b, u, e, a, l].concat()
}

const S: &[u8] = &[4, b'o', b'k'];
const B: &[u8] = &[1];
const U: &[u8] = &[2, 6];
const E: &[u8] = &[2];
const A: &[u8] = &[2, 2, 0];
const L: &[u8] = &[10];

#[test]
fn hand_built_good_body_matches_apache_avro() {
    let value = Value::Record(vec![
        ("s".into(), Value::String("ok".into())),
        ("b".into(), Value::Boolean(true)),
        ("u".into(), Value::Union(1, Box::new(Value::Long(3)))),
        ("e".into(), Value::Enum(1, "B".into())),
        ("a".into(), Value::Array(vec![Value::Int(1)])),
        ("l".into(), Value::Long(5)),
    ]);
    assert_eq!(datum(&avro_schema(SCHEMA), value), body(S, B, U, E, A, L));
}

#[test]
fn every_malformed_kind_is_classified_and_isolated() {
    let good = body(S, B, U, E, A, L);
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("truncated", good[..good.len() - 1].to_vec(), 10),
        ("truncated", vec![], 0),
        ("invalid_union_index", body(S, B, &[8, 6], E, A, L), 4),
        ("invalid_union_index", body(S, B, &[1, 6], E, A, L), 4),
        ("invalid_utf8", body(&[4, 0xff, 0xfe], B, U, E, A, L), 0),
        ("invalid_length", body(&[1, b'o'], B, U, E, A, L), 0),
        (
            "invalid_length",
            body(&[0x80, 0x01, b'o', b'k'], B, U, E, A, L),
            0,
        ),
        (
            "invalid_length",
            body(S, B, U, E, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 2, 0], L),
            7,
        ),
        ("invalid_varint", body(S, B, U, E, A, &[0xff; 11]), 10),
        (
            "invalid_varint",
            body(S, B, U, E, &[2, 0xff, 0xff, 0xff, 0xff, 0x7f, 0], L),
            8,
        ),
        ("enum_index_out_of_range", body(S, B, U, &[4], A, L), 6),
        ("enum_index_out_of_range", body(S, B, U, &[1], A, L), 6),
        (
            "trailing_bytes",
            [good.clone(), vec![0, 0]].concat(),
            good.len(),
        ),
        ("invalid_bool", body(S, &[2], U, E, A, L), 3),
    ];
    let mut d = decoder(SCHEMA, None);
    for (good_pushes, (want, bad, position)) in cases.iter().enumerate() {
        let err = d.push(bad).err();
        let name = err.as_ref().map(<&'static str>::from);
        assert_eq!(name, Some(*want), "{bad:?}: {err:?}");
        assert_eq!(
            err.and_then(|e| e.position()),
            Some(*position),
            "{want}: {bad:?}"
        );
        assert_eq!(d.len(), good_pushes, "a bad body appended nothing");
        assert_eq!(err_name(d.push(&good)), "ok");
    }
    let batch = finish(&mut d);
    assert_eq!(batch.num_rows(), cases.len());
    assert_array(
        &col(&batch, "s"),
        &StringArray::from(vec!["ok"; cases.len()]),
    );
    assert_array(&col(&batch, "u"), &Int64Array::from(vec![3; cases.len()]));
    assert_array(
        &col(&batch, "e"),
        &StringArray::from(vec!["B"; cases.len()]),
    );
    assert_array(&col(&batch, "l"), &Int64Array::from(vec![5; cases.len()]));
    let a = col(&batch, "a");
    assert_eq!(downcast::<ListArray>(&a).values().len(), cases.len());
}

#[test]
fn decimal_overflow_and_deep_recursion_are_classified() {
    let dec = r#"{"type":"record","name":"D","fields":[{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":38,"scale":0}}]}"#;
    let mut d = decoder(dec, None);
    let mut wide = vec![34u8, 0x01];
    wide.extend([0u8; 16]);
    assert_eq!(err_name(d.push(&wide)), "decimal_overflow");
    assert_eq!(err_name(d.push(&[2, 0x05])), "ok");
    assert_eq!(finish(&mut d).num_rows(), 1);

    // a recursive writer field the reader skips: 300 levels of a linked list
    let w = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},
        {"name":"l","type":{"type":"record","name":"L","fields":[{"name":"n","type":["null","L"]}]}}]}"#;
    let r = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    let mut d = decoder(w, Some(r));
    let mut deep = vec![2u8];
    deep.extend(std::iter::repeat_n(2u8, 300));
    deep.push(0);
    assert_eq!(err_name(d.push(&deep)), "too_deep");
    let shallow = [2u8, 2, 2, 0];
    assert_eq!(err_name(d.push(&shallow)), "ok");
    assert_array(&col(&finish(&mut d), "a"), &Int32Array::from(vec![1]));
}

#[test]
fn zero_width_items_are_bounded() {
    let schema = r#"{"type":"record","name":"Z","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#;
    let mut d = decoder(schema, None);
    // 2^40 nulls in one block: rejected before anything is allocated
    assert_eq!(
        err_name(d.push(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0])),
        "invalid_length"
    );
    assert_eq!(err_name(d.push(&[6, 0])), "ok");
    let batch = finish(&mut d);
    let a = col(&batch, "a");
    assert_eq!(downcast::<ListArray>(&a).values().len(), 3);
}

const NESTED: &str = r#"{"type":"record","name":"N","fields":[
 {"name":"id","type":"long"},
 {"name":"name","type":["null","string"]},
 {"name":"tags","type":{"type":"map","values":{"type":"array","items":"string"}}},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[
    {"name":"sku","type":{"type":"fixed","name":"Sku","size":4}},
    {"name":"qty","type":"int"},
    {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
    {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B","C"]}}]}}},
 {"name":"choice","type":["null","boolean","double","Item"]},
 {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;

fn nested_bodies() -> Vec<Vec<u8>> {
    let s = avro_schema(NESTED);
    let item = |q: i32| {
        Value::Record(vec![
            ("sku".into(), Value::Fixed(4, vec![1, 2, 3, q as u8])),
            ("qty".into(), Value::Int(q)),
            (
                "price".into(),
                Value::Decimal(apache_avro::Decimal::from(vec![0x01, q as u8])),
            ),
            (
                "kind".into(),
                Value::Enum((q % 3) as u32, ["A", "B", "C"][(q % 3) as usize].into()),
            ),
        ])
    };
    (0..4)
        .map(|k: i32| {
            let tags = std::collections::HashMap::from([(
                format!("t{k}"),
                Value::Array(vec![Value::String("x".into())]),
            )]);
            let choice = match k {
                0 => Value::Union(0, Box::new(Value::Null)),
                1 => Value::Union(1, Box::new(Value::Boolean(true))),
                2 => Value::Union(2, Box::new(Value::Double(2.5))),
                _ => Value::Union(3, Box::new(item(9))),
            };
            datum(
                &s,
                Value::Record(vec![
                    ("id".into(), Value::Long(i64::from(k) * 1000)),
                    (
                        "name".into(),
                        if k % 2 == 0 {
                            Value::Union(1, Box::new(Value::String("n".into())))
                        } else {
                            Value::Union(0, Box::new(Value::Null))
                        },
                    ),
                    ("tags".into(), Value::Map(tags)),
                    ("items".into(), Value::Array((0..k).map(item).collect())),
                    ("choice".into(), choice),
                    ("at".into(), Value::TimestampMicros(i64::from(k))),
                ]),
            )
        })
        .collect()
}

/// A body: random bytes, or a valid body truncated and/or with a few bytes overwritten.
fn body_strategy(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            0..n,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            any::<usize>(),
            any::<bool>()
        )
            .prop_map(move |(i, edits, cut, do_cut)| {
                let mut b = valid[i].clone();
                for (pos, byte) in edits {
                    if !b.is_empty() {
                        let p = pos % b.len();
                        b[p] = byte;
                    }
                }
                if do_cut && !b.is_empty() {
                    b.truncate(cut % b.len());
                }
                b
            }),
        (0..n).prop_map(move |i| nested_bodies()[i].clone()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_panic_and_rows_equal_ok_pushes(bodies in proptest::collection::vec(body_strategy(nested_bodies()), 1..8)) {
        let mut d = decoder(NESTED, None);
        let mut good = Vec::new();
        for b in &bodies {
            if d.push(b).is_ok() {
                good.push(b);
            }
        }
        let batch = d.finish();
        prop_assert!(batch.is_ok(), "{:?}", batch.err());
        let batch = batch.ok();
        prop_assert_eq!(batch.as_ref().map(|b| b.num_rows()), Some(good.len()));
        // the rolled-back batch equals one built from the good bodies alone
        let mut clean = decoder(NESTED, None);
        for b in &good {
            prop_assert!(clean.push(b).is_ok());
        }
        prop_assert_eq!(batch, clean.finish().ok());
    }
}
