//! Pairing by request id: the caller's proxy logs a request once (with its attempt count),
//! the callee's proxy logs each attempt it received, and all of them carry the same
//! x-request-id; where applications pass the id on, so do the calls a service makes while
//! serving the request. Every entry of one id waits here together, a bounded time and in
//! bounded number, and the request is then settled ([`crate::request_settlement`]): on each
//! edge as paired, client only or server only, and at each service as its endpoint
//! dependencies.
//!
//! Bounds: an id waits `pair_wait_ms` from the arrival of its first entry (receive time,
//! so that replaying the write-ahead log settles as the live run did); past
//! `max_waiting_pairs` ids, or four entries a request on average, the oldest is settled
//! early with what it has, and counted under
//! `meshscope_request_pairs_settled_early_total{reason="capacity"}`. One id holds
//! at most [`MAX_ENTRIES_PER_REQUEST`] entries; past that an entry settles on its own at
//! once (`reason="request_entries"`): an application reusing one id for everything cannot
//! grow a request without bound.
//!
//! Only HTTP entries with a request id take part. An id is kept as a 64-bit hash
//! ([`crate::entry::request_id_hash`]), never as the string. The entries wait in arrival
//! order ([`crate::waiting_requests`]); settled entries still in that order count towards
//! a third bound, twice the entries', so it cannot grow either.

use meshscope_storage::{Side, minute_of};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::aggregate::ServiceId;
use crate::packed_requests::PackedRequests;
use crate::request_settlement::{LoggedSide, Settled};
use crate::stats;
use crate::waiting_requests::{Pushed, WaitingRequests};

/// The most entries one request id holds while it waits.
pub const MAX_ENTRIES_PER_REQUEST: usize = 64;

/// Entries held in all, per request of the capacity: past it the oldest settle early.
const ENTRIES_PER_REQUEST_HELD: usize = 4;

/// Due requests whose index slots and entries are brought into the caches together
/// before they are settled (see [`WaitingRequests::warm_oldest`]).
const SETTLE_BATCH: usize = 64;

/// The most requests that may wait, whatever the configuration says: the ring of waiting
/// entries (at most twice [`ENTRIES_PER_REQUEST_HELD`] a request) then stays under
/// `u32::MAX` entries, as its links need.
const MAX_CAPACITY: usize = u32::MAX as usize / (2 * ENTRIES_PER_REQUEST_HELD);

/// One side's entry of a request, as pairing needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairEntry {
    /// The request id's hash (never 0).
    pub request_id: u64,
    pub source: ServiceId,
    pub target: ServiceId,
    pub side: Side,
    pub start_ms: i64,
    pub duration_ms: f64,
    /// The caller's attempts at the request (client side; 0 when not logged).
    pub attempts: u32,
    /// The endpoint called, by its number under `target`.
    pub endpoint: u32,
    pub error: bool,
    pub error_4xx: bool,
    /// The caller's instance (client side), or [`crate::peer_answer_cache::NO_INSTANCE`].
    pub source_instance: u32,
    /// The callee's instance, by its number under `target`.
    pub target_instance: u32,
}

impl PairEntry {
    fn logged(&self) -> LoggedSide {
        LoggedSide {
            source: self.source,
            target: self.target,
            side: self.side,
            start_ms: self.start_ms,
            duration_ms: self.duration_ms as f32,
            attempts: self.attempts.min(u32::from(u16::MAX)) as u16,
            endpoint: self.endpoint,
            error: self.error,
            error_4xx: self.error_4xx,
            source_instance: self.source_instance,
            target_instance: self.target_instance,
        }
    }
}

/// A request waiting for the rest of its entries, as a checkpoint keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitingRequest {
    pub request_id: u64,
    /// When it is settled, by the receive clock.
    pub deadline_ms: i64,
    /// Its entries, in arrival order.
    pub entries: Vec<LoggedSide>,
}

impl WaitingRequest {
    /// The minutes its settlement may add to: its entries' minutes.
    pub fn minutes(&self) -> impl Iterator<Item = i64> + '_ {
        self.entries.iter().map(|e| minute_of(e.start_ms))
    }
}

/// The requests waiting for the rest of their entries, bounded in time and number.
pub struct RequestPairs {
    waiting: Mutex<WaitingRequests>,
    wait_ms: i64,
    capacity: usize,
    /// Off (`[collector] pair_requests = false`): no entry is handed over.
    on: bool,
}

