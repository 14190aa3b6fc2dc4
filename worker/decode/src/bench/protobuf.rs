//! Protobuf side of `spillway bench decode`: [`ProtoDecoder`] against prost-reflect's
//! `DynamicMessage::decode` (a message tree per record, what a generic row-at-a-time
//! consumer does) on the same encoded messages.
//!
//! Messages are built from a seed with prost-reflect and encoded (not timed), then
//! decoded in batches of [`BATCH_ROWS`]; each side runs [`ROUNDS`] times and the fastest
//! round counts.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use super::{BATCH_ROWS, BenchError, EVENTS, ROUNDS, SplitMix, per_sec};
use crate::protobuf::{ProtoDecoder, ProtoPlan, compile_proto};

/// The bench messages: the demo's event and the seeds' orders.
pub const BENCH_PROTO: &str = r#"syntax = "proto3";
package spillway.bench;
import "google/protobuf/timestamp.proto";

message HsuTestEvent { string user = 1; string event = 2; double amount = 3; int64 ts = 4; }

message Order {
  int64 order_id = 1;
  string customer_id = 2;
  double amount = 3;
  Status status = 4;
  google.protobuf.Timestamp order_timestamp = 5;
  repeated Line lines = 6;
  map<string, string> attrs = 7;
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; CANCELLED = 3; }
  message Line { string sku = 1; int32 qty = 2; }
}
"#;

/// Figures for one message type.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoBenchRow {
    pub schema: String,
    pub records: usize,
    pub bytes: usize,
    pub ours: Duration,
    pub dynamic: Duration,
}

impl ProtoBenchRow {
    pub fn ours_records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.ours)
    }

    pub fn ours_mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.ours)
    }

    pub fn dynamic_records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.dynamic)
    }

    /// How many times faster ours is than `DynamicMessage`.
    pub fn ratio(&self) -> f64 {
        self.dynamic.as_secs_f64() / self.ours.as_secs_f64().max(1e-12)
    }
}

fn pool() -> Result<DescriptorPool, BenchError> {
    Ok(compile_proto("bench.proto", BENCH_PROTO, &[])?)
}

fn descriptor(pool: &DescriptorPool, name: &str) -> Result<MessageDescriptor, BenchError> {
    pool.get_message_by_name(name)
        .ok_or_else(|| BenchError::Protobuf(format!("{name} is not in the bench schema")))
}

/// Generates `records` messages per type from `seed` and times both decoders on them.
pub fn run_protobuf_bench(records: usize, seed: u64) -> Result<Vec<ProtoBenchRow>, BenchError> {
    let pool = pool()?;
    let hsu = descriptor(&pool, "spillway.bench.HsuTestEvent")?;
    let order = descriptor(&pool, "spillway.bench.Order")?;
    let mut rng = SplitMix(seed);
    let hsu_bodies = (0..records)
        .map(|i| hsu_event(&hsu, &mut rng, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rng = SplitMix(seed ^ 0x0bad);
    let order_bodies = (0..records)
        .map(|i| order_message(&pool, &order, &mut rng, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![
        bench_one("HsuTestEvent", &hsu, &hsu_bodies)?,
        bench_one("Order (nested, WKT)", &order, &order_bodies)?,
    ])
}

fn bench_one(
    name: &str,
    desc: &MessageDescriptor,
    bodies: &[Vec<u8>],
) -> Result<ProtoBenchRow, BenchError> {
    let plan = Arc::new(ProtoPlan::from_message(desc)?);
    let (mut ours, mut dynamic) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let mut decoder = ProtoDecoder::new(plan.clone());
        let start = Instant::now();
        let mut rows = 0;
        for chunk in bodies.chunks(BATCH_ROWS) {
            for b in chunk {
                decoder.push(b)?;
            }
            rows += black_box(decoder.finish()?).num_rows();
        }
        ours = ours.min(start.elapsed());
        if rows != bodies.len() {
            return Err(BenchError::RowCount {
                schema: name.to_string(),
                got: rows,
                want: bodies.len(),
            });
        }

        let start = Instant::now();
        for b in bodies {
            let m = DynamicMessage::decode(desc.clone(), b.as_slice())
                .map_err(|e| BenchError::Protobuf(e.to_string()))?;
            black_box(m);
        }
        dynamic = dynamic.min(start.elapsed());
    }
    Ok(ProtoBenchRow {
        schema: name.to_string(),
        records: bodies.len(),
        bytes: bodies.iter().map(Vec::len).sum(),
        ours,
        dynamic,
    })
}

/// The Protobuf table of `spillway bench decode`.
pub fn format_protobuf_report(rows: &[ProtoBenchRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>8} {:>14} {:>10} {:>18} {:>8}",
        "protobuf message", "records", "MB", "ours rec/s", "ours MB/s", "DynamicMessage/s", "ratio"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>8.1} {:>14.0} {:>10.1} {:>18.0} {:>7.1}x",
            r.schema,
            r.records,
            r.bytes as f64 / 1e6,
            r.ours_records_per_sec(),
            r.ours_mb_per_sec(),
            r.dynamic_records_per_sec(),
            r.ratio()
        );
    }
    let _ = writeln!(
        out,
        "ours: spillway ProtoDecoder into Arrow; DynamicMessage: prost-reflect's decode into a message tree per record (no columns); batches of {BATCH_ROWS}, best of {ROUNDS} rounds, one thread"
    );
    out
}

