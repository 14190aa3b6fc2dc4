//! Pure: deterministic test data — HsuTestEvent records encoded by hand, and random
//! values for any Avro schema (through apache-avro, off the consumer's hot path).

use apache_avro::schema::Schema;
use apache_avro::types::Value;

use crate::decode::write_long;

/// The HsuTestEvent schema: users, events, amounts and millisecond timestamps.
pub const HSUTEST_SCHEMA: &str = r#"{"type":"record","name":"HsuTestEvent","fields":[{"name":"user","type":"string"},{"name":"event","type":"string"},{"name":"amount","type":"double"},{"name":"ts","type":"long"}]}"#;

/// Event names the generator draws from.
pub const EVENTS: &[&str] = &[
    "click",
    "view",
    "purchase",
    "add_to_cart",
    "login",
    "logout",
    "search",
    "share",
];

/// SplitMix64: a tiny deterministic generator (same seed → same records everywhere).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One HsuTestEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct HsuTestEvent {
    /// `user-0000` … `user-0999`.
    pub user: String,
    /// One of [`EVENTS`].
    pub event: &'static str,
    /// An amount with cents.
    pub amount: f64,
    /// Event time, epoch milliseconds.
    pub ts: i64,
}

/// Deterministic HsuTestEvents: record `i` of seed `s` is always the same.
#[derive(Debug, Clone)]
pub struct HsuTestGenerator {
    rng: Rng,
    base_ts: i64,
    n: i64,
}

impl HsuTestGenerator {
    /// Starts at 2026-01-01T00:00:00Z, one event per millisecond on average.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            base_ts: 1_767_225_600_000,
            n: 0,
        }
    }

    /// The next event.
    pub fn next_event(&mut self) -> HsuTestEvent {
        let user = format!("user-{:04}", self.rng.below(1000));
        let event = EVENTS[self.rng.below(EVENTS.len() as u64) as usize];
        let amount = self.rng.below(100_000) as f64 / 100.0;
        let ts = self.base_ts + self.n + self.rng.below(5) as i64;
        self.n += 1;
        HsuTestEvent {
            user,
            event,
            amount,
            ts,
        }
    }
}

impl HsuTestEvent {
    /// Appends the Avro binary body of this event.
    pub fn encode(&self, out: &mut Vec<u8>) {
        write_long(out, self.user.len() as i64);
        out.extend_from_slice(self.user.as_bytes());
        write_long(out, self.event.len() as i64);
        out.extend_from_slice(self.event.as_bytes());
        out.extend_from_slice(&self.amount.to_le_bytes());
        write_long(out, self.ts);
    }
}

/// The orders example's row schema (the seeds' orders ETL): an Avro record, what
/// `spillway produce --format json` writes as JSON.
pub const ORDERS_SCHEMA: &str = r#"{"type":"record","name":"Order","fields":[{"name":"order_id","type":"long"},{"name":"customer_id","type":"string"},{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},{"name":"status","type":"string"},{"name":"order_timestamp","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;

/// The same row schema as a JSON Schema (registered with `--encoding confluent`).
pub const ORDERS_JSON_SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"Order","type":"object","required":["order_id","customer_id","amount","status","order_timestamp"],"properties":{"order_id":{"type":"integer"},"customer_id":{"type":"string"},"amount":{"type":"number","format":"decimal","precision":10,"scale":2},"status":{"type":"string"},"order_timestamp":{"type":"string","format":"date-time"}}}"#;

/// Order statuses.
pub const ORDER_STATUSES: &[&str] = &["NEW", "PAID", "SHIPPED", "CANCELLED", "REFUNDED"];

/// Deterministic orders as JSON text: order `i` of seed `s` is always the same. Order ids
/// count from 1; amounts run from -20.00 to 979.99 (about 2 % not positive, which the
/// example drops); times start at 2025-12-28T00:00:00Z, 97 s apart on average, so a few
/// thousand orders cross a day, a month and a year.
#[derive(Debug, Clone)]
pub struct OrderGenerator {
    rng: Rng,
    n: i64,
    ts: i64,
}

impl OrderGenerator {
    /// The first order of `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            n: 0,
            ts: 1_766_880_000,
        }
    }

    /// Appends the next order's JSON text; returns its customer id (a key).
    pub fn next_json(&mut self, out: &mut Vec<u8>) -> String {
        use std::io::Write as _;
        self.n += 1;
        let customer = self.rng.below(5000);
        let cents = self.rng.below(100_000) as i64 - 2_000;
        let status = ORDER_STATUSES[self.rng.below(ORDER_STATUSES.len() as u64) as usize];
        self.ts += 47 + self.rng.below(100) as i64;
        let time = chrono::DateTime::from_timestamp(self.ts, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ");
        let sign = if cents < 0 { "-" } else { "" };
        let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
        let _ = write!(
            out,
            r#"{{"order_id":{},"customer_id":"cust-{customer:04}","amount":{sign}{whole}.{frac:02},"status":"{status}","order_timestamp":"{time}"}}"#,
            self.n
        );
        format!("cust-{customer:04}")
    }
}

