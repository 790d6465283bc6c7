//! `GET /api/v1/proxies` and `GET /api/v1/proxies/{id}/metrics`: the proxies that report
//! their own statistics, and those statistics as per-minute series.

use axum::Json;
use axum::extract::{Path, State};
use meshscope_storage::{EpochMillis, MINUTE_MS, ProxyFilter, ProxyMetricKind, ProxyMetricRow};
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
        .proxy_registry()
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
    /// The service the cluster leads to; empty when unknown or server-wide.
    upstream: String,
    kind: &'static str,
    points: Vec<PointView>,
}

#[derive(Debug, Serialize)]
struct PointView {
    t: EpochMillis,
    value: f64,
    /// Gauges: the extremes of the reports in the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    /// Histograms: samples in the bucket and their quantiles, interpolated within
    /// Envoy's buckets; null quantiles without samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p95: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99: Option<Option<f64>>,
}

impl PointView {
    fn new(row: &ProxyMetricRow) -> Self {
        let gauge = row.kind == ProxyMetricKind::Gauge;
        let histogram = row.kind == ProxyMetricKind::Histogram;
        let quantile = |q| histogram.then(|| row.quantile(q).map(round3));
        Self {
            t: row.minute,
            value: row.value,
            min: gauge.then_some(row.min),
            max: gauge.then_some(row.max),
            count: histogram.then_some(row.count),
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
        }
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

pub(crate) async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<MetricsParams>,
) -> Result<Json<ProxyMetricsView>> {
    let range = params.window.resolve(state.now())?;
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
    let filter = ProxyFilter {
        proxy: Some(id.clone()),
        names,
        ..ProxyFilter::default()
    };
    let rows = state.store.proxy_rows(range, &filter).await?;
    if rows.is_empty() && state.store.proxy_registry().proxy(&id).is_none() {
        return Err(Error::not_found(format!("no proxy `{id}` has reported")));
    }
    let mut series: Vec<SeriesView> = Vec::new();
    for row in &rows {
        let same = series
            .last()
            .is_some_and(|s| s.name == row.name && s.cluster == row.cluster);
        if !same {
            series.push(SeriesView {
                name: row.name.clone(),
                cluster: row.cluster.clone(),
                upstream: String::new(),
                kind: row.kind.name(),
                points: Vec::new(),
            });
        }
        if let Some(current) = series.last_mut() {
            if !row.upstream.is_empty() {
                current.upstream.clone_from(&row.upstream);
            }
            current.points.push(PointView::new(row));
        }
    }
    Ok(Json(ProxyMetricsView {
        proxy: id,
        start: range.start,
        end: range.end,
        series,
    }))
}
