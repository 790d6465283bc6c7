//! What the store's tests share: a store configuration without background upkeep, row
//! and key builders, and readers of totals and of the files in a data directory.

use std::path::Path;

use meshscope_storage::{
    Aggregate, KeyFilter, LatencySketch, MINUTE_MS, MetricRow, Metrics, Protocol, RowKey,
    ServiceRef, Side, Store, StoreConfig, Table, TimeRange,
};

pub(crate) const HOUR: i64 = 60 * MINUTE_MS;
pub(crate) const DAY: i64 = 24 * HOUR;
/// 2025-11-23T00:00:00Z, a day boundary.
pub(crate) const T0: i64 = 1_763_856_000_000;

/// The configuration of writer `writer` (empty: none) on the shared object store `store`,
/// its local files in `dir`, its time from `clock`.
pub(crate) fn config_on(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    clock: &std::sync::Arc<meshscope_storage::ManualClock>,
    dir: &Path,
    writer: &str,
) -> StoreConfig {
    StoreConfig {
        maintenance_interval_secs: 0,
        writer_id: writer.to_owned(),
        object_store: Some(store.clone()),
        clock: clock.clone().into(),
        ..StoreConfig::in_dir(dir)
    }
}

pub(crate) fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(dir)
    }
}

pub(crate) fn edge(source: &str, target: &str) -> RowKey {
    RowKey::Edge {
        source: ServiceRef::service("shop", source),
        target: ServiceRef::service("shop", target),
        protocol: Protocol::Http,
    }
}

pub(crate) fn service(name: &str) -> RowKey {
    RowKey::Service {
        service: ServiceRef::service("shop", name),
    }
}

pub(crate) fn row(minute: i64, key: RowKey, side: Side, calls: u64, latency_ms: f64) -> MetricRow {
    let mut latency = LatencySketch::new();
    for _ in 0..calls {
        latency.add(latency_ms);
    }
    MetricRow {
        minute,
        key,
        side,
        metrics: Metrics {
            calls,
            errors: calls / 10,
            latency,
            ..Metrics::default()
        },
    }
}

/// Minute `m`'s rows as the tests of windows that move write them: an edge both proxies
/// report, the server's latency changing minute by minute; a service whose fastest call
/// is in its earliest minutes; a key that goes away after minute `gone_after`; and the
/// client's side of an edge every third minute, whose slowest call is in its earliest
/// minutes (each test adds the server's side of that edge as it needs).
pub(crate) fn moving_window_rows(m: i64, gone_after: i64) -> Vec<MetricRow> {
    let at = T0 + m * MINUTE_MS;
    let mut rows = vec![
        row(
            at,
            edge("web", "cart"),
            Side::Server,
            10 + m as u64,
            5.0 + (m % 7) as f64,
        ),
        row(at, edge("web", "cart"), Side::Client, 11 + m as u64, 6.0),
        row(at, service("cart"), Side::Server, 20, 1.0 + m as f64),
    ];
    if m <= gone_after {
        rows.push(row(at, edge("web", "gone"), Side::Client, 3, 2.0));
    }
    if m % 3 == 0 {
        rows.push(row(
            at,
            edge("web", "db"),
            Side::Client,
            4,
            300.0 - m as f64,
        ));
    }
    rows
}

pub(crate) fn all(start: i64, end: i64) -> TimeRange {
    TimeRange { start, end }
}

pub(crate) async fn totals(
    store: &Store,
    table: Table,
    range: TimeRange,
) -> Vec<(RowKey, Side, u64, u64)> {
    store
        .aggregate(table, range, &KeyFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|a: Aggregate| (a.key, a.detected_by, a.metrics.calls, a.metrics.errors))
        .collect()
}

pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}
