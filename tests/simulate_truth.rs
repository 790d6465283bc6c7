//! The simulator knows the truth of what it sent: meshscope must report exactly that
//! topology (nodes, edges, calls, errors, and which side detected each edge).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Meshscope, edges};

#[tokio::test(flavor = "multi_thread")]
async fn meshscope_reports_exactly_what_the_simulator_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Meshscope::start(dir.path(), &[]).await;
    let output = Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .args(["simulate", "--target"])
        .arg(format!("http://{}", server.grpc))
        .args([
            "--services",
            "12",
            "--rate",
            "40",
            "--duration",
            "4",
            "--seed",
            "11",
            "--print-expected",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let want: BTreeMap<_, _> = expected["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["source"].as_str().unwrap().to_string(),
                    e["target"].as_str().unwrap().to_string(),
                    e["protocol"].as_str().unwrap().to_string(),
                ),
                (
                    e["calls"].as_u64().unwrap(),
                    e["errors"].as_u64().unwrap(),
                    e["detected_by"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert!(want.len() >= 12, "a mesh worth testing: {want:?}");

    // Entries to services without a sidecar wait up to 2 s for evidence; poll until the
    // figures settle, and fail with the whole picture if they never match.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let topology = server.json("/api/v1/topology?window=15m").await;
        let got: BTreeMap<_, _> = edges(&topology)
            .into_iter()
            .map(|(k, e)| {
                let m = &e["metrics"];
                (
                    k,
                    (
                        m["calls"].as_u64().unwrap(),
                        m["errors"].as_u64().unwrap(),
                        e["detected_by"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        let mut nodes: Vec<String> = topology["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        nodes.sort();
        let want_nodes: Vec<String> = expected["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        if got == want && nodes == want_nodes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "topology never matched the truth\nwant edges: {want:#?}\ngot edges: {got:#?}\nwant nodes: {want_nodes:?}\ngot nodes: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
