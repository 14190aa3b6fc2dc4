//! I/O: `spillway bench merge` — Delta MERGE against append of the same rows, on the
//! movie-ratings shape, no Kafka needed.
//!
//! The table: `--rows` ratings (`event_id` a UUID, `user_id`, `movie_id`, `rating`
//! decimal(3,1), `review`, `event_time`, `event_date`) over `--days` days, partitioned by
//! `event_date`, built by appends in date order (a backfill). Then `--batches` batches of
//! `--batch` rows arrive, each a mix of what a ratings topic carries:
//!
//! | share | rows |
//! |---|---|
//! | 25 % | updates of keys from the last 5 days (a new rating, event time now) |
//! | 45 % | new keys (event time now) |
//! |  5 % | a new key of this batch again, a millisecond later (the later one wins) |
//! | 15 % | exact duplicates of rows from the last 5 days (a redelivery: changes nothing) |
//! | 10 % | late events: updates of keys older than the watermark |
//!
//! Each batch goes through what the pipeline does with `eventTime.allowedLateness: 120h`
//! and `mode: merge` (`keys: [event_id]`, `orderBy: event_time`): the rows behind the
//! watermark dropped ([`crate::engine::metadata::drop_before`]), then
//! [`DeltaSink::write`] — one row per key, the MERGE pruned to the partitions at or after
//! the watermark's date. Side by side, on copies of the same table: the same kept rows
//! appended (`mode: append`), and optionally through delta-rs's `merge`: with the same floor
//! (`--delta-rs`: what the sink's own MERGE gains) and without it (`--plain`: what a MERGE
//! on the key alone scans and rewrites).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::builder::{
    Date32Builder, Decimal128Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::bench_table::dir_url;
use crate::sink::delta::{DeltaSink, DeltaSinkError, MergeSettings};
use crate::sink::{OffsetRanges, SinkBatch};
use crate::source::TopicPartition;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// The pipeline's `allowedLateness`: 5 days.
const LATENESS_MS: i64 = 5 * DAY_MS;
/// Event time of the first day: 2025-01-01T00:00:00Z.
const T0_MS: i64 = 1_735_689_600_000;
/// The first `day` of [`Shape::stored`] that arriving batches use for new keys.
const NEW_KEYS_DAY: u64 = 1 << 23;
/// The span of event time each merge batch covers.
const BATCH_SPAN_MS: i64 = 60_000;