/// Errors generating values for a schema.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// apache-avro refused the value (a bug in the generator for that schema).
    #[error("failed to encode a generated value: {0}")]
    Encode(String),
    /// A named reference the generator cannot follow.
    #[error("unsupported schema for generation: {0}")]
    Unsupported(String),
}

/// Random values for any schema, encoded as Avro bodies with apache-avro.
#[derive(Debug, Clone)]
pub struct ValueGenerator {
    schema: Schema,
    rng: Rng,
    named: std::collections::HashMap<String, Schema>,
}

impl ValueGenerator {
    /// A generator for `schema` with a seed.
    pub fn new(schema: Schema, seed: u64) -> Self {
        let mut named = std::collections::HashMap::new();
        collect_named(&schema, &mut named);
        Self {
            schema,
            rng: Rng::new(seed),
            named,
        }
    }

    /// The next value's Avro body.
    pub fn next_body(&mut self) -> Result<Vec<u8>, GenerateError> {
        let schema = self.schema.clone();
        let v = self.value(&schema, 0)?;
        apache_avro::to_avro_datum(&self.schema, v)
            .map_err(|e| GenerateError::Encode(e.to_string()))
    }

    fn value(&mut self, s: &Schema, depth: usize) -> Result<Value, GenerateError> {
        let r = &mut self.rng;
        Ok(match s {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Boolean(r.below(2) == 1),
            Schema::Int => Value::Int(r.below(2000) as i32 - 1000),
            Schema::Long => Value::Long(r.next_u64() as i64 >> 20),
            Schema::Float => Value::Float(r.below(10_000) as f32 / 8.0),
            Schema::Double => Value::Double(r.below(1_000_000) as f64 / 100.0),
            Schema::Bytes => Value::Bytes((0..r.below(8)).map(|i| i as u8).collect()),
            Schema::String => Value::String(format!("s-{}", r.below(10_000))),
            Schema::Uuid => {
                let (a, b) = (r.next_u64(), r.next_u64());
                Value::Uuid(uuid_from(a, b))
            }
            Schema::Date => Value::Date(20_000 + r.below(1000) as i32),
            Schema::TimeMillis => Value::TimeMillis(r.below(86_400_000) as i32),
            Schema::TimeMicros => Value::TimeMicros(r.below(86_400_000_000) as i64),
            Schema::TimestampMillis => {
                Value::TimestampMillis(1_767_225_600_000 + r.below(1 << 30) as i64)
            }
            Schema::TimestampMicros => {
                Value::TimestampMicros(1_767_225_600_000_000 + r.below(1 << 40) as i64)
            }
            Schema::TimestampNanos => {
                Value::TimestampNanos(1_767_225_600_000_000_000 + r.below(1 << 50) as i64)
            }
            Schema::LocalTimestampMillis => {
                Value::LocalTimestampMillis(1_767_225_600_000 + r.below(1 << 30) as i64)
            }
            Schema::LocalTimestampMicros => {
                Value::LocalTimestampMicros(1_767_225_600_000_000 + r.below(1 << 40) as i64)
            }
            Schema::LocalTimestampNanos => {
                Value::LocalTimestampNanos(1_767_225_600_000_000_000 + r.below(1 << 50) as i64)
            }
            Schema::Decimal(d) => {
                let digits = d.precision.min(18) as u32;
                let unscaled = (r.below(10u64.pow(digits.saturating_sub(1)).max(1)) as i64)
                    * if r.below(2) == 0 { 1 } else { -1 };
                let mut bytes = unscaled.to_be_bytes().to_vec();
                if let Schema::Fixed(f) = d.inner.as_ref() {
                    let fill = if unscaled < 0 { 0xff } else { 0 };
                    let mut v = vec![fill; f.size.saturating_sub(8)];
                    v.extend_from_slice(&bytes[8usize.saturating_sub(f.size)..]);
                    bytes = v;
                }
                Value::Decimal(apache_avro::Decimal::from(bytes))
            }
            Schema::Fixed(f) => {
                Value::Fixed(f.size, (0..f.size).map(|_| r.below(256) as u8).collect())
            }
            Schema::Enum(e) => {
                let i = r.below(e.symbols.len() as u64) as usize;
                Value::Enum(i as u32, e.symbols.get(i).cloned().unwrap_or_default())
            }
            Schema::Array(a) => {
                let n = if depth > 3 { 0 } else { r.below(4) };
                let items = a.items.as_ref().clone();
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(self.value(&items, depth + 1)?);
                }
                Value::Array(v)
            }
            Schema::Map(m) => {
                let n = if depth > 3 { 0 } else { r.below(4) };
                let types = m.types.as_ref().clone();
                let mut v = std::collections::HashMap::new();
                for i in 0..n {
                    v.insert(format!("k{i}"), self.value(&types, depth + 1)?);
                }
                Value::Map(v)
            }
            Schema::Union(u) => {
                let variants = u.variants();
                let i = if depth > 3 {
                    variants
                        .iter()
                        .position(|v| matches!(v, Schema::Null))
                        .unwrap_or(0)
                } else {
                    r.below(variants.len() as u64) as usize
                };
                let branch = variants.get(i).cloned().unwrap_or(Schema::Null);
                Value::Union(i as u32, Box::new(self.value(&branch, depth + 1)?))
            }
            Schema::Record(rec) => {
                let fields: Vec<(String, Schema)> = rec
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), f.schema.clone()))
                    .collect();
                let mut v = Vec::with_capacity(fields.len());
                for (name, schema) in fields {
                    v.push((name, self.value(&schema, depth + 1)?));
                }
                Value::Record(v)
            }
            Schema::Ref { name } => {
                let target = self
                    .named
                    .get(&name.fullname(None))
                    .cloned()
                    .ok_or_else(|| GenerateError::Unsupported(name.fullname(None)))?;
                if depth > 3 {
                    return Err(GenerateError::Unsupported(format!(
                        "recursion through {}",
                        name.fullname(None)
                    )));
                }
                self.value(&target, depth + 1)?
            }
            other => return Err(GenerateError::Unsupported(format!("{other:?}"))),
        })
    }
}

