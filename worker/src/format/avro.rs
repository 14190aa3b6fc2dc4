//! I/O: Avro values — raw with the spec's writer schema, or Confluent with per-id writer
//! schemas from the registry — resolved to one reader schema.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use spillway_api::{AvroEncoding, AvroFormat};

use super::{BadRecord, FormatError, read_reader_schema, read_schema_source, schema_of_id};
use crate::decode::{AvroDecoder, DecodePlan, split_confluent};
use crate::registry::RegistryClient;

/// One group of rows sharing a writer schema.
struct Group<M> {
    decoder: AvroDecoder,
    meta: Vec<M>,
    /// Arrival number of each row in the batch (Kafka order across the groups).
    seq: Vec<u32>,
}

/// Decoded rows with their metadata and arrival numbers.
type Part<M> = (RecordBatch, Vec<M>, Vec<u32>);

/// Decodes values into one Arrow schema (the reader's), keeping each row's metadata `M`
/// (partition, offset, …) aligned with it.
pub(super) struct AvroValues<M> {
    encoding: AvroEncoding,
    registry: Option<RegistryClient>,
    reader: Option<String>,
    plans: HashMap<u32, Result<Arc<DecodePlan>, String>>,
    raw_plan: Option<Arc<DecodePlan>>,
    groups: HashMap<Option<u32>, Group<M>>,
    /// `schemaEvolution: addColumns`: a writer that adds top-level fields extends the reader.
    evolve: bool,
    /// The reader is the first writer seen (no `readerSchema` in the spec): it is the
    /// table's schema, so a writer with more fields needs evolution.
    implicit_reader: bool,
    /// The adopted reader changed since [`Self::take_changed_adopted_reader`] last said so.
    adopted_changed: bool,
    /// Rows decoded under an earlier reader schema in this batch (before an evolution).
    done: Vec<Part<M>>,
    /// The arrival number of the next row.
    next_seq: u32,
    /// `recordNames`: the writer record names read; empty reads every record.
    record_names: Vec<String>,
    /// Per writer schema id of a record type not in `record_names`: its name.
    other_types: HashMap<u32, String>,
}

impl<M> std::fmt::Debug for AvroValues<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroValues")
            .field("encoding", &self.encoding)
            .finish()
    }
}

impl<M> AvroValues<M> {
    /// Builds the decoder for a format; reads the spec's schemas (and the reader schema
    /// from the registry when asked) now.
    pub async fn new(
        avro: &AvroFormat,
        topic: Option<&str>,
        base_dir: &Path,
        registry: Option<RegistryClient>,
    ) -> Result<Self, FormatError> {
        let mut record_names = avro.record_names.clone();
        record_names.dedup();
        let writer = match &avro.writer_schema {
            Some(w) => read_schema_source(
                "writerSchema",
                w.inline.as_ref(),
                w.file.as_ref(),
                w.config_map_key_ref.as_ref(),
                base_dir,
            )?,
            None => None,
        };
        let reader = match &avro.reader_schema {
            Some(r) => {
                read_reader_schema("readerSchema", r, registry.as_ref(), base_dir, topic).await?
            }
            None if !record_names.is_empty() => {
                Some(record_types_reader(avro, &record_names, topic, registry.as_ref()).await?)
            }
            None => None,
        };
        let raw_plan = match (avro.encoding, &writer) {
            (AvroEncoding::Raw, Some(w)) => Some(Arc::new(
                DecodePlan::from_json(w, reader.as_deref()).map_err(|source| {
                    FormatError::Schema {
                        what: "writer/reader",
                        source,
                    }
                })?,
            )),
            _ => None,
        };
        Ok(Self {
            encoding: avro.encoding,
            registry,
            reader,
            plans: HashMap::new(),
            raw_plan,
            groups: HashMap::new(),
            evolve: false,
            implicit_reader: false,
            adopted_changed: false,
            done: Vec::new(),
            next_seq: 0,
            record_names,
            other_types: HashMap::new(),
        })
    }

