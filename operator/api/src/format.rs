//! Pure: `spec.format` — Avro (encoding, schema registry, writer and reader schemas),
//! JSON (a row schema, the mismatch mode, plain or Confluent-framed) or Protobuf (a
//! message type of `.proto` source or a descriptor set, raw or Confluent-framed).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigMapKeyRef, SecretKeyRef, defaults, rules};

/// How record values are encoded: exactly one of `avro`, `json` or `protobuf`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::FORMAT_EXACTLY_ONE)]
pub struct FormatSpec {
    /// Avro values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avro: Option<AvroFormat>,
    /// JSON values parsed with a row schema (Spark's `from_json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonFormat>,
    /// Protobuf values of one message type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protobuf: Option<ProtobufFormat>,
}

impl FormatSpec {
    /// Avro values with this format.
    pub fn avro(avro: AvroFormat) -> Self {
        Self {
            avro: Some(avro),
            json: None,
            protobuf: None,
        }
    }

    /// Protobuf values with this format.
    pub fn protobuf(protobuf: ProtobufFormat) -> Self {
        Self {
            avro: None,
            json: None,
            protobuf: Some(protobuf),
        }
    }

    /// How many of the formats are set (a valid spec has one).
    pub fn count(&self) -> usize {
        usize::from(self.avro.is_some())
            + usize::from(self.json.is_some())
            + usize::from(self.protobuf.is_some())
    }

    /// The schema registry of whichever format is set.
    pub fn schema_registry(&self) -> Option<&SchemaRegistrySpec> {
        match (&self.avro, &self.json, &self.protobuf) {
            (Some(a), _, _) => a.schema_registry.as_ref(),
            (None, Some(j), _) => j.schema_registry.as_ref(),
            (None, None, Some(p)) => p.schema_registry.as_ref(),
            (None, None, None) => None,
        }
    }

    /// The Protobuf descriptor set, to change (the operator mounts ConfigMap keys).
    pub fn descriptor_set_mut(&mut self) -> Option<&mut DescriptorSetSource> {
        self.protobuf
            .as_mut()
            .and_then(|p| p.descriptor_set.as_mut())
    }

    /// The Protobuf descriptor set, if the format has one.
    pub fn descriptor_set(&self) -> Option<&DescriptorSetSource> {
        self.protobuf
            .as_ref()
            .and_then(|p| p.descriptor_set.as_ref())
    }

    /// The Avro writer schema (raw Avro only).
    pub fn writer_schema_mut(&mut self) -> Option<&mut SchemaSource> {
        self.avro.as_mut().and_then(|a| a.writer_schema.as_mut())
    }

    /// The schema rows are read into — Avro's `readerSchema`, JSON's `schema` or
    /// Protobuf's `.proto` `schema` — and its field path.
    pub fn row_schema(&self) -> Option<(&'static str, &ReaderSchema)> {
        match (&self.avro, &self.json, &self.protobuf) {
            (Some(a), _, _) => a
                .reader_schema
                .as_ref()
                .map(|r| ("spec.format.avro.readerSchema", r)),
            (None, Some(j), _) => Some(("spec.format.json.schema", &j.schema)),
            (None, None, Some(p)) => p
                .schema
                .as_ref()
                .map(|r| ("spec.format.protobuf.schema", r)),
            (None, None, None) => None,
        }
    }

    /// The schema rows are read into, to change.
    pub fn row_schema_mut(&mut self) -> Option<&mut ReaderSchema> {
        match (&mut self.avro, &mut self.json, &mut self.protobuf) {
            (Some(a), _, _) => a.reader_schema.as_mut(),
            (None, Some(j), _) => Some(&mut j.schema),
            (None, None, Some(p)) => p.schema.as_mut(),
            (None, None, None) => None,
        }
    }
}

