//! The captured shop-mesh streams replayed into a node, and the graph they give, counted
//! from the capture's own entries (`tests/fixtures/shop-mesh/expected-counts.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use super::{Meshscope, edges};

/// The shop-mesh capture's directory.
pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop-mesh")
}

/// Replays the whole capture into the gRPC port `grpc`.
pub(crate) fn replay(grpc: std::net::SocketAddr) {
    let fixtures = fixtures();
    let output = Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .arg("replay")
        .arg("--target")
        .arg(format!("http://{grpc}"))
        .arg(fixtures.join("als_http.bin"))
        .arg(fixtures.join("als_tcp.bin"))
        .arg("--metrics")
        .arg(fixtures.join("metrics.bin"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub(crate) type Graph = BTreeMap<(String, String, String), (u64, u64)>;

/// Per edge: calls and errors, over the last 15 minutes.
pub(crate) async fn graph(node: &Meshscope) -> Graph {
    let topology = node.json("/api/v1/topology?window=15m").await;
    edges(&topology)
        .into_iter()
        .map(|(key, edge)| {
            let metrics = &edge["metrics"];
            (
                key,
                (
                    metrics["calls"].as_u64().unwrap(),
                    metrics["errors"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Calls and errors of each edge in the capture, counted from its own entries
/// (`expected-counts.json`): the server side's count where the callee reported, else the
/// client's.
pub(crate) fn captured_edges() -> BTreeMap<(String, String), (u64, u64)> {
    let text = std::fs::read_to_string(fixtures().join("expected-counts.json")).unwrap();
    let counts: serde_json::Value = serde_json::from_str(&text).unwrap();
    counts["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            let server = edge["server_side"].as_u64().unwrap();
            let figures = if server > 0 {
                (server, edge["server_errors"].as_u64().unwrap())
            } else {
                (
                    edge["client_side"].as_u64().unwrap(),
                    edge["client_errors"].as_u64().unwrap(),
                )
            };
            // The capture's proxies all declare the namespace `shop`; a caller without
            // a proxy is the virtual node `external`.
            let node = |name: &str| match name {
                "(external)" => "external".to_owned(),
                name => format!("shop/{name}"),
            };
            (
                (
                    node(edge["client"].as_str().unwrap()),
                    node(edge["server"].as_str().unwrap()),
                ),
                figures,
            )
        })
        .collect()
}
