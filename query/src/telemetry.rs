//! `/healthz`, `/metrics`, and the request counters the API reports about itself.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Requests answered, by route template and status.
pub const HTTP_REQUESTS: &str = "meshscope_http_requests_total";
/// Seconds from a request's arrival to its answer's head, by route template.
pub const HTTP_REQUEST_SECONDS: &str = "meshscope_http_request_duration_seconds";
/// Buckets of [`HTTP_REQUEST_SECONDS`]: from an answer out of a cache to a long SQL query.
pub const HTTP_REQUEST_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const WARM_READS: &str = "meshscope_warm_reads_total";
const WARM_READ_ERRORS: &str = "meshscope_warm_read_errors_total";
const MOVING_SPANS: &str = "meshscope_store_moving_spans";
const MOVING_KEYS: &str = "meshscope_store_moving_keys";
const STORE_FILES: &str = "meshscope_store_files";
const STORE_BYTES: &str = "meshscope_store_bytes";
const LAST_WRITE_AGE: &str = "meshscope_store_last_write_age_seconds";

/// Gives the metrics this crate reports their HELP text and unit.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template and status."
    );
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request, by route template."
    );
    describe_counter!(WARM_READS, "Reads ahead of watched windows done.");
    describe_counter!(
        WARM_READ_ERRORS,
        "Reads ahead of watched windows that failed."
    );
    describe_gauge!(
        MOVING_SPANS,
        "Minute spans whose running totals are kept for windows that end now."
    );
    describe_gauge!(MOVING_KEYS, "Keys held in the kept minute spans.");
    describe_gauge!(STORE_FILES, "Parquet files the store reads, all tables.");
    describe_gauge!(
        STORE_BYTES,
        Unit::Bytes,
        "Size on disk of the Parquet files the store reads."
    );
    describe_gauge!(
        LAST_WRITE_AGE,
        Unit::Seconds,
        "Seconds since the store last wrote a file successfully; absent before the first."
    );
}

/// `{"status":"ok"}`; while the store cannot write, `"status":"degraded"` and a `storage`
/// object saying why (reads are still served, and closed minutes wait in memory). The
/// answer stays 200 either way: a restart would not free the disk, and would lose what
/// waits in memory.
pub(crate) async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let Some(failure) = state.store.write_failure() else {
        return Json(serde_json::json!({ "status": "ok" }));
    };
    let since = chrono::DateTime::from_timestamp_millis(failure.since_ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    Json(serde_json::json!({
        "status": "degraded",
        "storage": {
            "writable": false,
            "reason": failure.reason,
            "detail": failure.detail,
            "failing_since": since,
            "failed_writes": failure.failed_writes,
        },
    }))
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let Some(render) = state.render_metrics.as_ref() else {
        return crate::error::Error::not_found("no metrics recorder is installed").into_response();
    };
    let kept = state.store.moving_spans();
    let keys: usize = kept.iter().map(|span| span.keys).sum();
    metrics::gauge!(MOVING_SPANS).set(kept.len() as f64);
    metrics::gauge!(MOVING_KEYS).set(keys as f64);
    let figures = state.store.figures();
    metrics::gauge!(STORE_FILES).set(figures.files as f64);
    metrics::gauge!(STORE_BYTES).set(figures.bytes as f64);
    if let Some(written) = figures.last_write_ms {
        let age_ms = (state.now() - written).max(0);
        metrics::gauge!(LAST_WRITE_AGE).set(age_ms as f64 / 1000.0);
    }
    // Rendering walks every registered series; keep it off the reactor threads.
    let render = render.clone();
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Counts requests by route template (never the raw path: ids would explode the series)
/// and status, and times them by route.
pub(crate) async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16().to_string();
    tracing::debug!(route = %route, status = %status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "http request");
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_REQUEST_SECONDS, "route" => route).record(elapsed.as_secs_f64());
    response
}
