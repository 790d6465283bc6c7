//! The store: the write path the collector uses and the read path the query layer uses.
//! Closed minutes are kept as Arrow record batches; the collector's open minutes are a
//! snapshot that each publish replaces. Both are read through one DataFusion session.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use parking_lot::RwLock;

use crate::batch;
use crate::error::Result;
use crate::model::{EpochMillis, MetricRow, Metrics, RowKey, ServiceRef, Side, Table};
use crate::read::{Aggregate, KeyFilter, SeriesPoint, TimeRange};
use crate::schema::{self, COUNTERS, LATENCY, MINUTE, SIDE, key_columns};
use crate::udf;

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
}

impl StoreConfig {
    /// Defaults for everything but where the data lives.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
        }
    }
}

/// A minute table: closed batches plus the latest snapshot of open minutes.
#[derive(Debug)]
struct LiveTable {
    schema: SchemaRef,
    closed: RwLock<Vec<RecordBatch>>,
    open: RwLock<Vec<RecordBatch>>,
}

impl LiveTable {
    fn batches(&self) -> Vec<RecordBatch> {
        let mut all = self.closed.read().clone();
        all.extend(self.open.read().iter().cloned());
        all
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // A consistent view of this moment's batches; Arrow arrays are shared, not copied.
        let table = MemTable::try_new(self.schema.clone(), vec![self.batches()])?;
        table.scan(state, projection, filters, limit).await
    }
}

pub struct Store {
    #[allow(dead_code)]
    config: StoreConfig,
    tables: HashMap<Table, Arc<LiveTable>>,
    ctx: SessionContext,
}

impl Store {
    pub async fn open(config: StoreConfig) -> Result<Store> {
        let ctx = SessionContext::new();
        ctx.register_udaf(udf::merge_sketch());
        ctx.register_udf(udf::quantile());
        let mut tables = HashMap::new();
        for table in Table::ALL {
            let live = Arc::new(LiveTable {
                schema: schema::schema(table),
                closed: RwLock::new(Vec::new()),
                open: RwLock::new(Vec::new()),
            });
            ctx.register_table(table.name(), live.clone())?;
            tables.insert(table, live);
        }
        Ok(Store {
            config,
            tables,
            ctx,
        })
    }

    /// The DataFusion session with every table and the sketch functions registered.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
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
            *self.tables[&table].open.write() = batches;
        }
    }

    /// Appends rows of minutes that are closed for good.
    pub async fn append_closed(&self, rows: Vec<MetricRow>) -> Result<()> {
        for table in Table::ALL {
            let batch = batch::to_batch(table, &rows)?;
            if batch.num_rows() > 0 {
                self.tables[&table].closed.write().push(batch);
            }
        }
        Ok(())
    }

    /// Per key, figures summed over the window.
    pub async fn aggregate(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<Aggregate>> {
        let mut by_key: BTreeMap<RowKey, Aggregate> = BTreeMap::new();
        for (key, minute_points) in self.chosen(table, range, filter).await? {
            let mut metrics = Metrics::default();
            let mut detected_by = Side::Client;
            for point in minute_points.into_values() {
                if point.detected_by == Side::Server {
                    detected_by = Side::Server;
                }
                metrics.merge(&point.metrics);
            }
            by_key.insert(
                key.clone(),
                Aggregate {
                    key,
                    detected_by,
                    metrics,
                },
            );
        }
        Ok(by_key.into_values().collect())
    }

    /// Per key, one point per minute that has data, in time order.
    pub async fn series(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<Vec<(RowKey, Vec<SeriesPoint>)>> {
        Ok(self
            .chosen(table, range, filter)
            .await?
            .into_iter()
            .map(|(key, points)| (key, points.into_values().collect()))
            .collect())
    }

    /// Per key and minute, the server side's figures when it reported, else the client's.
    async fn chosen(
        &self,
        table: Table,
        range: TimeRange,
        filter: &KeyFilter,
    ) -> Result<BTreeMap<RowKey, BTreeMap<EpochMillis, SeriesPoint>>> {
        let keys = key_columns(table);
        let mut df = self.ctx.table(table.name()).await?;
        df = df.filter(
            col(MINUTE)
                .gt_eq(timestamp(range.start))
                .and(col(MINUTE).lt(timestamp(range.end))),
        )?;
        if let Some(predicate) = key_predicate(table, filter) {
            df = df.filter(predicate)?;
        }
        let mut group_by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
        group_by.push(col(MINUTE));
        group_by.push(col(SIDE));
        let mut aggregates: Vec<Expr> = COUNTERS.iter().map(|c| sum(col(*c)).alias(*c)).collect();
        aggregates.push(udf::merge_sketch().call(vec![col(LATENCY)]).alias(LATENCY));
        let batches = df.aggregate(group_by, aggregates)?.collect().await?;

        let mut chosen: BTreeMap<RowKey, BTreeMap<EpochMillis, SeriesPoint>> = BTreeMap::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                let key = batch::key_at(table, batch, row)?;
                let minute = batch::minute_at(batch, row)?;
                let side = batch::side_at(batch, row)?;
                let metrics = batch::metrics_at(batch, row)?;
                let points = chosen.entry(key).or_default();
                match points.get(&minute) {
                    // The server already answered for this minute; the client's view of
                    // the same calls would count them twice.
                    Some(existing) if existing.detected_by == Side::Server => {}
                    _ if side == Side::Client && points.contains_key(&minute) => {}
                    _ => {
                        points.insert(
                            minute,
                            SeriesPoint {
                                minute,
                                detected_by: side,
                                metrics,
                            },
                        );
                    }
                }
            }
        }
        Ok(chosen)
    }
}

fn timestamp(ms: EpochMillis) -> Expr {
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
