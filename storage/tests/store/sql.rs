//! Read-only SQL over the tables, its limits, read-only stores, and raw access-log rows.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Float64Type;
use meshscope_storage::{AccessLogRow, Error, MINUTE_MS, Protocol, Side, SqlLimits, Store, Table};

use crate::support::*;

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
