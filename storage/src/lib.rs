//! meshscope's columnar store: per-minute metric tables as Arrow in memory (and Parquet on
//! disk), read through DataFusion. Knows nothing of Envoy or HTTP.
//!
//! Everything goes through one [`Store`]. Its public surface is two boundaries, each a
//! trait `Store` implements ([`boundary`]): [`MinuteWriter`], which the collector holds the
//! store as, and [`WindowReader`], which the query crate holds it as, so that a reader
//! cannot call a write.
//!
//! # What writers call (the collector, through [`MinuteWriter`])
//!
//! - Opening: [`Store::open`] with a [`StoreConfig`] (its [`Clock`] included).
//! - Live minutes, those not closed yet: [`Store::attach_live_minute_source`] hands the
//!   store an [`LiveMinuteSource`] source that reads ask for rows (or
//!   [`Store::publish_live_minutes`] sets a snapshot); [`Store::refresh_live_minutes`] and
//!   [`Store::expire_live_minute_reads`] manage the reads kept from it.
//! - Closed minutes: [`Store::append_closed`], [`Store::append_closed_before`] and, for rows
//!   the collector encoded itself with [`RowBuilder`], [`Store::append_batches_before`]
//!   with [`ClosedBatch`]es. Large writes hold a [`Store::memory_peak_permit`].
//! - Raw entries: [`Store::access_log_enabled`], [`Store::append_access_log`].
//! - Proxy statistics: [`Store::proxy_registry`] (the reporting proxies); closed minutes
//!   written with [`Store::append_proxy_hour`]; the live minute read from an
//!   [`LiveProxyMinuteSource`] source attached with [`Store::attach_live_proxy_source`] and
//!   published by [`Store::publish_live_proxy_minutes`].
//! - Durability: [`wal`], a write-ahead log of opaque records (the collector logs what it
//!   receives there and replays it at start), and [`Store::append_batches_noted`], which
//!   makes a writer's note durable exactly with the minute files it describes; run
//!   [`written_note::recover`] before opening.
//!
//! # What readers call (the query crate, through [`WindowReader`])
//!
//! - Opening beside a writer: [`Store::open_read_only`].
//! - Totals and series of a window: [`Store::aggregate`], [`Store::series`], with
//!   [`TimeRange`] and [`KeyFilter`]; answers are [`Aggregate`]s and [`SeriesPoint`]s.
//! - Proxies: [`Store::proxy_registry`], [`Store::proxy_rows`] with a
//!   [`ProxyFilter`].
//! - SQL: [`Store::tables`], [`Store::sql`] within [`SqlLimits`]; [`Store::session`] with
//!   the `merge_sketch` and `quantile` functions registered.
//! - When new minutes land: [`Store::minutes_written`], [`Store::is_empty`]; what is kept
//!   for moving windows: [`Store::moving_spans`].
//! - Upkeep: [`Store::maintain`], which [`StoreConfig::maintenance_interval_secs`] also
//!   runs in the background.
//! - Health: [`Store::write_failure`] while writes fail (a full disk), with the reason
//!   they are counted under in `/metrics` ([`WRITE_FAILURES_METRIC`]).
//!
//! Shared by both: the row model ([`MetricRow`], [`RowKey`], [`Metrics`], [`Table`], …) and
//! [`LatencySketch`]. The modules that hold rows' Arrow form, the files and the sketch's
//! bins are private; of them only what the collector encodes with is exported:
//! [`RowBuilder`], [`KeyRef`], [`to_batch`] and [`from_batch`], [`hour_of`], [`Binned`],
//! and (for the slow-disk tests) [`SLOW_WRITES_ENV`].

mod access_log;
mod batch;
mod block_summary;
pub mod boundary;
pub mod clock;
mod config;
mod crash_point;
mod durable;
mod error;
mod file_names;
mod file_writer;
mod files;
mod live_minutes;
mod location;
mod model;
mod proxy_registry;
mod proxy_row;
mod proxy_table;
mod quarantine;
mod read;
mod replace;
pub mod response_flags;
mod rollup;
mod running_sums;
mod schema;
mod sketch;
mod sliding;
mod store;
mod table;
mod totals;
mod trailing_hour;
mod udf;
mod upkeep_lease;
pub mod wal;
mod whole_file;
mod write_health;
pub mod written_note;

pub use access_log::AccessLogRow;
pub use batch::{ClosedBatch, KeyRef, RowBuilder, from_batch, to_batch};
pub use boundary::{MinuteWriter, WindowReader};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{RetentionConfig, SqlLimits, StoreConfig};
pub use crash_point::{CRASH_AT_ENV, reached as crash_point};
/// The Arrow the store's batches are made with, for callers that read them.
pub use datafusion::arrow;
pub use datafusion::arrow::record_batch::RecordBatch;
pub use error::{Error, Result};
pub use files::{Granularity, SLOW_WRITES_ENV, hour_of};
pub use live_minutes::{LiveMinuteSource, LiveProxyMinuteSource};
pub use location::{valid_writer_id, writer_id_in};
pub use model::{
    EpochMillis, MINUTE_MS, MetricRow, Metrics, NodeKind, Protocol, RowKey, ServiceRef, Side,
    Table, UNKNOWN_INSTANCE, minute_of,
};
pub use proxy_registry::{ProxyInfo, ProxyRegistry};
pub use proxy_row::{ProxyMetricKind, ProxyMetricRow, bucket_quantile};
pub use proxy_table::{ProxyFilter, proxy_table_name};
pub use quarantine::{QUARANTINE_DIR, QUARANTINED_METRIC};
pub use read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};
pub use replace::RECORDS_DIR;
pub use response_flags::ResponseFlagCounts;
pub use sketch::{Binned, LatencySketch};
pub use sliding::KeptSpan;
pub use store::{
    BLOCK_SUMMARIES_READ_METRIC, COLLECTOR_MEMBER_MAX_AGE_MS, COLLECTORS_DIR, CollectorMember,
    MAINTENANCE_FAILURES_METRIC, MAINTENANCE_PASSES_METRIC, MAINTENANCE_SKIPPED_METRIC,
    MaintenanceReport, MemoryPeakPermit, OPEN_MINUTES_DIR, OPEN_MINUTES_MAX_AGE_MS,
    RELISTED_READS_METRIC, Store, StoreFigures, TRAILING_SUMMARIES_READ_METRIC, TableInfo,
    UPKEEP_LEASE_HELD_METRIC, table_name,
};
pub use upkeep_lease::{LEASE_CLOCK_GRACE_MS, UPKEEP_LEASE_DIR};
pub use whole_file::write_whole_file;
pub use write_health::{
    WRITE_FAILURE_REASONS, WRITE_FAILURES_METRIC, WriteFailure, failure_reason,
};
