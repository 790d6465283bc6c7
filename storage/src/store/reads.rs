//! The readers' boundary, beside `aggregate` and `series` (in `read_planner`),
//! `proxy_rows` (in `proxy_tables`) and `tables` and `sql` (in `sql`): what the query
//! crate asks of the store to learn when new minutes land and what is kept for it.

use super::Store;
use crate::model::EpochMillis;
use crate::sliding::KeptSpan;

impl Store {
    /// Changes each time closed minutes are written; holds the end of the newest one.
    pub fn minutes_written(&self) -> tokio::sync::watch::Receiver<EpochMillis> {
        self.inner.written.subscribe()
    }

    /// Whether no minute table holds a file yet: a new store, with nothing to read ahead.
    pub fn is_empty(&self) -> bool {
        !self.inner.tables.values().any(|stored| stored.has_files())
    }

    /// The minute spans kept moving, for `/metrics` and for tests.
    pub fn moving_spans(&self) -> Vec<KeptSpan> {
        self.inner.moving.kept()
    }

    /// The proxies that report their own statistics.
    pub fn proxy_registry(&self) -> &crate::proxy_registry::ProxyRegistry {
        &self.inner.proxy_registry
    }
}
