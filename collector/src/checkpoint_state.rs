//! A checkpoint of the unclosed minutes: what the collector holds that the files do not,
//! as of one position in the write-ahead log, and the rule that says whether it can stand
//! in for the log before that position at start.
//!
//! What it holds, copied while no message is being applied (under the log's gate), so
//! that it is exactly the effect of every message logged before `position`:
//! - the unclosed minutes' rows and the names they are keyed by;
//! - the entries parked for their peer's report;
//! - the requests waiting for their other side's entry (pairing by request id);
//! - what the registry learned (reporters, listeners, connections, cluster aliases);
//! - each proxy's last counter values and the proxy statistics of minutes not yet written;
//! - the mark of the files at that moment (`mark`): from which position each minute's
//!   messages were missing from the files, and so are in the checkpoint's rows.
//!
//! At start the files' mark may be newer (minutes written after the checkpoint). For each
//! minute, the files miss its messages from some position on (`missing_from`); the
//! checkpoint holds them from `missing_from(mark)` up to `position`. The checkpoint's
//! rows of a minute are used when both start at the same place, dropped when the files
//! hold everything before `position`; any other case means the checkpoint cannot stand in
//! for the log, and the whole log is replayed.

use std::collections::BTreeSet;

use meshscope_storage::MINUTE_MS;
use meshscope_storage::wal::Position;
use serde::{Deserialize, Serialize};

use crate::aggregate::UnclosedRows;
use crate::identity::NodeIdentity;
use crate::packed_requests::PackedRequests;
use crate::proxy_minutes::ProxyRowState;
use crate::proxy_stats::CounterState;
use crate::registry::LearnedState;
use crate::request_pairs::WaitingRequest;
use crate::wait_queue::ParkedState;
use crate::wal_mark::PersistedMark;

/// The collector's state as of a log position.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Every message logged before this position is in the state; none from it on.
    pub position: Position,
    /// The clock when the state was copied: every message before `position` was received
    /// at or before it.
    pub taken_at_ms: i64,
    /// The files' mark when the state was copied.
    pub mark: PersistedMark,
    pub unclosed: UnclosedRows,
    pub parked: Vec<ParkedState>,
    /// The parked entries' reporters, each once (none in checkpoints written before
    /// they were listed: those keep each entry's reporter with it).
    #[serde(default)]
    pub parked_reporters: Vec<NodeIdentity>,
    /// Requests waiting for the rest of their entries, packed (see
    /// [`crate::packed_requests`]); none in checkpoints written before they were packed.
    #[serde(default)]
    pub packed_requests: PackedRequests,
    /// Waiting requests field by field, as checkpoints kept them before they were packed
    /// (none in those written before requests were kept whole: those kept each edge's
    /// pairs under `pairs`, which a start now passes over: those requests' calls are in
    /// the rows, only their pairing figures are not). New checkpoints leave it empty.
    #[serde(default)]
    pub requests: Vec<WaitingRequest>,
    pub learned: LearnedState,
    pub counters: CounterState,
    pub proxy_rows: Vec<ProxyRowState>,
}

/// From which log position the files miss the messages of `minute`: `None` when they
/// hold all of them (see [`PersistedMark::replays_minute`]).
pub fn missing_from(mark: &PersistedMark, minute: i64) -> Option<Position> {
    if minute < mark.closed_before {
        return None;
    }
    if minute < mark.written_before {
        return mark
            .cuts
            .get(&minute)
            .map(|cut| (*cut).max(mark.all_before));
    }
    Some(mark.all_before)
}

/// [`missing_from`] for a minute in `[closed_before, written_before)` without a cut, or
/// outside that range: what every minute between two boundaries has, cuts aside.
fn missing_from_between_cuts(mark: &PersistedMark, minute: i64) -> Option<Position> {
    (minute >= mark.written_before).then_some(mark.all_before)
}

impl CheckpointState {
    /// The waiting requests it holds, packed or not. Packed bytes cut short (a damaged
    /// checkpoint passes its checksum only if written so) give none, with a warning.
    pub fn waiting_requests(&self) -> Vec<WaitingRequest> {
        let mut requests = self.packed_requests.unpack().unwrap_or_else(|error| {
            tracing::warn!(%error, "a checkpoint's waiting requests are passed over");
            Vec::new()
        });
        requests.extend(self.requests.iter().cloned());
        requests
    }

