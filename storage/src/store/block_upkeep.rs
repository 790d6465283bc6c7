//! Writing block summaries (`block_summary`) in the upkeep pass: every closed block of the
//! minutes kept whose summary is missing, or was made from other files than the ones its
//! minutes are in now (a late minute, the hour's compaction), is summarized again from
//! its minutes, and the summary it replaces goes in the same atomic replacement. A block
//! whose minutes are all gone loses its summary too.

use std::sync::Arc;

use super::{MaintenanceReport, Store};
use crate::block_summary::{self, BLOCK_MS, block_start};
use crate::error::Result;
use crate::files::{FileEntry, Granularity, hour_of};
use crate::model::{EpochMillis, MINUTE_MS, Table};
use crate::read::{KeyFilter, TimeRange};
use crate::replace::{self, Swap};
use crate::table::StoredTable;

/// Blocks summarized per table in one pass, newest first: a store opened over days of
/// minutes is summarized over several passes instead of in one long one.
const MAX_BLOCKS_PER_PASS: usize = 12;

/// A block whose minute files are larger than this (encoded; a file holding more than
/// the block counted for its share) is left to its minutes: summarizing it would decode
/// all of it at once, and at about 40 bytes a row this is some 400,000 rows already.
pub(super) const MAX_SOURCE_BYTES: u64 = 16 << 20;

impl Store {
    /// Summarizes again, newest first, the closed blocks of every metric table whose
    /// summary does not match the files under them now, and drops the summaries of blocks
    /// with no minutes left. A block is closed once the table has a file of its last
    /// minute or of a later one (minutes close in order), or a minute after it ends when
    /// the table has no rows that late; rows that come later still make a new file, and
    /// so a new summary.
    pub(super) async fn summarize_blocks(
        &self,
        now: EpochMillis,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        let kept_from = now - self.inner.config.retention.minute_secs as i64 * 1_000;
        for table in Table::ALL {
            let minutes = self.table(table, Granularity::Minute).clone();
            let blocks = self.block_table(table).clone();
            let oldest = [minutes.partitions(), blocks.partitions()]
                .iter()
                .filter_map(|partitions| partitions.keys().next().copied())
                .min();
            let Some(oldest) = oldest else {
                continue;
            };
            let first = block_start(oldest.max(kept_from));
            let closed_to = closed_to(&minutes, now);
            let mut block = block_start(closed_to) - BLOCK_MS;
            let mut written = 0;
            while block >= first && written < MAX_BLOCKS_PER_PASS {
                if self
                    .summarize_block(table, &minutes, &blocks, block)
                    .await?
                {
                    written += 1;
                }
                block -= BLOCK_MS;
            }
            report.blocks_summarized += written;
        }
        // Forgets the sources of summaries replaced or expired meanwhile.
        let listed: std::collections::HashSet<String> = self
            .inner
            .block_tables
            .values()
            .flat_map(|stored| stored.file_paths())
            .map(|path| path.to_string())
            .collect();
        self.inner
            .block_sources
            .lock()
            .retain(|path, _| listed.contains(path));
        Ok(())
    }

