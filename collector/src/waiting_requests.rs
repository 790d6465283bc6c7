//! The requests waiting for the rest of their entries, laid out for the ingest path: every
//! entry in one ring in arrival order, each linked to its request's next entry, and a
//! small index from request id to where its entries are. At the maximum rate the ring
//! holds hundreds of thousands of entries; an entry is appended at the back and settled
//! from the front, both in order, so only the index (24 bytes a request) is touched at
//! random. Keeping each request's entries inline in the index instead (over 100 bytes a
//! request) made every entry's lookup miss the processor's caches (see BENCHMARKS.md,
//! "What pairing costs").
//!
//! A request is settled only from the front: its first entry is the oldest of all that
//! still wait. Its later entries stay in the ring, marked settled, until they reach the
//! front.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::collections::hash_map::Entry;

use crate::hash_state::FoldHashState;
use crate::packed_requests::PackedRequests;
use crate::request_settlement::LoggedSide;

/// The link of a request's last entry.
const NO_NEXT: u32 = 0;

/// One entry in the ring: 64 bytes, one cache line.
struct HeldEntry {
    request_id: u64,
    /// When its request is settled, by the receive clock: set on the request's first
    /// entry, the one that counts.
    deadline_ms: i64,
    entry: LoggedSide,
    /// How far behind it, in sequence numbers, its request's next entry is, or
    /// [`NO_NEXT`]. The ring is bounded far below `u32::MAX` entries.
    next: u32,
    /// False once its request is settled.
    waiting: bool,
    /// Whether it is its request's first entry.
    first: bool,
}

const _: () = assert!(std::mem::size_of::<HeldEntry>() <= 64);

/// Where one waiting request's entries are.
#[derive(Clone, Copy)]
struct EntryChain {
    /// The sequence number of its first entry.
    first: u64,
    /// Its last entry's sequence number, counted from the first.
    last_offset: u32,
    entries: u32,
}

/// What [`WaitingRequests::push`] did with an entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// It waits, the first of a new request.
    NewRequest,
    /// It waits with the earlier entries of its request.
    Joined,
    /// Its request already holds `limit` entries: it does not wait.
    RequestFull,
}

/// The waiting requests and their entries.
#[derive(Default)]
pub(crate) struct WaitingRequests {
    /// Entries in arrival order; the front has sequence number `front_seq`.
    ring: VecDeque<HeldEntry>,
    front_seq: u64,
    by_id: HashMap<u64, EntryChain, FoldHashState>,
    /// Entries of waiting requests (the ring also holds settled ones not yet at the front).
    waiting_entries: usize,
}

impl WaitingRequests {
    /// Requests waiting.
    pub(crate) fn requests(&self) -> usize {
        self.by_id.len()
    }

    /// Entries of waiting requests.
    pub(crate) fn entries(&self) -> usize {
        self.waiting_entries
    }

    /// Entries in the ring, settled ones not yet at the front included.
    pub(crate) fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// Brings the index's slots of `ids`, and the last waiting entry of each that has one,
    /// into the processor's caches before they are pushed. At the maximum rate the index
    /// is larger than the caches and each lookup misses them twice (control bytes, then
    /// the slot); looked up here one after another with nothing depending on the answers,
    /// a message's lookups wait for memory together instead of in turn.
    pub(crate) fn warm(&self, ids: impl Iterator<Item = u64>) {
        for id in ids {
            if let Some(chain) = self.by_id.get(&id) {
                let last = chain.first + u64::from(chain.last_offset);
                let at = last.wrapping_sub(self.front_seq) as usize;
                std::hint::black_box(self.ring.get(at).map(|held| held.next));
            }
        }
    }

