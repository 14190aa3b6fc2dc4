//! I/O: decodes Kafka values per `spec.format` into Arrow rows of one schema, one bad
//! record at a time: [`avro`] (raw values with the spec's writer schema, or Confluent values
//! with per-id writer schemas from the registry, resolved to one reader schema), [`json`]
//! (JSON text, plain or Confluent-framed, parsed into a row schema) or [`protobuf`] (raw or
//! Confluent-framed messages of one message type).

mod avro;
mod json;
mod protobuf;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use spillway_api::{AvroFormat, ConfigMapKeyRef, FormatSpec, ReaderSchema};

use crate::decode::{DecodeError, SchemaError, WireError};
use crate::registry::{RegistryClient, RegistryError, RetryFor};
use crate::secrets::SecretSource;

use avro::AvroValues;
use json::JsonValues;
use protobuf::ProtoValues;

/// Where the operator mounts ConfigMap-referenced schemas: `<dir>/<configmap>/<key>`.
pub const SCHEMA_MOUNT_DIR: &str = "/etc/spillway/schemas";

/// Why one record could not be decoded: a bad record, handled by `errors.onBadRecord`.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum BadRecord {
    /// The record has no value (a tombstone).
    #[error("record has no value")]
    NullValue,
    /// Not in the Confluent wire format.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The registry does not know the schema id.
    #[error("unknown schema id {id}")]
    UnknownSchemaId {
        /// The id in the payload.
        id: u32,
    },
    /// The writer schema cannot be resolved to the reader schema.
    #[error("writer schema {id} is incompatible with the reader schema: {message}")]
    SchemaIncompatible {
        /// The writer schema id.
        id: u32,
        /// Why.
        message: String,
    },
    /// The body does not decode with its writer schema.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A record type the pipeline does not read (`recordNames`): skipped and counted,
    /// whatever `onBadRecord` says.
    #[error("record type {name} (schema id {id}) is not in recordNames")]
    OtherRecordType {
        /// The writer schema id.
        id: u32,
        /// The writer's record name.
        name: String,
    },
}

impl BadRecord {
    /// The static reason, used as metric label and dead-letter error class.
    pub fn reason(&self) -> &'static str {
        self.into()
    }
}

/// Errors that stop the pipeline (not bad records).
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum FormatError {
    /// A schema in the spec could not be read.
    #[error("cannot read schema {what}: {message}")]
    SchemaSource {
        /// Which schema.
        what: String,
        /// Why.
        message: String,
    },
    /// A schema in the spec does not compile.
    #[error("invalid {what} schema: {source}")]
    Schema {
        /// Which schema.
        what: &'static str,
        /// Why.
        #[source]
        source: SchemaError,
    },
    /// The registry is misconfigured or refused us.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Concatenating the per-schema batches failed.
    #[error("failed to assemble the batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A finished column did not build.
    #[error("failed to finish the batch: {0}")]
    Finish(DecodeError),
}

fn read_schema_source(
    what: &str,
    inline: Option<&String>,
    file: Option<&String>,
    cm: Option<&ConfigMapKeyRef>,
    base_dir: &Path,
) -> Result<Option<String>, FormatError> {
    let err = |m: String| FormatError::SchemaSource {
        what: what.to_string(),
        message: m,
    };
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    let path = match (file, cm) {
        (Some(f), _) => base_dir.join(f),
        (None, Some(c)) => Path::new(SCHEMA_MOUNT_DIR).join(&c.name).join(&c.key),
        (None, None) => return Ok(None),
    };
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| err(format!("{}: {e}", path.display())))
}

/// A reader (row) schema's text: from the registry subject version, or given like a
/// writer schema.
async fn read_reader_schema(
    what: &str,
    r: &ReaderSchema,
    registry: Option<&RegistryClient>,
    base_dir: &Path,
    topic: Option<&str>,
) -> Result<Option<String>, FormatError> {
    match (&r.registry, registry) {
        (Some(g), Some(client)) => {
            let subject = default_subject(what, g, topic)?;
            let version = g.version.clone().unwrap_or_else(|| "latest".into());
            Ok(Some(
                client.subject_version(&subject, &version).await?.schema,
            ))
        }
        _ => read_schema_source(
            what,
            r.inline.as_ref(),
            r.file.as_ref(),
            r.config_map_key_ref.as_ref(),
            base_dir,
        ),
    }
}

