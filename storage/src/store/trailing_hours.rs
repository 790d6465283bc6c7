//! Trailing-hour summaries (`trailing_hour`) in the store: the upkeep writes the summary of
//! the hour ending at each table's newest closed minute, and a span's first fold finds the
//! one that stands in for most of it.

use std::sync::Arc;

use super::block_upkeep::{MAX_SOURCE_BYTES, closed_to};
use super::{MaintenanceReport, Store};
use crate::block_summary;
use crate::error::Result;
use crate::files::{FileEntry, Granularity, hour_of};
use crate::model::{EpochMillis, MINUTE_MS, Table};
use crate::read::{KeyFilter, TimeRange};
use crate::replace::{self, Swap};
use crate::sliding::MovingSpan;
use crate::trailing_hour::{self, SPAN_MS};

/// Trailing-hour summaries first folds read, for `/metrics`.
pub const TRAILING_SUMMARIES_READ_METRIC: &str = "meshscope_trailing_summaries_read_total";

/// At most this many minutes before a span's start are taken back out of a trailing
/// summary, and at most this many after its end are added to it: each is a minute's scan,
/// and past about five the span's block summaries cost less.
pub(super) const MAX_MINUTES_AROUND: i64 = 5;

/// The span a trailing summary file covers and the minute files it was made from.
#[derive(Clone, Debug)]
pub(crate) struct TrailingSpan {
    covers: TimeRange,
    sources: Vec<String>,
}

/// A trailing summary a first fold can start from: what it covers and its file.
pub(super) struct TrailingFold {
    pub(super) covers: TimeRange,
    path: object_store::path::Path,
}

impl Store {
    /// Writes, for each table that keeps one, the summary of the hour that ends where its
    /// closed minutes end, unless the summary kept is that one and still matches its
    /// minute files; the summary it replaces goes in the same atomic replacement. The new
    /// one is folded as a first read would fold the hour, so it starts from the summary
    /// before (one minute taken out, one added) when that still matches.
    pub(super) async fn summarize_trailing_hours(
        &self,
        now: EpochMillis,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        for table in trailing_hour::TABLES {
            if self.summarize_trailing_hour(table, now).await? {
                report.trailing_hours_summarized += 1;
            }
        }
        let listed: std::collections::HashSet<String> = self
            .inner
            .trailing_tables
            .values()
            .flat_map(|stored| stored.file_paths())
            .map(|path| path.to_string())
            .collect();
        self.inner
            .trailing_spans
            .lock()
            .retain(|path, _| listed.contains(path));
        Ok(())
    }

    /// Writes `table`'s trailing summary at `now` if the one kept is not it; whether it
    /// wrote one.
    async fn summarize_trailing_hour(&self, table: Table, now: EpochMillis) -> Result<bool> {
        let minutes = self.table(table, Granularity::Minute).clone();
        let stored = self.inner.trailing_tables[&table].clone();
        let end = closed_to(&minutes, now).div_euclid(MINUTE_MS) * MINUTE_MS;
        let covers = TimeRange {
            start: end - SPAN_MS,
            end,
        };
        let under = minutes.files_overlapping(Some(covers.start), Some(covers.end));
        let sources = block_summary::source_names(&under);
        let kept = stored.files_overlapping(None, None);
        if sources.is_empty() {
            // An hour with no rows: nothing to stand in for, nor to keep.
            self.replace_trailing(&stored, &kept, None).await?;
            return Ok(false);
        }
        if let [summary] = kept.as_slice()
            && let Some(span) = self.trailing_span(summary).await
            && span.covers == covers
            && span.sources == sources
        {
            return Ok(false);
        }
        let source_bytes: u64 = under.iter().map(|file| file.size).sum();
        if source_bytes > MAX_SOURCE_BYTES * (SPAN_MS / block_summary::BLOCK_MS) as u64 {
            tracing::debug!(
                table = table.name(),
                source_bytes,
                "an hour too large to summarize is left to its blocks"
            );
            return Ok(false);
        }
        let _permit = self.inner.memory_peaks.lock().await;
        let mut span = MovingSpan::new(table, String::new(), None, covers.start, now);
        self.fold_fresh(&mut span, covers, &KeyFilter::default())
            .await?;
        let now_under = block_summary::source_names(
            &minutes.files_overlapping(Some(covers.start), Some(covers.end)),
        );
        if now_under != sources {
            // A file came or went while the rows were read: the next pass tries again.
            return Ok(false);
        }
        let Some(summary) = trailing_hour::summarize(table, &span, &sources)? else {
            return Ok(false);
        };
        drop(span);
        let mut writer = self.inner.files.writer(
            &stored.name,
            Granularity::Minute,
            hour_of(covers.end - MINUTE_MS),
            summary.schema(),
        )?;
        writer.write(&summary).await?;
        let closed = writer.close().await?;
        let path = closed.entry.path.to_string();
        self.replace_trailing(&stored, &kept, Some(closed)).await?;
        self.inner
            .trailing_spans
            .lock()
            .insert(path, TrailingSpan { covers, sources });
        Ok(true)
    }

