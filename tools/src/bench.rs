//! `meshscope bench`: the ingest benchmark in one command. The same pre-encoded load is sent
//! first to a decode-and-discard sink (`meshscope sink`, see [`crate::sink`]), then to a real
//! `meshscope serve`. Both run as child processes of the running executable, so their CPU
//! time and peak memory are read from /proc alone. Then freshness: at half the measured
//! rate, how long an entry takes from its send to showing in the HTTP API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

use crate::child_process::{free_port, spawn, spawn_serve, stop, wait_for_port};
use crate::error::{Error, Result};
use crate::proc_stats::{cpu_seconds, lazily_freed_mib, peak_rss_mib, rss_mib};
use crate::simulate::envoy::{self, Hop, Proxy};
use crate::simulate::max::{self, Plan, Pool, Sent};
use crate::simulate::mesh::{Mesh, Shape};

mod captured;
mod check;
mod restart;

/// The flags of `meshscope bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Services in the simulated mesh
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Services each meshed service calls (default: one to three)
    #[arg(long)]
    fan_out: Option<usize>,
    /// Distinct endpoints per service (default: a few typical paths)
    #[arg(long)]
    endpoints: Option<usize>,
    /// Calls encoded ahead of time and sent round after round
    #[arg(long, default_value_t = 200_000)]
    pool_requests: u64,
    /// HTTP/2 connections from the generator
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds of load for each of the sink and meshscope
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds of the freshness run at half the maximum rate (0 skips it)
    #[arg(long, default_value_t = 15.0)]
    freshness_seconds: f64,
    /// Skip the sink and run meshscope only, at this many entries a second for --seconds,
    /// sampling its memory every 10 s (a steady-state run)
    #[arg(long)]
    steady_rate: Option<f64>,
    /// Windows a dashboard watches during the run (e.g. `1h,24h`): each topology is read
    /// every 30 s, so the server keeps it moving and reads it ahead as it would for a
    /// dashboard, and the reads are timed
    #[arg(long, value_delimiter = ',')]
    watch_windows: Vec<String>,
    /// Sink and meshscope runs, taken in turn, each with a fresh process: the ratio is the
    /// median of the pairs', so that the machine's drift between two runs weighs less
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    /// An access-log capture (`NAME.bin` with `NAME.index.jsonl` beside it, such as
    /// `tests/fixtures/shop-mesh/als_http.bin`) to measure as well: real Envoy entries, each
    /// start moved to the second it is sent; reported under `captured`
    #[arg(long)]
    captured: Option<PathBuf>,
    /// Measure a start after `kill -9` instead: fill a server's log with the capture
    /// (`--captured`, default `tests/fixtures/shop-mesh/als_http.bin`) at `--rate` for
    /// `--seconds`, kill it, and time its next start until the gRPC port answers
    #[arg(long)]
    restart: bool,
    /// Entries a second sent by `--restart`
    #[arg(long, default_value_t = 400_000.0)]
    rate: f64,
    /// The server's `--wal-checkpoint-interval-ms` in `--restart` (default: its own)
    #[arg(long)]
    checkpoint_interval_ms: Option<u64>,
    /// With `--restart`, skip the second start that replays the whole log
    #[arg(long)]
    no_full_replay: bool,
    /// Recorded figures (such as `BENCHMARKS.json`) to check this run against: fails when
    /// a ratio to the sink is more than 10% below its recorded value, or was not measured
    #[arg(long)]
    check: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Measured {
    sent: Sent,
    entries_per_second: f64,
    cpu_seconds: f64,
    cpu_seconds_per_million_entries: f64,
    peak_rss_mib: f64,
    /// Whether the write-ahead log was still written around the page cache when the load
    /// ended (`meshscope_wal_direct_writes`; it turns to plain writes when the device falls
    /// behind): the two cost the collector differently. Absent for the sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    wal_direct_writes: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    streams: usize,
    entries_per_round: u64,
    bytes_per_entry: f64,
    sink: Option<Measured>,
    meshscope: Measured,
    ratio: Option<f64>,
    /// Each sink run with the meshscope run right after it; `sink` and `meshscope` above
    /// are the last pair.
    pairs: Vec<Pair>,
    freshness_ms: Option<Freshness>,
    rss_samples_mib: Vec<f64>,
    watched_reads_ms: Vec<WatchedReads>,
    captured: Option<captured::CapturedReport>,
}

#[derive(Debug, Serialize)]
struct Pair {
    sink_entries_per_second: f64,
    meshscope_entries_per_second: f64,
    ratio: f64,
}

