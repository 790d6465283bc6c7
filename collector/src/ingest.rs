//! From observations to rows: each entry's role, what it teaches the registry, its peers
//! (from the message's answer cache or the resolver), the capped names, and the samples
//! added to the aggregator; entries whose peer is not known yet are parked in the wait
//! queue and retried.

use std::sync::Arc;

use meshscope_storage::Binned;
use meshscope_storage::{AccessLogRow, Protocol, ServiceRef, Side, UNKNOWN_INSTANCE, minute_of};
use parking_lot::Mutex;

use crate::access_log_row::access_log_row;
use crate::address_learning::LearnedAddresses;
use crate::aggregate::{Aggregator, Capped, Sample, ServiceId, Slot};
use crate::attribution::{Attribution, PeerEvidence, Resolution};
use crate::endpoint::write_endpoint_name;
use crate::entry::Observation;
use crate::identity::NodeIdentity;
use crate::peer_answer_cache::{NO_INSTANCE, PeerAnswerCache, PeerIds};
use crate::request_pairs::{PairEntry, RequestPairs};
use crate::request_settlement::Settled;
use crate::resolve::Resolver;
use crate::role::RoleRules;
use crate::stats;
use crate::wait_queue::{ParkedEntry, WaitQueue};

/// What a stream knows about its reporter, set by its first message.
#[derive(Clone, Debug)]
pub struct StreamContext {
    pub reporter: Arc<NodeIdentity>,
    pub log_name: String,
    pub gateway: bool,
}

/// One sample for one row of one minute.
type Row = (i64, Slot, Side, Sample);

/// The ingest path for observations, borrowing the collector's shared state: the rules that
/// give an entry its role, the resolver, the aggregator and the wait queue.
pub struct Pipeline<'a> {
    pub role_rules: &'a RoleRules,
    pub resolver: Resolver<'a>,
    pub aggregator: &'a Aggregator,
    pub waiting: &'a WaitQueue,
    /// Requests waiting for their other side's entry, by request id.
    pub pairs: &'a RequestPairs,
    /// How long an entry may wait for its peer's own report; 0 never parks.
    pub join_wait_ms: i64,
    /// Where raw entries go when the store keeps an access log; `None` skips building them.
    pub access_log: Option<&'a Mutex<Vec<AccessLogRow>>>,
}

