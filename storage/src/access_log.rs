//! Raw access-log entries, kept only when the config asks for them, so that an SRE can find
//! the slow or failing requests behind an edge with SQL. This module holds the row type and
//! its Arrow form; `Store::append_access_log` writes them.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, StringBuilder, TimestampMillisecondBuilder,
    UInt32Builder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::model::{EpochMillis, Protocol, Side};
use crate::schema::minute_type;

/// The SQL name of the table.
pub(crate) const TABLE: &str = "access_log";
/// The column holding when a request started.
pub(crate) const TIME: &str = "time";

/// One request or connection as a proxy logged it, after identity resolution.
#[derive(Clone, Debug)]
pub struct AccessLogRow {
    /// When the request started, epoch milliseconds.
    pub time: EpochMillis,
    pub source_namespace: String,
    pub source_name: String,
    pub target_namespace: String,
    pub target_name: String,
    pub side: Side,
    pub protocol: Protocol,
    pub method: String,
    pub path: String,
    /// HTTP status; 0 for TCP or when the proxy logged none.
    pub status: u32,
    pub response_flags: String,
    pub duration_ms: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub mtls: bool,
    pub request_id: String,
    /// The proxy that logged the entry.
    pub node: String,
}

const STRINGS: [&str; 9] = [
    "source_namespace",
    "source_name",
    "target_namespace",
    "target_name",
    "side",
    "protocol",
    "method",
    "path",
    "response_flags",
];

/// The columns of the `access_log` table.
pub(crate) fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![Field::new(TIME, minute_type(), false)];
            fields.extend(
                STRINGS
                    .iter()
                    .map(|n| Field::new(*n, DataType::Utf8, false)),
            );
            fields.push(Field::new("status", DataType::UInt32, false));
            fields.push(Field::new("duration_ms", DataType::Float64, false));
            fields.push(Field::new("bytes_sent", DataType::UInt64, false));
            fields.push(Field::new("bytes_received", DataType::UInt64, false));
            fields.push(Field::new("mtls", DataType::Boolean, false));
            fields.push(Field::new("request_id", DataType::Utf8, false));
            fields.push(Field::new("node", DataType::Utf8, false));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The entries as one record batch of the `access_log` schema, in the order given.
pub(crate) fn to_batch(rows: &[&AccessLogRow]) -> Result<RecordBatch> {
    let mut time = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let mut strings: Vec<StringBuilder> = STRINGS.iter().map(|_| StringBuilder::new()).collect();
    let mut status = UInt32Builder::with_capacity(rows.len());
    let mut duration = Float64Builder::with_capacity(rows.len());
    let mut sent = UInt64Builder::with_capacity(rows.len());
    let mut received = UInt64Builder::with_capacity(rows.len());
    let mut mtls = BooleanBuilder::with_capacity(rows.len());
    let mut request_id = StringBuilder::new();
    let mut node = StringBuilder::new();
    for row in rows {
        time.append_value(row.time);
        let values = [
            row.source_namespace.as_str(),
            &row.source_name,
            &row.target_namespace,
            &row.target_name,
            row.side.as_str(),
            row.protocol.as_str(),
            &row.method,
            &row.path,
            &row.response_flags,
        ];
        for (builder, value) in strings.iter_mut().zip(values) {
            builder.append_value(value);
        }
        status.append_value(row.status);
        duration.append_value(row.duration_ms);
        sent.append_value(row.bytes_sent);
        received.append_value(row.bytes_received);
        mtls.append_value(row.mtls);
        request_id.append_value(&row.request_id);
        node.append_value(&row.node);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time.finish())];
    columns.extend(strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(status.finish()));
    columns.push(Arc::new(duration.finish()));
    columns.push(Arc::new(sent.finish()));
    columns.push(Arc::new(received.finish()));
    columns.push(Arc::new(mtls.finish()));
    columns.push(Arc::new(request_id.finish()));
    columns.push(Arc::new(node.finish()));
    Ok(RecordBatch::try_new(schema(), columns)?)
}
