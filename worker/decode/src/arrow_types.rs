//! Pure: maps a reader Avro schema to Arrow types (the table in the `decode` module doc).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, IntervalUnit, TimeUnit, UnionFields, UnionMode};

use super::avro::{AvroSchema, Kind, Logical, Node, TypeId, kind_name};
use super::schema::SchemaError;

/// How a reader type maps to a column: a plain type, `["null", T]` as a nullable `T`, or
/// any other union as a dense union.
pub(crate) enum Shape<'a> {
    Plain(TypeId),
    Nullable(TypeId),
    Union(&'a [TypeId]),
}

pub(crate) fn node(s: &AvroSchema, id: TypeId) -> Result<&Node, SchemaError> {
    s.node(id).ok_or_else(|| SchemaError::Arrow {
        path: String::new(),
        reason: "dangling type id".to_string(),
    })
}

pub(crate) fn shape(s: &AvroSchema, id: TypeId) -> Shape<'_> {
    match s.node(id).map(|n| &n.kind) {
        Some(Kind::Union(b)) => {
            let is_null = |t: &TypeId| matches!(s.node(*t).map(|n| &n.kind), Some(Kind::Null));
            match b.as_slice() {
                [only] => Shape::Plain(*only),
                [a, t] if is_null(a) && !is_null(t) => Shape::Nullable(*t),
                [t, a] if is_null(a) && !is_null(t) => Shape::Nullable(*t),
                _ => Shape::Union(b),
            }
        }
        _ => Shape::Plain(id),
    }
}

/// The Arrow type of reader type `id`, and whether its field is nullable.
pub(crate) fn data_type(
    s: &AvroSchema,
    id: TypeId,
    stack: &mut Vec<TypeId>,
    path: &str,
) -> Result<(DataType, bool), SchemaError> {
    match shape(s, id) {
        Shape::Nullable(t) => Ok((plain_type(s, t, stack, path)?, true)),
        Shape::Plain(t) => {
            let dt = plain_type(s, t, stack, path)?;
            let nullable = dt == DataType::Null;
            Ok((dt, nullable))
        }
        Shape::Union(branches) => {
            let mut fields = Vec::with_capacity(branches.len());
            let mut has_null = false;
            for (i, b) in branches.iter().enumerate() {
                let (dt, nullable) = data_type(s, *b, stack, &format!("{path}[{i}]"))?;
                has_null |= dt == DataType::Null;
                fields.push(Field::new(branch_name(s, *b), dt, nullable));
            }
            let ids = 0..i8::try_from(fields.len())
                .map_err(|_| arrow_err(path, "union has more than 127 branches"))?;
            let fields = UnionFields::try_new(ids, fields).map_err(|e| arrow_err(path, e))?;
            // a union with a null branch has logical nulls; Arrow wants such fields nullable
            Ok((DataType::Union(fields, UnionMode::Dense), has_null))
        }
    }
}

pub(crate) fn arrow_err(path: &str, reason: impl ToString) -> SchemaError {
    SchemaError::Arrow {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

fn branch_name(s: &AvroSchema, id: TypeId) -> String {
    match s.node(id).map(|n| &n.kind) {
        Some(Kind::Record { named, .. } | Kind::Enum { named, .. } | Kind::Fixed { named, .. }) => {
            named.fullname.clone()
        }
        Some(k) => kind_name(k).to_string(),
        None => String::new(),
    }
}

fn plain_type(
    s: &AvroSchema,
    id: TypeId,
    stack: &mut Vec<TypeId>,
    path: &str,
) -> Result<DataType, SchemaError> {
    let n = node(s, id)?;
    if let Some(l) = n.logical {
        return Ok(match l {
            Logical::Decimal { precision, scale } => {
                let p = u8::try_from(precision).map_err(|e| arrow_err(path, e))?;
                let sc = i8::try_from(scale).map_err(|e| arrow_err(path, e))?;
                if precision <= 38 {
                    DataType::Decimal128(p, sc)
                } else {
                    DataType::Decimal256(p, sc)
                }
            }
            Logical::Uuid => DataType::Utf8,
            Logical::Date => DataType::Date32,
            Logical::TimeMillis => DataType::Time32(TimeUnit::Millisecond),
            Logical::TimeMicros => DataType::Time64(TimeUnit::Microsecond),
            Logical::TimestampMillis => {
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            }
            Logical::TimestampMicros => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            Logical::TimestampNanos => {
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
            }
            Logical::LocalTimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, None),
            Logical::LocalTimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, None),
            Logical::LocalTimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Logical::Duration => DataType::Interval(IntervalUnit::MonthDayNano),
        });
    }
    Ok(match &n.kind {
        Kind::Null => DataType::Null,
        Kind::Boolean => DataType::Boolean,
        Kind::Int => DataType::Int32,
        Kind::Long => DataType::Int64,
        Kind::Float => DataType::Float32,
        Kind::Double => DataType::Float64,
        Kind::Bytes => DataType::Binary,
        Kind::String | Kind::Enum { .. } => DataType::Utf8,
        Kind::Fixed { size, .. } => {
            DataType::FixedSizeBinary(i32::try_from(*size).map_err(|e| arrow_err(path, e))?)
        }
        Kind::Array(items) => {
            let (dt, nullable) = data_type(s, *items, stack, &format!("{path}[]"))?;
            DataType::List(Arc::new(Field::new("item", dt, nullable)))
        }
        Kind::Map(values) => {
            let (dt, nullable) = data_type(s, *values, stack, &format!("{path}{{}}"))?;
            let kv = Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", dt, nullable),
            ]);
            DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(kv), false)),
                false,
            )
        }
        Kind::Record { named, fields } => {
            if stack.contains(&id) {
                return Err(SchemaError::Recursive {
                    name: named.fullname.clone(),
                });
            }
            stack.push(id);
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                let (dt, nullable) = data_type(s, f.ty, stack, &format!("{path}.{}", f.name))?;
                out.push(Field::new(f.name.clone(), dt, nullable));
            }
            stack.pop();
            DataType::Struct(Fields::from(out))
        }
        Kind::Union(_) => data_type(s, id, stack, path)?.0,
    })
}
