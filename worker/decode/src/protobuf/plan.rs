//! Pure: a protobuf message descriptor compiled into the columns it decodes to.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, IntervalUnit, Schema, SchemaRef, TimeUnit};
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, Value};

use crate::SchemaError;

/// A scalar's wire encoding and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Double,
    Float,
    Int32,
    Int64,
    UInt32,
    UInt64,
    SInt32,
    SInt64,
    Fixed32,
    Fixed64,
    SFixed32,
    SFixed64,
    Bool,
    String,
    Bytes,
}

impl Scalar {
    fn of(kind: &Kind) -> Option<Self> {
        Some(match kind {
            Kind::Double => Self::Double,
            Kind::Float => Self::Float,
            Kind::Int32 => Self::Int32,
            Kind::Int64 => Self::Int64,
            Kind::Uint32 => Self::UInt32,
            Kind::Uint64 => Self::UInt64,
            Kind::Sint32 => Self::SInt32,
            Kind::Sint64 => Self::SInt64,
            Kind::Fixed32 => Self::Fixed32,
            Kind::Fixed64 => Self::Fixed64,
            Kind::Sfixed32 => Self::SFixed32,
            Kind::Sfixed64 => Self::SFixed64,
            Kind::Bool => Self::Bool,
            Kind::String => Self::String,
            Kind::Bytes => Self::Bytes,
            Kind::Message(_) | Kind::Enum(_) => return None,
        })
    }

    /// The column type: unsigned 32-bit values widen to Int64, unsigned 64-bit ones to
    /// Decimal128(20, 0), so no value changes sign.
    pub(crate) fn data_type(self) -> DataType {
        match self {
            Self::Double => DataType::Float64,
            Self::Float => DataType::Float32,
            Self::Int32 | Self::SInt32 | Self::SFixed32 => DataType::Int32,
            Self::Int64 | Self::SInt64 | Self::SFixed64 | Self::UInt32 | Self::Fixed32 => {
                DataType::Int64
            }
            Self::UInt64 | Self::Fixed64 => DataType::Decimal128(20, 0),
            Self::Bool => DataType::Boolean,
            Self::String => DataType::Utf8,
            Self::Bytes => DataType::Binary,
        }
    }

    /// The wire type a single value has (packed repeated values come as wire type 2).
    pub(crate) fn wire_type(self) -> u8 {
        match self {
            Self::Double | Self::Fixed64 | Self::SFixed64 => 1,
            Self::Float | Self::Fixed32 | Self::SFixed32 => 5,
            Self::String | Self::Bytes => 2,
            _ => 0,
        }
    }
}

/// What one value of a field is.
#[derive(Debug)]
pub(crate) enum ProtoOp {
    Scalar(Scalar),
    /// An enum: its symbol; a number the descriptor does not know is kept as its digits.
    Enum(Arc<[(i32, Box<str>)]>),
    Message(ProtoMessage),
    /// `google.protobuf.Timestamp`: Timestamp(µs, UTC).
    Timestamp,
    /// `google.protobuf.Duration`: Interval(MonthDayNano), as Avro's duration.
    Duration,
    /// `google.protobuf.*Value`: the wrapped scalar, null when absent.
    Wrapper(Scalar),
}

/// A field's value when it is absent (fields without presence only).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Default {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Bytes(Box<[u8]>),
    Enum(i32),
}

/// How many values a field has.
#[derive(Debug)]
pub(crate) enum Shape {
    /// One value; absent is null (`presence`) or the default.
    Single {
        presence: bool,
        default: Default,
    },
    List,
    /// A map field: entries with `key` (field 1, as text) and the value op (field 2).
    Map {
        key: Scalar,
    },
}

#[derive(Debug)]
pub(crate) struct ProtoField {
    pub name: Box<str>,
    pub number: u32,
    pub shape: Shape,
    pub op: ProtoOp,
    /// Map fields: the value's default when an entry has none.
    pub map_value_default: Option<Default>,
}

