//! meshscope's HTTP API: the service graph and per-service figures as JSON, read from the
//! store. The JSON shapes are a contract with the UI and with users' scripts: extend them,
//! never rename or remove a field.

mod edges;
pub mod error;
mod extract;
mod graph;
mod proxies;
mod services;
mod sql;
pub mod state;
mod telemetry;
mod topology;
mod ui;
mod upstream;
mod view;
pub mod warm;
pub mod watched;
mod window;

use axum::Router;
use axum::routing::{any, get, post};

pub use error::{Error, Result};
pub use state::AppState;

/// The whole HTTP surface: the JSON API, health and metrics, and the web UI for every other
/// path.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/topology", get(topology::topology))
        .route("/api/v1/services", get(services::list))
        .route("/api/v1/services/{*id}", get(services::service_resource))
        .route("/api/v1/edges", get(edges::edge))
        .route("/api/v1/proxies", get(proxies::list))
        .route("/api/v1/proxies/{id}/metrics", get(proxies::metrics))
        .route("/api/v1/sql", post(sql::sql))
        .route("/api/v1/tables", get(sql::tables))
        // Unknown API paths answer in JSON, whatever serves the rest of the site.
        .route("/api/{*rest}", any(api_not_found))
        .route("/healthz", get(telemetry::healthz))
        .route("/metrics", get(telemetry::metrics))
        .fallback_service(get(ui::serve))
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .with_state(state)
}

async fn api_not_found() -> Error {
    Error::not_found("no such API route")
}
