//! The test-only slow disk: with `MESHSCOPE_TEST_SLOW_WRITES_MS` set, every write call to
//! the store waits that long, and what is written is still read exactly.

use std::time::{Duration, Instant};

use meshscope_storage::{
    KeyFilter, MINUTE_MS, MetricRow, Metrics, RowKey, ServiceRef, Side, Store, StoreConfig, Table,
    TimeRange,
};

/// 2025-11-23T00:00:00Z.
const T0: i64 = 1_763_856_000_000;

#[tokio::test]
async fn a_slow_disk_delays_writes_and_keeps_them_whole() {
    // The only test of this binary: nothing else reads the environment meanwhile.
    unsafe { std::env::set_var(meshscope_storage::SLOW_WRITES_ENV, "300") };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(dir.path())
    })
    .await
    .unwrap();
    let row = |minute: i64, calls: u64| MetricRow {
        minute,
        key: RowKey::Service {
            service: ServiceRef::service("shop", "cart"),
        },
        side: Side::Server,
        metrics: Metrics {
            calls,
            ..Metrics::default()
        },
    };
    let started = Instant::now();
    store.append_closed(vec![row(T0, 3)]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    store
        .append_closed(vec![row(T0 + MINUTE_MS, 4)])
        .await
        .unwrap();
    let totals = store
        .aggregate(
            Table::ServiceMinute,
            TimeRange {
                start: T0,
                end: T0 + 2 * MINUTE_MS,
            },
            &KeyFilter::default(),
        )
        .await
        .unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].metrics.calls, 7);
}
