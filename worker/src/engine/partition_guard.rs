//! Pure: rows whose partition directory cannot be written (see
//! [`crate::sink::partition_path`]) taken out of the batch before the sink sees it, as bad
//! records that follow `onBadRecord` — so one such value never fails every write, and every
//! replay, of the batches around it.
//!
//! The raw Kafka value is no longer at hand once a batch is built: the dead letter carries
//! the row itself, as one line of JSON. Its coordinates are the decoded record's when the
//! batch is the decoded rows (no `transform.sql`); after a query, the `_topic`,
//! `_partition` and `_offset` columns when it kept them, else unknown (partition and offset
//! -1).

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::ArrowError;
use spillway_api::MetadataColumn;

use super::dead_letter::DeadRecord;
use super::metadata::RowMeta;
use crate::sink::partition_path::{Escaping, unwritable_rows};
use crate::source::TopicPartition;

/// The reason of such a bad record.
pub const REASON: &str = "PartitionValueUnwritable";

/// Splits `batch` into the rows that can be written and the dead records of those that
/// cannot. `meta`: each row's Kafka metadata, when the batch's rows are the decoded records.
pub fn take_unwritable(
    batch: RecordBatch,
    meta: Option<&[RowMeta]>,
    topics: &[String],
    (partition_by, escaping): (&[String], Escaping),
) -> Result<(RecordBatch, Vec<DeadRecord>), ArrowError> {
    if partition_by.is_empty() {
        return Ok((batch, Vec::new()));
    }
    let bad = unwritable_rows(&batch, partition_by, escaping)?;
    if bad.is_empty() {
        return Ok((batch, Vec::new()));
    }
    let mut keep = vec![true; batch.num_rows()];
    let mut dead = Vec::with_capacity(bad.len());
    for u in bad {
        keep[u.row] = false;
        let (tp, offset, key) = coordinates(&batch, u.row, meta, topics);
        dead.push(DeadRecord {
            tp,
            offset,
            key,
            value: Some(row_json(&batch, u.row)?),
            class: REASON,
            message: u.message,
        });
    }
    let kept = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))?;
    Ok((kept, dead))
}

/// The row's Kafka coordinates and key, as far as they are known.
fn coordinates(
    batch: &RecordBatch,
    row: usize,
    meta: Option<&[RowMeta]>,
    topics: &[String],
) -> (TopicPartition, i64, Option<Vec<u8>>) {
    if let Some(m) = meta.and_then(|m| m.get(row)) {
        let topic = topics.get(m.topic as usize).cloned().unwrap_or_default();
        return (
            TopicPartition {
                topic,
                partition: m.partition,
            },
            m.offset,
            m.key.clone(),
        );
    }
    let column = |c: MetadataColumn| batch.column_by_name(c.column_name()).cloned();
    let topic = column(MetadataColumn::Topic)
        .and_then(|a| {
            a.as_string_opt::<i32>()
                .filter(|s| s.is_valid(row))
                .map(|s| s.value(row).to_string())
        })
        .unwrap_or_default();
    let partition = column(MetadataColumn::Partition)
        .and_then(|a| {
            a.as_primitive_opt::<Int32Type>()
                .filter(|p| p.is_valid(row))
                .map(|p| p.value(row))
        })
        .unwrap_or(-1);
    let offset = column(MetadataColumn::Offset)
        .and_then(|a| {
            a.as_primitive_opt::<Int64Type>()
                .filter(|p| p.is_valid(row))
                .map(|p| p.value(row))
        })
        .unwrap_or(-1);
    let key = column(MetadataColumn::Key).and_then(|a| {
        a.as_binary_opt::<i32>()
            .filter(|k| k.is_valid(row))
            .map(|k| k.value(row).to_vec())
    });
    (TopicPartition { topic, partition }, offset, key)
}

/// One row as a line of JSON (without the newline).
fn row_json(batch: &RecordBatch, row: usize) -> Result<Vec<u8>, ArrowError> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(&batch.slice(row, 1))?;
    writer.finish()?;
    let mut out = writer.into_inner();
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(users: Vec<String>, offsets: Option<Vec<i64>>) -> RecordBatch {
        let mut fields = vec![Field::new("user", DataType::Utf8, false)];
        let mut cols: Vec<Arc<dyn Array>> = vec![Arc::new(StringArray::from(users))];
        if let Some(o) = offsets {
            fields.push(Field::new("_offset", DataType::Int64, false));
            cols.push(Arc::new(Int64Array::from(o)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    fn meta(offset: i64) -> RowMeta {
        RowMeta {
            topic: 0,
            partition: 3,
            offset,
            timestamp: None,
            key: Some(b"k".to_vec()),
            headers: None,
        }
    }

    #[test]
    fn rows_too_long_leave_the_batch_with_their_coordinates_and_the_row_as_json() {
        let long = "x".repeat(300);
        let b = batch(vec!["a".into(), long.clone(), "c".into()], None);
        let m = [meta(10), meta(11), meta(12)];
        let layout = (&["user".to_string()][..], Escaping::Hive);
        let (kept, dead) = take_unwritable(b, Some(&m), &["t".into()], layout).unwrap();
        assert_eq!(kept.num_rows(), 2);
        assert_eq!(dead.len(), 1);
        let d = &dead[0];
        assert_eq!(
            (d.tp.topic.as_str(), d.tp.partition, d.offset),
            ("t", 3, 11)
        );
        assert_eq!(d.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(d.class, REASON);
        let row: serde_json::Value = serde_json::from_slice(d.value.as_deref().unwrap()).unwrap();
        assert_eq!(row["user"], long.as_str());
    }

    #[test]
    fn after_a_query_the_offset_column_is_used_or_the_coordinates_are_unknown() {
        let long = "x".repeat(300);
        let layout = (&["user".to_string()][..], Escaping::Delta);
        let b = batch(vec![long.clone(), "ok".into()], Some(vec![7, 8]));
        let (kept, dead) = take_unwritable(b, None, &[], layout).unwrap();
        assert_eq!(
            (kept.num_rows(), dead[0].offset, dead[0].tp.partition),
            (1, 7, -1)
        );
        let b = batch(vec![long], None);
        let (kept, dead) = take_unwritable(b, None, &[], layout).unwrap();
        assert_eq!((kept.num_rows(), dead[0].offset), (0, -1));
    }
}
