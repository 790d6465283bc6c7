//! The running sums a moving span (`sliding`) keeps per key, and how a scan's rows are
//! added to them or taken out. A span's keys are split in shards by a hash of their bytes,
//! and a large scan's rows are folded into the shards side by side, one core each: the
//! first read of an hour over a big mesh is mostly this fold.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use datafusion::arrow::array::{AsArray, BinaryArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::Rows;

use crate::batch;
use crate::block_summary;
use crate::error::{Error, Result};
use crate::model::{EpochMillis, Metrics, RowKey, Side, Table};
use crate::schema;
use crate::sketch::LatencySketch;
use crate::totals::{Figures, SpanTotal, column, key_converter, key_rows};

/// Below this many rows a scan is folded shard after shard on the calling thread: a
/// minute's rows take less time to fold than threads take to start.
const ROWS_TO_FOLD_IN_PARALLEL: usize = 16_384;

/// Shards a new span splits its keys in: one per core, at most eight.
pub(crate) fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8))
}

/// Which shard a key's row-format bytes belong to, the same for the life of the process.
fn shard_of(bytes: &[u8], shards: usize) -> usize {
    let hash = foldhash::fast::FixedState::with_seed(0x6d65_7368).hash_one(bytes);
    ((hash >> 32) as usize) % shards
}

/// One running sum of rows over the span, with what its minimum and maximum need.
#[derive(Default)]
pub(crate) struct RunningSum {
    metrics: Metrics,
    /// The newest minute with a row in this sum: a sum whose rows all left the span is
    /// not reported.
    newest: Option<EpochMillis>,
    /// Minutes whose smallest (largest) latency could still be the span's: increasing
    /// (decreasing) values, oldest first, so the front is the span's.
    lows: VecDeque<(EpochMillis, f64)>,
    highs: VecDeque<(EpochMillis, f64)>,
    /// Each added row's minute, minimum and maximum: scans do not return rows in time
    /// order, and the queues above must grow in it.
    added_extremes: Vec<(EpochMillis, f64, f64)>,
}

impl RunningSum {
    fn add(&mut self, minute: EpochMillis, figures: &Figures, row: usize) -> Result<()> {
        figures.add_to(&mut self.metrics, row)?;
        self.newest = Some(self.newest.map_or(minute, |m| m.max(minute)));
        let extremes = match figures.sketch(row) {
            Some(bytes) => LatencySketch::extremes_of(bytes)?,
            None => None,
        };
        if let Some((low, high)) = extremes {
            self.added_extremes.push((minute, low, high));
        }
        Ok(())
    }

    /// Adds a block summary's row: its figures, its newest minute, and the smallest and
    /// largest latency of each minute it summed (`block_summary::decode_extremes`).
    fn add_summed(
        &mut self,
        newest: EpochMillis,
        figures: &Figures,
        row: usize,
        extremes: &[u8],
    ) -> Result<()> {
        figures.add_to(&mut self.metrics, row)?;
        self.newest = Some(self.newest.map_or(newest, |m| m.max(newest)));
        block_summary::decode_extremes(extremes, &mut self.added_extremes)
    }

