//! meshscope's columnar store: per-minute metric tables as Arrow in memory (and Parquet on
//! disk), read through DataFusion. Knows nothing of Envoy or HTTP.

pub mod access_log;
pub mod batch;
pub mod clock;
pub mod config;
pub mod error;
pub mod files;
pub mod maintenance;
pub mod model;
pub mod open;
pub mod proxy_metrics;
pub mod proxy_table;
pub mod read;
mod rollup;
pub mod schema;
pub mod sketch;
mod sliding;
pub mod sql;
pub mod store;
mod table;
mod totals;
pub mod udf;
pub mod wal;
pub mod written_note;

pub use access_log::AccessLogRow;
pub use batch::ClosedBatch;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{RetentionConfig, SqlLimits, StoreConfig};
/// The Arrow the store's batches are made with, for callers that read them.
pub use datafusion::arrow;
pub use datafusion::arrow::record_batch::RecordBatch;
pub use error::{Error, Result};
pub use files::Granularity;
pub use maintenance::MaintenanceReport;
pub use model::{
    EpochMillis, MINUTE_MS, MetricRow, Metrics, NodeKind, Protocol, RowKey, ServiceRef, Side,
    Table, minute_of,
};
pub use open::OpenMinutes;
pub use proxy_metrics::{
    ProxyInfo, ProxyMetricKind, ProxyMetricRow, ProxyMetrics, ProxyMetricsLimits, bucket_quantile,
};
pub use proxy_table::{ProxyFilter, proxy_table_name};
pub use read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};
pub use sketch::LatencySketch;
pub use sliding::KeptSpan;
pub use sql::TableInfo;
pub use store::{MemoryTurn, Store, table_name};
