//! Minutes into hours and hours into days. A rollup row keeps one side's figures, but the
//! client side holds only the minutes the server side did not report: the sum of a
//! bucket's two rows is then exactly what the minute reads give after choosing the server
//! over the client per minute, and sketches are merged, never averaged.

use std::collections::BTreeMap;

use crate::model::{EpochMillis, MetricRow, Metrics, RowKey, Side};

/// Rolls minute rows into buckets of `bucket_ms`, choosing per key and minute the server
/// side when it reported.
pub(crate) fn roll_up_minutes(rows: Vec<MetricRow>, bucket_ms: EpochMillis) -> Vec<MetricRow> {
    let mut chosen: BTreeMap<(RowKey, EpochMillis), MetricRow> = BTreeMap::new();
    for row in rows {
        let slot = (row.key.clone(), row.minute);
        match chosen.get_mut(&slot) {
            Some(existing) if existing.side == row.side => existing.metrics.merge(&row.metrics),
            Some(existing) if existing.side == Side::Client => *existing = row,
            Some(_) => {}
            None => {
                chosen.insert(slot, row);
            }
        }
    }
    roll_up(chosen.into_values(), bucket_ms)
}

/// Rolls rows already split into server and client-only figures into coarser buckets.
pub(crate) fn roll_up(
    rows: impl IntoIterator<Item = MetricRow>,
    bucket_ms: EpochMillis,
) -> Vec<MetricRow> {
    let mut buckets: BTreeMap<(RowKey, Side, EpochMillis), Metrics> = BTreeMap::new();
    for row in rows {
        let bucket = row.minute.div_euclid(bucket_ms) * bucket_ms;
        buckets
            .entry((row.key, row.side, bucket))
            .or_default()
            .merge(&row.metrics);
    }
    buckets
        .into_iter()
        .map(|((key, side, minute), metrics)| MetricRow {
            minute,
            key,
            side,
            metrics,
        })
        .collect()
}
