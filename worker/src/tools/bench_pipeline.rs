//! I/O: `spillway bench pipeline` — the end-to-end rates against the raw consume ceiling,
//! measured side by side in one run on the same topic.
//!
//! (a) rdkafka reads every payload of the topic (no decoding, no writing), once with
//!     librdkafka's default fetch settings and once with the worker's tuned ones
//!     ([`crate::source::config::FETCH_DEFAULTS`]); the faster is the ceiling.
//! (b) the HsuTestEvent pipeline, `availableNow`, from the same topic into a new local
//!     Delta table, and (c) into a new local Parquet dataset: what a user gets.
//!
//! The preload uses the load generator's producer batching (`linger.ms=5`,
//! `batch.num.messages=10000`), as a typical producer does. Peak RSS is the process's
//! high-water mark (`VmHWM`), reset between the phases; CPU time is the process's user +
//! system time (`/proc/self/stat`) over the phase, all threads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, RunOptions};
use crate::secrets::EnvSecrets;
use crate::serve::progress::ProgressState;
use crate::tools::produce::{Encoding, ProduceOptions};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Producing the input failed.
    #[error(transparent)]
    Produce(#[from] crate::tools::produce::ProduceError),
    /// The pipeline failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// The generated manifest was refused (a bug).
    #[error("the benchmark manifest is invalid: {0}")]
    Manifest(String),
    /// Local I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A blocking task failed.
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct PipelineBench {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Records to preload.
    pub records: u64,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Topic; reused when it already holds the records.
    pub topic: Option<String>,
    /// Directory of the Delta table (default: a new temporary directory).
    pub dir: Option<PathBuf>,
    /// Generator seed.
    pub seed: u64,
}

/// One measured phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Records read (a) or committed (b).
    pub records: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Peak RSS during the phase, bytes (None where /proc is not available).
    pub peak_rss: Option<u64>,
    /// CPU time of the process (all threads) during the phase (None without /proc).
    pub cpu: Option<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
    /// CPU seconds per million records.
    fn cpu_per_million(&self) -> Option<f64> {
        self.cpu
            .map(|c| c.as_secs_f64() * 1e6 / (self.records.max(1) as f64))
    }
}

/// The result.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineReport {
    /// Topic measured.
    pub topic: String,
    /// How the topic was filled (producer settings), or that it was reused.
    pub preload: String,
    /// (a) raw consume with librdkafka's default fetch settings.
    pub raw_default: Phase,
    /// (a) raw consume with the worker's fetch settings.
    pub raw_tuned: Phase,
    /// (b) Kafka → Delta.
    pub delta: Phase,
    /// (c) Kafka → Parquet.
    pub parquet: Phase,
    /// Delta table version at the end of (b).
    pub table_version: Option<i64>,
}

impl PipelineReport {
    /// The ceiling: the faster of the two raw consumes, and its name.
    pub fn ceiling(&self) -> (&'static str, &Phase) {
        if self.raw_tuned.rate() >= self.raw_default.rate() {
            ("tuned", &self.raw_tuned)
        } else {
            ("defaults", &self.raw_default)
        }
    }
}

/// CPU time of this process so far: user + system of all its threads, from
/// `/proc/self/stat` (in clock ticks of 1/100 s, Linux's `USER_HZ`).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak RSS (Linux: `5` to `/proc/self/clear_refs`); best effort.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn high_watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>, BenchError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    (0..partitions)
        .map(|p| Ok((p, c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1)))
        .collect()
}

/// Preloads the topic unless it already holds the records; says how it was filled.
async fn preload(b: &PipelineBench, topic: &str) -> Result<String, BenchError> {
    let want = b.records;
    crate::tools::produce::ensure_topic(&b.bootstrap, topic, b.partitions).await?;
    let (bs, t, n) = (b.bootstrap.clone(), topic.to_string(), b.partitions);
    let have: i64 = tokio::task::spawn_blocking(move || high_watermarks(&bs, &t, n))
        .await??
        .values()
        .sum();
    if have as u64 == want {
        eprintln!("reusing {topic}: it holds {want} records");
        return Ok("reused (it already held the records)".into());
    }
    let opts = ProduceOptions {
        bootstrap: b.bootstrap.clone(),
        topic: topic.to_string(),
        rps: 0,
        count: b.records,
        seed: b.seed,
        key_by_user: false,
        format: crate::tools::produce::ValueFormat::Avro,
        encoding: Encoding::Raw,
        schema_registry: None,
        schema: None,
        partitions: Some(b.partitions),
        properties: vec![],
    };
    let s = crate::tools::produce::produce(&opts, |_, _, _| {}).await?;
    eprintln!(
        "preloaded {} records into {topic} in {:.1}s",
        s.records,
        s.elapsed.as_secs_f64()
    );
    Ok(format!(
        "{} records produced with linger.ms=5, batch.num.messages=10000",
        s.records
    ))
}

