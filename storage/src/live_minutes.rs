//! What reads see of live minutes: minutes the collector has not closed yet, whose rows are
//! not in files. Proxy statistics have a source of their own ([`LiveProxyMinuteSource`]), read
//! when the store publishes their live minute.
//!
//! The collector's live minutes are read where they live, when a query asks for them,
//! rather than copied out on a timer. On a large mesh a live minute has hundreds of
//! thousands of rows; copying every one each second cost more CPU than ingesting, and
//! doubled the memory they take. A table's read is kept for a second (by the store's
//! clock), so a dashboard's burst of queries builds it once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};

use crate::clock::SharedClock;
use crate::error::Result;
use crate::model::{EpochMillis, Table};
use crate::proxy_row::ProxyMetricRow;

/// How long, in milliseconds, a read of live rows serves later queries.
const FRESH_FOR_MS: i64 = 1_000;

/// A holder of live minutes (minutes not yet closed), which reads ask for their rows.
pub trait LiveMinuteSource: Send + Sync {
    /// Rows of each of `tables` in the live minutes from `from` on, as record batches of
    /// its schema, one list per table in the order asked. The tables are read together, so
    /// that a service's row and its edges' rows agree.
    fn live_batches(&self, tables: &[Table], from: EpochMillis) -> Result<Vec<Vec<RecordBatch>>>;
}

/// A holder of proxy statistics of minutes not yet written, which the store asks for the
/// live part of `proxy_metrics_minute` each time it publishes it.
pub trait LiveProxyMinuteSource: Send + Sync {
    /// Every proxy statistics row held for minutes not yet written, one per series and
    /// minute.
    fn live_proxy_rows(&self) -> Vec<ProxyMetricRow>;
}

/// One read of a group's live rows, kept to serve the queries that follow it.
struct KeptRead {
    from: EpochMillis,
    generation: u64,
    /// When the read was made, by the store's clock.
    built_ms: EpochMillis,
    batches: Vec<Vec<RecordBatch>>,
}

impl KeptRead {
    /// Whether the read is at most `FRESH_FOR_MS` old at `now_ms`.
    fn fresh_at(&self, now_ms: EpochMillis) -> bool {
        (0..=FRESH_FOR_MS).contains(&(now_ms - self.built_ms))
    }
}

/// Tables whose live rows are read together from one source and kept together.
pub(crate) struct LiveMinuteGroup {
    tables: Vec<Table>,
    source: Arc<dyn LiveMinuteSource>,
    clock: SharedClock,
    kept: Mutex<Option<KeptRead>>,
    /// Raised by `refresh`: a kept read of an older generation is not used.
    generation: AtomicU64,
}

