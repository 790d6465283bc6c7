//! `meshscope serve`: the store, the collector's gRPC receivers and the HTTP API in one
//! process, stopped in order so that nothing received is lost on shutdown.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use meshscope_collector::{Collector, CollectorConfig};
use meshscope_storage::wal::{self, SyncPolicy, WalConfig};
use meshscope_storage::{Store, StoreConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::config::{FileConfig, StorageSection};

const DEFAULT_GRPC_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 11800);
const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 12800);
const DEFAULT_DATA_DIR: &str = "data";

/// How long open gRPC streams get to finish after a stop is asked; Envoy keeps its access
/// log streams open for good, so past this they are cut.
const GRPC_DRAIN: Duration = Duration::from_secs(5);
/// How long the final flush of open minutes may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(30);
const HTTP_DRAIN: Duration = Duration::from_secs(5);
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_WAL_SYNC_INTERVAL_MS: u64 = 100;

/// Every flag can also come from a `MESHSCOPE_*` variable; a flag beats the variable, the
/// variable beats the config file, the file beats the default.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address of the gRPC receivers (Envoy access log service) [default: 0.0.0.0:11800]
    #[arg(long, env = "MESHSCOPE_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// Address of the HTTP API and UI [default: 0.0.0.0:12800]
    #[arg(long, env = "MESHSCOPE_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Directory for stored data [default: ./data]
    #[arg(long, env = "MESHSCOPE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML config file with [server], [collector] and [storage] sections
    #[arg(long, env = "MESHSCOPE_CONFIG")]
    config: Option<PathBuf>,
    /// Also run a small simulated mesh against this server, for a first look
    #[arg(long, env = "MESHSCOPE_DEMO", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    demo: Option<bool>,
    /// Topology windows read ahead at start and after each minute is written, so that a
    /// dashboard's reads find them ready; comma-separated, `none` for none
    /// [default: 15m,1h,6h,24h,7d]
    #[arg(long, env = "MESHSCOPE_WARM_WINDOWS", value_delimiter = ',')]
    warm_windows: Option<Vec<String>>,
    /// When a received message counts as kept by the write-ahead log: `always` (fsynced
    /// before it is applied), `interval` (fsynced every --wal-sync-interval-ms) or `never`
    /// (left to the operating system) [default: interval]
    #[arg(long, env = "MESHSCOPE_WAL_SYNC")]
    wal_sync: Option<SyncPolicy>,
    /// How often the write-ahead log is written out and, with `interval`, fsynced
    /// [default: 100]
    #[arg(long, env = "MESHSCOPE_WAL_SYNC_INTERVAL_MS")]
    wal_sync_interval_ms: Option<u64>,
}

/// What `serve` runs with, after merging flags, environment, file and defaults.
#[derive(Debug)]
struct Settings {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    demo: bool,
    warm_windows: Vec<String>,
    store: StoreConfig,
    collector: CollectorConfig,
    wal_sync: SyncPolicy,
    wal_sync_interval: Duration,
}

impl Settings {
    fn resolve(args: ServeArgs, file: FileConfig) -> Self {
        Self {
            grpc_addr: args
                .grpc_addr
                .or(file.server.grpc_addr)
                .unwrap_or(DEFAULT_GRPC_ADDR),
            http_addr: args
                .http_addr
                .or(file.server.http_addr)
                .unwrap_or(DEFAULT_HTTP_ADDR),
            demo: args.demo.or(file.server.demo).unwrap_or(false),
            warm_windows: args
                .warm_windows
                .or(file.server.warm_windows)
                .unwrap_or_else(|| {
                    meshscope_query::warm::DEFAULT_WINDOWS
                        .iter()
                        .map(|w| (*w).to_owned())
                        .collect()
                })
                .into_iter()
                .map(|w| w.trim().to_owned())
                .filter(|w| !w.is_empty() && w != "none")
                .collect(),
            store: store_config(args.data_dir, file.storage),
            collector: file.collector,
            wal_sync: args.wal_sync.or(file.wal.sync).unwrap_or_default(),
            wal_sync_interval: Duration::from_millis(
                args.wal_sync_interval_ms
                    .or(file.wal.sync_interval_ms)
                    .unwrap_or(DEFAULT_WAL_SYNC_INTERVAL_MS)
                    .max(1),
            ),
        }
    }
}