/// (a): reads every payload from the beginning to the high watermarks, with the worker's
/// fetch settings when `tuned`, else librdkafka's defaults.
fn raw_consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    tuned: bool,
) -> Result<Phase, BenchError> {
    let end = high_watermarks(bootstrap, topic, partitions)?;
    let mut cc = ClientConfig::new();
    if tuned {
        for (k, v) in crate::source::config::FETCH_DEFAULTS {
            cc.set(*k, *v);
        }
    }
    let c: BaseConsumer = cc
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("spillway-bench-raw-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let (started, cpu) = (Instant::now(), cpu_time());
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    let done = |next: &BTreeMap<i32, i64>| {
        end.iter()
            .all(|(p, e)| *e == 0 || next.get(p).is_some_and(|n| n >= e))
    };
    while !done(&next) {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                next.insert(m.partition(), m.offset() + 1);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(Phase {
        records,
        bytes,
        elapsed: started.elapsed(),
        peak_rss: peak_rss(),
        cpu: cpu_time().zip(cpu).map(|(b, a)| b.saturating_sub(a)),
    })
}

/// The pipeline of (b) or (c); `sink` is `delta` or `parquet`.
fn manifest(b: &PipelineBench, topic: &str, dir: &std::path::Path, sink: &str) -> String {
    format!(
        r#"apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {{name: bench}}
spec:
  source:
    kafka:
      bootstrapServers: "{bootstrap}"
      topics: [{topic}]
      groupId: "spillway-bench-{group}"
  format:
    avro:
      encoding: raw
      writerSchema:
        inline: '{schema}'
  transform:
    metadataColumns: [partition, offset, timestamp]
  sink:
    {sink}: {{uri: "{table}"}}
  checkpoint: {{uri: "{checkpoint}"}}
  trigger: {{availableNow: true}}
"#,
        bootstrap = b.bootstrap,
        group = uuid::Uuid::new_v4(),
        schema = crate::tools::generate::HSUTEST_SCHEMA,
        table = dir.join(sink).display(),
        checkpoint = dir.join(format!("checkpoint-{sink}")).display(),
    )
}

/// (b) or (c): the pipeline into `sink` (`delta` or `parquet`) under `dir`; the phase and
/// the Delta table version.
async fn pipeline(
    b: &PipelineBench,
    topic: &str,
    dir: &std::path::Path,
    sink: &str,
    raw: &Phase,
) -> Result<(Phase, Option<i64>), BenchError> {
    let text = manifest(b, topic, dir, sink);
    let loaded = crate::manifest::load_str(&text, std::path::Path::new("bench.yaml"), dir)
        .map_err(|e| BenchError::Manifest(e.to_string()))?;
    reset_peak_rss();
    let (started, cpu) = (Instant::now(), cpu_time());
    let summary = engine::run(
        &loaded,
        RunOptions {
            secrets: Arc::new(EnvSecrets),
            consumer_overrides: BTreeMap::new(),
            on_batch: None,
            metrics: None,
        },
        ProgressState::default(),
        CancellationToken::new(),
    )
    .await?;
    let elapsed = started.elapsed();
    let rows = summary.rows.max(0) as u64;
    let phase = Phase {
        records: rows,
        // The same payloads as (a).
        bytes: raw.bytes * rows / raw.records.max(1),
        elapsed,
        peak_rss: peak_rss(),
        cpu: cpu_time().zip(cpu).map(|(b, a)| b.saturating_sub(a)),
    };
    Ok((phase, summary.table_version))
}

/// (a), off the runtime's threads.
async fn raw_phase(b: &PipelineBench, topic: &str, tuned: bool) -> Result<Phase, BenchError> {
    reset_peak_rss();
    let (bs, t, n) = (b.bootstrap.clone(), topic.to_string(), b.partitions);
    tokio::task::spawn_blocking(move || raw_consume(&bs, &t, n, tuned)).await?
}

/// Runs every phase, one after the other.
pub async fn run(b: &PipelineBench) -> Result<PipelineReport, BenchError> {
    let topic = b
        .topic
        .clone()
        .unwrap_or_else(|| format!("spillway-bench-{}-{}", b.records, b.partitions));
    let preload = preload(b, &topic).await?;

    let raw_default = raw_phase(b, &topic, false).await?;
    let raw_tuned = raw_phase(b, &topic, true).await?;

    let dir = match &b.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("spillway-bench-{}", uuid::Uuid::new_v4())),
    };
    std::fs::create_dir_all(&dir)?;
    let ceiling = if raw_tuned.rate() >= raw_default.rate() {
        &raw_tuned
    } else {
        &raw_default
    };
    let (delta, table_version) = pipeline(b, &topic, &dir, "delta", ceiling).await?;
    let (parquet, _) = pipeline(b, &topic, &dir, "parquet", ceiling).await?;
    Ok(PipelineReport {
        topic,
        preload,
        raw_default,
        raw_tuned,
        delta,
        parquet,
        table_version,
    })
}

