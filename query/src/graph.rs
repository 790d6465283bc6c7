//! The service graph of a window: every service with rows, every endpoint of an edge,
//! and a petgraph view for focusing and layering.

use std::collections::{BTreeMap, HashSet, VecDeque};

use meshscope_storage::{
    Aggregate, KeyFilter, Metrics, NodeKind, RowKey, ServiceRef, Table, TimeRange, WindowReader,
};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::Result;

pub(crate) struct GraphNode {
    /// The API id, worked out once: a read renders it for every edge end.
    pub(crate) id: String,
    pub(crate) service: ServiceRef,
    /// Zero for nodes that only appear as an edge's endpoint (virtual nodes, services
    /// without a sidecar that nobody reported figures for).
    pub(crate) metrics: Metrics,
}

pub(crate) struct GraphEdge {
    pub(crate) source: usize,
    pub(crate) target: usize,
    pub(crate) aggregate: Aggregate,
}

/// Nodes sorted by id, edges pointing into `nodes` by index.
pub(crate) struct ServiceGraph {
    pub(crate) nodes: Vec<GraphNode>,
    pub(crate) edges: Vec<GraphEdge>,
}

impl ServiceGraph {
    pub(crate) async fn load(store: &dyn WindowReader, range: TimeRange) -> Result<Self> {
        let all = KeyFilter::default();
        let services = store.aggregate(Table::ServiceMinute, range, &all).await?;
        let edges = store.aggregate(Table::EdgeMinute, range, &all).await?;
        Ok(Self::from_aggregates(services, edges))
    }