pub(crate) fn store_config(data_dir: Option<PathBuf>, file: StorageSection) -> StoreConfig {
    let defaults = StoreConfig::default();
    StoreConfig {
        data_dir: data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        retention: file.retention,
        maintenance_interval_secs: file
            .maintenance_interval_secs
            .unwrap_or(defaults.maintenance_interval_secs),
        settle_minutes: file.settle_minutes.unwrap_or(defaults.settle_minutes),
        access_log: file.access_log,
        sql: file.sql,
        memory_hint: Some(crate::memory::large_use_of_memory),
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let settings = Settings::resolve(args, file);
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(wal::stats::COMMIT_SECONDS.to_string()),
            wal::stats::COMMIT_BUCKETS,
        )
        .context("setting the log's commit buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let stop = async {
        shutdown_signal().await;
        tokio::spawn(async {
            shutdown_signal().await;
            warn!("second stop signal: exiting without flushing");
            std::process::exit(130);
        });
    };
    serve(settings, prometheus, stop, |_| {}).await
}

/// The addresses the servers actually bound (port 0 picks a free port).
#[derive(Clone, Copy, Debug)]
struct Bound {
    grpc: SocketAddr,
    http: SocketAddr,
}

/// Runs until `stop` resolves (or a server fails), then stops in order: receivers, final
/// flush, HTTP.
async fn serve(
    settings: Settings,
    prometheus: PrometheusHandle,
    stop: impl Future<Output = ()>,
    on_ready: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let upkeep_handle = prometheus.clone();
    let upkeep_task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
        loop {
            interval.tick().await;
            upkeep_handle.run_upkeep();
        }
    });

    for window in &settings.warm_windows {
        meshscope_query::warm::check_window(window)
            .with_context(|| format!("in the windows to read ahead: {window:?}"))?;
    }
    std::fs::create_dir_all(&settings.store.data_dir).with_context(|| {
        format!(
            "creating data directory {}",
            settings.store.data_dir.display()
        )
    })?;
    let data_dir = settings.store.data_dir.clone();
    // A minute write a crash cut short is undone before the store lists its files.
    let written_note = meshscope_storage::written_note::recover(&data_dir)
        .with_context(|| format!("recovering the last write in {}", data_dir.display()))?;
    let store = Arc::new(
        Store::open(settings.store)
            .await
            .with_context(|| format!("opening the store in {}", data_dir.display()))?,
    );
    let collector =
        Collector::new(settings.collector, store.clone()).context("starting the collector")?;
    // What the log holds beyond the files goes into the open minutes before the gRPC port
    // opens.
    let wal_config = WalConfig {
        sync: settings.wal_sync,
        sync_interval: settings.wal_sync_interval,
        ..WalConfig::in_dir(data_dir.join("wal"))
    };
    let replaying = collector.clone();
    let quarantine = data_dir.join("quarantine");
    tokio::task::spawn_blocking(move || {
        replaying.start_log(wal_config, &quarantine, written_note.as_deref())
    })
    .await
    .context("replaying the write-ahead log")?
    .context("replaying the write-ahead log")?;

    let grpc_listener = TcpListener::bind(settings.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {}", settings.grpc_addr))?;
    let http_listener = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", settings.http_addr))?;
    let grpc_listener_addr = grpc_listener.local_addr()?;
    let http_listener_addr = http_listener.local_addr()?;

    let stop_ingest = Trigger::new();
    let stop_flusher = Trigger::new();
    let stop_http = Trigger::new();

    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let grpc_server = tonic::transport::Server::builder()
        .add_routes(collector.grpc_routes())
        .serve_with_incoming_shutdown(incoming, stop_ingest.wait());
    let mut grpc_task: JoinHandle<anyhow::Result<()>> =
        tokio::spawn(async move { grpc_server.await.context("gRPC server failed") });

    let flusher_task = tokio::spawn(collector.clone().run_flusher(stop_flusher.wait()));

    let state = meshscope_query::AppState::new(store.clone())
        .with_metrics_renderer(move || prometheus.render());
    let warm_task = tokio::spawn(meshscope_query::warm::keep_warm(
        state.clone(),
        settings.warm_windows.clone(),
        stop_flusher.wait(),
    ));
    let http_server = axum::serve(http_listener, meshscope_query::router(state))
        .with_graceful_shutdown(stop_http.wait());
    let mut http_task: JoinHandle<anyhow::Result<()>> =
        tokio::spawn(async move { http_server.await.context("HTTP server failed") });

    let bound = Bound {
        grpc: grpc_listener_addr,
        http: http_listener_addr,
    };
    info!(
        grpc_addr = %bound.grpc,
        http_addr = %bound.http,
        data_dir = %data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "meshscope is serving"
    );
    on_ready(bound);

    let demo_task = settings.demo.then(|| {
        let target = connectable(bound.grpc);
        info!(target = %target, "starting the demo mesh");
        let demo = crate::simulate::run_demo(target, stop_ingest.wait());
        tokio::spawn(async move {
            // Reported when it happens: a demo that cannot start must not wait for shutdown.
            if let Err(error) = demo.await {
                warn!(error = format!("{error:#}"), "demo mesh stopped");
            }
        })
    });

    // Run until a signal, or until a server dies on its own.
    let failure = tokio::select! {
        () = stop => None,
        result = &mut grpc_task => Some(flatten("gRPC server", result)),
        result = &mut http_task => Some(flatten("HTTP server", result)),
    };
    info!("shutting down: closing receivers, then flushing open minutes");

    // Receivers first, so that the final flush sees every entry that arrived.
    stop_ingest.fire();
    if let Some(demo_task) = demo_task
        && tokio::time::timeout(GRPC_DRAIN, demo_task).await.is_err()
    {
        warn!("demo mesh did not stop in time");
    }
    // A task already consumed by the select above must not be polled again.
    if !grpc_task.is_finished()
        && tokio::time::timeout(GRPC_DRAIN, &mut grpc_task)
            .await
            .is_err()
    {
        warn!(
            drain_secs = GRPC_DRAIN.as_secs(),
            "gRPC streams still open; closing them"
        );
        grpc_task.abort();
    }
    stop_flusher.fire();
    match tokio::time::timeout(FLUSH_DEADLINE, flusher_task).await {
        Ok(Ok(())) => info!("open minutes flushed"),
        Ok(Err(error)) => warn!(%error, "flusher panicked; open minutes may be lost"),
        Err(_) => warn!(deadline_secs = FLUSH_DEADLINE.as_secs(), "flush timed out"),
    }
    stop_http.fire();
    if !http_task.is_finished()
        && tokio::time::timeout(HTTP_DRAIN, &mut http_task)
            .await
            .is_err()
    {
        http_task.abort();
    }
    upkeep_task.abort();
    warm_task.abort();
    info!("meshscope stopped");
    match failure {
        Some(Err(error)) => Err(error),
        Some(Ok(())) => Err(anyhow::anyhow!("a server stopped before it was asked to")),
        None => Ok(()),
    }
}