impl RequestPairs {
    /// Nothing waiting; ids wait `wait_ms`, at most `capacity` of them.
    pub fn new(wait_ms: u64, capacity: usize) -> RequestPairs {
        RequestPairs {
            waiting: Mutex::new(WaitingRequests::default()),
            wait_ms: wait_ms as i64,
            capacity: capacity.clamp(1, MAX_CAPACITY),
            on: true,
        }
    }

    /// Pairing turned off: [`RequestPairs::is_on`] says so, and nothing ever waits.
    pub fn off() -> RequestPairs {
        RequestPairs {
            on: false,
            ..RequestPairs::new(0, 1)
        }
    }

    /// Whether entries are to be handed over at all.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Adds one message's entries, received at `now_ms`; what settles at once (past the
    /// bounds) goes to `settled`.
    pub fn add(&self, entries: &[PairEntry], now_ms: i64, settled: &mut Settled) {
        if entries.is_empty() || !self.on {
            return;
        }
        let deadline_ms = now_ms.saturating_add(self.wait_ms);
        let max_entries = self.capacity.saturating_mul(ENTRIES_PER_REQUEST_HELD);
        let mut guard = self.waiting.lock();
        let waiting = &mut *guard;
        waiting.warm(entries.iter().map(|e| e.request_id));
        let (mut early, mut oversized) = (0u64, 0u64);
        for e in entries {
            let logged = e.logged();
            let pushed = waiting.push(e.request_id, deadline_ms, logged, MAX_ENTRIES_PER_REQUEST);
            if pushed == Pushed::RequestFull {
                settled.alone(&logged);
                oversized += 1;
            }
        }
        // Settled entries wait in the ring until they reach its front: it is bounded too.
        let over = waiting.requests().saturating_sub(self.capacity);
        if over > 0 {
            waiting.warm_oldest(over, i64::MAX);
        }
        let mut request = Vec::new();
        while waiting.requests() > self.capacity
            || waiting.entries() > max_entries
            || waiting.ring_len() > 2 * max_entries
        {
            if !waiting.take_oldest(&mut request) {
                break;
            }
            settled.request(&request);
            early += 1;
        }
        metrics::gauge!(stats::PAIRS_WAITING).set(waiting.requests() as f64);
        drop(guard);
        if early > 0 {
            metrics::counter!(stats::PAIRS_SETTLED_EARLY, "reason" => "capacity").increment(early);
        }
        if oversized > 0 {
            metrics::counter!(stats::PAIRS_SETTLED_EARLY, "reason" => "request_entries")
                .increment(oversized);
        }
    }

    /// Settles every request whose wait is over at `now_ms` (all of them with
    /// `i64::MAX`), into `settled`.
    pub fn settle_due(&self, now_ms: i64, settled: &mut Settled) {
        let mut guard = self.waiting.lock();
        let waiting = &mut *guard;
        let mut request = Vec::new();
        let due = |waiting: &mut WaitingRequests| {
            waiting
                .oldest_deadline()
                .is_some_and(|deadline_ms| deadline_ms <= now_ms)
        };
        while due(waiting) {
            let batch = waiting.warm_oldest(SETTLE_BATCH, now_ms).max(1);
            for _ in 0..batch {
                if !due(waiting) {
                    break;
                }
                waiting.take_oldest(&mut request);
                settled.request(&request);
            }
        }
        metrics::gauge!(stats::PAIRS_WAITING).set(waiting.requests() as f64);
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.waiting.lock().requests()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every waiting request, oldest first, packed for a checkpoint.
    pub fn copy_packed(&self) -> PackedRequests {
        self.waiting.lock().pack()
    }

    /// Puts back requests a checkpoint kept (this holds none yet); returns how many.
    pub fn restore(&self, requests: Vec<WaitingRequest>) -> usize {
        let mut waiting = self.waiting.lock();
        let mut restored = 0;
        for request in requests {
            if waiting.requests() >= self.capacity {
                break;
            }
            if waiting.contains(request.request_id) {
                continue;
            }
            for entry in request.entries.into_iter().take(MAX_ENTRIES_PER_REQUEST) {
                waiting.push(
                    request.request_id,
                    request.deadline_ms,
                    entry,
                    MAX_ENTRIES_PER_REQUEST,
                );
            }
            restored += 1;
        }
        restored
    }
}

#[cfg(test)]
mod tests {
    use meshscope_storage::Binned;
    use meshscope_storage::Protocol;

