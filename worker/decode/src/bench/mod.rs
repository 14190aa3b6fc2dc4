//! Library side of `spillway bench decode`: times our decoders against peers on the same payloads.
//!
//! Avro (this file): our decoder against apache-avro. JSON ([`json`]): ours against
//! arrow-json and serde_json. Protobuf ([`protobuf`]): ours against prost-reflect.
//!
//! Payloads are generated deterministically from a seed (written with apache-avro, not
//! timed), then decoded by [`AvroDecoder`] in batches of [`BATCH_ROWS`] and by
//! `apache_avro::from_avro_datum` into `Value`s, in the same run. Each side runs
//! [`ROUNDS`] times and the fastest round counts. A benchmark prints figures; it asserts
//! nothing about speed.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::types::Value;

use super::{AvroDecoder, DecodeError, DecodePlan, SchemaError};

mod json;
mod protobuf;

pub use json::{JsonBenchRow, ORDER_JSON_SCHEMA, format_json_report, run_json_bench};
pub use protobuf::{BENCH_PROTO, ProtoBenchRow, format_protobuf_report, run_protobuf_bench};

/// The demo topic's record, exactly as the producer writes it.
pub const HSU_TEST_EVENT: &str = r#"{"type":"record","name":"HsuTestEvent","fields":[{"name":"user","type":"string"},{"name":"event","type":"string"},{"name":"amount","type":"double"},{"name":"ts","type":"long"}]}"#;

/// A wide record with nesting, collections, unions and logical types (20 fields).
pub const WIDE_EVENT: &str = r#"{"type":"record","name":"WideEvent","namespace":"spillway.bench","fields":[
 {"name":"event_id","type":{"type":"string","logicalType":"uuid"}},
 {"name":"user","type":"string"},
 {"name":"session","type":["null","string"],"default":null},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CLICK","VIEW","PURCHASE","REFUND","SIGNUP"]}},
 {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}},
 {"name":"quantity","type":"int"},
 {"name":"score","type":"double"},
 {"name":"ratio","type":"float"},
 {"name":"flag","type":"boolean"},
 {"name":"event_time","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"event_date","type":{"type":"int","logicalType":"date"}},
 {"name":"ingest_ms","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"geo","type":{"type":"record","name":"Geo","fields":[{"name":"country","type":"string"},
   {"name":"lat","type":"double"},{"name":"lon","type":"double"},{"name":"city","type":["null","string"]}]}},
 {"name":"device","type":["null",{"type":"record","name":"Device","fields":[{"name":"os","type":"string"},{"name":"version","type":"int"}]}]},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"attrs","type":{"type":"map","values":"string"}},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"sku","type":"string"},
   {"name":"qty","type":"int"},{"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}}},
 {"name":"checksum","type":{"type":"fixed","name":"Md5","size":16}},
 {"name":"note","type":["null","string","long"]},
 {"name":"version","type":"long"}]}"#;

/// Rows per decoded batch.
pub const BATCH_ROWS: usize = 8192;
/// Timed rounds per decoder; the fastest counts.
pub const ROUNDS: usize = 3;

const EVENTS: [&str; 6] = [
    "click",
    "view",
    "purchase",
    "add_to_cart",
    "search",
    "logout",
];

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum BenchError {
    #[error("failed to compile the bench schema: {0}")]
    Schema(#[from] SchemaError),
    #[error("apache-avro failed on the bench schema or data: {0}")]
    ApacheAvro(String),
    #[error("arrow-json or serde_json failed on the bench schema or data: {0}")]
    ArrowJson(String),
    #[error("prost-reflect failed on the bench schema or data: {0}")]
    Protobuf(String),
    #[error("our decoder rejected a bench payload: {0}")]
    Decode(#[from] DecodeError),
    #[error("decoded {got} rows of {schema}, expected {want}")]
    RowCount {
        schema: String,
        got: usize,
        want: usize,
    },
}

/// Figures for one schema.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub schema: String,
    pub records: usize,
    pub bytes: usize,
    pub ours: Duration,
    pub apache_avro: Duration,
}

impl BenchRow {
    pub fn ours_records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.ours)
    }

    pub fn apache_records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.apache_avro)
    }

    pub fn ours_mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.ours)
    }

    pub fn apache_mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.apache_avro)
    }

    /// How many times faster ours is than apache-avro.
    pub fn ratio(&self) -> f64 {
        self.apache_avro.as_secs_f64() / self.ours.as_secs_f64().max(1e-12)
    }
}

fn per_sec(amount: f64, d: Duration) -> f64 {
    amount / d.as_secs_f64().max(1e-12)
}