    /// Brings what taking out the oldest waiting requests reads into the processor's
    /// caches, as [`WaitingRequests::warm`] does for pushes: the index slots of at most `n`
    /// of them, those due by `due_by_ms`, and each one's second entry, wherever it is in
    /// the ring. Taken out one after another, each request missed the caches at its slot
    /// and again at its next entry. Returns how many requests it warmed.
    pub(crate) fn warm_oldest(&self, n: usize, due_by_ms: i64) -> usize {
        let mut warmed = 0;
        for (seq, held) in self
            .firsts()
            .take_while(|(_, held)| held.deadline_ms <= due_by_ms)
            .take(n)
        {
            std::hint::black_box(self.by_id.get(&held.request_id));
            if held.next != NO_NEXT {
                let at = (seq - self.front_seq) as usize + held.next as usize;
                std::hint::black_box(self.ring.get(at).map(|next| next.next));
            }
            warmed += 1;
        }
        warmed
    }

    /// Adds `entry` of request `request_id`; a new request waits until `deadline_ms`. A
    /// request holds at most `limit` entries.
    pub(crate) fn push(
        &mut self,
        request_id: u64,
        deadline_ms: i64,
        entry: LoggedSide,
        limit: usize,
    ) -> Pushed {
        let seq = self.front_seq + self.ring.len() as u64;
        let pushed = match self.by_id.entry(request_id) {
            Entry::Occupied(mut occupied) => {
                let chain = occupied.get_mut();
                if chain.entries as usize >= limit {
                    return Pushed::RequestFull;
                }
                let last = chain.first + u64::from(chain.last_offset);
                self.ring[(last - self.front_seq) as usize].next = (seq - last) as u32;
                chain.last_offset = (seq - chain.first) as u32;
                chain.entries += 1;
                Pushed::Joined
            }
            Entry::Vacant(vacant) => {
                vacant.insert(EntryChain {
                    first: seq,
                    last_offset: 0,
                    entries: 1,
                });
                Pushed::NewRequest
            }
        };
        self.ring.push_back(HeldEntry {
            request_id,
            deadline_ms,
            entry,
            next: NO_NEXT,
            waiting: true,
            first: pushed == Pushed::NewRequest,
        });
        self.waiting_entries += 1;
        pushed
    }

    /// The deadline of the oldest waiting request, dropping the settled entries in front
    /// of it; `None` when none waits.
    pub(crate) fn oldest_deadline(&mut self) -> Option<i64> {
        while let Some(front) = self.ring.front() {
            if front.waiting {
                return Some(front.deadline_ms);
            }
            self.ring.pop_front();
            self.front_seq += 1;
        }
        None
    }

    /// Takes the oldest waiting request out: its entries, in arrival order, into
    /// `entries` (cleared first). Returns false when none waits.
    pub(crate) fn take_oldest(&mut self, entries: &mut Vec<LoggedSide>) -> bool {
        entries.clear();
        if self.oldest_deadline().is_none() {
            return false;
        }
        let id = self.ring[0].request_id;
        self.by_id.remove(&id);
        let mut seq = self.front_seq;
        loop {
            let held = &mut self.ring[(seq - self.front_seq) as usize];
            held.waiting = false;
            entries.push(held.entry);
            if held.next == NO_NEXT {
                break;
            }
            seq += u64::from(held.next);
        }
        self.waiting_entries -= entries.len();
        self.oldest_deadline();
        true
    }

    /// The first entry of every waiting request, oldest first, with its sequence number:
    /// one pass over the ring in order, no lookup in the index.
    fn firsts(&self) -> impl Iterator<Item = (u64, &HeldEntry)> + '_ {
        self.ring.iter().enumerate().filter_map(move |(at, held)| {
            (held.waiting && held.first).then_some((self.front_seq + at as u64, held))
        })
    }

    /// The entries of the request whose first entry is `first`, in arrival order, added to
    /// `out`.
    fn chain(&self, first: u64, out: &mut Vec<LoggedSide>) {
        let mut seq = first;
        loop {
            let held = &self.ring[(seq - self.front_seq) as usize];
            out.push(held.entry);
            if held.next == NO_NEXT {
                return;
            }
            seq += u64::from(held.next);
        }
    }

    /// Every waiting request, oldest first, packed for a checkpoint: one pass over the
    /// ring, one buffer.
    pub(crate) fn pack(&self) -> PackedRequests {
        let mut packed = PackedRequests::with_room(self.requests(), self.waiting_entries);
        let mut entries = Vec::new();
        for (seq, first) in self.firsts() {
            entries.clear();
            self.chain(seq, &mut entries);
            packed.push(first.request_id, first.deadline_ms, entries.iter());
        }
        packed
    }

    /// Whether request `request_id` waits.
    pub(crate) fn contains(&self, request_id: u64) -> bool {
        self.by_id.contains_key(&request_id)
    }
}