/// The printed report.
pub fn format_report(r: &PipelineReport) -> String {
    let mib = |b: Option<u64>| {
        b.map_or("n/a".to_string(), |b| {
            format!("{:.0} MiB", b as f64 / 1048576.0)
        })
    };
    let line = |name: &str, p: &Phase| {
        format!(
            "{name:<30} {:>10} {:>11.0} {:>8.1} {:>8.2} {:>9} {:>9}\n",
            p.records,
            p.rate(),
            p.mb_per_s(),
            p.elapsed.as_secs_f64(),
            p.cpu_per_million()
                .map_or("n/a".to_string(), |c| format!("{c:.2}")),
            mib(p.peak_rss)
        )
    };
    let (which, ceiling) = r.ceiling();
    let ratio = |p: &Phase| p.rate() / ceiling.rate().max(1e-9);
    let mut out = format!(
        "spillway bench pipeline: topic {} ({}), Delta table version {}\n{:<30} {:>10} {:>11} {:>8} {:>8} {:>9} {:>9}\n",
        r.topic,
        r.preload,
        r.table_version.map_or("-".into(), |v| v.to_string()),
        "phase",
        "records",
        "records/s",
        "MB/s",
        "seconds",
        "CPU s/M",
        "peak RSS"
    );
    out.push_str(&line("(a) raw consume, defaults", &r.raw_default));
    out.push_str(&line("(a) raw consume, tuned fetch", &r.raw_tuned));
    out.push_str(&line("(b) Kafka -> Delta, e2e", &r.delta));
    out.push_str(&line("(c) Kafka -> Parquet, e2e", &r.parquet));
    out.push_str(&format!(
        "ceiling a = raw consume, {which} (tuned: fetch.queue.backoff.ms=1, queued.min.messages=1000000, fetch.wait.max.ms=100)\n\
         ratio b/a: {:.2}, c/a: {:.2} (target >= 0.80); peak RSS of (b): {}, (c): {} (target < 1024 MiB)\n",
        ratio(&r.delta),
        ratio(&r.parquet),
        mib(r.delta.peak_rss),
        mib(r.parquet.peak_rss)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_prints_rates_cpu_and_the_ratios_to_the_faster_ceiling() {
        let p = |records, secs| Phase {
            records,
            bytes: records * 40,
            elapsed: Duration::from_secs(secs),
            peak_rss: Some(64 * 1048576),
            cpu: Some(Duration::from_millis(1500)),
        };
        let r = PipelineReport {
            topic: "t".into(),
            preload: "reused".into(),
            raw_default: p(1_000_000, 2),
            raw_tuned: p(1_000_000, 1),
            delta: p(1_000_000, 2),
            parquet: p(1_000_000, 4),
            table_version: Some(3),
        };
        let text = format_report(&r);
        assert!(text.contains("ceiling a = raw consume, tuned"), "{text}");
        assert!(text.contains("ratio b/a: 0.50, c/a: 0.25"), "{text}");
        assert!(text.contains("1000000     1000000"), "{text}");
        assert!(text.contains("1.50"), "CPU seconds per million: {text}");
        assert!(text.contains("64 MiB"), "{text}");
    }
}
