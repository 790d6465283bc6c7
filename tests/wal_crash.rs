//! Nothing accepted is lost, nothing is counted twice: a real `meshscope serve` receives
//! the captured shop-mesh access logs (moved to now) under steady load and is killed with
//! SIGKILL at random moments, 20 times on one data directory; after each restart the
//! calls it stores are what it had accepted (its own counter on `/metrics`), at most minus
//! the last commit interval, never more. And a crash between a minute's files and the log's
//! truncation (a fault point of the server's own) counts nothing twice, nor does a crash
//! while a checkpoint is written or while the log is replayed.
//!
//! The sidecars' streams are sent, not the ingress gateway's: a sidecar's entry is one call
//! of one edge, so the stored calls and the accepted entries are the same count.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshscope_proto::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use support::Meshscope;
use support::captured_streams::{
    Stream, accepted, earliest_ms, entries, now_ms, settled_calls, shifted, sidecar_streams,
};

const CYCLES: usize = 20;
/// Minutes are written a second after they end and closed three seconds after, so that
/// the kills fall before, between and after the writes of several minutes.
/// Checkpoints every 300 ms, so that kills fall before, during and after them and most
/// starts load one.
const CONFIG: &str = "[collector]\nwrite_after_secs = 1\nlate_allowance_secs = 3\njoin_wait_ms = 200\n\
                      [wal]\ncheckpoint_interval_ms = 300\n";

/// Steady load: every sidecar stream sends its messages again and again, one every few
/// milliseconds, each stream on its own call; counts the entries handed to gRPC, which
/// bound from above what the server can have accepted.
struct Load {
    sent: Arc<AtomicU64>,
    paused: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(target: String, streams: Arc<Vec<Stream>>) -> Load {
        let sent = Arc::new(AtomicU64::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let (task_sent, task_paused) = (sent.clone(), paused.clone());
        let task = tokio::spawn(async move {
            let Ok(client) = AccessLogServiceClient::connect(target).await else {
                return;
            };
            let earliest = earliest_ms(&streams);
            let mut calls = Vec::new();
            for index in 0..streams.len() {
                let (tx, rx) = tokio::sync::mpsc::channel::<StreamAccessLogsMessage>(1);
                let mut client = client.clone();
                calls.push(tokio::spawn(async move {
                    let _ = client
                        .stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
                        .await;
                }));
                let (streams, sent, paused) =
                    (streams.clone(), task_sent.clone(), task_paused.clone());
                calls.push(tokio::spawn(async move {
                    let stream = &streams[index];
                    let mut first = true;
                    loop {
                        let shift = now_ms() - earliest;
                        for (n, message) in stream.messages.iter().enumerate() {
                            while paused.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            let mut message = shifted(message, shift);
                            if n == 0 && !first {
                                // The identifier goes on a stream's first message only.
                                message.identifier = None;
                            }
                            first = false;
                            let count = entries(&message);
                            // Counted before it is handed over: a bound from above.
                            sent.fetch_add(count, Ordering::SeqCst);
                            if tx.send(message).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(15)).await;
                        }
                    }
                }));
            }
            for call in calls {
                let _ = call.await;
            }
        });
        Load { sent, paused, task }
    }
}

fn kill(server: &mut Meshscope) {
    let status = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(server.proc.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_twenty_times_keeps_what_was_accepted_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshscope.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.display().to_string();
    let streams = Arc::new(sidecar_streams());
    let mut rng_state = now_ms() as u64 | 1;
    let mut random = move |below: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % below
    };

    // Every other process writes its log around the page cache: both kinds of segment are
    // killed mid-write and replayed, also by a process of the other kind.
    let direct = |cycle: usize| {
        if cycle.is_multiple_of(2) {
            "false"
        } else {
            "true"
        }
    };
    let mut server = Meshscope::start_as(
        "meshscope-0",
        dir.path(),
        &["--config", &config, "--wal-direct-writes", direct(0)],
    )
    .await;
    let mut stored = 0u64;
    let mut replayed_any = false;
    let mut from_checkpoint = 0;
    for cycle in 1..=CYCLES {
        let load = Load::start(format!("http://{}", server.grpc), streams.clone());
        let run_for = Duration::from_millis(600 + random(1600));
        let started = Instant::now();
        let mut readings: Vec<(Instant, u64)> = Vec::new();
        while started.elapsed() < run_for {
            readings.push((Instant::now(), accepted(&server).await));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every other kill comes with the load paused and the server idle: then nothing
        // accepted may be missing. The others fall in the middle of the traffic.
        let quiet = cycle % 2 == 0;
        if cycle == 1 {
            let metrics = server.text("/metrics").await;
            for wanted in [
                "meshscope_wal_commit_seconds_bucket{le=\"0.1\"}",
                "meshscope_wal_bytes_written_total ",
                "meshscope_wal_segments ",
            ] {
                assert!(metrics.contains(wanted), "{wanted} in /metrics:\n{metrics}");
            }
        }
        let (lower, upper);
        if quiet {
            load.paused.store(true, Ordering::SeqCst);
            // Messages already on their way are still taken in: wait until the count
            // holds over three readings in a row.
            let mut last = accepted(&server).await;
            let mut unchanged = 0;
            while unchanged < 3 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let now = accepted(&server).await;
                unchanged = if now == last { unchanged + 1 } else { 0 };
                last = now;
            }
            kill(&mut server);
            (lower, upper) = (last, last);
        } else {
            let at_kill = accepted(&server).await;
            let killed_at = Instant::now();
            kill(&mut server);
            // At most the last commit interval (100 ms) may be lost; the reading 300 ms
            // before the kill leaves room for the fsync and the scheduler.
            lower = readings
                .iter()
                .rev()
                .find(|(at, _)| killed_at.duration_since(*at) >= Duration::from_millis(300))
                .map_or(0, |(_, n)| *n);
            upper = load.sent.load(Ordering::SeqCst).max(at_kill);
        }
        load.task.abort();
        server.proc.wait();
        server = Meshscope::start_as(
            &format!("meshscope-{cycle}"),
            dir.path(),
            &["--config", &config, "--wal-direct-writes", direct(cycle)],
        )
        .await;
        let now = settled_calls(&server).await;
        assert!(
            now >= stored + lower && now <= stored + upper,
            "cycle {cycle} ({}): stored {now}, expected {} to {} (before {stored}, accepted \
             at least {lower}, at most {upper})\n{}",
            if quiet { "idle" } else { "under load" },
            stored + lower,
            stored + upper,
            server.proc.log_text()
        );
        stored = now;
        let metrics = server.text("/metrics").await;
        replayed_any |= !metrics.contains("meshscope_wal_replayed_entries_total 0");
        if metrics.contains("meshscope_wal_started_from_checkpoint 1") {
            from_checkpoint += 1;
        }
    }
    assert!(replayed_any, "some restart replayed entries");
    assert!(
        from_checkpoint >= CYCLES / 2,
        "{from_checkpoint} of {CYCLES} restarts loaded a checkpoint"
    );

    // A clean stop writes everything and says so; the next start replays nothing more.
    let status = server.proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", server.proc.log_text());
    let server = Meshscope::start_as("meshscope-last", dir.path(), &["--config", &config]).await;
    assert_eq!(settled_calls(&server).await, stored);
    assert!(
        server
            .text("/metrics")
            .await
            .contains("meshscope_wal_replayed_entries_total 0")
    );
}

