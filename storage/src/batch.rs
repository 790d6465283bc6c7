//! Rows to Arrow record batches and back.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Builder, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{TimeUnit, TimestampMillisecondType, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::model::{
    EpochMillis, MetricRow, Metrics, NodeKind, Protocol, RowKey, ServiceRef, Side, Table,
};
use crate::schema::{self, COUNTER_COUNT, COUNTERS, key_columns};
use crate::sketch::LatencySketch;

fn counters(m: &Metrics) -> [u64; COUNTER_COUNT] {
    std::array::from_fn(|i| m.counter(i))
}

fn push_service(keys: &mut [StringBuilder], at: usize, s: &ServiceRef) {
    keys[at].append_value(&s.namespace);
    keys[at + 1].append_value(&s.name);
    keys[at + 2].append_value(s.kind.as_str());
}

/// A row's key with borrowed names, so that rows held under interned ids can be written
/// without copying their names first.
#[derive(Clone, Copy, Debug)]
pub enum KeyRef<'a> {
    Service {
        service: &'a ServiceRef,
    },
    Instance {
        service: &'a ServiceRef,
        instance: &'a str,
    },
    Endpoint {
        service: &'a ServiceRef,
        endpoint: &'a str,
    },
    Edge {
        source: &'a ServiceRef,
        target: &'a ServiceRef,
        protocol: Protocol,
    },
    Dependency {
        service: &'a ServiceRef,
        endpoint: &'a str,
        target: &'a ServiceRef,
        target_endpoint: &'a str,
    },
    InstancePair {
        source: &'a ServiceRef,
        source_instance: &'a str,
        target: &'a ServiceRef,
        target_instance: &'a str,
    },
}

impl<'a> KeyRef<'a> {
    pub fn of(key: &'a RowKey) -> Self {
        match key {
            RowKey::Service { service } => KeyRef::Service { service },
            RowKey::Instance { service, instance } => KeyRef::Instance { service, instance },
            RowKey::Endpoint { service, endpoint } => KeyRef::Endpoint { service, endpoint },
            RowKey::Edge {
                source,
                target,
                protocol,
            } => KeyRef::Edge {
                source,
                target,
                protocol: *protocol,
            },
            RowKey::Dependency {
                service,
                endpoint,
                target,
                target_endpoint,
            } => KeyRef::Dependency {
                service,
                endpoint,
                target,
                target_endpoint,
            },
            RowKey::InstancePair {
                source,
                source_instance,
                target,
                target_instance,
            } => KeyRef::InstancePair {
                source,
                source_instance,
                target,
                target_instance,
            },
        }
    }

    pub fn table(&self) -> Table {
        match self {
            KeyRef::Service { .. } => Table::ServiceMinute,
            KeyRef::Instance { .. } => Table::InstanceMinute,
            KeyRef::Endpoint { .. } => Table::EndpointMinute,
            KeyRef::Edge { .. } => Table::EdgeMinute,
            KeyRef::Dependency { .. } => Table::DependencyMinute,
            KeyRef::InstancePair { .. } => Table::InstancePairMinute,
        }
    }
}

/// Appends rows of one table and finishes them as a record batch.
pub struct RowBuilder {
    table: Table,
    minute: TimestampMillisecondBuilder,
    keys: Vec<StringBuilder>,
    side: StringBuilder,
    counters: Vec<UInt64Builder>,
    latency: BinaryBuilder,
    latency_count: UInt64Builder,
    latency_sum: Float64Builder,
    overhead: BinaryBuilder,
    sketch_bytes: Vec<u8>,
    rows: usize,
}

impl RowBuilder {
    pub fn new(table: Table) -> Self {
        Self::with_capacity(table, 0)
    }

