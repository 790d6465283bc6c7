//! Per-key totals over a span of one granularity, folded straight from the scanned batches:
//! the read behind every window aggregate (the topology, the service list).
//!
//! A group-by on key, minute and side would build a group, and a sketch state, per row of a
//! minute table: a window of an hour over thousands of edges is hundreds of thousands of
//! groups, each decoded twice. Here each row is decoded once, into its key's running total,
//! keys are recognised by their bytes in Arrow's row format, and the scan's partitions fold
//! on both cores.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, BinaryArray, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{TimestampMillisecondType, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::TryStreamExt;

use crate::batch;
use crate::error::{Error, Result};
use crate::model::{EpochMillis, Metrics, RowKey, Side, Table};
use crate::read::Aggregate;
use crate::schema::{self, COUNTER_COUNT, COUNTERS, key_columns};

/// One key's figures in one span, before the client rows are settled.
struct KeyTotal {
    key: RowKey,
    /// Every server row, summed.
    server: Option<Metrics>,
    /// Minutes with a server row: the client's rows of those minutes do not count.
    server_minutes: Vec<EpochMillis>,
    /// Client rows, kept where they are until every partition has been read, because the
    /// server row of the same minute may come from another file. Where both sides report,
    /// which is nearly every edge, they are never decoded at all.
    client: Vec<ClientRow>,
}

/// A client row left in its batch: its minute, and where it is.
#[derive(Clone, Copy)]
struct ClientRow {
    minute: EpochMillis,
    batch: u32,
    row: u32,
}

/// The columns a row's figures are read from.
pub(crate) struct Figures {
    counters: Vec<UInt64Array>,
    sketches: BinaryArray,
    /// The overhead sketches; `None` for a batch without the column.
    overheads: Option<BinaryArray>,
}

impl Figures {
    pub(crate) fn of(batch: &RecordBatch) -> Result<Figures> {
        Ok(Figures {
            counters: COUNTERS
                .iter()
                .map(|name| Ok(column(batch, name)?.as_primitive::<UInt64Type>().clone()))
                .collect::<Result<_>>()?,
            sketches: column(batch, schema::LATENCY)?.as_binary::<i32>().clone(),
            overheads: batch
                .column_by_name(schema::OVERHEAD)
                .and_then(|c| c.as_binary_opt::<i32>())
                .cloned(),
        })
    }

    /// Row `row`'s counters, in `COUNTERS` order.
    pub(crate) fn counters(&self, row: usize) -> [u64; COUNTER_COUNT] {
        let mut counters = [0; COUNTER_COUNT];
        for (i, counter) in counters.iter_mut().enumerate() {
            *counter = self.counter(i, row);
        }
        counters
    }

    /// Row `row`'s counter `i` (in `COUNTERS` order); 0 where it is null. Most columns
    /// have no nulls at all, and then the value is read without looking.
    fn counter(&self, i: usize, row: usize) -> u64 {
        let values = &self.counters[i];
        if values.null_count() > 0 && values.is_null(row) {
            0
        } else {
            values.values()[row]
        }
    }

    /// Row `row`'s encoded sketch.
    pub(crate) fn sketch(&self, row: usize) -> Option<&[u8]> {
        (!self.sketches.is_null(row)).then(|| self.sketches.value(row))
    }

    /// Row `row`'s encoded overhead sketch, if it has one.
    pub(crate) fn overhead(&self, row: usize) -> Option<&[u8]> {
        let overheads = self.overheads.as_ref()?;
        (!overheads.is_null(row)).then(|| overheads.value(row))
    }

    /// Adds row `row`'s counters, in `COUNTERS` order, and its encoded sketches.
    pub(crate) fn add_to(&self, into: &mut Metrics, row: usize) -> Result<()> {
        for i in 0..COUNTER_COUNT {
            // Zeros are skipped: response flag counts allocate on first use.
            let n = self.counter(i, row);
            if n != 0 {
                *into.counter_mut(i) += n;
            }
        }
        if let Some(bytes) = self.sketch(row) {
            into.latency.merge_bytes(bytes)?;
        }
        if let Some(bytes) = self.overhead(row) {
            into.overhead.merge_bytes(bytes)?;
        }
        Ok(())
    }
}

/// Totals of one partition of the scan, keyed by the key columns' row-format bytes.
#[derive(Default)]
pub(crate) struct Partial {
    keys: HashMap<Box<[u8]>, KeyTotal>,
    /// The columns of batches that client rows point into.
    batches: Vec<Figures>,
}

