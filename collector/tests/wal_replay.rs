//! The write-ahead log brought back after a crash: the captured shop-mesh streams are
//! received through the gRPC receiver with the log on, the collector is dropped without a
//! stop (as kill -9 leaves it), and a new one on the same directory replays the log. The
//! figures come back as they were, whether the minutes were still open, had their main rows
//! written, or were closed for good; nothing is counted twice.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use meshscope_collector::wal_checkpoint::CheckpointConfig;
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
    start_with(data, clock, None).await
}

/// [`start`], with checkpoints in `data/checkpoints` when `checkpoints` says so.
async fn start_with(
    data: &Path,
    clock: &Arc<ManualClock>,
    checkpoints: Option<CheckpointConfig>,
) -> Running {
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
        .start_log(wal, &data.join("quarantine"), note.as_deref(), checkpoints)
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

/// Requests paired by request id per edge over `range` (paired, client only, server
/// only), both sides' rows added: settled requests land on either side's rows.
async fn edge_pairs(running: &Running, range: TimeRange) -> BTreeMap<String, [u64; 3]> {
    running.collector.flush_now().await.unwrap();
    let mut pairs = BTreeMap::new();
    for side in [
        meshscope_storage::Side::Client,
        meshscope_storage::Side::Server,
    ] {
        let filter = KeyFilter {
            side: Some(side),
            ..KeyFilter::default()
        };
        for a in running
            .store
            .aggregate(Table::EdgeMinute, range, &filter)
            .await
            .unwrap()
        {
            if let RowKey::Edge { source, target, .. } = &a.key {
                let m = &a.metrics;
                let total: &mut [u64; 3] = pairs
                    .entry(format!("{} -> {}", source.id(), target.id()))
                    .or_default();
                total[0] += m.paired;
                total[1] += m.client_only;
                total[2] += m.server_only;
            }
        }
    }
    pairs
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

fn checkpoints(data: &Path) -> Option<CheckpointConfig> {
    Some(CheckpointConfig {
        dir: data.join("checkpoints"),
        interval: std::time::Duration::from_secs(3_600),
    })
}

#[tokio::test]
async fn a_checkpoint_stands_in_for_the_log_before_it_and_a_damaged_one_for_nothing() {
    let data = tempfile::tempdir().unwrap();
    let (started, finished) = traffic_window("shop-mesh");
    let clock = Arc::new(ManualClock::new(finished + 1_000));
    let window = TimeRange {
        start: started / MINUTE * MINUTE - MINUTE,
        end: finished / MINUTE * MINUTE + 2 * MINUTE,
    };
    let streams = read_streams("shop-mesh", "als_http");
    let half = streams.len() / 2;
    let entries_of = |streams: &[(u64, Vec<_>)]| -> u64 {
        streams
            .iter()
            .flat_map(|(_, messages)| messages.iter().map(entry_count))
            .sum()
    };
    let (before, after) = (entries_of(&streams[..half]), entries_of(&streams[half..]));
    assert!(before > 0 && after > 0);

    let first = start_with(data.path(), &clock, checkpoints(data.path())).await;
    let mut grpc = client(first.addr).await;
    for (i, (_, messages)) in streams.into_iter().enumerate() {
        if i == half {
            let bytes = first.collector.checkpoint_now().await.unwrap();
            assert!(bytes.is_some_and(|b| b > 0), "a checkpoint is written");
        }
        grpc.stream_access_logs(tokio_stream::iter(messages))
            .await
            .unwrap();
    }
    let want = edge_calls(&first, window).await;
    assert!(want.len() >= 4, "the shop's edges: {want:?}");
    // Requests paired by request id, some of them waiting in the checkpoint for the other
    // side's entry, which came after it.
    let want_pairs = edge_pairs(&first, window).await;
    assert!(
        want_pairs.values().any(|[paired, ..]| *paired > 0),
        "{want_pairs:?}"
    );
    crash(first);

    // Only the messages after the checkpoint are replayed; the figures are whole, and
    // the requests waiting in the checkpoint meet their other side once.
    let second = start_with(data.path(), &clock, checkpoints(data.path())).await;
    assert!(
        second.report.from_checkpoint.is_some(),
        "{:?}",
        second.report
    );
    assert_eq!(second.report.entries, after, "{:?}", second.report);
    assert_eq!(edge_calls(&second, window).await, want);
    assert_eq!(edge_pairs(&second, window).await, want_pairs);

    // The minutes' main rows are written after the checkpoint, then a crash: the
    // checkpoint's rows are in the files now and count once.
    clock.set(finished + 2 * MINUTE);
    second.collector.tick(true).await.unwrap();
    assert!(second.collector.unclosed_rows().is_empty());
    crash(second);
    let third = start_with(data.path(), &clock, checkpoints(data.path())).await;
    assert!(third.report.from_checkpoint.is_some(), "{:?}", third.report);
    assert_eq!(third.report.entries, 0, "{:?}", third.report);
    assert_eq!(edge_calls(&third, window).await, want);
    assert_eq!(edge_pairs(&third, window).await, want_pairs);
    // A checkpoint taken now holds nothing of the minutes, which are in the files.
    assert!(third.collector.checkpoint_now().await.unwrap().is_some());
    crash(third);

    // Every checkpoint damaged: moved aside, and the whole log replayed.
    let dir = data.path().join("checkpoints");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let mut bytes = std::fs::read(file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(file, bytes).unwrap();
    }
    let fourth = start_with(data.path(), &clock, checkpoints(data.path())).await;
    assert_eq!(fourth.report.from_checkpoint, None);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let quarantined = std::fs::read_dir(data.path().join("quarantine"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".ckpt")
        })
        .count();
    assert_eq!(quarantined, 2);
    assert_eq!(edge_calls(&fourth, window).await, want);
    assert_eq!(edge_pairs(&fourth, window).await, want_pairs);
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