    /// A builder with room for `rows` rows, so that a closing minute of known size is built
    /// without its buffers doubling past it: the slack of a doubled buffer is memory held
    /// until the minute is written.
    pub fn with_capacity(table: Table, rows: usize) -> Self {
        let key_count = key_columns(table).len();
        // Names are mostly short; a longer one grows its column once.
        let strings = || StringBuilder::with_capacity(rows, rows * 12);
        Self {
            table,
            minute: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            keys: (0..key_count).map(|_| strings()).collect(),
            side: StringBuilder::with_capacity(rows, rows * Side::Server.as_str().len()),
            counters: COUNTERS
                .iter()
                .map(|_| UInt64Builder::with_capacity(rows))
                .collect(),
            latency: BinaryBuilder::with_capacity(rows, rows * 32),
            latency_count: UInt64Builder::with_capacity(rows),
            latency_sum: Float64Builder::with_capacity(rows),
            overhead: BinaryBuilder::with_capacity(rows, 0),
            sketch_bytes: Vec::new(),
            rows: 0,
        }
    }

    /// Appends the row if its key belongs to this builder's table, else skips it.
    pub fn push(&mut self, minute: EpochMillis, key: KeyRef<'_>, side: Side, metrics: &Metrics) {
        if key.table() != self.table {
            return;
        }
        self.rows += 1;
        self.minute.append_value(minute);
        let keys = &mut self.keys;
        match key {
            KeyRef::Service { service } => push_service(keys, 0, service),
            KeyRef::Instance { service, instance } => {
                push_service(keys, 0, service);
                keys[3].append_value(instance);
            }
            KeyRef::Endpoint { service, endpoint } => {
                push_service(keys, 0, service);
                keys[3].append_value(endpoint);
            }
            KeyRef::Edge {
                source,
                target,
                protocol,
            } => {
                push_service(keys, 0, source);
                push_service(keys, 3, target);
                keys[6].append_value(protocol.as_str());
            }
            KeyRef::Dependency {
                service,
                endpoint,
                target,
                target_endpoint,
            } => {
                push_service(keys, 0, service);
                keys[3].append_value(endpoint);
                push_service(keys, 4, target);
                keys[7].append_value(target_endpoint);
            }
            KeyRef::InstancePair {
                source,
                source_instance,
                target,
                target_instance,
            } => {
                push_service(keys, 0, source);
                keys[3].append_value(source_instance);
                push_service(keys, 4, target);
                keys[7].append_value(target_instance);
            }
        }
        self.side.append_value(side.as_str());
        for (builder, value) in self.counters.iter_mut().zip(counters(metrics)) {
            builder.append_value(value);
        }
        metrics.latency.write_bytes(&mut self.sketch_bytes);
        self.latency.append_value(&self.sketch_bytes);
        self.latency_count.append_value(metrics.latency.count());
        self.latency_sum
            .append_value(metrics.latency.sum().unwrap_or(0.0));
        if metrics.overhead.count() == 0 {
            self.overhead.append_null();
        } else {
            metrics.overhead.write_bytes(&mut self.sketch_bytes);
            self.overhead.append_value(&self.sketch_bytes);
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.minute.finish())];
        columns.extend(
            self.keys
                .iter_mut()
                .map(|k| Arc::new(k.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.side.finish()));
        columns.extend(
            self.counters
                .iter_mut()
                .map(|c| Arc::new(c.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.latency.finish()));
        columns.push(Arc::new(self.latency_count.finish()));
        columns.push(Arc::new(self.latency_sum.finish()));
        columns.push(Arc::new(self.overhead.finish()));
        Ok(RecordBatch::try_new(schema::schema(self.table), columns)?)
    }
}

/// One table's closed rows of one hour, already encoded, on their way to a Parquet file.
#[derive(Clone, Debug)]
pub struct ClosedBatch {
    pub table: Table,
    /// The start of the hour every row's minute falls in.
    pub hour: EpochMillis,
    pub batch: RecordBatch,
}

impl ClosedBatch {
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }
}

/// Builds one batch of `table` from the rows that belong to it (others are skipped).
pub fn to_batch<'a>(
    table: Table,
    rows: impl IntoIterator<Item = &'a MetricRow>,
) -> Result<RecordBatch> {
    let mut builder = RowBuilder::new(table);
    for row in rows {
        builder.push(row.minute, KeyRef::of(&row.key), row.side, &row.metrics);
    }
    builder.finish()
}

