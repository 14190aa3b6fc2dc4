//! Pure: `spec.source.kafka` — brokers, topics, starting offsets, batch size, security.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::{SecretKeyRef, defaults, rules};

/// Where records come from.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// A Kafka (or Kafka-protocol) cluster.
    pub kafka: KafkaSource,
}

/// A Kafka consumer-group source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::KAFKA_TOPICS_XOR_PATTERN)]
#[x_kube(validation = rules::KAFKA_TIMESTAMP_NEEDS_VALUE)]
#[x_kube(validation = rules::KAFKA_OFFSETS_NEED_VALUE)]
#[x_kube(validation = rules::KAFKA_ENDING_TIMESTAMP_NEEDS_VALUE)]
#[x_kube(validation = rules::KAFKA_ENDING_OFFSETS_NEED_VALUE)]
#[x_kube(validation = rules::KAFKA_TIMESTAMPS_IN_ORDER)]
#[x_kube(validation = rules::KAFKA_PROPERTIES_NO_SECRETS)]
#[x_kube(validation = rules::KAFKA_PROPERTIES_NOT_MANAGED)]
#[x_kube(validation = rules::KAFKA_EAGER_REBALANCE)]
pub struct KafkaSource {
    /// Comma-separated `host:port` list of bootstrap brokers.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Topics to read. Exactly one of `topics` and `topicPattern` is set. Each a Kafka
    /// topic name: 1–249 letters, digits, `.`, `_` or `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1),
        inner(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub topics: Option<Vec<String>>,
    /// A regular expression; every matching topic is read, including ones created later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub topic_pattern: Option<String>,
    /// Consumer group. Default `spillway.<namespace>.<name>`. Offsets are committed to it
    /// after each sink commit so lag tools see the pipeline; the sink stays the source of truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub group_id: Option<String>,
    /// Where to start in partitions the sink holds no position for yet: `earliest`,
    /// `latest`, `timestamp` (with `startingTimestamp`) or `offsets` (with
    /// `startingPartitionOffsets`). Once the sink has committed, it decides.
    #[serde(default)]
    pub starting_offsets: StartingOffsets,
    /// With `startingOffsets: timestamp`: each partition starts at the first record at or
    /// after this RFC 3339 time, with seconds and an offset (`2025-01-31T12:00:00Z`,
    /// `2025-01-31T12:00:00.5+01:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        extend("format" = "date-time"),
        regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")
    )]
    pub starting_timestamp: Option<String>,
    /// With `startingOffsets: offsets`: `{topic: {partition: offset}}`; -2 means earliest and
    /// -1 latest, as in Spark. Unlisted partitions start at earliest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_partition_offsets: Option<BTreeMap<String, BTreeMap<String, i64>>>,
    /// Makes the run bounded (Spark's `endingOffsets`): every partition is read up to its
    /// end offset (exclusive), committed exactly once, and the run ends (`Completed`; the
    /// operator runs it as a Job). `latest`: each partition's end when the run first
    /// starts; `timestamp` (with `endingTimestamp`): the first offset at or after that time;
    /// `offsets` (with `endingPartitionOffsets`). The ends are resolved once and kept in the
    /// checkpoint, so every worker, a restart and a re-run read the same range. Omitted:
    /// the pipeline runs until stopped (or `trigger.availableNow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending_offsets: Option<EndingOffsets>,
    /// With `endingOffsets: timestamp`: each partition ends before its first record at or
    /// after this RFC 3339 time (its current end when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        extend("format" = "date-time"),
        regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")
    )]
    pub ending_timestamp: Option<String>,
    /// With `endingOffsets: offsets`: `{topic: {partition: offset}}`, each the first offset
    /// not read; -1 means latest, as in Spark. Unlisted partitions end at latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending_partition_offsets: Option<BTreeMap<String, BTreeMap<String, i64>>>,
    /// Spark's `maxOffsetsPerTrigger`: a micro-batch closes after this many records.
    #[serde(default = "defaults::max_records_per_batch")]
    #[schemars(range(min = 1))]
    pub max_records_per_batch: i64,
    /// A micro-batch also closes before its records' key and value bytes would pass this
    /// many (1 MiB to 1 GiB; default 256 MiB), so memory stays bounded and no column of a
    /// batch can reach Arrow's 2 GiB limit. A single record larger than this still goes
    /// through, in a batch of its own.
    #[serde(default = "defaults::max_bytes_per_batch")]
    #[schemars(range(min = 1_048_576, max = 1_073_741_824))]
    pub max_bytes_per_batch: i64,
    /// Spark's `failOnDataLoss`: what to do when offsets the pipeline still needed were
    /// deleted from Kafka (retention) before they were read. Never a silent reset.
    #[serde(default)]
    pub on_data_loss: OnDataLoss,
    /// Transport security and authentication; credentials by secret reference only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<KafkaSecurity>,
    /// Extra librdkafka consumer properties (e.g. `fetch.max.bytes`). Refused: credentials,
    /// the properties Spillway manages (offset handling, `auto.offset.reset=earliest`,
    /// `isolation.level=read_committed`, `enable.partition.eof`) and incremental rebalancing
    /// (`cooperative-sticky`, `group.protocol: consumer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
}

/// Starting position for partitions without a committed position.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum StartingOffsets {
    /// The oldest offset still on the broker.
    #[default]
    Earliest,
    /// The end of each partition: only records produced after the start.
    Latest,
    /// The first offset at or after `startingTimestamp`.
    Timestamp,
    /// Explicit offsets from `startingPartitionOffsets`.
    Offsets,
}

/// Where a bounded run ends (`endingOffsets`).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum EndingOffsets {
    /// The end of each partition when the run first starts.
    Latest,
    /// The first offset at or after `endingTimestamp`.
    Timestamp,
    /// Explicit offsets from `endingPartitionOffsets`.
    Offsets,
}

/// Behaviour when needed offsets are gone from Kafka.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum OnDataLoss {
    /// Stop with condition `DataLoss` (Spark's `failOnDataLoss=true`).
    #[default]
    Fail,
    /// Continue from the earliest available offset and count the lost offsets.
    Skip,
}

/// Kafka transport security.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::SECURITY_SASL_NEEDS_CONFIG)]
#[x_kube(validation = rules::SECURITY_SASL_NEEDS_PROTOCOL)]
#[x_kube(validation = rules::SECURITY_TLS_NEEDS_PROTOCOL)]
pub struct KafkaSecurity {
    /// librdkafka `security.protocol`.
    pub protocol: SecurityProtocol,
    /// SASL mechanism and credentials (secret references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,
    /// TLS trust and client certificate (secret references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// librdkafka `security.protocol`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

/// SASL authentication.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaslSpec {
    /// SASL mechanism.
    pub mechanism: SaslMechanism,
    /// Secret key holding the user name.
    pub username_secret_ref: SecretKeyRef,
    /// Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}

/// SASL mechanism.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// SASL/PLAIN.
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// TLS material, all by secret reference.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// Secret key holding the PEM CA bundle that signs the brokers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the PEM client certificate (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the PEM client private key (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeyRef>,
}

impl KafkaSource {
    /// The consumer group in force.
    pub fn effective_group_id(&self, namespace: &str, name: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| defaults::group_id(namespace, name))
    }
}
