//! I/O: `spillway validate --check-registry` — is the subject's latest schema compatible
//! with the table the pipeline writes? Pure comparison ([`compare`]) plus the lookups.

use std::sync::Arc;

use arrow_schema::{DataType, Schema};

use crate::decode::{AvroDecoder, DecodePlan};
use crate::manifest::LoadedPipeline;
use crate::secrets::SecretSource;

/// The verdict on one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Subject and version checked, e.g. `orders-value` version 7.
    pub subject: String,
    /// Columns the schema would add to the table.
    pub added: Vec<String>,
    /// `column: table type vs schema type` for columns whose types differ.
    pub changed: Vec<String>,
    /// Whether the pipeline can take the schema as it is configured.
    pub compatible: bool,
    /// One line for people.
    pub message: String,
}

/// Pure: compares the Arrow columns a schema decodes into with the table's columns, by
/// name (metadata and transform-derived columns of the table are ignored).
pub fn compare(
    decoded: &Schema,
    table: &Schema,
    add_columns: bool,
) -> (Vec<String>, Vec<String>, bool) {
    let mut added = vec![];
    let mut changed = vec![];
    for f in decoded.fields() {
        match table.field_with_name(f.name()) {
            Err(_) => added.push(f.name().clone()),
            Ok(t) if !same_type(t.data_type(), f.data_type()) => changed.push(format!(
                "{}: table {} vs schema {}",
                f.name(),
                t.data_type(),
                f.data_type()
            )),
            Ok(_) => {}
        }
    }
    let compatible = changed.is_empty() && (added.is_empty() || add_columns);
    (added, changed, compatible)
}

/// Types equal up to time zone spelling and field metadata (Delta stores `UTC` timestamps).
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Timestamp(u1, _), DataType::Timestamp(u2, _)) => u1 == u2,
        _ => a.equals_datatype(b),
    }
}

/// Checks the subject's latest schema of a Confluent pipeline against its Delta table.
pub async fn check_registry(
    loaded: &LoadedPipeline,
    secrets: &dyn SecretSource,
) -> Result<Verdict, String> {
    let spec = &loaded.pipeline.spec;
    let avro = spec
        .format
        .avro
        .as_ref()
        .ok_or("--check-registry checks Avro schemas: the pipeline has no format.avro")?;
    let client = crate::format::registry_client(&spec.format, secrets)
        .map_err(|e| e.to_string())?
        .ok_or("the pipeline has no format.avro.schemaRegistry")?;
    let subject = avro
        .reader_schema
        .as_ref()
        .and_then(|r| r.registry.as_ref())
        .and_then(|g| g.subject.clone())
        .or_else(|| {
            spec.source
                .kafka
                .topics
                .as_ref()
                .and_then(|t| t.first())
                .map(|t| format!("{t}-value"))
        })
        .ok_or("no subject: set readerSchema.registry.subject (a topic pattern has no subject)")?;
    let latest = client
        .subject_version(&subject, "latest")
        .await
        .map_err(|e| e.to_string())?;
    let plan = DecodePlan::from_json(&latest.schema, None).map_err(|e| e.to_string())?;
    let decoded = AvroDecoder::new(Arc::new(plan)).schema();
    let Some(delta) = &spec.sink.delta else {
        return Err("--check-registry compares with a Delta table (spec.sink.delta)".into());
    };
    let options =
        crate::storage::options(spec.storage.as_ref(), secrets).map_err(|e| e.to_string())?;
    let url = crate::storage::url(&delta.uri, &loaded.base_dir).map_err(|e| e.to_string())?;
    deltalake::aws::register_handlers(None);
    let what = format!("{subject} version {} (id {})", latest.version, latest.id);
    let table = match deltalake::open_table_with_storage_options(url, options).await {
        Ok(t) => t,
        Err(deltalake::DeltaTableError::NotATable(_)) => {
            return Ok(Verdict {
                subject: what.clone(),
                added: vec![],
                changed: vec![],
                compatible: true,
                message: format!(
                    "{what}: the table does not exist yet; it will be created from this schema"
                ),
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    let table_schema = table
        .snapshot()
        .map_err(|e| e.to_string())?
        .snapshot()
        .arrow_schema();
    let add_columns = delta.schema_evolution == spillway_api::SchemaEvolution::AddColumns;
    let (added, changed, compatible) = compare(&decoded, &table_schema, add_columns);
    let message = if !changed.is_empty() {
        format!(
            "{what} is incompatible with the table: {}",
            changed.join("; ")
        )
    } else if added.is_empty() {
        format!("{what} is compatible with the table")
    } else if add_columns {
        format!("{what} is compatible: it adds columns {added:?} (schemaEvolution: addColumns)")
    } else {
        format!(
            "{what} adds columns {added:?} the table lacks: its records would be SchemaIncompatible; set sink.delta.schemaEvolution: addColumns"
        )
    };
    Ok(Verdict {
        subject: what,
        added,
        changed,
        compatible,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;

    #[test]
    fn added_and_changed_columns_decide() {
        let table = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Float64, false),
            Field::new("_offset", DataType::Int64, false),
        ]);
        let same = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Float64, false),
        ]);
        assert_eq!(compare(&same, &table, false), (vec![], vec![], true));
        let wider = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Float64, false),
            Field::new("c", DataType::Utf8, true),
        ]);
        assert_eq!(
            compare(&wider, &table, false),
            (vec!["c".into()], vec![], false)
        );
        assert!(compare(&wider, &table, true).2);
        let narrowed = Schema::new(vec![Field::new("b", DataType::Int32, false)]);
        let (_, changed, ok) = compare(&narrowed, &table, true);
        assert!(!ok);
        assert_eq!(changed, ["b: table Float64 vs schema Int32"]);
    }
}
