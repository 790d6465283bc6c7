//! What the simulator sent, counted per edge: the topology meshscope must show for it.

use std::collections::BTreeMap;

use serde::Serialize;

/// One edge as meshscope must show it, with the calls sent over it.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct EdgeTruth {
    source: String,
    target: String,
    protocol: &'static str,
    detected_by: &'static str,
    calls: u64,
    errors: u64,
}

/// Everything sent so far: requests, access-log entries and the edges they make.
#[derive(Default)]
pub(super) struct Truth {
    pub(super) requests: u64,
    pub(super) entries: u64,
    edges: BTreeMap<(String, String, &'static str), EdgeTruth>,
}

/// The topology meshscope must show, as `simulate --print-expected` prints it.
#[derive(Serialize)]
pub(super) struct Expected {
    nodes: Vec<String>,
    edges: Vec<EdgeTruth>,
}

impl Truth {
    /// Counts one call from `source` to `target`, seen by the server side when `server`.
    pub(super) fn record(
        &mut self,
        source: &str,
        target: &str,
        protocol: &'static str,
        server: bool,
        error: bool,
    ) {
        let edge = self
            .edges
            .entry((source.to_string(), target.to_string(), protocol))
            .or_insert_with(|| EdgeTruth {
                source: source.to_string(),
                target: target.to_string(),
                protocol,
                detected_by: if server { "server" } else { "client" },
                ..Default::default()
            });
        edge.calls += 1;
        edge.errors += u64::from(error);
    }

    /// The nodes and edges of everything sent.
    pub(super) fn expected(&self) -> Expected {
        let mut nodes: Vec<String> = self
            .edges
            .values()
            .flat_map(|e| [e.source.clone(), e.target.clone()])
            .collect();
        nodes.sort();
        nodes.dedup();
        Expected {
            nodes,
            edges: self.edges.values().cloned().collect(),
        }
    }
}
