//! The store against a real data directory: durability, server-over-client reads, rollups,
//! retention and read-only SQL.

use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use meshscope_storage::{
    AccessLogRow, Aggregate, Error, KeyFilter, LatencySketch, MINUTE_MS, MetricRow, Metrics,
    Protocol, RowKey, ServiceRef, Side, SqlLimits, Store, StoreConfig, Table, TimeRange,
};

const HOUR: i64 = 60 * MINUTE_MS;
const DAY: i64 = 24 * HOUR;
/// 2025-11-23T00:00:00Z, a day boundary.
const T0: i64 = 1_763_856_000_000;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(dir)
    }
}

fn edge(source: &str, target: &str) -> RowKey {
    RowKey::Edge {
        source: ServiceRef::service("shop", source),
        target: ServiceRef::service("shop", target),
        protocol: Protocol::Http,
    }
}

fn service(name: &str) -> RowKey {
    RowKey::Service {
        service: ServiceRef::service("shop", name),
    }
}

fn row(minute: i64, key: RowKey, side: Side, calls: u64, latency_ms: f64) -> MetricRow {
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

fn all(start: i64, end: i64) -> TimeRange {
    TimeRange { start, end }
}

async fn totals(store: &Store, table: Table, range: TimeRange) -> Vec<(RowKey, Side, u64, u64)> {
    store
        .aggregate(table, range, &KeyFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|a: Aggregate| (a.key, a.detected_by, a.metrics.calls, a.metrics.errors))
        .collect()
}

fn files_under(dir: &Path) -> Vec<String> {
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

#[tokio::test]
async fn restart_keeps_closed_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        row(T0, edge("web", "cart"), Side::Server, 30, 12.0),
        row(T0 + MINUTE_MS, edge("web", "cart"), Side::Server, 20, 12.0),
    ];
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store.append_closed(rows).await.unwrap();
    }
    let files = files_under(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("edge_minute/date=2025-11-23/hour=00/")
            && files[0].ends_with(".parquet"),
        "{files:?}"
    );
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(
        totals(&store, Table::EdgeMinute, all(T0, T0 + HOUR)).await,
        vec![(edge("web", "cart"), Side::Server, 50, 5)]
    );
}

/// Reads reuse the totals of closed spans; a file written into a span since, or rows of
/// the open snapshot, must still show in the next read.
#[tokio::test]
async fn repeated_reads_see_new_files_and_open_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let range = all(T0, T0 + 2 * HOUR);
    store
        .append_closed(vec![row(T0, edge("web", "cart"), Side::Server, 30, 12.0)])
        .await
        .unwrap();
    let first = totals(&store, Table::EdgeMinute, range).await;
    assert_eq!(first, vec![(edge("web", "cart"), Side::Server, 30, 3)]);
    assert_eq!(totals(&store, Table::EdgeMinute, range).await, first);

    // A late closed minute in the same hour, and one of another edge in the next.
    store
        .append_closed(vec![
            row(T0 + MINUTE_MS, edge("web", "cart"), Side::Server, 20, 12.0),
            row(T0 + HOUR, edge("cart", "db"), Side::Client, 10, 2.0),
        ])
        .await
        .unwrap();
    assert_eq!(
        totals(&store, Table::EdgeMinute, range).await,
        vec![
            (edge("cart", "db"), Side::Client, 10, 1),
            (edge("web", "cart"), Side::Server, 50, 5),
        ]
    );

    // Files are skipped by the times they hold: a window of one minute, or of its first
    // millisecond, still reads that minute's file and no other.
    for end in [T0 + 2 * MINUTE_MS, T0 + MINUTE_MS + 1] {
        assert_eq!(
            totals(&store, Table::EdgeMinute, all(T0 + MINUTE_MS, end)).await,
            vec![(edge("web", "cart"), Side::Server, 20, 2)]
        );
    }

    store.publish_live_minutes(vec![row(
        T0 + HOUR + MINUTE_MS,
        edge("cart", "db"),
        Side::Client,
        5,
        2.0,
    )]);
    assert_eq!(
        totals(&store, Table::EdgeMinute, range).await,
        vec![
            (edge("cart", "db"), Side::Client, 15, 1),
            (edge("web", "cart"), Side::Server, 50, 5),
        ]
    );
    store.publish_live_minutes(Vec::new());
    assert_eq!(
        totals(&store, Table::EdgeMinute, range).await,
        vec![
            (edge("cart", "db"), Side::Client, 10, 1),
            (edge("web", "cart"), Side::Server, 50, 5),
        ]
    );
}

