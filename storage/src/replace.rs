//! Atomic replacement of files: a compaction's merged file and the minute files it
//! replaces, an hour's or a day's new rollup and the one before it, the files retention
//! expires. A crash at any point leaves either every old file or every new one, never
//! both (rows counted twice) nor neither (rows lost).
//!
//! The new files are first written and flushed under temporary names. Then a record
//! naming every new file (temporary and final name) and every old one is written and
//! flushed under `<data-dir>/replacing/`: that is the point of commitment. Then the new
//! files are renamed into place, the old ones deleted, and the record removed. At start
//! (`recover`), a whole record is finished: temporary files still there are renamed, old
//! files still there deleted; a record cut short was never committed, nothing of it is
//! visible yet, and it is dropped. A reader beside a running server (`hide_unfinished`)
//! leaves out what a record under way has superseded instead.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::crash_point;
use crate::error::{Error, Result};
use crate::files::{ClosedFile, DataFiles, FileEntry, WritePath};
use crate::model::EpochMillis;
use crate::table::StoredTable;

/// The directory, under the data directory, that holds replacements under way.
pub const RECORDS_DIR: &str = "replacing";

/// One partition's files and the file (if any) that takes their place.
pub(crate) struct Swap {
    pub(crate) stored: Arc<StoredTable>,
    pub(crate) partition: EpochMillis,
    pub(crate) old: Vec<FileEntry>,
    pub(crate) new: Option<ClosedFile>,
}