    /// Lets a writer schema that adds top-level fields extend the reader schema (the new
    /// fields become nullable columns at the end) instead of being refused.
    pub fn with_schema_evolution(mut self, on: bool) -> Self {
        self.evolve = on;
        self
    }

    /// Resumes with the reader schema an earlier run adopted (kept in the checkpoint), when
    /// the spec names none: after the first commit the table's schema is the reader, not
    /// whichever writer this process happens to meet first.
    pub fn with_adopted_reader(mut self, schema: Option<String>) -> Self {
        if self.reader.is_none()
            && self.encoding == AvroEncoding::Confluent
            && let Some(s) = schema
        {
            self.reader = Some(s);
            self.implicit_reader = true;
        }
        self
    }

    /// The reader schema adopted without a `readerSchema` in the spec, once after each
    /// change (first adoption, evolution): to be kept in the checkpoint.
    pub fn take_changed_adopted_reader(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.adopted_changed) || !self.implicit_reader {
            return None;
        }
        self.reader.clone()
    }

    /// Finishes the rows decoded so far under the current reader, before it changes.
    fn flush_groups(&mut self) -> Result<(), FormatError> {
        for (_, mut g) in self.groups.drain() {
            if g.meta.is_empty() {
                continue;
            }
            let b = g.decoder.finish().map_err(FormatError::Finish)?;
            self.done
                .push((b, std::mem::take(&mut g.meta), std::mem::take(&mut g.seq)));
        }
        Ok(())
    }

    async fn plan_for(
        &mut self,
        id: u32,
    ) -> Result<Result<Arc<DecodePlan>, BadRecord>, FormatError> {
        if let Some(p) = self.plans.get(&id) {
            return Ok(p
                .clone()
                .map_err(|message| BadRecord::SchemaIncompatible { id, message }));
        }
        if let Some(name) = self.other_types.get(&id) {
            return Ok(Err(BadRecord::OtherRecordType {
                id,
                name: name.clone(),
            }));
        }
        let mut writer = match schema_of_id(self.registry.as_ref(), id).await? {
            Ok(w) => w,
            Err(bad) => return Ok(Err(bad)),
        };
        let mut own_name = None;
        if !self.record_names.is_empty() {
            let name = record_full_name(&writer).unwrap_or_default();
            if !self.record_names.contains(&name) {
                self.other_types.insert(id, name.clone());
                return Ok(Err(BadRecord::OtherRecordType { id, name }));
            }
            if self.record_names.len() > 1
                && let Some(reader) = &self.reader
            {
                // one table of several types: each resolves to the union under its name
                writer = renamed_like(&writer, reader).into();
                own_name = Some(name);
            }
        }
        match self.reader.as_deref() {
            None => {
                // No reader schema given: the first writer schema seen becomes the table's.
                self.reader = Some(writer.to_string());
                self.implicit_reader = true;
                self.adopted_changed = true;
            }
            Some(reader) => {
                let added = added_fields(&writer, reader);
                if !added.is_empty() {
                    if self.evolve {
                        match extend_reader(reader, &writer, &added) {
                            Ok(extended) => {
                                self.flush_groups()?;
                                self.plans.clear();
                                self.reader = Some(extended);
                                self.adopted_changed = true;
                                tracing::info!(schema_id = id, columns = ?added, "schema evolution: new columns");
                            }
                            Err(message) => {
                                self.plans.insert(id, Err(message.clone()));
                                return Ok(Err(BadRecord::SchemaIncompatible { id, message }));
                            }
                        }
                    } else if self.implicit_reader {
                        let message = format!(
                            "writer schema {id} adds fields {added:?} the table does not have; set sink.delta.schemaEvolution: addColumns to add them"
                        );
                        self.plans.insert(id, Err(message.clone()));
                        return Ok(Err(BadRecord::SchemaIncompatible { id, message }));
                    }
                }
            }
        }
        let reader = match (&self.reader, &own_name) {
            (Some(r), Some(name)) => Some(with_record_name(r, name)),
            (r, _) => r.clone(),
        };
        let plan = DecodePlan::from_json(&writer, reader.as_deref())
            .map(Arc::new)
            .map_err(|e| e.to_string());
        self.plans.insert(id, plan.clone());
        Ok(plan.map_err(|message| BadRecord::SchemaIncompatible { id, message }))
    }

    /// Decodes one value and appends it with its metadata. `Ok(Err(_))` is a bad record
    /// (nothing appended); `Err(_)` stops the pipeline. A registry outage makes this wait.
    pub async fn push(
        &mut self,
        value: Option<&[u8]>,
        meta: M,
    ) -> Result<Result<(), BadRecord>, FormatError> {
        let Some(value) = value else {
            return Ok(Err(BadRecord::NullValue));
        };
        let (key, plan, body) = match self.encoding {
            AvroEncoding::Raw => match &self.raw_plan {
                Some(p) => (None, p.clone(), value),
                None => return Ok(Err(BadRecord::UnknownSchemaId { id: 0 })),
            },
            AvroEncoding::Confluent => {
                let (id, body) = match split_confluent(value) {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(e.into())),
                };
                match self.plan_for(id).await? {
                    Ok(p) => (Some(id), p, body),
                    Err(bad) => return Ok(Err(bad)),
                }
            }
        };
        let group = self.groups.entry(key).or_insert_with(|| Group {
            decoder: AvroDecoder::new(plan),
            meta: Vec::new(),
            seq: Vec::new(),
        });
        match group.decoder.push(body) {
            Ok(()) => {
                group.meta.push(meta);
                group.seq.push(self.next_seq);
                self.next_seq += 1;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    /// Rows decoded since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.groups.values().map(|g| g.meta.len()).sum()
    }

    /// The batch of all rows so far (reader schema) and their metadata, in the same order —
    /// the order they were pushed in (Kafka order), whatever writer schema each had; `None`
    /// when there are no rows.
    pub fn finish(&mut self) -> Result<Option<(RecordBatch, Vec<M>)>, FormatError> {
        self.next_seq = 0;
        let mut parts = std::mem::take(&mut self.done);
        for g in self.groups.values_mut() {
            if g.meta.is_empty() {
                continue;
            }
            let b = g.decoder.finish().map_err(FormatError::Finish)?;
            parts.push((b, std::mem::take(&mut g.meta), std::mem::take(&mut g.seq)));
        }
        // The current reader's schema: of a group decoded now, else of the last evolution.
        let Some(schema) = parts.last().map(|(b, _, _)| b.schema()) else {
            return Ok(None);
        };
        if parts.len() == 1 {
            return Ok(parts.pop().map(|(b, m, _)| (b, m)));
        }
        let mut batches = Vec::with_capacity(parts.len());
        let mut meta = Vec::new();
        let mut seq = Vec::new();
        for (b, mut m, mut s) in parts {
            // Rows decoded before a schema evolution get the new columns as nulls.
            batches.push(widen(&b, &schema)?);
            meta.append(&mut m);
            seq.append(&mut s);
        }
        let batch = arrow_select::concat::concat_batches(&schema, &batches)?;
        Ok(Some(arrival_order(batch, meta, &seq)?))
    }
}

