//! JSON → Arrow: a row schema compiled once, then one streaming parse per value straight
//! into the column buffers (no per-record `Value` tree).
//!
//! The row schema is an Avro record schema or a JSON Schema object (translated to the Avro
//! schema it describes, [`json_schema`]), so a column has the same Arrow type whichever
//! format the topic uses (the table in the crate doc). What a JSON value may be for each:
//!
//! | Column (Avro type)              | JSON value                                              |
//! |---------------------------------|---------------------------------------------------------|
//! | boolean                         | `true` / `false`                                        |
//! | int, long                       | an integer in range                                     |
//! | float, double                   | a number; `"NaN"`, `"Infinity"`, `"-Infinity"`          |
//! | string                          | a string; a number or boolean as its text               |
//! | bytes, fixed                    | base64 text (fixed: exactly its size)                   |
//! | enum                            | one of its symbols                                      |
//! | uuid                            | hyphenated hex text (stored lowercase)                  |
//! | decimal                         | a number or decimal text, rounded half up to the scale  |
//! | date                            | `YYYY-MM-DD`, or days since 1970-01-01                  |
//! | time-millis, time-micros        | `HH:MM:SS[.f]`, or a count of the unit                  |
//! | timestamp-*, local-timestamp-*  | RFC 3339 / ISO 8601 text (no offset: UTC), or an epoch count of the unit |
//! | record, map, array              | an object, an object, an array                          |
//! | `["null", T]`                   | `null`, an absent key, or a T                           |
//!
//! Keys the schema does not have are ignored; an absent key takes the field's default,
//! else null, else the record fails. A value that does not fit its column is null under
//! [`JsonMode::Permissive`] (when the column is nullable) and fails the record under
//! [`JsonMode::FailFast`]. A failed record is a [`DecodeError`](crate::DecodeError): the
//! caller's bad record, nothing appended. Decimals given as JSON numbers are exact to the 17
//! significant digits a double carries; give more as text.

mod decoder;
pub mod json_schema;
mod plan;

pub use decoder::{JsonDecoder, JsonMode};
pub use plan::JsonPlan;

#[cfg(test)]
mod tests;
