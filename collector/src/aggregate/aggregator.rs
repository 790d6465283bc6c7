//! The aggregator and the minutes it holds: each minute's rows fill here until the minute
//! is due to be written; samples for a minute already written fill its late rows. Closing
//! minutes is in `closing.rs`, reading unclosed minutes in `unclosed_reads.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshscope_storage::ClosedBatch;
use meshscope_storage::{ServiceRef, Side};
use parking_lot::Mutex;

use super::interned_names::{Capped, InternedNames, NameCaps};
use super::minute_rows::{MinuteRows, Shard};
use super::sample::{PairFigures, Sample, SettledCall, add_pair, add_sample, add_settled};
use super::slot::{ServiceId, Slot};

/// Caps that keep the key space bounded whatever the proxies send, and the Apdex
/// threshold every sample is classed by.
pub struct Limits {
    pub max_endpoints_per_service: usize,
    pub max_instances_per_service: usize,
    pub max_services: usize,
    pub apdex_threshold_ms: f64,
}

/// A minute on its way to the store's files, encoded outside the lock shard by shard.
/// Each shard is read from its rows until its batches exist, then from them, so that its
/// rows are freed at once rather than after the write: holding a whole minute as rows and
/// as batches at once was the peak of memory.
#[derive(Default)]
pub(super) struct ClosingMinute {
    /// The shards not yet encoded.
    pub(super) rows: Vec<Arc<Shard>>,
    /// The batches of the shards encoded, on their way to the store.
    pub(super) encoded: Vec<ClosedBatch>,
}

/// Every minute the aggregator holds, by its start in epoch milliseconds, and the two
/// boundaries that say where a new sample goes.
#[derive(Default)]
pub(super) struct HeldMinutes {
    /// Minutes still filling: not yet written.
    pub(super) filling: BTreeMap<i64, MinuteRows>,
    /// Entries for minutes already written, not yet read: kept until the late allowance
    /// has passed, then written beside the minute's first rows.
    pub(super) late: BTreeMap<i64, MinuteRows>,
    /// Minutes before this one are written: their entries go to `late`.
    pub(super) written_before: i64,
    /// Minutes handed to the store but not yet in its files: still read, no longer added to.
    pub(super) closing: BTreeMap<i64, ClosingMinute>,
    /// Minutes before this one are closed: entries for them are too late.
    pub(super) closed_before: i64,
}

/// Per-minute aggregation: the rows of every unclosed minute, keyed by interned names,
/// and the minutes on their way to the store.
pub struct Aggregator {
    pub(super) minutes: Mutex<HeldMinutes>,
    pub(super) names: InternedNames,
    pub(super) limits: Limits,
}

/// What `Aggregator::record` did with samples it did not simply add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// In minutes closed for good: not added.
    pub too_late: usize,
    /// In minutes already written: added to their late rows.
    pub late: usize,
}

impl Aggregator {
    /// An aggregator holding nothing, with these caps.
    pub fn new(limits: Limits) -> Aggregator {
        Aggregator {
            minutes: Mutex::new(HeldMinutes::default()),
            names: InternedNames::new(NameCaps {
                max_services: limits.max_services,
                max_instances_per_service: limits.max_instances_per_service,
                max_endpoints_per_service: limits.max_endpoints_per_service,
            }),
            limits,
        }
    }

    /// The latency in milliseconds up to which a call counts as satisfying.
    pub fn apdex_threshold_ms(&self) -> f64 {
        self.limits.apdex_threshold_ms
    }

    /// The service to record under: itself while under the cap, else the virtual
    /// overflow node, so a flood of made-up peer names cannot grow memory.
    #[inline]
    pub fn service_id(&self, service: &ServiceRef) -> (ServiceId, Capped) {
        self.names.service_id(service)
    }

    /// The endpoint's number under `service`, or the overflow bucket's past the cap.
    #[inline]
    pub fn endpoint_id(&self, service: ServiceId, endpoint: &str) -> (u32, Capped) {
        self.names.endpoint_id(service, endpoint)
    }

    /// The instance's number under `service`, or the overflow bucket's past the cap.
    #[inline]
    pub fn instance_id(&self, service: ServiceId, instance: &str) -> (u32, Capped) {
        self.names.instance_id(service, instance)
    }

    /// The service behind an id.
    #[inline]
    pub fn service(&self, id: ServiceId) -> ServiceRef {
        self.names.service(id)
    }

