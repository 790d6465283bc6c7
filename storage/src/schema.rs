//! Explicit Arrow schemas of the minute tables. Every table has the same metric columns
//! after its key columns, so that batch building, rollups and SQL treat them alike.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::model::{Metrics, Table};

pub(crate) const MINUTE: &str = "minute";
pub(crate) const SIDE: &str = "side";

/// Key columns per table, in order, all UTF-8.
pub(crate) fn key_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::ServiceMinute => &["service_namespace", "service_name", "service_kind"],
        Table::InstanceMinute => &[
            "service_namespace",
            "service_name",
            "service_kind",
            "instance",
        ],
        Table::EndpointMinute => &[
            "service_namespace",
            "service_name",
            "service_kind",
            "endpoint",
        ],
        Table::EdgeMinute => &[
            "source_namespace",
            "source_name",
            "source_kind",
            "target_namespace",
            "target_name",
            "target_kind",
            "protocol",
        ],
    }
}

/// How many additive counters a row has.
pub(crate) const COUNTER_COUNT: usize = Metrics::COUNTER_COUNT;

/// Additive counters, in order, all UInt64: [`Metrics::COUNTER_NAMES`].
pub(crate) const COUNTERS: [&str; COUNTER_COUNT] = Metrics::COUNTER_NAMES;

/// Counters added after the first files were written: nullable, so that files written
/// before them read as null, which every reader takes for 0.
const LATER_COUNTERS: [&str; 2] = ["retries", "identity_conflicts"];

/// Whether `counter` is one that files written before it lack (read as 0 there).
pub(crate) fn is_later_counter(counter: &str) -> bool {
    LATER_COUNTERS.contains(&counter)
}

/// Serialized `LatencySketch` (milliseconds).
pub(crate) const LATENCY: &str = "latency";
pub(crate) const LATENCY_COUNT: &str = "latency_count";
pub(crate) const LATENCY_SUM_MS: &str = "latency_sum_ms";

pub(crate) fn minute_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn build(table: Table) -> SchemaRef {
    let mut fields = vec![Field::new(MINUTE, minute_type(), false)];
    for key in key_columns(table) {
        fields.push(Field::new(*key, DataType::Utf8, false));
    }
    fields.push(Field::new(SIDE, DataType::Utf8, false));
    for counter in COUNTERS {
        let nullable = is_later_counter(counter);
        fields.push(Field::new(counter, DataType::UInt64, nullable));
    }
    fields.push(Field::new(LATENCY, DataType::Binary, false));
    fields.push(Field::new(LATENCY_COUNT, DataType::UInt64, false));
    fields.push(Field::new(LATENCY_SUM_MS, DataType::Float64, false));
    Arc::new(Schema::new(fields))
}

pub(crate) fn schema(table: Table) -> SchemaRef {
    static SCHEMAS: OnceLock<[SchemaRef; 4]> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| Table::ALL.map(build));
    let index = Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
    schemas[index].clone()
}
