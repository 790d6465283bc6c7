//! The API tests' harness and checks: a router over a store holding the mesh
//! ([`crate::mesh`]) at a fixed clock, and comparisons of JSON answers with the figures
//! that follow from the rows fed in.

use std::sync::Arc;

pub(crate) use axum::body::Body;
pub(crate) use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use meshscope_query::{AppState, router};
use meshscope_storage::clock::ManualClock;
use meshscope_storage::{Store, StoreConfig};
pub(crate) use serde_json::{Value, json};
pub(crate) use tower::ServiceExt;

use crate::mesh::{NOW, closed_rows, open_rows};

pub(crate) struct Api {
    pub(crate) router: axum::Router,
    _data_dir: tempfile::TempDir,
}

impl Api {
    pub(crate) async fn new() -> Self {
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

    pub(crate) async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.get_raw(uri).await;
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {body:?}"));
        (status, json)
    }

    pub(crate) async fn get_raw(&self, uri: &str) -> (StatusCode, String, axum::body::Bytes) {
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

    pub(crate) async fn ok(&self, uri: &str) -> Value {
        let (status, json) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {json}");
        json
    }
}

/// Compares JSON exactly, except `*_ms` latencies, which must be within the sketch's 1%
/// (plus rounding) of the true value.
pub(crate) fn assert_json_matches(actual: &Value, expected: &Value, path: &str) {
    // The response went through text; so must the expectation, or serde_json's float
    // parsing (one ulp off at times) would fail exact comparisons.
    let expected: Value = serde_json::from_str(&expected.to_string()).unwrap();
    assert_json_matches_parsed(actual, &expected, path);
}

pub(crate) fn assert_json_matches_parsed(actual: &Value, expected: &Value, path: &str) {
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

pub(crate) fn node_metrics(
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

pub(crate) fn edge_metrics(
    calls: u64,
    errors: u64,
    errors_4xx: u64,
    latency: f64,
    minutes: f64,
) -> Value {
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
pub(crate) fn same_figure(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= expected.abs() * 1e-12
}

/// Whether a latency is within the sketch's 1% (plus rounding) of the true value.
pub(crate) fn within_sketch_error(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= expected * 0.0101 + 0.001
}

pub(crate) fn optional_figure(value: &Value) -> Option<f64> {
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

pub(crate) fn assert_node_figures(nodes: &Value, expected: &[NodeFigures]) {
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

pub(crate) fn assert_edge_figures(edges: &Value, expected: &[EdgeFigures]) {
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
pub(crate) const WINDOW_NODES: &[NodeFigures] = &[
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
pub(crate) const WINDOW_EDGES: &[EdgeFigures] = &[
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

pub(crate) fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect()
}

pub(crate) fn edge_pairs(list: &Value) -> Vec<String> {
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
