//! Pure: protobuf wire format → Arrow columns, one message at a time, no `DynamicMessage`.
//!
//! A message is read in two passes over its bytes. The first records where each known
//! field occurs (unknown fields are skipped by wire type); the occurrences are then sorted
//! by field (stably, so their wire order stays) and each field's column takes its values:
//! the last occurrence of a singular scalar wins, repeated values concatenate (packed or
//! not), and the occurrences of a singular message merge — what protobuf's parsers do.
//! The occurrence lists are reused per nesting depth, so a steady stream allocates nothing
//! per record.

use std::io::Write as _;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::types::IntervalMonthDayNano;
use arrow_schema::SchemaRef;

use super::plan::{Default, ProtoField, ProtoMessage, ProtoOp, ProtoPlan, Scalar, Shape};
use crate::DecodeError;
use crate::column::{ByteCol, Col, finish_record_root, push_offset};

/// Nesting deeper than this (messages, or groups being skipped) fails the record.
const MAX_DEPTH: usize = 100;

/// Decodes protobuf message bodies of one message type into record batches.
#[derive(Debug)]
pub struct ProtoDecoder {
    plan: Arc<ProtoPlan>,
    root: Col,
    rows: usize,
    scratch: Vec<Vec<Occ>>,
}

/// One occurrence of a known field: varint and fixed values are kept decoded; for
/// length-delimited ones `val` is the start and `len` the length.
#[derive(Debug, Clone, Copy)]
struct Occ {
    field: u16,
    wt: u8,
    len: u32,
    val: u64,
}

type Res<T = ()> = Result<T, String>;

impl ProtoDecoder {
    pub fn new(plan: Arc<ProtoPlan>) -> Self {
        let root = Col::new(&plan.root_type);
        Self {
            plan,
            root,
            rows: 0,
            scratch: Vec::new(),
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

    /// Appends one message body; on error nothing is appended.
    pub fn push(&mut self, body: &[u8]) -> Result<(), DecodeError> {
        let plan = &*self.plan;
        let whole = [Occ {
            field: 0,
            wt: 2,
            len: u32::try_from(body.len()).unwrap_or(u32::MAX),
            val: 0,
        }];
        let result = match &mut self.root {
            Col::Struct { children, nulls } => {
                let mut cx = Cx {
                    body,
                    scratch: &mut self.scratch,
                };
                cx.message(&plan.root, children, &whole, 0).map(|()| {
                    nulls.append_non_null();
                })
            }
            _ => Err("internal error: the root column is not a struct".to_string()),
        };
        match result {
            Ok(()) => {
                self.rows += 1;
                Ok(())
            }
            Err(reason) => {
                self.root.truncate(self.rows);
                Err(DecodeError::Protobuf { reason })
            }
        }
    }

    /// Returns the rows pushed since the last call as a batch and starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        let rows = std::mem::take(&mut self.rows);
        let schema = self.schema();
        finish_record_root(&mut self.root, &self.plan.root_type, schema, rows)
    }
}

/// The body being decoded and the reusable occurrence lists.
struct Cx<'a> {
    body: &'a [u8],
    scratch: &'a mut Vec<Vec<Occ>>,
}

