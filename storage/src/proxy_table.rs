//! The `proxy_metrics_minute`, `_hour` and `_day` tables: proxies' own statistics as
//! Parquet files in the same layout as the other tables. This module holds their
//! schema, the rows' Arrow form and the merging of rows per series and bucket; the store
//! writes and reads the tables in `store::proxy_tables`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{Expr, col, lit};

use crate::error::{Error, Result};
use crate::files::Granularity;
use crate::model::EpochMillis;
use crate::proxy_row::{ProxyMetricKind, ProxyMetricRow};
use crate::schema::{MINUTE, minute_type};

/// `proxy_metrics_minute`, `proxy_metrics_hour`, `proxy_metrics_day`.
pub fn proxy_table_name(granularity: Granularity) -> String {
    format!("proxy_metrics_{}", granularity.suffix())
}

const STRINGS: [&str; 6] = ["proxy", "service", "name", "cluster", "upstream", "kind"];
pub(crate) const BUCKET_LE: &str = "bucket_le";
pub(crate) const BUCKET_COUNT: &str = "bucket_count";

pub(crate) fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![Field::new(MINUTE, minute_type(), false)];
            fields.extend(
                STRINGS
                    .iter()
                    .map(|n| Field::new(*n, DataType::Utf8, false)),
            );
            fields.push(Field::new("value", DataType::Float64, false));
            fields.push(Field::new("count", DataType::UInt64, false));
            fields.push(Field::new("sum", DataType::Float64, false));
            fields.push(Field::new("min", DataType::Float64, true));
            fields.push(Field::new("max", DataType::Float64, true));
            fields.push(Field::new_list(
                BUCKET_LE,
                Field::new_list_field(DataType::Float64, true),
                false,
            ));
            fields.push(Field::new_list(
                BUCKET_COUNT,
                Field::new_list_field(DataType::UInt64, true),
                false,
            ));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

pub(crate) fn to_batch<'a>(
    rows: impl IntoIterator<Item = &'a ProxyMetricRow>,
) -> Result<RecordBatch> {
    let mut minute = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut strings: Vec<StringBuilder> = STRINGS.iter().map(|_| StringBuilder::new()).collect();
    let mut value = Float64Builder::new();
    let mut count = UInt64Builder::new();
    let mut sum = Float64Builder::new();
    let mut min = Float64Builder::new();
    let mut max = Float64Builder::new();
    let mut bucket_le = ListBuilder::new(Float64Builder::new());
    let mut bucket_count = ListBuilder::new(UInt64Builder::new());
    for row in rows {
        minute.append_value(row.minute);
        let texts = [
            row.proxy.as_str(),
            &row.service,
            &row.name,
            &row.cluster,
            &row.upstream,
            row.kind.name(),
        ];
        for (builder, text) in strings.iter_mut().zip(texts) {
            builder.append_value(text);
        }
        value.append_value(row.value);
        count.append_value(row.count);
        sum.append_value(row.sum);
        let gauge = row.kind == ProxyMetricKind::Gauge;
        min.append_option(gauge.then_some(row.min));
        max.append_option(gauge.then_some(row.max));
        for (bound, cumulative) in &row.buckets {
            bucket_le.values().append_value(*bound);
            bucket_count.values().append_value(*cumulative);
        }
        bucket_le.append(true);
        bucket_count.append(true);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(minute.finish())];
    columns.extend(strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(value.finish()));
    columns.push(Arc::new(count.finish()));
    columns.push(Arc::new(sum.finish()));
    columns.push(Arc::new(min.finish()));
    columns.push(Arc::new(max.finish()));
    columns.push(Arc::new(bucket_le.finish()));
    columns.push(Arc::new(bucket_count.finish()));
    Ok(RecordBatch::try_new(schema(), columns)?)
}

pub(crate) fn from_batch(batch: &RecordBatch) -> Result<Vec<ProxyMetricRow>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::InvalidQuery(format!("proxy_metrics has no column {name}")))
    };
    let minute = column(MINUTE)?
        .as_primitive_opt::<datafusion::arrow::datatypes::TimestampMillisecondType>()
        .ok_or_else(|| Error::InvalidQuery("proxy_metrics minute is not a timestamp".into()))?;
    let strings = STRINGS
        .iter()
        .map(|name| column(name).map(|c| c.as_string::<i32>().clone()))
        .collect::<Result<Vec<_>>>()?;
    let float = |name: &str| column(name).map(|c| c.as_primitive::<Float64Type>().clone());
    let (value, sum, min, max) = (float("value")?, float("sum")?, float("min")?, float("max")?);
    let count = column("count")?.as_primitive::<UInt64Type>().clone();
    let bucket_le = column(BUCKET_LE)?.as_list::<i32>().clone();
    let bucket_count = column(BUCKET_COUNT)?.as_list::<i32>().clone();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let text = |c: usize| strings[c].value(i).to_string();
        let kind = ProxyMetricKind::parse(strings[5].value(i))
            .ok_or_else(|| Error::InvalidQuery(format!("unknown kind {}", strings[5].value(i))))?;
        let bounds = bucket_le.value(i);
        let counts = bucket_count.value(i);
        let bounds = bounds.as_primitive::<Float64Type>();
        let counts = counts.as_primitive::<UInt64Type>();
        let buckets = (0..bounds.len().min(counts.len()))
            .map(|b| (bounds.value(b), counts.value(b)))
            .collect();
        let or_zero = |a: &datafusion::arrow::array::Float64Array| {
            if a.is_null(i) { 0.0 } else { a.value(i) }
        };
        rows.push(ProxyMetricRow {
            minute: minute.value(i),
            proxy: text(0),
            service: text(1),
            name: text(2),
            cluster: text(3),
            upstream: text(4),
            kind,
            value: value.value(i),
            count: count.value(i),
            sum: sum.value(i),
            min: or_zero(&min),
            max: or_zero(&max),
            buckets,
        });
    }
    Ok(rows)
}

