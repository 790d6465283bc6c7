//! `meshscope simulate` and the mesh behind `meshscope serve --demo`: a modelled mesh sent
//! as real `StreamAccessLogs` gRPC streams, one per proxy and log as Envoy opens them, and
//! each proxy's own statistics as `StreamMetrics`.
//! Because it knows the truth, it can print the topology meshscope must show.

pub(crate) mod envoy;
pub(crate) mod max;
pub(crate) mod mesh;
mod stats;
pub(crate) mod wide;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use envoy_types::pb::envoy::data::accesslog::v3::{HttpAccessLogEntry, TcpAccessLogEntry};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries, TcpAccessLogEntries,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use envoy::{Hop, Proxy};
use mesh::{Kind, Mesh};

const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
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
}

pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
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
        let pool = std::sync::Arc::new(max::Pool::build(mesh, args.pool_requests, args.seed));
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
    let truth = send(&args.target, mesh, args.rate, args.seed, stop).await?;
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

/// The small mesh behind `serve --demo`.
pub(crate) async fn run_demo(
    grpc_addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Give the server a moment to accept connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mesh = Mesh::build(10, "demo", &[], 7);
    send(&format!("http://{grpc_addr}"), mesh, 15.0, 7, shutdown).await?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Log {
    Ingress,
    InboundHttp,
    OutboundHttp,
    OutboundTcp,
}

/// A proxy: a service's instance with a sidecar (or the ingress).
type ProxyKey = (usize, usize);

#[derive(Default)]
struct Batch {
    http: Vec<HttpAccessLogEntry>,
    tcp: Vec<TcpAccessLogEntry>,
}

#[derive(Clone, Debug, Default, Serialize)]
struct EdgeTruth {
    source: String,
    target: String,
    protocol: &'static str,
    detected_by: &'static str,
    calls: u64,
    errors: u64,
}

#[derive(Default)]
struct Truth {
    requests: u64,
    entries: u64,
    edges: BTreeMap<(String, String, &'static str), EdgeTruth>,
}

#[derive(Serialize)]
struct Expected {
    nodes: Vec<String>,
    edges: Vec<EdgeTruth>,
}

impl Truth {
    fn record(
        &mut self,
        source: &str,
        target: &str,
        protocol: &'static str,
        server: bool,
        error: bool,
    ) {
        let edge = self
            .edges
            .entry((source.to_string(), target.to_string(), protocol))
            .or_insert_with(|| EdgeTruth {
                source: source.to_string(),
                target: target.to_string(),
                protocol,
                detected_by: if server { "server" } else { "client" },
                ..Default::default()
            });
        edge.calls += 1;
        edge.errors += u64::from(error);
    }

    fn expected(&self) -> Expected {
        let mut nodes: Vec<String> = self
            .edges
            .values()
            .flat_map(|e| [e.source.clone(), e.target.clone()])
            .collect();
        nodes.sort();
        nodes.dedup();
        Expected {
            nodes,
            edges: self.edges.values().cloned().collect(),
        }
    }
}

struct Generator {
    mesh: Mesh,
    rng: SmallRng,
    ports: u16,
    batches: BTreeMap<(ProxyKey, Log), Batch>,
    truth: Truth,
    /// Whether a call goes on to the callee's own callees (a request's whole tree), or
    /// stops at one hop (a load spread evenly over every edge of a big mesh).
    follow_calls: bool,
}

impl Generator {
    fn new(mesh: Mesh, seed: u64, follow_calls: bool) -> Generator {
        Generator {
            mesh,
            rng: SmallRng::seed_from_u64(seed),
            ports: 20_000,
            batches: BTreeMap::new(),
            truth: Truth::default(),
            follow_calls,
        }
    }

    fn id(&self, service: usize) -> String {
        format!(
            "{}/{}",
            self.mesh.namespace, self.mesh.services[service].name
        )
    }

    fn ephemeral(&mut self) -> u16 {
        self.ports = if self.ports >= 60_000 {
            20_000
        } else {
            self.ports + 1
        };
        self.ports
    }

    fn latency(&mut self, median_ms: f64) -> f64 {
        // Log-normal around the median, and a slow tail of 1%.
        let noise: f64 = (self.rng.random::<f64>() - 0.5) * 1.2;
        let slow = if self.rng.random_bool(0.01) {
            10.0
        } else {
            1.0
        };
        (median_ms * noise.exp() * slow).max(0.1)
    }

    /// One request entering at the ingress, and every call it causes.
    fn request(&mut self, now: SystemTime, n: u64) {
        self.truth.requests += 1;
        let client_ip = [203, 0, 113, (n % 200) as u8 + 1];
        let client_port = self.ephemeral();
        self.hop(now, n, None, Some((client_ip, client_port)), 0, 1);
    }

    /// One call on an edge picked at random: every edge of a big mesh gets traffic
    /// without a request walking the whole graph.
    fn edge_request(&mut self, now: SystemTime, n: u64) {
        let callers: Vec<usize> = (0..self.mesh.calls.len())
            .filter(|i| !self.mesh.calls[*i].is_empty())
            .collect();
        let caller = callers[self.rng.random_range(0..callers.len())];
        if caller == 0 {
            self.request(now, n);
            return;
        }
        self.truth.requests += 1;
        let target =
            self.mesh.calls[caller][self.rng.random_range(0..self.mesh.calls[caller].len())].0;
        let instance = self
            .rng
            .random_range(0..self.mesh.services[caller].instances.len());
        self.hop(now, n, Some((caller, instance)), None, caller, target);
    }

    /// The call from `caller` (a proxy, or the outside when `None`) to service `target`.
    fn hop(
        &mut self,
        now: SystemTime,
        n: u64,
        caller: Option<ProxyKey>,
        outside: Option<([u8; 4], u16)>,
        caller_service: usize,
        target: usize,
    ) {
        let target_kind = self.mesh.services[target].kind;
        let instance = self
            .rng
            .random_range(0..self.mesh.services[target].instances.len());
        let target_ip = self.mesh.services[target].instances[instance];
        let port = self.mesh.services[target].port;
        let paths = &self.mesh.services[target].paths;
        let template = paths[self.rng.random_range(0..paths.len())].clone();
        let path = template
            .replace("{n}", &self.rng.random_range(1..100_000u32).to_string())
            .replace(
                "{uuid}",
                &format!("{:08x}-4e29-41d4-a716-{:012x}", n as u32, n),
            );
        let median = self.mesh.services[target].latency_ms;
        let server_ms = self.latency(median);
        let error = self.rng.random_bool(self.mesh.services[target].error_rate);
        let status = if error { 500 } else { 200 };
        let caller_proxy = caller.unwrap_or((caller_service, 0));
        let caller_ip = self.mesh.services[caller_proxy.0].instances[caller_proxy.1];
        let caller_name = self.mesh.services[caller_proxy.0].name.clone();
        let host = format!(
            "{}.{}.svc.cluster.local",
            self.mesh.services[target].name, self.mesh.namespace
        );
        let upstream_local = (caller_ip, self.ephemeral());
        let request_bytes = self.rng.random_range(200..800);
        let response_bytes = self.rng.random_range(300..5_000);

        if target_kind == Kind::Database {
            let hop = Hop {
                start: now,
                latency_ms: server_ms,
                cluster: format!("outbound|{port}||{host}"),
                downstream_remote: (caller_ip, self.ephemeral()),
                downstream_local: (target_ip, port),
                upstream_local,
                upstream_remote: (target_ip, port),
                caller_cluster: None,
                peer_spiffe: None,
                method: 0,
                path: "",
                status: 0,
                request_bytes,
                response_bytes,
            };
            self.push_tcp(caller_proxy, Log::OutboundTcp, envoy::tcp_entry(&hop));
            let source = self.id(caller_proxy.0);
            let target_id = self.id(target);
            self.truth.record(&source, &target_id, "tcp", false, false);
            return;
        }

        let request_id = format!("sim-{n}-{target}");
        // The client side: the ingress (a gateway) or the caller's sidecar.
        let client_hop = Hop {
            start: now,
            latency_ms: server_ms + 0.4,
            cluster: format!("outbound|{port}||{host}"),
            downstream_remote: outside.unwrap_or((caller_ip, 0)),
            downstream_local: if outside.is_some() {
                (caller_ip, 80)
            } else {
                (target_ip, port)
            },
            upstream_local,
            upstream_remote: (target_ip, port),
            caller_cluster: Some(&caller_name),
            peer_spiffe: None,
            method: 1,
            path: &path,
            status,
            request_bytes,
            response_bytes,
        };
        let (log, source) = if outside.is_some() {
            let ingress = self.id(caller_proxy.0);
            self.truth.record("external", &ingress, "http", true, error);
            (Log::Ingress, ingress)
        } else {
            (Log::OutboundHttp, self.id(caller_proxy.0))
        };
        self.push_http(
            caller_proxy,
            log,
            envoy::http_entry(&client_hop, &request_id),
        );
        let target_id = self.id(target);
        let meshed = self.mesh.has_sidecar(target);
        self.truth
            .record(&source, &target_id, "http", meshed, error);
        if !meshed {
            return;
        }
        let server_hop = Hop {
            start: now,
            latency_ms: server_ms,
            cluster: format!("inbound|{port}||"),
            downstream_remote: upstream_local,
            downstream_local: (target_ip, port),
            upstream_local: ([127, 0, 0, 6], self.ephemeral()),
            upstream_remote: ([127, 0, 0, 1], port),
            caller_cluster: Some(&caller_name),
            peer_spiffe: Some(format!(
                "spiffe://cluster.local/ns/{}/sa/{}",
                self.mesh.namespace, caller_name
            )),
            method: 1,
            path: &path,
            status,
            request_bytes,
            response_bytes,
        };
        self.push_http(
            (target, instance),
            Log::InboundHttp,
            envoy::http_entry(&server_hop, &request_id),
        );
        if !self.follow_calls {
            return;
        }
        let calls = self.mesh.calls[target].clone();
        for (next, chance) in calls {
            if self.rng.random_bool(chance) {
                self.hop(now, n, Some((target, instance)), None, target, next);
            }
        }
    }

    fn push_http(&mut self, proxy: ProxyKey, log: Log, entry: HttpAccessLogEntry) {
        self.truth.entries += 1;
        self.batches
            .entry((proxy, log))
            .or_default()
            .http
            .push(entry);
    }

    fn push_tcp(&mut self, proxy: ProxyKey, log: Log, entry: TcpAccessLogEntry) {
        self.truth.entries += 1;
        self.batches
            .entry((proxy, log))
            .or_default()
            .tcp
            .push(entry);
    }

    fn proxy(&self, (service, instance): ProxyKey) -> Proxy {
        let s = &self.mesh.services[service];
        Proxy {
            node_id: format!("{}-v1-{instance}", s.name),
            cluster: s.name.clone(),
            namespace: self.mesh.namespace.clone(),
            pod: format!("{}-7d9f-{instance}", s.name),
            ip: s.instances[instance],
        }
    }
}

fn log_name(service: &str, log: Log) -> String {
    match log {
        Log::Ingress => format!("{service}_http"),
        Log::InboundHttp => format!("{service}_inbound_http"),
        Log::OutboundHttp => format!("{service}_outbound_http"),
        Log::OutboundTcp => format!("{service}_outbound_tcp"),
    }
}

/// Sends the simulated mesh until `stop` resolves; returns what was sent.
async fn send(
    target: &str,
    mesh: Mesh,
    rate: f64,
    seed: u64,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Truth> {
    let channel = tonic::transport::Endpoint::from_shared(target.to_string())
        .context("collector address")?
        .connect()
        .await
        .with_context(|| format!("connecting to the collector at {target}"))?;
    let client = AccessLogServiceClient::new(channel.clone());
    let mut proxy_stats = stats::SimulatedStats::new(channel);
    let mut generator = Generator::new(mesh, seed, true);
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
                anyhow::bail!("the collector closed an access log stream");
            }
        }
        proxy_stats.flush_if_due(&mut tasks).await?;
    }
    drop(streams);
    while let Some(result) = tasks.join_next().await {
        if let Err(status) = result? {
            warn!(error = %status, "an access log stream failed");
            anyhow::bail!("the collector refused a stream: {status}");
        }
    }
    Ok(generator.truth)
}
