//! Every `/api/v1` route in one table: the path the router matches, its handler, and the
//! documented operations it serves. The router is built from this table and the OpenAPI
//! document's tests compare against it, so a route cannot be served without being
//! described, nor described without being served.

use axum::routing::{MethodRouter, get, post};
use utoipa::openapi::path::HttpMethod;

use crate::state::AppState;
use crate::{
    edges, endpoint_dependencies, instance_pairs, openapi, proxies, services, sql, topology,
};

/// One route of the JSON API.
pub(crate) struct ApiRoute {
    /// The path as the router matches it (axum's syntax: `{id}`, `{*rest}`).
    pub(crate) path: &'static str,
    pub(crate) handler: MethodRouter<AppState>,
    /// The OpenAPI operations this route serves, as `(path, method)`, read from the
    /// handlers' own `#[utoipa::path]` descriptions. A wildcard route serves several.
    pub(crate) operations: Vec<(String, HttpMethod)>,
}

/// The operations a `#[utoipa::path]` description declares.
fn described<P: utoipa::Path>() -> Vec<(String, HttpMethod)> {
    P::methods()
        .into_iter()
        .map(|method| (P::path(), method))
        .collect()
}

/// Every route under `/api/v1`, in the order the router adds them.
pub(crate) fn api_routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute {
            path: "/api/v1/topology",
            handler: get(topology::topology),
            operations: described::<topology::__path_topology>(),
        },
        ApiRoute {
            path: "/api/v1/services",
            handler: get(services::list),
            operations: described::<services::__path_list>(),
        },
        ApiRoute {
            // Service ids hold a `/`, so one wildcard route serves the detail, the
            // instances and the endpoints of a service, and an endpoint's dependencies.
            path: "/api/v1/services/{*id}",
            handler: get(services::service_resource),
            operations: [
                described::<services::__path_service_detail>(),
                described::<services::__path_service_instances>(),
                described::<services::__path_service_endpoints>(),
                described::<endpoint_dependencies::__path_endpoint_dependencies>(),
                described::<instance_pairs::__path_instance_pairs>(),
            ]
            .concat(),
        },
        ApiRoute {
            path: "/api/v1/edges",
            handler: get(edges::edge),
            operations: described::<edges::__path_edge>(),
        },
        ApiRoute {
            path: "/api/v1/proxies",
            handler: get(proxies::list),
            operations: described::<proxies::__path_list>(),
        },
        ApiRoute {
            path: "/api/v1/proxies/{id}/metrics",
            handler: get(proxies::metrics),
            operations: described::<proxies::__path_metrics>(),
        },
        ApiRoute {
            path: "/api/v1/sql",
            handler: post(sql::sql),
            operations: described::<sql::__path_sql>(),
        },
        ApiRoute {
            path: "/api/v1/tables",
            handler: get(sql::tables),
            operations: described::<sql::__path_tables>(),
        },
        ApiRoute {
            path: openapi::DOCUMENT_PATH,
            handler: get(openapi::document),
            operations: described::<openapi::__path_document>(),
        },
    ]
}

/// The `(path, method)` of every documented operation the API serves, from the table:
/// what the OpenAPI document must list, no more and no less.
pub fn served_operations() -> Vec<(String, String)> {
    let mut operations: Vec<(String, String)> = api_routes()
        .into_iter()
        .flat_map(|route| route.operations)
        .map(|(path, method)| (path, method_name(&method)))
        .collect();
    operations.sort();
    operations
}

/// The lowercase name a method has in an OpenAPI path item (`get`, `post`, …).
fn method_name(method: &HttpMethod) -> String {
    serde_json::to_value(method)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The router paths of the table, each with the operations it serves: what a test checks
/// each route against (a plain route serves exactly its own path).
pub fn route_table() -> Vec<(&'static str, Vec<(String, String)>)> {
    api_routes()
        .into_iter()
        .map(|route| {
            let operations = route
                .operations
                .into_iter()
                .map(|(path, method)| (path, method_name(&method)))
                .collect();
            (route.path, operations)
        })
        .collect()
}
