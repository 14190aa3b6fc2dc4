//! Avro, JSON and Protobuf → Arrow: schema resolution, the columnar decoders, the Confluent
//! wire format split.
//!
//! Use: `DecodePlan::from_json(writer, reader)` once per (writer schema, reader schema)
//! pair, share it in an `Arc`, then `AvroDecoder::new(plan)`, `push(body)` per record
//! (after [`split_confluent`] for Confluent-framed payloads) and `finish()` per batch. A
//! `push` error is a bad record (dead letter); the decoder stays usable.
//!
//! - [`avro`]: pure: parses Avro schema JSON into an arena of types (our parser, see there
//!   why not apache-avro's).
//! - `arrow_types`: pure: reader Avro types → Arrow types (table below).
//! - [`schema`]: pure: compiles writer + reader schemas into a [`DecodePlan`].
//! - [`decoder`]: [`AvroDecoder`]: one checked pass per body straight into column buffers
//!   (`column`), rolled back on error; `read` holds the byte readers, `skip` skips writer
//!   fields the reader dropped, `defaults` encodes reader defaults.
//! - [`error`]: [`DecodeError`], why a body could not be decoded (no import circles:
//!   `decoder` uses `read` and `skip`, which use only `error`).
//! - [`json`]: JSON values of a row schema (Avro or JSON Schema) into the same Arrow types
//!   ([`JsonPlan`], [`JsonDecoder`]).
//! - [`protobuf`]: Protobuf messages of one message type into Arrow ([`ProtoPlan`] from a
//!   descriptor pool, `.proto` source compiled with protox or a descriptor set;
//!   [`ProtoDecoder`]; the Confluent message-index array).
//! - [`wire`]: pure: [`split_confluent`] splits off the 5-byte Confluent header.
//! - [`bench`]: the library side of `spillway bench decode`.
//!
//! Arrow types of the reader schema:
//!
//! | Avro                                   | Arrow                                        |
//! |----------------------------------------|----------------------------------------------|
//! | null, boolean, int, long               | Null, Boolean, Int32, Int64                  |
//! | float, double, bytes, string           | Float32, Float64, Binary, Utf8               |
//! | record                                 | Struct (a record root: the batch columns)    |
//! | enum                                   | Utf8, the symbol (Delta/Parquet friendly)    |
//! | array, map                             | List("item"), Map("entries": Utf8 key, value)|
//! | `["null", T]` / `[T, "null"]`          | T, nullable field                            |
//! | other unions                           | dense Union, `null` branch as a Null child   |
//! | fixed                                  | FixedSizeBinary(size)                        |
//! | date, time-millis, time-micros         | Date32, Time32(ms), Time64(us)               |
//! | timestamp-millis/micros/nanos          | Timestamp(unit, "UTC")                       |
//! | local-timestamp-millis/micros/nanos    | Timestamp(unit, None)                        |
//! | decimal (bytes or fixed)               | Decimal128 (precision ≤ 38), else Decimal256 |
//! | uuid (string or fixed(16))             | Utf8, canonical lowercase hyphenated form    |
//! | duration (fixed(12))                   | Interval(MonthDayNano)                       |
//!
//! An invalid logical type (say decimal with scale > precision) is ignored and the
//! underlying type used, as the Avro specification says; big-decimal stays Binary.

mod arrow_types;
pub mod avro;
pub mod bench;
mod column;
pub mod decoder;
mod defaults;
pub mod error;
pub mod json;
pub mod protobuf;
mod read;
pub mod schema;
mod skip;
pub mod wire;

pub use avro::{AvroSchema, AvroSchemaError};
pub use decoder::AvroDecoder;
/// Appends a zig-zag varint `long` (Avro's integer encoding).
pub use defaults::write_long;
pub use error::DecodeError;
pub use json::{JsonDecoder, JsonMode, JsonPlan};
pub use protobuf::{ProtoDecoder, ProtoFileOutline, ProtoPlan};
pub use schema::{DecodePlan, SchemaError};
pub use wire::{WireError, split_confluent};

#[cfg(test)]
mod malformed_tests;
#[cfg(test)]
mod resolution_tests;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod test_util;
