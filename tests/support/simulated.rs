//! The simulator as the tests' source of truth: `meshscope simulate --print-expected`
//! sends a generated mesh's traffic and prints what it sent, edge by edge.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

/// An edge as (source, target, protocol).
pub(crate) type EdgeName = (String, String, String);

/// What an edge must show: calls, errors, and the side (`server` or `client`) that
/// detected it.
pub(crate) type EdgeTruth = (u64, u64, String);

/// What the simulator says it sent.
pub(crate) struct SentMesh {
    /// Every edge it sent calls on, with their figures.
    pub(crate) edges: BTreeMap<EdgeName, EdgeTruth>,
    /// The ids of every node the map must show, sorted.
    pub(crate) nodes: Vec<String>,
}

/// Runs `meshscope simulate` against `grpc` with `args` (services, rate, duration, seed)
/// and returns what it printed it sent. Panics with the simulator's stderr when it fails.
pub(crate) fn simulate_expected(grpc: SocketAddr, args: &[&str]) -> SentMesh {
    let output = Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["simulate", "--target"])
        .arg(format!("http://{grpc}"))
        .args(args)
        .arg("--print-expected")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let edges = expected["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap().to_string();
            (
                (text("source"), text("target"), text("protocol")),
                (
                    e["calls"].as_u64().unwrap(),
                    e["errors"].as_u64().unwrap(),
                    text("detected_by"),
                ),
            )
        })
        .collect();
    let mut nodes: Vec<String> = expected["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    SentMesh { edges, nodes }
}

/// What a map shows of each edge, in the shape the simulator reports what it sent: calls,
/// errors and the side that detected it, from the edge's `metrics` and `detected_by`.
pub(crate) fn shown_edges(topology: &serde_json::Value) -> BTreeMap<EdgeName, EdgeTruth> {
    super::edges(topology)
        .into_iter()
        .map(|(key, edge)| {
            let metrics = &edge["metrics"];
            (
                key,
                (
                    metrics["calls"].as_u64().unwrap(),
                    metrics["errors"].as_u64().unwrap(),
                    edge["detected_by"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}