/// JSON values: each one an object, parsed into the columns of a row schema.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::JSON_CONFLUENT_NEEDS_REGISTRY)]
#[x_kube(validation = rules::JSON_SCHEMA_REGISTRY_NEEDS_REGISTRY)]
pub struct JsonFormat {
    /// `plain` (default): the value is the JSON text. `confluent`: Confluent's JSON Schema
    /// serializer framing — magic byte 0, a 4-byte big-endian schema id the registry must
    /// know, then the JSON text.
    #[serde(default)]
    pub encoding: JsonEncoding,
    /// The row schema: an Avro record schema or a JSON Schema object (`type: object` with
    /// `properties`), given inline, from a file or ConfigMap, or a registry subject version.
    /// Its fields are the table's columns, typed as for Avro (docs/formats.md).
    pub schema: ReaderSchema,
    /// What a field whose value does not fit its type becomes: `PERMISSIVE` (default) null
    /// (a field that is not nullable still makes the record bad), `FAILFAST` the record is
    /// a bad record (`errors.onBadRecord`). Text that is not a JSON object is always bad.
    #[serde(default)]
    pub mode: JsonMode,
    /// Confluent-compatible schema registry (for `confluent` or a registry `schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySpec>,
}

/// JSON value framing.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum JsonEncoding {
    /// The value is the JSON text.
    #[default]
    Plain,
    /// Magic byte 0, a 4-byte schema id, then the JSON text.
    Confluent,
}

/// What a value that does not fit its field becomes (Spark's `from_json` modes).
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum JsonMode {
    /// The field is null.
    #[default]
    #[serde(rename = "PERMISSIVE")]
    Permissive,
    /// The record is a bad record.
    #[serde(rename = "FAILFAST")]
    FailFast,
}

/// Protobuf values of one message type: its fields (by number) are the table's columns.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::PROTOBUF_SCHEMA_EXACTLY_ONE)]
#[x_kube(validation = rules::PROTOBUF_CONFLUENT_NEEDS_REGISTRY)]
#[x_kube(validation = rules::PROTOBUF_SCHEMA_REGISTRY_NEEDS_REGISTRY)]
pub struct ProtobufFormat {
    /// `confluent`: Confluent's protobuf serializer framing — magic byte 0, a 4-byte
    /// big-endian schema id the registry must know, the message-index array, then the
    /// message; a record whose indexes name another message than `messageType` is a bad
    /// record. `raw`: the bare message.
    pub encoding: ProtobufEncoding,
    /// The message type rows are read as, by its full name (package included), e.g.
    /// `shop.v1.Order`. Writers of any version that kept its field numbers decode.
    #[schemars(
        length(min = 1),
        regex(pattern = r"^\.?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    )]
    pub message_type: String,
    /// `.proto` source holding `messageType` (it may import protobuf's well-known types),
    /// given inline, from a file or ConfigMap, or a registry subject version (whose
    /// references are fetched too). Exactly one of `schema` or `descriptorSet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<ReaderSchema>,
    /// A binary `FileDescriptorSet` holding `messageType` and its imports (`protoc
    /// --include_imports --descriptor_set_out=…`), from a file or a ConfigMap key
    /// (`binaryData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor_set: Option<DescriptorSetSource>,
    /// Confluent-compatible schema registry (for `confluent` or a registry `schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySpec>,
}

/// Protobuf value framing.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ProtobufEncoding {
    /// The bare message.
    Raw,
    /// Magic byte 0, a 4-byte schema id, the message indexes, then the message.
    Confluent,
}

/// A binary descriptor set from a file or a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::DESCRIPTOR_SET_EXACTLY_ONE)]
pub struct DescriptorSetSource {
    /// A path to the descriptor set file, relative to the manifest (local runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub file: Option<String>,
    /// A ConfigMap key holding it (the operator mounts it into the workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
}

