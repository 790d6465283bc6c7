//! The store's own figures for `/metrics`: what it holds on disk, how its maintenance goes,
//! and when it last wrote.

use super::Store;
use crate::model::EpochMillis;

/// Counter of maintenance passes run (each compaction, rollup and retention sweep).
pub const MAINTENANCE_PASSES_METRIC: &str = "meshscope_store_maintenance_passes_total";
/// Counter of maintenance passes that failed (the pass is tried again on the next one).
pub const MAINTENANCE_FAILURES_METRIC: &str = "meshscope_store_maintenance_failures_total";

/// What the store holds and when it last wrote, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// Parquet files the store reads, over every table and granularity.
    pub files: usize,
    /// Block summaries that first folds folded instead of the blocks' minutes since the
    /// store was opened: first reads of windows, and the upkeep's of the trailing hour.
    pub block_summaries_read: u64,
    /// Trailing-hour summaries that first folds folded instead of blocks and minutes
    /// since the store was opened: first reads of windows, and the upkeep's of the next
    /// trailing hour.
    pub trailing_summaries_read: u64,
    /// Their size on disk, in bytes.
    pub bytes: u64,
    /// When a file write or replacement last succeeded (epoch milliseconds by the store's
    /// clock); `None` before the first in this process.
    pub last_write_ms: Option<EpochMillis>,
}

impl Store {
    /// The files the store reads and when it last wrote; cheap enough for every scrape.
    pub fn figures(&self) -> StoreFigures {
        let inner = &self.inner;
        let tables = inner
            .tables
            .values()
            .chain(inner.proxy_tables.values())
            .chain(inner.block_tables.values())
            .chain(inner.trailing_tables.values())
            .chain(std::iter::once(&inner.access_log));
        let mut figures = StoreFigures {
            last_write_ms: inner.files.health().last_success_ms(),
            block_summaries_read: inner
                .block_summaries_read
                .load(std::sync::atomic::Ordering::Relaxed),
            trailing_summaries_read: inner
                .trailing_summaries_read
                .load(std::sync::atomic::Ordering::Relaxed),
            ..StoreFigures::default()
        };
        for table in tables {
            for files in table.partitions().values() {
                figures.files += files.len();
                figures.bytes += files.iter().map(|file| file.size).sum::<u64>();
            }
        }
        figures
    }
}

/// Makes the maintenance counters appear in `/metrics` at 0 before the first pass.
pub(crate) fn register_maintenance_counters() {
    metrics::counter!(MAINTENANCE_PASSES_METRIC).increment(0);
    metrics::counter!(MAINTENANCE_FAILURES_METRIC).increment(0);
}

/// Counts one maintenance pass and whether it failed.
pub(crate) fn count_maintenance_pass(failed: bool) {
    metrics::counter!(MAINTENANCE_PASSES_METRIC).increment(1);
    if failed {
        metrics::counter!(MAINTENANCE_FAILURES_METRIC).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::clock::ManualClock;
    use crate::config::StoreConfig;
    use crate::model::{MINUTE_MS, MetricRow, Metrics, RowKey, ServiceRef, Side};
    use crate::store::Store;

    /// The Parquet files under `dir` and their total size, as the file system tells it.
    fn on_disk(dir: &std::path::Path) -> (usize, u64) {
        let mut found = (0, 0);
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                let (files, bytes) = on_disk(&path);
                found.0 += files;
                found.1 += bytes;
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.0 += 1;
                found.1 += entry.metadata().unwrap().len();
            }
        }
        found
    }

    #[tokio::test]
    async fn figures_count_the_files_on_disk_and_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_795_573_845_000;
        let config = StoreConfig {
            clock: Arc::new(ManualClock::new(now)).into(),
            ..StoreConfig::in_dir(dir.path())
        };
        let store = Store::open(config).await.unwrap();
        let empty = store.figures();
        assert_eq!(
            (empty.files, empty.bytes, empty.last_write_ms),
            (0, 0, None)
        );

        let row = |name: &str| MetricRow {
            minute: now - now % MINUTE_MS - MINUTE_MS,
            key: RowKey::Service {
                service: ServiceRef::service("shop", name),
            },
            side: Side::Server,
            metrics: Metrics {
                calls: 3,
                ..Metrics::default()
            },
        };
        store
            .append_closed(vec![row("frontend"), row("backend")])
            .await
            .unwrap();
        let figures = store.figures();
        assert!(figures.files > 0);
        assert_eq!((figures.files, figures.bytes), on_disk(dir.path()));
        assert_eq!(figures.last_write_ms, Some(now));
    }
}
