//! A slow disk: a real `meshscope serve` is sent the captured shop-mesh access logs as
//! fast as gRPC takes them; after a few seconds its write-ahead log's disk turns slow
//! (every group takes 30 s: `MESHSCOPE_TEST_SLOW_WAL_FILE`, a fault-injection hook, as
//! this kernel has no device-mapper for a `dm-delay` block device), then recovers. Its
//! memory stays bounded, the senders are held to what the log writes (the receivers stop
//! reading while the log's buffer is full, and HTTP/2 flow control does the rest), and
//! after a `kill -9` and a restart the stored calls are exactly the entries it accepted.
//!
//! The sidecars' streams are sent, not the ingress gateway's: a sidecar's entry is one call
//! of one edge, so the stored calls and the accepted entries are the same count.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use prost::Message;
use support::Meshscope;
use support::captured_streams::{
    Stream, accepted, earliest_ms, entries, metric, now_ms, settled_calls, shifted, sidecar_streams,
};

/// While the disk is slow, each group the log writes takes this long.
const SLOW_WAL_MS: u64 = 30_000;
/// The log's buffer bound (`WalConfig::max_buffered_bytes`'s default): past it, receivers
/// wait for the disk.
const LOG_BUFFER_BYTES: u64 = 64 * 1024 * 1024;
const CONFIG: &str =
    "[collector]\nwrite_after_secs = 1\nlate_allowance_secs = 3\njoin_wait_ms = 200\n";
/// How long the senders go at their own pace first, and then while the disk is slow.
const FAST_FOR: Duration = Duration::from_secs(8);
const SLOW_FOR: Duration = Duration::from_secs(60);

