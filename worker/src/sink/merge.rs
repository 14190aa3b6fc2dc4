//! Compute: the within-batch half of `mode: merge` — one row per key, the latest by the
//! ordering column, the later Kafka offset (the later row of the batch) on a tie.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;

const SEQ: &str = "__spillway_seq";
const RANK: &str = "__spillway_rn";

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Keeps one row per `keys`: the greatest `order_by` (nulls last), then the latest row.
/// Rows of a batch are in offset order within each Kafka partition, and a key's records
/// share a partition when the producer keys by it.
pub async fn dedup(
    batch: RecordBatch,
    keys: &[String],
    order_by: Option<&str>,
) -> Result<RecordBatch, DataFusionError> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(SEQ, DataType::UInt64, false)));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(UInt64Array::from_iter_values(
        0..batch.num_rows() as u64,
    )));
    let with_seq = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let ctx = SessionContext::new();
    ctx.register_batch("batch", with_seq)?;
    let partition = keys.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
    let order = match order_by {
        Some(o) => format!("{} DESC NULLS LAST, {} DESC", quote(o), quote(SEQ)),
        None => format!("{} DESC", quote(SEQ)),
    };
    let select = schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {select} FROM (SELECT *, row_number() OVER (PARTITION BY {partition} ORDER BY {order}) AS {rank} FROM batch) WHERE {rank} = 1",
        rank = quote(RANK)
    );
    let parts = ctx.sql(&sql).await?.collect().await?;
    let mut out = Vec::with_capacity(schema.fields().len());
    for (i, _) in schema.fields().iter().enumerate() {
        let pieces: Vec<&dyn arrow_array::Array> =
            parts.iter().map(|p| p.column(i).as_ref()).collect();
        out.push(if pieces.is_empty() {
            arrow_array::new_empty_array(schema.field(i).data_type())
        } else {
            arrow_select::concat::concat(&pieces)?
        });
    }
    Ok(RecordBatch::try_new(schema, out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Int64Array, StringArray};

    #[tokio::test]
    async fn keeps_the_latest_version_of_each_key() {
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
        let out = dedup(b.clone(), &["id".into()], Some("t")).await.unwrap();
        let mut got: Vec<(String, i64)> = (0..out.num_rows())
            .map(|r| {
                (
                    out.column(0).as_string::<i32>().value(r).to_string(),
                    out.column(2).as_primitive::<Int64Type>().value(r),
                )
            })
            .collect();
        got.sort();
        // a: t=9 twice, the later row (v=4) wins; b: t=1 beats a null t.
        assert_eq!(got, [("a".to_string(), 4), ("b".to_string(), 2)]);
        // Without an ordering column the later row wins.
        let out = dedup(b, &["id".into()], None).await.unwrap();
        let mut v: Vec<i64> = out.column(2).as_primitive::<Int64Type>().values().to_vec();
        v.sort();
        assert_eq!(v, [4, 5]);
    }
}
