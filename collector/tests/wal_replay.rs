//! The write-ahead log brought back after a crash: the captured shop-mesh streams are
//! received through the gRPC receiver with the log on, the collector is dropped without a
//! stop (as kill -9 leaves it), and a new one on the same directory replays the log. The
//! figures come back as they were, whether the minutes were still open, had their main rows
//! written, or were closed for good; nothing is counted twice.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use meshscope_collector::wal_replay::ReplayReport;
use meshscope_collector::{Collector, CollectorConfig, ManualClock};
use meshscope_storage::wal::{SyncPolicy, WalConfig};
use meshscope_storage::{KeyFilter, RowKey, Store, StoreConfig, Table, TimeRange};
use support::{client, read_streams, traffic_window};

const MINUTE: i64 = 60_000;

struct Running {
    collector: Arc<Collector>,
    store: Arc<Store>,
    server: tokio::task::JoinHandle<()>,
    addr: std::net::SocketAddr,
    report: ReplayReport,
}

/// A collector on `data` at the clock's time, its log replayed, serving gRPC.
async fn start(data: &Path, clock: &Arc<ManualClock>) -> Running {
    let note = meshscope_storage::written_note::recover(data).unwrap();
    let store = Arc::new(
        Store::open(StoreConfig {
            maintenance_interval_secs: 0,
            ..StoreConfig::in_dir(data.to_path_buf())
        })
        .await
        .unwrap(),
    );
    let config = CollectorConfig {
        join_wait_ms: 0,
        ..CollectorConfig::default()
    };
    let collector = Collector::with_clock(config, store.clone(), clock.clone()).unwrap();
    let wal = WalConfig {
        sync: SyncPolicy::Always,
        ..WalConfig::in_dir(data.join("wal"))
    };
    let report = collector
        .start_log(wal, &data.join("quarantine"), note.as_deref())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = collector.grpc_routes();
    let server = tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming)
            .await;
    });
    Running {
        collector,
        store,
        server,
        addr,
        report,
    }
}

/// Drops a running collector as a crash would: no stop, no final write.
fn crash(running: Running) {
    running.server.abort();
}

/// Calls per edge over `range`, from files and live minutes alike.
async fn edge_calls(running: &Running, range: TimeRange) -> BTreeMap<String, u64> {
    running.collector.flush_now().await.unwrap();
    running
        .store
        .aggregate(Table::EdgeMinute, range, &KeyFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|a| match &a.key {
            RowKey::Edge { source, target, .. } => Some((
                format!("{} -> {}", source.id(), target.id()),
                a.metrics.calls,
            )),
            _ => None,
        })
        .fold(BTreeMap::new(), |mut calls, (key, n)| {
            *calls.entry(key).or_default() += n;
            calls
        })
}

#[tokio::test]
async fn a_crash_at_any_stage_of_a_minute_keeps_its_figures_once() {
    let data = tempfile::tempdir().unwrap();
    let (started, finished) = traffic_window("shop-mesh");
    let clock = Arc::new(ManualClock::new(finished + 1_000));
    let window = TimeRange {
        start: started / MINUTE * MINUTE - MINUTE,
        end: finished / MINUTE * MINUTE + 2 * MINUTE,
    };

    let first = start(data.path(), &clock).await;
    assert_eq!(first.report, ReplayReport::default());
    let mut grpc = client(first.addr).await;
    let mut sent_entries = 0u64;
    for (_, messages) in read_streams("shop-mesh", "als_http") {
        sent_entries += messages.iter().map(entry_count).sum::<u64>();
        grpc.stream_access_logs(tokio_stream::iter(messages))
            .await
            .unwrap();
    }
    let want = edge_calls(&first, window).await;
    assert!(want.len() >= 4, "the shop's edges: {want:?}");
    crash(first);

    // A write cut short at the end of the last segment is cut off, not replayed.
    let wal = data.path().join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(last, bytes).unwrap();

    // Still open: the whole log is replayed.
    let second = start(data.path(), &clock).await;
    assert_eq!(second.report.entries, sent_entries, "{:?}", second.report);
    assert_eq!(second.report.torn_tails, 1);
    assert_eq!(edge_calls(&second, window).await, want);

    // The minutes' main rows are written (with the mark), then a crash: the files hold
    // them, the replay adds nothing.
    clock.set(finished + 2 * MINUTE);
    second.collector.tick(true).await.unwrap();
    assert!(second.collector.unclosed_rows().is_empty());
    crash(second);
    let segments_before = std::fs::read_dir(&wal).unwrap().count();
    let third = start(data.path(), &clock).await;
    assert_eq!(third.report.entries, 0, "{:?}", third.report);
    assert_eq!(edge_calls(&third, window).await, want);

    // Closed for good: the segments all in the files are deleted.
    clock.set(finished + 5 * MINUTE);
    third.collector.tick(true).await.unwrap();
    let segments_after = std::fs::read_dir(&wal).unwrap().count();
    assert!(
        segments_after < segments_before,
        "segments deleted: {segments_before} then {segments_after}"
    );
    crash(third);
    let fourth = start(data.path(), &clock).await;
    assert_eq!(fourth.report.entries, 0);
    assert_eq!(edge_calls(&fourth, window).await, want);
    crash(fourth);
}

fn entry_count(
    message: &meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage,
) -> u64 {
    use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
    match &message.log_entries {
        Some(LogEntries::HttpLogs(logs)) => logs.log_entry.len() as u64,
        Some(LogEntries::TcpLogs(logs)) => logs.log_entry.len() as u64,
        None => 0,
    }
}
