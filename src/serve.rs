//! `meshscope serve`: the store, the collector's gRPC receivers and the HTTP API in one
//! process, wired together, started, and stopped in order so that nothing received is lost
//! on shutdown. What it runs with is [`crate::settings`]; how it is told to stop,
//! [`crate::shutdown`]. Its role picks the parts: a collector runs the receivers and
//! writes (its HTTP port answers only /healthz and /metrics), a query node serves the API
//! from the store and lists it again every few seconds, `all` runs both.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meshscope_collector::Collector;
use meshscope_collector::wal_checkpoint::CheckpointConfig;
use meshscope_storage::Store;
use meshscope_storage::wal::{self, WalConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::settings::{Role, ServeArgs, Settings};
use crate::shutdown::{Trigger, shutdown_signal};

/// How long open gRPC streams get to finish after a stop is asked; Envoy keeps its access
/// log streams open for good, so past this they are cut.
const GRPC_DRAIN: Duration = Duration::from_secs(5);
/// How long the final flush of unclosed minutes may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(30);
const HTTP_DRAIN: Duration = Duration::from_secs(5);
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How often a collector writes the minutes it holds open to the store, for query nodes.
const OPEN_MINUTES_INTERVAL: Duration = Duration::from_secs(2);

/// Runs `meshscope serve` until SIGINT or SIGTERM; a second signal exits at once.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args)?;
    let prometheus = PrometheusBuilder::new()
        // Every histogram is exported with buckets (never as a summary): HTTP request
        // times by default, the log's commits with buckets of their own.
        .set_buckets(meshscope_query::telemetry::HTTP_REQUEST_BUCKETS)
        .context("setting the default histogram buckets")?
        .set_buckets_for_metric(
            Matcher::Full(wal::stats::COMMIT_SECONDS.to_string()),
            wal::stats::COMMIT_BUCKETS,
        )
        .context("setting the log's commit buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    crate::metric_help::describe_all();
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
    /// `None` on a query node, which takes no gRPC.
    grpc: Option<SocketAddr>,
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

    let server_tls = settings.security.server_tls()?;
    let http_security = settings.security.http_security()?;
    anyhow::ensure!(
        !(settings.demo && server_tls.is_some()),
        "the demo mesh sends plaintext: run it without --tls-cert"
    );
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
    let role = settings.role;
    if settings.advertise_grpc.is_some() {
        anyhow::ensure!(
            role == Role::Collector,
            "--advertise-grpc is for collectors (--role collector) sharing a store"
        );
        anyhow::ensure!(
            server_tls.is_none(),
            "--advertise-grpc: collectors pass entries to each other in plaintext gRPC, so the gRPC port cannot take TLS yet"
        );
    }
    let data_dir = settings.store.data_dir.clone();
    let stop_ingest = Trigger::new();
    let stop_flusher = Trigger::new();
    let stop_http = Trigger::new();

    let http_listener = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", settings.http_addr))?;
    let http_listener_addr = http_listener.local_addr()?;

    let (store, ingest) = if role.collects() {
        let mut store_config = settings.store;
        store_config.writer_id = match settings.writer_id {
            Some(id) => {
                anyhow::ensure!(
                    meshscope_storage::valid_writer_id(&id),
                    "--writer-id {id:?}: 1 to 63 letters, digits and '-'"
                );
                id
            }
            None => meshscope_storage::writer_id_in(&data_dir)
                .with_context(|| format!("reading the writer id kept in {}", data_dir.display()))?,
        };
        let store = Arc::new(
            Store::open(store_config)
                .await
                .with_context(|| format!("opening the store of {}", data_dir.display()))?,
        );
        let ingest = start_ingest(
            &store,
            settings.collector,
            &data_dir,
            settings.wal_sync,
            settings.wal_sync_interval,
            settings.wal_direct_writes,
            settings.wal_checkpoint_interval,
            settings.grpc_addr,
            server_tls.as_ref().map(|tls| tls.grpc.clone()),
            settings.security.grpc_max_concurrent_streams,
            &stop_ingest,
            &stop_flusher,
        )
        .await?;
        (store, Some(ingest))
    } else {
        let store = Arc::new(
            Store::open_reader(settings.store)
                .await
                .context("opening the store to read")?,
        );
        (store, None)
    };
    // A collector on a shared store with an address for the others joins their ring.
    let ring_task = match (&ingest, settings.advertise_grpc.clone()) {
        (Some(ingest), Some(address)) => {
            Some(tokio::spawn(crate::ring_membership::keep_ring_current(
                store.clone(),
                ingest.collector.clone(),
                address,
            )))
        }
        _ => None,
    };
    let refresh_task = match role {
        Role::Query => Some(tokio::spawn(keep_listing(
            store.clone(),
            settings.store_list_interval,
        ))),
        Role::Collector => Some(tokio::spawn(keep_publishing_open_minutes(store.clone()))),
        Role::All => None,
    };

    let state = meshscope_query::AppState::new(store.clone()).with_metrics_renderer(move || {
        crate::process_metrics::update();
        prometheus.render()
    });
    let warm_task = role.serves_reads().then(|| {
        tokio::spawn(meshscope_query::warm::keep_warm(
            state.clone(),
            settings.warm_windows.clone(),
            stop_flusher.wait(),
        ))
    });
    let router = if role.serves_reads() {
        meshscope_query::secured_router(state, http_security)
    } else {
        meshscope_query::health_router(state, http_security)
    };
    let http_server = crate::listeners::http_server(
        router,
        http_listener,
        server_tls.as_ref().map(|tls| tls.http.clone()),
        stop_http.wait(),
    )?;
    let mut http_task: JoinHandle<anyhow::Result<()>> =
        tokio::spawn(async move { http_server.await.context("HTTP server failed") });
    let (mut grpc_task, flusher_task, health, grpc_bound) = match ingest {
        Some(ingest) => (
            Some(ingest.grpc_task),
            Some(ingest.flusher_task),
            Some(ingest.health),
            Some(ingest.grpc),
        ),
        None => (None, None, None, None),
    };

    let bound = Bound {
        grpc: grpc_bound,
        http: http_listener_addr,
    };
    info!(
        ?role,
        grpc_addr = ?bound.grpc,
        http_addr = %bound.http,
        data_dir = %data_dir.display(),
        tls = server_tls.is_some(),
        client_certificates = settings.security.grpc_client_ca.is_some(),
        api_tokens = settings.security.api_token_file.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "meshscope is serving"
    );
    on_ready(bound);

    let demo_task = bound.grpc.filter(|_| settings.demo).map(|grpc| {
        let target = connectable(grpc);
        info!(target = %target, "starting the demo mesh");
        let demo = meshscope_tools::simulate::run_demo(target, stop_ingest.wait());
        tokio::spawn(async move {
            // Reported when it happens: a demo that cannot start must not wait for shutdown.
            if let Err(error) = demo.await {
                warn!(error = format!("{error:#}"), "demo mesh stopped");
            }
        })
    });

    // Run until a signal, or until a server dies on its own.
    let grpc_ended = async {
        match grpc_task.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let failure = tokio::select! {
        () = stop => None,
        result = grpc_ended => Some(flatten("gRPC server", result)),
        result = &mut http_task => Some(flatten("HTTP server", result)),
    };
    info!("shutting down: closing receivers, then flushing unclosed minutes");

    // Health checks hear of the stop first, so that load balancers stop sending; then the
    // receivers close, so that the final flush sees every entry that arrived.
    if let Some(ring_task) = ring_task {
        // The others stop passing entries here at their next listing.
        ring_task.abort();
        if let Err(error) = store.withdraw_collector_member().await {
            warn!(%error, "removing this collector's member file failed; the others drop it when it ages");
        }
    }
    if let Some(health) = &health {
        set_health(health, ServingStatus::NotServing).await;
    }
    stop_ingest.fire();
    if let Some(demo_task) = demo_task
        && tokio::time::timeout(GRPC_DRAIN, demo_task).await.is_err()
    {
        warn!("demo mesh did not stop in time");
    }
    // A task already consumed by the select above must not be polled again.
    if let Some(grpc_task) = grpc_task.as_mut()
        && !grpc_task.is_finished()
        && tokio::time::timeout(GRPC_DRAIN, &mut *grpc_task)
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
    if let Some(flusher_task) = flusher_task {
        match tokio::time::timeout(FLUSH_DEADLINE, flusher_task).await {
            Ok(Ok(())) => info!("unclosed minutes flushed"),
            Ok(Err(error)) => warn!(%error, "flusher panicked; unclosed minutes may be lost"),
            Err(_) => warn!(deadline_secs = FLUSH_DEADLINE.as_secs(), "flush timed out"),
        }
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
    if let Some(warm_task) = warm_task {
        warm_task.abort();
    }
    if let Some(refresh_task) = refresh_task {
        refresh_task.abort();
    }
    info!("meshscope stopped");
    match failure {
        Some(Err(error)) => Err(error),
        Some(Ok(())) => Err(anyhow::anyhow!("a server stopped before it was asked to")),
        None => Ok(()),
    }
}

/// What a collecting process runs besides the store: the gRPC receivers (with the health
/// service) and the flusher that closes and writes minutes.
struct Ingest {
    collector: Arc<Collector>,
    grpc: SocketAddr,
    grpc_task: JoinHandle<anyhow::Result<()>>,
    flusher_task: JoinHandle<()>,
    health: tonic_health::server::HealthReporter,
}

/// Starts the collector on `store`: its write-ahead log replayed into the unclosed
/// minutes first (what the log holds beyond the files), then the gRPC port opened and the
/// flusher started.
#[allow(clippy::too_many_arguments)]
async fn start_ingest(
    store: &Arc<Store>,
    collector_config: meshscope_collector::CollectorConfig,
    data_dir: &std::path::Path,
    wal_sync: wal::SyncPolicy,
    wal_sync_interval: Duration,
    wal_direct_writes: bool,
    wal_checkpoint_interval: Option<Duration>,
    grpc_addr: SocketAddr,
    grpc_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    grpc_max_concurrent_streams: u32,
    stop_ingest: &Trigger,
    stop_flusher: &Trigger,
) -> anyhow::Result<Ingest> {
    // The note of the files written, durable with them (a write a crash cut short was
    // undone as the store opened).
    let written_note = meshscope_storage::written_note::recover(data_dir)
        .with_context(|| format!("reading the last write's note in {}", data_dir.display()))?;
    let collector =
        Collector::new(collector_config, store.clone()).context("starting the collector")?;
    let wal_config = WalConfig {
        sync: wal_sync,
        sync_interval: wal_sync_interval,
        direct_writes: wal_direct_writes,
        ..WalConfig::in_dir(data_dir.join("wal"))
    };
    let replaying = collector.clone();
    let quarantine = data_dir.join("quarantine");
    let checkpoints = wal_checkpoint_interval.map(|interval| CheckpointConfig {
        dir: data_dir.join("checkpoints"),
        interval,
    });
    tokio::task::spawn_blocking(move || {
        replaying.start_log(
            wal_config,
            &quarantine,
            written_note.as_deref(),
            checkpoints,
        )
    })
    .await
    .context("replaying the write-ahead log")?
    .context("replaying the write-ahead log")?;

    let grpc_listener = TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {grpc_addr}"))?;
    let grpc = grpc_listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;
    let grpc_server = crate::listeners::grpc_server(
        collector.grpc_routes().add_service(health_service),
        grpc_listener,
        grpc_tls,
        grpc_max_concurrent_streams,
        stop_ingest.wait(),
    )?;
    let grpc_task = tokio::spawn(async move { grpc_server.await.context("gRPC server failed") });
    let flusher_task = tokio::spawn(collector.clone().run_flusher(stop_flusher.wait()));
    Ok(Ingest {
        collector,
        grpc,
        grpc_task,
        flusher_task,
        health,
    })
}

/// Lists the store again every `interval`, for as long as the process runs: a query
/// node's view of what the collectors wrote and upkeep replaced. The first listing comes
/// one interval after the start: opening the store has just listed it, and the first
/// reads should not share the store and the cores with a second listing.
async fn keep_listing(store: Arc<Store>, interval: Duration) {
    let first = tokio::time::Instant::now() + interval;
    let mut ticks = tokio::time::interval_at(first, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = store.refresh_files().await {
            warn!(%error, "listing the store again failed; trying again");
        }
    }
}

/// Writes the minutes this collector holds open to the store every few seconds, for as
/// long as the process runs: what query nodes show of the minutes not yet written.
async fn keep_publishing_open_minutes(store: Arc<Store>) {
    let mut ticks = tokio::time::interval(OPEN_MINUTES_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = store.publish_open_minutes().await {
            warn!(%error, "writing the open minutes to the store failed; trying again");
        }
    }
}

/// The gRPC services whose health the standard health service reports: the server as a
/// whole (`""`) and each receiver.
const HEALTH_SERVICES: [&str; 3] = [
    "",
    "envoy.service.accesslog.v3.AccessLogService",
    "envoy.service.metrics.v3.MetricsService",
];

async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for service in HEALTH_SERVICES {
        health.set_service_status(service, status).await;
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

#[cfg(test)]
mod tests {
    use meshscope_collector::CollectorConfig;
    use meshscope_storage::StoreConfig;

    use super::*;

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
            role: crate::settings::Role::All,
            writer_id: None,
            advertise_grpc: None,
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            demo: false,
            warm_windows: vec!["1h".to_owned()],
            store: StoreConfig::in_dir(data_dir.path().join("nested")),
            collector: CollectorConfig::default(),
            wal_sync: meshscope_storage::wal::SyncPolicy::Interval,
            wal_sync_interval: Duration::from_millis(100),
            wal_direct_writes: false,
            wal_checkpoint_interval: Some(Duration::from_secs(5)),
            store_list_interval: Duration::from_secs(2),
            security: crate::security::SecuritySettings::default(),
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
        tokio::net::TcpStream::connect(bound.grpc.unwrap())
            .await
            .unwrap();

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
