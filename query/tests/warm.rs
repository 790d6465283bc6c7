//! Windows read ahead of the dashboard: kept when the server starts, moved on after each
//! write, and read exactly as a store that never read ahead reads them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use meshscope_query::{AppState, router};
use meshscope_storage::clock::ManualClock;
use meshscope_storage::{
    KeptSpan, MINUTE_MS, MetricRow, Metrics, Protocol, RowKey, ServiceRef, Side, Store,
    StoreConfig, Table,
};
use serde_json::Value;
use tower::ServiceExt;

/// 2026-11-25T02:30:00Z.
const NOW_MINUTE: i64 = 1_795_573_800_000;

fn metrics(calls: u64, errors: u64, latency_ms: f64) -> Metrics {
    let mut metrics = Metrics {
        calls,
        errors,
        ..Metrics::default()
    };
    for _ in 0..calls {
        metrics.latency.add(latency_ms);
    }
    metrics
}

/// Both sides of `web -> cart -> db` and the services' own rows, different every minute.
fn minute_rows(minute: i64) -> Vec<MetricRow> {
    let n = ((minute - NOW_MINUTE) / MINUTE_MS).unsigned_abs();
    let service = |name: &str| ServiceRef::service("shop", name);
    let edge = |source: &str, target: &str| RowKey::Edge {
        source: service(source),
        target: service(target),
        protocol: Protocol::Http,
    };
    let row = |key: RowKey, side: Side, metrics: Metrics| MetricRow {
        minute,
        key,
        side,
        metrics,
    };
    vec![
        row(
            edge("web", "cart"),
            Side::Client,
            metrics(10 + n, n % 3, 20.0),
        ),
        row(
            edge("web", "cart"),
            Side::Server,
            metrics(10 + n, n % 3, 18.0 + n as f64),
        ),
        row(
            edge("cart", "db"),
            Side::Client,
            metrics(5, 1, 4.0 + n as f64),
        ),
        row(
            RowKey::Service {
                service: service("cart"),
            },
            Side::Server,
            metrics(10 + n, n % 3, 18.0),
        ),
    ]
}

struct Served {
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

async fn served(rows: &[MetricRow]) -> (Served, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(StoreConfig::in_dir(dir.path())).await.unwrap());
    store.append_closed(rows.to_vec()).await.unwrap();
    store.publish_live_minutes(minute_rows(NOW_MINUTE));
    let clock = Arc::new(ManualClock::new(NOW_MINUTE + 20_000));
    let state = AppState::new(store.clone()).with_clock(clock.clone());
    let served = Served {
        store,
        clock,
        router: router(state.clone()),
        _dir: dir,
    };
    (served, state)
}

impl Served {
    async fn topology(&self, window: &str) -> Value {
        let request = Request::get(format!("/api/v1/topology?window={window}"))
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    /// Closes `minute`: the next one is open, and `minute` is written. In that order, so
    /// that the read ahead the write wakes sees where the live minutes start now (the
    /// collector moves both at once).
    async fn close_minute(&self, minute: i64) {
        self.store
            .publish_live_minutes(minute_rows(minute + MINUTE_MS));
        self.store.append_closed(minute_rows(minute)).await.unwrap();
    }

    /// Waits until the edge and service spans kept are exactly `[start, end)`.
    async fn wait_for_spans(&self, start: i64, end: i64) {
        let wanted = |table| KeptSpan {
            table,
            start,
            end,
            keys: 0,
        };
        let matches = |kept: &[KeptSpan], table| {
            kept.iter()
                .any(|span| KeptSpan { keys: 0, ..*span } == wanted(table) && span.keys > 0)
        };
        for _ in 0..500 {
            let kept = self.store.moving_spans();
            if matches(&kept, Table::EdgeMinute) && matches(&kept, Table::ServiceMinute) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no spans [{start}, {end}) were kept: {:?}",
            self.store.moving_spans()
        );
    }
}

#[tokio::test]
async fn windows_are_read_ahead_at_start_and_moved_on_after_each_write() {
    let history: Vec<MetricRow> = (1..=30)
        .flat_map(|back| minute_rows(NOW_MINUTE - back * MINUTE_MS))
        .collect();
    let (warm, warm_state) = served(&history).await;
    let (cold, _) = served(&history).await;
    assert!(warm.store.moving_spans().is_empty());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(meshscope_query::warm::keep_warm(
        warm_state,
        vec!["15m".to_owned()],
        async {
            let _ = stopped.await;
        },
    ));
    // At start: the closed part of the 15 minutes ending with the live minute.
    warm.wait_for_spans(NOW_MINUTE - 14 * MINUTE_MS, NOW_MINUTE)
        .await;
    assert_eq!(warm.topology("15m").await, cold.topology("15m").await);
    // A window someone reads is read ahead from the next write on.
    assert_eq!(warm.topology("1h").await, cold.topology("1h").await);

    // The minute ends and is written; the clock is in the next one. The window read
    // ahead moves with it, one minute in, one minute out.
    for served in [&warm, &cold] {
        served.clock.set(NOW_MINUTE + MINUTE_MS + 11_000);
        served.close_minute(NOW_MINUTE).await;
    }
    warm.wait_for_spans(NOW_MINUTE - 13 * MINUTE_MS, NOW_MINUTE + MINUTE_MS)
        .await;
    warm.wait_for_spans(NOW_MINUTE - 58 * MINUTE_MS, NOW_MINUTE + MINUTE_MS)
        .await;
    assert_eq!(warm.topology("1h").await, cold.topology("1h").await);
    let moved = warm.topology("15m").await;
    assert_eq!(moved, cold.topology("15m").await);
    assert_eq!(moved["start"], NOW_MINUTE - 13 * MINUTE_MS);
    assert!(moved["edges"].as_array().unwrap().len() == 2, "{moved}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("keep_warm stops when asked")
        .unwrap();
}

#[tokio::test]
async fn a_window_is_read_ahead_until_ten_minutes_pass_without_a_read() {
    let (served, state) = served(&minute_rows(NOW_MINUTE - MINUTE_MS)).await;
    assert_eq!(state.watched_windows(), 0);
    served.topology("1h").await;
    served.topology("15m").await;
    assert_eq!(state.watched_windows(), 2);

    // Nine minutes on, the hour is read again; the quarter is not.
    served.clock.advance(9 * MINUTE_MS);
    served.topology("1h").await;
    // Ten minutes after its read, the quarter is still watched; a millisecond later not.
    served.clock.advance(MINUTE_MS);
    assert_eq!(state.watched_windows(), 2);
    served.clock.advance(1);
    assert_eq!(state.watched_windows(), 1);
    // The hour goes ten minutes after its last read.
    served.clock.advance(9 * MINUTE_MS - 1);
    assert_eq!(state.watched_windows(), 1);
    served.clock.advance(1);
    assert_eq!(state.watched_windows(), 0);
    // Absolute windows (`start`/`end`) are never watched.
    let request = Request::get(format!(
        "/api/v1/topology?start={}&end={NOW_MINUTE}",
        NOW_MINUTE - MINUTE_MS
    ))
    .body(Body::empty())
    .unwrap();
    let response = served.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(state.watched_windows(), 0);
}