impl Cx<'_> {
    /// The bytes of a length-delimited occurrence.
    fn bytes(&self, o: &Occ) -> Res<&[u8]> {
        let start = usize::try_from(o.val).map_err(|_| "offset out of range".to_string())?;
        let end = start
            .checked_add(o.len as usize)
            .ok_or_else(|| "length out of range".to_string())?;
        self.body
            .get(start..end)
            .ok_or_else(|| format!("truncated: {} bytes at byte {start}", o.len))
    }

    /// Decodes the merged occurrences `parts` (each length-delimited) of one message into
    /// the columns of its fields.
    fn message(
        &mut self,
        msg: &ProtoMessage,
        cols: &mut [Col],
        parts: &[Occ],
        depth: usize,
    ) -> Res {
        if depth >= MAX_DEPTH {
            return Err("messages nested too deep".into());
        }
        if self.scratch.len() <= depth {
            self.scratch.resize_with(depth + 1, Vec::new);
        }
        let mut occ = self
            .scratch
            .get_mut(depth)
            .map(std::mem::take)
            .unwrap_or_default();
        occ.clear();
        let result = self.scan_all(msg, parts, &mut occ, depth).and_then(|()| {
            occ.sort_by_key(|o| o.field);
            let mut rest = occ.as_slice();
            for (i, (f, col)) in msg.fields.iter().zip(cols.iter_mut()).enumerate() {
                let n = rest
                    .iter()
                    .position(|o| usize::from(o.field) != i)
                    .unwrap_or(rest.len());
                let (mine, tail) = rest.split_at(n);
                rest = tail;
                self.field(f, col, mine, depth)
                    .map_err(|e| format!("{}: {e}", f.name))?;
            }
            Ok(())
        });
        if let Some(slot) = self.scratch.get_mut(depth) {
            *slot = occ;
        }
        result
    }

    fn scan_all(&self, msg: &ProtoMessage, parts: &[Occ], occ: &mut Vec<Occ>, depth: usize) -> Res {
        for p in parts {
            if p.wt != 2 {
                return Err(format!("wire type {}, expected 2 (a message)", p.wt));
            }
            let start = usize::try_from(p.val).map_err(|_| "offset out of range".to_string())?;
            let end = start.saturating_add(p.len as usize);
            if end > self.body.len() {
                return Err(format!("truncated: {} bytes at byte {start}", p.len));
            }
            scan(self.body, start, end, depth, &mut |number, wt, len, val| {
                if let Some(i) = msg.index_of(number) {
                    occ.push(Occ {
                        field: u16::try_from(i).unwrap_or(u16::MAX),
                        wt,
                        len,
                        val,
                    });
                }
            })?;
        }
        Ok(())
    }

    /// Appends one field's value (from its occurrences) to its column.
    fn field(&mut self, f: &ProtoField, col: &mut Col, occs: &[Occ], depth: usize) -> Res {
        match &f.shape {
            Shape::Single { presence, default } => {
                self.single(&f.op, col, occs, *presence, Some(default), depth)
            }
            Shape::List => {
                let Col::List {
                    offsets,
                    child,
                    nulls,
                } = col
                else {
                    return Err(plan_mismatch());
                };
                for o in occs {
                    self.element(&f.op, child, o, depth)?;
                }
                push_offset(offsets, child.len());
                nulls.append_non_null();
                Ok(())
            }
            Shape::Map { key } => {
                let Col::Map {
                    offsets,
                    keys,
                    values,
                    nulls,
                } = col
                else {
                    return Err(plan_mismatch());
                };
                for o in occs {
                    self.entry(f, *key, (keys, values), o, depth)?;
                }
                push_offset(offsets, keys.len());
                nulls.append_non_null();
                Ok(())
            }
        }
    }

    /// A singular value: the last occurrence (messages: all of them, merged); absent is
    /// null with presence, else the default.
    fn single(
        &mut self,
        op: &ProtoOp,
        col: &mut Col,
        occs: &[Occ],
        presence: bool,
        default: Option<&Default>,
        depth: usize,
    ) -> Res {
        let Some(last) = occs.last() else {
            return match default {
                Some(d) if !presence => push_default(op, col, d),
                _ => {
                    col.push_null();
                    Ok(())
                }
            };
        };
        match op {
            ProtoOp::Scalar(s) => {
                let v = self.scalar(*s, last)?;
                push_scalar(col, v)
            }
            ProtoOp::Enum(symbols) => push_enum(col, symbols, enum_number(last)?),
            ProtoOp::Message(m) => {
                let Col::Struct { children, nulls } = col else {
                    return Err(plan_mismatch());
                };
                self.message(m, children, occs, depth + 1)?;
                nulls.append_non_null();
                Ok(())
            }
            ProtoOp::Timestamp | ProtoOp::Duration | ProtoOp::Wrapper(_) => {
                self.well_known(op, col, occs)
            }
        }
    }

    /// One occurrence of a repeated field: one element, or a packed run of scalars.
    fn element(&mut self, op: &ProtoOp, child: &mut Col, o: &Occ, depth: usize) -> Res {
        let packed_wire = match op {
            ProtoOp::Scalar(s) if s.wire_type() != 2 => Some(s.wire_type()),
            ProtoOp::Enum(_) => Some(0),
            _ => None,
        };
        if let (Some(wt), 2) = (packed_wire, o.wt) {
            let bytes = self.bytes(o)?;
            let mut pos = 0;
            while pos < bytes.len() {
                let (val, len) = read_value(bytes, &mut pos, wt)?;
                let one = Occ {
                    field: o.field,
                    wt,
                    len,
                    val,
                };
                match op {
                    ProtoOp::Enum(symbols) => push_enum(child, symbols, enum_number(&one)?)?,
                    ProtoOp::Scalar(s) => {
                        let v = self.scalar(*s, &one)?;
                        push_scalar(child, v)?;
                    }
                    _ => return Err(plan_mismatch()),
                }
            }
            return Ok(());
        }
        self.single(op, child, std::slice::from_ref(o), false, None, depth)
    }

    /// One map entry: key (field 1) and value (field 2), each absent one its default.
    fn entry(
        &mut self,
        f: &ProtoField,
        key: Scalar,
        (keys, values): (&mut ByteCol, &mut Col),
        o: &Occ,
        depth: usize,
    ) -> Res {
        let (op, value_default) = (&f.op, f.map_value_default.as_ref());
        if o.wt != 2 {
            return Err(format!("wire type {}, expected 2 (a map entry)", o.wt));
        }
        let d = depth + 1;
        if self.scratch.len() <= d {
            self.scratch.resize_with(d + 1, Vec::new);
        }
        let mut occ = self
            .scratch
            .get_mut(d)
            .map(std::mem::take)
            .unwrap_or_default();
        occ.clear();
        let start = usize::try_from(o.val).map_err(|_| "offset out of range".to_string())?;
        let end = start.saturating_add(o.len as usize);
        let result = scan(self.body, start, end, d, &mut |number, wt, len, val| {
            if number == 1 || number == 2 {
                occ.push(Occ {
                    field: u16::try_from(number).unwrap_or(0),
                    wt,
                    len,
                    val,
                });
            }
        })
        .and_then(|()| {
            occ.sort_by_key(|o| o.field);
            let split = occ.iter().position(|o| o.field == 2).unwrap_or(occ.len());
            let (k, v) = occ.split_at(split);
            match k.last() {
                Some(k) => {
                    let v = self.scalar(key, k)?;
                    push_key(keys, v);
                }
                None => push_key(keys, key_default(key)),
            }
            let presence = value_default.is_none();
            self.single(op, values, v, presence, value_default, d)
        });
        if let Some(slot) = self.scratch.get_mut(d) {
            *slot = occ;
        }
        result
    }

    /// Timestamp, Duration and the wrappers: small messages read in place.
    fn well_known(&self, op: &ProtoOp, col: &mut Col, occs: &[Occ]) -> Res {
        let (mut one, mut two): (Option<Occ>, Option<Occ>) = (None, None);
        for o in occs {
            if o.wt != 2 {
                return Err(format!("wire type {}, expected 2 (a message)", o.wt));
            }
            let start = usize::try_from(o.val).map_err(|_| "offset out of range".to_string())?;
            let end = start.saturating_add(o.len as usize);
            scan(self.body, start, end, 0, &mut |number, wt, len, val| {
                let occ = Some(Occ {
                    field: 0,
                    wt,
                    len,
                    val,
                });
                match number {
                    1 => one = occ,
                    2 => two = occ,
                    _ => {}
                }
            })?;
        }
        let varint = |o: Option<Occ>| -> Res<i64> {
            match o {
                None => Ok(0),
                Some(o) if o.wt == 0 => Ok(o.val as i64),
                Some(o) => Err(format!("wire type {}, expected 0", o.wt)),
            }
        };
        match (op, col) {
            (ProtoOp::Timestamp, Col::I64(p)) => {
                let (secs, nanos) = (varint(one)?, i64::from(varint(two)? as i32));
                let micros = secs
                    .checked_mul(1_000_000)
                    .and_then(|m| m.checked_add(nanos.div_euclid(1_000)))
                    .ok_or_else(|| format!("timestamp {secs} s out of range"))?;
                p.push(micros);
                Ok(())
            }
            (ProtoOp::Duration, Col::Interval(p)) => {
                let (secs, nanos) = (varint(one)?, i64::from(varint(two)? as i32));
                let total = secs
                    .checked_mul(1_000_000_000)
                    .and_then(|n| n.checked_add(nanos))
                    .ok_or_else(|| format!("duration {secs} s out of range"))?;
                p.push(IntervalMonthDayNano::new(0, 0, total));
                Ok(())
            }
            (ProtoOp::Wrapper(s), col) => {
                let v = match one {
                    Some(o) => self.scalar(*s, &o)?,
                    None => key_default(*s),
                };
                push_scalar(col, v)
            }
            _ => Err(plan_mismatch()),
        }
    }

    /// One scalar value from its occurrence, checked against its wire type.
    fn scalar(&self, s: Scalar, o: &Occ) -> Res<V<'_>> {
        if o.wt != s.wire_type() {
            return Err(format!(
                "wire type {}, expected {} for {s:?}",
                o.wt,
                s.wire_type()
            ));
        }
        let v = o.val;
        Ok(match s {
            Scalar::Int32 => V::I64(i64::from(v as i32)),
            Scalar::Int64 | Scalar::SFixed64 => V::I64(v as i64),
            Scalar::SInt32 => V::I64(i64::from(((v as u32) >> 1) as i32 ^ -((v & 1) as i32))),
            Scalar::SInt64 => V::I64((v >> 1) as i64 ^ -((v & 1) as i64)),
            Scalar::UInt32 | Scalar::Fixed32 => V::I64(i64::from(v as u32)),
            Scalar::SFixed32 => V::I64(i64::from(v as u32 as i32)),
            Scalar::UInt64 | Scalar::Fixed64 => V::U64(v),
            Scalar::Float => V::F64(f64::from(f32::from_bits(v as u32))),
            Scalar::Double => V::F64(f64::from_bits(v)),
            Scalar::Bool => V::Bool(v != 0),
            Scalar::String => {
                let b = self.bytes(o)?;
                std::str::from_utf8(b).map_err(|_| "invalid UTF-8 in a string".to_string())?;
                V::Bytes(b)
            }
            Scalar::Bytes => V::Bytes(self.bytes(o)?),
        })
    }
}