    fn from_aggregates(services: Vec<Aggregate>, edges: Vec<Aggregate>) -> Self {
        // Keyed by API id: two refs that render to the same id must be one node, or the UI
        // would get duplicate ids. A real service wins over a virtual node of the same name.
        let mut by_id: BTreeMap<String, GraphNode> = BTreeMap::new();
        let mut add_node = |id: &str, service: &ServiceRef, metrics: Option<&Metrics>| {
            let node = match by_id.get_mut(id) {
                Some(node) => node,
                None => by_id.entry(id.to_owned()).or_insert_with(|| GraphNode {
                    id: id.to_owned(),
                    service: service.clone(),
                    metrics: Metrics::default(),
                }),
            };
            if service.kind == NodeKind::Service {
                node.service.kind = NodeKind::Service;
            }
            if let Some(metrics) = metrics {
                node.metrics.merge(metrics);
            }
        };
        for aggregate in &services {
            if let RowKey::Service { service } = &aggregate.key {
                add_node(&service.id(), service, Some(&aggregate.metrics));
            }
        }
        let mut ends = Vec::with_capacity(edges.len());
        for aggregate in &edges {
            if let RowKey::Edge { source, target, .. } = &aggregate.key {
                let ids = (source.id(), target.id());
                add_node(&ids.0, source, None);
                add_node(&ids.1, target, None);
                ends.push(Some(ids));
            } else {
                ends.push(None);
            }
        }
        let nodes: Vec<GraphNode> = by_id.into_values().collect();
        let index_of = |id: &str| {
            nodes
                .binary_search_by(|node| node.id.as_str().cmp(id))
                .expect("every edge end was added as a node")
        };
        let mut graph_edges: Vec<GraphEdge> = edges
            .into_iter()
            .zip(ends)
            .filter_map(|(aggregate, ends)| {
                let (source, target) = ends?;
                Some(GraphEdge {
                    source: index_of(&source),
                    target: index_of(&target),
                    aggregate,
                })
            })
            .collect();
        graph_edges.sort_by(|a, b| {
            (a.source, a.target, edge_protocol(a)).cmp(&(b.source, b.target, edge_protocol(b)))
        });
        Self {
            nodes,
            edges: graph_edges,
        }
    }

    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.nodes
            .binary_search_by(|node| node.id.as_str().cmp(id))
            .ok()
    }

    /// The nodes a user's word for a service names: the node with that id, else every
    /// node with that name in any namespace (`backend` for `shop/backend`), in id order.
    pub(crate) fn named(&self, text: &str) -> Vec<usize> {
        if let Some(exact) = self.position(text) {
            return vec![exact];
        }
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].service.name == text)
            .collect()
    }

    /// Keeps the nodes of any of `namespaces`, their direct peers, and the edges touching
    /// them.
    pub(crate) fn restrict_to_namespaces(self, namespaces: &[&str]) -> Self {
        let in_namespace: Vec<bool> = self
            .nodes
            .iter()
            .map(|node| namespaces.contains(&node.service.namespace.as_str()))
            .collect();
        let mut keep = in_namespace.clone();
        for edge in &self.edges {
            if in_namespace[edge.source] || in_namespace[edge.target] {
                keep[edge.source] = true;
                keep[edge.target] = true;
            }
        }
        self.retain(&keep, |edge| {
            in_namespace[edge.source] || in_namespace[edge.target]
        })
    }

    /// Keeps `focus`, what it calls up to `depth` hops downstream, what calls it up to
    /// `depth` hops upstream, and the edges between the kept nodes. Walking each direction
    /// on its own keeps a caller's other callees (siblings) out of the picture.
    pub(crate) fn focus(self, focus: usize, depth: usize) -> Self {
        let graph = self.petgraph();
        let mut keep = vec![false; self.nodes.len()];
        for direction in [Direction::Outgoing, Direction::Incoming] {
            let mut queue = VecDeque::from([(NodeIndex::new(focus), 0usize)]);
            let mut seen = HashSet::from([NodeIndex::new(focus)]);
            while let Some((node, distance)) = queue.pop_front() {
                keep[node.index()] = true;
                if distance == depth {
                    continue;
                }
                for next in graph.neighbors_directed(node, direction) {
                    if seen.insert(next) {
                        queue.push_back((next, distance + 1));
                    }
                }
            }
        }
        let kept = keep.clone();
        self.retain(&keep, |edge| kept[edge.source] && kept[edge.target])
    }

    /// Call depth per node for a left-to-right layout: 0 for nodes nobody calls, else one
    /// more than the deepest caller. Cycles are collapsed first, so their members share
    /// a layer.
    pub(crate) fn layers(&self) -> Vec<usize> {
        let graph = self.petgraph();
        let mut layers = vec![0; self.nodes.len()];
        // Tarjan yields components callees first; walking it backwards visits every
        // caller component before its callees.
        let components = petgraph::algo::tarjan_scc(&graph);
        let mut component_of = vec![0; self.nodes.len()];
        for (component_index, members) in components.iter().enumerate() {
            for member in members {
                component_of[member.index()] = component_index;
            }
        }
        for members in components.iter().rev() {
            let layer = members
                .iter()
                .flat_map(|member| graph.neighbors_directed(*member, Direction::Incoming))
                .filter(|caller| component_of[caller.index()] != component_of[members[0].index()])
                .map(|caller| layers[caller.index()] + 1)
                .max()
                .unwrap_or(0);
            for member in members {
                layers[member.index()] = layer;
            }
        }
        layers
    }

    fn petgraph(&self) -> DiGraph<(), ()> {
        let mut graph = DiGraph::with_capacity(self.nodes.len(), self.edges.len());
        for _ in &self.nodes {
            graph.add_node(());
        }
        for edge in &self.edges {
            graph.add_edge(NodeIndex::new(edge.source), NodeIndex::new(edge.target), ());
        }
        graph
    }

    fn retain(self, keep_node: &[bool], keep_edge: impl Fn(&GraphEdge) -> bool) -> Self {
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        let mut next = 0;
        for (old, keep) in keep_node.iter().enumerate() {
            if *keep {
                new_index[old] = next;
                next += 1;
            }
        }
        let edges = self
            .edges
            .into_iter()
            .filter(|edge| keep_edge(edge))
            .map(|edge| {
                debug_assert!(keep_node[edge.source] && keep_node[edge.target]);
                GraphEdge {
                    source: new_index[edge.source],
                    target: new_index[edge.target],
                    aggregate: edge.aggregate,
                }
            })
            .collect();
        let nodes = self
            .nodes
            .into_iter()
            .zip(keep_node)
            .filter_map(|(node, keep)| keep.then_some(node))
            .collect();
        Self { nodes, edges }
    }
}

