//! The proxies endpoints and `upstream_health` over a real store: exact JSON for a known
//! input, the same whether the rows are still in memory or written to Parquet, and after
//! the hour is rolled up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use meshscope_query::{AppState, router};
use meshscope_storage::clock::ManualClock;
use meshscope_storage::hour_of;
use meshscope_storage::{
    LiveProxyMinuteSource, MINUTE_MS, MetricRow, Metrics, Protocol, ProxyInfo, ProxyMetricRow,
    RowKey, ServiceRef, Side, Store, StoreConfig, minute_of,
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-11-25T02:30:00Z: the live minute.
const NOW_MINUTE: i64 = 1_795_573_800_000;
const PREVIOUS_MINUTE: i64 = NOW_MINUTE - MINUTE_MS;
const NOW: i64 = NOW_MINUTE + 45_000;
const WINDOW_START: i64 = NOW_MINUTE - 14 * MINUTE_MS;
const WINDOW_END: i64 = NOW_MINUTE + MINUTE_MS;
const HOUR: i64 = 60 * MINUTE_MS;
const BACKEND_CLUSTER: &str = "outbound|80||backend.shop.svc.cluster.local";

fn stat(minute: i64, name: &str, row: ProxyMetricRow) -> ProxyMetricRow {
    ProxyMetricRow {
        minute,
        proxy: "frontend-1".into(),
        service: "shop/frontend".into(),
        name: name.into(),
        cluster: BACKEND_CLUSTER.into(),
        upstream: "shop/backend".into(),
        ..row
    }
}

/// Proxy statistics of minutes not yet written, one row per series and minute, as the
/// collector holds them for the store: the live part of `proxy_metrics_minute`.
#[derive(Default)]
struct HeldProxyMinutes {
    rows: Mutex<Vec<ProxyMetricRow>>,
}

impl HeldProxyMinutes {
    /// Merges `row` into the row of its series and minute.
    fn record(&self, row: ProxyMetricRow) {
        let minute = minute_of(row.minute);
        let mut rows = self.rows.lock().unwrap();
        let same_series = |held: &&mut ProxyMetricRow| {
            (held.minute, &held.proxy, &held.name, &held.cluster)
                == (minute, &row.proxy, &row.name, &row.cluster)
        };
        match rows.iter_mut().find(same_series) {
            Some(held) => held.merge(&row),
            None => rows.push(ProxyMetricRow { minute, ..row }),
        }
    }

    /// Writes the minutes before `minute` to the store, one file per hour, and has the
    /// store publish the rest as the live minute.
    async fn write_before(&self, store: &Store, minute: i64) {
        let mut closed: BTreeMap<i64, Vec<ProxyMetricRow>> = BTreeMap::new();
        self.rows.lock().unwrap().retain(|row| {
            if row.minute < minute {
                closed
                    .entry(hour_of(row.minute))
                    .or_default()
                    .push(row.clone());
            }
            row.minute >= minute
        });
        for (hour, rows) in closed {
            store.append_proxy_hour(hour, &rows).await.unwrap();
        }
        store.publish_live_proxy_minutes().unwrap();
    }

    fn held(&self) -> usize {
        self.rows.lock().unwrap().len()
    }
}

impl LiveProxyMinuteSource for HeldProxyMinutes {
    fn live_proxy_rows(&self) -> Vec<ProxyMetricRow> {
        self.rows.lock().unwrap().clone()
    }
}

async fn store_with_known_proxies(dir: &std::path::Path) -> (Arc<Store>, Arc<HeldProxyMinutes>) {
    let config = StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(dir)
    };
    let store = Arc::new(Store::open(config).await.unwrap());
    let held = Arc::new(HeldProxyMinutes::default());
    store.attach_live_proxy_source(held.clone());
    let proxies = store.proxy_registry();
    proxies.see_proxy(ProxyInfo {
        id: "frontend-1".into(),
        service: "shop/frontend".into(),
        instance: "frontend-7d9f-abc".into(),
        envoy_version: "1.39.3".into(),
        last_seen: NOW - 10_000,
    });
    proxies.see_proxy(ProxyInfo {
        id: "gone-1".into(),
        service: "shop/gone".into(),
        instance: "gone-1".into(),
        envoy_version: "1.38.0".into(),
        last_seen: NOW - 5 * MINUTE_MS,
    });
    for row in [
        stat(
            PREVIOUS_MINUTE + 1_000,
            "upstream_rq_total",
            ProxyMetricRow::counter(4.0),
        ),
        stat(
            PREVIOUS_MINUTE + 2_000,
            "upstream_rq_total",
            ProxyMetricRow::counter(3.0),
        ),
        stat(
            NOW_MINUTE + 1_000,
            "upstream_rq_total",
            ProxyMetricRow::counter(3.0),
        ),
        stat(
            PREVIOUS_MINUTE + 1_000,
            "membership_healthy",
            ProxyMetricRow::gauge(3.0),
        ),
        stat(
            PREVIOUS_MINUTE + 2_000,
            "membership_healthy",
            ProxyMetricRow::gauge(2.0),
        ),
        stat(
            PREVIOUS_MINUTE + 1_000,
            "membership_total",
            ProxyMetricRow::gauge(3.0),
        ),
        stat(
            NOW_MINUTE + 1_000,
            "upstream_rq_5xx",
            ProxyMetricRow::counter(1.0),
        ),
        stat(
            PREVIOUS_MINUTE + 1_000,
            "upstream_rq_time",
            ProxyMetricRow::histogram(10, 25.0, vec![(1.0, 5), (5.0, 9), (10.0, 10)]),
        ),
    ] {
        held.record(row);
    }
    // The caller's edge, so the topology has somewhere to show the health.
    let mut metrics = Metrics {
        calls: 10,
        ..Metrics::default()
    };
    metrics.latency.add(2.0);
    store
        .append_closed(vec![MetricRow {
            minute: PREVIOUS_MINUTE,
            key: RowKey::Edge {
                source: ServiceRef::service("shop", "frontend"),
                target: ServiceRef::service("shop", "backend"),
                protocol: Protocol::Http,
            },
            side: Side::Client,
            metrics,
        }])
        .await
        .unwrap();
    (store, held)
}