    use super::*;
    use crate::aggregate::{PairFigures, Slot};

    fn entry(id: u64, side: Side, start_ms: i64, duration_ms: f64, attempts: u32) -> PairEntry {
        PairEntry {
            request_id: id,
            source: 1,
            target: 2,
            side,
            start_ms,
            duration_ms,
            attempts,
            endpoint: 0,
            error: false,
            error_4xx: false,
            source_instance: 0,
            target_instance: 0,
        }
    }

    /// Paired, client only, server only and the overheads on the edge's rows; the same
    /// figures are on the instance pairs' rows.
    fn totals(settled: &Settled) -> (u64, u64, u64, Vec<f64>) {
        let mut t = (0, 0, 0, Vec::new());
        for (_, slot, side, f) in &settled.pairs {
            assert_eq!(*slot, Slot::Edge(1, 2, Protocol::Http));
            assert_eq!(*side == Side::Client, f.client_only > 0);
            t.0 += f.paired;
            t.1 += f.client_only;
            t.2 += f.server_only;
            t.3.extend(f.overhead.map(Binned::millis));
        }
        let on_instance_pairs: Vec<PairFigures> = settled
            .calls
            .iter()
            .filter(|row| matches!(row.1, Slot::InstancePair(..)))
            .map(|row| row.3.figures)
            .filter(|f| *f != PairFigures::default())
            .collect();
        let on_edges: Vec<PairFigures> = settled.pairs.iter().map(|row| row.3).collect();
        assert_eq!(on_instance_pairs, on_edges);
        t
    }

    #[test]
    fn a_request_pairs_with_its_attempts_and_the_rest_stay_one_sided() {
        let pairs = RequestPairs::new(5_000, 100);
        let mut settled = Settled::default();
        let t = 600_000;
        pairs.add(
            &[
                // Paired, one attempt: 12 ms at the caller, 9 at the callee.
                entry(1, Side::Server, t + 1, 9.0, 0),
                entry(1, Side::Client, t, 12.0, 1),
                // Paired after a retry: no overhead.
                entry(2, Side::Client, t, 30.0, 2),
                entry(2, Side::Server, t + 1, 5.0, 0),
                entry(2, Side::Server, t + 10, 5.0, 0),
                // Client only, server only.
                entry(3, Side::Client, t, 3.0, 1),
                entry(4, Side::Server, t, 3.0, 0),
                // The same id, but an hour apart: not the same request.
                entry(5, Side::Client, t, 3.0, 1),
            ],
            t,
            &mut settled,
        );
        pairs.add(
            &[entry(5, Side::Server, t + 3_600_000, 1.0, 0)],
            t + 10,
            &mut settled,
        );
        assert!(settled.is_empty());
        pairs.settle_due(t + 4_999, &mut settled);
        assert!(
            settled.is_empty(),
            "nothing settles before its wait is over"
        );
        pairs.settle_due(t + 5_000, &mut settled);
        assert_eq!(totals(&settled), (2, 2, 2, vec![3.0]));
        assert!(
            !settled
                .calls
                .iter()
                .any(|row| matches!(row.1, Slot::Dependency(..))),
            "no service called out"
        );
        assert!(pairs.is_empty());
    }

    #[test]
    fn past_the_capacity_the_oldest_settles_with_what_it_has() {
        let pairs = RequestPairs::new(5_000, 2);
        let mut settled = Settled::default();
        pairs.add(
            &[
                entry(1, Side::Client, 0, 1.0, 1),
                entry(2, Side::Client, 0, 1.0, 1),
                entry(3, Side::Client, 0, 1.0, 1),
            ],
            0,
            &mut settled,
        );
        assert_eq!(totals(&settled), (0, 1, 0, vec![]));
        assert_eq!(pairs.len(), 2);
        // The server entry of the settled one comes too late to pair.
        pairs.add(&[entry(1, Side::Server, 0, 1.0, 0)], 1, &mut settled);
        assert_eq!(pairs.len(), 2, "id 2 settled to make room");
        pairs.settle_due(i64::MAX, &mut settled);
        assert_eq!(totals(&settled), (0, 3, 1, vec![]));
    }

