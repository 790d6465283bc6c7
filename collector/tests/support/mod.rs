//! Shared by the collector's integration tests: the captured fixtures and a collector
//! served on a loopback port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use meshscope_collector::{Collector, CollectorConfig, ManualClock};
use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use meshscope_storage::{Store, StoreConfig};
use prost::Message;

pub(crate) fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MESHSCOPE_FIXTURES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The records of a capture, grouped by stream in capture order.
pub(crate) fn read_streams(dir: &str, log: &str) -> Vec<(u64, Vec<StreamAccessLogsMessage>)> {
    read_records(dir, log)
}

/// The records of any capture (access logs or metrics), grouped by stream in capture order.
pub(crate) fn read_records<M: Message + Default>(dir: &str, log: &str) -> Vec<(u64, Vec<M>)> {
    let base = fixtures_dir().join(dir);
    let bin_path = base.join(format!("{log}.bin"));
    let bytes = std::fs::read(&bin_path)
        .unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", bin_path.display()));
    let index = std::fs::read_to_string(base.join(format!("{log}.index.jsonl"))).unwrap();
    let mut streams: Vec<(u64, Vec<M>)> = Vec::new();
    let mut offset = 0usize;
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let stream = record["stream"].as_u64().unwrap();
        let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let message = M::decode(&bytes[offset + 4..offset + 4 + len]).unwrap();
        offset += 4 + len;
        match streams.last_mut() {
            Some((id, messages)) if *id == stream => messages.push(message),
            _ => streams.push((stream, vec![message])),
        }
    }
    assert_eq!(offset, bytes.len(), "index and records disagree");
    streams
}

pub(crate) fn traffic_window(dir: &str) -> (i64, i64) {
    let path = fixtures_dir().join(dir).join("traffic.json");
    let traffic: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let start = (traffic["started_at"].as_f64().unwrap() * 1000.0) as i64;
    let end = (traffic["finished_at"].as_f64().unwrap() * 1000.0) as i64;
    (start, end)
}

pub(crate) struct Served {
    pub(crate) collector: Arc<Collector>,
    pub(crate) store: Arc<Store>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) addr: SocketAddr,
    _data: tempfile::TempDir,
}

pub(crate) async fn serve(config: CollectorConfig, now_ms: i64) -> Served {
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(StoreConfig::in_dir(data.path().to_path_buf()))
            .await
            .unwrap(),
    );
    let clock = Arc::new(ManualClock::new(now_ms));
    let collector = Collector::with_clock(config, store.clone(), clock.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = collector.grpc_routes();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    Served {
        collector,
        store,
        clock,
        addr,
        _data: data,
    }
}

pub(crate) async fn client(addr: SocketAddr) -> AccessLogServiceClient<tonic::transport::Channel> {
    AccessLogServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// Sends each stream as its own gRPC stream, one after another, and returns the results.
pub(crate) async fn send_streams(
    addr: SocketAddr,
    streams: Vec<(u64, Vec<StreamAccessLogsMessage>)>,
) -> Vec<Result<(), tonic::Status>> {
    let mut client = client(addr).await;
    let mut results = Vec::new();
    for (_, messages) in streams {
        let result = client
            .stream_access_logs(tokio_stream::iter(messages))
            .await
            .map(|_| ());
        results.push(result);
    }
    results
}
