//! Per-minute aggregation: open minutes live here until their late-data allowance has
//! passed, then they are handed to the store as closed rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use meshscope_storage::{MetricRow, Metrics, RowKey, ServiceRef, Side};
use parking_lot::Mutex;

/// What one entry contributes to a row.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub error: bool,
    pub error_4xx: bool,
    pub latency_ms: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub tcp: bool,
    pub mtls: bool,
}

pub fn add_sample(metrics: &mut Metrics, sample: &Sample, apdex_threshold_ms: f64) {
    metrics.calls += 1;
    metrics.errors += u64::from(sample.error);
    metrics.errors_4xx += u64::from(sample.error_4xx);
    metrics.latency.add(sample.latency_ms);
    metrics.bytes_sent += sample.bytes_sent;
    metrics.bytes_received += sample.bytes_received;
    metrics.tcp_connections += u64::from(sample.tcp);
    metrics.mtls_calls += u64::from(sample.mtls);
    if !sample.error {
        if sample.latency_ms <= apdex_threshold_ms {
            metrics.apdex_satisfied += 1;
        } else if sample.latency_ms <= 4.0 * apdex_threshold_ms {
            metrics.apdex_tolerating += 1;
        }
    }
}

/// Rows keyed by what they describe and which side reported them.
type MinuteRows = HashMap<(RowKey, Side), Metrics>;

/// Caps that keep the key space bounded whatever the proxies send.
pub struct Limits {
    pub max_endpoints_per_service: usize,
    pub max_instances_per_service: usize,
    pub max_services: usize,
    pub apdex_threshold_ms: f64,
}

pub const OVERFLOW: &str = "{overflow}";

#[derive(Default)]
struct Inner {
    minutes: BTreeMap<i64, MinuteRows>,
    /// Minutes before this one are closed: entries for them are too late.
    closed_before: i64,
}

/// Names seen per service, to cap them; an overflow bucket takes the rest.
#[derive(Default)]
struct Seen {
    services: HashSet<ServiceRef>,
    endpoints: HashMap<ServiceRef, HashSet<String>>,
    instances: HashMap<ServiceRef, HashSet<String>>,
}

pub struct Aggregator {
    inner: Mutex<Inner>,
    seen: Mutex<Seen>,
    limits: Limits,
}

/// Whether a key was folded into an overflow bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capped {
    Kept,
    Overflow,
}

impl Aggregator {
    pub fn new(limits: Limits) -> Aggregator {
        Aggregator {
            inner: Mutex::new(Inner::default()),
            seen: Mutex::new(Seen::default()),
            limits,
        }
    }

    pub fn apdex_threshold_ms(&self) -> f64 {
        self.limits.apdex_threshold_ms
    }

    /// The service to record under: itself while under the cap, else the virtual
    /// overflow node, so a flood of made-up peer names cannot grow memory.
    pub fn cap_service(&self, service: &ServiceRef) -> (ServiceRef, Capped) {
        let mut seen = self.seen.lock();
        if seen.services.contains(service) {
            return (service.clone(), Capped::Kept);
        }
        if seen.services.len() < self.limits.max_services {
            seen.services.insert(service.clone());
            return (service.clone(), Capped::Kept);
        }
        (ServiceRef::virtual_node(OVERFLOW), Capped::Overflow)
    }

    /// The endpoint name to use for `service`: itself while under the cap, else the
    /// overflow bucket.
    pub fn cap_endpoint(&self, service: &ServiceRef, endpoint: String) -> (String, Capped) {
        let mut seen = self.seen.lock();
        cap(
            seen.endpoints.entry(service.clone()).or_default(),
            endpoint,
            self.limits.max_endpoints_per_service,
        )
    }

    pub fn cap_instance(&self, service: &ServiceRef, instance: String) -> (String, Capped) {
        let mut seen = self.seen.lock();
        cap(
            seen.instances.entry(service.clone()).or_default(),
            instance,
            self.limits.max_instances_per_service,
        )
    }

    /// Adds samples; returns how many fell in minutes already closed (they are not added).
    pub fn record(&self, samples: Vec<(i64, RowKey, Side, Sample)>) -> usize {
        let threshold = self.limits.apdex_threshold_ms;
        let mut inner = self.inner.lock();
        let mut too_late = 0;
        for (minute, key, side, sample) in samples {
            if minute < inner.closed_before {
                too_late += 1;
                continue;
            }
            let rows = inner.minutes.entry(minute).or_default();
            add_sample(rows.entry((key, side)).or_default(), &sample, threshold);
        }
        too_late
    }

