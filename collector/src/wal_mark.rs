//! How far the write-ahead log is in the Parquet files: the mark the collector notes with
//! every minute it writes (see `meshscope_storage::written_note`), and the rules a replay
//! follows to add only what the files do not hold.
//!
//! A minute's rows reach the files in two writes: its main rows once `write_after_secs`
//! have passed, then the late rows gathered for it until `late_allowance_secs` have. So:
//! - minutes before `closed_before` are in the files whole: nothing of them is replayed;
//! - minutes from `written_before` on are not in the files at all: all of them is;
//! - a minute in between has its main rows in the files, which hold every message logged
//!   before the log position (the cut) at which its main rows were taken; messages
//!   logged from the cut on went to its late rows, not yet written, and are replayed.
//!
//! The cut is exact: messages are logged and applied under a shared gate that the close
//! takes exclusively to read the position (see `wal_log`). Proxies' statistics are stamped
//! with their receipt minute and written whole once it is over: those before
//! `proxy_before` are in the files.

use std::collections::BTreeMap;

use meshscope_storage::wal::Position;
use meshscope_storage::{MINUTE_MS, minute_of};
use serde::{Deserialize, Serialize};

/// What the files hold of the log; the note written with each minute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedMark {
    /// Every message logged before this position is in the files (a clean shutdown).
    pub all_before: Position,
    /// Minutes before this one are in the files whole.
    pub closed_before: i64,
    /// Minutes before this one have their main rows in the files.
    pub written_before: i64,
    /// For each minute in `[closed_before, written_before)`, the position from which its
    /// messages went to the late rows.
    pub cuts: BTreeMap<i64, Position>,
    /// Proxy statistics of minutes before this one are in the files.
    pub proxy_before: i64,
}

impl PersistedMark {
    pub fn from_note(note: &str) -> Result<PersistedMark, serde_json::Error> {
        serde_json::from_str(note)
    }

    pub fn to_note(&self) -> String {
        serde_json::to_string(self).expect("a mark always serializes")
    }

    /// Whether the entries of minute `minute` in the message logged at `position` are
    /// missing from the files.
    pub fn replays_minute(&self, position: Position, minute: i64) -> bool {
        if position < self.all_before || minute < self.closed_before {
            return false;
        }
        if minute < self.written_before {
            return self.cuts.get(&minute).is_some_and(|cut| position >= *cut);
        }
        true
    }

    /// Whether proxy statistics received at `received_ms`, logged at `position`, are
    /// missing from the files.
    pub fn replays_proxy_stats(&self, position: Position, received_ms: i64) -> bool {
        position >= self.all_before && minute_of(received_ms) >= self.proxy_before
    }

    /// The receipt time before which a logged message is all in the files: an entry may
    /// start up to `future_allowance_ms` after its receipt.
    pub fn log_kept_from_ms(&self, future_allowance_ms: i64) -> i64 {
        (self.closed_before - future_allowance_ms).min(self.proxy_before)
    }
}

/// The mark as the collector moves it: each close of minutes advances it; it becomes the
/// persisted mark once the close's files are written with it.
#[derive(Debug)]
pub struct MarkTracker {
    /// The mark in the files.
    pub persisted: PersistedMark,
    /// The mark the next successful write makes true.
    pub next: PersistedMark,
    /// The aggregator's own `written_before`: it starts over with each process, and a
    /// replayed minute's rows are main rows again, written whole at the first close.
    aggregator_written_before: i64,
}

impl MarkTracker {
    pub fn new(persisted: PersistedMark) -> MarkTracker {
        MarkTracker {
            next: persisted.clone(),
            persisted,
            aggregator_written_before: i64::MIN,
        }
    }

    /// A close that wrote the main rows of minutes before `first_unwritten` and the late
    /// rows of minutes before `first_open`, switched at log position `cut`.
    pub fn closed(&mut self, first_unwritten: i64, first_open: i64, cut: Position) {
        let written_to = first_unwritten.max(first_open);
        let mut minute = self.aggregator_written_before.max(first_open);
        while minute < written_to {
            self.next.cuts.insert(minute, cut);
            minute += MINUTE_MS;
        }
        self.aggregator_written_before = self.aggregator_written_before.max(written_to);
        self.next.written_before = self.next.written_before.max(written_to);
        self.next.closed_before = self.next.closed_before.max(first_open);
        let closed_before = self.next.closed_before;
        self.next.cuts.retain(|m, _| *m >= closed_before);
    }

