//! Background upkeep: compaction of an hour's small minute files into one, hour and day
//! rollups, and per-granularity retention. Time comes in as an argument so tests choose it.
//! Every replacement of files is atomic (`replace`): an hour's compaction and its rollup
//! become visible together, so a crash never leaves one without the other; a day whose
//! hours were rolled up again after it is rolled up again too.
//!
//! Just over 600 lines: compaction, rollups and retention share one pass over an hour's
//! files and one atomic replacement, so they stay together; the tests are in `maintenance/`.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use super::{MemoryHint, Store};
use crate::batch;
use crate::error::Result;
use crate::files::{
    DAY_MS, FileEntry, FileWriter, Granularity, HOUR_MS, in_time_order, newest_stem,
};
use crate::model::{EpochMillis, MINUTE_MS, RowKey, Side, Table};
use crate::proxy_table;
use crate::replace::{self, Swap};
use crate::rollup;
use crate::table::StoredTable;

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Small files merged away by compaction.
    pub files_compacted: usize,
    pub hours_rolled_up: usize,
    pub days_rolled_up: usize,
    /// Block summaries written (`block_summary`), new or again.
    pub blocks_summarized: usize,
    /// Trailing-hour summaries written (`trailing_hour`).
    pub trailing_hours_summarized: usize,
    /// Files deleted because their partition was past its retention.
    pub files_expired: usize,
    /// The node holding the upkeep lease of a shared store, when this node did not (and
    /// so did nothing, or stopped part way when the lease moved).
    pub lease_held_by: Option<String>,
}

impl Store {
    /// Compacts, rolls up and expires what is due at `now` (epoch milliseconds); counts
    /// the pass, and whether it failed, in `/metrics`.
    pub async fn maintain(&self, now: EpochMillis) -> Result<MaintenanceReport> {
        let result = self.maintain_once(now).await;
        super::figures::count_maintenance_pass(result.is_err());
        result
    }

