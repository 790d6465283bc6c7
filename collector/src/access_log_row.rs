//! The raw access-log row kept for each attribution of an entry, when the store keeps an
//! access log.

use meshscope_storage::{AccessLogRow, ServiceRef, Side};

use crate::entry::Observation;
use crate::identity::NodeIdentity;

/// One access-log row per attribution: the names are the resolved ones the metrics use.
pub(crate) fn access_log_row(
    reporter: &NodeIdentity,
    obs: &Observation<'_>,
    source: &ServiceRef,
    target: &ServiceRef,
    side: Side,
) -> AccessLogRow {
    // The same reading of bytes as the metrics, so a sum over the log matches the tables.
    let (bytes_sent, bytes_received) = match side {
        Side::Server => (obs.downstream_bytes_in, obs.downstream_bytes_out),
        Side::Client => (obs.upstream_bytes_out, obs.upstream_bytes_in),
    };
    AccessLogRow {
        time: obs.start_ms,
        source_namespace: source.namespace.clone(),
        source_name: source.name.clone(),
        target_namespace: target.namespace.clone(),
        target_name: target.name.clone(),
        side,
        protocol: obs.protocol,
        method: obs.method.to_string(),
        path: obs.path.to_string(),
        status: obs.status,
        // Observations keep only whether a failure flag was set, not the flags themselves.
        response_flags: if obs.failed { "failed" } else { "-" }.to_string(),
        duration_ms: obs.duration_ms,
        bytes_sent,
        bytes_received,
        mtls: side == Side::Server && obs.mtls,
        // Not carried by observations; the column stays for proxies that will log it.
        request_id: String::new(),
        node: reporter.instance.clone(),
    }
}
