//! The unclosed minutes as a checkpoint holds them. Copying is cheap and done under the
//! aggregator's lock (the rows' maps cloned, nothing encoded); turning the copy into the
//! checkpoint's form happens outside it. At start, the rows go back into a fresh
//! aggregator as minutes still filling: a minute's late rows too, since a new process
//! writes everything it holds of a minute at its first close, as a replay does.

use meshscope_storage::LatencySketch;
use meshscope_storage::{Metrics, Side};
use serde::{Deserialize, Serialize};

use super::aggregator::Aggregator;
use super::interned_names::NameLists;
use super::minute_rows::MinuteRows;
use super::slot::Slot;

/// The unclosed minutes copied as they are held, to be put in the checkpoint's form
/// outside the lock.
pub struct UnclosedCopy {
    names: NameLists,
    minutes: Vec<(i64, MinuteRows)>,
}

/// The unclosed minutes in a checkpoint: the names by number, and each minute's rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UnclosedRows {
    pub names: NameLists,
    pub minutes: Vec<(i64, Vec<CheckpointRow>)>,
}

/// One row: its slot and side, its counters (in the order of [`Metrics::counter`]: calls,
/// errors, 4xx errors, bytes sent, bytes received, TCP connections, mutual-TLS calls, Apdex
/// satisfied, Apdex tolerating, retries, identity conflicts, the response flag kinds,
/// paired, client only, server only; a checkpoint written before the later ones holds
/// fewer, the rest read as 0), its latency sketch and its overhead sketch in the store's
/// encoding.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointRow {
    pub slot: Slot,
    pub side: Side,
    pub counts: Vec<u64>,
    pub latency: SketchBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<SketchBytes>,
}

/// A sketch's bytes, kept as one CBOR byte string rather than a list of numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SketchBytes(pub Vec<u8>);

