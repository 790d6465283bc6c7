//! Opening a store: the tables of every granularity, the files already on disk, and the
//! background upkeep task. The DataFusion session is made on first use (`Store::session`).

use crate::upkeep_lease::UpkeepLease;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::totals_cache::{MAX_CACHED_TOTALS, TotalsCache};
use super::{Store, StoreState, table_name};
use crate::access_log;
use crate::config::StoreConfig;
use crate::error::Result;
use crate::files::{DataFiles, Granularity};
use crate::location::Location;
use crate::model::Table;
use crate::proxy_table;
use crate::schema::{self, MINUTE};
use crate::sliding;
use crate::table::StoredTable;

impl Store {
    /// Opens the store where `config` says (its data directory unless `store` names
    /// another place), reopening the Parquet files already there, and starts background
    /// maintenance unless its interval is 0. What an append a crash cut short wrote (see
    /// `written_note`) is undone first.
    pub async fn open(config: StoreConfig) -> Result<Store> {
        let location = Location::of(&config)?;
        let files = DataFiles::open(&location, &config.writer_id, config.clock.0.clone())?;
        crate::written_note::undo_unfinished(&files, &config.data_dir).await?;
        tracing::info!(store = %location.describe(), writer = %config.writer_id, "opening the store");
        Self::open_with(config, files).await
    }

    /// Opens the files where `config` says for reading only, as a query node does beside
    /// the writers of a shared store: no maintenance, nothing written, renamed or deleted;
    /// [`Store::refresh_files`] takes in what the writers add and replace meanwhile.
    pub async fn open_reader(config: StoreConfig) -> Result<Store> {
        let config = StoreConfig {
            maintenance_interval_secs: 0,
            ..config
        };
        let location = Location::of(&config)?;
        let files = DataFiles::open_read_only(&location, config.clock.0.clone())?;
        tracing::info!(store = %location.describe(), "opening the store to read");
        // Exported from the start, as counters are: a reader is where reads relist.
        metrics::counter!(super::RELISTED_READS_METRIC).increment(0);
        Self::open_with(config, files).await
    }

    /// Opens the files already in `data_dir` for reading only, beside a server that may be
    /// writing there: no maintenance, and nothing is written, renamed or deleted (writes
    /// fail with `Error::ReadOnly`). Files written after this call are not seen.
    pub async fn open_read_only(data_dir: impl Into<std::path::PathBuf>) -> Result<Store> {
        let config = StoreConfig {
            maintenance_interval_secs: 0,
            ..StoreConfig::in_dir(data_dir)
        };
        let location = Location::Local(config.data_dir.clone());
        let files = DataFiles::open_read_only(&location, config.clock.0.clone())?;
        Self::open_with(config, files).await
    }

    async fn open_with(config: StoreConfig, files: DataFiles) -> Result<Store> {
        let mut tables = HashMap::new();
        for table in Table::ALL {
            for granularity in Granularity::ALL {
                let stored = Arc::new(StoredTable::new(
                    table_name(table, granularity),
                    schema::schema(table),
                    granularity,
                    MINUTE,
                    files.url().clone(),
                ));
                tables.insert((table, granularity), stored);
            }
        }
        // Block and trailing-hour summaries: the summaries' columns, under names of their own.
        let summaries = |tables: &[Table], name: fn(Table) -> String| {
            tables
                .iter()
                .map(|&table| {
                    let stored = StoredTable::new(
                        name(table),
                        crate::block_summary::schema(table),
                        Granularity::Minute,
                        MINUTE,
                        files.url().clone(),
                    );
                    (table, Arc::new(stored))
                })
                .collect::<HashMap<Table, Arc<StoredTable>>>()
        };
        let block_tables = summaries(&Table::ALL, crate::block_summary::table_name);
        let trailing_tables = summaries(
            &crate::trailing_hour::TABLES,
            crate::trailing_hour::table_name,
        );
        let access_log = Arc::new(StoredTable::new(
            access_log::TABLE.to_string(),
            access_log::schema(),
            Granularity::Minute,
            access_log::TIME,
            files.url().clone(),
        ));
        let proxy_tables: HashMap<Granularity, Arc<StoredTable>> = Granularity::ALL
            .into_iter()
            .map(|granularity| {
                let stored = StoredTable::new(
                    proxy_table::proxy_table_name(granularity),
                    proxy_table::schema(),
                    granularity,
                    MINUTE,
                    files.url().clone(),
                );
                (granularity, Arc::new(stored))
            })
            .collect();
        crate::replace::prepare(&files).await?;
        let mut reopened = 0;
        for stored in tables
            .values()
            .chain(proxy_tables.values())
            .chain(block_tables.values())
            .chain(trailing_tables.values())
            .chain(std::iter::once(&access_log))
        {
            for file in files.list(&stored.name).await? {
                stored.add_file(file);
                reopened += 1;
            }
        }
        tracing::info!(files = reopened, data_dir = %config.data_dir.display(), "store opened");
        super::figures::register_maintenance_counters();
        metrics::counter!(super::BLOCK_SUMMARIES_READ_METRIC).increment(0);
        metrics::counter!(super::TRAILING_SUMMARIES_READ_METRIC).increment(0);
        let interval = config.maintenance_interval_secs;
        // A node with a writer id shares its store: upkeep goes by the lease.
        let upkeep_lease = (!config.writer_id.is_empty() && !files.is_read_only())
            .then(|| UpkeepLease::new(&config.writer_id, interval));
        let inner = Arc::new(StoreState {
            upkeep_lease,
            clock: config.clock.clone(),
            config,
            files,
            tables,
            block_tables,
            block_sources: parking_lot::Mutex::new(HashMap::new()),
            block_summaries_read: std::sync::atomic::AtomicU64::new(0),
            trailing_tables,
            trailing_spans: parking_lot::Mutex::new(HashMap::new()),
            trailing_summaries_read: std::sync::atomic::AtomicU64::new(0),
            access_log,
            ctx: std::sync::OnceLock::new(),
            maintenance: tokio::sync::Mutex::new(()),
            memory_peaks: tokio::sync::Mutex::new(()),
            proxy_registry: crate::proxy_registry::ProxyRegistry::default(),
            proxy_source: parking_lot::RwLock::new(None),
            proxy_tables,
            span_totals_cache: TotalsCache::new(MAX_CACHED_TOTALS),
            live_groups: parking_lot::RwLock::new(Vec::new()),
            window_totals_cache: TotalsCache::new(MAX_CACHED_TOTALS / 4),
            moving: sliding::MovingSpans::default(),
            written: tokio::sync::watch::Sender::new(0),
        });
        if interval > 0 {
            tokio::spawn(maintain_in_background(
                Arc::downgrade(&inner),
                Duration::from_secs(interval),
            ));
        }
        Ok(Store { inner })
    }
}

/// Runs a maintenance pass every `interval`, at the time the store's clock tells, until
/// the store is dropped.
async fn maintain_in_background(state: Weak<StoreState>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = state.upgrade() else {
            return;
        };
        let store = Store { inner };
        let now = store.now_ms();
        match store.maintain(now).await {
            Ok(report) => tracing::debug!(?report, "storage maintenance"),
            Err(error) => tracing::warn!(%error, "storage maintenance failed"),
        }
    }
}
