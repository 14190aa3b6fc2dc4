//! Growable column buffers, one per Arrow column of the reader schema, finished into arrays.
//!
//! The decoder writes straight into these vectors; `finish` hands the buffers to Arrow
//! without copying and leaves the columns empty for the next batch.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, IntervalMonthDayNanoArray, ListArray,
    MapArray, NullArray, PrimitiveArray, StringArray, StructArray, Time32MillisecondArray,
    Time64MicrosecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, UnionArray, types::ArrowPrimitiveType,
};
use arrow_buffer::{
    BooleanBufferBuilder, Buffer, IntervalMonthDayNano, NullBufferBuilder, OffsetBuffer,
    ScalarBuffer, i256,
};
use arrow_schema::{ArrowError, DataType, IntervalUnit, TimeUnit, UnionMode};

/// Values of a fixed-width type plus validity.
#[derive(Debug)]
pub(crate) struct Prim<T> {
    pub values: Vec<T>,
    pub nulls: NullBufferBuilder,
}

impl<T: arrow_buffer::ArrowNativeType> Prim<T> {
    fn new() -> Self {
        Self {
            values: Vec::new(),
            nulls: NullBufferBuilder::new(0),
        }
    }

    #[inline(always)]
    pub fn push(&mut self, v: T) {
        self.values.push(v);
        self.nulls.append_non_null();
    }

    fn push_null(&mut self) {
        self.values.push(T::default());
        self.nulls.append_null();
    }

    fn truncate(&mut self, n: usize) {
        self.values.truncate(n);
        self.nulls.truncate(n);
    }

    fn finish<A: ArrowPrimitiveType<Native = T>>(
        &mut self,
    ) -> Result<PrimitiveArray<A>, ArrowError> {
        // the next batch is likely as large as this one
        let next = Vec::with_capacity(self.values.len());
        let values = std::mem::replace(&mut self.values, next);
        PrimitiveArray::<A>::try_new(ScalarBuffer::from(values), self.nulls.finish())
    }
}

/// Variable-length values (`Utf8` or `Binary`): offsets into one data buffer.
#[derive(Debug)]
pub(crate) struct ByteCol {
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
    pub nulls: NullBufferBuilder,
    /// The data outgrew i32 offsets; `finish` then fails instead of building bad offsets.
    overflow: bool,
}

impl ByteCol {
    fn new() -> Self {
        Self {
            offsets: vec![0],
            data: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            overflow: false,
        }
    }

    #[inline(always)]
    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.end_value();
    }

    /// Closes a value whose bytes were appended to `data` directly.
    #[inline(always)]
    pub fn end_value(&mut self) {
        match i32::try_from(self.data.len()) {
            Ok(o) => self.offsets.push(o),
            Err(_) => {
                self.overflow = true;
                self.offsets.push(i32::MAX);
            }
        }
        self.nulls.append_non_null();
    }

    fn push_null(&mut self) {
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last);
        self.nulls.append_null();
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn truncate(&mut self, n: usize) {
        self.offsets.truncate(n + 1);
        self.data.truncate(last_offset(&self.offsets));
        self.nulls.truncate(n);
    }

    fn take(
        &mut self,
    ) -> Result<(OffsetBuffer<i32>, Buffer, Option<arrow_buffer::NullBuffer>), ArrowError> {
        let mut next = Vec::with_capacity(self.offsets.len());
        next.push(0);
        let offsets = std::mem::replace(&mut self.offsets, next);
        let next = Vec::with_capacity(self.data.len());
        let data = std::mem::replace(&mut self.data, next);
        let nulls = self.nulls.finish();
        if std::mem::take(&mut self.overflow) {
            return Err(ArrowError::InvalidArgumentError(
                "batch exceeds 2 GiB in one column".into(),
            ));
        }
        Ok((checked_offsets(offsets)?, Buffer::from_vec(data), nulls))
    }
}

