//! `GET /api/v1/proxies` and `GET /api/v1/proxies/{id}/metrics`: the proxies that report
//! their own statistics, and those statistics as per-minute series.

use axum::Json;
use axum::extract::State;
use meshscope_storage::{EpochMillis, MINUTE_MS, ProxyFilter, ProxyMetricKind, ProxyMetricRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::window::WindowParams;

/// A proxy not heard from for longer than this is shown as stale; Envoy flushes its
/// statistics every few seconds, so two minutes of silence means it is gone or cut off.
const STALE_AFTER_MS: EpochMillis = 2 * MINUTE_MS;

/// Most names one request may ask for.
const MAX_NAMES: usize = 50;

/// The proxies that report their own statistics.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProxyList {
    proxies: Vec<ProxyView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Proxy)]
struct ProxyView {
    /// The proxy's node id.
    id: String,
    /// The service it serves.
    service: String,
    instance: String,
    envoy_version: String,
    /// When it last reported, epoch milliseconds.
    last_seen: EpochMillis,
    /// `up`, or `stale` when it has not reported for two minutes.
    #[schema(value_type = ProxyStatus)]
    status: &'static str,
}

/// Whether a proxy reports.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: `status` is worked out from `last_seen`.
pub(crate) enum ProxyStatus {
    Up,
    Stale,
}

/// Every proxy that has reported its statistics since the server started.
#[utoipa::path(
    get,
    path = "/api/v1/proxies",
    tag = "proxies",
    responses(
        (status = 200, description = "The reporting proxies", body = ProxyList),
    )
)]
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

/// Which statistics `GET /api/v1/proxies/{id}/metrics` shows.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MetricsParams {
    /// Comma-separated statistic names (at most 50); every statistic when absent.
    #[param(example = "upstream_rq_5xx,membership_healthy")]
    names: Option<String>,
}

/// The proxy whose statistics are asked for.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only its description is used: the handler reads the id as a string.
pub(crate) struct ProxyIdParam {
    /// The proxy's node id.
    #[param(min_length = 1, example = "frontend-v1-pod-1")]
    id: String,
}

/// A proxy's statistics per minute.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProxyMetricsView {
    proxy: String,
    start: EpochMillis,
    end: EpochMillis,
    series: Vec<SeriesView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProxyStatSeries)]
struct SeriesView {
    name: String,
    cluster: String,
    /// The service the cluster leads to; empty when unknown or server-wide.
    upstream: String,
    /// `counter`, `gauge` or `histogram`.
    #[schema(value_type = StatKind)]
    kind: &'static str,
    points: Vec<PointView>,
}

/// The kinds of statistic a proxy reports.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: the store names the kind.
pub(crate) enum StatKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProxyStatPoint)]
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

/// One proxy's statistics as per-minute series.
#[utoipa::path(
    get,
    path = "/api/v1/proxies/{id}/metrics",
    tag = "proxies",
    params(ProxyIdParam, WindowParams, MetricsParams),
    responses(
        (status = 200, description = "The proxy's statistics", body = ProxyMetricsView),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "No such proxy has reported", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(window): ApiQuery<WindowParams>,
    ApiQuery(params): ApiQuery<MetricsParams>,
) -> Result<Json<ProxyMetricsView>> {
    let range = window.resolve(state.now())?;
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
