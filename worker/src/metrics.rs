//! Worker metrics (prometheus-client, OpenMetrics): one struct, one `register()`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
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

/// The worker's metrics.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// Records read from Kafka.
    pub input_records: Family<PipelineLabel, Counter>,
    /// Rows committed to the sink.
    pub output_rows: Family<PipelineLabel, Counter>,
    /// Bad records (skipped or dead-lettered).
    pub bad_records: Family<PipelineLabel, Counter>,
    /// Batches committed.
    pub batches: Family<PipelineLabel, Counter>,
    /// Stage durations.
    pub stage_seconds: Family<StageLabel, Histogram, fn() -> Histogram>,
    /// Table version after the last commit.
    pub table_version: Family<PipelineLabel, Gauge>,
    /// Records behind the high watermarks.
    pub lag_records: Family<PipelineLabel, Gauge>,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them with `spillway_` names.
    pub fn register(registry: &mut Registry) -> Self {
        fn stage_histogram() -> Histogram {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        }
        let m = Self {
            input_records: Family::default(),
            output_rows: Family::default(),
            bad_records: Family::default(),
            batches: Family::default(),
            stage_seconds: Family::new_with_constructor(stage_histogram as fn() -> Histogram),
            table_version: Family::default(),
            lag_records: Family::default(),
        };
        registry.register(
            "spillway_input_records",
            "Records read from Kafka",
            m.input_records.clone(),
        );
        registry.register(
            "spillway_output_rows",
            "Rows committed to the sink",
            m.output_rows.clone(),
        );
        registry.register(
            "spillway_bad_records",
            "Bad records skipped or dead-lettered",
            m.bad_records.clone(),
        );
        registry.register(
            "spillway_batches",
            "Micro-batches committed",
            m.batches.clone(),
        );
        registry.register(
            "spillway_batch_stage_duration_seconds",
            "Duration of each stage of a batch",
            m.stage_seconds.clone(),
        );
        registry.register(
            "spillway_table_version",
            "Sink table version after the last commit",
            m.table_version.clone(),
        );
        registry.register(
            "spillway_lag_records",
            "Records behind the partitions' high watermarks",
            m.lag_records.clone(),
        );
        m
    }

    /// Records a batch's report.
    pub fn observe(&self, pipeline: &str, p: &StreamingQueryProgress, lag: Option<i64>) {
        let l = PipelineLabel {
            pipeline: pipeline.to_string(),
        };
        self.input_records
            .get_or_create(&l)
            .inc_by(p.num_input_rows.max(0) as u64);
        self.output_rows
            .get_or_create(&l)
            .inc_by(p.sink.num_output_rows.max(0) as u64);
        let bad = p
            .sink
            .metrics
            .get("numBadRecords")
            .and_then(|b| b.parse::<u64>().ok())
            .unwrap_or(0);
        self.bad_records.get_or_create(&l).inc_by(bad);
        self.batches.get_or_create(&l).inc();
        if let Some(v) = p.sink.table_version {
            self.table_version.get_or_create(&l).set(v);
        }
        if let Some(lag) = lag {
            self.lag_records.get_or_create(&l).set(lag);
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
