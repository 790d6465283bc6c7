//! The store's two boundaries, as the two traits [`Store`] implements: what a writer calls
//! ([`MinuteWriter`], the collector's side) and what a reader calls ([`WindowReader`], the
//! query crate's side). A crate that holds the store as one of them can call only that
//! side: the HTTP API holds a `WindowReader` and cannot write a minute.
//!
//! Each method forwards to `Store`'s own method of the same name, documented there; the
//! traits add no behaviour. Opening ([`Store::open`], [`Store::open_read_only`]), upkeep
//! ([`Store::maintain`]) and the write-ahead log ([`crate::wal`]) stay with the binary that
//! wires the parts together.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;

use crate::access_log::AccessLogRow;
use crate::batch::ClosedBatch;
use crate::config::{SqlLimits, StoreConfig};
use crate::error::Result;
use crate::live_minutes::{LiveMinuteSource, LiveProxyMinuteSource};
use crate::model::{EpochMillis, RowKey, Table};
use crate::proxy_registry::ProxyRegistry;
use crate::proxy_row::ProxyMetricRow;
use crate::proxy_table::ProxyFilter;
use crate::read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};
use crate::sliding::KeptSpan;
use crate::store::{MemoryPeakPermit, Store, StoreFigures, TableInfo};
use crate::write_health::WriteFailure;

/// What a writer calls: the collector hands the store its live minutes (read in place)
/// and its closed minutes (written to files), its raw entries and its proxy statistics.
#[async_trait]
pub trait MinuteWriter: Send + Sync {
    /// Where reads find the minutes not closed yet: [`Store::attach_live_minute_source`].
    fn attach_live_minute_source(&self, source: Arc<dyn LiveMinuteSource>);

    /// Rereads the live minutes now: [`Store::refresh_live_minutes`].
    fn refresh_live_minutes(&self);

    /// Drops reads kept of live minutes that have closed: [`Store::expire_live_minute_reads`].
    fn expire_live_minute_reads(&self);

    /// Writes closed minutes (one file per table and hour): [`Store::append_batches_before`].
    async fn append_batches_before(
        &self,
        batches: &[ClosedBatch],
        before: Option<EpochMillis>,
    ) -> Result<()>;

    /// The same, with the writer's note made durable with the files:
    /// [`Store::append_batches_noted`].
    async fn append_batches_noted(
        &self,
        batches: &[ClosedBatch],
        before: Option<EpochMillis>,
        note: &str,
    ) -> Result<()>;

    /// The one-at-a-time permit for a large, short use of memory:
    /// [`Store::memory_peak_permit`].
    async fn memory_peak_permit(&self) -> MemoryPeakPermit<'_>;

    /// Whether raw entries are kept: [`Store::access_log_enabled`].
    fn access_log_enabled(&self) -> bool;

    /// Writes raw entries: [`Store::append_access_log`].
    async fn append_access_log(&self, rows: Vec<AccessLogRow>) -> Result<()>;

    /// The reporting proxies, which a writer adds to: [`Store::proxy_registry`].
    fn proxy_registry(&self) -> &ProxyRegistry;

    /// Where reads find the live minute of proxy statistics:
    /// [`Store::attach_live_proxy_source`].
    fn attach_live_proxy_source(&self, source: Arc<dyn LiveProxyMinuteSource>);

    /// Writes an hour's closed minutes of proxy statistics: [`Store::append_proxy_hour`].
    async fn append_proxy_hour(&self, hour: EpochMillis, rows: &[ProxyMetricRow]) -> Result<()>;

    /// Publishes the live minute of proxy statistics for reads:
    /// [`Store::publish_live_proxy_minutes`].
    fn publish_live_proxy_minutes(&self) -> Result<()>;
}

/// What a reader calls: totals and series of a window, proxy statistics, SQL, and the
/// store's signals and health. Nothing here writes a row.
#[async_trait]
pub trait WindowReader: Send + Sync {
    /// The configuration the store was opened with: [`Store::config`].
    fn config(&self) -> &StoreConfig;

