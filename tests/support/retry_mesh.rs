//! The retry mesh of real Envoy 1.39.3: a hop with a retry policy, seen from both sides,
//! an application that forges the caller-cluster header on that mTLS hop, a hop to a
//! service without a proxy and a caller without one; requests paired across the two sides
//! by the request id Envoy sets and forwards. Used by `e2e_retries` (one meshscope) and
//! `scale_out_envoy` (two collectors behind an Envoy load balancer, and a query node).
//!
//!  client -> front proxy (127.0.0.21) -> caller app (127.0.0.22:18380)
//!            caller app -> caller sidecar (127.0.0.22, retry_on 5xx, num_retries 2)
//!                       -mTLS-> callee sidecar (127.0.0.23) -> callee app
//!            caller app -> caller sidecar -> plain app (127.0.0.24:18384, no proxy)
//!  client -> callee sidecar's plain listener (127.0.0.23:18303) -> callee app
//!
//! The callee app fails by rule: a request whose number is divisible by 10 always fails
//! with 503; one divisible by 3 (and not by 10) fails its first attempt with 503 and
//! succeeds after. The caller's proxy logs each request once (with its attempt count), the
//! callee's each attempt; the edge must show both, and the retries, exactly as the rules
//! give them. Some requests carry a caller-cluster header naming the front proxy's service:
//! the certificate names the caller all the same, and the conflicts are counted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::certs::TestCa;
use super::istio_mesh::envoy_binary;
use super::{Meshscope, Proc, edges, start_envoy};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get as route_get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Requests numbered 1..=REQUESTS go through the retry hop with an honest header.
pub(crate) const REQUESTS: u64 = 30;
/// Requests with a forged header, numbered so that none fails (not divisible by 3 or 10).
pub(crate) const FORGED: [u64; 5] = [101, 103, 107, 109, 113];
/// What the retry policy allows: the first attempt and `num_retries: 2`.
pub(crate) const MAX_ATTEMPTS: u64 = 3;
pub(crate) const HEADER: &str = "x-envoy-downstream-service-cluster";
/// Requests through the caller's sidecar to the plain app, which has no proxy.
pub(crate) const PLAIN: u64 = 7;
/// Requests the test sends straight to the callee's sidecar, without a proxy of its own;
/// numbered so that none fails.
pub(crate) const DIRECT: [u64; 4] = [1001, 1003, 1007, 1009];
/// A later batch's request numbers are the first batch's plus this times the batch's
/// index: a multiple of 30, so that each number fails by the rules as the first batch's
/// does, and above every number of the first batch.
pub(crate) const BATCH_OFFSET: u64 = 3_000;

fn envoy_config(name: &str, certs: &Path, collector_port: u16) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/envoy");
    let cluster = std::fs::read_to_string(dir.join("_meshscope_cluster_plain.yaml")).unwrap();
    std::fs::read_to_string(dir.join(format!("{name}.yaml")))
        .unwrap()
        .replace("{{MESHSCOPE_CLUSTER}}", &cluster)
        .replace("{{CERTS}}", &certs.display().to_string())
        .replace("{{COLLECTOR_PORT}}", &collector_port.to_string())
}

/// How many attempts of request `n` fail before one succeeds, by the callee app's rules;
/// `None` when every attempt fails.
fn failing_attempts(n: u64) -> Option<u64> {
    if n.is_multiple_of(10) {
        None
    } else if n.is_multiple_of(3) {
        Some(1)
    } else {
        Some(0)
    }
}

/// The callee app: answers `/item/{n}` by the rules of [`failing_attempts`], counting the
/// attempts of each request number.
fn callee_app() -> Router {
    let attempts: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    Router::new()
        .route(
            "/item/{n}",
            route_get(
                |State(attempts): State<Arc<Mutex<HashMap<u64, u64>>>>,
                 UrlPath(n): UrlPath<u64>| async move {
                    let attempt = {
                        let mut attempts = attempts.lock().unwrap();
                        let seen = attempts.entry(n).or_default();
                        *seen += 1;
                        *seen
                    };
                    match failing_attempts(n) {
                        Some(failing) if attempt > failing => StatusCode::OK,
                        _ => StatusCode::SERVICE_UNAVAILABLE,
                    }
                },
            ),
        )
        .with_state(attempts)
}

