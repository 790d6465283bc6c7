//! meshscope's columnar store: per-minute metric tables as Arrow in memory (and Parquet on
//! disk), read through DataFusion. Knows nothing of Envoy or HTTP.

pub mod batch;
pub mod error;
pub mod model;
pub mod read;
pub mod schema;
pub mod sketch;
pub mod store;
pub mod udf;

pub use error::{Error, Result};
pub use model::{
    EpochMillis, MINUTE_MS, MetricRow, Metrics, NodeKind, Protocol, RowKey, ServiceRef, Side,
    Table, minute_of,
};
pub use read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};
pub use sketch::LatencySketch;
pub use store::{Store, StoreConfig};