/// Errors of the merge benchmark.
#[derive(Debug, thiserror::Error)]
pub enum MergeBenchError {
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] DeltaSinkError),
    /// delta-rs failed.
    #[error(transparent)]
    Delta(#[from] deltalake::DeltaTableError),
    /// DataFusion failed reading a table back.
    #[error(transparent)]
    DataFusion(#[from] deltalake::datafusion::error::DataFusionError),
    /// Building a batch failed.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The directory cannot be a table's location.
    #[error(transparent)]
    Dir(#[from] super::bench_table::TableBenchError),
    /// The options make no table.
    #[error("--rows ({rows}) must be at least --days ({days}), and --days at least 6")]
    Shape {
        /// `--rows`.
        rows: u64,
        /// `--days`.
        days: u32,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MergeBenchOptions {
    /// Rows of the table before the merges.
    pub rows: u64,
    /// Days the table spans (one `event_date` partition each).
    pub days: u32,
    /// Rows per append while building the table.
    pub build_batch: u64,
    /// Rows per arriving batch.
    pub batch: u64,
    /// Arriving batches.
    pub batches: u64,
    /// Also MERGE through delta-rs's `merge` without the watermark's floor.
    pub plain: bool,
    /// Also MERGE through delta-rs's `merge` with the same floor.
    pub delta_rs: bool,
    /// Directory of the tables (default: a new temporary directory, removed after).
    pub dir: Option<PathBuf>,
    /// Seed of the batches' mix.
    pub seed: u64,
}

/// One rating.
#[derive(Debug, Clone, PartialEq)]
pub struct Rating {
    /// The key.
    pub event_id: String,
    /// Who rated.
    pub user_id: i64,
    /// What was rated.
    pub movie_id: i64,
    /// The rating in tenths (decimal(3,1)).
    pub rating_tenths: i128,
    /// A review, sometimes.
    pub review: Option<String>,
    /// Event time, epoch milliseconds.
    pub event_time_ms: i64,
}

/// A 64-bit mix (splitmix64's finaliser): the generator of every value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The table's layout: `per_day` ratings on each of `days` days.
#[derive(Debug, Clone, Copy)]
struct Shape {
    days: u32,
    per_day: u64,
}

impl Shape {
    /// The stored rating `j` of `day` (day 0 is the first; days below 2^24). Keys of new
    /// ratings use days from [`NEW_KEYS_DAY`] on, so they never meet stored ones.
    fn stored(&self, day: u64, j: u64) -> Rating {
        let h = mix((day << 40) | j);
        let h2 = mix(h);
        Rating {
            event_id: uuid::Uuid::from_u64_pair(h, h2).hyphenated().to_string(),
            user_id: (h % 200_000) as i64,
            movie_id: ((h >> 20) % 60_000) as i64,
            rating_tenths: (((h >> 40) % 10 + 1) * 5) as i128,
            review: h2
                .is_multiple_of(8)
                .then(|| format!("review {}", h2 % 100_000)),
            event_time_ms: T0_MS + day as i64 * DAY_MS + (j as i64 * DAY_MS) / self.per_day as i64,
        }
    }

    /// The event time just after the last stored day.
    fn end_ms(&self) -> i64 {
        T0_MS + self.days as i64 * DAY_MS
    }

    /// A stored rating whose event time is in `[from_ms, to_ms)`, picked by `r`.
    fn stored_between(&self, from_ms: i64, to_ms: i64, r: u64) -> Rating {
        let t = from_ms + (r % (to_ms - from_ms).max(1) as u64) as i64;
        let day = ((t - T0_MS) / DAY_MS).max(0) as u64;
        let j = (((t - T0_MS) % DAY_MS) * self.per_day as i64 / DAY_MS) as u64;
        self.stored(day, j.min(self.per_day - 1))
    }
}

/// The arriving batch `i`: `n` ratings in the mix of the module's table, in arrival order.
fn arriving(shape: &Shape, i: u64, n: u64, seed: u64) -> Vec<Rating> {
    let now = shape.end_ms() + i as i64 * BATCH_SPAN_MS;
    // Rows of the last 5 days that no watermark of the run reaches (it moves by the
    // batches' span): from an hour after the first watermark on.
    let recent = (shape.end_ms() - LATENESS_MS + 3_600_000, shape.end_ms());
    let old = (T0_MS, shape.end_ms() - LATENESS_MS - 3_600_000);
    let mut out: Vec<Rating> = Vec::with_capacity(n as usize);
    let mut new_keys = 0u64;
    for k in 0..n {
        let r = mix(seed ^ mix((i << 32) | k));
        let at = now + (k as i64 * BATCH_SPAN_MS) / n as i64;
        let roll = r % 100;
        let row = match roll {
            0..25 => {
                let mut u = shape.stored_between(recent.0, recent.1, r >> 8);
                u.rating_tenths = ((r >> 40) % 10 + 1) as i128 * 5;
                u.event_time_ms = at;
                u
            }
            25..75 => {
                let repeat = roll >= 70 && new_keys > 0;
                if repeat {
                    // The same new key again, later: this version wins.
                    let back = (r >> 8) % new_keys;
                    let mut again = shape.stored(NEW_KEYS_DAY + i, back);
                    again.event_time_ms = at + 1;
                    again.rating_tenths = 50;
                    again
                } else {
                    let mut new = shape.stored(NEW_KEYS_DAY + i, new_keys);
                    new.event_time_ms = at;
                    new_keys += 1;
                    new
                }
            }
            75..90 => shape.stored_between(recent.0, recent.1, r >> 8),
            _ => {
                let mut late = shape.stored_between(old.0, old.1, r >> 8);
                late.rating_tenths = 5;
                late.event_time_ms += 1;
                late
            }
        };
        out.push(row);
    }
    out
}

/// The table's Arrow schema (as the sample pipeline's transform leaves it).
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("movie_id", DataType::Int64, false),
        Field::new("rating", DataType::Decimal128(3, 1), false),
        Field::new("review", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("event_date", DataType::Date32, false),
    ]))
}

/// `rows` as a batch of [`schema`].
pub fn to_batch(rows: &[Rating]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let mut id = StringBuilder::with_capacity(n, n * 36);
    let mut user = Int64Builder::with_capacity(n);
    let mut movie = Int64Builder::with_capacity(n);
    let mut rating = Decimal128Builder::with_capacity(n).with_precision_and_scale(3, 1)?;
    let mut review = StringBuilder::new();
    let mut time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut date = Date32Builder::with_capacity(n);
    for r in rows {
        id.append_value(&r.event_id);
        user.append_value(r.user_id);
        movie.append_value(r.movie_id);
        rating.append_value(r.rating_tenths);
        review.append_option(r.review.as_deref());
        time.append_value(r.event_time_ms);
        date.append_value(r.event_time_ms.div_euclid(DAY_MS) as i32);
    }
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(id.finish()),
            Arc::new(user.finish()),
            Arc::new(movie.finish()),
            Arc::new(rating.finish()),
            Arc::new(review.finish()),
            Arc::new(time.finish()),
            Arc::new(date.finish()),
        ],
    )
}