/// A minute or rollup table's batch as read from a file written before the later
/// counters existed, given those columns (all null) where the table's schema has them:
/// the counters just before the latency sketch, the overhead sketch last. Any other batch
/// is returned as it is.
pub(crate) fn with_later_counters(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let Ok(latency_at) = schema.index_of(schema::LATENCY) else {
        return Ok(batch);
    };
    let missing: Vec<&str> = COUNTERS
        .iter()
        .copied()
        .filter(|c| schema::is_later_counter(c) && schema.index_of(c).is_err())
        .collect();
    let overhead_missing = schema.index_of(schema::OVERHEAD).is_err();
    if (missing.is_empty() && !overhead_missing) || schema.index_of("apdex_tolerating").is_err() {
        return Ok(batch);
    }
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    for (offset, name) in missing.iter().enumerate() {
        fields.insert(
            latency_at + offset,
            Arc::new(datafusion::arrow::datatypes::Field::new(
                *name,
                datafusion::arrow::datatypes::DataType::UInt64,
                true,
            )),
        );
        columns.insert(
            latency_at + offset,
            datafusion::arrow::array::new_null_array(
                &datafusion::arrow::datatypes::DataType::UInt64,
                batch.num_rows(),
            ),
        );
    }
    if overhead_missing {
        fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
            schema::OVERHEAD,
            datafusion::arrow::datatypes::DataType::Binary,
            true,
        )));
        columns.push(datafusion::arrow::array::new_null_array(
            &datafusion::arrow::datatypes::DataType::Binary,
            batch.num_rows(),
        ));
    }
    let schema =
        datafusion::arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn bad(what: &str) -> Error {
    Error::InvalidQuery(format!("unexpected column layout: {what}"))
}

fn service_at(batch: &RecordBatch, name_prefix: &str, row: usize) -> Result<ServiceRef> {
    let col = |suffix: &str| -> Result<String> {
        let name = format!("{name_prefix}_{suffix}");
        let array = batch.column_by_name(&name).ok_or_else(|| bad(&name))?;
        Ok(array.as_string::<i32>().value(row).to_string())
    };
    Ok(ServiceRef {
        namespace: col("namespace")?,
        name: col("name")?,
        kind: NodeKind::parse(&col("kind")?).ok_or_else(|| bad("kind"))?,
    })
}

/// The key of `row` in a batch with the key columns of `table` (extra columns ignored).
pub(crate) fn key_at(table: Table, batch: &RecordBatch, row: usize) -> Result<RowKey> {
    let text = |name: &str| -> Result<String> {
        let array = batch.column_by_name(name).ok_or_else(|| bad(name))?;
        Ok(array.as_string::<i32>().value(row).to_string())
    };
    Ok(match table {
        Table::ServiceMinute => RowKey::Service {
            service: service_at(batch, "service", row)?,
        },
        Table::InstanceMinute => RowKey::Instance {
            service: service_at(batch, "service", row)?,
            instance: text("instance")?,
        },
        Table::EndpointMinute => RowKey::Endpoint {
            service: service_at(batch, "service", row)?,
            endpoint: text("endpoint")?,
        },
        Table::EdgeMinute => RowKey::Edge {
            source: service_at(batch, "source", row)?,
            target: service_at(batch, "target", row)?,
            protocol: Protocol::parse(&text("protocol")?).ok_or_else(|| bad("protocol"))?,
        },
        Table::DependencyMinute => RowKey::Dependency {
            service: service_at(batch, "service", row)?,
            endpoint: text("endpoint")?,
            target: service_at(batch, "target", row)?,
            target_endpoint: text("target_endpoint")?,
        },
        Table::InstancePairMinute => RowKey::InstancePair {
            source: service_at(batch, "source", row)?,
            source_instance: text("source_instance")?,
            target: service_at(batch, "target", row)?,
            target_instance: text("target_instance")?,
        },
    })
}

