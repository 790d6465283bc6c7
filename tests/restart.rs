//! A restart keeps what was stored: a real `meshscope serve` fed by the simulator is
//! stopped with SIGTERM (which writes the minutes still open) and started again on the same
//! data directory; the topology, the services and SQL then answer exactly as before.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::simulated::{EdgeName, EdgeTruth, shown_edges, simulate_expected};
use support::{Meshscope, edges, meshscope_sql};

const EDGE_TOTALS: &str = "SELECT source_name, target_name, protocol, side, \
                           sum(calls) AS calls, sum(errors) AS errors \
                           FROM edge_minute GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";

type EdgeFigures = BTreeMap<EdgeName, EdgeTruth>;

/// The simulator's own account of what it sent, per edge.
fn simulate(server: &Meshscope) -> EdgeFigures {
    simulate_expected(
        server.grpc,
        &[
            "--services",
            "8",
            "--rate",
            "40",
            "--duration",
            "2",
            "--seed",
            "5",
        ],
    )
    .edges
}

/// Whether pairing accounts for every HTTP request of the map: with no retries, each entry
/// the caller's proxy logged is paired or client only, and each the callee's proxy logged
/// is paired or server only.
fn every_request_settled(topology: &Value) -> bool {
    edges(topology).values().all(|edge| {
        if edge["protocol"] != "http" || edge["retries"] != 0 {
            return true;
        }
        let calls = |side: &str| edge[side]["calls"].as_u64().unwrap_or(0);
        let pairing = |name: &str| edge["pairing"][name].as_u64().unwrap();
        pairing("paired") + pairing("client_only") == calls("client")
            && pairing("paired") + pairing("server_only") == calls("server")
    })
}

/// Nodes and edges with their figures; the window's bounds move with the clock.
fn graph(topology: &Value) -> (Value, Value) {
    (topology["nodes"].clone(), topology["edges"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_calls_errors_and_latencies() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data").display().to_string();
    let mut first = Meshscope::start_as("meshscope-first", dir.path(), &[]).await;
    let want = simulate(&first);
    assert!(want.len() >= 6, "a mesh worth restarting: {want:?}");

    // Entries to services without a sidecar wait up to 2 s for their peer's report, and
    // requests up to 5 s for their other side's entry (pairing by request id). A request
    // settled is counted in the live minute's rows, which reads see at the next publish:
    // the map is taken once nothing waits and every request is accounted for.
    let deadline = Instant::now() + Duration::from_secs(20);
    let topology = loop {
        let metrics = first.text("/metrics").await;
        let none_waiting = metrics
            .lines()
            .any(|l| l == "meshscope_request_pairs_waiting 0");
        let topology = first.json("/api/v1/topology?window=15m").await;
        if shown_edges(&topology) == want && none_waiting && every_request_settled(&topology) {
            break topology;
        }
        assert!(
            Instant::now() < deadline,
            "the topology never matched what was sent\nwant: {want:#?}\ngot: {:#?}",
            shown_edges(&topology)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let services = first.json("/api/v1/services?window=15m").await;
    let url = format!("http://{}", first.http);
    let (code, sql_before, err) = meshscope_sql(&["--server", &url, EDGE_TOTALS]);
    assert_eq!(code, 0, "{err}");
    assert!(sql_before.lines().count() > want.len(), "{sql_before}");

    let status = first.proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", first.proc.log_text());
    assert!(
        first
            .proc
            .log_text()
            .contains("unclosed minutes written at shutdown"),
        "{}",
        first.proc.log_text()
    );

    // With no server running, the files alone hold every call.
    let (code, sql_offline, err) = meshscope_sql(&["--data-dir", &data_dir, EDGE_TOTALS]);
    assert_eq!(
        (code, sql_offline.as_str()),
        (0, sql_before.as_str()),
        "{err}"
    );

    let second = Meshscope::start_as("meshscope-second", dir.path(), &[]).await;
    let reopened = second.json("/api/v1/topology?window=15m").await;
    assert_eq!(shown_edges(&reopened), want);
    assert_eq!(graph(&reopened), graph(&topology));
    let services_after = second.json("/api/v1/services?window=15m").await;
    assert_eq!(services_after["services"], services["services"]);
    let url = format!("http://{}", second.http);
    let (code, sql_after, err) = meshscope_sql(&["--server", &url, EDGE_TOTALS]);
    assert_eq!(
        (code, sql_after.as_str()),
        (0, sql_before.as_str()),
        "{err}"
    );
}
