//! JSON side of `spillway bench decode`: [`JsonDecoder`] against two peers on the same texts.
//!
//! - arrow-json's `Decoder`: Arrow's own columnar JSON reader, given the Arrow schema our
//!   plan derives, so both produce the same columns from the same bytes;
//! - `serde_json::from_slice::<Value>`: a tree per record, what a row-at-a-time pipeline
//!   pays before it has built a single column.
//!
//! Texts are generated from a seed (not timed) and decoded in batches of [`BATCH_ROWS`];
//! each side runs [`ROUNDS`] times and the fastest round counts.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BATCH_ROWS, BenchError, EVENTS, HSU_TEST_EVENT, ROUNDS, SplitMix, per_sec};
use crate::json::{JsonDecoder, JsonMode, JsonPlan};

/// The seeds' orders as a JSON Schema (the orders sample's row schema).
pub const ORDER_JSON_SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"Order","type":"object",
 "required":["order_id","customer_id","amount","status","order_timestamp"],
 "properties":{"order_id":{"type":"integer"},"customer_id":{"type":"string"},
  "amount":{"type":["number","null"],"format":"decimal","precision":10,"scale":2},
  "status":{"type":"string"},"order_timestamp":{"type":"string","format":"date-time"}}}"#;

const STATUSES: [&str; 4] = ["NEW", "PAID", "SHIPPED", "CANCELLED"];

/// Figures for one JSON row schema.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBenchRow {
    pub schema: String,
    pub records: usize,
    pub bytes: usize,
    pub ours: Duration,
    pub arrow_json: Duration,
    pub serde_value: Duration,
}

impl JsonBenchRow {
    pub fn ours_records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.ours)
    }

    pub fn ours_mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.ours)
    }

    pub fn arrow_json_records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.arrow_json)
    }

    pub fn serde_value_records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.serde_value)
    }

    /// How many times faster ours is than arrow-json.
    pub fn ratio(&self) -> f64 {
        self.arrow_json.as_secs_f64() / self.ours.as_secs_f64().max(1e-12)
    }
}

/// Generates `records` JSON texts per row schema from `seed` and times the three decoders.
pub fn run_json_bench(records: usize, seed: u64) -> Result<Vec<JsonBenchRow>, BenchError> {
    let mut rng = SplitMix(seed);
    let hsu: Vec<Vec<u8>> = (0..records).map(|i| hsu_json(&mut rng, i)).collect();
    let mut rng = SplitMix(seed ^ 0x0de5);
    let orders: Vec<Vec<u8>> = (0..records).map(|i| order_json(&mut rng, i)).collect();
    Ok(vec![
        bench_one("HsuTestEvent (Avro)", HSU_TEST_EVENT, &hsu)?,
        bench_one("Order (JSON Schema)", ORDER_JSON_SCHEMA, &orders)?,
    ])
}

fn bench_one(name: &str, schema: &str, texts: &[Vec<u8>]) -> Result<JsonBenchRow, BenchError> {
    let plan = Arc::new(JsonPlan::from_schema(schema)?);
    let arrow_schema = plan.arrow_schema().clone();
    let want = texts.len();
    let row_count = |got: usize| {
        if got == want {
            Ok(())
        } else {
            Err(BenchError::RowCount {
                schema: name.to_string(),
                got,
                want,
            })
        }
    };
    let (mut ours, mut arrow, mut tree) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let mut decoder = JsonDecoder::new(plan.clone(), JsonMode::FailFast);
        let start = Instant::now();
        let mut rows = 0;
        for chunk in texts.chunks(BATCH_ROWS) {
            for t in chunk {
                decoder.push(t)?;
            }
            rows += black_box(decoder.finish()?).num_rows();
        }
        ours = ours.min(start.elapsed());
        row_count(rows)?;

        let arrow_err = |e: arrow_schema::ArrowError| BenchError::ArrowJson(e.to_string());
        let mut decoder = arrow_json::ReaderBuilder::new(arrow_schema.clone())
            .with_batch_size(BATCH_ROWS)
            .build_decoder()
            .map_err(arrow_err)?;
        let start = Instant::now();
        let mut rows = 0;
        for chunk in texts.chunks(BATCH_ROWS) {
            for t in chunk {
                decoder.decode(t).map_err(arrow_err)?;
            }
            if let Some(batch) = decoder.flush().map_err(arrow_err)? {
                rows += black_box(batch).num_rows();
            }
        }
        arrow = arrow.min(start.elapsed());
        row_count(rows)?;

        let start = Instant::now();
        for t in texts {
            let v: serde_json::Value =
                serde_json::from_slice(t).map_err(|e| BenchError::ArrowJson(e.to_string()))?;
            black_box(v);
        }
        tree = tree.min(start.elapsed());
    }
    Ok(JsonBenchRow {
        schema: name.to_string(),
        records: texts.len(),
        bytes: texts.iter().map(Vec::len).sum(),
        ours,
        arrow_json: arrow,
        serde_value: tree,
    })
}

