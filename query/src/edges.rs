//! `GET /api/v1/edges?source=&target=`: one edge's figures and per-minute series, the
//! chosen side and each side on its own.

use axum::Json;
use axum::extract::State;
use meshscope_storage::{
    EpochMillis, KeyFilter, Metrics, Protocol, RowKey, SeriesPoint, ServiceRef, Side, Table,
    TimeRange, WindowReader,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::edge_sides::{EdgeSides, Pairing, SideFigures};
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::topology::{EdgeProtocol, TopologyEdge};
use crate::upstream::UpstreamHealthIndex;
use crate::view::{EdgeMetrics, Point, dense_series};
use crate::window::{WindowParams, minutes_in};

/// Which edge `GET /api/v1/edges` shows.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EdgeParams {
    /// The caller's id, as the map names it.
    #[param(required = true, value_type = String, example = "shop/frontend")]
    source: Option<String>,
    /// The callee's id, as the map names it.
    #[param(required = true, value_type = String, example = "shop/backend")]
    target: Option<String>,
    /// Only the calls over this protocol; every protocol seen when absent.
    #[param(value_type = Option<EdgeProtocol>, inline)]
    protocol: Option<String>,
}

/// The calls from one service to another, per protocol.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EdgeDetails {
    source: String,
    target: String,
    start: EpochMillis,
    end: EpochMillis,
    /// The server's clock when it answered: the series' minute that holds it is still
    /// filling, and minutes after it have not begun.
    now: EpochMillis,
    /// One per protocol seen between the two services.
    edges: Vec<EdgeDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
struct EdgeDetail {
    #[serde(flatten)]
    edge: TopologyEdge,
    /// Per minute, from the server side where it reported, else the client side.
    series: Vec<Point<EdgeMetrics>>,
    /// What the callee's proxy reported; null when it reported nothing.
    server: Option<SideDetail>,
    /// What the caller's proxy reported; null when it reported nothing.
    client: Option<SideDetail>,
    /// Attempts beyond the first that the caller's proxy made; 0 when none.
    retries: u64,
    /// Calls whose caller-cluster header named another service than the certificate.
    identity_conflicts: u64,
    /// The edge's requests matched by request id across its two sides.
    pairing: Pairing,
}

#[derive(Debug, Serialize, ToSchema)]
struct SideDetail {
    /// Calls, errors and latency percentiles, as on the map's edges.
    #[serde(flatten)]
    figures: SideFigures,
    metrics: EdgeMetrics,
    series: Vec<Point<EdgeMetrics>>,
}

/// One edge's figures over the window and per minute: the side believed, and what each
/// side's proxy reported on its own.
#[utoipa::path(
    get,
    path = "/api/v1/edges",
    tag = "map",
    params(EdgeParams, WindowParams),
    responses(
        (status = 200, description = "The edge's figures", body = EdgeDetails),
        (status = 400, description = "A parameter is malformed or missing", body = ErrorBody),
        (status = 404, description = "No calls between the two in the window", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn edge(
    State(state): State<AppState>,
    ApiQuery(window): ApiQuery<WindowParams>,
    ApiQuery(params): ApiQuery<EdgeParams>,
) -> Result<Json<EdgeDetails>> {
    let now = state.now();
    let range = window.resolve(now)?;
    let (Some(source), Some(target)) = (params.source, params.target) else {
        return Err(Error::bad_request("`source` and `target` are required"));
    };
    let protocol = match params.protocol.as_deref() {
        None | Some("") => None,
        Some(text) => Some(Protocol::parse(text).ok_or_else(|| {
            Error::bad_request(format!("invalid protocol {text:?}: expected http or tcp"))
        })?),
    };
    let store = state.store.as_ref();
    let minutes = minutes_in(range);

    let all_edges = store
        .aggregate(Table::EdgeMinute, range, &KeyFilter::default())
        .await?;
    let mut matching: Vec<_> = all_edges
        .into_iter()
        .filter(|aggregate| match &aggregate.key {
            RowKey::Edge {
                source: s,
                target: t,
                protocol: p,
            } => s.id() == source && t.id() == target && protocol.is_none_or(|want| want == *p),
            _ => false,
        })
        .collect();
    if matching.is_empty() {
        return Err(Error::not_found(format!(
            "no calls from {source:?} to {target:?} in this window"
        )));
    }
    matching.sort_by_key(|aggregate| aggregate.key.clone());

    let health = UpstreamHealthIndex::load(store, range).await?;
    let mut edges = Vec::with_capacity(matching.len());
    for aggregate in matching {
        let RowKey::Edge {
            source: source_ref,
            target: target_ref,
            ..
        } = &aggregate.key
        else {
            continue;
        };
        let chosen =
            edge_series(store, range, source_ref, target_ref, &aggregate.key, None).await?;
        let (server, server_total) = side_detail(
            store,
            range,
            source_ref,
            target_ref,
            &aggregate.key,
            Side::Server,
        )
        .await?;
        let (client, client_total) = side_detail(
            store,
            range,
            source_ref,
            target_ref,
            &aggregate.key,
            Side::Client,
        )
        .await?;
        let Some(mut edge) = TopologyEdge::new(
            &aggregate.key,
            aggregate.detected_by,
            &aggregate.metrics,
            minutes,
        ) else {
            continue;
        };
        edge.upstream_health = health.get(&edge.source, &edge.target);
        let sides = EdgeSides::from_totals(client_total.as_ref(), server_total.as_ref());
        edges.push(EdgeDetail {
            edge,
            series: dense_series(range, &chosen, |m| EdgeMetrics::from_metrics(m, 1)),
            server,
            client,
            retries: sides.retries,
            identity_conflicts: sides.identity_conflicts,
            pairing: sides.pairing,
        });
    }
    Ok(Json(EdgeDetails {
        source,
        target,
        start: range.start,
        end: range.end,
        now,
        edges,
    }))
}

async fn side_detail(
    store: &dyn WindowReader,
    range: TimeRange,
    source: &ServiceRef,
    target: &ServiceRef,
    key: &RowKey,
    side: Side,
) -> Result<(Option<SideDetail>, Option<Metrics>)> {
    let points = edge_series(store, range, source, target, key, Some(side)).await?;
    // The side's own points decide whether it reported; the chosen series may hold the
    // other side's figures for the same minutes.
    let points: Vec<SeriesPoint> = points
        .into_iter()
        .filter(|p| p.detected_by == side)
        .collect();
    if points.is_empty() {
        return Ok((None, None));
    }
    let mut total = Metrics::default();
    for point in &points {
        total.merge(&point.metrics);
    }
    let detail = SideDetail {
        figures: SideFigures::from_metrics(&total),
        metrics: EdgeMetrics::from_metrics(&total, minutes_in(range)),
        series: dense_series(range, &points, |m| EdgeMetrics::from_metrics(m, 1)),
    };
    Ok((Some(detail), Some(total)))
}

async fn edge_series(
    store: &dyn WindowReader,
    range: TimeRange,
    source: &ServiceRef,
    target: &ServiceRef,
    key: &RowKey,
    side: Option<Side>,
) -> Result<Vec<SeriesPoint>> {
    let filter = KeyFilter {
        source: Some(source.clone()),
        target: Some(target.clone()),
        side,
        ..KeyFilter::default()
    };
    let series = store.series(Table::EdgeMinute, range, &filter).await?;
    Ok(series
        .into_iter()
        .find(|(series_key, _)| series_key == key)
        .map(|(_, points)| points)
        .unwrap_or_default())
}