/// What a span contributes to a key's total over the window.
pub(crate) struct SpanTotal {
    pub(crate) key: RowKey,
    /// The key columns in Arrow's row format: the live minutes' rows are matched to a
    /// closed total by these bytes, without building their keys.
    pub(crate) bytes: Box<[u8]>,
    pub(crate) detected_by: Side,
    pub(crate) metrics: Metrics,
}

/// Reads every stream (one per partition of the scan) on a task of its own, then settles
/// the totals. `rollup` says the rows are hour or day rollups, whose client rows are
/// already net of the server's and are added, not chosen.
pub(crate) async fn fold_streams(
    table: Table,
    streams: Vec<SendableRecordBatchStream>,
    rollup: bool,
) -> Result<Vec<SpanTotal>> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(fold_stream(table, stream)))
        .collect();
    let mut partials = Vec::with_capacity(tasks.len());
    for task in tasks {
        let partial = task
            .await
            .map_err(|e| Error::InvalidQuery(format!("a read task failed: {e}")))??;
        partials.push(partial);
    }
    settle(partials, rollup)
}

/// `fold_streams` for minute rows already in memory.
pub(crate) fn fold_batches(table: Table, batches: &[RecordBatch]) -> Result<Vec<SpanTotal>> {
    let mut partial = Partial::default();
    let converter = key_converter(table)?;
    for batch in batches {
        partial.add_batch(table, &converter, batch)?;
    }
    settle(vec![partial], false)
}

pub(crate) fn key_converter(table: Table) -> Result<RowConverter> {
    Ok(RowConverter::new(
        key_columns(table)
            .iter()
            .map(|_| SortField::new(datafusion::arrow::datatypes::DataType::Utf8))
            .collect(),
    )?)
}

async fn fold_stream(table: Table, mut stream: SendableRecordBatchStream) -> Result<Partial> {
    let mut partial = Partial::default();
    let converter = key_converter(table)?;
    while let Some(batch) = stream.try_next().await? {
        partial.add_batch(table, &converter, &batch)?;
    }
    Ok(partial)
}

/// The key columns of every row of `batch` in Arrow's row format, so that a key is known
/// by its bytes without building it.
pub(crate) fn key_rows(
    table: Table,
    converter: &RowConverter,
    batch: &RecordBatch,
) -> Result<Rows> {
    let key_arrays = key_columns(table)
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::InvalidQuery(format!("missing key column {name}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(converter.convert_columns(&key_arrays)?)
}

pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::InvalidQuery(format!("unexpected column layout: {name}")))
}

impl Partial {
    fn add_batch(
        &mut self,
        table: Table,
        converter: &RowConverter,
        batch: &RecordBatch,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = key_rows(table, converter, batch)?;
        let minutes = column(batch, schema::MINUTE)?.as_primitive::<TimestampMillisecondType>();
        let sides: &StringArray = column(batch, schema::SIDE)?.as_string::<i32>();
        let figures = Figures::of(batch)?;
        let batch_at = u32::try_from(self.batches.len())
            .map_err(|_| Error::InvalidQuery("too many batches in one read".into()))?;
        let mut client_rows = false;
        for row in 0..batch.num_rows() {
            let key_bytes = rows.row(row);
            let total = match self.keys.get_mut(key_bytes.as_ref()) {
                Some(total) => total,
                None => self
                    .keys
                    .entry(key_bytes.as_ref().into())
                    .or_insert(KeyTotal {
                        key: batch::key_at(table, batch, row)?,
                        server: None,
                        server_minutes: Vec::new(),
                        client: Vec::new(),
                    }),
            };
            let minute = minutes.value(row);
            if sides.value(row) == Side::Server.as_str() {
                total.server_minutes.push(minute);
                figures.add_to(total.server.get_or_insert_with(Metrics::default), row)?;
            } else {
                client_rows = true;
                total.client.push(ClientRow {
                    minute,
                    batch: batch_at,
                    row: row as u32,
                });
            }
        }
        if client_rows {
            self.batches.push(figures);
        }
        Ok(())
    }

    fn absorb(&mut self, other: Partial) {
        let offset = self.batches.len() as u32;
        self.batches.extend(other.batches);
        for (bytes, mut theirs) in other.keys {
            for client in &mut theirs.client {
                client.batch += offset;
            }
            let Some(ours) = self.keys.get_mut(&bytes) else {
                self.keys.insert(bytes, theirs);
                continue;
            };
            if let Some(server) = theirs.server {
                merge_into(&mut ours.server, server);
            }
            ours.server_minutes.extend(theirs.server_minutes);
            ours.client.extend(theirs.client);
        }
    }
}

