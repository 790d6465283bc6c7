//! `simulate --max`: the mesh's traffic is encoded once, ahead of time, and sent over and
//! over as fast as the collector takes it (or at a set entry rate), so that the generator
//! costs little next to the server it measures. Each proxy log keeps its own stream, as
//! Envoy's do; the streams are spread over a few HTTP/2 connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use meshscope_collector::codec::PreEncodedRequests;
use meshscope_proto::pb::envoy::data::accesslog::v3::AccessLogCommon;
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries, TcpAccessLogEntries,
};
use meshscope_proto::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::envoy;
use super::generator::{Batch, Generator, Log, ProxyKey, log_name};
use super::mesh::Mesh;
use crate::error::{Error, Result};

mod captured;
mod request_id_rounds;

/// Start times are encoded as this many seconds, then overwritten with the time of each
/// send: a five-byte varint like any second of this century, and a byte pattern that no
/// other field of an entry holds.
const SENTINEL_SECONDS: i64 = (1 << 35) - 1;
const SENTINEL_PATTERN: [u8; 6] = [0x08, 0xff, 0xff, 0xff, 0xff, 0x7f];

/// Envoy flushes a log's buffer at about 16 KB.
const MESSAGE_BYTES: usize = 16 * 1024;

const METHOD_PATH: &str = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";

/// One message, encoded, with where its start times and its request ids' round marks are.
struct Encoded {
    bytes: Vec<u8>,
    time_offsets: Vec<usize>,
    id_offsets: Vec<usize>,
    entries: u64,
}

impl Encoded {
    fn new(message: &StreamAccessLogsMessage, entries: u64) -> Encoded {
        let bytes = message.encode_to_vec();
        let time_offsets = bytes
            .windows(SENTINEL_PATTERN.len())
            .enumerate()
            .filter(|(_, w)| *w == SENTINEL_PATTERN)
            .map(|(i, _)| i + 1)
            .collect::<Vec<_>>();
        debug_assert_eq!(time_offsets.len() as u64, entries);
        let id_offsets = request_id_rounds::offsets(&bytes);
        Encoded {
            bytes,
            time_offsets,
            id_offsets,
            entries,
        }
    }

    /// A copy stamped with `seconds` as every entry's start and `round` in every request
    /// id (see [`request_id_rounds`]).
    fn stamped(&self, seconds: u64, round: u32) -> Bytes {
        let mut buf = BytesMut::from(self.bytes.as_slice());
        for &offset in &self.id_offsets {
            request_id_rounds::stamp(&mut buf, offset, round);
        }
        for &offset in &self.time_offsets {
            let mut v = seconds;
            for byte in &mut buf[offset..offset + 4] {
                *byte = (v as u8 & 0x7f) | 0x80;
                v >>= 7;
            }
            buf[offset + 4] = v as u8 & 0x7f;
        }
        buf.freeze()
    }
}

/// One proxy log's stream: its identifier, then its share of the traffic.
struct PooledStream {
    identifier: Bytes,
    messages: Vec<Encoded>,
}

/// The traffic of `requests` requests, encoded per stream.
pub(crate) struct Pool {
    streams: Vec<PooledStream>,
    pub(crate) entries_per_round: u64,
    pub(crate) bytes_per_round: u64,
}

impl Pool {
    pub(crate) fn build(mesh: Mesh, requests: u64, seed: u64) -> Pool {
        let mut generator = Generator::new(mesh, seed, false);
        let now = SystemTime::now();
        for n in 0..requests {
            generator.edge_request(now, n);
        }
        let batches = std::mem::take(&mut generator.batches);
        let mut streams = Vec::with_capacity(batches.len());
        for ((proxy, log), batch) in batches {
            streams.push(encode_stream(&generator, proxy, log, batch));
        }
        Pool::of_streams(streams)
    }

