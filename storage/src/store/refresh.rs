//! Listing the store again while it is in use, for a store that other nodes write too: a
//! query node takes in the minutes the collectors wrote and lets go of the files upkeep
//! replaced or expired; the node that runs upkeep sees every writer's files before a pass.

use std::collections::HashSet;
use std::sync::Arc;

use super::Store;
use crate::error::Result;
use crate::files::Granularity;
use crate::model::{EpochMillis, MINUTE_MS};
use crate::table::StoredTable;

impl Store {
    /// Lists every table's files again: files written since by any writer are taken in,
    /// and files no longer there (replaced or expired by upkeep) let go of; a reader also
    /// takes every writer's open minutes as its live minutes (`open_minutes`). A writer
    /// takes in other writers' new files only: its own come in with its writes. Files this
    /// process writes meanwhile are never let go of: only files held before the listing
    /// began can be found gone. Returns how many files were new.
    pub async fn refresh_files(&self) -> Result<usize> {
        let files = &self.inner.files;
        // Read before the listing: a minute a writer closes in between is then found in
        // its files and left out of its open minutes, never read twice.
        let open = match files.is_read_only() {
            true => {
                crate::replace::hide_unfinished(files).await?;
                Some(self.read_open_minutes().await?)
            }
            false => None,
        };
        let mut newest: Option<EpochMillis> = None;
        let mut added = 0;
        for stored in self.all_tables() {
            let before = stored.file_paths();
            let listed = files.list_again(&stored.name, &before).await?;
            let listed_paths: HashSet<_> = listed.iter().map(|file| file.path.clone()).collect();
            let gone: Vec<_> = before.difference(&listed_paths).cloned().collect();
            // A writer's own files are taken in by the write that makes them, together
            // with the minutes they take over from its live rows; found first by a listing
            // they would be read beside those rows for a moment.
            let new: Vec<_> = listed
                .into_iter()
                .filter(|file| !before.contains(&file.path))
                .filter(|file| {
                    files.is_read_only() || !files.is_own(file.path.filename().unwrap_or_default())
                })
                .collect();
            if stored.granularity == Granularity::Minute {
                for file in &new {
                    if let Some((_, last)) = file.times {
                        newest = newest.max(Some(last + MINUTE_MS));
                    }
                }
            }
            added += new.len();
            stored.take_listing(new, &gone);
        }
        if let Some(open) = open {
            self.take_open_minutes(open)?;
        }
        if let Some(newest) = newest {
            self.inner
                .written
                .send_modify(|end| *end = (*end).max(newest));
        }
        Ok(added)
    }

    fn all_tables(&self) -> Vec<Arc<StoredTable>> {
        self.inner
            .tables
            .values()
            .chain(self.inner.proxy_tables.values())
            .chain(self.inner.block_tables.values())
            .chain(self.inner.trailing_tables.values())
            .chain(std::iter::once(&self.inner.access_log))
            .cloned()
            .collect()
    }
}
