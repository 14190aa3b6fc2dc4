//! Pure: `spec.sink`, `spec.storage` and `spec.errors` — where rows and bad records go.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::{SecretKeyRef, rules};

/// Where rows are committed. Exactly one of `delta` and `parquet`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::SINK_EXACTLY_ONE)]
pub struct SinkSpec {
    /// A Delta Lake table; batches commit with per-partition `txn` actions (exactly once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaSink>,
    /// A Parquet dataset with a write-ahead log and commit markers in the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetSink>,
}

/// A Delta Lake table sink.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::DELTA_MERGE_NEEDS_KEYS)]
#[x_kube(validation = rules::DELTA_MERGE_NEEDS_MODE)]
pub struct DeltaSink {
    /// Table location: `s3://bucket/path`, `file:///path` or a local path. Created from the
    /// reader schema and metadata columns when absent.
    #[schemars(length(min = 1))]
    #[x_kube(validation = rules::URI_SCHEME)]
    pub uri: String,
    /// `append` every row, or `merge` (upsert by key).
    #[serde(default)]
    pub mode: DeltaMode,
    /// Partition columns of a new table (Hive-style directories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub partition_by: Vec<String>,
    /// Merge (upsert) settings; required when `mode: merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeSpec>,
    /// What to do when a new writer schema adds fields.
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
}

/// Delta write mode.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum DeltaMode {
    /// Insert every row.
    #[default]
    Append,
    /// Upsert by `merge.keys`: one row per key, the latest by `merge.orderBy`.
    Merge,
}

/// Delta MERGE settings.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeSpec {
    /// Columns that identify a row (e.g. `[event_id]`).
    #[schemars(length(min = 1), extend("x-kubernetes-list-type" = "set"))]
    pub keys: Vec<String>,
    /// Column that orders versions of a row: within a batch the greatest wins (offset breaks
    /// ties), and a table row is updated only by a newer one. Omitted: Kafka offset order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub order_by: Option<String>,
}

/// Table schema evolution policy.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum SchemaEvolution {
    /// The table schema never changes; records that need a change follow `errors.onBadRecord`
    /// with reason `SchemaIncompatible`.
    #[default]
    None,
    /// New nullable columns are added to the table in one commit when a writer schema adds
    /// fields. Incompatible changes are still bad records.
    AddColumns,
}

/// A Parquet dataset sink.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParquetSink {
    /// Dataset location: `s3://bucket/path`, `file:///path` or a local path.
    #[schemars(length(min = 1))]
    #[x_kube(validation = rules::URI_SCHEME)]
    pub uri: String,
    /// Partition columns (Hive-style `col=value` directories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub partition_by: Vec<String>,
    /// Parquet compression codec.
    #[serde(default)]
    pub compression: ParquetCompression,
}

/// Parquet compression codec.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum ParquetCompression {
    /// Zstandard (level 3).
    #[default]
    Zstd,
    /// Snappy.
    Snappy,
    /// No compression.
    Uncompressed,
}

/// Object-store settings for every `s3://` URI of the pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::STORAGE_HTTP_NEEDS_ALLOW)]
#[x_kube(validation = rules::STORAGE_OPTIONS_NO_SECRETS)]
pub struct StorageSpec {
    /// S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3-compatible endpoint URL (MinIO, Ceph, moto, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style.
    #[serde(default)]
    pub path_style: bool,
    /// Allow a plain `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
    /// Static credentials by secret reference. Omitted: the default AWS credential chain
    /// (IRSA / pod identity, instance profile, environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<StorageCredentials>,
    /// Extra object_store / delta-rs options (non-secret), e.g. `aws_conditional_put`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// Object-store credentials, each a key of a Secret.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageCredentials {
    /// Secret key holding the access key id.
    pub access_key_id: SecretKeyRef,
    /// Secret key holding the secret access key.
    pub secret_access_key: SecretKeyRef,
    /// Secret key holding a session token, for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretKeyRef>,
}

/// Bad-record handling.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::ERRORS_DEAD_LETTER_NEEDS_DESTINATION)]
pub struct ErrorHandling {
    /// A record that cannot be decoded, converted or written: `fail` stops the pipeline with
    /// the reason, `skip` counts it, `deadLetter` writes it to `deadLetter` with the reason.
    /// A schema-registry outage is not a bad record: the worker waits and retries.
    #[serde(default)]
    pub on_bad_record: OnBadRecord,
    /// Dead-letter destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,
}

/// Bad-record policy.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum OnBadRecord {
    /// Stop with condition `Failed` and the record's position and reason.
    #[default]
    Fail,
    /// Drop the record and count it.
    Skip,
    /// Write it to the dead-letter destination.
    DeadLetter,
}

/// Dead-letter destination: one Kafka topic or one Delta table.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::DEAD_LETTER_EXACTLY_ONE)]
pub struct DeadLetterSpec {
    /// A topic on the source cluster: raw value and key, with the source topic, partition,
    /// offset, error class and message as headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<DeadLetterKafka>,
    /// A Delta table with the same fields as columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeadLetterDelta>,
}

/// Dead letters to a Kafka topic.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterKafka {
    /// Topic name.
    #[schemars(length(min = 1))]
    pub topic: String,
}

/// Dead letters to a Delta table.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterDelta {
    /// Table location: `s3://bucket/path`, `file:///path` or a local path.
    #[schemars(length(min = 1))]
    #[x_kube(validation = rules::URI_SCHEME)]
    pub uri: String,
}