/// Generates `records` payloads per schema from `seed` and times both decoders on them.
pub fn run_decode_bench(records: usize, seed: u64) -> Result<Vec<BenchRow>, BenchError> {
    let mut rng = SplitMix(seed);
    let hsu = payloads(HSU_TEST_EVENT, records, |i| hsu_event(&mut rng, i))?;
    let mut rng = SplitMix(seed ^ 0x5eed);
    let wide = payloads(WIDE_EVENT, records, |i| wide_event(&mut rng, i))?;
    Ok(vec![
        bench_one("HsuTestEvent", HSU_TEST_EVENT, &hsu)?,
        bench_one("WideEvent (20 fields)", WIDE_EVENT, &wide)?,
    ])
}

fn payloads(
    schema: &str,
    n: usize,
    mut gen_value: impl FnMut(usize) -> Value,
) -> Result<Vec<Vec<u8>>, BenchError> {
    let schema = apache_avro::Schema::parse_str(schema)
        .map_err(|e| BenchError::ApacheAvro(e.to_string()))?;
    (0..n)
        .map(|i| {
            apache_avro::to_avro_datum(&schema, gen_value(i))
                .map_err(|e| BenchError::ApacheAvro(e.to_string()))
        })
        .collect()
}

fn bench_one(name: &str, schema: &str, payloads: &[Vec<u8>]) -> Result<BenchRow, BenchError> {
    let plan = Arc::new(DecodePlan::from_json(schema, None)?);
    let apache = apache_avro::Schema::parse_str(schema)
        .map_err(|e| BenchError::ApacheAvro(e.to_string()))?;
    let mut ours = Duration::MAX;
    let mut theirs = Duration::MAX;
    for _ in 0..ROUNDS {
        let mut decoder = AvroDecoder::new(plan.clone());
        let start = Instant::now();
        let mut rows = 0;
        for chunk in payloads.chunks(BATCH_ROWS) {
            for p in chunk {
                decoder.push(p)?;
            }
            rows += black_box(decoder.finish()?).num_rows();
        }
        ours = ours.min(start.elapsed());
        if rows != payloads.len() {
            return Err(BenchError::RowCount {
                schema: name.to_string(),
                got: rows,
                want: payloads.len(),
            });
        }

        let start = Instant::now();
        for p in payloads {
            let v = apache_avro::from_avro_datum(&apache, &mut p.as_slice(), None)
                .map_err(|e| BenchError::ApacheAvro(e.to_string()))?;
            black_box(v);
        }
        theirs = theirs.min(start.elapsed());
    }
    Ok(BenchRow {
        schema: name.to_string(),
        records: payloads.len(),
        bytes: payloads.iter().map(Vec::len).sum(),
        ours,
        apache_avro: theirs,
    })
}

/// The report `spillway bench decode` prints.
pub fn format_report(rows: &[BenchRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>8} {:>14} {:>10} {:>14} {:>10} {:>8}",
        "schema",
        "records",
        "MB",
        "ours rec/s",
        "ours MB/s",
        "apache rec/s",
        "apache MB/s",
        "ratio"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>8.1} {:>14.0} {:>10.1} {:>14.0} {:>10.1} {:>7.1}x",
            r.schema,
            r.records,
            r.bytes as f64 / 1e6,
            r.ours_records_per_sec(),
            r.ours_mb_per_sec(),
            r.apache_records_per_sec(),
            r.apache_mb_per_sec(),
            r.ratio()
        );
    }
    let _ = writeln!(
        out,
        "ours: spillway AvroDecoder into Arrow, batches of {BATCH_ROWS}; apache: apache_avro::from_avro_datum into Value; best of {ROUNDS} rounds, one thread"
    );
    out
}

/// splitmix64: a tiny deterministic generator, enough for bench data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs.get(self.below(xs.len() as u64) as usize)
            .copied()
            .unwrap_or_default()
    }
}

fn hsu_event(rng: &mut SplitMix, i: usize) -> Value {
    Value::Record(vec![
        (
            "user".into(),
            Value::String(format!("user-{:04}", rng.below(10_000))),
        ),
        ("event".into(), Value::String(rng.pick(&EVENTS).to_string())),
        (
            "amount".into(),
            Value::Double(rng.below(100_000) as f64 / 100.0),
        ),
        ("ts".into(), Value::Long(1_700_000_000_000 + i as i64 * 7)),
    ])
}

