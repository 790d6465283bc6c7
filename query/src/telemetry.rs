//! `/healthz`, `/metrics`, and the request counters the API reports about itself.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

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
    metrics::gauge!("meshscope_store_moving_spans").set(kept.len() as f64);
    metrics::gauge!("meshscope_store_moving_keys").set(keys as f64);
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
    metrics::counter!("meshscope_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("meshscope_http_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    response
}