impl Pipeline<'_> {
    /// Resolves and aggregates one message's worth of observations (already time-checked).
    pub fn ingest<'m>(
        &self,
        ctx: &StreamContext,
        observations: impl Iterator<Item = Observation<'m>>,
        now_ms: i64,
    ) {
        let mut message = self.begin(ctx, now_ms);
        for mut obs in observations {
            message.add(&mut obs);
        }
        message.finish();
    }

    /// Starts a message: its observations are then added one at a time, as they are read
    /// in place, so that an entry is never moved from one place to the next (at 264 bytes
    /// an entry, those moves were a twentieth of the collector's time).
    pub fn begin<'p, 'm>(&'p self, ctx: &'p StreamContext, now_ms: i64) -> MessageIngest<'p, 'm> {
        MessageIngest {
            pipeline: self,
            ctx,
            now_ms,
            samples: SAMPLES.take(),
            pair_entries: PAIR_ENTRIES.take(),
            parked: Vec::new(),
            tally: EvidenceTally::default(),
            learned: LearnedAddresses::default(),
            peer_answers: PeerAnswerCache::default(),
        }
    }

    /// Retries parked entries: those whose wait is over, and those that what the registry
    /// learned since the last passes may name (see [`crate::learned_since`]); the others
    /// would only wait again, and stay where they are.
    pub fn retry_waiting(&self, now_ms: i64) {
        let mut recent = self.waiting.recent_learning.lock();
        recent.advance(self.resolver.registry.take_learned());
        let mut pending = std::mem::take(&mut *self.waiting.entries.lock());
        if pending.is_empty() {
            return;
        }
        let mut samples = Vec::new();
        let mut pair_entries = Vec::new();
        let mut tally = EvidenceTally::default();
        // Parked in time order, so the entries whose wait is over come first.
        while pending.front().is_some_and(|w| w.deadline_ms <= now_ms) {
            if let Some(w) = pending.pop_front() {
                self.resolve_parked(&w, false, &mut tally, &mut samples, &mut pair_entries);
            }
        }
        if !recent.is_quiet() {
            pending.retain(|w| {
                let addresses = &w.obs.view().addresses;
                let may_resolve = recent.may_resolve(
                    addresses.downstream_peer.get(),
                    addresses.downstream_local.get(),
                );
                let resolved = may_resolve
                    && self.resolve_parked(
                        w,
                        w.deadline_ms > now_ms,
                        &mut tally,
                        &mut samples,
                        &mut pair_entries,
                    );
                !resolved
            });
        }
        drop(recent);
        {
            let mut queue = self.waiting.entries.lock();
            // Entries parked meanwhile go after the older ones.
            pending.extend(queue.drain(..));
            *queue = pending;
            metrics::gauge!(stats::JOIN_WAITING).set(queue.len() as f64);
        }
        self.record(&samples);
        self.add_pair_entries(&pair_entries, now_ms);
    }

    /// Resolves everything still parked without waiting, and settles every request
    /// waiting for its other side (shutdown, or a test that reads everything at once).
    pub fn flush_waiting(&self, now_ms: i64) {
        let pending: Vec<ParkedEntry> = std::mem::take(&mut *self.waiting.entries.lock()).into();
        let mut samples = Vec::new();
        let mut pair_entries = Vec::new();
        let mut tally = EvidenceTally::default();
        for w in pending {
            self.resolve_parked(&w, false, &mut tally, &mut samples, &mut pair_entries);
        }
        metrics::gauge!(stats::JOIN_WAITING).set(0.0);
        self.record(&samples);
        self.add_pair_entries(&pair_entries, now_ms);
        self.settle_pairs(i64::MAX);
    }

    /// Settles the requests whose pairing wait is over at `now_ms` into their rows.
    pub fn settle_pairs(&self, now_ms: i64) {
        let mut settled = Settled::default();
        self.pairs.settle_due(now_ms, &mut settled);
        self.record_pairs(settled);
    }

    fn add_pair_entries(&self, entries: &[PairEntry], now_ms: i64) {
        if entries.is_empty() {
            return;
        }
        let mut settled = Settled::default();
        self.pairs.add(entries, now_ms, &mut settled);
        self.record_pairs(settled);
    }

    /// Puts settled requests into their minutes: pairing figures on edge and instance
    /// pair rows, calls on instance pair and endpoint dependency rows. What falls in a
    /// closed minute is counted as refused.
    fn record_pairs(&self, mut settled: Settled) {
        settled.count_outcomes();
        // A caller instance not known (a caller without a proxy) is named as such.
        let unknown = |source: ServiceId| {
            count_overflow(
                "instance",
                self.aggregator.instance_id(source, UNKNOWN_INSTANCE),
            )
        };
        for (_, slot, ..) in &mut settled.calls {
            if let Slot::InstancePair(source, instance @ NO_INSTANCE, ..) = slot {
                *instance = unknown(*source);
            }
        }
        if !settled.pairs.is_empty() {
            let recorded = self.aggregator.record_pairs(&settled.pairs);
            if recorded.too_late > 0 {
                stats::reject("closed_minute_pairs", recorded.too_late as u64);
            }
        }
        if !settled.calls.is_empty() {
            let recorded = self.aggregator.record_settled(&settled.calls);
            if recorded.too_late > 0 {
                stats::reject("closed_minute_pairs", recorded.too_late as u64);
            }
        }
    }

    /// Resolves a parked entry again and, when it is named (always, unless `may_wait`),
    /// adds its rows and pairing entry; whether it was.
    fn resolve_parked(
        &self,
        w: &ParkedEntry,
        may_wait: bool,
        tally: &mut EvidenceTally,
        samples: &mut Vec<Row>,
        pairs: &mut Vec<PairEntry>,
    ) -> bool {
        let obs = w.obs.view();
        let Resolution::Ready {
            attributions,
            evidence,
            identity_conflict,
        } = self.resolver.resolve(&w.reporter, w.role, &obs, may_wait)
        else {
            return false;
        };
        tally.add(evidence, identity_conflict);
        let peers = self.peers(&w.reporter, &attributions);
        self.contribute(&w.reporter, &obs, &peers, identity_conflict, samples, pairs);
        true
    }

    fn record(&self, samples: &[Row]) {
        if samples.is_empty() {
            return;
        }
        let recorded = self.aggregator.record(samples);
        // Counted per row, not per entry: an entry makes up to eight rows.
        if recorded.too_late > 0 {
            stats::reject("closed_minute_rows", recorded.too_late as u64);
        }
        if recorded.late > 0 {
            metrics::counter!(stats::LATE_ROWS).increment(recorded.late as u64);
        }
    }

    fn service_id(&self, service: &ServiceRef) -> ServiceId {
        let (id, how) = self.aggregator.service_id(service);
        if how == Capped::Overflow {
            metrics::counter!(stats::OVERFLOW, "what" => "service").increment(1);
        }
        id
    }

    /// The attributions by the aggregator's numbers; on the client side the caller's
    /// instance is `reporter`'s own.
    fn peers(&self, reporter: &NodeIdentity, attributions: &[Attribution<'_>]) -> Vec<PeerIds> {
        attributions
            .iter()
            .map(|a| {
                let target = self.service_id(&a.target);
                let source = self.service_id(&a.source);
                let source_instance = match a.side {
                    Side::Client => count_overflow(
                        "instance",
                        self.aggregator.instance_id(source, &reporter.instance),
                    ),
                    Side::Server => NO_INSTANCE,
                };
                PeerIds {
                    side: a.side,
                    source,
                    target,
                    target_instance: count_overflow(
                        "instance",
                        self.aggregator.instance_id(target, &a.target_instance),
                    ),
                    source_instance,
                }
            })
            .collect()
    }

    /// Adds the entry's rows for each side it describes. `identity_conflict` marks the
    /// server side's rows of an entry whose caller-cluster header named another caller
    /// than its certificate. An HTTP entry with a request id is also handed to pairing,
    /// once per side it describes.
    fn contribute(
        &self,
        reporter: &NodeIdentity,
        obs: &Observation<'_>,
        peers: &[PeerIds],
        identity_conflict: bool,
        samples: &mut Vec<Row>,
        pairs: &mut Vec<PairEntry>,
    ) {
        let minute = minute_of(obs.start_ms);
        let http = obs.protocol == Protocol::Http;
        let latency = Binned::new(obs.duration_ms);
        ENDPOINT.with_borrow_mut(|endpoint| {
            if http {
                write_endpoint_name(endpoint, obs.method, obs.path);
            }
            for p in peers {
                let (source, target) = (p.source, p.target);
                if let Some(buffer) = self.access_log {
                    let row = access_log_row(
                        reporter,
                        obs,
                        &self.aggregator.service(source),
                        &self.aggregator.service(target),
                        p.side,
                    );
                    buffer.lock().push(row);
                }
                let (bytes_sent, bytes_received) = match p.side {
                    Side::Server => (obs.downstream_bytes_in, obs.downstream_bytes_out),
                    Side::Client => (obs.upstream_bytes_out, obs.upstream_bytes_in),
                };
                let sample = Sample {
                    error: obs.is_error(),
                    error_4xx: obs.is_4xx(),
                    latency,
                    bytes_sent,
                    bytes_received,
                    tcp: obs.protocol == Protocol::Tcp,
                    // Only the server's own TLS handshake proves mutual TLS; the client's
                    // log does not carry the upstream TLS details.
                    mtls: p.side == Side::Server && obs.mtls,
                    // Retries are the caller's proxy's; the callee's logs each attempt
                    // as a call of its own.
                    retries: if p.side == Side::Client {
                        obs.retries()
                    } else {
                        0
                    },
                    identity_conflict: p.side == Side::Server && identity_conflict,
                    response_flags: obs.response_flags,
                };
                let side = p.side;
                // No service row: it is the sum of the instance rows, made when the minute
                // is read or closed, which spares a lookup and a sketch insert per entry.
                samples.push((
                    minute,
                    Slot::Edge(source, target, obs.protocol),
                    side,
                    sample,
                ));
                samples.push((
                    minute,
                    Slot::Instance(target, p.target_instance),
                    side,
                    sample,
                ));
                if http {
                    let endpoint =
                        count_overflow("endpoint", self.aggregator.endpoint_id(target, endpoint));
                    samples.push((minute, Slot::Endpoint(target, endpoint), side, sample));
                    if obs.request_id != 0 && self.pairs.is_on() {
                        pairs.push(PairEntry {
                            request_id: obs.request_id,
                            source,
                            target,
                            side,
                            start_ms: obs.start_ms,
                            duration_ms: obs.duration_ms,
                            attempts: obs.upstream_attempts,
                            endpoint,
                            error: sample.error,
                            error_4xx: sample.error_4xx,
                            source_instance: p.source_instance,
                            target_instance: p.target_instance,
                        });
                    }
                }
            }
        });
    }
}

