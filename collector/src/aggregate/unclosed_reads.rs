//! Reads of unclosed minutes: what a query sees of the minutes the aggregator still holds,
//! filling or closing, as Arrow batches per table (the store's [`LiveMinuteSource`] source), and
//! a copy of every row held, for tests and benchmarks. Each minute is read once, from its
//! rows or from its batches already encoded, never from both.

use meshscope_storage::{
    EpochMillis, LiveMinuteSource, MetricRow, Metrics, RecordBatch, Side, Table,
};
use meshscope_storage::{RowBuilder, from_batch};

use super::aggregator::Aggregator;
use super::interned_names::NameTable;
use super::minute_rows::service_rows;
use super::slot::{Slot, feeds};

impl Aggregator {
    /// A copy of the rows held (late rows last), for tests and benchmarks.
    pub fn snapshot(&self) -> Vec<MetricRow> {
        let minutes = self.minutes.lock();
        let names = self.names.read();
        let mut rows = Vec::new();
        for (minute, closing) in &minutes.closing {
            push_rows(
                &names,
                *minute,
                closing.rows.iter().flat_map(|s| s.iter()),
                &mut rows,
            );
            for closed in &closing.encoded {
                // Encoded by this aggregator a moment ago: they read back.
                if let Ok(decoded) = from_batch(closed.table, &closed.batch) {
                    rows.extend(decoded);
                }
            }
        }
        for (minute, keys) in minutes.filling.iter().chain(&minutes.late) {
            push_rows(&names, *minute, keys.iter(), &mut rows);
        }
        rows
    }

    /// The rows of `tables` in one filling or closing minute, copied under one hold of the
    /// lock (so that the tables agree) and only for the copy, not for the Arrow encoding;
    /// and, of a closing minute's shards already encoded, their batches of each table.
    fn rows_of(&self, minute: i64, tables: &[Table]) -> MinuteRead {
        let minutes = self.minutes.lock();
        let wanted =
            |((slot, _), _): &(&(Slot, Side), &Metrics)| tables.iter().any(|t| feeds(slot, *t));
        let copy = |(k, m): (&(Slot, Side), &Metrics)| (*k, m.clone());
        if let Some(rows) = minutes.filling.get(&minute) {
            return MinuteRead {
                rows: rows.iter().filter(wanted).map(copy).collect(),
                encoded: Vec::new(),
            };
        }
        let Some(closing) = minutes.closing.get(&minute) else {
            return MinuteRead::default();
        };
        MinuteRead {
            rows: closing
                .rows
                .iter()
                .flat_map(|s| s.iter())
                .filter(wanted)
                .map(copy)
                .collect(),
            encoded: tables
                .iter()
                .map(|table| {
                    closing
                        .encoded
                        .iter()
                        .filter(|b| b.table == *table)
                        .map(|b| b.batch.clone())
                        .collect()
                })
                .collect(),
        }
    }
}

/// The store reads the minutes not yet in its files through this: per table asked, the
/// batches of every filling or closing minute from `from` on (late rows are not read
/// before they are written).
impl LiveMinuteSource for Aggregator {
    fn live_batches(
        &self,
        tables: &[Table],
        from: EpochMillis,
    ) -> meshscope_storage::Result<Vec<Vec<RecordBatch>>> {
        let unclosed: Vec<i64> = {
            let minutes = self.minutes.lock();
            minutes
                .closing
                .keys()
                .chain(minutes.filling.keys())
                .copied()
                .filter(|m| *m >= from)
                .collect()
        };
        let mut builders: Vec<RowBuilder> = tables.iter().map(|t| RowBuilder::new(*t)).collect();
        let mut encoded: Vec<Vec<RecordBatch>> = tables.iter().map(|_| Vec::new()).collect();
        // One minute at a time, so that at most one minute of these tables is copied.
        for minute in unclosed {
            let MinuteRead {
                rows,
                encoded: read,
            } = self.rows_of(minute, tables);
            for (into, batches) in encoded.iter_mut().zip(read) {
                into.extend(batches);
            }
            let names = self.names.read();
            for (table, builder) in tables.iter().zip(&mut builders) {
                if *table == Table::ServiceMinute {
                    let services = service_rows(rows.iter().map(|(key, m)| (key, m)));
                    for ((service, side), metrics) in &services {
                        builder.push(
                            minute,
                            names.key_ref(Slot::Service(*service)),
                            *side,
                            metrics,
                        );
                    }
                } else {
                    for ((slot, side), metrics) in &rows {
                        if feeds(slot, *table) {
                            builder.push(minute, names.key_ref(*slot), *side, metrics);
                        }
                    }
                }
            }
        }
        builders
            .into_iter()
            .zip(encoded)
            .map(|(builder, mut batches)| {
                if !builder.is_empty() {
                    batches.push(builder.finish()?);
                }
                Ok(batches)
            })
            .collect()
    }
}

