//! The HTTP API over a real store fed with a small known mesh: exact JSON for what the UI
//! and users' scripts rely on.
//!
//! Large answers are pinned whole as JSON snapshots (`tests/snapshots/`, reviewed by hand
//! when they change); the figures that follow from the rows fed in (calls, errors, Apdex,
//! latencies, which side is believed) are asserted here by hand as well, so that a snapshot
//! never hides why a number is what it is. The clock is fixed, so the answers are the same
//! on every run.
//!
//! One file over 600 lines on purpose: every test reads the same small mesh built below,
//! and the figures asserted are read against its rows, which is easiest with both in view.
//!
//! The mesh, in the minute before the current one (closed) and the current one (open):
//! ```text
//! external -> shop/ingress -> shop/frontend -> shop/backend
//!                                           -> payments      (no sidecar: client side only)
//!                                           -> db (TCP)      (no sidecar: client side only)
//! ops/prober -> payments                                     (client side only)
//! ```
//! plus `shop/legacy`, which had traffic half an hour ago only.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use meshscope_query::{AppState, router};
use meshscope_storage::clock::ManualClock;
use meshscope_storage::{
    MINUTE_MS, MetricRow, Metrics, Protocol, RowKey, ServiceRef, Side, Store, StoreConfig,
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-11-25T02:30:00Z: the open minute.
const NOW_MINUTE: i64 = 1_795_573_800_000;
const PREVIOUS_MINUTE: i64 = NOW_MINUTE - MINUTE_MS;
const NOW: i64 = NOW_MINUTE + 45_000;
/// `window=15m` at NOW.
const WINDOW_START: i64 = NOW_MINUTE - 14 * MINUTE_MS;
const WINDOW_END: i64 = NOW_MINUTE + MINUTE_MS;

fn shop(name: &str) -> ServiceRef {
    ServiceRef::service("shop", name)
}

fn plain(name: &str) -> ServiceRef {
    ServiceRef::service("", name)
}

/// `calls` calls of `latency_ms` each, `errors` of them failed (5xx), `errors_4xx` 4xx.
fn figures(calls: u64, errors: u64, errors_4xx: u64, latency_ms: f64) -> Metrics {
    let mut metrics = Metrics {
        calls,
        errors,
        errors_4xx,
        bytes_sent: calls * 100,
        bytes_received: calls * 1000,
        ..Metrics::default()
    };
    for _ in 0..calls {
        metrics.latency.add(latency_ms);
    }
    metrics
}

fn with_apdex(mut metrics: Metrics, satisfied: u64, tolerating: u64) -> Metrics {
    metrics.apdex_satisfied = satisfied;
    metrics.apdex_tolerating = tolerating;
    metrics
}

fn with_mtls(mut metrics: Metrics) -> Metrics {
    metrics.mtls_calls = metrics.calls;
    metrics
}

fn row(minute: i64, key: RowKey, side: Side, metrics: Metrics) -> MetricRow {
    MetricRow {
        minute,
        key,
        side,
        metrics,
    }
}

fn service(minute: i64, service: ServiceRef, side: Side, metrics: Metrics) -> MetricRow {
    row(minute, RowKey::Service { service }, side, metrics)
}

fn edge(
    minute: i64,
    (source, target): (ServiceRef, ServiceRef),
    protocol: Protocol,
    side: Side,
    metrics: Metrics,
) -> MetricRow {
    row(
        minute,
        RowKey::Edge {
            source,
            target,
            protocol,
        },
        side,
        metrics,
    )
}

fn closed_rows() -> Vec<MetricRow> {
    use Side::{Client, Server};
    let old = NOW_MINUTE - 30 * MINUTE_MS;
    vec![
        service(old, shop("legacy"), Server, figures(7, 0, 0, 5.0)),
        service(
            PREVIOUS_MINUTE,
            shop("ingress"),
            Server,
            with_apdex(figures(100, 10, 0, 20.0), 80, 10),
        ),
        service(
            PREVIOUS_MINUTE,
            shop("frontend"),
            Server,
            with_apdex(figures(100, 10, 0, 15.0), 90, 0),
        ),
        // The ingress's own view of the frontend: must lose to the frontend's.
        service(
            PREVIOUS_MINUTE,
            shop("frontend"),
            Client,
            figures(100, 12, 0, 16.0),
        ),
        edge(
            PREVIOUS_MINUTE,
            (ServiceRef::virtual_node("external"), shop("ingress")),
            Protocol::Http,
            Server,
            figures(100, 10, 0, 20.0),
        ),
        edge(
            PREVIOUS_MINUTE,
            (shop("ingress"), shop("frontend")),
            Protocol::Http,
            Server,
            with_mtls(figures(100, 10, 0, 15.0)),
        ),
        edge(
            PREVIOUS_MINUTE,
            (shop("ingress"), shop("frontend")),
            Protocol::Http,
            Client,
            figures(100, 12, 0, 16.0),
        ),
        row(
            PREVIOUS_MINUTE,
            RowKey::Instance {
                service: shop("frontend"),
                instance: "frontend-v1-pod-1".into(),
            },
            Server,
            figures(100, 10, 0, 15.0),
        ),
    ]
}

fn open_rows() -> Vec<MetricRow> {
    use Side::{Client, Server};
    vec![
        service(
            NOW_MINUTE,
            shop("frontend"),
            Server,
            with_apdex(figures(50, 0, 0, 15.0), 50, 0),
        ),
        service(
            NOW_MINUTE,
            shop("backend"),
            Server,
            with_apdex(figures(60, 6, 3, 300.0), 0, 54),
        ),
        service(
            NOW_MINUTE,
            plain("payments"),
            Client,
            with_apdex(figures(40, 0, 0, 8.0), 40, 0),
        ),
        edge(
            NOW_MINUTE,
            (shop("ingress"), shop("frontend")),
            Protocol::Http,
            Server,
            with_mtls(figures(50, 0, 0, 15.0)),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), shop("backend")),
            Protocol::Http,
            Server,
            with_mtls(figures(60, 6, 3, 300.0)),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), shop("backend")),
            Protocol::Http,
            Client,
            figures(60, 6, 3, 301.0),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), plain("payments")),
            Protocol::Http,
            Client,
            figures(30, 0, 0, 8.0),
        ),
        edge(
            NOW_MINUTE,
            (ServiceRef::service("ops", "prober"), plain("payments")),
            Protocol::Http,
            Client,
            figures(10, 0, 0, 8.0),
        ),
        edge(
            NOW_MINUTE,
            (shop("frontend"), plain("db")),
            Protocol::Tcp,
            Client,
            Metrics {
                tcp_connections: 30,
                ..figures(30, 0, 0, 2.0)
            },
        ),
        row(
            NOW_MINUTE,
            RowKey::Instance {
                service: shop("frontend"),
                instance: "frontend-v1-pod-1".into(),
            },
            Server,
            figures(20, 0, 0, 15.0),
        ),
        row(
            NOW_MINUTE,
            RowKey::Instance {
                service: shop("frontend"),
                instance: "frontend-v1-pod-2".into(),
            },
            Server,
            figures(30, 0, 0, 15.0),
        ),
        row(
            NOW_MINUTE,
            RowKey::Endpoint {
                service: shop("backend"),
                endpoint: "GET /items/{id}".into(),
            },
            Server,
            figures(45, 6, 0, 300.0),
        ),
        row(
            NOW_MINUTE,
            RowKey::Endpoint {
                service: shop("backend"),
                endpoint: "POST /cart".into(),
            },
            Server,
            figures(15, 0, 3, 300.0),
        ),
    ]
}

