//! A full disk: the data directory is a small tmpfs, filled up by a ballast file while
//! the simulator's traffic comes in. Ingest keeps accepting, reads are served (the minutes
//! waiting to be written among them), `/healthz`
//! says why the store is degraded, `/metrics` counts the failed writes by reason, what was
//! on disk before stays as it was, and once the ballast is deleted the waiting minutes are
//! written by themselves and read exactly as they were sent.
//!
//! Mounting needs root; where it is not permitted the test says so and passes.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshscope_collector::{Collector, CollectorConfig, ManualClock};
use meshscope_storage::{MetricRow, Metrics, RowKey, ServiceRef, Side, Store, StoreConfig};
use serde_json::Value;
use support::simulated::{EdgeName, EdgeTruth, shown_edges, simulate_expected};
use support::{files_under, get};

/// 2025-11-23T00:00:00Z: rows already on disk before the disk fills.
const T0: i64 = 1_763_856_000_000;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

type EdgeFigures = BTreeMap<EdgeName, EdgeTruth>;

/// Sends a small mesh's traffic to `grpc`; the simulator's own account of what it sent.
fn simulate(grpc: std::net::SocketAddr) -> EdgeFigures {
    simulate_expected(
        grpc,
        &[
            "--services",
            "6",
            "--rate",
            "40",
            "--duration",
            "2",
            "--seed",
            "9",
        ],
    )
    .edges
}

/// Writes to `path` until the file system is full.
fn fill(path: &Path) {
    let mut ballast = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match ballast.write_all(&chunk) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => panic!("filling the disk: {error}"),
        }
    }
    // What the last chunk left: smaller writes until not a byte fits.
    for size in [4096, 512, 1] {
        while ballast.write_all(&chunk[..size]).is_ok() {}
    }
}

/// Each file under `dir` (but `skip`) and its bytes.
fn contents(dir: &Path, skip: &str) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|f| f != skip)
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

async fn json(http: std::net::SocketAddr, path: &str) -> Value {
    let (status, body) = get(&format!("http://{http}{path}")).await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_degrades_then_writing_resumes_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, "4m") {
        Ok(tmpfs) => tmpfs,
        Err(error) => {
            eprintln!("skipping the full-disk test: cannot mount a tmpfs here: {error}");
            return;
        }
    };
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let store = Arc::new(
        Store::open(StoreConfig {
            maintenance_interval_secs: 0,
            ..StoreConfig::in_dir(&data)
        })
        .await
        .unwrap(),
    );
    // Rows on disk before it fills up.
    store
        .append_closed(vec![MetricRow {
            minute: T0,
            key: RowKey::Service {
                service: ServiceRef::service("shop", "cart"),
            },
            side: Side::Server,
            metrics: Metrics {
                calls: 11,
                ..Metrics::default()
            },
        }])
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let collector =
        Collector::with_clock(CollectorConfig::default(), store.clone(), clock.clone()).unwrap();

    let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = grpc_listener.local_addr().unwrap();
    let routes = collector.grpc_routes();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener))
            .await
            .unwrap();
    });
    let state = meshscope_query::AppState::new(store.clone())
        .with_metrics_renderer(move || prometheus.render());
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(http_listener, meshscope_query::router(state))
            .await
            .unwrap();
    });
    let (_stop, stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(collector.clone().run_flusher(async {
        let _ = stop.await;
    }));

    let ballast = data.join("ballast");
    fill(&ballast);
    let before = contents(&data, "ballast");
    assert_eq!(
        json(http, "/healthz").await,
        serde_json::json!({"status": "ok"})
    );

    // Ingest accepts while nothing can be written.
    let want = simulate(grpc);
    assert!(want.len() >= 4, "a mesh worth writing: {want:?}");
    // The minutes sent are closed and due to be written.
    clock.advance(3 * 60_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let health = json(http, "/healthz").await;
        if health["status"] == "degraded" {
            break health;
        }
        assert!(Instant::now() < deadline, "never degraded: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health["storage"]["reason"], "no_space", "{health}");
    assert_eq!(health["storage"]["writable"], false, "{health}");
    let metrics = get(&format!("http://{http}/metrics")).await.unwrap().1;
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"meshscope_store_write_failures_total{reason="no_space"} "#))
        .unwrap_or_else(|| panic!("no count of failed writes: {metrics}"))
        .parse()
        .unwrap();
    assert!(failures >= 1, "{metrics}");
    // Reads are served, the minutes waiting to be written among them, and what was on
    // disk is as it was, nothing half written beside it.
    let waiting = json(http, "/api/v1/topology?window=15m").await;
    assert_eq!(
        shown_edges(&waiting),
        want,
        "the minutes waiting to be written read as they were sent"
    );
    json(http, "/api/v1/services?window=15m").await;
    assert_eq!(contents(&data, "ballast"), before);

    // Space returns: the waiting minutes are written by the flusher's next tick.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = json(http, "/healthz").await;
        if health == serde_json::json!({"status": "ok"}) {
            break;
        }
        assert!(Instant::now() < deadline, "still degraded: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let topology = json(http, "/api/v1/topology?window=15m").await;
        if shown_edges(&topology) == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the written minutes never matched what was sent\nwant: {want:#?}\ngot: {:#?}",
            shown_edges(&topology)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The rows from before are still there, once.
    let totals = store
        .session()
        .sql("SELECT CAST(sum(calls) AS BIGINT) AS calls FROM service_minute WHERE minute < now() - INTERVAL '1 day'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let calls = meshscope_storage::arrow::array::AsArray::as_primitive::<
        meshscope_storage::arrow::datatypes::Int64Type,
    >(totals[0].column(0))
    .value(0);
    assert_eq!(calls, 11);
}
