//! Pure: `status` — phase, conditions, and Spark's `StreamingQueryProgress`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::{Deserialize, Serialize};

/// Observed state of a pipeline, written by the operator.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamingPipelineStatus {
    /// Pending, Running, Degraded, Suspended, Failed or Completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Worker pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Worker pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the worker pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Ready, Progressing, Degraded, and DataLoss / SchemaError when a worker reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The latest progress, merged across the ready workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<StreamingQueryProgress>,
    /// Records behind the high watermarks, summed over partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// The most recent error, without secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// The last runs of table maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceStatus>,
}

/// Lifecycle phase.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; workers not ready yet.
    Pending,
    /// Workers ready and committing.
    Running,
    /// Running with a problem (a worker not answering, errors, lag growing).
    Degraded,
    /// `spec.suspend` is true: scaled to zero.
    Suspended,
    /// Stopped by an invalid spec, data loss or a fatal error.
    Failed,
    /// An `availableNow` run finished.
    Completed,
}

/// The most recent error.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// A CamelCase reason, e.g. `InvalidSpec`, `DataLoss`.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
    /// When it happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The last maintenance runs.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceStatus {
    /// Last optimize run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_optimize: Option<MaintenanceRun>,
    /// Last vacuum run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_vacuum: Option<MaintenanceRun>,
}

/// One maintenance run.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceRun {
    /// When it finished (RFC 3339).
    pub time: String,
    /// `Succeeded` or `Failed`.
    pub result: String,
    /// Table version it produced, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<i64>,
}

/// Offsets by topic then partition, as Spark prints them: `{"hsudemo": {"0": 42}}`.
pub type TopicOffsets = BTreeMap<String, BTreeMap<String, i64>>;

/// Spark's `StreamingQueryProgress`, one per micro-batch.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamingQueryProgress {
    /// Query id, stable across restarts (kept in the checkpoint).
    pub id: String,
    /// Run id, new at every start.
    pub run_id: String,
    /// The pipeline's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Micro-batch number, increasing from 0 over the query's life.
    pub batch_id: i64,
    /// When the batch started (RFC 3339, UTC).
    pub timestamp: String,
    /// Records read in the batch.
    pub num_input_rows: i64,
    /// Rate at which records arrived (since the previous batch).
    pub input_rows_per_second: f64,
    /// Rate at which the batch processed records.
    pub processed_rows_per_second: f64,
    /// Milliseconds per stage: fetch, decode, transform, write, commit, triggerExecution.
    #[serde(default)]
    pub duration_ms: BTreeMap<String, i64>,
    /// Event-time statistics of the batch and the watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTimeStats>,
    /// Rows dropped because they were older than the watermark.
    #[serde(default)]
    pub num_rows_dropped_by_watermark: i64,
    /// Per-source progress.
    #[serde(default)]
    pub sources: Vec<SourceProgress>,
    /// Sink progress.
    #[serde(default)]
    pub sink: SinkProgress,
}

/// Event-time statistics (RFC 3339 strings, as Spark prints them).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventTimeStats {
    /// Minimum event time in the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// Maximum event time in the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Average event time in the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg: Option<String>,
    /// The watermark after the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

/// Progress of one source.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    /// e.g. `KafkaV2[Subscribe[hsudemo]]`.
    pub description: String,
    /// Offsets at the start of the batch.
    #[serde(default)]
    pub start_offset: TopicOffsets,
    /// Offsets at the end of the batch (next offset to read).
    #[serde(default)]
    pub end_offset: TopicOffsets,
    /// The brokers' high watermarks when the batch ended.
    #[serde(default)]
    pub latest_offset: TopicOffsets,
    /// Records read from this source.
    pub num_input_rows: i64,
    /// Arrival rate.
    pub input_rows_per_second: f64,
    /// Processing rate.
    pub processed_rows_per_second: f64,
    /// Source metrics, e.g. `maxOffsetsBehindLatest`, `avgOffsetsBehindLatest`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, String>,
}

/// Progress of the sink.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SinkProgress {
    /// e.g. `DeltaSink[s3://lake/tables/hsutest]`.
    pub description: String,
    /// Rows committed by the batch.
    pub num_output_rows: i64,
    /// Table version after the commit (Delta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<i64>,
    /// Sink metrics, e.g. `numFiles`, `numDeadLetters`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, String>,
}