fn string(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn wide_event(rng: &mut SplitMix, i: usize) -> Value {
    let uuid = apache_avro::Uuid::from_u64_pair(rng.next(), rng.next());
    let n_tags = rng.below(4) as usize;
    let n_items = rng.below(3) as usize;
    let item = |rng: &mut SplitMix| {
        Value::Record(vec![
            (
                "sku".into(),
                string(format!("SKU-{:05}", rng.below(100_000))),
            ),
            ("qty".into(), Value::Int(rng.below(10) as i32 + 1)),
            (
                "price".into(),
                Value::Decimal(apache_avro::Decimal::from(
                    (rng.below(1_000_000) as i64).to_be_bytes(),
                )),
            ),
        ])
    };
    let attrs = (0..rng.below(3))
        .map(|k| (format!("k{k}"), string(format!("v{}", rng.below(100)))))
        .collect();
    let device = if rng.below(4) == 0 {
        Value::Union(0, Box::new(Value::Null))
    } else {
        let os = rng.pick(&["android", "ios", "linux"]);
        Value::Union(
            1,
            Box::new(Value::Record(vec![
                ("os".into(), string(os)),
                ("version".into(), Value::Int(rng.below(20) as i32)),
            ])),
        )
    };
    let note = match rng.below(3) {
        0 => Value::Union(0, Box::new(Value::Null)),
        1 => Value::Union(1, Box::new(string("note"))),
        _ => Value::Union(2, Box::new(Value::Long(rng.below(1 << 40) as i64))),
    };
    let kind = rng.below(5) as u32;
    Value::Record(vec![
        ("event_id".into(), Value::Uuid(uuid)),
        (
            "user".into(),
            string(format!("user-{:04}", rng.below(10_000))),
        ),
        (
            "session".into(),
            if rng.below(2) == 0 {
                Value::Union(0, Box::new(Value::Null))
            } else {
                Value::Union(1, Box::new(string(format!("s-{}", rng.below(1000)))))
            },
        ),
        (
            "kind".into(),
            Value::Enum(
                kind,
                ["CLICK", "VIEW", "PURCHASE", "REFUND", "SIGNUP"][kind as usize % 5].into(),
            ),
        ),
        (
            "amount".into(),
            Value::Decimal(apache_avro::Decimal::from(
                (rng.below(10_000_000) as i64).to_be_bytes(),
            )),
        ),
        ("quantity".into(), Value::Int(rng.below(100) as i32)),
        ("score".into(), Value::Double(rng.below(1000) as f64 / 7.0)),
        ("ratio".into(), Value::Float(rng.below(100) as f32 / 3.0)),
        ("flag".into(), Value::Boolean(rng.below(2) == 0)),
        (
            "event_time".into(),
            Value::TimestampMicros(1_700_000_000_000_000 + i as i64 * 1000),
        ),
        (
            "event_date".into(),
            Value::Date(19_700 + (i / 100_000) as i32),
        ),
        (
            "ingest_ms".into(),
            Value::TimestampMillis(1_700_000_000_000 + i as i64),
        ),
        (
            "geo".into(),
            Value::Record(vec![
                (
                    "country".into(),
                    string(rng.pick(&["DE", "FR", "US", "JP"])),
                ),
                ("lat".into(), Value::Double(rng.below(180) as f64 - 90.0)),
                ("lon".into(), Value::Double(rng.below(360) as f64 - 180.0)),
                (
                    "city".into(),
                    if rng.below(2) == 0 {
                        Value::Union(0, Box::new(Value::Null))
                    } else {
                        Value::Union(1, Box::new(string("Paris")))
                    },
                ),
            ]),
        ),
        ("device".into(), device),
        (
            "tags".into(),
            Value::Array((0..n_tags).map(|t| string(format!("tag{t}"))).collect()),
        ),
        ("attrs".into(), Value::Map(attrs)),
        (
            "items".into(),
            Value::Array((0..n_items).map(|_| item(rng)).collect()),
        ),
        (
            "checksum".into(),
            Value::Fixed(16, rng.next().to_le_bytes().repeat(2)),
        ),
        ("note".into(), note),
        ("version".into(), Value::Long(i as i64)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_both_schemas() -> Result<(), BenchError> {
        let rows = run_decode_bench(300, 7)?;
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.records == 300 && r.bytes > 300));
        let report = format_report(&rows);
        assert!(
            report.contains("HsuTestEvent") && report.contains("WideEvent"),
            "{report}"
        );
        Ok(())
    }

    #[test]
    fn payloads_are_deterministic() -> Result<(), BenchError> {
        let a = payloads(HSU_TEST_EVENT, 5, {
            let mut r = SplitMix(1);
            move |i| hsu_event(&mut r, i)
        })?;
        let b = payloads(HSU_TEST_EVENT, 5, {
            let mut r = SplitMix(1);
            move |i| hsu_event(&mut r, i)
        })?;
        assert_eq!(a, b);
        Ok(())
    }
}