/// Every sidecar stream sends its messages again and again, as fast as its call takes
/// them; counts the entries and bytes handed to gRPC.
struct Flood {
    sent_entries: Arc<AtomicU64>,
    sent_bytes: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    async fn start(target: String, streams: Arc<Vec<Stream>>) -> Flood {
        let client = AccessLogServiceClient::connect(target).await.unwrap();
        let sent_entries = Arc::new(AtomicU64::new(0));
        let sent_bytes = Arc::new(AtomicU64::new(0));
        let earliest = earliest_ms(&streams);
        let mut tasks = Vec::new();
        for index in 0..streams.len() {
            let (tx, rx) = tokio::sync::mpsc::channel::<StreamAccessLogsMessage>(1);
            let mut call_client = client.clone();
            tasks.push(tokio::spawn(async move {
                let _ = call_client
                    .stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await;
            }));
            let (streams, entries_sent, bytes_sent) =
                (streams.clone(), sent_entries.clone(), sent_bytes.clone());
            tasks.push(tokio::spawn(async move {
                let stream = &streams[index];
                let mut first = true;
                loop {
                    let shift = now_ms() - earliest;
                    for (n, message) in stream.messages.iter().enumerate() {
                        let mut message = shifted(message, shift);
                        if n == 0 && !first {
                            message.identifier = None;
                        }
                        first = false;
                        let (count, bytes) = (entries(&message), message.encoded_len() as u64);
                        if tx.send(message).await.is_err() {
                            return;
                        }
                        entries_sent.fetch_add(count, Ordering::SeqCst);
                        bytes_sent.fetch_add(bytes, Ordering::SeqCst);
                    }
                }
            }));
        }
        Flood {
            sent_entries,
            sent_bytes,
            tasks,
        }
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// The server's resident memory in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

struct Reading {
    at: Instant,
    sent_entries: u64,
    sent_bytes: u64,
    log_bytes: u64,
    rss: u64,
}

/// Takes readings every half second for `how_long`.
async fn read_for(
    server: &Meshscope,
    flood: &Flood,
    pid: u32,
    how_long: Duration,
    readings: &mut Vec<Reading>,
) {
    let started = Instant::now();
    while started.elapsed() < how_long {
        tokio::time::sleep(Duration::from_millis(500)).await;
        readings.push(Reading {
            at: Instant::now(),
            sent_entries: flood.sent_entries.load(Ordering::SeqCst),
            sent_bytes: flood.sent_bytes.load(Ordering::SeqCst),
            log_bytes: metric(server, "meshscope_wal_bytes_written_total").await,
            rss: rss_bytes(pid),
        });
    }
}

/// Bytes per second sent from the first reading to the last.
fn sent_rate(readings: &[Reading]) -> f64 {
    let (first, last) = (&readings[0], &readings[readings.len() - 1]);
    (last.sent_bytes - first.sent_bytes) as f64 / last.at.duration_since(first.at).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_disk_slows_the_senders_keeps_memory_bounded_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshscope.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.display().to_string();
    // The disk is slow while this file holds a delay.
    let slow_disk = dir.path().join("slow-disk-ms");
    let streams = Arc::new(sidecar_streams());
    let slow_disk_env = slow_disk.display().to_string();
    let env = [(
        meshscope_storage::wal::SLOW_DISK_ENV,
        slow_disk_env.as_str(),
    )];
    let mut server =
        Meshscope::start_with_env("meshscope-slow", dir.path(), &["--config", &config], &env).await;
    let pid = server.proc.id();
    let idle_rss = rss_bytes(pid);

    let flood = Flood::start(format!("http://{}", server.grpc), streams.clone()).await;
    let mut fast = Vec::new();
    read_for(&server, &flood, pid, FAST_FOR, &mut fast).await;
    std::fs::write(&slow_disk, SLOW_WAL_MS.to_string()).unwrap();
    let mut slow = Vec::new();
    read_for(&server, &flood, pid, SLOW_FOR, &mut slow).await;
    flood.stop();
    // The disk recovers.
    std::fs::remove_file(&slow_disk).unwrap();

    // Memory: the log's buffer and the group being written, each at most the bound plus
    // a message per stream, in vectors that may hold twice what they carry, over what the
    // idle server held, and some slack for the minutes' rows.
    let peak = fast.iter().chain(&slow).map(|r| r.rss).max().unwrap();
    let bound = idle_rss + 4 * LOG_BUFFER_BYTES + 64 * 1024 * 1024;
    let (fast_rate, slow_rate) = (sent_rate(&fast), sent_rate(&slow));
    let (first, last) = (&slow[0], &slow[slow.len() - 1]);
    let sent = last.sent_bytes - first.sent_bytes;
    let written = last.log_bytes - first.log_bytes;
    eprintln!(
        "idle rss {} MiB, peak {} MiB, bound {} MiB; sent {:.1} MiB/s at first, {:.1} MiB/s \
         while the disk was slow ({} MiB sent, {} MiB written to the log); {} entries in all",
        idle_rss >> 20,
        peak >> 20,
        bound >> 20,
        fast_rate / 1048576.0,
        slow_rate / 1048576.0,
        sent >> 20,
        written >> 20,
        last.sent_entries,
    );
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
    // The senders go at the disk's pace: while it was slow they sent no more than the log
    // wrote plus what its buffer, the group in writing and the HTTP/2 windows hold, and
    // that is well below what they sent at their own pace.
    assert!(
        sent <= written + 2 * LOG_BUFFER_BYTES + 16 * 1024 * 1024,
        "sent {sent} bytes while the log wrote {written}"
    );
    assert!(
        slow_rate < fast_rate / 2.0,
        "the slow disk held the senders back: {slow_rate:.0} B/s against {fast_rate:.0} B/s"
    );

    // What was sent drains into the log; the count of accepted entries settles. A kill
    // then loses nothing accepted once its group is on disk (the commit interval).
    let mut last_accepted = accepted(&server).await;
    let mut unchanged = 0;
    while unchanged < 3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = accepted(&server).await;
        unchanged = if now == last_accepted {
            unchanged + 1
        } else {
            0
        };
        last_accepted = now;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(last_accepted > 0);
    std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .unwrap();
    server.proc.wait();
    let server =
        Meshscope::start_as("meshscope-recovered", dir.path(), &["--config", &config]).await;
    let stored = settled_calls(&server).await;
    assert_eq!(
        stored,
        last_accepted,
        "stored calls against accepted entries\n{}",
        server.proc.log_text()
    );
}

/// A write of a minute's files that takes long (every write call to the store 4 s, the
/// test hook `MESHSCOPE_TEST_SLOW_WRITES_MS`) and passes `max_write_stall_ms` (2 s here)
/// stops the receivers from reading until it ends: the senders stop, then go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_write_of_minutes_stops_the_senders_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshscope.toml");
    std::fs::write(&config, format!("{CONFIG}max_write_stall_ms = 2000\n")).unwrap();
    let config = config.display().to_string();
    let env = [(meshscope_storage::SLOW_WRITES_ENV, "4000")];
    let server =
        Meshscope::start_with_env("meshscope-stall", dir.path(), &["--config", &config], &env)
            .await;
    let pid = server.proc.id();
    let paused = || metric(&server, "meshscope_ingest_paused_for_writes_total");
    assert_eq!(paused().await, 0);
    let flood = Flood::start(
        format!("http://{}", server.grpc),
        Arc::new(sidecar_streams()),
    )
    .await;
    let mut before = Vec::new();
    read_for(&server, &flood, pid, Duration::from_secs(4), &mut before).await;
    let own_pace = sent_rate(&before);
    // A minute is written a second after it ends: within 70 s one has been.
    let started = Instant::now();
    while paused().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no receiver paused\n{}",
            server.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The write takes a put per table and hour (4 s each): for the next 6 s at least, the
    // streams are not read, and what the senders hand over is only what the HTTP/2
    // windows and the client's own buffers take.
    let mut stalled = Vec::new();
    read_for(&server, &flood, pid, Duration::from_secs(6), &mut stalled).await;
    let stalled_bytes = stalled.last().unwrap().sent_bytes - stalled[0].sent_bytes;
    eprintln!(
        "own pace {:.1} MiB/s; {} KiB sent in 6 s of a stalled write",
        own_pace / 1048576.0,
        stalled_bytes >> 10
    );
    assert!(
        (stalled_bytes as f64) < own_pace * 6.0 / 4.0,
        "{stalled_bytes} bytes sent while the write stalled, at {own_pace:.0} B/s before"
    );
    // Once the write ends, the streams are read again.
    let resumed_from = flood.sent_bytes.load(Ordering::SeqCst);
    let started = Instant::now();
    while flood.sent_bytes.load(Ordering::SeqCst) < resumed_from + 4 * 1024 * 1024 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the senders did not go on after the write\n{}",
            server.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    flood.stop();
}
