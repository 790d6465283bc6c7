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
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::state::AppState;

pub(crate) const CSV: &str = "text/csv";
pub(crate) const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
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

pub(crate) async fn tables(State(state): State<AppState>) -> Json<Value> {
    let tables: Vec<Value> = state
        .store
        .tables()
        .into_iter()
        .map(|table| {
            json!({
                "name": table.name,
                "columns": columns(&table.schema, true),
            })
        })
        .collect();
    Json(json!({ "tables": tables }))
}

fn columns(schema: &SchemaRef, with_nullable: bool) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .map(|field| {
            let mut column = json!({
                "name": field.name(),
                "type": field.data_type().to_string(),
            });
            if with_nullable {
                column["nullable"] = json!(field.is_nullable());
            }
            column
        })
        .collect()
}

fn to_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Value> {
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
    Ok(json!({
        "columns": columns(schema, false),
        "rows": rows,
        "row_count": row_count,
    }))
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
