//! The store: the write path the collector uses and the read path the query layer uses.
//! Closed minutes are written as Parquet files; the collector's open minutes are an
//! in-memory snapshot that each publish replaces. Both are read through one DataFusion
//! session, together with the hour and day rollups.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;

use crate::access_log;
use crate::batch;
use crate::batch::ClosedBatch;
use crate::error::Result;
use crate::files::{DAY_MS, DataFiles, Granularity, HOUR_MS, hour_of};
use crate::model::{EpochMillis, MINUTE_MS, MetricRow, RowKey, ServiceRef, Side, Table};
use crate::open::{LiveGroup, OpenMinutes};
use crate::proxy_table;
use crate::read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};
use crate::schema::{self, COUNTERS, LATENCY, MINUTE, SIDE, key_columns};
use crate::sliding;
use crate::table::StoredTable;
use crate::totals;
use crate::udf;

pub use crate::config::StoreConfig;

/// The name SQL knows a table by: `service_minute`, `service_hour`, `service_day`, ….
pub fn table_name(table: Table, granularity: Granularity) -> String {
    let base = table.name().trim_end_matches("_minute");
    format!("{base}_{}", granularity.suffix())
}

pub(crate) struct Inner {
    pub(crate) config: StoreConfig,
    pub(crate) files: DataFiles,
    pub(crate) tables: HashMap<(Table, Granularity), Arc<StoredTable>>,
    pub(crate) access_log: Arc<StoredTable>,
    pub(crate) ctx: SessionContext,
    /// One maintenance pass at a time, whether from the background task or a caller.
    pub(crate) maintenance: tokio::sync::Mutex<()>,
    /// Taken in turn by the large transient uses of memory: a closing minute's encoding
    /// and write, and each step of a compaction or rollup, so that their peaks never add.
    pub(crate) memory_turns: tokio::sync::Mutex<()>,
    pub(crate) span_cache: totals::SpanCache<totals::SpanKey>,
    /// The groups of minute tables whose open rows come from a live source.
    pub(crate) live_groups: parking_lot::RwLock<Vec<Arc<LiveGroup>>>,
    /// Totals of a window's closed spans taken together, keyed by those spans: merging a
    /// week's spans key by key costs more than reading them.
    pub(crate) window_cache: totals::SpanCache<Vec<totals::SpanKey>>,
    /// Minute spans kept to be moved on as windows that end now move forward.
    pub(crate) moving: sliding::MovingSpans,
    /// The end of the newest minute written, announced on every write, late rows too:
    /// what keeps a dashboard's windows read ahead waits on it.
    pub(crate) written: tokio::sync::watch::Sender<EpochMillis>,
    pub(crate) proxy_metrics: crate::proxy_metrics::ProxyMetrics,
    pub(crate) proxy_tables: HashMap<Granularity, Arc<StoredTable>>,
}

pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl Store {
    /// A table's rows within `range` that match `filter`.
    async fn window_frame(
        &self,
        table: Table,
        granularity: Granularity,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let df = self
            .inner
            .ctx
            .table(table_name(table, granularity).as_str())
            .await?
            .filter(
                col(MINUTE)
                    .gt_eq(timestamp(range.start))
                    .and(col(MINUTE).lt(timestamp(range.end))),
            )?;
        Ok(match key_predicate(table, filter) {
            Some(predicate) => df.filter(predicate)?,
            None => df,
        })
    }

    /// Opens the store in `config.data_dir`, reopening the Parquet files already there,
    /// and starts background maintenance unless its interval is 0.
    pub async fn open(config: StoreConfig) -> Result<Store> {
        let files = DataFiles::open(&config.data_dir)?;
        Self::open_with(config, files).await
    }

    /// Opens the files already in `data_dir` for reading only, beside a server that may be
    /// writing there: no maintenance, and nothing is written, renamed or deleted (writes
    /// fail with `Error::ReadOnly`). Files written after this call are not seen.
    pub async fn open_read_only(data_dir: impl Into<std::path::PathBuf>) -> Result<Store> {
        let config = StoreConfig {
            maintenance_interval_secs: 0,
            ..StoreConfig::in_dir(data_dir)
        };
        let files = DataFiles::open_read_only(&config.data_dir)?;
        Self::open_with(config, files).await
    }

    async fn open_with(config: StoreConfig, files: DataFiles) -> Result<Store> {
        let ctx = SessionContext::new();
        ctx.register_object_store(files.url().as_ref(), files.object_store());
        ctx.register_udaf(udf::merge_sketch());
        ctx.register_udf(udf::quantile());
        let mut tables = HashMap::new();
        for table in Table::ALL {
            for granularity in Granularity::ALL {
                let stored = Arc::new(StoredTable::new(
                    table_name(table, granularity),
                    schema::schema(table),
                    granularity,
                    MINUTE,
                    files.url().clone(),
                ));
                tables.insert((table, granularity), stored);
            }
        }
        let access_log = Arc::new(StoredTable::new(
            access_log::TABLE.to_string(),
            access_log::schema(),
            Granularity::Minute,
            access_log::TIME,
            files.url().clone(),
        ));
        let proxy_tables: HashMap<Granularity, Arc<StoredTable>> = Granularity::ALL
            .into_iter()
            .map(|granularity| {
                let stored = StoredTable::new(
                    proxy_table::proxy_table_name(granularity),
                    proxy_table::schema(),
                    granularity,
                    MINUTE,
                    files.url().clone(),
                );
                (granularity, Arc::new(stored))
            })
            .collect();
        crate::replace::prepare(&files).await?;
        let mut reopened = 0;
        for stored in tables
            .values()
            .chain(proxy_tables.values())
            .chain(std::iter::once(&access_log))
        {
            for file in files.list(&stored.name).await? {
                stored.add_file(file);
                reopened += 1;
            }
            ctx.register_table(stored.name.as_str(), stored.clone())?;
        }
        tracing::info!(files = reopened, data_dir = %config.data_dir.display(), "store opened");
        let interval = config.maintenance_interval_secs;
        let inner = Arc::new(Inner {
            config,
            files,
            tables,
            access_log,
            ctx,
            maintenance: tokio::sync::Mutex::new(()),
            memory_turns: tokio::sync::Mutex::new(()),
            proxy_metrics: crate::proxy_metrics::ProxyMetrics::default(),
            proxy_tables,
            span_cache: totals::SpanCache::new(totals::MAX_CACHED_TOTALS),
            live_groups: parking_lot::RwLock::new(Vec::new()),
            window_cache: totals::SpanCache::new(totals::MAX_CACHED_TOTALS / 4),
            moving: sliding::MovingSpans::default(),
            written: tokio::sync::watch::Sender::new(0),
        });
        if interval > 0 {
            tokio::spawn(maintain_in_background(
                Arc::downgrade(&inner),
                Duration::from_secs(interval),
            ));
        }
        Ok(Store { inner })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The proxies that report their own statistics, and those statistics.
    pub fn proxy_metrics(&self) -> &crate::proxy_metrics::ProxyMetrics {
        &self.inner.proxy_metrics
    }

    /// The DataFusion session with every table and the sketch functions registered.
    pub fn session(&self) -> &SessionContext {
        &self.inner.ctx
    }

    pub(crate) fn table(&self, table: Table, granularity: Granularity) -> &Arc<StoredTable> {
        &self.inner.tables[&(table, granularity)]
    }

    /// Replaces the snapshot of the minutes still open in the collector, so that reads
    /// see live figures. Rows of a minute later passed to `append_closed` must no longer
    /// appear in the next snapshot.
    pub fn publish_open(&self, rows: Vec<MetricRow>) {
        for table in Table::ALL {
            let batch = match batch::to_batch(table, &rows) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%error, table = table.name(), "open minutes not published");
                    continue;
                }
            };
            let batches = if batch.num_rows() == 0 {
                Vec::new()
            } else {
                vec![batch]
            };
            self.table(table, Granularity::Minute).set_open(batches);
        }
    }

    /// Reads of the minute tables ask `source` for the minutes not yet in files, instead of
    /// the batches `publish_open` sets. Services, instances and edges are read together,
    /// so that a topology's nodes and edges come from one moment; endpoints, the largest
    /// table, on their own.
    pub fn attach_open_source(&self, source: Arc<dyn OpenMinutes>) {
        let groups = [
            vec![
                Table::ServiceMinute,
                Table::InstanceMinute,
                Table::EdgeMinute,
            ],
            vec![Table::EndpointMinute],
        ];
        let mut live = Vec::new();
        for tables in groups {
            let group = LiveGroup::new(tables.clone(), source.clone());
            for table in tables {
                self.table(table, Granularity::Minute)
                    .open
                    .attach(table, group.clone());
            }
            live.push(group);
        }
        *self.inner.live_groups.write() = live;
    }

    /// Makes the next read of open minutes ask their source again.
    pub fn refresh_open(&self) {
        for group in self.inner.live_groups.read().iter() {
            group.refresh();
        }
    }

    /// Lets go of reads of open minutes kept past their freshness.
    pub fn expire_open(&self) {
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

    /// Waits for the turn to use a large amount of memory for a while (encoding and
    /// writing a closing minute); maintenance takes the same turns step by step. The
    /// binary hears of the turn (`StoreConfig::memory_hint`) while it is held.
    pub async fn memory_turn(&self) -> MemoryTurn<'_> {
        let turn = self.inner.memory_turns.lock().await;
        MemoryTurn {
            _hint: MemoryHint::start(self.inner.config.memory_hint),
            _turn: turn,
        }
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
        let mut written: BTreeMap<Table, Vec<crate::files::FileEntry>> = BTreeMap::new();
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

    /// Changes each time closed minutes are written; holds the end of the newest one.
    pub fn minutes_written(&self) -> tokio::sync::watch::Receiver<EpochMillis> {
        self.inner.written.subscribe()
    }

    /// Whether no minute table holds a file yet: a new store, with nothing to read ahead.
    pub fn is_empty(&self) -> bool {
        !self.inner.tables.values().any(|stored| stored.has_files())
    }

    /// The minute spans kept moving, for `/metrics` and for tests.
    pub fn moving_spans(&self) -> Vec<sliding::KeptSpan> {
        self.inner.moving.kept()
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
        self.inner
            .moving
            .extend_at(table, &format!("{whole_table:?}"), first, |span| {
                let before = stored.files_overlapping(Some(span.start()), Some(first));
                if sliding::file_names(&before) != span.files() {
                    return Ok(());
                }
                span.push(end, batches)?;
                span.set_files(&stored.files_overlapping(Some(span.start()), Some(end)));
                Ok(())
            })
    }

    /// Writes `batch` as a new file of the hour `hour` of `stored` and makes it visible.
    pub(crate) async fn append_file(
        &self,
        stored: &StoredTable,
        hour: EpochMillis,
        batch: &datafusion::arrow::record_batch::RecordBatch,
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

    /// Per key, figures summed over the window, read from the coarsest tables that cover it.
    /// Sorted by key.
    pub async fn aggregate(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<Aggregate>> {
        let mut closed = Vec::new();
        let mut open = Vec::new();
        for (granularity, segment) in self.plan(table, range, filter) {
            for (span, is_closed) in self.split_at_open(table, granularity, segment) {
                if is_closed {
                    closed.push((granularity, span));
                } else {
                    open.push((granularity, span));
                }
            }
        }
        let base = self.closed_totals(table, &closed, filter).await?;
        let mut open_rows = Vec::new();
        for (_, span) in open {
            open_rows.extend(self.open_rows(table, span, filter).await?);
        }
        totals::with_open(table, &base, &open_rows)
    }

    /// The closed spans' totals taken together, sorted by key; kept for the next read of
    /// the same spans.
    async fn closed_totals(
        &self,
        table: Table,
        spans: &[(Granularity, TimeRange)],
        filter: &KeyFilter,
    ) -> Result<Arc<Vec<totals::SpanTotal>>> {
        let keys: Vec<totals::SpanKey> = spans
            .iter()
            .map(|(granularity, span)| self.span_key(table, *granularity, *span, filter))
            .collect();
        if let Some(hit) = self.inner.window_cache.get(&keys) {
            return Ok(hit);
        }
        let mut read = Vec::with_capacity(spans.len());
        for (granularity, span) in spans {
            let long = span.end - span.start > sliding::MAX_STEP_MINUTES * MINUTE_MS;
            read.push(if *granularity == Granularity::Minute && long {
                self.moving_totals(table, *span, filter).await?
            } else {
                self.span_totals(table, *granularity, *span, filter).await?
            });
        }
        // One span is already summed per key and sorted: sharing it spares a copy of
        // every total, which for a moving hour is most of what a minute turn costs.
        if let [only] = read.as_slice() {
            self.inner.window_cache.insert(keys, only.clone());
            return Ok(only.clone());
        }
        let totals = Arc::new(totals::combine(read.iter().flat_map(|t| t.iter())));
        self.inner.window_cache.insert(keys, totals.clone());
        Ok(totals)
    }

    /// A closed minute span's totals, moved on from a kept span that ends or starts a few
    /// minutes earlier when there is one, else read minute by minute into a span kept for
    /// the next read. Falls back to one fold of the whole span when the files changed under
    /// it while it moved.
    async fn moving_totals(
        &self,
        table: Table,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Arc<Vec<totals::SpanTotal>>> {
        let key = self.span_key(table, Granularity::Minute, span, filter);
        if let Some(totals) = self.inner.span_cache.get(&key) {
            return Ok(totals);
        }
        let filter_text = format!("{filter:?}");
        // One move of a table's spans at a time: a read that came while the span it wants
        // was out being moved would otherwise fold the whole span afresh.
        let lane = self.inner.moving.lane(table, &filter_text);
        let _moving = lane.lock().await;
        if let Some(totals) = self.inner.span_cache.get(&key) {
            return Ok(totals);
        }
        let stored = self.table(table, Granularity::Minute);
        let kept = self
            .inner
            .moving
            .take_nearest(table, &filter_text, span.start, span.end)
            .filter(|kept| {
                let now = stored.files_overlapping(Some(kept.start()), Some(kept.end()));
                sliding::file_names(&now) == kept.files()
            });
        let mut moving =
            kept.unwrap_or_else(|| sliding::MovingSpan::new(table, filter_text, span.start));
        // Every file the move reads, before and after: a file landing in between (a late
        // minute's rows) would leave the kept span short of it.
        let from = moving.start();
        let reach = || stored.files_overlapping(Some(from), Some(span.end));
        let before = sliding::file_names(&reach());
        let moved = self.move_span(&mut moving, span, filter).await;
        let after = reach();
        let unchanged = sliding::file_names(&after) == before;
        match moved {
            Ok(()) if unchanged => {
                moving.set_files(&stored.files_overlapping(Some(span.start), Some(span.end)));
                let totals = Arc::new(moving.totals());
                self.inner.moving.keep(moving);
                self.inner.span_cache.insert(key, totals.clone());
                Ok(totals)
            }
            moved => {
                if let Err(error) = moved {
                    tracing::warn!(%error, table = table.name(), "a moving total was read afresh");
                }
                self.span_totals(table, Granularity::Minute, span, filter)
                    .await
            }
        }
    }

    /// Moves `moving` to `span`: the rows of the minutes before `span.start` taken out,
    /// the rows of the minutes up to `span.end` added. The two scans run side by side: a
    /// one-minute scan waits on opening its files more than on the cores.
    async fn move_span(
        &self,
        moving: &mut sliding::MovingSpan,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<()> {
        let table = moving.table();
        let gone = (moving.start() < span.start).then(|| TimeRange {
            start: moving.start(),
            end: span.start.min(moving.end()),
        });
        let added = (moving.end() < span.end).then(|| TimeRange {
            start: moving.end(),
            end: span.end,
        });
        let read = |range: Option<TimeRange>| async move {
            match range {
                Some(range) => self.rows_in(table, range, filter).await.map(Some),
                None => Ok(None),
            }
        };
        let (gone, added) = futures::try_join!(read(gone), read(added))?;
        if let Some(rows) = gone {
            moving.drop_before(span.start, &rows)?;
        }
        if let Some(rows) = added {
            moving.push(span.end, &rows)?;
        }
        Ok(())
    }

    /// The closed minute rows of `range` that pass `filter`, as scanned, both cores decoding.
    async fn rows_in(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<RecordBatch>> {
        let streams = self.scan(table, Granularity::Minute, range, filter).await?;
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|stream| tokio::spawn(futures::TryStreamExt::try_collect::<Vec<_>>(stream)))
            .collect();
        let mut batches = Vec::new();
        for task in tasks {
            let read = task.await.map_err(|e| {
                crate::error::Error::InvalidQuery(format!("a read task failed: {e}"))
            })??;
            batches.extend(read);
        }
        Ok(batches)
    }

    /// Splits a minute span where the open snapshot starts: the part before holds closed
    /// minutes only (`true`), whose totals can be kept; the rest changes with every publish.
    fn split_at_open(
        &self,
        table: Table,
        granularity: Granularity,
        span: TimeRange,
    ) -> Vec<(TimeRange, bool)> {
        if granularity != Granularity::Minute {
            return vec![(span, true)];
        }
        match self.table(table, granularity).open_start() {
            Some(open) if open <= span.start => vec![(span, false)],
            Some(open) if open < span.end => vec![
                (
                    TimeRange {
                        start: span.start,
                        end: open,
                    },
                    true,
                ),
                (
                    TimeRange {
                        start: open,
                        end: span.end,
                    },
                    false,
                ),
            ],
            _ => vec![(span, true)],
        }
    }

    /// The rows of an open minute span: from memory when no file holds any of them, as
    /// they usually are, else scanned.
    async fn open_rows(
        &self,
        table: Table,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<RecordBatch>> {
        match self.open_only(table, Granularity::Minute, span, filter)? {
            Some(batches) => Ok(batches),
            None => self.rows_in(table, span, filter).await,
        }
    }

    async fn span_totals(
        &self,
        table: Table,
        granularity: Granularity,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Arc<Vec<totals::SpanTotal>>> {
        let rollup = granularity != Granularity::Minute;
        let key = self.span_key(table, granularity, span, filter);
        if let Some(totals) = self.inner.span_cache.get(&key) {
            return Ok(totals);
        }
        let totals = match self.open_only(table, granularity, span, filter)? {
            Some(batches) => Arc::new(totals::fold_batches(table, &batches)?),
            None => {
                let streams = self.scan(table, granularity, span, filter).await?;
                Arc::new(totals::fold_streams(table, streams, rollup).await?)
            }
        };
        self.inner.span_cache.insert(key, totals.clone());
        Ok(totals)
    }

    /// A minute span's rows when no file holds any of them, i.e. the open minutes, taken
    /// straight from memory and filtered here. A dashboard reads the open minute on every
    /// refresh: planning and running a DataFusion scan for a few thousand rows in memory
    /// cost more than the fold itself.
    fn open_only(
        &self,
        table: Table,
        granularity: Granularity,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Option<Vec<RecordBatch>>> {
        if granularity != Granularity::Minute {
            return Ok(None);
        }
        let stored = self.table(table, granularity);
        let Some(batches) = stored.open_rows_alone(span.start, span.end)? else {
            return Ok(None);
        };
        let mut predicate = col(MINUTE)
            .gt_eq(timestamp(span.start))
            .and(col(MINUTE).lt(timestamp(span.end)));
        if let Some(keys) = key_predicate(table, filter) {
            predicate = predicate.and(keys);
        }
        let schema = datafusion::common::DFSchema::try_from(stored.schema.as_ref().clone())?;
        let predicate = self
            .inner
            .ctx
            .state()
            .create_physical_expr(predicate, &schema)?;
        batches
            .iter()
            .map(|batch| {
                let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
                let mask =
                    datafusion::arrow::array::AsArray::as_boolean_opt(&mask).ok_or_else(|| {
                        crate::error::Error::InvalidQuery("a filter that is not boolean".into())
                    })?;
                Ok(datafusion::arrow::compute::filter_record_batch(
                    batch, mask,
                )?)
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// What identifies a span's totals, down to the files that hold its rows.
    fn span_key(
        &self,
        table: Table,
        granularity: Granularity,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> totals::SpanKey {
        totals::SpanKey {
            table,
            granularity,
            start: span.start,
            end: span.end,
            filter: format!("{filter:?}"),
            files: sliding::file_names(
                &self
                    .table(table, granularity)
                    .files_overlapping(Some(span.start), Some(span.end)),
            ),
        }
    }

    /// The rows of one granularity in `range` that pass `filter`, with the columns a
    /// total needs, as one stream per partition of the scan.
    async fn scan(
        &self,
        table: Table,
        granularity: Granularity,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<SendableRecordBatchStream>> {
        let df = self.window_frame(table, granularity, range, filter).await?;
        let mut columns: Vec<&str> = vec![MINUTE, SIDE, LATENCY];
        columns.extend(key_columns(table));
        columns.extend(COUNTERS);
        Ok(df
            .select_columns(&columns)?
            .execute_stream_partitioned()
            .await?)
    }

    /// Per key, one point per minute that has data, in time order. Minutes only: windows
    /// longer than the minute retention lose their oldest points.
    pub async fn series(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<(RowKey, Vec<SeriesPoint>)>> {
        let mut points = BTreeMap::new();
        self.chosen(table, Granularity::Minute, range, filter, &mut points)
            .await?;
        Ok(points
            .into_iter()
            .map(|(key, points)| (key, points.into_values().collect()))
            .collect())
    }

    /// Splits a window into spans each read from one granularity: whole days that have a
    /// day rollup, whole hours that have an hour rollup, minutes for the rest. Reads of one
    /// side only stay on minutes, because rollups keep the client side net of the server.
    pub(crate) fn plan(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Vec<(Granularity, TimeRange)> {
        if filter.side.is_some() {
            return vec![(Granularity::Minute, range)];
        }
        plan_over(
            self.table(table, Granularity::Hour),
            self.table(table, Granularity::Day),
            range,
        )
    }

    /// Per key and bucket: for minutes, the server side's figures when it reported, else
    /// the client's; for rollups, both rows added (the client row is net of the server).
    async fn chosen(
        &self,
        table: Table,
        granularity: Granularity,
        range: TimeRange,
        filter: &KeyFilter,
        chosen: &mut BTreeMap<RowKey, BTreeMap<EpochMillis, SeriesPoint>>,
    ) -> Result<()> {
        let keys = key_columns(table);
        let df = self.window_frame(table, granularity, range, filter).await?;
        let mut group_by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
        group_by.push(col(MINUTE));
        group_by.push(col(SIDE));
        let mut aggregates: Vec<Expr> = COUNTERS.iter().map(|c| sum(col(*c)).alias(*c)).collect();
        aggregates.push(udf::merge_sketch().call(vec![col(LATENCY)]).alias(LATENCY));
        let batches = df.aggregate(group_by, aggregates)?.collect().await?;

        let add_sides = granularity != Granularity::Minute;
        for batch in &batches {
            for row in 0..batch.num_rows() {
                let key = batch::key_at(table, batch, row)?;
                let minute = batch::minute_at(batch, row)?;
                let side = batch::side_at(batch, row)?;
                let metrics = batch::metrics_at(batch, row)?;
                let points = chosen.entry(key).or_default();
                match points.get_mut(&minute) {
                    None => {
                        points.insert(
                            minute,
                            SeriesPoint {
                                minute,
                                detected_by: side,
                                metrics,
                            },
                        );
                    }
                    Some(existing) if add_sides => {
                        existing.metrics.merge(&metrics);
                        if side == Side::Server {
                            existing.detected_by = Side::Server;
                        }
                    }
                    // The client's view of calls the server reported would count them twice.
                    Some(existing) if side == Side::Server => {
                        *existing = SeriesPoint {
                            minute,
                            detected_by: side,
                            metrics,
                        };
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// Splits a window into spans each read from one granularity: whole days that have a
/// day rollup, whole hours that have an hour rollup, minutes for the rest.
pub(crate) fn plan_over(
    hours: &StoredTable,
    days: &StoredTable,
    range: TimeRange,
) -> Vec<(Granularity, TimeRange)> {
    let mut segments: Vec<(Granularity, TimeRange)> = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let (granularity, next) =
            if at.rem_euclid(DAY_MS) == 0 && at + DAY_MS <= range.end && days.has_partition(at) {
                (Granularity::Day, at + DAY_MS)
            } else if at.rem_euclid(HOUR_MS) == 0
                && at + HOUR_MS <= range.end
                && hours.has_partition(at)
            {
                (Granularity::Hour, at + HOUR_MS)
            } else {
                let next_hour = (at.div_euclid(HOUR_MS) + 1) * HOUR_MS;
                (Granularity::Minute, next_hour.min(range.end))
            };
        match segments.last_mut() {
            Some((last, span)) if *last == granularity && span.end == at => span.end = next,
            _ => segments.push((
                granularity,
                TimeRange {
                    start: at,
                    end: next,
                },
            )),
        }
        at = next;
    }
    segments
}

/// A turn to use a large amount of memory, held until dropped.
pub struct MemoryTurn<'a> {
    // Dropped first: the hint ends before the next turn can start.
    _hint: MemoryHint,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

/// Tells the binary a large, short use of memory runs, for as long as it is held.
pub(crate) struct MemoryHint(Option<fn(bool)>);

impl MemoryHint {
    pub(crate) fn start(hint: Option<fn(bool)>) -> MemoryHint {
        if let Some(hint) = hint {
            hint(true);
        }
        MemoryHint(hint)
    }
}

impl Drop for MemoryHint {
    fn drop(&mut self) {
        if let Some(hint) = self.0 {
            hint(false);
        }
    }
}

async fn maintain_in_background(inner: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = Store { inner };
        let now = chrono::Utc::now().timestamp_millis();
        match store.maintain(now).await {
            Ok(report) => tracing::debug!(?report, "storage maintenance"),
            Err(error) => tracing::warn!(%error, "storage maintenance failed"),
        }
    }
}

pub(crate) fn timestamp(ms: EpochMillis) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

fn service_is(prefix: &str, service: &ServiceRef) -> Expr {
    col(format!("{prefix}_namespace"))
        .eq(lit(service.namespace.clone()))
        .and(col(format!("{prefix}_name")).eq(lit(service.name.clone())))
        .and(col(format!("{prefix}_kind")).eq(lit(service.kind.as_str())))
}

fn key_predicate(table: Table, filter: &KeyFilter) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(service) = &filter.service {
        parts.push(match table {
            Table::EdgeMinute => service_is("source", service).or(service_is("target", service)),
            _ => service_is("service", service),
        });
    }
    if table == Table::EdgeMinute {
        if let Some(source) = &filter.source {
            parts.push(service_is("source", source));
        }
        if let Some(target) = &filter.target {
            parts.push(service_is("target", target));
        }
    }
    if let Some(name) = &filter.name {
        match table {
            Table::InstanceMinute => parts.push(col("instance").eq(lit(name.clone()))),
            Table::EndpointMinute => parts.push(col("endpoint").eq(lit(name.clone()))),
            _ => {}
        }
    }
    if let Some(side) = filter.side {
        parts.push(col(SIDE).eq(lit(side.as_str())));
    }
    parts.into_iter().reduce(Expr::and)
}
