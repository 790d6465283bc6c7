//! A slow disk: a real `meshscope serve` whose write-ahead log takes seconds for every
//! group it writes (`MESHSCOPE_TEST_SLOW_WAL_MS`, the kernel here having no dm-delay to
//! make a slow block device with) is sent the captured shop-mesh access logs as fast as
//! gRPC takes them. Its memory stays bounded, the senders are held to what the log
//! writes (the receivers stop reading while the log's buffer is full, and HTTP/2 flow
//! control does the rest), and after the disk recovers (a start without the delay) the
//! stored calls are exactly what it had accepted.
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

/// Each group the log writes takes this much longer than the disk would.
const SLOW_WAL_MS: &str = "3000";
/// The log's buffer bound (`WalConfig::max_buffered_bytes`'s default): past it, receivers
/// wait for the disk.
const LOG_BUFFER_BYTES: u64 = 64 * 1024 * 1024;
const CONFIG: &str =
    "[collector]\nwrite_after_secs = 1\nlate_allowance_secs = 3\njoin_wait_ms = 200\n";
const SEND_FOR: Duration = Duration::from_secs(30);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_disk_slows_the_senders_keeps_memory_bounded_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshscope.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.display().to_string();
    let streams = Arc::new(sidecar_streams());
    let env = [(meshscope_storage::wal::SLOW_DISK_ENV, SLOW_WAL_MS)];
    let mut server =
        Meshscope::start_with_env("meshscope-slow", dir.path(), &["--config", &config], &env).await;
    let pid = server.proc.id();
    let idle_rss = rss_bytes(pid);

    let flood = Flood::start(format!("http://{}", server.grpc), streams.clone()).await;
    let started = Instant::now();
    let mut readings = Vec::new();
    while started.elapsed() < SEND_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        readings.push(Reading {
            at: Instant::now(),
            sent_entries: flood.sent_entries.load(Ordering::SeqCst),
            sent_bytes: flood.sent_bytes.load(Ordering::SeqCst),
            log_bytes: metric(&server, "meshscope_wal_bytes_written_total").await,
            rss: rss_bytes(pid),
        });
    }
    flood.stop();

    // Memory: the log's buffer and the group being written (each at most the bound, plus
    // a message per stream) over what the idle server held, with room for the minutes'
    // rows and the allocator's slack; an unbounded queue would hold every byte sent.
    let peak = readings.iter().map(|r| r.rss).max().unwrap();
    let bound = idle_rss + 2 * LOG_BUFFER_BYTES + 256 * 1024 * 1024;
    let last = readings.last().unwrap();
    eprintln!(
        "idle rss {} MiB, peak {} MiB, bound {} MiB; sent {} entries, {} MiB",
        idle_rss >> 20,
        peak >> 20,
        bound >> 20,
        last.sent_entries,
        last.sent_bytes >> 20
    );
    assert!(peak <= bound, "peak RSS {peak} over {bound}");

    // The senders' rate is the disk's: over the second half of the run (the first fills
    // the buffer), the bytes sent exceed the bytes the log wrote by no more than what its
    // buffer, the group in writing and the HTTP/2 windows hold.
    let half = &readings[readings.len() / 2];
    let sent = last.sent_bytes - half.sent_bytes;
    let written = last.log_bytes - half.log_bytes;
    let seconds = last.at.duration_since(half.at).as_secs_f64();
    eprintln!(
        "second half: sent {:.1} MiB/s, log written {:.1} MiB/s",
        sent as f64 / seconds / 1048576.0,
        written as f64 / seconds / 1048576.0
    );
    assert!(written > 0, "the slow log still writes");
    assert!(
        sent <= written + 2 * LOG_BUFFER_BYTES + 16 * 1024 * 1024,
        "sent {sent} bytes while the log wrote {written}"
    );
    // The disk recovers: what was sent drains into the log; the count of accepted entries
    // settles. A kill then loses nothing accepted once its group is on disk (the last
    // group's delay plus the commit interval).
    let mut last_accepted = accepted(&server).await;
    let mut unchanged = 0;
    while unchanged < 3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = accepted(&server).await;
        unchanged = if now == last_accepted {
            unchanged + 1
        } else {
            0
        };
        last_accepted = now;
    }
    tokio::time::sleep(Duration::from_millis(4000)).await;
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
