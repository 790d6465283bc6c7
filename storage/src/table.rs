//! One queryable table: its Parquet files on disk plus, for minute tables, the snapshot of
//! live minutes, those the collector has not closed yet. Queries see both as one table; files whose
//! partition lies outside the query's time filter are not opened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use object_store::ObjectMeta;
use parking_lot::RwLock;

use crate::files::{FileEntry, Granularity};
use crate::live_minutes::LiveMinuteRows;
use crate::model::EpochMillis;

#[derive(Debug)]
pub(crate) struct StoredTable {
    pub(crate) name: String,
    pub(crate) schema: SchemaRef,
    pub(crate) granularity: Granularity,
    /// The time column that partitions and sorts the table.
    time_column: &'static str,
    url: ObjectStoreUrl,
    files: RwLock<BTreeMap<EpochMillis, Vec<FileEntry>>>,
    /// Minutes before this are all in files; a live source's rows before it are not read.
    /// Changed under the files lock, so a read never sees a minute in both or in neither.
    covered_before: AtomicI64,
    pub(crate) live: LiveMinuteRows,
}

impl StoredTable {
    pub(crate) fn new(
        name: String,
        schema: SchemaRef,
        granularity: Granularity,
        time_column: &'static str,
        url: ObjectStoreUrl,
    ) -> Self {
        Self {
            name,
            schema,
            granularity,
            time_column,
            url,
            files: RwLock::new(BTreeMap::new()),
            covered_before: AtomicI64::new(EpochMillis::MIN),
            live: LiveMinuteRows::default(),
        }
    }

    pub(crate) fn add_file(&self, file: FileEntry) {
        self.add_files_covering(vec![file], None);
    }

    /// Makes `files` visible and, in the same step, marks the minutes before `before` as
    /// held by files alone.
    pub(crate) fn add_files_covering(&self, new: Vec<FileEntry>, before: Option<EpochMillis>) {
        let mut files = self.files.write();
        for file in new {
            let entries = files.entry(file.partition).or_default();
            // A listing of the store (`refresh_files`) may have taken it in already.
            if !entries.iter().any(|known| known.path == file.path) {
                entries.push(file);
            }
        }
        if let Some(before) = before {
            self.covered_before.fetch_max(before, Ordering::SeqCst);
        }
    }

    /// Minutes before this are all in files (a live source's rows before it are not read).
    pub(crate) fn covered_before(&self) -> EpochMillis {
        self.covered_before.load(Ordering::SeqCst)
    }

    /// The paths of every file the table holds.
    pub(crate) fn file_paths(&self) -> std::collections::HashSet<object_store::path::Path> {
        self.files
            .read()
            .values()
            .flatten()
            .map(|file| file.path.clone())
            .collect()
    }

    /// Takes in `new` files (those already held are skipped) and lets go of `gone`, in one
    /// step: what a listing of a store other writers change found.
    pub(crate) fn take_listing(&self, new: Vec<FileEntry>, gone: &[object_store::path::Path]) {
        let mut files = self.files.write();
        for entries in files.values_mut() {
            entries.retain(|file| !gone.contains(&file.path));
        }
        files.retain(|_, entries| !entries.is_empty());
        for file in new {
            let entries = files.entry(file.partition).or_default();
            if !entries.iter().any(|known| known.path == file.path) {
                entries.push(file);
            }
        }
    }

    /// Swaps files of one partition for their replacement (compaction, a new rollup).
    pub(crate) fn replace_files(
        &self,
        partition: EpochMillis,
        old: &[FileEntry],
        new: Option<FileEntry>,
    ) {
        let mut files = self.files.write();
        let entries = files.entry(partition).or_default();
        entries.retain(|f| !old.iter().any(|o| o.path == f.path));
        entries.extend(new);
        if entries.is_empty() {
            files.remove(&partition);
        }
    }

    /// Forgets every partition that ends at or before `cutoff`, returning their files.
    pub(crate) fn remove_partitions_before(&self, cutoff: EpochMillis) -> Vec<FileEntry> {
        let span = self.granularity.partition_ms();
        let mut files = self.files.write();
        let due: Vec<EpochMillis> = files
            .keys()
            .copied()
            .take_while(|p| p + span <= cutoff)
            .collect();
        due.iter()
            .filter_map(|p| files.remove(p))
            .flatten()
            .collect()
    }

    pub(crate) fn partitions(&self) -> BTreeMap<EpochMillis, Vec<FileEntry>> {
        self.files.read().clone()
    }

    pub(crate) fn has_partition(&self, partition: EpochMillis) -> bool {
        self.files.read().contains_key(&partition)
    }

    /// Replaces the live rows published by hand (used when no live source is attached).
    pub(crate) fn set_live_batches(&self, batches: Vec<RecordBatch>) {
        self.live.set_published(batches);
    }

    /// The earliest minute whose rows can still change: with a live source, every minute
    /// not yet in files; else the earliest in the published live batches.
    pub(crate) fn live_start(&self) -> Option<EpochMillis> {
        if self.live.has_source() {
            return Some(self.covered_before.load(Ordering::SeqCst));
        }
        self.live
            .published()
            .iter()
            .filter_map(|batch| {
                let minutes = batch
                    .column(0)
                    .as_primitive_opt::<TimestampMillisecondType>()?;
                datafusion::arrow::compute::min(minutes)
            })
            .min()
    }

