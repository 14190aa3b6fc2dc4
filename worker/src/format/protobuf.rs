//! I/O: Protobuf values of one message type — raw, or in Confluent's framing with the id
//! checked against the registry and the message indexes against `messageType` — decoded
//! straight into the message's columns.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use spillway_api::{DescriptorSetSource, ProtobufEncoding, ProtobufFormat, ReaderSchema};

use super::{
    BadRecord, FormatError, Rows, SCHEMA_MOUNT_DIR, default_subject, read_schema_source,
    schema_of_id,
};
use crate::decode::protobuf::{compile_proto, split_message_indexes};
use crate::decode::{ProtoDecoder, ProtoFileOutline, ProtoPlan, split_confluent};
use crate::registry::RegistryClient;

/// How deep registry references (imports of imports) are followed.
const MAX_REFERENCE_DEPTH: usize = 16;

/// Protobuf values decoded into one message type's columns, with each row's metadata `M`.
#[derive(Debug)]
pub(super) struct ProtoValues<M> {
    encoding: ProtobufEncoding,
    registry: Option<RegistryClient>,
    rows: Rows<ProtoDecoder, M>,
    message: String,
    /// Per writer schema id: its outline, or why it cannot be read.
    writers: HashMap<u32, Result<ProtoFileOutline, String>>,
    indexes: Vec<i32>,
}

impl<M> ProtoValues<M> {
    /// Reads and compiles the message type now.
    pub async fn new(
        p: &ProtobufFormat,
        topic: Option<&str>,
        base_dir: &Path,
        registry: Option<RegistryClient>,
    ) -> Result<Self, FormatError> {
        let name = p.message_type.trim_start_matches('.');
        let schema_err = |source| FormatError::Schema {
            what: "protobuf",
            source,
        };
        let plan = match (&p.descriptor_set, &p.schema) {
            (Some(d), _) => {
                let bytes = read_descriptor_set(d, base_dir)?;
                ProtoPlan::from_descriptor_set(&bytes, name).map_err(schema_err)?
            }
            (None, Some(s)) => {
                let (file, text, imports) =
                    read_proto(s, registry.as_ref(), base_dir, topic).await?;
                let pool = compile_proto(&file, &text, &imports).map_err(schema_err)?;
                ProtoPlan::from_pool(&pool, name).map_err(schema_err)?
            }
            (None, None) => {
                return Err(FormatError::SchemaSource {
                    what: "spec.format.protobuf".into(),
                    message: "neither schema nor descriptorSet is set".into(),
                });
            }
        };
        Ok(Self {
            encoding: p.encoding,
            registry,
            rows: Rows::new(ProtoDecoder::new(Arc::new(plan))),
            message: name.to_string(),
            writers: HashMap::new(),
            indexes: Vec::new(),
        })
    }

    /// Decodes one value and appends it with its metadata; `Ok(Err(_))` is a bad record.
    pub async fn push(
        &mut self,
        value: Option<&[u8]>,
        meta: M,
    ) -> Result<Result<(), BadRecord>, FormatError> {
        let Some(value) = value else {
            return Ok(Err(BadRecord::NullValue));
        };
        let body = match self.encoding {
            ProtobufEncoding::Raw => value,
            ProtobufEncoding::Confluent => match self.confluent_body(value).await? {
                Ok(body) => body,
                Err(bad) => return Ok(Err(bad)),
            },
        };
        Ok(self.rows.push(body, meta))
    }

