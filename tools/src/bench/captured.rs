//! The benchmark on real Envoy entries: the access-log capture named by `--captured`,
//! every entry's start moved to the second it is sent, measured against the sink and
//! meshscope like the simulated load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tracing::info;

use super::{Measured, Pair, measure, measure_sink, print_line};
use crate::child_process::{spawn_serve, stop};
use crate::error::Result;
use crate::simulate::max::{Plan, Pool};

/// The captured load's figures, beside the simulated load's.
#[derive(Debug, Serialize)]
pub(super) struct CapturedReport {
    capture: PathBuf,
    streams: usize,
    entries_per_round: u64,
    bytes_per_entry: f64,
    sink: Measured,
    meshscope: Measured,
    pub(super) ratio: f64,
}

/// A sink run and a meshscope run, each a fresh process, on the capture at `path`.
pub(super) async fn measure_captured(
    exe: &Path,
    path: &Path,
    plan: Plan,
) -> Result<CapturedReport> {
    let pool = Arc::new(Pool::from_capture(path)?);
    info!(
        capture = %path.display(),
        streams = pool.stream_count(),
        entries_per_round = pool.entries_per_round,
        "captured traffic encoded"
    );
    let sink = measure_sink(exe, &pool, plan).await?;
    let (mut child, grpc, http, _data) = spawn_serve(exe)?;
    let meshscope = measure(&mut child, grpc, Some(http), &pool, plan).await;
    stop(child);
    let meshscope = meshscope?;
    print_line("captured", &meshscope);
    let ratio = Pair::of(&sink, &meshscope).ratio;
    eprintln!("captured ratio (meshscope / sink): {ratio:.2}");
    Ok(CapturedReport {
        capture: path.to_path_buf(),
        streams: pool.stream_count(),
        entries_per_round: pool.entries_per_round,
        bytes_per_entry: pool.bytes_per_round as f64 / pool.entries_per_round.max(1) as f64,
        sink,
        meshscope,
        ratio,
    })
}