/// Holds minutes the way the collector does: rows kept until handed to the store.
struct HeldMinutes(parking_lot::Mutex<Vec<MetricRow>>);

impl meshscope_storage::OpenMinutes for HeldMinutes {
    fn open_batches(
        &self,
        tables: &[Table],
        from: i64,
    ) -> meshscope_storage::Result<Vec<Vec<meshscope_storage::RecordBatch>>> {
        let rows = self.0.lock();
        tables
            .iter()
            .map(|table| {
                let open = rows.iter().filter(|r| r.minute >= from);
                Ok(vec![meshscope_storage::batch::to_batch(*table, open)?])
            })
            .collect()
    }
}

/// A live source's minutes are read until the store marks them as its own, in the same
/// step that shows their file: never both, never neither.
#[tokio::test]
async fn live_minutes_count_once_across_their_closing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let held = std::sync::Arc::new(HeldMinutes(parking_lot::Mutex::new(vec![
        row(T0, edge("web", "cart"), Side::Server, 30, 12.0),
        row(T0 + MINUTE_MS, edge("web", "cart"), Side::Server, 5, 12.0),
    ])));
    store.attach_live_minute_source(held.clone());
    let range = all(T0, T0 + HOUR);
    let expected = vec![(edge("web", "cart"), Side::Server, 35, 3)];
    assert_eq!(totals(&store, Table::EdgeMinute, range).await, expected);

    // The first minute closes: written with the mark, while the source still holds it.
    let closing = vec![row(T0, edge("web", "cart"), Side::Server, 30, 12.0)];
    store
        .append_closed_before(&closing, Some(T0 + MINUTE_MS))
        .await
        .unwrap();
    store.refresh_live_minutes();
    assert_eq!(totals(&store, Table::EdgeMinute, range).await, expected);
    held.0.lock().remove(0);
    store.refresh_live_minutes();
    assert_eq!(totals(&store, Table::EdgeMinute, range).await, expected);

    // New rows in the open minute show at the next read once the kept read is refreshed.
    held.0
        .lock()
        .push(row(T0 + MINUTE_MS, edge("web", "db"), Side::Client, 4, 2.0));
    store.refresh_live_minutes();
    assert_eq!(
        totals(&store, Table::EdgeMinute, range).await,
        vec![
            (edge("web", "cart"), Side::Server, 35, 3),
            (edge("web", "db"), Side::Client, 4, 0),
        ]
    );
}

#[tokio::test]
async fn server_side_wins_per_minute_and_client_fills_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    store
        .append_closed(vec![
            row(T0, edge("web", "cart"), Side::Server, 30, 10.0),
            row(T0, edge("web", "cart"), Side::Client, 31, 11.0),
            row(T0 + MINUTE_MS, edge("web", "cart"), Side::Client, 7, 11.0),
            row(T0, edge("web", "db"), Side::Client, 5, 2.0),
        ])
        .await
        .unwrap();
    assert_eq!(
        totals(&store, Table::EdgeMinute, all(T0, T0 + HOUR)).await,
        vec![
            (edge("web", "cart"), Side::Server, 37, 3),
            (edge("web", "db"), Side::Client, 5, 0),
        ]
    );
    // The window is half-open and filters by minute.
    assert_eq!(
        totals(
            &store,
            Table::EdgeMinute,
            all(T0 + MINUTE_MS, T0 + 2 * MINUTE_MS)
        )
        .await,
        vec![(edge("web", "cart"), Side::Client, 7, 0)]
    );
    let series = store
        .series(Table::EdgeMinute, all(T0, T0 + HOUR), &KeyFilter::default())
        .await
        .unwrap();
    let cart: Vec<(i64, Side, u64)> = series[0]
        .1
        .iter()
        .map(|p| (p.minute, p.detected_by, p.metrics.calls))
        .collect();
    assert_eq!(
        cart,
        vec![(T0, Side::Server, 30), (T0 + MINUTE_MS, Side::Client, 7)]
    );
}

