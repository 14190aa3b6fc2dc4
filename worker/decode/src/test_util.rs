//! Test helpers: writes Avro data with apache-avro and decodes it with ours.

#![allow(clippy::panic)] // test code: a failed expectation panics

use std::sync::Arc;

use apache_avro::types::Value;
use arrow_array::{Array, ArrayRef, RecordBatch};

use super::{AvroDecoder, DecodeError, DecodePlan};

pub(crate) fn avro_schema(json: &str) -> apache_avro::Schema {
    match apache_avro::Schema::parse_str(json) {
        Ok(s) => s,
        Err(e) => panic!("apache-avro rejects {json}: {e}"),
    }
}

/// The bare Avro binary datum of `value` written with `schema`.
pub(crate) fn datum(schema: &apache_avro::Schema, value: Value) -> Vec<u8> {
    match apache_avro::to_avro_datum(schema, value) {
        Ok(b) => b,
        Err(e) => panic!("apache-avro cannot write: {e}"),
    }
}

pub(crate) fn decoder(writer: &str, reader: Option<&str>) -> AvroDecoder {
    match DecodePlan::from_json(writer, reader) {
        Ok(p) => AvroDecoder::new(Arc::new(p)),
        Err(e) => panic!("plan: {e}"),
    }
}

pub(crate) fn finish(d: &mut AvroDecoder) -> RecordBatch {
    match d.finish() {
        Ok(b) => b,
        Err(e) => panic!("finish: {e}"),
    }
}

/// Decodes all bodies (each must be valid) into one batch.
pub(crate) fn decode_all(writer: &str, reader: Option<&str>, bodies: &[Vec<u8>]) -> RecordBatch {
    let mut d = decoder(writer, reader);
    for (i, b) in bodies.iter().enumerate() {
        if let Err(e) = d.push(b) {
            panic!("body {i} rejected: {e}");
        }
    }
    finish(&mut d)
}

pub(crate) fn col(batch: &RecordBatch, name: &str) -> ArrayRef {
    match batch.column_by_name(name) {
        Some(c) => c.clone(),
        None => panic!("no column {name} in {:?}", batch.schema()),
    }
}

pub(crate) fn downcast<T: 'static>(a: &dyn Array) -> &T {
    match a.as_any().downcast_ref::<T>() {
        Some(t) => t,
        None => panic!("unexpected array type {}", a.data_type()),
    }
}

/// Asserts `a` equals `expected` exactly (type, values, validity).
pub(crate) fn assert_array(a: &dyn Array, expected: &dyn Array) {
    assert_eq!(
        a.to_data(),
        expected.to_data(),
        "\n got: {a:?}\nwant: {expected:?}"
    );
}

pub(crate) fn err_name(r: Result<(), DecodeError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(e) => (&e).into(),
    }
}