    async fn maintain_once(&self, now: EpochMillis) -> Result<MaintenanceReport> {
        let _one_at_a_time = self.inner.maintenance.lock().await;
        let mut report = MaintenanceReport::default();
        if !self.holds_upkeep_turn(now, &mut report).await? {
            return Ok(report);
        }
        // In a store other writers share, their files are taken in first: an hour is
        // compacted and rolled up from every writer's minutes, never from this one's alone.
        if !self.inner.files.is_local() || !self.inner.config.writer_id.is_empty() {
            self.refresh_files().await?;
        }
        let _hint = MemoryHint::start(self.inner.config.memory_hint);
        let settle = self.inner.config.settle_minutes as i64 * MINUTE_MS;
        for (n, table) in Table::ALL.into_iter().enumerate() {
            // The lease renewed before each table after the first: a long pass keeps it,
            // and stops if it moved meanwhile.
            if n > 0 && !self.holds_upkeep_turn(self.now_ms(), &mut report).await? {
                return Ok(report);
            }
            self.roll_table(table, now, settle, &mut report).await?;
        }
        self.roll_proxy_tables(now, settle, &mut report).await?;
        // After the hours' compaction: a summary of a compacted hour's blocks is written
        // again from the merged file in the same pass. Summaries only speed reads up, so
        // failing to write one (a full disk) leaves the pass to go on to retention, which
        // frees space.
        if let Err(error) = self.summarize_blocks(now, &mut report).await {
            tracing::warn!(%error, "summarizing blocks of minutes failed: reads fold their minutes");
        }
        // From the block summaries just written, and the trailing hour before.
        if let Err(error) = self.summarize_trailing_hours(now, &mut report).await {
            tracing::warn!(%error, "summarizing the trailing hour failed: reads fold its blocks");
        }
        let access_log = self.inner.access_log.clone();
        for (partition, files) in access_log.partitions() {
            if files.len() > 1 && partition + HOUR_MS + settle <= now {
                let compacted = self
                    .merge_partition(
                        &access_log,
                        partition,
                        &files,
                        PassesAndPhases::ONCE,
                        None,
                        |_| Ok(None),
                    )
                    .await?;
                replace::commit(&self.inner.files, compacted.into_iter().collect()).await?;
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
        self.roll_tiers(tiers, Rows::Metrics(table), now, settle, report)
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
        self.roll_tiers(tiers, Rows::Proxy, now, settle, report)
            .await
    }

    /// Compacts settled minute partitions and rolls them into hours, then settled days of
    /// hours into days. Rows are read a group of files at a time and folded as they come,
    /// so what is held is one group and one row per key and bucket, never an hour of
    /// minutes: at a thousand services an hour of endpoint minutes is over ten million rows.
    async fn roll_tiers(
        &self,
        [minutes, hours, days]: [Arc<StoredTable>; 3],
        rows: Rows,
        now: EpochMillis,
        settle: EpochMillis,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        let mut due_days = BTreeSet::new();
        for (partition, files) in minutes.partitions() {
            let settled = partition + HOUR_MS + settle <= now;
            if !settled || (files.len() == 1 && hours.has_partition(partition)) {
                continue;
            }
            if files.len() > 1 {
                report.files_compacted += files.len();
            }
            let passes = passes_for(rows, &files);
            let mut fold = Fold::new(rows, HOUR_MS, KeysOfPass::of(0, passes));
            let mut rolled = self.rolled(&hours, partition)?;
            let phases = fold.phases();
            let each = |step: Step<'_>| match step {
                Step::Rows { phase, batch } => fold.add_minutes(phase, batch).map(|()| None),
                Step::GroupDone => {
                    fold.group_done();
                    Ok(None)
                }
                Step::PassDone(pass) => {
                    let next = Fold::new(rows, HOUR_MS, KeysOfPass::of(pass + 1, passes));
                    std::mem::replace(&mut fold, next).finish().map(Some)
                }
            };
            let compacted = self
                .merge_partition(
                    &minutes,
                    partition,
                    &files,
                    PassesAndPhases { passes, phases },
                    Some(&mut rolled),
                    each,
                )
                .await?;
            // The merged minutes and their hour become visible together.
            let mut swaps: Vec<Swap> = compacted.into_iter().collect();
            swaps.push(self.replacing(&hours, partition, rolled).await?);
            replace::commit(&self.inner.files, swaps).await?;
            report.hours_rolled_up += 1;
            due_days.insert(partition.div_euclid(DAY_MS) * DAY_MS);
        }
        let day_files = days.partitions();
        for (partition, files) in hours.partitions() {
            let day = partition.div_euclid(DAY_MS) * DAY_MS;
            // A day rolled up before one of its hours was rolled up again (a crash
            // between the two) holds that hour's old rows.
            let rolled_before_hour = day_files
                .get(&day)
                .is_some_and(|rolled| newest_stem(&files) > newest_stem(rolled));
            if !days.has_partition(day) || rolled_before_hour {
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
            let passes = passes_for(rows, &hour_files);
            let mut rolled = self.rolled(&days, day)?;
            for pass in 0..passes {
                let mut fold = Fold::new(rows, DAY_MS, KeysOfPass::of(pass, passes));
                // Hours in time order, each file sorted: the proxy gauges' last values
                // hold.
                for file in &hour_files {
                    let _permit = self.inner.memory_peaks.lock().await;
                    for batch in self.inner.files.stream(&file.path, FOLD_SLICE).await? {
                        fold.add_rolled(&batch?)?;
                    }
                }
                rolled.write(&fold.finish()?).await?;
            }
            let swap = self.replacing(&days, day, rolled).await?;
            replace::commit(&self.inner.files, vec![swap]).await?;
            report.days_rolled_up += 1;
        }
        Ok(())
    }

    /// Reads a partition's files a group at a time, in time order, `passes` times over,
    /// and hands each group's rows (sorted by time) to `each` `phases` times over, a slice
    /// at a time, then the end of the group, then the end of each pass; what `each` gives
    /// back at the end of a pass goes to `rolled`.
    /// With more than one file, the groups are also written, as they come in the first
    /// pass, to one new file meant to replace them all: returned, not yet visible, for
    /// `replace::commit`.
    async fn merge_partition(
        &self,
        stored: &Arc<StoredTable>,
        partition: EpochMillis,
        files: &[FileEntry],
        PassesAndPhases { passes, phases }: PassesAndPhases,
        mut rolled: Option<&mut Rolled>,
        mut each: impl FnMut(Step<'_>) -> Result<Option<RecordBatch>>,
    ) -> Result<Option<Swap>> {
        let mut writer = match files.len() {
            0 | 1 => None,
            _ => Some(self.inner.files.writer(
                &stored.name,
                stored.granularity,
                partition,
                stored.schema.clone(),
            )?),
        };
        let groups = overlapping_groups(files, stored.granularity.partition_ms());
        for pass in 0..passes.max(1) {
            for group in &groups {
                // One group's rows at a time, never beside a closing minute's encoding.
                let _permit = self.inner.memory_peaks.lock().await;
                let rows = GroupRows::read(self, group).await?;
                for phase in 0..phases {
                    let last = phase + 1 == phases;
                    for batch in rows.batches(self)? {
                        let batch = batch?;
                        if last
                            && pass == 0
                            && let Some(writer) = &mut writer
                        {
                            writer.write(&batch).await?;
                        }
                        each(Step::Rows {
                            phase,
                            batch: &batch,
                        })?;
                    }
                }
                each(Step::GroupDone)?;
            }
            if let (Some(batch), Some(rolled)) = (each(Step::PassDone(pass))?, &mut rolled) {
                rolled.write(&batch).await?;
            }
        }
        let Some(writer) = writer else {
            return Ok(None);
        };
        Ok(Some(Swap {
            stored: stored.clone(),
            partition,
            old: files.to_vec(),
            new: Some(writer.close().await?),
        }))
    }

    /// A new file for a rollup's partition, written a pass at a time: the passes' rows
    /// together are as large as the partition.
    fn rolled(&self, stored: &Arc<StoredTable>, partition: EpochMillis) -> Result<Rolled> {
        Ok(Rolled {
            writer: self.inner.files.writer(
                &stored.name,
                stored.granularity,
                partition,
                stored.schema.clone(),
            )?,
            rows: 0,
        })
    }

    /// The replacement of every file of a partition with the one `rolled` wrote (or with
    /// none, when it holds no rows), for `replace::commit`.
    async fn replacing(
        &self,
        stored: &Arc<StoredTable>,
        partition: EpochMillis,
        rolled: Rolled,
    ) -> Result<Swap> {
        let old = stored.partitions().remove(&partition).unwrap_or_default();
        let new = if rolled.rows == 0 {
            None
        } else {
            Some(rolled.writer.close().await?)
        };
        Ok(Swap {
            stored: stored.clone(),
            partition,
            old,
            new,
        })
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
        for stored in self.summary_tables() {
            due.push((stored.clone(), retention.minute_secs));
        }
        due.push((self.inner.access_log.clone(), retention.access_log_secs));
        let mut expired = Vec::new();
        for (stored, secs) in due {
            let cutoff = now - (secs as i64) * 1_000;
            expired.extend(stored.remove_partitions_before(cutoff));
        }
        // All of them, or (after a crash) all of them at the next start.
        replace::delete_all(&self.inner.files, &expired).await?;
        report.files_expired += expired.len();
        Ok(())
    }
}

/// A rollup's new file while its passes are folded. Every row of it has the partition's
/// time, so the passes' batches are in time order as they come.
struct Rolled {
    writer: FileWriter,
    rows: usize,
}

impl Rolled {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() > 0 {
            self.rows += batch.num_rows();
            self.writer.write(batch).await?;
        }
        Ok(())
    }
}

/// Which rows a tier holds, and so how they add up.
#[derive(Clone, Copy, Debug)]
enum Rows {
    Metrics(Table),
    Proxy,
}

/// What `merge_partition` hands on: a slice of a group's rows in one of its phases, the
/// end of a group, or the end of a pass over them all.
enum Step<'a> {
    Rows {
        phase: usize,
        batch: &'a RecordBatch,
    },
    GroupDone,
    PassDone(u64),
}

/// How often `merge_partition` goes over a partition (`passes`, each over its own
/// share of the keys) and over each group within a pass (`phases`).
#[derive(Clone, Copy, Debug)]
struct PassesAndPhases {
    passes: u64,
    phases: usize,
}

impl PassesAndPhases {
    const ONCE: PassesAndPhases = PassesAndPhases {
        passes: 1,
        phases: 1,
    };
}

/// A group's rows. A file alone is sorted already and is read a row group at a time, as
/// often as it is gone over; files whose times overlap are decoded and put in time order
/// together.
enum GroupRows {
    File(object_store::path::Path),
    Sorted(Vec<RecordBatch>),
}

impl GroupRows {
    async fn read(store: &Store, group: &[FileEntry]) -> Result<GroupRows> {
        // A remote file cannot be read in place: it is fetched and decoded like a group.
        if let [file] = group
            && store.inner.files.is_local()
        {
            return Ok(GroupRows::File(file.path.clone()));
        }
        let mut read = Vec::new();
        for file in group {
            read.extend(store.inner.files.read_batches(&file.path).await?);
        }
        Ok(GroupRows::Sorted(in_time_order(&read)?))
    }

