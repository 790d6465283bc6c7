//! The `envoy.service.metrics.v3.MetricsService` receiver: proxies' own statistics.

use std::collections::HashMap;
use std::sync::Arc;

use meshscope_proto::pb::envoy::service::metrics::v3::{
    StreamMetricsMessage, StreamMetricsResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use meshscope_storage::{ProxyInfo, ServiceRef};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::Collector;
use crate::als::MAX_MESSAGE_BYTES;
use crate::identity::NodeIdentity;
use crate::names::{ClusterDirection, NamedService, parse_istio_cluster, service_from_host};
use crate::proxy_stats::Reporter;
use crate::reporter_check::PeerConnection;
use crate::resolve::is_passthrough;
use crate::stats;
use crate::wal_log::{LoggedStream, StreamKind};
use prost::Message as _;

pub struct MetricsReceiver {
    collector: Arc<Collector>,
}

impl MetricsReceiver {
    pub fn server(collector: Arc<Collector>) -> MetricsServiceServer<MetricsReceiver> {
        MetricsServiceServer::new(MetricsReceiver { collector })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsReceiver {
    async fn stream_metrics(
        &self,
        request: Request<Streaming<StreamMetricsMessage>>,
    ) -> Result<Response<StreamMetricsResponse>, Status> {
        let connection = PeerConnection {
            addr: request.remote_addr(),
            certificates: request.peer_certs(),
        };
        let peer = connection.addr;
        let mut stream = request.into_inner();
        let mut reporter: Option<NodeIdentity> = None;
        let mut logged: Option<LoggedStream> = None;
        loop {
            // While a write of closed minutes stalls, the stream is not read.
            self.collector.wait_while_writes_stall().await;
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    warn!(?peer, error = %status.message(), "metrics stream ended by a bad message");
                    return Err(status);
                }
            };
            metrics::counter!(stats::PROXY_STATS_MESSAGES).increment(1);
            if let Some(identifier) = &message.identifier {
                self.collector
                    .check_reporter(identifier.node.as_ref(), &connection, "metrics")?;
                let identity =
                    self.collector
                        .identify(identifier.node.as_ref())
                        .map_err(|reason| {
                            warn!(?peer, reason, "metrics stream refused");
                            Status::invalid_argument(reason)
                        })?;
                reporter = Some(identity);
                logged = self
                    .collector
                    .log()
                    .map(|log| log.open_stream(StreamKind::Metrics, &identifier.encode_to_vec()));
            }
            let Some(identity) = &reporter else {
                stats::proxy_stat_dropped("no_identifier", message.envoy_metrics.len() as u64);
                return Err(Status::invalid_argument(
                    "the first message of a metrics stream must carry an identifier with the node",
                ));
            };
            let now = self.collector.clock.now_ms();
            // The message as received, encoded again: tonic hands it over decoded.
            let _applying = match (self.collector.log(), &logged) {
                (Some(log), Some(stream)) => {
                    Some(log.log(stream, now, &message.encode_to_vec()).await?)
                }
                _ => None,
            };
            self.collector
                .ingest_proxy_stats_at(identity, &message, now, true);
        }
        debug!(?peer, "metrics stream closed");
        Ok(Response::new(StreamMetricsResponse {}))
    }
}

impl Collector {
    /// Stores one flush of a proxy's statistics and marks the proxy as seen.
    pub fn ingest_proxy_stats(&self, identity: &NodeIdentity, message: &StreamMetricsMessage) {
        self.ingest_proxy_stats_at(identity, message, self.clock.now_ms(), true);
    }

    /// Stores one flush of a proxy's statistics received at `now`; with `store_rows`
    /// false (a replay of what the files already hold) it only brings the proxy's counters
    /// up to date, so that its next flush makes the right deltas.
    pub(crate) fn ingest_proxy_stats_at(
        &self,
        identity: &NodeIdentity,
        message: &StreamMetricsMessage,
        now: i64,
        store_rows: bool,
    ) {
        let registry = self.store.proxy_registry();
        let service = identity.service.id();
        let known = registry.see_proxy(ProxyInfo {
            id: identity.node_id.clone(),
            service: service.clone(),
            instance: identity.instance.clone(),
            envoy_version: envoy_version(&identity.proxy_version),
            last_seen: now,
        });
        if !known {
            stats::proxy_stat_dropped("too_many_proxies", message.envoy_metrics.len() as u64);
            return;
        }
        let reporter = Reporter {
            proxy: &identity.node_id,
            service: &service,
        };
        let rows = self.proxy_stats.rows(
            &self.config.proxy_stats,
            &reporter,
            &message.envoy_metrics,
            now,
        );
        if !store_rows {
            return;
        }
        metrics::counter!(stats::PROXY_STATS_STORED).increment(rows.len() as u64);
        let mut upstreams: HashMap<String, String> = HashMap::new();
        for mut row in rows {
            if !row.cluster.is_empty() {
                row.upstream = upstreams
                    .entry(row.cluster.clone())
                    .or_insert_with(|| {
                        self.upstream_of(&row.cluster)
                            .map_or_else(String::new, |s| s.id())
                    })
                    .clone();
            }
            self.proxy_minutes.record(row);
        }
    }

    /// The service an upstream cluster leads to, named the way the access-log path names
    /// the callee of a call through that cluster when the callee's address says nothing
    /// more; `None` for inbound and catch-all clusters. This is what ties a proxy's cluster
    /// statistics to the edges of the graph.
    fn upstream_of(&self, cluster: &str) -> Option<ServiceRef> {
        if let Some(service) = self.registry.cluster_alias(cluster) {
            return Some(service);
        }
        match parse_istio_cluster(cluster) {
            Some(c) if c.direction == ClusterDirection::Outbound && !c.host.is_empty() => {
                Some(self.registry.canonical(&service_from_host(c.host)))
            }
            Some(_) => None,
            None if is_passthrough(cluster) || cluster == "meshscope" => None,
            None => Some(self.registry.canonical(&NamedService {
                namespace: None,
                name: cluster.to_string(),
            })),
        }
    }
}

/// `envoy/1.39.3` -> `1.39.3`: the UI shows the version; the name is always Envoy here.
fn envoy_version(proxy_version: &str) -> String {
    proxy_version
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}