impl LiveMinuteGroup {
    /// A group of `tables` read from `source`, reads kept for a second of `clock`'s time.
    pub(crate) fn new(
        tables: Vec<Table>,
        source: Arc<dyn LiveMinuteSource>,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(Self {
            tables,
            source,
            clock,
            kept: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// Makes the next read ask the source again, e.g. once a test has sent its entries.
    pub(crate) fn refresh(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a kept read past its freshness, so that idle tables hold no copy.
    pub(crate) fn expire(&self) {
        let now_ms = self.clock.now_ms();
        let mut kept = self.kept.lock();
        if kept.as_ref().is_some_and(|read| !read.fresh_at(now_ms)) {
            *kept = None;
        }
    }

    /// The live rows of `table` from `from` on: a kept read while it is fresh and asked
    /// for the same `from`, else a new read of the whole group from the source.
    fn batches(&self, table: Table, from: EpochMillis) -> Result<Vec<RecordBatch>> {
        let at = self.tables.iter().position(|t| *t == table).unwrap_or(0);
        let generation = self.generation.load(Ordering::Relaxed);
        // Held while building, so concurrent queries wait for one read instead of each
        // making their own.
        let mut kept = self.kept.lock();
        let now_ms = self.clock.now_ms();
        let fresh = kept.as_ref().filter(|read| {
            read.from == from && read.generation == generation && read.fresh_at(now_ms)
        });
        if let Some(read) = fresh {
            return Ok(read.batches.get(at).cloned().unwrap_or_default());
        }
        let read = self.source.live_batches(&self.tables, from)?;
        let wanted = read.get(at).cloned().unwrap_or_default();
        *kept = Some(KeptRead {
            from,
            generation,
            built_ms: now_ms,
            batches: read,
        });
        Ok(wanted)
    }
}

/// One minute table's live rows: batches published by hand (tests, read-only stores) or a
/// live source's.
#[derive(Default)]
pub(crate) struct LiveMinuteRows {
    published: RwLock<Vec<RecordBatch>>,
    source: RwLock<Option<(Table, Arc<LiveMinuteGroup>)>>,
}

impl std::fmt::Debug for LiveMinuteRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMinuteRows")
            .field("has_source", &self.source.read().is_some())
            .finish()
    }
}

impl LiveMinuteRows {
    /// Replaces the published batches.
    pub(crate) fn set_published(&self, batches: Vec<RecordBatch>) {
        *self.published.write() = batches;
    }

    /// The published batches.
    pub(crate) fn published(&self) -> Vec<RecordBatch> {
        self.published.read().clone()
    }

    /// Reads `table`'s live rows from `group` from now on.
    pub(crate) fn attach(&self, table: Table, group: Arc<LiveMinuteGroup>) {
        *self.source.write() = Some((table, group));
    }

    /// Whether a live source is attached.
    pub(crate) fn has_source(&self) -> bool {
        self.source.read().is_some()
    }

    /// The live rows from `from` on: the published batches, plus the live source's.
    pub(crate) fn batches(&self, from: EpochMillis) -> Result<Vec<RecordBatch>> {
        let mut batches = self.published();
        if let Some((table, group)) = self.source.read().as_ref() {
            batches.extend(group.batches(*table, from)?);
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Counts the reads asked of it and answers each with no rows.
    #[derive(Default)]
    struct CountedSource {
        reads: AtomicU64,
    }

    impl LiveMinuteSource for CountedSource {
        fn live_batches(
            &self,
            tables: &[Table],
            _from: EpochMillis,
        ) -> Result<Vec<Vec<RecordBatch>>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(vec![Vec::new(); tables.len()])
        }
    }

    #[test]
    fn a_read_of_live_minutes_serves_for_one_second_of_the_clock_and_no_longer() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let source = Arc::new(CountedSource::default());
        let tables = vec![Table::ServiceMinute, Table::EdgeMinute];
        let group = LiveMinuteGroup::new(tables, source.clone(), SharedClock(clock.clone()));
        let reads = || source.reads.load(Ordering::SeqCst);

        group.batches(Table::ServiceMinute, 0).unwrap();
        assert_eq!(reads(), 1);
        // The other table of the group, and the same table, within the second: kept.
        group.batches(Table::EdgeMinute, 0).unwrap();
        clock.advance(FRESH_FOR_MS);
        group.batches(Table::ServiceMinute, 0).unwrap();
        assert_eq!(reads(), 1, "a read exactly one second old is still fresh");

        // Another start is another read.
        group.batches(Table::ServiceMinute, 60_000).unwrap();
        assert_eq!(reads(), 2);

        clock.advance(FRESH_FOR_MS + 1);
        group.batches(Table::ServiceMinute, 60_000).unwrap();
        assert_eq!(reads(), 3, "a read over a second old is made again");

        // Expiry drops a stale read only.
        group.expire();
        assert!(group.kept.lock().is_some(), "a fresh read is kept");
        clock.advance(FRESH_FOR_MS + 1);
        group.expire();
        assert!(group.kept.lock().is_none(), "a stale read is dropped");
    }
}