    fn batches<'a>(
        &'a self,
        store: &Store,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + Send + 'a>> {
        Ok(match self {
            GroupRows::File(path) => Box::new(store.inner.files.stream_local(path, FOLD_SLICE)?),
            GroupRows::Sorted(sorted) => Box::new(sorted.iter().flat_map(slices_of).map(Ok)),
        })
    }
}

/// The keys one pass of a fold takes: a fold holds one row per key, so a partition with
/// many keys is folded in several passes, each over its own share of them.
#[derive(Clone, Copy, Debug)]
struct KeysOfPass {
    pass: u64,
    passes: u64,
}

impl KeysOfPass {
    fn of(pass: u64, passes: u64) -> KeysOfPass {
        KeysOfPass {
            pass,
            passes: passes.max(1),
        }
    }

    fn takes(self, key: &RowKey) -> bool {
        self.passes == 1 || rollup::key_hash(key) % self.passes == self.pass
    }
}

/// Keys one pass holds at most, about 12 MiB of fold: the fold lives through the whole
/// pass, closing minutes included.
const KEYS_PER_PASS: u64 = 32 * 1024;
/// A metric row takes 33 to 46 bytes in Parquet (see BENCHMARKS.md): the smaller figure
/// makes more passes rather than fewer.
const PARQUET_BYTES_PER_ROW: u64 = 32;

