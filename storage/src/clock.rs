//! The one clock every crate reads wall time from: passed in, never read directly, so that
//! tests (and captures replayed from another day) can set and move it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall time in milliseconds since the Unix epoch, as a value that can be passed around.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The machine's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to.
#[derive(Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock {
            now: AtomicI64::new(now_ms),
        }
    }

    /// Sets the time to `now_ms`.
    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// A clock shared by the parts that read it, as a config carries it. The machine's wall
/// clock unless set otherwise.
#[derive(Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl SharedClock {
    /// Milliseconds since the Unix epoch, by the shared clock.
    pub fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        SharedClock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedClock")
    }
}

impl<C: Clock + 'static> From<Arc<C>> for SharedClock {
    fn from(clock: Arc<C>) -> Self {
        SharedClock(clock)
    }
}
