//! `GET /api/v1/topology?format=nodegraph`: the map as the two data frames Grafana's node
//! graph panel draws, for a JSON data source plugin (Infinity, or the JSON API plugin) to
//! read. `nodes` and `edges` are one frame each: an object per row, a key per field, named
//! as the panel expects them (`id`, `title`, `subtitle`, `mainstat`, `secondarystat`,
//! `arc__*`, `color`, `detail__*`; `source` and `target` for edges).

use std::borrow::Cow;

use meshscope_storage::EpochMillis;
use serde::Serialize;
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::topology::{Topology, TopologyEdge, TopologyNode};
use crate::view::NodeMetrics;

/// Error share from which a node is drawn amber, and red: the dashboard's own thresholds.
pub(crate) const WARN_ERROR_SHARE: f64 = 0.01;
pub(crate) const BAD_ERROR_SHARE: f64 = 0.05;

/// The node graph panel's frames for one window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeGraph {
    /// Start of the window, epoch milliseconds (inclusive, a minute boundary).
    start: EpochMillis,
    /// End of the window, epoch milliseconds (exclusive, a minute boundary).
    end: EpochMillis,
    /// The nodes frame: one row per service.
    nodes: Vec<NodeGraphNode>,
    /// The edges frame: one row per caller, callee and protocol.
    edges: Vec<NodeGraphEdge>,
}

/// A row of the nodes frame. The three `arc__` shares add up to 1.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeGraphNode {
    /// The service's id, as the map names it (`namespace/name`, or a bare name).
    pub(crate) id: String,
    /// The service's name.
    pub(crate) title: String,
    /// The service's namespace; empty for none.
    pub(crate) subtitle: String,
    /// Calls per minute over the window.
    pub(crate) mainstat: f64,
    /// 95th percentile latency in milliseconds; null without calls.
    pub(crate) secondarystat: Option<f64>,
    /// Share of the node's calls that did not fail, 0 to 1; 0 without calls.
    #[serde(rename = "arc__success")]
    pub(crate) arc_success: f64,
    /// Share of the node's calls that failed (5xx, a failure flag, a gRPC error), 0 to 1.
    #[serde(rename = "arc__errors")]
    pub(crate) arc_errors: f64,
    /// 1 for a node without calls in the window (drawn grey), else 0.
    #[serde(rename = "arc__no_calls")]
    pub(crate) arc_no_calls: f64,
    /// The node's health: `green`, `orange` from 1 % errors, `red` from 5 %, `gray`
    /// without calls.
    #[schema(value_type = HealthColor)]
    pub(crate) color: &'static str,
}

/// The colors a node's health is drawn in.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: `color` is rendered from the error share.
pub(crate) enum HealthColor {
    Green,
    Orange,
    Red,
    Gray,
}

/// A row of the edges frame.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeGraphEdge {
    /// `source->target/protocol`: unique within the frame.
    pub(crate) id: String,
    /// The caller's node id.
    pub(crate) source: String,
    /// The callee's node id.
    pub(crate) target: String,
    /// Calls per minute over the window.
    pub(crate) mainstat: f64,
    /// 95th percentile latency in milliseconds; null without latency figures (TCP).
    pub(crate) secondarystat: Option<f64>,
    /// `http` or `tcp`.
    #[serde(rename = "detail__protocol")]
    pub(crate) detail_protocol: &'static str,
    /// Share of the edge's calls that failed, 0 to 1.
    #[serde(rename = "detail__error_rate")]
    pub(crate) detail_error_rate: f64,
}

impl NodeGraph {
    /// The frames of `topology`: the same nodes and edges, in the same order.
    pub(crate) fn of(topology: &Topology) -> Self {
        Self {
            start: topology.start,
            end: topology.end,
            nodes: topology.nodes.iter().map(node_row).collect(),
            edges: topology.edges.iter().map(|e| edge_row(&e.edge)).collect(),
        }
    }
}

fn node_row(node: &TopologyNode) -> NodeGraphNode {
    let view = &node.node;
    let metrics = &view.metrics;
    let (arc_success, arc_errors, arc_no_calls) = if metrics.calls == 0 {
        (0.0, 0.0, 1.0)
    } else {
        (1.0 - metrics.error_rate, metrics.error_rate, 0.0)
    };
    NodeGraphNode {
        id: view.id.clone(),
        title: view.name.clone(),
        subtitle: view.namespace.clone(),
        mainstat: metrics.cpm,
        secondarystat: metrics.p95_ms,
        arc_success,
        arc_errors,
        arc_no_calls,
        color: health_color(metrics),
    }
}

fn edge_row(edge: &TopologyEdge) -> NodeGraphEdge {
    NodeGraphEdge {
        id: format!("{}->{}/{}", edge.source, edge.target, edge.protocol),
        source: edge.source.clone(),
        target: edge.target.clone(),
        mainstat: edge.metrics.cpm,
        secondarystat: edge.metrics.p95_ms,
        detail_protocol: edge.protocol,
        detail_error_rate: edge.metrics.error_rate,
    }
}

/// The color of a node's health, by the share of its calls that failed.
fn health_color(metrics: &NodeMetrics) -> &'static str {
    if metrics.calls == 0 {
        "gray"
    } else if metrics.error_rate >= BAD_ERROR_SHARE {
        "red"
    } else if metrics.error_rate >= WARN_ERROR_SHARE {
        "orange"
    } else {
        "green"
    }
}

/// What `GET /api/v1/topology` answers: the map, or Grafana's frames with
/// `format=nodegraph`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum TopologyAnswer {
    Map(Topology),
    NodeGraph(NodeGraph),
}

/// Described as `anyOf` the two shapes: an empty graph fits both, which `oneOf` forbids.
impl PartialSchema for TopologyAnswer {
    fn schema() -> RefOr<Schema> {
        let any_of = AnyOfBuilder::new()
            .item(Ref::from_schema_name(Topology::name()))
            .item(Ref::from_schema_name(NodeGraph::name()))
            .description(Some(
                "The map; with `format=nodegraph`, the node graph panel's frames.",
            ))
            .build();
        RefOr::T(Schema::AnyOf(any_of))
    }
}

impl ToSchema for TopologyAnswer {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TopologyAnswer")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Topology::name().into_owned(), Topology::schema()));
        Topology::schemas(schemas);
        schemas.push((NodeGraph::name().into_owned(), NodeGraph::schema()));
        NodeGraph::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(calls: u64, errors: u64) -> NodeMetrics {
        NodeMetrics {
            calls,
            cpm: calls as f64,
            errors,
            error_rate: if calls == 0 {
                0.0
            } else {
                errors as f64 / calls as f64
            },
            errors_4xx: 0,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            apdex: None,
        }
    }

    #[test]
    fn health_colors_follow_the_error_share() {
        assert_eq!(health_color(&metrics(0, 0)), "gray");
        assert_eq!(health_color(&metrics(1000, 0)), "green");
        assert_eq!(health_color(&metrics(1000, 9)), "green");
        assert_eq!(health_color(&metrics(1000, 10)), "orange");
        assert_eq!(health_color(&metrics(1000, 49)), "orange");
        assert_eq!(health_color(&metrics(1000, 50)), "red");
        assert_eq!(health_color(&metrics(3, 3)), "red");
    }
}