/// How many passes a fold over `files` takes: the largest file (a minute, or an hour of
/// one row per key) tells how many keys a bucket may hold.
fn passes_for(rows: Rows, files: &[FileEntry]) -> u64 {
    match rows {
        // One row per proxy, statistic and cluster: few enough for one pass.
        Rows::Proxy => 1,
        Rows::Metrics(_) => {
            let largest = files.iter().map(|f| f.size).max().unwrap_or(0);
            (largest / PARQUET_BYTES_PER_ROW)
                .div_ceil(KEYS_PER_PASS)
                .clamp(1, 16)
        }
    }
}

/// Rows folded into buckets of one span as they are read.
enum Fold {
    Metrics {
        table: Table,
        keys_of_pass: KeysOfPass,
        buckets: rollup::Buckets,
        /// Per key and minute the server side wins over the client side: the group's
        /// first phase learns which minutes a server reported, by hash so that the keys
        /// are not held twice; the second adds the rows.
        served: HashSet<u64>,
    },
    Proxy(proxy_table::SeriesBuckets),
}

/// Rows decoded at a time: a group's rows are never all held as structs, nor (for a file
/// alone) as Arrow arrays.
const FOLD_SLICE: usize = 16 * 1024;

fn slices_of(batch: &RecordBatch) -> impl Iterator<Item = RecordBatch> + '_ {
    (0..batch.num_rows())
        .step_by(FOLD_SLICE)
        .map(|at| batch.slice(at, FOLD_SLICE.min(batch.num_rows() - at)))
}