#[cfg(test)]
mod tests {
    use meshscope_storage::Side;

    use super::*;

    fn logged(start_ms: i64) -> LoggedSide {
        LoggedSide {
            source: 1,
            target: 2,
            side: Side::Server,
            start_ms,
            duration_ms: 1.0,
            attempts: 0,
            endpoint: 0,
            error: false,
            error_4xx: false,
            source_instance: 0,
            target_instance: 0,
        }
    }

    /// The requests warmed before settling are the due ones, oldest first, at most as
    /// many as asked: the settling loops take that many out.
    #[test]
    fn the_requests_warmed_are_the_oldest_due() {
        let mut waiting = WaitingRequests::default();
        for (id, deadline) in [(1, 100), (2, 200), (3, 300)] {
            waiting.push(id, deadline, logged(0), 64);
            waiting.push(id, deadline, logged(1), 64);
        }
        assert_eq!(waiting.warm_oldest(64, 250), 2);
        assert_eq!(waiting.warm_oldest(1, 250), 1);
        assert_eq!(waiting.warm_oldest(64, 99), 0);
        assert_eq!(waiting.warm_oldest(64, i64::MAX), 3);
        let mut entries = Vec::new();
        waiting.take_oldest(&mut entries);
        assert_eq!(waiting.warm_oldest(64, 250), 1, "the taken request is gone");
    }

    #[test]
    fn requests_come_out_oldest_first_with_their_entries_in_order() {
        let mut waiting = WaitingRequests::default();
        assert_eq!(waiting.push(7, 100, logged(1), 64), Pushed::NewRequest);
        assert_eq!(waiting.push(8, 200, logged(2), 64), Pushed::NewRequest);
        assert_eq!(waiting.push(7, 300, logged(3), 64), Pushed::Joined);
        assert_eq!(waiting.push(8, 300, logged(4), 64), Pushed::Joined);
        assert_eq!(waiting.push(7, 300, logged(5), 2), Pushed::RequestFull);
        assert_eq!((waiting.requests(), waiting.entries()), (2, 4));
        let listed: Vec<(u64, i64, Vec<i64>)> = waiting
            .pack()
            .unpack()
            .unwrap()
            .into_iter()
            .map(|r| {
                let starts = r.entries.iter().map(|e| e.start_ms).collect();
                (r.request_id, r.deadline_ms, starts)
            })
            .collect();
        assert_eq!(listed, vec![(7, 100, vec![1, 3]), (8, 200, vec![2, 4])]);

        let mut entries = Vec::new();
        assert_eq!(waiting.oldest_deadline(), Some(100));
        assert!(waiting.take_oldest(&mut entries));
        assert_eq!(
            entries.iter().map(|e| e.start_ms).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert!(!waiting.contains(7));
        // The settled entry behind the next request's first stays until it is in front.
        assert_eq!(
            (waiting.requests(), waiting.entries(), waiting.ring_len()),
            (1, 2, 3)
        );
        // The same id again is a new request.
        assert_eq!(waiting.push(7, 400, logged(6), 64), Pushed::NewRequest);
        assert!(waiting.take_oldest(&mut entries));
        assert_eq!(
            entries.iter().map(|e| e.start_ms).collect::<Vec<_>>(),
            vec![2, 4]
        );
        assert_eq!(
            waiting.ring_len(),
            1,
            "settled entries in front are dropped"
        );
        assert!(waiting.take_oldest(&mut entries));
        assert_eq!(entries.len(), 1);
        assert!(!waiting.take_oldest(&mut entries));
        assert_eq!(
            (waiting.requests(), waiting.entries(), waiting.ring_len()),
            (0, 0, 0)
        );
    }
}