/// Avro value encoding and schemas.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::AVRO_RAW_NEEDS_WRITER)]
#[x_kube(validation = rules::AVRO_CONFLUENT_NEEDS_REGISTRY)]
#[x_kube(validation = rules::AVRO_CONFLUENT_NO_WRITER)]
#[x_kube(validation = rules::AVRO_READER_REGISTRY_NEEDS_REGISTRY)]
#[x_kube(validation = rules::AVRO_RECORD_NAMES_NEED_CONFLUENT)]
pub struct AvroFormat {
    /// `confluent`: magic byte 0, a 4-byte big-endian schema id, then the Avro body (the
    /// writer schema comes from the registry). `raw`: the bare Avro body (schemaless),
    /// written with `writerSchema`.
    pub encoding: AvroEncoding,
    /// Confluent-compatible schema registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySpec>,
    /// The writer schema of raw (schemaless) values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_schema: Option<SchemaSource>,
    /// The schema rows are resolved to (Avro schema resolution): the table's schema.
    /// Omitted: the writer schema (raw), the record types' subjects (`recordNames`), or
    /// the first writer schema seen (confluent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_schema: Option<ReaderSchema>,
    /// Several record types on one topic (confluent only): the writer record names (full
    /// names) this pipeline reads. Records of other types are skipped and counted
    /// (`numOtherRecordTypes`), not bad records. One name: a table of that type. Several:
    /// one table with the union of their fields, each nullable, and a `_record_name`
    /// column naming each row's type. Without `readerSchema`, each type's reader is the
    /// latest version of its subject (`subjectNameStrategy`), read at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_names: Vec<String>,
    /// How the producers name the subjects of `recordNames` (Confluent's subject name
    /// strategies): `topicRecord` (default, `<topic>-<record name>`) or `record` (`<record
    /// name>`).
    #[serde(default)]
    pub subject_name_strategy: SubjectNameStrategy,
}

/// Confluent's subject name strategies for several record types on one topic.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum SubjectNameStrategy {
    /// `TopicRecordNameStrategy`: `<topic>-<record name>`.
    #[default]
    TopicRecord,
    /// `RecordNameStrategy`: `<record name>`.
    Record,
}

impl SubjectNameStrategy {
    /// The subject of record type `name` on `topic`.
    pub fn subject(self, topic: &str, name: &str) -> String {
        match self {
            Self::TopicRecord => format!("{topic}-{name}"),
            Self::Record => name.to_string(),
        }
    }
}

/// Avro value encoding.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AvroEncoding {
    /// Bare Avro body with a writer schema from the spec.
    Raw,
    /// Confluent wire format with a schema id.
    Confluent,
}

/// A Confluent-compatible schema registry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::REGISTRY_URL_NO_USERINFO)]
pub struct SchemaRegistrySpec {
    /// Base URL, e.g. `http://schema-registry.kafka:8081`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Basic-auth credentials (secret references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Timeout of one request (Go duration). Failed requests are retried with backoff.
    #[serde(default = "defaults::registry_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"))]
    pub timeout: String,
}

/// HTTP basic authentication by secret reference.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// Secret key holding the user name.
    pub username_secret_ref: SecretKeyRef,
    /// Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}

/// An Avro schema given in the spec, from a file, or from a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::SCHEMA_SOURCE_EXACTLY_ONE)]
pub struct SchemaSource {
    /// The schema's JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub inline: Option<String>,
    /// A path to an `.avsc` file, relative to the manifest (local runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub file: Option<String>,
    /// A ConfigMap key holding the schema (the operator mounts it into the workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
}

/// The reader schema: from the registry, or given like a writer schema.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::READER_SCHEMA_EXACTLY_ONE)]
pub struct ReaderSchema {
    /// A subject version in the schema registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySchemaRef>,
    /// The schema's JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub inline: Option<String>,
    /// A path to an `.avsc` file, relative to the manifest (local runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub file: Option<String>,
    /// A ConfigMap key holding the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
}

/// A subject version in the registry.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySchemaRef {
    /// Subject. Default `<topic>-value` (TopicNameStrategy) of the single topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub subject: Option<String>,
    /// `latest` (re-read at every start) or a version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(latest|[1-9][0-9]*)$"))]
    pub version: Option<String>,
}
