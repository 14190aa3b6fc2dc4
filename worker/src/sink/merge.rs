//! Compute: the within-batch half of `mode: merge` — one row per key, the latest by the
//! ordering column, the later Kafka offset (the later row of the batch) on a tie.

use arrow_array::{RecordBatch, UInt32Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::ArrowError;

/// Keeps one row per `keys`: the greatest `order_by` (a null is older than any value),
/// then the later row; the rows kept stay in batch order. Rows of a batch are in offset
/// order within each Kafka partition, and a key's records share a partition when the
/// producer keys by it. One pass over the batch: keys and the ordering column are encoded
/// as comparable rows (`arrow-row`) and the best row per key kept in a hash map.
pub fn dedup(
    batch: RecordBatch,
    keys: &[String],
    order_by: Option<&str>,
) -> Result<RecordBatch, ArrowError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| ArrowError::SchemaError(format!("no column {name:?} in the batch")))
    };
    let key_columns = keys
        .iter()
        .map(|k| column(k))
        .collect::<Result<Vec<_>, _>>()?;
    let key_rows = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?
    .convert_columns(&key_columns)?;
    // Ascending with nulls first: a null orders before (is older than) every value.
    let order_rows = match order_by {
        Some(o) => {
            let c = column(o)?;
            Some(
                RowConverter::new(vec![SortField::new(c.data_type().clone())])?
                    .convert_columns(&[c])?,
            )
        }
        None => None,
    };
    let mut best: std::collections::HashMap<arrow_row::Row<'_>, usize> =
        std::collections::HashMap::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let slot = best.entry(key_rows.row(i)).or_insert(i);
        // A later row replaces the kept one unless the kept one is newer.
        let newer_kept = order_rows.as_ref().is_some_and(|o| o.row(*slot) > o.row(i));
        if !newer_kept {
            *slot = i;
        }
    }
    if best.len() == batch.num_rows() {
        return Ok(batch);
    }
    let mut kept: Vec<u32> = best.into_values().map(|i| i as u32).collect();
    kept.sort_unstable();
    arrow_select::take::take_record_batch(&batch, &UInt32Array::from(kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn keeps_the_latest_version_of_each_key() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("t", DataType::Int64, true),
            Field::new("v", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "a", "b"])),
                Arc::new(Int64Array::from(vec![
                    Some(5),
                    Some(1),
                    Some(9),
                    Some(9),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
            ],
        )
        .unwrap();
        let out = dedup(b.clone(), &["id".into()], Some("t")).unwrap();
        let got: Vec<(String, i64)> = (0..out.num_rows())
            .map(|r| {
                (
                    out.column(0).as_string::<i32>().value(r).to_string(),
                    out.column(2).as_primitive::<Int64Type>().value(r),
                )
            })
            .collect();
        // a: t=9 twice, the later row (v=4) wins; b: t=1 beats a null t; in batch order.
        assert_eq!(got, [("b".to_string(), 2), ("a".to_string(), 4)]);
        // Without an ordering column the later row wins.
        let out = dedup(b.clone(), &["id".into()], None).unwrap();
        let v: Vec<i64> = out.column(2).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(v, [4, 5]);
        // A batch without duplicate keys is returned as it is; a missing column is an error.
        let one = b.slice(0, 2);
        assert_eq!(dedup(one.clone(), &["id".into()], Some("t")).unwrap(), one);
        assert!(dedup(b, &["nope".into()], None).is_err());
    }
}
