//! The store: the write path the collector uses and the read path the query layer uses.

use std::path::PathBuf;

use crate::error::Result;
use crate::model::{MetricRow, RowKey, Table};
use crate::read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
}

pub struct Store {
    #[allow(dead_code)]
    config: StoreConfig,
}

impl Store {
    pub async fn open(config: StoreConfig) -> Result<Store> {
        Ok(Store { config })
    }

    /// Replaces the snapshot of the minutes still open in the collector, so that reads
    /// see live figures. Rows of a minute later passed to `append_closed` must no longer
    /// appear in the next snapshot.
    pub fn publish_open(&self, _rows: Vec<MetricRow>) {}

    /// Appends rows of minutes that are closed for good.
    pub async fn append_closed(&self, _rows: Vec<MetricRow>) -> Result<()> {
        Ok(())
    }

    /// Per key, figures summed over the window.
    pub async fn aggregate(
        &self,
        _table: Table,
        _range: TimeRange,
        _filter: &KeyFilter,
    ) -> Result<Vec<Aggregate>> {
        Ok(Vec::new())
    }

    /// Per key, one point per minute that has data, in time order.
    pub async fn series(
        &self,
        _table: Table,
        _range: TimeRange,
        _filter: &KeyFilter,
    ) -> Result<Vec<(RowKey, Vec<SeriesPoint>)>> {
        Ok(Vec::new())
    }
}
