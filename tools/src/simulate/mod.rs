//! `meshscope simulate` and the mesh behind `meshscope serve --demo`: a modelled mesh sent
//! as real `StreamAccessLogs` gRPC streams, one per proxy and log as Envoy opens them, and
//! each proxy's own statistics as `StreamMetrics`.
//! Because it knows the truth, it can print the topology meshscope must show.

pub(crate) mod envoy;
mod generator;
pub(crate) mod max;
pub(crate) mod mesh;
mod stats;
mod truth;
pub mod wide;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries, TcpAccessLogEntries,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::error::{Error, Result};
use generator::{Generator, Log, ProxyKey, log_name};
use mesh::Mesh;
use truth::Truth;

const TICK: Duration = Duration::from_millis(200);

/// The flags of `meshscope simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The collector's gRPC address
    #[arg(long, default_value = "http://127.0.0.1:11800")]
    target: String,
    /// Services in the mesh, counting the ingress, a service without a sidecar and a database
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Requests per second entering at the ingress (each makes several log entries)
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Stop after this many seconds (default: run until interrupted)
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "demo")]
    namespace: String,
    /// Names for the meshed services, in call order, before the built-in ones (repeatable)
    #[arg(long = "name")]
    names: Vec<String>,
    /// Every this many calls from one sidecar to another, the callee fails the first
    /// attempt with 503 and the caller's proxy retries once (0: no retries)
    #[arg(long, default_value_t = 0)]
    retry_every: u64,
    /// The applications pass the request id on: every call of a request's tree carries the
    /// ingress request's id (endpoint dependencies), instead of one id per hop
    #[arg(long)]
    propagate_request_ids: bool,
    /// Print the topology meshscope must show for what was sent, as JSON, at the end
    #[arg(long, conflicts_with = "max")]
    print_expected: bool,
    /// Services each meshed service calls (default: one to three)
    #[arg(long)]
    fan_out: Option<usize>,
    /// Distinct endpoints per service (default: a few typical paths)
    #[arg(long)]
    endpoints: Option<usize>,
    /// Load generator mode: encode the traffic of --pool-requests calls once, then send it
    /// round after round as fast as the collector takes it (see --entry-rate), and print
    /// what was sent as JSON
    #[arg(long)]
    max: bool,
    /// With --max: HTTP/2 connections the proxy streams are spread over
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// With --max: calls encoded ahead of time (each makes one or two entries)
    #[arg(long, default_value_t = 100_000)]
    pool_requests: u64,
    /// With --max: send at most this many entries a second
    #[arg(long)]
    entry_rate: Option<f64>,
    /// With --max: send the real Envoy entries of this access-log capture (the fixtures'
    /// format, `NAME.index.jsonl` beside it) instead of the modelled mesh
    #[arg(long, requires = "max")]
    captured: Option<std::path::PathBuf>,
}

