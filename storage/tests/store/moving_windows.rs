//! Windows that move on and windows read by several callers at once, checked against
//! totals worked out from the rows themselves.

use meshscope_storage::{
    Aggregate, KeyFilter, MINUTE_MS, MetricRow, Metrics, RowKey, Side, Store, Table, TimeRange,
};

use crate::support::*;

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
    read_side(store, table, range, None).await
}

/// The window's totals as a read with `side` gets them.
async fn read_side(
    store: &Store,
    table: Table,
    range: TimeRange,
    side: Option<Side>,
) -> Vec<Figures> {
    let filter = KeyFilter {
        side,
        ..KeyFilter::default()
    };
    store
        .aggregate(table, range, &filter)
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

/// What a read of one side must give: that side's rows, summed per key.
fn expected_side(rows: &[MetricRow], table: Table, range: TimeRange, side: Side) -> Vec<Figures> {
    use std::collections::BTreeMap;
    let mut per_key: BTreeMap<RowKey, Metrics> = BTreeMap::new();
    for row in rows.iter().filter(|r| {
        Table::of(&r.key) == table
            && r.side == side
            && r.minute >= range.start
            && r.minute < range.end
    }) {
        per_key
            .entry(row.key.clone())
            .or_default()
            .merge(&row.metrics);
    }
    per_key
        .into_iter()
        .map(|(key, m)| {
            let q = |q| m.latency.quantile(q);
            (key, side, m.calls, m.errors, q(0.0), q(0.5), q(1.0))
        })
        .collect()
}

/// Checks the whole table's read of `range` and each side's against the rows, the sides
/// read first or last as `sides_first` says (the one that comes first folds for all).
pub(crate) async fn check_window(
    store: &Store,
    written: &[MetricRow],
    table: Table,
    range: TimeRange,
    sides_first: bool,
    context: &str,
) {
    let sides = [Side::Client, Side::Server];
    if sides_first {
        for side in sides {
            assert_eq!(
                read_side(store, table, range, Some(side)).await,
                expected_side(written, table, range, side),
                "{context}: {side:?} side of {table:?}"
            );
        }
    }
    assert_eq!(
        read(store, table, range).await,
        expected(written, table, range),
        "{context}: {table:?}"
    );
    for side in sides {
        assert_eq!(
            read_side(store, table, range, Some(side)).await,
            expected_side(written, table, range, side),
            "{context}: {side:?} side of {table:?}"
        );
    }
}

#[tokio::test]
async fn a_window_that_moves_on_reads_like_the_rows_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    // Keys that come and go, both sides and one, with each minute's fastest and slowest
    // calls elsewhere, so that the minimum and maximum move as minutes leave the window.
    let minute_rows = |m: i64| {
        let at = T0 + m * MINUTE_MS;
        let mut rows = moving_window_rows(m, 3);
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
            let context = format!("window ending at minute {m}");
            check_window(&store, &written, table, range, m % 2 == 0, &context).await;
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
            check_window(
                &store,
                &written,
                Table::EdgeMinute,
                range,
                true,
                "late file",
            )
            .await;
        }
    }
    // Reopened, the store reads the same without any kept totals.
    drop(store);
    let reopened = Store::open(config(dir.path())).await.unwrap();
    let range = all(T0 + 25 * MINUTE_MS, T0 + 40 * MINUTE_MS);
    check_window(
        &reopened,
        &written,
        Table::EdgeMinute,
        range,
        true,
        "reopened",
    )
    .await;
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

#[tokio::test]
async fn a_window_over_many_keys_folds_them_side_by_side_like_the_rows_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    // Enough rows in one read that the keys fold on several threads: 600 edges, some
    // reported by both sides, some by the client alone, some by the server alone, and
    // some by the client alone in the minutes the server skipped.
    let mut written = Vec::new();
    for m in 0..24 {
        let at = T0 + m * MINUTE_MS;
        let mut rows = Vec::new();
        for n in 0..600u64 {
            let key = edge(&format!("caller-{}", n % 30), &format!("callee-{n}"));
            let latency = 1.0 + ((n * 7 + m as u64 * 13) % 400) as f64;
            let server_reports = n % 5 != 0 && !(n % 5 == 1 && m % 4 == 0);
            let client_reports = n % 5 != 2;
            if server_reports {
                rows.push(row(at, key.clone(), Side::Server, 3 + n % 4, latency));
            }
            if client_reports {
                rows.push(row(at, key, Side::Client, 2 + n % 3, latency * 1.5));
            }
        }
        written.extend(rows.clone());
        store.append_closed(rows).await.unwrap();
    }
    // Read first as a whole, then moved on a minute at a time.
    for end in 20..24 {
        let range = all(T0 + (end - 20) * MINUTE_MS, T0 + end * MINUTE_MS);
        let context = format!("window ending at minute {end}");
        check_window(
            &store,
            &written,
            Table::EdgeMinute,
            range,
            end % 2 == 1,
            &context,
        )
        .await;
    }
}
