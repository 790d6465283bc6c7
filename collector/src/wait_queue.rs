//! The queue of entries parked until the other side's report names their peer.
//! A checkpoint keeps them as [`ParkedState`]s, each naming its reporter by its place in
//! one list of reporters ([`ParkedStates`]), so that a reporter's identity is written
//! once, not with each of its entries.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::entry::OwnedObservation;
use crate::identity::NodeIdentity;
use crate::learned_since::RecentLearning;
use crate::role::Role;

/// An entry parked until its caller's report arrives or its wait runs out.
#[derive(Clone)]
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
    /// What the registry learned over the last retry passes: which entries may resolve.
    pub(crate) recent_learning: Mutex<RecentLearning>,
}

impl WaitQueue {
    /// An empty queue that holds up to `capacity` entries.
    pub fn new(capacity: usize) -> WaitQueue {
        WaitQueue {
            entries: Mutex::new(VecDeque::new()),
            capacity,
            recent_learning: Mutex::new(RecentLearning::default()),
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
    /// Its reporter, in checkpoints written before reporters were listed once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter: Option<NodeIdentity>,
    /// Its reporter's place in [`ParkedStates::reporters`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter_at: Option<u32>,
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

/// The parked entries as a checkpoint keeps them, and their reporters, each once.
#[derive(Clone, Debug, Default)]
pub struct ParkedStates {
    pub reporters: Vec<NodeIdentity>,
    pub entries: Vec<ParkedState>,
}

impl ParkedStates {
    /// `entries` in the checkpoint's form, oldest first.
    pub(crate) fn of(entries: &[ParkedEntry]) -> ParkedStates {
        let mut places: HashMap<*const NodeIdentity, u32> = HashMap::new();
        let mut reporters = Vec::new();
        let entries = entries
            .iter()
            .map(|parked| {
                let at = *places
                    .entry(Arc::as_ptr(&parked.reporter))
                    .or_insert_with(|| {
                        reporters.push((*parked.reporter).clone());
                        (reporters.len() - 1) as u32
                    });
                parked_state(parked, at)
            })
            .collect();
        ParkedStates { reporters, entries }
    }
}

impl WaitQueue {
    /// A copy of the parked entries, oldest first: reporters shared, strings copied,
    /// nothing put in the checkpoint's form yet (that is done off the ingest path).
    pub(crate) fn copy(&self) -> Vec<ParkedEntry> {
        self.entries.lock().iter().cloned().collect()
    }

    /// Parks `entries` again, oldest first, within the capacity; their reporters are in
    /// `reporters` (or in the entry, in older checkpoints). Returns how many; an entry
    /// whose reporter is in neither is dropped.
    pub fn restore<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a ParkedState>,
        reporters: &[NodeIdentity],
    ) -> usize {
        let shared: Vec<Arc<NodeIdentity>> = reporters.iter().cloned().map(Arc::new).collect();
        let mut queue = self.entries.lock();
        let mut restored = 0;
        for state in entries {
            if queue.len() >= self.capacity {
                break;
            }
            let reporter = match (&state.reporter, state.reporter_at) {
                (Some(inline), _) => Arc::new(inline.clone()),
                (None, Some(at)) => match shared.get(at as usize) {
                    Some(reporter) => Arc::clone(reporter),
                    None => continue,
                },
                (None, None) => continue,
            };
            queue.push_back(parked_entry(state, reporter));
            restored += 1;
        }
        restored
    }
}

fn parked_state(parked: &ParkedEntry, reporter_at: u32) -> ParkedState {
    let obs = parked.obs.view();
    let a = &obs.addresses;
    ParkedState {
        deadline_ms: parked.deadline_ms,
        reporter: None,
        reporter_at: Some(reporter_at),
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

fn parked_entry(state: &ParkedState, reporter: Arc<NodeIdentity>) -> ParkedEntry {
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
        reporter,
        role: state.role,
        obs: obs.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use meshscope_storage::{Protocol, ServiceRef};

    use super::*;
    use crate::entry::Observation;

    fn reporter(name: &str) -> Arc<NodeIdentity> {
        Arc::new(NodeIdentity {
            service: ServiceRef::service("shop", name),
            instance: format!("{name}-1"),
            node_id: format!("{name}-1"),
            cluster: name.into(),
            service_account: None,
            version: None,
            proxy_version: "envoy/1.39.3".into(),
            instance_ips: vec!["127.0.0.1".into()],
            is_gateway: false,
        })
    }

    fn parked(reporter: &Arc<NodeIdentity>, path: &str, start_ms: i64) -> ParkedEntry {
        ParkedEntry {
            deadline_ms: start_ms + 2_000,
            reporter: Arc::clone(reporter),
            role: Role::Inbound,
            obs: Observation {
                start_ms,
                path,
                status: 200,
                request_id: start_ms as u64,
                ..Observation::empty(Protocol::Http)
            }
            .to_owned(),
        }
    }

    /// What a test compares of a parked entry: its reporter, path, start and deadline.
    fn listed(queue: &WaitQueue) -> Vec<(String, String, i64, i64)> {
        queue
            .copy()
            .iter()
            .map(|p| {
                let obs = p.obs.view();
                let name = p.reporter.service.name.clone();
                (name, obs.path.to_string(), obs.start_ms, p.deadline_ms)
            })
            .collect()
    }

    #[test]
    fn a_checkpoint_lists_each_reporter_once_and_restores_every_entry_with_its_own() {
        let (ingress, frontend) = (reporter("ingress"), reporter("frontend"));
        let queue = WaitQueue::new(10);
        queue.entries.lock().extend([
            parked(&ingress, "/a", 1_000),
            parked(&frontend, "/b", 1_001),
            parked(&ingress, "/c", 1_002),
        ]);
        let states = ParkedStates::of(&queue.copy());
        let names: Vec<&str> = states
            .reporters
            .iter()
            .map(|r| r.service.name.as_str())
            .collect();
        assert_eq!(names, ["ingress", "frontend"]);
        let places: Vec<Option<u32>> = states.entries.iter().map(|e| e.reporter_at).collect();
        assert_eq!(places, [Some(0), Some(1), Some(0)]);
        assert!(states.entries.iter().all(|e| e.reporter.is_none()));

        let restored = WaitQueue::new(10);
        assert_eq!(restored.restore(&states.entries, &states.reporters), 3);
        assert_eq!(listed(&restored), listed(&queue));
        let copies = restored.copy();
        assert!(
            Arc::ptr_eq(&copies[0].reporter, &copies[2].reporter),
            "one reporter's entries share its identity again"
        );
    }

    #[test]
    fn entries_of_older_checkpoints_keep_their_reporter_inline_and_a_missing_one_is_dropped() {
        let frontend = reporter("frontend");
        let mut states = ParkedStates::of(&[parked(&frontend, "/old", 5_000)]);
        states.entries[0].reporter = Some((*frontend).clone());
        states.entries[0].reporter_at = None;
        let mut orphan = states.entries[0].clone();
        orphan.reporter = None;
        states.entries.push(orphan);
        let restored = WaitQueue::new(10);
        assert_eq!(restored.restore(&states.entries, &[]), 1);
        assert_eq!(
            listed(&restored),
            [("frontend".to_string(), "/old".to_string(), 5_000, 7_000)]
        );
    }

    #[test]
    fn restoring_stops_at_the_capacity() {
        let ingress = reporter("ingress");
        let entries: Vec<ParkedEntry> = (0..5).map(|i| parked(&ingress, "/", i)).collect();
        let states = ParkedStates::of(&entries);
        let restored = WaitQueue::new(2);
        assert_eq!(restored.restore(&states.entries, &states.reporters), 2);
        assert_eq!(restored.len(), 2);
    }
}