/// What a read of one minute found: rows not yet encoded, and per table asked, the
/// batches of a closing minute's shards already encoded.
#[derive(Default)]
struct MinuteRead {
    rows: Vec<((Slot, Side), Metrics)>,
    encoded: Vec<Vec<RecordBatch>>,
}

/// One minute's rows with their names, and each service's row made from its instances'.
fn push_rows<'a>(
    names: &NameTable,
    minute: i64,
    keys: impl Iterator<Item = (&'a (Slot, Side), &'a Metrics)> + Clone,
    rows: &mut Vec<MetricRow>,
) {
    let services = service_rows(keys.clone());
    for (&(slot, side), metrics) in keys {
        rows.push(MetricRow {
            minute,
            key: names.key(slot),
            side,
            metrics: metrics.clone(),
        });
    }
    for ((service, side), metrics) in services {
        rows.push(MetricRow {
            minute,
            key: names.key(Slot::Service(service)),
            side,
            metrics,
        });
    }
}

#[cfg(test)]
mod tests {
    use meshscope_storage::Binned;
    use meshscope_storage::{Protocol, RowKey, ServiceRef};

    use super::*;
    use crate::aggregate::aggregator::Limits;
    use crate::aggregate::aggregator::tests::{decoded, limits};
    use crate::aggregate::sample::Sample;

    #[test]
    fn a_service_row_is_the_sum_of_its_instance_rows() {
        let agg = Aggregator::new(limits());
        let (a, _) = agg.service_id(&ServiceRef::service("", "a"));
        let (one, _) = agg.instance_id(a, "10.0.0.1:80");
        let (two, _) = agg.instance_id(a, "10.0.0.2:80");
        let slow = Sample {
            latency: Binned::new(300.0),
            error: true,
            ..Default::default()
        };
        let fast = Sample {
            latency: Binned::new(3.0),
            ..Default::default()
        };
        agg.record(&[
            (0, Slot::Instance(a, one), Side::Server, fast),
            (0, Slot::Instance(a, one), Side::Server, fast),
            (0, Slot::Instance(a, two), Side::Server, slow),
            (0, Slot::Instance(a, two), Side::Client, fast),
            (60_000, Slot::Instance(a, two), Side::Client, fast),
        ]);
        // What a read sees before the minute closes: the same rows, straight from here.
        let unclosed = agg.live_batches(&[Table::ServiceMinute], 0).unwrap();
        let read = meshscope_storage::from_batch(Table::ServiceMinute, &unclosed[0][0]).unwrap();
        let calls = |minute: i64, side: Side| {
            read.iter()
                .find(|r| r.minute == minute && r.side == side)
                .map(|r| (r.metrics.calls, r.metrics.errors, r.metrics.latency.count()))
        };
        assert_eq!(read.len(), 3);
        assert_eq!(calls(0, Side::Server), Some((3, 1, 3)));
        assert_eq!(calls(0, Side::Client), Some((1, 0, 1)));
        assert_eq!(calls(60_000, Side::Client), Some((1, 0, 1)));
        let later = agg.live_batches(&[Table::InstanceMinute], 60_000).unwrap();
        assert_eq!(
            later[0][0].num_rows(),
            1,
            "minutes before `from` are left out"
        );
        let rows = decoded(&agg.close_before(60_000).unwrap());
        let service = |side| {
            rows.iter()
                .find(|r| r.side == side && matches!(r.key, RowKey::Service { .. }))
                .map(|r| &r.metrics)
                .unwrap()
        };
        assert_eq!(rows.len(), 5, "three instance rows and two service rows");
        let server = service(Side::Server);
        assert_eq!((server.calls, server.errors), (3, 1));
        assert_eq!(server.latency.count(), 3);
        assert!(server.latency.quantile(1.0).unwrap() > 290.0);
        assert_eq!(service(Side::Client).calls, 1);
    }