/// One arriving batch, measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchFigures {
    /// Rows that arrived.
    pub arrived: u64,
    /// Rows behind the watermark, dropped.
    pub late: u64,
    /// Rows appended, and how long the append took.
    pub append: Duration,
    /// The MERGE (pruned by the watermark): its time and Delta's metrics.
    pub merge: (Duration, MergeFigures),
    /// delta-rs's MERGE on the key alone (`--plain`).
    pub plain: Option<(Duration, MergeFigures)>,
    /// delta-rs's MERGE with the same floor (`--delta-rs`).
    pub delta_rs: Option<(Duration, MergeFigures)>,
}

/// What one MERGE did, from delta-rs's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeFigures {
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Stored rows rewritten unchanged (they shared a file with an updated one).
    pub copied: u64,
    /// Files read.
    pub files_scanned: u64,
    /// Files pruned.
    pub files_skipped: u64,
    /// Files probed by the keys an earlier MERGE read or wrote (not read again).
    pub files_cached: u64,
}

impl MergeFigures {
    fn from_metrics(m: &std::collections::BTreeMap<String, String>) -> Self {
        let get = |k: &str| m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Self {
            inserted: get("numTargetRowsInserted"),
            updated: get("numTargetRowsUpdated"),
            copied: get("numTargetRowsCopied"),
            files_scanned: get("numTargetFilesScanned"),
            files_skipped: get("numTargetFilesSkipped"),
            files_cached: get("numTargetFilesKeysCached"),
        }
    }

    /// Stored rows written again: the updated ones and those copied beside them.
    pub fn rewritten(&self) -> u64 {
        self.updated + self.copied
    }
}

/// What `spillway bench merge` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    /// The options run.
    pub rows: u64,
    /// Days of the table.
    pub days: u32,
    /// Building the table: rows, files, and how long it took.
    pub built: (u64, u64, Duration),
    /// Each arriving batch.
    pub batches: Vec<BatchFigures>,
    /// Rows of the merged table at the end.
    pub table_rows: u64,
}

