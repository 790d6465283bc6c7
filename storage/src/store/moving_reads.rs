//! The read planner's long minute spans: totals moved on from a span kept from an earlier
//! read (`sliding`), each side of the whole table's read folded with it in one scan.

use std::sync::Arc;

use super::Store;
use crate::error::{Error, Result};
use crate::files::Granularity;
use crate::model::{MINUTE_MS, Table};
use crate::read::{KeyFilter, TimeRange};
use crate::sliding;
use crate::totals;

impl Store {
    /// A closed minute span's totals, moved on from a kept span that ends or starts a few
    /// minutes earlier when there is one, else read minute by minute into a span kept for
    /// the next read. Falls back to one fold of the whole span when the files changed under
    /// it while it moved.
    ///
    /// With `sides_together`, the span is read with no side and keeps the sides apart: one
    /// scan answers the whole table's read and each side's, and all three are kept. The
    /// map reads all three of the same window at once; the first to come folds, the
    /// others wait for it and find their totals kept.
    pub(super) async fn moving_totals(
        &self,
        table: Table,
        span: TimeRange,
        filter: &KeyFilter,
        sides_together: bool,
    ) -> Result<Arc<Vec<totals::SpanTotal>>> {
        let key = self.span_key(table, Granularity::Minute, span, filter);
        if let Some(totals) = self.inner.span_totals_cache.get(&key) {
            return Ok(totals);
        }
        let read_with = KeyFilter {
            side: if sides_together { None } else { filter.side },
            ..filter.clone()
        };
        let filter_text = format!("{read_with:?}");
        // One move of a table's spans at a time: a read that came while the span it wants
        // was out being moved would otherwise fold the whole span afresh.
        let move_lock = self.inner.moving.move_lock(table, &filter_text);
        let _moving = move_lock.lock().await;
        if let Some(totals) = self.inner.span_totals_cache.get(&key) {
            return Ok(totals);
        }
        let stored = self.table(table, Granularity::Minute);
        let kept = self
            .inner
            .moving
            .take_nearest(table, &filter_text, span.start, span.end)
            .filter(|kept| {
                let now = stored.files_overlapping(Some(kept.start()), Some(kept.end()));
                sliding::file_names(&now) == kept.files()
            });
        let fresh = kept.is_none();
        let mut moving = kept.unwrap_or_else(|| {
            sliding::MovingSpan::new(
                table,
                filter_text,
                read_with.side,
                span.start,
                self.now_ms(),
            )
        });
        // Every file the move reads, before and after: a file landing in between (a late
        // minute's rows) would leave the kept span short of it.
        // A first fold may start at the start of the block the span starts in, or at the
        // start of a trailing hour a few minutes before the span.
        let from = if fresh {
            crate::block_summary::block_start(span.start)
                .min(span.start - super::trailing_hours::MAX_MINUTES_AROUND * MINUTE_MS)
        } else {
            moving.start()
        };
        let reach = || stored.files_overlapping(Some(from), Some(span.end));
        let before = sliding::file_names(&reach());
        let moved = if fresh {
            self.fold_fresh(&mut moving, span, &read_with).await
        } else {
            self.move_span(&mut moving, span, &read_with).await
        };
        let after = reach();
        let unchanged = sliding::file_names(&after) == before;
        match moved {
            Ok(()) if unchanged => {
                moving.set_files(&stored.files_overlapping(Some(span.start), Some(span.end)));
                let mut wanted = None;
                for side in moving.answers() {
                    let totals = Arc::new(moving.totals(side)?);
                    let answered = KeyFilter {
                        side,
                        ..filter.clone()
                    };
                    let answered = self.span_key(table, Granularity::Minute, span, &answered);
                    if side == filter.side {
                        wanted = Some(totals.clone());
                    }
                    self.inner.span_totals_cache.insert(answered, totals);
                }
                self.inner.moving.keep(moving, self.now_ms());
                wanted.ok_or_else(|| {
                    Error::InvalidQuery("a moving span did not answer its own read".into())
                })
            }
            moved => {
                if let Err(error) = moved {
                    tracing::warn!(%error, table = table.name(), "a moving total was read afresh");
                }
                self.span_totals(table, Granularity::Minute, span, filter)
                    .await
            }
        }
    }

    /// Folds an empty span starting at `span.start` up to `span.end`, from block summaries
    /// where they match their minutes (`block_reads`).
    pub(super) async fn fold_fresh(
        &self,
        moving: &mut sliding::MovingSpan,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<()> {
        let fold = self.first_fold_rows(moving.table(), span, filter).await?;
        moving.restart_empty_at(fold.from)?;
        moving.push(span.end, &fold.added)?;
        if fold.from < span.start {
            moving.drop_before(span.start, &fold.taken_out)?;
        }
        Ok(())
    }

    /// Moves `moving` to `span`: the rows of the minutes before `span.start` taken out,
    /// the rows of the minutes up to `span.end` added. The two scans run side by side: a
    /// one-minute scan waits on opening its files more than on the cores.
    async fn move_span(
        &self,
        moving: &mut sliding::MovingSpan,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<()> {
        let table = moving.table();
        let gone = (moving.start() < span.start).then(|| TimeRange {
            start: moving.start(),
            end: span.start.min(moving.end()),
        });
        let added = (moving.end() < span.end).then(|| TimeRange {
            start: moving.end(),
            end: span.end,
        });
        let read = |range: Option<TimeRange>| async move {
            match range {
                Some(range) => self.rows_in(table, range, filter).await.map(Some),
                None => Ok(None),
            }
        };
        let (gone, added) = futures::try_join!(read(gone), read(added))?;
        if let Some(rows) = gone {
            moving.drop_before(span.start, &rows)?;
        }
        if let Some(rows) = added {
            moving.push(span.end, &rows)?;
        }
        Ok(())
    }
}
