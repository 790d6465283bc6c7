//! From observations to rows: role, peers, caps, time checks, and the queue of entries
//! waiting for the other side's report.

use std::collections::VecDeque;
use std::sync::Arc;

use meshscope_storage::sketch::Binned;
use meshscope_storage::{AccessLogRow, Protocol, ServiceRef, Side, minute_of};
use parking_lot::Mutex;

use crate::aggregate::{Aggregator, Capped, Sample, ServiceId, Slot};
use crate::endpoint::write_endpoint_name;
use crate::entry::{Observation, OwnedObservation, Reject};
use crate::identity::NodeIdentity;
use crate::resolve::{Attribution, PeerEvidence, Resolution, Resolver, Taught};
use crate::role::{Role, RoleRules};
use crate::stats;

/// What a stream knows about its reporter, set by its first message.
#[derive(Clone, Debug)]
pub struct StreamContext {
    pub reporter: Arc<NodeIdentity>,
    pub log_name: String,
    pub gateway: bool,
}

/// An entry parked until its caller's report arrives or its wait runs out.
struct Waiting {
    deadline_ms: i64,
    reporter: Arc<NodeIdentity>,
    role: Role,
    obs: OwnedObservation,
}

pub struct WaitQueue {
    entries: Mutex<VecDeque<Waiting>>,
    capacity: usize,
}

impl WaitQueue {
    pub fn new(capacity: usize) -> WaitQueue {
        WaitQueue {
            entries: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Time rules for accepting an entry: the start must fall in a minute still open and not
/// too far past the collector's clock.
pub struct TimeRules {
    pub late_allowance_ms: i64,
    pub future_allowance_ms: i64,
    /// Never more than the late allowance.
    pub write_after_ms: i64,
}

impl TimeRules {
    pub fn first_open_minute(&self, now_ms: i64) -> i64 {
        minute_of(now_ms - self.late_allowance_ms)
    }

    /// The first minute not yet due to be written; entries for earlier open minutes are
    /// late rows.
    pub fn first_unwritten_minute(&self, now_ms: i64) -> i64 {
        minute_of(now_ms - self.write_after_ms.min(self.late_allowance_ms))
    }

    pub fn check(&self, start_ms: i64, now_ms: i64) -> Result<(), Reject> {
        if start_ms > now_ms + self.future_allowance_ms {
            return Err(Reject::Future);
        }
        if minute_of(start_ms) < self.first_open_minute(now_ms) {
            return Err(Reject::TooOld);
        }
        Ok(())
    }
}

/// One sample for one row of one minute.
type Row = (i64, Slot, Side, Sample);

pub struct Pipeline<'a> {
    pub role_rules: &'a RoleRules,
    pub resolver: Resolver<'a>,
    pub aggregator: &'a Aggregator,
    pub waiting: &'a WaitQueue,
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
            parked: Vec::new(),
            tally: EvidenceTally::default(),
            taught: Taught::default(),
            answers: Answers::default(),
        }
    }

    /// Retries parked entries: those that can now be named, and those whose wait is over.
    pub fn retry_waiting(&self, now_ms: i64) {
        let pending: Vec<Waiting> = std::mem::take(&mut *self.waiting.entries.lock()).into();
        if pending.is_empty() {
            return;
        }
        let mut samples = Vec::new();
        let mut still = VecDeque::new();
        let mut tally = EvidenceTally::default();
        for w in pending {
            let may_wait = w.deadline_ms > now_ms;
            match self
                .resolver
                .resolve(&w.reporter, w.role, &w.obs.view(), may_wait)
            {
                Resolution::Ready {
                    attributions,
                    evidence,
                } => {
                    tally.add(evidence);
                    let peers = self.peers(&attributions);
                    self.contribute(&w.reporter, &w.obs.view(), &peers, &mut samples);
                }
                Resolution::Wait => still.push_back(w),
            }
        }
        {
            let mut queue = self.waiting.entries.lock();
            // Entries parked meanwhile go after the older ones.
            still.extend(queue.drain(..));
            *queue = still;
            metrics::gauge!(stats::JOIN_WAITING).set(queue.len() as f64);
        }
        self.record(&samples);
    }

    /// Resolves everything still parked without waiting (shutdown).
    pub fn flush_waiting(&self) {
        let pending: Vec<Waiting> = std::mem::take(&mut *self.waiting.entries.lock()).into();
        let mut samples = Vec::new();
        for w in pending {
            self.resolve_now(w, &mut samples);
        }
        metrics::gauge!(stats::JOIN_WAITING).set(0.0);
        self.record(&samples);
    }

