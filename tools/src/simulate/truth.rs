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
    /// Calls as the map shows them: the callee's attempts where its proxy reports.
    calls: u64,
    errors: u64,
    /// Requests as the caller's proxy logged them (one entry per request), and those that
    /// finally failed.
    client_calls: u64,
    client_errors: u64,
    /// Attempts beyond the first that the caller's proxy made.
    retries: u64,
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
        self.record_attempts(source, target, protocol, server, error, 0);
    }

    /// Counts one request from `source` to `target` whose first `failed_attempts` attempts
    /// failed and were retried before the last one (which failed when `error`): the callee's
    /// proxy, when `server`, logged every attempt, the caller's proxy the request once.
    pub(super) fn record_attempts(
        &mut self,
        source: &str,
        target: &str,
        protocol: &'static str,
        server: bool,
        error: bool,
        failed_attempts: u64,
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
        edge.client_calls += 1;
        edge.client_errors += u64::from(error);
        edge.retries += failed_attempts;
        // Where only the caller reports, the map shows its one entry per request.
        let attempts = if server { failed_attempts } else { 0 };
        edge.calls += 1 + attempts;
        edge.errors += u64::from(error) + attempts;
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