struct Api {
    router: axum::Router,
    _data_dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::in_dir(data_dir.path()))
            .await
            .unwrap();
        store.append_closed(closed_rows()).await.unwrap();
        store.publish_live_minutes(open_rows());
        let state = AppState::new(Arc::new(store))
            .with_clock(Arc::new(ManualClock::new(NOW)))
            .with_metrics_renderer(|| "# TYPE meshscope_test counter\nmeshscope_test 1\n".into());
        Self {
            router: router(state),
            _data_dir: data_dir,
        }
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.get_raw(uri).await;
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {body:?}"));
        (status, json)
    }

    async fn get_raw(&self, uri: &str) -> (StatusCode, String, axum::body::Bytes) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, body)
    }

    async fn ok(&self, uri: &str) -> Value {
        let (status, json) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {json}");
        json
    }
}

/// Compares JSON exactly, except `*_ms` latencies, which must be within the sketch's 1%
/// (plus rounding) of the true value.
fn assert_json_matches(actual: &Value, expected: &Value, path: &str) {
    // The response went through text; so must the expectation, or serde_json's float
    // parsing (one ulp off at times) would fail exact comparisons.
    let expected: Value = serde_json::from_str(&expected.to_string()).unwrap();
    assert_json_matches_parsed(actual, &expected, path);
}