/// A message: its fields in column order, and a lookup by field number.
#[derive(Debug)]
pub(crate) struct ProtoMessage {
    pub fields: Vec<ProtoField>,
    /// Field numbers sorted, with the field's index.
    by_number: Vec<(u32, u16)>,
}

impl ProtoMessage {
    /// The index of the field with this number; `None` for an unknown field (skipped).
    #[inline]
    pub fn index_of(&self, number: u32) -> Option<usize> {
        self.by_number
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .and_then(|i| self.by_number.get(i))
            .map(|(_, i)| usize::from(*i))
    }
}

/// A message type compiled for decoding: the descriptor's fields as columns.
#[derive(Debug)]
pub struct ProtoPlan {
    pub(crate) root: ProtoMessage,
    pub(crate) root_type: DataType,
    schema: SchemaRef,
    message: String,
}

impl ProtoPlan {
    /// Compiles message `name` (full name, package included) of a descriptor pool.
    pub fn from_pool(pool: &DescriptorPool, name: &str) -> Result<Self, SchemaError> {
        let name = name.trim_start_matches('.');
        let desc = pool
            .get_message_by_name(name)
            .ok_or_else(|| refuse(name, "no such message in the schema"))?;
        Self::from_message(&desc)
    }

    /// Compiles one message descriptor.
    pub fn from_message(desc: &MessageDescriptor) -> Result<Self, SchemaError> {
        let mut stack = Vec::new();
        let (root, fields) = message(desc, &mut stack, desc.full_name())?;
        let root_type = DataType::Struct(fields.clone());
        Ok(Self {
            root,
            root_type,
            schema: Arc::new(Schema::new(fields)),
            message: desc.full_name().to_string(),
        })
    }

    /// Compiles message `name` of a binary `FileDescriptorSet` (`protoc
    /// --include_imports --descriptor_set_out`).
    pub fn from_descriptor_set(bytes: &[u8], name: &str) -> Result<Self, SchemaError> {
        let pool = DescriptorPool::decode(bytes)
            .map_err(|e| refuse("descriptor set", &format!("cannot be read: {e}")))?;
        Self::from_pool(&pool, name)
    }

    /// The Arrow schema of the batches the decoder produces.
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The message's full name.
    pub fn message_name(&self) -> &str {
        &self.message
    }
}

fn refuse(path: &str, reason: &str) -> SchemaError {
    SchemaError::Protobuf {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

fn message(
    desc: &MessageDescriptor,
    stack: &mut Vec<String>,
    path: &str,
) -> Result<(ProtoMessage, Fields), SchemaError> {
    if stack.iter().any(|s| s == desc.full_name()) {
        return Err(refuse(
            path,
            &format!(
                "{} is recursive and cannot be a column type",
                desc.full_name()
            ),
        ));
    }
    stack.push(desc.full_name().to_string());
    let mut fields = Vec::with_capacity(desc.fields().len());
    let mut arrow = Vec::with_capacity(desc.fields().len());
    for f in desc.fields() {
        let p = format!("{path}.{}", f.name());
        let (field, dt, nullable) = field(&f, stack, &p)?;
        arrow.push(Field::new(f.name(), dt, nullable));
        fields.push(field);
    }
    stack.pop();
    let mut by_number: Vec<(u32, u16)> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.number, u16::try_from(i).unwrap_or(u16::MAX)))
        .collect();
    by_number.sort_unstable();
    Ok((ProtoMessage { fields, by_number }, Fields::from(arrow)))
}

/// The op of one value of `kind` and its column type (and whether absence is null).
fn value_op(
    kind: &Kind,
    stack: &mut Vec<String>,
    path: &str,
) -> Result<(ProtoOp, DataType, bool), SchemaError> {
    if let Some(s) = Scalar::of(kind) {
        return Ok((ProtoOp::Scalar(s), s.data_type(), false));
    }
    match kind {
        Kind::Enum(e) => {
            let symbols: Arc<[(i32, Box<str>)]> =
                e.values().map(|v| (v.number(), v.name().into())).collect();
            Ok((ProtoOp::Enum(symbols), DataType::Utf8, false))
        }
        Kind::Message(m) => match well_known(m.full_name()) {
            Some((op, dt)) => Ok((op, dt, true)),
            None => {
                let (msg, fields) = message(m, stack, path)?;
                Ok((ProtoOp::Message(msg), DataType::Struct(fields), true))
            }
        },
        _ => Err(refuse(path, "unsupported field kind")),
    }
}

