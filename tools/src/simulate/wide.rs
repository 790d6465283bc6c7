//! `meshscope simulate-wide`: a large service graph sent once, a few calls per edge, so that
//! the map can be tried at the size of a big cluster (hundreds of services, thousands of
//! edges) without waiting for random requests to reach every edge. Both sides of each call
//! report, as meshed sidecars do, so every edge is joined and seen by the server.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use meshscope_proto::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tracing::info;

use super::envoy::{self, Hop, Proxy};
use crate::error::{Error, Result};

/// Call depth of the mesh: services sit in tiers (edge, APIs, domain services, ..., data) and
/// call the next tier or the one after, so the map is a few columns deep, as real meshes are.
const TIERS: usize = 8;

/// Share of calls that stay in the caller's namespace.
const SAME_NAMESPACE: f64 = 0.6;

const PORT: u16 = 8080;

/// The flags of `meshscope simulate-wide`.
#[derive(Debug, clap::Args)]
pub struct WideArgs {
    /// The collector's gRPC address
    #[arg(long, default_value = "http://127.0.0.1:11800")]
    target: String,
    #[arg(long, default_value_t = 500)]
    services: usize,
    /// Distinct caller-callee pairs; at least one per service so that every service is called
    #[arg(long, default_value_t = 5_000)]
    edges: usize,
    /// The services are spread evenly over this many namespaces
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

struct Service {
    name: String,
    namespace: String,
    ip: [u8; 4],
}

impl Service {
    fn proxy(&self) -> Proxy {
        Proxy {
            node_id: format!("{}-v1-0", self.name),
            cluster: self.name.clone(),
            namespace: self.namespace.clone(),
            pod: format!("{}-7d9f-0", self.name),
            ip: self.ip,
        }
    }
}

/// Which log of which service: outbound (`false`) or inbound (`true`).
type LogKey = (usize, bool);

/// Runs `meshscope simulate-wide`: every edge of a large generated graph gets one to three
/// calls, sent once, one stream per proxy log.
pub async fn run(args: WideArgs) -> Result<()> {
    let services = build_services(args.services.max(2), args.namespaces.max(1));
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let edges = build_edges(services.len(), args.namespaces.max(1), args.edges, &mut rng);
    let now = SystemTime::now();
    let mut logs: BTreeMap<LogKey, Vec<HttpAccessLogEntry>> = BTreeMap::new();
    let mut port = 20_000u16;
    for (n, &(caller, callee)) in edges.iter().enumerate() {
        for call in 0..rng.random_range(1..=3) {
            port = if port >= 60_000 { 20_000 } else { port + 1 };
            let error = rng.random_bool(0.03);
            let request_id = format!("wide-{n}-{call}");
            let (client, server) = hops(&services[caller], &services[callee], now, port, error);
            logs.entry((caller, false))
                .or_default()
                .push(envoy::http_entry(&client, &request_id));
            logs.entry((callee, true))
                .or_default()
                .push(envoy::http_entry(&server, &request_id));
        }
    }
    let mut client = AccessLogServiceClient::connect(args.target.clone())
        .await
        .map_err(Error::connect(&args.target))?;
    let streams = logs.len();
    for ((service, inbound), entries) in logs {
        let proxy = services[service].proxy();
        let log_name = if inbound {
            format!("{}_inbound_http", proxy.cluster)
        } else {
            format!("{}_outbound_http", proxy.cluster)
        };
        let message = StreamAccessLogsMessage {
            identifier: Some(envoy::identifier(&proxy, &log_name)),
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: entries,
            })),
        };
        client
            .stream_access_logs(tokio_stream::iter([message]))
            .await
            .map_err(Error::refused("the collector refused a stream"))?;
    }
    info!(
        services = services.len(),
        edges = edges.len(),
        streams,
        "wide mesh sent"
    );
    Ok(())
}

fn build_services(count: usize, namespaces: usize) -> Vec<Service> {
    (0..count)
        .map(|i| Service {
            name: format!("svc-{i:03}"),
            // Interleaved, so that every namespace has services in every tier.
            namespace: format!("ns-{:02}", i % namespaces),
            ip: [10, 200 + (i >> 16) as u8, (i >> 8) as u8, i as u8],
        })
        .collect()
}

fn tier(service: usize, services: usize) -> usize {
    service * TIERS / services
}

