//! `GET /api/v1/services` and `/api/v1/services/{id}[/instances|/endpoints]`.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use meshscope_storage::{
    Aggregate, EpochMillis, KeyFilter, Metrics, RowKey, ServiceRef, Store, Table, TimeRange,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::extract::{ApiQuery, percent_decode};
use crate::graph::ServiceGraph;
use crate::state::AppState;
use crate::view::{NodeMetrics, NodeView, Point, dense_series};
use crate::window::{WindowParams, minutes_in};

pub(crate) const SERVICES_PREFIX: &str = "/api/v1/services/";

#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    #[serde(flatten)]
    window: WindowParams,
    namespace: Option<String>,
}

#[derive(Debug, Serialize)]
struct ServiceList {
    start: EpochMillis,
    end: EpochMillis,
    services: Vec<NodeView>,
}

/// Every node of the window's graph, so that the list and the map agree.
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let range = params.window.resolve(state.now())?;
    state.map_read_over(&params.window);
    let minutes = minutes_in(range);
    let graph = ServiceGraph::load(&state.store, range).await?;
    let namespace = params.namespace.as_deref().filter(|ns| !ns.is_empty());
    let services = graph
        .nodes
        .iter()
        .filter(|node| namespace.is_none_or(|ns| node.service.namespace == ns))
        .map(|node| NodeView::new(&node.service, &node.metrics, minutes))
        .collect();
    Ok(Json(ServiceList {
        start: range.start,
        end: range.end,
        services,
    })
    .into_response())
}

/// What a path under `/api/v1/services/` asks for.
#[derive(Debug, PartialEq, Eq)]
enum ServiceResource {
    Detail(String),
    Instances(String),
    Endpoints(String),
}

impl ServiceResource {
    /// Parses the raw (still percent-encoded) path, so that `shop%2Finstances` is the
    /// service `shop/instances` while `shop/instances` is the instances of `shop`.
    fn parse(raw_path: &str) -> Result<Self> {
        let rest = raw_path
            .strip_prefix(SERVICES_PREFIX)
            .unwrap_or(raw_path)
            .trim_end_matches('/');
        let (raw_id, make): (&str, fn(String) -> ServiceResource) =
            if let Some(id) = rest.strip_suffix("/instances") {
                (id, ServiceResource::Instances)
            } else if let Some(id) = rest.strip_suffix("/endpoints") {
                (id, ServiceResource::Endpoints)
            } else {
                (rest, ServiceResource::Detail)
            };
        let id = percent_decode(raw_id)
            .ok_or_else(|| Error::bad_request(format!("invalid service id {raw_id:?}")))?;
        if id.is_empty() {
            return Err(Error::not_found("no service id in the path"));
        }
        Ok(make(id))
    }
}

/// One handler for the whole subtree: ids contain `/`, which a plain path segment cannot.
pub(crate) async fn service_resource(
    State(state): State<AppState>,
    uri: Uri,
    ApiQuery(window): ApiQuery<WindowParams>,
) -> Result<Response> {
    let now = state.now();
    let range = window.resolve(now)?;
    let response = match ServiceResource::parse(uri.path())? {
        ServiceResource::Detail(id) => detail(&state.store, range, &id, now).await?.into_response(),
        ServiceResource::Instances(id) => {
            let service = resolve(&state.store, range, &id).await?;
            members(
                &state.store,
                range,
                service,
                Table::InstanceMinute,
                "instances",
            )
            .await?
            .into_response()
        }
        ServiceResource::Endpoints(id) => {
            let service = resolve(&state.store, range, &id).await?;
            members(
                &state.store,
                range,
                service,
                Table::EndpointMinute,
                "endpoints",
            )
            .await?
            .into_response()
        }
    };
    Ok(response)
}

#[derive(Debug, Serialize)]
struct ServiceDetail {
    #[serde(flatten)]
    node: NodeView,
    start: EpochMillis,
    end: EpochMillis,
    /// The server's clock when it answered: the series' minute that holds it is still
    /// filling, and minutes after it have not begun.
    now: EpochMillis,
    series: Vec<Point<NodeMetrics>>,
}

