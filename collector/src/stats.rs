//! The collector's own counters, exported on `/metrics` through the `metrics` facade.

pub const STREAMS_OPENED: &str = "meshscope_als_streams_opened_total";
pub const STREAMS_ACTIVE: &str = "meshscope_als_streams_active";
pub const STREAMS_FAILED: &str = "meshscope_als_streams_failed_total";
pub const MESSAGES: &str = "meshscope_als_messages_received_total";
pub const ENTRIES_RECEIVED: &str = "meshscope_als_entries_received_total";
pub const ENTRIES_ACCEPTED: &str = "meshscope_als_entries_accepted_total";
pub const ENTRIES_REJECTED: &str = "meshscope_als_entries_rejected_total";
pub const PEER_RESOLVED: &str = "meshscope_peer_resolved_total";
/// Entries whose caller-cluster header named another caller than the verified peer
/// certificate, which named the caller.
pub const IDENTITY_CONFLICTS: &str = "meshscope_identity_conflicts_total";
pub const JOIN_WAITING: &str = "meshscope_join_waiting_entries";
/// Requests settled by pairing, by outcome (`paired`, `client_only`, `server_only`).
pub const PAIRS_SETTLED: &str = "meshscope_request_pairs_settled_total";
/// Requests settled before their wait was over, by reason (`capacity`).
pub const PAIRS_SETTLED_EARLY: &str = "meshscope_request_pairs_settled_early_total";
/// Requests waiting for their other side's entry.
pub const PAIRS_WAITING: &str = "meshscope_request_pairs_waiting";
pub const OVERFLOW: &str = "meshscope_key_overflow_total";
pub const ROWS_CLOSED: &str = "meshscope_minute_rows_closed_total";
/// Samples for minutes already written, added to their late rows.
pub const LATE_ROWS: &str = "meshscope_late_row_samples_total";
pub const FLUSH_ERRORS: &str = "meshscope_flush_errors_total";
/// Times a receiver stopped reading its stream because a write of closed minutes ran
/// past `max_write_stall_ms` (a slow disk).
pub const WRITE_STALL_PAUSES: &str = "meshscope_ingest_paused_for_writes_total";
/// Rows held in unclosed minutes: what the collector's memory grows with. (The metric's
/// name is kept as it was, for dashboards that read it.)
pub const UNCLOSED_ROWS: &str = "meshscope_open_minute_rows";

/// Gives the counters whose meaning is not plain from their name their `# HELP` text,
/// and shows them at 0 before anything happened. Call once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(
        IDENTITY_CONFLICTS,
        "Server-side entries whose x-envoy-downstream-service-cluster header named another caller than the peer certificate's SPIFFE id; the certificate named the caller."
    );
    metrics::counter!(IDENTITY_CONFLICTS).increment(0);
    metrics::describe_counter!(
        WRITE_STALL_PAUSES,
        "Times a receiver stopped reading its gRPC stream while a write of closed minutes ran longer than max_write_stall_ms, so that flow control slowed the sender."
    );
    metrics::counter!(WRITE_STALL_PAUSES).increment(0);
    metrics::gauge!(PAIRS_WAITING).set(0.0);
}

pub fn reject(reason: &'static str, count: u64) {
    metrics::counter!(ENTRIES_REJECTED, "reason" => reason).increment(count);
}

pub const PROXY_STATS_MESSAGES: &str = "meshscope_proxy_stats_messages_received_total";
pub const PROXY_STATS_STORED: &str = "meshscope_proxy_stats_stored_total";
pub const PROXY_STATS_DROPPED: &str = "meshscope_proxy_stats_dropped_total";

pub fn proxy_stat_dropped(reason: &'static str, count: u64) {
    metrics::counter!(PROXY_STATS_DROPPED, "reason" => reason).increment(count);
}
