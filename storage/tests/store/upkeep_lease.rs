//! Upkeep on a store several nodes share: the node holding the lease compacts and rolls
//! up, the others skip their passes, and when the holder stops renewing (it died) another
//! takes over once the holder's term has ended. Every hour is rolled up exactly once:
//! none twice, none lost.

use std::sync::Arc;

use futures::TryStreamExt;
use meshscope_storage::{
    Clock, KeyFilter, LEASE_CLOCK_GRACE_MS, ManualClock, Side, Store, Table, UPKEEP_LEASE_DIR,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;

use crate::support::{HOUR, T0, all, config_on, edge, row};

/// A term with no background upkeep (tests drive the passes): the shortest, 15 s.
const TERM_MS: i64 = 15_000;
/// When an hour's upkeep is due: the hour over, plus the five minutes it settles.
const SETTLE: i64 = 5 * 60_000;

/// The hour rollup files of the edge table, by name.
async fn hour_files(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut names: Vec<String> = listed
        .into_iter()
        .map(|object| object.location.to_string())
        .filter(|name| name.starts_with("edge_hour/") && name.ends_with(".parquet"))
        .collect();
    names.sort();
    names
}

/// Calls on the one edge written in hour `h` (from `T0`), as the store reads them.
async fn calls_in_hour(store: &Store, h: i64) -> u64 {
    store.refresh_files().await.unwrap();
    let read = store
        .aggregate(
            Table::EdgeMinute,
            all(T0 + h * HOUR, T0 + (h + 1) * HOUR),
            &KeyFilter::default(),
        )
        .await
        .unwrap();
    read.iter().map(|a| a.metrics.calls).sum()
}

#[tokio::test]
async fn one_node_at_a_time_runs_upkeep_and_another_takes_over_when_it_stops() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Store::open(config_on(&shared, &clock, dirs[0].path(), "node-a"))
        .await
        .unwrap();
    let b = Store::open(config_on(&shared, &clock, dirs[1].path(), "node-b"))
        .await
        .unwrap();
    // Each hour, 30 calls from one writer and 70 from the other, in one minute.
    let write_hour = |h: i64| {
        let minute = T0 + h * HOUR + 5 * 60_000;
        let (a, b) = (&a, &b);
        async move {
            a.append_closed(vec![row(
                minute,
                edge("cart", "db"),
                Side::Server,
                30,
                10.0,
            )])
            .await
            .unwrap();
            b.append_closed(vec![row(
                minute,
                edge("cart", "db"),
                Side::Server,
                70,
                20.0,
            )])
            .await
            .unwrap();
        }
    };

    // Hour 0 is due: the first to ask takes the lease and rolls it up; the other skips.
    write_hour(0).await;
    clock.set(T0 + HOUR + SETTLE);
    let by_a = a.maintain(clock.now_ms()).await.unwrap();
    assert_eq!((by_a.hours_rolled_up, by_a.lease_held_by), (1, None));
    let by_b = b.maintain(clock.now_ms()).await.unwrap();
    assert_eq!(by_b.lease_held_by.as_deref(), Some("node-a"));
    assert_eq!((by_b.hours_rolled_up, by_b.files_compacted), (0, 0));

    // Hour 1: the holder, still alive, renews and rolls it up; the other still skips,
    // within the holder's term.
    write_hour(1).await;
    clock.set(T0 + 2 * HOUR + SETTLE);
    assert_eq!(a.maintain(clock.now_ms()).await.unwrap().hours_rolled_up, 1);
    clock.advance(TERM_MS + LEASE_CLOCK_GRACE_MS);
    assert_eq!(
        b.maintain(clock.now_ms())
            .await
            .unwrap()
            .lease_held_by
            .as_deref(),
        Some("node-a"),
        "held until its term ends plus the grace"
    );

    // The holder dies. Hour 2 is written by the other writer alone, which takes the lease
    // over once the dead holder's term has ended, and rolls the hour up.
    drop(a);
    b.append_closed(vec![row(
        T0 + 2 * HOUR + 5 * 60_000,
        edge("cart", "db"),
        Side::Server,
        100,
        20.0,
    )])
    .await
    .unwrap();
    clock.set(T0 + 3 * HOUR + SETTLE);
    let took_over = b.maintain(clock.now_ms()).await.unwrap();
    assert_eq!(
        (took_over.hours_rolled_up, took_over.lease_held_by),
        (1, None)
    );

    // One rollup file per hour, each with the hour's 100 calls: none rolled up twice,
    // none lost.
    let files = hour_files(&shared).await;
    assert_eq!(files.len(), 3, "{files:?}");
    for h in 0..3 {
        assert!(
            files
                .iter()
                .filter(|name| name.contains(&format!("hour={:02}", h)))
                .count()
                == 1,
            "hour {h}: {files:?}"
        );
        assert_eq!(calls_in_hour(&b, h).await, 100, "hour {h}");
    }
    // The lease's terms are in the store, the newest held by the survivor.
    let terms: Vec<_> = shared
        .list(Some(&object_store::path::Path::from(UPKEEP_LEASE_DIR)))
        .try_collect()
        .await
        .unwrap();
    assert!(!terms.is_empty() && terms.len() <= 4, "{terms:?}");
}
