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
    /// Rows of each of `tables` in the minutes from `from` on, as record batches of its
    /// schema, one list per table in the order asked. The tables are read together, so
    /// that a service's row and its edges' rows agree.
    fn open_batches(&self, tables: &[Table], from: EpochMillis) -> Result<Vec<Vec<RecordBatch>>>;
}

struct Cached {
    from: EpochMillis,
    generation: u64,
    built: Instant,
    batches: Vec<Vec<RecordBatch>>,
}

/// Tables whose open rows are read together and kept together.
pub(crate) struct LiveGroup {
    tables: Vec<Table>,
    source: Arc<dyn OpenMinutes>,
    cached: Mutex<Option<Cached>>,
    generation: std::sync::atomic::AtomicU64,
}

impl LiveGroup {
    pub(crate) fn new(tables: Vec<Table>, source: Arc<dyn OpenMinutes>) -> Arc<Self> {
        Arc::new(Self {
            tables,
            source,
            cached: Mutex::new(None),
            generation: Default::default(),
        })
    }

    /// Makes the next read ask the source again, e.g. once a test has sent its entries.
    pub(crate) fn refresh(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops a kept read past its freshness, so that idle tables hold no copy.
    pub(crate) fn expire(&self) {
        let mut cached = self.cached.lock();
        if cached
            .as_ref()
            .is_some_and(|c| c.built.elapsed() > FRESH_FOR)
        {
            *cached = None;
        }
    }

    fn batches(&self, table: Table, from: EpochMillis) -> Result<Vec<RecordBatch>> {
        let at = self.tables.iter().position(|t| *t == table).unwrap_or(0);
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        // Held while building, so concurrent queries wait for one read instead of each
        // making their own.
        let mut cached = self.cached.lock();
        let fresh = cached.as_ref().filter(|c| {
            c.from == from && c.generation == generation && c.built.elapsed() <= FRESH_FOR
        });
        if let Some(c) = fresh {
            return Ok(c.batches.get(at).cloned().unwrap_or_default());
        }
        let read = self.source.open_batches(&self.tables, from)?;
        let wanted = read.get(at).cloned().unwrap_or_default();
        *cached = Some(Cached {
            from,
            generation,
            built: Instant::now(),
            batches: read,
        });
        Ok(wanted)
    }
}

/// One minute table's open rows: batches set by hand (tests, read-only stores) or a live
/// source.
#[derive(Default)]
pub(crate) struct OpenRows {
    fixed: RwLock<Vec<RecordBatch>>,
    live: RwLock<Option<(Table, Arc<LiveGroup>)>>,
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

    pub(crate) fn attach(&self, table: Table, group: Arc<LiveGroup>) {
        *self.live.write() = Some((table, group));
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.read().is_some()
    }

    /// The open rows from `from` on: the fixed batches, plus the live source's.
    pub(crate) fn batches(&self, from: EpochMillis) -> Result<Vec<RecordBatch>> {
        let mut batches = self.fixed();
        if let Some((table, group)) = self.live.read().as_ref() {
            batches.extend(group.batches(*table, from)?);
        }
        Ok(batches)
    }
}