/// A scalar value on its way into a column.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Bytes(&'a [u8]),
}

fn plan_mismatch() -> String {
    "internal error: decode plan does not match its columns".into()
}

fn push_scalar(col: &mut Col, v: V<'_>) -> Res {
    match (col, v) {
        (Col::I32(p), V::I64(x)) => p.push(x as i32),
        (Col::I64(p), V::I64(x)) => p.push(x),
        (Col::I64(p), V::U64(x)) => p.push(x as i64),
        (Col::D128(p), V::U64(x)) => p.push(i128::from(x)),
        (Col::D128(p), V::I64(x)) => p.push(i128::from(x)),
        (Col::F32(p), V::F64(x)) => p.push(x as f32),
        (Col::F64(p), V::F64(x)) => p.push(x),
        (Col::Bool { values, nulls }, V::Bool(b)) => {
            values.append(b);
            nulls.append_non_null();
        }
        (Col::Bytes(b), V::Bytes(x)) => b.push(x),
        _ => return Err(plan_mismatch()),
    }
    Ok(())
}

fn push_default(op: &ProtoOp, col: &mut Col, d: &Default) -> Res {
    if let ProtoOp::Enum(symbols) = op {
        let Default::Enum(n) = d else {
            return push_enum(col, symbols, 0);
        };
        return push_enum(col, symbols, *n);
    }
    let v = match d {
        Default::I64(x) => V::I64(*x),
        Default::U64(x) => V::U64(*x),
        Default::F64(x) => V::F64(*x),
        Default::Bool(b) => V::Bool(*b),
        Default::Bytes(b) => V::Bytes(b),
        Default::Enum(n) => V::I64(i64::from(*n)),
    };
    push_scalar(col, v)
}

