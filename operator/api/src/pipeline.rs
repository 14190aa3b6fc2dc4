//! Pure: the `StreamingPipeline` custom resource root, its spec, trigger and event time.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::rules;
use crate::{
    ErrorHandling, FormatSpec, MaintenanceSpec, SinkSpec, SourceSpec, StorageSpec,
    StreamingPipelineStatus, WorkerSpec, defaults,
};

/// A Kafka → Avro → Delta Lake / Parquet streaming ingestion pipeline.
///
/// The operator runs it as a Deployment of `replicas` workers in one consumer group; each
/// worker commits micro-batches exactly once to the sink and reports Spark-style progress,
/// which the operator merges into `status.progress`.
#[allow(clippy::duplicated_attributes)] // several printcolumn(type_ = …) are not duplicates
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "spillway.dev",
    version = "v1alpha1",
    kind = "StreamingPipeline",
    plural = "streamingpipelines",
    singular = "streamingpipeline",
    namespaced,
    status = "StreamingPipelineStatus",
    shortname = "sp",
    category = "spillway",
    doc = "A Kafka → Avro → Delta Lake / Parquet streaming ingestion pipeline",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Degraded, Suspended, Failed or Completed"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready worker pods"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired worker pods"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.lag",
        description = "Records behind the partitions' high watermarks"
    ),
    printcolumn(
        name = "Rows/s",
        type_ = "number",
        json_path = ".status.progress.processedRowsPerSecond",
        description = "Rows processed per second in the latest batches"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::MAINTENANCE_NEEDS_DELTA)]
#[x_kube(validation = rules::CHECKPOINT_NOT_SINK)]
#[x_kube(validation = rules::BOUNDED_NO_INTERVAL)]
pub struct StreamingPipelineSpec {
    /// Worker pods, each a member of the pipeline's consumer group. More replicas than
    /// partitions leaves the extra workers idle.
    #[serde(default = "defaults::replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Scale the workers to zero while keeping the checkpoint, the table and the status.
    #[serde(default)]
    pub suspend: bool,
    /// Where records come from.
    pub source: SourceSpec,
    /// How record values are encoded.
    pub format: FormatSpec,
    /// Optional per-batch transformation and the Kafka metadata columns to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformSpec>,
    /// Where rows are committed: a Delta table or a Parquet dataset.
    pub sink: SinkSpec,
    /// Where the pipeline keeps its checkpoint (write-ahead log, commit markers, watermark,
    /// writer schemas seen, recent progress).
    pub checkpoint: CheckpointSpec,
    /// Object-store settings used for the sink, the checkpoint and dead-letter tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// When micro-batches run. Omitted: every 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerSpec>,
    /// Event-time column and allowed lateness, for the watermark and late-row discard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTimeSpec>,
    /// What happens to a record that cannot be decoded, converted or written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorHandling>,
    /// Worker pod settings: image, resources, scheduling, service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerSpec>,
    /// Table maintenance (Delta only): compaction and vacuum schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceSpec>,
}

/// Where the checkpoint lives.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Checkpoint location: `s3://bucket/prefix`, `file:///path` or a local path. One
    /// checkpoint belongs to exactly one pipeline, and it is not the sink's location.
    #[schemars(length(min = 1))]
    #[x_kube(validation = rules::URI_SCHEME)]
    pub uri: String,
}

/// When micro-batches run: on an interval, or once over what is available now.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::TRIGGER_EXCLUSIVE)]
#[x_kube(validation = rules::TRIGGER_INTERVAL_POSITIVE)]
pub struct TriggerSpec {
    /// Processing-time trigger: a batch closes at most this long after it opened
    /// (Go duration, e.g. `10s`, `1m`). Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"))]
    pub interval: Option<String>,
    /// Spark's `availableNow`: read up to the end offsets seen at start, commit, then stop
    /// (the pipeline becomes `Completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_now: Option<bool>,
}

impl TriggerSpec {
    /// The interval in force: the given one, or the default when not `availableNow`.
    pub fn effective_interval(&self) -> &str {
        self.interval
            .as_deref()
            .unwrap_or(defaults::TRIGGER_INTERVAL)
    }
    /// Whether this is an availableNow (drain and stop) trigger.
    pub fn is_available_now(&self) -> bool {
        self.available_now.unwrap_or(false)
    }
}

/// The event-time column, which drives the watermark.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::EVENT_TIME_LATENESS_BOUNDED)]
pub struct EventTimeSpec {
    /// Column (after the transform) holding the event time: a timestamp, a date or epoch
    /// milliseconds.
    #[schemars(length(min = 1))]
    pub column: String,
    /// How far behind the maximum event time seen rows are still accepted (Go duration,
    /// e.g. `120h` for five days). Watermark = max event time − allowedLateness; older rows
    /// are dropped and counted.
    #[serde(default = "defaults::allowed_lateness")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"))]
    pub allowed_lateness: String,
}

/// Per-batch transformation.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformSpec {
    /// A stateless SQL statement over each micro-batch, which is the table `batch`
    /// (metadata columns included), e.g. `SELECT *, year(ts) AS year FROM batch WHERE amount > 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub sql: Option<String>,
    /// Kafka metadata columns added to each row before the transform, named `_topic`,
    /// `_partition`, `_offset`, `_timestamp`, `_timestamp_type`, `_key` and `_headers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub metadata_columns: Vec<MetadataColumn>,
}

/// A Kafka metadata column.
#[derive(
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[serde(rename_all = "camelCase")]
pub enum MetadataColumn {
    /// `_topic` (string).
    Topic,
    /// `_partition` (int32).
    Partition,
    /// `_offset` (int64).
    Offset,
    /// `_timestamp` (timestamp, milliseconds, UTC).
    Timestamp,
    /// `_timestamp_type` (string: CreateTime or LogAppendTime).
    TimestampType,
    /// `_key` (binary).
    Key,
    /// `_headers` (map of string to binary).
    Headers,
}

impl MetadataColumn {
    /// The column name in the table.
    pub fn column_name(self) -> &'static str {
        match self {
            Self::Topic => "_topic",
            Self::Partition => "_partition",
            Self::Offset => "_offset",
            Self::Timestamp => "_timestamp",
            Self::TimestampType => "_timestamp_type",
            Self::Key => "_key",
            Self::Headers => "_headers",
        }
    }
}

impl StreamingPipelineSpec {
    /// The trigger in force (defaults when omitted).
    pub fn effective_trigger(&self) -> TriggerSpec {
        self.trigger.clone().unwrap_or_default()
    }
    /// Whether the run ends by itself (`trigger.availableNow` or `source.kafka.endingOffsets`):
    /// the operator runs it as a Job, and the worker exits when every partition reached
    /// its end in the sink.
    pub fn is_bounded(&self) -> bool {
        self.effective_trigger().is_available_now() || self.source.kafka.ending_offsets.is_some()
    }
    /// Replicas the Deployment should run: zero when suspended.
    pub fn effective_replicas(&self) -> i32 {
        if self.suspend { 0 } else { self.replicas }
    }
}