/// The JSON table of `spillway bench decode`.
pub fn format_json_report(rows: &[JsonBenchRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>8} {:>14} {:>10} {:>16} {:>16} {:>8}",
        "json schema",
        "records",
        "MB",
        "ours rec/s",
        "ours MB/s",
        "arrow-json rec/s",
        "serde Value rec/s",
        "ratio"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>8.1} {:>14.0} {:>10.1} {:>16.0} {:>16.0} {:>7.2}x",
            r.schema,
            r.records,
            r.bytes as f64 / 1e6,
            r.ours_records_per_sec(),
            r.ours_mb_per_sec(),
            r.arrow_json_records_per_sec(),
            r.serde_value_records_per_sec(),
            r.ratio()
        );
    }
    let _ = writeln!(
        out,
        "ours: spillway JsonDecoder (FAILFAST) into Arrow; arrow-json: its Decoder with the same Arrow schema; serde Value: serde_json into a tree per record (no columns); ratio = arrow-json time / ours; batches of {BATCH_ROWS}, best of {ROUNDS} rounds, one thread"
    );
    out
}

fn hsu_json(rng: &mut SplitMix, i: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    let _ = write!(
        out,
        r#"{{"user":"user-{:04}","event":"{}","amount":{},"ts":{}}}"#,
        rng.below(10_000),
        rng.pick(&EVENTS),
        rng.below(100_000) as f64 / 100.0,
        1_700_000_000_000 + i as i64 * 7
    );
    out
}

fn order_json(rng: &mut SplitMix, i: usize) -> Vec<u8> {
    let cents = rng.below(100_000) as i64 - 2_000;
    let secs = 1_766_880_000 + i as i64 * 97;
    let time = chrono::DateTime::from_timestamp(secs, (rng.below(1000) * 1_000_000) as u32)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let sign = if cents < 0 { "-" } else { "" };
    let mut out = Vec::with_capacity(140);
    let _ = write!(
        out,
        r#"{{"order_id":{},"customer_id":"cust-{:04}","amount":{sign}{}.{:02},"status":"{}","order_timestamp":"{time}"}}"#,
        i + 1,
        rng.below(5000),
        cents.abs() / 100,
        cents.abs() % 100,
        rng.pick(&STATUSES),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_both_json_schemas() -> Result<(), BenchError> {
        let rows = run_json_bench(300, 7)?;
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.records == 300 && r.bytes > 300 * 40));
        let report = format_json_report(&rows);
        assert!(
            report.contains("HsuTestEvent") && report.contains("Order"),
            "{report}"
        );
        Ok(())
    }

    #[test]
    fn ours_and_arrow_json_build_the_same_columns() -> Result<(), BenchError> {
        let mut rng = SplitMix(3);
        let texts: Vec<Vec<u8>> = (0..50).map(|i| order_json(&mut rng, i)).collect();
        let plan = Arc::new(JsonPlan::from_schema(ORDER_JSON_SCHEMA)?);
        let mut ours = JsonDecoder::new(plan.clone(), JsonMode::FailFast);
        let mut theirs = arrow_json::ReaderBuilder::new(plan.arrow_schema().clone())
            .build_decoder()
            .map_err(|e| BenchError::ArrowJson(e.to_string()))?;
        for t in &texts {
            ours.push(t)?;
            theirs
                .decode(t)
                .map_err(|e| BenchError::ArrowJson(e.to_string()))?;
        }
        let ours = ours.finish()?;
        let theirs = theirs
            .flush()
            .map_err(|e| BenchError::ArrowJson(e.to_string()))?
            .ok_or_else(|| BenchError::ArrowJson("no batch".into()))?;
        assert_eq!(ours, theirs);
        Ok(())
    }
}
