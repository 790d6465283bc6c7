//! What reads see of minutes not yet in files: rows the collector still holds open.
//!
//! The collector's open minutes are read where they live, when a query asks for them,
//! rather than copied out on a timer. On a large mesh an open minute has hundreds of
//! thousands of rows; copying every one each second cost more CPU than ingesting, and
//! doubled the memory they take. A table's read is kept for a second, so a dashboard's
//! burst of queries builds it once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::model::{EpochMillis, Table};

/// How long a read of open rows serves later queries.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// A holder of open minutes, which reads ask for their rows.
pub trait OpenMinutes: Send + Sync {
    /// Rows of `table` in the minutes from `from` on, as record batches of its schema.
    fn open_batches(&self, table: Table, from: EpochMillis) -> Result<Vec<RecordBatch>>;
}

struct Cached {
    from: EpochMillis,
    generation: u64,
    built: Instant,
    batches: Vec<RecordBatch>,
}

struct Live {
    table: Table,
    source: Arc<dyn OpenMinutes>,
    cached: Mutex<Option<Cached>>,
}

/// One minute table's open rows: batches set by hand (tests, read-only stores) or a live
/// source.
#[derive(Default)]
pub(crate) struct OpenRows {
    fixed: RwLock<Vec<RecordBatch>>,
    live: RwLock<Option<Live>>,
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for OpenRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRows")
            .field("live", &self.live.read().is_some())
            .finish()
    }
}

impl OpenRows {
    pub(crate) fn set_fixed(&self, batches: Vec<RecordBatch>) {
        *self.fixed.write() = batches;
    }

    pub(crate) fn fixed(&self) -> Vec<RecordBatch> {
        self.fixed.read().clone()
    }

    pub(crate) fn attach(&self, table: Table, source: Arc<dyn OpenMinutes>) {
        *self.live.write() = Some(Live {
            table,
            source,
            cached: Mutex::new(None),
        });
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.read().is_some()
    }

    /// Makes the next read ask the source again, e.g. once a test has sent its entries.
    pub(crate) fn refresh(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops a kept read past its freshness, so that idle tables hold no copy.
    pub(crate) fn expire(&self) {
        if let Some(live) = self.live.read().as_ref() {
            let mut cached = live.cached.lock();
            if cached
                .as_ref()
                .is_some_and(|c| c.built.elapsed() > FRESH_FOR)
            {
                *cached = None;
            }
        }
    }

    /// The open rows from `from` on: the fixed batches, plus the live source's.
    pub(crate) fn batches(&self, from: EpochMillis) -> Result<Vec<RecordBatch>> {
        let mut batches = self.fixed();
        let live = self.live.read();
        let Some(live) = live.as_ref() else {
            return Ok(batches);
        };
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        // Held while building, so concurrent queries wait for one read instead of each
        // making their own.
        let mut cached = live.cached.lock();
        let fresh = cached.as_ref().filter(|c| {
            c.from == from && c.generation == generation && c.built.elapsed() <= FRESH_FOR
        });
        match fresh {
            Some(c) => batches.extend(c.batches.iter().cloned()),
            None => {
                let read = live.source.open_batches(live.table, from)?;
                batches.extend(read.iter().cloned());
                *cached = Some(Cached {
                    from,
                    generation,
                    built: Instant::now(),
                    batches: read,
                });
            }
        }
        Ok(batches)
    }
}