fn enum_number(o: &Occ) -> Res<i32> {
    if o.wt != 0 {
        return Err(format!("wire type {}, expected 0 for an enum", o.wt));
    }
    Ok(o.val as i32)
}

fn push_enum(col: &mut Col, symbols: &[(i32, Box<str>)], n: i32) -> Res {
    let Col::Bytes(b) = col else {
        return Err(plan_mismatch());
    };
    match symbols.iter().find(|(k, _)| *k == n) {
        Some((_, name)) => b.push(name.as_bytes()),
        None => {
            let _ = write!(b.data, "{n}");
            b.end_value();
        }
    }
    Ok(())
}

fn key_default(s: Scalar) -> V<'static> {
    match s {
        Scalar::String | Scalar::Bytes => V::Bytes(&[]),
        Scalar::Bool => V::Bool(false),
        Scalar::Float | Scalar::Double => V::F64(0.0),
        Scalar::UInt64 | Scalar::Fixed64 => V::U64(0),
        _ => V::I64(0),
    }
}

/// Map keys are text: integers as their digits, booleans as `true`/`false`.
fn push_key(keys: &mut ByteCol, v: V<'_>) {
    match v {
        V::Bytes(b) => keys.push(b),
        V::I64(x) => {
            let _ = write!(keys.data, "{x}");
            keys.end_value();
        }
        V::U64(x) => {
            let _ = write!(keys.data, "{x}");
            keys.end_value();
        }
        V::Bool(b) => keys.push(if b { b"true" } else { b"false" }),
        V::F64(x) => {
            let _ = write!(keys.data, "{x}");
            keys.end_value();
        }
    }
}

