//! `GET /api/v1/services/{id}/endpoints/{endpoint}/dependencies`: which outbound endpoints
//! a service's proxy called while serving one of its inbound endpoints, and which inbound
//! endpoints of other services led to it. Both come from requests whose id the
//! applications passed on (see the collector's pairing by request id); without that, a
//! service has none.

use axum::Json;
use meshscope_storage::{
    EpochMillis, KeyFilter, Metrics, RowKey, ServiceRef, Table, TimeRange, WindowReader,
};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ErrorBody, Result};
use crate::services::{ServiceIdParam, resolve};
use crate::view::percentiles;
use crate::window::WindowParams;

/// The endpoint in the path: its name as the endpoint list gives it (`GET /items/{id}`),
/// percent-encoded as one segment.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only its description is used: the name is read from the raw path.
pub(crate) struct EndpointParam {
    #[param(min_length = 1, example = "GET /api/items/{id}")]
    endpoint: String,
}

/// One endpoint of another service, with the calls between the two.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Dependency {
    /// The other service's id.
    service: String,
    /// The other service's endpoint.
    endpoint: String,
    /// Calls as the calling proxy logged them: one per request, retries included.
    calls: u64,
    errors: u64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl Dependency {
    fn new(service: &ServiceRef, endpoint: String, metrics: &Metrics) -> Dependency {
        let [p50_ms, p95_ms, p99_ms] = percentiles(metrics);
        Dependency {
            service: service.id(),
            endpoint,
            calls: metrics.calls,
            errors: metrics.errors,
            p50_ms,
            p95_ms,
            p99_ms,
        }
    }
}

/// An endpoint's dependencies over a window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndpointDependencies {
    /// The service's id.
    service: String,
    /// The inbound endpoint asked about.
    endpoint: String,
    start: EpochMillis,
    end: EpochMillis,
    /// The outbound endpoints the service's proxy called while serving this one, most
    /// calls first.
    dependencies: Vec<Dependency>,
    /// The inbound endpoints of other services whose serving called this one, most calls
    /// first.
    callers: Vec<Dependency>,
}

/// What an inbound endpoint of a service leads to, and what leads to it, by request id.
#[utoipa::path(
    get,
    path = "/api/v1/services/{id}/endpoints/{endpoint}/dependencies",
    tag = "services",
    params(ServiceIdParam, EndpointParam, WindowParams),
    responses(
        (status = 200, description = "The endpoint's dependencies (empty when the applications do not pass the request id on)", body = EndpointDependencies),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "The service has no traffic in the window", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn endpoint_dependencies(
    store: &dyn WindowReader,
    range: TimeRange,
    id: &str,
    endpoint: &str,
) -> Result<Json<EndpointDependencies>> {
    let service = resolve(store, range, id).await?;
    let outbound = KeyFilter {
        service: Some(service.clone()),
        name: Some(endpoint.to_string()),
        ..KeyFilter::default()
    };
    let inbound = KeyFilter {
        target: Some(service.clone()),
        target_name: Some(endpoint.to_string()),
        ..KeyFilter::default()
    };
    let dependencies = linked(
        store,
        range,
        &outbound,
        |from, from_endpoint, to, to_endpoint| {
            (*from == service && from_endpoint == endpoint)
                .then(|| (to.clone(), to_endpoint.to_string()))
        },
    )
    .await?;
    let callers = linked(
        store,
        range,
        &inbound,
        |from, from_endpoint, to, to_endpoint| {
            (*to == service && to_endpoint == endpoint)
                .then(|| (from.clone(), from_endpoint.to_string()))
        },
    )
    .await?;
    Ok(Json(EndpointDependencies {
        service: service.id(),
        endpoint: endpoint.to_string(),
        start: range.start,
        end: range.end,
        dependencies,
        callers,
    }))
}

/// The dependency rows `filter` selects over `range`, each named by `other` (the endpoint
/// at the other end, or `None` for a row that is not about the endpoint asked for), most
/// calls first.
async fn linked(
    store: &dyn WindowReader,
    range: TimeRange,
    filter: &KeyFilter,
    other: impl Fn(&ServiceRef, &str, &ServiceRef, &str) -> Option<(ServiceRef, String)>,
) -> Result<Vec<Dependency>> {
    let mut list: Vec<Dependency> = store
        .aggregate(Table::DependencyMinute, range, filter)
        .await?
        .into_iter()
        .filter_map(|aggregate| match &aggregate.key {
            RowKey::Dependency {
                service,
                endpoint,
                target,
                target_endpoint,
            } => other(service, endpoint, target, target_endpoint)
                .map(|(at, name)| Dependency::new(&at, name, &aggregate.metrics)),
            _ => None,
        })
        .collect();
    list.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.endpoint.cmp(&b.endpoint))
    });
    Ok(list)
}