async fn get(store: &Arc<Store>, uri: &str) -> (StatusCode, Value) {
    let app = router(AppState::new(store.clone()).with_clock(Arc::new(ManualClock::new(NOW))));
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

async fn ok(store: &Arc<Store>, uri: &str) -> Value {
    let (status, json) = get(store, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {json}");
    json
}

fn want_metrics() -> Value {
    json!({
        "proxy": "frontend-1", "start": WINDOW_START, "end": WINDOW_END,
        "series": [
            {"name": "membership_healthy", "cluster": BACKEND_CLUSTER, "upstream": "shop/backend",
             "kind": "gauge",
             "points": [{"t": PREVIOUS_MINUTE, "value": 2.0, "min": 2.0, "max": 3.0}]},
            {"name": "membership_total", "cluster": BACKEND_CLUSTER, "upstream": "shop/backend",
             "kind": "gauge",
             "points": [{"t": PREVIOUS_MINUTE, "value": 3.0, "min": 3.0, "max": 3.0}]},
            {"name": "upstream_rq_5xx", "cluster": BACKEND_CLUSTER, "upstream": "shop/backend",
             "kind": "counter",
             "points": [{"t": NOW_MINUTE, "value": 1.0}]},
            {"name": "upstream_rq_time", "cluster": BACKEND_CLUSTER, "upstream": "shop/backend",
             "kind": "histogram",
             "points": [{"t": PREVIOUS_MINUTE, "value": 25.0, "count": 10,
                         "p50": 1.0, "p95": 7.5, "p99": 9.5}]},
            {"name": "upstream_rq_total", "cluster": BACKEND_CLUSTER, "upstream": "shop/backend",
             "kind": "counter",
             "points": [{"t": PREVIOUS_MINUTE, "value": 7.0}, {"t": NOW_MINUTE, "value": 3.0}]},
        ]
    })
}

#[tokio::test]
async fn proxies_and_their_series_read_the_same_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (store, held) = store_with_known_proxies(dir.path()).await;
    // The previous minute goes to Parquet, the open one stays in memory.
    held.write_before(&store, NOW_MINUTE).await;
    assert_eq!(held.held(), 2, "only the live minute is held");

    let listed = ok(&store, "/api/v1/proxies").await;
    assert_eq!(
        listed,
        json!({"proxies": [
            {"id": "frontend-1", "service": "shop/frontend", "instance": "frontend-7d9f-abc",
             "envoy_version": "1.39.3", "last_seen": NOW - 10_000, "status": "up"},
            {"id": "gone-1", "service": "shop/gone", "instance": "gone-1",
             "envoy_version": "1.38.0", "last_seen": NOW - 5 * MINUTE_MS, "status": "stale"},
        ]})
    );

    let uri = "/api/v1/proxies/frontend-1/metrics?window=15m";
    let half_on_disk = ok(&store, uri).await;
    assert_eq!(half_on_disk, want_metrics());
    held.write_before(&store, i64::MAX).await;
    assert_eq!(held.held(), 0);
    assert_eq!(ok(&store, uri).await, want_metrics(), "all on disk");

    // A store reopened on the same directory reads the same series.
    drop(store);
    let reopened = Arc::new(
        Store::open(StoreConfig {
            maintenance_interval_secs: 0,
            ..StoreConfig::in_dir(dir.path())
        })
        .await
        .unwrap(),
    );
    assert_eq!(ok(&reopened, uri).await, want_metrics(), "after a restart");

    let only = ok(
        &reopened,
        "/api/v1/proxies/frontend-1/metrics?window=15m&names=upstream_rq_total",
    )
    .await;
    assert_eq!(only["series"], json!([want_metrics()["series"][4]]));
    let (status, body) = get(&reopened, "/api/v1/proxies/nobody/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn the_callers_proxy_health_shows_on_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let (store, held) = store_with_known_proxies(dir.path()).await;
    held.write_before(&store, NOW_MINUTE).await;
    let want = json!({
        "healthy": 2, "total": 3, "circuit_breaker_open": false, "pending_requests": 0,
        "errors_5xx": 1, "retries": 0, "timeouts": 0,
        "clusters": [BACKEND_CLUSTER], "reported_by": ["frontend-1"],
        "as_of": PREVIOUS_MINUTE,
    });
    let topology = ok(&store, "/api/v1/topology?window=15m").await;
    assert_eq!(topology["edges"][0]["upstream_health"], want, "{topology}");
    let edge = ok(
        &store,
        "/api/v1/edges?source=shop/frontend&target=shop/backend&window=15m",
    )
    .await;
    assert_eq!(edge["edges"][0]["upstream_health"], want, "{edge}");
}

#[tokio::test]
async fn rolled_up_hours_keep_the_sums_the_last_gauge_and_the_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let (store, held) = store_with_known_proxies(dir.path()).await;
    held.write_before(&store, i64::MAX).await;
    let report = store.maintain(NOW + 2 * HOUR).await.unwrap();
    assert!(report.hours_rolled_up >= 2, "{report:?}");
    let hour = NOW_MINUTE.div_euclid(HOUR) * HOUR;
    let series = ok(
        &store,
        &format!(
            "/api/v1/proxies/frontend-1/metrics?start={hour}&end={}",
            hour + HOUR
        ),
    )
    .await["series"]
        .clone();
    let points = |name: &str| {
        series
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["points"]
            .clone()
    };
    assert_eq!(
        points("upstream_rq_total"),
        json!([{"t": hour, "value": 10.0}])
    );
    assert_eq!(
        points("membership_healthy"),
        json!([{"t": hour, "value": 2.0, "min": 2.0, "max": 3.0}])
    );
    assert_eq!(
        points("upstream_rq_time"),
        json!([{"t": hour, "value": 25.0, "count": 10, "p50": 1.0, "p95": 7.5, "p99": 9.5}])
    );
    let tables: Vec<String> = store.tables().into_iter().map(|t| t.name).collect();
    for name in [
        "proxy_metrics_minute",
        "proxy_metrics_hour",
        "proxy_metrics_day",
    ] {
        assert!(tables.contains(&name.to_string()), "{tables:?}");
    }
}
