//! What a request adds once its entries stop waiting (see [`crate::request_pairs`]): on each
//! edge it crossed, paired, client only or server only, with the mesh's own cost; the same,
//! and each side's calls, between the caller's and the callee's instances (instance
//! pairs); and at each service it passed through, which outbound endpoints its proxy
//! called while serving the inbound one (endpoint dependencies).

use meshscope_storage::Binned;
use meshscope_storage::{Protocol, Side, minute_of};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::aggregate::{PairFigures, Sample, ServiceId, SettledCall, Slot};
use crate::stats;

/// Slack between the two proxies' clocks when a server entry is checked against the
/// client's request.
const CLOCK_SLACK_MS: i64 = 1_000;

/// One entry of a request, as pairing keeps it while the request waits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedSide {
    pub source: ServiceId,
    pub target: ServiceId,
    pub side: Side,
    pub start_ms: i64,
    pub duration_ms: f32,
    /// The caller's attempts at the request (client side; 0 when not logged).
    pub attempts: u16,
    /// The endpoint called, by its number under `target`.
    pub endpoint: u32,
    pub error: bool,
    pub error_4xx: bool,
    /// The caller's instance under `source` (the client side's reporter), or
    /// [`crate::peer_answer_cache::NO_INSTANCE`] on the server side.
    pub source_instance: u32,
    /// The callee's instance under `target`.
    pub target_instance: u32,
}

impl LoggedSide {
    fn same_edge(&self, other: &LoggedSide) -> bool {
        self.source == other.source && self.target == other.target
    }
}

/// One settled figure for one edge row of one minute.
pub type PairRow = (i64, Slot, Side, PairFigures);

/// One settled call, with its pairing figures, for one instance pair or dependency row of
/// one minute.
pub type CallRow = (i64, Slot, Side, SettledCall);

/// What settling requests gives: pairing figures for edge rows, and calls (with the same
/// figures, on the row that carries them) for instance pair and endpoint dependency rows.
/// An instance pair row whose caller instance is
/// [`crate::peer_answer_cache::NO_INSTANCE`] is the caller's without a proxy: whoever
/// records it names that instance.
#[derive(Default)]
pub struct Settled {
    pub pairs: Vec<PairRow>,
    pub calls: Vec<CallRow>,
    /// Requests settled by outcome, in the order of [`OUTCOMES`]: counted here and added
    /// to the labelled counter once per batch by [`Settled::count_outcomes`], as a
    /// labelled counter's lookup costs too much to pay per request.
    outcomes: [u64; OUTCOMES.len()],
}

/// The outcomes of a settled request, as `meshscope_request_pairs_settled_total` labels
/// them.
const OUTCOMES: [&str; 3] = ["paired", "client_only", "server_only"];
const PAIRED: usize = 0;
const CLIENT_ONLY: usize = 1;
const SERVER_ONLY: usize = 2;