fn well_known(name: &str) -> Option<(ProtoOp, DataType)> {
    let wrap = |s: Scalar| Some((ProtoOp::Wrapper(s), s.data_type()));
    match name {
        "google.protobuf.Timestamp" => Some((
            ProtoOp::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )),
        "google.protobuf.Duration" => Some((
            ProtoOp::Duration,
            DataType::Interval(IntervalUnit::MonthDayNano),
        )),
        "google.protobuf.DoubleValue" => wrap(Scalar::Double),
        "google.protobuf.FloatValue" => wrap(Scalar::Float),
        "google.protobuf.Int64Value" => wrap(Scalar::Int64),
        "google.protobuf.UInt64Value" => wrap(Scalar::UInt64),
        "google.protobuf.Int32Value" => wrap(Scalar::Int32),
        "google.protobuf.UInt32Value" => wrap(Scalar::UInt32),
        "google.protobuf.BoolValue" => wrap(Scalar::Bool),
        "google.protobuf.StringValue" => wrap(Scalar::String),
        "google.protobuf.BytesValue" => wrap(Scalar::Bytes),
        _ => None,
    }
}

fn field(
    f: &FieldDescriptor,
    stack: &mut Vec<String>,
    path: &str,
) -> Result<(ProtoField, DataType, bool), SchemaError> {
    if f.is_group() {
        return Err(refuse(path, "groups (proto2) are not supported"));
    }
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return Err(refuse(path, "a map field without its entry message"));
        };
        let key = Scalar::of(&entry.map_entry_key_field().kind())
            .ok_or_else(|| refuse(path, "a map key must be a scalar"))?;
        let value_field = entry.map_entry_value_field();
        let (op, value_dt, value_nullable) =
            value_op(&value_field.kind(), stack, &format!("{path}{{}}"))?;
        let kv = Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", value_dt, value_nullable),
        ]);
        let dt = DataType::Map(
            Arc::new(Field::new("entries", DataType::Struct(kv), false)),
            false,
        );
        let map_value_default = (!value_nullable).then(|| default_of(&value_field));
        let field = ProtoField {
            name: f.name().into(),
            number: f.number(),
            shape: Shape::Map { key },
            op,
            map_value_default,
        };
        return Ok((field, dt, false));
    }
    let (op, dt, nullable) = value_op(&f.kind(), stack, path)?;
    if f.is_list() {
        let dt = DataType::List(Arc::new(Field::new("item", dt, nullable)));
        let field = ProtoField {
            name: f.name().into(),
            number: f.number(),
            shape: Shape::List,
            op,
            map_value_default: None,
        };
        return Ok((field, dt, false));
    }
    let presence = nullable || f.supports_presence();
    let field = ProtoField {
        name: f.name().into(),
        number: f.number(),
        shape: Shape::Single {
            presence,
            default: default_of(f),
        },
        op,
        map_value_default: None,
    };
    Ok((field, dt, presence))
}

fn default_of(f: &FieldDescriptor) -> Default {
    match f.default_value() {
        Value::Bool(b) => Default::Bool(b),
        Value::I32(v) => Default::I64(i64::from(v)),
        Value::I64(v) => Default::I64(v),
        Value::U32(v) => Default::U64(u64::from(v)),
        Value::U64(v) => Default::U64(v),
        Value::F32(v) => Default::F64(f64::from(v)),
        Value::F64(v) => Default::F64(v),
        Value::String(s) => Default::Bytes(s.into_bytes().into()),
        Value::Bytes(b) => Default::Bytes(b.to_vec().into()),
        Value::EnumNumber(n) => Default::Enum(n),
        Value::Message(_) | Value::List(_) | Value::Map(_) => Default::I64(0),
    }
}
