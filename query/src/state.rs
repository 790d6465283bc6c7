//! What every handler shares: the store, the clock and the metrics renderer.

use std::sync::Arc;

use meshscope_storage::clock::{Clock, SystemClock};
use meshscope_storage::{EpochMillis, Store, WindowReader};

use crate::watched::WatchedWindows;
use crate::window::WindowParams;

/// Renders the process's metrics in Prometheus text format; the binary owns the recorder.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// The state every handler reads: cheap to clone, shared by all requests.
#[derive(Clone)]
pub struct AppState {
    /// The store as a reader sees it: nothing here can write a row.
    pub store: Arc<dyn WindowReader>,
    /// "Now" for relative windows and for how long a window stays watched.
    pub clock: Arc<dyn Clock>,
    pub render_metrics: Option<MetricsRenderer>,
    /// The relative windows the map was read over lately: what is read ahead.
    pub(crate) watched: Arc<WatchedWindows>,
}

impl AppState {
    /// State reading `store` with the system clock and no metrics renderer.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            render_metrics: None,
            watched: Arc::default(),
        }
    }

    /// The same state reading time from `clock` (a `ManualClock` in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_metrics_renderer(
        mut self,
        render: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        self.render_metrics = Some(Arc::new(render));
        self
    }

    /// Notes the window of a read of the whole map, so that it is read ahead for a while.
    pub(crate) fn map_read_over(&self, window: &WindowParams) {
        if let Ok(Some(length)) = window.length() {
            self.watched.read(length, self.now());
        }
    }

    /// How many windows are read ahead now.
    pub fn watched_windows(&self) -> usize {
        self.watched_lengths().len()
    }

    /// The lengths in milliseconds of the windows read ahead now, shortest first.
    pub(crate) fn watched_lengths(&self) -> Vec<i64> {
        self.watched.lengths(self.now())
    }

    /// Notes the window of `length` ms as read now.
    pub(crate) fn watch_length(&self, length: i64) {
        self.watched.read(length, self.now());
    }

    /// Now, in epoch milliseconds, by the state's clock.
    pub(crate) fn now(&self) -> EpochMillis {
        self.clock.now_ms()
    }
}
