//! Collector settings, read from the `[collector]` table of the TOML config.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Apdex threshold T in milliseconds: satisfied under T, tolerating under 4T.
    pub apdex_threshold_ms: f64,
    /// How long after a minute ends its figures still accept late entries. Entries that
    /// start before the oldest unclosed minute are rejected as `too_old`.
    pub late_allowance_secs: u64,
    /// How long after a minute ends it is written to the store. Entries for it that come
    /// later, within the late allowance, are kept apart and written as further rows of that
    /// minute once the allowance has passed; reads see them from then on. Holding only the
    /// current minute in full is what keeps memory flat on a large mesh.
    pub write_after_secs: u64,
    /// Entries that start this far past the collector's clock are rejected as `future`.
    pub future_allowance_secs: u64,
    /// How long an entry whose peer needs the other proxy's report waits for it; 0 never
    /// waits.
    pub join_wait_ms: u64,
    /// Most entries waiting for a join at once; past it they resolve with what is known.
    pub max_waiting_entries: usize,
    /// How long a request's entries wait for the other side's entries with the same
    /// request id (see [`crate::request_pairs`]), from the first one's arrival. Proxies
    /// send their logs every second or so; this covers two proxies' flushes and the
    /// log's group commit with room to spare.
    pub pair_wait_ms: u64,
    /// Whether entries are paired by request id at all: pairing figures and endpoint
    /// dependencies; off spares the memory of the requests waiting and their CPU.
    pub pair_requests: bool,
    /// Most requests waiting for their other side at once; past it the oldest is settled
    /// with what it has.
    pub max_waiting_pairs: usize,
    /// Distinct endpoints kept per service; the rest fall into `{overflow}`.
    pub max_endpoints_per_service: usize,
    /// Distinct instances kept per service; the rest fall into `{overflow}`.
    pub max_instances_per_service: usize,
    /// Distinct services (and virtual nodes); past it, new names count as `overflow`.
    pub max_services: usize,
    /// Connections remembered for joining a client's report to the server's.
    pub address_book_capacity: usize,
    /// Longest string field we read (paths, cluster names, headers); longer entries are
    /// rejected as `oversized_field`.
    pub max_field_len: usize,
    /// How to tell direction and role from a log name when the cluster name does not.
    pub rules: DirectionRules,
    /// Static addresses for services that report nothing themselves (VMs, bare metal).
    pub address_map: Vec<AddressMapping>,
    /// Which of the proxies' own statistics to keep, and how they count.
    pub proxy_stats: crate::proxy_stats::ProxyStatsConfig,
    /// How long a write of closed minutes may run before the receivers stop reading their
    /// streams until it ends (0: never). A slow disk then slows the senders through gRPC
    /// flow control instead of the collector holding one more minute of rows per minute
    /// the write takes.
    pub max_write_stall_ms: u64,
    /// Refuse a stream whose node claims another identity than its client certificate's
    /// SPIFFE ID (see [`crate::reporter_check`]). Set by the server's security settings,
    /// not in this table.
    #[serde(skip)]
    pub strict_reporter_identity: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectionRules {
    /// Regex on the log name: matching logs are the server side of a sidecar.
    pub inbound_log_name: String,
    /// Regex on the log name: matching logs are the client side of a sidecar.
    pub outbound_log_name: String,
    /// Regex on the log name or the reporter's service name: matching proxies are gateways,
    /// which are the server of their downstream and the client of their upstream.
    pub gateway: String,
}

impl Default for DirectionRules {
    fn default() -> Self {
        Self {
            inbound_log_name: "(?i)inbound".into(),
            outbound_log_name: "(?i)outbound".into(),
            gateway: "(?i)(ingress|gateway)".into(),
        }
    }
}

/// `match` is a CIDR (`10.1.0.0/16`), an IP, or `IP:port`; `service` is `namespace/name`
/// or `name`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressMapping {
    #[serde(rename = "match")]
    pub matches: String,
    pub service: String,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            apdex_threshold_ms: 500.0,
            late_allowance_secs: 120,
            write_after_secs: 10,
            future_allowance_secs: 60,
            join_wait_ms: 2_000,
            max_waiting_entries: 100_000,
            pair_wait_ms: 5_000,
            pair_requests: true,
            max_waiting_pairs: 200_000,
            max_endpoints_per_service: 200,
            max_instances_per_service: 500,
            max_services: 10_000,
            address_book_capacity: 200_000,
            max_field_len: 4_096,
            rules: DirectionRules::default(),
            address_map: Vec::new(),
            proxy_stats: Default::default(),
            max_write_stall_ms: 60_000,
            strict_reporter_identity: false,
        }
    }
}