/// Distinct `(caller, callee)` pairs from one tier to a deeper one, so calls flow one way:
/// first a caller in the tier before for every service past the first tier, then random
/// pairs. Past what the tiers allow, any pair with the callee later in order will do.
fn build_edges(
    services: usize,
    namespaces: usize,
    wanted: usize,
    rng: &mut SmallRng,
) -> Vec<(usize, usize)> {
    let possible = services * (services - 1) / 2;
    let wanted = wanted.min(possible);
    let tiers: Vec<Vec<usize>> = (0..TIERS)
        .map(|t| (0..services).filter(|&s| tier(s, services) == t).collect())
        .collect();
    let mut seen = HashSet::with_capacity(wanted);
    let mut edges = Vec::with_capacity(wanted);
    let pick = |from: &[usize], namespace: Option<usize>, rng: &mut SmallRng| {
        let same: Vec<usize> = match namespace {
            Some(ns) => from
                .iter()
                .copied()
                .filter(|s| s % namespaces == ns)
                .collect(),
            None => Vec::new(),
        };
        let pool = if same.is_empty() { from } else { &same[..] };
        pool[rng.random_range(0..pool.len())]
    };
    for callee in 0..services {
        let t = tier(callee, services);
        if t == 0 || tiers[t - 1].is_empty() {
            continue;
        }
        let caller = pick(&tiers[t - 1], Some(callee % namespaces), rng);
        if seen.insert((caller, callee)) {
            edges.push((caller, callee));
        }
    }
    let mut misses = 0;
    while edges.len() < wanted {
        let (caller, callee) = if misses < 10_000 {
            let caller = rng.random_range(0..services);
            let depth = if rng.random_bool(0.8) { 1 } else { 2 };
            let t = tier(caller, services) + depth;
            if t >= TIERS || tiers[t].is_empty() {
                misses += 1;
                continue;
            }
            let namespace = rng
                .random_bool(SAME_NAMESPACE)
                .then_some(caller % namespaces);
            (caller, pick(&tiers[t], namespace, rng))
        } else {
            let caller = rng.random_range(0..services - 1);
            (caller, rng.random_range(caller + 1..services))
        };
        if seen.insert((caller, callee)) {
            edges.push((caller, callee));
        } else {
            misses += 1;
        }
    }
    edges
}

/// The caller's outbound and the callee's inbound side of one call, with the same
/// connection on both so the collector joins them.
fn hops<'a>(
    caller: &'a Service,
    callee: &Service,
    start: SystemTime,
    port: u16,
    error: bool,
) -> (Hop<'a>, Hop<'a>) {
    let status = if error { 503 } else { 200 };
    let latency_ms = 3.0 + f64::from(port % 40);
    let upstream_local = (caller.ip, port);
    let client = Hop {
        start,
        latency_ms: latency_ms + 0.4,
        cluster: format!(
            "outbound|{PORT}||{}.{}.svc.cluster.local",
            callee.name, callee.namespace
        ),
        downstream_remote: (caller.ip, 0),
        downstream_local: (callee.ip, PORT),
        upstream_local,
        upstream_remote: (callee.ip, PORT),
        caller_cluster: Some(&caller.name),
        peer_spiffe: None,
        method: 1,
        path: "/",
        status,
        request_bytes: 400,
        response_bytes: 1_200,
    };
    let server = Hop {
        start,
        latency_ms,
        cluster: format!("inbound|{PORT}||"),
        downstream_remote: upstream_local,
        downstream_local: (callee.ip, PORT),
        upstream_local: ([127, 0, 0, 6], port),
        upstream_remote: ([127, 0, 0, 1], PORT),
        caller_cluster: Some(&caller.name),
        peer_spiffe: Some(format!(
            "spiffe://cluster.local/ns/{}/sa/{}",
            caller.namespace, caller.name
        )),
        method: 1,
        path: "/",
        status,
        request_bytes: 400,
        response_bytes: 1_200,
    };
    (client, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_distinct_flow_one_way_and_reach_every_tier() {
        let mut rng = SmallRng::seed_from_u64(7);
        let edges = build_edges(500, 10, 5_000, &mut rng);
        assert_eq!(edges.len(), 5_000);
        assert_eq!(edges.iter().collect::<HashSet<_>>().len(), 5_000);
        assert!(
            edges
                .iter()
                .all(|&(caller, callee)| tier(caller, 500) < tier(callee, 500))
        );
        let called: HashSet<usize> = edges.iter().map(|e| e.1).collect();
        let first_tier = (0..500).filter(|&s| tier(s, 500) == 0).count();
        assert_eq!(
            called.len(),
            500 - first_tier,
            "every service past the first tier is called"
        );
        let same = edges.iter().filter(|(a, b)| a % 10 == b % 10).count();
        assert!(same > 2_500, "most calls stay in their namespace: {same}");
    }

    #[test]
    fn a_graph_cannot_ask_for_more_edges_than_pairs() {
        let mut rng = SmallRng::seed_from_u64(7);
        let edges = build_edges(4, 1, 100, &mut rng);
        assert_eq!(edges.len(), 6);
        assert!(edges.iter().all(|(a, b)| a < b));
    }

    #[test]
    fn services_fill_namespaces_evenly_with_distinct_addresses() {
        let services = build_services(500, 10);
        let namespaces: HashSet<&str> = services.iter().map(|s| s.namespace.as_str()).collect();
        assert_eq!(namespaces.len(), 10);
        assert_eq!(services[250].namespace, "ns-00");
        assert_eq!(services[251].namespace, "ns-01");
        let ips: HashSet<[u8; 4]> = services.iter().map(|s| s.ip).collect();
        assert_eq!(ips.len(), 500);
    }
}