fn assert_json_matches_parsed(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            let mut a_keys: Vec<_> = a.keys().collect();
            let mut e_keys: Vec<_> = e.keys().collect();
            a_keys.sort();
            e_keys.sort();
            assert_eq!(a_keys, e_keys, "keys at {path}");
            for (key, e_value) in e {
                assert_json_matches_parsed(&a[key], e_value, &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "length at {path}: {actual}");
            for (index, (a, e)) in a.iter().zip(e).enumerate() {
                assert_json_matches_parsed(a, e, &format!("{path}[{index}]"));
            }
        }
        (Value::Number(a), Value::Number(e)) if path.ends_with("_ms") => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!(
                (a - e).abs() <= e * 0.0101 + 0.001,
                "{path}: {a} is not within 1% of {e}"
            );
        }
        _ => assert_eq!(actual, expected, "at {path}"),
    }
}

fn node_metrics(
    calls: u64,
    cpm: f64,
    errors: u64,
    errors_4xx: u64,
    latency: Option<f64>,
    apdex: Option<f64>,
) -> Value {
    json!({
        "calls": calls, "cpm": cpm, "errors": errors,
        "error_rate": if calls == 0 { 0.0 } else { errors as f64 / calls as f64 },
        "errors_4xx": errors_4xx,
        "p50_ms": latency, "p95_ms": latency, "p99_ms": latency,
        "apdex": apdex,
    })
}

fn edge_metrics(calls: u64, errors: u64, errors_4xx: u64, latency: f64, minutes: f64) -> Value {
    json!({
        "calls": calls,
        "cpm": ((calls as f64 / minutes) * 1000.0).round() / 1000.0,
        "errors": errors,
        "error_rate": errors as f64 / calls as f64,
        "errors_4xx": errors_4xx,
        "p50_ms": latency, "p95_ms": latency, "p99_ms": latency,
        "bytes_sent": calls * 100,
        "bytes_received": calls * 1000,
        "tcp_connections": 0,
        "mtls_calls": 0,
    })
}

/// Whether two figures are equal but for float parsing (serde_json's can be one ulp off).
fn same_figure(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= expected.abs() * 1e-12
}

/// Whether a latency is within the sketch's 1% (plus rounding) of the true value.
fn within_sketch_error(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= expected * 0.0101 + 0.001
}

fn optional_figure(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// A node of the map and the figures that follow from the rows fed in: id, kind, layer,
/// calls, errors, 4xx, Apdex, and the p50 latency in ms.
type NodeFigures = (
    &'static str,
    &'static str,
    u64,
    u64,
    u64,
    u64,
    Option<f64>,
    Option<f64>,
);

fn assert_node_figures(nodes: &Value, expected: &[NodeFigures]) {
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), expected.len(), "{nodes:?}");
    for (node, &(id, kind, layer, calls, errors, errors_4xx, apdex, p50)) in
        nodes.iter().zip(expected)
    {
        let metrics = &node["metrics"];
        assert_eq!(node["id"], json!(id));
        assert_eq!(node["kind"], json!(kind), "{id}");
        assert_eq!(node["layer"], json!(layer), "{id}");
        assert_eq!(metrics["calls"], json!(calls), "{id}");
        assert_eq!(metrics["errors"], json!(errors), "{id}");
        assert_eq!(metrics["errors_4xx"], json!(errors_4xx), "{id}");
        match (optional_figure(&metrics["apdex"]), apdex) {
            (None, None) => {}
            (Some(a), Some(e)) => assert!(same_figure(a, e), "{id}: apdex {a} is not {e}"),
            (a, e) => panic!("{id}: apdex {a:?} is not {e:?}"),
        }
        for quantile in ["p50_ms", "p95_ms", "p99_ms"] {
            // Every call of a node has the same latency here, so all quantiles are it.
            match (optional_figure(&metrics[quantile]), p50) {
                (None, None) => {}
                (Some(a), Some(e)) => {
                    assert!(within_sketch_error(a, e), "{id}: {quantile} {a} is not {e}")
                }
                (a, e) => panic!("{id}: {quantile} {a:?} is not {e:?}"),
            }
        }
    }
}

/// An edge of the map and the figures that follow from the rows fed in: source, target,
/// protocol, the side believed, calls, errors, 4xx, calls over mTLS, TCP connections, and
/// the latency of its calls in ms.
type EdgeFigures = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
    u64,
    u64,
    u64,
    u64,
    f64,
);