    fn resolve_now(&self, w: Waiting, samples: &mut Vec<Row>) {
        if let Resolution::Ready {
            attributions,
            evidence,
        } = self
            .resolver
            .resolve(&w.reporter, w.role, &w.obs.view(), false)
        {
            EvidenceTally::default().add(evidence);
            let peers = self.peers(&attributions);
            self.contribute(&w.reporter, &w.obs.view(), &peers, samples);
        }
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

    /// The attributions by the aggregator's numbers.
    fn peers(&self, attributions: &[Attribution<'_>]) -> Vec<Peers> {
        attributions
            .iter()
            .map(|a| {
                let target = self.service_id(&a.target);
                Peers {
                    side: a.side,
                    source: self.service_id(&a.source),
                    target,
                    target_instance: count_overflow(
                        "instance",
                        self.aggregator.instance_id(target, &a.target_instance),
                    ),
                }
            })
            .collect()
    }

    fn contribute(
        &self,
        reporter: &NodeIdentity,
        obs: &Observation<'_>,
        peers: &[Peers],
        samples: &mut Vec<Row>,
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
    parked: Vec<Waiting>,
    tally: EvidenceTally,
    taught: Taught,
    answers: Answers<'m>,
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
        pipeline
            .resolver
            .learn(&ctx.reporter, role, obs, &mut self.taught);
        if let Some((peers, evidence)) = self.answers.find(role, obs) {
            self.tally.add(evidence);
            pipeline.contribute(&ctx.reporter, obs, &[peers], &mut self.samples);
            return;
        }
        match pipeline
            .resolver
            .resolve(&ctx.reporter, role, obs, pipeline.join_wait_ms > 0)
        {
            Resolution::Ready {
                attributions,
                evidence,
            } => {
                self.tally.add(evidence);
                let peers = pipeline.peers(&attributions);
                self.answers.keep(role, obs, &peers, evidence);
                pipeline.contribute(&ctx.reporter, obs, &peers, &mut self.samples);
            }
            Resolution::Wait => self.parked.push(Waiting {
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
                    pipeline.resolve_now(w, &mut self.samples);
                    queue = pipeline.waiting.entries.lock();
                } else {
                    queue.push_back(w);
                }
            }
            metrics::gauge!(stats::JOIN_WAITING).set(queue.len() as f64);
        }
        pipeline.record(&self.samples);
        let mut samples = std::mem::take(&mut self.samples);
        samples.clear();
        if samples.capacity() <= KEPT_SAMPLES {
            SAMPLES.set(samples);
        }
    }
}

/// One side of a call by the aggregator's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Peers {
    side: Side,
    source: ServiceId,
    target: ServiceId,
    target_instance: u32,
}

/// Peers already named in this message, by the evidence that named them. A proxy's
/// message holds its calls to a few upstream hosts and from a few callers, so most of its
/// entries ask what an entry before them asked: the answer is then the same, without the
/// registry's locks, the names it hands out, or the aggregator's lookups.
///
/// Only answers that rest on nothing but the key are kept. A callee rests on the upstream
/// cluster and host. A caller rests on the caller-cluster header and the certificate when
/// either named it; one named by its connection or not at all is not kept, as the next
/// entry's connection is another.
#[derive(Default)]
struct Answers<'m> {
    callees: Recent<CalleeKey<'m>, Peers>,
    callers: Recent<CallerKey<'m>, (Peers, PeerEvidence)>,
}

/// The upstream cluster and host.
type CalleeKey<'m> = (&'m str, Option<std::net::SocketAddr>);
/// The caller-cluster header and the certificate's URI.
type CallerKey<'m> = (Option<&'m str>, Option<&'m str>);

fn callee_key<'m>(obs: &Observation<'m>) -> CalleeKey<'m> {
    (obs.upstream_cluster, obs.addresses.upstream_remote.get())
}

fn caller_key<'m>(obs: &Observation<'m>) -> CallerKey<'m> {
    (obs.downstream_cluster_header, obs.peer_uri_san)
}

impl<'m> Answers<'m> {
    fn find(&self, role: Role, obs: &Observation<'m>) -> Option<(Peers, Option<PeerEvidence>)> {
        match role {
            Role::Outbound => self.callees.get(&callee_key(obs)).map(|p| (p, None)),
            Role::Inbound => self
                .callers
                .get(&caller_key(obs))
                .map(|(peers, evidence)| (peers, Some(evidence))),
            Role::Gateway => None,
        }
    }