#[tokio::test]
async fn open_snapshot_is_read_with_closed_minutes_then_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    store
        .append_closed(vec![row(T0, service("cart"), Side::Server, 10, 5.0)])
        .await
        .unwrap();
    store.publish_live_minutes(vec![row(
        T0 + MINUTE_MS,
        service("cart"),
        Side::Server,
        3,
        5.0,
    )]);
    let range = all(T0, T0 + HOUR);
    assert_eq!(
        totals(&store, Table::ServiceMinute, range).await,
        vec![(service("cart"), Side::Server, 13, 1)]
    );
    store.publish_live_minutes(vec![row(
        T0 + MINUTE_MS,
        service("cart"),
        Side::Server,
        4,
        5.0,
    )]);
    assert_eq!(
        totals(&store, Table::ServiceMinute, range).await,
        vec![(service("cart"), Side::Server, 14, 1)]
    );
    store.publish_live_minutes(Vec::new());
    assert_eq!(
        totals(&store, Table::ServiceMinute, range).await,
        vec![(service("cart"), Side::Server, 10, 1)]
    );
}

#[tokio::test]
async fn a_write_cut_before_its_rename_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store
            .append_closed(vec![row(T0, service("cart"), Side::Server, 10, 5.0)])
            .await
            .unwrap();
    }
    // What a crash between writing and renaming leaves: a partly written temporary file.
    let partition = dir.path().join("service_minute/date=2025-11-23/hour=00");
    let half = partition.join(".1763856000000-000009.parquet.tmp");
    std::fs::write(&half, b"PAR1 half a file").unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(
        totals(&store, Table::ServiceMinute, all(T0, T0 + HOUR)).await,
        vec![(service("cart"), Side::Server, 10, 1)]
    );
    let count = store
        .sql("SELECT count(*) FROM service_minute", &SqlLimits::default())
        .await
        .unwrap();
    assert_eq!(count[0].column(0).as_primitive::<Int64Type>().value(0), 1);
    assert!(
        !half.exists(),
        "the leftover temporary file is cleaned up on open"
    );
}

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