/// The metrics of `row` in a batch that has the metric columns (named as in the schema).
pub(crate) fn metrics_at(batch: &RecordBatch, row: usize) -> Result<Metrics> {
    let counter = |name: &str| -> Result<u64> {
        let Some(array) = batch.column_by_name(name) else {
            // A file written before the counter existed, read as it is on disk.
            return if schema::is_later_counter(name) {
                Ok(0)
            } else {
                Err(bad(name))
            };
        };
        let values = array
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad(name))?;
        Ok(if values.is_null(row) {
            0
        } else {
            values.value(row)
        })
    };
    let sketch = |name: &str, required: bool| -> Result<LatencySketch> {
        let Some(array) = batch.column_by_name(name) else {
            return if required {
                Err(bad(name))
            } else {
                Ok(LatencySketch::new())
            };
        };
        let sketches = array.as_binary_opt::<i32>().ok_or_else(|| bad(name))?;
        Ok(if sketches.is_null(row) {
            LatencySketch::new()
        } else {
            LatencySketch::from_bytes(sketches.value(row))?
        })
    };
    let mut metrics = Metrics {
        latency: sketch(schema::LATENCY, true)?,
        overhead: sketch(schema::OVERHEAD, false)?,
        ..Metrics::default()
    };
    for (i, name) in COUNTERS.iter().enumerate() {
        // Only counters that hold something: response flag counts allocate on first use.
        let n = counter(name)?;
        if n != 0 {
            *metrics.counter_mut(i) = n;
        }
    }
    Ok(metrics)
}

pub(crate) fn minute_at(batch: &RecordBatch, row: usize) -> Result<i64> {
    let array = batch
        .column_by_name(schema::MINUTE)
        .ok_or_else(|| bad(schema::MINUTE))?;
    match array.data_type() {
        datafusion::arrow::datatypes::DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Ok(array.as_primitive::<TimestampMillisecondType>().value(row))
        }
        _ => Err(bad(schema::MINUTE)),
    }
}

pub(crate) fn side_at(batch: &RecordBatch, row: usize) -> Result<Side> {
    let array = batch
        .column_by_name(schema::SIDE)
        .ok_or_else(|| bad(schema::SIDE))?;
    Side::parse(array.as_string::<i32>().value(row)).ok_or_else(|| bad(schema::SIDE))
}

/// Every row of a batch of `table`.
pub fn from_batch(table: Table, batch: &RecordBatch) -> Result<Vec<MetricRow>> {
    (0..batch.num_rows())
        .map(|row| {
            Ok(MetricRow {
                minute: minute_at(batch, row)?,
                key: key_at(table, batch, row)?,
                side: side_at(batch, row)?,
                metrics: metrics_at(batch, row)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: i64, key: RowKey, side: Side, calls: u64, latency: &[f64]) -> MetricRow {
        let mut metrics = Metrics {
            calls,
            errors: 1,
            bytes_sent: 10,
            ..Default::default()
        };
        for l in latency {
            metrics.latency.add(*l);
        }
        MetricRow {
            minute,
            key,
            side,
            metrics,
        }
    }

    #[test]
    fn rows_round_trip_through_batches() {
        let edge = RowKey::Edge {
            source: ServiceRef::virtual_node("external"),
            target: ServiceRef::service("shop", "ingress"),
            protocol: Protocol::Http,
        };
        let endpoint = RowKey::Endpoint {
            service: ServiceRef::service("", "backend"),
            endpoint: "GET /orders/{id}".into(),
        };
        let rows = vec![
            row(60_000, edge.clone(), Side::Server, 3, &[1.0, 2.0, 300.0]),
            row(120_000, endpoint.clone(), Side::Client, 2, &[5.0]),
        ];
        let edges = to_batch(Table::EdgeMinute, &rows).unwrap();
        assert_eq!(edges.num_rows(), 1, "rows of other tables are skipped");
        let back = from_batch(Table::EdgeMinute, &edges).unwrap();
        assert_eq!(back[0].key, edge);
        assert_eq!(back[0].minute, 60_000);
        assert_eq!(back[0].side, Side::Server);
        assert_eq!(
            (
                back[0].metrics.calls,
                back[0].metrics.errors,
                back[0].metrics.bytes_sent
            ),
            (3, 1, 10)
        );
        assert_eq!(back[0].metrics.latency.count(), 3);
        let endpoints = from_batch(
            Table::EndpointMinute,
            &to_batch(Table::EndpointMinute, &rows).unwrap(),
        )
        .unwrap();
        assert_eq!(endpoints[0].key, endpoint);
    }
}