fn merge_into(total: &mut Option<Metrics>, metrics: Metrics) {
    match total {
        Some(total) => total.merge(&metrics),
        None => *total = Some(metrics),
    }
}

/// Per key: the server's rows, plus the client's in minutes the server did not report (or
/// every client row, for rollups). Sorted by key.
fn settle(partials: Vec<Partial>, rollup: bool) -> Result<Vec<SpanTotal>> {
    let mut partials = partials.into_iter();
    let mut all = partials.next().unwrap_or_default();
    for partial in partials {
        all.absorb(partial);
    }
    let batches = all.batches;
    all.keys
        .into_iter()
        .map(|(bytes, mut total)| {
            let detected_by = if total.server.is_some() {
                Side::Server
            } else {
                Side::Client
            };
            total.server_minutes.sort_unstable();
            let mut metrics = total.server;
            for client in &total.client {
                if rollup || total.server_minutes.binary_search(&client.minute).is_err() {
                    batches[client.batch as usize].add_to(
                        metrics.get_or_insert_with(Metrics::default),
                        client.row as usize,
                    )?;
                }
            }
            Ok(SpanTotal {
                key: total.key,
                bytes,
                detected_by,
                metrics: metrics.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(|mut totals| {
            totals.sort_by(|a, b| a.key.cmp(&b.key));
            totals
        })
}

/// Spans' totals summed per key, sorted by key. The spans come sorted, so the sort mostly
/// merges runs; one pass then adds up neighbours with the same key, with no index of keys.
pub(crate) fn combine<'a>(totals: impl Iterator<Item = &'a SpanTotal>) -> Vec<SpanTotal> {
    let mut totals: Vec<&SpanTotal> = totals.collect();
    totals.sort_by(|a, b| a.key.cmp(&b.key));
    let mut combined: Vec<SpanTotal> = Vec::with_capacity(totals.len());
    for total in totals {
        match combined.last_mut() {
            Some(last) if last.key == total.key => {
                last.metrics.merge(&total.metrics);
                if total.detected_by == Side::Server {
                    last.detected_by = Side::Server;
                }
            }
            _ => combined.push(SpanTotal {
                key: total.key.clone(),
                bytes: total.bytes.clone(),
                detected_by: total.detected_by,
                metrics: total.metrics.clone(),
            }),
        }
    }
    combined
}

/// A row of a live minute, left in its batch until its key's minutes are known.
#[derive(Clone, Copy)]
struct LiveRow {
    batch: u32,
    row: u32,
    minute: EpochMillis,
    server: bool,
}

/// The closed totals of a window (sorted by key) with the live minutes' rows added: the
/// read that every refresh of a dashboard makes. A live row finds its key's closed total
/// by its bytes, and its counters and sketch go straight into that total's copy: a key the
/// closed span knows is neither built again nor decoded into a total of its own first.
/// Per key and minute the server's row counts when there is one, else the client's.
pub(crate) fn with_live(
    table: Table,
    closed: &[SpanTotal],
    live: &[RecordBatch],
) -> Result<Vec<Aggregate>> {
    let converter = key_converter(table)?;
    let mut keys = Vec::with_capacity(live.len());
    let mut figures = Vec::with_capacity(live.len());
    for batch in live {
        keys.push(key_rows(table, &converter, batch)?);
        figures.push(Figures::of(batch)?);
    }
    let mut rows_of: HashMap<&[u8], Vec<LiveRow>> = HashMap::new();
    for (at, batch) in live.iter().enumerate() {
        let minutes = column(batch, schema::MINUTE)?.as_primitive::<TimestampMillisecondType>();
        let sides: &StringArray = column(batch, schema::SIDE)?.as_string::<i32>();
        for row in 0..batch.num_rows() {
            rows_of
                .entry(keys[at].row(row).data())
                .or_default()
                .push(LiveRow {
                    batch: at as u32,
                    row: row as u32,
                    minute: minutes.value(row),
                    server: sides.value(row) == Side::Server.as_str(),
                });
        }
    }
    let known: HashMap<&[u8], usize> = if rows_of.is_empty() {
        HashMap::new()
    } else {
        closed
            .iter()
            .enumerate()
            .map(|(at, total)| (&*total.bytes, at))
            .collect()
    };
    let mut out: Vec<Aggregate> = closed
        .iter()
        .map(|total| Aggregate {
            key: total.key.clone(),
            detected_by: total.detected_by,
            metrics: total.metrics.clone(),
        })
        .collect();
    let mut new_keys = false;
    for (bytes, mut rows) in rows_of {
        let at = match known.get(bytes) {
            Some(at) => *at,
            None => {
                let first = rows[0];
                out.push(Aggregate {
                    key: batch::key_at(table, &live[first.batch as usize], first.row as usize)?,
                    detected_by: Side::Client,
                    metrics: Metrics::default(),
                });
                new_keys = true;
                out.len() - 1
            }
        };
        let total = &mut out[at];
        rows.sort_unstable_by_key(|row| (row.minute, !row.server));
        // Sorted by minute with the server's row first: a client row counts only when no
        // server row of its minute came before it.
        let mut server_minute = None;
        for row in rows {
            if row.server {
                server_minute = Some(row.minute);
                total.detected_by = Side::Server;
            } else if server_minute == Some(row.minute) {
                continue;
            }
            figures[row.batch as usize].add_to(&mut total.metrics, row.row as usize)?;
        }
    }
    if new_keys {
        out.sort_by(|a, b| a.key.cmp(&b.key));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::to_batch;
    use crate::model::{MINUTE_MS, MetricRow, Protocol, ServiceRef};

    fn edge(source: &str, target: &str) -> RowKey {
        RowKey::Edge {
            source: ServiceRef::service("shop", source),
            target: ServiceRef::service("shop", target),
            protocol: Protocol::Http,
        }
    }

    fn row(minute: i64, key: &RowKey, side: Side, calls: u64, millis: f64) -> MetricRow {
        let mut metrics = Metrics {
            calls,
            errors: calls / 3,
            ..Metrics::default()
        };
        for _ in 0..calls {
            metrics.latency.add(millis);
        }
        MetricRow {
            minute: minute * MINUTE_MS,
            key: key.clone(),
            side,
            metrics,
        }
    }

    /// What a reader relies on: a window's totals read as closed totals plus live rows are
    /// the totals of all its rows folded at once, in key order, with the server's row of a
    /// minute chosen over the client's and keys the closed span never saw added.
    #[test]
    fn live_rows_add_to_closed_totals_as_one_fold_would() {
        let (web_cart, cart_db, web_pay) =
            (edge("web", "cart"), edge("cart", "db"), edge("web", "pay"));
        let closed_rows = vec![
            row(0, &web_cart, Side::Server, 10, 20.0),
            row(0, &web_cart, Side::Client, 11, 25.0),
            row(1, &cart_db, Side::Client, 4, 5.0),
        ];
        let live_rows = [
            // Both sides of an edge the closed span has: only the server's counts.
            row(2, &web_cart, Side::Client, 7, 300.0),
            row(2, &web_cart, Side::Server, 6, 250.0),
            // Only the client's, of an edge the closed span saw from the client alone.
            row(2, &cart_db, Side::Client, 3, 9.0),
            // A key only the live minute has, sorting between the other two.
            row(2, &web_pay, Side::Server, 2, 40.0),
            row(3, &cart_db, Side::Server, 5, 7.0),
        ];
        let table = Table::EdgeMinute;
        let closed_batch = to_batch(table, &closed_rows).unwrap();
        let live_batches = vec![
            to_batch(table, &live_rows[..2]).unwrap(),
            to_batch(table, &live_rows[2..]).unwrap(),
        ];
        let closed = fold_batches(table, std::slice::from_ref(&closed_batch)).unwrap();
        let got = with_live(table, &closed, &live_batches).unwrap();

        let mut everything = vec![closed_batch];
        everything.extend(live_batches);
        let want = fold_batches(table, &everything).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(got.key, want.key);
            assert_eq!(got.detected_by, want.detected_by);
            assert_eq!(got.metrics.calls, want.metrics.calls);
            assert_eq!(got.metrics.errors, want.metrics.errors);
            assert_eq!(got.metrics.latency, want.metrics.latency);
        }
        let calls: Vec<(RowKey, u64, Side)> = got
            .into_iter()
            .map(|a| (a.key, a.metrics.calls, a.detected_by))
            .collect();
        assert_eq!(
            calls,
            vec![
                (cart_db, 4 + 3 + 5, Side::Server),
                (web_cart, 10 + 6, Side::Server),
                (web_pay, 2, Side::Server),
            ]
        );
    }
}
