//! The time rules an entry must pass to be counted, and the minute boundaries they give.

use meshscope_storage::minute_of;

use crate::entry::Reject;

/// Time rules for accepting an entry: the start must fall in a minute not yet closed and
/// not too far past the collector's clock.
pub struct TimeRules {
    pub late_allowance_ms: i64,
    pub future_allowance_ms: i64,
    /// Never more than the late allowance.
    pub write_after_ms: i64,
}

impl TimeRules {
    /// The first minute not yet closed at `now_ms`: the first that still accepts entries.
    #[inline]
    pub fn first_unclosed_minute(&self, now_ms: i64) -> i64 {
        minute_of(now_ms - self.late_allowance_ms)
    }

    /// The first minute not yet due to be written; entries for earlier unclosed minutes
    /// are late rows.
    pub fn first_unwritten_minute(&self, now_ms: i64) -> i64 {
        minute_of(now_ms - self.write_after_ms.min(self.late_allowance_ms))
    }

    /// Whether an entry that started at `start_ms` is counted at `now_ms`, or why not.
    #[inline]
    pub fn check(&self, start_ms: i64, now_ms: i64) -> Result<(), Reject> {
        if start_ms > now_ms + self.future_allowance_ms {
            return Err(Reject::Future);
        }
        if minute_of(start_ms) < self.first_unclosed_minute(now_ms) {
            return Err(Reject::TooOld);
        }
        Ok(())
    }
}