fn assert_edge_figures(edges: &Value, expected: &[EdgeFigures]) {
    let edges = edges.as_array().unwrap();
    assert_eq!(edges.len(), expected.len(), "{edges:?}");
    for (edge, &figures) in edges.iter().zip(expected) {
        let (
            source,
            target,
            protocol,
            detected_by,
            calls,
            errors,
            errors_4xx,
            mtls_calls,
            tcp,
            latency,
        ) = figures;
        let name = format!("{source}->{target}");
        let metrics = &edge["metrics"];
        assert_eq!(edge["source"], json!(source), "{name}");
        assert_eq!(edge["target"], json!(target), "{name}");
        assert_eq!(edge["protocol"], json!(protocol), "{name}");
        assert_eq!(edge["detected_by"], json!(detected_by), "{name}");
        assert_eq!(edge["mtls"], json!(mtls_calls == calls), "{name}");
        assert_eq!(metrics["calls"], json!(calls), "{name}");
        assert_eq!(metrics["errors"], json!(errors), "{name}");
        assert_eq!(metrics["errors_4xx"], json!(errors_4xx), "{name}");
        assert_eq!(metrics["mtls_calls"], json!(mtls_calls), "{name}");
        assert_eq!(metrics["tcp_connections"], json!(tcp), "{name}");
        assert_eq!(metrics["bytes_sent"], json!(calls * 100), "{name}");
        assert_eq!(metrics["bytes_received"], json!(calls * 1000), "{name}");
        for quantile in ["p50_ms", "p95_ms", "p99_ms"] {
            let actual = metrics[quantile].as_f64().unwrap();
            assert!(
                within_sketch_error(actual, latency),
                "{name}: {quantile} {actual} is not {latency}"
            );
        }
    }
}

/// The map's nodes in the 15 minutes ending with the open one, by id.
#[rustfmt::skip]
const WINDOW_NODES: &[NodeFigures] = &[
    // id, kind, layer, calls, errors, 4xx, Apdex, latency
    ("db", "service", 3, 0, 0, 0, None, None),
    ("external", "virtual", 0, 0, 0, 0, None, None),
    ("ops/prober", "service", 0, 0, 0, 0, None, None),
    ("payments", "service", 3, 40, 0, 0, Some(1.0), Some(8.0)),
    // Backend: 54 tolerating calls of 60 -> Apdex 27/60.
    ("shop/backend", "service", 3, 60, 6, 3, Some(0.45), Some(300.0)),
    // Frontend: the server side in both minutes; the ingress's view (12 errors) loses.
    // Apdex (90 + 50) / 150.
    ("shop/frontend", "service", 2, 150, 10, 0, Some(140.0 / 150.0), Some(15.0)),
    // Apdex (80 + 10 / 2) / 100.
    ("shop/ingress", "service", 1, 100, 10, 0, Some(0.85), Some(20.0)),
];

/// The map's edges in the same window, by source and target.
#[rustfmt::skip]
const WINDOW_EDGES: &[EdgeFigures] = &[
    // source, target, protocol, side believed, calls, errors, 4xx, mTLS calls, TCP
    // connections, latency
    ("external", "shop/ingress", "http", "server", 100, 10, 0, 0, 0, 20.0),
    ("ops/prober", "payments", "http", "client", 10, 0, 0, 0, 0, 8.0),
    ("shop/frontend", "db", "tcp", "client", 30, 0, 0, 0, 30, 2.0),
    ("shop/frontend", "payments", "http", "client", 30, 0, 0, 0, 0, 8.0),
    ("shop/frontend", "shop/backend", "http", "server", 60, 6, 3, 60, 0, 300.0),
    // Both minutes, the server side: 100 + 50 calls, all over mTLS.
    ("shop/ingress", "shop/frontend", "http", "server", 150, 10, 0, 150, 0, 15.0),
];

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect()
}

