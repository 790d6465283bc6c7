//! `GET /api/v1/topology`: the service graph of a window, optionally restricted to a
//! namespace or focused on one service.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use meshscope_storage::{EpochMillis, Metrics, RowKey, WindowReader};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::edge_sides::{EdgeSides, EdgeSidesIndex};
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiQuery;
use crate::graph::ServiceGraph;
use crate::nodegraph::{NodeGraph, TopologyAnswer};
use crate::state::AppState;
use crate::upstream::{UpstreamHealth, UpstreamHealthIndex};
use crate::view::{EdgeMetrics, NodeView, ratio};
use crate::window::{WindowParams, minutes_in};

const DEFAULT_DEPTH: usize = 1;
const MAX_DEPTH: usize = 5;

/// What part of the graph `GET /api/v1/topology` shows, and in which shape.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopologyParams {
    /// Only the services of these namespaces (one, or several separated by commas), their
    /// direct peers, and the edges touching them.
    namespace: Option<String>,
    /// Only this service (an id as the map gives it, or a plain name when it names one
    /// service), its callers and its callees.
    service: Option<String>,
    /// With `service`: how many hops of callers and callees to keep (default 1).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 5)]
    depth: Option<String>,
    /// `nodegraph`: answer the data frames of Grafana's node graph panel instead of the map.
    #[param(value_type = Option<TopologyFormat>, inline)]
    format: Option<String>,
}

/// The shapes `GET /api/v1/topology` answers in, besides the map (the default).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: `format` is read as a string.
pub(crate) enum TopologyFormat {
    Nodegraph,
}

/// The services of a window and the calls between them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Topology {
    /// Start of the window, epoch milliseconds (inclusive, a minute boundary).
    pub(crate) start: EpochMillis,
    /// End of the window, epoch milliseconds (exclusive, a minute boundary).
    pub(crate) end: EpochMillis,
    /// The id of the service `service=` focused on, which may have named it without its
    /// namespace; absent without a focus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) focus: Option<String>,
    pub(crate) nodes: Vec<TopologyNode>,
    pub(crate) edges: Vec<MapEdge>,
}

/// An edge of the map: its chosen figures and each side's own.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MapEdge {
    #[serde(flatten)]
    pub(crate) edge: TopologyEdge,
    #[serde(flatten)]
    pub(crate) sides: EdgeSides,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopologyNode {
    #[serde(flatten)]
    pub(crate) node: NodeView,
    /// Call depth from the callers nobody calls, for a left-to-right layout.
    pub(crate) layer: usize,
}

/// The calls from one service to another over one protocol.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopologyEdge {
    pub(crate) source: String,
    pub(crate) target: String,
    /// `http` or `tcp`.
    #[schema(value_type = EdgeProtocol)]
    pub(crate) protocol: &'static str,
    /// Which side's proxy the figures come from: `server` (the callee's) where it
    /// reported, else `client`.
    #[schema(value_type = ReportingSide)]
    pub(crate) detected_by: &'static str,
    /// Every call on this edge used mutual TLS.
    pub(crate) mtls: bool,
    pub(crate) mtls_ratio: f64,
    pub(crate) metrics: EdgeMetrics,
    /// What the caller's proxies report about the cluster the calls go through; absent
    /// when none reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_health: Option<UpstreamHealth>,
}

/// The protocols an edge is seen over.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: the store names the protocol.
pub(crate) enum EdgeProtocol {
    Http,
    Tcp,
}

/// The side of a call whose proxy reported it.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: the store names the side.
pub(crate) enum ReportingSide {
    Server,
    Client,
}

impl TopologyEdge {
    pub(crate) fn new(
        key: &RowKey,
        detected_by: meshscope_storage::Side,
        metrics: &Metrics,
        minutes: i64,
    ) -> Option<Self> {
        let RowKey::Edge {
            source,
            target,
            protocol,
        } = key
        else {
            return None;
        };
        Some(Self::between(
            source.id(),
            target.id(),
            *protocol,
            detected_by,
            metrics,
            minutes,
        ))
    }

    /// An edge whose ends' ids are already worked out.
    fn between(
        source: String,
        target: String,
        protocol: meshscope_storage::Protocol,
        detected_by: meshscope_storage::Side,
        metrics: &Metrics,
        minutes: i64,
    ) -> Self {
        Self {
            source,
            target,
            protocol: protocol.as_str(),
            detected_by: detected_by.as_str(),
            mtls: metrics.calls > 0 && metrics.mtls_calls >= metrics.calls,
            mtls_ratio: ratio(metrics.mtls_calls, metrics.calls),
            metrics: EdgeMetrics::from_metrics(metrics, minutes),
            upstream_health: None,
        }
    }
}

/// Runs `read` over the store in a task of its own, so that reads joined together use
/// more than one core. The task runs to its end even when the request is dropped (what it
/// folds is kept for the next read); a panic in it goes on in the caller, as if it had
/// run there, and a task cancelled because the server is stopping answers with an error.
async fn in_own_task<T, F, Fut>(state: &AppState, read: F) -> Result<T>
where
    F: FnOnce(Arc<dyn WindowReader>) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(read(state.store.clone())).await {
        Ok(answer) => answer,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(meshscope_storage::Error::Io(std::io::Error::other(
            "the read was cancelled: the server is stopping",
        ))
        .into()),
    }
}