    /// A pool of `streams`, with the entries and bytes one round of them sends.
    fn of_streams(streams: Vec<PooledStream>) -> Pool {
        let messages = || streams.iter().flat_map(|s| &s.messages);
        let entries_per_round = messages().map(|m| m.entries).sum();
        let bytes_per_round = messages().map(|m| m.bytes.len() as u64).sum();
        Pool {
            streams,
            entries_per_round,
            bytes_per_round,
        }
    }

    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }
}

fn encode_stream(generator: &Generator, proxy: ProxyKey, log: Log, batch: Batch) -> PooledStream {
    let p = generator.proxy(proxy);
    let identifier = StreamAccessLogsMessage {
        identifier: Some(envoy::identifier(&p, &log_name(&p.cluster, log))),
        log_entries: None,
    }
    .encode_to_vec()
    .into();
    let mut http = batch.http;
    for e in &mut http {
        stamp_sentinel(e.common_properties.as_mut());
        if let Some(request) = e.request.as_mut() {
            request_id_rounds::mark(&mut request.request_id);
        }
    }
    let mut tcp = batch.tcp;
    for e in &mut tcp {
        stamp_sentinel(e.common_properties.as_mut());
    }
    let mut messages = chunked(http, |log_entry| {
        LogEntries::HttpLogs(HttpAccessLogEntries { log_entry })
    });
    messages.extend(chunked(tcp, |log_entry| {
        LogEntries::TcpLogs(TcpAccessLogEntries { log_entry })
    }));
    PooledStream {
        identifier,
        messages,
    }
}

fn stamp_sentinel(common: Option<&mut AccessLogCommon>) {
    if let Some(t) = common.and_then(|c| c.start_time.as_mut()) {
        t.seconds = SENTINEL_SECONDS;
    }
}

/// Entries cut into messages of about Envoy's flush size.
fn chunked<E: Message>(entries: Vec<E>, wrap: impl Fn(Vec<E>) -> LogEntries) -> Vec<Encoded> {
    let mut messages = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    let mut flush = |chunk: Vec<E>| {
        let count = chunk.len() as u64;
        let message = StreamAccessLogsMessage {
            identifier: None,
            log_entries: Some(wrap(chunk)),
        };
        messages.push(Encoded::new(&message, count));
    };
    for e in entries {
        size += e.encoded_len() + 3;
        chunk.push(e);
        if size >= MESSAGE_BYTES {
            flush(std::mem::take(&mut chunk));
            size = 0;
        }
    }
    if !chunk.is_empty() {
        flush(chunk);
    }
    messages
}

/// How long and how fast to send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    /// At most this many entries a second; `None` is as fast as the collector takes them.
    pub(crate) entry_rate: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Sent {
    pub(crate) entries: u64,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    /// From the first send to the last stream's response: every entry was taken in.
    pub(crate) seconds: f64,
}

impl Sent {
    pub(crate) fn entries_per_second(&self) -> f64 {
        self.entries as f64 / self.seconds.max(1e-9)
    }
}

