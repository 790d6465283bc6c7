//! Summaries of ten-minute blocks: written by the upkeep, read by a window's first read in
//! place of the blocks' minutes, passed over when the minutes under them changed, and
//! always giving the totals worked out from the rows themselves.

use meshscope_storage::{MINUTE_MS, MetricRow, Side, Store, Table};

use crate::moving_windows::check_window;
use crate::support::*;

/// Minute `m`'s rows: an edge both proxies report, with the server's latency changing
/// minute by minute; an edge the client alone reports in some minutes and both in others,
/// whose slowest call is in its earliest minutes; a key that goes away; a service whose
/// fastest call is in its earliest minutes. So the minimum and maximum move as minutes
/// leave a window, and the client-only minutes decide what the whole table's read shows.
pub(crate) fn minute_rows(m: i64) -> Vec<MetricRow> {
    let at = T0 + m * MINUTE_MS;
    let mut rows = moving_window_rows(m, 29);
    if m % 2 == 0 {
        rows.push(row(at, edge("web", "db"), Side::Server, 2, 0.5 + m as f64));
    }
    rows
}

fn summaries_read(store: &Store) -> u64 {
    store.figures().block_summaries_read
}

pub(crate) async fn check_both_tables(
    store: &Store,
    written: &[MetricRow],
    start: i64,
    end: i64,
    context: &str,
) {
    let range = all(T0 + start * MINUTE_MS, T0 + end * MINUTE_MS);
    for table in [Table::EdgeMinute, Table::ServiceMinute] {
        check_window(store, written, table, range, false, context).await;
    }
}

#[tokio::test]
async fn a_first_read_folds_block_summaries_and_reads_like_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let mut written = Vec::new();
    for m in 0..75 {
        let rows = minute_rows(m);
        written.extend(rows.clone());
        store.append_closed(rows).await.unwrap();
    }
    // At minute 76 the first hour is settled and compacted, and blocks 0 to 60 are
    // closed (70 to 79 is not): seven blocks of each of the two tables with rows.
    let report = store.maintain(T0 + 76 * MINUTE_MS).await.unwrap();
    assert_eq!(report.hours_rolled_up, 2, "the first hour of both tables");
    assert_eq!(report.blocks_summarized, 14);
    let again = store.maintain(T0 + 76 * MINUTE_MS).await.unwrap();
    assert_eq!(again.blocks_summarized, 0, "summaries that match are kept");
    assert!(
        files_under(dir.path())
            .iter()
            .any(|path| path.starts_with("edge_block/")),
        "{:?}",
        files_under(dir.path())
    );

    // A store opened again knows nothing kept: its first read of an hour from minute 13
    // folds blocks 10 to 60 (six per table) less the minutes 10 to 12, and the minutes
    // 70 to 72.
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &written, 13, 73, "first read").await;
    assert_eq!(summaries_read(&store), 12);

    // The window moves on three minutes at a time, taking minutes out of summarized
    // blocks (20 and 21 hold the slowest client call of web -> db and the fastest of
    // cart's): each read gives the rows' totals, the minimum and maximum included.
    let mut next_minute = 75;
    for step in 1..=4 {
        let end = 73 + 3 * step;
        for m in next_minute..end {
            let rows = minute_rows(m);
            written.extend(rows.clone());
            store.append_closed(rows).await.unwrap();
        }
        next_minute = next_minute.max(end);
        let context = format!("moved to end at minute {end}");
        check_both_tables(&store, &written, end - 60, end, &context).await;
    }
    assert_eq!(summaries_read(&store), 12, "moves read no summaries");

    // A late server row in block 40: its summary no longer matches the minute files, so
    // a first read folds its minutes instead, and gives the rows' totals.
    let late = vec![row(
        T0 + 45 * MINUTE_MS,
        edge("web", "db"),
        Side::Server,
        7,
        2.5,
    )];
    written.extend(late.clone());
    store.append_closed(late).await.unwrap();
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &written, 24, 84, "first read after a late row").await;
    // Blocks 20 (less the minutes 20 to 23) to 60 of both tables (70 is not summarized
    // yet) but the edges' block 40.
    assert_eq!(summaries_read(&store), 9);

    // The upkeep compacts the edges' first hour again with the late row, which changes
    // the file under its six blocks, so it summarizes them again; and the block of
    // minutes 70 to 79 of both tables, closed now. A new first read uses six of each.
    let report = store.maintain(T0 + 86 * MINUTE_MS).await.unwrap();
    assert_eq!(report.blocks_summarized, 6 + 2);
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &written, 24, 84, "first read after the upkeep").await;
    assert_eq!(summaries_read(&store), 12);

    // A window starting late in a block reads that block's last minutes (17 to 19)
    // rather than its summary less seven minutes: blocks 20 to 60 of each table.
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &written, 17, 77, "first read from minute 17").await;
    assert_eq!(summaries_read(&store), 10);
}

#[tokio::test]
async fn a_block_is_summarized_once_its_last_minute_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    for m in 0..19 {
        store.append_closed(minute_rows(m)).await.unwrap();
    }
    // Minute 19 is not written yet: only block 0 is closed, of each table.
    let at = T0 + 20 * MINUTE_MS + 5_000;
    assert_eq!(store.maintain(at).await.unwrap().blocks_summarized, 2);
    store.append_closed(minute_rows(19)).await.unwrap();
    assert_eq!(store.maintain(at).await.unwrap().blocks_summarized, 2);
}

