//! The `envoy.service.accesslog.v3.AccessLogService` receiver. Messages are taken as raw
//! bytes and read with [`crate::wire`]: only the stream's identifier (once per stream) goes
//! through a full prost decode.

use std::convert::Infallible;

use bytes::Bytes;
use std::sync::Arc;
use std::task::{Context, Poll};

use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsResponse;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier;
use prost::Message as _;
use tonic::Status;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::NamedService;
use tracing::{debug, warn};

use crate::Collector;
use crate::collector_ring::CollectorRing;
use crate::entry::Reject;
use crate::forwarding::{self, FORWARDED_BY_HEADER, ForwardedStreams, KeepHere};
use crate::grpc_stream::{MessageStream, ok_response};
use crate::ingest::StreamContext;
use crate::message_split::{SplitMessage, entries_message};
use crate::reporter_check::PeerConnection;
use crate::stats;
use crate::wal_log::{LoggedStream, StreamKind};
use crate::wire;

/// Largest message we decode. Envoy's first message of a stream is 60-75 KB (the node
/// lists every extension) and later ones stay near its 16 KB flush size.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

const METHOD_PATH: &str = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";

/// The gRPC service, routed by its protobuf name like a generated server.
#[derive(Clone)]
pub struct AlsReceiver {
    collector: Arc<Collector>,
}

impl AlsReceiver {
    pub fn server(collector: Arc<Collector>) -> AlsReceiver {
        AlsReceiver { collector }
    }
}

impl NamedService for AlsReceiver {
    const NAME: &'static str = "envoy.service.accesslog.v3.AccessLogService";
}

impl<B> Service<http::Request<B>> for AlsReceiver
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != METHOD_PATH {
            return Box::pin(async move { Ok(Status::unimplemented("").into_http()) });
        }
        let collector = self.collector.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let connection = PeerConnection::from_extensions(&parts.extensions);
            // A stream another collector passes on is ingested here whole, never passed on.
            let forwarded = parts.headers.contains_key(FORWARDED_BY_HEADER);
            let stream = MessageStream::new(Box::pin(body), MAX_MESSAGE_BYTES);
            Ok(
                match receive(&collector, connection, stream, forwarded).await {
                    Ok(()) => ok_response(&StreamAccessLogsResponse {}),
                    Err(status) => status.into_http(),
                },
            )
        })
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