    /// Replaces every file of `stored` (`kept`) by `new`, or by none, in one step.
    async fn replace_trailing(
        &self,
        stored: &Arc<crate::table::StoredTable>,
        kept: &[FileEntry],
        new: Option<crate::files::ClosedFile>,
    ) -> Result<()> {
        let mut partitions: Vec<EpochMillis> = kept.iter().map(|file| file.partition).collect();
        if let Some(new) = &new {
            partitions.push(new.entry.partition);
        }
        partitions.sort_unstable();
        partitions.dedup();
        let mut new = new;
        let swaps = partitions
            .into_iter()
            .map(|partition| Swap {
                stored: stored.clone(),
                partition,
                old: kept
                    .iter()
                    .filter(|file| file.partition == partition)
                    .cloned()
                    .collect(),
                new: new.take_if(|new| new.entry.partition == partition),
            })
            .collect();
        replace::commit(&self.inner.files, swaps).await?;
        let mut known = self.inner.trailing_spans.lock();
        for old in kept {
            known.remove(old.path.as_ref());
        }
        Ok(())
    }

    /// The trailing summary `table` keeps that a first fold of `span` can start from, not
    /// read yet (`trailing_rows`): it
    /// starts at most `MAX_MINUTES_AROUND` minutes before `span` and ends within `span`,
    /// at most as many minutes before its end, and its minute files are still the ones
    /// it was made from.
    pub(super) async fn trailing_fold_for(
        &self,
        table: Table,
        span: TimeRange,
    ) -> Option<TrailingFold> {
        let stored = self.inner.trailing_tables.get(&table)?;
        let around = MAX_MINUTES_AROUND * MINUTE_MS;
        for summary in stored.files_overlapping(None, None) {
            let Some(TrailingSpan { covers, sources }) = self.trailing_span(&summary).await else {
                continue;
            };
            let fits = covers.start <= span.start
                && span.start - covers.start <= around
                && covers.end > span.start
                && covers.end <= span.end
                && span.end - covers.end <= around;
            if !fits {
                continue;
            }
            let now_under = block_summary::source_names(
                &self
                    .table(table, Granularity::Minute)
                    .files_overlapping(Some(covers.start), Some(covers.end)),
            );
            if now_under != sources {
                continue;
            }
            return Some(TrailingFold {
                covers,
                path: summary.path,
            });
        }
        None
    }

    /// The rows of `trailing`'s summary; `None` when it cannot be read (replaced since
    /// it was listed, or damaged): the blocks and minutes answer instead.
    pub(super) async fn trailing_rows(
        &self,
        trailing: &TrailingFold,
    ) -> Option<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        match self.inner.files.read_with_schema(&trailing.path).await {
            Ok((_, rows)) => {
                metrics::counter!(TRAILING_SUMMARIES_READ_METRIC).increment(1);
                self.inner
                    .trailing_summaries_read
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(rows)
            }
            Err(error) => {
                tracing::debug!(%error, path = %trailing.path, "a trailing summary could not be read");
                None
            }
        }
    }

    /// What a trailing summary file covers and was made from: remembered, or read from
    /// its schema; `None` when it cannot be read or does not say.
    async fn trailing_span(&self, summary: &FileEntry) -> Option<TrailingSpan> {
        let path = summary.path.to_string();
        if let Some(span) = self.inner.trailing_spans.lock().get(&path) {
            return Some(span.clone());
        }
        let schema = match self.inner.files.arrow_schema_of(&summary.path).await {
            Ok(schema) => schema,
            Err(error) => {
                tracing::debug!(%error, %path, "a trailing summary could not be read");
                return None;
            }
        };
        let span = TrailingSpan {
            covers: trailing_hour::span_of(&schema)?,
            sources: block_summary::sources_of(&schema)?,
        };
        self.inner.trailing_spans.lock().insert(path, span.clone());
        Some(span)
    }
}