    /// Writes the summary of the block starting at `block` if it has none that matches
    /// its minute files, or drops its summaries if it has no minutes; whether it wrote one.
    async fn summarize_block(
        &self,
        table: Table,
        minutes: &StoredTable,
        blocks: &Arc<StoredTable>,
        block: EpochMillis,
    ) -> Result<bool> {
        let range = TimeRange {
            start: block,
            end: block + BLOCK_MS,
        };
        let under = minutes.files_overlapping(Some(range.start), Some(range.end));
        let sources = block_summary::source_names(&under);
        let summaries = blocks.files_overlapping(Some(range.start), Some(range.end));
        let partition = hour_of(block);
        if sources.is_empty() {
            // Nothing of the block is left: its summaries go, as a replacement by none.
            let swap = Swap {
                stored: blocks.clone(),
                partition,
                old: summaries,
                new: None,
            };
            replace::commit(&self.inner.files, vec![swap]).await?;
            return Ok(false);
        }
        if let [summary] = summaries.as_slice()
            && self.summary_sources(summary).await.as_ref() == Some(&sources)
        {
            return Ok(false);
        }
        let source_bytes: u64 = under.iter().map(share_in_block).sum();
        if source_bytes > MAX_SOURCE_BYTES {
            tracing::debug!(
                table = table.name(),
                block,
                source_bytes,
                "a block too large to summarize is left to its minutes"
            );
            return Ok(false);
        }
        let _permit = self.inner.memory_peaks.lock().await;
        let rows = self.rows_in(table, range, &KeyFilter::default()).await?;
        let now_under = block_summary::source_names(
            &minutes.files_overlapping(Some(range.start), Some(range.end)),
        );
        if now_under != sources {
            // A file came or went while the rows were read: the next pass tries again.
            return Ok(false);
        }
        let Some(summary) = block_summary::summarize(table, &rows, &sources)? else {
            return Ok(false);
        };
        drop(rows);
        let mut writer = self.inner.files.writer(
            &blocks.name,
            Granularity::Minute,
            partition,
            summary.schema(),
        )?;
        writer.write(&summary).await?;
        let closed = writer.close().await?;
        let path = closed.entry.path.to_string();
        replace::commit(
            &self.inner.files,
            vec![Swap {
                stored: blocks.clone(),
                partition,
                old: summaries.clone(),
                new: Some(closed),
            }],
        )
        .await?;
        let mut known = self.inner.block_sources.lock();
        for old in &summaries {
            known.remove(old.path.as_ref());
        }
        known.insert(path, sources);
        Ok(true)
    }

    /// The minute files a summary file was made from: remembered, or read from its
    /// schema; `None` when it cannot be read or does not say.
    pub(super) async fn summary_sources(&self, summary: &FileEntry) -> Option<Vec<String>> {
        let path = summary.path.to_string();
        if let Some(sources) = self.inner.block_sources.lock().get(&path) {
            return Some(sources.clone());
        }
        let schema = match self.inner.files.arrow_schema_of(&summary.path).await {
            Ok(schema) => schema,
            Err(error) => {
                tracing::debug!(%error, %path, "a block summary could not be read");
                return None;
            }
        };
        let sources = block_summary::sources_of(&schema)?;
        self.inner
            .block_sources
            .lock()
            .insert(path, sources.clone());
        Some(sources)
    }
}

/// Where `minutes`' closed minutes end at `now`: after the newest minute it has a file
/// of (minutes close in order), or a minute before `now` when that is later, and never
/// after `now`.
pub(super) fn closed_to(minutes: &StoredTable, now: EpochMillis) -> EpochMillis {
    let written_to = minutes
        .partitions()
        .values()
        .next_back()
        .and_then(|files| files.iter().filter_map(|f| f.times).map(|t| t.1).max())
        .map(|newest| newest + MINUTE_MS);
    written_to.unwrap_or(now).max(now - MINUTE_MS).min(now)
}

/// The bytes of `file` that a block's read decodes: all of a file within one block, a
/// share by time of one that spans more (an hour's compacted minutes).
fn share_in_block(file: &FileEntry) -> u64 {
    match file.times {
        Some((first, last)) if last - first >= BLOCK_MS => {
            let minutes = ((last - first) / MINUTE_MS + 1) as u64;
            file.size * (BLOCK_MS / MINUTE_MS) as u64 / minutes
        }
        Some(_) => file.size,
        // Known by its partition only: an hour's share.
        None => file.size * BLOCK_MS as u64 / crate::files::HOUR_MS as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::HOUR_MS;

    fn file(size: u64, times: Option<(EpochMillis, EpochMillis)>) -> FileEntry {
        FileEntry {
            path: object_store::path::Path::from("edge_minute/x.parquet"),
            size,
            partition: 0,
            times,
        }
    }

    #[test]
    fn a_block_counts_the_share_of_each_file_its_minutes_are_in() {
        // One minute's file, whole.
        assert_eq!(share_in_block(&file(600, Some((0, 0)))), 600);
        // An hour's compacted minutes: a sixth.
        assert_eq!(
            share_in_block(&file(600, Some((0, HOUR_MS - MINUTE_MS)))),
            100
        );
        // Known by its partition only: a sixth of the hour too.
        assert_eq!(share_in_block(&file(600, None)), 100);
    }
}