fn edge_pairs(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}->{}",
                e["source"].as_str().unwrap(),
                e["target"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn topology_of_the_default_window() {
    let api = Api::new().await;
    let default_window = api.ok("/api/v1/topology").await;
    let explicit = api.ok("/api/v1/topology?window=15m").await;
    assert_eq!(default_window, explicit);
    assert_eq!(default_window["start"], json!(WINDOW_START));
    assert_eq!(default_window["end"], json!(WINDOW_END));
    assert_node_figures(&default_window["nodes"], WINDOW_NODES);
    assert_edge_figures(&default_window["edges"], WINDOW_EDGES);
    // Calls a minute over the 15 minutes.
    assert_eq!(default_window["nodes"][5]["metrics"]["cpm"], json!(10.0));
    assert_eq!(default_window["nodes"][3]["metrics"]["cpm"], json!(2.667));
    insta::assert_json_snapshot!("topology_15m", default_window);
}

#[tokio::test]
async fn topology_windows_select_minutes() {
    let api = Api::new().await;
    // The previous minute alone: the open minute's services and edges are gone.
    let previous = api
        .ok(&format!(
            "/api/v1/topology?start={PREVIOUS_MINUTE}&end={NOW_MINUTE}"
        ))
        .await;
    assert_eq!(previous["start"], json!(PREVIOUS_MINUTE));
    assert_eq!(previous["end"], json!(NOW_MINUTE));
    assert_eq!(
        ids(&previous["nodes"]),
        ["external", "shop/frontend", "shop/ingress"]
    );
    assert_eq!(previous["nodes"][1]["metrics"]["calls"], json!(100));
    assert_eq!(previous["nodes"][1]["metrics"]["cpm"], json!(100.0));

    // An hour in RFC 3339 reaches the legacy service's old minute.
    let hour = api
        .ok("/api/v1/topology?start=2026-11-25T01:45:00Z&end=2026-11-25T02:45:00%2B00:00")
        .await;
    assert!(ids(&hour["nodes"]).contains(&"shop/legacy"), "{hour}");
    let day = api.ok("/api/v1/topology?window=1d").await;
    assert!(ids(&day["nodes"]).contains(&"shop/legacy"));
    assert!(!ids(&api.ok("/api/v1/topology?window=15m").await["nodes"]).contains(&"shop/legacy"));
}

#[tokio::test]
async fn topology_focus_walks_callers_and_callees_to_the_depth() {
    let api = Api::new().await;
    let backend = api.ok("/api/v1/topology?service=shop/backend").await;
    assert_eq!(ids(&backend["nodes"]), ["shop/backend", "shop/frontend"]);
    assert_eq!(
        edge_pairs(&backend["edges"]),
        ["shop/frontend->shop/backend"]
    );
    // Layers are recomputed for the focused graph.
    assert_eq!(backend["nodes"][0]["layer"], json!(1));
    assert_eq!(backend["nodes"][1]["layer"], json!(0));

    let backend2 = api
        .ok("/api/v1/topology?service=shop%2Fbackend&depth=2")
        .await;
    // Siblings (payments, db) are callees of a caller: not on a path through the focus.
    assert_eq!(
        ids(&backend2["nodes"]),
        ["shop/backend", "shop/frontend", "shop/ingress"]
    );

    let frontend = api
        .ok("/api/v1/topology?service=shop/frontend&depth=1")
        .await;
    assert_eq!(
        ids(&frontend["nodes"]),
        [
            "db",
            "payments",
            "shop/backend",
            "shop/frontend",
            "shop/ingress"
        ]
    );
    assert_eq!(
        edge_pairs(&frontend["edges"]),
        [
            "shop/frontend->db",
            "shop/frontend->payments",
            "shop/frontend->shop/backend",
            "shop/ingress->shop/frontend"
        ]
    );
    // The focused node keeps its full figures.
    assert_eq!(frontend["nodes"][3]["metrics"]["calls"], json!(150));

    let payments = api.ok("/api/v1/topology?service=payments&depth=5").await;
    assert_eq!(
        ids(&payments["nodes"]),
        [
            "external",
            "ops/prober",
            "payments",
            "shop/frontend",
            "shop/ingress"
        ]
    );
}

#[tokio::test]
async fn topology_namespace_keeps_its_services_and_their_peers() {
    let api = Api::new().await;
    let shop_only = api.ok("/api/v1/topology?namespace=shop").await;
    assert_eq!(
        ids(&shop_only["nodes"]),
        [
            "db",
            "external",
            "payments",
            "shop/backend",
            "shop/frontend",
            "shop/ingress"
        ]
    );
    assert!(!edge_pairs(&shop_only["edges"]).contains(&"ops/prober->payments".to_owned()));
    let ops = api.ok("/api/v1/topology?namespace=ops").await;
    assert_eq!(ids(&ops["nodes"]), ["ops/prober", "payments"]);
    assert_eq!(edge_pairs(&ops["edges"]), ["ops/prober->payments"]);
}

#[tokio::test]
async fn topology_of_several_namespaces_is_the_union_of_each() {
    let api = Api::new().await;
    let both = api.ok("/api/v1/topology?namespace=shop,ops").await;
    // shop's services and peers (db, external, payments), and ops/prober with its callee.
    assert_eq!(
        ids(&both["nodes"]),
        [
            "db",
            "external",
            "ops/prober",
            "payments",
            "shop/backend",
            "shop/frontend",
            "shop/ingress"
        ]
    );
    assert_eq!(
        edge_pairs(&both["edges"]),
        [
            "external->shop/ingress",
            "ops/prober->payments",
            "shop/frontend->db",
            "shop/frontend->payments",
            "shop/frontend->shop/backend",
            "shop/ingress->shop/frontend"
        ]
    );
    let spaced = api.ok("/api/v1/topology?namespace=%20ops%20,,shop").await;
    assert_eq!(spaced, both);
    let ops = api.ok("/api/v1/topology?namespace=ops,").await;
    assert_eq!(ids(&ops["nodes"]), ["ops/prober", "payments"]);
}

#[tokio::test]
async fn topology_focus_takes_a_plain_service_name() {
    let api = Api::new().await;
    let by_name = api.ok("/api/v1/topology?service=backend").await;
    let by_id = api.ok("/api/v1/topology?service=shop/backend").await;
    assert_eq!(by_name, by_id);
    assert_eq!(by_name["focus"], json!("shop/backend"));
    assert_eq!(ids(&by_name["nodes"]), ["shop/backend", "shop/frontend"]);
    // A node without a namespace is named by its id.
    let payments = api.ok("/api/v1/topology?service=payments").await;
    assert_eq!(payments["focus"], json!("payments"));
    // No focus, no field.
    assert!(api.ok("/api/v1/topology").await.get("focus").is_none());
    // Inside a namespace filter, only what the map shows can be focused.
    let (status, json) = api
        .get("/api/v1/topology?namespace=ops&service=backend")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        json["error"],
        json!("no service named \"backend\" on the map in this window")
    );
}