struct Shared {
    started: Instant,
    deadline: Instant,
    /// Every connection finishes a round before any starts the next, so that both sides
    /// of a request carry the same round in their id.
    round_end: tokio::sync::Barrier,
    entry_rate: Option<f64>,
    scheduled: AtomicU64,
    entries: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Sends the pool round after round until the plan's time is up.
pub(crate) async fn send(target: &str, pool: Arc<Pool>, plan: Plan) -> Result<Sent> {
    let connections = plan.connections.max(1);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = tonic::transport::Endpoint::from_shared(target.to_string())
            .map_err(Error::CollectorAddress)?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(Error::connect(target))?;
        channels.push(channel);
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        started,
        deadline: started + plan.duration,
        round_end: tokio::sync::Barrier::new(connections),
        entry_rate: plan.entry_rate,
        scheduled: AtomicU64::new(0),
        entries: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let mut senders = JoinSet::new();
    for (index, channel) in channels.into_iter().enumerate() {
        let streams: Vec<usize> = (index..pool.streams.len()).step_by(connections).collect();
        senders.spawn(drive_connection(
            channel,
            pool.clone(),
            streams,
            shared.clone(),
        ));
    }
    while let Some(result) = senders.join_next().await {
        result??;
    }
    Ok(Sent {
        entries: shared.entries.load(Ordering::Relaxed),
        messages: shared.messages.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn drive_connection(
    channel: tonic::transport::Channel,
    pool: Arc<Pool>,
    streams: Vec<usize>,
    shared: Arc<Shared>,
) -> Result<()> {
    let mut calls = JoinSet::new();
    let mut senders = Vec::with_capacity(streams.len());
    for &stream in &streams {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        calls.spawn(async move {
            grpc.ready().await.map_err(|source| Error::Transport {
                what: "collector not ready",
                source,
            })?;
            grpc.client_streaming(
                tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                tonic::codegen::http::uri::PathAndQuery::from_static(METHOD_PATH),
                PreEncodedRequests::<StreamAccessLogsResponse>::default(),
            )
            .await
            .map(|_| ())
            .map_err(Error::refused("the collector ended an access log stream"))
        });
        if tx
            .send(pool.streams[stream].identifier.clone())
            .await
            .is_err()
        {
            break;
        }
        senders.push((stream, tx));
    }
    let longest = streams
        .iter()
        .map(|&s| pool.streams[s].messages.len())
        .max()
        .unwrap_or(0);
    let mut round = 0u32;
    'rounds: loop {
        for index in 0..longest {
            for (stream, tx) in &senders {
                let Some(message) = pool.streams[*stream].messages.get(index) else {
                    continue;
                };
                let now = Instant::now();
                if now >= shared.deadline {
                    break 'rounds;
                }
                if let Some(rate) = shared.entry_rate {
                    let due = shared
                        .scheduled
                        .fetch_add(message.entries, Ordering::Relaxed)
                        as f64
                        / rate;
                    let at = shared.started + Duration::from_secs_f64(due);
                    if at > now {
                        tokio::time::sleep_until(at.into()).await;
                    }
                }
                let seconds = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let bytes = message.stamped(seconds, round);
                let len = bytes.len() as u64;
                if tx.send(bytes).await.is_err() {
                    break 'rounds;
                }
                shared.entries.fetch_add(message.entries, Ordering::Relaxed);
                shared.messages.fetch_add(1, Ordering::Relaxed);
                shared.bytes.fetch_add(len, Ordering::Relaxed);
            }
        }
        round = round.wrapping_add(1);
        let round_end = shared.round_end.wait();
        if tokio::time::timeout_at(shared.deadline.into(), round_end)
            .await
            .is_err()
        {
            break;
        }
    }
    drop(senders);
    while let Some(result) = calls.join_next().await {
        result??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_rewrites_every_start_time_and_request_id_round_and_nothing_else() {
        let mesh = Mesh::build(8, "t", &[], 3);
        let pool = Pool::build(mesh, 200, 3);
        assert!(pool.entries_per_round >= 200);
        let seconds = 1_790_000_000u64;
        for stream in &pool.streams {
            for message in &stream.messages {
                let stamped = message.stamped(seconds, 7);
                let decoded = StreamAccessLogsMessage::decode(stamped.as_ref()).unwrap();
                let start = |c: Option<&AccessLogCommon>| c.unwrap().start_time.unwrap().seconds;
                let starts: Vec<i64> = match decoded.log_entries.unwrap() {
                    LogEntries::HttpLogs(h) => h
                        .log_entry
                        .iter()
                        .map(|e| {
                            let id = &e.request.as_ref().unwrap().request_id;
                            assert!(id.starts_with("00000007sim-"), "{id}");
                            start(e.common_properties.as_ref())
                        })
                        .collect(),
                    LogEntries::TcpLogs(t) => t
                        .log_entry
                        .iter()
                        .map(|e| start(e.common_properties.as_ref()))
                        .collect(),
                };
                assert_eq!(starts.len() as u64, message.entries);
                assert!(starts.iter().all(|s| *s == seconds as i64));
                assert_eq!(stamped.len(), message.bytes.len());
            }
        }
    }
}