/// One message's entries on their way into the aggregator (see [`Pipeline::begin`]).
pub struct MessageIngest<'p, 'm> {
    pipeline: &'p Pipeline<'p>,
    ctx: &'p StreamContext,
    now_ms: i64,
    samples: Vec<Row>,
    /// This message's entries for pairing by request id.
    pair_entries: Vec<PairEntry>,
    parked: Vec<ParkedEntry>,
    tally: EvidenceTally,
    /// What this message's entries last taught the registry.
    learned: LearnedAddresses,
    /// Peers already named for this message's entries.
    peer_answers: PeerAnswerCache<'m>,
}

impl<'m> MessageIngest<'_, 'm> {
    /// Resolves one observation (already time-checked) and adds its rows.
    pub fn add(&mut self, obs: &mut Observation<'m>) {
        let (pipeline, ctx) = (self.pipeline, self.ctx);
        let role = pipeline
            .role_rules
            .role(ctx.gateway, &ctx.log_name, obs.upstream_cluster);
        obs.addresses.decode_for(role);
        let obs = &*obs;
        self.learned
            .teach(pipeline.resolver.registry, &ctx.reporter, role, obs);
        if let Some((peers, evidence, identity_conflict)) = self.peer_answers.find(role, obs) {
            self.tally.add(evidence, identity_conflict);
            pipeline.contribute(
                &ctx.reporter,
                obs,
                &[peers],
                identity_conflict,
                &mut self.samples,
                &mut self.pair_entries,
            );
            return;
        }
        match pipeline
            .resolver
            .resolve(&ctx.reporter, role, obs, pipeline.join_wait_ms > 0)
        {
            Resolution::Ready {
                attributions,
                evidence,
                identity_conflict,
            } => {
                self.tally.add(evidence, identity_conflict);
                let peers = pipeline.peers(&self.ctx.reporter, &attributions);
                self.peer_answers
                    .keep(role, obs, &peers, evidence, identity_conflict);
                pipeline.contribute(
                    &ctx.reporter,
                    obs,
                    &peers,
                    identity_conflict,
                    &mut self.samples,
                    &mut self.pair_entries,
                );
            }
            Resolution::Wait => self.parked.push(ParkedEntry {
                deadline_ms: self.now_ms + pipeline.join_wait_ms,
                reporter: ctx.reporter.clone(),
                role,
                obs: obs.to_owned(),
            }),
        }
    }

    /// Parks what waits for its peer's report and records the message's rows.
    pub fn finish(mut self) {
        let pipeline = self.pipeline;
        if !self.parked.is_empty() {
            let mut queue = pipeline.waiting.entries.lock();
            for w in std::mem::take(&mut self.parked) {
                if queue.len() >= pipeline.waiting.capacity {
                    // Full: resolve now with what is known rather than drop or grow.
                    drop(queue);
                    pipeline.resolve_parked(
                        &w,
                        false,
                        &mut self.tally,
                        &mut self.samples,
                        &mut self.pair_entries,
                    );
                    queue = pipeline.waiting.entries.lock();
                } else {
                    queue.push_back(w);
                }
            }
            metrics::gauge!(stats::JOIN_WAITING).set(queue.len() as f64);
        }
        pipeline.record(&self.samples);
        pipeline.add_pair_entries(&self.pair_entries, self.now_ms);
        let mut samples = std::mem::take(&mut self.samples);
        samples.clear();
        if samples.capacity() <= KEPT_SAMPLES {
            SAMPLES.set(samples);
        }
        let mut pair_entries = std::mem::take(&mut self.pair_entries);
        pair_entries.clear();
        if pair_entries.capacity() <= KEPT_SAMPLES {
            PAIR_ENTRIES.set(pair_entries);
        }
    }
}

