//! From observations to rows: role, peers, caps, time checks, and the queue of entries
//! waiting for the other side's report.

use std::collections::VecDeque;
use std::sync::Arc;

use meshscope_storage::{AccessLogRow, Protocol, ServiceRef, Side, minute_of};
use parking_lot::Mutex;

use crate::aggregate::{Aggregator, Capped, Sample, ServiceId, Slot};
use crate::endpoint::write_endpoint_name;
use crate::entry::{Observation, OwnedObservation, Reject};
use crate::identity::NodeIdentity;
use crate::resolve::{Attribution, PeerEvidence, Resolution, Resolver};
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
    /// Takes the observations as they are read, so that a message's entries are never
    /// copied into a list first.
    pub fn ingest<'m>(
        &self,
        ctx: &StreamContext,
        observations: impl Iterator<Item = Observation<'m>>,
        now_ms: i64,
    ) {
        let mut samples = Vec::with_capacity(observations.size_hint().0 * 4);
        let mut parked = Vec::new();
        let mut tally = EvidenceTally::default();
        for obs in observations {
            let obs = &obs;
            let role = self
                .role_rules
                .role(ctx.gateway, &ctx.log_name, obs.upstream_cluster);
            self.resolver.learn(&ctx.reporter, role, obs);
            match self
                .resolver
                .resolve(&ctx.reporter, role, obs, self.join_wait_ms > 0)
            {
                Resolution::Ready {
                    attributions,
                    evidence,
                } => {
                    tally.add(evidence);
                    self.contribute(&ctx.reporter, obs, &attributions, &mut samples);
                }
                Resolution::Wait => parked.push(Waiting {
                    deadline_ms: now_ms + self.join_wait_ms,
                    reporter: ctx.reporter.clone(),
                    role,
                    obs: obs.to_owned(),
                }),
            }
        }
        if !parked.is_empty() {
            let mut queue = self.waiting.entries.lock();
            for w in parked {
                if queue.len() >= self.waiting.capacity {
                    // Full: resolve now with what is known rather than drop or grow.
                    drop(queue);
                    self.resolve_now(w, &mut samples);
                    queue = self.waiting.entries.lock();
                } else {
                    queue.push_back(w);
                }
            }
            metrics::gauge!(stats::JOIN_WAITING).set(queue.len() as f64);
        }
        self.record(samples);
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
                    self.contribute(&w.reporter, &w.obs.view(), &attributions, &mut samples);
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
        self.record(samples);
    }

    /// Resolves everything still parked without waiting (shutdown).
    pub fn flush_waiting(&self) {
        let pending: Vec<Waiting> = std::mem::take(&mut *self.waiting.entries.lock()).into();
        let mut samples = Vec::new();
        for w in pending {
            self.resolve_now(w, &mut samples);
        }
        metrics::gauge!(stats::JOIN_WAITING).set(0.0);
        self.record(samples);
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
            self.contribute(&w.reporter, &w.obs.view(), &attributions, samples);
        }
    }

    fn record(&self, samples: Vec<Row>) {
        if samples.is_empty() {
            return;
        }
        let recorded = self.aggregator.record(&samples);
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

    fn contribute(
        &self,
        reporter: &NodeIdentity,
        obs: &Observation<'_>,
        attributions: &[Attribution<'_>],
        samples: &mut Vec<Row>,
    ) {
        let minute = minute_of(obs.start_ms);
        let http = obs.protocol == Protocol::Http;
        ENDPOINT.with_borrow_mut(|endpoint| {
            if http {
                write_endpoint_name(endpoint, obs.method, obs.path);
            }
            for a in attributions {
                let source = self.service_id(&a.source);
                let target = self.service_id(&a.target);
                if let Some(buffer) = self.access_log {
                    let row = access_log_row(
                        reporter,
                        obs,
                        &self.aggregator.service(source),
                        &self.aggregator.service(target),
                        a.side,
                    );
                    buffer.lock().push(row);
                }
                let (bytes_sent, bytes_received) = match a.side {
                    Side::Server => (obs.downstream_bytes_in, obs.downstream_bytes_out),
                    Side::Client => (obs.upstream_bytes_out, obs.upstream_bytes_in),
                };
                let sample = Sample {
                    error: obs.is_error(),
                    error_4xx: obs.is_4xx(),
                    latency_ms: obs.duration_ms,
                    bytes_sent,
                    bytes_received,
                    tcp: obs.protocol == Protocol::Tcp,
                    // Only the server's own TLS handshake proves mutual TLS; the client's
                    // log does not carry the upstream TLS details.
                    mtls: a.side == Side::Server && obs.mtls,
                };
                let side = a.side;
                // No service row: it is the sum of the instance rows, made when the minute
                // is read or closed, which spares a lookup and a sketch insert per entry.
                samples.push((
                    minute,
                    Slot::Edge(source, target, obs.protocol),
                    side,
                    sample,
                ));
                let instance = count_overflow(
                    "instance",
                    self.aggregator.instance_id(target, &a.target_instance),
                );
                samples.push((minute, Slot::Instance(target, instance), side, sample));
                if http {
                    let endpoint =
                        count_overflow("endpoint", self.aggregator.endpoint_id(target, endpoint));
                    samples.push((minute, Slot::Endpoint(target, endpoint), side, sample));
                }
            }
        });
    }
}

thread_local! {
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
