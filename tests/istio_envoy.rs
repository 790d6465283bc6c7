//! meshscope fed by real Envoy proxies configured as Istio configures its sidecars from
//! deploy/istio/meshconfig.yaml (tests/envoy/istio_sidecar.yaml): the access log service
//! with Istio's log name and clusters, the metrics service sink as Istio's bootstrap writes
//! it, and the stats matcher built from the mesh config's proxyStatsMatcher. A known mix
//! of traffic goes through two sidecars; the map, the proxies and their per-cluster
//! statistics must show exactly that traffic.

mod support;

use std::time::{Duration, Instant};

use support::istio_mesh::{FAILED_CALLS, IstioMesh, NAMESPACE, OK_CALLS, REVIEWS_CLUSTER};
use support::{Meshscope, edges};

const CALLS: u64 = OK_CALLS + FAILED_CALLS;

/// The sum of one statistic's points for one cluster on one proxy.
async fn stat_sum(server: &Meshscope, proxy: &str, name: &str, cluster: &str) -> (f64, u64) {
    let metrics = server
        .json(&format!(
            "/api/v1/proxies/{proxy}/metrics?names={name}&window=15m"
        ))
        .await;
    let points: Vec<&serde_json::Value> = metrics["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name && s["cluster"] == cluster)
        .flat_map(|s| s["points"].as_array().unwrap().iter())
        .collect();
    let value = points.iter().filter_map(|p| p["value"].as_f64()).sum();
    let count = points.iter().filter_map(|p| p["count"].as_u64()).sum();
    (value, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn istio_configured_sidecars_show_their_calls_and_statistics() {
    let envoy = support::istio_mesh::envoy_binary();
    let dir = tempfile::tempdir().unwrap();
    let server = Meshscope::start(dir.path(), &[]).await;
    let mesh = IstioMesh::start(dir.path(), &envoy, 41, server.grpc).await;
    mesh.send_traffic().await;

    let productpage = format!("{NAMESPACE}/productpage");
    let reviews = format!("{NAMESPACE}/reviews");
    // The client has no sidecar: at productpage's inbound it is `unknown` (docs/identity.md).
    // Both hops carry every call, and the failures reviews answered.
    let want = [
        (
            "unknown".to_string(),
            productpage.clone(),
            CALLS,
            FAILED_CALLS,
        ),
        (productpage.clone(), reviews.clone(), CALLS, FAILED_CALLS),
    ];
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let topology = server.json("/api/v1/topology?window=15m").await;
        let got = edges(&topology);
        let settled = got.len() == want.len()
            && want.iter().all(|(source, target, calls, errors)| {
                got.get(&(source.clone(), target.clone(), "http".to_string()))
                    .is_some_and(|e| {
                        e["metrics"]["calls"] == *calls && e["metrics"]["errors"] == *errors
                    })
            });
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "topology never matched\nwant {want:#?}\ngot:\n{}\nmeshscope log:\n{}\n{}",
            serde_json::to_string_pretty(&topology).unwrap(),
            server.proc.log_text(),
            mesh.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Both sidecars stream their statistics, named by Istio's node metadata; the first
    // flush comes within Envoy's default interval, 5 s, which Istio leaves as it is.
    let mut want_proxies = vec![
        (
            mesh.productpage_proxy(),
            productpage.clone(),
            mesh.productpage_instance(),
            "up".to_string(),
        ),
        (
            mesh.reviews_proxy(),
            reviews.clone(),
            mesh.reviews_instance(),
            "up".to_string(),
        ),
    ];
    want_proxies.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = server.json("/api/v1/proxies").await;
        let mut seen: Vec<(String, String, String, String)> = listed["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let text = |key: &str| p[key].as_str().unwrap_or_default().to_string();
                (
                    text("id"),
                    text("service"),
                    text("instance"),
                    text("status"),
                )
            })
            .collect();
        seen.sort();
        if seen == want_proxies {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxies never matched: want {want_proxies:?}\n{listed}\n{}",
            mesh.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The per-cluster statistics the stats matcher keeps: productpage's calls to reviews,
    // their 5xx answers and their timings. Istio leaves the flush interval at Envoy's 5 s.
    let proxy = mesh.productpage_proxy();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (requests, _) = stat_sum(&server, &proxy, "upstream_rq_total", REVIEWS_CLUSTER).await;
        let (failures, _) = stat_sum(&server, &proxy, "upstream_rq_5xx", REVIEWS_CLUSTER).await;
        let (_, timed) = stat_sum(&server, &proxy, "upstream_rq_time", REVIEWS_CLUSTER).await;
        let got = (requests as u64, failures as u64, timed);
        if got == (CALLS, FAILED_CALLS, CALLS) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "productpage's statistics for {REVIEWS_CLUSTER} never matched: \
             got (requests, 5xx, timed) {got:?}, want {:?}\n{}",
            (CALLS, FAILED_CALLS, CALLS),
            mesh.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The edge's health comes from those statistics: one healthy host of one, its 5xx.
    let topology = server.json("/api/v1/topology?window=15m").await;
    let got = edges(&topology);
    let health =
        &got[&(productpage.clone(), reviews.clone(), "http".to_string())]["upstream_health"];
    assert_eq!(health["healthy"], 1, "{health}");
    assert_eq!(health["total"], 1, "{health}");
    assert_eq!(health["circuit_breaker_open"], false, "{health}");
    assert_eq!(health["errors_5xx"], FAILED_CALLS, "{health}");
    assert_eq!(health["clusters"], serde_json::json!([REVIEWS_CLUSTER]));
    assert_eq!(health["reported_by"], serde_json::json!([proxy]));
}