impl Serialize for SketchBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SketchBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SketchBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, bytes: &[u8]) -> Result<SketchBytes, E> {
                Ok(SketchBytes(bytes.to_vec()))
            }
            fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<SketchBytes, E> {
                Ok(SketchBytes(bytes))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

impl Aggregator {
    /// A copy of every unclosed minute (those filling and the late rows of those written),
    /// or `None` while a minute is on its way to the files: its rows are in neither place
    /// a checkpoint reads.
    pub fn copy_unclosed(&self) -> Option<UnclosedCopy> {
        let minutes = self.minutes.lock();
        if !minutes.closing.is_empty() {
            return None;
        }
        let mut copied: Vec<(i64, MinuteRows)> = Vec::new();
        for (minute, rows) in minutes.late.iter().chain(&minutes.filling) {
            copied.push((*minute, rows.clone()));
        }
        let names = self.names.copy();
        drop(minutes);
        Some(UnclosedCopy {
            names,
            minutes: copied,
        })
    }

    /// Puts a checkpoint's rows of the minutes `keep` says into this aggregator, as
    /// minutes still filling; returns how many rows. An error when this aggregator already
    /// holds names, or the checkpoint's rows are not what its names say.
    pub fn restore_unclosed(
        &self,
        rows: UnclosedRows,
        keep: impl Fn(i64) -> bool,
    ) -> Result<u64, String> {
        let services = rows.names.services.len();
        let count = |lists: &[Vec<String>], service: u32| {
            lists.get(service as usize).map_or(0, |l| l.len() as u32)
        };
        let known = |slot: &Slot| match *slot {
            Slot::Service(s) => (s as usize) < services,
            Slot::Instance(s, i) => i < count(&rows.names.instances, s),
            Slot::Endpoint(s, e) => e < count(&rows.names.endpoints, s),
            Slot::Edge(a, b, _) => (a as usize) < services && (b as usize) < services,
            Slot::Dependency(s, e, t, f) => {
                e < count(&rows.names.endpoints, s) && f < count(&rows.names.endpoints, t)
            }
            Slot::InstancePair(s, i, t, j) => {
                i < count(&rows.names.instances, s) && j < count(&rows.names.instances, t)
            }
        };
        if rows
            .minutes
            .iter()
            .flat_map(|(_, r)| r)
            .any(|row| !known(&row.slot))
        {
            return Err("a row names a number its names do not hold".into());
        }
        // Everything is read before anything is put in, so that an error leaves this
        // aggregator as it was.
        let mut kept = Vec::new();
        for (minute, list) in rows.minutes {
            if !keep(minute) {
                continue;
            }
            let mut read = Vec::with_capacity(list.len());
            for row in list {
                let latency = LatencySketch::from_bytes(&row.latency.0)
                    .map_err(|error| format!("a row's latency sketch: {error}"))?;
                let overhead = match &row.overhead {
                    Some(bytes) => LatencySketch::from_bytes(&bytes.0)
                        .map_err(|error| format!("a row's overhead sketch: {error}"))?,
                    None => LatencySketch::new(),
                };
                read.push((
                    row.slot,
                    row.side,
                    metrics_of(&row.counts, latency, overhead),
                ));
            }
            kept.push((minute, read));
        }
        if !self.names.restore(rows.names) {
            return Err("the names are not a name table's, or the aggregator holds names".into());
        }
        let mut restored = 0;
        let mut minutes = self.minutes.lock();
        for (minute, read) in kept {
            let held = minutes.filling.entry(minute).or_default();
            for (slot, side, metrics) in read {
                held.row(slot, side).merge(&metrics);
                restored += 1;
            }
        }
        Ok(restored)
    }
}

impl UnclosedCopy {
    /// The copy in the checkpoint's form.
    pub fn into_rows(self) -> UnclosedRows {
        let minutes = self
            .minutes
            .into_iter()
            .map(|(minute, rows)| {
                let list = rows
                    .iter()
                    .map(|((slot, side), m)| CheckpointRow {
                        slot: *slot,
                        side: *side,
                        counts: (0..Metrics::COUNTER_COUNT).map(|i| m.counter(i)).collect(),
                        latency: SketchBytes(m.latency.to_bytes()),
                        overhead: (m.overhead.count() > 0)
                            .then(|| SketchBytes(m.overhead.to_bytes())),
                    })
                    .collect();
                (minute, list)
            })
            .collect();
        UnclosedRows {
            names: self.names,
            minutes,
        }
    }

    /// The number of rows copied.
    pub fn rows(&self) -> usize {
        self.minutes.iter().map(|(_, rows)| rows.len()).sum()
    }
}

fn metrics_of(counts: &[u64], latency: LatencySketch, overhead: LatencySketch) -> Metrics {
    let mut metrics = Metrics {
        latency,
        overhead,
        ..Metrics::default()
    };
    for (i, n) in counts.iter().take(Metrics::COUNTER_COUNT).enumerate() {
        if *n != 0 {
            *metrics.counter_mut(i) = *n;
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use meshscope_storage::{MetricRow, Protocol, ServiceRef};

    use super::super::aggregator::tests::limits;
    use super::*;
    use crate::aggregate::Sample;

    fn sorted(mut rows: Vec<MetricRow>) -> Vec<String> {
        let mut out: Vec<String> = rows
            .drain(..)
            .map(|r| {
                format!(
                    "{} {:?} {:?} calls={} errors={} sent={} p50={:?}",
                    r.minute,
                    r.key,
                    r.side,
                    r.metrics.calls,
                    r.metrics.errors,
                    r.metrics.bytes_sent,
                    r.metrics.latency.quantile(0.5)
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_copy_put_back_reads_as_the_rows_it_was_taken_from_for_the_minutes_kept() {
        let agg = Aggregator::new(limits());
        let (a, _) = agg.service_id(&ServiceRef::service("shop", "a"));
        let (b, _) = agg.service_id(&ServiceRef::service("shop", "b"));
        let (i, _) = agg.instance_id(b, "b-1");
        let (e, _) = agg.endpoint_id(b, "GET /x");
        for (n, minute) in [(3, 60_000), (5, 120_000)] {
            for k in 0..n {
                let sample = Sample {
                    error: k == 0,
                    latency: meshscope_storage::Binned::new(10.0 * k as f64),
                    bytes_sent: 100,
                    ..Sample::default()
                };
                let mut samples = Vec::new();
                for slot in [
                    Slot::Edge(a, b, Protocol::Http),
                    Slot::Instance(b, i),
                    Slot::Endpoint(b, e),
                ] {
                    samples.push((minute, slot, Side::Server, sample));
                }
                agg.record(&samples);
            }
        }
        let copy = agg.copy_unclosed().expect("nothing is closing");
        assert_eq!(copy.rows(), 6);
        let rows = copy.into_rows();
        let encoded = {
            let mut bytes = Vec::new();
            ciborium::into_writer(&rows, &mut bytes).unwrap();
            bytes
        };
        let decoded: UnclosedRows = ciborium::from_reader(encoded.as_slice()).unwrap();

        let fresh = Aggregator::new(limits());
        assert_eq!(fresh.restore_unclosed(decoded.clone(), |_| true), Ok(6));
        assert_eq!(sorted(fresh.snapshot()), sorted(agg.snapshot()));
        // Names go on from where the copy left them.
        assert_eq!(fresh.service_id(&ServiceRef::service("shop", "b")).0, b);

        let only_second = Aggregator::new(limits());
        assert_eq!(
            only_second.restore_unclosed(decoded.clone(), |m| m == 120_000),
            Ok(3)
        );
        let calls: u64 = only_second
            .snapshot()
            .iter()
            .filter(|r| matches!(r.key, meshscope_storage::RowKey::Edge { .. }))
            .map(|r| r.metrics.calls)
            .sum();
        assert_eq!(calls, 5);

        // An aggregator already holding names does not take a checkpoint's.
        assert!(agg.restore_unclosed(decoded, |_| true).is_err());
    }
}