/// A registry schema's subject: as given, else `<topic>-value` (TopicNameStrategy) of the
/// pipeline's single topic.
fn default_subject(
    what: &str,
    g: &spillway_api::RegistrySchemaRef,
    topic: Option<&str>,
) -> Result<String, FormatError> {
    match (&g.subject, topic) {
        (Some(s), _) => Ok(s.clone()),
        (None, Some(t)) => Ok(format!("{t}-value")),
        (None, None) => Err(FormatError::SchemaSource {
            what: what.to_string(),
            message: "registry.subject is required when the pipeline reads several topics".into(),
        }),
    }
}

/// A decoder of bodies of one row schema (JSON, Protobuf) and each row's metadata `M`.
#[derive(Debug)]
struct Rows<D, M> {
    decoder: D,
    meta: Vec<M>,
}

/// What [`Rows`] needs of a decoder.
trait BodyDecoder {
    fn push_body(&mut self, body: &[u8]) -> Result<(), DecodeError>;
    fn finish_batch(&mut self) -> Result<RecordBatch, DecodeError>;
}

impl BodyDecoder for crate::decode::JsonDecoder {
    fn push_body(&mut self, body: &[u8]) -> Result<(), DecodeError> {
        self.push(body)
    }
    fn finish_batch(&mut self) -> Result<RecordBatch, DecodeError> {
        self.finish()
    }
}

impl BodyDecoder for crate::decode::ProtoDecoder {
    fn push_body(&mut self, body: &[u8]) -> Result<(), DecodeError> {
        self.push(body)
    }
    fn finish_batch(&mut self) -> Result<RecordBatch, DecodeError> {
        self.finish()
    }
}

impl<D: BodyDecoder, M> Rows<D, M> {
    fn new(decoder: D) -> Self {
        Self {
            decoder,
            meta: Vec::new(),
        }
    }

    /// Appends one body with its metadata; `Err(_)` is a bad record (nothing appended).
    fn push(&mut self, body: &[u8], meta: M) -> Result<(), BadRecord> {
        self.decoder.push_body(body)?;
        self.meta.push(meta);
        Ok(())
    }

    fn len(&self) -> usize {
        self.meta.len()
    }

    /// The batch of the rows so far and their metadata; `None` when there are none.
    fn finish(&mut self) -> Result<Option<(RecordBatch, Vec<M>)>, FormatError> {
        if self.meta.is_empty() {
            return Ok(None);
        }
        let batch = self.decoder.finish_batch().map_err(FormatError::Finish)?;
        Ok(Some((batch, std::mem::take(&mut self.meta))))
    }
}

/// The writer schema of a Confluent-framed value's id, or why the record is bad.
async fn schema_of_id(
    registry: Option<&RegistryClient>,
    id: u32,
) -> Result<Result<Arc<str>, BadRecord>, FormatError> {
    let Some(client) = registry else {
        return Ok(Err(BadRecord::UnknownSchemaId { id }));
    };
    match client.schema_by_id(id).await {
        Ok(w) => Ok(Ok(w)),
        Err(RegistryError::NotFound { .. }) => Ok(Err(BadRecord::UnknownSchemaId { id })),
        Err(e @ RegistryError::Oversized { .. }) => Ok(Err(BadRecord::SchemaIncompatible {
            id,
            message: e.to_string(),
        })),
        Err(e) => Err(e.into()),
    }
}

/// The registry client of a format, if it has a registry.
pub fn registry_client(
    format: &FormatSpec,
    secrets: &dyn SecretSource,
) -> Result<Option<RegistryClient>, FormatError> {
    let Some(reg) = format.schema_registry() else {
        return Ok(None);
    };
    let timeout =
        spillway_api::validate::parse_duration(&reg.timeout).unwrap_or(Duration::from_secs(10));
    let auth = match &reg.basic_auth {
        Some(b) => Some((
            secrets
                .resolve(&b.username_secret_ref)
                .map_err(|e| FormatError::SchemaSource {
                    what: "registry credentials".into(),
                    message: e.to_string(),
                })?,
            secrets
                .resolve(&b.password_secret_ref)
                .map_err(|e| FormatError::SchemaSource {
                    what: "registry credentials".into(),
                    message: e.to_string(),
                })?,
        )),
        None => None,
    };
    Ok(Some(RegistryClient::new(
        &reg.url,
        timeout,
        auth,
        RetryFor::Ever,
    )?))
}

/// Decodes values into one Arrow schema, keeping each row's metadata `M` (partition,
/// offset, …) aligned with it, in the order the values were pushed (Kafka order).
#[derive(Debug)]
pub struct ValueDecoder<M>(Values<M>);