/// The batch of a record root's rows: the struct's children are the columns. On failure
/// the root starts empty again, whatever its buffers held.
pub(crate) fn finish_record_root(
    root: &mut Col,
    root_type: &DataType,
    schema: arrow_schema::SchemaRef,
    rows: usize,
) -> Result<arrow_array::RecordBatch, crate::DecodeError> {
    let err = |e: ArrowError| crate::DecodeError::BuildBatch {
        reason: e.to_string(),
    };
    let array = match root.finish(root_type) {
        Ok(a) => a,
        Err(e) => {
            *root = Col::new(root_type);
            return Err(err(e));
        }
    };
    let Some(s) = array.as_any().downcast_ref::<StructArray>() else {
        return Err(crate::DecodeError::BuildBatch {
            reason: "root is not a struct".into(),
        });
    };
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
    arrow_array::RecordBatch::try_new_with_options(schema, s.columns().to_vec(), &options)
        .map_err(err)
}

/// `OffsetBuffer::new` panics on bad offsets; ours are built monotonic, but check anyway.
fn checked_offsets(offsets: Vec<i32>) -> Result<OffsetBuffer<i32>, ArrowError> {
    let ok = offsets.first().is_some_and(|f| *f >= 0) && offsets.windows(2).all(|w| w[0] <= w[1]);
    if !ok {
        return Err(ArrowError::InvalidArgumentError(
            "non-monotonic offsets".into(),
        ));
    }
    Ok(OffsetBuffer::new(ScalarBuffer::from(offsets)))
}

fn last_offset(offsets: &[i32]) -> usize {
    offsets
        .last()
        .and_then(|o| usize::try_from(*o).ok())
        .unwrap_or(0)
}

/// Offsets entry for a list/map whose child now has `len` values.
#[inline]
pub(crate) fn push_offset(offsets: &mut Vec<i32>, len: usize) {
    offsets.push(i32::try_from(len).unwrap_or(-1));
}

/// One column being built.
#[derive(Debug)]
pub(crate) enum Col {
    Null(usize),
    Bool {
        values: BooleanBufferBuilder,
        nulls: NullBufferBuilder,
    },
    I32(Prim<i32>),
    I64(Prim<i64>),
    F32(Prim<f32>),
    F64(Prim<f64>),
    D128(Prim<i128>),
    D256(Prim<i256>),
    Interval(Prim<IntervalMonthDayNano>),
    Bytes(ByteCol),
    Fixed {
        size: usize,
        data: Vec<u8>,
        nulls: NullBufferBuilder,
    },
    Struct {
        children: Vec<Col>,
        nulls: NullBufferBuilder,
    },
    List {
        offsets: Vec<i32>,
        child: Box<Col>,
        nulls: NullBufferBuilder,
    },
    Map {
        offsets: Vec<i32>,
        keys: ByteCol,
        values: Box<Col>,
        nulls: NullBufferBuilder,
    },
    Union {
        type_ids: Vec<i8>,
        offsets: Vec<i32>,
        children: Vec<Col>,
    },
}