#[inline]
fn varint(b: &[u8], pos: &mut usize) -> Res<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b
            .get(*pos)
            .ok_or_else(|| format!("truncated varint at byte {}", *pos))?;
        *pos += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(format!("invalid varint ending at byte {}", *pos))
}

/// Reads one value of wire type `wt` at `pos`: (value or start, length).
#[inline]
fn read_value(b: &[u8], pos: &mut usize, wt: u8) -> Res<(u64, u32)> {
    match wt {
        0 => Ok((varint(b, pos)?, 0)),
        1 => {
            let bytes: [u8; 8] = b
                .get(*pos..*pos + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| format!("truncated fixed64 at byte {}", *pos))?;
            *pos += 8;
            Ok((u64::from_le_bytes(bytes), 0))
        }
        5 => {
            let bytes: [u8; 4] = b
                .get(*pos..*pos + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| format!("truncated fixed32 at byte {}", *pos))?;
            *pos += 4;
            Ok((u64::from(u32::from_le_bytes(bytes)), 0))
        }
        2 => {
            let len = varint(b, pos)?;
            let len = u32::try_from(len).map_err(|_| format!("length {len} too large"))?;
            let start = *pos;
            let end = start
                .checked_add(len as usize)
                .filter(|e| *e <= b.len())
                .ok_or_else(|| format!("truncated: {len} bytes at byte {start}"))?;
            *pos = end;
            Ok((start as u64, len))
        }
        other => Err(format!("wire type {other} where a value was expected")),
    }
}

/// Walks the fields of `b[start..end]`, calling `each(number, wire type, len, value)` for
/// every field; groups (wire types 3/4) are skipped with their contents.
fn scan(
    b: &[u8],
    start: usize,
    end: usize,
    depth: usize,
    each: &mut dyn FnMut(u32, u8, u32, u64),
) -> Res {
    let b = b
        .get(..end)
        .ok_or_else(|| format!("truncated: message ends past byte {}", b.len()))?;
    let mut pos = start;
    while pos < end {
        let key = varint(b, &mut pos)?;
        let number = u32::try_from(key >> 3)
            .map_err(|_| format!("field number {} out of range", key >> 3))?;
        let wt = (key & 7) as u8;
        if number == 0 {
            return Err(format!("field number 0 at byte {pos}"));
        }
        match wt {
            3 => skip_group(b, &mut pos, number, depth + 1)?,
            4 => return Err(format!("unexpected end of group {number} at byte {pos}")),
            _ => {
                let (val, len) = read_value(b, &mut pos, wt)?;
                each(number, wt, len, val);
            }
        }
    }
    Ok(())
}

fn skip_group(b: &[u8], pos: &mut usize, number: u32, depth: usize) -> Res {
    if depth >= MAX_DEPTH {
        return Err("groups nested too deep".into());
    }
    while *pos < b.len() {
        let key = varint(b, pos)?;
        let (n, wt) = (key >> 3, (key & 7) as u8);
        match wt {
            3 => skip_group(b, pos, u32::try_from(n).unwrap_or(0), depth + 1)?,
            4 if n == u64::from(number) => return Ok(()),
            4 => return Err(format!("end of group {n} inside group {number}")),
            _ => {
                read_value(b, pos, wt)?;
            }
        }
    }
    Err(format!("group {number} is not closed"))
}
