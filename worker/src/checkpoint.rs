//! I/O: the pipeline's checkpoint on object storage (or a local path): the stable query
//! id (created put-if-absent) and the recent progress reports.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use spillway_api::StreamingQueryProgress;
use url::Url;

use crate::serve::progress::RECENT;

/// Errors of the checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error("checkpoint {uri}: {source}")]
    Store {
        /// Checkpoint URI.
        uri: String,
        /// The error.
        #[source]
        source: object_store::Error,
    },
    /// A checkpoint file is not what Spillway writes.
    #[error("checkpoint {uri}: corrupt {file}: {message}")]
    Corrupt {
        /// Checkpoint URI.
        uri: String,
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
}

/// The checkpoint of one pipeline.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    uri: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Metadata {
    id: String,
}

impl Checkpoint {
    /// Opens the checkpoint at `url`.
    pub fn open(
        url: &Url,
        options: &std::collections::HashMap<String, String>,
    ) -> Result<Self, CheckpointError> {
        let uri = url.to_string();
        let (store, prefix) = crate::storage::object_store(url, options).map_err(|source| {
            CheckpointError::Store {
                uri: uri.clone(),
                source,
            }
        })?;
        Ok(Self { store, prefix, uri })
    }

    fn path(&self, name: &str) -> Path {
        crate::storage::join(&self.prefix, name)
    }

    fn err(&self, source: object_store::Error) -> CheckpointError {
        CheckpointError::Store {
            uri: self.uri.clone(),
            source,
        }
    }

