//! I/O: JSON values — plain, or in Confluent's JSON Schema framing with the id checked
//! against the registry — parsed into the manifest's row schema (Spark's `from_json`).

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use spillway_api::{JsonEncoding, JsonFormat};

use super::{BadRecord, FormatError, Rows, read_reader_schema, schema_of_id};
use crate::decode::{JsonDecoder, JsonMode, JsonPlan, split_confluent};
use crate::registry::RegistryClient;

/// JSON values decoded into one row schema, with each row's metadata `M`.
#[derive(Debug)]
pub(super) struct JsonValues<M> {
    encoding: JsonEncoding,
    registry: Option<RegistryClient>,
    rows: Rows<JsonDecoder, M>,
}

impl<M> JsonValues<M> {
    /// Reads and compiles the row schema now.
    pub async fn new(
        json: &JsonFormat,
        topic: Option<&str>,
        base_dir: &Path,
        registry: Option<RegistryClient>,
    ) -> Result<Self, FormatError> {
        let text = read_reader_schema("schema", &json.schema, registry.as_ref(), base_dir, topic)
            .await?
            .ok_or_else(|| FormatError::SchemaSource {
                what: "spec.format.json.schema".into(),
                message: "no schema given".into(),
            })?;
        let plan = JsonPlan::from_schema(&text).map_err(|source| FormatError::Schema {
            what: "json row",
            source,
        })?;
        let mode = match json.mode {
            spillway_api::JsonMode::Permissive => JsonMode::Permissive,
            spillway_api::JsonMode::FailFast => JsonMode::FailFast,
        };
        Ok(Self {
            encoding: json.encoding,
            registry,
            rows: Rows::new(JsonDecoder::new(Arc::new(plan), mode)),
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
            JsonEncoding::Plain => value,
            JsonEncoding::Confluent => {
                let (id, body) = match split_confluent(value) {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(e.into())),
                };
                if let Err(bad) = schema_of_id(self.registry.as_ref(), id).await? {
                    return Ok(Err(bad));
                }
                body
            }
        };
        Ok(self.rows.push(body, meta))
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
