//! A moving span's first fold: the summaries of the whole blocks it covers
//! (`block_summary`) that still match the minute files under them, and the minute rows of
//! the rest. A summary that cannot be read, or was made from other files, is passed over
//! and its minutes are read instead: the answer is the same either way. A span that
//! nearly matches a table's trailing hour (`trailing_hour`) starts from that summary.

use datafusion::arrow::record_batch::RecordBatch;

use super::Store;
use super::trailing_hours::TrailingFold;
use crate::block_summary::{self, BLOCK_MS, block_start};
use crate::error::Result;
use crate::files::Granularity;
use crate::model::{EpochMillis, Table};
use crate::read::{KeyFilter, TimeRange};

/// Block summaries a first fold read instead of the minutes, for `/metrics`.
pub const BLOCK_SUMMARIES_READ_METRIC: &str = "meshscope_block_summaries_read_total";

/// The rows a moving span's first fold adds, and the rows it then takes out.
pub(super) struct FirstFold {
    /// Where the added rows start: the span's start, or the start of the block it starts
    /// in when that block's summary is added and the minutes before the span taken out.
    pub(super) from: EpochMillis,
    pub(super) added: Vec<RecordBatch>,
    /// The minute rows of `[from, span.start)`.
    pub(super) taken_out: Vec<RecordBatch>,
}

impl Store {
    /// The rows that fold into `span`'s totals read with `filter`. For a filter on no key:
    /// the summaries of the blocks `span` covers whole that match their minutes, and the
    /// minute rows of the rest; when `span` starts late in a summarized block, that
    /// block's summary, with the few minutes before `span` to take out. For any other
    /// filter, the minute rows.
    pub(super) async fn first_fold_rows(
        &self,
        table: Table,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<FirstFold> {
        let on_no_key = filter.service.is_none()
            && filter.source.is_none()
            && filter.target.is_none()
            && filter.name.is_none()
            && filter.target_name.is_none();
        if on_no_key
            && let Some(trailing) = self.trailing_fold_for(table, span).await
            && let Some(fold) = self
                .fold_from_trailing(table, span, filter, trailing)
                .await?
        {
            return Ok(fold);
        }
        let first = block_start(span.start);
        let mut blocks = Vec::new();
        let mut block = first;
        while on_no_key && block + BLOCK_MS <= span.end {
            blocks.push(block);
            block += BLOCK_MS;
        }
        let mut summaries = self.summaries_of(table, &blocks).await;
        let mut fold = FirstFold {
            from: span.start,
            added: Vec::new(),
            taken_out: Vec::new(),
        };
        let mut taken_out = None;
        let mut from = span.start;
        if first < span.start {
            // The block the span starts in: its summary, less the minutes before the
            // span, when those are fewer than the span's minutes in it.
            let summary = summaries.first_mut().and_then(Option::take);
            let later = first + BLOCK_MS - span.start;
            if let Some(summary) = summary.filter(|_| span.start - first < later) {
                self.count_summary_read();
                fold.added.extend(summary);
                fold.from = first;
                from = first + BLOCK_MS;
                taken_out = Some(TimeRange {
                    start: first,
                    end: span.start,
                });
            }
        }
        let mut gaps = Vec::new();
        for (block, summary) in blocks.iter().zip(summaries) {
            // The block the span starts in was dealt with above.
            let Some(summary) = summary.filter(|_| *block >= span.start) else {
                continue;
            };
            if from < *block {
                gaps.push(TimeRange {
                    start: from,
                    end: *block,
                });
            }
            fold.added.extend(summary);
            from = block + BLOCK_MS;
            self.count_summary_read();
        }
        if from < span.end {
            gaps.push(TimeRange {
                start: from,
                end: span.end,
            });
        }
        let read = |range: TimeRange| self.rows_in(table, range, filter);
        let (minutes, taken) = futures::try_join!(
            futures::future::try_join_all(gaps.into_iter().map(read)),
            async {
                match taken_out {
                    Some(range) => read(range).await,
                    None => Ok(Vec::new()),
                }
            }
        )?;
        fold.added.extend(minutes.into_iter().flatten());
        fold.taken_out = taken;
        Ok(fold)
    }

    /// The rows of `span` as a trailing summary and the minutes around it, all read side
    /// by side: the summary, the minutes after it up to `span.end` to add, and the
    /// minutes before `span.start` it holds, to take out. `None` when the summary cannot
    /// be read.
    async fn fold_from_trailing(
        &self,
        table: Table,
        span: TimeRange,
        filter: &KeyFilter,
        trailing: TrailingFold,
    ) -> Result<Option<FirstFold>> {
        let read = |range: TimeRange| async move {
            if range.start < range.end {
                self.rows_in(table, range, filter).await
            } else {
                Ok(Vec::new())
            }
        };
        let (summary, after, before) = futures::try_join!(
            async { Ok(self.trailing_rows(&trailing).await) },
            read(TimeRange {
                start: trailing.covers.end,
                end: span.end,
            }),
            read(TimeRange {
                start: trailing.covers.start,
                end: span.start,
            })
        )?;
        let Some(mut added) = summary else {
            return Ok(None);
        };
        added.extend(after);
        Ok(Some(FirstFold {
            from: trailing.covers.start,
            added,
            taken_out: before,
        }))
    }

    fn count_summary_read(&self) {
        metrics::counter!(BLOCK_SUMMARIES_READ_METRIC).increment(1);
        self.inner
            .block_summaries_read
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The summaries of `table`'s blocks starting at `blocks` that match their minute
    /// files now, read side by side.
    async fn summaries_of(
        &self,
        table: Table,
        blocks: &[EpochMillis],
    ) -> Vec<Option<Vec<RecordBatch>>> {
        let tasks: Vec<_> = blocks
            .iter()
            .map(|&block| {
                let store = Store {
                    inner: self.inner.clone(),
                };
                tokio::spawn(async move { store.summary_of(table, block).await })
            })
            .collect();
        let mut summaries = Vec::with_capacity(tasks.len());
        for task in tasks {
            summaries.push(task.await.ok().flatten());
        }
        summaries
    }

    /// The rows of the summary of `table`'s block starting at `block`, if one matches the
    /// minute files under the block now.
    async fn summary_of(&self, table: Table, block: EpochMillis) -> Option<Vec<RecordBatch>> {
        let end = Some(block + BLOCK_MS);
        let sources = block_summary::source_names(
            &self
                .table(table, Granularity::Minute)
                .files_overlapping(Some(block), end),
        );
        for summary in self.block_table(table).files_overlapping(Some(block), end) {
            match self.inner.files.read_with_schema(&summary.path).await {
                Ok((schema, batches)) => {
                    if block_summary::sources_of(&schema).as_ref() == Some(&sources) {
                        return Some(batches);
                    }
                }
                // Replaced since it was listed: the minutes answer instead.
                Err(error) => {
                    tracing::debug!(%error, path = %summary.path, "a block summary could not be read")
                }
            }
        }
        None
    }
}