async fn receive<B>(
    collector: &Arc<Collector>,
    connection: PeerConnection,
    mut stream: MessageStream<B>,
    forwarded: bool,
) -> Result<(), Status>
where
    B: Body + Unpin,
    B::Error: Into<StdError>,
{
    let peer = connection.addr;
    let _active = ActiveStream::open();
    let mut context: Option<StreamContext> = None;
    // Shared with the forwarded streams, which log here what a failed one gives back.
    let mut logged: Option<Arc<LoggedStream>> = None;
    // The stream's encoded identifier, and its forwarded streams once the ring is shared.
    let mut identifier_bytes = Bytes::new();
    let mut forwards: Option<ForwardedStreams> = None;
    loop {
        // While a write of closed minutes stalls, the stream is not read: flow control
        // holds the sender back.
        collector.wait_while_writes_stall().await;
        let bytes = match stream.message().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break,
            Err(status) => {
                metrics::counter!(stats::STREAMS_FAILED, "reason" => "malformed").increment(1);
                warn!(?peer, error = %status.message(), "access log stream ended by a bad message");
                return Err(status);
            }
        };
        metrics::counter!(stats::MESSAGES).increment(1);
        let message = wire::Message::parse(&bytes).map_err(|error| {
            metrics::counter!(stats::STREAMS_FAILED, "reason" => "malformed").increment(1);
            warn!(?peer, %error, "access log stream ended by a malformed message");
            Status::invalid_argument(format!("malformed StreamAccessLogsMessage: {error}"))
        })?;
        if let Some(identifier) = message.identifier {
            let identifier = Identifier::decode(identifier).map_err(|error| {
                metrics::counter!(stats::STREAMS_FAILED, "reason" => "malformed").increment(1);
                warn!(?peer, %error, "access log stream ended by a malformed identifier");
                Status::invalid_argument(format!("malformed stream identifier: {error}"))
            })?;
            collector
                .check_reporter(identifier.node.as_ref(), &connection, "access_log")
                .inspect_err(|_| {
                    metrics::counter!(stats::STREAMS_FAILED, "reason" => "identity_mismatch")
                        .increment(1);
                })?;
            context = Some(collector.stream_context(&identifier).map_err(|reason| {
                metrics::counter!(stats::STREAMS_FAILED, "reason" => "bad_identifier").increment(1);
                warn!(?peer, reason, "access log stream refused");
                Status::invalid_argument(reason)
            })?);
            identifier_bytes = Bytes::copy_from_slice(message.identifier.unwrap_or_default());
            logged = collector.log().map(|log| {
                Arc::new(log.open_stream(
                    StreamKind::AccessLog,
                    message.identifier.unwrap_or_default(),
                ))
            });
            // A new identifier starts the stream again, forwarded streams too.
            forwards = None;
        }
        let Some(ctx) = &context else {
            let entries = message.entry_count();
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
        let ring = collector.ring();
        if !forwarded && ring.is_shared() {
            let forwards = forwards.get_or_insert_with(|| {
                ForwardedStreams::new(
                    &identifier_bytes,
                    ring.own(),
                    keep_here(collector.clone(), ctx.clone(), logged.clone()),
                )
            });
            let kept = pass_on(collector, ctx, &ring, forwards, &message).await;
            match kept {
                // Every entry went to its owner.
                Some(kept) if kept.is_empty() => {}
                Some(kept) => {
                    let own = wire::Message::parse(&kept).map_err(|error| {
                        Status::internal(format!("re-encoding a message's own entries: {error}"))
                    })?;
                    apply(collector, ctx, logged.as_deref(), &kept, &own).await?;
                }
                None => apply(collector, ctx, logged.as_deref(), &bytes, &message).await?,
            }
            continue;
        }
        apply(collector, ctx, logged.as_deref(), &bytes, &message).await?;
    }
    debug!(?peer, "access log stream closed");
    Ok(())
}

/// Logs a message (as received, or the part of it this collector keeps) and ingests it.
async fn apply(
    collector: &Collector,
    ctx: &StreamContext,
    logged: Option<&LoggedStream>,
    bytes: &[u8],
    message: &wire::Message<'_>,
) -> Result<(), Status> {
    let now = collector.clock.now_ms();
    let _applying = match (collector.log(), logged) {
        (Some(log), Some(stream)) => Some(log.log(stream, now, bytes).await.inspect_err(|_| {
            stats::reject("log_unavailable", message.entry_count() as u64);
        })?),
        _ => None,
    };
    collector.ingest_message_at(ctx, message, now, Applied::Live);
    Ok(())
}

/// What a forwarded stream that failed does with the messages still queued on it: logs
/// and ingests them here, on the proxy's stream, as if none had been passed on.
fn keep_here(
    collector: Arc<Collector>,
    ctx: StreamContext,
    logged: Option<Arc<LoggedStream>>,
) -> KeepHere {
    Arc::new(move |returned: Vec<Bytes>| {
        let (collector, ctx, logged) = (collector.clone(), ctx.clone(), logged.clone());
        Box::pin(async move {
            for bytes in returned {
                let Ok(message) = wire::Message::parse(&bytes) else {
                    continue;
                };
                forwarding::count_entries("returned", message.entry_count());
                if apply(&collector, &ctx, logged.as_deref(), &bytes, &message)
                    .await
                    .is_err()
                {
                    warn!("entries given back by a failed forwarded stream could not be logged");
                }
            }
        })
    })
}