fn flatten(
    what: &str,
    result: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    result.with_context(|| format!("{what} task"))?
}

/// Where a local client reaches a listener bound to a wildcard address.
fn connectable(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    warn!(%error, "cannot listen for SIGTERM; only SIGINT stops meshscope");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A one-shot stop signal that any number of tasks can wait on.
struct Trigger {
    sender: watch::Sender<bool>,
}

impl Trigger {
    fn new() -> Self {
        Self {
            sender: watch::channel(false).0,
        }
    }

    fn fire(&self) {
        self.sender.send_replace(true);
    }

    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            // An error means the trigger is gone, which only happens on exit: stop too.
            let _ = receiver.wait_for(|fired| *fired).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn settings(argv: &[&str], file: &str) -> Settings {
        let mut full = vec!["meshscope"];
        full.extend_from_slice(argv);
        let args = TestCli::try_parse_from(full).unwrap().serve;
        Settings::resolve(args, FileConfig::parse(file).unwrap())
    }

    /// Everything about precedence in one test: environment variables are process-wide,
    /// so a second test parsing flags could see this one's variables.
    #[test]
    fn precedence_is_flag_then_env_then_file_then_default() {
        let defaults = settings(&[], "");
        assert_eq!(defaults.grpc_addr, DEFAULT_GRPC_ADDR);
        assert_eq!(defaults.http_addr, "0.0.0.0:12800".parse().unwrap());
        assert_eq!(defaults.store.data_dir, PathBuf::from("data"));
        assert!(!defaults.demo);
        assert_eq!(defaults.warm_windows, ["15m", "1h", "6h", "24h", "7d"]);

        let file = "[server]\ngrpc_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\ndemo = true\n\
                    warm_windows = [\"1h\"]\n[storage]\ndata_dir = \"/from/file\"\n";
        let from_file = settings(&[], file);
        assert_eq!(from_file.grpc_addr, "127.0.0.1:1".parse().unwrap());
        assert_eq!(from_file.http_addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(from_file.store.data_dir, PathBuf::from("/from/file"));
        assert!(from_file.demo);
        assert_eq!(from_file.warm_windows, ["1h"]);
        assert!(
            settings(&["--warm-windows", "none"], file)
                .warm_windows
                .is_empty()
        );
        assert_eq!(
            settings(&["--warm-windows", "5m, 2h"], file).warm_windows,
            ["5m", "2h"]
        );

        // SAFETY: no other test in this binary reads or writes the environment.
        unsafe {
            std::env::set_var("MESHSCOPE_GRPC_ADDR", "127.0.0.1:4");
            std::env::set_var("MESHSCOPE_DATA_DIR", "/from/env");
            std::env::set_var("MESHSCOPE_DEMO", "false");
        }
        let from_env = settings(&[], file);
        let from_flags = settings(
            &[
                "--grpc-addr",
                "127.0.0.1:3",
                "--data-dir",
                "/from/flag",
                "--demo",
            ],
            file,
        );
        // SAFETY: as above.
        unsafe {
            std::env::remove_var("MESHSCOPE_GRPC_ADDR");
            std::env::remove_var("MESHSCOPE_DATA_DIR");
            std::env::remove_var("MESHSCOPE_DEMO");
        }
        assert_eq!(from_env.grpc_addr, "127.0.0.1:4".parse().unwrap());
        assert_eq!(from_env.http_addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(from_env.store.data_dir, PathBuf::from("/from/env"));
        assert!(!from_env.demo);

        assert_eq!(from_flags.grpc_addr, "127.0.0.1:3".parse().unwrap());
        assert_eq!(from_flags.http_addr, "127.0.0.1:2".parse().unwrap());
        assert_eq!(from_flags.store.data_dir, PathBuf::from("/from/flag"));
        assert!(from_flags.demo);
    }

    #[test]
    fn wal_settings_come_from_flag_then_file_then_default() {
        let defaults = settings(&[], "");
        assert_eq!(defaults.wal_sync, SyncPolicy::Interval);
        assert_eq!(defaults.wal_sync_interval, Duration::from_millis(100));
        let file = "[wal]\nsync = \"never\"\nsync_interval_ms = 250\n";
        let from_file = settings(&[], file);
        assert_eq!(from_file.wal_sync, SyncPolicy::Never);
        assert_eq!(from_file.wal_sync_interval, Duration::from_millis(250));
        let from_flags = settings(
            &["--wal-sync", "always", "--wal-sync-interval-ms", "5"],
            file,
        );
        assert_eq!(from_flags.wal_sync, SyncPolicy::Always);
        assert_eq!(from_flags.wal_sync_interval, Duration::from_millis(5));
        assert!(FileConfig::parse("[wal]\nsync = \"sometimes\"\n").is_err());
    }

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: meshscope\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_until_stopped_then_exits_cleanly() {
        let data_dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            demo: false,
            warm_windows: vec!["1h".to_owned()],
            store: StoreConfig::in_dir(data_dir.path().join("nested")),
            collector: CollectorConfig::default(),
            wal_sync: SyncPolicy::Interval,
            wal_sync_interval: Duration::from_millis(100),
        };
        let recorder = PrometheusBuilder::new().build_recorder();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            settings,
            recorder.handle(),
            async {
                let _ = stop_rx.await;
            },
            move |bound| {
                let _ = ready_tx.send(bound);
            },
        ));
        let bound = ready_rx.await.unwrap();
        assert!(data_dir.path().join("nested").is_dir());

        let health = http_get(bound.http, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with(r#"{"status":"ok"}"#), "{health}");
        let topology = http_get(bound.http, "/api/v1/topology?window=5m").await;
        assert!(topology.starts_with("HTTP/1.1 200"), "{topology}");
        assert!(topology.contains(r#""nodes":[]"#), "{topology}");
        let metrics = http_get(bound.http, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        tokio::net::TcpStream::connect(bound.grpc).await.unwrap();

        stop_tx.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("serve stops within the drain deadlines")
            .unwrap();
        result.unwrap();
        assert!(tokio::net::TcpStream::connect(bound.http).await.is_err());
    }

    #[test]
    fn wildcard_addresses_become_loopback_for_local_clients() {
        assert_eq!(
            connectable("0.0.0.0:11800".parse().unwrap()),
            "127.0.0.1:11800".parse().unwrap()
        );
        assert_eq!(
            connectable("[::]:1".parse().unwrap()),
            "[::1]:1".parse().unwrap()
        );
        assert_eq!(
            connectable("10.0.0.5:1".parse().unwrap()),
            "10.0.0.5:1".parse().unwrap()
        );
    }
}
