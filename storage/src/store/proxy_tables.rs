//! Writing and reading the proxy statistics tables: closed minutes go to Parquet files,
//! the live minute, read from the collector's source, is the in-memory part of
//! `proxy_metrics_minute`.

use std::sync::Arc;

use datafusion::logical_expr::col;

use super::Store;
use super::read_planner::{plan_over, timestamp};
use crate::error::Result;
use crate::files::{Granularity, hour_of};
use crate::live_minutes::LiveProxyMinuteSource;
use crate::model::EpochMillis;
use crate::proxy_row::ProxyMetricRow;
use crate::proxy_table::{ProxyFilter, from_batch, merge_series, proxy_table_name, to_batch};
use crate::read::TimeRange;
use crate::schema::MINUTE;

impl Store {
    /// Reads the live part of `proxy_metrics_minute` from `source` from now on, each time
    /// [`Store::publish_live_proxy_minutes`] runs.
    pub fn attach_live_proxy_source(&self, source: Arc<dyn LiveProxyMinuteSource>) {
        *self.inner.proxy_source.write() = Some(source);
    }

    /// Writes proxy statistics rows of closed minutes, all within the hour starting at
    /// `hour`, as one file of `proxy_metrics_minute`. On error nothing of them is written.
    pub async fn append_proxy_hour(
        &self,
        hour: EpochMillis,
        rows: &[ProxyMetricRow],
    ) -> Result<()> {
        debug_assert!(rows.iter().all(|row| hour_of(row.minute) == hour));
        if rows.is_empty() {
            return Ok(());
        }
        let batch = to_batch(rows)?;
        self.append_file(self.proxy_table(Granularity::Minute), hour, &batch)
            .await
    }

    /// Replaces the in-memory part of `proxy_metrics_minute` with the rows the attached
    /// source holds now; without a source it holds nothing.
    pub fn publish_live_proxy_minutes(&self) -> Result<()> {
        let live = self
            .inner
            .proxy_source
            .read()
            .as_ref()
            .map(|source| source.live_proxy_rows())
            .unwrap_or_default();
        let batches = if live.is_empty() {
            Vec::new()
        } else {
            vec![to_batch(&live)?]
        };
        self.proxy_table(Granularity::Minute)
            .set_live_batches(batches);
        Ok(())
    }

    /// Proxy rows of `range` matching `filter`, one per series and bucket, read from the
    /// coarsest tables that cover the window (buckets are hours or days there). Sorted by
    /// proxy, name, cluster and time. A file gone since the last listing is listed again
    /// once (`missing_files`).
    pub async fn proxy_rows(
        &self,
        range: TimeRange,
        filter: &ProxyFilter,
    ) -> Result<Vec<ProxyMetricRow>> {
        self.read_relisting_once(|| self.proxy_rows_as_listed(range, filter))
            .await
    }

    async fn proxy_rows_as_listed(
        &self,
        range: TimeRange,
        filter: &ProxyFilter,
    ) -> Result<Vec<ProxyMetricRow>> {
        let mut rows = Vec::new();
        let segments = plan_over(
            self.proxy_table(Granularity::Hour),
            self.proxy_table(Granularity::Day),
            range,
        );
        for (granularity, segment) in segments {
            let mut df = self
                .session()
                .table(proxy_table_name(granularity).as_str())
                .await?
                .filter(
                    col(MINUTE)
                        .gt_eq(timestamp(segment.start))
                        .and(col(MINUTE).lt(timestamp(segment.end))),
                )?;
            if let Some(predicate) = filter.predicate() {
                df = df.filter(predicate)?;
            }
            for batch in df.collect().await? {
                rows.extend(from_batch(&batch)?);
            }
        }
        // Rows come back in no particular order; a series may hold two rows for a minute
        // when a flush raced the minute's write, and those are merged here. A bucket of
        // 1 ms keeps each row's own minute, hour or day.
        rows.sort_by_key(|r| r.minute);
        Ok(merge_series(rows, 1))
    }
}