/// Runs `meshscope simulate`: sends the modelled mesh for `--duration` (or until Ctrl-C), or
/// with `--max` the pre-encoded load; prints what was sent as JSON when asked.
pub async fn run(args: SimulateArgs) -> Result<()> {
    let duration = args.duration.map(Duration::from_secs_f64);
    let stop = async move {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let shape = mesh::Shape {
        fan_out: args.fan_out,
        endpoints: args.endpoints,
    };
    let mesh = Mesh::build_shaped(
        args.services,
        &args.namespace,
        &args.names,
        args.seed,
        shape,
    );
    if args.max {
        let pool = match &args.captured {
            Some(capture) => max::Pool::from_capture(capture)?,
            None => max::Pool::build(mesh, args.pool_requests, args.seed),
        };
        let pool = std::sync::Arc::new(pool);
        info!(
            streams = pool.stream_count(),
            entries_per_round = pool.entries_per_round,
            "traffic encoded"
        );
        let plan = max::Plan {
            connections: args.connections,
            duration: duration.unwrap_or(Duration::from_secs(30)),
            entry_rate: args.entry_rate,
        };
        let sent = max::send(&args.target, pool, plan).await?;
        info!(
            entries = sent.entries,
            entries_per_second = sent.entries_per_second() as u64,
            "load sent"
        );
        println!("{}", serde_json::to_string_pretty(&sent)?);
        return Ok(());
    }
    let generator = Generator::new(mesh, args.seed, true)
        .retry_every(args.retry_every)
        .propagate_request_ids(args.propagate_request_ids);
    let truth = send(&args.target, generator, args.rate, stop).await?;
    info!(
        requests = truth.requests,
        entries = truth.entries,
        "simulated mesh sent"
    );
    if args.print_expected {
        println!("{}", serde_json::to_string_pretty(&truth.expected())?);
    }
    Ok(())
}

/// The small mesh behind `serve --demo`: ten services at 15 requests a second, sent to the
/// collector at `grpc_addr` until `shutdown` resolves.
pub async fn run_demo(
    grpc_addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Give the server a moment to accept connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mesh = Mesh::build(10, "demo", &[], 7);
    // Its applications pass the request id on, so that endpoints show their dependencies.
    let generator = Generator::new(mesh, 7, true).propagate_request_ids(true);
    send(&format!("http://{grpc_addr}"), generator, 15.0, shutdown).await?;
    Ok(())
}

/// Sends the simulated mesh of `generator` until `stop` resolves; returns what was sent.
async fn send(
    target: &str,
    mut generator: Generator,
    rate: f64,
    stop: impl Future<Output = ()>,
) -> Result<Truth> {
    let channel = tonic::transport::Endpoint::from_shared(target.to_string())
        .map_err(Error::CollectorAddress)?
        .connect()
        .await
        .map_err(Error::connect(target))?;
    let client = AccessLogServiceClient::new(channel.clone());
    let mut proxy_stats = stats::SimulatedStats::new(channel);
    let mut streams: HashMap<(ProxyKey, Log), mpsc::Sender<StreamAccessLogsMessage>> =
        HashMap::new();
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    let mut sent_requests = 0u64;
    let mut interval = tokio::time::interval(TICK);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = interval.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        let now = SystemTime::now();
        while sent_requests < due {
            generator.request(now, sent_requests);
            sent_requests += 1;
        }
        for ((proxy, log), batch) in std::mem::take(&mut generator.batches) {
            proxy_stats.observe(proxy, generator.proxy(proxy), &batch.http);
            let first = !streams.contains_key(&(proxy, log));
            let sender = streams.entry((proxy, log)).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(64);
                let mut client = client.clone();
                tasks.spawn(async move {
                    client
                        .stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
                        .await
                        .map(|_| ())
                });
                tx
            });
            let identifier = first.then(|| {
                let p = generator.proxy(proxy);
                let name = log_name(&p.cluster, log);
                envoy::identifier(&p, &name)
            });
            let log_entries = if batch.tcp.is_empty() {
                LogEntries::HttpLogs(HttpAccessLogEntries {
                    log_entry: batch.http,
                })
            } else {
                LogEntries::TcpLogs(TcpAccessLogEntries {
                    log_entry: batch.tcp,
                })
            };
            let message = StreamAccessLogsMessage {
                identifier,
                log_entries: Some(log_entries),
            };
            if sender.send(message).await.is_err() {
                return Err(Error::StreamClosed("an access log stream"));
            }
        }
        proxy_stats.flush_if_due(&mut tasks).await?;
    }
    // Ending every stream, the proxy statistics' too, lets each task finish: a metrics
    // stream left open would be waited for without end.
    drop(streams);
    drop(proxy_stats);
    while let Some(result) = tasks.join_next().await {
        if let Err(status) = result? {
            warn!(error = %status, "an access log stream failed");
            return Err(Error::Refused {
                what: "the collector refused a stream",
                source: status,
            });
        }
    }
    Ok(generator.truth)
}