    fn keep(
        &mut self,
        role: Role,
        obs: &Observation<'m>,
        peers: &[Peers],
        evidence: Option<PeerEvidence>,
    ) {
        let [peers] = peers else {
            return;
        };
        match (role, evidence) {
            (Role::Outbound, _) => self.callees.put(callee_key(obs), *peers),
            (Role::Inbound, Some(e @ (PeerEvidence::Header | PeerEvidence::Certificate))) => {
                self.callers.put(caller_key(obs), (*peers, e))
            }
            _ => {}
        }
    }
}

/// The last few answers, oldest replaced first: a linear scan of a few keys costs less
/// than hashing one.
struct Recent<K, V> {
    kept: Vec<(K, V)>,
    next: usize,
}

const RECENT: usize = 8;

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            kept: Vec::new(),
            next: 0,
        }
    }
}

impl<K: PartialEq, V: Copy> Recent<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.kept.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn put(&mut self, key: K, value: V) {
        if self.kept.len() < RECENT {
            self.kept.push((key, value));
        } else {
            self.kept[self.next] = (key, value);
            self.next = (self.next + 1) % RECENT;
        }
    }
}

/// Rows of a message kept for the next one on the same thread: a 16 KB message makes a
/// few hundred, and growing a list that size per message cost more than filling it. A
/// list grown by an unusually large message is not kept.
const KEPT_SAMPLES: usize = 4096;

