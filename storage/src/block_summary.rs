//! Summaries of ten-minute blocks of a metric table's closed minutes. Per key, a summary
//! holds the three sums a moving span keeps (`running_sums`): every server row, every
//! client row, and the client rows of minutes in which the server did not report; each
//! with the newest minute it has a row in and the smallest and largest latency of each of
//! its minutes. A span's first read folds the summaries of the whole blocks it covers
//! instead of their minutes (an hour is five or six summaries and at most ten single
//! minutes, instead of sixty minutes), and its later moves still take single minutes out
//! of a summarized block exactly: counters and latency bins are counts, and the extremes
//! are kept per minute.
//!
//! A summary names, in its schema's metadata, the minute files it was made from. A read
//! uses it only while the files holding the block's minutes are exactly those, so a late
//! minute, a compaction or an expiry under it sends the read back to the minutes until
//! the upkeep summarizes the block again (`store::block_upkeep`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryBuilder, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::batch::{KeyRef, RowBuilder};
use crate::error::{Error, Result};
use crate::files::FileEntry;
use crate::model::{EpochMillis, MINUTE_MS, Metrics, RowKey, Side, Table};
use crate::running_sums::{KeyShard, Running, RunningSum, ScannedRows, SumKind};
use crate::schema;

/// The span one summary covers: ten minutes, starting on a multiple of ten minutes.
pub(crate) const BLOCK_MS: EpochMillis = 10 * MINUTE_MS;

/// The column of each row's minutes' extremes: `(minute, smallest, largest)` as 24
/// little-endian bytes each (an `i64` and two `f64`s).
pub(crate) const EXTREMES: &str = "extremes";

/// The schema metadata naming the minute files a summary was made from, one per line.
const SOURCES: &str = "meshscope.block_sources";

/// The start of the block `t` falls in.
pub(crate) fn block_start(t: EpochMillis) -> EpochMillis {
    t.div_euclid(BLOCK_MS) * BLOCK_MS
}

/// The directory a table's summaries are kept under: `edge_block` for `edge_minute`.
pub(crate) fn table_name(table: Table) -> String {
    format!("{}_block", table.name().trim_end_matches("_minute"))
}

/// A summary's columns: the minute table's (`minute` is the newest minute of the sum,
/// `side` names the sum), then the extremes.
pub(crate) fn schema(table: Table) -> SchemaRef {
    with_sources(table, &[])
}

fn with_sources(table: Table, sources: &[String]) -> SchemaRef {
    with_metadata(table, sources_metadata(sources))
}

/// The schema metadata that names `sources`; none for no sources.
pub(crate) fn sources_metadata(sources: &[String]) -> HashMap<String, String> {
    match sources {
        [] => HashMap::new(),
        sources => HashMap::from([(SOURCES.to_owned(), sources.join("\n"))]),
    }
}

/// A summary's columns with `metadata`.
pub(crate) fn with_metadata(table: Table, metadata: HashMap<String, String>) -> SchemaRef {
    let minutes = schema::schema(table);
    let mut fields: Vec<Field> = minutes
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(EXTREMES, DataType::Binary, false));
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The names of the minute files a block's rows are in, sorted: what a summary is valid
/// for.
pub(crate) fn source_names(files: &[FileEntry]) -> Vec<String> {
    let mut names: Vec<String> = files.iter().map(|file| file.path.to_string()).collect();
    names.sort();
    names
}

/// The minute files a summary read back was made from; `None` when its schema does not
/// say (not a summary).
pub(crate) fn sources_of(schema: &Schema) -> Option<Vec<String>> {
    let text = schema.metadata().get(SOURCES)?;
    Some(text.split('\n').map(str::to_owned).collect())
}

/// Summarizes a block's minute rows (`batches`, every row of the block's minutes and no
/// other), made from the files `sources`, in newest-minute order; `None` when there are
/// no rows.
pub(crate) fn summarize(
    table: Table,
    batches: &[RecordBatch],
    sources: &[String],
) -> Result<Option<RecordBatch>> {
    let scanned = ScannedRows::read(table, batches, 1)?;
    let mut shard = KeyShard::default();
    shard.add_unqueued(table, &scanned)?;
    let sums = summed_rows(shard.running().iter(), |sum| {
        encode_extremes(sum.added_extremes())
    });
    summary_batch(table, sums, sources_metadata(sources))
}

