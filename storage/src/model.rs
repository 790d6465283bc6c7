//! What the store keeps: per-minute metric rows for services, instances, endpoints and
//! edges. These types are the write contract between the collector and the store; they
//! know nothing of Envoy.

use serde::{Deserialize, Serialize};

use crate::response_flags::{RESPONSE_FLAG_KINDS, ResponseFlagCounts};
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
    /// Calls per response flag kind (see [`crate::response_flags`]).
    pub response_flags: ResponseFlagCounts,
    /// Requests whose caller's and callee's entries were both found, by request id
    /// (server-side rows).
    pub paired: u64,
    /// Requests the caller's proxy logged and no callee's proxy did (client-side rows).
    pub client_only: u64,
    /// Requests the callee's proxy logged and no caller's proxy did (server-side rows).
    pub server_only: u64,
    /// The mesh's own cost per paired request, client duration minus server duration in
    /// milliseconds, over requests made in one attempt and received once (server-side
    /// rows).
    pub overhead: LatencySketch,
}

impl Metrics {
    pub fn merge(&mut self, other: &Metrics) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.errors_4xx += other.errors_4xx;
        self.latency.merge(&other.latency);
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.tcp_connections += other.tcp_connections;
        self.mtls_calls += other.mtls_calls;
        self.apdex_satisfied += other.apdex_satisfied;
        self.apdex_tolerating += other.apdex_tolerating;
        self.retries += other.retries;
        self.identity_conflicts += other.identity_conflicts;
        self.response_flags.merge(&other.response_flags);
        self.paired += other.paired;
        self.client_only += other.client_only;
        self.server_only += other.server_only;
        self.overhead.merge(&other.overhead);
    }

    /// How many additive counters a row has: one per counter column of the tables.
    pub const COUNTER_COUNT: usize = PAIRING_AT + 3;

    /// Counter `i` in the order of the tables' counter columns (0 past the last).
    pub fn counter(&self, i: usize) -> u64 {
        match i {
            0 => self.calls,
            1 => self.errors,
            2 => self.errors_4xx,
            3 => self.bytes_sent,
            4 => self.bytes_received,
            5 => self.tcp_connections,
            6 => self.mtls_calls,
            7 => self.apdex_satisfied,
            8 => self.apdex_tolerating,
            9 => self.retries,
            10 => self.identity_conflicts,
            FLAGS_AT..PAIRING_AT => self.response_flags.get(i - FLAGS_AT),
            PAIRING_AT => self.paired,
            28 => self.client_only,
            29 => self.server_only,
            _ => 0,
        }
    }

    /// Counter `i` in the order of the tables' counter columns, to add to or take from.
    /// An `i` past the last counter gives the last.
    pub fn counter_mut(&mut self, i: usize) -> &mut u64 {
        match i {
            0 => &mut self.calls,
            1 => &mut self.errors,
            2 => &mut self.errors_4xx,
            3 => &mut self.bytes_sent,
            4 => &mut self.bytes_received,
            5 => &mut self.tcp_connections,
            6 => &mut self.mtls_calls,
            7 => &mut self.apdex_satisfied,
            8 => &mut self.apdex_tolerating,
            9 => &mut self.retries,
            10 => &mut self.identity_conflicts,
            FLAGS_AT..PAIRING_AT => self.response_flags.get_mut(i - FLAGS_AT),
            PAIRING_AT => &mut self.paired,
            28 => &mut self.client_only,
            _ => &mut self.server_only,
        }
    }
}

/// Where the response flag counters start among the counter columns.
pub(crate) const FLAGS_AT: usize = 11;
/// Where the pairing counters (paired, client only, server only) start.
pub(crate) const PAIRING_AT: usize = FLAGS_AT + RESPONSE_FLAG_KINDS;

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
    /// An outbound endpoint that `service`'s proxy called while serving its inbound
    /// `endpoint`: the two shared a request id (the application propagated it). The row's
    /// figures are the outbound calls, as the calling proxy logged them.
    Dependency {
        service: ServiceRef,
        endpoint: String,
        target: ServiceRef,
        target_endpoint: String,
    },
    /// The requests between one caller instance and one callee instance, each side as
    /// its proxy logged them; known from requests paired by request id. A caller whose
    /// instance is not known (no proxy of its own) is [`UNKNOWN_INSTANCE`].
    InstancePair {
        source: ServiceRef,
        source_instance: String,
        target: ServiceRef,
        target_instance: String,
    },
}

/// The instance of a caller that logged nothing itself, in instance pairs.
pub const UNKNOWN_INSTANCE: &str = "{unknown}";

/// One per-minute aggregate, as the collector hands it to the store.
#[derive(Clone, Debug)]
pub struct MetricRow {
    pub minute: EpochMillis,
    pub key: RowKey,
    pub side: Side,
    pub metrics: Metrics,
}

/// The minute tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    ServiceMinute,
    InstanceMinute,
    EndpointMinute,
    EdgeMinute,
    /// Inbound endpoint -> outbound endpoint, by request id ([`RowKey::Dependency`]).
    DependencyMinute,
    /// Caller instance -> callee instance ([`RowKey::InstancePair`]).
    InstancePairMinute,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::ServiceMinute,
        Table::InstanceMinute,
        Table::EndpointMinute,
        Table::EdgeMinute,
        Table::DependencyMinute,
        Table::InstancePairMinute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::ServiceMinute => "service_minute",
            Table::InstanceMinute => "instance_minute",
            Table::EndpointMinute => "endpoint_minute",
            Table::EdgeMinute => "edge_minute",
            Table::DependencyMinute => "endpoint_dependency_minute",
            Table::InstancePairMinute => "instance_pair_minute",
        }
    }

    pub fn of(key: &RowKey) -> Table {
        match key {
            RowKey::Service { .. } => Table::ServiceMinute,
            RowKey::Instance { .. } => Table::InstanceMinute,
            RowKey::Endpoint { .. } => Table::EndpointMinute,
            RowKey::Edge { .. } => Table::EdgeMinute,
            RowKey::Dependency { .. } => Table::DependencyMinute,
            RowKey::InstancePair { .. } => Table::InstancePairMinute,
        }
    }
}
