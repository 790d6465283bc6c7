//! `GET /api/v1/services` and `/api/v1/services/{id}[/instances|/endpoints]`; an
//! endpoint's dependencies are answered by [`crate::endpoint_dependencies`].

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use meshscope_storage::{
    Aggregate, EpochMillis, KeyFilter, Metrics, RowKey, ServiceRef, Table, TimeRange, WindowReader,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::endpoint_dependencies::endpoint_dependencies;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiQuery, percent_decode};
use crate::graph::ServiceGraph;
use crate::instance_pairs::instance_pairs;
use crate::state::AppState;
use crate::view::{NodeMetrics, NodeView, Point, dense_series};
use crate::window::{WindowParams, minutes_in};

pub(crate) const SERVICES_PREFIX: &str = "/api/v1/services/";

/// Which services `GET /api/v1/services` lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only the services of this namespace.
    namespace: Option<String>,
}

/// The services of a window, with their figures.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceList {
    /// Start of the window, epoch milliseconds.
    start: EpochMillis,
    /// End of the window, epoch milliseconds (exclusive).
    end: EpochMillis,
    services: Vec<NodeView>,
}

/// Every node of the window's graph, so that the list and the map agree.
#[utoipa::path(
    get,
    path = "/api/v1/services",
    tag = "services",
    params(WindowParams, ListParams),
    responses(
        (status = 200, description = "The services of the window", body = ServiceList),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(window): ApiQuery<WindowParams>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let range = window.resolve(state.now())?;
    state.map_read_over(&window);
    let minutes = minutes_in(range);
    let graph = ServiceGraph::load(state.store.as_ref(), range).await?;
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
    InstancePairs(String),
    /// A service's id and one of its endpoints.
    Dependencies(String, String),
}

