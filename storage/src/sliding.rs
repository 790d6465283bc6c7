//! Totals of a minute span that moves forward: a dashboard's `last 1h` is a new span every
//! minute, and folding its hour of rows again (the whole mesh, both sides of every edge,
//! sixty times over) is what made the first read after each minute slow.
//!
//! Counters and latency bins are counts, so they subtract exactly: the minutes that left
//! the span are taken out and the minutes that joined it are added, one small fold each.
//! A sum, a minimum and a maximum do not subtract; the sum is kept by subtraction, and the
//! minimum and maximum by a queue per key of the minutes that could still hold them.
//!
//! A span read with no side keeps each key's two sides apart as well as the figures a
//! window shows (per minute the server's rows when it reported, else the client's): the
//! map reads all three, and one scan and one fold of the rows answers them all.
//!
//! A total is only moved on while the files under its span are the ones it was read from:
//! a late file, a compaction or an expiry there makes the next read fold the span afresh.

use std::collections::{HashMap, VecDeque};

use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::files::FileEntry;
use crate::model::{EpochMillis, MINUTE_MS, Side, Table};
use crate::running_sums::{self, KeyShard, ScannedRows};
use crate::totals::SpanTotal;

/// Spans kept moving at once: a few dashboards' windows over the edge and service tables.
const MAX_SPANS: usize = 16;

/// Keys kept across every moving span, a few megabytes per ten thousand: a span over a
/// table too large for it (every endpoint of a big mesh) is read afresh each time instead.
const MAX_KEPT_KEYS: usize = 100_000;

/// Further than this from a kept span, a read folds its span afresh: each minute to take
/// out or add is a scan of its own.
pub(crate) const MAX_STEP_MINUTES: i64 = 10;

/// A span no read has moved for this many milliseconds (by the store's clock) is
/// forgotten: the minutes written meanwhile would otherwise keep adding to a window nobody
/// looks at.
const MAX_IDLE_MS: EpochMillis = 600_000;

/// A span's totals, kept to be moved on.
pub(crate) struct MovingSpan {
    table: Table,
    filter: String,
    /// The side the span's rows were read with; `None` for both, kept apart.
    side: Option<Side>,
    start: EpochMillis,
    end: EpochMillis,
    /// The files that held the span's rows when it was last read.
    files: Vec<String>,
    /// The keys' running sums, in shards that fold side by side.
    shards: Vec<KeyShard>,
    /// When a read last gave the span back, by the store's clock.
    used_ms: EpochMillis,
}

impl MovingSpan {
    /// An empty span of `table`'s rows read with `filter` (whose side is `side`), starting
    /// and ending at `start`, used at `now_ms`.
    pub(crate) fn new(
        table: Table,
        filter: String,
        side: Option<Side>,
        start: EpochMillis,
        now_ms: EpochMillis,
    ) -> Self {
        MovingSpan {
            table,
            filter,
            side,
            start,
            end: start,
            files: Vec::new(),
            shards: (0..running_sums::shard_count())
                .map(|_| KeyShard::default())
                .collect(),
            used_ms: now_ms,
        }
    }

    /// Whether no read has moved the span for `MAX_IDLE_MS` at `now_ms`.
    fn idle_at(&self, now_ms: EpochMillis) -> bool {
        now_ms - self.used_ms > MAX_IDLE_MS
    }

    pub(crate) fn table(&self) -> Table {
        self.table
    }

    pub(crate) fn start(&self) -> EpochMillis {
        self.start
    }

    pub(crate) fn end(&self) -> EpochMillis {
        self.end
    }

    pub(crate) fn files(&self) -> &[String] {
        &self.files
    }

    pub(crate) fn set_files(&mut self, files: &[FileEntry]) {
        self.files = file_names(files);
    }

    /// Minutes it would take to move this span to `[start, end)`, if it can be moved there:
    /// forward only, keeping part of it.
    fn steps_to(
        &self,
        table: Table,
        filter: &str,
        start: EpochMillis,
        end: EpochMillis,
    ) -> Option<i64> {
        let forward = start >= self.start && end >= self.end && start < self.end;
        (self.table == table && self.filter == filter && forward)
            .then(|| (start - self.start + end - self.end) / MINUTE_MS)
            .filter(|steps| *steps <= MAX_STEP_MINUTES)
    }