/// Every row of the Delta table at `url`, sorted by `event_id` (for comparisons).
pub async fn read_sorted(url: &url::Url) -> Result<Vec<RecordBatch>, MergeBenchError> {
    use deltalake::datafusion::prelude::SessionContext;
    let table = deltalake::open_table(url.clone()).await?;
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    Ok(ctx
        .sql(
            "SELECT event_id, user_id, movie_id, rating, review, event_time, event_date \
             FROM t ORDER BY event_id",
        )
        .await?
        .collect()
        .await?)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The one partition the benchmark's batches claim to come from.
fn bench_tp() -> TopicPartition {
    TopicPartition {
        topic: "movie-ratings".into(),
        partition: 0,
    }
}

/// The batch covering offsets `from..from + n`, for `expected`.
fn offsets(from: i64, n: u64, expected: Option<i64>) -> OffsetRanges {
    let tp = bench_tp();
    OffsetRanges {
        start: [(tp.clone(), from)].into(),
        next: [(tp.clone(), from + n as i64)].into(),
        expected: [(tp, expected)].into(),
    }
}

/// A sink merging by `event_id`, newest `event_time` wins: the sink's own MERGE, or
/// delta-rs's (`delta_rs`).
async fn merging_sink(url: &url::Url, delta_rs: bool) -> Result<DeltaSink, MergeBenchError> {
    Ok(
        DeltaSink::open(url, Default::default(), "bench", vec!["event_date".into()])
            .await?
            .with_merge(MergeSettings {
                keys: vec!["event_id".into()],
                order_by: Some("event_time".into()),
            })
            .with_delta_rs_merge(delta_rs),
    )
}

/// Builds the table under `dir/merged`, copies it to `dir/appended` (and `dir/plain`,
/// `dir/delta-rs`),
/// then sends every arriving batch to each.
pub async fn run_in(dir: &Path, o: &MergeBenchOptions) -> Result<MergeReport, MergeBenchError> {
    if o.days < 6 || o.rows < u64::from(o.days) {
        return Err(MergeBenchError::Shape {
            rows: o.rows,
            days: o.days,
        });
    }
    let shape = Shape {
        days: o.days,
        per_day: o.rows / u64::from(o.days),
    };
    let merged_url = dir_url(&dir.join("merged"))?;
    let mut sink = DeltaSink::open(
        &merged_url,
        Default::default(),
        "bench",
        vec!["event_date".into()],
    )
    .await?;
    // The backfill: every stored rating in date order.
    let started = Instant::now();
    let total = shape.per_day * u64::from(shape.days);
    let mut next: Option<i64> = None;
    let mut written = 0u64;
    while written < total {
        let n = o.build_batch.max(1).min(total - written);
        let rows: Vec<Rating> = (written..written + n)
            .map(|g| shape.stored(g / shape.per_day, g % shape.per_day))
            .collect();
        let ranges = offsets(written as i64, n, next);
        sink.commit(Some(to_batch(&rows)?), &ranges.expected, &ranges.next)
            .await?;
        next = Some(written as i64 + n as i64);
        written += n;
    }
    let files = sink.table().snapshot()?.log_data().num_files() as u64;
    let built = (written, files, started.elapsed());

    let appended_url = dir_url(&dir.join("appended"))?;
    copy_dir(&dir.join("merged"), &dir.join("appended"))?;
    let plain_url = if o.plain {
        copy_dir(&dir.join("merged"), &dir.join("plain"))?;
        Some(dir_url(&dir.join("plain"))?)
    } else {
        None
    };
    let delta_rs_url = if o.delta_rs {
        copy_dir(&dir.join("merged"), &dir.join("delta-rs"))?;
        Some(dir_url(&dir.join("delta-rs"))?)
    } else {
        None
    };
    let mut delta_rs = match &delta_rs_url {
        Some(u) => Some(merging_sink(u, true).await?),
        None => None,
    };
    let mut merged = merging_sink(&merged_url, false).await?;
    let mut appended = DeltaSink::open(
        &appended_url,
        Default::default(),
        "bench",
        vec!["event_date".into()],
    )
    .await?;
    let mut plain = match &plain_url {
        Some(u) => Some(merging_sink(u, true).await?),
        None => None,
    };

    // The pipeline's watermark: the newest event time seen minus the lateness.
    let mut max_event = shape.end_ms() - 1;
    let mut figures = Vec::new();
    for i in 0..o.batches {
        let rows = arriving(&shape, i, o.batch, o.seed);
        let watermark = max_event - LATENESS_MS;
        let (kept, late) =
            crate::engine::metadata::drop_before(&to_batch(&rows)?, "event_time", watermark)?;
        max_event = max_event.max(rows.iter().map(|r| r.event_time_ms).max().unwrap_or(0));
        let n = o.batch;
        let from = next.unwrap_or(0);
        let ranges = offsets(from, n, next);
        let batch = |watermark_ms| SinkBatch {
            rows: Some(kept.clone()),
            ranges: ranges.clone(),
            watermark_ms,
        };

        let t = Instant::now();
        let c = merged.write(batch(Some(watermark))).await?;
        let merge = (t.elapsed(), MergeFigures::from_metrics(&c.metrics));

        let t = Instant::now();
        appended
            .commit(Some(kept.clone()), &ranges.expected, &ranges.next)
            .await?;
        let append = t.elapsed();

        let plain = match plain.as_mut() {
            Some(p) => {
                let t = Instant::now();
                let c = p.write(batch(None)).await?;
                Some((t.elapsed(), MergeFigures::from_metrics(&c.metrics)))
            }
            None => None,
        };
        let delta_rs = match delta_rs.as_mut() {
            Some(d) => {
                let t = Instant::now();
                let c = d.write(batch(Some(watermark))).await?;
                Some((t.elapsed(), MergeFigures::from_metrics(&c.metrics)))
            }
            None => None,
        };
        next = Some(from + n as i64);
        figures.push(BatchFigures {
            arrived: n,
            late: late as u64,
            append,
            merge,
            plain,
            delta_rs,
        });
    }
    let table_rows = read_sorted(&merged_url)
        .await?
        .iter()
        .map(|b| b.num_rows() as u64)
        .sum();
    Ok(MergeReport {
        rows: written,
        days: o.days,
        built,
        batches: figures,
        table_rows,
    })
}

/// Runs the benchmark in `o.dir` or a new temporary directory (removed after).
pub async fn run(o: &MergeBenchOptions) -> Result<MergeReport, MergeBenchError> {
    let temporary = o.dir.is_none();
    let dir = o.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("spillway-bench-merge-{}", uuid::Uuid::new_v4()))
    });
    let report = run_in(&dir, o).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    report
}

