//! I/O-free compute: `transform.sql` — one SQL `SELECT` over each micro-batch with
//! DataFusion. The batch (metadata columns included) is the table `batch`; the result,
//! whatever its shape, is what the sink writes.

use std::sync::Arc;

use arrow_array::RecordBatch;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::SessionContext;

/// Errors of the transform (they stop the pipeline: a query that fails on one batch would
/// fail on the next).
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// Planning or running the query failed.
    #[error("transform.sql failed: {0}")]
    Query(#[from] Box<DataFusionError>),
    /// Combining the result failed.
    #[error("transform.sql result: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl From<DataFusionError> for TransformError {
    fn from(e: DataFusionError) -> Self {
        Self::Query(Box::new(e))
    }
}

/// A compiled-per-batch SQL transform.
pub struct SqlTransform {
    ctx: SessionContext,
    sql: String,
}

impl std::fmt::Debug for SqlTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTransform")
            .field("sql", &self.sql)
            .finish()
    }
}

impl SqlTransform {
    /// A transform running `sql` (a single query; DDL, DML and `SET` are refused).
    pub fn new(sql: &str) -> Self {
        Self {
            ctx: SessionContext::new(),
            sql: sql.to_string(),
        }
    }

    /// Runs the query over `batch`.
    pub async fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, TransformError> {
        self.ctx.deregister_table("batch")?;
        self.ctx.register_batch("batch", batch)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self.ctx.sql_with_options(&self.sql, options).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let parts = df.collect().await?;
        self.ctx.deregister_table("batch")?;
        Ok(arrow_select::concat::concat_batches(&schema, &parts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("status", DataType::Utf8, false),
                Field::new("ts", DataType::Int64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["NEW", "CANCELLED", "PAID"])),
                Arc::new(Int64Array::from(vec![
                    1_795_305_600_000,
                    1_795_305_600_000,
                    1_767_225_600_000,
                ])),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn filters_projects_and_derives_columns_batch_after_batch() {
        let t = SqlTransform::new(
            "SELECT status, CAST(date_part('year', to_timestamp_millis(ts)) AS BIGINT) AS year FROM batch WHERE status <> 'CANCELLED'",
        );
        for _ in 0..2 {
            let out = t.apply(batch()).await.unwrap();
            assert_eq!(out.num_rows(), 2);
            let year = out
                .column_by_name("year")
                .unwrap()
                .as_primitive::<Int64Type>();
            assert_eq!(year.values(), &[2026, 2026]);
        }
    }

    #[tokio::test]
    async fn statements_other_than_queries_are_refused() {
        let t = SqlTransform::new("CREATE TABLE x AS SELECT * FROM batch");
        let err = t.apply(batch()).await.unwrap_err().to_string();
        assert!(err.contains("transform.sql failed"), "{err}");
        let t = SqlTransform::new("SELECT nope FROM batch");
        let err = t.apply(batch()).await.unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
