//! Trailing-hour summaries: written by the upkeep for the hour ending at the newest closed
//! minute, read by a first read of a window within a few minutes of that hour, made again
//! from the one before as minutes close, passed over when the minutes under them changed,
//! and always giving the totals worked out from the rows themselves.

use meshscope_storage::{MINUTE_MS, Side, Store};

use crate::block_summaries::{check_both_tables, minute_rows};
use crate::support::*;

fn trailing_read(store: &Store) -> u64 {
    store.figures().trailing_summaries_read
}

#[tokio::test]
async fn a_first_read_near_the_trailing_hour_folds_its_summary_and_reads_like_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let mut written = Vec::new();
    let mut write = async |store: &Store, minutes: std::ops::Range<i64>| {
        for m in minutes {
            let rows = minute_rows(m);
            written.extend(rows.clone());
            store.append_closed(rows).await.unwrap();
        }
        written.clone()
    };
    // Minutes 0 to 79 written: at minute 81 the trailing hour is [20, 80), of the edges
    // and the services. A second pass finds both in place.
    write(&store, 0..80).await;
    let report = store.maintain(T0 + 81 * MINUTE_MS).await.unwrap();
    assert_eq!(report.trailing_hours_summarized, 2);
    let again = store.maintain(T0 + 81 * MINUTE_MS).await.unwrap();
    assert_eq!(
        again.trailing_hours_summarized, 0,
        "a summary that matches is kept"
    );
    assert!(
        files_under(dir.path())
            .iter()
            .any(|path| path.starts_with("edge_trailing_hour/")),
        "{:?}",
        files_under(dir.path())
    );

    // Two more minutes, and a store opened again (nothing kept in memory): the first read
    // of [22, 82) folds the summary of [20, 80), takes minutes 20 and 21 back out (the
    // services' fastest calls and web -> db's slowest are in the earliest minutes) and
    // adds 80 and 81.
    let rows = write(&store, 80..82).await;
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &rows, 22, 82, "first read near the trailing hour").await;
    assert_eq!(trailing_read(&store), 2, "one summary per table");
    assert_eq!(store.figures().block_summaries_read, 0);

    // The upkeep's next trailing hour, [22, 82), is made from the one before: one read
    // of it per table. A first read of exactly that hour folds it alone.
    let report = store.maintain(T0 + 83 * MINUTE_MS).await.unwrap();
    assert_eq!(report.trailing_hours_summarized, 2);
    assert_eq!(trailing_read(&store), 4, "made from the summary before");
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &rows, 22, 82, "first read of the trailing hour").await;
    assert_eq!(trailing_read(&store), 2);
    assert_eq!(store.figures().block_summaries_read, 0);

    // Minutes taken out of a summary made from a summary: its minimums and maximums of
    // the minutes left are still the rows'.
    let rows = write(&store, 82..85).await;
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &rows, 25, 85, "three minutes on").await;
    assert_eq!(trailing_read(&store), 2);

    // Too far from the trailing hour (six minutes out): the blocks and minutes answer.
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &rows, 16, 76, "six minutes before").await;
    assert_eq!(trailing_read(&store), 0);

    // A late server row in minute 50: the summary no longer matches its minute files, so
    // a first read passes it over, until the upkeep makes it again.
    let late = vec![row(
        T0 + 50 * MINUTE_MS,
        edge("web", "db"),
        Side::Server,
        7,
        2.5,
    )];
    written.extend(late.clone());
    store.append_closed(late).await.unwrap();
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &written, 22, 82, "after a late row").await;
    assert_eq!(
        trailing_read(&store),
        1,
        "the services' summary alone still matches"
    );
    let report = store.maintain(T0 + 86 * MINUTE_MS).await.unwrap();
    assert_eq!(report.trailing_hours_summarized, 2);
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    check_both_tables(&store, &written, 25, 85, "after the upkeep").await;
    assert_eq!(trailing_read(&store), 2);
}
