//! The store: one value that owns every table, its files and the DataFusion session that
//! reads them. Closed minutes are Parquet files; live minutes (not yet closed, still held
//! by the collector) are read from memory; hour and day rollups are files of their own.
//!
//! `Store`'s methods live in the submodule of the idea they belong to (what writers and
//! readers may call is listed in the crate's documentation):
//!
//! | submodule        | what it holds                                                      |
//! |------------------|--------------------------------------------------------------------|
//! | `open_minutes`   | a writer's unclosed minutes shared through the store               |
//! | `opening`        | opening a store on a directory, the background upkeep task         |
//! | `writes`         | the writers' boundary: live minutes, closed minutes, access log    |
//! | `memory_permit`  | the one-at-a-time permit for large, short uses of memory            |
//! | `reads`          | readers' signals: minutes written, kept spans, the proxy registry  |
//! | `refresh`        | listing a store other nodes write to again                        |
//! | `missing_files`  | a read that finds a listed file gone lists again and reads again   |
//! | `read_planner`   | `aggregate` and `series`: a window split over granularities, folded |
//! | `moving_reads`   | long minute spans moved on from kept ones, both sides in one fold   |
//! | `block_reads`    | a span's first fold from block summaries and the minutes around   |
//! | `block_upkeep`   | writing block summaries again when the minutes under them change  |
//! | `totals_cache`   | the caches of span and window totals the read planner keeps        |
//! | `proxy_tables`   | writing and reading the `proxy_metrics_*` tables                   |
//! | `sql`            | the tables SQL sees and the bounded SQL runner                     |
//! | `maintenance`    | compaction, rollups and retention                                  |
//! | `upkeep_turn`    | whether this node's turn at upkeep holds (the lease)               |
//! | `figures`        | the store's own figures for `/metrics`: files, bytes, last write   |

mod block_reads;
mod block_upkeep;
mod collector_members;
mod figures;
mod maintenance;
mod memory_permit;
mod missing_files;
mod moving_reads;
mod open_minutes;
mod opening;
mod proxy_tables;
mod read_planner;
mod reads;
mod refresh;
mod sql;
mod totals_cache;
mod trailing_hours;
mod upkeep_turn;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::prelude::SessionContext;

use crate::clock::SharedClock;
use crate::config::StoreConfig;
use crate::error::Result;
use crate::files::{DataFiles, Granularity};
use crate::live_minutes::{LiveMinuteGroup, LiveProxyMinuteSource};
use crate::model::{EpochMillis, Table};
use crate::sliding;
use crate::table::StoredTable;
use crate::udf;

pub use block_reads::BLOCK_SUMMARIES_READ_METRIC;
pub use collector_members::{COLLECTOR_MEMBER_MAX_AGE_MS, COLLECTORS_DIR, CollectorMember};
pub use figures::{MAINTENANCE_FAILURES_METRIC, MAINTENANCE_PASSES_METRIC, StoreFigures};
pub use maintenance::MaintenanceReport;
pub(crate) use memory_permit::MemoryHint;
pub use memory_permit::MemoryPeakPermit;
pub use missing_files::RELISTED_READS_METRIC;
pub use open_minutes::{OPEN_MINUTES_DIR, OPEN_MINUTES_MAX_AGE_MS};
pub use sql::TableInfo;
pub use trailing_hours::TRAILING_SUMMARIES_READ_METRIC;
pub use upkeep_turn::{MAINTENANCE_SKIPPED_METRIC, UPKEEP_LEASE_HELD_METRIC};

/// The name SQL knows a table by: `service_minute`, `service_hour`, `service_day`, ….
pub fn table_name(table: Table, granularity: Granularity) -> String {
    let base = table.name().trim_end_matches("_minute");
    format!("{base}_{}", granularity.suffix())
}

