//! The permit for large, short uses of memory (a closing minute's encoding and write, a
//! step of compaction or rollup): one at a time, so that their peaks never add up.

use super::Store;

impl Store {
    /// Waits for the permit to use a large amount of memory for a while (encoding and
    /// writing a closing minute); maintenance takes the same permit step by step. The
    /// binary hears of the permit (`StoreConfig::memory_hint`) while it is held.
    pub async fn memory_peak_permit(&self) -> MemoryPeakPermit<'_> {
        let permit = self.inner.memory_peaks.lock().await;
        MemoryPeakPermit {
            _hint: MemoryHint::start(self.inner.config.memory_hint),
            _permit: permit,
        }
    }
}

/// A permit to use a large amount of memory for a while, held until dropped; only one is
/// out at a time.
pub struct MemoryPeakPermit<'a> {
    // Dropped first: the hint ends before the next permit can be taken.
    _hint: MemoryHint,
    _permit: tokio::sync::MutexGuard<'a, ()>,
}

/// Tells the binary a large, short use of memory runs, for as long as it is held.
pub(crate) struct MemoryHint(Option<fn(bool)>);

impl MemoryHint {
    /// Calls `hint(true)` now and `hint(false)` when dropped; does nothing without a hint.
    pub(crate) fn start(hint: Option<fn(bool)>) -> MemoryHint {
        if let Some(hint) = hint {
            hint(true);
        }
        MemoryHint(hint)
    }
}

impl Drop for MemoryHint {
    fn drop(&mut self) {
        if let Some(hint) = self.0 {
            hint(false);
        }
    }
}
