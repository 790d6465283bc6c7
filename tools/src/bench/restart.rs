//! `meshscope bench --restart`: how long meshscope takes to start again after `kill -9`
//! with a full log. A `meshscope serve` is sent real captured Envoy entries (every start
//! moved to the second it is sent) at `--rate` for `--seconds`, then killed with SIGKILL;
//! the same data directory is started again and timed until the gRPC port answers, which
//! it does only once the log is replayed. Then, for comparison, killed again and started
//! with checkpoints off, which replays the whole log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::info;

use super::http_get;
use crate::child_process::{free_port, spawn, wait_for_port};
use crate::error::{Error, Result};
use crate::simulate::max::{self, Plan, Pool, Sent};

/// What `--restart` measures.
pub(super) struct RestartPlan<'a> {
    pub(super) capture: &'a Path,
    pub(super) rate: f64,
    pub(super) seconds: f64,
    pub(super) connections: usize,
    /// `--wal-checkpoint-interval-ms` for the server; `None` keeps its default.
    pub(super) checkpoint_interval_ms: Option<u64>,
    /// Also time a start with checkpoints off (the whole log replayed).
    pub(super) compare_full_replay: bool,
}

/// The report printed as JSON.
#[derive(Debug, Serialize)]
pub(super) struct RestartReport {
    capture: PathBuf,
    rate_asked: f64,
    sent: Sent,
    entries_per_second: f64,
    /// The log and the checkpoints on disk at the kill.
    log_bytes: u64,
    log_segments: usize,
    checkpoint_bytes: u64,
    /// The start with checkpoints on, as the server runs by default.
    with_checkpoints: Start,
    /// The start replaying the whole log (checkpoints off).
    full_replay: Option<Start>,
}

/// One start after a kill.
#[derive(Debug, Serialize)]
struct Start {
    /// From the process's spawn until its gRPC port accepts a connection.
    seconds_until_grpc_answers: f64,
    /// Log entries the start replayed (`meshscope_wal_replayed_entries_total`).
    replayed_entries: f64,
    /// 1 when the start loaded a checkpoint.
    from_checkpoint: f64,
}

pub(super) async fn run(exe: &Path, plan: RestartPlan<'_>) -> Result<RestartReport> {
    let pool = Arc::new(Pool::from_capture(plan.capture)?);
    info!(
        capture = %plan.capture.display(),
        streams = pool.stream_count(),
        entries_per_round = pool.entries_per_round,
        "captured traffic encoded"
    );
    let data = tempfile::tempdir().map_err(Error::io("temporary data directory"))?;
    let interval = plan.checkpoint_interval_ms.map(|ms| ms.to_string());
    let (mut child, grpc, _) = serve_in(exe, data.path(), interval.as_deref())?;
    wait_for_port(grpc, &mut child).await?;
    let sent = max::send(
        &format!("http://{grpc}"),
        pool,
        Plan {
            connections: plan.connections,
            duration: Duration::from_secs_f64(plan.seconds),
            entry_rate: Some(plan.rate),
        },
    )
    .await?;
    kill(child);
    let (log_bytes, log_segments) = dir_size(&data.path().join("wal"));
    let (checkpoint_bytes, _) = dir_size(&data.path().join("checkpoints"));
    eprintln!(
        "   filled: {} entries at {:.0}/s; log {:.1} MiB in {log_segments} segments, checkpoints {:.1} MiB",
        sent.entries,
        sent.entries_per_second(),
        log_bytes as f64 / 1_048_576.0,
        checkpoint_bytes as f64 / 1_048_576.0
    );

    let with_checkpoints = timed_start(exe, data.path(), interval.as_deref()).await?;
    eprintln!(
        "  restart: {:.2} s until the gRPC port answered, {} entries replayed, from a checkpoint: {}",
        with_checkpoints.seconds_until_grpc_answers,
        with_checkpoints.replayed_entries,
        with_checkpoints.from_checkpoint == 1.0
    );
    let full_replay = if plan.compare_full_replay {
        let start = timed_start(exe, data.path(), Some("0")).await?;
        eprintln!(
            "  without checkpoints: {:.2} s until the gRPC port answered, {} entries replayed",
            start.seconds_until_grpc_answers, start.replayed_entries
        );
        Some(start)
    } else {
        None
    };
    Ok(RestartReport {
        capture: plan.capture.to_path_buf(),
        rate_asked: plan.rate,
        entries_per_second: sent.entries_per_second(),
        sent,
        log_bytes,
        log_segments,
        checkpoint_bytes,
        with_checkpoints,
        full_replay,
    })
}

/// Starts a server on `data`, times it until its gRPC port answers, reads what it
/// replayed, and kills it again.
async fn timed_start(exe: &Path, data: &Path, interval: Option<&str>) -> Result<Start> {
    let started = Instant::now();
    let (mut child, grpc, http) = serve_in(exe, data, interval)?;
    let answered = wait_until_listening(grpc, &mut child).await;
    let seconds = started.elapsed().as_secs_f64();
    let metrics = match answered {
        Ok(()) => http_get(http, "/metrics").await,
        Err(error) => Err(error),
    };
    kill(child);
    let metrics = metrics?.unwrap_or_default();
    Ok(Start {
        seconds_until_grpc_answers: seconds,
        replayed_entries: metric(&metrics, "meshscope_wal_replayed_entries_total"),
        from_checkpoint: metric(&metrics, "meshscope_wal_started_from_checkpoint"),
    })
}

/// [`wait_for_port`] with room for a slow replay: up to ten minutes.
async fn wait_until_listening(addr: SocketAddr, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match wait_for_port(addr, child).await {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline && child.try_wait().ok().flatten().is_none() => {}
            Err(error) => return Err(error),
        }
    }
}

/// `meshscope serve` on `data` at free ports.
fn serve_in(
    exe: &Path,
    data: &Path,
    interval: Option<&str>,
) -> Result<(Child, SocketAddr, SocketAddr)> {
    let grpc = free_port()?;
    let http = free_port()?;
    let (grpc_arg, http_arg) = (grpc.to_string(), http.to_string());
    let data_arg = data.display().to_string();
    let mut args = vec![
        "serve",
        "--grpc-addr",
        &grpc_arg,
        "--http-addr",
        &http_arg,
        "--data-dir",
        &data_arg,
        "--warm-windows",
        "none",
    ];
    if let Some(interval) = interval {
        args.extend(["--wal-checkpoint-interval-ms", interval]);
    }
    Ok((spawn(exe, &args)?, grpc, http))
}

/// SIGKILL, as a crash: nothing is flushed.
fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Bytes and files directly in `dir`.
fn dir_size(dir: &Path) -> (u64, usize) {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .fold((0, 0), |(bytes, n), m| (bytes + m.len(), n + 1))
        })
        .unwrap_or((0, 0))
}

/// The value of an unlabelled series in a Prometheus text page, 0 when absent.
pub(super) fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_from_the_page_and_absent_ones_are_zero() {
        let page = "# TYPE a counter\na 12\na_total{x=\"1\"} 3\nb 0.5\n";
        assert_eq!(metric(page, "a"), 12.0);
        assert_eq!(metric(page, "b"), 0.5);
        assert_eq!(metric(page, "c"), 0.0);
    }
}
