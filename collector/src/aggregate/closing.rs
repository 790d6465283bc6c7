//! Closing minutes: a minute due to be written is taken out of the filling minutes, encoded
//! as Arrow batches per table shard by shard, and handed to the store; late rows follow
//! when their allowance has passed. At shutdown everything held is encoded at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshscope_storage::Table;
use meshscope_storage::hour_of;
use meshscope_storage::{ClosedBatch, RowBuilder};

use super::aggregator::{Aggregator, ClosingMinute};
use super::interned_names::NameTable;
use super::minute_rows::{MinuteRows, Shard, service_rows};
use super::slot::{Slot, slot_table};

/// A closing minute's shards of rows, to encode.
pub(super) type MinuteShards = (i64, Vec<Arc<Shard>>);

impl Aggregator {
    /// Hands over, encoded for the store, every minute before `first_unwritten` and the
    /// late rows of minutes before `first_unclosed`; entries for minutes before
    /// `first_unclosed` are refused from then on. The written minutes stay readable until
    /// `finish_closing`, which the caller calls once the store holds them (or has failed
    /// to), so that no read misses them in between. The encoding runs outside the lock
    /// that entries wait on, and straight from the filling rows, a shard at a time.
    pub fn close(
        &self,
        first_unwritten: i64,
        first_unclosed: i64,
    ) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        self.close_after(first_unwritten, first_unclosed, || ())
    }

    /// `close`, calling `switched` once the minutes no longer take entries as main rows
    /// (or at all) and before they are encoded.
    pub fn close_after(
        &self,
        first_unwritten: i64,
        first_unclosed: i64,
        switched: impl FnOnce(),
    ) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        let (written, late) = self.begin_closing(first_unwritten, first_unclosed);
        switched();
        let mut batches = Vec::new();
        for (minute, shards) in written {
            for shard in shards {
                batches.extend(self.encode_shard(minute, shard)?);
            }
        }
        let names = self.names.read();
        for (minute, rows) in late {
            minute_batches(&names, minute, rows.shards(), &mut batches)?;
        }
        Ok(batches)
    }

    /// Moves the minutes to write into `closing` as shards of rows, and takes the late
    /// rows whose allowance has passed.
    pub(super) fn begin_closing(
        &self,
        first_unwritten: i64,
        first_unclosed: i64,
    ) -> (Vec<MinuteShards>, BTreeMap<i64, MinuteRows>) {
        let first_unwritten = first_unwritten.max(first_unclosed);
        let mut guard = self.minutes.lock();
        let minutes = &mut *guard;
        let keep = minutes.filling.split_off(&first_unwritten);
        let written = std::mem::replace(&mut minutes.filling, keep);
        minutes.written_before = minutes.written_before.max(first_unwritten);
        let keep = minutes.late.split_off(&first_unclosed);
        let late = std::mem::replace(&mut minutes.late, keep);
        minutes.closed_before = minutes.closed_before.max(first_unclosed);
        let written = written
            .into_iter()
            .map(|(minute, rows)| {
                let shards: Vec<Arc<Shard>> = rows
                    .into_shards()
                    .into_iter()
                    .filter(|shard| !shard.is_empty())
                    .map(Arc::new)
                    .collect();
                let closing = ClosingMinute {
                    rows: shards.clone(),
                    encoded: Vec::new(),
                };
                minutes.closing.insert(minute, closing);
                (minute, shards)
            })
            .collect();
        (written, late)
    }

    /// Encodes one shard of a closing minute; from then on reads find it as batches, and
    /// its rows are freed.
    pub(super) fn encode_shard(
        &self,
        minute: i64,
        shard: Arc<Shard>,
    ) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        let mut encoded = Vec::new();
        minute_batches(&self.names.read(), minute, [&*shard], &mut encoded)?;
        let done = {
            let mut minutes = self.minutes.lock();
            let closing = minutes.closing.entry(minute).or_default();
            let at = closing.rows.iter().position(|s| Arc::ptr_eq(s, &shard));
            closing.encoded.extend(encoded.iter().cloned());
            at.map(|at| closing.rows.swap_remove(at))
        };
        // The shard's last holders: freed here, outside the lock.
        drop((done, shard));
        Ok(encoded)
    }

    /// `close` with nothing written early: every minute is held until `first_unclosed`.
    pub fn close_before(&self, first_unclosed: i64) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        self.close(first_unclosed, first_unclosed)
    }

    /// Forgets the minutes `close` handed out.
    pub fn finish_closing(&self) {
        let closing = std::mem::take(&mut self.minutes.lock().closing);
        // Freed outside the lock: dropping a large minute takes a while.
        drop(closing);
    }

    /// Forgets the closing minutes `forget` names (their rows dropped for want of a place
    /// to write them): reads no longer show them.
    pub fn forget_closing(&self, forget: impl Fn(i64) -> bool) {
        let forgotten: Vec<ClosingMinute> = {
            let mut minutes = self.minutes.lock();
            let doomed: Vec<i64> = minutes
                .closing
                .keys()
                .copied()
                .filter(|m| forget(*m))
                .collect();
            doomed
                .into_iter()
                .filter_map(|m| minutes.closing.remove(&m))
                .collect()
        };
        drop(forgotten);
    }

    /// Closes everything, for shutdown: every minute held, encoded.
    pub fn drain(&self) -> meshscope_storage::Result<Vec<ClosedBatch>> {
        let (closing, filling, late) = {
            let mut minutes = self.minutes.lock();
            (
                std::mem::take(&mut minutes.closing),
                std::mem::take(&mut minutes.filling),
                std::mem::take(&mut minutes.late),
            )
        };
        let names = self.names.read();
        let mut batches = Vec::new();
        for (minute, closing) in closing {
            batches.extend(closing.encoded);
            let shards: Vec<&Shard> = closing.rows.iter().map(|s| &**s).collect();
            minute_batches(&names, minute, shards, &mut batches)?;
        }
        for (minute, rows) in filling.iter().chain(&late) {
            minute_batches(&names, *minute, rows.shards(), &mut batches)?;
        }
        Ok(batches)
    }
}

