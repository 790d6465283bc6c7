//! The queue of entries parked until the other side's report names their peer.

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
