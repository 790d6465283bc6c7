//! Explicit Arrow schemas of the minute tables. Every table has the same metric columns
//! after its key columns, so that batch building, rollups and SQL treat them alike.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::model::Table;

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
        Table::DependencyMinute => &[
            "service_namespace",
            "service_name",
            "service_kind",
            "endpoint",
            "target_namespace",
            "target_name",
            "target_kind",
            "target_endpoint",
        ],
        Table::InstancePairMinute => &[
            "source_namespace",
            "source_name",
            "source_kind",
            "source_instance",
            "target_namespace",
            "target_name",
            "target_kind",
            "target_instance",
        ],
    }
}

/// How many additive counters a row has.
pub(crate) const COUNTER_COUNT: usize = crate::model::Metrics::COUNTER_COUNT;

/// Additive counters, in order, all UInt64.
pub(crate) const COUNTERS: [&str; COUNTER_COUNT] = [
    "calls",
    "errors",
    "errors_4xx",
    "bytes_sent",
    "bytes_received",
    "tcp_connections",
    "mtls_calls",
    "apdex_satisfied",
    "apdex_tolerating",
    "retries",
    "identity_conflicts",
    // The response flag kinds, in `response_flags::RESPONSE_FLAG_COLUMNS` order.
    "flag_lh",
    "flag_uh",
    "flag_ut",
    "flag_lr",
    "flag_ur",
    "flag_uf",
    "flag_uc",
    "flag_uo",
    "flag_nr",
    "flag_di",
    "flag_fi",
    "flag_rl",
    "flag_uaex",
    "flag_dc",
    "flag_urx",
    "flag_si",
    // Pairing by request id.
    "paired",
    "client_only",
    "server_only",
];

/// Counters from this one on were added after the first files were written: nullable, so
/// that files written before them read as null, which every reader takes for 0.
const FIRST_LATER_COUNTER: usize = 9;

/// Whether `counter` is one that files written before it lack (read as 0 there).
pub(crate) fn is_later_counter(counter: &str) -> bool {
    COUNTERS[FIRST_LATER_COUNTER..].contains(&counter)
}

/// Serialized `LatencySketch` (milliseconds).
pub(crate) const LATENCY: &str = "latency";
pub(crate) const LATENCY_COUNT: &str = "latency_count";
pub(crate) const LATENCY_SUM_MS: &str = "latency_sum_ms";
/// Serialized `LatencySketch` of the mesh's own cost per paired request (milliseconds);
/// null when no paired single-attempt request fell in the row. Added after the first
/// files were written, so it is the last column.
pub(crate) const OVERHEAD: &str = "overhead";

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
    fields.push(Field::new(OVERHEAD, DataType::Binary, true));
    Arc::new(Schema::new(fields))
}

pub(crate) fn schema(table: Table) -> SchemaRef {
    static SCHEMAS: OnceLock<[SchemaRef; Table::ALL.len()]> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| Table::ALL.map(build));
    let index = Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
    schemas[index].clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FLAGS_AT, PAIRING_AT};
    use crate::response_flags::RESPONSE_FLAG_COLUMNS;

    #[test]
    fn the_counter_columns_follow_the_metrics_order() {
        assert_eq!(&COUNTERS[FLAGS_AT..PAIRING_AT], &RESPONSE_FLAG_COLUMNS[..]);
        assert_eq!(
            &COUNTERS[PAIRING_AT..],
            &["paired", "client_only", "server_only"]
        );
    }
}