    /// The live rows, when no file holds rows in `[start, end)`; `None` when one does.
    /// Checked and read under the files lock, so that a minute written meanwhile is
    /// neither missed nor read twice.
    pub(crate) fn live_rows_alone(
        &self,
        start: EpochMillis,
        end: EpochMillis,
    ) -> crate::error::Result<Option<Vec<RecordBatch>>> {
        let held = self.files.read();
        if !self
            .files_overlapping_locked(&held, Some(start), Some(end))
            .is_empty()
        {
            return Ok(None);
        }
        let covered_before = self.covered_before.load(Ordering::SeqCst);
        Ok(Some(self.live.batches(covered_before)?))
    }

    pub(crate) fn has_files(&self) -> bool {
        self.files
            .read()
            .values()
            .any(|entries| !entries.is_empty())
    }

    pub(crate) fn files_overlapping(
        &self,
        start: Option<EpochMillis>,
        end: Option<EpochMillis>,
    ) -> Vec<FileEntry> {
        self.files_overlapping_locked(&self.files.read(), start, end)
    }

    fn files_overlapping_locked(
        &self,
        files: &BTreeMap<EpochMillis, Vec<FileEntry>>,
        start: Option<EpochMillis>,
        end: Option<EpochMillis>,
    ) -> Vec<FileEntry> {
        let span = self.granularity.partition_ms();
        let first = start.map_or(EpochMillis::MIN, |s| s - span + 1);
        let last = end.unwrap_or(EpochMillis::MAX);
        let within = |file: &&FileEntry| match file.times {
            Some((lo, hi)) => start.is_none_or(|s| hi >= s) && end.is_none_or(|e| lo < e),
            None => true,
        };
        files
            .range(first..last)
            .flat_map(|(_, entries)| entries.iter().filter(within).cloned())
            .collect()
    }

    /// The `[start, end)` the filters hold the time column to, where they say so plainly.
    fn time_bounds(&self, filters: &[Expr]) -> (Option<EpochMillis>, Option<EpochMillis>) {
        let mut start: Option<EpochMillis> = None;
        let mut end: Option<EpochMillis> = None;
        let mut visit = |expr: &Expr| {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
                return;
            };
            let (Expr::Column(column), Expr::Literal(value, _)) = (left.as_ref(), right.as_ref())
            else {
                return;
            };
            if column.name != self.time_column {
                return;
            }
            let (ScalarValue::TimestampMillisecond(Some(t), _)
            | ScalarValue::TimestampMicrosecond(Some(t), _)
            | ScalarValue::TimestampNanosecond(Some(t), _)
            | ScalarValue::TimestampSecond(Some(t), _)) = value
            else {
                return;
            };
            let t = match value {
                ScalarValue::TimestampMicrosecond(..) => t / 1_000,
                ScalarValue::TimestampNanosecond(..) => t / 1_000_000,
                ScalarValue::TimestampSecond(..) => t * 1_000,
                _ => *t,
            };
            match op {
                Operator::GtEq | Operator::Gt => start = Some(start.map_or(t, |s| s.max(t))),
                Operator::Lt | Operator::LtEq => end = Some(end.map_or(t + 1, |e| e.min(t + 1))),
                Operator::Eq => {
                    start = Some(start.map_or(t, |s| s.max(t)));
                    end = Some(end.map_or(t + 1, |e| e.min(t + 1)));
                }
                _ => {}
            }
        };
        for filter in filters {
            for conjunct in split_and(filter) {
                visit(conjunct);
            }
        }
        (start, end)
    }
}

fn split_and(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut parts = split_and(left);
            parts.extend(split_and(right));
            parts
        }
        other => vec![other],
    }
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Filters only prune files here; DataFusion still applies them to every row.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let (start, end) = self.time_bounds(filters);
        let (files, covered_before) = {
            let held = self.files.read();
            (
                self.files_overlapping_locked(&held, start, end),
                self.covered_before.load(Ordering::SeqCst),
            )
        };
        let live = self
            .live
            .batches(covered_before)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            // Two groups so that both cores decode Parquet.
            let mut groups = vec![Vec::new(), Vec::new()];
            for (i, file) in files.into_iter().enumerate() {
                groups[i % 2].push(PartitionedFile::new_from_meta(ObjectMeta {
                    location: file.path,
                    last_modified: chrono::DateTime::<chrono::Utc>::default(),
                    size: file.size,
                    e_tag: None,
                    version: None,
                }));
            }
            // The shared metadata cache spares re-reading every footer on every query:
            // files never change once written, they are only replaced under new names.
            let runtime = state.runtime_env();
            let reader = CachedParquetFileReaderFactory::new(
                runtime.object_store(&self.url)?,
                runtime.cache_manager.get_file_metadata_cache(),
            );
            let mut source = ParquetSource::new(self.schema.clone())
                .with_parquet_file_reader_factory(Arc::new(reader));
            // With the filters as a predicate, the page index skips the pages of a sorted
            // file that lie outside the window (a partial hour reads part of its file).
            if let Some(predicate) = conjunction(filters.iter().cloned())
                && let Ok(schema) = DFSchema::try_from(self.schema.as_ref().clone())
                && let Ok(predicate) = state.create_physical_expr(predicate, &schema)
            {
                source = source.with_predicate(predicate);
            }
            let source = Arc::new(source);
            let config = FileScanConfigBuilder::new(self.url.clone(), source)
                .with_file_groups(
                    groups
                        .into_iter()
                        .filter(|g| !g.is_empty())
                        .map(FileGroup::new)
                        .collect(),
                )
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        if !live.is_empty() || inputs.is_empty() {
            let memory = MemTable::try_new(self.schema.clone(), vec![live])?;
            inputs.push(memory.scan(state, projection, filters, limit).await?);
        }
        UnionExec::try_new(inputs)
    }
}
