//! A writer's note kept with the minute files it describes: durable exactly when they are.
//!
//! Whoever appends closed minutes can hand the store a note (the store does not read it);
//! [`Store::append_batches_noted`] makes the note visible only once the files are, and
//! opening the store undoes files a crash left without their note; [`recover`] gives the
//! note back. So after any crash the note read back describes exactly the files in the
//! store. The note and its pending record are in the node's own data directory; the files
//! may be in a shared store, where only this writer's own names are listed and undone. The
//! collector notes there how far its write-ahead log is in the files, which is what lets a
//! replay skip what is already stored.
//!
//! How: before the files, a pending record lists this writer's Parquet files already in
//! each partition the append writes to; after the files, the note replaces the last one (a
//! rename) and the pending record goes. A pending record newer than the note at start means
//! the append was cut short: the files not on its lists are the append's, and are deleted.
//! Nothing else writes minute files meanwhile: the caller holds its memory peak permit, which the
//! store's upkeep takes for each of its writes too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::Result;
use crate::batch::ClosedBatch;
use crate::files::{DataFiles, Granularity, partition_dir};
use crate::model::EpochMillis;
use crate::store::{Store, table_name};

const NOTE_FILE: &str = "written-note.json";
const PENDING_FILE: &str = "written-note.pending.json";

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    sequence: u64,
    note: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pending {
    sequence: u64,
    /// Per partition directory (relative to the data directory), its Parquet files before
    /// the append.
    partitions: BTreeMap<String, BTreeSet<String>>,
}

impl Store {
    /// [`Store::append_batches_before`], and `note` made durable exactly when the files
    /// are: after a crash at any point, [`recover`] gives back either the previous note
    /// with none of these files, or this note with all of them. An error leaves the
    /// previous note in force; the next call (or [`recover`]) takes up what it left.
    pub async fn append_batches_noted(
        &self,
        batches: &[ClosedBatch],
        before: Option<EpochMillis>,
        note: &str,
    ) -> Result<()> {
        let data_dir = self.config().data_dir.clone();
        let committed = read_json::<Note>(&data_dir.join(NOTE_FILE))?;
        let sequence = committed.map_or(1, |n| n.sequence + 1);
        let mut pending = read_json::<Pending>(&data_dir.join(PENDING_FILE))?
            .filter(|p| p.sequence == sequence)
            .unwrap_or(Pending {
                sequence,
                partitions: BTreeMap::new(),
            });
        let mut grew = false;
        for closed in batches.iter().filter(|b| b.rows() > 0) {
            let dir = partition_dir(
                &table_name(closed.table, Granularity::Minute),
                Granularity::Minute,
                closed.hour,
            );
            if let std::collections::btree_map::Entry::Vacant(vacant) =
                pending.partitions.entry(dir)
            {
                // A partition an earlier, failed try did not write to: its files now are
                // all older than this append.
                let files = self.inner.files.own_files_in(vacant.key()).await?;
                vacant.insert(files);
                grew = true;
            }
        }
        if grew {
            write_atomically(&data_dir, PENDING_FILE, &to_json(&pending)?)?;
        }
        // The files and their directories are flushed as each file is made visible.
        self.append_batches_before(batches, before).await?;
        if !pending.partitions.is_empty() {
            fault_point("between_files_and_note");
        }
        let note = Note {
            sequence,
            note: note.to_string(),
        };
        write_atomically(&data_dir, NOTE_FILE, &to_json(&note)?)?;
        if !pending.partitions.is_empty() {
            remove_if_present(&data_dir.join(PENDING_FILE))?;
            sync_dir(&data_dir)?;
        }
        Ok(())
    }
}

/// The last note written with files in `data_dir`'s store, if any. What an append a crash
/// cut short wrote is undone when the store opens (`undo_unfinished`), so the note read
/// here describes the files the opened store holds.
pub fn recover(data_dir: &Path) -> Result<Option<String>> {
    Ok(read_json::<Note>(&data_dir.join(NOTE_FILE))?.map(|n| n.note))
}

