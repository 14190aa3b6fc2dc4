//! Worker metrics (prometheus-client, OpenMetrics): one struct, one `register()`.
//!
//! Every series carries the `pipeline` label; per-partition series add `topic` and
//! `partition` (bounded by the worker's assignment). Prometheus adds `namespace` and `pod`
//! when it scrapes. The names are the contract of the Grafana dashboard and the alert
//! rules (`config/`), listed in `docs/metrics.md`.

use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use spillway_api::StreamingQueryProgress;

/// The pipeline label (bounded: one per worker process).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabel {
    /// Pipeline name.
    pub pipeline: String,
}

/// Pipeline and stage labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// Pipeline name.
    pub pipeline: String,
    /// fetch, decode, transform, write, commit, triggerExecution.
    pub stage: String,
}

/// Pipeline and bad-record reason labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Pipeline name.
    pub pipeline: String,
    /// The bad-record reason (`WrongMagicByte`, `Truncated`, …).
    pub reason: String,
}

/// Pipeline and batch outcome labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// Pipeline name.
    pub pipeline: String,
    /// `committed` (rows written), `empty` (positions only), `abandoned` (fenced by
    /// another writer) or `failed`.
    pub outcome: String,
}

/// Pipeline, topic and partition labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Pipeline name.
    pub pipeline: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The worker's metrics.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// Records read from Kafka.
    pub input_records: Family<PipelineLabel, Counter>,
    /// Rows committed to the sink.
    pub output_rows: Family<PipelineLabel, Counter>,
    /// Bad records (whatever the policy) by reason.
    pub bad_records: Family<ReasonLabel, Counter>,
    /// Bad records written to the dead-letter destination, by reason.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Batches by outcome.
    pub batches: Family<OutcomeLabel, Counter>,
    /// Offsets deleted by retention before they were read (`onDataLoss: skip`).
    pub data_loss_offsets: Family<PipelineLabel, Counter>,
    /// Rows older than the watermark, dropped.
    pub dropped_by_watermark: Family<PipelineLabel, Counter>,
    /// Whole-batch durations (`triggerExecution`).
    pub batch_seconds: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    /// Stage durations.
    pub stage_seconds: Family<StageLabel, Histogram, fn() -> Histogram>,
    /// Table (or dataset) version after the last commit.
    pub table_version: Family<PipelineLabel, Gauge>,
    /// Records behind the high watermark, per partition.
    pub lag_records: Family<PartitionLabel, Gauge>,
    /// The broker's high watermark, per partition.
    pub latest_offset: Family<PartitionLabel, Gauge>,
    /// The next offset committed to the sink, per partition.
    pub committed_offset: Family<PartitionLabel, Gauge>,
    /// Greatest event time seen (seconds since the epoch).
    pub event_time_max: Family<PipelineLabel, FloatGauge>,
    /// The event-time watermark (seconds since the epoch).
    pub watermark: Family<PipelineLabel, FloatGauge>,
    /// When the last batch committed (seconds since the epoch).
    pub last_commit: Family<PipelineLabel, FloatGauge>,
    /// The trigger interval (0 for `availableNow`).
    pub trigger_interval: Family<PipelineLabel, FloatGauge>,
    /// When this worker started (seconds since the epoch).
    pub start_time: Family<PipelineLabel, FloatGauge>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn parse_time(s: &str) -> Option<f64> {
    let t: jiff::Timestamp = s.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}

