//! Background upkeep: compaction of an hour's small minute files into one, hour and day
//! rollups, and per-granularity retention. Time comes in as an argument so tests choose it.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;

use crate::batch;
use crate::error::Result;
use crate::files::{DAY_MS, FileEntry, Granularity, HOUR_MS};
use crate::model::{EpochMillis, MINUTE_MS, Table};
use crate::proxy_table;
use crate::rollup;
use crate::store::Store;
use crate::table::StoredTable;

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Small files merged away by compaction.
    pub files_compacted: usize,
    pub hours_rolled_up: usize,
    pub days_rolled_up: usize,
    /// Files deleted because their partition was past its retention.
    pub files_expired: usize,
}

impl Store {
    /// Compacts, rolls up and expires what is due at `now` (epoch milliseconds).
    pub async fn maintain(&self, now: EpochMillis) -> Result<MaintenanceReport> {
        let _one_at_a_time = self.inner.maintenance.lock().await;
        let settle = self.inner.config.settle_minutes as i64 * MINUTE_MS;
        let mut report = MaintenanceReport::default();
        for table in Table::ALL {
            self.roll_table(table, now, settle, &mut report).await?;
        }
        self.roll_proxy_tables(now, settle, &mut report).await?;
        let access_log = self.inner.access_log.clone();
        for (partition, files) in access_log.partitions() {
            if files.len() > 1 && partition + HOUR_MS + settle <= now {
                self.compact(&access_log, partition, &files).await?;
                report.files_compacted += files.len();
            }
        }
        self.expire(now, &mut report).await?;
        Ok(report)
    }

    async fn roll_table(
        &self,
        table: Table,
        now: EpochMillis,
        settle: EpochMillis,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        let tiers = [
            self.table(table, Granularity::Minute).clone(),
            self.table(table, Granularity::Hour).clone(),
            self.table(table, Granularity::Day).clone(),
        ];
        let to_hours = |batch: &RecordBatch| {
            let rolled = rollup::roll_up_minutes(batch::from_batch(table, batch)?, HOUR_MS);
            batch::to_batch(table, &rolled)
        };
        let to_days = |batch: &RecordBatch| {
            batch::to_batch(
                table,
                &rollup::roll_up(batch::from_batch(table, batch)?, DAY_MS),
            )
        };
        self.roll_tiers(tiers, now, settle, report, to_hours, to_days)
            .await
    }

    /// The proxy statistics' hour and day rollups, on the same schedule as the others:
    /// counters and histograms add up, gauges keep the last value, the extremes and the
    /// sum and count of reports (see `ProxyMetricRow::merge`).
    async fn roll_proxy_tables(
        &self,
        now: EpochMillis,
        settle: EpochMillis,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        let tiers = [
            self.proxy_table(Granularity::Minute).clone(),
            self.proxy_table(Granularity::Hour).clone(),
            self.proxy_table(Granularity::Day).clone(),
        ];
        let roll = |span: EpochMillis| {
            move |batch: &RecordBatch| {
                proxy_table::to_batch(&proxy_table::roll_up(proxy_table::from_batch(batch)?, span))
            }
        };
        self.roll_tiers(tiers, now, settle, report, roll(HOUR_MS), roll(DAY_MS))
            .await
    }