/// The final state [`run_in`]'s MERGE must leave, computed without Delta: per key the
/// version with the greatest event time (the later one on a tie), rows behind each
/// batch's watermark dropped. `(event_id, rating in tenths, event time)`, sorted.
pub fn expected_state(o: &MergeBenchOptions) -> Vec<(String, i128, i64)> {
    let shape = Shape {
        days: o.days,
        per_day: o.rows / u64::from(o.days).max(1),
    };
    let mut state: HashMap<String, (i128, i64)> = HashMap::new();
    for g in 0..shape.per_day * u64::from(shape.days) {
        let r = shape.stored(g / shape.per_day, g % shape.per_day);
        state.insert(r.event_id, (r.rating_tenths, r.event_time_ms));
    }
    let mut max_event = shape.end_ms() - 1;
    for i in 0..o.batches {
        let rows = arriving(&shape, i, o.batch, o.seed);
        let watermark = max_event - LATENESS_MS;
        // Within the batch the latest version (the later record on a tie) ...
        let mut latest: HashMap<&str, &Rating> = HashMap::new();
        for r in rows.iter().filter(|r| r.event_time_ms >= watermark) {
            let e = latest.entry(r.event_id.as_str()).or_insert(r);
            if r.event_time_ms >= e.event_time_ms {
                *e = r;
            }
        }
        // ... replaces the stored one only when newer.
        for (id, r) in latest {
            if state.get(id).is_none_or(|(_, t)| r.event_time_ms > *t) {
                state.insert(id.to_string(), (r.rating_tenths, r.event_time_ms));
            }
        }
        max_event = max_event.max(rows.iter().map(|r| r.event_time_ms).max().unwrap_or(0));
    }
    let mut out: Vec<(String, i128, i64)> =
        state.into_iter().map(|(k, (r, t))| (k, r, t)).collect();
    out.sort();
    out
}

