//! What resolving an entry answers: who is on each side of the call, and by what
//! evidence the caller was named.

use std::borrow::Cow;

use meshscope_storage::{ServiceRef, Side};

/// How a caller was named, for the `/metrics` counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEvidence {
    Header,
    Certificate,
    Connection,
    StaticMap,
    Fallback,
}

impl PeerEvidence {
    /// Every kind of evidence, in the order of the enum.
    pub const ALL: [PeerEvidence; 5] = [
        PeerEvidence::Header,
        PeerEvidence::Certificate,
        PeerEvidence::Connection,
        PeerEvidence::StaticMap,
        PeerEvidence::Fallback,
    ];

    /// The evidence's label on the `/metrics` counters.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerEvidence::Header => "header",
            PeerEvidence::Certificate => "certificate",
            PeerEvidence::Connection => "connection",
            PeerEvidence::StaticMap => "static_map",
            PeerEvidence::Fallback => "fallback",
        }
    }
}

/// One call as one side saw it. The reporter's own names are borrowed: most entries name
/// it on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution<'r> {
    pub side: Side,
    pub source: Cow<'r, ServiceRef>,
    pub target: Cow<'r, ServiceRef>,
    /// The instance of the target that answered.
    pub target_instance: Cow<'r, str>,
}

/// The outcome of resolving one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'r> {
    Ready {
        attributions: Vec<Attribution<'r>>,
        evidence: Option<PeerEvidence>,
        /// The caller-cluster header named another caller than the peer certificate,
        /// which named this one.
        identity_conflict: bool,
    },
    /// The caller's own report may still be on its way: ask again later.
    Wait,
}