/// Rolls rows into buckets of `bucket_ms`, merging each series in time order, so gauges
/// keep their last value and the extremes of the bucket.
#[cfg(test)]
fn roll_up(mut rows: Vec<ProxyMetricRow>, bucket_ms: EpochMillis) -> Vec<ProxyMetricRow> {
    rows.sort_by_key(|r| r.minute);
    merge_series(rows, bucket_ms)
}

type Series = (EpochMillis, String, String, String);

/// Rows merged per series and bucket, sorted by proxy, name, cluster and time; input in
/// time order.
pub(crate) fn merge_series(
    rows: Vec<ProxyMetricRow>,
    bucket_ms: EpochMillis,
) -> Vec<ProxyMetricRow> {
    let mut merged = SeriesBuckets::new(bucket_ms);
    for row in rows {
        merged.add(row);
    }
    merged.into_rows()
}

/// Rows merged per series and bucket as they come; they must come in time order, for a
/// gauge keeps its last value.
pub(crate) struct SeriesBuckets {
    bucket_ms: EpochMillis,
    merged: BTreeMap<Series, ProxyMetricRow>,
}

impl SeriesBuckets {
    pub(crate) fn new(bucket_ms: EpochMillis) -> SeriesBuckets {
        SeriesBuckets {
            bucket_ms,
            merged: BTreeMap::new(),
        }
    }

    pub(crate) fn add(&mut self, mut row: ProxyMetricRow) {
        row.minute = row.minute.div_euclid(self.bucket_ms) * self.bucket_ms;
        let key = (
            row.minute,
            row.proxy.clone(),
            row.name.clone(),
            row.cluster.clone(),
        );
        match self.merged.get_mut(&key) {
            Some(existing) => existing.merge(&row),
            None => {
                self.merged.insert(key, row);
            }
        }
    }

    /// Sorted by proxy, name, cluster and time.
    pub(crate) fn into_rows(self) -> Vec<ProxyMetricRow> {
        let mut rows: Vec<ProxyMetricRow> = self.merged.into_values().collect();
        rows.sort_by(|a, b| {
            (&a.proxy, &a.name, &a.cluster, a.minute)
                .cmp(&(&b.proxy, &b.name, &b.cluster, b.minute))
        });
        rows
    }
}

/// Which proxy rows a read wants; empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct ProxyFilter {
    pub proxy: Option<String>,
    pub service: Option<String>,
    pub names: Vec<String>,
    /// Only rows whose cluster leads to a known service.
    pub with_upstream: bool,
}

impl ProxyFilter {
    /// The filter as a predicate on the proxy table's columns; `None` matches all rows.
    pub(crate) fn predicate(&self) -> Option<Expr> {
        let mut parts = Vec::new();
        if let Some(proxy) = &self.proxy {
            parts.push(col("proxy").eq(lit(proxy.clone())));
        }
        if let Some(service) = &self.service {
            parts.push(col("service").eq(lit(service.clone())));
        }
        if !self.names.is_empty() {
            parts.push(
                col("name").in_list(self.names.iter().map(|n| lit(n.clone())).collect(), false),
            );
        }
        if self.with_upstream {
            parts.push(col("upstream").not_eq(lit("")));
        }
        parts.into_iter().reduce(Expr::and)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::MINUTE_MS;

    fn histogram(minute: EpochMillis, count: u64, buckets: Vec<(f64, u64)>) -> ProxyMetricRow {
        ProxyMetricRow {
            minute,
            proxy: "p".into(),
            name: "upstream_rq_time".into(),
            ..ProxyMetricRow::histogram(count, count as f64, buckets)
        }
    }

    #[test]
    fn rows_survive_the_batch_round_trip() {
        let mut gauge = ProxyMetricRow::gauge(3.0);
        gauge.name = "membership_healthy".into();
        gauge.upstream = "shop/backend".into();
        let rows = vec![histogram(MINUTE_MS, 4, vec![(1.0, 1), (5.0, 4)]), gauge];
        let batch = to_batch(&rows).unwrap();
        assert_eq!(batch.schema(), schema());
        assert_eq!(from_batch(&batch).unwrap(), rows);
    }

    #[test]
    fn rollups_merge_histograms_and_keep_the_last_gauge() {
        let mut early = ProxyMetricRow::gauge(5.0);
        early.minute = 0;
        let mut late = ProxyMetricRow::gauge(2.0);
        late.minute = 2 * MINUTE_MS;
        let rows = vec![
            late,
            histogram(MINUTE_MS, 4, vec![(1.0, 1), (5.0, 4)]),
            early,
            histogram(0, 2, vec![(1.0, 2), (5.0, 2)]),
        ];
        let rolled = roll_up(rows, crate::files::HOUR_MS);
        assert_eq!(rolled.len(), 2);
        let gauge = rolled
            .iter()
            .find(|r| r.kind == ProxyMetricKind::Gauge)
            .unwrap();
        assert_eq!(
            (gauge.value, gauge.min, gauge.max, gauge.count),
            (2.0, 2.0, 5.0, 2)
        );
        let hist = rolled
            .iter()
            .find(|r| r.kind == ProxyMetricKind::Histogram)
            .unwrap();
        assert_eq!(
            (hist.count, hist.buckets.clone()),
            (6, vec![(1.0, 3), (5.0, 6)])
        );
    }
}
