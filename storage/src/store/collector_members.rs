//! The collectors that share one store, found through it: each collector that takes part
//! in routing writes `collectors/<writer>.json` (its writer id and the gRPC address the
//! others reach it at) every few seconds, and lists the others' as it does. A member whose
//! file has not been written for [`COLLECTOR_MEMBER_MAX_AGE_MS`] (stopped, or cut off from
//! the store) is left out, and one that stops cleanly removes its file.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::Result;
use crate::model::EpochMillis;

/// The directory of the store that holds the collectors' member files.
pub const COLLECTORS_DIR: &str = "collectors";

/// A member file older than this (by the store's own time of its last write) is left out:
/// its collector has missed several publications.
pub const COLLECTOR_MEMBER_MAX_AGE_MS: EpochMillis = 15_000;

/// One collector taking part in routing, as its member file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorMember {
    pub writer: String,
    /// Where the other collectors reach its gRPC port (`host:port`).
    pub grpc_address: String,
}

impl Store {
    /// This writer's id; empty for a store opened to read only.
    pub fn writer_id(&self) -> &str {
        &self.inner.config.writer_id
    }

    fn member_path(&self) -> Option<Path> {
        let writer = &self.inner.config.writer_id;
        (!writer.is_empty()).then(|| Path::from(format!("{COLLECTORS_DIR}/{writer}.json")))
    }

    /// Writes (again) this writer's member file, naming `grpc_address`. A store without a
    /// writer id publishes nothing.
    pub async fn publish_collector_member(&self, grpc_address: &str) -> Result<()> {
        let Some(path) = self.member_path() else {
            return Ok(());
        };
        let member = CollectorMember {
            writer: self.inner.config.writer_id.clone(),
            grpc_address: grpc_address.to_string(),
        };
        let bytes = serde_json::to_vec(&member).expect("a member serialises");
        self.inner
            .files
            .object_store()
            .put(&path, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Removes this writer's member file, so that the others stop routing to it at once.
    pub async fn withdraw_collector_member(&self) -> Result<()> {
        let Some(path) = self.member_path() else {
            return Ok(());
        };
        match self.inner.files.object_store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The collectors whose member files were written lately, sorted by writer id.
    pub async fn collector_members(&self) -> Result<Vec<CollectorMember>> {
        let store = self.inner.files.object_store();
        let listed: Vec<_> = store
            .list(Some(&Path::from(COLLECTORS_DIR)))
            .try_collect()
            .await?;
        let now = self.now_ms();
        let mut members = Vec::new();
        for object in listed {
            if object.last_modified.timestamp_millis() + COLLECTOR_MEMBER_MAX_AGE_MS < now {
                continue;
            }
            let bytes = match store.get(&object.location).await {
                Ok(got) => got.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            // A file that does not read as a member is not one.
            if let Ok(member) = serde_json::from_slice::<CollectorMember>(&bytes) {
                members.push(member);
            }
        }
        members.sort_by(|a, b| a.writer.cmp(&b.writer));
        Ok(members)
    }
}