    /// Moves the start (and end) of a span that holds nothing yet to `start`.
    pub(crate) fn restart_empty_at(&mut self, start: EpochMillis) -> Result<()> {
        if self.end != self.start || self.key_count() > 0 {
            return Err(Error::InvalidQuery(
                "only an empty moving span can start elsewhere".into(),
            ));
        }
        self.start = start;
        self.end = start;
        Ok(())
    }

    /// Adds the rows of `[self.end, end)`, which `batches` hold, and moves the end there.
    pub(crate) fn push(&mut self, end: EpochMillis, batches: &[RecordBatch]) -> Result<()> {
        self.apply(batches, true)?;
        self.end = end;
        Ok(())
    }

    /// Takes out the rows of `[self.start, start)`, which `batches` hold, and moves the
    /// start there.
    pub(crate) fn drop_before(
        &mut self,
        start: EpochMillis,
        batches: &[RecordBatch],
    ) -> Result<()> {
        self.apply(batches, false)?;
        self.start = start;
        for shard in &mut self.shards {
            shard.drop_before(start);
        }
        Ok(())
    }

    /// Adds or takes out `batches`' rows, each in its side's sum, and, in a span read
    /// with no side, each client row of a minute the server did not report in the
    /// unmatched sum too.
    fn apply(&mut self, batches: &[RecordBatch], adding: bool) -> Result<()> {
        let scanned = ScannedRows::read(self.table, batches, self.shards.len())?;
        let both_sides = self.side.is_none();
        running_sums::apply_to_shards(&mut self.shards, self.table, &scanned, both_sides, adding)
    }

    /// Every key's running sums, in no order.
    pub(crate) fn running(&self) -> impl Iterator<Item = &running_sums::Running> {
        self.shards.iter().flat_map(|shard| shard.running())
    }

    /// Keys with a running total.
    fn key_count(&self) -> usize {
        self.shards.iter().map(KeyShard::len).sum()
    }

    /// The span's totals as a read with side `side` gets them, sorted by key: with no
    /// side, per key and minute the server's figures when it reported, else the client's;
    /// with a side, that side's rows alone. A span read with one side answers for that
    /// side only.
    pub(crate) fn totals(&self, side: Option<Side>) -> Result<Vec<SpanTotal>> {
        if self.side.is_some() && side != self.side {
            return Err(Error::InvalidQuery(format!(
                "a span read with side {:?} cannot answer for side {side:?}",
                self.side
            )));
        }
        let mut totals: Vec<SpanTotal> = self
            .shards
            .iter()
            .flat_map(|shard| shard.totals(side, self.start))
            .collect();
        totals.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(totals)
    }

    /// The sides a read of this span can be answered for: all three for a span read with
    /// no side, else its own.
    pub(crate) fn answers(&self) -> Vec<Option<Side>> {
        match self.side {
            None => vec![None, Some(Side::Client), Some(Side::Server)],
            one => vec![one],
        }
    }
}

pub(crate) fn file_names(files: &[FileEntry]) -> Vec<String> {
    files.iter().map(|file| file.path.to_string()).collect()
}

/// A span kept moving, as `/metrics` and tests see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptSpan {
    pub table: Table,
    pub start: EpochMillis,
    pub end: EpochMillis,
    /// Keys with a running total, each a few hundred bytes.
    pub keys: usize,
}

/// The lock a read holds for as long as it moves spans of one table and filter.
pub(crate) type MoveLock = std::sync::Arc<tokio::sync::Mutex<()>>;

/// The spans kept moving.
#[derive(Default)]
pub(crate) struct MovingSpans {
    spans: parking_lot::Mutex<VecDeque<MovingSpan>>,
    /// One lock per table and filter that reads of moving spans take in turn.
    move_locks: parking_lot::Mutex<HashMap<(Table, String), MoveLock>>,
}

impl MovingSpans {
    /// The lock that moves of `table`'s spans read with `filter` take in turn. Locks no
    /// read holds are forgotten as new ones come, so focused reads leave none behind.
    pub(crate) fn move_lock(&self, table: Table, filter: &str) -> MoveLock {
        let key = (table, filter.to_owned());
        let mut move_locks = self.move_locks.lock();
        if let Some(lock) = move_locks.get(&key) {
            return lock.clone();
        }
        move_locks.retain(|_, lock| std::sync::Arc::strong_count(lock) > 1);
        move_locks.entry(key).or_default().clone()
    }