impl Fold {
    fn new(rows: Rows, bucket_ms: EpochMillis, keys_of_pass: KeysOfPass) -> Fold {
        match rows {
            Rows::Metrics(table) => Fold::Metrics {
                table,
                keys_of_pass,
                buckets: rollup::Buckets::new(bucket_ms),
                served: HashSet::new(),
            },
            Rows::Proxy => Fold::Proxy(proxy_table::SeriesBuckets::new(bucket_ms)),
        }
    }

    /// How many times a group of minute files is gone over.
    fn phases(&self) -> usize {
        match self {
            Fold::Metrics { .. } => 2,
            Fold::Proxy(_) => 1,
        }
    }

    /// A slice of minute rows, in a group holding every row of its minutes.
    fn add_minutes(&mut self, phase: usize, batch: &RecordBatch) -> Result<()> {
        let Fold::Metrics {
            table,
            keys_of_pass,
            buckets,
            served,
        } = self
        else {
            return self.add_rolled(batch);
        };
        for row in batch::from_batch(*table, batch)? {
            if !keys_of_pass.takes(&row.key) {
                continue;
            }
            let minute = || rollup::minute_hash(&row.key, row.minute);
            match (phase, row.side) {
                (0, Side::Server) => {
                    served.insert(minute());
                }
                (0, Side::Client) => {}
                (_, Side::Client) if served.contains(&minute()) => {}
                _ => buckets.add(row),
            }
        }
        Ok(())
    }

    fn group_done(&mut self) {
        if let Fold::Metrics { served, .. } = self {
            *served = HashSet::new();
        }
    }

    /// A slice of rows already rolled up (hours into days), in time order.
    fn add_rolled(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Fold::Metrics {
                table,
                keys_of_pass,
                buckets,
                ..
            } => {
                for row in batch::from_batch(*table, batch)? {
                    if keys_of_pass.takes(&row.key) {
                        buckets.add(row);
                    }
                }
            }
            Fold::Proxy(series) => {
                for row in proxy_table::from_batch(batch)? {
                    series.add(row);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<RecordBatch> {
        match self {
            Fold::Metrics { table, buckets, .. } => batch::to_batch(table, &buckets.into_rows()),
            Fold::Proxy(series) => proxy_table::to_batch(&series.into_rows()),
        }
    }
}

/// A partition's files in groups whose times overlap, in time order: each group holds
/// every row of its minutes, so a group can be folded alone. A file whose times are not
/// known may hold any time of the partition.
fn overlapping_groups(files: &[FileEntry], partition_ms: EpochMillis) -> Vec<Vec<FileEntry>> {
    let span = |f: &FileEntry| {
        f.times
            .unwrap_or((f.partition, f.partition + partition_ms - 1))
    };
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_by_key(|f| span(f));
    let mut groups: Vec<(EpochMillis, Vec<FileEntry>)> = Vec::new();
    for file in sorted {
        let (first, last) = span(file);
        match groups.last_mut() {
            Some((end, group)) if first <= *end => {
                *end = (*end).max(last);
                group.push(file.clone());
            }
            _ => groups.push((last, vec![file.clone()])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

#[cfg(test)]
mod tests;