#[tokio::test]
async fn sql_reads_tables_and_merges_sketches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let mut rows = Vec::new();
    for minute in 0..10 {
        rows.push(row(
            T0 + minute * MINUTE_MS,
            service("cart"),
            Side::Server,
            10,
            100.0 * (minute + 1) as f64,
        ));
    }
    store.append_closed(rows).await.unwrap();
    let batches = store
        .sql(
            "SELECT service_name, sum(calls) AS calls, quantile(merge_sketch(latency), 0.99) AS p99 \
             FROM service_minute GROUP BY service_name",
            &SqlLimits::default(),
        )
        .await
        .unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    assert_eq!(
        batches[0]
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
            .value(0),
        100
    );
    let p99 = batches[0].column(2).as_primitive::<Float64Type>().value(0);
    assert!((p99 - 1000.0).abs() <= 10.0, "{p99}");
    let names: Vec<String> = store.tables().into_iter().map(|t| t.name).collect();
    assert!(
        names.contains(&"edge_day".to_string()) && names.contains(&"access_log".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn sql_refuses_everything_but_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let cases = [
        (
            "INSERT INTO service_minute SELECT * FROM service_minute",
            "INSERT statements are not allowed",
        ),
        (
            "DELETE FROM service_minute",
            "DELETE statements are not allowed",
        ),
        (
            "CREATE TABLE t AS SELECT 1",
            "CREATE TABLE statements are not allowed",
        ),
        (
            "DROP TABLE service_minute",
            "DROP TABLE statements are not allowed",
        ),
        (
            "COPY service_minute TO '/tmp/x.parquet'",
            "COPY is not allowed",
        ),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE is not allowed",
        ),
        (
            "SET datafusion.execution.batch_size = 1",
            "SET statements are not allowed",
        ),
        ("SELECT 1; SELECT 2", "one statement per request, got 2"),
    ];
    for (sql, message) in cases {
        match store.sql(sql, &SqlLimits::default()).await {
            Err(Error::Refused(reason)) => assert!(reason.starts_with(message), "{sql}: {reason}"),
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    let refused = store
        .sql("DELETE FROM service_minute", &SqlLimits::default())
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "query refused: only one read-only SELECT query is allowed: DELETE statements are not allowed"
    );
    // Reading files by path is not a table meshscope knows.
    assert!(
        store
            .sql("SELECT * FROM '/etc/passwd'", &SqlLimits::default())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sql_stops_queries_beyond_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let rows = SqlLimits {
        max_rows: 1_000,
        ..SqlLimits::default()
    };
    match store
        .sql("SELECT * FROM generate_series(1, 5000)", &rows)
        .await
    {
        Err(Error::LimitExceeded(reason)) => {
            assert!(reason.contains("more than 1000 rows"), "{reason}")
        }
        other => panic!("expected the row limit, got {other:?}"),
    }
    let time = SqlLimits {
        timeout_ms: 200,
        ..SqlLimits::default()
    };
    // Many small batches, so the query yields often and the limit is what stops it: a
    // billion rows take minutes here.
    let slow = "SELECT sum(value % 7) FROM generate_series(1, 1000000000)";
    match store.sql(slow, &time).await {
        Err(Error::LimitExceeded(reason)) => assert!(reason.contains("200 ms"), "{reason}"),
        other => panic!("expected the time limit, got {other:?}"),
    }
    let memory = SqlLimits {
        memory_bytes: 1024 * 1024,
        ..SqlLimits::default()
    };
    // 300,000 distinct keys need several MB of hash table.
    let big = "SELECT value AS k, count(*) FROM generate_series(1, 300000) GROUP BY k";
    match store.sql(big, &memory).await {
        Err(Error::LimitExceeded(reason)) => assert!(reason.contains("memory"), "{reason}"),
        other => panic!(
            "expected the memory limit, got {:?}",
            other.map(|b| b.len())
        ),
    }
}

/// A cross join's operators keep producing without ever yielding to the runtime; the
/// caller must still get its answer at the deadline, on a single-threaded runtime too.
#[tokio::test]
async fn a_query_that_never_yields_is_stopped_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let limits = SqlLimits {
        timeout_ms: 300,
        ..SqlLimits::default()
    };
    // Ten billion rows: hours of work here.
    let heavy =
        "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b";
    let started = std::time::Instant::now();
    let result = store.sql(heavy, &limits).await;
    let elapsed = started.elapsed();
    match result {
        Err(error @ Error::LimitExceeded(_)) => {
            assert_eq!(error.to_string(), "query stopped: took longer than 300 ms")
        }
        other => panic!("expected the time limit, got {other:?}"),
    }
    assert!(
        elapsed >= std::time::Duration::from_millis(300)
            && elapsed < std::time::Duration::from_millis(1_000),
        "stopped after {elapsed:?}"
    );
}

#[tokio::test]
async fn a_read_only_store_reads_files_and_never_writes_or_deletes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store
            .append_closed(vec![row(T0, service("cart"), Side::Server, 10, 5.0)])
            .await
            .unwrap();
    }
    // A write in progress beside the reader: the reader must leave it to its writer.
    let partition = dir.path().join("service_minute/date=2025-11-23/hour=00");
    let in_progress = partition.join(".1-000001.parquet.tmp");
    std::fs::write(&in_progress, b"half a file").unwrap();
    let before = files_under(dir.path());

    let reader = Store::open_read_only(dir.path()).await.unwrap();
    assert_eq!(
        totals(&reader, Table::ServiceMinute, all(T0, T0 + HOUR)).await,
        vec![(service("cart"), Side::Server, 10, 1)]
    );
    assert!(matches!(
        reader
            .append_closed(vec![row(T0, service("web"), Side::Server, 1, 1.0)])
            .await,
        Err(Error::ReadOnly)
    ));
    let report = reader.maintain(T0 + 30 * DAY).await;
    assert!(matches!(report, Err(Error::ReadOnly)), "{report:?}");
    assert_eq!(files_under(dir.path()), before);

    let missing = dir.path().join("nowhere");
    match Store::open_read_only(&missing).await {
        Err(error @ Error::NoDataDir(_)) => assert_eq!(
            error.to_string(),
            format!("no data directory at {}", missing.display())
        ),
        other => panic!("expected a missing directory, got {:?}", other.err()),
    }
    assert!(!missing.exists());
}