impl Settled {
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.calls.is_empty()
    }

    /// Adds the requests settled so far to `meshscope_request_pairs_settled_total`, and
    /// starts counting again.
    pub fn count_outcomes(&mut self) {
        for (outcome, n) in OUTCOMES.iter().zip(std::mem::take(&mut self.outcomes)) {
            if n > 0 {
                metrics::counter!(stats::PAIRS_SETTLED, "outcome" => *outcome).increment(n);
            }
        }
    }

    /// One entry settled on its own: a client entry as client only, a server entry as
    /// server only.
    pub(crate) fn alone(&mut self, entry: &LoggedSide) {
        match entry.side {
            Side::Client => self.client_only(entry),
            Side::Server => self.server_only(entry),
        }
    }

    /// A caller's request no callee's entry took.
    fn client_only(&mut self, client: &LoggedSide) {
        self.outcomes[CLIENT_ONLY] += 1;
        let figures = PairFigures {
            client_only: 1,
            ..PairFigures::default()
        };
        self.logged(client, client.source_instance, figures);
    }

    /// A callee's attempt no caller's request took: its caller's instance is not known.
    fn server_only(&mut self, server: &LoggedSide) {
        self.outcomes[SERVER_ONLY] += 1;
        let figures = PairFigures {
            server_only: 1,
            ..PairFigures::default()
        };
        self.logged(server, server.source_instance, figures);
    }

    /// One entry's call on its instance pair's row of its side, and `figures` on that
    /// row and on its edge's.
    fn logged(&mut self, entry: &LoggedSide, source_instance: u32, figures: PairFigures) {
        let minute = minute_of(entry.start_ms);
        let pair = Slot::InstancePair(
            entry.source,
            source_instance,
            entry.target,
            entry.target_instance,
        );
        let retries = match entry.side {
            Side::Client => u32::from(entry.attempts.saturating_sub(1)),
            Side::Server => 0,
        };
        let sample = Sample {
            error: entry.error,
            error_4xx: entry.error_4xx,
            latency: Binned::new(f64::from(entry.duration_ms)),
            retries,
            ..Sample::default()
        };
        self.calls
            .push((minute, pair, entry.side, SettledCall { sample, figures }));
        if figures != PairFigures::default() {
            self.pairs.push((
                minute,
                edge(entry.source, entry.target),
                entry.side,
                figures,
            ));
        }
    }

    /// Settles every entry of one request, in the order they arrived.
    pub(crate) fn request(&mut self, entries: &[LoggedSide]) {
        for (at, first) in entries.iter().enumerate() {
            // Each edge once, at its first entry.
            if entries[..at].iter().any(|e| e.same_edge(first)) {
                continue;
            }
            self.edge(entries[at..].iter().filter(|e| e.same_edge(first)));
        }
        self.dependencies(entries);
    }

    /// One edge's entries of a request. The caller's entries are requests (one each, with
    /// its attempt count); the callee's are attempts. Where the applications pass the id
    /// on, one id may cross an edge several times (a service calling another twice while
    /// serving one request), so each attempt goes to a request whose time span (with a
    /// second's slack for the two proxies' clocks) holds its start and that has attempts
    /// left: the latest to start before it, else the earliest. A request with attempts is
    /// paired, on the server side's row of its first attempt's minute, with the overhead
    /// when it took one attempt and the callee logged one; one without is client only; an
    /// attempt that no request takes is server only.
    fn edge<'a>(&mut self, entries: impl Iterator<Item = &'a LoggedSide>) {
        let mut clients: SmallVec<[Request<'a>; 2]> = SmallVec::new();
        let mut servers: SmallVec<[&'a LoggedSide; 4]> = SmallVec::new();
        for e in entries {
            match e.side {
                Side::Client => clients.push(Request::new(e)),
                Side::Server => servers.push(e),
            }
        }
        servers.sort_by_key(|s| s.start_ms);
        for server in servers {
            let open = |r: &&mut Request<'a>| r.takes(server.start_ms);
            let before = clients
                .iter_mut()
                .filter(open)
                .filter(|r| r.client.start_ms <= server.start_ms)
                .max_by_key(|r| r.client.start_ms);
            let chosen = match before {
                Some(request) => Some(request),
                None => clients
                    .iter_mut()
                    .filter(open)
                    .min_by_key(|r| r.client.start_ms),
            };
            match chosen {
                Some(request) => request.taken.push(server),
                None => self.server_only(server),
            }
        }
        for request in clients {
            let client = request.client;
            let Some(&first) = request.taken.first() else {
                self.client_only(client);
                continue;
            };
            self.outcomes[PAIRED] += 1;
            self.logged(client, client.source_instance, PairFigures::default());
            let overhead = (client.attempts == 1 && request.taken.len() == 1)
                .then(|| Binned::new(f64::from(client.duration_ms) - f64::from(first.duration_ms)));
            let paired = PairFigures {
                paired: 1,
                overhead,
                ..PairFigures::default()
            };
            self.logged(first, client.source_instance, paired);
            for server in &request.taken[1..] {
                self.logged(server, client.source_instance, PairFigures::default());
            }
        }
    }

    /// At each service the request came in to, the outbound calls that service's proxy
    /// made with the same id: one call each on the dependency row of inbound endpoint ->
    /// outbound endpoint, in the outbound call's minute, with its outcome and latency as
    /// the calling proxy logged them. The inbound endpoint is the service's own proxy's
    /// first entry of the request, or, when it logged none (a gateway in front of it), its
    /// caller's.
    fn dependencies(&mut self, entries: &[LoggedSide]) {
        for (at, first) in entries.iter().enumerate() {
            let service = first.target;
            if entries[..at].iter().any(|e| e.target == service) {
                continue;
            }
            let inbound = entries
                .iter()
                .find(|e| e.side == Side::Server && e.target == service)
                .unwrap_or(first);
            for outbound in entries
                .iter()
                .filter(|e| e.side == Side::Client && e.source == service)
            {
                let slot = Slot::Dependency(
                    service,
                    inbound.endpoint,
                    outbound.target,
                    outbound.endpoint,
                );
                let sample = Sample {
                    error: outbound.error,
                    error_4xx: outbound.error_4xx,
                    latency: Binned::new(f64::from(outbound.duration_ms)),
                    retries: u32::from(outbound.attempts.saturating_sub(1)),
                    ..Sample::default()
                };
                let call = SettledCall {
                    sample,
                    figures: PairFigures::default(),
                };
                self.calls
                    .push((minute_of(outbound.start_ms), slot, Side::Client, call));
            }
        }
    }
}

/// A caller's request on one edge and the callee's attempts it took.
struct Request<'a> {
    client: &'a LoggedSide,
    /// Attempts it may take: its attempt count (1 when not logged).
    capacity: usize,
    taken: SmallVec<[&'a LoggedSide; 2]>,
}

impl<'a> Request<'a> {
    fn new(client: &'a LoggedSide) -> Request<'a> {
        Request {
            client,
            capacity: usize::from(client.attempts.max(1)),
            taken: SmallVec::new(),
        }
    }

    /// Whether an attempt that started at `start_ms` can be this request's.
    fn takes(&self, start_ms: i64) -> bool {
        let client = self.client;
        let end = client
            .start_ms
            .saturating_add(f64::from(client.duration_ms).ceil() as i64);
        self.taken.len() < self.capacity
            && start_ms >= client.start_ms.saturating_sub(CLOCK_SLACK_MS)
            && start_ms <= end.saturating_add(CLOCK_SLACK_MS)
    }
}

fn edge(source: ServiceId, target: ServiceId) -> Slot {
    Slot::Edge(source, target, Protocol::Http)
}