#[tokio::test]
async fn series_answers_say_the_servers_clock() {
    let api = Api::new().await;
    let service = api.ok("/api/v1/services/shop/frontend").await;
    assert_eq!(service["now"], json!(NOW));
    let edge = api
        .ok("/api/v1/edges?source=shop/frontend&target=shop/backend")
        .await;
    assert_eq!(edge["now"], json!(NOW));
    // The last point is the minute holding `now`: the one a chart marks as still filling.
    let last = service["series"].as_array().unwrap().last().unwrap()["t"].clone();
    assert_eq!(last, json!(NOW_MINUTE));
}

#[tokio::test]
async fn bad_parameters_are_json_errors() {
    let api = Api::new().await;
    let cases = [
        (
            "/api/v1/topology?window=15x",
            StatusCode::BAD_REQUEST,
            "invalid window",
        ),
        (
            "/api/v1/topology?window=0m",
            StatusCode::BAD_REQUEST,
            "longer than zero",
        ),
        (
            "/api/v1/topology?window=15m&start=0",
            StatusCode::BAD_REQUEST,
            "either",
        ),
        (
            "/api/v1/topology?start=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid `start`",
        ),
        (
            "/api/v1/topology?start=200000&end=100000",
            StatusCode::BAD_REQUEST,
            "before",
        ),
        (
            "/api/v1/topology?service=shop/frontend&depth=9",
            StatusCode::BAD_REQUEST,
            "invalid depth",
        ),
        (
            "/api/v1/topology?service=shop/frontend&depth=two",
            StatusCode::BAD_REQUEST,
            "invalid depth",
        ),
        (
            "/api/v1/topology?depth=1&depth=2",
            StatusCode::BAD_REQUEST,
            "duplicate",
        ),
        (
            "/api/v1/topology?service=shop/nothing",
            StatusCode::NOT_FOUND,
            "shop/nothing",
        ),
        (
            "/api/v1/services?window=1y",
            StatusCode::BAD_REQUEST,
            "invalid window",
        ),
        (
            "/api/v1/services/shop/nothing",
            StatusCode::NOT_FOUND,
            "shop/nothing",
        ),
        (
            "/api/v1/services/shop/legacy",
            StatusCode::NOT_FOUND,
            "no traffic in this window",
        ),
        (
            "/api/v1/services/shop/nothing/instances",
            StatusCode::NOT_FOUND,
            "shop/nothing",
        ),
        (
            "/api/v1/services/bad%zz",
            StatusCode::BAD_REQUEST,
            "invalid service id",
        ),
        (
            "/api/v1/edges?source=shop/ingress",
            StatusCode::BAD_REQUEST,
            "required",
        ),
        (
            "/api/v1/edges?source=shop/backend&target=shop/frontend",
            StatusCode::NOT_FOUND,
            "no calls",
        ),
        (
            "/api/v1/edges?source=shop/ingress&target=shop/frontend&protocol=udp",
            StatusCode::BAD_REQUEST,
            "protocol",
        ),
        (
            "/api/v1/nothing",
            StatusCode::NOT_FOUND,
            "no such API route",
        ),
    ];
    for (uri, status, message) in cases {
        let (got_status, body) = api.get(uri).await;
        assert_eq!(got_status, status, "{uri}: {body}");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{uri}: {body}"));
        assert!(
            error.contains(message),
            "{uri}: {error:?} lacks {message:?}"
        );
        assert_eq!(body.as_object().unwrap().len(), 1, "{uri}: {body}");
    }
}