fn set(m: &mut DynamicMessage, field: &str, v: Value) -> Result<(), BenchError> {
    m.try_set_field_by_name(field, v)
        .map_err(|e| BenchError::Protobuf(e.to_string()))
}

fn hsu_event(
    desc: &MessageDescriptor,
    rng: &mut SplitMix,
    i: usize,
) -> Result<Vec<u8>, BenchError> {
    let mut m = DynamicMessage::new(desc.clone());
    set(
        &mut m,
        "user",
        Value::String(format!("user-{:04}", rng.below(10_000))),
    )?;
    set(
        &mut m,
        "event",
        Value::String(rng.pick(&EVENTS).to_string()),
    )?;
    set(
        &mut m,
        "amount",
        Value::F64(rng.below(100_000) as f64 / 100.0),
    )?;
    set(&mut m, "ts", Value::I64(1_700_000_000_000 + i as i64 * 7))?;
    Ok(m.encode_to_vec())
}

fn order_message(
    pool: &DescriptorPool,
    desc: &MessageDescriptor,
    rng: &mut SplitMix,
    i: usize,
) -> Result<Vec<u8>, BenchError> {
    let mut ts = DynamicMessage::new(descriptor(pool, "google.protobuf.Timestamp")?);
    set(
        &mut ts,
        "seconds",
        Value::I64(1_766_880_000 + i as i64 * 97),
    )?;
    set(
        &mut ts,
        "nanos",
        Value::I32((rng.below(1000) * 1_000_000) as i32),
    )?;
    let line_desc = descriptor(pool, "spillway.bench.Order.Line")?;
    let lines = (0..rng.below(3))
        .map(|_| {
            let mut l = DynamicMessage::new(line_desc.clone());
            set(
                &mut l,
                "sku",
                Value::String(format!("SKU-{:05}", rng.below(100_000))),
            )?;
            set(&mut l, "qty", Value::I32(rng.below(10) as i32 + 1))?;
            Ok(Value::Message(l))
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    let attrs = (0..rng.below(3))
        .map(|k| {
            (
                prost_reflect::MapKey::String(format!("k{k}")),
                Value::String(format!("v{}", rng.below(100))),
            )
        })
        .collect();
    let mut m = DynamicMessage::new(desc.clone());
    set(&mut m, "order_id", Value::I64(i as i64 + 1))?;
    set(
        &mut m,
        "customer_id",
        Value::String(format!("cust-{:04}", rng.below(5000))),
    )?;
    set(
        &mut m,
        "amount",
        Value::F64((rng.below(100_000) as f64 - 2_000.0) / 100.0),
    )?;
    set(&mut m, "status", Value::EnumNumber(rng.below(4) as i32))?;
    set(&mut m, "order_timestamp", Value::Message(ts))?;
    set(&mut m, "lines", Value::List(lines))?;
    set(&mut m, "attrs", Value::Map(attrs))?;
    Ok(m.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_both_messages() -> Result<(), BenchError> {
        let rows = run_protobuf_bench(300, 7)?;
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.records == 300 && r.bytes > 300 * 20));
        let report = format_protobuf_report(&rows);
        assert!(
            report.contains("HsuTestEvent") && report.contains("Order"),
            "{report}"
        );
        Ok(())
    }
}
