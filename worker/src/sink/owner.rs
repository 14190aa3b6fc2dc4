//! I/O: which pipeline owns a sink. A file in the sink's root, `_spillway_owner.json`
//! (a `_` file: Spark, Hive, pyarrow and Delta's VACUUM skip it), names the owner —
//! the Delta table's pipeline (its group id, the prefix of its `txn` app ids) or the
//! checkpoint holding a Parquet dataset's positions. It is written put-if-absent by the
//! first pipeline that opens the sink; another owner is refused instead of writing every
//! row a second time.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// The owner file, relative to the sink's root.
pub const OWNER_FILE: &str = "_spillway_owner.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Owner {
    owner: String,
}

/// Why the owner could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// The store failed.
    #[error("{0}")]
    Store(#[from] object_store::Error),
    /// The file is not what Spillway writes.
    #[error("{OWNER_FILE} is corrupt: {0}")]
    Corrupt(String),
}

/// Claims the sink at `root` for `ours` unless it has an owner; returns the other owner
/// when it is not `ours` (`None`: the sink is ours).
pub async fn claim(
    store: &dyn ObjectStore,
    root: &Path,
    ours: &str,
) -> Result<Option<String>, OwnerError> {
    let path = crate::storage::join(root, OWNER_FILE);
    let body = serde_json::to_vec(&Owner {
        owner: ours.to_string(),
    })
    .map_err(|e| OwnerError::Corrupt(e.to_string()))?;
    let created = store
        .put_opts(
            &path,
            PutPayload::from(body),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    match created {
        Ok(_) => return Ok(None),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {}
        Err(e) => return Err(e.into()),
    }
    let bytes = store.get(&path).await?.bytes().await?;
    let owner: Owner =
        serde_json::from_slice(&bytes).map_err(|e| OwnerError::Corrupt(e.to_string()))?;
    let same = owner.owner.trim_end_matches('/') == ours.trim_end_matches('/');
    Ok((!same).then_some(owner.owner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn the_first_owner_keeps_the_sink() {
        let store = InMemory::new();
        let root = Path::from("lake/t");
        assert_eq!(claim(&store, &root, "a").await.unwrap(), None);
        assert_eq!(claim(&store, &root, "a").await.unwrap(), None, "a again");
        assert_eq!(claim(&store, &root, "b").await.unwrap(), Some("a".into()));
        assert_eq!(
            claim(&store, &Path::from("lake/u"), "b").await.unwrap(),
            None
        );
    }
}