    /// What is kept, oldest use first.
    pub(crate) fn kept(&self) -> Vec<KeptSpan> {
        self.spans
            .lock()
            .iter()
            .map(|span| KeptSpan {
                table: span.table,
                start: span.start,
                end: span.end,
                keys: span.key_count(),
            })
            .collect()
    }

    /// Takes out the kept span nearest to `[start, end)` that can be moved there. It is
    /// taken, not lent: the caller moves it on outside the lock and gives it back.
    pub(crate) fn take_nearest(
        &self,
        table: Table,
        filter: &str,
        start: EpochMillis,
        end: EpochMillis,
    ) -> Option<MovingSpan> {
        let mut spans = self.spans.lock();
        let nearest = spans
            .iter()
            .enumerate()
            .filter_map(|(at, span)| Some((span.steps_to(table, filter, start, end)?, at)))
            .min()?;
        spans.remove(nearest.1)
    }

    /// Moves on, under the lock, every kept span of `table` read with `filter` whose end is
    /// `at`: the minutes just written there are added while they are still in memory, so
    /// that the next read of the window finds them counted instead of scanning them back.
    /// A read that wants the span meanwhile waits here rather than folding it afresh.
    /// Spans idle at `now_ms` are forgotten on the way.
    pub(crate) fn extend_at(
        &self,
        table: Table,
        filter: &str,
        at: EpochMillis,
        now_ms: EpochMillis,
        mut extend: impl FnMut(&mut MovingSpan) -> Result<()>,
    ) -> Result<()> {
        let mut spans = self.spans.lock();
        let mut failed = None;
        spans.retain_mut(|span| {
            if span.idle_at(now_ms) {
                return false;
            }
            if span.table != table || span.filter != filter || span.end != at {
                return true;
            }
            match extend(span) {
                Ok(()) => true,
                Err(error) => {
                    failed = Some(error);
                    false
                }
            }
        });
        failed.map_or(Ok(()), Err)
    }

    /// Keeps `span`, used at `now_ms`, forgetting idle spans and the longest unused ones
    /// past the bounds.
    pub(crate) fn keep(&self, mut span: MovingSpan, now_ms: EpochMillis) {
        if span.key_count() > MAX_KEPT_KEYS {
            return;
        }
        span.used_ms = now_ms;
        let mut spans = self.spans.lock();
        spans.retain(|span| !span.idle_at(now_ms));
        spans.push_back(span);
        while spans.len() > MAX_SPANS
            || spans.iter().map(MovingSpan::key_count).sum::<usize>() > MAX_KEPT_KEYS
        {
            spans.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: EpochMillis = 1_000_000_000;

    fn span_at(start: EpochMillis, now_ms: EpochMillis) -> MovingSpan {
        MovingSpan::new(Table::ServiceMinute, String::new(), None, start, now_ms)
    }

    fn starts(spans: &MovingSpans) -> Vec<EpochMillis> {
        spans.kept().iter().map(|span| span.start).collect()
    }

    #[test]
    fn a_kept_span_idle_past_ten_minutes_of_the_clock_is_forgotten() {
        let spans = MovingSpans::default();
        spans.keep(span_at(0, T0), T0);
        // Still used at exactly the limit: extending on the way keeps it.
        spans
            .extend_at(Table::EdgeMinute, "", 0, T0 + MAX_IDLE_MS, |_| Ok(()))
            .unwrap();
        assert_eq!(starts(&spans), vec![0]);

        // A span kept later survives the first one's expiry.
        spans.keep(span_at(MINUTE_MS, T0 + 1), T0 + 1);
        spans
            .extend_at(Table::EdgeMinute, "", 0, T0 + MAX_IDLE_MS + 1, |_| Ok(()))
            .unwrap();
        assert_eq!(starts(&spans), vec![MINUTE_MS]);

        // Keeping a new span forgets the idle ones too.
        let later = T0 + 1 + MAX_IDLE_MS + 1;
        spans.keep(span_at(2 * MINUTE_MS, later), later);
        assert_eq!(starts(&spans), vec![2 * MINUTE_MS]);
    }
}