#[derive(Debug)]
enum Values<M> {
    Avro(AvroValues<M>),
    Json(JsonValues<M>),
    Protobuf(ProtoValues<M>),
}

impl<M> ValueDecoder<M> {
    /// Builds the decoder of a pipeline's format; reads the spec's schemas (and those
    /// named in the registry) now. `topic`: the pipeline's topic when it reads one (the
    /// default registry subjects are named after it).
    pub async fn new(
        format: &FormatSpec,
        topic: Option<&str>,
        base_dir: &Path,
        registry: Option<RegistryClient>,
    ) -> Result<Self, FormatError> {
        match (&format.avro, &format.json, &format.protobuf) {
            (Some(a), _, _) => Ok(Self(Values::Avro(
                AvroValues::new(a, topic, base_dir, registry).await?,
            ))),
            (None, Some(j), _) => Ok(Self(Values::Json(
                JsonValues::new(j, topic, base_dir, registry).await?,
            ))),
            (None, None, Some(p)) => Ok(Self(Values::Protobuf(
                ProtoValues::new(p, topic, base_dir, registry).await?,
            ))),
            (None, None, None) => Err(FormatError::SchemaSource {
                what: "spec.format".into(),
                message: "none of avro, json or protobuf is set".into(),
            }),
        }
    }

    /// The decoder of Avro values.
    pub async fn avro(
        avro: &AvroFormat,
        base_dir: &Path,
        registry: Option<RegistryClient>,
    ) -> Result<Self, FormatError> {
        Ok(Self(Values::Avro(
            AvroValues::new(avro, None, base_dir, registry).await?,
        )))
    }

    /// Avro: lets a writer schema that adds top-level fields extend the reader schema (the
    /// new fields become nullable columns at the end) instead of being refused. JSON and
    /// Protobuf rows have the manifest's schema: nothing to extend.
    pub fn with_schema_evolution(self, on: bool) -> Self {
        match self.0 {
            Values::Avro(a) => Self(Values::Avro(a.with_schema_evolution(on))),
            json => Self(json),
        }
    }

    /// Avro: resumes with the reader schema an earlier run adopted (kept in the
    /// checkpoint), when the spec names none.
    pub fn with_adopted_reader(self, schema: Option<String>) -> Self {
        match self.0 {
            Values::Avro(a) => Self(Values::Avro(a.with_adopted_reader(schema))),
            json => Self(json),
        }
    }

    /// The reader schema adopted without a `readerSchema` in the spec, once after each
    /// change (first adoption, evolution): to be kept in the checkpoint.
    pub fn take_changed_adopted_reader(&mut self) -> Option<String> {
        match &mut self.0 {
            Values::Avro(a) => a.take_changed_adopted_reader(),
            Values::Json(_) | Values::Protobuf(_) => None,
        }
    }

    /// Decodes one value and appends it with its metadata. `Ok(Err(_))` is a bad record
    /// (nothing appended); `Err(_)` stops the pipeline. A registry outage makes this wait.
    pub async fn push(
        &mut self,
        value: Option<&[u8]>,
        meta: M,
    ) -> Result<Result<(), BadRecord>, FormatError> {
        match &mut self.0 {
            Values::Avro(a) => a.push(value, meta).await,
            Values::Json(j) => j.push(value, meta).await,
            Values::Protobuf(p) => p.push(value, meta).await,
        }
    }

    /// Rows decoded since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        match &self.0 {
            Values::Avro(a) => a.len(),
            Values::Json(j) => j.len(),
            Values::Protobuf(p) => p.len(),
        }
    }

    /// Whether no row is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch of all rows so far and their metadata, in the order they were pushed;
    /// `None` when there are no rows.
    pub fn finish(&mut self) -> Result<Option<(RecordBatch, Vec<M>)>, FormatError> {
        match &mut self.0 {
            Values::Avro(a) => a.finish(),
            Values::Json(j) => j.finish(),
            Values::Protobuf(p) => p.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_api::RegistrySchemaRef;

    #[test]
    fn a_registry_schema_without_subject_is_the_topics_value_subject() {
        let given = RegistrySchemaRef {
            subject: Some("s".into()),
            version: None,
        };
        let omitted = RegistrySchemaRef::default();
        assert_eq!(default_subject("x", &given, None).unwrap(), "s");
        assert_eq!(
            default_subject("x", &omitted, Some("orders")).unwrap(),
            "orders-value"
        );
        let e = default_subject("readerSchema", &omitted, None).unwrap_err();
        assert!(e.to_string().contains("several topics"), "{e}");
    }
}
