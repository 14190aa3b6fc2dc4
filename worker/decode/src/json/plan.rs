//! Pure: compiles a row schema (an Avro record schema, or a JSON Schema object translated to
//! one) into the plan the JSON decoder runs, with the same Arrow schema Avro decoding gives.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_buffer::i256;
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use super::json_schema::{Ordered, to_avro};
use crate::SchemaError;
use crate::arrow_types::{Shape, data_type, node, shape};
use crate::avro::{AvroSchema, Kind, Logical, TypeId};

/// A compiled row schema: what the JSON decoder runs for every value.
#[derive(Debug)]
pub struct JsonPlan {
    pub(crate) root: JsonRecord,
    /// The Arrow type of a row: a `Struct` whose fields are the batch columns.
    pub(crate) root_type: DataType,
    schema: SchemaRef,
    avro: String,
}

/// What one JSON value is read as (its column's type, without the null of a nullable field).
#[derive(Debug)]
pub(crate) enum JsonOp {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    /// Base64 text.
    Bytes,
    String,
    Uuid,
    Enum(Box<[Box<str>]>),
    /// Base64 text of exactly `size` bytes.
    Fixed(usize),
    /// A number or decimal text; `bound` is 10^precision.
    Decimal {
        scale: i8,
        bound: i256,
    },
    Date,
    TimeMillis,
    TimeMicros,
    Timestamp {
        unit: TimeUnit,
        utc: bool,
    },
    Record(Box<JsonRecord>),
    Array {
        item: Box<JsonOp>,
        nullable: bool,
    },
    Map {
        value: Box<JsonOp>,
        nullable: bool,
    },
}

/// An object's fields, in column order, and where each key goes.
#[derive(Debug)]
pub(crate) struct JsonRecord {
    pub fields: Box<[JsonField]>,
    pub index: HashMap<Box<str>, usize>,
}

#[derive(Debug)]
pub(crate) struct JsonField {
    pub name: Box<str>,
    pub op: JsonOp,
    pub nullable: bool,
    /// The schema's default, used when the key is absent.
    pub default: Option<Value>,
}

impl JsonOp {
    /// What the value should have been, for error messages.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            JsonOp::Null => "null",
            JsonOp::Bool => "a boolean",
            JsonOp::Int => "a 32-bit integer",
            JsonOp::Long => "a 64-bit integer",
            JsonOp::Float | JsonOp::Double => "a number",
            JsonOp::Bytes => "base64 text",
            JsonOp::String => "a string",
            JsonOp::Uuid => "a uuid string",
            JsonOp::Enum(_) => "one of the enum's symbols",
            JsonOp::Fixed(_) => "base64 text of the fixed size",
            JsonOp::Decimal { .. } => "a decimal number or decimal text within its precision",
            JsonOp::Date => "a date (YYYY-MM-DD or days since 1970-01-01)",
            JsonOp::TimeMillis | JsonOp::TimeMicros => "a time of day (HH:MM:SS[.f])",
            JsonOp::Timestamp { .. } => "a timestamp (RFC 3339 text or an epoch number)",
            JsonOp::Record(_) => "an object",
            JsonOp::Array { .. } => "an array",
            JsonOp::Map { .. } => "an object (a map)",
        }
    }
}

impl JsonPlan {
    /// Compiles a row schema: an Avro record schema (`"type": "record"`) or a JSON Schema
    /// object (`"type": "object"` with `properties`, or `$schema`).
    pub fn from_schema(text: &str) -> Result<Self, SchemaError> {
        let ordered: Ordered = serde_json::from_str(text).map_err(|e| SchemaError::Json {
            path: "#".into(),
            reason: format!("not valid JSON: {e}"),
        })?;
        let avro_text = if ordered.has("fields") {
            text.to_string()
        } else if ordered.has("properties")
            || ordered.has("$schema")
            || ordered.has("additionalProperties")
        {
            to_avro(&ordered)?.to_string()
        } else {
            return Err(SchemaError::Json {
                path: "#".into(),
                reason: "neither an Avro record schema (with fields) nor a JSON Schema object (with properties)".into(),
            });
        };
        let avro = AvroSchema::parse(&avro_text)?;
        let (root_type, nullable) = data_type(&avro, avro.root, &mut Vec::new(), "$")?;
        let (JsonOp::Record(root), false) = op(&avro, avro.root, "$")? else {
            return Err(SchemaError::Json {
                path: "$".into(),
                reason: "the row schema must be a record (not nullable)".into(),
            });
        };
        let DataType::Struct(fields) = &root_type else {
            return Err(SchemaError::Json {
                path: "$".into(),
                reason: "the row schema must be a record".into(),
            });
        };
        let schema = Arc::new(Schema::new(fields.clone()));
        debug_assert!(!nullable);
        Ok(Self {
            root: *root,
            root_type,
            schema,
            avro: avro_text,
        })
    }