/// Rows of one minute, from whole shards, encoded per table, each service's row made from
/// its instances'. A service's instances share a shard, so any set of whole shards makes
/// whole service rows.
fn minute_batches<'a>(
    names: &NameTable,
    minute: i64,
    shards: impl IntoIterator<Item = &'a Shard> + Clone,
    out: &mut Vec<ClosedBatch>,
) -> meshscope_storage::Result<()> {
    let keys = || shards.clone().into_iter().flatten();
    let builder_of = |table: Table| Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
    let services = service_rows(keys());
    let mut rows = [0usize; Table::ALL.len()];
    for ((slot, _), _) in keys() {
        rows[builder_of(slot_table(slot))] += 1;
    }
    rows[builder_of(Table::ServiceMinute)] += services.len();
    let mut builders =
        Table::ALL.map(|table| RowBuilder::with_capacity(table, rows[builder_of(table)]));
    for (&(slot, side), metrics) in keys() {
        let key = names.key_ref(slot);
        builders[builder_of(key.table())].push(minute, key, side, metrics);
    }
    let service_builder = &mut builders[builder_of(Table::ServiceMinute)];
    for ((service, side), metrics) in services {
        service_builder.push(
            minute,
            names.key_ref(Slot::Service(service)),
            side,
            &metrics,
        );
    }
    for (table, builder) in Table::ALL.into_iter().zip(builders) {
        if !builder.is_empty() {
            out.push(ClosedBatch {
                table,
                hour: hour_of(minute),
                batch: builder.finish()?,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use meshscope_storage::Binned;
    use meshscope_storage::{LiveMinuteSource, Protocol, RecordBatch, RowKey, ServiceRef, Side};

    use super::*;
    use crate::aggregate::aggregator::Recorded;
    use crate::aggregate::aggregator::tests::{decoded, limits};
    use crate::aggregate::sample::Sample;

    #[test]
    fn minutes_close_in_order_and_late_rows_are_refused() {
        let agg = Aggregator::new(limits());
        let (a, _) = agg.service_id(&ServiceRef::service("", "a"));
        let key = Slot::Service(a);
        let sample = Sample::default();
        assert_eq!(
            agg.record(&[
                (0, key, Side::Server, sample),
                (60_000, key, Side::Server, sample),
                (60_000, key, Side::Client, sample),
            ]),
            Recorded::default()
        );
        assert_eq!(
            agg.unclosed_row_count(),
            3,
            "one row in minute 0, two in minute 1"
        );
        let closed = decoded(&agg.close_before(60_000).unwrap());
        assert_eq!(
            agg.unclosed_row_count(),
            2,
            "a closing minute no longer counts as filling"
        );
        assert_eq!(
            agg.live_batches(&[Table::ServiceMinute], 60_000).unwrap()[0].len(),
            0,
            "unclosed service rows are made from instance rows only"
        );
        let closing = agg.live_batches(&[Table::ServiceMinute], 0).unwrap();
        assert_eq!(
            closing[0].iter().map(RecordBatch::num_rows).sum::<usize>(),
            1,
            "a closing minute is read from the batches on their way to the store"
        );
        assert_eq!(
            agg.snapshot().len(),
            3,
            "a closing minute stays readable until the store has it"
        );
        agg.finish_closing();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].minute, 0);
        assert_eq!(
            closed[0].key,
            RowKey::Service {
                service: ServiceRef::service("", "a")
            }
        );
        // Minute 0 is closed: a late row for it is refused, minute 1 still takes rows.
        assert_eq!(
            agg.record(&[
                (0, key, Side::Server, sample),
                (60_000, key, Side::Server, sample),
            ]),
            Recorded {
                too_late: 1,
                late: 0
            }
        );
        let unclosed = agg.snapshot();
        assert_eq!(unclosed.len(), 2, "server and client rows of minute 1");
        let server = unclosed.iter().find(|r| r.side == Side::Server).unwrap();
        assert_eq!(server.metrics.calls, 2);
        assert_eq!(decoded(&agg.drain().unwrap()).len(), 2);
        assert!(agg.snapshot().is_empty());
    }

    #[test]
    fn entries_for_a_written_minute_become_its_late_rows() {
        let agg = Aggregator::new(limits());
        let (a, _) = agg.service_id(&ServiceRef::service("", "a"));
        let (b, _) = agg.service_id(&ServiceRef::service("", "b"));
        let edge = Slot::Edge(a, b, Protocol::Http);
        let slow = Sample {
            latency: Binned::new(900.0),
            error: true,
            ..Sample::default()
        };
        agg.record(&[(0, edge, Side::Server, Sample::default())]);
        agg.record(&[(60_000, edge, Side::Server, Sample::default())]);
        // Minute 0 is written, minute 1 not yet; nothing is closed for good.
        let written = decoded(&agg.close(60_000, 0).unwrap());
        agg.finish_closing();
        assert_eq!(written.len(), 1);
        assert_eq!((written[0].minute, written[0].metrics.calls), (0, 1));
        assert_eq!(agg.unclosed_row_count(), 1, "only minute 1 is held");
        assert_eq!(
            agg.record(&[
                (0, edge, Side::Server, slow),
                (0, edge, Side::Server, slow),
                (60_000, edge, Side::Server, Sample::default()),
            ]),
            Recorded {
                too_late: 0,
                late: 2
            }
        );
        assert_eq!(
            agg.live_batches(&[Table::EdgeMinute], 0).unwrap()[0][0].num_rows(),
            1,
            "late rows are not read before they are written"
        );
        // Writing minute 1 leaves minute 0's late rows alone until its allowance passes.
        let written = decoded(&agg.close(120_000, 0).unwrap());
        agg.finish_closing();
        assert_eq!(written.len(), 1);
        assert_eq!((written[0].minute, written[0].metrics.calls), (60_000, 2));
        let late = decoded(&agg.close(120_000, 60_000).unwrap());
        assert_eq!(late.len(), 1);
        let row = &late[0];
        assert_eq!((row.minute, row.side), (0, Side::Server));
        assert_eq!((row.metrics.calls, row.metrics.errors), (2, 2));
        assert_eq!(row.metrics.latency.count(), 2);
        assert_eq!(agg.unclosed_row_count(), 0);
        assert_eq!(
            agg.record(&[(0, edge, Side::Server, slow)]),
            Recorded {
                too_late: 1,
                late: 0
            },
            "past the allowance, minute 0 is closed for good"
        );
    }
}