fn uuid_from(a: u64, b: u64) -> apache_avro::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    apache_avro::Uuid::from_bytes(bytes)
}

fn collect_named(s: &Schema, out: &mut std::collections::HashMap<String, Schema>) {
    match s {
        Schema::Record(r) => {
            out.insert(r.name.fullname(None), s.clone());
            for f in &r.fields {
                collect_named(&f.schema, out);
            }
        }
        Schema::Enum(e) => {
            out.insert(e.name.fullname(None), s.clone());
        }
        Schema::Fixed(f) => {
            out.insert(f.name.fullname(None), s.clone());
        }
        Schema::Array(a) => collect_named(&a.items, out),
        Schema::Map(m) => collect_named(&m.types, out),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_named(v, out)),
        Schema::Decimal(d) => collect_named(&d.inner, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parse_under_both_row_schemas_and_some_are_not_positive() {
        use crate::decode::{JsonDecoder, JsonMode, JsonPlan};
        let avro = JsonPlan::from_schema(ORDERS_SCHEMA).unwrap();
        let json = JsonPlan::from_schema(ORDERS_JSON_SCHEMA).unwrap();
        assert_eq!(avro.arrow_schema(), json.arrow_schema());
        let mut d = JsonDecoder::new(std::sync::Arc::new(json), JsonMode::FailFast);
        let mut g = OrderGenerator::new(7);
        let mut text = Vec::new();
        let mut not_positive = 0;
        for _ in 0..5000 {
            text.clear();
            g.next_json(&mut text);
            d.push(&text).unwrap();
            not_positive += usize::from(
                text.windows(10).any(|w| w == b"\"amount\":-")
                    || text.windows(13).any(|w| w == b"\"amount\":0.00"),
            );
        }
        let batch = d.finish().unwrap();
        assert_eq!(batch.num_rows(), 5000);
        assert!((50..200).contains(&not_positive), "{not_positive}");
        let again = {
            let mut t = Vec::new();
            OrderGenerator::new(7).next_json(&mut t);
            t
        };
        assert!(again.starts_with(br#"{"order_id":1,"#));
    }

    #[test]
    fn hsutest_is_deterministic_and_valid_avro() {
        let schema = Schema::parse_str(HSUTEST_SCHEMA).unwrap();
        let mut a = HsuTestGenerator::new(7);
        let mut b = HsuTestGenerator::new(7);
        for _ in 0..100 {
            let (x, y) = (a.next_event(), b.next_event());
            assert_eq!(x, y);
            let mut body = Vec::new();
            x.encode(&mut body);
            let v = apache_avro::from_avro_datum(&schema, &mut &body[..], None).unwrap();
            assert_eq!(
                v,
                Value::Record(vec![
                    ("user".into(), Value::String(x.user.clone())),
                    ("event".into(), Value::String(x.event.into())),
                    ("amount".into(), Value::Double(x.amount)),
                    ("ts".into(), Value::Long(x.ts)),
                ])
            );
        }
        assert_ne!(
            HsuTestGenerator::new(8).next_event(),
            HsuTestGenerator::new(7).next_event()
        );
    }

    #[test]
    fn random_values_round_trip_for_the_sample_schemas() {
        for file in ["orders.avsc", "movie_rating.avsc", "hsutest.avsc"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../config/schemas")
                .join(file);
            let schema = Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let mut g = ValueGenerator::new(schema.clone(), 1);
            for _ in 0..200 {
                let body = g.next_body().unwrap();
                apache_avro::from_avro_datum(&schema, &mut &body[..], None).unwrap();
            }
        }
    }
}
