//! Rows and stores for the tests that write a data directory themselves, without a server.

use std::path::Path;

use meshscope_storage::{MetricRow, Metrics, RowKey, ServiceRef, Side, Store, StoreConfig};

/// A server-side row of service `shop/<service>` in `minute` with `calls` calls and nothing
/// else.
pub(crate) fn service_row(minute: i64, service: &str, calls: u64) -> MetricRow {
    MetricRow {
        minute,
        key: RowKey::Service {
            service: ServiceRef::service("shop", service),
        },
        side: Side::Server,
        metrics: Metrics {
            calls,
            ..Metrics::default()
        },
    }
}

/// A store over `dir` with no background upkeep: the test decides when upkeep runs.
pub(crate) async fn store_without_upkeep(dir: &Path) -> Store {
    Store::open(StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(dir)
    })
    .await
    .unwrap()
}