    /// Proxy statistics of minutes before `minute` are about to be written.
    pub fn proxy_written_before(&mut self, minute: i64) {
        self.next.proxy_before = self.next.proxy_before.max(minute);
    }

    /// Whether the next write has a new mark to note.
    pub fn moved(&self) -> bool {
        self.next != self.persisted
    }

    /// The next write succeeded with `written` as its note.
    pub fn persisted(&mut self, written: PersistedMark) {
        self.persisted = written;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64, offset: u64) -> Position {
        Position { segment, offset }
    }

    const M: i64 = MINUTE_MS;

    #[test]
    fn a_minute_between_its_two_writes_replays_only_what_came_after_its_cut() {
        let mut tracker = MarkTracker::new(PersistedMark::default());
        // Minute 10's main rows are written at position (3, 500); late rows of minutes
        // before 8 are written too.
        tracker.closed(11 * M, 8 * M, at(3, 500));
        let mark = tracker.next.clone();
        assert_eq!((mark.closed_before, mark.written_before), (8 * M, 11 * M));
        assert_eq!(
            mark.cuts.keys().copied().collect::<Vec<_>>(),
            [8 * M, 9 * M, 10 * M]
        );
        assert!(!mark.replays_minute(at(9, 0), 7 * M), "closed for good");
        assert!(!mark.replays_minute(at(3, 499), 10 * M), "in the main rows");
        assert!(mark.replays_minute(at(3, 500), 10 * M), "in the late rows");
        assert!(mark.replays_minute(at(1, 0), 11 * M), "not written at all");

        // The next close moves the minute on: one more cut, one fewer.
        tracker.closed(12 * M, 9 * M, at(4, 100));
        let mark = tracker.next.clone();
        assert_eq!(
            mark.cuts.keys().copied().collect::<Vec<_>>(),
            [9 * M, 10 * M, 11 * M]
        );
        assert_eq!(mark.cuts[&(10 * M)], at(3, 500));
        assert_eq!(mark.cuts[&(11 * M)], at(4, 100));

        // A clean shutdown notes that everything before its position is in the files.
        let shut = PersistedMark {
            all_before: at(5, 0),
            ..mark.clone()
        };
        assert!(!shut.replays_minute(at(4, 900), 20 * M));
        assert!(shut.replays_minute(at(5, 0), 20 * M));
    }

    #[test]
    fn after_a_restart_the_first_close_covers_what_was_replayed() {
        let mut before = MarkTracker::new(PersistedMark::default());
        before.closed(11 * M, 8 * M, at(3, 500));
        let persisted = before.next.clone();

        // Replayed messages of minute 10 from (3, 500) on are main rows again in the new
        // process: its first close writes them, at a cut past every old position.
        let mut after = MarkTracker::new(persisted);
        after.closed(11 * M, 8 * M, at(7, 8));
        let mark = after.next;
        assert_eq!(mark.cuts[&(10 * M)], at(7, 8));
        assert!(
            !mark.replays_minute(at(3, 600), 10 * M),
            "written by the first close"
        );
        assert!(mark.replays_minute(at(7, 8), 10 * M));
    }

    #[test]
    fn the_mark_reads_back_from_its_note_and_bounds_the_log_kept() {
        let mut tracker = MarkTracker::new(PersistedMark::default());
        tracker.closed(11 * M, 8 * M, at(3, 500));
        tracker.proxy_written_before(10 * M);
        assert!(tracker.moved());
        let note = tracker.next.to_note();
        assert_eq!(PersistedMark::from_note(&note).unwrap(), tracker.next);
        assert_eq!(tracker.next.log_kept_from_ms(60_000), 7 * M);
        assert!(!tracker.next.replays_proxy_stats(at(9, 0), 10 * M - 1));
        assert!(tracker.next.replays_proxy_stats(at(9, 0), 10 * M));
        tracker.persisted(tracker.next.clone());
        assert!(!tracker.moved());
    }
}