/// What a replacement under way changes, as written in its record.
#[derive(Debug, Serialize, Deserialize)]
struct ReplacementRecord {
    new: Vec<RecordedFile>,
    old: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordedFile {
    temporary: String,
    visible: String,
}

/// Makes every swap's new file visible and deletes every old one, as one step a crash
/// cannot cut in two; reads in this process see each partition's new file before its old
/// ones go (briefly both, never neither).
pub(crate) async fn commit(files: &DataFiles, swaps: Vec<Swap>) -> Result<()> {
    let record = ReplacementRecord {
        new: swaps
            .iter()
            .filter_map(|swap| swap.new.as_ref())
            .map(|new| RecordedFile {
                temporary: new.temporary.to_string(),
                visible: new.entry.path.to_string(),
            })
            .collect(),
        old: swaps
            .iter()
            .flat_map(|swap| swap.old.iter().map(|old| old.path.to_string()))
            .collect(),
    };
    if record.new.is_empty() && record.old.is_empty() {
        return Ok(());
    }
    let path = &files.write_path;
    let record_path = match write_record(files, &record).await {
        Ok(record_path) => record_path,
        Err(error) => {
            // Not committed: nothing of it is visible, and the new files go.
            for new in &record.new {
                let _ = path.delete(&Path::from(new.temporary.as_str())).await;
            }
            return Err(error);
        }
    };
    crash_point::reached(crash_point::REPLACEMENT_RECORDED);
    if let Err(error) = path.counted(rename_new(path, &record).await) {
        // Undone while this process can: the old files are all still there.
        undo(path, &record, &record_path).await;
        return Err(error);
    }
    crash_point::reached(crash_point::REPLACEMENT_RENAMED);
    for swap in swaps {
        swap.stored
            .replace_files(swap.partition, &swap.old, swap.new.map(|new| new.entry));
    }
    // From here the new state is the one this process reads; a failure leaves the
    // record for the next start to finish.
    path.counted(delete_old(path, &record).await)?;
    crash_point::reached(crash_point::REPLACEMENT_DELETED);
    path.health.succeeded(path.clock.now_ms());
    path.delete(&record_path).await
}

/// Deletes `expired` (retention) as one step: after a crash every one of them goes.
pub(crate) async fn delete_all(files: &DataFiles, expired: &[FileEntry]) -> Result<()> {
    commit_deletes(files, expired.iter().map(|f| f.path.to_string()).collect()).await
}

async fn commit_deletes(files: &DataFiles, old: Vec<String>) -> Result<()> {
    if old.is_empty() {
        return Ok(());
    }
    let record = ReplacementRecord {
        new: Vec::new(),
        old,
    };
    let record_path = write_record(files, &record).await?;
    crash_point::reached(crash_point::REPLACEMENT_RECORDED);
    let path = &files.write_path;
    path.counted(delete_old(path, &record).await)?;
    crash_point::reached(crash_point::REPLACEMENT_DELETED);
    path.delete(&record_path).await
}

/// Finishes the replacements a crash interrupted (see the module's doc). Runs at start,
/// before the tables' files are listed.
pub(crate) async fn recover(files: &DataFiles) -> Result<()> {
    let path = &files.write_path;
    for (record_path, record) in records(path.reads.as_ref()).await? {
        // Another writer's replacement under way is that writer's to finish.
        if !files.is_own(record_path.filename().unwrap_or_default()) {
            continue;
        }
        let Some(record) = record else {
            tracing::warn!(record = %record_path, "dropping a replacement that was never committed");
            path.delete(&record_path).await?;
            continue;
        };
        rename_new(path, &record).await?;
        let mut missing = Vec::new();
        for new in &record.new {
            if !path.exists(&Path::from(new.visible.as_str())).await? {
                missing.push(new.visible.as_str());
            }
        }
        if missing.is_empty() {
            delete_old(path, &record).await?;
            tracing::info!(
                record = %record_path,
                new = record.new.len(),
                old = record.old.len(),
                "finished a replacement a stop interrupted"
            );
        } else {
            tracing::error!(
                record = %record_path,
                ?missing,
                "a committed replacement lacks new files; the old files are kept"
            );
        }
        path.delete(&record_path).await?;
    }
    Ok(())
}

/// For a reader beside a running server: hides from its listing what the replacements
/// under way have superseded, or, where their new files are not all visible yet, the new
/// files already visible, so that it reads each row once.
pub(crate) async fn hide_unfinished(files: &DataFiles) -> Result<()> {
    let path = &files.write_path;
    let mut hidden = Vec::new();
    for (_, record) in records(path.reads.as_ref()).await? {
        let Some(record) = record else {
            continue;
        };
        let mut visible = Vec::new();
        for new in &record.new {
            if path.exists(&Path::from(new.visible.as_str())).await? {
                visible.push(new.visible.clone());
            }
        }
        if visible.len() == record.new.len() {
            hidden.extend(record.old);
        } else {
            hidden.extend(visible);
        }
    }
    files.hide(hidden);
    Ok(())
}

/// Every record, in the order they were made, with its contents (`None` when cut short).
async fn records(store: &dyn ObjectStore) -> Result<Vec<(Path, Option<ReplacementRecord>)>> {
    let mut listed: Vec<_> = store
        .list(Some(&Path::from(RECORDS_DIR)))
        .try_collect()
        .await?;
    listed.sort_by(|a, b| a.location.cmp(&b.location));
    let mut records = Vec::with_capacity(listed.len());
    for object in listed {
        let bytes = match store.get(&object.location).await {
            Ok(got) => got.bytes().await?,
            // Finished and removed since the listing (by the writer that made it).
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        let record = serde_json::from_slice::<ReplacementRecord>(&bytes).ok();
        records.push((object.location, record));
    }
    Ok(records)
}

/// Writes and flushes a record; once this returns, the replacement is committed.
async fn write_record(files: &DataFiles, record: &ReplacementRecord) -> Result<Path> {
    let path = &files.write_path;
    let record_path = Path::from(format!("{RECORDS_DIR}/{}.json", files.new_stem()));
    let bytes = serde_json::to_vec(record)
        .map_err(|error| Error::ObjectStore(format!("encoding a replacement record: {error}")))?;
    let written = async {
        path.store
            .put(&record_path, PutPayload::from(bytes))
            .await?;
        path.durability.sync_file(&record_path).await?;
        path.durability
            .sync_dirs_of(std::slice::from_ref(&record_path))
            .await
    }
    .await;
    if written.is_err() {
        let _ = path.delete(&record_path).await;
    }
    path.counted(written)?;
    Ok(record_path)
}

/// Renames each new file still under its temporary name into place, then flushes.
async fn rename_new(path: &WritePath, record: &ReplacementRecord) -> Result<()> {
    let mut renamed = Vec::new();
    for new in &record.new {
        let temporary = Path::from(new.temporary.as_str());
        let visible = Path::from(new.visible.as_str());
        if path.exists(&temporary).await? {
            path.store.rename(&temporary, &visible).await?;
        }
        renamed.push(visible);
    }
    path.durability.sync_dirs_of(&renamed).await
}

/// Deletes each old file still there, then flushes.
async fn delete_old(path: &WritePath, record: &ReplacementRecord) -> Result<()> {
    let old: Vec<Path> = record
        .old
        .iter()
        .map(|old| Path::from(old.as_str()))
        .collect();
    for file in &old {
        path.delete(file).await?;
    }
    path.durability.sync_dirs_of(&old).await
}

/// Takes back a replacement whose renames failed: its new files go, then its record.
async fn undo(path: &WritePath, record: &ReplacementRecord, record_path: &Path) {
    let mut undone = true;
    for new in &record.new {
        for name in [&new.visible, &new.temporary] {
            undone &= path.delete(&Path::from(name.as_str())).await.is_ok();
        }
    }
    if undone && path.delete(record_path).await.is_ok() {
        return;
    }
    tracing::error!(record = %record_path, "a failed replacement could not be taken back; the next start finishes it");
}

/// What a store does with the replacements on disk before it lists its files: a writer
/// removes unfinished uploads and finishes the replacements; a reader beside a running
/// server leaves alone what is under way and hides what it supersedes.
pub(crate) async fn prepare(files: &DataFiles) -> Result<()> {
    if files.is_read_only() {
        return hide_unfinished(files).await;
    }
    files
        .write_path
        .durability
        .remove_unfinished_uploads()
        .await?;
    recover(files).await
}
