//! Several writers and a reader on one object store: each writer's files carry its id and
//! never overwrite another's, a reader adds the partial rows of one minute and key from
//! every writer (counters add, latency sketches merge), lists the store again to see what
//! the writers add later, and upkeep run by one writer compacts and rolls up every
//! writer's minutes.

use std::sync::Arc;

use futures::TryStreamExt;
use meshscope_storage::{
    KeyFilter, LatencySketch, MetricRow, Side, Store, StoreConfig, Table, TimeRange,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;

use crate::support::{HOUR, T0, edge, row};

fn config_on(store: &Arc<dyn ObjectStore>, dir: &std::path::Path, writer: &str) -> StoreConfig {
    StoreConfig {
        maintenance_interval_secs: 0,
        writer_id: writer.to_owned(),
        object_store: Some(store.clone()),
        ..StoreConfig::in_dir(dir)
    }
}

async fn names(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut names: Vec<String> = listed
        .into_iter()
        .map(|object| object.location.to_string())
        .filter(|name| name.ends_with(".parquet"))
        .collect();
    names.sort();
    names
}

/// The one edge's calls, errors and median latency over `range`.
async fn edge_figures(store: &Store, range: TimeRange) -> (u64, u64, Option<f64>) {
    let read = store
        .aggregate(Table::EdgeMinute, range, &KeyFilter::default())
        .await
        .unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    let metrics = &read[0].metrics;
    assert_eq!(read[0].detected_by, Side::Server);
    (metrics.calls, metrics.errors, metrics.latency.quantile(0.5))
}

#[tokio::test]
async fn writers_share_a_store_and_readers_add_their_rows() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Store::open(config_on(&shared, dirs[0].path(), "collector-a"))
        .await
        .unwrap();
    let b = Store::open(config_on(&shared, dirs[1].path(), "collector-b"))
        .await
        .unwrap();
    let minute = T0 + 5 * 60_000;
    // The same minute and edge, seen in part by each writer: 30 calls at 10 ms by one,
    // 70 at 200 ms by the other, written at the same moment.
    let from_a: MetricRow = row(minute, edge("cart", "db"), Side::Server, 30, 10.0);
    let from_b: MetricRow = row(minute, edge("cart", "db"), Side::Server, 70, 200.0);
    let (written_a, written_b) =
        tokio::join!(a.append_closed(vec![from_a]), b.append_closed(vec![from_b]));
    written_a.unwrap();
    written_b.unwrap();
    let files = names(&shared).await;
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].contains("-collector-a_") != files[1].contains("-collector-a_"));
    assert!(files.iter().any(|name| name.contains("-collector-b_")));

    let reader = Store::open_reader(config_on(&shared, dirs[0].path(), ""))
        .await
        .unwrap();
    let window = TimeRange {
        start: T0,
        end: T0 + HOUR,
    };
    // What one node given all 100 calls would answer: 100 calls, 3 + 7 errors (one in ten
    // of each writer's calls), the median of 30 calls at 10 ms and 70 at 200 ms.
    let mut one_node = LatencySketch::new();
    (0..30).for_each(|_| one_node.add(10.0));
    (0..70).for_each(|_| one_node.add(200.0));
    assert_eq!(
        edge_figures(&reader, window).await,
        (100, 10, one_node.quantile(0.5))
    );

    // A later minute from one writer shows once the reader lists the store again.
    a.append_closed(vec![row(
        minute + 60_000,
        edge("cart", "db"),
        Side::Server,
        20,
        10.0,
    )])
    .await
    .unwrap();
    assert_eq!(edge_figures(&reader, window).await.0, 100);
    assert_eq!(reader.refresh_files().await.unwrap(), 1);
    assert_eq!(edge_figures(&reader, window).await.0, 120);
    assert!(
        matches!(
            reader
                .append_closed(vec![row(minute, edge("x", "y"), Side::Server, 1, 1.0)])
                .await,
            Err(meshscope_storage::Error::ReadOnly)
        ),
        "a reader never writes"
    );

    // Upkeep on one writer takes every writer's minutes of the hour into its compaction
    // and rollup; the reader, listing again, reads the same figures from the rollup.
    let report = a.maintain(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(report.files_compacted, 3);
    assert_eq!(report.hours_rolled_up, 1);
    reader.refresh_files().await.unwrap();
    let files = names(&shared).await;
    assert!(
        files.iter().all(|name| name.contains("-collector-a")),
        "the minute files were replaced by the upkeep writer's: {files:?}"
    );
    let mut all_calls = one_node.clone();
    (0..20).for_each(|_| all_calls.add(10.0));
    let (calls, errors, median) = edge_figures(&reader, window).await;
    assert_eq!((calls, errors), (120, 12));
    assert_eq!(median, all_calls.quantile(0.5));
    drop(b);
}

