//! Writing and reading the proxy statistics tables: closed minutes go to Parquet files,
//! the live minute is the in-memory part of `proxy_metrics_minute`.

use std::collections::BTreeMap;

use datafusion::logical_expr::col;

use super::Store;
use super::read_planner::{plan_over, timestamp};
use crate::error::Result;
use crate::files::{Granularity, hour_of};
use crate::model::EpochMillis;
use crate::proxy_metrics::ProxyMetricRow;
use crate::proxy_table::{
    ProxyFilter, from_batch, merge_series, proxy_minutes_due, proxy_table_name, to_batch,
};
use crate::read::TimeRange;
use crate::schema::MINUTE;

impl Store {
    /// Writes the proxy statistics of minutes that have ended (one file per hour they
    /// span) and publishes the live minute for reads. The collector calls it on its tick.
    pub async fn flush_proxy_metrics(&self, now: EpochMillis) -> Result<()> {
        self.write_proxy_minutes_before(proxy_minutes_due(now))
            .await?;
        self.publish_proxy_live_minute()
    }

    /// Writes every proxy statistic still in memory: what a shutdown does.
    pub async fn flush_all_proxy_metrics(&self) -> Result<()> {
        self.write_proxy_minutes_before(EpochMillis::MAX).await?;
        self.publish_proxy_live_minute()
    }

    /// Writes the rows held for the minutes before `minute`; on failure they are held again.
    async fn write_proxy_minutes_before(&self, minute: EpochMillis) -> Result<()> {
        let closed = self.proxy_metrics().take_before(minute);
        if closed.is_empty() {
            return Ok(());
        }
        let mut by_hour: BTreeMap<EpochMillis, Vec<&ProxyMetricRow>> = BTreeMap::new();
        for row in &closed {
            by_hour.entry(hour_of(row.minute)).or_default().push(row);
        }
        let stored = self.proxy_table(Granularity::Minute);
        for (hour, rows) in by_hour {
            let written = match to_batch(rows.iter().copied()) {
                Ok(batch) => self.append_file(stored, hour, &batch).await,
                Err(error) => Err(error),
            };
            if let Err(error) = written {
                // Kept for the next flush; the row cap bounds what a long outage holds.
                for row in rows {
                    self.proxy_metrics().record(row.clone());
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Replaces the in-memory part of `proxy_metrics_minute` with the rows still held.
    fn publish_proxy_live_minute(&self) -> Result<()> {
        let live = self.proxy_metrics().rows();
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
    /// proxy, name, cluster and time.
    pub async fn proxy_rows(
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
