//! Trailing-hour summaries: per table the map reads, one summary of the hour that ends
//! at the newest closed minute, written again by the upkeep as each minute closes. It has
//! the rows of a block summary (`block_summary`): per key the server's sum, the client's,
//! and the client's over minutes the server did not report, each with its newest minute.
//! Of each sum's per-minute extremes it keeps only the minutes whose smallest or largest
//! latency could still be the sum's once older minutes leave (a handful, not sixty).
//!
//! A window of the last hour read for the first time folds this one summary, takes out
//! the minute or two it started before the window and adds the minute or two written
//! since, instead of six block summaries. Like a block summary, it names the minute files
//! it was made from and is used only while they are the files under its hour.

use std::collections::HashMap;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;

use crate::block_summary;
use crate::error::Result;
use crate::model::{EpochMillis, MINUTE_MS, Table};
use crate::read::TimeRange;
use crate::sliding::MovingSpan;

/// The span a trailing summary covers.
pub(crate) const SPAN_MS: EpochMillis = 60 * MINUTE_MS;

/// The tables that keep a trailing-hour summary: the two the map's first read folds.
/// The others (instances, endpoints, dependencies, instance pairs) are read for one
/// service at a time and fold their block summaries.
pub(crate) const TABLES: [Table; 2] = [Table::ServiceMinute, Table::EdgeMinute];

/// The schema metadata giving the span a summary covers, as `start,end` in milliseconds.
const SPAN: &str = "meshscope.summary_span";

/// The table a table's trailing summaries are kept under: `edge_trailing_hour` for
/// `edge_minute`.
pub(crate) fn table_name(table: Table) -> String {
    format!("{}_trailing_hour", table.name().trim_end_matches("_minute"))
}

/// The summary rows of `span`'s running sums, covering `[span.start(), span.end())` made
/// from the minute files `sources`; `None` when the span holds no rows.
pub(crate) fn summarize(
    table: Table,
    span: &MovingSpan,
    sources: &[String],
) -> Result<Option<RecordBatch>> {
    let sums = block_summary::summed_rows(span.running(), |sum| {
        block_summary::encode_extremes(&sum.queued_extremes())
    });
    let mut metadata: HashMap<String, String> = block_summary::sources_metadata(sources);
    metadata.insert(SPAN.to_owned(), format!("{},{}", span.start(), span.end()));
    block_summary::summary_batch(table, sums, metadata)
}

/// The span a summary read back covers; `None` when its schema does not say.
pub(crate) fn span_of(schema: &Schema) -> Option<TimeRange> {
    let (start, end) = schema.metadata().get(SPAN)?.split_once(',')?;
    Some(TimeRange {
        start: start.parse().ok()?,
        end: end.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_tables_are_named_after_theirs_and_spans_read_back() {
        assert_eq!(table_name(Table::EdgeMinute), "edge_trailing_hour");
        let schema = Schema::empty().with_metadata(HashMap::from([(
            SPAN.to_owned(),
            "60000,3660000".to_owned(),
        )]));
        let span = span_of(&schema).unwrap();
        assert_eq!((span.start, span.end), (60_000, 3_660_000));
        assert!(span_of(&Schema::empty()).is_none());
    }
}
