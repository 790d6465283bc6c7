//! The simulator knows the truth of what it sent: meshscope must report exactly that
//! topology (nodes, edges, calls, errors, and which side detected each edge).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::simulated::simulate_expected;
use support::{Meshscope, edges};

#[tokio::test(flavor = "multi_thread")]
async fn meshscope_reports_exactly_what_the_simulator_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Meshscope::start(dir.path(), &[]).await;
    let sent = simulate_expected(
        server.grpc,
        &[
            "--services",
            "12",
            "--rate",
            "40",
            "--duration",
            // Past the first flush of proxy statistics (every 5 s): the simulator must
            // end those streams too, and stop.
            "7",
            "--seed",
            "11",
        ],
    );
    let (want, want_nodes) = (sent.edges, sent.nodes);
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