#[tokio::test]
async fn a_writer_cleans_up_only_its_own_unfinished_files() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().unwrap();
    let others = object_store::path::Path::from(
        "service_minute/date=2025-11-23/hour=00/.1-000000-collector-b.parquet.tmp",
    );
    let mine = object_store::path::Path::from(
        "service_minute/date=2025-11-23/hour=00/.1-000001-collector-a.parquet.tmp",
    );
    for path in [&others, &mine] {
        object_store::ObjectStoreExt::put(shared.as_ref(), path, vec![1u8].into())
            .await
            .unwrap();
    }
    let _a = Store::open(config_on(&shared, dir.path(), "collector-a"))
        .await
        .unwrap();
    let left: Vec<String> = shared
        .list(None)
        .map_ok(|object| object.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(left, vec![others.to_string()]);
}

#[tokio::test]
async fn a_reader_shows_each_writers_open_minutes_once() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Store::open(config_on(&shared, dirs[0].path(), "collector-a"))
        .await
        .unwrap();
    let b = Store::open(config_on(&shared, dirs[1].path(), "collector-b"))
        .await
        .unwrap();
    let minute = T0 + 7 * 60_000;
    let window = TimeRange {
        start: T0,
        end: T0 + HOUR,
    };
    // Each writer holds part of the same minute open and publishes it.
    a.publish_live_minutes(vec![row(minute, edge("cart", "db"), Side::Server, 4, 10.0)]);
    b.publish_live_minutes(vec![row(minute, edge("cart", "db"), Side::Server, 6, 10.0)]);
    a.publish_open_minutes().await.unwrap();
    b.publish_open_minutes().await.unwrap();
    let reader = Store::open_reader(config_on(&shared, dirs[0].path(), ""))
        .await
        .unwrap();
    reader.refresh_files().await.unwrap();
    assert_eq!(edge_figures(&reader, window).await.0, 10);

    // One writer closes the minute and writes it before publishing again: its file holds
    // the minute, so its stale open rows are left out, and the minute counts once.
    a.append_closed_before(
        &[row(minute, edge("cart", "db"), Side::Server, 4, 10.0)],
        Some(minute + 60_000),
    )
    .await
    .unwrap();
    reader.refresh_files().await.unwrap();
    assert_eq!(edge_figures(&reader, window).await.0, 10);

    // Published again, with nothing open: the file alone holds its rows.
    a.publish_live_minutes(Vec::new());
    a.publish_open_minutes().await.unwrap();
    reader.refresh_files().await.unwrap();
    assert_eq!(edge_figures(&reader, window).await.0, 10);
    let open: Vec<String> = shared
        .list(Some(&object_store::path::Path::from(
            meshscope_storage::OPEN_MINUTES_DIR,
        )))
        .map_ok(|object| object.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        open,
        vec!["open-minutes/collector-b/edge_minute.parquet".to_owned()]
    );
}

#[tokio::test]
async fn a_reader_whose_listing_lags_upkeep_lists_again_and_answers() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let writer = Store::open(config_on(&shared, dirs[0].path(), "collector-a"))
        .await
        .unwrap();
    // Three minutes of an hour, each its own file: 10, 20 and 30 calls.
    for (m, calls) in [(1, 10), (2, 20), (3, 30)] {
        writer
            .append_closed(vec![row(
                T0 + m * 60_000,
                edge("cart", "db"),
                Side::Server,
                calls,
                10.0,
            )])
            .await
            .unwrap();
    }
    let reader = Store::open_reader(config_on(&shared, dirs[1].path(), ""))
        .await
        .unwrap();
    // Upkeep replaces the minute files with one compacted file and a rollup after the
    // reader listed the store: the files the reader knows are gone when it reads, as
    // they are for a query node between two of its listings.
    let report = writer.maintain(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(report.files_compacted, 3);
    let window = TimeRange {
        start: T0,
        end: T0 + HOUR,
    };
    assert_eq!(edge_figures(&reader, window).await.0, 60);
    let minutes = TimeRange {
        start: T0,
        end: T0 + 10 * 60_000,
    };
    assert_eq!(edge_figures(&reader, minutes).await.0, 60);

    // A late minute's file is compacted with the rest after the reader listed it: SQL
    // finds the files it was listed with gone too.
    writer
        .append_closed(vec![row(
            T0 + 4 * 60_000,
            edge("cart", "db"),
            Side::Server,
            40,
            10.0,
        )])
        .await
        .unwrap();
    reader.refresh_files().await.unwrap();
    let report = writer.maintain(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(report.files_compacted, 2, "{report:?}");
    let answer = reader
        .sql(
            "SELECT CAST(sum(calls) AS BIGINT) AS calls FROM edge_minute",
            &meshscope_storage::SqlLimits::default(),
        )
        .await
        .unwrap();
    let calls = answer[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(calls, 100);
}
