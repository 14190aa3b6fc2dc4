//! I/O: `spillway bench pipeline` — the end-to-end rate against the raw consume ceiling,
//! measured side by side in one run on the same topic.
//!
//! (a) rdkafka reads every payload of the topic (no decoding, no writing): the ceiling.
//! (b) the HsuTestEvent pipeline, `availableNow`, from the same topic into a new local
//!     Delta table: what a user gets.
//! Both read from the beginning with the fetch settings the worker uses. Peak RSS is the
//! process's high-water mark (`VmHWM`), reset between the phases.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, RunOptions};
use crate::produce::{Encoding, ProduceOptions};
use crate::progress::ProgressState;
use crate::secrets::EnvSecrets;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Producing the input failed.
    #[error(transparent)]
    Produce(#[from] crate::produce::ProduceError),
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
}

impl Phase {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// The result.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineReport {
    /// Topic measured.
    pub topic: String,
    /// (a) raw consume.
    pub raw: Phase,
    /// (b) Kafka → Delta.
    pub pipeline: Phase,
    /// Delta table version at the end.
    pub table_version: Option<i64>,
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

/// Preloads the topic unless it already holds the records.
async fn preload(b: &PipelineBench, topic: &str) -> Result<u64, BenchError> {
    let want = b.records;
    crate::produce::ensure_topic(&b.bootstrap, topic, b.partitions).await?;
    let (bs, t, n) = (b.bootstrap.clone(), topic.to_string(), b.partitions);
    let have: i64 = tokio::task::spawn_blocking(move || high_watermarks(&bs, &t, n))
        .await??
        .values()
        .sum();
    if have as u64 == want {
        eprintln!("reusing {topic}: it holds {want} records");
        return Ok(want);
    }
    let opts = ProduceOptions {
        bootstrap: b.bootstrap.clone(),
        topic: topic.to_string(),
        rps: 0,
        count: b.records,
        seed: b.seed,
        key_by_user: false,
        encoding: Encoding::Raw,
        schema_registry: None,
        schema: None,
        partitions: Some(b.partitions),
        properties: vec![],
    };
    let s = crate::produce::produce(&opts, |_, _, _| {}).await?;
    eprintln!(
        "preloaded {} records into {topic} in {:.1}s",
        s.records,
        s.elapsed.as_secs_f64()
    );
    Ok(want)
}

/// (a): reads every payload from the beginning to the high watermarks.
fn raw_consume(bootstrap: &str, topic: &str, partitions: i32) -> Result<Phase, BenchError> {
    let end = high_watermarks(bootstrap, topic, partitions)?;
    let mut cc = ClientConfig::new();
    for (k, v) in crate::source::config::FETCH_DEFAULTS {
        cc.set(*k, *v);
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
    let started = Instant::now();
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
    })
}

fn manifest(b: &PipelineBench, topic: &str, dir: &std::path::Path) -> String {
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
    delta: {{uri: "{table}"}}
  checkpoint: {{uri: "{checkpoint}"}}
  trigger: {{availableNow: true}}
"#,
        bootstrap = b.bootstrap,
        group = uuid::Uuid::new_v4(),
        schema = crate::generate::HSUTEST_SCHEMA,
        table = dir.join("table").display(),
        checkpoint = dir.join("checkpoint").display(),
    )
}

/// Runs both phases.
pub async fn run(b: &PipelineBench) -> Result<PipelineReport, BenchError> {
    let topic = b
        .topic
        .clone()
        .unwrap_or_else(|| format!("spillway-bench-{}-{}", b.records, b.partitions));
    preload(b, &topic).await?;

    reset_peak_rss();
    let (bs, t, n) = (b.bootstrap.clone(), topic.clone(), b.partitions);
    let raw = tokio::task::spawn_blocking(move || raw_consume(&bs, &t, n)).await??;

    let dir = match &b.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("spillway-bench-{}", uuid::Uuid::new_v4())),
    };
    std::fs::create_dir_all(&dir)?;
    let text = manifest(b, &topic, &dir);
    let loaded = crate::manifest::load_str(&text, std::path::Path::new("bench.yaml"), &dir)
        .map_err(|e| BenchError::Manifest(e.to_string()))?;
    reset_peak_rss();
    let started = Instant::now();
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
    Ok(PipelineReport {
        topic,
        pipeline: Phase {
            records: rows,
            // The same payloads as (a).
            bytes: raw.bytes * rows / raw.records.max(1),
            elapsed,
            peak_rss: peak_rss(),
        },
        raw,
        table_version: summary.table_version,
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
            "{name:<28} {:>10} {:>12.0} {:>9.1} {:>10.2} {:>10}\n",
            p.records,
            p.rate(),
            p.mb_per_s(),
            p.elapsed.as_secs_f64(),
            mib(p.peak_rss)
        )
    };
    let ratio = r.pipeline.rate() / r.raw.rate().max(1e-9);
    let mut out = format!(
        "spillway bench pipeline: topic {}, Delta table version {}\n{:<28} {:>10} {:>12} {:>9} {:>10} {:>10}\n",
        r.topic,
        r.table_version.map_or("-".into(), |v| v.to_string()),
        "phase",
        "records",
        "records/s",
        "MB/s",
        "seconds",
        "peak RSS"
    );
    out.push_str(&line("(a) raw consume (rdkafka)", &r.raw));
    out.push_str(&line("(b) Kafka -> Delta, e2e", &r.pipeline));
    out.push_str(&format!(
        "ratio b/a: {ratio:.2} (target >= 0.50); peak RSS of (b): {} (target < 1024 MiB)\n",
        mib(r.pipeline.peak_rss)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_prints_rates_and_the_ratio() {
        let p = |records, secs| Phase {
            records,
            bytes: records * 40,
            elapsed: Duration::from_secs(secs),
            peak_rss: Some(64 * 1048576),
        };
        let r = PipelineReport {
            topic: "t".into(),
            raw: p(1_000_000, 1),
            pipeline: p(1_000_000, 2),
            table_version: Some(3),
        };
        let text = format_report(&r);
        assert!(text.contains("ratio b/a: 0.50"), "{text}");
        assert!(text.contains("1000000      1000000"), "{text}");
        assert!(text.contains("64 MiB"), "{text}");
    }
}
