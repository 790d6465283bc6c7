//! Proxy statistics: files, rollups, expiry and SQL.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use meshscope_storage::{MINUTE_MS, SqlLimits, Store};

use crate::support::*;

/// Proxy statistics rows of minutes not yet written, standing in for the collector: the
/// live part of `proxy_metrics_minute`.
#[derive(Default)]
struct HeldProxyRows {
    rows: std::sync::Mutex<Vec<meshscope_storage::ProxyMetricRow>>,
}

impl HeldProxyRows {
    /// Writes the rows of minutes before `minute` to the store, one file per hour, and has
    /// the store publish the rest.
    async fn write_before(&self, store: &Store, minute: i64) {
        let mut closed: std::collections::BTreeMap<i64, Vec<_>> = Default::default();
        self.rows.lock().unwrap().retain(|row| {
            if row.minute < minute {
                closed
                    .entry(meshscope_storage::hour_of(row.minute))
                    .or_insert_with(Vec::new)
                    .push(row.clone());
            }
            row.minute >= minute
        });
        for (hour, rows) in closed {
            store.append_proxy_hour(hour, &rows).await.unwrap();
        }
        store.publish_live_proxy_minutes().unwrap();
    }
}

impl meshscope_storage::LiveProxyMinuteSource for HeldProxyRows {
    fn live_proxy_rows(&self) -> Vec<meshscope_storage::ProxyMetricRow> {
        self.rows.lock().unwrap().clone()
    }
}

fn proxy_row(
    minute: i64,
    name: &str,
    row: meshscope_storage::ProxyMetricRow,
) -> meshscope_storage::ProxyMetricRow {
    meshscope_storage::ProxyMetricRow {
        minute,
        proxy: "frontend-1".into(),
        service: "shop/frontend".into(),
        name: name.into(),
        cluster: "backend".into(),
        upstream: "backend".into(),
        ..row
    }
}

#[tokio::test]
async fn proxy_metrics_are_files_rolled_up_expired_and_read_by_sql() {
    use meshscope_storage::{ProxyFilter, ProxyMetricRow};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let held = std::sync::Arc::new(HeldProxyRows::default());
    store.attach_live_proxy_source(held.clone());
    // One row per series and minute, as the collector hands them over.
    let record = |minute: i64, requests: f64, time_ms: f64| {
        let at = T0 + minute * MINUTE_MS;
        held.rows.lock().unwrap().push(proxy_row(
            at,
            "upstream_rq_total",
            ProxyMetricRow::counter(requests),
        ));
        let buckets = if time_ms < 5.0 {
            vec![(5.0, 1), (500.0, 1)]
        } else {
            vec![(5.0, 0), (500.0, 1)]
        };
        held.rows.lock().unwrap().push(proxy_row(
            at,
            "upstream_rq_time",
            ProxyMetricRow::histogram(1, time_ms, buckets),
        ));
    };
    record(0, 4.0, 1.0);
    record(1, 6.0, 300.0);
    record(2, 0.0, 0.0);
    // Minutes before the open one are written; the open one stays in memory, visible.
    held.write_before(&store, T0 + 2 * MINUTE_MS).await;
    let minute_files: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("proxy_metrics_minute/"))
        .collect();
    assert_eq!(minute_files.len(), 1, "{minute_files:?}");
    assert!(minute_files[0].starts_with("proxy_metrics_minute/date=2025-11-23/hour=00/"));
    let live = store
        .sql(
            "SELECT count(*) FROM proxy_metrics_minute",
            &SqlLimits::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        live[0].column(0).as_primitive::<Int64Type>().value(0),
        6,
        "four rows in the file and the live minute's two read from memory"
    );
    record(HOUR / MINUTE_MS, 5.0, 2.0);
    held.write_before(&store, i64::MAX).await;

    let batches = store
        .sql(
            "SELECT name, sum(value) AS total, sum(count) AS samples FROM proxy_metrics_minute \
             GROUP BY name ORDER BY name",
            &SqlLimits::default(),
        )
        .await
        .unwrap();
    let names = batches[0].column(0).as_string::<i32>();
    let totals = batches[0].column(1).as_primitive::<Float64Type>();
    assert_eq!(
        (
            names.value(0),
            totals.value(0),
            names.value(1),
            totals.value(1)
        ),
        ("upstream_rq_time", 303.0, "upstream_rq_total", 15.0)
    );

    // The first hour rolls up into one row per series; the buckets add up.
    let report = store.maintain(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(report.hours_rolled_up, 1, "{report:?}");
    let rows = store
        .proxy_rows(all(T0, T0 + HOUR), &ProxyFilter::default())
        .await
        .unwrap();
    let time = rows.iter().find(|r| r.name == "upstream_rq_time").unwrap();
    assert_eq!(
        (time.minute, time.count, time.buckets.clone()),
        (T0, 3, vec![(5.0, 2), (500.0, 3)])
    );
    let total = rows.iter().find(|r| r.name == "upstream_rq_total").unwrap();
    assert_eq!((total.minute, total.value), (T0, 10.0));

    // Minutes go after two days, their hour rollup stays.
    let report = store.maintain(T0 + 2 * HOUR + 2 * DAY).await.unwrap();
    assert!(report.files_expired >= 1, "{report:?}");
    assert!(
        !files_under(dir.path())
            .iter()
            .any(|f| f.starts_with("proxy_metrics_minute/")),
    );
    let rows = store
        .proxy_rows(all(T0, T0 + HOUR), &ProxyFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the hour rollup still answers");
}
