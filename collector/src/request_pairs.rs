//! Pairing by request id: the caller's proxy logs a request once (with its attempt count),
//! the callee's proxy logs each attempt it received, and all of them carry the same
//! x-request-id. Entries of one edge with the same id wait here, a bounded time and in
//! bounded number, and are then settled as one request: paired (both sides seen, with the
//! mesh's own cost when the request took one attempt and the callee logged it once),
//! client only (no callee's entry: a callee without a proxy, or a lost log) or server only
//! (no caller's entry: a caller without a proxy).
//!
//! Bounds: an id waits `pair_wait_ms` from the arrival of its first entry (receive time,
//! so that replaying the write-ahead log settles as the live run did); past
//! `max_waiting_pairs` ids, the oldest is settled early with what it has, and counted
//! under `meshscope_request_pairs_settled_early_total{reason="capacity"}`. A server entry
//! whose start is outside the client's request (with a second's slack for the two proxies'
//! clocks) is not the same request: it is settled on its own, as server only.
//!
//! Only HTTP entries with a request id take part. An id is kept as a 64-bit hash
//! ([`crate::entry::request_id_hash`]), never as the string.

use std::collections::{HashMap, VecDeque};

use meshscope_storage::sketch::Binned;
use meshscope_storage::{Protocol, Side, minute_of};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::aggregate::{PairFigures, ServiceId, Slot};
use crate::hash_state::FoldHashState;
use crate::stats;

/// Slack between the two proxies' clocks when a server entry is checked against the
/// client's request.
const CLOCK_SLACK_MS: i64 = 1_000;

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
}

/// A request waiting for its other side, as a checkpoint keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitingPair {
    pub request_id: u64,
    pub source: ServiceId,
    pub target: ServiceId,
    /// When it is settled, by the receive clock.
    pub deadline_ms: i64,
    /// The client's entry: start, duration in milliseconds, attempts.
    pub client: Option<(i64, f64, u32)>,
    /// Server entries seen, and the first one's start and duration.
    pub servers: u32,
    pub first_server: (i64, f64),
}

impl WaitingPair {
    /// The minutes its settlement may add to: the client's and the first server's.
    pub fn minutes(&self) -> impl Iterator<Item = i64> + '_ {
        let client = self.client.map(|(start, ..)| minute_of(start));
        let server = (self.servers > 0).then(|| minute_of(self.first_server.0));
        client.into_iter().chain(server)
    }

    fn key(&self) -> Key {
        (self.request_id, self.source, self.target)
    }
}

/// A request by its id's hash and its edge.
type Key = (u64, ServiceId, ServiceId);

/// One settled figure for one edge row of one minute.
pub type PairRow = (i64, Slot, Side, PairFigures);

#[derive(Default)]
struct Waiting {
    by_key: HashMap<Key, WaitingPair, FoldHashState>,
    /// Keys in arrival order: deadlines only grow along it.
    order: VecDeque<Key>,
}

/// The requests waiting for their other side, bounded in time and number.
pub struct RequestPairs {
    waiting: Mutex<Waiting>,
    wait_ms: i64,
    capacity: usize,
}

impl RequestPairs {
    /// Nothing waiting; ids wait `wait_ms`, at most `capacity` of them.
    pub fn new(wait_ms: u64, capacity: usize) -> RequestPairs {
        RequestPairs {
            waiting: Mutex::new(Waiting::default()),
            wait_ms: wait_ms as i64,
            capacity: capacity.max(1),
        }
    }

    /// Adds one message's entries, received at `now_ms`; what settles at once (past the
    /// capacity, or a server entry outside its client's request) goes to `settled`.
    pub fn add(&self, entries: &[PairEntry], now_ms: i64, settled: &mut Vec<PairRow>) {
        if entries.is_empty() {
            return;
        }
        let mut guard = self.waiting.lock();
        let waiting = &mut *guard;
        let mut early = 0u64;
        for e in entries {
            let key = (e.request_id, e.source, e.target);
            let pair = waiting.by_key.entry(key).or_insert_with(|| {
                waiting.order.push_back(key);
                WaitingPair {
                    request_id: e.request_id,
                    source: e.source,
                    target: e.target,
                    deadline_ms: now_ms.saturating_add(self.wait_ms),
                    client: None,
                    servers: 0,
                    first_server: (0, 0.0),
                }
            });
            match e.side {
                Side::Client => match pair.client {
                    // The same id twice from the caller (an application reusing it): the
                    // later request counts on its own.
                    Some(_) => settled.push(client_only(e.source, e.target, e.start_ms)),
                    None => pair.client = Some((e.start_ms, e.duration_ms, e.attempts)),
                },
                Side::Server => {
                    if pair.servers == 0 {
                        pair.first_server = (e.start_ms, e.duration_ms);
                    }
                    pair.servers += 1;
                }
            }
        }
        while waiting.by_key.len() > self.capacity {
            let Some(key) = waiting.order.pop_front() else {
                break;
            };
            if let Some(pair) = waiting.by_key.remove(&key) {
                settle(&pair, settled);
                early += 1;
            }
        }
        metrics::gauge!(stats::PAIRS_WAITING).set(waiting.by_key.len() as f64);
        drop(guard);
        if early > 0 {
            metrics::counter!(stats::PAIRS_SETTLED_EARLY, "reason" => "capacity").increment(early);
        }
    }

