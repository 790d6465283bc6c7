//! Passing entries on to the collector that owns them, over the same access-log service
//! the proxies use.
//!
//! For each stream a proxy opens, the receiving collector opens one forwarded stream to
//! every other member of the ring (at the first message, so that every collector learns
//! the proxy, its service account and its cluster as a single node would), sends it the
//! proxy's identifier, then the entries that member owns. The forwarded stream carries the
//! header [`FORWARDED_BY_HEADER`] with the sender's writer id; its receiver ingests every
//! entry on it as its own and never passes any on, so that two collectors whose views of
//! the ring differ for a moment cannot send an entry back and forth.
//!
//! A member that cannot be reached (its stream fails, or its queue stays full past
//! [`SEND_WAIT`]) is skipped for [`UNREACHABLE_FOR`]: its entries are ingested where they
//! arrived and counted as `kept`. When a forwarded stream fails, the messages still queued
//! on it (at most [`QUEUED_MESSAGES`]) are given back to the proxy's stream's collector
//! ([`KeepHere`]), logged and ingested there, and counted as `returned`. What the failed member
//! had already taken from the connection is its own, as a proxy's messages are: in its log,
//! or lost with it when it dies before its next group commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsResponse;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tracing::warn;

use crate::codec::PreEncodedRequests;
use crate::collector_ring::{CollectorRing, RingMember};
use crate::message_split::identifier_message;

/// The gRPC metadata key that marks a forwarded stream; its value is the sender's writer id.
pub const FORWARDED_BY_HEADER: &str = "x-meshscope-forwarded-by";

const METHOD_PATH: &str = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";

/// Messages queued on one forwarded stream before the sender waits.
pub const QUEUED_MESSAGES: usize = 16;
/// How long a sender waits for room on a full forwarded stream before keeping the entries.
pub const SEND_WAIT: Duration = Duration::from_secs(2);
/// How long a member whose stream failed is skipped.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

pub const FORWARDED_ENTRIES: &str = "meshscope_forwarded_entries_total";
pub const FORWARDED_STREAMS_FAILED: &str = "meshscope_forwarded_streams_failed_total";
pub const RING_MEMBERS: &str = "meshscope_collector_ring_members";

/// One gRPC channel per member address (HTTP/2 multiplexes every forwarded stream to it
/// over one connection), and when each member was last found unreachable.
#[derive(Default)]
pub struct PeerChannels {
    channels: Mutex<HashMap<String, Channel>>,
    unreachable_until: Arc<Mutex<HashMap<String, Instant>>>,
}

impl PeerChannels {
    fn channel(&self, address: &str) -> Option<Channel> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(address) {
            return Some(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .inspect_err(|error| warn!(address, %error, "a ring member's address is not usable"))
            .ok()?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Some(channel)
    }

    fn reachable(&self, address: &str) -> bool {
        self.unreachable_until
            .lock()
            .get(address)
            .is_none_or(|until| Instant::now() >= *until)
    }
}

/// Counts entries passed on (`sent`) or ingested here because their owner could not be
/// reached (`kept`).
pub fn count_entries(outcome: &'static str, entries: usize) {
    metrics::counter!(FORWARDED_ENTRIES, "outcome" => outcome).increment(entries as u64);
}

/// The forwarded streams of one proxy stream, by member writer id.
pub struct ForwardedStreams {
    /// The proxy's identifier alone, the first message of every forwarded stream.
    opening: Bytes,
    /// This collector's writer id, sent as [`FORWARDED_BY_HEADER`].
    sender: String,
    open: HashMap<String, mpsc::Sender<Bytes>>,
    /// Where a failed stream's queued messages go.
    keep_here: KeepHere,
}

/// Logs and ingests, where the proxy's stream arrived, the messages a failed forwarded
/// stream gives back.
pub type KeepHere = Arc<dyn Fn(Vec<Bytes>) -> BoxFuture<'static, ()> + Send + Sync>;

impl ForwardedStreams {
    /// Forwarded streams for the proxy stream whose encoded identifier is `identifier`.
    pub fn new(identifier: &[u8], sender: &str, keep_here: KeepHere) -> ForwardedStreams {
        ForwardedStreams {
            opening: identifier_message(identifier),
            sender: sender.to_string(),
            open: HashMap::new(),
            keep_here,
        }
    }

