//! The writers' boundary: what the collector calls to hand the store its figures. Live
//! minutes (not yet closed) are published or attached for reads; closed minutes are
//! written as Parquet files, one per table and hour; raw access-log entries likewise when
//! the config keeps them. Proxy statistics are written in `proxy_tables`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use super::Store;
use crate::access_log::{self, AccessLogRow};
use crate::batch::{self, ClosedBatch};
use crate::error::Result;
use crate::files::{FileEntry, Granularity, hour_of};
use crate::live_minutes::{LiveMinuteGroup, LiveMinuteSource};
use crate::model::{EpochMillis, MINUTE_MS, MetricRow, Table};
use crate::read::KeyFilter;
use crate::sliding;
use crate::table::StoredTable;

impl Store {
    /// Replaces the snapshot of the live minutes (those the collector has not closed yet),
    /// so that reads see live figures. Rows of a minute later passed to `append_closed`
    /// must no longer appear in the next snapshot.
    pub fn publish_live_minutes(&self, rows: Vec<MetricRow>) {
        for table in Table::ALL {
            let batch = match batch::to_batch(table, &rows) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%error, table = table.name(), "live minutes not published");
                    continue;
                }
            };
            let batches = if batch.num_rows() == 0 {
                Vec::new()
            } else {
                vec![batch]
            };
            self.table(table, Granularity::Minute)
                .set_live_batches(batches);
        }
    }

    /// Reads of the minute tables ask `source` for the live minutes, instead of taking the
    /// batches `publish_live_minutes` sets. Services, instances, edges and instance pairs
    /// are read together, so that a topology's nodes and edges come from one moment;
    /// endpoints, the largest table, on their own with the endpoints' dependencies.
    pub fn attach_live_minute_source(&self, source: Arc<dyn LiveMinuteSource>) {
        let groups = [
            vec![
                Table::ServiceMinute,
                Table::InstanceMinute,
                Table::EdgeMinute,
                Table::InstancePairMinute,
            ],
            vec![Table::EndpointMinute, Table::DependencyMinute],
        ];
        let mut live = Vec::new();
        for tables in groups {
            let group =
                LiveMinuteGroup::new(tables.clone(), source.clone(), self.inner.clock.clone());
            for table in tables {
                self.table(table, Granularity::Minute)
                    .live
                    .attach(table, group.clone());
            }
            live.push(group);
        }
        *self.inner.live_groups.write() = live;
    }

    /// Makes the next read of live minutes ask their source again.
    pub fn refresh_live_minutes(&self) {
        for group in self.inner.live_groups.read().iter() {
            group.refresh();
        }
    }

    /// Lets go of reads of live minutes kept past their freshness.
    pub fn expire_live_minute_reads(&self) {
        for group in self.inner.live_groups.read().iter() {
            group.expire();
        }
    }

    /// Writes rows of minutes that are closed for good, one Parquet file per table and hour.
    pub async fn append_closed(&self, rows: Vec<MetricRow>) -> Result<()> {
        self.append_closed_before(&rows, None).await
    }

    /// `append_closed`, and marks every minute before `before` as held by files alone: a
    /// live source's rows before it are no longer read. Each table's new files and its
    /// mark become visible together.
    pub async fn append_closed_before(
        &self,
        rows: &[MetricRow],
        before: Option<EpochMillis>,
    ) -> Result<()> {
        let mut by_partition: BTreeMap<(Table, EpochMillis), Vec<&MetricRow>> = BTreeMap::new();
        for row in rows {
            by_partition
                .entry((Table::of(&row.key), hour_of(row.minute)))
                .or_default()
                .push(row);
        }
        let batches = by_partition
            .into_iter()
            .map(|((table, hour), rows)| {
                Ok(ClosedBatch {
                    table,
                    hour,
                    batch: batch::to_batch(table, rows.iter().copied())?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.append_batches_before(&batches, before).await
    }

    /// `append_closed_before` for rows already encoded: one Parquet file per table and
    /// hour, batches of the same table and hour written together.
    pub async fn append_batches_before(
        &self,
        batches: &[ClosedBatch],
        before: Option<EpochMillis>,
    ) -> Result<()> {
        let mut by_partition: BTreeMap<(Table, EpochMillis), Vec<&RecordBatch>> = BTreeMap::new();
        for closed in batches.iter().filter(|b| b.rows() > 0) {
            by_partition
                .entry((closed.table, closed.hour))
                .or_default()
                .push(&closed.batch);
        }
        let mut written: BTreeMap<Table, Vec<FileEntry>> = BTreeMap::new();
        let mut just_written = Vec::new();
        for ((table, hour), parts) in by_partition {
            let parts: Vec<RecordBatch> = parts.into_iter().cloned().collect();
            let stored = self.table(table, Granularity::Minute);
            let file = match self
                .inner
                .files
                .write(&stored.name, Granularity::Minute, hour, &parts)
                .await
            {
                Ok(file) => file,
                Err(error) => {
                    // None of it is visible yet: written again later, it must not count
                    // twice.
                    let done: Vec<_> = written.into_values().flatten().collect();
                    self.inner.files.discard(&done).await;
                    return Err(error);
                }
            };
            if let Some(times) = file.times {
                just_written.push((table, times, parts));
            }
            written.entry(table).or_default().push(file);
        }
        for table in Table::ALL {
            let files = written.remove(&table).unwrap_or_default();
            self.table(table, Granularity::Minute)
                .add_files_covering(files, before);
        }
        let mut newest = None;
        for (table, (first, last), batches) in just_written {
            if let Err(error) = self.extend_moving(table, first, last + MINUTE_MS, &batches) {
                tracing::warn!(%error, table = table.name(), "a moving total was left to be read afresh");
            }
            newest = newest.max(Some(last + MINUTE_MS));
        }
        if let Some(newest) = newest {
            self.inner
                .written
                .send_modify(|end| *end = (*end).max(newest));
        }
        Ok(())
    }

    /// Adds the minutes `[first, end)` just written, which `batches` hold, to the kept
    /// moving spans of the whole table that end at `first`. A dashboard's window, which by
    /// then starts a minute later too, only has to take out the minute that left it. Its
    /// totals are not kept here: no relative window asks for the span as extended. A span
    /// whose files changed otherwise is left alone: its next read folds it afresh.
    fn extend_moving(
        &self,
        table: Table,
        first: EpochMillis,
        end: EpochMillis,
        batches: &[RecordBatch],
    ) -> Result<()> {
        let stored = self.table(table, Granularity::Minute);
        let whole_table = KeyFilter::default();
        self.inner.moving.extend_at(
            table,
            &format!("{whole_table:?}"),
            first,
            self.now_ms(),
            |span| {
                let before = stored.files_overlapping(Some(span.start()), Some(first));
                if sliding::file_names(&before) != span.files() {
                    return Ok(());
                }
                span.push(end, batches)?;
                span.set_files(&stored.files_overlapping(Some(span.start()), Some(end)));
                Ok(())
            },
        )
    }

    /// Writes `batch` as a new file of the hour `hour` of `stored` and makes it visible.
    pub(crate) async fn append_file(
        &self,
        stored: &StoredTable,
        hour: EpochMillis,
        batch: &RecordBatch,
    ) -> Result<()> {
        let file = self
            .inner
            .files
            .write(
                &stored.name,
                Granularity::Minute,
                hour,
                std::slice::from_ref(batch),
            )
            .await?;
        stored.add_file(file);
        Ok(())
    }

    /// Whether `append_access_log` keeps anything; callers can skip building rows if not.
    pub fn access_log_enabled(&self) -> bool {
        self.inner.config.access_log
    }

    /// Writes raw entries to the `access_log` table (one file per hour they span), or
    /// drops them when the config keeps no access log.
    pub async fn append_access_log(&self, rows: Vec<AccessLogRow>) -> Result<()> {
        if !self.access_log_enabled() || rows.is_empty() {
            return Ok(());
        }
        let mut by_hour: BTreeMap<EpochMillis, Vec<&AccessLogRow>> = BTreeMap::new();
        for row in &rows {
            by_hour.entry(hour_of(row.time)).or_default().push(row);
        }
        let stored = &self.inner.access_log;
        for (hour, rows) in by_hour {
            self.append_file(stored, hour, &access_log::to_batch(&rows)?)
                .await?;
        }
        Ok(())
    }
}
