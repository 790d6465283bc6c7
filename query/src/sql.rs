//! Read-only SQL for SREs: one query in, its rows out as JSON, CSV or an Arrow IPC stream,
//! within the limits the store's config sets.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{Error, ErrorBody, Result};
use crate::state::AppState;

pub(crate) const CSV: &str = "text/csv";
pub(crate) const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// One read-only SQL query.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlRequest {
    /// A single `SELECT` (or `WITH … SELECT`) over the tables `GET /api/v1/tables` lists.
    #[schema(
        example = "SELECT service_name, sum(calls) AS calls FROM service_minute GROUP BY service_name"
    )]
    sql: String,
}

/// A query's rows as JSON.
#[derive(Serialize, ToSchema)]
pub(crate) struct SqlAnswer {
    /// The result's columns, in order, with their Arrow types.
    columns: Vec<SqlColumn>,
    /// One object per row, a key per column (null for a null value).
    #[schema(value_type = Vec<Object>)]
    rows: Value,
    row_count: usize,
}

#[derive(Serialize, ToSchema)]
struct SqlColumn {
    name: String,
    /// The Arrow data type, as Arrow prints it (`Int64`, `Utf8`, …).
    #[serde(rename = "type")]
    data_type: String,
}

/// The tables SQL can read.
#[derive(Serialize, ToSchema)]
pub(crate) struct TableList {
    tables: Vec<TableView>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Table)]
struct TableView {
    name: String,
    columns: Vec<TableColumn>,
}

#[derive(Serialize, ToSchema)]
struct TableColumn {
    name: String,
    /// The Arrow data type, as Arrow prints it.
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

enum Format {
    Json,
    Csv,
    Arrow,
}

fn format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains(ARROW_STREAM) {
        Format::Arrow
    } else if accept.contains(CSV) {
        Format::Csv
    } else {
        Format::Json
    }
}

/// Runs one read-only SQL query within the server's limits; the rows come back as JSON,
/// or as CSV or an Arrow IPC stream when `Accept` asks for them.
#[utoipa::path(
    post,
    path = "/api/v1/sql",
    tag = "sql",
    request_body(content = SqlRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The query's rows", content(
            (SqlAnswer = "application/json"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
        )),
        (status = 400, description = "The body or the query is refused", body = ErrorBody),
        (status = 422, description = "The query went over a limit (rows, time, memory)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    // Parsed by hand so that a malformed body is a JSON error like every other.
    let request: SqlRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::bad_request(format!("the body must be {{\"sql\": \"...\"}}: {e}")))?;
    let limits = state.store.config().sql.clone();
    let batches = state.store.sql(&request.sql, &limits).await?;
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    match format(&headers) {
        Format::Json => Ok(Json(to_json(&schema, &batches)?).into_response()),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut out);
                for batch in &batches {
                    writer.write(batch).map_err(storage)?;
                }
            }
            Ok(with_type(out, CSV))
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut writer = StreamWriter::try_new(&mut out, &schema).map_err(storage)?;
                for batch in &batches {
                    writer.write(batch).map_err(storage)?;
                }
                writer.finish().map_err(storage)?;
            }
            Ok(with_type(out, ARROW_STREAM))
        }
    }
}

/// The tables SQL can read, with their columns.
#[utoipa::path(
    get,
    path = "/api/v1/tables",
    tag = "sql",
    responses(
        (status = 200, description = "The tables", body = TableList),
    )
)]
pub(crate) async fn tables(State(state): State<AppState>) -> Json<TableList> {
    let tables = state
        .store
        .tables()
        .into_iter()
        .map(|table| TableView {
            name: table.name,
            columns: table
                .schema
                .fields()
                .iter()
                .map(|field| TableColumn {
                    name: field.name().clone(),
                    data_type: field.data_type().to_string(),
                    nullable: field.is_nullable(),
                })
                .collect(),
        })
        .collect();
    Json(TableList { tables })
}

fn columns(schema: &SchemaRef) -> Vec<SqlColumn> {
    schema
        .fields()
        .iter()
        .map(|field| SqlColumn {
            name: field.name().clone(),
            data_type: field.data_type().to_string(),
        })
        .collect()
}

fn to_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<SqlAnswer> {
    let mut out = Vec::new();
    {
        // Explicit nulls, so that every row object has every column.
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut out);
        for batch in batches {
            writer.write(batch).map_err(storage)?;
        }
        writer.finish().map_err(storage)?;
    }
    let rows: Value = if out.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&out).map_err(|e| Error::bad_request(e.to_string()))?
    };
    let row_count: usize = batches.iter().map(RecordBatch::num_rows).sum();
    Ok(SqlAnswer {
        columns: columns(schema),
        rows,
        row_count,
    })
}

fn with_type(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn storage(error: datafusion::arrow::error::ArrowError) -> Error {
    Error::Storage(meshscope_storage::Error::Arrow(error))
}
