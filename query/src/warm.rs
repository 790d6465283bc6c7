//! Reads the dashboard's windows ahead of the dashboard, each time closed minutes are
//! written. The first read of a window folds every row it covers (half a second for an
//! hour of a 500-service mesh), and the first read after a minute turns scans the minute
//! that left it; done here, both are paid before anyone asks, and a dashboard's read finds
//! the window's totals kept.
//!
//! Only windows someone read lately are read ahead (and, after a restart over stored
//! data, the usual ones for a while): each costs running totals for every node and edge
//! of the map, which a window nobody looks at should not hold. Which windows those are is
//! kept in `watched`, by the state's clock. Durations logged here are measured with
//! `Instant`: they are figures about this process, not time-window rules.

use std::future::Future;
use std::time::Instant;

use crate::graph::ServiceGraph;
use crate::state::AppState;
use crate::window::{WindowParams, ending_now};

pub use crate::watched::WATCHED_FOR;

/// The windows the web UI offers that are long enough to be kept moving (shorter ones are
/// a few minutes' rows and read fast as they are).
pub const DEFAULT_WINDOWS: &[&str] = &["15m", "1h", "6h", "24h", "7d"];

/// Checks a window as the API's `window` parameter takes it: `15m`, `1h`, `7d`.
pub fn check_window(text: &str) -> crate::Result<()> {
    crate::window::parse_duration(text).map(|_| ())
}

/// Counts `windows` as read now, so that they are read ahead for a while.
pub fn watch(state: &AppState, windows: &[String]) -> crate::Result<()> {
    for window in windows {
        let params = WindowParams {
            window: Some(window.clone()),
            ..WindowParams::default()
        };
        if let Some(length) = params.length()? {
            state.watch_length(length);
        }
    }
    Ok(())
}

/// Reads the windows watched ahead, as `GET /api/v1/topology?window=...` reads them,
/// after every write until `stop`. Over a store that already holds data, `at_start` are
/// read at once and counted as watched; a new store has nothing to read ahead yet. A
/// window that fails to read is logged and tried again after the next write.
pub async fn keep_warm(state: AppState, at_start: Vec<String>, stop: impl Future<Output = ()>) {
    let mut written = state.store.minutes_written();
    tokio::pin!(stop);
    if !state.store.is_empty() {
        if let Err(error) = watch(&state, &at_start) {
            tracing::warn!(%error, "windows to read ahead at start");
        }
        let started = Instant::now();
        read_ahead(&state).await;
        tracing::info!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            windows = ?at_start,
            "stored windows read ahead"
        );
    }
    loop {
        tokio::select! {
            () = &mut stop => return,
            changed = written.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        read_ahead(&state).await;
    }
}

/// One read of every watched window, as of now.
pub async fn read_ahead(state: &AppState) {
    let now = state.now();
    for length in state.watched_lengths() {
        let started = Instant::now();
        match ServiceGraph::load(state.store.as_ref(), ending_now(now, length)).await {
            Ok(_) => {
                metrics::counter!("meshscope_warm_reads_total").increment(1);
                tracing::debug!(
                    window_secs = length / 1_000,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "window read ahead"
                );
            }
            Err(error) => {
                metrics::counter!("meshscope_warm_read_errors_total").increment(1);
                tracing::warn!(%error, window_secs = length / 1_000, "reading a window ahead failed");
            }
        }
    }
}