async fn detail(
    store: &Store,
    range: TimeRange,
    id: &str,
    now: EpochMillis,
) -> Result<Json<ServiceDetail>> {
    let service = resolve(store, range, id).await?;
    let filter = service_filter(&service);
    let aggregates = store
        .aggregate(Table::ServiceMinute, range, &filter)
        .await?;
    let metrics = sum_metrics(&aggregates);
    let series = store.series(Table::ServiceMinute, range, &filter).await?;
    let points = series
        .into_iter()
        .find(|(key, _)| matches!(key, RowKey::Service { service: s } if *s == service))
        .map(|(_, points)| points)
        .unwrap_or_default();
    Ok(Json(ServiceDetail {
        node: NodeView::new(&service, &metrics, minutes_in(range)),
        start: range.start,
        end: range.end,
        now,
        series: dense_series(range, &points, |m| NodeMetrics::from_metrics(m, 1)),
    }))
}

#[derive(Debug, Serialize)]
struct Member {
    name: String,
    metrics: NodeMetrics,
}

async fn members(
    store: &Store,
    range: TimeRange,
    service: ServiceRef,
    table: Table,
    field: &'static str,
) -> Result<Json<serde_json::Value>> {
    let minutes = minutes_in(range);
    let aggregates = store
        .aggregate(table, range, &service_filter(&service))
        .await?;
    let mut members: Vec<(String, Metrics)> = aggregates
        .into_iter()
        .filter_map(|aggregate| match aggregate.key {
            RowKey::Instance {
                service: owner,
                instance: name,
            }
            | RowKey::Endpoint {
                service: owner,
                endpoint: name,
            } if owner == service => Some((name, aggregate.metrics)),
            _ => None,
        })
        .collect();
    members.sort_by(|(a_name, a), (b_name, b)| b.calls.cmp(&a.calls).then(a_name.cmp(b_name)));
    let members: Vec<Member> = members
        .into_iter()
        .map(|(name, metrics)| Member {
            name,
            metrics: NodeMetrics::from_metrics(&metrics, minutes),
        })
        .collect();
    Ok(Json(serde_json::json!({
        "service": service.id(),
        "start": range.start,
        "end": range.end,
        field: members,
    })))
}

/// The stored service an API id names in this window: a service first, then a virtual
/// node of that name; known from its own rows or from an edge that touches it.
async fn resolve(store: &Store, range: TimeRange, id: &str) -> Result<ServiceRef> {
    let candidates = match id.split_once('/') {
        Some((namespace, name)) => vec![ServiceRef::service(namespace, name)],
        None => vec![ServiceRef::service("", id), ServiceRef::virtual_node(id)],
    };
    for table in [Table::ServiceMinute, Table::EdgeMinute] {
        for candidate in &candidates {
            let rows = store
                .aggregate(table, range, &service_filter(candidate))
                .await?;
            if !rows.is_empty() {
                return Ok(candidate.clone());
            }
        }
    }
    Err(Error::not_found(format!(
        "service {id:?} has no traffic in this window"
    )))
}

fn service_filter(service: &ServiceRef) -> KeyFilter {
    KeyFilter {
        service: Some(service.clone()),
        ..KeyFilter::default()
    }
}

fn sum_metrics(aggregates: &[Aggregate]) -> Metrics {
    let mut total = Metrics::default();
    for aggregate in aggregates {
        total.merge(&aggregate.metrics);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::ServiceResource::{self, *};

    #[test]
    fn service_paths() {
        let cases = [
            (
                "/api/v1/services/shop/backend",
                Detail("shop/backend".into()),
            ),
            (
                "/api/v1/services/shop%2Fbackend",
                Detail("shop/backend".into()),
            ),
            ("/api/v1/services/payments/", Detail("payments".into())),
            (
                "/api/v1/services/shop/backend/instances",
                Instances("shop/backend".into()),
            ),
            (
                "/api/v1/services/shop%2Fbackend/endpoints",
                Endpoints("shop/backend".into()),
            ),
            (
                "/api/v1/services/shop%2Finstances",
                Detail("shop/instances".into()),
            ),
            ("/api/v1/services/a%20b", Detail("a b".into())),
        ];
        for (path, expected) in cases {
            assert_eq!(ServiceResource::parse(path).unwrap(), expected, "{path}");
        }
        assert!(ServiceResource::parse("/api/v1/services/bad%zz").is_err());
        assert!(ServiceResource::parse("/api/v1/services/instances").is_ok());
    }
}