thread_local! {
    static SAMPLES: std::cell::Cell<Vec<Row>> = const { std::cell::Cell::new(Vec::new()) };
    /// The endpoint name of the entry being added, reused so that naming allocates nothing.
    static ENDPOINT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// One access-log row per attribution: the names are the resolved ones the metrics use.
fn access_log_row(
    reporter: &NodeIdentity,
    obs: &Observation<'_>,
    source: &ServiceRef,
    target: &ServiceRef,
    side: Side,
) -> AccessLogRow {
    // The same reading of bytes as the metrics, so a sum over the log matches the tables.
    let (bytes_sent, bytes_received) = match side {
        Side::Server => (obs.downstream_bytes_in, obs.downstream_bytes_out),
        Side::Client => (obs.upstream_bytes_out, obs.upstream_bytes_in),
    };
    AccessLogRow {
        time: obs.start_ms,
        source_namespace: source.namespace.clone(),
        source_name: source.name.clone(),
        target_namespace: target.namespace.clone(),
        target_name: target.name.clone(),
        side,
        protocol: obs.protocol,
        method: obs.method.to_string(),
        path: obs.path.to_string(),
        status: obs.status,
        // Observations keep only whether a failure flag was set, not the flags themselves.
        response_flags: if obs.failed { "failed" } else { "-" }.to_string(),
        duration_ms: obs.duration_ms,
        bytes_sent,
        bytes_received,
        mtls: side == Side::Server && obs.mtls,
        // Not carried by observations; the column stays for proxies that will log it.
        request_id: String::new(),
        node: reporter.instance.clone(),
    }
}

/// How callers were named, tallied per message: a labelled counter costs a registry
/// lookup, too much to pay per entry.
#[derive(Default)]
struct EvidenceTally([u64; PeerEvidence::ALL.len()]);

impl EvidenceTally {
    fn add(&mut self, evidence: Option<PeerEvidence>) {
        if let Some(e) = evidence {
            self.0[e as usize] += 1;
        }
    }
}

impl Drop for EvidenceTally {
    fn drop(&mut self) {
        for (e, n) in PeerEvidence::ALL.iter().zip(self.0) {
            if n > 0 {
                metrics::counter!(stats::PEER_RESOLVED, "by" => e.as_str()).increment(n);
            }
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
mod tests {
    use std::collections::BTreeMap;

    use meshscope_storage::RowKey;

    use super::*;
    use crate::aggregate::Limits;
    use crate::config::DirectionRules;
    use crate::identity::tests::node;
    use crate::logged_address::LoggedAddress;
    use crate::registry::Registry;

    fn reporter(id: &str, cluster: &str) -> Arc<NodeIdentity> {
        Arc::new(
            NodeIdentity::from_node(&node(id, cluster, &[("NAMESPACE", "shop")], &[])).unwrap(),
        )
    }

    fn observation(cluster: &'static str) -> Observation<'static> {
        Observation {
            start_ms: 60_000,
            duration_ms: 5.0,
            upstream_cluster: cluster,
            method: "GET",
            path: "/",
            status: 200,
            ..Observation::empty(Protocol::Http)
        }
    }

    fn addr(s: &str) -> LoggedAddress<'static> {
        LoggedAddress::Known(s.parse().unwrap())
    }

    /// Calls per (side, row) as the aggregator holds them.
    fn calls(aggregator: &Aggregator) -> BTreeMap<(Side, String), u64> {
        let mut calls = BTreeMap::new();
        for row in aggregator.snapshot() {
            let key = match row.key {
                RowKey::Edge { source, target, .. } => {
                    format!("{} -> {}", source.id(), target.id())
                }
                RowKey::Instance { service, instance } => format!("{} @ {instance}", service.id()),
                _ => continue,
            };
            *calls.entry((row.side, key)).or_default() += row.metrics.calls;
        }
        calls
    }

    #[test]
    fn an_answer_found_in_a_message_serves_only_entries_that_ask_the_same() {
        let registry = Registry::new(&[], 1000).unwrap();
        let frontend = reporter("frontend-1", "frontend");
        let backend = reporter("backend-1", "backend");
        let other = reporter("other-1", "other");
        for r in [&frontend, &backend, &other] {
            registry.register_reporter(r);
        }
        registry.learn_listener(
            "10.0.0.2:8080".parse().unwrap(),
            &backend.service,
            "backend-1",
        );
        registry.learn_listener(
            "10.0.0.3:8080".parse().unwrap(),
            &backend.service,
            "backend-2",
        );
        // The other service's proxy opened 10.0.0.9:4000 -> 10.0.0.2:8080.
        registry.learn_connection(
            "10.0.0.9:4000".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap(),
            &other.service,
        );
        let aggregator = Aggregator::new(Limits {
            max_endpoints_per_service: 100,
            max_instances_per_service: 100,
            max_services: 100,
            apdex_threshold_ms: 500.0,
        });
        let rules = RoleRules::new(&DirectionRules::default()).unwrap();
        let waiting = WaitQueue::new(100);
        let pipeline = Pipeline {
            role_rules: &rules,
            resolver: Resolver {
                registry: &registry,
            },
            aggregator: &aggregator,
            waiting: &waiting,
            join_wait_ms: 0,
            access_log: None,
        };
        let context = |reporter: &Arc<NodeIdentity>| StreamContext {
            reporter: reporter.clone(),
            log_name: String::new(),
            gateway: false,
        };

        // The frontend calls the same service at two hosts, turn about.
        let outbound = ["10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.2:8080"].map(|remote| {
            let mut o = observation("outbound|8080||backend.shop.svc.cluster.local");
            o.addresses.upstream_remote = addr(remote);
            o
        });
        pipeline.ingest(&context(&frontend), outbound.into_iter(), 60_000);

        // The backend is called by the frontend (named by its header, twice), then by a
        // caller without a header whose connection the other service's proxy reported,
        // then over a connection no proxy reported.
        let inbound = [
            (Some("frontend"), "10.0.0.9:4000"),
            (Some("frontend"), "10.0.0.9:4000"),
            (None, "10.0.0.9:4000"),
            (None, "10.0.0.8:5000"),
        ]
        .map(|(header, peer)| {
            let mut o = observation("inbound|8080||");
            o.downstream_cluster_header = header;
            o.addresses.downstream_peer = addr(peer);
            o.addresses.downstream_local = addr("10.0.0.2:8080");
            o
        });
        pipeline.ingest(&context(&backend), inbound.into_iter(), 60_000);

        let expected: BTreeMap<(Side, String), u64> = [
            ((Side::Client, "shop/frontend -> shop/backend"), 3),
            ((Side::Client, "shop/backend @ backend-1"), 2),
            ((Side::Client, "shop/backend @ backend-2"), 1),
            ((Side::Server, "shop/frontend -> shop/backend"), 2),
            ((Side::Server, "shop/other -> shop/backend"), 1),
            ((Side::Server, "unknown -> shop/backend"), 1),
            ((Side::Server, "shop/backend @ backend-1"), 4),
        ]
        .into_iter()
        .map(|((side, key), n)| ((side, key.to_string()), n))
        .collect();
        assert_eq!(calls(&aggregator), expected);
    }
}