    #[test]
    fn an_id_reused_without_end_holds_a_bounded_number_of_entries() {
        let pairs = RequestPairs::new(5_000, 100);
        let mut settled = Settled::default();
        let flood: Vec<PairEntry> = (0..MAX_ENTRIES_PER_REQUEST + 10)
            .map(|_| entry(9, Side::Server, 0, 1.0, 0))
            .collect();
        pairs.add(&flood, 0, &mut settled);
        assert_eq!(
            totals(&settled),
            (0, 0, 10, vec![]),
            "past the bound, alone"
        );
        let copy = pairs.copy_packed().unpack().unwrap();
        assert_eq!(copy[0].entries.len(), MAX_ENTRIES_PER_REQUEST);
        pairs.settle_due(i64::MAX, &mut settled);
        // No caller's entry took them: each attempt is the callee's alone.
        let all = (MAX_ENTRIES_PER_REQUEST + 10) as u64;
        assert_eq!(totals(&settled), (0, 0, all, vec![]));
    }

    #[test]
    fn a_checkpoint_copy_restores_what_waits() {
        let pairs = RequestPairs::new(5_000, 10);
        let mut settled = Settled::default();
        pairs.add(
            &[entry(7, Side::Client, 60_000, 4.0, 1)],
            60_000,
            &mut settled,
        );
        let copy = pairs.copy_packed().unpack().unwrap();
        assert_eq!(
            (copy.len(), copy[0].request_id, copy[0].deadline_ms),
            (1, 7, 65_000),
            "waits 5 s from its arrival"
        );
        assert_eq!(copy[0].minutes().collect::<Vec<_>>(), vec![60_000]);
        let restored = RequestPairs::new(5_000, 10);
        assert_eq!(restored.restore(copy), 1);
        restored.add(
            &[entry(7, Side::Server, 60_001, 1.0, 0)],
            61_000,
            &mut settled,
        );
        restored.settle_due(i64::MAX, &mut settled);
        assert_eq!(totals(&settled), (1, 0, 0, vec![3.0]));
    }

    /// One request through a chain: gateway (no proxy, service 9) -> 1 -> 2, and 1 -> 3,
    /// where service 1 passes the id on; and the same at 1 for a second id that it does
    /// not pass on (its outbound call has an id of its own).
    #[test]
    fn a_service_that_passes_the_id_on_has_its_inbound_endpoint_lead_to_its_calls() {
        let pairs = RequestPairs::new(5_000, 10);
        let mut settled = Settled::default();
        let at = |source, target, side, endpoint, start_ms, error| PairEntry {
            request_id: 1,
            source,
            target,
            side,
            start_ms,
            duration_ms: 10.0,
            attempts: u32::from(side == Side::Client),
            endpoint,
            error,
            error_4xx: false,
            source_instance: 0,
            target_instance: 0,
        };
        pairs.add(
            &[
                at(9, 1, Side::Server, 4, 60_000, false),
                at(1, 2, Side::Client, 7, 60_001, true),
                at(1, 2, Side::Server, 7, 60_002, true),
                at(1, 3, Side::Client, 5, 60_003, false),
                at(1, 3, Side::Client, 5, 60_004, false),
                PairEntry {
                    request_id: 2,
                    ..at(9, 1, Side::Server, 4, 60_000, false)
                },
                PairEntry {
                    request_id: 3,
                    ..at(1, 2, Side::Client, 7, 60_001, false)
                },
            ],
            60_000,
            &mut settled,
        );
        pairs.settle_due(i64::MAX, &mut settled);
        let mut deps: Vec<_> = settled
            .calls
            .iter()
            .filter(|row| matches!(row.1, Slot::Dependency(..)))
            .map(|(minute, slot, side, call)| (*minute, *slot, *side, call.sample.error))
            .collect();
        deps.sort_by_key(|d| format!("{d:?}"));
        assert_eq!(
            deps,
            vec![
                (60_000, Slot::Dependency(1, 4, 2, 7), Side::Client, true),
                (60_000, Slot::Dependency(1, 4, 3, 5), Side::Client, false),
                (60_000, Slot::Dependency(1, 4, 3, 5), Side::Client, false),
            ]
        );
    }

