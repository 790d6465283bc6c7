//! meshscope's HTTP API: the service graph and per-service figures as JSON, read from the
//! store. The JSON shapes are a contract with the UI and with users' scripts: extend them,
//! never rename or remove a field.

pub mod auth;
mod edge_sides;
mod edges;
mod endpoint_dependencies;
pub mod error;
mod extract;
mod graph;
pub mod headers;
mod instance_pairs;
mod nodegraph;
pub mod openapi;
mod proxies;
pub mod routes;
mod services;
mod sql;
pub mod state;
pub mod telemetry;
mod topology;
mod ui;
mod upstream;
mod view;
pub mod warm;
pub mod watched;
mod window;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};

pub use error::{Error, Result};
pub use state::AppState;

/// The whole HTTP surface: the JSON API, health and metrics, and the web UI for every other
/// path.
pub fn router(state: AppState) -> Router {
    secured_router(state, HttpSecurity::default())
}

/// Who may read what, and from which other origins: open and same-origin by default.
#[derive(Clone, Debug, Default)]
pub struct HttpSecurity {
    pub access: auth::AccessRules,
    /// Cross-origin reads from browsers ([`headers::cors_layer`]); `None` for none.
    pub cors: Option<tower_http::cors::CorsLayer>,
}

/// [`router`] with bearer tokens and cross-origin rules; every answer carries the security
/// headers of [`headers`].
pub fn secured_router(state: AppState, security: HttpSecurity) -> Router {
    let access = Arc::new(security.access);
    let mut router = Router::new();
    for route in routes::api_routes() {
        router = router.route(route.path, route.handler);
    }
    let router = router
        // Unknown API paths answer in JSON, whatever serves the rest of the site.
        .route("/api/{*rest}", any(api_not_found))
        .route("/healthz", get(telemetry::healthz))
        .route("/metrics", get(telemetry::metrics))
        .fallback_service(get(ui::serve))
        .layer(axum::middleware::from_fn_with_state(
            access,
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(state);
    match security.cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Health and metrics alone (`/healthz`, `/metrics`), with the same tokens and headers as
/// [`secured_router`]: what a node that takes telemetry but serves no reads (a collector)
/// answers on its HTTP port. Every other path is 404.
pub fn health_router(state: AppState, security: HttpSecurity) -> Router {
    let access = Arc::new(security.access);
    Router::new()
        .route("/healthz", get(telemetry::healthz))
        .route("/metrics", get(telemetry::metrics))
        .layer(axum::middleware::from_fn_with_state(
            access,
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(state)
}

async fn api_not_found() -> Error {
    Error::not_found("no such API route")
}