impl WorkerMetrics {
    /// Creates the metrics and registers them with `spillway_` names.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            input_records: Family::default(),
            output_rows: Family::default(),
            bad_records: Family::default(),
            dead_letters: Family::default(),
            batches: Family::default(),
            data_loss_offsets: Family::default(),
            dropped_by_watermark: Family::default(),
            batch_seconds: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            stage_seconds: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            table_version: Family::default(),
            lag_records: Family::default(),
            latest_offset: Family::default(),
            committed_offset: Family::default(),
            event_time_max: Family::default(),
            watermark: Family::default(),
            last_commit: Family::default(),
            trigger_interval: Family::default(),
            start_time: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("spillway");
        r.register(
            "input_records",
            "Records read from Kafka",
            m.input_records.clone(),
        );
        r.register(
            "output_rows",
            "Rows committed to the sink",
            m.output_rows.clone(),
        );
        r.register(
            "bad_records",
            "Bad records (skipped, dead-lettered or failing the pipeline) by reason",
            m.bad_records.clone(),
        );
        r.register(
            "dead_letters",
            "Bad records written to the dead-letter destination by reason",
            m.dead_letters.clone(),
        );
        r.register(
            "batches",
            "Micro-batches by outcome (committed, empty, abandoned, failed)",
            m.batches.clone(),
        );
        r.register(
            "data_loss_offsets",
            "Offsets deleted by retention before they were read",
            m.data_loss_offsets.clone(),
        );
        r.register(
            "rows_dropped_by_watermark",
            "Rows older than the event-time watermark, dropped",
            m.dropped_by_watermark.clone(),
        );
        r.register_with_unit(
            "batch_duration",
            "Duration of a whole micro-batch (triggerExecution)",
            Unit::Seconds,
            m.batch_seconds.clone(),
        );
        r.register_with_unit(
            "batch_stage_duration",
            "Duration of each stage of a batch",
            Unit::Seconds,
            m.stage_seconds.clone(),
        );
        r.register(
            "table_version",
            "Sink table (or dataset) version after the last commit",
            m.table_version.clone(),
        );
        r.register(
            "lag_records",
            "Records behind the partition's high watermark",
            m.lag_records.clone(),
        );
        r.register(
            "latest_offset",
            "The partition's high watermark on the broker",
            m.latest_offset.clone(),
        );
        r.register(
            "committed_offset",
            "Next offset of the partition committed to the sink",
            m.committed_offset.clone(),
        );
        r.register_with_unit(
            "event_time_max",
            "Greatest event time seen, since the epoch",
            Unit::Seconds,
            m.event_time_max.clone(),
        );
        r.register_with_unit(
            "watermark",
            "Event-time watermark (max event time - allowed lateness), since the epoch",
            Unit::Seconds,
            m.watermark.clone(),
        );
        r.register_with_unit(
            "last_commit_timestamp",
            "When the last batch committed, since the epoch",
            Unit::Seconds,
            m.last_commit.clone(),
        );
        r.register_with_unit(
            "trigger_interval",
            "Trigger interval (0 with availableNow)",
            Unit::Seconds,
            m.trigger_interval.clone(),
        );
        r.register_with_unit(
            "worker_start_time",
            "When this worker process started, since the epoch",
            Unit::Seconds,
            m.start_time.clone(),
        );
        m
    }

    fn label(pipeline: &str) -> PipelineLabel {
        PipelineLabel {
            pipeline: pipeline.to_string(),
        }
    }

    /// Records a started pipeline: its start time and trigger interval.
    pub fn started(&self, pipeline: &str, trigger_interval_secs: f64) {
        let l = Self::label(pipeline);
        self.start_time.get_or_create(&l).set(now_secs());
        self.trigger_interval
            .get_or_create(&l)
            .set(trigger_interval_secs);
        // Present from the start, so rate() and alerts see zero rather than nothing.
        let _ = self.input_records.get_or_create(&l);
        let _ = self.output_rows.get_or_create(&l);
        let _ = self.data_loss_offsets.get_or_create(&l);
        let _ = self.dropped_by_watermark.get_or_create(&l);
        for outcome in ["committed", "empty", "abandoned", "failed"] {
            let _ = self.batches.get_or_create(&OutcomeLabel {
                pipeline: pipeline.to_string(),
                outcome: outcome.into(),
            });
        }
    }

    /// Counts a batch that did not commit (`abandoned` or `failed`).
    pub fn batch_outcome(&self, pipeline: &str, outcome: &str) {
        self.batches
            .get_or_create(&OutcomeLabel {
                pipeline: pipeline.to_string(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts offsets lost to retention.
    pub fn data_loss(&self, pipeline: &str, offsets: i64) {
        self.data_loss_offsets
            .get_or_create(&Self::label(pipeline))
            .inc_by(offsets.max(0) as u64);
    }

    /// Records a committed batch's report (`badRecords.<Reason>` and
    /// `deadLetters.<Reason>` sink metrics carry the per-reason counts).
    pub fn observe(&self, pipeline: &str, p: &StreamingQueryProgress) {
        let l = Self::label(pipeline);
        self.input_records
            .get_or_create(&l)
            .inc_by(p.num_input_rows.max(0) as u64);
        self.output_rows
            .get_or_create(&l)
            .inc_by(p.sink.num_output_rows.max(0) as u64);
        self.dropped_by_watermark
            .get_or_create(&l)
            .inc_by(p.num_rows_dropped_by_watermark.max(0) as u64);
        for (key, value) in &p.sink.metrics {
            let n = value.parse::<u64>().unwrap_or(0);
            let family = if let Some(reason) = key.strip_prefix("badRecords.") {
                Some((&self.bad_records, reason))
            } else {
                key.strip_prefix("deadLetters.")
                    .map(|reason| (&self.dead_letters, reason))
            };
            if let Some((family, reason)) = family {
                family
                    .get_or_create(&ReasonLabel {
                        pipeline: pipeline.to_string(),
                        reason: reason.to_string(),
                    })
                    .inc_by(n);
            }
        }
        let outcome = if p.sink.num_output_rows > 0 {
            "committed"
        } else {
            "empty"
        };
        self.batch_outcome(pipeline, outcome);
        if let Some(v) = p.sink.table_version {
            self.table_version.get_or_create(&l).set(v);
        }
        self.last_commit.get_or_create(&l).set(now_secs());
        for s in &p.sources {
            for (topic, parts) in &s.latest_offset {
                for (partition, high) in parts {
                    let label = PartitionLabel {
                        pipeline: pipeline.to_string(),
                        topic: topic.clone(),
                        partition: partition.clone(),
                    };
                    self.latest_offset.get_or_create(&label).set(*high);
                    if let Some(end) = s.end_offset.get(topic).and_then(|x| x.get(partition)) {
                        self.lag_records
                            .get_or_create(&label)
                            .set((high - end).max(0));
                    }
                }
            }
            for (topic, parts) in &s.end_offset {
                for (partition, end) in parts {
                    self.committed_offset
                        .get_or_create(&PartitionLabel {
                            pipeline: pipeline.to_string(),
                            topic: topic.clone(),
                            partition: partition.clone(),
                        })
                        .set(*end);
                }
            }
        }
        if let Some(et) = &p.event_time {
            if let Some(max) = et.max.as_deref().and_then(parse_time) {
                self.event_time_max.get_or_create(&l).set(max);
            }
            if let Some(wm) = et.watermark.as_deref().and_then(parse_time) {
                self.watermark.get_or_create(&l).set(wm);
            }
        }
        if let Some(ms) = p.duration_ms.get("triggerExecution") {
            self.batch_seconds
                .get_or_create(&l)
                .observe(*ms as f64 / 1000.0);
        }
        for (stage, ms) in &p.duration_ms {
            self.stage_seconds
                .get_or_create(&StageLabel {
                    pipeline: pipeline.to_string(),
                    stage: stage.clone(),
                })
                .observe(*ms as f64 / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_api::{EventTimeStats, SinkProgress, SourceProgress};

    #[test]
    fn a_report_becomes_the_documented_series() {
        let mut registry = Registry::default();
        let m = WorkerMetrics::register(&mut registry);
        m.started("p", 10.0);
        let report = StreamingQueryProgress {
            num_input_rows: 12,
            duration_ms: [("triggerExecution".to_string(), 250), ("decode".into(), 5)].into(),
            event_time: Some(EventTimeStats {
                max: Some("2026-11-22T00:00:10Z".into()),
                watermark: Some("2026-11-22T00:00:05Z".into()),
                ..Default::default()
            }),
            sources: vec![SourceProgress {
                end_offset: [("t".to_string(), [("0".to_string(), 40)].into())].into(),
                latest_offset: [("t".to_string(), [("0".to_string(), 50)].into())].into(),
                ..Default::default()
            }],
            sink: SinkProgress {
                num_output_rows: 10,
                table_version: Some(7),
                metrics: [
                    ("badRecords.Truncated".to_string(), "2".to_string()),
                    ("deadLetters.Truncated".to_string(), "2".to_string()),
                    ("numBadRecords".to_string(), "2".to_string()),
                ]
                .into(),
                ..Default::default()
            },
            ..Default::default()
        };
        m.observe("p", &report);
        m.data_loss("p", 3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"spillway_input_records_total{pipeline="p"} 12"#,
            r#"spillway_output_rows_total{pipeline="p"} 10"#,
            r#"spillway_bad_records_total{pipeline="p",reason="Truncated"} 2"#,
            r#"spillway_dead_letters_total{pipeline="p",reason="Truncated"} 2"#,
            r#"spillway_batches_total{pipeline="p",outcome="committed"} 1"#,
            r#"spillway_batches_total{pipeline="p",outcome="failed"} 0"#,
            r#"spillway_data_loss_offsets_total{pipeline="p"} 3"#,
            r#"spillway_table_version{pipeline="p"} 7"#,
            r#"spillway_lag_records{pipeline="p",topic="t",partition="0"} 10"#,
            r#"spillway_latest_offset{pipeline="p",topic="t",partition="0"} 50"#,
            r#"spillway_committed_offset{pipeline="p",topic="t",partition="0"} 40"#,
            r#"spillway_event_time_max_seconds{pipeline="p"} 1795305610.0"#,
            r#"spillway_watermark_seconds{pipeline="p"} 1795305605.0"#,
            r#"spillway_trigger_interval_seconds{pipeline="p"} 10.0"#,
            r#"spillway_batch_duration_seconds_count{pipeline="p"} 1"#,
            r#"spillway_batch_stage_duration_seconds_count{pipeline="p",stage="decode"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains("spillway_last_commit_timestamp_seconds{pipeline=\"p\"}"));
        assert!(text.contains("spillway_worker_start_time_seconds{pipeline=\"p\"}"));
    }
}
