//! Reads the dashboard's windows ahead of the dashboard: once when the server starts, then
//! each time closed minutes are written. The first read of a window folds every row it
//! covers (half a second for an hour of a 500-service mesh), and the first read after a
//! minute turns scans the minute that left it; done here, both are paid before anyone
//! asks, and a dashboard's read finds the window's totals kept.

use std::future::Future;
use std::time::Instant;

use crate::graph::ServiceGraph;
use crate::state::AppState;
use crate::window::WindowParams;

/// The windows the web UI offers that are long enough to be kept moving (shorter ones are
/// a few minutes' rows and read fast as they are).
pub const DEFAULT_WINDOWS: &[&str] = &["15m", "1h", "6h", "24h", "7d"];

/// Checks a window as the API's `window` parameter takes it: `15m`, `1h`, `7d`.
pub fn check_window(text: &str) -> crate::Result<()> {
    crate::window::parse_duration(text).map(|_| ())
}

/// Reads the topology of each window ending now, as `GET /api/v1/topology?window=...`
/// reads it, at start and after every write, until `stop`. A window that fails to read is
/// logged and tried again after the next write.
pub async fn keep_warm(state: AppState, windows: Vec<String>, stop: impl Future<Output = ()>) {
    if windows.is_empty() {
        return;
    }
    let mut written = state.store.minutes_written();
    tokio::pin!(stop);
    loop {
        read_ahead(&state, &windows).await;
        tokio::select! {
            () = &mut stop => return,
            changed = written.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One read of every window, as of now.
pub async fn read_ahead(state: &AppState, windows: &[String]) {
    let now = state.now();
    for window in windows {
        let params = WindowParams {
            window: Some(window.clone()),
            ..WindowParams::default()
        };
        let started = Instant::now();
        let read = match params.resolve(now) {
            Ok(range) => ServiceGraph::load(&state.store, range).await.map(drop),
            Err(error) => Err(error),
        };
        match read {
            Ok(()) => {
                metrics::counter!("meshscope_warm_reads_total").increment(1);
                tracing::debug!(
                    window = %window,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "window read ahead"
                );
            }
            Err(error) => {
                metrics::counter!("meshscope_warm_read_errors_total").increment(1);
                tracing::warn!(%error, window = %window, "reading a window ahead failed");
            }
        }
    }
}
