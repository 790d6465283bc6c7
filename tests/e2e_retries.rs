//! End to end with real Envoy 1.39.3 and one meshscope: the retry mesh of
//! `support::retry_mesh` (a hop with a retry policy seen from both sides, a forged
//! caller-cluster header on an mTLS hop, hops without a proxy on one side), its figures
//! checked against the apps' rules, and the identity conflicts counted in `/metrics`.

mod support;

use support::Meshscope;
use support::retry_mesh::{FORGED, RetryMesh, check_figures};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_hop_shows_both_sides_and_a_forged_header_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Meshscope::start(dir.path(), &[]).await;
    let mesh = RetryMesh::start(dir.path(), server.grpc.port()).await;
    mesh.send_traffic(0).await;
    check_figures(&server, &mesh, 1).await;

    // And /metrics counts the conflicts, with its help text.
    let forged = FORGED.len();
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains("# HELP meshscope_identity_conflicts_total"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("meshscope_identity_conflicts_total {forged}")),
        "{metrics}"
    );
}