    /// A service that passes the id on and calls the same callee three times while serving
    /// one request, the second call retried once: three requests, each paired with its own
    /// attempts, not one request with four.
    #[test]
    fn one_id_crossing_an_edge_several_times_pairs_each_crossing() {
        let pairs = RequestPairs::new(5_000, 10);
        let mut settled = Settled::default();
        let t = 60_000;
        pairs.add(
            &[
                entry(1, Side::Server, t + 1, 8.0, 0),
                entry(1, Side::Client, t, 10.0, 1),
                entry(1, Side::Server, t + 21, 2.0, 0),
                entry(1, Side::Server, t + 25, 4.0, 0),
                entry(1, Side::Client, t + 20, 10.0, 2),
                entry(1, Side::Server, t + 41, 5.0, 0),
                entry(1, Side::Client, t + 40, 6.0, 1),
            ],
            t,
            &mut settled,
        );
        pairs.settle_due(i64::MAX, &mut settled);
        let (paired, client_only, server_only, mut overhead) = totals(&settled);
        overhead.sort_by(f64::total_cmp);
        assert_eq!((paired, client_only, server_only), (3, 0, 0));
        assert_eq!(overhead.len(), 2, "the retried one has none");
        assert!((overhead[0] - 1.0).abs() < 0.05, "{overhead:?}");
        assert!((overhead[1] - 2.0).abs() < 0.05, "{overhead:?}");
    }

    /// A service behind a gateway, with no proxy of its own on the way in: the gateway's
    /// entry names its inbound endpoint.
    #[test]
    fn behind_a_gateway_the_callers_entry_names_the_inbound_endpoint() {
        let pairs = RequestPairs::new(5_000, 10);
        let mut settled = Settled::default();
        let client = |source, target, endpoint| PairEntry {
            source,
            target,
            endpoint,
            attempts: 1,
            ..entry(1, Side::Client, 60_000, 2.0, 1)
        };
        pairs.add(&[client(1, 2, 7), client(9, 1, 4)], 60_000, &mut settled);
        pairs.settle_due(i64::MAX, &mut settled);
        let deps: Vec<Slot> = settled
            .calls
            .iter()
            .map(|d| d.1)
            .filter(|slot| matches!(slot, Slot::Dependency(..)))
            .collect();
        assert_eq!(deps, vec![Slot::Dependency(1, 4, 2, 7)]);
    }

    /// Instance pairs: a request from caller instance 3 retried from callee instance 5 to
    /// instance 6 (each attempt on the pair of the instance that logged it, both with the
    /// caller's instance), and an attempt no caller logged, whose caller instance is not
    /// known.
    #[test]
    fn each_side_counts_on_the_pair_of_the_instances_that_logged_it() {
        use crate::peer_answer_cache::NO_INSTANCE;
        let pairs = RequestPairs::new(5_000, 10);
        let mut settled = Settled::default();
        let side = |id, side, start_ms, attempts, error, target_instance| PairEntry {
            error,
            source_instance: if side == Side::Client { 3 } else { NO_INSTANCE },
            target_instance,
            ..entry(id, side, start_ms, 4.0, attempts)
        };
        pairs.add(
            &[
                side(1, Side::Client, 60_000, 2, false, 5),
                side(1, Side::Server, 60_001, 0, true, 5),
                side(1, Side::Server, 60_002, 0, false, 6),
                side(2, Side::Server, 60_003, 0, false, 5),
            ],
            60_000,
            &mut settled,
        );
        pairs.settle_due(i64::MAX, &mut settled);
        let mut calls: Vec<(Slot, Side, bool, u32)> = settled
            .calls
            .iter()
            .map(|(_, slot, side, c)| (*slot, *side, c.sample.error, c.sample.retries))
            .collect();
        calls.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            calls,
            vec![
                (Slot::InstancePair(1, 3, 2, 5), Side::Client, false, 1),
                (Slot::InstancePair(1, 3, 2, 5), Side::Server, true, 0),
                (Slot::InstancePair(1, 3, 2, 6), Side::Server, false, 0),
                (
                    Slot::InstancePair(1, NO_INSTANCE, 2, 5),
                    Side::Server,
                    false,
                    0
                ),
            ]
        );
        let figures: Vec<(Slot, u64, u64)> = settled
            .calls
            .iter()
            .filter(|row| row.3.figures != PairFigures::default())
            .map(|(_, slot, _, c)| (*slot, c.figures.paired, c.figures.server_only))
            .collect();
        assert_eq!(
            figures,
            vec![
                (Slot::InstancePair(1, 3, 2, 5), 1, 0),
                (Slot::InstancePair(1, NO_INSTANCE, 2, 5), 0, 1),
            ]
        );
    }
}
