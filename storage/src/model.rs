//! What the store keeps: per-minute metric rows for services, instances, endpoints and
//! edges. These types are the write contract between the collector and the store; they
//! know nothing of Envoy.

use serde::{Deserialize, Serialize};

use crate::sketch::LatencySketch;

/// Milliseconds since the Unix epoch, always aligned to a minute for rows.
pub type EpochMillis = i64;

pub const MINUTE_MS: i64 = 60_000;

/// Start of the minute that holds `t`.
pub fn minute_of(t: EpochMillis) -> EpochMillis {
    t.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Whether a node is a real service or a stand-in for traffic we cannot attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Service,
    Virtual,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Service => "service",
            NodeKind::Virtual => "virtual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "service" => Some(NodeKind::Service),
            "virtual" => Some(NodeKind::Virtual),
            _ => None,
        }
    }
}

/// A service (or virtual node) as the graph shows it. `namespace` is empty where the
/// evidence names none (VMs, bare metal, plain Envoy clusters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub kind: NodeKind,
}

impl ServiceRef {
    pub fn service(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            kind: NodeKind::Service,
        }
    }

    pub fn virtual_node(name: impl Into<String>) -> Self {
        Self {
            namespace: String::new(),
            name: name.into(),
            kind: NodeKind::Virtual,
        }
    }

    /// `namespace/name`, or `name` where there is no namespace: the id used by the API.
    pub fn id(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// Which proxy's log a row's figures come from: the callee's own sidecar (server) or the
/// caller's (client). Both are kept; readers prefer the server side when it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Server,
    Client,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "server" => Some(Side::Server),
            "client" => Some(Side::Client),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http" => Some(Protocol::Http),
            "tcp" => Some(Protocol::Tcp),
            _ => None,
        }
    }
}

/// The additive figures of one row. Every field merges by addition, the sketch by merge,
/// so minutes roll up into hours and days without loss.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Requests (HTTP) or connections (TCP).
    pub calls: u64,
    /// 5xx, failure response flags, or a non-zero grpc-status.
    pub errors: u64,
    pub errors_4xx: u64,
    pub latency: LatencySketch,
    /// Bytes the caller sent to the callee.
    pub bytes_sent: u64,
    /// Bytes the callee sent back.
    pub bytes_received: u64,
    pub tcp_connections: u64,
    /// Calls that went over mutual TLS.
    pub mtls_calls: u64,
    /// Calls under the apdex threshold that did not fail.
    pub apdex_satisfied: u64,
    /// Calls under four times the threshold that did not fail.
    pub apdex_tolerating: u64,
    /// Attempts beyond the first that the caller's proxy made (client-side rows only).
    pub retries: u64,
    /// Calls whose caller-cluster header named another service than the verified peer
    /// certificate did (server-side rows only); the certificate named the caller.
    pub identity_conflicts: u64,
}

impl Metrics {
    /// How many additive counters a row has: every field but the latency sketch.
    pub const COUNTER_COUNT: usize = 11;

    /// The counters' names, in the order [`Metrics::counters`] lists them. This one list
    /// is the order of the tables' counter columns and of a checkpoint's counts.
    pub const COUNTER_NAMES: [&'static str; Metrics::COUNTER_COUNT] = [
        "calls",
        "errors",
        "errors_4xx",
        "bytes_sent",
        "bytes_received",
        "tcp_connections",
        "mtls_calls",
        "apdex_satisfied",
        "apdex_tolerating",
        "retries",
        "identity_conflicts",
    ];

    /// The counters, in [`Metrics::COUNTER_NAMES`] order.
    pub fn counters(&self) -> [u64; Metrics::COUNTER_COUNT] {
        [
            self.calls,
            self.errors,
            self.errors_4xx,
            self.bytes_sent,
            self.bytes_received,
            self.tcp_connections,
            self.mtls_calls,
            self.apdex_satisfied,
            self.apdex_tolerating,
            self.retries,
            self.identity_conflicts,
        ]
    }

    /// The counters to change in place, in [`Metrics::COUNTER_NAMES`] order.
    pub fn counters_mut(&mut self) -> [&mut u64; Metrics::COUNTER_COUNT] {
        [
            &mut self.calls,
            &mut self.errors,
            &mut self.errors_4xx,
            &mut self.bytes_sent,
            &mut self.bytes_received,
            &mut self.tcp_connections,
            &mut self.mtls_calls,
            &mut self.apdex_satisfied,
            &mut self.apdex_tolerating,
            &mut self.retries,
            &mut self.identity_conflicts,
        ]
    }

    /// Metrics with `counters` (in [`Metrics::COUNTER_NAMES`] order) and `latency`.
    pub fn from_counters(
        counters: [u64; Metrics::COUNTER_COUNT],
        latency: LatencySketch,
    ) -> Metrics {
        let mut metrics = Metrics {
            latency,
            ..Metrics::default()
        };
        for (field, value) in metrics.counters_mut().into_iter().zip(counters) {
            *field = value;
        }
        metrics
    }

    pub fn merge(&mut self, other: &Metrics) {
        for (field, value) in self.counters_mut().into_iter().zip(other.counters()) {
            *field += value;
        }
        self.latency.merge(&other.latency);
    }
}

/// What a row is about; one variant per table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKey {
    Service {
        service: ServiceRef,
    },
    Instance {
        service: ServiceRef,
        instance: String,
    },
    Endpoint {
        service: ServiceRef,
        /// `METHOD /path/{id}` for HTTP; ids are already folded by the collector.
        endpoint: String,
    },
    Edge {
        source: ServiceRef,
        target: ServiceRef,
        protocol: Protocol,
    },
}

/// One per-minute aggregate, as the collector hands it to the store.
#[derive(Clone, Debug)]
pub struct MetricRow {
    pub minute: EpochMillis,
    pub key: RowKey,
    pub side: Side,
    pub metrics: Metrics,
}

/// The four minute tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    ServiceMinute,
    InstanceMinute,
    EndpointMinute,
    EdgeMinute,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::ServiceMinute,
        Table::InstanceMinute,
        Table::EndpointMinute,
        Table::EdgeMinute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::ServiceMinute => "service_minute",
            Table::InstanceMinute => "instance_minute",
            Table::EndpointMinute => "endpoint_minute",
            Table::EdgeMinute => "edge_minute",
        }
    }

    pub fn of(key: &RowKey) -> Table {
        match key {
            RowKey::Service { .. } => Table::ServiceMinute,
            RowKey::Instance { .. } => Table::InstanceMinute,
            RowKey::Endpoint { .. } => Table::EndpointMinute,
            RowKey::Edge { .. } => Table::EdgeMinute,
        }
    }
}