impl Col {
    /// Empty buffers for a column of type `dt` (as produced by the schema module).
    pub fn new(dt: &DataType) -> Self {
        let nulls = || NullBufferBuilder::new(0);
        match dt {
            DataType::Boolean => Col::Bool {
                values: BooleanBufferBuilder::new(0),
                nulls: nulls(),
            },
            DataType::Int32 | DataType::Date32 | DataType::Time32(_) => Col::I32(Prim::new()),
            DataType::Int64 | DataType::Time64(_) | DataType::Timestamp(..) => {
                Col::I64(Prim::new())
            }
            DataType::Float32 => Col::F32(Prim::new()),
            DataType::Float64 => Col::F64(Prim::new()),
            DataType::Decimal128(..) => Col::D128(Prim::new()),
            DataType::Decimal256(..) => Col::D256(Prim::new()),
            DataType::Interval(_) => Col::Interval(Prim::new()),
            DataType::Utf8 | DataType::Binary => Col::Bytes(ByteCol::new()),
            DataType::FixedSizeBinary(n) => Col::Fixed {
                size: usize::try_from(*n).unwrap_or(0),
                data: Vec::new(),
                nulls: nulls(),
            },
            DataType::Struct(fields) => Col::Struct {
                children: fields.iter().map(|f| Col::new(f.data_type())).collect(),
                nulls: nulls(),
            },
            DataType::List(f) => Col::List {
                offsets: vec![0],
                child: Box::new(Col::new(f.data_type())),
                nulls: nulls(),
            },
            DataType::Map(entries, _) => {
                let value = match entries.data_type() {
                    DataType::Struct(kv) => kv.get(1).map(|f| Col::new(f.data_type())),
                    _ => None,
                };
                Col::Map {
                    offsets: vec![0],
                    keys: ByteCol::new(),
                    values: Box::new(value.unwrap_or(Col::Null(0))),
                    nulls: nulls(),
                }
            }
            DataType::Union(fields, _) => Col::Union {
                type_ids: Vec::new(),
                offsets: Vec::new(),
                children: fields
                    .iter()
                    .map(|(_, f)| Col::new(f.data_type()))
                    .collect(),
            },
            _ => Col::Null(0),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Col::Null(n) => *n,
            Col::Bool { nulls, .. } | Col::Fixed { nulls, .. } | Col::Struct { nulls, .. } => {
                nulls.len()
            }
            Col::I32(p) => p.values.len(),
            Col::I64(p) => p.values.len(),
            Col::F32(p) => p.values.len(),
            Col::F64(p) => p.values.len(),
            Col::D128(p) => p.values.len(),
            Col::D256(p) => p.values.len(),
            Col::Interval(p) => p.values.len(),
            Col::Bytes(b) => b.len(),
            Col::List { offsets, .. } | Col::Map { offsets, .. } => offsets.len().saturating_sub(1),
            Col::Union { type_ids, .. } => type_ids.len(),
        }
    }