impl ServiceResource {
    /// Parses the raw (still percent-encoded) path, so that `shop%2Finstances` is the
    /// service `shop/instances` while `shop/instances` is the instances of `shop`.
    fn parse(raw_path: &str) -> Result<Self> {
        let rest = raw_path
            .strip_prefix(SERVICES_PREFIX)
            .unwrap_or(raw_path)
            .trim_end_matches('/');
        if let Some((raw_id, raw_endpoint)) = rest
            .strip_suffix("/dependencies")
            .and_then(|rest| rest.split_once("/endpoints/"))
        {
            let decode = |raw: &str, what: &str| {
                percent_decode(raw)
                    .filter(|text| !text.is_empty())
                    .ok_or_else(|| Error::bad_request(format!("invalid {what} {raw:?}")))
            };
            return Ok(ServiceResource::Dependencies(
                decode(raw_id, "service id")?,
                decode(raw_endpoint, "endpoint")?,
            ));
        }
        let (raw_id, make): (&str, fn(String) -> ServiceResource) =
            if let Some(id) = rest.strip_suffix("/instances") {
                (id, ServiceResource::Instances)
            } else if let Some(id) = rest.strip_suffix("/endpoints") {
                (id, ServiceResource::Endpoints)
            } else if let Some(id) = rest.strip_suffix("/instance-pairs") {
                (id, ServiceResource::InstancePairs)
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
/// The resources it serves are documented by [`service_detail`], [`service_instances`],
/// [`service_endpoints`], [`instance_pairs`] and [`endpoint_dependencies`].
pub(crate) async fn service_resource(
    State(state): State<AppState>,
    uri: Uri,
    ApiQuery(window): ApiQuery<WindowParams>,
) -> Result<Response> {
    let now = state.now();
    let range = window.resolve(now)?;
    let response = match ServiceResource::parse(uri.path())? {
        ServiceResource::Detail(id) => service_detail(state.store.as_ref(), range, &id, now)
            .await?
            .into_response(),
        ServiceResource::Instances(id) => service_instances(state.store.as_ref(), range, &id)
            .await?
            .into_response(),
        ServiceResource::Endpoints(id) => service_endpoints(state.store.as_ref(), range, &id)
            .await?
            .into_response(),
        ServiceResource::InstancePairs(id) => instance_pairs(state.store.as_ref(), range, &id)
            .await?
            .into_response(),
        ServiceResource::Dependencies(id, endpoint) => {
            endpoint_dependencies(state.store.as_ref(), range, &id, &endpoint)
                .await?
                .into_response()
        }
    };
    Ok(response)
}

/// The id of a service in a path: `namespace/name` with its `/` as is or as `%2F`, or a
/// bare name (a service without a namespace, or a virtual node such as `external`).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only its description is used: the id is read from the raw path.
pub(crate) struct ServiceIdParam {
    #[param(min_length = 1, example = "shop/frontend")]
    id: String,
}

/// A service's figures over the window and per minute.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceDetail {
    #[serde(flatten)]
    node: NodeView,
    start: EpochMillis,
    end: EpochMillis,
    /// The server's clock when it answered: the series' minute that holds it is still
    /// filling, and minutes after it have not begun.
    now: EpochMillis,
    /// One point per minute of the window, oldest first; quiet minutes have zero calls.
    series: Vec<Point<NodeMetrics>>,
}

/// A service's figures over the window and per minute.
#[utoipa::path(
    get,
    path = "/api/v1/services/{id}",
    tag = "services",
    params(ServiceIdParam, WindowParams),
    responses(
        (status = 200, description = "The service's figures", body = ServiceDetail),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "The service has no traffic in the window", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn service_detail(
    store: &dyn WindowReader,
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

/// An instance (pod, VM) or an endpoint (route) of a service, with its figures.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Member {
    name: String,
    metrics: NodeMetrics,
}

/// The instances of a service, most calls first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstanceList {
    /// The service's id.
    service: String,
    start: EpochMillis,
    end: EpochMillis,
    instances: Vec<Member>,
}

/// The endpoints of a service, most calls first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndpointList {
    /// The service's id.
    service: String,
    start: EpochMillis,
    end: EpochMillis,
    endpoints: Vec<Member>,
}

/// The instances of a service (the proxies that reported its calls), most calls first.
#[utoipa::path(
    get,
    path = "/api/v1/services/{id}/instances",
    tag = "services",
    params(ServiceIdParam, WindowParams),
    responses(
        (status = 200, description = "The service's instances", body = InstanceList),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "The service has no traffic in the window", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn service_instances(
    store: &dyn WindowReader,
    range: TimeRange,
    id: &str,
) -> Result<Json<InstanceList>> {
    let service = resolve(store, range, id).await?;
    let instances = members(store, range, &service, Table::InstanceMinute).await?;
    Ok(Json(InstanceList {
        service: service.id(),
        start: range.start,
        end: range.end,
        instances,
    }))
}

/// The endpoints of a service (the routes it was called on), most calls first.
#[utoipa::path(
    get,
    path = "/api/v1/services/{id}/endpoints",
    tag = "services",
    params(ServiceIdParam, WindowParams),
    responses(
        (status = 200, description = "The service's endpoints", body = EndpointList),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "The service has no traffic in the window", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn service_endpoints(
    store: &dyn WindowReader,
    range: TimeRange,
    id: &str,
) -> Result<Json<EndpointList>> {
    let service = resolve(store, range, id).await?;
    let endpoints = members(store, range, &service, Table::EndpointMinute).await?;
    Ok(Json(EndpointList {
        service: service.id(),
        start: range.start,
        end: range.end,
        endpoints,
    }))
}

async fn members(
    store: &dyn WindowReader,
    range: TimeRange,
    service: &ServiceRef,
    table: Table,
) -> Result<Vec<Member>> {
    let minutes = minutes_in(range);
    let aggregates = store
        .aggregate(table, range, &service_filter(service))
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
            } if owner == *service => Some((name, aggregate.metrics)),
            _ => None,
        })
        .collect();
    members.sort_by(|(a_name, a), (b_name, b)| b.calls.cmp(&a.calls).then(a_name.cmp(b_name)));
    Ok(members
        .into_iter()
        .map(|(name, metrics)| Member {
            name,
            metrics: NodeMetrics::from_metrics(&metrics, minutes),
        })
        .collect())
}

/// The stored service an API id names in this window: a service first, then a virtual
/// node of that name; known from its own rows or from an edge that touches it.
pub(crate) async fn resolve(
    store: &dyn WindowReader,
    range: TimeRange,
    id: &str,
) -> Result<ServiceRef> {
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
            (
                "/api/v1/services/shop%2Fbackend/endpoints/GET%20%2Fitems%2F%7Bid%7D/dependencies",
                Dependencies("shop/backend".into(), "GET /items/{id}".into()),
            ),
            (
                "/api/v1/services/shop/backend/endpoints/GET /items/{id}/dependencies",
                Dependencies("shop/backend".into(), "GET /items/{id}".into()),
            ),
            ("/api/v1/services/shop/endpoints", Endpoints("shop".into())),
            (
                "/api/v1/services/shop%2Fbackend/instance-pairs",
                InstancePairs("shop/backend".into()),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(ServiceResource::parse(path).unwrap(), expected, "{path}");
        }
        assert!(ServiceResource::parse("/api/v1/services/bad%zz").is_err());
        assert!(ServiceResource::parse("/api/v1/services/instances").is_ok());
    }
}
