//! `GET /api/v1/proxies` and `GET /api/v1/proxies/{id}/metrics`: the proxies that report
//! their own statistics, and those statistics as per-minute series.

use axum::Json;
use axum::extract::{Path, State};
use meshscope_storage::{EpochMillis, MINUTE_MS};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::window::WindowParams;

/// A proxy not heard from for longer than this is shown as stale; Envoy flushes its
/// statistics every few seconds, so two minutes of silence means it is gone or cut off.
const STALE_AFTER_MS: EpochMillis = 2 * MINUTE_MS;

/// Most names one request may ask for.
const MAX_NAMES: usize = 50;

#[derive(Debug, Serialize)]
pub(crate) struct ProxyList {
    proxies: Vec<ProxyView>,
}

#[derive(Debug, Serialize)]
struct ProxyView {
    id: String,
    service: String,
    instance: String,
    envoy_version: String,
    last_seen: EpochMillis,
    status: &'static str,
}

pub(crate) async fn list(State(state): State<AppState>) -> Json<ProxyList> {
    let now = state.now();
    let proxies = state
        .store
        .proxy_metrics()
        .proxies()
        .into_iter()
        .map(|p| ProxyView {
            status: if now - p.last_seen > STALE_AFTER_MS {
                "stale"
            } else {
                "up"
            },
            id: p.id,
            service: p.service,
            instance: p.instance,
            envoy_version: p.envoy_version,
            last_seen: p.last_seen,
        })
        .collect();
    Json(ProxyList { proxies })
}

#[derive(Debug, Deserialize)]
pub(crate) struct MetricsParams {
    #[serde(flatten)]
    window: WindowParams,
    names: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ProxyMetricsView {
    proxy: String,
    start: EpochMillis,
    end: EpochMillis,
    series: Vec<SeriesView>,
}

#[derive(Debug, Serialize)]
struct SeriesView {
    name: String,
    cluster: String,
    kind: &'static str,
    points: Vec<PointView>,
}

#[derive(Debug, Serialize)]
struct PointView {
    t: EpochMillis,
    value: f64,
}

pub(crate) async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<MetricsParams>,
) -> Result<Json<ProxyMetricsView>> {
    let range = params.window.resolve(state.now())?;
    let store = state.store.proxy_metrics();
    if store.proxy(&id).is_none() {
        return Err(Error::not_found(format!("no proxy `{id}` has reported")));
    }
    let names: Vec<String> = params
        .names
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() > MAX_NAMES {
        return Err(Error::bad_request(format!(
            "ask for at most {MAX_NAMES} names at once"
        )));
    }
    let series = store
        .series(&id, &names, range.start, range.end)
        .into_iter()
        .map(|s| SeriesView {
            name: s.name,
            cluster: s.cluster,
            kind: s.kind.name(),
            points: s
                .points
                .into_iter()
                .map(|(t, value)| PointView { t, value })
                .collect(),
        })
        .collect();
    Ok(Json(ProxyMetricsView {
        proxy: id,
        start: range.start,
        end: range.end,
        series,
    }))
}
