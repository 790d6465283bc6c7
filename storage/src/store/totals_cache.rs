//! The caches the read planner keeps: totals of one span, and of a window's spans taken
//! together, keyed down to the files that hold their rows so that an entry is never stale.

use std::collections::HashMap;
use std::sync::Arc;

use crate::files::Granularity;
use crate::model::{EpochMillis, Table};
use crate::totals::SpanTotal;

/// What identifies a span's totals: the table, the span, the key filter, and the very files
/// that hold its rows. A file written, compacted or expired changes the key, so an entry is
/// never stale; spans with rows of live minutes are never cached.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SpanKey {
    pub(crate) table: Table,
    pub(crate) granularity: Granularity,
    pub(crate) start: EpochMillis,
    pub(crate) end: EpochMillis,
    pub(crate) filter: String,
    pub(crate) files: Vec<String>,
}

/// Totals of closed spans, reused by the next read of the same span: a dashboard asks for
/// the same windows every few seconds, and only the live minutes change in between.
/// Bounded by the number of key totals it holds (each carries a latency sketch).
pub(crate) struct TotalsCache<K> {
    entries: parking_lot::Mutex<CachedTotals<K>>,
    max_totals: usize,
}

/// The entries of a `TotalsCache`, under its lock.
struct CachedTotals<K> {
    by_key: HashMap<K, (Arc<Vec<SpanTotal>>, u64)>,
    /// Counts uses: the entry used longest ago has the smallest number.
    uses: u64,
    held: usize,
}

/// About 250 MB of decoded sketches at a few hundred bins each.
pub(crate) const MAX_CACHED_TOTALS: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> TotalsCache<K> {
    /// An empty cache holding at most `max_totals` key totals.
    pub(crate) fn new(max_totals: usize) -> Self {
        Self {
            entries: parking_lot::Mutex::new(CachedTotals {
                by_key: HashMap::new(),
                uses: 0,
                held: 0,
            }),
            max_totals,
        }
    }

    /// The totals kept under `key`, marked as just used.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<Vec<SpanTotal>>> {
        let mut entries = self.entries.lock();
        entries.uses += 1;
        let now = entries.uses;
        let (totals, used) = entries.by_key.get_mut(key)?;
        *used = now;
        Some(totals.clone())
    }

    /// Keeps `totals` under `key`, forgetting the least recently used entries past the
    /// bound; totals larger than the whole bound are not kept.
    pub(crate) fn insert(&self, key: K, totals: Arc<Vec<SpanTotal>>) {
        if totals.len() > self.max_totals {
            return;
        }
        let mut entries = self.entries.lock();
        entries.uses += 1;
        let now = entries.uses;
        entries.held += totals.len();
        if let Some((old, _)) = entries.by_key.insert(key, (totals, now)) {
            entries.held -= old.len();
        }
        while entries.held > self.max_totals {
            let Some(oldest) = entries
                .by_key
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((old, _)) = entries.by_key.remove(&oldest) {
                entries.held -= old.len();
            }
        }
    }
}
