//! The read planner: how `aggregate` and `series` answer a window. A window is split into
//! spans each read from one granularity (days, hours, minutes), minute spans are split
//! again where the live minutes start, closed spans are folded into totals kept in
//! `totals_cache` (long minute spans moved on from a kept span, in `moving_reads`), and
//! live spans are folded from memory and added last.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_plan::SendableRecordBatchStream;

use super::Store;
use super::totals_cache::SpanKey;
use crate::batch;
use crate::error::{Error, Result};
use crate::files::{DAY_MS, Granularity, HOUR_MS};
use crate::model::{EpochMillis, MINUTE_MS, RowKey, ServiceRef, Side, Table};
use crate::read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};
use crate::schema::{COUNTERS, LATENCY, MINUTE, OVERHEAD, SIDE, key_columns};
use crate::sliding;
use crate::table::StoredTable;
use crate::totals;
use crate::udf;

use super::table_name;

impl Store {
    /// Per key, figures summed over the window, read from the coarsest tables that cover it.
    /// Sorted by key. A file gone since the last listing is listed again once
    /// (`missing_files`).
    pub async fn aggregate(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<Aggregate>> {
        self.read_relisting_once(|| self.aggregate_as_listed(table, range, filter))
            .await
    }

    async fn aggregate_as_listed(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<Aggregate>> {
        let mut closed = Vec::new();
        let mut live = Vec::new();
        let plan = self.plan(table, range, filter);
        // A side's read whose spans are the whole table's folds them with it, once.
        let both_sides = KeyFilter {
            side: None,
            ..filter.clone()
        };
        let sides_together = filter.side.is_none() || plan == self.plan(table, range, &both_sides);
        for (granularity, segment) in plan {
            for (span, is_closed) in self.split_at_live(table, granularity, segment) {
                if is_closed {
                    closed.push((granularity, span));
                } else {
                    live.push((granularity, span));
                }
            }
        }
        let base = self
            .closed_totals(table, &closed, filter, sides_together)
            .await?;
        let mut live_rows = Vec::new();
        for (_, span) in live {
            live_rows.extend(self.live_rows(table, span, filter).await?);
        }
        totals::with_live(table, &base, &live_rows)
    }

    /// The closed spans' totals taken together, sorted by key; kept for the next read of
    /// the same spans. With `sides_together`, long minute spans are folded for every side
    /// at once (see `moving_totals`).
    async fn closed_totals(
        &self,
        table: Table,
        spans: &[(Granularity, TimeRange)],
        filter: &KeyFilter,
        sides_together: bool,
    ) -> Result<Arc<Vec<totals::SpanTotal>>> {
        let keys: Vec<SpanKey> = spans
            .iter()
            .map(|(granularity, span)| self.span_key(table, *granularity, *span, filter))
            .collect();
        if let Some(hit) = self.inner.window_totals_cache.get(&keys) {
            return Ok(hit);
        }
        let mut read = Vec::with_capacity(spans.len());
        for (granularity, span) in spans {
            let long = span.end - span.start > sliding::MAX_STEP_MINUTES * MINUTE_MS;
            read.push(if *granularity == Granularity::Minute && long {
                self.moving_totals(table, *span, filter, sides_together)
                    .await?
            } else {
                self.span_totals(table, *granularity, *span, filter).await?
            });
        }
        // One span is already summed per key and sorted: sharing it spares a copy of
        // every total, which for a moving hour is most of what a minute turn costs.
        if let [only] = read.as_slice() {
            self.inner.window_totals_cache.insert(keys, only.clone());
            return Ok(only.clone());
        }
        let totals = Arc::new(totals::combine(read.iter().flat_map(|t| t.iter())));
        self.inner.window_totals_cache.insert(keys, totals.clone());
        Ok(totals)
    }

    /// The closed minute rows of `range` that pass `filter`, as scanned, both cores decoding.
    pub(super) async fn rows_in(
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
            let read = task
                .await
                .map_err(|e| Error::InvalidQuery(format!("a read task failed: {e}")))??;
            batches.extend(read);
        }
        Ok(batches)
    }

    /// Splits a minute span where the live minutes start: the part before holds closed
    /// minutes only (`true`), whose totals can be kept; the rest changes with every publish.
    fn split_at_live(
        &self,
        table: Table,
        granularity: Granularity,
        span: TimeRange,
    ) -> Vec<(TimeRange, bool)> {
        if granularity != Granularity::Minute {
            return vec![(span, true)];
        }
        match self.table(table, granularity).live_start() {
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

    /// The rows of a live minute span: from memory when no file holds any of them, as
    /// they usually are, else scanned.
    async fn live_rows(
        &self,
        table: Table,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<RecordBatch>> {
        match self.live_rows_in_memory(table, Granularity::Minute, span, filter)? {
            Some(batches) => Ok(batches),
            None => self.rows_in(table, span, filter).await,
        }
    }

    pub(super) async fn span_totals(
        &self,
        table: Table,
        granularity: Granularity,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Arc<Vec<totals::SpanTotal>>> {
        let rollup = granularity != Granularity::Minute;
        let key = self.span_key(table, granularity, span, filter);
        if let Some(totals) = self.inner.span_totals_cache.get(&key) {
            return Ok(totals);
        }
        let totals = match self.live_rows_in_memory(table, granularity, span, filter)? {
            Some(batches) => Arc::new(totals::fold_batches(table, &batches)?),
            None => {
                let streams = self.scan(table, granularity, span, filter).await?;
                Arc::new(totals::fold_streams(table, streams, rollup).await?)
            }
        };
        self.inner.span_totals_cache.insert(key, totals.clone());
        Ok(totals)
    }

    /// A minute span's rows when no file holds any of them, i.e. the live minutes, taken
    /// straight from memory and filtered here. A dashboard reads the live minute on every
    /// refresh: planning and running a DataFusion scan for a few thousand rows in memory
    /// cost more than the fold itself.
    fn live_rows_in_memory(
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
        let Some(batches) = stored.live_rows_alone(span.start, span.end)? else {
            return Ok(None);
        };
        if batches.iter().all(|batch| batch.num_rows() == 0) {
            return Ok(Some(Vec::new()));
        }
        let mut predicate = col(MINUTE)
            .gt_eq(timestamp(span.start))
            .and(col(MINUTE).lt(timestamp(span.end)));
        if let Some(keys) = key_predicate(table, filter) {
            predicate = predicate.and(keys);
        }
        let schema = datafusion::common::DFSchema::try_from(stored.schema.as_ref().clone())?;
        let predicate = self
            .session()
            .state()
            .create_physical_expr(predicate, &schema)?;
        batches
            .iter()
            .map(|batch| {
                let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
                let mask = datafusion::arrow::array::AsArray::as_boolean_opt(&mask)
                    .ok_or_else(|| Error::InvalidQuery("a filter that is not boolean".into()))?;
                Ok(datafusion::arrow::compute::filter_record_batch(
                    batch, mask,
                )?)
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// What identifies a span's totals, down to the files that hold its rows.
    pub(super) fn span_key(
        &self,
        table: Table,
        granularity: Granularity,
        span: TimeRange,
        filter: &KeyFilter,
    ) -> SpanKey {
        SpanKey {
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
        let stored = self.table(table, granularity);
        // Rollups have no live rows: with no file in the range there is nothing to plan.
        if granularity != Granularity::Minute
            && stored
                .files_overlapping(Some(range.start), Some(range.end))
                .is_empty()
        {
            return Ok(Vec::new());
        }
        let df = self.window_frame(table, granularity, range, filter).await?;
        let mut columns: Vec<&str> = vec![MINUTE, SIDE, LATENCY, OVERHEAD];
        columns.extend(key_columns(table));
        columns.extend(COUNTERS);
        Ok(df
            .select_columns(&columns)?
            .execute_stream_partitioned()
            .await?)
    }

    /// Per key, one point per minute that has data, in time order. Minutes only: windows
    /// longer than the minute retention lose their oldest points. A file gone since the
    /// last listing is listed again once (`missing_files`).
    pub async fn series(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<(RowKey, Vec<SeriesPoint>)>> {
        self.read_relisting_once(|| self.series_as_listed(table, range, filter))
            .await
    }

    async fn series_as_listed(
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
    /// day rollup, whole hours that have an hour rollup, minutes for the rest. Reads of the
    /// client side alone stay on minutes, because rollups keep the client side net of the
    /// server; the server side's rollup rows are whole, and are read like any other.
    pub(crate) fn plan(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Vec<(Granularity, TimeRange)> {
        if filter.side == Some(Side::Client) {
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
        aggregates.push(
            udf::merge_sketch()
                .call(vec![col(OVERHEAD)])
                .alias(OVERHEAD),
        );
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

    /// A table's rows within `range` that match `filter`.
    async fn window_frame(
        &self,
        table: Table,
        granularity: Granularity,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let df = self
            .session()
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

/// A literal of the `minute` columns' type: a UTC timestamp in milliseconds.
pub(crate) fn timestamp(ms: EpochMillis) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

/// Whether the service columns starting with `prefix` name `service`.
fn service_is(prefix: &str, service: &ServiceRef) -> Expr {
    col(format!("{prefix}_namespace"))
        .eq(lit(service.namespace.clone()))
        .and(col(format!("{prefix}_name")).eq(lit(service.name.clone())))
        .and(col(format!("{prefix}_kind")).eq(lit(service.kind.as_str())))
}

/// The filter as a predicate on `table`'s key columns; `None` matches every row.
fn key_predicate(table: Table, filter: &KeyFilter) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(service) = &filter.service {
        parts.push(match table {
            Table::EdgeMinute | Table::InstancePairMinute => {
                service_is("source", service).or(service_is("target", service))
            }
            _ => service_is("service", service),
        });
    }
    if matches!(table, Table::EdgeMinute | Table::InstancePairMinute)
        && let Some(source) = &filter.source
    {
        parts.push(service_is("source", source));
    }
    if matches!(
        table,
        Table::EdgeMinute | Table::DependencyMinute | Table::InstancePairMinute
    ) && let Some(target) = &filter.target
    {
        parts.push(service_is("target", target));
    }
    if let Some(name) = &filter.name {
        match table {
            Table::InstanceMinute => parts.push(col("instance").eq(lit(name.clone()))),
            Table::EndpointMinute | Table::DependencyMinute => {
                parts.push(col("endpoint").eq(lit(name.clone())))
            }
            _ => {}
        }
    }
    if table == Table::DependencyMinute
        && let Some(name) = &filter.target_name
    {
        parts.push(col("target_endpoint").eq(lit(name.clone())));
    }
    if let Some(side) = filter.side {
        parts.push(col(SIDE).eq(lit(side.as_str())));
    }
    parts.into_iter().reduce(Expr::and)
}
