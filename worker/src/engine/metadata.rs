//! Pure: Kafka metadata of each row and the metadata columns built from it.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, MapBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use spillway_api::MetadataColumn;

/// The Kafka coordinates and metadata of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    /// Index into the batch's topic list.
    pub topic: u16,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp (ms) and whether it is LogAppendTime.
    pub timestamp: Option<(i64, bool)>,
    /// The key, when the `key` column is requested.
    pub key: Option<Vec<u8>>,
    /// The headers, when the `headers` column is requested.
    pub headers: Option<Vec<(String, Option<Vec<u8>>)>>,
}

/// The Arrow field of a metadata column.
pub fn field(c: MetadataColumn) -> Field {
    let name = c.column_name();
    match c {
        MetadataColumn::Topic | MetadataColumn::TimestampType => {
            Field::new(name, DataType::Utf8, false)
        }
        MetadataColumn::Partition => Field::new(name, DataType::Int32, false),
        MetadataColumn::Offset => Field::new(name, DataType::Int64, false),
        MetadataColumn::Timestamp => Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        MetadataColumn::Key => Field::new(name, DataType::Binary, true),
        MetadataColumn::Headers => Field::new(
            name,
            DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(
                        vec![
                            Field::new("keys", DataType::Utf8, false),
                            Field::new("values", DataType::Binary, true),
                        ]
                        .into(),
                    ),
                    false,
                )),
                false,
            ),
            true,
        ),
    }
}

fn column(c: MetadataColumn, meta: &[RowMeta], topics: &[String]) -> ArrayRef {
    match c {
        MetadataColumn::Topic => {
            Arc::new(StringArray::from_iter_values(meta.iter().map(|m| {
                topics.get(m.topic as usize).map_or("", String::as_str)
            })))
        }
        MetadataColumn::Partition => Arc::new(Int32Array::from_iter_values(
            meta.iter().map(|m| m.partition),
        )),
        MetadataColumn::Offset => {
            Arc::new(Int64Array::from_iter_values(meta.iter().map(|m| m.offset)))
        }
        MetadataColumn::Timestamp => Arc::new(
            TimestampMillisecondArray::from_iter(meta.iter().map(|m| m.timestamp.map(|t| t.0)))
                .with_timezone("UTC"),
        ),
        MetadataColumn::TimestampType => Arc::new(StringArray::from_iter_values(meta.iter().map(
            |m| match m.timestamp {
                Some((_, true)) => "LogAppendTime",
                Some((_, false)) => "CreateTime",
                None => "NoTimestamp",
            },
        ))),
        MetadataColumn::Key => Arc::new(BinaryArray::from_iter(
            meta.iter().map(|m| m.key.as_deref()),
        )),
        MetadataColumn::Headers => {
            let mut b = MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new());
            for m in meta {
                for (k, v) in m.headers.iter().flatten() {
                    b.keys().append_value(k);
                    b.values().append_option(v.as_deref());
                }
                // A map entry is always appended valid: a record without headers has {}.
                let _ = b.append(true);
            }
            Arc::new(b.finish())
        }
    }
}

/// `batch` with the requested metadata columns appended.
pub fn with_metadata(
    batch: RecordBatch,
    meta: &[RowMeta],
    topics: &[String],
    cols: &[MetadataColumn],
) -> Result<RecordBatch, ArrowError> {
    if cols.is_empty() {
        return Ok(batch);
    }
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for c in cols {
        fields.push(Arc::new(field(*c)));
        columns.push(column(*c, meta, topics));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Event-time (min, max, avg) of `column` in epoch milliseconds, over its non-null values;
/// the column may be a timestamp, a date, or epoch milliseconds (an integer).
pub fn event_time_millis(
    batch: &RecordBatch,
    column: &str,
) -> Result<Option<(i64, i64, f64)>, ArrowError> {
    let idx = batch.schema().index_of(column).map_err(|_| {
        ArrowError::SchemaError(format!(
            "eventTime.column {column:?} is not a column of the batch"
        ))
    })?;
    let ms = arrow_cast::cast(
        batch.column(idx),
        &DataType::Timestamp(TimeUnit::Millisecond, None),
    )?;
    let Some(ms) = ms.as_any().downcast_ref::<TimestampMillisecondArray>() else {
        return Ok(None);
    };
    let (mut min, mut max, mut sum, mut n) = (i64::MAX, i64::MIN, 0f64, 0u64);
    for v in ms.iter().flatten() {
        min = min.min(v);
        max = max.max(v);
        sum += v as f64;
        n += 1;
    }
    Ok((n > 0).then(|| (min, max, sum / n as f64)))
}

/// Spark's `eventTime` progress field: ISO-8601 min, max, avg and watermark.
pub fn event_time_stats(
    stats: Option<(i64, i64, f64)>,
    watermark_ms: Option<i64>,
) -> spillway_api::EventTimeStats {
    let iso = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    spillway_api::EventTimeStats {
        min: stats.map(|s| iso(s.0)),
        max: stats.map(|s| iso(s.1)),
        avg: stats.map(|s| iso(s.2 as i64)),
        watermark: watermark_ms.map(iso),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_columns_align_with_rows() {
        let base = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let meta = vec![
            RowMeta {
                topic: 0,
                partition: 3,
                offset: 10,
                timestamp: Some((1000, false)),
                key: Some(b"k".to_vec()),
                headers: Some(vec![("h".into(), Some(b"v".to_vec()))]),
            },
            RowMeta {
                topic: 0,
                partition: 3,
                offset: 11,
                timestamp: None,
                key: None,
                headers: Some(vec![]),
            },
        ];
        let all = [
            MetadataColumn::Topic,
            MetadataColumn::Partition,
            MetadataColumn::Offset,
            MetadataColumn::Timestamp,
            MetadataColumn::TimestampType,
            MetadataColumn::Key,
            MetadataColumn::Headers,
        ];
        let b = with_metadata(base, &meta, &["t".into()], &all).unwrap();
        assert_eq!(b.num_columns(), 8);
        let names: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "v",
                "_topic",
                "_partition",
                "_offset",
                "_timestamp",
                "_timestamp_type",
                "_key",
                "_headers"
            ]
        );
        let offsets = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(offsets.values(), &[10, 11]);
    }
}