/// The plain app, which has no proxy: answers `/plain/{n}` with 200.
fn plain_app() -> Router {
    Router::new().route("/plain/{n}", route_get(|| async { StatusCode::OK }))
}

/// GETs `path` through the caller's sidecar and answers with the status it got; passes
/// the request id on when given one.
async fn through_caller_sidecar(
    path: String,
    host: &str,
    claimed: String,
    request_id: Option<String>,
) -> StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut request = hyper::Request::get(format!("http://127.0.0.22:18301{path}"))
        .header("host", host)
        .header(HEADER, claimed);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let request = request.body(Empty::new()).unwrap();
    match client.request(request).await {
        Ok(response) => {
            let status = response.status();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

/// The caller app: passes `/item/{n}` on to the callee through its sidecar, with the
/// caller-cluster header it was asked to send (`x-claim`) and the request id it was
/// given, and `/plain/{n}` on to the plain app without the request id; answers with the
/// status it got.
fn caller_app() -> Router {
    Router::new()
        .route(
            "/plain/{n}",
            route_get(|UrlPath(n): UrlPath<u64>| async move {
                through_caller_sidecar(format!("/plain/{n}"), "plain", "caller".into(), None).await
            }),
        )
        .route(
            "/item/{n}",
            route_get(|UrlPath(n): UrlPath<u64>, headers: HeaderMap| async move {
                let claimed = headers
                    .get("x-claim")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("caller")
                    .to_string();
                let request_id = headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                through_caller_sidecar(format!("/item/{n}"), "callee", claimed, request_id).await
            }),
        )
}

/// GET through the front proxy, optionally asking the caller app to claim another name.
async fn send(n: u64, claim: Option<&str>) -> u16 {
    get(format!("http://127.0.0.21:18300/item/{n}"), claim).await
}

/// GET `url`, optionally with an `x-claim` header; the status.
async fn get(url: String, claim: Option<&str>) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut request = hyper::Request::get(url);
    if let Some(claim) = claim {
        request = request.header("x-claim", claim);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// The figures the rules give for a set of request numbers: (client calls, client
/// errors, server attempts, server errors, retries).
fn expected(numbers: impl Iterator<Item = u64>) -> (u64, u64, u64, u64, u64) {
    let (mut calls, mut errors, mut attempts, mut attempt_errors, mut retries) = (0, 0, 0, 0, 0);
    for n in numbers {
        calls += 1;
        let (made, failed) = match failing_attempts(n) {
            None => (MAX_ATTEMPTS, MAX_ATTEMPTS),
            Some(failing) => (failing + 1, failing),
        };
        attempts += made;
        attempt_errors += failed;
        retries += made - 1;
        errors += u64::from(failing_attempts(n).is_none());
    }
    (calls, errors, attempts, attempt_errors, retries)
}

/// The mesh while it runs: its proxies, killed when it is dropped.
pub(crate) struct RetryMesh {
    pub(crate) proxies: Vec<Proc>,
}

impl RetryMesh {
    /// Starts the three apps and the three proxies, with certificates and configs in `dir`;
    /// the proxies send their access logs to 127.0.0.1:`collector_port`.
    pub(crate) async fn start(dir: &Path, collector_port: u16) -> RetryMesh {
        let envoy = envoy_binary();
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let ca = TestCa::new(&certs, "ca");
        for name in ["caller", "callee"] {
            ca.issue(
                name,
                &[&format!("URI:spiffe://cluster.local/ns/shop/sa/{name}")],
            );
        }
        for (addr, app) in [
            ("127.0.0.22:18380", caller_app()),
            ("127.0.0.23:18383", callee_app()),
            ("127.0.0.24:18384", plain_app()),
        ] {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        let mut proxies = Vec::new();
        for (name, admin) in [
            ("retry_callee", "127.0.0.23:19000"),
            ("retry_caller", "127.0.0.22:19000"),
            ("retry_front", "127.0.0.21:19000"),
        ] {
            let config = dir.join(format!("{name}.yaml"));
            std::fs::write(&config, envoy_config(name, &certs, collector_port)).unwrap();
            proxies.push(start_envoy(&envoy, name, &config, admin, dir).await);
        }

        RetryMesh { proxies }
    }

    /// Sends batch `batch` (0 first) of the test's traffic, one request at a time, and
    /// checks each answer.
    pub(crate) async fn send_traffic(&self, batch: u64) {
        let offset = batch * BATCH_OFFSET;
        // One request at a time, so that every attempt count is the rules' own.
        for n in (1..=REQUESTS).map(|n| n + offset) {
            let want = if failing_attempts(n).is_none() {
                503
            } else {
                200
            };
            assert_eq!(send(n, None).await, want, "request {n}");
        }
        // The front proxy's service is a real reporter by now: a header naming it would have
        // moved these calls onto a front -> callee edge when the header was believed first.
        for n in FORGED.map(|n| n + offset) {
            assert_eq!(send(n, Some("front")).await, 200, "forged request {n}");
        }

        for n in (1..=PLAIN).map(|n| n + offset) {
            let url = format!("http://127.0.0.21:18300/plain/{n}");
            assert_eq!(get(url, None).await, 200, "plain request {n}");
        }
        for n in DIRECT.map(|n| n + offset) {
            let url = format!("http://127.0.0.23:18303/item/{n}");
            assert_eq!(get(url, None).await, 200, "direct request {n}");
        }
    }
}

/// Checks what `node` shows of the mesh's traffic against the figures the apps' rules
/// give: the retried hop's both sides, retries, pairing, conflicts and response flags, the
/// one-sided hops, the instance pairs and the endpoint dependencies, after `batches`
/// batches of traffic.
pub(crate) async fn check_figures(node: &Meshscope, mesh: &RetryMesh, batches: u64) {
    let numbers = (0..batches).flat_map(|batch| {
        (1..=REQUESTS)
            .chain(FORGED)
            .map(move |n| n + batch * BATCH_OFFSET)
    });
    let (calls, errors, attempts, attempt_errors, retries) = expected(numbers);
    // For N = 30 and the five forged ones: 35 requests, 3 failed; 50 attempts, 18 failed;
    // 15 retries, each batch.
    assert_eq!(
        (calls, errors, attempts, attempt_errors, retries),
        (
            35 * batches,
            3 * batches,
            50 * batches,
            18 * batches,
            15 * batches
        )
    );
    let forged = FORGED.len() as u64 * batches;
    let plain_calls = PLAIN * batches;
    let direct_calls = DIRECT.len() as u64 * batches;

    let deadline = Instant::now() + Duration::from_secs(30);
    let edge = loop {
        let topology = node.json("/api/v1/topology?window=15m").await;
        let got = edges(&topology);
        let key = (
            "shop/caller".to_string(),
            "shop/callee".to_string(),
            "http".to_string(),
        );
        // Pairing settles a few seconds after the last entry of a request came in.
        let settled = got.get(&key).filter(|e| {
            e["client"]["calls"] == calls
                && e["server"]["calls"] == attempts
                && e["identity_conflicts"] == forged
                && e["pairing"]["paired"] == calls
        });
        if let Some(edge) = settled {
            // Nothing reached the callee in the front proxy's name.
            let to_callee: Vec<&(String, String, String)> = got
                .keys()
                .filter(|(s, t, _)| t == "shop/callee" && s == "shop/front")
                .collect();
            assert!(to_callee.is_empty(), "{topology:#}");
            break edge.clone();
        }
        if Instant::now() > deadline {
            let logs: String = mesh
                .proxies
                .iter()
                .map(|p| format!("--- {}\n{}", p.name, p.log_text()))
                .collect();
            panic!(
                "the edge never settled\ngot:\n{}\nmeshscope log:\n{}\n{logs}",
                serde_json::to_string_pretty(&topology).unwrap(),
                node.proc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(edge["client"]["calls"], calls, "{edge:#}");
    assert_eq!(edge["client"]["errors"], errors, "{edge:#}");
    assert_eq!(edge["server"]["calls"], attempts, "{edge:#}");
    assert_eq!(edge["server"]["errors"], attempt_errors, "{edge:#}");
    assert_eq!(edge["retries"], retries, "{edge:#}");
    assert_eq!(edge["identity_conflicts"], forged, "{edge:#}");
    // `metrics` is as before: the server side, which reported every minute.
    assert_eq!(edge["detected_by"], "server", "{edge:#}");
    assert_eq!(edge["metrics"]["calls"], attempts, "{edge:#}");
    assert_eq!(edge["mtls"], true, "{edge:#}");
    // Every request reached the callee at least once: all are paired, none one-sided.
    // The requests made in one attempt (neither divisible by 3 nor by 10) give the mesh's
    // own cost, which on loopback is well under a second and never negative.
    assert_eq!(edge["pairing"]["client_only"], 0, "{edge:#}");
    assert_eq!(edge["pairing"]["server_only"], 0, "{edge:#}");
    for q in ["overhead_p50_ms", "overhead_p99_ms"] {
        let overhead = edge["pairing"][q].as_f64().unwrap_or(-1.0);
        assert!((0.0..1000.0).contains(&overhead), "{q}: {edge:#}");
    }
    // The requests that failed every attempt ran out of retries: URX on the caller's side,
    // no flag on the callee's (its app answered each attempt itself).
    assert_eq!(
        edge["client"]["response_flags"],
        serde_json::json!({"URX": errors}),
        "{edge:#}"
    );
    assert!(edge["server"].get("response_flags").is_none(), "{edge:#}");

    // The hop to the plain app, which has no proxy: every request is the caller's alone.
    let plain = got_edge(
        node,
        |(s, t, _)| s == "shop/caller" && t != "shop/callee",
        |e| e["pairing"]["client_only"] == plain_calls,
    )
    .await;
    assert_eq!(plain["client"]["calls"], plain_calls, "{plain:#}");
    assert_eq!(plain["pairing"]["client_only"], plain_calls, "{plain:#}");
    assert_eq!(plain["pairing"]["paired"], 0, "{plain:#}");
    assert_eq!(plain["pairing"]["server_only"], 0, "{plain:#}");
    assert!(plain["pairing"]["overhead_p50_ms"].is_null(), "{plain:#}");
    // The requests sent straight to the callee's sidecar: the callee's alone.
    let direct = got_edge(
        node,
        |(s, t, _)| s != "shop/caller" && t == "shop/callee",
        |e| e["pairing"]["server_only"] == direct_calls,
    )
    .await;
    assert_eq!(direct["server"]["calls"], direct_calls, "{direct:#}");
    assert_eq!(direct["pairing"]["server_only"], direct_calls, "{direct:#}");
    assert_eq!(direct["pairing"]["paired"], 0, "{direct:#}");
    assert_eq!(direct["pairing"]["client_only"], 0, "{direct:#}");

    // The edge's own page says the same.
    let detail = node
        .json("/api/v1/edges?source=shop/caller&target=shop/callee&window=15m")
        .await;
    let detail = &detail["edges"][0];
    assert_eq!(detail["client"]["calls"], calls, "{detail:#}");
    assert_eq!(detail["client"]["errors"], errors, "{detail:#}");
    assert_eq!(detail["client"]["metrics"]["calls"], calls, "{detail:#}");
    assert_eq!(detail["server"]["calls"], attempts, "{detail:#}");
    assert_eq!(detail["server"]["errors"], attempt_errors, "{detail:#}");
    assert_eq!(detail["retries"], retries, "{detail:#}");
    assert_eq!(detail["identity_conflicts"], forged, "{detail:#}");
    assert_eq!(detail["pairing"]["paired"], calls, "{detail:#}");
    assert_eq!(
        detail["client"]["response_flags"],
        serde_json::json!({"URX": errors}),
        "{detail:#}"
    );

    // Between the instances: the caller's proxy (caller-1) logged each request once, the
    // callee's (callee-1) each attempt, as on the edge; the direct requests' caller has no
    // proxy, so its instance is not known.
    let pairs = wait_for_json(
        node,
        "/api/v1/services/shop%2Fcallee/instance-pairs?window=15m",
        |p| p["pairs"][0]["pairing"]["paired"] == calls,
    )
    .await;
    let pairs = pairs["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "{pairs:#?}");
    let (meshed, direct_pair) = (&pairs[0], &pairs[1]);
    assert_eq!(
        (
            &meshed["source"],
            &meshed["source_instance"],
            &meshed["target"],
            &meshed["target_instance"]
        ),
        (
            &"shop/caller".into(),
            &"caller-1".into(),
            &"shop/callee".into(),
            &"callee-1".into()
        ),
        "{meshed:#}"
    );
    assert_eq!(meshed["client"]["calls"], calls, "{meshed:#}");
    assert_eq!(meshed["client"]["errors"], errors, "{meshed:#}");
    assert_eq!(meshed["server"]["calls"], attempts, "{meshed:#}");
    assert_eq!(meshed["server"]["errors"], attempt_errors, "{meshed:#}");
    assert_eq!(meshed["retries"], retries, "{meshed:#}");
    assert_eq!(meshed["pairing"]["client_only"], 0, "{meshed:#}");
    assert_eq!(meshed["pairing"]["server_only"], 0, "{meshed:#}");
    assert_eq!(
        direct_pair["source_instance"], "{unknown}",
        "{direct_pair:#}"
    );
    assert_eq!(
        direct_pair["target_instance"], "callee-1",
        "{direct_pair:#}"
    );
    assert_eq!(
        direct_pair["server"]["calls"], direct_calls,
        "{direct_pair:#}"
    );
    assert_eq!(
        direct_pair["pairing"]["server_only"], direct_calls,
        "{direct_pair:#}"
    );
    assert!(direct_pair.get("client").is_none(), "{direct_pair:#}");

    // The caller app passes the request id on for `/item/{n}`: its one inbound endpoint
    // leads to the callee's, once per request, failed where every attempt failed, as the
    // caller's proxy logged it. It does not for `/plain/{n}`: nothing known there.
    let item = "GET /item/{id}";
    let caller_item = format!(
        "/api/v1/services/shop%2Fcaller/endpoints/{}/dependencies?window=15m",
        encode(item)
    );
    let deps = wait_for_json(node, &caller_item, |d| {
        d["dependencies"][0]["calls"] == calls
    })
    .await;
    assert_eq!(deps["service"], "shop/caller", "{deps:#}");
    assert_eq!(deps["endpoint"], item, "{deps:#}");
    let found = &deps["dependencies"];
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{deps:#}");
    assert_eq!(found[0]["service"], "shop/callee", "{deps:#}");
    assert_eq!(found[0]["endpoint"], item, "{deps:#}");
    assert_eq!(found[0]["calls"], calls, "{deps:#}");
    assert_eq!(found[0]["errors"], errors, "{deps:#}");
    assert!(found[0]["p50_ms"].as_f64().is_some(), "{deps:#}");
    // Seen from the callee's endpoint: the caller's endpoint led to it.
    let callee_item = format!(
        "/api/v1/services/shop%2Fcallee/endpoints/{}/dependencies?window=15m",
        encode(item)
    );
    let deps = node.json(&callee_item).await;
    assert_eq!(deps["dependencies"], serde_json::json!([]), "{deps:#}");
    let callers = &deps["callers"];
    assert_eq!(callers.as_array().map(Vec::len), Some(1), "{deps:#}");
    assert_eq!(callers[0]["service"], "shop/caller", "{deps:#}");
    assert_eq!(callers[0]["endpoint"], item, "{deps:#}");
    assert_eq!(callers[0]["calls"], calls, "{deps:#}");
    let plain_deps = node
        .json(&format!(
            "/api/v1/services/shop%2Fcaller/endpoints/{}/dependencies?window=15m",
            encode("GET /plain/{id}")
        ))
        .await;
    assert_eq!(
        plain_deps["dependencies"],
        serde_json::json!([]),
        "{plain_deps:#}"
    );
}

/// `text` percent-encoded as one path segment.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The JSON at `path` once `ready` holds for it; panics with the last answer after 30 s.
async fn wait_for_json(
    server: &Meshscope,
    path: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = server.json(path).await;
        if ready(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there:\n{got:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The one edge of the map that `pick` selects, once `ready` holds for it (pairing settles
/// a few seconds after a request's last entry came in); panics with the map after 30 s.
async fn got_edge(
    server: &Meshscope,
    pick: impl Fn(&(String, String, String)) -> bool,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topology = server.json("/api/v1/topology?window=15m").await;
        let got = edges(&topology);
        let picked: Vec<_> = got.iter().filter(|(key, _)| pick(key)).collect();
        if let [(_, edge)] = picked[..]
            && ready(edge)
        {
            return edge.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the edge never settled:\n{topology:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