/// The column naming each row's record type in a table of several types.
pub const RECORD_NAME_COLUMN: &str = "_record_name";

/// The reader of `recordNames` without a `readerSchema`: each type's subject's latest
/// version; with several types, their union — every field nullable (default null), the
/// first type's fields first, a name already taken keeps its first type.
async fn record_types_reader(
    avro: &AvroFormat,
    names: &[String],
    topic: Option<&str>,
    registry: Option<&RegistryClient>,
) -> Result<String, FormatError> {
    let err = |message: String| FormatError::SchemaSource {
        what: "spec.format.avro.recordNames".into(),
        message,
    };
    let client = registry.ok_or_else(|| err("recordNames needs schemaRegistry".into()))?;
    let mut schemas = Vec::with_capacity(names.len());
    for name in names {
        let subject = match (avro.subject_name_strategy, topic) {
            (spillway_api::SubjectNameStrategy::TopicRecord, None) => {
                return Err(err(
                    "subjectNameStrategy topicRecord needs a single topic (or give readerSchema)"
                        .into(),
                ));
            }
            (strategy, t) => strategy.subject(t.unwrap_or_default(), name),
        };
        schemas.push(client.subject_version(&subject, "latest").await?.schema);
    }
    match schemas.as_slice() {
        [one] => Ok(one.clone()),
        _ => union_reader(&schemas).map_err(err),
    }
}