#[tokio::test]
async fn services_list_matches_the_map() {
    let api = Api::new().await;
    let list = api.ok("/api/v1/services").await;
    assert_eq!(list["start"], json!(WINDOW_START));
    assert_eq!(list["end"], json!(WINDOW_END));
    // The map's nodes, without their place in it.
    let mut nodes = api.ok("/api/v1/topology").await["nodes"].clone();
    for node in nodes.as_array_mut().unwrap() {
        node.as_object_mut().unwrap().remove("layer");
    }
    assert_eq!(list["services"], nodes);
    let ids_in_list: Vec<&str> = WINDOW_NODES.iter().map(|node| node.0).collect();
    assert_eq!(ids(&list["services"]), ids_in_list);
    let ops = api.ok("/api/v1/services?namespace=ops").await;
    assert_eq!(ids(&ops["services"]), ["ops/prober"]);
}

#[tokio::test]
async fn service_detail_with_a_series_per_minute() {
    let api = Api::new().await;
    let plain_path = api.ok("/api/v1/services/shop/frontend").await;
    let encoded = api.ok("/api/v1/services/shop%2Ffrontend").await;
    assert_eq!(plain_path, encoded);

    assert_eq!(plain_path["id"], json!("shop/frontend"));
    assert_eq!(plain_path["kind"], json!("service"));
    assert_eq!(plain_path["start"], json!(WINDOW_START));
    assert_eq!(plain_path["end"], json!(WINDOW_END));
    assert_json_matches(
        &plain_path["metrics"],
        &node_metrics(150, 10.0, 10, 0, Some(15.0), Some(140.0 / 150.0)),
        "metrics",
    );
    insta::assert_json_snapshot!("service_shop_frontend_15m", plain_path);
    let series = plain_path["series"].as_array().unwrap();
    assert_eq!(series.len(), 15);
    let times: Vec<i64> = series.iter().map(|p| p["t"].as_i64().unwrap()).collect();
    let expected_times: Vec<i64> = (0..15).map(|i| WINDOW_START + i * MINUTE_MS).collect();
    assert_eq!(times, expected_times);
    let quiet = node_metrics(0, 0.0, 0, 0, None, None);
    for point in &series[..13] {
        let mut metrics = point.clone();
        metrics.as_object_mut().unwrap().remove("t");
        assert_eq!(metrics, quiet);
    }
    let mut previous = node_metrics(100, 100.0, 10, 0, Some(15.0), Some(0.9));
    previous["t"] = json!(PREVIOUS_MINUTE);
    assert_json_matches(&series[13], &previous, "series[13]");
    let mut now = node_metrics(50, 50.0, 0, 0, Some(15.0), Some(1.0));
    now["t"] = json!(NOW_MINUTE);
    assert_json_matches(&series[14], &now, "series[14]");

    // A node known only as an edge's endpoint has a page too, with zero figures.
    let external = api.ok("/api/v1/services/external").await;
    assert_eq!(external["kind"], json!("virtual"));
    assert_eq!(external["metrics"]["calls"], json!(0));
    let legacy = api.ok("/api/v1/services/shop/legacy?window=1h").await;
    assert_eq!(legacy["metrics"]["calls"], json!(7));
    assert_eq!(legacy["series"].as_array().unwrap().len(), 60);
}

#[tokio::test]
async fn instances_and_endpoints_sorted_by_calls() {
    let api = Api::new().await;
    let instances = api.ok("/api/v1/services/shop/frontend/instances").await;
    assert_eq!(instances["service"], json!("shop/frontend"));
    assert_json_matches(
        &instances["instances"],
        &json!([
            {"name": "frontend-v1-pod-1", "metrics": node_metrics(120, 8.0, 10, 0, Some(15.0), Some(0.0))},
            {"name": "frontend-v1-pod-2", "metrics": node_metrics(30, 2.0, 0, 0, Some(15.0), Some(0.0))},
        ]),
        "instances",
    );
    let endpoints = api
        .ok("/api/v1/services/shop%2Fbackend/endpoints?window=5m")
        .await;
    assert_eq!(endpoints["service"], json!("shop/backend"));
    assert_eq!(endpoints["start"], json!(NOW_MINUTE - 4 * MINUTE_MS));
    assert_json_matches(
        &endpoints["endpoints"],
        &json!([
            {"name": "GET /items/{id}", "metrics": node_metrics(45, 9.0, 6, 0, Some(300.0), Some(0.0))},
            {"name": "POST /cart", "metrics": node_metrics(15, 3.0, 0, 3, Some(300.0), Some(0.0))},
        ]),
        "endpoints",
    );
    let none = api.ok("/api/v1/services/payments/endpoints").await;
    assert_eq!(none["endpoints"], json!([]));
}

