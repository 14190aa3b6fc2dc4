//! Columnar decoder: validates each Avro body, then appends it straight into Arrow buffers.
//!
//! One pass per body, every read checked; when a body turns out malformed, every column is
//! rolled back to the rows before it (`Col::truncate`: buffers only grow at the end, so the
//! earlier state is a prefix). So a malformed body never leaves a half-appended row and the
//! next good body decodes normally. This replaces a separate validation pass, which cost
//! about a third of the time; the rollback is tested against a decoder fed only the good
//! bodies. No per-record `Value` tree, JSON or heap allocation (beyond the amortised growth
//! of the column buffers).

use std::sync::Arc;

use arrow_array::{Array, RecordBatch, RecordBatchOptions, StructArray};
use arrow_buffer::IntervalMonthDayNano;
use arrow_schema::SchemaRef;

use super::avro::AvroSchema;
use super::column::{Col, push_offset};
pub use super::error::DecodeError;
use super::read::{Cursor, be_i128, be_i256};
use super::schema::{DecodePlan, Op, Step};
use super::skip::skip;

/// Decodes bare Avro bodies (no Confluent prefix) of one writer schema into record batches.
#[derive(Debug)]
pub struct AvroDecoder {
    plan: Arc<DecodePlan>,
    root: Col,
    rows: usize,
}

impl AvroDecoder {
    pub fn new(plan: Arc<DecodePlan>) -> Self {
        let root = Col::new(&plan.root_type);
        Self {
            plan,
            root,
            rows: 0,
        }
    }