    /// The message of a Confluent-framed value, once its id is known to the registry and
    /// its indexes name `messageType` in that writer schema.
    async fn confluent_body<'v>(
        &mut self,
        value: &'v [u8],
    ) -> Result<Result<&'v [u8], BadRecord>, FormatError> {
        let (id, rest) = match split_confluent(value) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e.into())),
        };
        let body = match split_message_indexes(rest, &mut self.indexes) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e.into())),
        };
        if !self.writers.contains_key(&id) {
            let writer = match schema_of_id(self.registry.as_ref(), id).await? {
                Ok(w) => w,
                Err(bad) => return Ok(Err(bad)),
            };
            let outline = ProtoFileOutline::parse(&writer).map_err(|e| e.to_string());
            self.writers.insert(id, outline);
        }
        match self.writers.get(&id) {
            Some(Ok(outline)) if outline.names(&self.indexes, &self.message) => Ok(Ok(body)),
            Some(Ok(_)) => Ok(Err(BadRecord::SchemaIncompatible {
                id,
                message: format!(
                    "message indexes {:?} do not name {} in writer schema {id}",
                    self.indexes, self.message
                ),
            })),
            Some(Err(message)) => Ok(Err(BadRecord::SchemaIncompatible {
                id,
                message: message.clone(),
            })),
            None => Ok(Err(BadRecord::UnknownSchemaId { id })),
        }
    }

    /// Rows decoded since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The batch of the rows so far and their metadata; `None` when there are none.
    pub fn finish(&mut self) -> Result<Option<(RecordBatch, Vec<M>)>, FormatError> {
        self.rows.finish()
    }
}

fn read_descriptor_set(d: &DescriptorSetSource, base_dir: &Path) -> Result<Vec<u8>, FormatError> {
    let path = match (&d.file, &d.config_map_key_ref) {
        (Some(f), _) => base_dir.join(f),
        (None, Some(c)) => Path::new(SCHEMA_MOUNT_DIR).join(&c.name).join(&c.key),
        (None, None) => {
            return Err(FormatError::SchemaSource {
                what: "spec.format.protobuf.descriptorSet".into(),
                message: "neither file nor configMapKeyRef is set".into(),
            });
        }
    };
    std::fs::read(&path).map_err(|e| FormatError::SchemaSource {
        what: "spec.format.protobuf.descriptorSet".into(),
        message: format!("{}: {e}", path.display()),
    })
}

/// The `.proto` source (its file name, text, and the files it imports by name).
async fn read_proto(
    s: &ReaderSchema,
    registry: Option<&RegistryClient>,
    base_dir: &Path,
    topic: Option<&str>,
) -> Result<(String, String, Vec<(String, String)>), FormatError> {
    let what = "spec.format.protobuf.schema";
    if let (Some(g), Some(client)) = (&s.registry, registry) {
        let subject = default_subject(what, g, topic)?;
        let version = g.version.clone().unwrap_or_else(|| "latest".into());
        let root = client.subject_version(&subject, &version).await?;
        let mut imports = Vec::new();
        let mut todo: Vec<(crate::registry::SchemaReference, usize)> =
            root.references.iter().cloned().map(|r| (r, 1)).collect();
        while let Some((r, depth)) = todo.pop() {
            if imports.iter().any(|(n, _): &(String, String)| *n == r.name) {
                continue;
            }
            if depth > MAX_REFERENCE_DEPTH {
                return Err(FormatError::SchemaSource {
                    what: what.into(),
                    message: format!("references nested deeper than {MAX_REFERENCE_DEPTH}"),
                });
            }
            let dep = client
                .subject_version(&r.subject, &r.version.to_string())
                .await?;
            todo.extend(dep.references.iter().cloned().map(|d| (d, depth + 1)));
            imports.push((r.name, dep.schema));
        }
        return Ok((format!("{subject}.proto"), root.schema, imports));
    }
    let text = read_schema_source(
        what,
        s.inline.as_ref(),
        s.file.as_ref(),
        s.config_map_key_ref.as_ref(),
        base_dir,
    )?
    .ok_or_else(|| FormatError::SchemaSource {
        what: what.into(),
        message: "no schema given".into(),
    })?;
    let name = s
        .file
        .as_deref()
        .and_then(|f| Path::new(f).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("schema.proto")
        .to_string();
    Ok((name, text, Vec::new()))
}