/// The sums of `running` that hold rows, as summary rows, each with its extremes encoded
/// by `extremes`.
pub(crate) fn summed_rows<'a>(
    running: impl Iterator<Item = &'a Running>,
    extremes: fn(&RunningSum) -> Vec<u8>,
) -> Vec<SummedRow<'a>> {
    running
        .flat_map(|running| {
            running.sums().into_iter().filter_map(move |(kind, sum)| {
                Some(SummedRow {
                    newest: sum.newest()?,
                    key: running.key(),
                    kind,
                    metrics: sum.metrics(),
                    extremes: extremes(sum),
                })
            })
        })
        .collect()
}

/// One sum as a summary row: its newest minute, its key, which sum it is, its figures and
/// its encoded extremes (`encode_extremes`).
pub(crate) struct SummedRow<'a> {
    pub(crate) newest: EpochMillis,
    pub(crate) key: &'a RowKey,
    pub(crate) kind: SumKind,
    pub(crate) metrics: &'a Metrics,
    pub(crate) extremes: Vec<u8>,
}

/// The summary rows of `sums`, oldest newest minute first, with `metadata` in their
/// schema; `None` for no sums.
pub(crate) fn summary_batch(
    table: Table,
    mut sums: Vec<SummedRow>,
    metadata: HashMap<String, String>,
) -> Result<Option<RecordBatch>> {
    if sums.is_empty() {
        return Ok(None);
    }
    sums.sort_by_key(|sum| sum.newest);
    let mut rows = RowBuilder::with_capacity(table, sums.len());
    let mut extremes = BinaryBuilder::with_capacity(sums.len(), sums.len() * 24);
    let mut kinds = Vec::with_capacity(sums.len());
    for sum in &sums {
        // The side is replaced by the sum's name below.
        rows.push(sum.newest, KeyRef::of(sum.key), Side::Server, sum.metrics);
        extremes.append_value(&sum.extremes);
        kinds.push(sum.kind.as_str());
    }
    let minutes = rows.finish()?;
    let side_at = minutes.schema().index_of(schema::SIDE)?;
    let mut columns: Vec<ArrayRef> = minutes.columns().to_vec();
    columns[side_at] = Arc::new(StringArray::from(kinds));
    columns.push(Arc::new(extremes.finish()));
    Ok(Some(RecordBatch::try_new(
        with_metadata(table, metadata),
        columns,
    )?))
}

/// `extremes` as a summary's `extremes` value.
pub(crate) fn encode_extremes(extremes: &[(EpochMillis, f64, f64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(extremes.len() * 24);
    for (minute, low, high) in extremes {
        bytes.extend_from_slice(&minute.to_le_bytes());
        bytes.extend_from_slice(&low.to_le_bytes());
        bytes.extend_from_slice(&high.to_le_bytes());
    }
    bytes
}

/// Appends the `(minute, smallest, largest)` triples `bytes` hold to `into`; refused when
/// `bytes` are not whole triples.
pub(crate) fn decode_extremes(bytes: &[u8], into: &mut Vec<(EpochMillis, f64, f64)>) -> Result<()> {
    if !bytes.len().is_multiple_of(24) {
        return Err(Error::InvalidQuery(format!(
            "a block summary's extremes are {} bytes, not whole triples",
            bytes.len()
        )));
    }
    for triple in bytes.chunks_exact(24) {
        let word = |at: usize| <[u8; 8]>::try_from(&triple[at..at + 8]).expect("8 bytes");
        into.push((
            i64::from_le_bytes(word(0)),
            f64::from_le_bytes(word(8)),
            f64::from_le_bytes(word(16)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_read_back_as_written_and_a_cut_triple_is_refused() {
        let triples = vec![(60_000, 1.5, 9.25), (120_000, 0.0, f64::MAX)];
        let mut read = Vec::new();
        decode_extremes(&encode_extremes(&triples), &mut read).unwrap();
        assert_eq!(read, triples);
        let bytes = encode_extremes(&triples);
        assert!(decode_extremes(&bytes[..30], &mut read).is_err());
    }

    #[test]
    fn blocks_start_on_ten_minutes_and_tables_are_named_after_theirs() {
        assert_eq!(block_start(19 * MINUTE_MS + 5), 10 * MINUTE_MS);
        assert_eq!(block_start(-1), -BLOCK_MS);
        assert_eq!(table_name(Table::EdgeMinute), "edge_block");
    }
}
