//! Per-key totals over a span of one granularity, folded straight from the scanned batches:
//! the read behind every window aggregate (the topology, the service list).
//!
//! A group-by on key, minute and side would build a group, and a sketch state, per row of a
//! minute table: a window of an hour over thousands of edges is hundreds of thousands of
//! groups, each decoded twice. Here each row is decoded once, into its key's running total,
//! keys are recognised by their bytes in Arrow's row format, and the scan's partitions fold
//! on both cores.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BinaryArray, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{TimestampMillisecondType, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::TryStreamExt;

use crate::batch;
use crate::error::{Error, Result};
use crate::files::Granularity;
use crate::model::{EpochMillis, Metrics, RowKey, Side, Table};
use crate::schema::{self, COUNTERS, key_columns};

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
}

impl Figures {
    pub(crate) fn of(batch: &RecordBatch) -> Result<Figures> {
        Ok(Figures {
            counters: COUNTERS
                .iter()
                .map(|name| Ok(column(batch, name)?.as_primitive::<UInt64Type>().clone()))
                .collect::<Result<_>>()?,
            sketches: column(batch, schema::LATENCY)?.as_binary::<i32>().clone(),
        })
    }

    /// Row `row`'s counters, in `COUNTERS` order.
    pub(crate) fn counters(&self, row: usize) -> [u64; 9] {
        std::array::from_fn(|i| {
            let values = &self.counters[i];
            if values.is_null(row) {
                0
            } else {
                values.value(row)
            }
        })
    }

    /// Row `row`'s encoded sketch.
    pub(crate) fn sketch(&self, row: usize) -> Option<&[u8]> {
        (!self.sketches.is_null(row)).then(|| self.sketches.value(row))
    }

    /// Adds row `row`'s counters, in `COUNTERS` order, and its encoded sketch.
    pub(crate) fn add_to(&self, into: &mut Metrics, row: usize) -> Result<()> {
        add_row(into, self.counters(row), self.sketch(row))
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

/// Adds one stored row's figures, in `COUNTERS` order, and its encoded sketch.
fn add_row(into: &mut Metrics, figures: [u64; 9], sketch: Option<&[u8]>) -> Result<()> {
    for (field, n) in counters_mut(into).into_iter().zip(figures) {
        *field += n;
    }
    if let Some(bytes) = sketch {
        into.latency.merge_bytes(bytes)?;
    }
    Ok(())
}

/// A total's counters in `COUNTERS` order, the order `Figures::counters` reads a row in.
pub(crate) fn counters_mut(metrics: &mut Metrics) -> [&mut u64; 9] {
    [
        &mut metrics.calls,
        &mut metrics.errors,
        &mut metrics.errors_4xx,
        &mut metrics.bytes_sent,
        &mut metrics.bytes_received,
        &mut metrics.tcp_connections,
        &mut metrics.mtls_calls,
        &mut metrics.apdex_satisfied,
        &mut metrics.apdex_tolerating,
    ]
}

fn merge_into(total: &mut Option<Metrics>, metrics: Metrics) {
    match total {
        Some(total) => total.merge(&metrics),
        None => *total = Some(metrics),
    }
}

/// Per key: the server's rows, plus the client's in minutes the server did not report (or
/// every client row, for rollups).
fn settle(partials: Vec<Partial>, rollup: bool) -> Result<Vec<SpanTotal>> {
    let mut partials = partials.into_iter();
    let mut all = partials.next().unwrap_or_default();
    for partial in partials {
        all.absorb(partial);
    }
    let batches = all.batches;
    all.keys
        .into_values()
        .map(|mut total| {
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
                detected_by,
                metrics: metrics.unwrap_or_default(),
            })
        })
        .collect()
}

/// What identifies a span's totals: the table, the span, the key filter, and the very files
/// that hold its rows. A file written, compacted or expired changes the key, so an entry is
/// never stale; spans with rows of the open snapshot are never cached.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SpanKey {
    pub(crate) table: Table,
    pub(crate) granularity: Granularity,
    pub(crate) start: EpochMillis,
    pub(crate) end: EpochMillis,
    pub(crate) filter: String,
    pub(crate) files: Vec<String>,
}

/// Totals of closed spans, reused by the next read of the same span: a dashboard asks for
/// the same windows every few seconds, and only the open minutes change in between.
/// Bounded by the number of key totals it holds (each carries a latency sketch).
pub(crate) struct SpanCache<K> {
    entries: parking_lot::Mutex<SpanEntries<K>>,
    max_totals: usize,
}

struct SpanEntries<K> {
    by_key: HashMap<K, (Arc<Vec<SpanTotal>>, u64)>,
    clock: u64,
    held: usize,
}

/// About 250 MB of decoded sketches at a few hundred bins each.
pub(crate) const MAX_CACHED_TOTALS: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> SpanCache<K> {
    pub(crate) fn new(max_totals: usize) -> Self {
        Self {
            entries: parking_lot::Mutex::new(SpanEntries {
                by_key: HashMap::new(),
                clock: 0,
                held: 0,
            }),
            max_totals,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<Arc<Vec<SpanTotal>>> {
        let mut entries = self.entries.lock();
        entries.clock += 1;
        let now = entries.clock;
        let (totals, used) = entries.by_key.get_mut(key)?;
        *used = now;
        Some(totals.clone())
    }

    pub(crate) fn insert(&self, key: K, totals: Arc<Vec<SpanTotal>>) {
        if totals.len() > self.max_totals {
            return;
        }
        let mut entries = self.entries.lock();
        entries.clock += 1;
        let now = entries.clock;
        entries.held += totals.len();
        if let Some((old, _)) = entries.by_key.insert(key, (totals, now)) {
            entries.held -= old.len();
        }
        while entries.held > self.max_totals {
            let Some(oldest) = entries
                .by_key
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((old, _)) = entries.by_key.remove(&oldest) {
                entries.held -= old.len();
            }
        }
    }
}