#[tokio::test]
async fn access_log_rows_are_queryable_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.access_log = true;
    let store = Store::open(config).await.unwrap();
    let entry = |status: u32, duration_ms: f64| AccessLogRow {
        time: T0 + 1_234,
        source_namespace: "shop".into(),
        source_name: "web".into(),
        target_namespace: "shop".into(),
        target_name: "cart".into(),
        side: Side::Server,
        protocol: Protocol::Http,
        method: "GET".into(),
        path: "/cart/{id}".into(),
        status,
        response_flags: "-".into(),
        duration_ms,
        bytes_sent: 10,
        bytes_received: 20,
        mtls: true,
        request_id: "r".into(),
        node: "cart-1".into(),
    };
    store
        .append_access_log(vec![entry(200, 3.0), entry(503, 900.0)])
        .await
        .unwrap();
    let slow = store
        .sql(
            "SELECT status FROM access_log WHERE target_name = 'cart' AND duration_ms > 500",
            &SqlLimits::default(),
        )
        .await
        .unwrap();
    let status = slow[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
    assert_eq!((slow[0].num_rows(), status.value(0)), (1, 503));
}

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
                    .entry(meshscope_storage::files::hour_of(row.minute))
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

impl meshscope_storage::OpenProxyMinutes for HeldProxyRows {
    fn open_proxy_rows(&self) -> Vec<meshscope_storage::ProxyMetricRow> {
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
        "four rows in the file and the open minute's two read from memory"
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

/// A key's figures over a window: detected by, calls, errors, and the minimum, median and
/// maximum latency.
type Figures = (
    RowKey,
    Side,
    u64,
    u64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

async fn read(store: &Store, table: Table, range: TimeRange) -> Vec<Figures> {
    store
        .aggregate(table, range, &KeyFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|a: Aggregate| {
            let q = |q| a.metrics.latency.quantile(q);
            (
                a.key,
                a.detected_by,
                a.metrics.calls,
                a.metrics.errors,
                q(0.0),
                q(0.5),
                q(1.0),
            )
        })
        .collect()
}

/// What a window's totals must be, worked out from the rows themselves: per key and
/// minute the server's rows when it sent any, else the client's.
fn expected(rows: &[MetricRow], table: Table, range: TimeRange) -> Vec<Figures> {
    use std::collections::BTreeMap;
    let mut per_minute: BTreeMap<(RowKey, i64), (Side, Metrics)> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| Table::of(&r.key) == table && r.minute >= range.start && r.minute < range.end)
    {
        let slot = per_minute
            .entry((row.key.clone(), row.minute))
            .or_insert((row.side, Metrics::default()));
        if row.side == Side::Server && slot.0 == Side::Client {
            *slot = (Side::Server, Metrics::default());
        }
        if row.side == slot.0 {
            slot.1.merge(&row.metrics);
        }
    }
    let mut per_key: BTreeMap<RowKey, (Side, Metrics)> = BTreeMap::new();
    for ((key, _), (side, metrics)) in per_minute {
        let total = per_key
            .entry(key)
            .or_insert((Side::Client, Metrics::default()));
        if side == Side::Server {
            total.0 = Side::Server;
        }
        total.1.merge(&metrics);
    }
    per_key
        .into_iter()
        .map(|(key, (side, m))| {
            let q = |q| m.latency.quantile(q);
            (key, side, m.calls, m.errors, q(0.0), q(0.5), q(1.0))
        })
        .collect()
}

#[tokio::test]
async fn a_window_that_moves_on_reads_like_the_rows_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    // Keys that come and go, both sides and one, with each minute's fastest and slowest
    // calls elsewhere, so that the minimum and maximum move as minutes leave the window.
    let minute_rows = |m: i64| {
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
        if m < 4 {
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
        if m >= 25 {
            rows.push(row(at, edge("web", "db"), Side::Server, 2, 0.5));
        }
        rows
    };
    let mut written = Vec::new();
    for m in 0..40 {
        let rows = minute_rows(m);
        written.extend(rows.clone());
        store.append_closed(rows).await.unwrap();
        if m < 15 {
            continue;
        }
        // A 15-minute window ending with the minute just written, as a dashboard reads it.
        let range = all(T0 + (m - 14) * MINUTE_MS, T0 + (m + 1) * MINUTE_MS);
        for table in [Table::EdgeMinute, Table::ServiceMinute] {
            assert_eq!(
                read(&store, table, range).await,
                expected(&written, table, range),
                "{table:?} window ending at minute {m}"
            );
        }
        if m == 30 {
            // A late file inside the window: the server's view of a minute the client
            // alone had reported.
            let late = vec![row(
                T0 + 27 * MINUTE_MS,
                edge("web", "db"),
                Side::Server,
                9,
                1.5,
            )];
            written.extend(late.clone());
            store.append_closed(late).await.unwrap();
            assert_eq!(
                read(&store, Table::EdgeMinute, range).await,
                expected(&written, Table::EdgeMinute, range)
            );
        }
    }
    // Reopened, the store reads the same without any kept totals.
    drop(store);
    let reopened = Store::open(config(dir.path())).await.unwrap();
    let range = all(T0 + 25 * MINUTE_MS, T0 + 40 * MINUTE_MS);
    assert_eq!(
        read(&reopened, Table::EdgeMinute, range).await,
        expected(&written, Table::EdgeMinute, range)
    );
}

#[tokio::test]
async fn reads_of_one_window_at_once_each_get_its_totals() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(config(dir.path())).await.unwrap());
    let mut written = Vec::new();
    for m in 0..30 {
        let at = T0 + m * MINUTE_MS;
        let rows = vec![
            row(
                at,
                edge("web", "cart"),
                Side::Server,
                10 + m as u64,
                5.0 + m as f64,
            ),
            row(at, edge("web", "db"), Side::Client, 3, 40.0 - m as f64),
            row(at, service("cart"), Side::Server, 20, 1.0),
        ];
        written.extend(rows.clone());
        store.append_closed(rows).await.unwrap();
    }
    // Windows read for the first time and then moved on by a minute, by several readers
    // at once: they take turns with the kept span instead of each missing it.
    for end in [T0 + 30 * MINUTE_MS, T0 + 31 * MINUTE_MS] {
        let range = all(end - 15 * MINUTE_MS, end);
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { read(&store, Table::EdgeMinute, range).await })
            })
            .collect();
        for reader in readers {
            assert_eq!(
                reader.await.unwrap(),
                expected(&written, Table::EdgeMinute, range)
            );
        }
        let at = T0 + 30 * MINUTE_MS;
        if end == T0 + 30 * MINUTE_MS {
            let rows = vec![row(at, edge("web", "cart"), Side::Server, 7, 2.0)];
            written.extend(rows.clone());
            store.append_closed(rows).await.unwrap();
        }
    }
    let kept = store.moving_spans();
    assert_eq!(kept.len(), 1, "one span kept for the window: {kept:?}");
    assert_eq!(
        (kept[0].start, kept[0].end, kept[0].keys),
        (T0 + 16 * MINUTE_MS, T0 + 31 * MINUTE_MS, 2)
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