    /// The newest minute with a row in this sum.
    pub(crate) fn newest(&self) -> Option<EpochMillis> {
        self.newest
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Each added row's minute, smallest and largest latency, until they are queued.
    pub(crate) fn added_extremes(&self) -> &[(EpochMillis, f64, f64)] {
        &self.added_extremes
    }

    /// The queued minutes whose smallest or largest latency could still be the sum's once
    /// older minutes leave, oldest first, as (minute, low, high) triples. A minute queued
    /// for one extreme only has infinity for the other (`f64::INFINITY` as its low,
    /// `f64::NEG_INFINITY` as its high): added to another sum and queued again, such a
    /// value is always displaced by the newest minute, which is queued for both.
    pub(crate) fn queued_extremes(&self) -> Vec<(EpochMillis, f64, f64)> {
        let mut triples = Vec::with_capacity(self.lows.len().max(self.highs.len()));
        let (mut lows, mut highs) = (self.lows.iter().peekable(), self.highs.iter().peekable());
        loop {
            let triple = match (lows.peek(), highs.peek()) {
                (Some(&&(low_at, low)), Some(&&(high_at, high))) if low_at == high_at => {
                    lows.next();
                    highs.next();
                    (low_at, low, high)
                }
                (Some(&&(low_at, low)), Some(&&(high_at, _))) if low_at < high_at => {
                    lows.next();
                    (low_at, low, f64::NEG_INFINITY)
                }
                (Some(&&(low_at, low)), None) => {
                    lows.next();
                    (low_at, low, f64::NEG_INFINITY)
                }
                (_, Some(&&(high_at, high))) => {
                    highs.next();
                    (high_at, f64::INFINITY, high)
                }
                (None, None) => break,
            };
            triples.push(triple);
        }
        triples
    }

    fn take(&mut self, figures: &Figures, row: usize) -> Result<()> {
        let gone = figures.counters(row);
        for (i, gone) in gone.into_iter().enumerate() {
            if gone == 0 {
                continue;
            }
            let field = self.metrics.counter_mut(i);
            *field = field.checked_sub(gone).ok_or_else(|| {
                Error::InvalidQuery("a moving total lost more than it held".into())
            })?;
        }
        // The overhead's extremes are not kept by minute: after a minute leaves, its
        // minimum and maximum are bounds, which the p50 and p99 read do not rely on.
        if let Some(bytes) = figures.overhead(row) {
            self.metrics.overhead.remove_bytes(bytes)?;
        }
        match figures.sketch(row) {
            Some(bytes) => self.metrics.latency.remove_bytes(bytes),
            None => Ok(()),
        }
    }

    /// Queues the added rows' minimums and maximums, oldest first.
    fn queue_extremes(&mut self) {
        if self.added_extremes.is_empty() {
            return;
        }
        let mut added = std::mem::take(&mut self.added_extremes);
        added.sort_by_key(|(minute, ..)| *minute);
        for (minute, low, high) in added {
            while self.lows.back().is_some_and(|(_, v)| *v >= low) {
                self.lows.pop_back();
            }
            self.lows.push_back((minute, low));
            while self.highs.back().is_some_and(|(_, v)| *v <= high) {
                self.highs.pop_back();
            }
            self.highs.push_back((minute, high));
        }
    }

    /// Forgets the minutes before `start` in the minimum and maximum.
    fn settle_extremes(&mut self, start: EpochMillis) {
        while self.lows.front().is_some_and(|(m, _)| *m < start) {
            self.lows.pop_front();
        }
        while self.highs.front().is_some_and(|(m, _)| *m < start) {
            self.highs.pop_front();
        }
        if let (Some((_, low)), Some((_, high))) = (self.lows.front(), self.highs.front()) {
            self.metrics.latency.set_extremes(*low, *high);
        }
    }

    /// Whether a row of this sum is still in a span starting at `start`.
    fn holds_rows(&self, start: EpochMillis) -> bool {
        self.newest.is_some_and(|minute| minute >= start)
    }
}

/// Which of a key's running sums a row goes to: a minute row goes to its side's (and a
/// client row of a minute the server did not report to the unmatched one as well); a
/// block summary's row names its sum (`block_summary`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SumKind {
    Server,
    Client,
    Unmatched,
}