    /// The query id, created on first use and stable afterwards (put-if-absent, so two
    /// workers starting together agree on one id).
    pub async fn query_id(&self) -> Result<String, CheckpointError> {
        let path = self.path("metadata.json");
        let fresh = Metadata {
            id: uuid::Uuid::new_v4().to_string(),
        };
        let body = serde_json::to_vec(&fresh).map_err(|e| self.corrupt("metadata.json", e))?;
        match self
            .store
            .put_opts(
                &path,
                PutPayload::from(body),
                PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => return Ok(fresh.id),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(self.err(e)),
        }
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.err(e))?
            .bytes()
            .await
            .map_err(|e| self.err(e))?;
        let m: Metadata =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt("metadata.json", e))?;
        Ok(m.id)
    }

    fn corrupt(&self, file: &str, e: impl ToString) -> CheckpointError {
        CheckpointError::Corrupt {
            uri: self.uri.clone(),
            file: file.into(),
            message: e.to_string(),
        }
    }

    /// Reads `name`, `None` when it does not exist.
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        match self.store.get(&self.path(name)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| self.err(e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Writes `name` unless it exists; returns what is stored afterwards (ours, or the
    /// one another worker wrote first).
    async fn create_or_read(&self, name: &str, body: Vec<u8>) -> Result<Vec<u8>, CheckpointError> {
        let created = self
            .store
            .put_opts(
                &self.path(name),
                PutPayload::from(body.clone()),
                PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                },
            )
            .await;
        match created {
            Ok(_) => Ok(body),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => self
                .read(name)
                .await?
                .ok_or_else(|| self.corrupt(name, "vanished after it existed")),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The start of partition `partition` of `topic` for a pipeline that has no position in
    /// its sink yet: the first one resolved (from `startingOffsets`) is kept, put-if-absent,
    /// so a restart, a rebalance or another worker starts there too — never at a later
    /// `latest` that would skip what arrived meanwhile (Spark's offset log does the same).
    pub async fn start_offset(
        &self,
        topic: &str,
        partition: i32,
        resolved: i64,
    ) -> Result<i64, CheckpointError> {
        self.keep_offset(&format!("sources/{topic}/{partition}.json"), resolved)
            .await
    }

    /// Writes `{"offset": resolved}` to `name` unless it exists; returns the offset kept.
    async fn keep_offset(&self, name: &str, resolved: i64) -> Result<i64, CheckpointError> {
        let body = serde_json::to_vec(&serde_json::json!({ "offset": resolved }))
            .map_err(|e| self.corrupt(name, e))?;
        let stored = self.create_or_read(name, body).await?;
        serde_json::from_slice::<serde_json::Value>(&stored)
            .ok()
            .and_then(|v| v.get("offset")?.as_i64())
            .ok_or_else(|| self.corrupt(name, "no offset"))
    }

    /// The start recorded for partition `partition` of `topic` by [`Self::start_offset`].
    pub async fn recorded_start(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, CheckpointError> {
        let name = format!("sources/{topic}/{partition}.json");
        let Some(stored) = self.read(&name).await? else {
            return Ok(None);
        };
        serde_json::from_slice::<serde_json::Value>(&stored)
            .ok()
            .and_then(|v| v.get("offset")?.as_i64())
            .map(Some)
            .ok_or_else(|| self.corrupt(&name, "no offset"))
    }

    /// The end offset of partition `partition` of `topic` in a bounded run
    /// (`endingOffsets`): the first one resolved is kept, put-if-absent, so every worker, a
    /// restart and a re-run read the same range. Returns the kept end.
    pub async fn end_offset(
        &self,
        topic: &str,
        partition: i32,
        resolved: i64,
    ) -> Result<i64, CheckpointError> {
        self.keep_offset(&format!("ends/{topic}/{partition}.json"), resolved)
            .await
    }

    /// The reader schema a pipeline without `readerSchema` adopted (the first writer schema
    /// it met, or its evolution): the table's schema, kept across restarts.
    pub async fn reader_schema(&self) -> Result<Option<String>, CheckpointError> {
        Ok(self
            .read("reader-schema.avsc")
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Records the adopted reader schema (before the commit of the first batch decoded
    /// with it).
    pub async fn write_reader_schema(&self, schema: &str) -> Result<(), CheckpointError> {
        self.store
            .put(
                &self.path("reader-schema.avsc"),
                PutPayload::from(schema.as_bytes().to_vec()),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The batch id of the last recorded report.
    async fn last_batch_id(&self) -> Result<Option<i64>, CheckpointError> {
        let prefix = self.path("progress");
        let items: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        Ok(items
            .iter()
            .filter_map(|o| {
                o.location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse::<i64>()
                    .ok()
            })
            .max())
    }

    /// The id the next batch gets: one more than the last recorded report.
    pub async fn next_batch_id(&self) -> Result<i64, CheckpointError> {
        Ok(self.last_batch_id().await?.map_or(0, |b| b + 1))
    }

    /// The last recorded report (it carries the event-time watermark across restarts).
    pub async fn last_progress(&self) -> Result<Option<StreamingQueryProgress>, CheckpointError> {
        let Some(id) = self.last_batch_id().await? else {
            return Ok(None);
        };
        let file = format!("progress/{id:020}.json");
        let bytes = match self.store.get(&self.path(&file)).await {
            Ok(r) => r.bytes().await.map_err(|e| self.err(e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.corrupt(&file, e))
    }

    /// Records a report and forgets the one [`RECENT`] batches older.
    pub async fn write_progress(&self, p: &StreamingQueryProgress) -> Result<(), CheckpointError> {
        let body = serde_json::to_vec(p).map_err(|e| self.corrupt("progress", e))?;
        self.store
            .put(
                &self.path(&format!("progress/{:020}.json", p.batch_id)),
                PutPayload::from(body),
            )
            .await
            .map_err(|e| self.err(e))?;
        let old = p.batch_id - RECENT as i64;
        if old >= 0 {
            let _ = self
                .store
                .delete(&self.path(&format!("progress/{old:020}.json")))
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        let dir = std::env::temp_dir().join(format!("ckpt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Checkpoint::open(
            &Url::from_directory_path(&dir).unwrap(),
            &Default::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_first_resolved_start_of_a_partition_is_kept() {
        let c = checkpoint();
        assert_eq!(c.start_offset("t", 0, 100).await.unwrap(), 100);
        // A restart (or another worker) resolving `latest` later gets the first start.
        assert_eq!(c.start_offset("t", 0, 250).await.unwrap(), 100);
        assert_eq!(c.start_offset("t", 1, 7).await.unwrap(), 7, "per partition");
    }

    #[tokio::test]
    async fn the_adopted_reader_schema_survives_a_restart() {
        let c = checkpoint();
        assert_eq!(c.reader_schema().await.unwrap(), None);
        c.write_reader_schema("\"long\"").await.unwrap();
        assert_eq!(
            c.reader_schema().await.unwrap().as_deref(),
            Some("\"long\"")
        );
    }
}