    /// Per-key totals of a window: [`Store::aggregate`].
    async fn aggregate(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<Aggregate>>;

    /// Per-key points of a window: [`Store::series`].
    async fn series(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<(RowKey, Vec<SeriesPoint>)>>;

    /// The reporting proxies: [`Store::proxy_registry`].
    fn proxy_registry(&self) -> &ProxyRegistry;

    /// Proxy statistics of a window: [`Store::proxy_rows`].
    async fn proxy_rows(
        &self,
        range: TimeRange,
        filter: &ProxyFilter,
    ) -> Result<Vec<ProxyMetricRow>>;

    /// The tables SQL sees: [`Store::tables`].
    fn tables(&self) -> Vec<TableInfo>;

    /// A read-only SQL query within `limits`: [`Store::sql`].
    async fn sql(&self, query: &str, limits: &SqlLimits) -> Result<Vec<RecordBatch>>;

    /// The end of the newest minute written, as it changes: [`Store::minutes_written`].
    fn minutes_written(&self) -> tokio::sync::watch::Receiver<EpochMillis>;

    /// Whether nothing was ever written: [`Store::is_empty`].
    fn is_empty(&self) -> bool;

    /// The spans kept for windows that move: [`Store::moving_spans`].
    fn moving_spans(&self) -> Vec<KeptSpan>;

    /// Files, bytes and the last write, for `/metrics`: [`Store::figures`].
    fn figures(&self) -> StoreFigures;

    /// Why writes fail, while they do: [`Store::write_failure`].
    fn write_failure(&self) -> Option<WriteFailure>;
}

#[async_trait]
impl MinuteWriter for Store {
    fn attach_live_minute_source(&self, source: Arc<dyn LiveMinuteSource>) {
        Store::attach_live_minute_source(self, source)
    }

    fn refresh_live_minutes(&self) {
        Store::refresh_live_minutes(self)
    }

    fn expire_live_minute_reads(&self) {
        Store::expire_live_minute_reads(self)
    }

    async fn append_batches_before(
        &self,
        batches: &[ClosedBatch],
        before: Option<EpochMillis>,
    ) -> Result<()> {
        Store::append_batches_before(self, batches, before).await
    }

    async fn append_batches_noted(
        &self,
        batches: &[ClosedBatch],
        before: Option<EpochMillis>,
        note: &str,
    ) -> Result<()> {
        Store::append_batches_noted(self, batches, before, note).await
    }

    async fn memory_peak_permit(&self) -> MemoryPeakPermit<'_> {
        Store::memory_peak_permit(self).await
    }

    fn access_log_enabled(&self) -> bool {
        Store::access_log_enabled(self)
    }

    async fn append_access_log(&self, rows: Vec<AccessLogRow>) -> Result<()> {
        Store::append_access_log(self, rows).await
    }

    fn proxy_registry(&self) -> &ProxyRegistry {
        Store::proxy_registry(self)
    }

    fn attach_live_proxy_source(&self, source: Arc<dyn LiveProxyMinuteSource>) {
        Store::attach_live_proxy_source(self, source)
    }

    async fn append_proxy_hour(&self, hour: EpochMillis, rows: &[ProxyMetricRow]) -> Result<()> {
        Store::append_proxy_hour(self, hour, rows).await
    }

    fn publish_live_proxy_minutes(&self) -> Result<()> {
        Store::publish_live_proxy_minutes(self)
    }
}

#[async_trait]
impl WindowReader for Store {
    fn config(&self) -> &StoreConfig {
        Store::config(self)
    }

    async fn aggregate(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<Aggregate>> {
        Store::aggregate(self, table, range, filter).await
    }

    async fn series(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<(RowKey, Vec<SeriesPoint>)>> {
        Store::series(self, table, range, filter).await
    }

    fn proxy_registry(&self) -> &ProxyRegistry {
        Store::proxy_registry(self)
    }

    async fn proxy_rows(
        &self,
        range: TimeRange,
        filter: &ProxyFilter,
    ) -> Result<Vec<ProxyMetricRow>> {
        Store::proxy_rows(self, range, filter).await
    }

    fn tables(&self) -> Vec<TableInfo> {
        Store::tables(self)
    }

    async fn sql(&self, query: &str, limits: &SqlLimits) -> Result<Vec<RecordBatch>> {
        Store::sql(self, query, limits).await
    }

    fn minutes_written(&self) -> tokio::sync::watch::Receiver<EpochMillis> {
        Store::minutes_written(self)
    }

    fn is_empty(&self) -> bool {
        Store::is_empty(self)
    }

    fn moving_spans(&self) -> Vec<KeptSpan> {
        Store::moving_spans(self)
    }

    fn figures(&self) -> StoreFigures {
        Store::figures(self)
    }

    fn write_failure(&self) -> Option<WriteFailure> {
        Store::write_failure(self)
    }
}