    /// Settles every request whose wait is over at `now_ms` (all of them with
    /// `i64::MAX`), into `settled`.
    pub fn settle_due(&self, now_ms: i64, settled: &mut Vec<PairRow>) {
        let mut guard = self.waiting.lock();
        let waiting = &mut *guard;
        while let Some(key) = waiting.order.front() {
            match waiting.by_key.get(key) {
                Some(pair) if pair.deadline_ms > now_ms => break,
                Some(_) => {
                    if let Some(pair) = waiting.by_key.remove(key) {
                        settle(&pair, settled);
                    }
                }
                None => {}
            }
            waiting.order.pop_front();
        }
        metrics::gauge!(stats::PAIRS_WAITING).set(waiting.by_key.len() as f64);
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.waiting.lock().by_key.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every waiting request, oldest first, for a checkpoint.
    pub fn copy(&self) -> Vec<WaitingPair> {
        let waiting = self.waiting.lock();
        waiting
            .order
            .iter()
            .filter_map(|key| waiting.by_key.get(key).cloned())
            .collect()
    }

    /// Puts back requests a checkpoint kept (this holds none yet); returns how many.
    pub fn restore(&self, pairs: Vec<WaitingPair>) -> usize {
        let mut waiting = self.waiting.lock();
        let mut restored = 0;
        for pair in pairs {
            if waiting.by_key.len() >= self.capacity {
                break;
            }
            let key = pair.key();
            if waiting.by_key.insert(key, pair).is_none() {
                waiting.order.push_back(key);
                restored += 1;
            }
        }
        restored
    }
}

fn edge(source: ServiceId, target: ServiceId) -> Slot {
    Slot::Edge(source, target, Protocol::Http)
}

fn client_only(source: ServiceId, target: ServiceId, start_ms: i64) -> PairRow {
    let figures = PairFigures {
        client_only: 1,
        ..PairFigures::default()
    };
    (
        minute_of(start_ms),
        edge(source, target),
        Side::Client,
        figures,
    )
}

/// What one request adds once settled: paired on the server side's row of the first
/// server entry's minute (with the overhead for a single attempt received once), client
/// only on the client side's row, server only on the server side's row.
fn settle(pair: &WaitingPair, settled: &mut Vec<PairRow>) {
    let (source, target) = (pair.source, pair.target);
    let server_minute = minute_of(pair.first_server.0);
    let server_row = |figures| (server_minute, edge(source, target), Side::Server, figures);
    match pair.client {
        None if pair.servers > 0 => {
            count_outcome("server_only");
            settled.push(server_row(PairFigures {
                server_only: 1,
                ..PairFigures::default()
            }));
        }
        None => {}
        Some((start, ..)) if pair.servers == 0 => {
            count_outcome("client_only");
            settled.push(client_only(source, target, start));
        }
        Some((start, duration, attempts)) => {
            let (server_start, server_duration) = pair.first_server;
            let end = start.saturating_add(duration.ceil() as i64);
            let within = server_start >= start.saturating_sub(CLOCK_SLACK_MS)
                && server_start <= end.saturating_add(CLOCK_SLACK_MS);
            if !within {
                count_outcome("client_only");
                count_outcome("server_only");
                settled.push(client_only(source, target, start));
                settled.push(server_row(PairFigures {
                    server_only: 1,
                    ..PairFigures::default()
                }));
                return;
            }
            count_outcome("paired");
            let overhead = (attempts == 1 && pair.servers == 1)
                .then(|| Binned::new(duration - server_duration));
            settled.push(server_row(PairFigures {
                paired: 1,
                overhead,
                ..PairFigures::default()
            }));
        }
    }
}

fn count_outcome(outcome: &'static str) {
    metrics::counter!(stats::PAIRS_SETTLED, "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, side: Side, start_ms: i64, duration_ms: f64, attempts: u32) -> PairEntry {
        PairEntry {
            request_id: id,
            source: 1,
            target: 2,
            side,
            start_ms,
            duration_ms,
            attempts,
        }
    }

    fn totals(rows: &[PairRow]) -> (u64, u64, u64, Vec<f64>) {
        let mut t = (0, 0, 0, Vec::new());
        for (_, slot, side, f) in rows {
            assert_eq!(*slot, Slot::Edge(1, 2, Protocol::Http));
            assert_eq!(*side == Side::Client, f.client_only > 0);
            t.0 += f.paired;
            t.1 += f.client_only;
            t.2 += f.server_only;
            t.3.extend(f.overhead.map(Binned::millis));
        }
        t
    }

    #[test]
    fn a_request_pairs_with_its_attempts_and_the_rest_stay_one_sided() {
        let pairs = RequestPairs::new(5_000, 100);
        let mut settled = Vec::new();
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
        assert!(pairs.is_empty());
    }

    #[test]
    fn past_the_capacity_the_oldest_settles_with_what_it_has() {
        let pairs = RequestPairs::new(5_000, 2);
        let mut settled = Vec::new();
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
    fn a_checkpoint_copy_restores_what_waits() {
        let pairs = RequestPairs::new(5_000, 10);
        let mut settled = Vec::new();
        pairs.add(
            &[entry(7, Side::Client, 60_000, 4.0, 1)],
            60_000,
            &mut settled,
        );
        let copy = pairs.copy();
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
}
