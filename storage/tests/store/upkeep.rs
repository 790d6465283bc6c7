//! Upkeep: rollups, compaction of large hours, retention, and the memory hints it gives.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use meshscope_storage::{
    KeyFilter, MINUTE_MS, MetricRow, Side, SqlLimits, Store, StoreConfig, Table,
};

use crate::support::*;

/// Two days of minutes for two edges, with minutes where only the client reported.
fn two_days() -> Vec<MetricRow> {
    let mut rows = Vec::new();
    for minute in (0..2 * 24 * 60).step_by(7) {
        let at = T0 + minute * MINUTE_MS;
        let calls = 1 + (minute as u64 % 13);
        rows.push(row(at, edge("web", "cart"), Side::Client, calls + 1, 20.0));
        if minute % 3 != 0 {
            rows.push(row(
                at,
                edge("web", "cart"),
                Side::Server,
                calls,
                5.0 + calls as f64,
            ));
        }
        rows.push(row(at, edge("cart", "db"), Side::Server, calls * 2, 1.0));
    }
    rows
}

#[tokio::test]
async fn rollups_answer_like_the_minutes_they_replace() {
    let minutes_dir = tempfile::tempdir().unwrap();
    let rolled_dir = tempfile::tempdir().unwrap();
    let minutes = Store::open(config(minutes_dir.path())).await.unwrap();
    let mut rolled_config = config(rolled_dir.path());
    // Minutes expire at once, so the rolled store can only answer from hours and days.
    rolled_config.retention.minute_secs = 1;
    let rolled = Store::open(rolled_config).await.unwrap();
    // Small appends, like minutes closing a few at a time, leave every hour with several
    // files: any 9 consecutive rows span two chunks, and each hour holds at least 16 rows.
    for chunk in two_days().chunks(8) {
        minutes.append_closed(chunk.to_vec()).await.unwrap();
        rolled.append_closed(chunk.to_vec()).await.unwrap();
    }
    let minute_files = files_under(rolled_dir.path())
        .iter()
        .filter(|f| f.starts_with("edge_minute/"))
        .count();
    let report = rolled.maintain(T0 + 3 * DAY).await.unwrap();
    assert_eq!(report.hours_rolled_up, 48);
    assert_eq!(report.days_rolled_up, 2);
    assert_eq!(report.files_compacted, minute_files, "{report:?}");
    let on_disk = files_under(rolled_dir.path());
    assert!(
        on_disk.iter().all(|f| !f.starts_with("edge_minute/")),
        "{on_disk:?}"
    );

    for range in [
        all(T0, T0 + 2 * DAY),
        all(T0 + 90 * MINUTE_MS, T0 + 2 * DAY - HOUR),
    ] {
        let hours_aligned = range.start % HOUR == 0;
        let want = minutes
            .aggregate(Table::EdgeMinute, range, &KeyFilter::default())
            .await
            .unwrap();
        let got = rolled
            .aggregate(Table::EdgeMinute, range, &KeyFilter::default())
            .await
            .unwrap();
        if !hours_aligned {
            // The partial first hour had only minutes, which have expired.
            assert!(got[0].metrics.calls < want[0].metrics.calls);
            continue;
        }
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(got.key, want.key);
            assert_eq!(got.detected_by, want.detected_by);
            assert_eq!(got.metrics.calls, want.metrics.calls);
            assert_eq!(got.metrics.errors, want.metrics.errors);
            assert_eq!(got.metrics.latency.count(), want.metrics.latency.count());
            for q in [0.5, 0.99] {
                let (g, w) = (
                    got.metrics.latency.quantile(q).unwrap(),
                    want.metrics.latency.quantile(q).unwrap(),
                );
                assert!((g - w).abs() <= 0.01 * w, "q={q} rollup={g} minutes={w}");
            }
        }
    }
    // The server side alone: its rollup rows hold every server minute, so the rolled store
    // answers it from hours and days, exactly as the input gives it.
    let server_only = KeyFilter {
        side: Some(Side::Server),
        ..KeyFilter::default()
    };
    let got = rolled
        .aggregate(Table::EdgeMinute, all(T0, T0 + 2 * DAY), &server_only)
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    for total in &got {
        let want: u64 = two_days()
            .iter()
            .filter(|r| r.side == Side::Server && r.key == total.key)
            .map(|r| r.metrics.calls)
            .sum();
        assert_eq!(total.detected_by, Side::Server);
        assert_eq!(total.metrics.calls, want, "{:?}", total.key);
    }

    // A second pass finds nothing left to do.
    let again = rolled.maintain(T0 + 3 * DAY).await.unwrap();
    assert_eq!(again, Default::default());
}