    /// The schema of the batches `finish` returns.
    pub fn schema(&self) -> SchemaRef {
        self.plan.arrow_schema().clone()
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one record body; on error nothing is appended.
    pub fn push(&mut self, body: &[u8]) -> Result<(), DecodeError> {
        let plan = &*self.plan;
        let mut cur = Cursor::new(body);
        let mut result = decode(&plan.root, &mut self.root, &mut cur, &plan.writer);
        if result.is_ok() && cur.remaining() > 0 {
            result = Err(DecodeError::TrailingBytes {
                trailing: cur.remaining(),
                position: cur.pos(),
            });
        }
        match result {
            Ok(()) => {
                self.rows += 1;
                Ok(())
            }
            Err(e) => {
                self.root.truncate(self.rows);
                Err(e)
            }
        }
    }

    /// Returns the rows pushed since the last call as a batch and starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        let rows = std::mem::take(&mut self.rows);
        let err = |e: arrow_schema::ArrowError| DecodeError::BuildBatch {
            reason: e.to_string(),
        };
        let array = match self.root.finish(&self.plan.root_type) {
            Ok(a) => a,
            Err(e) => {
                // leave a clean decoder behind whatever the buffers held
                self.root = Col::new(&self.plan.root_type);
                return Err(err(e));
            }
        };
        let schema = self.schema();
        let columns = if self.plan.record_root {
            match array.as_any().downcast_ref::<StructArray>() {
                Some(s) => s.columns().to_vec(),
                None => {
                    return Err(DecodeError::BuildBatch {
                        reason: "root is not a struct".into(),
                    });
                }
            }
        } else {
            vec![array]
        };
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema, columns, &options).map_err(err)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Decodes the value `op` reads at the cursor into `col`. On error the column may hold a
/// partial row; the caller rolls it back with `Col::truncate`.
fn decode(op: &Op, col: &mut Col, cur: &mut Cursor<'_>, w: &AvroSchema) -> Result<(), DecodeError> {
    match (op, &mut *col) {
        (Op::Null, col) => col.push_null(),
        (Op::Bool, Col::Bool { values, nulls }) => {
            values.append(cur.bool()?);
            nulls.append_non_null();
        }
        (Op::Int, Col::I32(p)) => p.push(cur.int()?),
        (Op::IntToLong, Col::I64(p)) => p.push(i64::from(cur.int()?)),
        (Op::IntToFloat, Col::F32(p)) => p.push(cur.int()? as f32),
        (Op::IntToDouble, Col::F64(p)) => p.push(f64::from(cur.int()?)),
        (Op::Long, Col::I64(p)) => p.push(cur.long()?),
        (Op::LongToFloat, Col::F32(p)) => p.push(cur.long()? as f32),
        (Op::LongToDouble, Col::F64(p)) => p.push(cur.long()? as f64),
        (Op::Float, Col::F32(p)) => p.push(f32::from_le_bytes(cur.array()?)),
        (Op::FloatToDouble, Col::F64(p)) => p.push(f64::from(f32::from_le_bytes(cur.array()?))),
        (Op::Double, Col::F64(p)) => p.push(f64::from_le_bytes(cur.array()?)),
        (Op::Bytes { utf8 }, Col::Bytes(b)) => {
            let position = cur.pos();
            let bytes = cur.bytes()?;
            if *utf8 && !is_utf8(bytes) {
                return Err(DecodeError::InvalidUtf8 { position });
            }
            b.push(bytes);
        }
        (Op::Fixed { size }, Col::Fixed { data, nulls, .. }) => {
            data.extend_from_slice(cur.take(*size)?);
            nulls.append_non_null();
        }
        (Op::Enum { map, symbols }, Col::Bytes(b)) => {
            let position = cur.pos();
            let index = cur.int()?;
            match usize::try_from(index).ok().and_then(|i| map.get(i)) {
                Some(Some(r)) => b.push(symbols.get(*r as usize).map_or(&[][..], |s| s.as_bytes())),
                Some(None) => return Err(DecodeError::UnknownEnumSymbol { index, position }),
                None => {
                    return Err(DecodeError::EnumIndexOutOfRange {
                        index,
                        symbols: map.len(),
                        position,
                    });
                }
            }
        }
        (Op::DecimalBytes | Op::DecimalFixed { .. }, Col::D128(p)) => {
            let (bytes, position) = decimal_bytes(op, cur)?;
            p.push(be_i128(bytes).ok_or(DecodeError::DecimalOverflow {
                bytes: bytes.len(),
                position,
            })?);
        }
        (Op::DecimalBytes | Op::DecimalFixed { .. }, Col::D256(p)) => {
            let (bytes, position) = decimal_bytes(op, cur)?;
            p.push(be_i256(bytes).ok_or(DecodeError::DecimalOverflow {
                bytes: bytes.len(),
                position,
            })?);
        }
        (Op::UuidFixed, Col::Bytes(b)) => {
            for (i, byte) in cur.array::<16>()?.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    b.data.push(b'-');
                }
                b.data.push(HEX[usize::from(byte >> 4)]);
                b.data.push(HEX[usize::from(byte & 0xf)]);
            }
            b.end_value();
        }
        (Op::Duration, Col::Interval(p)) => {
            let raw: [u8; 12] = cur.array()?;
            let word = |i: usize| {
                let mut w = [0u8; 4];
                if let Some(s) = raw.get(i * 4..i * 4 + 4) {
                    w.copy_from_slice(s);
                }
                u32::from_le_bytes(w)
            };
            // months and days are u32 in Avro, i32 in Arrow: values past i32::MAX wrap
            let (months, days, millis) = (word(0) as i32, word(1) as i32, i64::from(word(2)));
            p.push(IntervalMonthDayNano::new(months, days, millis * 1_000_000));
        }
        (Op::Record(r), Col::Struct { children, nulls }) => {
            for step in r.steps.iter() {
                match step {
                    Step::Read { col, op } => match children.get_mut(*col) {
                        Some(c) => decode(op, c, cur, w)?,
                        None => {
                            return Err(DecodeError::PlanMismatch {
                                position: cur.pos(),
                            });
                        }
                    },
                    Step::Skip(t) => skip(w, *t, cur, 0)?,
                }
            }
            for d in r.defaults.iter() {
                if let Some(c) = children.get_mut(d.col) {
                    decode(&d.op, c, &mut Cursor::new(&d.bytes), w)?;
                }
            }
            nulls.append_non_null();
        }
        (
            Op::Array(item),
            Col::List {
                offsets,
                child,
                nulls,
            },
        ) => {
            loop {
                let n = cur.block()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    decode(item, child, cur, w)?;
                }
            }
            push_offset(offsets, child.len());
            nulls.append_non_null();
        }
        (
            Op::Map(value),
            Col::Map {
                offsets,
                keys,
                values,
                nulls,
            },
        ) => {
            loop {
                let n = cur.block()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let position = cur.pos();
                    let key = cur.bytes()?;
                    if !is_utf8(key) {
                        return Err(DecodeError::InvalidUtf8 { position });
                    }
                    keys.push(key);
                    decode(value, values, cur, w)?;
                }
            }
            push_offset(offsets, values.len());
            nulls.append_non_null();
        }
        (Op::WriterUnion(branches), col) => {
            let position = cur.pos();
            let index = cur.long()?;
            match usize::try_from(index).ok().and_then(|i| branches.get(i)) {
                Some(Some(op)) => decode(op, col, cur, w)?,
                Some(None) => return Err(DecodeError::UnresolvedUnionBranch { index, position }),
                None => return Err(DecodeError::InvalidUnionIndex { index, position }),
            }
        }
        (
            Op::ReaderBranch { branch, op },
            Col::Union {
                type_ids,
                offsets,
                children,
            },
        ) => {
            match usize::try_from(*branch)
                .ok()
                .and_then(|b| children.get_mut(b))
            {
                Some(c) => {
                    type_ids.push(*branch);
                    push_offset(offsets, c.len());
                    decode(op, c, cur, w)?;
                }
                None => {
                    return Err(DecodeError::PlanMismatch {
                        position: cur.pos(),
                    });
                }
            }
        }
        _ => {
            return Err(DecodeError::PlanMismatch {
                position: cur.pos(),
            });
        }
    }
    Ok(())
}

/// UTF-8 check with an inlined ASCII fast path (short ASCII strings dominate).
#[inline(always)]
fn is_utf8(b: &[u8]) -> bool {
    b.is_ascii() || std::str::from_utf8(b).is_ok()
}

fn decimal_bytes<'a>(op: &Op, cur: &mut Cursor<'a>) -> Result<(&'a [u8], usize), DecodeError> {
    let position = cur.pos();
    let bytes = match op {
        Op::DecimalFixed { size, .. } => cur.take(*size)?,
        _ => cur.bytes()?,
    };
    Ok((bytes, position))
}
