//! The JSON decoder: one streaming parse per value straight into the column buffers.
//!
//! serde_json drives a visitor per column (`Slot`): no `Value` tree, no per-record
//! allocation (object keys are matched as borrowed text, numbers land in their vectors).
//! When a value turns out not to fit, every column is rolled back to the rows before it
//! (`Col::truncate`), as in the Avro decoder.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::i256;
use arrow_schema::{SchemaRef, TimeUnit};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::plan::{JsonOp, JsonPlan, JsonRecord};
use crate::DecodeError;
use crate::column::{Col, finish_record_root, push_offset};

/// What happens to a field whose value does not fit its type (Spark's `from_json` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonMode {
    /// The field is null (a required field that does not fit still fails the record).
    Permissive,
    /// The record fails: a bad record.
    FailFast,
}

/// Decodes JSON values of one row schema into record batches.
#[derive(Debug)]
pub struct JsonDecoder {
    plan: Arc<JsonPlan>,
    mode: JsonMode,
    root: Col,
    rows: usize,
}

impl JsonDecoder {
    pub fn new(plan: Arc<JsonPlan>, mode: JsonMode) -> Self {
        let root = Col::new(&plan.root_type);
        Self {
            plan,
            mode,
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

    /// Appends one JSON value (an object); on error nothing is appended.
    pub fn push(&mut self, body: &[u8]) -> Result<(), DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let slot = Slot {
            op: Root(&self.plan.root),
            col: &mut self.root,
            nullable: false,
            mode: self.mode,
            field: "$",
        };
        let result = slot.deserialize(&mut de).and_then(|()| de.end());
        match result {
            Ok(()) => {
                self.rows += 1;
                Ok(())
            }
            Err(e) => {
                self.root.truncate(self.rows);
                Err(DecodeError::Json {
                    reason: e.to_string(),
                })
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

/// The op of a slot: the row's record, or a column's type.
#[derive(Clone, Copy)]
enum OpRef<'a> {
    Root(&'a JsonRecord),
    Op(&'a JsonOp),
}
use OpRef::Root;

/// One value to read into one column.
struct Slot<'a> {
    op: OpRef<'a>,
    col: &'a mut Col,
    nullable: bool,
    mode: JsonMode,
    /// The field's name, for error messages.
    field: &'a str,
}

impl Slot<'_> {
    fn describe(&self) -> &'static str {
        match self.op {
            Root(_) => "an object",
            OpRef::Op(op) => op.describe(),
        }
    }

    /// A value of the wrong kind: null by `PERMISSIVE` where the column allows it, else
    /// the record fails.
    fn mismatch<E: de::Error>(self, found: &str) -> Result<(), E> {
        if self.mode == JsonMode::Permissive && self.nullable {
            self.col.push_null();
            return Ok(());
        }
        Err(E::custom(format_args!(
            "field {}: expected {}, found {found}",
            self.field,
            self.describe()
        )))
    }

    fn integer<E: de::Error>(self, v: i128) -> Result<(), E> {
        let OpRef::Op(op) = self.op else {
            return self.mismatch("a number");
        };
        let fits = match (op, &mut *self.col) {
            (JsonOp::Int | JsonOp::Date | JsonOp::TimeMillis, Col::I32(p)) => {
                i32::try_from(v).map(|v| p.push(v)).is_ok()
            }
            (JsonOp::Long | JsonOp::TimeMicros | JsonOp::Timestamp { .. }, Col::I64(p)) => {
                i64::try_from(v).map(|v| p.push(v)).is_ok()
            }
            (JsonOp::Float, Col::F32(p)) => {
                p.push(v as f32);
                true
            }
            (JsonOp::Double, Col::F64(p)) => {
                p.push(v as f64);
                true
            }
            (JsonOp::Decimal { scale, bound }, col) => i256::from_i128(10)
                .checked_pow(u32::try_from(*scale).unwrap_or(0))
                .and_then(|f| i256::from_i128(v).checked_mul(f))
                .is_some_and(|u| push_decimal(col, u, *bound)),
            (JsonOp::String, Col::Bytes(b)) => {
                let _ = write!(b.data, "{v}");
                b.end_value();
                true
            }
            _ => return self.mismatch("a number"),
        };
        if fits {
            Ok(())
        } else {
            self.mismatch("a number out of range")
        }
    }

    fn text<E: de::Error>(self, v: &str) -> Result<(), E> {
        let OpRef::Op(op) = self.op else {
            return self.mismatch("a string");
        };
        let fits = match (op, &mut *self.col) {
            (JsonOp::String, Col::Bytes(b)) => {
                b.push(v.as_bytes());
                true
            }
            (JsonOp::Uuid, Col::Bytes(b)) => push_uuid(b, v),
            (JsonOp::Enum(symbols), Col::Bytes(b)) => {
                let known = symbols.iter().any(|s| &**s == v);
                if known {
                    b.push(v.as_bytes());
                }
                known
            }
            (JsonOp::Bytes, Col::Bytes(b)) => {
                let at = b.data.len();
                match base64::engine::general_purpose::STANDARD.decode_vec(v, &mut b.data) {
                    Ok(()) => {
                        b.end_value();
                        true
                    }
                    Err(_) => {
                        b.data.truncate(at);
                        false
                    }
                }
            }
            (JsonOp::Fixed(size), Col::Fixed { data, nulls, .. }) => {
                let at = data.len();
                let ok = base64::engine::general_purpose::STANDARD
                    .decode_vec(v, data)
                    .is_ok()
                    && data.len() - at == *size;
                if ok {
                    nulls.append_non_null();
                } else {
                    data.truncate(at);
                }
                ok
            }
            (JsonOp::Float, Col::F32(p)) => special_float(v).map(|f| p.push(f as f32)).is_some(),
            (JsonOp::Double, Col::F64(p)) => special_float(v).map(|f| p.push(f)).is_some(),
            (JsonOp::Decimal { scale, bound }, col) => {
                unscaled(v, *scale).is_some_and(|u| push_decimal(col, u, *bound))
            }
            (JsonOp::Date, Col::I32(p)) => date(v).map(|d| p.push(d)).is_some(),
            (JsonOp::TimeMillis, Col::I32(p)) => time_nanos(v)
                .and_then(|n| i32::try_from(n / 1_000_000).ok())
                .map(|t| p.push(t))
                .is_some(),
            (JsonOp::TimeMicros, Col::I64(p)) => time_nanos(v).map(|n| p.push(n / 1_000)).is_some(),
            (JsonOp::Timestamp { unit, utc }, Col::I64(p)) => {
                timestamp(v, *unit, *utc).map(|t| p.push(t)).is_some()
            }
            _ => return self.mismatch("a string"),
        };
        if fits {
            Ok(())
        } else {
            self.mismatch("text that does not parse as the type")
        }
    }
}

impl<'de> DeserializeSeed<'de> for Slot<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Slot<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.nullable {
            self.col.push_null();
            Ok(())
        } else {
            Err(E::custom(format_args!(
                "field {}: null in a field that is not nullable",
                self.field
            )))
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match (self.op, &mut *self.col) {
            (OpRef::Op(JsonOp::Bool), Col::Bool { values, nulls }) => {
                values.append(v);
                nulls.append_non_null();
                Ok(())
            }
            (OpRef::Op(JsonOp::String), Col::Bytes(b)) => {
                b.push(if v { b"true" } else { b"false" });
                Ok(())
            }
            _ => self.mismatch("a boolean"),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.integer(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.integer(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match (self.op, &mut *self.col) {
            (OpRef::Op(JsonOp::Float), Col::F32(p)) => p.push(v as f32),
            (OpRef::Op(JsonOp::Double), Col::F64(p)) => p.push(v),
            (OpRef::Op(JsonOp::String), Col::Bytes(b)) => {
                let _ = write!(b.data, "{v}");
                b.end_value();
            }
            (OpRef::Op(JsonOp::Decimal { scale, bound }), _) => {
                // the shortest text that reads back as this double, then exact decimal
                // arithmetic on it: 0.1 is 0.1, not 0.1000000000000000055…
                let mut buf = [0u8; 40];
                let mut w = &mut buf[..];
                let ok = write!(w, "{v:e}").is_ok();
                let n = 40 - w.len();
                let fits = ok
                    && std::str::from_utf8(&buf[..n])
                        .ok()
                        .and_then(|t| unscaled(t, *scale))
                        .is_some_and(|u| push_decimal(self.col, u, *bound));
                if !fits {
                    return self.mismatch("a number out of range");
                }
            }
            _ => return self.mismatch("a fractional number"),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.text(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (
            OpRef::Op(JsonOp::Array { item, nullable }),
            Col::List {
                offsets,
                child,
                nulls,
            },
        ) = (self.op, &mut *self.col)
        else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return self.mismatch("an array");
        };
        while seq
            .next_element_seed(Slot {
                op: OpRef::Op(item),
                col: child,
                nullable: *nullable,
                mode: self.mode,
                field: self.field,
            })?
            .is_some()
        {}
        push_offset(offsets, child.len());
        nulls.append_non_null();
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mode = self.mode;
        let field = self.field;
        match (self.op, &mut *self.col) {
            (Root(rec), Col::Struct { children, nulls }) => {
                object(rec, children, mode, &mut map)?;
                nulls.append_non_null();
            }
            (OpRef::Op(JsonOp::Record(rec)), Col::Struct { children, nulls }) => {
                object(rec, children, mode, &mut map)?;
                nulls.append_non_null();
            }
            (
                OpRef::Op(JsonOp::Map { value, nullable }),
                Col::Map {
                    offsets,
                    keys,
                    values,
                    nulls,
                },
            ) => {
                while map.next_key_seed(MapKey(keys))?.is_some() {
                    map.next_value_seed(Slot {
                        op: OpRef::Op(value),
                        col: values,
                        nullable: *nullable,
                        mode,
                        field,
                    })?;
                }
                push_offset(offsets, keys.len());
                nulls.append_non_null();
            }
            _ => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return self.mismatch("an object");
            }
        }
        Ok(())
    }
}

/// Which fields of an object were given (a bit per field).
enum Seen {
    Few(u64),
    Many(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Self {
        if n <= 64 {
            Seen::Few(0)
        } else {
            Seen::Many(vec![false; n])
        }
    }

    /// Marks field `i`; false when it was already given (a repeated key: the first counts).
    fn mark(&mut self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => {
                let bit = 1u64 << i;
                let fresh = *bits & bit == 0;
                *bits |= bit;
                fresh
            }
            Seen::Many(v) => v.get_mut(i).is_some_and(|s| !std::mem::replace(s, true)),
        }
    }

    fn has(&self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => bits & (1u64 << i) != 0,
            Seen::Many(v) => v.get(i).copied().unwrap_or(false),
        }
    }
}

/// Reads an object's keys into the record's columns: unknown keys are ignored, absent
/// fields take their default, else null, else the record fails.
fn object<'de, A: MapAccess<'de>>(
    rec: &JsonRecord,
    children: &mut [Col],
    mode: JsonMode,
    map: &mut A,
) -> Result<(), A::Error> {
    let mut seen = Seen::new(rec.fields.len());
    let mut next = 0;
    while let Some(key) = map.next_key_seed(FieldKey(rec, next))? {
        match key {
            Some(i) if seen.mark(i) => {
                next = i + 1;
                let (Some(f), Some(col)) = (rec.fields.get(i), children.get_mut(i)) else {
                    return Err(de::Error::custom("internal error: plan and columns differ"));
                };
                map.next_value_seed(Slot {
                    op: OpRef::Op(&f.op),
                    col,
                    nullable: f.nullable,
                    mode,
                    field: &f.name,
                })?;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    for (i, (f, col)) in rec.fields.iter().zip(children.iter_mut()).enumerate() {
        if seen.has(i) {
            continue;
        }
        let slot = Slot {
            op: OpRef::Op(&f.op),
            col,
            nullable: f.nullable,
            mode,
            field: &f.name,
        };
        match &f.default {
            Some(d) => slot.deserialize(d).map_err(de::Error::custom)?,
            None if f.nullable => slot.col.push_null(),
            None => {
                return Err(de::Error::custom(format_args!(
                    "missing field {} (not nullable, no default)",
                    f.name
                )));
            }
        }
    }
    Ok(())
}

/// An object key: the index of its field, `None` for a key the schema does not have. The
/// index after the last key's is tried first (producers mostly keep the schema's order).
struct FieldKey<'a>(&'a JsonRecord, usize);

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        if self.0.fields.get(self.1).is_some_and(|f| *f.name == *v) {
            return Ok(Some(self.1));
        }
        Ok(self.0.index.get(v).copied())
    }
}

/// A map key, appended to the map's key column.
struct MapKey<'a>(&'a mut crate::column::ByteCol);

impl<'de> DeserializeSeed<'de> for MapKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MapKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(v.as_bytes());
        Ok(())
    }
}

/// `NaN`, `Infinity`, `-Infinity` (Spark's `allowNonNumericNumbers`).
fn special_float(v: &str) -> Option<f64> {
    match v {
        "NaN" => Some(f64::NAN),
        "Infinity" | "+Infinity" | "+INF" | "INF" => Some(f64::INFINITY),
        "-Infinity" | "-INF" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Appends a decimal's unscaled value when it is within its precision.
fn push_decimal(col: &mut Col, unscaled: i256, bound: i256) -> bool {
    let within = unscaled.checked_abs().is_some_and(|a| a < bound);
    match col {
        Col::D128(p) if within => unscaled.to_i128().map(|v| p.push(v)).is_some(),
        Col::D256(p) if within => {
            p.push(unscaled);
            true
        }
        _ => false,
    }
}

/// The unscaled value of decimal text (sign, digits, optional fraction and exponent) at
/// `scale`, digits beyond the scale rounded half up (as Spark does); `None` when malformed.
pub(crate) fn unscaled(text: &str, scale: i8) -> Option<i256> {
    let (neg, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = || int.bytes().chain(frac.bytes());
    if int.is_empty() && frac.is_empty() || !digits().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !(-400..=400).contains(&exp) {
        return None;
    }
    let len = int.len() + frac.len();
    // value = digits × 10^shift at the target scale
    let shift = exp - i32::try_from(frac.len()).ok()? + i32::from(scale);
    let keep = if shift >= 0 {
        len
    } else {
        len.saturating_sub(usize::try_from(-shift).ok()?)
    };
    // the first dropped digit rounds (when all digits drop with a gap, it is a 0)
    let round_up = shift < 0
        && keep < len
        && usize::try_from(-shift).is_ok_and(|dropped| dropped <= len)
        && digits().nth(keep).is_some_and(|d| d >= b'5');
    // most values fit 38 digits: i128 arithmetic, i256 only past it
    let narrow = || -> Option<i128> {
        let mut acc = 0i128;
        for d in digits().take(keep) {
            acc = acc.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
        }
        if shift > 0 {
            acc = acc.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
        }
        acc.checked_add(i128::from(round_up))
    };
    let acc = match narrow() {
        Some(a) => i256::from_i128(a),
        None => {
            let ten = i256::from_i128(10);
            let mut acc = i256::ZERO;
            for d in digits().take(keep) {
                acc = acc
                    .checked_mul(ten)?
                    .checked_add(i256::from_i128(i128::from(d - b'0')))?;
            }
            if shift > 0 {
                acc = acc.checked_mul(ten.checked_pow(u32::try_from(shift).ok()?)?)?;
            }
            if round_up {
                acc = acc.checked_add(i256::ONE)?;
            }
            acc
        }
    };
    if neg { acc.checked_neg() } else { Some(acc) }
}

/// Canonical lowercase hyphenated uuid text.
fn push_uuid(b: &mut crate::column::ByteCol, v: &str) -> bool {
    let bytes = v.as_bytes();
    let ok = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        b.data.extend(bytes.iter().map(u8::to_ascii_lowercase));
        b.end_value();
    }
    ok
}

const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f…]Z` (or `+00:00`), read without chrono's
/// general parser, as nanoseconds since the epoch; `None` for anything else (chrono then
/// decides). The same instant either way (tested against chrono).
pub(super) fn utc_rfc3339_nanos(b: &[u8]) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    if b.len() < 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let mut pos = 19;
    let mut frac = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let n = pos - start;
        if n == 0 || n > 9 {
            return None;
        }
        frac = digits(start..pos)? * 10i64.pow(u32::try_from(9 - n).ok()?);
    }
    match b.get(pos..)? {
        b"Z" | b"z" | b"+00:00" => {}
        _ => return None,
    }
    // days from civil (Howard Hinnant's algorithm)
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn date(v: &str) -> Option<i32> {
    use chrono::Datelike as _;
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .map(|d| d.num_days_from_ce() - EPOCH_DAYS_FROM_CE)
}

fn time_nanos(v: &str) -> Option<i64> {
    let t = NaiveTime::parse_from_str(v, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(v, "%H:%M"))
        .ok()?;
    Some(i64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + i64::from(t.nanosecond()))
}

/// RFC 3339 / ISO 8601 text as a count of `unit` since the epoch; text without an offset
/// is UTC (a local timestamp keeps the wall clock as written).
fn timestamp(v: &str, unit: TimeUnit, utc: bool) -> Option<i64> {
    if let Some(nanos) = utc_rfc3339_nanos(v.as_bytes()) {
        return Some(match unit {
            TimeUnit::Second => nanos.div_euclid(1_000_000_000),
            TimeUnit::Millisecond => nanos.div_euclid(1_000_000),
            TimeUnit::Microsecond => nanos.div_euclid(1_000),
            TimeUnit::Nanosecond => nanos,
        });
    }
    let naive = match DateTime::parse_from_rfc3339(v) {
        Ok(t) if utc => t.naive_utc(),
        Ok(t) => t.naive_local(),
        Err(_) => NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f"))
            .or_else(|_| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN))
            })
            .ok()?,
    };
    let t = naive.and_utc();
    match unit {
        TimeUnit::Second => Some(t.timestamp()),
        TimeUnit::Millisecond => Some(t.timestamp_millis()),
        TimeUnit::Microsecond => Some(t.timestamp_micros()),
        TimeUnit::Nanosecond => t.timestamp_nanos_opt(),
    }
}
