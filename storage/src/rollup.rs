//! Minutes into hours and hours into days. A rollup row keeps one side's figures, but the
//! client side holds only the minutes the server side did not report: the sum of a
//! bucket's two rows is then exactly what the minute reads give after choosing the server
//! over the client per minute, and sketches are merged, never averaged.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::model::{EpochMillis, MetricRow, Metrics, RowKey, Side};

/// Rows added into buckets of one span: one row per key, side and bucket is all it holds,
/// however many rows come in.
pub(crate) struct Buckets {
    bucket_ms: EpochMillis,
    rows: BTreeMap<(RowKey, Side, EpochMillis), Metrics>,
}

impl Buckets {
    pub(crate) fn new(bucket_ms: EpochMillis) -> Buckets {
        Buckets {
            bucket_ms,
            rows: BTreeMap::new(),
        }
    }

    /// Adds a row already split into server and client-only figures.
    pub(crate) fn add(&mut self, row: MetricRow) {
        let bucket = row.minute.div_euclid(self.bucket_ms) * self.bucket_ms;
        self.rows
            .entry((row.key, row.side, bucket))
            .or_default()
            .merge(&row.metrics);
    }

    pub(crate) fn into_rows(self) -> Vec<MetricRow> {
        self.rows
            .into_iter()
            .map(|((key, side, minute), metrics)| MetricRow {
                minute,
                key,
                side,
                metrics,
            })
            .collect()
    }
}

/// A key as 64 bits, to share keys out among the passes of a fold.
pub(crate) fn key_hash(key: &RowKey) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// A key's minute as 64 bits, to remember which minutes a server side reported without
/// holding a copy of every key. Two of an hour's few hundred thousand keys sharing a
/// value is about a one in a hundred million chance, and would drop one client minute.
pub(crate) fn minute_hash(key: &RowKey, minute: EpochMillis) -> u64 {
    // A fixed hasher: the value only lives through one fold.
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    minute.hash(&mut hasher);
    hasher.finish()
}
