//! What every handler shares: the store, the clock and the metrics renderer.

use std::sync::Arc;

use meshscope_storage::{EpochMillis, Store};

/// Returns "now" in epoch milliseconds; injected so that window tests need no wall clock.
pub type Clock = Arc<dyn Fn() -> EpochMillis + Send + Sync>;

/// Renders the process's metrics in Prometheus text format; the binary owns the recorder.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub render_metrics: Option<MetricsRenderer>,
    /// The relative windows the map was read over lately: what is read ahead.
    pub(crate) watched: Arc<crate::warm::Watched>,
}

impl AppState {
    /// State reading `store` with the wall clock and no metrics renderer.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            clock: Arc::new(wall_clock_millis),
            render_metrics: None,
            watched: Arc::default(),
        }
    }

    pub fn with_clock(mut self, clock: impl Fn() -> EpochMillis + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
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
    pub(crate) fn map_read_over(&self, window: &crate::window::WindowParams) {
        if let Ok(Some(length)) = window.length() {
            self.watched.read(length);
        }
    }

    /// How many windows are read ahead now.
    pub fn watched_windows(&self) -> usize {
        self.watched.lengths().len()
    }

    pub(crate) fn now(&self) -> EpochMillis {
        (self.clock)()
    }
}

fn wall_clock_millis() -> EpochMillis {
    chrono::Utc::now().timestamp_millis()
}