    /// The Arrow schema of the batches the decoder produces.
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The row schema as Avro JSON (a JSON Schema's translation).
    pub fn avro_schema(&self) -> &str {
        &self.avro
    }
}

fn unsupported(path: &str, reason: &str) -> SchemaError {
    SchemaError::Json {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// The op of reader type `id` and whether its values may be null.
fn op(s: &AvroSchema, id: TypeId, path: &str) -> Result<(JsonOp, bool), SchemaError> {
    match shape(s, id) {
        Shape::Nullable(t) => Ok((plain(s, t, path)?, true)),
        Shape::Plain(t) => {
            let op = plain(s, t, path)?;
            let nullable = matches!(op, JsonOp::Null);
            Ok((op, nullable))
        }
        Shape::Union(_) => Err(unsupported(
            path,
            "a union other than [\"null\", T] has no JSON reading; use one type",
        )),
    }
}

fn plain(s: &AvroSchema, id: TypeId, path: &str) -> Result<JsonOp, SchemaError> {
    let n = node(s, id)?;
    if let Some(l) = n.logical {
        return Ok(match l {
            Logical::Decimal { precision, scale } => JsonOp::Decimal {
                scale: i8::try_from(scale).map_err(|_| unsupported(path, "scale too large"))?,
                bound: u32::try_from(precision)
                    .ok()
                    .and_then(|p| i256::from_i128(10).checked_pow(p))
                    .ok_or_else(|| unsupported(path, "precision too large"))?,
            },
            Logical::Uuid => JsonOp::Uuid,
            Logical::Date => JsonOp::Date,
            Logical::TimeMillis => JsonOp::TimeMillis,
            Logical::TimeMicros => JsonOp::TimeMicros,
            Logical::TimestampMillis => ts(TimeUnit::Millisecond, true),
            Logical::TimestampMicros => ts(TimeUnit::Microsecond, true),
            Logical::TimestampNanos => ts(TimeUnit::Nanosecond, true),
            Logical::LocalTimestampMillis => ts(TimeUnit::Millisecond, false),
            Logical::LocalTimestampMicros => ts(TimeUnit::Microsecond, false),
            Logical::LocalTimestampNanos => ts(TimeUnit::Nanosecond, false),
            Logical::Duration => {
                return Err(unsupported(
                    path,
                    "the duration logical type has no JSON reading",
                ));
            }
        });
    }
    Ok(match &n.kind {
        Kind::Null => JsonOp::Null,
        Kind::Boolean => JsonOp::Bool,
        Kind::Int => JsonOp::Int,
        Kind::Long => JsonOp::Long,
        Kind::Float => JsonOp::Float,
        Kind::Double => JsonOp::Double,
        Kind::Bytes => JsonOp::Bytes,
        Kind::String => JsonOp::String,
        Kind::Enum { symbols, .. } => {
            JsonOp::Enum(symbols.iter().map(|s| s.as_str().into()).collect())
        }
        Kind::Fixed { size, .. } => JsonOp::Fixed(*size),
        Kind::Array(items) => {
            let (item, nullable) = op(s, *items, &format!("{path}[]"))?;
            JsonOp::Array {
                item: Box::new(item),
                nullable,
            }
        }
        Kind::Map(values) => {
            let (value, nullable) = op(s, *values, &format!("{path}{{}}"))?;
            JsonOp::Map {
                value: Box::new(value),
                nullable,
            }
        }
        Kind::Record { fields, .. } => {
            let mut out = Vec::with_capacity(fields.len());
            let mut index = HashMap::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                let (op, nullable) = op(s, f.ty, &format!("{path}.{}", f.name))?;
                index.insert(f.name.as_str().into(), i);
                out.push(JsonField {
                    name: f.name.as_str().into(),
                    op,
                    nullable,
                    default: f.default.clone(),
                });
            }
            JsonOp::Record(Box::new(JsonRecord {
                fields: out.into(),
                index,
            }))
        }
        Kind::Union(_) => op(s, id, path)?.0,
    })
}

fn ts(unit: TimeUnit, utc: bool) -> JsonOp {
    JsonOp::Timestamp { unit, utc }
}