    /// Compacts settled minute partitions and rolls them into hours, then settled days of
    /// hours into days; `to_hours` and `to_days` say how a table's rows add up.
    async fn roll_tiers(
        &self,
        [minutes, hours, days]: [Arc<StoredTable>; 3],
        now: EpochMillis,
        settle: EpochMillis,
        report: &mut MaintenanceReport,
        to_hours: impl Fn(&RecordBatch) -> Result<RecordBatch>,
        to_days: impl Fn(&RecordBatch) -> Result<RecordBatch>,
    ) -> Result<()> {
        let mut due_days = BTreeSet::new();
        for (partition, files) in minutes.partitions() {
            let settled = partition + HOUR_MS + settle <= now;
            if !settled || (files.len() == 1 && hours.has_partition(partition)) {
                continue;
            }
            let batch = if files.len() > 1 {
                report.files_compacted += files.len();
                self.compact(&minutes, partition, &files).await?
            } else {
                self.read_all(&minutes, &files).await?
            };
            self.replace_with(&hours, partition, &to_hours(&batch)?)
                .await?;
            report.hours_rolled_up += 1;
            due_days.insert(partition.div_euclid(DAY_MS) * DAY_MS);
        }
        for partition in hours.partitions().keys() {
            let day = partition.div_euclid(DAY_MS) * DAY_MS;
            if !days.has_partition(day) {
                due_days.insert(day);
            }
        }
        for day in due_days {
            if day + DAY_MS + settle > now {
                continue;
            }
            let hour_files: Vec<FileEntry> = hours
                .partitions()
                .range(day..day + DAY_MS)
                .flat_map(|(_, files)| files.clone())
                .collect();
            let batch = self.read_all(&hours, &hour_files).await?;
            self.replace_with(&days, day, &to_days(&batch)?).await?;
            report.days_rolled_up += 1;
        }
        Ok(())
    }

    /// Merges a partition's files into one sorted file and returns its rows.
    async fn compact(
        &self,
        stored: &Arc<StoredTable>,
        partition: EpochMillis,
        files: &[FileEntry],
    ) -> Result<RecordBatch> {
        let batch = self.read_all(stored, files).await?;
        let file = self
            .inner
            .files
            .write(
                &stored.name,
                stored.granularity,
                partition,
                std::slice::from_ref(&batch),
            )
            .await?;
        // The new file is visible before the old ones go, so no reader misses the rows;
        // a reader planned just before the swap may briefly see both, never neither.
        stored.replace_files(partition, files, Some(file));
        for old in files {
            self.inner.files.delete(&old.path).await?;
        }
        Ok(batch)
    }

    /// Replaces every file of a partition with one file holding `batch`.
    async fn replace_with(
        &self,
        stored: &Arc<StoredTable>,
        partition: EpochMillis,
        batch: &RecordBatch,
    ) -> Result<()> {
        let old = stored.partitions().remove(&partition).unwrap_or_default();
        let file = if batch.num_rows() == 0 {
            None
        } else {
            Some(
                self.inner
                    .files
                    .write(
                        &stored.name,
                        stored.granularity,
                        partition,
                        std::slice::from_ref(batch),
                    )
                    .await?,
            )
        };
        stored.replace_files(partition, &old, file);
        for file in &old {
            self.inner.files.delete(&file.path).await?;
        }
        Ok(())
    }

    async fn read_all(&self, stored: &StoredTable, files: &[FileEntry]) -> Result<RecordBatch> {
        let mut batches = Vec::with_capacity(files.len());
        for file in files {
            batches.push(self.inner.files.read(&file.path, &stored.schema).await?);
        }
        Ok(concat_batches(&stored.schema, &batches)?)
    }

    async fn expire(&self, now: EpochMillis, report: &mut MaintenanceReport) -> Result<()> {
        let retention = &self.inner.config.retention;
        let mut due: Vec<(Arc<StoredTable>, u64)> = Vec::new();
        for ((_, granularity), stored) in &self.inner.tables {
            let secs = match granularity {
                Granularity::Minute => retention.minute_secs,
                Granularity::Hour => retention.hour_secs,
                Granularity::Day => retention.day_secs,
            };
            due.push((stored.clone(), secs));
        }
        for (granularity, stored) in &self.inner.proxy_tables {
            let secs = match granularity {
                Granularity::Minute => retention.minute_secs,
                Granularity::Hour => retention.hour_secs,
                Granularity::Day => retention.day_secs,
            };
            due.push((stored.clone(), secs));
        }
        due.push((self.inner.access_log.clone(), retention.access_log_secs));
        for (stored, secs) in due {
            let cutoff = now - (secs as i64) * 1_000;
            for file in stored.remove_partitions_before(cutoff) {
                self.inner.files.delete(&file.path).await?;
                report.files_expired += 1;
            }
        }
        Ok(())
    }
}