/// Undoes an append a crash cut short: deletes this writer's files its pending record
/// does not list, which its note never covered. Run as a writer opens its store, before
/// the files are listed.
pub(crate) async fn undo_unfinished(files: &DataFiles, data_dir: &Path) -> Result<()> {
    let committed = read_json::<Note>(&data_dir.join(NOTE_FILE))?;
    let pending_path = data_dir.join(PENDING_FILE);
    let Some(pending) = read_json::<Pending>(&pending_path)? else {
        return Ok(());
    };
    let committed_sequence = committed.as_ref().map_or(0, |n| n.sequence);
    if pending.sequence > committed_sequence {
        let mut deleted = Vec::new();
        for (dir, before) in &pending.partitions {
            for name in files.own_files_in(dir).await? {
                if before.contains(&name) {
                    continue;
                }
                let path = object_store::path::Path::from(format!("{dir}/{name}"));
                warn!(
                    file = %path,
                    "deleting a file of a minute write a crash cut short; the write-ahead log holds its rows"
                );
                files.write_path.delete(&path).await?;
                deleted.push(path);
            }
        }
        files.write_path.durability.sync_dirs_of(&deleted).await?;
    }
    remove_if_present(&pending_path)?;
    sync_dir(data_dir)?;
    Ok(())
}

/// A test-only crash point: when `MESHSCOPE_FAULT_ABORT` names `point`, the process aborts
/// there, as a crash at that moment would stop it.
fn fault_point(point: &str) {
    if std::env::var_os("MESHSCOPE_FAULT_ABORT").is_some_and(|p| p == point) {
        tracing::error!(point, "aborting at a fault point, as asked");
        std::process::abort();
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| std::io::Error::other(e).into())
}

/// Writes `name` in `dir` through a temporary file, fsynced, renamed, and the directory
/// fsynced: a crash leaves the old content or the new.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;
    use crate::model::{MINUTE_MS, MetricRow, Metrics, RowKey, ServiceRef, Side};

    fn batches(minute: EpochMillis, calls: u64) -> Vec<ClosedBatch> {
        let row = MetricRow {
            minute,
            key: RowKey::Service {
                service: ServiceRef::service("shop", "cart"),
            },
            side: Side::Server,
            metrics: Metrics {
                calls,
                ..Metrics::default()
            },
        };
        let table = crate::Table::of(&row.key);
        vec![ClosedBatch {
            table,
            hour: crate::files::hour_of(minute),
            batch: crate::batch::to_batch(table, [&row]).unwrap(),
        }]
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(at) = stack.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    found.push(path.file_name().unwrap().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    async fn store(dir: &Path) -> Store {
        Store::open(StoreConfig {
            maintenance_interval_secs: 0,
            ..StoreConfig::in_dir(dir)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_note_comes_back_with_its_files_and_a_cut_short_append_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let minute = 1_800_000_000_000 / MINUTE_MS * MINUTE_MS;
        assert_eq!(recover(dir.path()).unwrap(), None);
        let first = store(dir.path()).await;
        first
            .append_batches_noted(&batches(minute, 3), None, "first")
            .await
            .unwrap();
        let kept = files(dir.path());
        assert_eq!(kept.len(), 1);
        assert_eq!(recover(dir.path()).unwrap().as_deref(), Some("first"));

        // A second append whose note never made it: its pending record is left, as a
        // crash between the files and the note leaves it.
        let pending = Pending {
            sequence: 2,
            partitions: [(
                partition_dir(
                    &table_name(crate::Table::ServiceMinute, Granularity::Minute),
                    Granularity::Minute,
                    crate::files::hour_of(minute),
                ),
                kept.iter().cloned().collect(),
            )]
            .into(),
        };
        write_atomically(
            dir.path(),
            PENDING_FILE,
            &serde_json::to_vec(&pending).unwrap(),
        )
        .unwrap();
        first
            .append_batches_before(&batches(minute + MINUTE_MS, 5), None)
            .await
            .unwrap();
        assert_eq!(files(dir.path()).len(), 2);
        drop(first);
        assert_eq!(recover(dir.path()).unwrap().as_deref(), Some("first"));
        let reopened = store(dir.path()).await;
        assert_eq!(
            files(dir.path()),
            kept,
            "the cut-short append's file is gone"
        );
        assert!(!dir.path().join(PENDING_FILE).exists());
        drop(reopened);

        // A pending record older than the note is what a crash right after the note
        // leaves: nothing is undone.
        let second = store(dir.path()).await;
        second
            .append_batches_noted(&batches(minute + 2 * MINUTE_MS, 7), None, "second")
            .await
            .unwrap();
        let after_second = files(dir.path());
        assert_eq!(after_second.len(), 2);
        let stale = Pending {
            sequence: 2,
            ..pending
        };
        write_atomically(
            dir.path(),
            PENDING_FILE,
            &serde_json::to_vec(&stale).unwrap(),
        )
        .unwrap();
        drop(second);
        assert_eq!(recover(dir.path()).unwrap().as_deref(), Some("second"));
        let _reopened = store(dir.path()).await;
        assert_eq!(files(dir.path()), after_second);
        assert!(!dir.path().join(PENDING_FILE).exists());
    }
}
