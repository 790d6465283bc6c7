//! Writing minutes and reading them back: restarts, live minutes beside files, the
//! server side over the client side, and writes cut short.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use meshscope_storage::{KeyFilter, MINUTE_MS, MetricRow, Side, SqlLimits, Store, Table};

use crate::support::*;

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
async fn repeated_reads_see_new_files_and_live_minutes() {
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

impl meshscope_storage::LiveMinuteSource for HeldMinutes {
    fn live_batches(
        &self,
        tables: &[Table],
        from: i64,
    ) -> meshscope_storage::Result<Vec<Vec<meshscope_storage::RecordBatch>>> {
        let rows = self.0.lock();
        tables
            .iter()
            .map(|table| {
                let open = rows.iter().filter(|r| r.minute >= from);
                Ok(vec![meshscope_storage::to_batch(*table, open)?])
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

    // New rows in the live minute show at the next read once the kept read is refreshed.
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
