//! The `envoy.service.accesslog.v3.AccessLogService` receiver.

use std::sync::Arc;

use meshscope_proto::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
    access_log_service_server::{AccessLogService, AccessLogServiceServer},
    stream_access_logs_message::LogEntries,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::Collector;
use crate::entry::{self, Observation};
use crate::identity::NodeIdentity;
use crate::ingest::StreamContext;
use crate::stats;

/// Largest message we decode. Envoy's first message of a stream is 60-75 KB (the node
/// lists every extension) and later ones stay near its 16 KB flush size.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

pub struct AlsReceiver {
    collector: Arc<Collector>,
}

impl AlsReceiver {
    pub fn server(collector: Arc<Collector>) -> AccessLogServiceServer<AlsReceiver> {
        AccessLogServiceServer::new(AlsReceiver { collector })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Decrements the active-stream gauge however the stream ends.
struct ActiveStream;

impl ActiveStream {
    fn open() -> ActiveStream {
        metrics::counter!(stats::STREAMS_OPENED).increment(1);
        metrics::gauge!(stats::STREAMS_ACTIVE).increment(1.0);
        ActiveStream
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        metrics::gauge!(stats::STREAMS_ACTIVE).decrement(1.0);
    }
}

#[tonic::async_trait]
impl AccessLogService for AlsReceiver {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let peer = request.remote_addr();
        let mut stream = request.into_inner();
        let _active = ActiveStream::open();
        let mut context: Option<StreamContext> = None;
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    metrics::counter!(stats::STREAMS_FAILED, "reason" => "malformed").increment(1);
                    warn!(?peer, error = %status.message(), "access log stream ended by a bad message");
                    return Err(status);
                }
            };
            metrics::counter!(stats::MESSAGES).increment(1);
            if let Some(identifier) = &message.identifier {
                context = Some(
                    self.collector
                        .stream_context(identifier)
                        .map_err(|reason| {
                            metrics::counter!(stats::STREAMS_FAILED, "reason" => "bad_identifier")
                                .increment(1);
                            warn!(?peer, reason, "access log stream refused");
                            Status::invalid_argument(reason)
                        })?,
                );
            }
            let Some(ctx) = &context else {
                let entries = entry_count(&message);
                stats::reject("no_identifier", entries as u64);
                metrics::counter!(stats::STREAMS_FAILED, "reason" => "no_identifier").increment(1);
                warn!(
                    ?peer,
                    entries, "access log stream without an identifier refused"
                );
                return Err(Status::invalid_argument(
                    "the first message of an access log stream must carry an identifier with the node",
                ));
            };
            self.collector.ingest_message(ctx, message);
        }
        debug!(?peer, "access log stream closed");
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

fn entry_count(message: &StreamAccessLogsMessage) -> usize {
    match &message.log_entries {
        Some(LogEntries::HttpLogs(h)) => h.log_entry.len(),
        Some(LogEntries::TcpLogs(t)) => t.log_entry.len(),
        None => 0,
    }
}

impl Collector {
    /// Reads a stream's identifier: who reports, under which log, in which role.
    pub fn stream_context(
        &self,
        identifier: &meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier,
    ) -> Result<StreamContext, &'static str> {
        let reporter = self.identify(identifier.node.as_ref())?;
        if identifier.log_name.len() > self.config.max_field_len {
            return Err("the log name is too long");
        }
        self.registry.register_reporter(&reporter);
        let gateway = self.role_rules.is_gateway(&reporter, &identifier.log_name);
        Ok(StreamContext {
            reporter: Arc::new(reporter),
            log_name: identifier.log_name.clone(),
            gateway,
        })
    }

    /// Names the proxy behind a stream; every receiver goes through here so that a proxy's
    /// logs and statistics carry the same identity.
    pub fn identify(
        &self,
        node: Option<&meshscope_proto::pb::envoy::config::core::v3::Node>,
    ) -> Result<NodeIdentity, &'static str> {
        let node = node.ok_or("the stream identifier has no node")?;
        NodeIdentity::from_node(node)
            .map_err(|_| "the node has no metadata, cluster or id to name it by")
    }

    /// Decodes, checks and aggregates the entries of one message.
    pub fn ingest_message(&self, ctx: &StreamContext, message: StreamAccessLogsMessage) {
        let now = self.clock.now_ms();
        let max_len = self.config.max_field_len;
        let (kind, results): (&str, Vec<Result<Observation, entry::Reject>>) =
            match &message.log_entries {
                Some(LogEntries::HttpLogs(h)) => (
                    "http",
                    h.log_entry
                        .iter()
                        .map(|e| entry::from_http(e, max_len))
                        .collect(),
                ),
                Some(LogEntries::TcpLogs(t)) => (
                    "tcp",
                    t.log_entry
                        .iter()
                        .map(|e| entry::from_tcp(e, max_len))
                        .collect(),
                ),
                None => return,
            };
        metrics::counter!(stats::ENTRIES_RECEIVED, "kind" => kind).increment(results.len() as u64);
        let mut accepted = Vec::with_capacity(results.len());
        let mut rejected: Option<(entry::Reject, usize)> = None;
        for result in results {
            match result.and_then(|obs| self.time_rules.check(obs.start_ms, now).map(|()| obs)) {
                Ok(obs) => accepted.push(obs),
                Err(reject) => {
                    stats::reject(reject.reason(), 1);
                    let count = rejected.map_or(0, |(_, n)| n);
                    rejected = Some((reject, count + 1));
                }
            }
        }
        if let Some((reject, count)) = rejected {
            self.log_rejection(&ctx.reporter.node_id, &ctx.log_name, reject.reason(), count);
        }
        metrics::counter!(stats::ENTRIES_ACCEPTED).increment(accepted.len() as u64);
        self.pipeline().ingest(ctx, accepted, now);
    }
}