    /// Removes and returns every minute before `first_open`; later entries for them are
    /// refused.
    pub fn close_before(&self, first_open: i64) -> Vec<MetricRow> {
        let closed = {
            let mut inner = self.inner.lock();
            let keep = inner.minutes.split_off(&first_open);
            inner.closed_before = inner.closed_before.max(first_open);
            std::mem::replace(&mut inner.minutes, keep)
        };
        to_rows(closed.into_iter())
    }

    /// A copy of the minutes still open, for live reads.
    pub fn snapshot(&self) -> Vec<MetricRow> {
        let inner = self.inner.lock();
        let mut rows = Vec::new();
        for (minute, keys) in &inner.minutes {
            for ((key, side), metrics) in keys {
                rows.push(MetricRow {
                    minute: *minute,
                    key: key.clone(),
                    side: *side,
                    metrics: metrics.clone(),
                });
            }
        }
        rows
    }

    /// The first minute that still accepts entries.
    pub fn closed_before(&self) -> i64 {
        self.inner.lock().closed_before
    }

    /// Closes everything, for shutdown.
    pub fn drain(&self) -> Vec<MetricRow> {
        let closed = std::mem::take(&mut self.inner.lock().minutes);
        to_rows(closed.into_iter())
    }
}

fn cap(set: &mut HashSet<String>, name: String, max: usize) -> (String, Capped) {
    if set.contains(&name) {
        return (name, Capped::Kept);
    }
    if set.len() < max {
        set.insert(name.clone());
        return (name, Capped::Kept);
    }
    (OVERFLOW.to_string(), Capped::Overflow)
}

fn to_rows(minutes: impl Iterator<Item = (i64, MinuteRows)>) -> Vec<MetricRow> {
    let mut rows = Vec::new();
    for (minute, keys) in minutes {
        for ((key, side), metrics) in keys {
            rows.push(MetricRow {
                minute,
                key,
                side,
                metrics,
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_endpoints_per_service: 2,
            max_instances_per_service: 2,
            max_services: 3,
            apdex_threshold_ms: 100.0,
        }
    }

    fn key(name: &str) -> RowKey {
        RowKey::Service {
            service: ServiceRef::service("", name),
        }
    }

    #[test]
    fn apdex_counts_satisfied_and_tolerating_and_never_errors() {
        let mut m = Metrics::default();
        let cases = [
            (50.0, false),  // satisfied
            (100.0, false), // satisfied at T
            (250.0, false), // tolerating
            (400.0, false), // tolerating at 4T
            (401.0, false), // frustrated
            (10.0, true),   // fast but failed: frustrated
        ];
        for (latency_ms, error) in cases {
            let sample = Sample {
                latency_ms,
                error,
                ..Default::default()
            };
            add_sample(&mut m, &sample, 100.0);
        }
        assert_eq!((m.calls, m.errors), (6, 1));
        assert_eq!((m.apdex_satisfied, m.apdex_tolerating), (2, 2));
    }

    #[test]
    fn minutes_close_in_order_and_late_rows_are_refused() {
        let agg = Aggregator::new(limits());
        let sample = Sample::default();
        assert_eq!(
            agg.record(vec![
                (0, key("a"), Side::Server, sample),
                (60_000, key("a"), Side::Server, sample),
                (60_000, key("a"), Side::Client, sample),
            ]),
            0
        );
        let closed = agg.close_before(60_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].minute, 0);
        // Minute 0 is closed: a late row for it is refused, minute 1 still takes rows.
        assert_eq!(
            agg.record(vec![
                (0, key("a"), Side::Server, sample),
                (60_000, key("a"), Side::Server, sample),
            ]),
            1
        );
        let open = agg.snapshot();
        assert_eq!(open.len(), 2, "server and client rows of minute 1");
        let server = open.iter().find(|r| r.side == Side::Server).unwrap();
        assert_eq!(server.metrics.calls, 2);
        assert_eq!(agg.drain().len(), 2);
        assert!(agg.snapshot().is_empty());
    }

    #[test]
    fn caps_fold_the_rest_into_overflow() {
        let agg = Aggregator::new(limits());
        let svc = ServiceRef::service("", "a");
        let names: Vec<_> = ["/1", "/2", "/3", "/1"]
            .iter()
            .map(|e| agg.cap_endpoint(&svc, e.to_string()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("/1".to_string(), Capped::Kept),
                ("/2".to_string(), Capped::Kept),
                (OVERFLOW.to_string(), Capped::Overflow),
                ("/1".to_string(), Capped::Kept),
            ]
        );
        for name in ["a", "b", "c"] {
            assert_eq!(
                agg.cap_service(&ServiceRef::service("", name)).1,
                Capped::Kept
            );
        }
        let (overflow, how) = agg.cap_service(&ServiceRef::service("", "d"));
        assert_eq!(how, Capped::Overflow);
        assert_eq!(overflow, ServiceRef::virtual_node(OVERFLOW));
    }
}
