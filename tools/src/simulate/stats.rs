//! The simulated proxies' own statistics, sent as `StreamMetrics` the way Envoy's
//! `envoy.stat_sinks.metrics_service` sink does: one stream per proxy, the node in its first
//! message, cumulative counters and gauges, and each histogram's samples since the last
//! flush with Envoy's default buckets. The figures come from the access-log entries the
//! simulator sends, so the proxies' request totals agree with the traffic map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use meshscope_proto::pb::envoy::config::core::v3::node::UserAgentVersionType;
use meshscope_proto::pb::envoy::data::accesslog::v3::{AccessLogCommon, HttpAccessLogEntry};
use meshscope_proto::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use meshscope_proto::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use meshscope_proto::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier;
use meshscope_proto::pb::io::prometheus::client::{
    Bucket, Counter, Gauge, Histogram, Metric, MetricFamily, MetricType,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::envoy::{self, Proxy};
use super::generator::ProxyKey;
use crate::error::{Error, Result};

/// Envoy's default `stats_flush_interval`.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Envoy's default histogram bucket bounds (milliseconds for request times).
const BOUNDS: [f64; 20] = [
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    600_000.0,
    1_800_000.0,
    3_600_000.0,
    7_200_000.0,
];

#[derive(Default)]
struct ClusterStats {
    requests: u64,
    errors_5xx: u64,
    /// Addresses this proxy has sent requests to: the members it knows of.
    members: BTreeSet<String>,
    /// Request times since the last flush.
    times_ms: Vec<f64>,
}

struct ProxyState {
    proxy: Proxy,
    clusters: BTreeMap<String, ClusterStats>,
    stream: Option<mpsc::Sender<StreamMetricsMessage>>,
}

/// What each simulated proxy would report about itself.
pub(super) struct SimulatedStats {
    client: MetricsServiceClient<Channel>,
    started: Instant,
    last_flush: Instant,
    proxies: HashMap<ProxyKey, ProxyState>,
}

impl SimulatedStats {
    pub(super) fn new(channel: Channel) -> Self {
        Self {
            client: MetricsServiceClient::new(channel),
            started: Instant::now(),
            last_flush: Instant::now(),
            proxies: HashMap::new(),
        }
    }

    /// Counts the HTTP entries a proxy is about to send in its access log.
    pub(super) fn observe(&mut self, key: ProxyKey, proxy: Proxy, entries: &[HttpAccessLogEntry]) {
        let state = self.proxies.entry(key).or_insert_with(|| ProxyState {
            proxy,
            clusters: BTreeMap::new(),
            stream: None,
        });
        for entry in entries {
            let Some(common) = &entry.common_properties else {
                continue;
            };
            let cluster = state
                .clusters
                .entry(common.upstream_cluster.clone())
                .or_default();
            cluster.requests += 1;
            let status = entry
                .response
                .as_ref()
                .and_then(|r| r.response_code.as_ref())
                .map_or(0, |c| c.value);
            cluster.errors_5xx += u64::from((500..600).contains(&status));
            cluster.members.insert(member(common));
            cluster.times_ms.push(millis(common));
        }
    }

    /// Sends every proxy's statistics when a flush interval has passed.
    pub(super) async fn flush_if_due(
        &mut self,
        tasks: &mut JoinSet<Result<(), tonic::Status>>,
    ) -> Result<()> {
        if self.last_flush.elapsed() < FLUSH_EVERY {
            return Ok(());
        }
        self.last_flush = Instant::now();
        let uptime = self.started.elapsed().as_secs_f64();
        for state in self.proxies.values_mut() {
            let identifier = state.stream.is_none().then(|| {
                let mut node = envoy::identifier(&state.proxy, "").node;
                if let Some(node) = &mut node {
                    node.user_agent_version_type =
                        Some(UserAgentVersionType::UserAgentVersion("1.39.3".into()));
                }
                Identifier { node }
            });
            let sender = state.stream.get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel(16);
                let mut client = self.client.clone();
                tasks.spawn(async move {
                    client
                        .stream_metrics(tokio_stream::wrappers::ReceiverStream::new(rx))
                        .await
                        .map(|_| ())
                });
                tx
            });
            let message = StreamMetricsMessage {
                identifier,
                envoy_metrics: families(uptime, &mut state.clusters),
            };
            if sender.send(message).await.is_err() {
                return Err(Error::StreamClosed("a metrics stream"));
            }
        }
        Ok(())
    }
}

fn member(common: &AccessLogCommon) -> String {
    format!("{:?}", common.upstream_remote_address)
}

fn millis(common: &AccessLogCommon) -> f64 {
    common
        .duration
        .as_ref()
        .map_or(0.0, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
}

fn gauge(name: String, value: f64) -> MetricFamily {
    family(
        name,
        MetricType::Gauge,
        Metric {
            gauge: Some(Gauge { value: Some(value) }),
            ..Default::default()
        },
    )
}

fn counter(name: String, value: u64) -> MetricFamily {
    family(
        name,
        MetricType::Counter,
        Metric {
            counter: Some(Counter {
                value: Some(value as f64),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn family(name: String, kind: MetricType, metric: Metric) -> MetricFamily {
    MetricFamily {
        name: Some(name),
        r#type: Some(kind as i32),
        metric: vec![metric],
        ..Default::default()
    }
}

/// One flush: server gauges, and per cluster its totals, membership, circuit breakers and
/// the request times recorded since the previous flush (which are then forgotten).
fn families(uptime_secs: f64, clusters: &mut BTreeMap<String, ClusterStats>) -> Vec<MetricFamily> {
    let mut out = vec![
        gauge("server.uptime".into(), uptime_secs.floor()),
        gauge("server.memory_allocated".into(), 48.0 * 1024.0 * 1024.0),
    ];
    for (name, stats) in clusters {
        let prefix = format!("cluster.{name}");
        let members = stats.members.len() as f64;
        out.push(counter(
            format!("{prefix}.upstream_rq_total"),
            stats.requests,
        ));
        out.push(counter(
            format!("{prefix}.upstream_rq_5xx"),
            stats.errors_5xx,
        ));
        out.push(gauge(format!("{prefix}.membership_healthy"), members));
        out.push(gauge(format!("{prefix}.membership_total"), members));
        out.push(gauge(format!("{prefix}.upstream_rq_pending_active"), 0.0));
        out.push(gauge(
            format!("{prefix}.circuit_breakers.default.rq_open"),
            0.0,
        ));
        out.push(gauge(
            format!("{prefix}.circuit_breakers.default.cx_open"),
            0.0,
        ));
        let times = std::mem::take(&mut stats.times_ms);
        let bucket = BOUNDS
            .iter()
            .map(|bound| Bucket {
                cumulative_count: Some(times.iter().filter(|t| *t <= bound).count() as u64),
                upper_bound: Some(*bound),
                ..Default::default()
            })
            .collect();
        out.push(family(
            format!("{prefix}.upstream_rq_time"),
            MetricType::Histogram,
            Metric {
                histogram: Some(Histogram {
                    sample_count: Some(times.len() as u64),
                    sample_sum: Some(times.iter().sum()),
                    bucket,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ));
    }
    out
}