/// The union of record schemas' top-level fields, each nullable with default null.
fn union_reader(schemas: &[String]) -> Result<String, String> {
    let mut union: Option<serde_json::Value> = None;
    for s in schemas {
        let mut v: serde_json::Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
        let fields = v
            .get_mut("fields")
            .and_then(|f| f.as_array_mut())
            .ok_or("a record type's schema is not a record")?;
        for f in fields.iter_mut() {
            nullable_field(f);
        }
        match &mut union {
            None => union = Some(v),
            Some(u) => {
                let have: Vec<String> = u["fields"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|f| f["name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let new: Vec<serde_json::Value> = fields
                    .iter()
                    .filter(|f| {
                        f["name"]
                            .as_str()
                            .is_some_and(|n| !have.iter().any(|h| h == n))
                    })
                    .cloned()
                    .collect();
                if let Some(a) = u.get_mut("fields").and_then(|f| f.as_array_mut()) {
                    a.extend(new);
                }
            }
        }
    }
    union
        .map(|u| u.to_string())
        .ok_or_else(|| "no record types".to_string())
}

/// A field made nullable with default null (`["null", …]` first).
fn nullable_field(field: &mut serde_json::Value) {
    let ty = field
        .get("type")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let nullable = match ty {
        serde_json::Value::Array(branches) => {
            let mut b: Vec<serde_json::Value> =
                branches.into_iter().filter(|x| x != "null").collect();
            b.insert(0, "null".into());
            serde_json::Value::Array(b)
        }
        t => serde_json::json!(["null", t]),
    };
    if let Some(obj) = field.as_object_mut() {
        obj.insert("type".into(), nullable);
        obj.insert("default".into(), serde_json::Value::Null);
    }
}

/// A record schema's full name (`namespace.name`).
fn record_full_name(schema: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(schema).ok()?;
    let name = v.get("name")?.as_str()?;
    match v.get("namespace").and_then(|n| n.as_str()) {
        Some(ns) if !name.contains('.') && !ns.is_empty() => Some(format!("{ns}.{name}")),
        _ => Some(name.to_string()),
    }
}

/// `writer` with `reader`'s top-level record name, so the two resolve (the binary
/// encoding holds no names).
fn renamed_like(writer: &str, reader: &str) -> String {
    let (Ok(mut w), Ok(r)) = (
        serde_json::from_str::<serde_json::Value>(writer),
        serde_json::from_str::<serde_json::Value>(reader),
    ) else {
        return writer.to_string();
    };
    for key in ["name", "namespace"] {
        if let Some(obj) = w.as_object_mut() {
            match r.get(key) {
                Some(v) => obj.insert(key.into(), v.clone()),
                None => obj.remove(key),
            };
        }
    }
    w.to_string()
}

/// `reader` with the [`RECORD_NAME_COLUMN`] field, whose default is `name`: the writers of
/// this type have no such field, so every row of theirs gets it.
fn with_record_name(reader: &str, name: &str) -> String {
    let Ok(mut r) = serde_json::from_str::<serde_json::Value>(reader) else {
        return reader.to_string();
    };
    if let Some(fields) = r.get_mut("fields").and_then(|f| f.as_array_mut()) {
        fields.retain(|f| f["name"] != RECORD_NAME_COLUMN);
        fields.push(
            serde_json::json!({"name": RECORD_NAME_COLUMN, "type": "string", "default": name}),
        );
    }
    r.to_string()
}

/// Puts rows (and their metadata) back in arrival order: row `i` arrived `seq[i]`-th.
fn arrival_order<M>(
    batch: RecordBatch,
    meta: Vec<M>,
    seq: &[u32],
) -> Result<(RecordBatch, Vec<M>), FormatError> {
    if seq.is_sorted() {
        return Ok((batch, meta));
    }
    let mut order: Vec<u32> = (0..seq.len() as u32).collect();
    order.sort_unstable_by_key(|&i| seq[i as usize]);
    let indices = arrow_array::UInt32Array::from(order.clone());
    let batch = arrow_select::take::take_record_batch(&batch, &indices)?;
    let mut slots: Vec<Option<M>> = meta.into_iter().map(Some).collect();
    let meta = order
        .iter()
        .filter_map(|&i| slots.get_mut(i as usize).and_then(Option::take))
        .collect();
    Ok((batch, meta))
}

/// Top-level field names of `writer` that `reader` lacks (empty when either does not parse
/// as a record schema).
fn added_fields(writer: &str, reader: &str) -> Vec<String> {
    let names = |s: &str| -> Option<Vec<String>> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        Some(
            v.get("fields")?
                .as_array()?
                .iter()
                .filter_map(|f| Some(f.get("name")?.as_str()?.to_string()))
                .collect(),
        )
    };
    match (names(writer), names(reader)) {
        (Some(w), Some(r)) => w.into_iter().filter(|n| !r.contains(n)).collect(),
        _ => Vec::new(),
    }
}

/// `reader` with the `added` fields of `writer` appended as nullable fields (default null).
fn extend_reader(reader: &str, writer: &str, added: &[String]) -> Result<String, String> {
    let mut r: serde_json::Value = serde_json::from_str(reader).map_err(|e| e.to_string())?;
    let w: serde_json::Value = serde_json::from_str(writer).map_err(|e| e.to_string())?;
    let wfields = w
        .get("fields")
        .and_then(|f| f.as_array())
        .ok_or("the writer schema is not a record")?;
    let rfields = r
        .get_mut("fields")
        .and_then(|f| f.as_array_mut())
        .ok_or("the reader schema is not a record")?;
    for name in added {
        let Some(field) = wfields
            .iter()
            .find(|f| f.get("name").and_then(|n| n.as_str()) == Some(name))
        else {
            continue;
        };
        let mut field = field.clone();
        nullable_field(&mut field);
        rfields.push(field);
    }
    let text = r.to_string();
    // The extended reader must still resolve the writer (e.g. no dangling named types).
    DecodePlan::from_json(writer, Some(&text)).map_err(|e| e.to_string())?;
    Ok(text)
}

/// `batch` with `schema`'s columns: its own by name, nulls for the ones it lacks.
fn widen(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, FormatError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow_array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array};
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn the_union_of_record_types_is_nullable_and_names_each_row() {
        let a = r#"{"type":"record","name":"A","namespace":"n","fields":[{"name":"id","type":"long"},{"name":"x","type":"string"}]}"#;
        let b = r#"{"type":"record","name":"B","namespace":"n","fields":[{"name":"id","type":"long"},{"name":"y","type":["null","int"],"default":null}]}"#;
        let u = union_reader(&[a.to_string(), b.to_string()]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&u).unwrap();
        let names: Vec<&str> = v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "x", "y"]);
        assert_eq!(v["fields"][0]["type"], serde_json::json!(["null", "long"]));
        assert_eq!(record_full_name(b).as_deref(), Some("n.B"));
        let writer = renamed_like(b, &u);
        let plan = DecodePlan::from_json(&writer, Some(&with_record_name(&u, "n.B"))).unwrap();
        let fields: Vec<String> = plan
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(fields, ["id", "x", "y", RECORD_NAME_COLUMN]);
    }

    #[test]
    fn rows_of_several_writer_schemas_come_back_in_arrival_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        // Concatenated by group: writer 1 had rows 0, 2, 3; writer 2 rows 1, 4.
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![10, 12, 13, 11, 14]))],
        )
        .unwrap();
        let meta = vec!["a", "c", "d", "b", "e"];
        let (b, m) = arrival_order(batch, meta, &[0, 2, 3, 1, 4]).unwrap();
        let v = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(v.values(), &[10, 11, 12, 13, 14]);
        assert_eq!(m, vec!["a", "b", "c", "d", "e"]);
        assert_eq!(v.len(), 5);
    }
}