/// An hour larger than a Parquet row group, with a minute whose late rows came in a file
/// of their own, is compacted into one file and rolled up without losing a row.
#[tokio::test]
async fn a_large_hour_is_compacted_and_rolled_up_group_by_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let callers = 50_000;
    let minute_rows = |minute: i64, calls: u64| -> Vec<MetricRow> {
        (0..callers)
            .map(|i| {
                let key = edge(&format!("caller-{i}"), "cart");
                row(T0 + minute * MINUTE_MS, key, Side::Server, calls, 3.0)
            })
            .collect()
    };
    for minute in 0..3 {
        store.append_closed(minute_rows(minute, 2)).await.unwrap();
    }
    // Late rows of the second minute: one caller's server side again, and a client side
    // the server side already covers, which the rollup must not count.
    store
        .append_closed(vec![
            row(
                T0 + MINUTE_MS,
                edge("caller-7", "cart"),
                Side::Server,
                5,
                3.0,
            ),
            row(
                T0 + MINUTE_MS,
                edge("caller-8", "cart"),
                Side::Client,
                9,
                3.0,
            ),
        ])
        .await
        .unwrap();
    let report = store.maintain(T0 + 2 * HOUR).await.unwrap();
    assert_eq!((report.files_compacted, report.hours_rolled_up), (4, 1));
    let minute_files: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("edge_minute/"))
        .collect();
    assert_eq!(minute_files.len(), 1, "{minute_files:?}");

    // Rows and calls of one side of a table.
    let count = |table: &str, side: &str| {
        let query = format!(
            "SELECT count(*), CAST(coalesce(sum(calls), 0) AS BIGINT) FROM {table} \
             WHERE side = '{side}'"
        );
        let store = &store;
        async move {
            let batches = store.sql(&query, &SqlLimits::default()).await.unwrap();
            let value = |c: usize| batches[0].column(c).as_primitive::<Int64Type>().value(0);
            (value(0), value(1))
        }
    };
    assert_eq!(count("edge_minute", "server").await, (150_001, 300_005));
    assert_eq!(count("edge_hour", "server").await, (50_000, 300_005));
    assert_eq!(count("edge_hour", "client").await, (0, 0));
}

#[tokio::test]
async fn retention_deletes_what_is_due_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.retention.minute_secs = 2 * 24 * 3600;
    let store = Store::open(config).await.unwrap();
    store
        .append_closed(vec![
            row(T0, service("cart"), Side::Server, 10, 5.0),
            row(
                T0 + HOUR + MINUTE_MS,
                service("cart"),
                Side::Server,
                20,
                5.0,
            ),
        ])
        .await
        .unwrap();
    // The first hour ends at T0 + 1h: due at exactly T0 + 1h + 2 days, the second not yet.
    let now = T0 + HOUR + 2 * DAY;
    let report = store.maintain(now).await.unwrap();
    assert_eq!(report.files_expired, 1);
    let minute_files: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("service_minute/"))
        .collect();
    assert_eq!(minute_files.len(), 1, "{minute_files:?}");
    assert!(minute_files[0].starts_with("service_minute/date=2025-11-23/hour=01/"));
    // Hours and days of both are still there (14 and 90 days).
    assert!(
        files_under(dir.path())
            .iter()
            .any(|f| f.starts_with("service_hour/date=2025-11-23/hour=00/"))
    );
    assert!(
        files_under(dir.path())
            .iter()
            .any(|f| f.starts_with("service_day/date=2025-11-23/"))
    );
    assert_eq!(
        totals(&store, Table::ServiceMinute, all(T0, T0 + 2 * HOUR)).await,
        vec![(service("cart"), Side::Server, 30, 3)]
    );
}

/// What the upkeep hint was told, in order.
static HINTS: std::sync::Mutex<Vec<bool>> = std::sync::Mutex::new(Vec::new());

fn record_hint(running: bool) {
    HINTS.lock().unwrap().push(running);
}

#[tokio::test]
async fn memory_peak_permits_and_upkeep_passes_are_announced_and_their_ends_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        memory_hint: Some(record_hint),
        ..config(dir.path())
    })
    .await
    .unwrap();
    for minute in 0..2 {
        store
            .append_closed(vec![row(
                T0 + minute * MINUTE_MS,
                service("cart"),
                Side::Server,
                1,
                2.0,
            )])
            .await
            .unwrap();
    }
    assert!(HINTS.lock().unwrap().is_empty(), "no upkeep yet");
    let report = store.maintain(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(report.hours_rolled_up, 1);
    assert_eq!(*HINTS.lock().unwrap(), vec![true, false]);
    // A closing minute's permit, as the collector takes it.
    let permit = store.memory_peak_permit().await;
    assert_eq!(*HINTS.lock().unwrap(), vec![true, false, true]);
    drop(permit);
    assert_eq!(*HINTS.lock().unwrap(), vec![true, false, true, false]);
}