/// The service graph of a window: every service with traffic and every call edge, with
/// their figures; or, with `format=nodegraph`, the same graph as Grafana's node graph
/// panel reads it.
#[utoipa::path(
    get,
    path = "/api/v1/topology",
    tag = "map",
    params(WindowParams, TopologyParams),
    responses(
        (status = 200, description = "The graph of the window", body = TopologyAnswer),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "`service` has no traffic in the window", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn topology(
    State(state): State<AppState>,
    ApiQuery(window): ApiQuery<WindowParams>,
    ApiQuery(params): ApiQuery<TopologyParams>,
) -> Result<Json<TopologyAnswer>> {
    let range = window.resolve(state.now())?;
    let node_graph = match params.format.as_deref() {
        None => false,
        Some("nodegraph") => true,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "invalid format {other:?}: expected nodegraph, or no format for the map"
            )));
        }
    };
    state.map_read_over(&window);
    let depth = parse_depth(params.depth.as_deref())?;
    let minutes = minutes_in(range);

    // The graph, the proxies' upstream health and each side of every edge are read
    // together, each in a task of its own: on a window nobody read lately each folds its
    // minutes on its own, and on any window the graph and the sides index each build
    // thousands of edges' figures, which two cores do side by side.
    let (mut graph, health, sides) = tokio::try_join!(
        in_own_task(&state, move |store| async move {
            ServiceGraph::load(store.as_ref(), range).await
        }),
        in_own_task(&state, move |store| async move {
            UpstreamHealthIndex::load(store.as_ref(), range).await
        }),
        in_own_task(&state, move |store| async move {
            EdgeSidesIndex::load(store.as_ref(), range).await
        }),
    )?;
    let namespaces = namespace_list(params.namespace.as_deref());
    if !namespaces.is_empty() {
        graph = graph.restrict_to_namespaces(&namespaces);
    }
    let mut focus = None;
    if let Some(service) = params.service.as_deref().filter(|s| !s.trim().is_empty()) {
        let index = focus_of(&graph, service.trim())?;
        focus = Some(graph.nodes[index].id.clone());
        graph = graph.focus(index, depth);
    }

    let layers = graph.layers();
    let edges = graph
        .edges
        .iter()
        .filter_map(|edge| {
            let aggregate = &edge.aggregate;
            let RowKey::Edge { protocol, .. } = &aggregate.key else {
                return None;
            };
            let mut edge = TopologyEdge::between(
                graph.nodes[edge.source].id.clone(),
                graph.nodes[edge.target].id.clone(),
                *protocol,
                aggregate.detected_by,
                &aggregate.metrics,
                minutes,
            );
            edge.upstream_health = health.get(&edge.source, &edge.target);
            let sides = sides.get(&edge.source, &edge.target, *protocol);
            Some(MapEdge { edge, sides })
        })
        .collect();
    let nodes = graph
        .nodes
        .iter()
        .zip(layers)
        .map(|(node, layer)| TopologyNode {
            node: NodeView::new(&node.service, &node.metrics, minutes),
            layer,
        })
        .collect();
    let topology = Topology {
        start: range.start,
        end: range.end,
        focus,
        nodes,
        edges,
    };
    Ok(Json(if node_graph {
        TopologyAnswer::NodeGraph(NodeGraph::of(&topology))
    } else {
        TopologyAnswer::Map(topology)
    }))
}

/// The namespaces of `namespace=a,b`: one or several, comma-separated, blanks ignored.
fn namespace_list(param: Option<&str>) -> Vec<&str> {
    param
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|ns| !ns.is_empty())
        .collect()
}

/// The node `service=` focuses on: an id, or a name that one service in the shown graph
/// has. No match is a 404 and several a 400, each saying what was looked for.
fn focus_of(graph: &ServiceGraph, service: &str) -> Result<usize> {
    match graph.named(service).as_slice() {
        [] => Err(Error::not_found(format!(
            "no service named {service:?} on the map in this window"
        ))),
        [one] => Ok(*one),
        several => {
            let ids: Vec<&str> = several
                .iter()
                .map(|&i| graph.nodes[i].id.as_str())
                .collect();
            Err(Error::bad_request(format!(
                "{service:?} names several services: {}; give one with its namespace",
                ids.join(", ")
            )))
        }
    }
}

fn parse_depth(depth: Option<&str>) -> Result<usize> {
    let Some(depth) = depth else {
        return Ok(DEFAULT_DEPTH);
    };
    match depth.trim().parse::<usize>() {
        Ok(depth) if (1..=MAX_DEPTH).contains(&depth) => Ok(depth),
        _ => Err(Error::bad_request(format!(
            "invalid depth {depth:?}: expected a whole number from 1 to {MAX_DEPTH}"
        ))),
    }
}