    /// Appends a null slot (children of structs get null slots too; a union takes its
    /// `null` branch, or a null in its first branch).
    pub fn push_null(&mut self) {
        match self {
            Col::Null(n) => *n += 1,
            Col::Bool { values, nulls } => {
                values.append(false);
                nulls.append_null();
            }
            Col::I32(p) => p.push_null(),
            Col::I64(p) => p.push_null(),
            Col::F32(p) => p.push_null(),
            Col::F64(p) => p.push_null(),
            Col::D128(p) => p.push_null(),
            Col::D256(p) => p.push_null(),
            Col::Interval(p) => p.push_null(),
            Col::Bytes(b) => b.push_null(),
            Col::Fixed { size, data, nulls } => {
                data.resize(data.len() + *size, 0);
                nulls.append_null();
            }
            Col::Struct { children, nulls } => {
                children.iter_mut().for_each(Col::push_null);
                nulls.append_null();
            }
            Col::List { offsets, nulls, .. } | Col::Map { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
            Col::Union {
                type_ids,
                offsets,
                children,
            } => {
                let branch = children
                    .iter()
                    .position(|c| matches!(c, Col::Null(_)))
                    .unwrap_or(0);
                if let Some(child) = children.get_mut(branch) {
                    type_ids.push(i8::try_from(branch).unwrap_or(0));
                    offsets.push(i32::try_from(child.len()).unwrap_or(-1));
                    child.push_null();
                }
            }
        }
    }

    /// Rolls the column back to its first `n` rows (buffers only ever grow at the end, so
    /// the state before a failed record is a prefix of the state after it).
    pub fn truncate(&mut self, n: usize) {
        match self {
            Col::Null(len) => *len = (*len).min(n),
            Col::Bool { values, nulls } => {
                values.truncate(n);
                nulls.truncate(n);
            }
            Col::I32(p) => p.truncate(n),
            Col::I64(p) => p.truncate(n),
            Col::F32(p) => p.truncate(n),
            Col::F64(p) => p.truncate(n),
            Col::D128(p) => p.truncate(n),
            Col::D256(p) => p.truncate(n),
            Col::Interval(p) => p.truncate(n),
            Col::Bytes(b) => b.truncate(n),
            Col::Fixed { size, data, nulls } => {
                data.truncate(n.saturating_mul(*size));
                nulls.truncate(n);
            }
            Col::Struct { children, nulls } => {
                children.iter_mut().for_each(|c| c.truncate(n));
                nulls.truncate(n);
            }
            Col::List {
                offsets,
                child,
                nulls,
            } => {
                offsets.truncate(n + 1);
                child.truncate(last_offset(offsets));
                nulls.truncate(n);
            }
            Col::Map {
                offsets,
                keys,
                values,
                nulls,
            } => {
                offsets.truncate(n + 1);
                keys.truncate(last_offset(offsets));
                values.truncate(last_offset(offsets));
                nulls.truncate(n);
            }
            Col::Union {
                type_ids,
                offsets,
                children,
            } => {
                type_ids.truncate(n);
                offsets.truncate(n);
                for (i, child) in children.iter_mut().enumerate() {
                    // a dense child holds one value per remaining slot of its type id
                    let len = type_ids
                        .iter()
                        .zip(offsets.iter())
                        .rev()
                        .find(|(t, _)| usize::try_from(**t).is_ok_and(|t| t == i))
                        .and_then(|(_, o)| usize::try_from(*o).ok())
                        .map_or(0, |o| o + 1);
                    child.truncate(len);
                }
            }
        }
    }

    /// Builds the array of type `dt` from the buffers and leaves the column empty.
    pub fn finish(&mut self, dt: &DataType) -> Result<ArrayRef, ArrowError> {
        let len = self.len();
        Ok(match (self, dt) {
            (Col::Null(n), _) => Arc::new(NullArray::new(std::mem::take(n))),
            (Col::Bool { values, nulls }, DataType::Boolean) => {
                Arc::new(BooleanArray::new(values.finish(), nulls.finish()))
            }
            (Col::I32(p), DataType::Int32) => {
                Arc::new(p.finish::<arrow_array::types::Int32Type>()?)
            }
            (Col::I32(p), DataType::Date32) => {
                Arc::new(p.finish::<arrow_array::types::Date32Type>()? as Date32Array)
            }
            (Col::I32(p), DataType::Time32(TimeUnit::Millisecond)) => {
                Arc::new(p.finish::<arrow_array::types::Time32MillisecondType>()?
                    as Time32MillisecondArray)
            }
            (Col::I64(p), DataType::Int64) => {
                Arc::new(p.finish::<arrow_array::types::Int64Type>()?)
            }
            (Col::I64(p), DataType::Time64(TimeUnit::Microsecond)) => {
                Arc::new(p.finish::<arrow_array::types::Time64MicrosecondType>()?
                    as Time64MicrosecondArray)
            }
            (Col::I64(p), DataType::Timestamp(unit, tz)) => match unit {
                TimeUnit::Millisecond => {
                    let a: TimestampMillisecondArray = p.finish()?;
                    Arc::new(a.with_timezone_opt(tz.clone()))
                }
                TimeUnit::Microsecond => {
                    let a: TimestampMicrosecondArray = p.finish()?;
                    Arc::new(a.with_timezone_opt(tz.clone()))
                }
                _ => {
                    let a: TimestampNanosecondArray = p.finish()?;
                    Arc::new(a.with_timezone_opt(tz.clone()))
                }
            },
            (Col::F32(p), DataType::Float32) => Arc::new(p.finish()? as Float32Array),
            (Col::F64(p), DataType::Float64) => Arc::new(p.finish()? as Float64Array),
            (Col::D128(p), DataType::Decimal128(precision, scale)) => {
                let a: Decimal128Array = p.finish()?;
                Arc::new(a.with_precision_and_scale(*precision, *scale)?)
            }
            (Col::D256(p), DataType::Decimal256(precision, scale)) => {
                let a: Decimal256Array = p.finish()?;
                Arc::new(a.with_precision_and_scale(*precision, *scale)?)
            }
            (Col::Interval(p), DataType::Interval(IntervalUnit::MonthDayNano)) => {
                Arc::new(p.finish()? as IntervalMonthDayNanoArray)
            }
            (Col::Bytes(b), DataType::Utf8) => {
                let (offsets, data, nulls) = b.take()?;
                Arc::new(StringArray::try_new(offsets, data, nulls)?)
            }
            (Col::Bytes(b), DataType::Binary) => {
                let (offsets, data, nulls) = b.take()?;
                Arc::new(BinaryArray::try_new(offsets, data, nulls)?)
            }
            (Col::Fixed { data, nulls, .. }, DataType::FixedSizeBinary(n)) => {
                let data = Buffer::from_vec(std::mem::take(data));
                Arc::new(FixedSizeBinaryArray::try_new_with_len(
                    *n,
                    data,
                    nulls.finish(),
                    len,
                )?)
            }
            (Col::Struct { children, nulls }, DataType::Struct(fields)) => {
                let arrays = finish_children(children, fields.iter().map(|f| f.data_type()))?;
                Arc::new(StructArray::try_new_with_length(
                    fields.clone(),
                    arrays,
                    nulls.finish(),
                    len,
                )?)
            }
            (
                Col::List {
                    offsets,
                    child,
                    nulls,
                },
                DataType::List(field),
            ) => {
                let offsets = checked_offsets(std::mem::replace(offsets, vec![0]))?;
                let values = child.finish(field.data_type())?;
                Arc::new(ListArray::try_new(
                    field.clone(),
                    offsets,
                    values,
                    nulls.finish(),
                )?)
            }
            (
                Col::Map {
                    offsets,
                    keys,
                    values,
                    nulls,
                },
                DataType::Map(entries, sorted),
            ) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return Err(mismatch(dt));
                };
                let value_type = kv
                    .get(1)
                    .map(|f| f.data_type())
                    .ok_or_else(|| mismatch(dt))?;
                let (key_offsets, key_data, _) = keys.take()?;
                let keys: ArrayRef = Arc::new(StringArray::try_new(key_offsets, key_data, None)?);
                let entry_values = values.finish(value_type)?;
                let struct_array =
                    StructArray::try_new(kv.clone(), vec![keys, entry_values], None)?;
                let offsets = checked_offsets(std::mem::replace(offsets, vec![0]))?;
                Arc::new(MapArray::try_new(
                    entries.clone(),
                    offsets,
                    struct_array,
                    nulls.finish(),
                    *sorted,
                )?)
            }
            (
                Col::Union {
                    type_ids,
                    offsets,
                    children,
                },
                DataType::Union(fields, UnionMode::Dense),
            ) => {
                let arrays = finish_children(children, fields.iter().map(|(_, f)| f.data_type()))?;
                let ids = ScalarBuffer::from(std::mem::take(type_ids));
                let offs = ScalarBuffer::from(std::mem::take(offsets));
                Arc::new(UnionArray::try_new(
                    fields.clone(),
                    ids,
                    Some(offs),
                    arrays,
                )?)
            }
            _ => return Err(mismatch(dt)),
        })
    }
}

fn finish_children<'a>(
    children: &mut [Col],
    types: impl Iterator<Item = &'a DataType>,
) -> Result<Vec<ArrayRef>, ArrowError> {
    children
        .iter_mut()
        .zip(types)
        .map(|(c, t)| c.finish(t))
        .collect()
}

fn mismatch(dt: &DataType) -> ArrowError {
    ArrowError::SchemaError(format!("column buffers do not match arrow type {dt}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_schema::{Field, Fields};

    #[test]
    fn null_struct_fills_children_and_finishes_valid() -> Result<(), ArrowError> {
        let dt = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, false),
            Field::new(
                "b",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
                false,
            ),
        ]));
        let mut col = Col::new(&dt);
        col.push_null();
        assert_eq!(col.len(), 1);
        let a = col.finish(&dt)?;
        assert_eq!((a.len(), a.null_count()), (1, 1));
        assert_eq!(col.len(), 0, "finish leaves the column empty");
        Ok(())
    }

    #[test]
    fn wrong_type_is_an_error_not_a_panic() {
        let mut col = Col::new(&DataType::Int32);
        assert!(col.finish(&DataType::Utf8).is_err());
    }
}
