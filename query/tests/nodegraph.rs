//! `GET /api/v1/topology?format=nodegraph`: Grafana's node graph frames over a real store
//! fed with a small known mesh, every figure worked out from the rows fed in.
//!
//! The mesh, all in the minute before the current one, read with `window=15m`:
//! ```text
//! external -> shop/ingress    200 calls,  3 failed (1.5 %: orange),  20 ms
//! shop/ingress -> shop/api    100 calls, 10 failed (10 %: red),       8 ms
//! shop/api -> shop/db (tcp)    40 connections, none failed,           2 ms
//! shop/api -> shop/cache      300 calls,  2 failed (0.67 %: green),   1 ms
//! ```
//! Each callee's own proxy reports the service row (`Server` side) with the same figures
//! as its incoming edge; `external` and `shop/db` report nothing (no calls of their own).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
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
const WINDOW_MINUTES: f64 = 15.0;

/// One callee: who calls it, over what, how often, how many failed, how long each took.
struct Call {
    source: ServiceRef,
    target: &'static str,
    protocol: Protocol,
    calls: u64,
    errors: u64,
    latency_ms: f64,
}

fn shop(name: &str) -> ServiceRef {
    ServiceRef::service("shop", name)
}

fn mesh() -> Vec<Call> {
    vec![
        Call {
            source: ServiceRef::virtual_node("external"),
            target: "ingress",
            protocol: Protocol::Http,
            calls: 200,
            errors: 3,
            latency_ms: 20.0,
        },
        Call {
            source: shop("ingress"),
            target: "api",
            protocol: Protocol::Http,
            calls: 100,
            errors: 10,
            latency_ms: 8.0,
        },
        Call {
            source: shop("api"),
            target: "db",
            protocol: Protocol::Tcp,
            calls: 40,
            errors: 0,
            latency_ms: 2.0,
        },
        Call {
            source: shop("api"),
            target: "cache",
            protocol: Protocol::Http,
            calls: 300,
            errors: 2,
            latency_ms: 1.0,
        },
    ]
}

fn figures(call: &Call) -> Metrics {
    let mut metrics = Metrics {
        calls: call.calls,
        errors: call.errors,
        ..Metrics::default()
    };
    for _ in 0..call.calls {
        metrics.latency.add(call.latency_ms);
    }
    metrics
}

fn rows() -> Vec<MetricRow> {
    let mut rows = Vec::new();
    for call in mesh() {
        rows.push(MetricRow {
            minute: PREVIOUS_MINUTE,
            key: RowKey::Edge {
                source: call.source.clone(),
                target: shop(call.target),
                protocol: call.protocol,
            },
            side: Side::Server,
            metrics: figures(&call),
        });
        // `db` has no sidecar of its own: only the edge knows it.
        if call.target != "db" {
            rows.push(MetricRow {
                minute: PREVIOUS_MINUTE,
                key: RowKey::Service {
                    service: shop(call.target),
                },
                side: Side::Server,
                metrics: figures(&call),
            });
        }
    }
    rows
}

async fn get(uri: &str) -> (StatusCode, Value) {
    let data_dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::in_dir(data_dir.path()))
        .await
        .unwrap();
    store.append_closed(rows()).await.unwrap();
    let state =
        AppState::new(Arc::new(store)).with_clock(Arc::new(ManualClock::new(NOW_MINUTE + 30_000)));
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Calls per minute as the API rounds them (to the thousandth).
fn per_minute(calls: u64) -> f64 {
    (calls as f64 / WINDOW_MINUTES * 1000.0).round() / 1000.0
}

fn assert_close(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {actual}"));
    // The latency sketch answers within 1 %, and the API rounds to the microsecond.
    assert!(
        (actual - expected).abs() <= expected * 0.0101 + 0.001,
        "{what}: {actual} is not {expected}"
    );
}