    /// Whether this checkpoint can stand in for the log before its position, given the
    /// files' mark `files`; the reason when not.
    pub fn fits(&self, files: &PersistedMark) -> Result<(), &'static str> {
        let p = self.position;
        let agrees = |ours: Option<Position>, theirs: Option<Position>| {
            theirs.is_none_or(|f| f >= p) || ours == theirs
        };
        // Minutes with a cut in either mark, and those the checkpoint holds rows or
        // entries of, each on its own.
        let mut minutes: BTreeSet<i64> = self.mark.cuts.keys().copied().collect();
        minutes.extend(files.cuts.keys().copied());
        minutes.extend(self.unclosed.minutes.iter().map(|(m, _)| *m));
        minutes.extend(self.parked.iter().map(ParkedState::minute));
        minutes.extend(
            self.waiting_requests()
                .iter()
                .flat_map(WaitingRequest::minutes),
        );
        for &minute in &minutes {
            if !agrees(
                missing_from(&self.mark, minute),
                missing_from(files, minute),
            ) {
                return Err(
                    "a minute's messages are missing from the files from a place the checkpoint does not start at",
                );
            }
        }
        // Every other minute: alike between the boundaries of the two marks.
        let mut bounds = vec![
            self.mark.closed_before,
            self.mark.written_before,
            files.closed_before,
            files.written_before,
        ];
        bounds.sort_unstable();
        for bound in bounds {
            for minute in [bound - MINUTE_MS, bound] {
                if !agrees(
                    missing_from_between_cuts(&self.mark, minute),
                    missing_from_between_cuts(files, minute),
                ) {
                    return Err("the files miss minutes the checkpoint holds nothing of");
                }
            }
        }
        if files.all_before < p
            && (files.all_before != self.mark.all_before
                || files.proxy_before < self.mark.proxy_before)
        {
            return Err("the files miss proxy statistics the checkpoint holds nothing of");
        }
        Ok(())
    }

    /// Whether the checkpoint's rows and parked entries of `minute` are used (with a
    /// mark it [`fits`](Self::fits)): the files miss some of its messages before the
    /// checkpoint's position.
    pub fn keeps_minute(&self, files: &PersistedMark, minute: i64) -> bool {
        missing_from(files, minute).is_some_and(|from| from < self.position)
            && missing_from(&self.mark, minute).is_some()
    }

    /// Whether the checkpoint's proxy statistics of `minute` are used.
    pub fn keeps_proxy_minute(&self, files: &PersistedMark, minute: i64) -> bool {
        files.all_before < self.position && minute >= files.proxy_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal_mark::MarkTracker;

    const M: i64 = MINUTE_MS;

    fn at(segment: u64, offset: u64) -> Position {
        Position { segment, offset }
    }

    fn checkpoint(mark: PersistedMark, position: Position, minutes: &[i64]) -> CheckpointState {
        CheckpointState {
            position,
            taken_at_ms: 0,
            mark,
            unclosed: UnclosedRows {
                minutes: minutes.iter().map(|m| (*m, Vec::new())).collect(),
                ..UnclosedRows::default()
            },
            parked: Vec::new(),
            parked_reporters: Vec::new(),
            packed_requests: Default::default(),
            requests: Vec::new(),
            learned: LearnedState::default(),
            counters: CounterState::default(),
            proxy_rows: Vec::new(),
        }
    }

    #[test]
    fn with_the_same_mark_every_held_minute_is_used() {
        let mut tracker = MarkTracker::new(PersistedMark::default());
        tracker.closed(11 * M, 8 * M, at(3, 500));
        let mark = tracker.next.clone();
        // Late rows of minutes 8..11 (from their cut on) and minute 11 filling.
        let cp = checkpoint(mark.clone(), at(4, 0), &[8 * M, 9 * M, 10 * M, 11 * M]);
        assert_eq!(cp.fits(&mark), Ok(()));
        for m in [8, 9, 10, 11, 12] {
            assert!(cp.keeps_minute(&mark, m * M), "minute {m}");
        }
        assert!(!cp.keeps_minute(&mark, 7 * M), "closed for good");
    }

    #[test]
    fn minutes_written_after_the_checkpoint_are_dropped_the_rest_kept() {
        let mut tracker = MarkTracker::new(PersistedMark::default());
        tracker.closed(11 * M, 8 * M, at(3, 500));
        let at_checkpoint = tracker.next.clone();
        let cp = checkpoint(at_checkpoint, at(4, 0), &[8 * M, 9 * M, 10 * M, 11 * M]);
        // After the checkpoint: minute 11's main rows written at (5, 0), 8 closed.
        tracker.closed(12 * M, 9 * M, at(5, 0));
        let files = tracker.next.clone();
        assert_eq!(cp.fits(&files), Ok(()));
        assert!(!cp.keeps_minute(&files, 8 * M), "closed since");
        assert!(
            cp.keeps_minute(&files, 9 * M),
            "late rows from the same cut"
        );
        assert!(
            !cp.keeps_minute(&files, 11 * M),
            "its messages before the checkpoint are in the files now"
        );
        assert!(cp.keeps_minute(&files, 12 * M));

        // A clean shutdown after the checkpoint: the files hold everything before it.
        let shut = PersistedMark {
            all_before: at(6, 0),
            ..files
        };
        assert_eq!(cp.fits(&shut), Ok(()));
        assert!((8..14).all(|m| !cp.keeps_minute(&shut, m * M)));
        assert!(!cp.keeps_proxy_minute(&shut, 20 * M));
    }

    #[test]
    fn files_older_than_the_checkpoint_do_not_fit() {
        let mut tracker = MarkTracker::new(PersistedMark::default());
        let before = tracker.next.clone();
        tracker.closed(11 * M, 8 * M, at(3, 500));
        let cp = checkpoint(tracker.next.clone(), at(4, 0), &[8 * M, 11 * M]);
        // The files' note is older than the checkpoint's: minute 7 is missing from the
        // files but closed in the checkpoint, which holds nothing of it.
        assert!(cp.fits(&before).is_err());
    }
}
