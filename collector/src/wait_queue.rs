//! The queue of entries parked until the other side's report names their peer.
//! A checkpoint keeps them as [`ParkedState`]s.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::entry::OwnedObservation;
use crate::identity::NodeIdentity;
use crate::role::Role;

/// An entry parked until its caller's report arrives or its wait runs out.
pub(crate) struct ParkedEntry {
    pub(crate) deadline_ms: i64,
    pub(crate) reporter: Arc<NodeIdentity>,
    pub(crate) role: Role,
    pub(crate) obs: OwnedObservation,
}

/// Parked entries, oldest first, up to a capacity; past it, entries are resolved at once
/// with what is known.
pub struct WaitQueue {
    pub(crate) entries: Mutex<VecDeque<ParkedEntry>>,
    pub(crate) capacity: usize,
}

impl WaitQueue {
    /// An empty queue that holds up to `capacity` entries.
    pub fn new(capacity: usize) -> WaitQueue {
        WaitQueue {
            entries: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    /// The number of entries parked.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no entry is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parked entry as a checkpoint keeps it: its reporter, role and the entry's fields,
/// addresses read.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParkedState {
    pub deadline_ms: i64,
    pub reporter: NodeIdentity,
    pub role: Role,
    pub protocol: meshscope_storage::Protocol,
    pub start_ms: i64,
    pub duration_ms: f64,
    pub upstream_cluster: String,
    pub method: String,
    pub path: String,
    pub status: u32,
    pub failed: bool,
    /// Downstream peer, downstream local, upstream local, upstream remote.
    pub addresses: [Option<std::net::SocketAddr>; 4],
    pub downstream_cluster_header: Option<String>,
    pub peer_uri_san: Option<String>,
    pub mtls: bool,
    /// Downstream in and out, upstream out and in.
    pub bytes: [u64; 4],
    /// The caller's proxy's attempts at the request (0 when not logged).
    #[serde(default)]
    pub upstream_attempts: u32,
    /// The response flags' bit set (0 in checkpoints written before it was kept).
    #[serde(default)]
    pub response_flags: u32,
    /// The request id's hash (0 when none, or in checkpoints written before it was kept).
    #[serde(default)]
    pub request_id: u64,
}

impl ParkedState {
    /// The entry's minute.
    pub fn minute(&self) -> i64 {
        meshscope_storage::minute_of(self.start_ms)
    }
}

impl WaitQueue {
    /// A copy of the parked entries, oldest first.
    pub fn copy(&self) -> Vec<ParkedState> {
        self.entries.lock().iter().map(parked_state).collect()
    }

    /// Parks `entries` again, oldest first, within the capacity; returns how many.
    pub fn restore(&self, entries: Vec<ParkedState>) -> usize {
        let mut queue = self.entries.lock();
        let mut restored = 0;
        for state in entries {
            if queue.len() >= self.capacity {
                break;
            }
            queue.push_back(parked_entry(&state));
            restored += 1;
        }
        restored
    }
}

fn parked_state(parked: &ParkedEntry) -> ParkedState {
    let obs = parked.obs.view();
    let a = &obs.addresses;
    ParkedState {
        deadline_ms: parked.deadline_ms,
        reporter: (*parked.reporter).clone(),
        role: parked.role,
        protocol: obs.protocol,
        start_ms: obs.start_ms,
        duration_ms: obs.duration_ms,
        upstream_cluster: obs.upstream_cluster.to_string(),
        method: obs.method.to_string(),
        path: obs.path.to_string(),
        status: obs.status,
        failed: obs.failed,
        addresses: [
            a.downstream_peer.get(),
            a.downstream_local.get(),
            a.upstream_local.get(),
            a.upstream_remote.get(),
        ],
        downstream_cluster_header: obs.downstream_cluster_header.map(str::to_string),
        peer_uri_san: obs.peer_uri_san.map(str::to_string),
        mtls: obs.mtls,
        bytes: [
            obs.downstream_bytes_in,
            obs.downstream_bytes_out,
            obs.upstream_bytes_out,
            obs.upstream_bytes_in,
        ],
        upstream_attempts: obs.upstream_attempts,
        response_flags: obs.response_flags,
        request_id: obs.request_id,
    }
}

fn parked_entry(state: &ParkedState) -> ParkedEntry {
    use meshscope_proto::pb::envoy::config::core::v3::RequestMethod;

    use crate::entry::Observation;
    use crate::logged_address::{ConnectionAddresses, LoggedAddress};

    let [
        downstream_peer,
        downstream_local,
        upstream_local,
        upstream_remote,
    ] = state.addresses.map(LoggedAddress::known);
    let [
        downstream_bytes_in,
        downstream_bytes_out,
        upstream_bytes_out,
        upstream_bytes_in,
    ] = state.bytes;
    let obs = Observation {
        protocol: state.protocol,
        start_ms: state.start_ms,
        duration_ms: state.duration_ms,
        upstream_cluster: &state.upstream_cluster,
        method: RequestMethod::from_str_name(&state.method).map_or("", |m| m.as_str_name()),
        path: &state.path,
        status: state.status,
        failed: state.failed,
        addresses: ConnectionAddresses {
            downstream_peer,
            downstream_local,
            upstream_local,
            upstream_remote,
        },
        downstream_cluster_header: state.downstream_cluster_header.as_deref(),
        peer_uri_san: state.peer_uri_san.as_deref(),
        mtls: state.mtls,
        downstream_bytes_in,
        downstream_bytes_out,
        upstream_bytes_out,
        upstream_bytes_in,
        upstream_attempts: state.upstream_attempts,
        response_flags: state.response_flags,
        request_id: state.request_id,
    };
    ParkedEntry {
        deadline_ms: state.deadline_ms,
        reporter: Arc::new(state.reporter.clone()),
        role: state.role,
        obs: obs.to_owned(),
    }
}