impl SumKind {
    /// How a block summary's `side` column names the sum.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SumKind::Server => "server",
            SumKind::Client => "client",
            SumKind::Unmatched => "client_unmatched",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<SumKind> {
        [SumKind::Server, SumKind::Client, SumKind::Unmatched]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// One key's running sums over the span.
pub(crate) struct Running {
    key: RowKey,
    /// Every server row.
    server: RunningSum,
    /// Every client row.
    client: RunningSum,
    /// The client's rows of minutes in which the server did not report; with `server`,
    /// the figures a window shows. Kept only by spans read with no side.
    unmatched: RunningSum,
    /// Minutes of the rows being added or taken out in which the server reported, sorted.
    server_minutes: Vec<EpochMillis>,
}

impl Running {
    fn new(key: RowKey) -> Self {
        Running {
            key,
            server: RunningSum::default(),
            client: RunningSum::default(),
            unmatched: RunningSum::default(),
            server_minutes: Vec::new(),
        }
    }

    fn sums_mut(&mut self) -> [&mut RunningSum; 3] {
        [&mut self.server, &mut self.client, &mut self.unmatched]
    }

    fn sum_mut(&mut self, kind: SumKind) -> &mut RunningSum {
        match kind {
            SumKind::Server => &mut self.server,
            SumKind::Client => &mut self.client,
            SumKind::Unmatched => &mut self.unmatched,
        }
    }

    pub(crate) fn key(&self) -> &RowKey {
        &self.key
    }

    /// The three sums, each with what it sums.
    pub(crate) fn sums(&self) -> [(SumKind, &RunningSum); 3] {
        [
            (SumKind::Server, &self.server),
            (SumKind::Client, &self.client),
            (SumKind::Unmatched, &self.unmatched),
        ]
    }

    fn holds_rows(&self, start: EpochMillis) -> bool {
        self.server.holds_rows(start) || self.client.holds_rows(start)
    }

    /// The figures a window shows: the server's rows, and the client's of minutes the
    /// server did not report.
    fn shown(&self) -> Metrics {
        let mut metrics = self.server.metrics.clone();
        if self.unmatched.newest.is_some() {
            metrics.merge(&self.unmatched.metrics);
        }
        metrics
    }
}

/// Scanned batches with what folding their rows needs read once: each row's key bytes,
/// minute, side and shard.
pub(crate) struct ScannedRows<'a> {
    batches: Vec<ScannedBatch<'a>>,
    rows: usize,
}

struct ScannedBatch<'a> {
    batch: &'a RecordBatch,
    keys: Rows,
    minutes: TimestampMillisecondArray,
    server: Vec<bool>,
    shard: Vec<u8>,
    figures: Figures,
    /// For a block summary's rows: the sum each row goes to, and each row's minutes'
    /// extremes. `None` for minute rows.
    summed: Option<(Vec<SumKind>, BinaryArray)>,
}