#[tokio::test]
async fn nodes_carry_rate_latency_error_arcs_and_health_color() {
    let (status, graph) = get("/api/v1/topology?window=15m&format=nodegraph").await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    assert_eq!(
        graph["start"],
        json!(NOW_MINUTE + MINUTE_MS - 15 * MINUTE_MS)
    );
    assert_eq!(graph["end"], json!(NOW_MINUTE + MINUTE_MS));

    let nodes = graph["nodes"].as_array().unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "external",
            "shop/api",
            "shop/cache",
            "shop/db",
            "shop/ingress"
        ]
    );
    for call in mesh() {
        let id = format!("shop/{}", call.target);
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        assert_eq!(node["title"], call.target, "{id}");
        assert_eq!(node["subtitle"], "shop", "{id}");
        if call.target == "db" {
            // Known only as an edge's end: no calls of its own, drawn grey.
            assert_eq!(node["mainstat"], json!(0.0));
            assert_eq!(node["secondarystat"], Value::Null);
            assert_eq!(node["arc__success"], json!(0.0));
            assert_eq!(node["arc__errors"], json!(0.0));
            assert_eq!(node["arc__no_calls"], json!(1.0));
            assert_eq!(node["color"], "gray");
            continue;
        }
        assert_eq!(node["mainstat"], json!(per_minute(call.calls)), "{id}");
        assert_close(&node["secondarystat"], call.latency_ms, &id);
        let error_share = call.errors as f64 / call.calls as f64;
        assert_eq!(node["arc__errors"], json!(error_share), "{id}");
        assert_eq!(node["arc__no_calls"], json!(0.0), "{id}");
        let color = match error_share {
            share if share >= 0.05 => "red",
            share if share >= 0.01 => "orange",
            _ => "green",
        };
        assert_eq!(node["color"], color, "{id}");
    }
    // The ingress at 1.5 % errors, the api at 10 %, the cache at 2 in 300.
    let color_of = |id: &str| nodes.iter().find(|n| n["id"] == id).unwrap()["color"].clone();
    assert_eq!(color_of("shop/ingress"), "orange");
    assert_eq!(color_of("shop/api"), "red");
    assert_eq!(color_of("shop/cache"), "green");
    assert_eq!(color_of("external"), "gray");
    for node in nodes {
        let sum: f64 = ["arc__success", "arc__errors", "arc__no_calls"]
            .iter()
            .map(|arc| node[*arc].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-12, "{node}: arcs add up to {sum}");
    }
}

#[tokio::test]
async fn edges_carry_rate_and_latency_with_unique_ids() {
    let (status, graph) = get("/api/v1/topology?window=15m&format=nodegraph").await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(edges.len(), mesh().len());
    for call in mesh() {
        let source = call.source.id();
        let target = format!("shop/{}", call.target);
        let protocol = call.protocol.as_str();
        let id = format!("{source}->{target}/{protocol}");
        let edge = edges
            .iter()
            .find(|e| e["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no edge {id}: {graph}"));
        assert_eq!(edge["source"], source.as_str());
        assert_eq!(edge["target"], target.as_str());
        assert_eq!(edge["mainstat"], json!(per_minute(call.calls)), "{id}");
        assert_close(&edge["secondarystat"], call.latency_ms, &id);
        assert_eq!(edge["detail__protocol"], protocol);
        assert_eq!(
            edge["detail__error_rate"],
            json!(call.errors as f64 / call.calls as f64)
        );
    }
}

#[tokio::test]
async fn the_map_parameters_apply_and_bad_formats_are_refused() {
    // Focused on the api with depth 1: its caller and its two callees.
    let (status, graph) =
        get("/api/v1/topology?window=15m&format=nodegraph&service=shop/api&depth=1").await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    let ids: Vec<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["shop/api", "shop/cache", "shop/db", "shop/ingress"]);
    assert_eq!(graph["edges"].as_array().unwrap().len(), 3);

    // A window that ends before the rows: empty frames.
    let (status, graph) = get(&format!(
        "/api/v1/topology?format=nodegraph&start={}&end={}",
        NOW_MINUTE - 60 * MINUTE_MS,
        NOW_MINUTE - 30 * MINUTE_MS
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    assert_eq!(graph["nodes"], json!([]));
    assert_eq!(graph["edges"], json!([]));

    let (status, body) = get("/api/v1/topology?format=table").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("invalid format"),
        "{body}"
    );
}