#[tokio::test]
async fn edge_detail_shows_both_sides_and_the_chosen_one() {
    let api = Api::new().await;
    let detail = api
        .ok("/api/v1/edges?source=shop/frontend&target=shop/backend&window=2m")
        .await;
    assert_eq!(detail["source"], json!("shop/frontend"));
    assert_eq!(detail["target"], json!("shop/backend"));
    assert_eq!(detail["start"], json!(PREVIOUS_MINUTE));
    let edges = detail["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    let edge = &edges[0];
    assert_eq!(edge["protocol"], json!("http"));
    assert_eq!(edge["detected_by"], json!("server"));
    assert_eq!(edge["mtls"], json!(true));

    let mut server = edge_metrics(60, 6, 3, 300.0, 2.0);
    server["mtls_calls"] = json!(60);
    assert_json_matches(&edge["metrics"], &server, "metrics");
    assert_json_matches(&edge["server"]["metrics"], &server, "server.metrics");
    assert_json_matches(
        &edge["client"]["metrics"],
        &edge_metrics(60, 6, 3, 301.0, 2.0),
        "client.metrics",
    );

    let calls = |series: &Value| -> Vec<u64> {
        series
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["calls"].as_u64().unwrap())
            .collect()
    };
    insta::assert_json_snapshot!("edge_frontend_backend_2m", detail);
    assert_eq!(calls(&edge["series"]), [0, 60]);
    assert_eq!(calls(&edge["server"]["series"]), [0, 60]);
    assert_eq!(calls(&edge["client"]["series"]), [0, 60]);
    assert_eq!(edge["client"]["series"][1]["mtls_calls"], json!(0));
    assert_eq!(edge["server"]["series"][1]["mtls_calls"], json!(60));
    assert_eq!(edge["series"][1]["cpm"], json!(60.0));

    // Seen only from the client side: the server side is null.
    let payments = api
        .ok("/api/v1/edges?source=shop/frontend&target=payments&protocol=http")
        .await;
    let edge = &payments["edges"][0];
    assert_eq!(edge["detected_by"], json!("client"));
    assert_eq!(edge["server"], Value::Null);
    assert_eq!(edge["client"]["metrics"]["calls"], json!(30));
    assert_eq!(edge["series"].as_array().unwrap().len(), 15);

    // The ingress edge: the server side's 10 errors win over the client's 12.
    let ingress = api
        .ok("/api/v1/edges?source=shop/ingress&target=shop%2Ffrontend")
        .await;
    let edge = &ingress["edges"][0];
    assert_eq!(edge["metrics"]["errors"], json!(10));
    assert_eq!(edge["server"]["metrics"]["calls"], json!(150));
    assert_eq!(edge["client"]["metrics"]["calls"], json!(100));
    assert_eq!(edge["client"]["metrics"]["errors"], json!(12));
}

#[tokio::test]
async fn health_and_metrics() {
    let api = Api::new().await;
    assert_eq!(api.ok("/healthz").await, json!({"status": "ok"}));
    let (status, content_type, body) = api.get_raw("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(body, "# TYPE meshscope_test counter\nmeshscope_test 1\n");
}

#[tokio::test]
async fn the_web_ui_is_served_beside_the_api() {
    let api = Api::new().await;
    let page = Request::get("/").body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(page).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
    let (_, content_type, body) = api.get_raw("/").await;
    assert_eq!(content_type, "text/html; charset=utf-8");
    let html = String::from_utf8(body.to_vec()).unwrap();
    // The page names its hashed bundle; that bundle is served as script, cached for good.
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("index.html loads a script");
    assert!(script.starts_with("/assets/"), "{script}");
    let request = Request::get(script).body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript");
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );

    // Routes of the app itself get the page; a missing bundle file and API paths do not.
    let (status, content_type, _) = api.get_raw("/services/shop/backend").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    let (status, _, _) = api.get_raw("/assets/missing-0000.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, json) = api.get("/api/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"], "no such API route");
}