impl<'a> ScannedRows<'a> {
    /// Reads `batches` of `table` for a span whose keys are in `shards` shards.
    pub(crate) fn read(table: Table, batches: &'a [RecordBatch], shards: usize) -> Result<Self> {
        let converter = key_converter(table)?;
        let mut scanned = Vec::with_capacity(batches.len());
        let mut rows = 0;
        for batch in batches {
            let keys = key_rows(table, &converter, batch)?;
            let sides = column(batch, schema::SIDE)?.as_string::<i32>();
            let summed = match batch.column_by_name(block_summary::EXTREMES) {
                Some(extremes) => Some((
                    (0..batch.num_rows())
                        .map(|row| {
                            SumKind::parse(sides.value(row)).ok_or_else(|| {
                                Error::InvalidQuery(format!(
                                    "a block summary's row names no sum: {:?}",
                                    sides.value(row)
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                    extremes.as_binary::<i32>().clone(),
                )),
                None => None,
            };
            // A summary's rows go to the sum they name, never by the server's minutes.
            let server = (0..batch.num_rows())
                .map(|row| summed.is_none() && sides.value(row) == Side::Server.as_str())
                .collect();
            // One shard needs no hash of every key.
            let shard = if shards == 1 {
                vec![0; batch.num_rows()]
            } else {
                (0..batch.num_rows())
                    .map(|row| shard_of(keys.row(row).as_ref(), shards) as u8)
                    .collect()
            };
            rows += batch.num_rows();
            scanned.push(ScannedBatch {
                batch,
                keys,
                minutes: column(batch, schema::MINUTE)?
                    .as_primitive::<TimestampMillisecondType>()
                    .clone(),
                server,
                shard,
                figures: Figures::of(batch)?,
                summed,
            });
        }
        Ok(ScannedRows {
            batches: scanned,
            rows,
        })
    }
}

/// One shard of a span's keys and their running sums.
#[derive(Default)]
pub(crate) struct KeyShard {
    /// Where each key's sums are in `running`, by the key columns' row-format bytes, so
    /// that a row finds its key without building it.
    keys: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    running: Vec<Running>,
}

impl KeyShard {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Adds or takes out the rows of shard `shard` of `scanned`, each in its side's sum,
    /// and with `both_sides` each client row of a minute the server did not report in the
    /// unmatched sum too; a block summary's rows are added to the sums they name. One pass
    /// finds each row's key and learns the server's minutes, a second counts.
    fn apply(
        &mut self,
        table: Table,
        scanned: &ScannedRows,
        shard: usize,
        both_sides: bool,
        adding: bool,
    ) -> Result<()> {
        self.fold_rows(table, scanned, shard, both_sides, adding)?;
        if adding {
            for running in &mut self.running {
                for sum in running.sums_mut() {
                    sum.queue_extremes();
                }
            }
        }
        Ok(())
    }

    /// Adds every row of `scanned` (read for one shard) to this shard's sums, keeping each
    /// row's extremes unqueued: what a block summary is written from.
    pub(crate) fn add_unqueued(&mut self, table: Table, scanned: &ScannedRows) -> Result<()> {
        self.fold_rows(table, scanned, 0, true, true)
    }

    /// The keys' running sums, in no order.
    pub(crate) fn running(&self) -> &[Running] {
        &self.running
    }

    /// `apply` but for queueing the added rows' extremes.
    fn fold_rows(
        &mut self,
        table: Table,
        scanned: &ScannedRows,
        shard: usize,
        both_sides: bool,
        adding: bool,
    ) -> Result<()> {
        let mut at_of_row: Vec<Vec<u32>> = Vec::with_capacity(scanned.batches.len());
        let mut touched = Vec::new();
        for read in &scanned.batches {
            let mut ats = Vec::new();
            for row in (0..read.keys.num_rows()).filter(|row| read.shard[*row] as usize == shard) {
                let bytes = read.keys.row(row);
                let at = match self.keys.get(bytes.as_ref()) {
                    Some(at) => *at,
                    None if adding => {
                        let at = self.running.len();
                        self.running
                            .push(Running::new(batch::key_at(table, read.batch, row)?));
                        self.keys.insert(bytes.as_ref().into(), at);
                        at
                    }
                    None => {
                        return Err(Error::InvalidQuery(
                            "a moving total lost a key it never had".into(),
                        ));
                    }
                };
                if read.server[row] && both_sides {
                    let running = &mut self.running[at];
                    if running.server_minutes.is_empty() {
                        touched.push(at);
                    }
                    running.server_minutes.push(read.minutes.value(row));
                }
                ats.push(at as u32);
            }
            at_of_row.push(ats);
        }
        for at in &touched {
            self.running[*at].server_minutes.sort_unstable();
        }
        for (read, ats) in scanned.batches.iter().zip(&at_of_row) {
            let rows = (0..read.keys.num_rows()).filter(|row| read.shard[*row] as usize == shard);
            for (row, &at) in rows.zip(ats) {
                let running = &mut self.running[at as usize];
                let minute = read.minutes.value(row);
                if let Some((kinds, extremes)) = &read.summed {
                    if !adding {
                        return Err(Error::InvalidQuery(
                            "a block summary's rows are only ever added".into(),
                        ));
                    }
                    running.sum_mut(kinds[row]).add_summed(
                        minute,
                        &read.figures,
                        row,
                        extremes.value(row),
                    )?;
                    continue;
                }
                let server = read.server[row];
                let unmatched =
                    !server && both_sides && running.server_minutes.binary_search(&minute).is_err();
                let sum = if server {
                    &mut running.server
                } else {
                    &mut running.client
                };
                if adding {
                    sum.add(minute, &read.figures, row)?;
                    if unmatched {
                        running.unmatched.add(minute, &read.figures, row)?;
                    }
                } else {
                    sum.take(&read.figures, row)?;
                    if unmatched {
                        running.unmatched.take(&read.figures, row)?;
                    }
                }
            }
        }
        for at in touched {
            self.running[at].server_minutes.clear();
        }
        Ok(())
    }

    /// Forgets what came before `start`: the minutes in each minimum and maximum, and the
    /// keys with no row left.
    pub(crate) fn drop_before(&mut self, start: EpochMillis) {
        for running in &mut self.running {
            for sum in running.sums_mut() {
                sum.settle_extremes(start);
            }
        }
        let mut old: Vec<Option<Running>> = std::mem::take(&mut self.running)
            .into_iter()
            .map(Some)
            .collect();
        let running = &mut self.running;
        self.keys.retain(
            |_, at| match old[*at].take().filter(|kept| kept.holds_rows(start)) {
                Some(kept) => {
                    *at = running.len();
                    running.push(kept);
                    true
                }
                None => false,
            },
        );
    }

    /// Each key's totals as a read with side `side` gets them over a span starting at
    /// `start`: with no side, per key and minute the server's figures when it reported,
    /// else the client's; with a side, that side's rows alone, for keys it has rows of.
    pub(crate) fn totals(&self, side: Option<Side>, start: EpochMillis) -> Vec<SpanTotal> {
        let mut totals = Vec::with_capacity(self.keys.len());
        for (bytes, at) in &self.keys {
            let running = &self.running[*at];
            let (detected_by, metrics) = match side {
                None => {
                    let detected_by = if running.server.holds_rows(start) {
                        Side::Server
                    } else {
                        Side::Client
                    };
                    (detected_by, running.shown())
                }
                Some(Side::Server) if running.server.holds_rows(start) => {
                    (Side::Server, running.server.metrics.clone())
                }
                Some(Side::Client) if running.client.holds_rows(start) => {
                    (Side::Client, running.client.metrics.clone())
                }
                Some(_) => continue,
            };
            totals.push(SpanTotal {
                key: running.key.clone(),
                bytes: bytes.clone(),
                detected_by,
                metrics,
            });
        }
        totals
    }
}

/// Adds (or takes out) `scanned`'s rows to the sums of `shards`, the shards side by side
/// on threads of their own when there are enough rows to be worth it.
pub(crate) fn apply_to_shards(
    shards: &mut [KeyShard],
    table: Table,
    scanned: &ScannedRows,
    both_sides: bool,
    adding: bool,
) -> Result<()> {
    if shards.len() == 1 || scanned.rows < ROWS_TO_FOLD_IN_PARALLEL {
        for (at, shard) in shards.iter_mut().enumerate() {
            shard.apply(table, scanned, at, both_sides, adding)?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (first, others) = shards.split_first_mut().expect("at least one shard");
        let threads: Vec<_> = others
            .iter_mut()
            .enumerate()
            .map(|(at, shard)| {
                scope.spawn(move || shard.apply(table, scanned, at + 1, both_sides, adding))
            })
            .collect();
        let mut result = first.apply(table, scanned, 0, both_sides, adding);
        for thread in threads {
            let folded = thread
                .join()
                .unwrap_or_else(|_| Err(Error::InvalidQuery("a fold thread panicked".into())));
            result = result.and(folded);
        }
        result
    })
}
