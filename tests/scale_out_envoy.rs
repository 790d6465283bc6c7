//! Scale-out with real Envoy in front: the retry mesh of `support::retry_mesh` sends its
//! access logs to an Envoy load balancer that hands each gRPC stream to one of two
//! collectors in turn; the collectors share an S3 bucket (moto's server mode, started
//! here) and find each other through it; a query node reads the bucket. The caller's and
//! the callee's reports, and the attempts of one request, reach different collectors, and
//! each collector passes every entry on to the collector that owns its request id. The
//! query node must show exactly what the apps' rules give, as `e2e_retries` checks on one
//! meshscope: both sides of the retried hop, the retries, the pairing, the identity
//! conflicts, the one-sided hops, the instance pairs and the endpoint dependencies.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::istio_mesh::envoy_binary;
use support::moto::{BUCKET, s3_env, start_moto};
use support::retry_mesh::{FORGED, RetryMesh, check_figures};
use support::{Meshscope, free_port, get, start_envoy};

/// The sum of a metric's samples in a Prometheus text exposition: every line of `name`
/// whose labels contain `labels` (empty for any).
fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A collector in the ring, its data in `dir/name`, on `grpc` (a free port when `None`).
async fn start_collector(
    name: &str,
    dir: &Path,
    store: &str,
    env: &[(&'static str, String)],
    grpc: Option<SocketAddr>,
) -> Meshscope {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let grpc = grpc.unwrap_or_else(|| {
        format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap()
    });
    let advertise = grpc.to_string();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Meshscope::start_on(
        name,
        &dir,
        grpc,
        &[
            "--role",
            "collector",
            "--store",
            store,
            "--writer-id",
            name,
            "--advertise-grpc",
            &advertise,
        ],
        &env,
    )
    .await
}

/// Waits until `collector` counts `members` collectors in its ring.
async fn wait_for_ring(collector: &Meshscope, members: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = collector.text("/metrics").await;
        if metric_sum(&metrics, "meshscope_collector_ring_members", "") == members {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the collectors never found each other:\n{metrics}\n{}",
            collector.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_collectors_behind_an_envoy_balancer_give_the_single_node_figures() {
    let envoy = envoy_binary();
    let dir = tempfile::tempdir().unwrap();
    let (_moto, port) = start_moto(dir.path()).await;
    let env = s3_env(port);
    let store = format!("s3://{BUCKET}/mesh");

    let collector_a = start_collector("collector-a", dir.path(), &store, &env, None).await;
    let mut collector_b = start_collector("collector-b", dir.path(), &store, &env, None).await;
    wait_for_ring(&collector_a, 2.0).await;
    wait_for_ring(&collector_b, 2.0).await;

    let mut query = start_query("query", dir.path(), &store, &env).await;

    let balancer_port = free_port("127.0.0.1");
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/envoy/collector_balancer.yaml"),
    )
    .unwrap()
    .replace("{{ADMIN_PORT}}", admin.rsplit(':').next().unwrap())
    .replace("{{LISTEN_PORT}}", &balancer_port.to_string())
    .replace("{{COLLECTOR_A}}", &collector_a.grpc.port().to_string())
    .replace("{{COLLECTOR_B}}", &collector_b.grpc.port().to_string());
    let config_path = dir.path().join("collector_balancer.yaml");
    std::fs::write(&config_path, config).unwrap();
    let _balancer = start_envoy(&envoy, "balancer", &config_path, &admin, dir.path()).await;

    let mesh = RetryMesh::start(dir.path(), balancer_port).await;
    mesh.send_traffic(0).await;
    check_figures(&query, &mesh, 1).await;

    // The balancer gave streams to both collectors.
    let (_, clusters) = get(&format!("http://{admin}/clusters")).await.unwrap();
    for collector in [&collector_a, &collector_b] {
        let streams = clusters
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!(
                    "collectors::127.0.0.1:{}::rq_total::",
                    collector.grpc.port()
                ))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            streams > 0,
            "no stream reached {}:\n{clusters}",
            collector.proc.name
        );
    }
    // Entries were passed on between them, none kept for want of their owner, and the
    // conflicts were counted once each, wherever their requests were owned.
    let a = collector_a.text("/metrics").await;
    let b = collector_b.text("/metrics").await;
    let both =
        |name: &str, labels: &str| metric_sum(&a, name, labels) + metric_sum(&b, name, labels);
    assert!(
        both("meshscope_forwarded_entries_total", "outcome=\"sent\"") > 0.0,
        "{a}\n{b}"
    );
    assert_eq!(
        both("meshscope_forwarded_entries_total", "outcome=\"kept\""),
        0.0,
        "{a}\n{b}"
    );
    assert_eq!(
        both("meshscope_identity_conflicts_total", ""),
        FORGED.len() as f64,
        "{a}\n{b}"
    );
    for (name, metrics) in [("collector-a", &a), ("collector-b", &b)] {
        assert!(
            metric_sum(metrics, "meshscope_als_entries_accepted_total", "") > 0.0,
            "{name} ingested nothing:\n{metrics}"
        );
    }

    // A collector dies mid-traffic. The balancer stops giving it streams, the proxies'
    // streams that were on it open again on the other, and the other keeps what it can no
    // longer pass on: a second batch is counted exactly, and the first one still is.
    let b_grpc = collector_b.grpc;
    kill(&mut collector_b.proc);
    wait_for_balancer(&admin, b_grpc.port(), "/failed_active_hc").await;
    mesh.send_traffic(1).await;
    check_figures(&query, &mesh, 2).await;
    let a = collector_a.text("/metrics").await;
    eprintln!(
        "collector-a while collector-b was down:\n{}",
        a.lines()
            .filter(|l| l.starts_with("meshscope_forwarded")
                || l.starts_with("meshscope_collector_ring"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        metric_sum(&a, "meshscope_forwarded_entries_total", "outcome=\"kept\"") > 0.0
            || metric_sum(&a, "meshscope_collector_ring_members", "") == 1.0,
        "{a}"
    );

    // It comes back on its data directory: what it had accepted comes back from its log,
    // once, and it takes its share again.
    let collector_b = start_collector("collector-b", dir.path(), &store, &env, Some(b_grpc)).await;
    wait_for_ring(&collector_b, 2.0).await;
    wait_for_ring(&collector_a, 2.0).await;
    wait_for_balancer(&admin, b_grpc.port(), "health_flags::healthy").await;
    // Its first publication of its open minutes replaces the one before it died.
    tokio::time::sleep(Duration::from_secs(3)).await;
    check_figures(&query, &mesh, 2).await;

    // A query node dies; another, started cold, answers the same.
    kill(&mut query.proc);
    let query = start_query("query-2", dir.path(), &store, &env).await;
    check_figures(&query, &mesh, 2).await;
}

/// A query node on the bucket, its data in `dir/name`.
async fn start_query(
    name: &str,
    dir: &Path,
    store: &str,
    env: &[(&'static str, String)],
) -> Meshscope {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Meshscope::start_with_env(name, &dir, &["--role", "query", "--store", store], &env).await
}

/// Kills a process as a crash would (SIGKILL) and waits for it.
fn kill(proc: &mut support::Proc) {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &proc.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    proc.wait();
}

/// Waits until the balancer's admin `/clusters` shows the collector on `port` with
/// `health` (`/failed_active_hc` once its health check failed, `health_flags::healthy`
/// once it passes again).
async fn wait_for_balancer(admin: &str, port: u16, health: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let prefix = format!("collectors::127.0.0.1:{port}::health_flags::");
    loop {
        let (_, clusters) = get(&format!("http://{admin}/clusters")).await.unwrap();
        let flags = clusters.lines().find(|line| line.starts_with(&prefix));
        if flags.is_some_and(|line| line.contains(health) || line.ends_with(health)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the balancer never showed {health} for port {port}:\n{clusters}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
