//! From observations to rows: role, peers, caps, time checks, and the queue of entries
//! waiting for the other side's report.

use std::collections::VecDeque;
use std::sync::Arc;

use meshscope_storage::{AccessLogRow, Protocol, RowKey, Side, minute_of};
use parking_lot::Mutex;

use crate::aggregate::{Aggregator, Capped, Sample};
use crate::endpoint::endpoint_name;
use crate::entry::{Observation, OwnedObservation, Reject};
use crate::identity::NodeIdentity;
use crate::resolve::{Attribution, Resolution, Resolver};
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
}

impl TimeRules {
    pub fn first_open_minute(&self, now_ms: i64) -> i64 {
        minute_of(now_ms - self.late_allowance_ms)
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
    pub fn ingest(&self, ctx: &StreamContext, observations: &[Observation<'_>], now_ms: i64) {
        let mut samples = Vec::with_capacity(observations.len() * 4);
        let mut parked = Vec::new();
        for obs in observations {
            let role = self
                .role_rules
                .role(ctx.gateway, &ctx.log_name, &obs.upstream_cluster);
            self.resolver.learn(&ctx.reporter, role, obs);
            match self
                .resolver
                .resolve(&ctx.reporter, role, obs, self.join_wait_ms > 0)
            {
                Resolution::Ready {
                    attributions,
                    evidence,
                } => {
                    count_evidence(evidence);
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
                    count_evidence(evidence);
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

    fn resolve_now(&self, w: Waiting, samples: &mut Vec<(i64, RowKey, Side, Sample)>) {
        if let Resolution::Ready {
            attributions,
            evidence,
        } = self
            .resolver
            .resolve(&w.reporter, w.role, &w.obs.view(), false)
        {
            count_evidence(evidence);
            self.contribute(&w.reporter, &w.obs.view(), &attributions, samples);
        }
    }

    fn record(&self, samples: Vec<(i64, RowKey, Side, Sample)>) {
        if samples.is_empty() {
            return;
        }
        let too_late = self.aggregator.record(samples);
        if too_late > 0 {
            // Counted per row, not per entry: an entry makes up to eight rows.
            stats::reject("closed_minute_rows", too_late as u64);
        }
    }

    fn capped(&self, a: &Attribution) -> Attribution {
        let mut capped = a.clone();
        for service in [&mut capped.source, &mut capped.target] {
            let (kept, how) = self.aggregator.cap_service(service);
            if how == Capped::Overflow {
                metrics::counter!(stats::OVERFLOW, "what" => "service").increment(1);
                *service = kept;
            }
        }
        capped
    }

    fn contribute(
        &self,
        reporter: &NodeIdentity,
        obs: &Observation,
        attributions: &[Attribution],
        samples: &mut Vec<(i64, RowKey, Side, Sample)>,
    ) {
        let minute = minute_of(obs.start_ms);
        let endpoint =
            (obs.protocol == Protocol::Http).then(|| endpoint_name(&obs.method, &obs.path));
        let mut logged = self
            .access_log
            .map(|_| Vec::with_capacity(attributions.len()));
        for a in attributions {
            let a = &self.capped(a);
            if let Some(logged) = &mut logged {
                logged.push(access_log_row(reporter, obs, a));
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
                // Only the server's own TLS handshake proves mutual TLS; the client's log
                // does not carry the upstream TLS details.
                mtls: a.side == Side::Server && obs.mtls,
            };
            samples.push((
                minute,
                RowKey::Edge {
                    source: a.source.clone(),
                    target: a.target.clone(),
                    protocol: obs.protocol,
                },
                a.side,
                sample,
            ));
            samples.push((
                minute,
                RowKey::Service {
                    service: a.target.clone(),
                },
                a.side,
                sample,
            ));
            let instance = count_overflow(
                "instance",
                self.aggregator
                    .cap_instance(&a.target, a.target_instance.clone()),
            );
            samples.push((
                minute,
                RowKey::Instance {
                    service: a.target.clone(),
                    instance,
                },
                a.side,
                sample,
            ));
            if let Some(endpoint) = &endpoint {
                let endpoint = count_overflow(
                    "endpoint",
                    self.aggregator.cap_endpoint(&a.target, endpoint.clone()),
                );
                samples.push((
                    minute,
                    RowKey::Endpoint {
                        service: a.target.clone(),
                        endpoint,
                    },
                    a.side,
                    sample,
                ));
            }
        }
        if let (Some(buffer), Some(mut logged)) = (self.access_log, logged) {
            buffer.lock().append(&mut logged);
        }
    }
}

/// One access-log row per attribution: the names are the resolved ones the metrics use.
fn access_log_row(reporter: &NodeIdentity, obs: &Observation, a: &Attribution) -> AccessLogRow {
    // The same reading of bytes as the metrics, so a sum over the log matches the tables.
    let (bytes_sent, bytes_received) = match a.side {
        Side::Server => (obs.downstream_bytes_in, obs.downstream_bytes_out),
        Side::Client => (obs.upstream_bytes_out, obs.upstream_bytes_in),
    };
    AccessLogRow {
        time: obs.start_ms,
        source_namespace: a.source.namespace.clone(),
        source_name: a.source.name.clone(),
        target_namespace: a.target.namespace.clone(),
        target_name: a.target.name.clone(),
        side: a.side,
        protocol: obs.protocol,
        method: obs.method.to_string(),
        path: obs.path.to_string(),
        status: obs.status,
        // Observations keep only whether a failure flag was set, not the flags themselves.
        response_flags: if obs.failed { "failed" } else { "-" }.to_string(),
        duration_ms: obs.duration_ms,
        bytes_sent,
        bytes_received,
        mtls: a.side == Side::Server && obs.mtls,
        // Not carried by observations; the column stays for proxies that will log it.
        request_id: String::new(),
        node: reporter.instance.clone(),
    }
}

fn count_evidence(evidence: Option<crate::resolve::PeerEvidence>) {
    if let Some(e) = evidence {
        metrics::counter!(stats::PEER_RESOLVED, "by" => e.as_str()).increment(1);
    }
}

/// The capped name, counting it when it fell into the overflow bucket.
fn count_overflow(what: &'static str, (name, capped): (String, Capped)) -> String {
    if capped == Capped::Overflow {
        metrics::counter!(stats::OVERFLOW, "what" => what).increment(1);
    }
    name
}