/// Everything a store holds, shared by its handles and its background task.
pub(crate) struct StoreState {
    pub(crate) config: StoreConfig,
    /// Where wall time comes from: the config's clock.
    pub(crate) clock: SharedClock,
    pub(crate) files: DataFiles,
    pub(crate) tables: HashMap<(Table, Granularity), Arc<StoredTable>>,
    /// Each metric table's summaries of ten-minute blocks of its minutes
    /// (`block_summary`); not seen by SQL.
    pub(crate) block_tables: HashMap<Table, Arc<StoredTable>>,
    /// The minute files each block summary file was made from, learned when it was
    /// written or first read; a summary not here is read to learn them.
    pub(crate) block_sources: parking_lot::Mutex<HashMap<String, Vec<String>>>,
    /// Block summaries first folds read instead of their minutes.
    pub(crate) block_summaries_read: std::sync::atomic::AtomicU64,
    /// The map's tables' trailing-hour summaries (`trailing_hour`); not seen by SQL.
    pub(crate) trailing_tables: HashMap<Table, Arc<StoredTable>>,
    /// The span each trailing-hour summary file covers and the minute files it was made
    /// from, learned when it was written or first read.
    pub(crate) trailing_spans: parking_lot::Mutex<HashMap<String, trailing_hours::TrailingSpan>>,
    /// Trailing-hour summaries first folds read instead of their blocks and minutes.
    pub(crate) trailing_summaries_read: std::sync::atomic::AtomicU64,
    pub(crate) access_log: Arc<StoredTable>,
    /// The session the store's own reads plan with, made on first use
    /// ([`Store::session`]).
    pub(crate) ctx: OnceLock<SessionContext>,
    /// One maintenance pass at a time, whether from the background task or a caller.
    pub(crate) maintenance: tokio::sync::Mutex<()>,
    /// Taken in turn by the large transient uses of memory: a closing minute's encoding
    /// and write, and each step of a compaction or rollup, so that their peaks never add.
    pub(crate) memory_peaks: tokio::sync::Mutex<()>,
    /// Totals of one span of one granularity, keyed by the span and its files.
    pub(crate) span_totals_cache: totals_cache::TotalsCache<totals_cache::SpanKey>,
    /// The groups of minute tables whose live rows come from a live source.
    pub(crate) live_groups: parking_lot::RwLock<Vec<Arc<LiveMinuteGroup>>>,
    /// Totals of a window's closed spans taken together, keyed by those spans: merging a
    /// week's spans key by key costs more than reading them.
    pub(crate) window_totals_cache: totals_cache::TotalsCache<Vec<totals_cache::SpanKey>>,
    /// Minute spans kept to be moved on as windows that end now move forward.
    pub(crate) moving: sliding::MovingSpans,
    /// The end of the newest minute written, announced on every write, late rows too:
    /// what keeps a dashboard's windows read ahead waits on it.
    pub(crate) written: tokio::sync::watch::Sender<EpochMillis>,
    pub(crate) proxy_registry: crate::proxy_registry::ProxyRegistry,
    /// Where the live part of `proxy_metrics_minute` is read from when it is published.
    pub(crate) proxy_source: parking_lot::RwLock<Option<Arc<dyn LiveProxyMinuteSource>>>,
    pub(crate) proxy_tables: HashMap<Granularity, Arc<StoredTable>>,
    /// This node's claim on the upkeep lease, on a store shared with other writers (a
    /// writer id set); `None` runs upkeep unasked.
    pub(crate) upkeep_lease: Option<crate::upkeep_lease::UpkeepLease>,
}

/// A handle on an open store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    pub(crate) inner: Arc<StoreState>,
}

impl Store {
    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The DataFusion session with every table and the sketch functions registered, made
    /// on first use: building a session's function registries touches megabytes of code,
    /// which a server nobody has read from yet, or a collector that never reads, would
    /// otherwise keep mapped (BENCHMARKS.md, "Idle memory").
    pub fn session(&self) -> &SessionContext {
        self.inner.ctx.get_or_init(|| {
            tracing::debug!("making the store's DataFusion session");
            let ctx = SessionContext::new();
            if let Err(error) = self.register_tables(&ctx) {
                // Only a name registered twice fails, and a new session has none.
                tracing::error!(%error, "registering the store's tables in its session");
            }
            ctx
        })
    }

    /// Registers the store's object store, the sketch functions and every table in `ctx`.
    pub(crate) fn register_tables(&self, ctx: &SessionContext) -> Result<()> {
        let files = &self.inner.files;
        ctx.register_object_store(files.url().as_ref(), files.object_store());
        ctx.register_udaf(udf::merge_sketch());
        ctx.register_udf(udf::quantile());
        for table in self
            .inner
            .tables
            .values()
            .chain(self.inner.proxy_tables.values())
            .chain(std::iter::once(&self.inner.access_log))
        {
            ctx.register_table(table.name.as_str(), table.clone())?;
        }
        Ok(())
    }

    /// The stored table of `table` at `granularity`.
    pub(crate) fn table(&self, table: Table, granularity: Granularity) -> &Arc<StoredTable> {
        &self.inner.tables[&(table, granularity)]
    }

    /// The summaries of ten-minute blocks of `table`'s minutes.
    pub(crate) fn block_table(&self, table: Table) -> &Arc<StoredTable> {
        &self.inner.block_tables[&table]
    }

    /// The summaries of ten-minute blocks and of trailing hours, of every table.
    pub(crate) fn summary_tables(&self) -> impl Iterator<Item = &Arc<StoredTable>> {
        self.inner
            .block_tables
            .values()
            .chain(self.inner.trailing_tables.values())
    }

    /// The stored proxy statistics table at `granularity`.
    pub(crate) fn proxy_table(&self, granularity: Granularity) -> &Arc<StoredTable> {
        &self.inner.proxy_tables[&granularity]
    }

    /// Wall time now, in epoch milliseconds, from the config's clock.
    pub(crate) fn now_ms(&self) -> EpochMillis {
        self.inner.clock.now_ms()
    }
}