    /// A row as a line of key and counts.
    fn line(r: &MetricRow) -> String {
        let m = &r.metrics;
        format!(
            "{:?} {:?} {} {} {}",
            r.key,
            r.side,
            m.calls,
            m.errors,
            m.latency.count()
        )
    }

    /// Every row of a minute, by table, as reads see it: sorted lines of key and counts.
    fn read_all(agg: &Aggregator) -> Vec<Vec<String>> {
        let unclosed = agg.live_batches(&Table::ALL, 0).unwrap();
        unclosed
            .iter()
            .zip(Table::ALL)
            .map(|(batches, table)| {
                let mut lines: Vec<String> = batches
                    .iter()
                    .flat_map(|b| from_batch(table, b).unwrap())
                    .map(|r| line(&r))
                    .collect();
                lines.sort();
                lines
            })
            .collect()
    }

    #[test]
    fn a_minute_read_halfway_through_its_encoding_gives_every_row_once() {
        let agg = Aggregator::new(Limits {
            max_endpoints_per_service: 100,
            max_instances_per_service: 10,
            max_services: 100,
            apdex_threshold_ms: 100.0,
        });
        let mut samples = Vec::new();
        for s in 0..40 {
            let (service, _) = agg.service_id(&ServiceRef::service("ns", format!("svc-{s}")));
            let (next, _) = agg.service_id(&ServiceRef::service("ns", format!("svc-{}", s + 1)));
            for i in 0..3 {
                let (instance, _) = agg.instance_id(service, &format!("10.0.{s}.{i}:80"));
                let (endpoint, _) = agg.endpoint_id(service, &format!("/api/{i}"));
                let sample = Sample {
                    latency: Binned::new(f64::from(s * 3 + i)),
                    error: i == 2,
                    ..Sample::default()
                };
                for _ in 0..=i {
                    samples.push((0, Slot::Instance(service, instance), Side::Server, sample));
                    samples.push((0, Slot::Endpoint(service, endpoint), Side::Server, sample));
                    samples.push((
                        0,
                        Slot::Edge(service, next, Protocol::Http),
                        Side::Client,
                        sample,
                    ));
                }
            }
        }
        agg.record(&samples);
        let before = read_all(&agg);
        assert_eq!(before[0].len(), 40, "a service row each");
        assert_eq!(before[1].len(), 120, "three instance rows each");

        let (mut written, _) = agg.begin_closing(60_000, 60_000);
        let (minute, shards) = written.pop().unwrap();
        assert!(shards.len() > 4, "40 services spread over shards");
        let half = shards.len() / 2;
        for shard in shards.into_iter().take(half) {
            agg.encode_shard(minute, shard).unwrap();
        }
        let halfway = read_all(&agg);
        assert_eq!(
            halfway, before,
            "half rows, half batches: the same rows, once each"
        );
        assert_eq!(
            agg.snapshot().len(),
            before.iter().map(Vec::len).sum::<usize>()
        );
        // A minute not yet in the store's files when the server stops is written whole,
        // the encoded shards and the rest.
        let batches = agg.drain().unwrap();
        let mut drained: Vec<String> = decoded(&batches)
            .iter()
            .filter(|r| matches!(r.key, RowKey::Service { .. }))
            .map(line)
            .collect();
        drained.sort();
        assert_eq!(drained, before[0]);
        assert_eq!(
            decoded(&batches).len(),
            before.iter().map(Vec::len).sum::<usize>()
        );
    }
}
