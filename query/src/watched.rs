//! The relative windows (`window=1h`) the map was read over lately: what `warm` reads
//! ahead. A window is watched from a read until [`WATCHED_FOR`] passes without another, by
//! the clock the caller passes in, so the rule can be tested with a manual clock.

use std::collections::HashMap;
use std::time::Duration;

use meshscope_storage::EpochMillis;

/// A window read this long ago is no longer read ahead; a dashboard that refreshes, or
/// someone switching back to it, reads it well within this.
pub const WATCHED_FOR: Duration = Duration::from_secs(600);

/// Windows told apart: a dashboard's picker offers a handful, and scripts a few more.
pub(crate) const MAX_WATCHED: usize = 16;

/// The relative windows read lately: each window's length in milliseconds, with the time
/// of its last read.
#[derive(Default)]
pub struct WatchedWindows {
    last_read_at: parking_lot::Mutex<HashMap<i64, EpochMillis>>,
}

impl WatchedWindows {
    /// Notes that the window of `length` ms was read at `now`. Windows no longer watched
    /// are forgotten first; past [`MAX_WATCHED`] windows, a new one is not noted.
    pub(crate) fn read(&self, length: i64, now: EpochMillis) {
        let mut windows = self.last_read_at.lock();
        windows.retain(|_, at| still_watched(*at, now));
        if windows.len() >= MAX_WATCHED && !windows.contains_key(&length) {
            return;
        }
        windows.insert(length, now);
    }

    /// The lengths of the windows read within [`WATCHED_FOR`] before `now`, shortest first.
    pub fn lengths(&self, now: EpochMillis) -> Vec<i64> {
        let mut lengths: Vec<i64> = self
            .last_read_at
            .lock()
            .iter()
            .filter(|(_, at)| still_watched(**at, now))
            .map(|(length, _)| *length)
            .collect();
        lengths.sort_unstable();
        lengths
    }
}

/// Whether a window last read at `read_at` is still watched at `now`: for [`WATCHED_FOR`]
/// after the read, that instant included.
fn still_watched(read_at: EpochMillis, now: EpochMillis) -> bool {
    now.saturating_sub(read_at) <= WATCHED_FOR.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const QUARTER: i64 = 900_000;

    #[test]
    fn a_window_is_watched_for_ten_minutes_after_its_last_read() {
        let watched = WatchedWindows::default();
        let start = 1_795_573_800_000;
        watched.read(HOUR, start);
        watched.read(QUARTER, start);
        watched.read(HOUR, start + 60_000);
        assert_eq!(watched.lengths(start + 60_000), [QUARTER, HOUR]);
        let ten_minutes = 600_000;
        assert_eq!(watched.lengths(start + ten_minutes), [QUARTER, HOUR]);
        assert_eq!(watched.lengths(start + ten_minutes + 1), [HOUR]);
        assert_eq!(watched.lengths(start + 60_000 + ten_minutes), [HOUR]);
        assert!(watched.lengths(start + 60_000 + ten_minutes + 1).is_empty());
    }

    #[test]
    fn a_few_windows_at_most_are_watched() {
        let watched = WatchedWindows::default();
        let now = 1_795_573_800_000;
        for minutes in 1..=40 {
            watched.read(minutes * 60_000, now);
        }
        let lengths = watched.lengths(now);
        assert_eq!(lengths.len(), MAX_WATCHED);
        assert_eq!(lengths, (1..=16).map(|m| m * 60_000).collect::<Vec<_>>());
        // One forgotten makes room for another.
        watched.read(40 * 60_000, now + 600_001);
        assert_eq!(watched.lengths(now + 600_001), [40 * 60_000]);
    }
}