/// Rows of a message kept for the next one on the same thread: a 16 KB message makes a
/// few hundred, and growing a list that size per message cost more than filling it. A
/// list grown by an unusually large message is not kept.
const KEPT_SAMPLES: usize = 4096;

thread_local! {
    static SAMPLES: std::cell::Cell<Vec<Row>> = const { std::cell::Cell::new(Vec::new()) };
    /// A message's entries for pairing, kept likewise.
    static PAIR_ENTRIES: std::cell::Cell<Vec<PairEntry>> = const { std::cell::Cell::new(Vec::new()) };
    /// The endpoint name of the entry being added, reused so that naming allocates nothing.
    static ENDPOINT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// How callers were named, and how many names conflicted, tallied per message: a
/// labelled counter costs a registry lookup, too much to pay per entry.
#[derive(Default)]
struct EvidenceTally {
    by_evidence: [u64; PeerEvidence::ALL.len()],
    identity_conflicts: u64,
}

impl EvidenceTally {
    fn add(&mut self, evidence: Option<PeerEvidence>, identity_conflict: bool) {
        if let Some(e) = evidence {
            self.by_evidence[e as usize] += 1;
        }
        self.identity_conflicts += u64::from(identity_conflict);
    }
}

impl Drop for EvidenceTally {
    fn drop(&mut self) {
        for (e, n) in PeerEvidence::ALL.iter().zip(self.by_evidence) {
            if n > 0 {
                metrics::counter!(stats::PEER_RESOLVED, "by" => e.as_str()).increment(n);
            }
        }
        if self.identity_conflicts > 0 {
            metrics::counter!(stats::IDENTITY_CONFLICTS).increment(self.identity_conflicts);
        }
    }
}

/// The capped name's number, counting it when it fell into the overflow bucket.
fn count_overflow(what: &'static str, (id, capped): (u32, Capped)) -> u32 {
    if capped == Capped::Overflow {
        metrics::counter!(stats::OVERFLOW, "what" => what).increment(1);
    }
    id
}

#[cfg(test)]
mod tests;