/// Passes the entries of `message` that other members own on to them. `None` when every
/// entry stays here (the message is applied as received); else the message of the entries
/// kept here (those this collector owns, and those whose owner could not be reached),
/// empty when there are none.
async fn pass_on(
    collector: &Collector,
    ctx: &StreamContext,
    ring: &CollectorRing,
    forwards: &mut ForwardedStreams,
    message: &wire::Message<'_>,
) -> Option<Bytes> {
    forwards.open_to(ring, &collector.peer_channels);
    let protocol = message.protocol?;
    let split = SplitMessage::of(
        message,
        ctx,
        &collector.role_rules,
        ring,
        collector.config.max_field_len,
    );
    if split.all_local() {
        return None;
    }
    let mut kept = split.local;
    for (index, entries) in split.peers {
        let part = entries_message(protocol, &entries);
        if forwards
            .send(ring.member(index), &collector.peer_channels, part)
            .await
        {
            forwarding::count_entries("sent", entries.len());
        } else {
            forwarding::count_entries("kept", entries.len());
            kept.extend(entries);
        }
    }
    if kept.is_empty() {
        return Some(Bytes::new());
    }
    Some(entries_message(protocol, &kept))
}

impl Collector {
    /// Reads a stream's identifier: who reports, under which log, in which role.
    pub fn stream_context(&self, identifier: &Identifier) -> Result<StreamContext, &'static str> {
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
    ) -> Result<crate::identity::NodeIdentity, &'static str> {
        let node = node.ok_or("the stream identifier has no node")?;
        crate::identity::NodeIdentity::from_node(node)
            .map_err(|_| "the node has no metadata, cluster or id to name it by")
    }

    /// Reads, checks and aggregates the entries of one message.
    pub fn ingest_message(&self, ctx: &StreamContext, message: &wire::Message<'_>) {
        self.ingest_message_at(ctx, message, self.clock.now_ms(), Applied::Live);
    }

    /// Reads, checks against the time `now` and aggregates the entries of one message, live
    /// or replayed from the log; returns how many were accepted (and, replayed, kept).
    pub(crate) fn ingest_message_at(
        &self,
        ctx: &StreamContext,
        message: &wire::Message<'_>,
        now: i64,
        applied: Applied<'_>,
    ) -> u64 {
        let Some(protocol) = message.protocol else {
            return 0;
        };
        let max_len = self.config.max_field_len;
        let mut received = 0u64;
        let mut accepted = 0u64;
        let mut rejected: Option<(Reject, usize)> = None;
        let mut pipeline = self.pipeline();
        if matches!(applied, Applied::Replayed(_)) {
            // Raw access-log rows are not replayed: those of the logged entries are written
            // each tick, and which of them were is not noted.
            pipeline.access_log = None;
        }
        let mut ingest = pipeline.begin(ctx, now);
        message.read_each(max_len, |result| {
            received += 1;
            match result.and_then(|obs| self.time_rules.check(obs.start_ms, now).map(|()| obs)) {
                Ok(obs) => {
                    if let Applied::Replayed(replays_minute) = applied
                        && !replays_minute(meshscope_storage::minute_of(obs.start_ms))
                    {
                        return;
                    }
                    accepted += 1;
                    ingest.add(obs);
                }
                Err(_) if matches!(applied, Applied::Replayed(_)) => {}
                Err(reject) => {
                    stats::reject(reject.reason(), 1);
                    let count = rejected.map_or(0, |(_, n)| n);
                    rejected = Some((reject, count + 1));
                }
            }
        });
        ingest.finish();
        if matches!(applied, Applied::Replayed(_)) {
            return accepted;
        }
        let kind = match protocol {
            meshscope_storage::Protocol::Http => "http",
            meshscope_storage::Protocol::Tcp => "tcp",
        };
        metrics::counter!(stats::ENTRIES_RECEIVED, "kind" => kind).increment(received);
        if let Some((reject, count)) = rejected {
            self.log_rejection(&ctx.reporter.node_id, &ctx.log_name, reject.reason(), count);
        }
        metrics::counter!(stats::ENTRIES_ACCEPTED).increment(accepted);
        accepted
    }
}

/// How a message is applied: as it arrives (counted), or replayed from the log (not
/// counted again, and only its entries of the minutes the files miss).
#[derive(Clone, Copy)]
pub(crate) enum Applied<'a> {
    Live,
    Replayed(&'a dyn Fn(i64) -> bool),
}
