//! `GET /api/v1/services/{id}/instance-pairs`: the requests between each caller instance
//! and callee instance where the service is either end, both sides side by side, as the
//! edges of the map show them for services. Known from HTTP requests paired by request id.

use axum::Json;
use meshscope_storage::{EpochMillis, RowKey, Table, TimeRange, WindowReader};
use serde::Serialize;
use utoipa::ToSchema;

use crate::edge_sides::{EdgeSides, side_totals};
use crate::error::{ErrorBody, Result};
use crate::services::{ServiceIdParam, resolve};
use crate::window::WindowParams;

/// One caller instance and one callee instance, with each side's figures.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstancePair {
    /// The caller's service id.
    source: String,
    /// The caller's instance; `{unknown}` for a caller without a proxy of its own.
    source_instance: String,
    /// The callee's service id.
    target: String,
    target_instance: String,
    #[serde(flatten)]
    sides: EdgeSides,
}

/// A service's instance pairs over a window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstancePairList {
    /// The service's id.
    service: String,
    start: EpochMillis,
    end: EpochMillis,
    /// Pairs where the service calls or is called, most calls first (the callee's count
    /// where it logged them, else the caller's).
    pairs: Vec<InstancePair>,
}

/// Which instance of a caller called which instance of a callee, both sides side by side.
#[utoipa::path(
    get,
    path = "/api/v1/services/{id}/instance-pairs",
    tag = "services",
    params(ServiceIdParam, WindowParams),
    responses(
        (status = 200, description = "The service's instance pairs", body = InstancePairList),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "The service has no traffic in the window", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn instance_pairs(
    store: &dyn WindowReader,
    range: TimeRange,
    id: &str,
) -> Result<Json<InstancePairList>> {
    let service = resolve(store, range, id).await?;
    let sides = side_totals(
        store,
        Table::InstancePairMinute,
        range,
        Some(&service),
        |key| match key {
            RowKey::InstancePair {
                source,
                source_instance,
                target,
                target_instance,
            } => Some((source, source_instance, target, target_instance)),
            _ => None,
        },
    )
    .await?;
    let mut pairs: Vec<(u64, InstancePair)> = sides
        .into_iter()
        .map(
            |((source, source_instance, target, target_instance), [client, server])| {
                let calls = server.as_ref().or(client.as_ref()).map_or(0, |m| m.calls);
                let pair = InstancePair {
                    source: source.id(),
                    source_instance,
                    target: target.id(),
                    target_instance,
                    sides: EdgeSides::from_totals(client.as_ref(), server.as_ref()),
                };
                (calls, pair)
            },
        )
        .collect();
    pairs.sort_by(|(a_calls, a), (b_calls, b)| {
        b_calls
            .cmp(a_calls)
            .then_with(|| (&a.source, &a.source_instance).cmp(&(&b.source, &b.source_instance)))
            .then_with(|| (&a.target, &a.target_instance).cmp(&(&b.target, &b.target_instance)))
    });
    Ok(Json(InstancePairList {
        service: service.id(),
        start: range.start,
        end: range.end,
        pairs: pairs.into_iter().map(|(_, pair)| pair).collect(),
    }))
}