    /// Opens a stream to each other member of `ring` not open yet (sending it the
    /// identifier), so that every collector learns the proxy.
    pub fn open_to(&mut self, ring: &CollectorRing, channels: &PeerChannels) {
        for member in ring.members().iter().filter(|m| m.writer != ring.own()) {
            self.stream_to(member, channels);
        }
    }

    /// Queues `message` for `member`; `false` when it cannot be sent (the member is
    /// unreachable, or its stream stayed full), and the caller keeps the entries.
    pub async fn send(
        &mut self,
        member: &RingMember,
        channels: &PeerChannels,
        message: Bytes,
    ) -> bool {
        let Some(stream) = self.stream_to(member, channels) else {
            return false;
        };
        match tokio::time::timeout(SEND_WAIT, stream.send(message)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                // The stream ended since it was opened: open another next time.
                self.open.remove(&member.writer);
                false
            }
            Err(_) => {
                warn!(member = %member.writer, "a forwarded stream stayed full; entries kept here");
                false
            }
        }
    }

    /// The open stream to `member`, opened now when there is none and the member is not
    /// known to be unreachable.
    fn stream_to(
        &mut self,
        member: &RingMember,
        channels: &PeerChannels,
    ) -> Option<mpsc::Sender<Bytes>> {
        if let Some(stream) = self.open.get(&member.writer)
            && !stream.is_closed()
        {
            return Some(stream.clone());
        }
        self.open.remove(&member.writer);
        if member.address.is_empty() || !channels.reachable(&member.address) {
            return None;
        }
        let channel = channels.channel(&member.address)?;
        let (tx, rx) = mpsc::channel::<Bytes>(QUEUED_MESSAGES);
        tx.try_send(self.opening.clone()).ok()?;
        let unreachable = channels.unreachable_until.clone();
        let address = member.address.clone();
        let writer = member.writer.clone();
        let sender = self.sender.clone();
        let keep_here = self.keep_here.clone();
        let opening = self.opening.clone();
        // The receiver stays the task's too: when the call fails, what is still queued on
        // it is taken back.
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let queued = rx.clone();
        tokio::spawn(async move {
            let messages = futures::stream::unfold(queued, |queued| async move {
                let next = queued.lock().await.recv().await;
                next.map(|message| (message, queued))
            });
            let mut grpc = tonic::client::Grpc::new(channel);
            let mut request = tonic::Request::new(messages);
            if let Ok(value) = sender.parse() {
                request.metadata_mut().insert(FORWARDED_BY_HEADER, value);
            }
            let ended = match grpc.ready().await {
                Ok(()) => grpc
                    .client_streaming(
                        request,
                        tonic::codegen::http::uri::PathAndQuery::from_static(METHOD_PATH),
                        PreEncodedRequests::<StreamAccessLogsResponse>::default(),
                    )
                    .await
                    .map(|_| ()),
                Err(error) => Err(tonic::Status::unavailable(error.to_string())),
            };
            if let Err(status) = ended {
                metrics::counter!(FORWARDED_STREAMS_FAILED).increment(1);
                warn!(member = %writer, %address, error = %status.message(), "a forwarded stream failed; its queued entries are kept here");
                unreachable
                    .lock()
                    .insert(address, Instant::now() + UNREACHABLE_FOR);
                // The call's body let go of the queue when the call ended; should it still
                // hold it, what is queued stays lost with the stream.
                let Ok(mut rx) = tokio::time::timeout(SEND_WAIT, rx.lock()).await else {
                    warn!(member = %writer, "the entries queued on a failed forwarded stream could not be taken back");
                    return;
                };
                rx.close();
                let mut back = Vec::new();
                while let Ok(message) = rx.try_recv() {
                    if message != opening {
                        back.push(message);
                    }
                }
                drop(rx);
                if !back.is_empty() {
                    keep_here(back).await;
                }
            }
        });
        self.open.insert(member.writer.clone(), tx.clone());
        Some(tx)
    }
}