/// The topology reads of one watched window, as a dashboard would have waited for them.
#[derive(Debug, Default, Serialize)]
struct WatchedReads {
    window: String,
    reads: usize,
    p50: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct Freshness {
    rate: f64,
    probes: usize,
    p50: f64,
    max: f64,
}

/// Runs `meshscope bench` and prints its report as JSON on stdout (a summary on stderr).
/// Spawns the running executable as `meshscope sink` and `meshscope serve`, so it must be
/// called from the `meshscope` binary.
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.restart {
        let exe = std::env::current_exe().map_err(Error::io("finding the meshscope binary"))?;
        let capture = args
            .captured
            .clone()
            .unwrap_or_else(|| PathBuf::from("tests/fixtures/shop-mesh/als_http.bin"));
        let report = restart::run(
            &exe,
            restart::RestartPlan {
                capture: &capture,
                rate: args.rate,
                seconds: args.seconds,
                connections: args.connections,
                checkpoint_interval_ms: args.checkpoint_interval_ms,
                compare_full_replay: !args.no_full_replay,
            },
        )
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let shape = Shape {
        fan_out: args.fan_out,
        endpoints: args.endpoints,
    };
    let mesh = Mesh::build_shaped(args.services, "bench", &[], 11, shape);
    let built = Instant::now();
    let pool = Arc::new(Pool::build(mesh, args.pool_requests, 11));
    info!(
        streams = pool.stream_count(),
        entries_per_round = pool.entries_per_round,
        seconds = built.elapsed().as_secs_f64(),
        "traffic encoded"
    );
    let exe = std::env::current_exe().map_err(Error::io("finding the meshscope binary"))?;
    let duration = Duration::from_secs_f64(args.seconds);

    let plan = Plan {
        connections: args.connections,
        duration,
        entry_rate: args.steady_rate,
    };
    let mut pairs = Vec::new();
    let mut sink = None;
    if args.steady_rate.is_none() {
        for pair in 1..=args.pairs.max(1) {
            let measured = measure_sink(&exe, &pool, plan).await?;
            if pair < args.pairs {
                let (mut child, grpc, http, _data) = spawn_serve(&exe)?;
                let meshscope = measure(&mut child, grpc, Some(http), &pool, plan).await;
                stop(child);
                let meshscope = meshscope?;
                print_line("meshscope", &meshscope);
                pairs.push(Pair::of(&measured, &meshscope));
            }
            sink = Some(measured);
        }
    }

    let (mut child, grpc, http, _data) = spawn_serve(&exe)?;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = args
        .steady_rate
        .map(|_| tokio::spawn(sample_rss(child.id(), Arc::clone(&samples))));
    let watched = Arc::new(Mutex::new(Vec::new()));
    let watcher = (!args.watch_windows.is_empty()).then(|| {
        tokio::spawn(watch(
            http,
            args.watch_windows.clone(),
            Arc::clone(&watched),
        ))
    });
    let meshscope = measure(&mut child, grpc, Some(http), &pool, plan).await?;
    print_line("meshscope", &meshscope);
    let freshness = if args.freshness_seconds > 0.0 && args.steady_rate.is_none() {
        let rate = meshscope.entries_per_second / 2.0;
        Some(
            freshness(
                grpc,
                http,
                pool.clone(),
                args.connections,
                rate,
                args.freshness_seconds,
            )
            .await?,
        )
    } else {
        None
    };
    let rss_samples_mib = match sampler {
        Some(task) => {
            task.abort();
            let _ = task.await;
            std::mem::take(&mut *samples.lock().expect("samples"))
        }
        None => Vec::new(),
    };
    let watched_reads_ms = match watcher {
        Some(task) => {
            task.abort();
            let _ = task.await;
            watched_reads(&args.watch_windows, &watched.lock().expect("watched"))
        }
        None => Vec::new(),
    };
    stop(child);
    let captured = match &args.captured {
        Some(path) if args.steady_rate.is_none() => {
            Some(captured::measure_captured(&exe, path, plan).await?)
        }
        _ => None,
    };

    if let Some(sink) = &sink {
        pairs.push(Pair::of(sink, &meshscope));
    }
    let ratio = median(pairs.iter().map(|p| p.ratio).collect());
    let report = Report {
        machine: machine(),
        streams: pool.stream_count(),
        entries_per_round: pool.entries_per_round,
        bytes_per_entry: pool.bytes_per_round as f64 / pool.entries_per_round.max(1) as f64,
        sink,
        meshscope,
        ratio,
        pairs,
        freshness_ms: freshness,
        rss_samples_mib,
        watched_reads_ms,
        captured,
    };
    if let Some(ratio) = report.ratio {
        let each: Vec<String> = report
            .pairs
            .iter()
            .map(|p| format!("{:.2}", p.ratio))
            .collect();
        eprintln!(
            "ratio (meshscope / sink): {ratio:.2}, the median of {} pairs ({})",
            each.len(),
            each.join(", ")
        );
    }
    for w in &report.watched_reads_ms {
        eprintln!(
            "watched {}: p50 {:.0} ms, max {:.0} ms over {} topology reads",
            w.window, w.p50, w.max, w.reads
        );
    }
    if let Some(f) = &report.freshness_ms {
        eprintln!(
            "freshness at {:.0} entries/s: p50 {:.0} ms, max {:.0} ms over {} probes",
            f.rate, f.p50, f.max, f.probes
        );
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.check {
        let recorded = check::load(path)?;
        let captured_ratio = report.captured.as_ref().map(|c| c.ratio);
        check::conclude(&check::compare(&recorded, report.ratio, captured_ratio))?;
    }
    Ok(())
}

impl Pair {
    fn of(sink: &Measured, meshscope: &Measured) -> Pair {
        Pair {
            sink_entries_per_second: sink.entries_per_second,
            meshscope_entries_per_second: meshscope.entries_per_second,
            ratio: meshscope.entries_per_second / sink.entries_per_second,
        }
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

async fn measure_sink(exe: &Path, pool: &Arc<Pool>, plan: Plan) -> Result<Measured> {
    let grpc = free_port()?;
    let mut child = spawn(exe, &["sink", "--grpc-addr", &grpc.to_string()])?;
    let measured = measure(&mut child, grpc, None, pool, plan).await;
    stop(child);
    let measured = measured?;
    print_line("sink", &measured);
    Ok(measured)
}

fn print_line(what: &str, m: &Measured) {
    eprintln!(
        "{what:>9}: {:>9.0} entries/s, {:.2} CPU s per million entries, peak RSS {:.0} MiB",
        m.entries_per_second, m.cpu_seconds_per_million_entries, m.peak_rss_mib
    );
}

/// Sends the plan's load to a child server and reads what it cost the child, and, when
/// the child is meshscope (`http` given), how its log was being written at the end.
async fn measure(
    child: &mut Child,
    grpc: SocketAddr,
    http: Option<SocketAddr>,
    pool: &Arc<Pool>,
    plan: Plan,
) -> Result<Measured> {
    wait_for_port(grpc, child).await?;
    let pid = child.id();
    let before = cpu_seconds(pid)?;
    let sent = max::send(&format!("http://{grpc}"), pool.clone(), plan).await?;
    let cpu = cpu_seconds(pid)? - before;
    let wal_direct_writes = match http {
        Some(http) => http_get(http, "/metrics")
            .await?
            .map(|page| restart::metric(&page, "meshscope_wal_direct_writes") == 1.0),
        None => None,
    };
    Ok(Measured {
        entries_per_second: sent.entries_per_second(),
        cpu_seconds: cpu,
        cpu_seconds_per_million_entries: cpu / (sent.entries as f64 / 1e6).max(1e-9),
        peak_rss_mib: peak_rss_mib(pid)?,
        wal_direct_writes,
        sent,
    })
}

/// Sends at `rate` for `seconds` while a probe proxy reports one call a second, and times
/// each call from its send until the API counts it.
async fn freshness(
    grpc: SocketAddr,
    http: SocketAddr,
    pool: Arc<Pool>,
    connections: usize,
    rate: f64,
    seconds: f64,
) -> Result<Freshness> {
    let target = format!("http://{grpc}");
    let load = tokio::spawn({
        let target = target.clone();
        async move {
            max::send(
                &target,
                pool,
                Plan {
                    connections,
                    duration: Duration::from_secs_f64(seconds + 2.0),
                    entry_rate: Some(rate),
                },
            )
            .await
        }
    });
    let mut client = AccessLogServiceClient::connect(target.clone())
        .await
        .map_err(Error::connect(&target))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        client
            .stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let probe = Proxy {
        node_id: "freshness-probe-0".into(),
        cluster: "freshness-probe".into(),
        namespace: "bench".into(),
        pod: "freshness-probe-0".into(),
        ip: [10, 250, 0, 1],
    };
    let mut times = Vec::new();
    let mut identifier = Some(envoy::identifier(&probe, "freshness-probe_inbound_http"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = seconds.floor().max(1.0) as u64;
    for k in 1..=probes {
        let hop = Hop {
            start: SystemTime::now(),
            latency_ms: 1.0,
            cluster: "inbound|8080||".into(),
            downstream_remote: ([10, 1, 0, 10], 40_000 + k as u16),
            downstream_local: (probe.ip, 8080),
            upstream_local: ([127, 0, 0, 6], 41_000 + k as u16),
            upstream_remote: ([127, 0, 0, 1], 8080),
            // The mesh's ingress reports for itself, so the caller is named at once.
            caller_cluster: Some("ingress"),
            peer_spiffe: None,
            method: 1,
            path: "/probe",
            status: 200,
            request_bytes: 100,
            response_bytes: 100,
        };
        let message = StreamAccessLogsMessage {
            identifier: identifier.take(),
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: vec![envoy::http_entry(&hop, &format!("probe-{k}"))],
            })),
        };
        let sent = Instant::now();
        tx.send(message)
            .await
            .map_err(|_| Error::Child("probe stream closed".into()))?;
        loop {
            if probe_calls(http).await? >= k {
                times.push(sent.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                return Err(Error::Child(format!(
                    "probe call {k} did not show in the API within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let next = sent + Duration::from_secs(1);
        tokio::time::sleep_until(next.into()).await;
    }
    drop(tx);
    call.await?
        .map_err(Error::refused("the collector refused the probe stream"))?;
    load.await??;
    times.sort_by(f64::total_cmp);
    Ok(Freshness {
        rate,
        probes: times.len(),
        p50: times[times.len() / 2],
        max: *times.last().unwrap_or(&0.0),
    })
}

async fn probe_calls(http: SocketAddr) -> Result<u64> {
    let body = http_get(http, "/api/v1/services/bench%2Ffreshness-probe?window=5m").await?;
    let Some(body) = body else {
        return Ok(0);
    };
    let json: serde_json::Value = serde_json::from_str(&body)?;
    Ok(json["metrics"]["calls"].as_u64().unwrap_or(0))
}

/// The body of a 200 answer, `None` for a 404.
async fn http_get(addr: SocketAddr, path: &str) -> Result<Option<String>> {
    let failed = || Error::io(format!("GET {path}"));
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(failed())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: meshscope\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(failed())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(failed())?;
    if response.starts_with("HTTP/1.1 404") {
        return Ok(None);
    }
    if !response.starts_with("HTTP/1.1 200") {
        return Err(Error::Child(format!(
            "GET {path}: {}",
            response.lines().next().unwrap_or("")
        )));
    }
    Ok(response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
}

/// Each timed read: the window and how long it took, in milliseconds.
type Reads = Arc<Mutex<Vec<(String, f64)>>>;

/// Reads each window's topology every 30 s, as a dashboard left open would.
async fn watch(http: SocketAddr, windows: Vec<String>, reads: Reads) {
    // The first read a few seconds in, once the server listens.
    let first = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut interval = tokio::time::interval_at(first, Duration::from_secs(30));
    loop {
        interval.tick().await;
        for window in &windows {
            let started = Instant::now();
            match http_get(http, &format!("/api/v1/topology?window={window}")).await {
                Ok(Some(_)) => {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    reads.lock().expect("watched").push((window.clone(), ms));
                }
                Ok(None) => eprintln!("watched {window}: not found"),
                Err(error) => eprintln!("watched {window}: {error:#}"),
            }
        }
    }
}

fn watched_reads(windows: &[String], reads: &[(String, f64)]) -> Vec<WatchedReads> {
    windows
        .iter()
        .map(|window| {
            let mut times: Vec<f64> = reads
                .iter()
                .filter(|(w, _)| w == window)
                .map(|(_, ms)| *ms)
                .collect();
            times.sort_by(f64::total_cmp);
            WatchedReads {
                window: window.clone(),
                reads: times.len(),
                p50: times.get(times.len() / 2).copied().unwrap_or(0.0),
                max: times.last().copied().unwrap_or(0.0),
            }
        })
        .collect()
}

/// Prints and keeps the child's resident memory every 10 s, until aborted.
async fn sample_rss(pid: u32, samples: Arc<Mutex<Vec<f64>>>) {
    let mut interval = tokio::time::interval(Duration::from_secs(10));
    loop {
        interval.tick().await;
        if let Ok(mib) = rss_mib(pid) {
            // Pages the allocator gave back with MADV_FREE still count in RSS until the
            // kernel wants them: shown apart so that the two are not confused.
            let lazy = lazily_freed_mib(pid).unwrap_or(0.0);
            eprintln!("rss: {mib:.0} MiB (lazily freed: {lazy:.0} MiB)");
            samples.lock().expect("samples").push(mib);
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