/// A crash at either side of the note that says the log is in the files: after the files
/// and before the note (the files are undone and replayed), or after both and before the
/// log is truncated (the log is skipped). The calls come back once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_the_files_and_the_log_truncation_counts_nothing_twice() {
    let streams = Arc::new(sidecar_streams());
    for point in ["between_files_and_note", "after_minute_files"] {
        // A minute is written ten seconds after it ends: started between the 12th and the
        // 40th second, the run's minutes are written by the stop alone.
        while !(12..=40).contains(&(now_ms() / 1000 % 60)) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let env = [("MESHSCOPE_FAULT_ABORT", point)];
        let mut server = Meshscope::start_with_env("meshscope-faulty", dir.path(), &[], &env).await;
        let load = Load::start(format!("http://{}", server.grpc), streams.clone());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        load.paused.store(true, Ordering::SeqCst);
        let mut accepted_now = accepted(&server).await;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let again = accepted(&server).await;
            if again == accepted_now {
                break;
            }
            accepted_now = again;
        }
        assert!(accepted_now > 0);
        load.task.abort();
        // The stop writes the open minutes, and the fault point aborts the process there.
        let status = server.proc.terminate(Duration::from_secs(30));
        assert!(
            !status.success(),
            "{point}: the fault point did not abort the server"
        );
        assert!(
            server.proc.log_text().contains("aborting at a fault point"),
            "{point}"
        );
        let server = Meshscope::start_as("meshscope-after", dir.path(), &[]).await;
        assert_eq!(
            settled_calls(&server).await,
            accepted_now,
            "{point}: every accepted call once\n{}",
            server.proc.log_text()
        );
    }
}

/// A crash in the middle of replaying the log, before a checkpoint's rename, and after it
/// before the older ones are deleted: after each, the next start stores every accepted
/// call once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_while_checkpointing_or_replaying_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshscope.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.display().to_string();
    let streams = Arc::new(sidecar_streams());
    let mut server = Meshscope::start_as("meshscope-0", dir.path(), &["--config", &config]).await;
    let load = Load::start(format!("http://{}", server.grpc), streams);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.paused.store(true, Ordering::SeqCst);
    let mut accepted_now = accepted(&server).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = accepted(&server).await;
        if again == accepted_now {
            break;
        }
        accepted_now = again;
    }
    assert!(accepted_now > 0);
    load.task.abort();
    kill(&mut server);
    server.proc.wait();

    // Each crash point, then a start that must find every accepted call once. The
    // replay's crash comes with checkpoints off, so that the whole log is replayed.
    let points: [(&str, &[&str]); 3] = [
        ("wal-replaying:3", &["--wal-checkpoint-interval-ms", "0"]),
        ("checkpoint-synced", &[]),
        ("checkpoint-renamed", &[]),
    ];
    for (n, (point, flags)) in points.into_iter().enumerate() {
        let grpc = format!("127.0.0.1:{}", support::free_port("127.0.0.1"));
        let http = format!("127.0.0.1:{}", support::free_port("127.0.0.1"));
        let data = dir.path().join("data");
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
                .args(["serve", "--grpc-addr", &grpc, "--http-addr", &http])
                .arg("--data-dir")
                .arg(&data)
                .args(["--config", &config])
                .args(flags)
                .env(meshscope_storage::CRASH_AT_ENV, point)
                .env("RUST_LOG", "warn")
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{point}: the server did not die there within a minute"))
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("dying at"),
            "{point}: {}\n{stderr}",
            output.status
        );
        let server = Meshscope::start_as(
            &format!("meshscope-after-{n}"),
            dir.path(),
            &["--config", &config],
        )
        .await;
        assert_eq!(
            settled_calls(&server).await,
            accepted_now,
            "{point}: every accepted call once\n{}",
            server.proc.log_text()
        );
        let mut server = server;
        kill(&mut server);
        server.proc.wait();
    }
}