    /// Adds samples; says how many fell in minutes already closed (they are not added) and
    /// how many in minutes already written (added to their late rows).
    pub fn record(&self, samples: &[(i64, Slot, Side, Sample)]) -> Recorded {
        let threshold = self.limits.apdex_threshold_ms;
        self.record_with(samples, |row, sample| add_sample(row, sample, threshold))
    }

    /// Adds settled requests' pairing figures, as [`Aggregator::record`] adds samples.
    pub fn record_pairs(&self, pairs: &[(i64, Slot, Side, PairFigures)]) -> Recorded {
        self.record_with(pairs, add_pair)
    }

    /// Adds settled entries' calls with their pairing figures, as [`Aggregator::record`]
    /// adds samples.
    pub fn record_settled(&self, calls: &[(i64, Slot, Side, SettledCall)]) -> Recorded {
        let threshold = self.limits.apdex_threshold_ms;
        self.record_with(calls, |row, call| add_settled(row, call, threshold))
    }

    fn record_with<T>(
        &self,
        samples: &[(i64, Slot, Side, T)],
        add: impl Fn(&mut meshscope_storage::Metrics, &T),
    ) -> Recorded {
        let mut guard = self.minutes.lock();
        let minutes = &mut *guard;
        let mut recorded = Recorded::default();
        // Samples of one message nearly all fall in one minute: find it once per run.
        for run in samples.chunk_by(|a, b| a.0 == b.0) {
            let minute = run[0].0;
            if minute < minutes.closed_before {
                recorded.too_late += run.len();
                continue;
            }
            let rows = if minute < minutes.written_before {
                recorded.late += run.len();
                minutes.late.entry(minute).or_default()
            } else {
                minutes.filling.entry(minute).or_default()
            };
            for (_, slot, side, sample) in run {
                add(rows.row(*slot, *side), sample);
            }
        }
        recorded
    }

    /// Rows held in unclosed minutes: the minutes not yet written and the late rows.
    pub fn unclosed_row_count(&self) -> usize {
        let minutes = self.minutes.lock();
        minutes
            .filling
            .values()
            .chain(minutes.late.values())
            .map(MinuteRows::len)
            .sum()
    }

    /// The first minute that still accepts entries.
    pub fn closed_before(&self) -> i64 {
        self.minutes.lock().closed_before
    }
}

#[cfg(test)]
pub(super) mod tests {
    use meshscope_storage::{MetricRow, RowKey};

    use super::*;
    use crate::aggregate::interned_names::OVERFLOW;

    /// What the store would read back from closed batches.
    pub(in crate::aggregate) fn decoded(batches: &[ClosedBatch]) -> Vec<MetricRow> {
        batches
            .iter()
            .flat_map(|b| meshscope_storage::from_batch(b.table, &b.batch).unwrap())
            .collect()
    }

    /// Small caps: two endpoints and two instances per service, three services.
    pub(in crate::aggregate) fn limits() -> Limits {
        Limits {
            max_endpoints_per_service: 2,
            max_instances_per_service: 2,
            max_services: 3,
            apdex_threshold_ms: 100.0,
        }
    }

    #[test]
    fn caps_fold_the_rest_into_overflow() {
        let agg = Aggregator::new(limits());
        let (svc, _) = agg.service_id(&ServiceRef::service("", "a"));
        let ids: Vec<_> = ["/1", "/2", "/3", "/4", "/1"]
            .iter()
            .map(|e| agg.endpoint_id(svc, e))
            .collect();
        assert_eq!(
            ids,
            vec![
                (0, Capped::Kept),
                (1, Capped::Kept),
                (2, Capped::Overflow),
                (2, Capped::Overflow),
                (0, Capped::Kept),
            ]
        );
        agg.record(&[(0, Slot::Endpoint(svc, 2), Side::Server, Sample::default())]);
        assert_eq!(
            agg.snapshot()[0].key,
            RowKey::Endpoint {
                service: ServiceRef::service("", "a"),
                endpoint: OVERFLOW.to_string()
            }
        );
        for name in ["b", "c"] {
            assert_eq!(
                agg.service_id(&ServiceRef::service("", name)).1,
                Capped::Kept
            );
        }
        let (overflow, how) = agg.service_id(&ServiceRef::service("", "d"));
        assert_eq!(how, Capped::Overflow);
        assert_eq!(agg.service(overflow), ServiceRef::virtual_node(OVERFLOW));
        // Names under the cap keep their numbers.
        assert_eq!(
            agg.service_id(&ServiceRef::service("", "a")),
            (svc, Capped::Kept)
        );
    }
}