/// The printed merge report.
pub fn format_merge(r: &MergeReport) -> String {
    use std::fmt::Write as _;
    let secs = |d: Duration| d.as_secs_f64().max(1e-9);
    let mut out = format!(
        "spillway bench merge: a Delta table of {} ratings over {} days (partitioned by \
         event_date, {} files), built by appends in {:.1}s ({:.0} rows/s); then {} batches \
         of {} rows (25 % updates of the last 5 days, 50 % new keys, 15 % redeliveries, \
         10 % behind the watermark), allowedLateness 120h, keys [event_id], orderBy \
         event_time\n",
        r.rows,
        r.days,
        r.built.1,
        secs(r.built.2),
        r.rows as f64 / secs(r.built.2),
        r.batches.len(),
        r.batches.first().map_or(0, |b| b.arrived),
    );
    let with_delta_rs = r.batches.iter().any(|b| b.delta_rs.is_some());
    let with_plain = r.batches.iter().any(|b| b.plain.is_some());
    let _ = writeln!(
        out,
        "{:>5} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>7}{}{}",
        "batch",
        "kept",
        "late",
        "append s",
        "merge s",
        "inserted",
        "updated",
        "rewritten",
        "scanned",
        "skipped",
        "cached",
        if with_delta_rs {
            format!(" {:>10} {:>11}", "delta-rs s", "rewritten")
        } else {
            String::new()
        },
        if with_plain {
            format!(" {:>9} {:>11} {:>9}", "plain s", "rewritten", "scanned")
        } else {
            String::new()
        },
    );
    let mut kept_total = 0u64;
    let (mut append, mut merge) = (Duration::ZERO, Duration::ZERO);
    let (mut delta_rs, mut plain) = (Duration::ZERO, Duration::ZERO);
    for (i, b) in r.batches.iter().enumerate() {
        let kept = b.arrived - b.late;
        kept_total += kept;
        append += b.append;
        merge += b.merge.0;
        let m = &b.merge.1;
        let leg = |leg: &Option<(Duration, MergeFigures)>, total: &mut Duration, scanned: bool| {
            leg.as_ref().map_or(String::new(), |(d, f)| {
                *total += *d;
                let width = if scanned { 9 } else { 10 };
                let mut cell = format!(" {:>width$.2} {:>11}", d.as_secs_f64(), f.rewritten());
                if scanned {
                    let _ = write!(cell, " {:>9}", f.files_scanned);
                }
                cell
            })
        };
        let delta_rs_cells = leg(&b.delta_rs, &mut delta_rs, false);
        let plain_cells = leg(&b.plain, &mut plain, true);
        let _ = writeln!(
            out,
            "{:>5} {:>8} {:>6} {:>9.2} {:>9.2} {:>9} {:>9} {:>11} {:>9} {:>9} {:>7}{}{}",
            i,
            kept,
            b.late,
            b.append.as_secs_f64(),
            b.merge.0.as_secs_f64(),
            m.inserted,
            m.updated,
            m.rewritten(),
            m.files_scanned,
            m.files_skipped,
            m.files_cached,
            delta_rs_cells,
            plain_cells,
        );
    }
    let append_rate = kept_total as f64 / secs(append);
    let merge_rate = kept_total as f64 / secs(merge);
    let _ = writeln!(
        out,
        "append {:.0} rows/s, merge {:.0} rows/s: ratio merge/append {:.3}",
        append_rate,
        merge_rate,
        merge_rate / append_rate.max(1e-9),
    );
    for (total, what, name) in [
        (delta_rs, "delta-rs MERGE (the same floor)", "delta-rs"),
        (plain, "plain delta-rs MERGE (the key alone)", "plain"),
    ] {
        if total > Duration::ZERO {
            let rate = kept_total as f64 / secs(total);
            let _ = writeln!(
                out,
                "{what} {rate:.0} rows/s: ratio {name}/append {:.3}, merge/{name} {:.1}x",
                rate / append_rate.max(1e-9),
                merge_rate / rate.max(1e-9),
            );
        }
    }
    let _ = writeln!(out, "rows of the merged table at the end: {}", r.table_rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Decimal128Array, StringArray, TimestampMillisecondArray};

    fn small() -> MergeBenchOptions {
        MergeBenchOptions {
            rows: 30_000,
            days: 30,
            build_batch: 7_000,
            batch: 4_000,
            batches: 3,
            plain: true,
            delta_rs: true,
            dir: None,
            seed: 7,
        }
    }

    fn state(batches: &[RecordBatch]) -> Vec<(String, i128, i64)> {
        use arrow_cast::cast;
        let mut out = Vec::new();
        for b in batches {
            let id = cast(b.column(0), &DataType::Utf8).unwrap();
            let id = id.as_any().downcast_ref::<StringArray>().unwrap();
            let rating = b
                .column(3)
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .unwrap();
            let time = cast(
                b.column(5),
                &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            )
            .unwrap();
            let time = time
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                out.push((id.value(i).to_string(), rating.value(i), time.value(i)));
            }
        }
        out
    }

    #[test]
    fn the_mix_has_every_kind_of_row() {
        let o = small();
        let shape = Shape {
            days: o.days,
            per_day: 1_000,
        };
        let rows = arriving(&shape, 0, 4_000, 7);
        let late = rows
            .iter()
            .filter(|r| r.event_time_ms < shape.end_ms() - LATENESS_MS)
            .count();
        let unchanged = rows
            .iter()
            .filter(|r| r.event_time_ms < shape.end_ms())
            .count()
            - late;
        let mut ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        // ≈10 % late, ≈15 % redeliveries, ≈5 % new keys twice.
        assert!((300..500).contains(&late), "{late}");
        assert!((450..750).contains(&unchanged), "{unchanged}");
        assert!(
            ids.len() < rows.len() - 100,
            "{} of {}",
            ids.len(),
            rows.len()
        );
    }

    #[tokio::test]
    async fn the_pruned_merge_leaves_what_delta_rs_merges_and_the_model_leave() {
        let o = small();
        let dir = std::env::temp_dir().join(format!("bench-merge-{}", uuid::Uuid::new_v4()));
        let report = run_in(&dir, &o).await.unwrap();
        let read = |name: &str| {
            let url = dir_url(&dir.join(name)).unwrap();
            async move { read_sorted(&url).await.unwrap() }
        };
        let merged = state(&read("merged").await);
        let plain = state(&read("plain").await);
        let delta_rs = state(&read("delta-rs").await);
        let expected = expected_state(&o);
        assert_eq!(merged.len(), expected.len());
        assert_eq!(merged, expected);
        assert_eq!(plain, expected);
        assert_eq!(delta_rs, expected);
        assert_eq!(report.table_rows, expected.len() as u64);
        // The floor pruned: the pruned MERGEs read fewer files; the sink's own MERGE
        // rewrote no more stored rows than delta-rs's with the same floor.
        for (i, b) in report.batches.iter().enumerate() {
            // After the first, every file is probed by the keys kept from the MERGE before.
            let m = &b.merge.1;
            assert_eq!(
                m.files_cached,
                if i == 0 { 0 } else { m.files_scanned },
                "{b:?}"
            );
            let (_, p) = b.plain.as_ref().unwrap();
            let (_, d) = b.delta_rs.as_ref().unwrap();
            assert!(b.merge.1.files_scanned < p.files_scanned, "{b:?}");
            assert_eq!(
                (b.merge.1.inserted, b.merge.1.updated),
                (d.inserted, d.updated),
                "{b:?}"
            );
            assert!(b.merge.1.rewritten() <= d.rewritten(), "{b:?}");
            assert!(b.merge.1.updated > 0 && b.merge.1.inserted > 0, "{b:?}");
            assert!(b.late > 0, "{b:?}");
        }
        // Appending keeps every kept row, duplicates included.
        let appended = read("appended").await;
        let kept: u64 = report.batches.iter().map(|b| b.arrived - b.late).sum();
        assert_eq!(
            appended.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
            o.rows + kept
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