#[tokio::test]
async fn block_summaries_expire_with_the_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    for m in 0..25 {
        store.append_closed(minute_rows(m)).await.unwrap();
    }
    let report = store.maintain(T0 + 26 * MINUTE_MS).await.unwrap();
    assert_eq!(
        report.blocks_summarized, 4,
        "blocks 0 and 10 of both tables"
    );
    let minute_retention = store.config().retention.minute_secs as i64 * 1_000;
    store
        .maintain(T0 + 2 * HOUR + minute_retention)
        .await
        .unwrap();
    let left: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|path| path.contains("_block/") || path.contains("_minute/"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

#[tokio::test]
async fn a_reader_of_a_shared_store_folds_the_summaries_of_every_writers_minutes() {
    use std::sync::Arc;

    use object_store::ObjectStore;
    use object_store::memory::InMemory;

    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let on = |dir: &std::path::Path, writer: &str| meshscope_storage::StoreConfig {
        maintenance_interval_secs: 0,
        writer_id: writer.to_owned(),
        object_store: Some(shared.clone()),
        ..meshscope_storage::StoreConfig::in_dir(dir)
    };
    let a = Store::open(on(dirs[0].path(), "collector-a"))
        .await
        .unwrap();
    let b = Store::open(on(dirs[1].path(), "collector-b"))
        .await
        .unwrap();
    // Each minute's server rows from one writer and client rows from the other, so a
    // block's client-only minutes are found only across both writers' files.
    let mut written = Vec::new();
    for m in 0..45 {
        let rows = minute_rows(m);
        written.extend(rows.clone());
        let (server, client): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|row| row.side == Side::Server);
        a.append_closed(server).await.unwrap();
        b.append_closed(client).await.unwrap();
    }
    let report = a.maintain(T0 + 46 * MINUTE_MS).await.unwrap();
    assert_eq!(report.blocks_summarized, 8, "blocks 0 to 30 of both tables");

    let reader = Store::open_reader(on(dirs[2].path(), "")).await.unwrap();
    check_both_tables(&reader, &written, 5, 45, "a reader's first read").await;
    // Blocks 10 to 30 of each table; minutes 5 to 9 are read as they are, as taking
    // 0 to 4 out of block 0's summary would read as many minutes.
    assert_eq!(summaries_read(&reader), 6);
}

#[tokio::test]
async fn a_damaged_summary_is_passed_over_then_set_aside_and_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let mut written = Vec::new();
    for m in 0..35 {
        let rows = minute_rows(m);
        written.extend(rows.clone());
        store.append_closed(rows).await.unwrap();
    }
    assert_eq!(
        store
            .maintain(T0 + 36 * MINUTE_MS)
            .await
            .unwrap()
            .blocks_summarized,
        6,
        "blocks 0 to 20 of both tables"
    );
    // The edges' summary of block 10 overwritten with bytes that are not Parquet.
    let damaged: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|path| path.starts_with("edge_block/"))
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap();
            let newest = name.split("_t").nth(1).unwrap().split('_').next().unwrap();
            let newest: i64 = newest.parse().unwrap();
            (T0 + 10 * MINUTE_MS..T0 + 20 * MINUTE_MS).contains(&newest)
        })
        .collect();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    std::fs::write(dir.path().join(&damaged[0]), b"not a parquet file").unwrap();

    // The open store's first read passes it over and reads block 10's minutes. (The
    // upkeep's fold of the trailing hour read summaries before: they are not counted.)
    let before = summaries_read(&store);
    check_both_tables(&store, &written, 0, 30, "a read past a damaged summary").await;
    assert_eq!(summaries_read(&store) - before, 5);

    // Opened again, the store sets the damaged file aside; the upkeep writes the
    // summary again, and a first read folds all six.
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    assert!(
        !files_under(dir.path()).contains(&damaged[0]),
        "the damaged summary is set aside"
    );
    let report = store.maintain(T0 + 36 * MINUTE_MS).await.unwrap();
    assert_eq!(report.blocks_summarized, 1);
    let before = summaries_read(&store);
    check_both_tables(&store, &written, 0, 30, "a read after the upkeep").await;
    assert_eq!(summaries_read(&store) - before, 6);
}

#[tokio::test]
async fn a_block_whose_minutes_are_gone_loses_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    for m in 0..12 {
        store.append_closed(minute_rows(m)).await.unwrap();
    }
    let at = T0 + 13 * MINUTE_MS;
    assert_eq!(store.maintain(at).await.unwrap().blocks_summarized, 2);
    drop(store);
    // The services' minute files removed by hand: their block has nothing under it.
    for path in files_under(dir.path()) {
        if path.starts_with("service_minute/") {
            std::fs::remove_file(dir.path().join(path)).unwrap();
        }
    }
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(store.maintain(at).await.unwrap().blocks_summarized, 0);
    let summaries: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|path| path.contains("_block/"))
        .collect();
    assert_eq!(summaries.len(), 1, "the edges' alone: {summaries:?}");
    assert!(summaries[0].starts_with("edge_block/"), "{summaries:?}");
}