fn edge_protocol(edge: &GraphEdge) -> Option<meshscope_storage::Protocol> {
    match &edge.aggregate.key {
        RowKey::Edge { protocol, .. } => Some(*protocol),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use meshscope_storage::{Protocol, Side};

    use super::*;

    fn edge(source: &str, target: &str) -> Aggregate {
        Aggregate {
            key: RowKey::Edge {
                source: ServiceRef::service("", source),
                target: ServiceRef::service("", target),
                protocol: Protocol::Http,
            },
            detected_by: Side::Server,
            metrics: Metrics::default(),
        }
    }

    fn graph(edges: &[(&str, &str)]) -> ServiceGraph {
        let edges = edges.iter().map(|(s, t)| edge(s, t)).collect();
        ServiceGraph::from_aggregates(Vec::new(), edges)
    }

    fn ids(graph: &ServiceGraph) -> Vec<String> {
        graph.nodes.iter().map(|n| n.id.clone()).collect()
    }

    fn layer_of(graph: &ServiceGraph) -> BTreeMap<String, usize> {
        ids(graph).into_iter().zip(graph.layers()).collect()
    }

    #[test]
    fn layers_follow_the_deepest_caller_and_survive_cycles() {
        // a -> b -> c, a -> c, c <-> d (a cycle), e alone calls d.
        let g = graph(&[
            ("a", "b"),
            ("b", "c"),
            ("a", "c"),
            ("c", "d"),
            ("d", "c"),
            ("e", "d"),
        ]);
        let layers = layer_of(&g);
        assert_eq!(layers["a"], 0);
        assert_eq!(layers["e"], 0);
        assert_eq!(layers["b"], 1);
        assert_eq!(layers["c"], 2);
        assert_eq!(layers["d"], 2);
    }

    #[test]
    fn focus_walks_each_direction_separately() {
        // up2 -> up1 -> f -> down1 -> down2, up1 -> sibling, down2 -> down3.
        let g = graph(&[
            ("up2", "up1"),
            ("up1", "f"),
            ("up1", "sibling"),
            ("f", "down1"),
            ("down1", "down2"),
            ("down2", "down3"),
        ]);
        let f = g.position("f").unwrap();
        let depth1 = graph(&[
            ("up2", "up1"),
            ("up1", "f"),
            ("up1", "sibling"),
            ("f", "down1"),
            ("down1", "down2"),
            ("down2", "down3"),
        ])
        .focus(f, 1);
        assert_eq!(ids(&depth1), ["down1", "f", "up1"]);
        assert_eq!(depth1.edges.len(), 2);

        let depth2 = g.focus(f, 2);
        assert_eq!(ids(&depth2), ["down1", "down2", "f", "up1", "up2"]);
        assert_eq!(depth2.edges.len(), 4);
    }

    #[test]
    fn a_plain_name_names_the_services_of_that_name() {
        let between = |a: (&str, &str), b: (&str, &str)| Aggregate {
            key: RowKey::Edge {
                source: ServiceRef::service(a.0, a.1),
                target: ServiceRef::service(b.0, b.1),
                protocol: Protocol::Http,
            },
            detected_by: Side::Server,
            metrics: Metrics::default(),
        };
        let g = ServiceGraph::from_aggregates(
            Vec::new(),
            vec![
                between(("shop", "web"), ("shop", "api")),
                between(("lab", "web"), ("lab", "api")),
                between(("shop", "web"), ("", "db")),
            ],
        );
        let named = |text: &str| -> Vec<&str> {
            g.named(text)
                .into_iter()
                .map(|i| g.nodes[i].id.as_str())
                .collect()
        };
        assert_eq!(named("shop/api"), ["shop/api"]);
        assert_eq!(named("api"), ["lab/api", "shop/api"]);
        assert_eq!(named("db"), ["db"]);
        assert!(named("ap").is_empty());
    }

    #[test]
    fn namespace_keeps_direct_peers_only() {
        let edges = vec![
            Aggregate {
                key: RowKey::Edge {
                    source: ServiceRef::virtual_node("external"),
                    target: ServiceRef::service("shop", "ingress"),
                    protocol: Protocol::Http,
                },
                detected_by: Side::Server,
                metrics: Metrics::default(),
            },
            Aggregate {
                key: RowKey::Edge {
                    source: ServiceRef::service("shop", "ingress"),
                    target: ServiceRef::service("auth", "login"),
                    protocol: Protocol::Http,
                },
                detected_by: Side::Server,
                metrics: Metrics::default(),
            },
            Aggregate {
                key: RowKey::Edge {
                    source: ServiceRef::service("auth", "login"),
                    target: ServiceRef::service("auth", "users"),
                    protocol: Protocol::Tcp,
                },
                detected_by: Side::Client,
                metrics: Metrics::default(),
            },
        ];
        let g = ServiceGraph::from_aggregates(Vec::new(), edges).restrict_to_namespaces(&["shop"]);
        assert_eq!(ids(&g), ["auth/login", "external", "shop/ingress"]);
        assert_eq!(g.edges.len(), 2);
    }
}
